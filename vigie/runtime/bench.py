"""``vigie bench``: measured throughput, latency and memory of the embedded pipeline.

One run, four phases:
1. load: N attendance marks, Avro-encoded and batched as connectors send them (one
   sheet per message), are produced to the raw topics before anything is timed;
2. throughput: the worker starts; the clock runs from its readiness (stage processes up,
   partitions assigned) until all N records are queryable in ClickHouse (the worker's row
   counter, read from its small ``/progress`` view every 0.1 s);
3. latency: marks are produced at a fixed rate (default 10,000/s for 60 s); record→queryable
   latency is the warehouse's ingestion time minus the record's detection time, per record;
4. baseline: the same raw messages on a fresh broker with the same topics and partitions,
   consumed (same fetch wait) → decoded → inserted into a table of the same shape as
   ``attendance_marks`` by a plain confluent-kafka loop with no processing, for the ratio.
Peak RSS is the worker's high-water mark (VmHWM) plus its stage processes'. CPU per record
is each process's user + system time over the timed window, divided by the records; the
worker's figure includes the stage batches its own thread runs (``stream_share_worker``).
Before the worker starts, the stage alone is timed on a sample of the input in the bench's
own process (one core, cold caches as a new stage process has them), with the motif
d'absence classifier's part of it: ``stage_alone`` and ``classifier`` in the CPU figures.
With ``runs`` > 1 the whole run is repeated and every figure is the median.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
    # CPU time per record over the timed window, by process (µs): worker main process, its
    # stage processes together, the broker; and the baseline loop and its broker.
    cpu_us_per_record: dict[str, float] = field(default_factory=dict)
    load_average: float = 0.0  # 1-minute load average when the run ended (a noisy machine shows)
    runs: list[dict[str, Any]] = field(default_factory=list)  # each run, when there are several

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def median_result(results: list[BenchResult]) -> BenchResult:
    """Every figure the median over the runs (the ratio recomputed from the medians), with the
    runs themselves under ``runs``."""
    if len(results) == 1:
        return results[0]

    def med(name: str) -> float:
        return float(statistics.median(getattr(r, name) for r in results))

    rate, base = med("events_per_s"), med("baseline_events_per_s")
    cpu_keys = sorted({k for r in results for k in r.cpu_us_per_record})
    cpu = {k: round(statistics.median(r.cpu_us_per_record.get(k, 0.0) for r in results), 1) for k in cpu_keys}
    first = results[0]
    return BenchResult(
        events=first.events, events_per_s=round(rate, 1), baseline_events_per_s=round(base, 1),
        ratio=round(rate / base, 3) if base else 0.0, p50_latency_s=med("p50_latency_s"),
        p99_latency_s=med("p99_latency_s"), peak_rss_mb=med("peak_rss_mb"), messages=first.messages,
        elapsed_s=med("elapsed_s"), baseline_elapsed_s=med("baseline_elapsed_s"),
        latency_rate_per_s=first.latency_rate_per_s, latency_events=int(med("latency_events")),
        cpu_us_per_record=cpu, load_average=med("load_average"),
        runs=[{k: v for k, v in r.to_json().items() if k != "runs"} for r in results],
    )  # fmt: skip


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
    return load_raw_counted(producer, codec, sheets, records, day)[0]


def load_raw_counted(
    producer: Producer, codec: AvroCodec, sheets: SheetFactory, records: int, day: date
) -> tuple[list[tuple[str, bytes]], int]:
    """``load_raw``, with the marks the messages hold (counted as they are made)."""
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
    return messages, count


def _count(client: httpx.Client, web_url: str) -> int:
    # The worker's own counter of attendance rows inserted, from its small /progress view: not
    # a warehouse query nor the whole /metrics page, so that measuring does not slow down what
    # it measures. (No crash here: no redelivery.)
    rows: dict[str, int] = client.get(f"{web_url}/progress", timeout=60).json()["rows"]
    return int(rows.get("attendance_marks", 0))


def _wait_count(web_url: str, target: int, timeout_s: float, every_s: float = 0.1) -> float:
    deadline = time.monotonic() + timeout_s
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            if _count(client, web_url) >= target:
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


def child_processes(pid: int) -> set[int]:
    """The child processes of ``pid`` (Linux /proc), e.g. a worker's stage processes."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return children


def _peak_rss_mb(pid: int) -> float:
    """The worker's high-water RSS plus its stage processes' (each one's own peak, summed)."""
    return _hwm_mb(pid) + sum(_hwm_mb(c) for c in child_processes(pid))


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _pid_of(broker: Any) -> int:
    # The broker's process (TansuBroker keeps it private; read-only use, for CPU figures).
    proc = getattr(broker, "_proc", None)
    return int(proc.pid) if proc is not None else 0


