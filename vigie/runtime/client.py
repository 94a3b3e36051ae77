"""Ask for the network status: from the running worker, or from the data directory."""

from __future__ import annotations

from datetime import date

import httpx

from vigie.dashboards.status import OrganizationStatus, network_status, status_from_json
from vigie.reference.organizations import load_organizations
from vigie.runtime.supervisor import DataDirLock, RuntimeInfo, RuntimeStartError
from vigie.settings import Settings
from vigie.sinks.migrate import migrate_up
from vigie.sinks.warehouse import ChdbWarehouse
from vigie.streams.consent import ConsentRegistry


def fetch_status(settings: Settings) -> tuple[list[OrganizationStatus], str]:
    """Return the status rows and where they came from ('worker' or 'data-dir')."""
    lock = DataDirLock(settings.lock_file) if settings.data_dir.exists() else None
    if lock is not None and not lock.acquire():
        info = RuntimeInfo.read(settings.runtime_file)
        if info is None:
            raise RuntimeStartError(f"{settings.data_dir} is locked by a process that is still starting")
        try:
            response = httpx.get(f"{info.web_url}/status", timeout=30.0)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise RuntimeStartError(f"the running worker ({info.web_url}) did not answer: {exc}") from exc
        return status_from_json(response.json()), "worker"
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
