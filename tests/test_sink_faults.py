"""Effectively-once ingestion under faults, on the real stack (Tansu, Faust workers, the
ClickHouse engine): worker SIGKILLs mid-sink, a 30-second warehouse outage under load, and
two workers sharing the partitions while one joins and another leaves.

The warehouse outage and the two workers use `vigie warehouse serve` (the chDB engine
behind ClickHouse's HTTP protocol, in its own process): a ClickHouse server does not
install on this machine, chDB allows one process per store, and stopping that process
is a real outage for the workers' clickhouse-connect clients.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.publisher import flush, make_producer
from connectors.simulator import last_school_day
from schemas.contracts import Dataset, raw_contract
from schemas.wire import AvroCodec
from sinks.warehouse import ClickHouseWarehouse, WarehouseUnavailable
from streams.pseudonymize import Pseudonymizer
from tests.embedded import (
    HTTP,
    TEST_ENV,
    WarehouseProcess,
    WorkerProcess,
    process_running,
    query_warehouse,
    rss_mb,
    wait_for,
)
from vigie.runtime.bench import SheetFactory, child_processes, load_raw
from vigie.runtime.supervisor import EmbeddedRuntime
from vigie.settings import Settings

pytestmark = pytest.mark.integration
DAY = last_school_day(datetime.now(UTC).date())


def _record_keys(codec: AvroCodec, messages: list[tuple[str, bytes]]) -> set[str]:
    """The record keys the warehouse must hold: the connectors', keyed by the stage."""
    contract = raw_contract(Dataset.ATTENDANCE)
    keyed = Pseudonymizer(TEST_ENV["VIGIE_PSEUDONYM_KEY"].encode(), "k").record_key
    batches = [codec.decode(value, contract) for _, value in messages]
    return {keyed(b["css"], m["record_key"]) for b in batches for m in b["marks"]}


@pytest.fixture
def infrastructure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[EmbeddedRuntime, str, str]]:
    """Tansu and the registry of an embedded runtime, its worker not started yet."""
    for name, value in {**TEST_ENV, "VIGIE_SINK_BATCH_MAX": "20", "VIGIE_SINK_BATCH_WITHIN_S": "0.3"}.items():
        monkeypatch.setenv(name, value)  # inherited by the worker processes
    runtime = EmbeddedRuntime(Settings(data_dir=tmp_path / "vigie"))
    bootstrap, registry_url = runtime.start_infrastructure(say=lambda *_: None)
    try:
        yield runtime, bootstrap, registry_url
    finally:
        runtime.stop()


def _load(bootstrap: str, registry_url: str, records: int, seed: int) -> tuple[AvroCodec, set[str]]:
    codec = AvroCodec.from_url(registry_url)
    producer = make_producer(bootstrap)
    messages = load_raw(producer, codec, SheetFactory(Settings(), seed), records, DAY)
    return codec, _record_keys(codec, messages)


def _server_count(wh: ClickHouseWarehouse) -> int:
    try:
        return int(wh.query(f"SELECT count() AS n FROM {wh.database}.attendance_marks FINAL")[0]["n"])
    except WarehouseUnavailable:
        return -1