def _cpu_snapshot(processes: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    return {name: {p: cpu_seconds(p) for p in pids} for name, pids in processes.items()}


def _cpu_per_record(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], records: int
) -> dict[str, float]:
    """µs per record by group of processes; one absent at the start counts from zero."""
    used = {
        k: sum(cpu - before.get(k, {}).get(p, 0.0) for p, cpu in pids.items()) for k, pids in after.items()
    }
    return {k: round(v * 1e6 / max(records, 1), 1) for k, v in used.items()}


# The baseline inserts into a table of the same shape as attendance_marks, with what the raw
# marks carry in the columns the stage would fill (no keying, no harmonization).
_BASELINE_COLUMNS = [
    "event_id", "record_key", "css", "school_code", "group_code", "period", "sheet_date",
    "student_pseudonym", "key_id", "age_band", "status", "absence_reason", "reason_mapped",
    "occurred_at", "detected_at", "mapping_version", "processed_at", "row_version", "is_deleted",
    "retention_days",
]  # fmt: skip


def baseline(
    bootstrap: str, codec: AvroCodec, warehouse: ChdbWarehouse, records: int, topics: list[str],
    fetch_wait_ms: int = 500,
) -> float:  # fmt: skip
    """Plain consume → decode → insert of the raw messages, no processing: seconds taken."""
    db = warehouse.database
    warehouse.command(f"CREATE TABLE IF NOT EXISTS {db}.passthrough AS {db}.attendance_marks")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-baseline-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.wait.max.ms": fetch_wait_ms})  # fmt: skip
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
            now = datetime.now(UTC)
            for msg in messages:
                if msg.error() is not None:
                    continue
                s = codec.decode(msg.value(), contract)
                for m in s["marks"]:
                    rows.append((m["event_id"], m["record_key"] or m["event_id"], s["css"], s["school_code"], s["group_code"],
                                 s["period"], s["sheet_date"], m["student_local_id"], "", None, m["status_code"],
                                 None, True, m["occurred_at"], m["detected_at"], "baseline", now,
                                 int(m["detected_at"].timestamp() * 1000), 0, 365))  # fmt: skip
            if rows:
                frame = pd.DataFrame(rows, columns=_BASELINE_COLUMNS)
                frame["sheet_date"] = pd.to_datetime(frame["sheet_date"])
                warehouse.insert_frame("passthrough", frame)
                consumer.commit(asynchronous=False)
                done += len(rows)
    finally:
        consumer.close()
    return time.monotonic() - (started or time.monotonic())


def run_bench(
    settings: Settings, records: int, latency_rate: int, latency_seconds: float, seed: int,
    say: Callable[[str], None], runs: int = 1,
) -> BenchResult:  # fmt: skip
    """Run the four phases ``runs`` times, each on a throw-away data directory; the median."""
    results = []
    for n in range(runs):
        if runs > 1:
            say(f"run {n + 1} of {runs}")
        results.append(_run_once(settings, records, latency_rate, latency_seconds, seed, say))
    return median_result(results)


def _run_once(
    settings: Settings, records: int, latency_rate: int, latency_seconds: float, seed: int,
    say: Callable[[str], None],
) -> BenchResult:  # fmt: skip
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
        messages, total = load_raw_counted(producer, codec, sheets, records, day)
        loaded = len(messages)
        say(f"loaded {total:,} marks in {loaded:,} sheets; timing the stage alone on a sample…")
        stage_cpu = stage_profile(bench_settings, registry_url, messages)
        say(f"stage alone: {stage_cpu}; starting the worker")
        info = runtime.start_worker(say=lambda line: None)
        processes = {"worker": [info.worker_pid], "stage": sorted(child_processes(info.worker_pid)),
                     "broker": [_pid_of(getattr(runtime, "_broker", None))]}  # fmt: skip
        cpu0 = _cpu_snapshot(processes)
        t0 = time.monotonic()
        # At least 10 minutes; a school day (7 M marks) at a slow 5k/s would take 23.
        t1 = _wait_count(info.web_url, total, timeout_s=max(600.0, total / 5000))
        # Stage processes started inside the window (a pool started lazily) count whole.
        processes["stage"] = sorted(set(processes["stage"]) | child_processes(info.worker_pid))
        cpu = _cpu_per_record(cpu0, _cpu_snapshot(processes), total)
        elapsed = t1 - t0
        say(f"end to end: {total:,} records in {elapsed:.1f} s ({total / elapsed:,.0f} records/s); "
            f"CPU µs/record {cpu}")  # fmt: skip

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
            base, base_cpu = _baseline_run(bench_settings, work, messages, total, warehouse)
        finally:
            warehouse.close()
        cpu.update(base_cpu)
        cpu.update(stage_cpu)
        return BenchResult(
            events=total, events_per_s=round(total / elapsed, 1), baseline_events_per_s=round(total / base, 1),
            ratio=round(base / elapsed, 3), p50_latency_s=round(float(q["p50"]), 3),
            p99_latency_s=round(float(q["p99"]), 3), peak_rss_mb=round(peak, 1), messages=loaded,
            elapsed_s=round(elapsed, 2), baseline_elapsed_s=round(base, 2), latency_rate_per_s=latency_rate,
            latency_events=int(q["n"]), cpu_us_per_record=cpu, load_average=round(os.getloadavg()[0], 2),
        )  # fmt: skip
    finally:
        runtime.stop()
        shutil.rmtree(work, ignore_errors=True)


