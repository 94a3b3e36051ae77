"""The stream stage with its own consumer: raw topics in, signed curated batches out.

Faust delivers every topic of an app through one consumer and one loop: while the raw
streams' buffers are full, the sinks starve (issue 18). The stage therefore reads the raw
topics in its own consumer group, in a thread of the worker started and stopped with the
Faust app (``StageService``), and hands batches to the stage processes. Commit rule: a raw
batch's offsets are committed only after every message it produced (curated batches, dead
letters, checked heartbeats) was acknowledged by the broker, in consumption order; anything
not committed is read again after a crash (at least once; the warehouse dedups).

Memory is bounded by backpressure, not by the size of a burst: at most ``max_in_flight``
batches are in the stage, the consumer's prefetch queue and the producer's queue are capped,
and the loop stops fetching while they are full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from mode import Service

from schemas.contracts import DEAD_LETTER_TOPIC, HEARTBEAT_TOPIC, RAW_TOPIC_PATTERN, Dataset, curated_topic
from streams.curate import RawMessage, StageOutput
from streams.signing import Signer

log = logging.getLogger(__name__)

STAGE_GROUP = "vigie-stage"
LAG_EVERY_S = 5.0  # how often the raw consumer lag is measured (a gauge of the worker)


@dataclass(frozen=True)
class StageLoopConfig:
    """How the stage's consumer and producer behave (from the one settings object)."""

    client: dict[str, str]  # bootstrap and security (SASL/SSL), shared with the admin client
    group: str = STAGE_GROUP
    batch_max: int = 200  # raw messages per stage batch
    batch_within_s: float = 0.2  # longest an idle stage waits to fill a batch (freshness)
    max_in_flight: int = 4  # batches in the stage processes at once
    fetch_wait_ms: int = 500  # long polls: a short wait makes the broker spin
    session_timeout_s: float = 6.0
    discovery_s: float = 10.0  # how soon a new raw topic (pattern subscription) is read
    prefetch_kbytes: int = 16_384  # the consumer's queue of fetched messages
    producer_kbytes: int = 65_536  # the producer's queue of unacknowledged messages


@dataclass
class _Batch:
    messages: list[RawMessage]
    future: Future[StageOutput]
    offsets: dict[tuple[str, int], int]
    pending: int = -1  # deliveries awaited; -1 until produced
    retries: list[tuple[str, bytes]] = field(default_factory=list)


