"""Ask for the network status: from the running worker, or from the data directory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import httpx

from dashboards.report import PanelResult, results_from_json, run_panels
from dashboards.status import OrganizationStatus, network_status, status_from_json
from schemas.organizations import load_organizations
from sinks.migrate import migrate_up
from sinks.warehouse import ChdbWarehouse, Warehouse, open_warehouse
from streams.consent import ConsentRegistry
from vigie.runtime.supervisor import DataDirLock, RuntimeInfo, RuntimeStartError
from vigie.settings import Settings

T = TypeVar("T")


def _ask_worker(settings: Settings, path: str, params: dict[str, str] | None = None) -> Any:
    info = RuntimeInfo.read(settings.runtime_file)
    if info is None:
        raise RuntimeStartError(f"{settings.data_dir} is locked by a process that is still starting")
    try:
        response = httpx.get(f"{info.web_url}{path}", params=params, timeout=120.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise RuntimeStartError(f"the running worker ({info.web_url}) did not answer: {exc}") from exc
    return response.json()


def _answer(
    settings: Settings,
    worker_path: str,
    params: dict[str, str] | None,
    from_json: Callable[[Any], T],
    compute: Callable[[Warehouse | None], T],
) -> tuple[T, str]:
    """One read, from where the warehouse is: a ClickHouse server (VIGIE_WAREHOUSE_URL), the
    running worker that owns the embedded store, or the data directory itself (None when
    it holds no warehouse yet). Returns the answer and its source."""
    if settings.warehouse_url:
        server = open_warehouse(settings.warehouse_url, settings.warehouse_path, settings.warehouse_database)
        try:
            # A reader does not create schemas on a server: that is `vigie migrate`'s job.
            db = server.database
            ledger = f"SELECT 1 FROM system.tables WHERE database = '{db}' AND name = 'schema_migrations'"
            if not server.query(ledger):
                raise RuntimeStartError(
                    f"the warehouse has no Vigie schema in database {server.database!r} yet: "
                    "run `vigie migrate --url …` first"
                )
            return compute(server), "server"
        finally:
            server.close()
    lock = DataDirLock(settings.lock_file) if settings.data_dir.exists() else None
    if lock is not None and not lock.acquire():
        return from_json(_ask_worker(settings, worker_path, params)), "worker"
    try:
        if not settings.warehouse_path.exists():
            return compute(None), "data-dir"
        warehouse = ChdbWarehouse(settings.warehouse_path, settings.warehouse_database)
        try:
            migrate_up(warehouse)
            return compute(warehouse), "data-dir"
        finally:
            warehouse.close()
    finally:
        if lock is not None:
            lock.release()


def fetch_panels(settings: Settings, start: datetime, end: datetime) -> tuple[list[PanelResult], str]:
    """Every ClickHouse panel's rows over [start, end], and where they came from."""

    def compute(warehouse: Warehouse | None) -> list[PanelResult]:
        if warehouse is None:
            raise RuntimeStartError(
                f"no warehouse in {settings.data_dir} yet: run `vigie up` or `vigie demo`"
            )
        return run_panels(warehouse, start, end, settings.suppression_minimum)

    params = {"from": start.isoformat(), "to": end.isoformat()}
    return _answer(settings, "/panels", params, results_from_json, compute)


def fetch_status(settings: Settings) -> tuple[list[OrganizationStatus], str]:
    """The status rows, and where they came from ('server', 'worker' or 'data-dir')."""

    def compute(warehouse: Warehouse | None) -> list[OrganizationStatus]:
        organizations = load_organizations(settings.organizations_file)
        consent = ConsentRegistry.load(settings.consent_file)
        return network_status(warehouse, organizations, consent, date.today())

    return _answer(settings, "/status", None, status_from_json, compute)
