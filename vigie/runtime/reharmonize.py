"""Re-harmonization a posteriori: replay the raw topics through the stage with today's mappings.

The raw topics keep what each CSS sent (their retention is a setting). Replaying them from
a date through the same stage — same code, same pseudonym key, current mapping tables and
model — gives curated records with the same ``record_key`` and ``row_version`` (the
connector's detection time) and a newer mapping version. They leave on the curated
topics like any other batch; the worker's sinks insert them and the warehouse's
ReplacingMergeTree keeps the last insert of equal versions, so the new rows replace the
old ones and nothing doubles.

What changed is measured on the motifs d'absence: before = what the curated topic last
carried for each absence (read first, from the same date), after = what the replay
gives. Dead letters and unmapped values of the replay are counted, not sent again (the
first pass already reported them).
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from schemas.contracts import CURATED_RECORDS_FIELD, Dataset, curated_contract, curated_topic, raw_topic
from schemas.wire import AvroCodec
from streams.curate import RawMessage, StageOutput
from streams.signing import Signer
from vigie.runtime import stage_child
from vigie.runtime.broker import client_config
from vigie.runtime.stage_pool import Stage
from vigie.runtime.supervisor import RuntimeInfo
from vigie.settings import Settings

CHUNK_MESSAGES = 200  # raw messages per stage call: one take() batch's worth
IDLE_S = 3.0  # no message for this long on any assigned partition: the end of the topics


class ReharmonizeError(RuntimeError):
    """Cannot replay: no broker, bad arguments. The message is for the user."""


@dataclass
class ReharmonizeSummary:
    """What a replay did."""

    since: str
    mapping_version: str = ""
    messages: int = 0
    records: int = 0  # curated records sent again (they replace their rows)
    dead_letters: int = 0  # refused again: not sent again
    unmapped: int = 0  # values still without a mapping after the replay
    absences_before: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (before, after)
    unchanged: int = 0
    new: int = 0  # absences the curated topic had not carried yet
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since, "mapping_version": self.mapping_version, "messages": self.messages,
            "records": self.records, "dead_letters": self.dead_letters, "unmapped": self.unmapped,
            "absences_before": self.absences_before, "unchanged": self.unchanged, "new": self.new,
            "changed": [{"from": b, "to": a, "count": n} for (b, a), n in self.transitions.most_common()],
            "elapsed_s": round(self.elapsed_s, 2),
            "records_per_s": round(self.records / self.elapsed_s) if self.elapsed_s else 0,
        }  # fmt: skip


def endpoints(settings: Settings) -> tuple[str, str]:
    """The broker and registry: configured, or those of the `vigie up` running on the data dir
    (the embedded broker keeps its topics in memory: only the running one has them)."""
    if settings.broker_url and settings.registry_url:
        return settings.broker_url, settings.registry_url
    info = RuntimeInfo.read(settings.runtime_file)
    if info is None:
        raise ReharmonizeError(
            "no broker: set VIGIE_BROKER_URL and VIGIE_REGISTRY_URL, "
            f"or run `vigie up` on {settings.data_dir}"
        )
    return settings.broker_url or info.broker, settings.registry_url or info.registry_url


# -- the stage, in child processes --------------------------------------------------------
_STAGE: Stage | None = None
_CODEC: AvroCodec | None = None


def _init_child(settings: Settings) -> None:
    global _STAGE, _CODEC
    stage_child.exit_with_parent()  # an interrupted replay leaves no stage process behind
    _STAGE = Stage.from_settings(settings)
    _CODEC = _STAGE.codec


def _ready() -> bool:
    return _STAGE is not None


def _run_child(messages: list[RawMessage]) -> StageOutput:
    assert _STAGE is not None, "reharmonize child not initialized"
    return _STAGE.run(messages, absences=True)


# -- reading topics -------------------------------------------------------------------------
def _consumer(client: dict[str, str]) -> Consumer:
    # A throwaway group that commits nothing: a replay never moves the worker's offsets.
    return Consumer({
        **client, "group.id": f"vigie-reharmonize-{time.time_ns()}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
    })  # fmt: skip


def _assign_since(consumer: Consumer, topics: list[str], since_ms: int) -> int:
    """Assign every partition of the existing ``topics`` from the first message at or after
    ``since_ms``; returns how many partitions were assigned."""
    metadata = consumer.list_topics(timeout=30)
    partitions = [
        TopicPartition(t, p, since_ms)
        for t in topics
        if t in metadata.topics and metadata.topics[t].error is None
        for p in metadata.topics[t].partitions
    ]
    if not partitions:
        return 0
    try:
        starts = consumer.offsets_for_times(partitions, timeout=30)
    except KafkaException:
        # A broker without timestamp lookups: read from the start (retention bounds it).
        starts = [TopicPartition(tp.topic, tp.partition, -2) for tp in partitions]
    # -1: nothing at or after the date in that partition; leave it out.
    assigned = [tp for tp in starts if tp.offset != -1]
    if assigned:
        consumer.assign(assigned)
    return len(assigned)


def _drain(consumer: Consumer, on_batch: Callable[[list[RawMessage]], None], idle_s: float) -> None:
    """Consume until no message arrives for ``idle_s`` (the embedded broker's high watermarks
    are not reliable, so the end is found by silence, not by offsets)."""
    last = time.monotonic()
    while time.monotonic() - last < idle_s:
        batch = consumer.consume(num_messages=CHUNK_MESSAGES, timeout=0.5)
        messages = [
            RawMessage(str(m.topic()), int(m.partition() or 0), int(m.offset() or 0), m.value())
            for m in batch
            if m.error() is None
        ]
        if messages:
            on_batch(messages)
            last = time.monotonic()  # after the work: a slow batch is not silence


def _reasons_in(codec: AvroCodec, values: list[bytes], css: set[str] | None) -> list[tuple[str, int, str]]:
    """(record_key, processed_at in epoch milliseconds, absence reason) of the curated
    attendance batches ``values``."""
    contract = curated_contract(Dataset.ATTENDANCE)
    field_name = CURATED_RECORDS_FIELD[Dataset.ATTENDANCE]
    found = []
    for value in values:
        batch = codec.decode(value, contract, plain=True)  # no datetime built per record
        at = batch["processed_at"]
        for record in batch[field_name]:
            reason = record["absence_reason"]
            if reason is not None and (css is None or record["css"] in css):
                found.append((record["record_key"], at, reason))
    return found


def _run_child_reasons(values: list[bytes], css: set[str] | None) -> list[tuple[str, int, str]]:
    assert _CODEC is not None, "reharmonize child not initialized"
    return _reasons_in(_CODEC, values, css)


def _curated_before(
    client: dict[str, str],
    decode: Callable[[list[bytes]], Future[list[tuple[str, int, str]]]],
    since_ms: int,
    idle_s: float,
    in_flight: int,
) -> dict[str, tuple[int, str]]:
    """The absence reason the curated topic last carried for each record (by processing time).
    ``decode`` turns a chunk of curated messages into (key, processed_at, reason) — in the
    stage processes when there are several, so that reading history uses every core."""
    before: dict[str, tuple[int, str]] = {}
    pending: deque[Future[list[tuple[str, int, str]]]] = deque()

    def merge(found: list[tuple[str, int, str]]) -> None:
        for key, at, reason in found:
            seen = before.get(key)
            if seen is None or seen[0] <= at:
                before[key] = (at, reason)

    def take(messages: list[RawMessage]) -> None:
        pending.append(decode([m.value for m in messages if m.value is not None]))
        while len(pending) > in_flight:  # bounded: memory stays flat on a long history
            merge(pending.popleft().result())

    consumer = _consumer(client)
    try:
        if _assign_since(consumer, [curated_topic(Dataset.ATTENDANCE)], since_ms):
            _drain(consumer, take, idle_s)
    finally:
        consumer.close()
    while pending:
        merge(pending.popleft().result())
    return before


def _done(value: list[tuple[str, int, str]]) -> Future[list[tuple[str, int, str]]]:
    future: Future[list[tuple[str, int, str]]] = Future()
    future.set_result(value)
    return future


def reharmonize(
    settings: Settings,
    since: date,
    css_codes: list[str],
    datasets: list[Dataset],
    processes: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    idle_s: float = IDLE_S,
) -> ReharmonizeSummary:
    """Replay raw topics of ``css_codes`` × ``datasets`` sent since ``since`` through the stage
    and send the curated records again. ``on_progress(messages, records)`` after each chunk."""
    started = time.perf_counter()
    bootstrap, registry = endpoints(settings)
    settings = settings.model_copy(update={"broker_url": bootstrap, "registry_url": registry})
    since_ms = int(datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp() * 1000)
    summary = ReharmonizeSummary(since=since.isoformat())
    local = Stage.from_settings(settings)
    summary.mapping_version = local.mapping_version
    css_filter = set(css_codes)
    pool = (
        ProcessPoolExecutor(processes, multiprocessing.get_context("spawn"), _init_child, (settings,))
        if processes > 1
        else None
    )
    if pool is not None:
        # Start the stage processes now (each trains its model) while the curated topic is read.
        warming = [pool.submit(_ready) for _ in range(processes)]
    try:
        def decode(values: list[bytes]) -> Future[list[tuple[str, int, str]]]:
            if pool is None:
                return _done(_reasons_in(local.codec, values, css_filter))
            return pool.submit(_run_child_reasons, values, css_filter)

        before = (
            _curated_before(client_config(settings), decode, since_ms, idle_s, 2 * max(processes, 1))
            if Dataset.ATTENDANCE in datasets
            else {}
        )
        summary.absences_before = len(before)
        after: dict[str, str] = {}
        producer = Producer({
            **client_config(settings), "enable.idempotence": True, "linger.ms": 20,
            "message.max.bytes": 4_000_000,
        })  # fmt: skip
        # The sinks store only curated batches the worker network signed (streams/signing.py).
        signer = Signer(local.ctx.pseudonymizer.key)
        failures: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        def handle(out: StageOutput, n_messages: int) -> None:
            for dataset, value in out.curated:
                while True:
                    try:
                        topic = curated_topic(dataset)
                        mac: list[tuple[str, str | bytes | None]] = list(signer.headers(topic, value).items())
                        producer.produce(topic, value=value, headers=mac, on_delivery=delivered)
                        break
                    except BufferError:  # the producer's queue is full: let it drain
                        producer.poll(0.5)
                producer.poll(0)
            summary.messages += n_messages
            summary.records += out.curated_records
            summary.dead_letters += len(out.dead_letters)
            summary.unmapped += sum(out.unmapped.values())
            after.update(out.absences)  # a record sent in several versions counts once: its last
            if on_progress is not None:
                on_progress(summary.messages, summary.records)

        topics = [raw_topic(css, ds) for css in css_codes for ds in datasets]
        consumer = _consumer(client_config(settings))
        if pool is not None:
            for ready in warming:
                ready.result()
        pending: deque[tuple[Future[StageOutput], int]] = deque()
        try:

            def on_batch(messages: list[RawMessage]) -> None:
                if pool is None:
                    handle(local.run(messages, absences=True), len(messages))
                    return
                pending.append((pool.submit(_run_child, messages), len(messages)))
                while len(pending) > 2 * processes:  # bounded: memory stays flat on a long replay
                    future, n = pending.popleft()
                    handle(future.result(), n)

            if _assign_since(consumer, topics, since_ms):
                _drain(consumer, on_batch, idle_s)
            while pending:
                future, n = pending.popleft()
                handle(future.result(), n)
            remaining = producer.flush(60)
            if remaining or failures:
                raise ReharmonizeError(
                    f"the broker did not take {remaining + len(failures)} curated messages; run it again"
                )
        finally:
            consumer.close()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    for key, reason in after.items():
        old = before.get(key)
        if old is None:
            summary.new += 1
        elif old[1] == reason:
            summary.unchanged += 1
        else:
            summary.transitions[(old[1], reason)] += 1
    summary.elapsed_s = time.perf_counter() - started
    return summary


def format_count(n: int) -> str:
    """1234567 → '1 234 567' (French grouping, narrow no-break spaces)."""
    return f"{n:,}".replace(",", "\u202f")