class StageLoop:
    """Consume → stage (``submit``) → produce signed outputs → commit after the broker's acks."""

    def __init__(
        self,
        config: StageLoopConfig,
        submit: Callable[[list[RawMessage]], Future[StageOutput]],
        on_output: Callable[[StageOutput], None],
        signer: Signer | None,
    ) -> None:
        self.config = config
        self._submit = submit
        self._on_output = on_output
        self._signer = signer
        self._stop = threading.Event()
        self._inflight: deque[_Batch] = deque()
        self._draining = False
        self.assigned = threading.Event()  # the group gave this worker its partitions once
        self.records_out = 0
        self.lag_messages = 0  # raw messages not committed yet, on this worker's partitions
        self._committed: dict[tuple[str, int], int] = {}
        self._lag_at = 0.0
        self._topics = {ds: curated_topic(ds) for ds in Dataset}
        c = config
        self._consumer = Consumer({
            **c.client,
            "group.id": c.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",  # a new raw topic is read from its beginning
            "fetch.wait.max.ms": c.fetch_wait_ms,
            "session.timeout.ms": int(c.session_timeout_s * 1000),
            "heartbeat.interval.ms": max(100, int(c.session_timeout_s * 1000 / 6)),
            "topic.metadata.refresh.interval.ms": max(1000, int(c.discovery_s * 1000)),
            "queued.max.messages.kbytes": c.prefetch_kbytes,
            "partition.assignment.strategy": "roundrobin",
        })  # fmt: skip
        self._producer = Producer({
            **c.client,
            "acks": "all",
            "enable.idempotence": True,  # works on Tansu (confluent-kafka's, not aiokafka's)
            "linger.ms": 5,
            "queue.buffering.max.kbytes": c.producer_kbytes,
        })  # fmt: skip

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its batches, commit and return."""
        self._stop.set()

    def run(self) -> None:
        """Run until ``stop()``; then drain what is in flight, commit, close."""
        # librdkafka subscribes to a regex when the name starts with ^ (new topics included).
        pattern = f"^{RAW_TOPIC_PATTERN}"
        self._consumer.subscribe([pattern], on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self._stop.is_set():
                if time.monotonic() - self._lag_at > LAG_EVERY_S:
                    self._measure_lag()
                progressed = self._advance()
                if len(self._inflight) < self.config.max_in_flight:
                    # Busy: take what has arrived; idle: wait a little for a fuller batch.
                    timeout = 0.0 if self._inflight else self.config.batch_within_s
                    if self._fetch(timeout):
                        progressed = True
                if not progressed:
                    self._wait_a_little()
            self._drain()
        finally:
            try:
                self._consumer.close()
            finally:
                self._producer.flush(30)

    # -- steps -------------------------------------------------------------------------------

    def _fetch(self, timeout: float) -> bool:
        msgs = self._consumer.consume(self.config.batch_max, timeout=timeout)
        raw: list[RawMessage] = []
        offsets: dict[tuple[str, int], int] = {}
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("raw topic fetch: %s", err.name())
                continue
            topic, partition, offset = m.topic(), m.partition(), m.offset()
            if topic is None or partition is None or offset is None:
                continue  # not a message (errors are handled above)
            raw.append(RawMessage(topic, partition, offset, m.value()))
            offsets[(topic, partition)] = offset + 1
        if not raw:
            return False
        self._inflight.append(_Batch(raw, self._submit(raw), offsets))
        return True

    def _advance(self) -> bool:
        """Produce the outputs of finished batches; commit, in order, those fully acknowledged."""
        progressed = False
        self._producer.poll(0)  # delivery callbacks
        for batch in self._inflight:
            if batch.pending == -1 and batch.future.done():
                self._produce(batch)
                progressed = True
            elif batch.retries:
                retries, batch.retries = batch.retries, []
                for topic, value in retries:
                    self._send(batch, topic, value)
        while self._inflight and self._inflight[0].pending == 0:
            self._commit(self._inflight.popleft())
            progressed = True
        return progressed

    def _produce(self, batch: _Batch) -> None:
        try:
            out = batch.future.result()
        except Exception as exc:
            # The pool replaces a dead stage process; take the batch again, once.
            log.error("stage batch failed (%s); taking it again", type(exc).__name__)
            batch.future = self._submit(batch.messages)
            out = batch.future.result()
        self._on_output(out)
        sends = [(self._topics[ds], value) for ds, value in out.curated]
        sends += [(DEAD_LETTER_TOPIC, value) for value in out.dead_letters]
        sends += [(HEARTBEAT_TOPIC, value) for value in out.heartbeats]
        batch.pending = len(sends)
        self.records_out += out.curated_records
        for topic, value in sends:
            self._send(batch, topic, value)

    def _send(self, batch: _Batch, topic: str, value: bytes) -> None:
        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                # Not committed while it is not delivered: sent again (the warehouse dedups).
                log.warning("stage output not acknowledged (%s); sending again", err)
                batch.retries.append((topic, value))
            else:
                batch.pending -= 1

        headers: dict[str, str | bytes | None] | None = None
        if self._signer is not None:
            headers = dict(self._signer.headers(topic, value))
        while True:
            try:
                self._producer.produce(topic, value=value, headers=headers, on_delivery=delivered)
                return
            except BufferError:  # the producer's queue is full: wait for acks (backpressure)
                self._producer.poll(0.05)

    def _commit(self, batch: _Batch) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.offsets.items()]
        self._committed.update(batch.offsets)
        try:
            # Synchronous while draining (a rebalance or a stop must not lose the commit).
            if self._draining:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:  # e.g. partitions revoked meanwhile: read again elsewhere
            log.warning("raw offsets not committed: %s", exc)

    def _measure_lag(self) -> None:
        # From this thread (the consumer's), with the watermarks the fetches brought (no request).
        self._lag_at = time.monotonic()
        lag = 0
        try:
            for tp in self._consumer.assignment():
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high < 0:
                    continue  # not fetched yet
                done = self._committed.get((tp.topic, tp.partition), max(low, 0))
                lag += max(0, high - done)
        except KafkaException:
            return
        self.lag_messages = lag

    def _wait_a_little(self) -> None:
        if self._inflight and self._inflight[0].pending == -1:
            # Wake as soon as the oldest batch leaves the stage.
            with contextlib.suppress(Exception):  # a timeout, or a failure _produce handles
                self._inflight[0].future.exception(timeout=0.02)
        else:
            self._producer.poll(0.01)

    def _drain(self) -> None:
        """Finish every batch in flight: produce, wait for acks, commit (synchronously)."""
        self._draining = True
        try:
            deadline = time.monotonic() + 60
            while self._inflight and time.monotonic() < deadline:
                if not self._advance():
                    self._wait_a_little()
            self._producer.flush(30)
            self._advance()
            if self._inflight:
                log.warning("%d raw batches left uncommitted: they will be read again", len(self._inflight))
                self._inflight.clear()
        finally:
            self._draining = False

    # -- rebalance ---------------------------------------------------------------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("stream stage: %d raw partitions assigned", len(partitions))
        self.assigned.set()

    def _on_revoke(self, _consumer: Any, _partitions: list[TopicPartition]) -> None:
        # Commit what is done before another worker takes these partitions; what is not done
        # is read again by whoever gets them.
        self._drain()


class StageService(Service):
    """The stage loop inside the Faust app's lifecycle: started with the app (after the stage
    processes are up, so that the worker is ready only once they are), stopped with it
    (the batches in flight are finished and committed first)."""

    def __init__(self, make_loop: Callable[[], StageLoop], warm: Callable[[], None]) -> None:
        super().__init__()
        self._make_loop = make_loop
        self._warm = warm
        self.stage: StageLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        """True once the stage processes run and the raw partitions were assigned."""
        return self.stage is not None and self.stage.assigned.is_set()

    async def on_start(self) -> None:
        aio = asyncio.get_running_loop()
        await aio.run_in_executor(None, self._warm)  # stage start-up before /ready, not after
        self.stage = self._make_loop()

        def run() -> None:
            assert self.stage is not None
            try:
                self.stage.run()
            except Exception as exc:  # a bug: the worker must not look healthy without a stage
                log.exception("the stream stage stopped")
                asyncio.run_coroutine_threadsafe(self.crash(exc), aio)

        self._thread = threading.Thread(target=run, name="stream-stage", daemon=True)
        self._thread.start()

    async def on_stop(self) -> None:
        if self.stage is not None and self._thread is not None:
            self.stage.stop()
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 90)
