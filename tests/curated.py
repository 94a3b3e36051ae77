"""Curated batches built by the real stream stage from simulated CSS data (no broker)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from connectors.simulator import SimulatedCss
from schemas.contracts import CURATED_RECORDS_FIELD, Dataset
from schemas.organizations import Organization
from streams.process import StageContext
from tests.stage import run_stage


def curated_batches(
    ctx: StageContext, organizations: dict[str, Organization], css: str, ticks: int = 2,
    on: date | None = None, seed: int = 11,
) -> dict[Dataset, list[dict[str, Any]]]:  # fmt: skip
    """``ticks`` minutes of one simulated CSS, through the stream stage, as curated batches."""
    sim = SimulatedCss(organizations[css], seed=seed)
    batches: dict[Dataset, list[dict[str, Any]]] = {ds: [] for ds in Dataset}
    for tick in range(ticks):
        for ds, raw in sim.tick(tick, 1.0, on or date.today()):
            out = run_stage(css, ds, raw, ctx)
            batches[ds].append(
                {
                    "mapping_version": "m1",
                    "processed_at": datetime.now(UTC),
                    CURATED_RECORDS_FIELD[ds]: out.records,
                }
            )
    return batches


HISTORY_CSS = ("phares", "fleuve-et-lacs", "estuaire")  # two in one region, for region breakdowns


def network_history(
    organizations: dict[str, Organization], days: int = 12, groups: int = 8, now: datetime | None = None
) -> list[tuple[str, Dataset, dict[str, Any]]]:
    """Raw batches (css, dataset, batch) of a few simulated CSS: ``days`` school days of
    attendance for ``groups`` groups (enough history for chronic absenteeism), evaluations
    and staff changes. Small groups keep it quick; every count still clears suppression."""
    now = now or datetime.now(UTC)
    today = now.date()
    out: list[tuple[str, Dataset, dict[str, Any]]] = []
    for code in HISTORY_CSS:
        sim = SimulatedCss(organizations[code], seed=21)
        sim.groups = groups
        out += [
            (code, Dataset.ATTENDANCE, sim.attendance_sheet(today, now)) for _ in range(groups * 6 * days)
        ]
        out += [(code, Dataset.GRADES, sim.evaluation(today, now)) for _ in range(40)]
        out += [(code, Dataset.STAFF, sim.staff_changes(today, now)) for _ in range(150)]
    return out


def curate_history(
    ctx: StageContext, history: list[tuple[str, Dataset, dict[str, Any]]]
) -> dict[Dataset, list[dict[str, Any]]]:
    """The history through the stream stage, as curated batches."""
    batches: dict[Dataset, list[dict[str, Any]]] = {ds: [] for ds in Dataset}
    for css, ds, raw in history:
        out = run_stage(css, ds, raw, ctx)
        batches[ds].append({"mapping_version": "m1", "processed_at": datetime.now(UTC),
                            CURATED_RECORDS_FIELD[ds]: out.records})  # fmt: skip
    return batches