class Sender:
    """Sends attendance sheets continuously from a thread, as connectors do, until stopped."""

    def __init__(self, bootstrap: str, codec: AvroCodec, seed: int, per_round: int = 1_000) -> None:
        self.producer = make_producer(bootstrap)
        self.codec = codec
        self.sheets = SheetFactory(Settings(), seed)
        self.per_round = per_round
        self.sent: list[tuple[str, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sent += load_raw(self.producer, self.codec, self.sheets, self.per_round, DAY)
            time.sleep(0.1)

    def __enter__(self) -> Sender:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        assert flush(self.producer, 30) == 0

    def keys(self) -> set[str]:
        return _record_keys(self.codec, self.sent)


def test_sigkilled_worker_restarted_three_times_leaves_every_record_exactly_once(
    infrastructure, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setenv("VIGIE_STREAM_BATCH_MAX", "20")  # many small sink inserts to land in
    runtime, bootstrap, registry_url = infrastructure
    codec, keys = _load(bootstrap, registry_url, 10_000, seed=5)

    def count(web_url: str) -> int:
        rows = HTTP.get(f"{web_url}/status", timeout=60).json()
        return sum(int(r["datasets"]["attendance"]["events"]) for r in rows)

    info = runtime.start_worker(say=lambda *_: None)
    with Sender(bootstrap, codec, seed=55, per_round=500) as sender:
        for kill in range(3):
            # Kill while records are flowing in and being written: mid-sink.
            seen = count(info.web_url)
            wait_for(lambda web=info.web_url, last=seen: count(web) > last, 120, "progress", 0.2)
            time.sleep(1 + kill)
            assert runtime._worker is not None
            stage_processes = child_processes(runtime._worker.pid)
            assert stage_processes, "the worker runs its stage in a child process"
            runtime._worker.send_signal(signal.SIGKILL)
            runtime._worker.wait()
            # The killed worker's stage processes go with it (~120 MB each left behind otherwise).
            wait_for(lambda pids=stage_processes: not any(process_running(p) for p in pids), 15,
                     "the killed worker's stage processes to exit")  # fmt: skip
            info = runtime.start_worker(say=lambda *_: None)
        time.sleep(2)
    keys |= sender.keys()
    wait_for(lambda: count(info.web_url) >= len(keys), 240, "every record in the warehouse")
    runtime.stop()

    data_dir = runtime.data_dir
    rows = query_warehouse(data_dir, "SELECT record_key, event_id FROM vigie.attendance_marks FINAL")
    assert len(rows) == len(keys)
    assert {r["record_key"] for r in rows} == keys
    assert len({r["event_id"] for r in rows}) == len(rows)
    stored = int(query_warehouse(data_dir, "SELECT count() AS n FROM vigie.attendance_marks")[0]["n"])
    print(f"{len(keys):,} records, {stored - len(keys):,} stored twice by redelivery, shown once (FINAL)")
    assert stored >= len(keys)
    assert int(query_warehouse(data_dir, "SELECT count() AS n FROM vigie.dead_letters")[0]["n"]) == 0


def test_a_30_second_warehouse_outage_under_load_loses_nothing_and_memory_stays_bounded(
    infrastructure, tmp_path: Path
) -> None:
    _runtime, bootstrap, registry_url = infrastructure
    server = WarehouseProcess(tmp_path / "warehouse").start()
    worker = WorkerProcess(tmp_path / "worker", bootstrap, registry_url, server.url)
    try:
        codec, keys = _load(bootstrap, registry_url, 10_000, seed=6)
        worker.start()
        reader = ClickHouseWarehouse(server.url, "vigie")
        wait_for(lambda: _server_count(reader) >= len(keys), 120, "the first records")
        before = rss_mb(worker.proc.pid)  # type: ignore[union-attr]

        server.kill()
        samples: list[float] = []
        with Sender(bootstrap, codec, seed=7, per_round=300) as sender:
            outage_started = time.monotonic()
            while time.monotonic() - outage_started < 30:
                samples.append(rss_mb(worker.proc.pid))  # type: ignore[union-attr]
                time.sleep(0.5)
        assert worker.metric("vigie_sink_insert_failures_total") > 0, "the sink did not notice the outage"
        assert worker.proc.poll() is None  # type: ignore[union-attr]

        server.start()  # same store, same port: the sink's retries get through
        sent = sender.keys()
        keys |= sent
        try:
            wait_for(lambda: _server_count(reader) >= len(keys), 180, "every record after the outage")
        except AssertionError:
            raise AssertionError(
                f"{_server_count(reader):,} of {len(keys):,} records in the warehouse; worker: "
                f"{worker.metric('vigie_stream_records_total'):,.0f} curated, "
                f"{worker.metric('vigie_sink_rows_total'):,.0f} rows written"
            ) from None
        rows = reader.query("SELECT record_key, event_id FROM vigie.attendance_marks FINAL")
        assert {r["record_key"] for r in rows} == keys and len(rows) == len(keys)
        assert len({r["event_id"] for r in rows}) == len(rows)
        growth = max(samples) - before
        print(f"outage: {len(sent):,} records sent, worker RSS {before:.0f} MB "
              f"before, peak growth {growth:.0f} MB")  # fmt: skip
        # Bounded: the consumer pauses once the sink's stream buffer is full instead of
        # holding everything sent during the outage.
        assert growth < 200
        reader.close()
    finally:
        worker.stop()
        server.stop()


def test_two_workers_share_the_partitions_and_one_joining_and_one_leaving_loses_nothing(
    infrastructure, tmp_path: Path
) -> None:
    _runtime, bootstrap, registry_url = infrastructure
    server = WarehouseProcess(tmp_path / "warehouse").start()
    first = second = None
    try:
        codec, keys = _load(bootstrap, registry_url, 15_000, seed=8)
        reader = ClickHouseWarehouse(server.url, "vigie")
        first = WorkerProcess(tmp_path / "w1", bootstrap, registry_url, server.url)
        first.start()
        wait_for(lambda: _server_count(reader) > 0, 120, "first worker writing")

        with Sender(bootstrap, codec, seed=9) as sender:
            second = WorkerProcess(tmp_path / "w2", bootstrap, registry_url, server.url)
            second.start()  # joins mid-stream
            wait_for(lambda: second.metric("vigie_stream_records_total") > 0, 120, "second worker consuming")
            first.stop()  # leaves mid-stream, gracefully; its partitions move to the second
            time.sleep(3)
        keys |= sender.keys()
        wait_for(lambda: _server_count(reader) >= len(keys), 180, "every record")
        rows = reader.query("SELECT record_key, event_id FROM vigie.attendance_marks FINAL")
        assert {r["record_key"] for r in rows} == keys and len(rows) == len(keys)
        assert len({r["event_id"] for r in rows}) == len(rows)
        assert second.metric("vigie_sink_rows_total") > 0
        reader.close()
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        server.stop()
