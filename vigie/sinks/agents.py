"""Faust wiring of the sinks: take a batch, decode, insert, and only then ack.

Commit rule: a curated message's offset is acknowledged after the warehouse
accepted every row it carries. An insert that fails is retried in place with
exponential backoff; meanwhile the agent takes nothing new, so the stream's
buffer fills and consumption pauses (backpressure) instead of growing memory
or dropping rows. A message that cannot be decoded is logged and counted, never
retried: it is acknowledged so it does not block its partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import faust
import pandas as pd

from vigie import metrics
from vigie.schemas.contracts import (
    CURATED_RECORDS_FIELD,
    DEAD_LETTER_CONTRACT,
    DEAD_LETTER_TOPIC,
    HEARTBEAT_CONTRACT,
    HEARTBEAT_TOPIC,
    Contract,
    Dataset,
    curated_contract,
    curated_topic,
    load_contract,
)
from vigie.schemas.wire import AvroCodec, WireFormatError
from vigie.settings import Settings
from vigie.sinks.rows import FACT_TABLES, dead_letter_frame, fact_frame, heartbeat_frame
from vigie.sinks.warehouse import Warehouse, WarehouseUnavailable

log = logging.getLogger(__name__)


async def insert_with_backpressure(
    warehouse: Warehouse, table: str, frame: pd.DataFrame, max_backoff_s: float
) -> None:
    """Insert, retrying with exponential backoff until the warehouse takes the rows."""
    loop = asyncio.get_running_loop()
    backoff = 0.2
    while True:
        started = time.perf_counter()
        try:
            await loop.run_in_executor(None, warehouse.insert_frame, table, frame)
        except WarehouseUnavailable as exc:
            metrics.SINK_FAILURES.labels(table).inc()
            log.warning("insert into %s failed, retrying in %.1f s: %s", table, backoff, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        metrics.SINK_BATCH_SECONDS.labels(table).observe(time.perf_counter() - started)
        metrics.SINK_ROWS.labels(table).inc(len(frame))
        return


def _sink_agent(
    app: faust.App,
    topic_name: str,
    contract: Contract,
    table: str,
    to_frame: Callable[[list[dict[str, Any]]], pd.DataFrame],
    warehouse: Warehouse,
    codec: AvroCodec,
    settings: Settings,
    on_written: Callable[[list[dict[str, Any]]], None] | None = None,
) -> None:
    topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw")

    async def sink(stream: faust.StreamT[Any]) -> None:
        # noack_take (acks left to us, after the write) exists on Stream, not on StreamT.
        stream = cast(faust.Stream[Any], stream)
        async for events in stream.noack_take(settings.sink_batch_max, within=settings.sink_batch_within_s):
            decoded = []
            for event in events:
                try:
                    decoded.append(codec.decode(event.message.value, contract))
                except WireFormatError as exc:
                    # Curated topics are written by our own stream stage only: this is a bug
                    # to see, not a record to retry forever.
                    log.error("undecodable message on %s@%d: %s", topic_name, event.message.offset, exc)
            if decoded:
                frame = to_frame(decoded)
                if len(frame):
                    await insert_with_backpressure(warehouse, table, frame, settings.sink_retry_max_backoff_s)
                if on_written is not None:
                    on_written(decoded)
            for event in events:
                await stream.ack(event)

    app.agent(topic, name=f"vigie.sinks.{table}")(sink)


def _observe_latency(dataset: Dataset) -> Callable[[list[dict[str, Any]]], None]:
    histogram = metrics.RECORD_LATENCY.labels(dataset.value)
    field = CURATED_RECORDS_FIELD[dataset]

    def observe(batches: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        for batch in batches:
            for record in batch[field]:
                histogram.observe((now - record["detected_at"]).total_seconds())

    return observe


def register_sink_agents(app: faust.App, warehouse: Warehouse, codec: AvroCodec, settings: Settings) -> None:
    """Declare one sink agent per curated dataset, plus dead letters and heartbeats."""
    for dataset in Dataset:

        def to_frame(batches: list[dict[str, Any]], ds: Dataset = dataset) -> pd.DataFrame:
            return fact_frame(ds, batches)

        _sink_agent(
            app, curated_topic(dataset), curated_contract(dataset), FACT_TABLES[dataset],
            to_frame, warehouse, codec, settings, _observe_latency(dataset),
        )  # fmt: skip
    _sink_agent(
        app, DEAD_LETTER_TOPIC, load_contract(DEAD_LETTER_CONTRACT), "dead_letters",
        dead_letter_frame, warehouse, codec, settings,
    )  # fmt: skip
    _sink_agent(
        app, HEARTBEAT_TOPIC, load_contract(HEARTBEAT_CONTRACT), "connector_heartbeats",
        heartbeat_frame, warehouse, codec, settings,
    )  # fmt: skip
