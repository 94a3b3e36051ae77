"""``vigie bench``: measured throughput, latency and memory of the embedded pipeline.

One run, four phases:
1. load: N attendance marks, Avro-encoded and batched as connectors send them (one
   sheet per message), are produced to the raw topics before anything is timed;
2. throughput: the worker starts; the clock runs from its readiness (partitions
   assigned, consumption starting) until all N records are queryable in ClickHouse;
3. latency: marks are produced at a fixed rate; record→queryable latency is the
   warehouse's ingestion time minus the record's detection time, per record;
4. baseline: the same raw messages, consumed → decoded → inserted into the same engine
   by a plain confluent-kafka loop with no processing, for the ratio.
Peak RSS is the worker's high-water mark (VmHWM).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from confluent_kafka import Consumer, Producer

from connectors.publisher import flush, make_producer
from connectors.simulator import MALFORMED_CSS, SimulatedCss
from schemas.contracts import Dataset, raw_contract, raw_topic
from schemas.organizations import load_organizations
from schemas.wire import AvroCodec
from sinks.warehouse import ChdbWarehouse
from vigie.runtime.supervisor import EmbeddedRuntime
from vigie.settings import Settings


@dataclass(frozen=True)
class BenchResult:
    """What ``vigie bench --json`` prints (records, not messages)."""

    events: int
    events_per_s: float
    baseline_events_per_s: float
    ratio: float
    p50_latency_s: float
    p99_latency_s: float
    peak_rss_mb: float
    messages: int
    elapsed_s: float
    baseline_elapsed_s: float
    latency_rate_per_s: int
    latency_events: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SheetFactory:
    """Attendance sheets of the simulated network, round-robin over the organizations."""

    def __init__(self, settings: Settings, seed: int) -> None:
        orgs = load_organizations(settings.organizations_file)
        # The CSS that send malformed rows on purpose are left out: every record counts.
        self.network = [SimulatedCss(org, seed) for org in orgs.values() if org.code not in MALFORMED_CSS]
        self._i = 0

    def next(self, day: date, now: datetime) -> tuple[str, dict[str, Any]]:
        css = self.network[self._i % len(self.network)]
        self._i += 1
        return raw_topic(css.org.code, Dataset.ATTENDANCE), css.attendance_sheet(day, now)


def _produce(producer: Producer, topic: str, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value=value)
            return
        except BufferError:
            producer.poll(0.05)


def load_raw(
    producer: Producer, codec: AvroCodec, sheets: SheetFactory, records: int, day: date
) -> list[tuple[str, bytes]]:
    """Produce at least ``records`` marks as sheets; return the messages (for the baseline)."""
    contract = raw_contract(Dataset.ATTENDANCE)
    messages: list[tuple[str, bytes]] = []
    count = 0
    now = datetime.now(UTC)
    while count < records:
        topic, sheet = sheets.next(day, now)
        value = codec.encode(contract, sheet)
        messages.append((topic, value))
        count += len(sheet["marks"])
        _produce(producer, topic, value)
        producer.poll(0)
    if flush(producer, 120):
        raise RuntimeError("the broker did not acknowledge the benchmark input")
    return messages


def _count(web_url: str) -> int:
    # The worker's own counter of attendance rows inserted: a scrape, not a warehouse query,
    # so that measuring does not slow down what it measures. (No crash here: no redelivery.)
    text = httpx.get(f"{web_url}/metrics", timeout=60).text
    prefix = 'vigie_sink_rows_total{table="attendance_marks"}'
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines() if line.startswith(prefix))


def _wait_count(web_url: str, target: int, timeout_s: float, every_s: float = 0.25) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _count(web_url) >= target:
            return time.monotonic()
        time.sleep(every_s)
    raise RuntimeError(f"the warehouse did not reach {target:,} records in {timeout_s:.0f} s")


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _peak_rss_mb(pid: int) -> float:
    """The worker's high-water RSS plus its stage processes' (each one's own peak, summed)."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return _hwm_mb(pid) + sum(_hwm_mb(c) for c in children)


def baseline(
    bootstrap: str, codec: AvroCodec, warehouse: ChdbWarehouse, records: int, topics: list[str]
) -> float:
    """Plain consume → decode → insert of the raw messages, no processing: seconds taken."""
    warehouse.command(
        f"CREATE TABLE IF NOT EXISTS {warehouse.database}.passthrough (event_id String, css LowCardinality(String), "
        "school_code String, group_code String, period UInt8, sheet_date Date, student_local_id String, "
        "status_code String, detected_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY (css, event_id)"
    )
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-baseline-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe(topics)
    contract = raw_contract(Dataset.ATTENDANCE)
    done = 0
    started: float | None = None
    try:
        while done < records:
            messages = consumer.consume(1000, timeout=1.0)
            if started is None and messages:
                started = time.monotonic()
            rows = []
            for msg in messages:
                if msg.error() is not None:
                    continue
                sheet = codec.decode(msg.value(), contract)
                for m in sheet["marks"]:
                    rows.append((m["event_id"], sheet["css"], sheet["school_code"], sheet["group_code"],
                                 sheet["period"], sheet["sheet_date"], m["student_local_id"], m["status_code"],
                                 m["detected_at"]))  # fmt: skip
            if rows:
                frame = pd.DataFrame(rows, columns=["event_id", "css", "school_code", "group_code", "period",
                                                    "sheet_date", "student_local_id", "status_code", "detected_at"])  # fmt: skip
                frame["sheet_date"] = pd.to_datetime(frame["sheet_date"])
                warehouse.insert_frame("passthrough", frame)
                consumer.commit(asynchronous=False)
                done += len(rows)
    finally:
        consumer.close()
    return time.monotonic() - (started or time.monotonic())


def run_bench(
    settings: Settings, records: int, latency_rate: int, latency_seconds: float, seed: int,
    say: Callable[[str], None],
) -> BenchResult:  # fmt: skip
    """Run the four phases on a throw-away data directory."""
    work = Path(tempfile.mkdtemp(prefix="vigie-bench-"))
    bench_settings = settings.model_copy(update={"data_dir": work / "data"})
    runtime = EmbeddedRuntime(bench_settings)
    day = date.today()
    try:
        bootstrap, registry_url = runtime.start_infrastructure(say=lambda line: None)
        codec = AvroCodec.from_url(registry_url)
        producer = make_producer(bootstrap, {"linger.ms": 50, "batch.num.messages": 10000})
        sheets = SheetFactory(settings, seed)
        say(f"loading {records:,} attendance marks into the raw topics…")
        messages = load_raw(producer, codec, sheets, records, day)
        loaded = sum(1 for _ in messages)
        total = _records_in(messages, codec)
        say(f"loaded {total:,} marks in {loaded:,} sheets; starting the worker")
        info = runtime.start_worker(say=lambda line: None)
        t0 = time.monotonic()
        t1 = _wait_count(info.web_url, total, timeout_s=600)
        elapsed = t1 - t0
        say(f"end to end: {total:,} records in {elapsed:.1f} s ({total / elapsed:,.0f} records/s)")

        say(f"latency: {latency_rate:,} records/s for {latency_seconds:.0f} s…")
        latency_start = datetime.now(UTC)
        contract = raw_contract(Dataset.ATTENDANCE)
        sent = 0
        begin = time.monotonic()
        while time.monotonic() - begin < latency_seconds:
            due = int((time.monotonic() - begin) * latency_rate)
            while sent < due:
                topic, sheet = sheets.next(day, datetime.now(UTC))
                _produce(producer, topic, codec.encode(contract, sheet))
                sent += len(sheet["marks"])
            producer.poll(0)
            time.sleep(0.005)
        flush(producer, 60)
        _wait_count(info.web_url, total + sent, timeout_s=300)
        peak = _peak_rss_mb(info.worker_pid)
        del producer
        runtime.stop()

        warehouse = ChdbWarehouse(bench_settings.warehouse_path, bench_settings.warehouse_database)
        try:
            q = warehouse.query(
                "SELECT quantile(0.5)(lat) AS p50, quantile(0.99)(lat) AS p99, count() AS n FROM ("
                "SELECT dateDiff('millisecond', detected_at, ingested_at) / 1000 AS lat "
                f"FROM {warehouse.database}.attendance_marks WHERE detected_at >= "
                f"toDateTime64('{latency_start:%Y-%m-%d %H:%M:%S}', 3, 'UTC'))"
            )[0]
            say("baseline: plain consume → decode → insert of the same messages…")
            # The broker stopped with the runtime: replay the input into a fresh one.
            base = _baseline_run(bench_settings, work, messages, total, warehouse)
        finally:
            warehouse.close()
        return BenchResult(
            events=total, events_per_s=round(total / elapsed, 1), baseline_events_per_s=round(total / base, 1),
            ratio=round(base / elapsed, 3), p50_latency_s=round(float(q["p50"]), 3),
            p99_latency_s=round(float(q["p99"]), 3), peak_rss_mb=round(peak, 1), messages=loaded,
            elapsed_s=round(elapsed, 2), baseline_elapsed_s=round(base, 2), latency_rate_per_s=latency_rate,
            latency_events=int(q["n"]),
        )  # fmt: skip
    finally:
        runtime.stop()
        shutil.rmtree(work, ignore_errors=True)


def _records_in(messages: list[tuple[str, bytes]], codec: AvroCodec) -> int:
    contract = raw_contract(Dataset.ATTENDANCE)
    return sum(len(codec.decode(v, contract)["marks"]) for _, v in messages)


def _baseline_run(
    settings: Settings, work: Path, messages: list[tuple[str, bytes]], total: int, warehouse: ChdbWarehouse
) -> float:
    from vigie.runtime.broker import TansuBroker, ensure_topics
    from vigie.runtime.registry import RegistryServer

    broker = TansuBroker(0, work / "baseline-tansu.log").start()
    registry = RegistryServer("127.0.0.1", 0, settings.data_dir / "registry.json").start()
    try:
        topics = sorted({t for t, _ in messages})
        ensure_topics(broker.bootstrap, topics, settings.raw_topic_partitions)
        producer = make_producer(broker.bootstrap, {"linger.ms": 50, "batch.num.messages": 10000})
        for topic, value in messages:
            _produce(producer, topic, value)
            producer.poll(0)
        flush(producer, 120)
        del producer
        return baseline(broker.bootstrap, AvroCodec.from_url(registry.url), warehouse, total, topics)
    finally:
        registry.stop()
        broker.stop()
