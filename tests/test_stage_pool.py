"""The stream stage in child processes: same output as in-process, and a killed child does
not stop the stage (a new pool takes the batch again)."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, date, datetime

from connectors.simulator import SimulatedCss
from schemas.contracts import CURATED_RECORDS_FIELD, Dataset, curated_contract, raw_contract, raw_topic
from streams.curate import RawMessage
from tests.conftest import TEST_KEY
from vigie.runtime import stage_child
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


def test_a_stage_process_loads_neither_pandas_nor_the_engine_nor_faust(registry, organizations) -> None:
    # Each would cost every stage process memory for nothing (issue 18); the model still trains.
    settings = Settings(registry_url=registry.url, pseudonym_key=TEST_KEY.decode())
    stage = Stage.from_settings(settings)
    messages = _messages(stage, organizations, 3)
    pool = StagePool(settings, 1, stage)
    try:
        out = pool.submit(messages).result(timeout=120)
        loaded = pool._executor.submit(stage_child.loaded).result(timeout=60)  # type: ignore[attr-defined]
    finally:
        pool.close()
    assert loaded == []
    assert _records(stage, out) == _records(stage, stage.run(messages))  # motifs d'absence included


def _records(stage: Stage, out) -> list:
    # The curated records (each batch's processing time set apart).
    return [stage.codec.decode(v, curated_contract(ds))[CURATED_RECORDS_FIELD[ds]] for ds, v in out.curated]


def test_the_worker_thread_takes_a_batch_when_every_process_is_busy(registry, organizations) -> None:
    settings = Settings(registry_url=registry.url, pseudonym_key=TEST_KEY.decode())
    stage = Stage.from_settings(settings)
    messages = _messages(stage, organizations, 4)
    expected = stage.run(messages)
    local_runs = []

    class Local:
        def run(self, batch: list[RawMessage]):
            local_runs.append(len(batch))
            return stage.run(batch)

    pool = StagePool(settings, 1, Local(), share_local=True)  # type: ignore[arg-type]
    try:
        pool.warm()
        assert pool.workers == 2
        futures = [pool.submit(messages) for _ in range(4)]
        outputs = [f.result(timeout=120) for f in futures]
        assert pool._in_processes + pool._in_thread == 0  # type: ignore[attr-defined]
    finally:
        pool.close()
    # Four at once: the process had one when the second came, so the thread took that one.
    assert 1 <= len(local_runs) < 4
    assert all(_records(stage, o) == _records(stage, expected) for o in outputs)


def test_one_stage_process_fewer_when_the_worker_shares_the_stage() -> None:
    from vigie.runtime.worker import stage_processes

    cores = os.cpu_count() or 1
    assert stage_processes(Settings()) == cores - 1  # the worker's thread does the last core's share
    assert stage_processes(Settings(stream_share_worker=False)) == cores
    assert stage_processes(Settings(stream_own_consumer=False)) == cores  # the Faust agent path
    assert stage_processes(Settings(stream_processes=3)) == 3
