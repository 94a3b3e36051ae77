"""Curated batches built by the real stream stage from simulated CSS data (no broker)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from vigie.connectors.simulator import SimulatedCss
from vigie.reference.organizations import Organization
from vigie.schemas.contracts import CURATED_RECORDS_FIELD, Dataset
from vigie.streams.process import StageContext, process_batch


def curated_batches(
    ctx: StageContext, organizations: dict[str, Organization], css: str, ticks: int = 2,
    on: date | None = None, seed: int = 11,
) -> dict[Dataset, list[dict[str, Any]]]:  # fmt: skip
    """``ticks`` minutes of one simulated CSS, through the stream stage, as curated batches."""
    sim = SimulatedCss(organizations[css], seed=seed)
    batches: dict[Dataset, list[dict[str, Any]]] = {ds: [] for ds in Dataset}
    for tick in range(ticks):
        for ds, raw in sim.tick(tick, 1.0, on or date.today()):
            out = process_batch(css, ds, raw, ctx)
            batches[ds].append(
                {
                    "mapping_version": "m1",
                    "processed_at": datetime.now(UTC),
                    CURATED_RECORDS_FIELD[ds]: out.records,
                }
            )
    return batches
