"""The stream stage in child processes: same output as in-process, and a killed child does
not stop the stage (a new pool takes the batch again)."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, date, datetime

from connectors.simulator import SimulatedCss
from schemas.contracts import Dataset, raw_contract, raw_topic
from streams.curate import RawMessage
from tests.conftest import TEST_KEY
from vigie.runtime.stage_pool import Stage, StagePool
from vigie.settings import Settings


def _messages(stage: Stage, organizations, count: int) -> list[RawMessage]:
    sim = SimulatedCss(organizations["phares"], seed=4)
    contract = raw_contract(Dataset.ATTENDANCE)
    return [
        RawMessage(raw_topic("phares", Dataset.ATTENDANCE), 0, i,
                   stage.codec.encode(contract, sim.attendance_sheet(date(2026, 11, 20), datetime.now(UTC))))
        for i in range(count)
    ]  # fmt: skip


def test_a_pool_curates_like_the_worker_and_survives_a_killed_child(registry, organizations) -> None:
    settings = Settings(registry_url=registry.url, pseudonym_key=TEST_KEY.decode())
    stage = Stage.from_settings(settings)
    messages = _messages(stage, organizations, 6)
    local = stage.run(messages)

    async def scenario() -> tuple:
        pool = StagePool(settings, 2, stage)
        try:
            first = await pool.run(messages)
            children = list(pool._executor._processes)  # type: ignore[attr-defined]
            os.kill(children[0], signal.SIGKILL)
            await asyncio.sleep(0.5)
            after = await pool.run(messages)
            return first, after, pool.restarts
        finally:
            pool.close()

    first, after, restarts = asyncio.run(scenario())
    assert first.curated_records == after.curated_records == local.curated_records > 0
    assert first.records == local.records and first.refusals == local.refusals
    assert restarts == 1