class _TimedClassifier:
    """The harmonizer's motif d'absence classifier, with the time spent in it added up."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.seconds = 0.0

    def classify(self, css: str, code: str | None, text: str | None) -> Any:
        started = time.perf_counter()
        try:
            return self._inner.classify(css, code, text)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def stage_profile(
    settings: Settings, registry_url: str, messages: list[tuple[str, bytes]], sample_records: int = 30_000
) -> dict[str, float]:
    """CPU µs per record of the stage alone on one core, and of the classifier within it, over
    the first ``sample_records`` of the input, in batches as the stage takes them. A fresh
    stage (cold caches, as a new stage process); a throw-away key (HMAC costs the same)."""
    from pydantic import SecretStr

    from streams.curate import RawMessage
    from vigie.runtime.stage_pool import Stage

    key = SecretStr("bench-" + "k" * 32)
    # The bench's model cache: trained here when it is not yet (1–3 min with the sentence
    # embedding), read back by the worker, which would otherwise train it a second time.
    profiled = settings.model_copy(update={"pseudonym_key": key, "registry_url": registry_url})
    stage = Stage.from_settings(profiled)
    timed = _TimedClassifier(stage.ctx.harmonizer.absence)
    stage.ctx.harmonizer.absence = timed  # type: ignore[assignment]
    contract = raw_contract(Dataset.ATTENDANCE)
    raw: list[RawMessage] = []
    records = 0
    for offset, (topic, value) in enumerate(messages):
        raw.append(RawMessage(topic, 0, offset, value))
        records += len(stage.codec.decode(value, contract)["marks"])
        if records >= sample_records:
            break
    batch = settings.stream_batch_max
    started = time.process_time()
    for i in range(0, len(raw), batch):
        stage.run(raw[i : i + batch])
    seconds = time.process_time() - started
    return {"stage_alone": round(seconds * 1e6 / max(records, 1), 1),
            "classifier": round(timed.seconds * 1e6 / max(records, 1), 1)}  # fmt: skip


def _baseline_run(
    settings: Settings, work: Path, messages: list[tuple[str, bytes]], total: int, warehouse: ChdbWarehouse
) -> tuple[float, dict[str, float]]:
    from vigie.runtime.broker import TansuBroker, ensure_topics
    from vigie.runtime.registry import RegistryServer

    broker = TansuBroker(0, work / "baseline-tansu.log").start()
    registry = RegistryServer("127.0.0.1", 0, settings.data_dir / "registry.json").start()
    try:
        # The same raw topics and partitions as the pipeline read.
        topics = sorted({t for t, _ in messages})
        ensure_topics(broker.bootstrap, topics, settings.raw_topic_partitions)
        producer = make_producer(broker.bootstrap, {"linger.ms": 50, "batch.num.messages": 10000})
        for topic, value in messages:
            _produce(producer, topic, value)
            producer.poll(0)
        flush(producer, 120)
        del producer
        processes = {"baseline": [os.getpid()], "baseline_broker": [_pid_of(broker)]}
        before = _cpu_snapshot(processes)
        seconds = baseline(broker.bootstrap, AvroCodec.from_url(registry.url), warehouse, total, topics,
                           settings.stream_fetch_wait_ms)  # fmt: skip
        return seconds, _cpu_per_record(before, _cpu_snapshot(processes), total)
    finally:
        registry.stop()
        broker.stop()
