"""Ask for the network status: from the running worker, or from the data directory."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import httpx

from vigie.dashboards.report import PanelResult, results_from_json, run_panels
from vigie.dashboards.status import OrganizationStatus, network_status, status_from_json
from vigie.reference.organizations import load_organizations
from vigie.runtime.supervisor import DataDirLock, RuntimeInfo, RuntimeStartError
from vigie.settings import Settings
from vigie.sinks.migrate import migrate_up
from vigie.sinks.warehouse import ChdbWarehouse, open_warehouse
from vigie.streams.consent import ConsentRegistry


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


def fetch_panels(settings: Settings, start: datetime, end: datetime) -> tuple[list[PanelResult], str]:
    """Every ClickHouse panel's rows over [start, end]: from the running worker, a ClickHouse
    server (VIGIE_WAREHOUSE_URL), or the data directory."""
    minimum = settings.suppression_minimum
    if settings.warehouse_url:
        server = open_warehouse(settings.warehouse_url, settings.warehouse_path, settings.warehouse_database)
        try:
            return run_panels(server, start, end, minimum), "server"
        finally:
            server.close()
    lock = DataDirLock(settings.lock_file) if settings.data_dir.exists() else None
    if lock is not None and not lock.acquire():
        data = _ask_worker(settings, "/panels", {"from": start.isoformat(), "to": end.isoformat()})
        return results_from_json(data), "worker"
    try:
        if not settings.warehouse_path.exists():
            raise RuntimeStartError(
                f"no warehouse in {settings.data_dir} yet: run `vigie up` or `vigie demo`"
            )
        warehouse = ChdbWarehouse(settings.warehouse_path, settings.warehouse_database)
        try:
            migrate_up(warehouse)
            return run_panels(warehouse, start, end, minimum), "data-dir"
        finally:
            warehouse.close()
    finally:
        if lock is not None:
            lock.release()


def fetch_status(settings: Settings) -> tuple[list[OrganizationStatus], str]:
    """Return the status rows and where they came from ('worker' or 'data-dir')."""
    lock = DataDirLock(settings.lock_file) if settings.data_dir.exists() else None
    if lock is not None and not lock.acquire():
        return status_from_json(_ask_worker(settings, "/status")), "worker"
    try:
        organizations = load_organizations(settings.organizations_file)
        consent = ConsentRegistry.load(settings.consent_file)
        if not settings.warehouse_path.exists():
            return network_status(None, organizations, consent, date.today()), "data-dir"
        warehouse = ChdbWarehouse(settings.warehouse_path, settings.warehouse_database)
        try:
            migrate_up(warehouse)
            return network_status(warehouse, organizations, consent, date.today()), "data-dir"
        finally:
            warehouse.close()
    finally:
        if lock is not None:
            lock.release()
