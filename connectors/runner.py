"""The connector: poll the sources into the outbox, drain the outbox to Kafka, beat.

One loop, one thread: polling stops while the outbox is full (backpressure on the
sources), sending never blocks polling for long, and the broker being away only
lets the outbox grow. SIGTERM/SIGINT finish the current step, wait briefly for
in-flight deliveries, and exit; anything unacknowledged stays in the outbox.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connectors import CONNECTOR_VERSION
from connectors.config import ConnectorConfig, FileDropSourceConfig
from connectors.outbox import Outbox, OutboxItem
from connectors.publisher import make_producer
from connectors.source_rows import build_batches
from connectors.sources import Poll, Source, SourceError
from connectors.sources.file_drop import FileDropSource
from connectors.sources.sql import SqlSource
from schemas import metrics
from schemas.contracts import (
    HEARTBEAT_CONTRACT,
    RAW_CONTRACTS,
    heartbeat_topic,
    load_contract,
    parse_raw_topic,
    raw_topic,
)
from schemas.wire import AvroCodec, encode_body

log = logging.getLogger(__name__)


class RejectionLedger:
    """Rows and files refused today (the connector's local date), kept in the outbox so a
    restart does not hide them; they travel in every heartbeat, so the status view shows
    "fichier refusé (n lignes)" for the CSS instead of a silent connector."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def _key(self) -> str:
        return f"rejections:{datetime.now().date().isoformat()}"

    def _load(self) -> dict[str, Any]:
        text = self._outbox.get(self._key())
        return json.loads(text) if text else {"rows": 0, "files": 0, "last": None, "last_at": None}

    def add(self, rows: int, files: int, rejections: list[Any]) -> None:
        day = self._load()
        day["rows"] += rows
        day["files"] += files
        if rejections:
            # Column and rule only: a rejection reason never quotes a value or a file name.
            day["last"] = str(rejections[0])[:300]
            day["last_at"] = datetime.now(UTC).isoformat()
        self._outbox.put(self._key(), json.dumps(day))

    def heartbeat_fields(self) -> dict[str, Any]:
        day = self._load()
        return {
            "rejected_rows": int(day["rows"]),
            "rejected_files": int(day["files"]),
            "last_rejection": day["last"],
            "last_rejection_at": datetime.fromisoformat(day["last_at"]) if day["last_at"] else None,
        }


@dataclass
class ConnectorStats:
    """What the connector did since it started."""

    polls: int = 0
    batches_enqueued: int = 0
    records_enqueued: int = 0
    batches_acked: int = 0
    send_failures: int = 0
    skipped_rows: int = 0
    source_errors: int = 0
    last_source_error: str | None = None
    last_send_at: datetime | None = None
    last_poll_at: float | None = None
    backpressure: bool = False
    acked_seqs: list[int] = field(default_factory=list)


class Connector:
    """One CSS's connector over its configured sources."""

    def __init__(
        self, config: ConnectorConfig, producer: Producer | None = None, codec: AvroCodec | None = None
    ) -> None:
        self.config = config
        self.outbox = Outbox(config.outbox)
        self.sources: list[Source] = [
            FileDropSource(s, config.css, self.outbox)
            if isinstance(s, FileDropSourceConfig)
            else SqlSource(s, config.css, self.outbox)
            for s in config.sources
        ]
        self.producer = producer or make_producer(config.broker.bootstrap, dict(config.broker.config))
        self.codec = codec or AvroCodec.from_url(config.registry.url, dict(config.registry.config))
        self.stats = ConnectorStats()
        self.rejections = RejectionLedger(self.outbox)
        self._in_flight: set[int] = set()
        self._stop = threading.Event()
        self.left_undelivered = 0
        # False for a poll that only fills the outbox (``vigie connector poll``).
        self.sending = True
        self._room_deadline: float | None = None
        self._out_of_room = False

    def stop(self) -> None:
        self._stop.set()

    # -- sources → outbox -------------------------------------------------------------------
    def poll_sources(self) -> int:
        """Poll every source once; return the records enqueued. Skipped while the outbox is full."""
        depth = self.outbox.depth()
        # A poll that does not send (``vigie connector poll``) has no reason to wait for room.
        full = self.sending and depth >= self.config.outbox_max_rows
        if full != self.stats.backpressure:
            log.warning(
                "outbox %s: %d batches waiting", "full, sources paused" if full else "draining", depth
            )
        self.stats.backpressure = full
        if full:
            return 0
        enqueued = 0
        for source in self.sources:
            try:
                for poll in source.poll():
                    enqueued += self._commit(source, poll)
                    self._make_room()
                    if self._stop.is_set() or self._out_of_room:
                        break  # a file left half-read is read again: its sent rows are recognised
            except SourceError as exc:
                # One line; the other sources still run, and the next poll tries again.
                self.stats.source_errors += 1
                self.stats.last_source_error = str(exc)
                log.warning("source not read: %s", exc)
        self.stats.records_enqueued += enqueued
        self.stats.polls += 1
        self.stats.last_poll_at = time.time()
        return enqueued

    def _make_room(self) -> None:
        """Between the chunks of a long read (a large file, a first load), send what is ready
        and wait while the outbox is full: the outbox stays bounded whatever the source's size."""
        if not self.sending:
            return
        self.send_pending()
        self.settle(0)
        while self.outbox.depth() >= self.config.outbox_max_rows and not self._stop.is_set():
            if self._room_deadline is not None and time.monotonic() > self._room_deadline:
                self._out_of_room = True  # --once with the broker away: stop reading, exit 1
                return
            self.send_pending()
            self.settle(0.5)

    def _commit(self, source: Source, poll: Poll) -> int:
        """Encode a poll's changes into batches and store them with the poll's state."""
        self.stats.skipped_rows += poll.skipped_rows
        if poll.skipped_rows or poll.rejected_files:
            self.rejections.add(poll.skipped_rows, poll.rejected_files, poll.rejections)
        now = datetime.now(UTC)
        batches = build_batches(
            self.config.css, source.source_system, poll.changes, now, self.config.batch_max_records
        )
        items = [
            OutboxItem(
                raw_topic(self.config.css, dataset),
                batch.get("group_code"),
                RAW_CONTRACTS[dataset],
                encode_body(load_contract(RAW_CONTRACTS[dataset]), batch),
                n,
            )
            for dataset, batch, n in batches
        ]
        self.outbox.commit_poll(source.id, items, poll.upserts, poll.deletes, poll.kv)
        if poll.on_committed is not None:
            poll.on_committed()
        self.stats.batches_enqueued += len(items)
        return sum(i.records for i in items)

    # -- outbox → Kafka ---------------------------------------------------------------------
    def _delivered(self, seq: int, records: int, dataset: str) -> Any:
        def callback(err: KafkaError | None, _msg: Message) -> None:
            self._in_flight.discard(seq)
            if err is not None:
                self.stats.send_failures += 1
                log.warning("delivery failed, batch stays in the outbox: %s", err.str())
                return
            self.stats.acked_seqs.append(seq)
            self.stats.last_send_at = datetime.now(UTC)
            metrics.CONNECTOR_EVENTS_SENT.labels(dataset).inc(records)
            metrics.CONNECTOR_LAST_SEND.labels(self.config.css).set(self.stats.last_send_at.timestamp())

        return callback

    def send_pending(self) -> int:
        """Hand the oldest outbox batches to the producer, up to ``max_in_flight``."""
        room = self.config.max_in_flight - len(self._in_flight)
        if room <= 0:
            return 0
        sent = 0
        for item in self.outbox.pending(room, self._in_flight):
            contract = load_contract(item.contract)
            try:
                value = self.codec.frame(contract, item.body)
            except Exception as exc:  # registry unreachable: retry on the next turn
                log.warning("schema registry unavailable, sending later: %s", type(exc).__name__)
                break
            try:
                self.producer.produce(
                    item.topic, value=value, key=item.key,
                    on_delivery=self._delivered(item.seq, item.records, parse_raw_topic(item.topic)[1].value),
                )  # fmt: skip
            except BufferError:
                break
            self._in_flight.add(item.seq)
            sent += 1
        return sent

    def settle(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks and remove acknowledged batches from the outbox."""
        self.producer.poll(timeout_s)
        if self.stats.acked_seqs:
            self.outbox.ack(self.stats.acked_seqs)
            self.stats.batches_acked += len(self.stats.acked_seqs)
            self.stats.acked_seqs = []
        metrics.CONNECTOR_OUTBOX_DEPTH.labels(self.config.css).set(self.outbox.depth())

    def heartbeat(self) -> None:
        lag = None if self.stats.last_poll_at is None else round(time.time() - self.stats.last_poll_at, 3)
        beat = {
            "css": self.config.css,
            "connector_id": self.config.name,
            "sent_at": datetime.now(UTC),
            "outbox_depth": self.outbox.depth(),
            "last_send_at": self.stats.last_send_at,
            "source_lag_s": lag,
            "connector_version": CONNECTOR_VERSION,
            **self.rejections.heartbeat_fields(),
        }
        try:
            value = self.codec.encode(load_contract(HEARTBEAT_CONTRACT), beat)
            self.producer.produce(heartbeat_topic(self.config.css), value=value, key=self.config.css)
        except Exception as exc:  # a missed heartbeat is itself the signal; never stop for it
            log.warning("heartbeat not sent: %s", type(exc).__name__)

    def drained(self) -> bool:
        return not self._in_flight and self.outbox.depth() == 0

    def _waiting(self) -> bool:
        return any(source.waiting for source in self.sources)

    def run(self, once: bool = False, drain_timeout_s: float = 60.0) -> None:
        """Loop until ``stop()``. With ``once``: poll until every source was read (files
        that were still settling included), send everything, and return."""
        next_poll = next_beat = 0.0
        deadline = None
        if once:
            self._room_deadline = time.monotonic() + drain_timeout_s
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_poll and (not once or self.stats.polls == 0 or self._waiting()):
                self.poll_sources()
                next_poll = now + (min(self.config.poll_every_s, 0.5) if once else self.config.poll_every_s)
            if now >= next_beat:
                self.heartbeat()
                next_beat = now + self.config.heartbeat_every_s
            self.send_pending()
            self.settle(0.2)
            if once:
                deadline = deadline or time.monotonic() + drain_timeout_s
                if (
                    (self.drained() and not self._waiting())
                    or time.monotonic() > deadline
                    or self._out_of_room
                ):
                    break
        # A last beat after the sends, so the network sees the outbox as it is left (empty,
        # or what is still waiting), not as it was before the sends.
        self.settle(0)
        self.heartbeat()
        self.shutdown()

    def undelivered(self) -> int:
        """Batches still waiting for the broker (read before ``shutdown`` closes the outbox)."""
        return self.outbox.depth()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._in_flight and time.monotonic() < deadline:
            self.settle(0.2)
        self.producer.flush(max(0.0, deadline - time.monotonic()))
        self.settle(0)
        self.left_undelivered = self.outbox.depth()
        for source in self.sources:
            source.close()
        self.outbox.close()
