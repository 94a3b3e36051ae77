"""Faust wiring of the sinks: take a batch, write it (``sinks.batch``), then ack.

Commit rule: a curated message's offset is acknowledged after the warehouse accepted
every row it carries, or after its dead letter was acknowledged by the broker. While
the warehouse is unavailable the agent retries in place and takes nothing new, so
consumption pauses (backpressure) instead of growing memory or dropping rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import faust
import pandas as pd

from schemas import metrics
from schemas.contracts import (
    CURATED_RECORDS_FIELD,
    DEAD_LETTER_CONTRACT,
    DEAD_LETTER_TOPIC,
    HEARTBEAT_CONTRACT,
    HEARTBEAT_TOPIC,
    Dataset,
    curated_contract,
    curated_topic,
    load_contract,
)
from schemas.wire import AvroCodec
from sinks.batch import EngineSink, TableSink, write_curated
from sinks.engine_ingest import EngineRoute
from sinks.rows import (
    FACT_TABLES,
    FALLBACK_RETENTION_DAYS,
    consent_frame,
    dead_letter_frame,
    fact_frame,
    heartbeat_frame,
    retention_by_css,
)
from sinks.warehouse import Warehouse, WarehouseRejected, WarehouseUnavailable
from streams.consent import ConsentRegistry, ConsentWatcher
from streams.curate import RawMessage, dead_letter
from streams.rejection import Reason, Rejection, Stage, reason
from streams.signing import Signer

log = logging.getLogger(__name__)


class SinkAgentSettings(Protocol):
    """What the sink agents read from the one settings object (``vigie.settings.Settings``)."""

    @property
    def sink_batch_max(self) -> int: ...

    @property
    def sink_curated_batch_max(self) -> int: ...

    @property
    def sink_batch_within_s(self) -> float: ...

    @property
    def sink_retry_max_backoff_s(self) -> float: ...

    @property
    def consent_reload_s(self) -> float: ...

    @property
    def dead_letter_retention_days(self) -> int: ...


def _sink_agent(
    app: faust.App,
    topic_name: str,
    sink: TableSink,
    warehouse: Warehouse,
    codec: AvroCodec,
    settings: SinkAgentSettings,
    on_written: Callable[[list[dict[str, Any]]], None] | None = None,
    signer: Signer | None = None,
    engine: EngineSink | None = None,
    batch_max: int | None = None,
) -> None:
    topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw")
    dead = app.topic(DEAD_LETTER_TOPIC, value_serializer="raw")
    dead_contract = load_contract(DEAD_LETTER_CONTRACT)

    def signed(value: bytes) -> dict[str, bytes] | None:
        return signer.headers(DEAD_LETTER_TOPIC, value) if signer is not None else None

    async def run(stream: faust.StreamT[Any]) -> None:
        # noack_take (acks left to us, after the write) exists on Stream, not on StreamT.
        stream = cast(faust.Stream[Any], stream)
        take = batch_max or settings.sink_batch_max
        async for events in stream.noack_take(take, within=settings.sink_batch_within_s):
            messages, forged = _verified(events, signer)
            written, letters = await write_curated(
                warehouse, sink, engine, messages, codec, settings.sink_retry_max_backoff_s
            )
            letters += _forged_letters(forged, topic_name)
            if on_written is not None and written:
                on_written(written)
            if letters and topic_name == DEAD_LETTER_TOPIC:
                # A dead letter the warehouse refuses cannot become a dead letter again.
                log.error("the warehouse refused %d dead letters; they stay on %s", len(letters), topic_name)
            elif letters:
                encoded = [codec.encode(dead_contract, d) for d in letters]
                pending = [await dead.send(value=v, headers=signed(v)) for v in encoded]
                await asyncio.gather(*pending)
            for event in events:
                await stream.ack(event)

    app.agent(topic, name=f"sinks.{sink.table}")(run)


def _verified(events: Sequence[Any], signer: Signer | None) -> tuple[list[RawMessage], list[RawMessage]]:
    """The messages the worker's stage or sinks wrote (their MAC verifies), and the others."""
    good: list[RawMessage] = []
    forged: list[RawMessage] = []
    for e in events:
        m = e.message
        msg = RawMessage(m.topic, m.partition, m.offset, m.value)
        ok = signer is None or signer.verify(m.topic, m.value, m.headers)
        (good if ok else forged).append(msg)
    return good, forged


UNSIGNED = reason("message", "not written by the stream stage (no valid signature)")


def _forged_letters(forged: list[RawMessage], topic_name: str) -> list[dict[str, Any]]:
    """Messages someone else wrote on the worker's topics: never stored. A forged curated batch
    becomes a dead letter; a forged dead letter or heartbeat is logged and counted only (it
    stays on its topic)."""
    if not forged:
        return []
    metrics.DEAD_LETTERS.labels(Stage.SINK.value, Reason.UNSIGNED.value).inc(len(forged))
    log.error("%d unsigned messages on %s refused (not written by the stream stage)", len(forged), topic_name)
    if topic_name in (DEAD_LETTER_TOPIC, HEARTBEAT_TOPIC):
        return []
    now = datetime.now(UTC)
    rejection = Rejection(Stage.SINK, Reason.UNSIGNED, UNSIGNED, 0)
    return [dead_letter(msg, rejection, now, None, None) for msg in forged]


def _observe_latency(dataset: Dataset) -> Callable[[list[dict[str, Any]]], None]:
    histogram = metrics.RECORD_LATENCY.labels(dataset.value)
    field = CURATED_RECORDS_FIELD[dataset]

    def observe(batches: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        for batch in batches:
            for record in batch[field]:
                histogram.observe((now - record["detected_at"]).total_seconds())

    return observe


def _observe_heartbeats(known: Collection[str]) -> Callable[[list[dict[str, Any]]], None]:
    """The connectors' health as gauges of the worker, so one scrape covers every CSS. The
    stage checked each heartbeat against its topic's CSS; a label is still only ever an
    organization of the reference (a Prometheus label is forever, and read by everyone)."""

    def observe(beats: list[dict[str, Any]]) -> None:
        _observe_known_heartbeats([b for b in beats if b["css"] in known])

    return observe


def _observe_known_heartbeats(beats: list[dict[str, Any]]) -> None:
    received = datetime.now(UTC).timestamp()
    for beat in beats:
        css = beat["css"]
        metrics.CONNECTOR_LAST_HEARTBEAT.labels(css).set(received)
        metrics.CONNECTOR_OUTBOX_DEPTH.labels(css).set(beat["outbox_depth"])
        if beat["last_send_at"] is not None:
            metrics.CONNECTOR_LAST_SEND.labels(css).set(beat["last_send_at"].timestamp())


def register_sink_agents(
    app: faust.App,
    warehouse: Warehouse,
    codec: AvroCodec,
    settings: SinkAgentSettings,
    consent: ConsentWatcher,
    organizations: Collection[str] = (),
    signer: Signer | None = None,
    engine_registry_url: str | None = None,
) -> None:
    """Declare one sink agent per curated dataset, plus dead letters and heartbeats, and keep
    the warehouse's copy of the consent registry current. Heartbeats count only for
    ``organizations``. With a ``signer``, only messages the worker signed are stored (checked
    here, in Python, whoever decodes). With ``engine_registry_url``, the engine decodes the
    curated batches itself, fetching schemas from that registry (``sinks.engine_ingest``)."""
    for dataset in Dataset:

        def to_frame(batches: list[dict[str, Any]], ds: Dataset = dataset) -> pd.DataFrame:
            # The consent in force when the row is written sets its retention (TTL).
            return fact_frame(ds, batches, retention_by_css(consent.current(), ds))

        sink = TableSink(FACT_TABLES[dataset], curated_contract(dataset), to_frame, dataset=dataset.value)
        observe_latency = _observe_latency(dataset)
        engine = None
        if engine_registry_url:

            def retention(ds: Dataset = dataset) -> dict[str, int]:
                # The consent in force now, as in to_frame; a CSS without one gets the fallback.
                return {
                    c.css: c.retention_days for (_css, d), c in consent.current().consents.items() if d is ds
                }

            route = EngineRoute.for_contract(curated_contract(dataset))
            engine = EngineSink(route, retention, engine_registry_url, FALLBACK_RETENTION_DAYS)
        # A curated message carries a whole stage batch (~1,500 records in a burst): fewer per
        # insert than for the one-record topics, so that an insert's memory stays bounded.
        _sink_agent(app, curated_topic(dataset), sink, warehouse, codec, settings, observe_latency, signer,
                    engine, settings.sink_curated_batch_max)  # fmt: skip
    keep = settings.dead_letter_retention_days
    dead_letters = TableSink(
        "dead_letters", load_contract(DEAD_LETTER_CONTRACT), lambda d: dead_letter_frame(d, keep)
    )
    _sink_agent(app, DEAD_LETTER_TOPIC, dead_letters, warehouse, codec, settings, None, signer)
    heartbeats = TableSink("connector_heartbeats", load_contract(HEARTBEAT_CONTRACT), heartbeat_frame)
    observe = _observe_heartbeats(organizations)
    _sink_agent(app, HEARTBEAT_TOPIC, heartbeats, warehouse, codec, settings, observe, signer)

    written: dict[str, ConsentRegistry | None] = {"registry": None}

    @app.timer(settings.consent_reload_s)
    async def record_consent() -> None:
        registry = consent.current()
        if registry is written["registry"]:
            return
        loop = asyncio.get_running_loop()
        frame = consent_frame(registry, datetime.now(UTC))
        try:
            if len(frame):
                await loop.run_in_executor(None, warehouse.insert_frame, "consents", frame)
        except WarehouseUnavailable as exc:
            log.warning("consent snapshot not written yet, will retry: %s", exc)
            return
        except WarehouseRejected as exc:
            log.error("the warehouse refused the consent snapshot: %s", exc)
        written["registry"] = registry
