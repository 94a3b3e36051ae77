"""One sink batch: decode curated messages, insert their rows, isolate what the warehouse refuses.

Broker-free (messages in, dead letters out) so it is tested against the real engine
without Kafka; the Faust agent only feeds it, sends the dead letters, then acks.

The two failure kinds are handled apart:
- ``WarehouseUnavailable``: retried in place with exponential backoff, forever. The
  caller takes nothing new meanwhile, so consumption pauses (backpressure) and memory
  stays bounded by the stream buffer.
- ``WarehouseRejected``: the batch is split and each message inserted alone, so that
  one poison message cannot hold back the others; the refused ones become dead
  letters (stage ``sink``, reason ``warehouse_rejected``), never retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pandas as pd

from schemas import metrics
from schemas.contracts import Contract, Dataset
from schemas.wire import AvroCodec, WireFormatError
from sinks.engine_ingest import EngineRoute, batch_record_count
from sinks.warehouse import AvroIngest, Warehouse, WarehouseRejected, WarehouseUnavailable
from streams.curate import RawMessage, dead_letter
from streams.rejection import Reason, Rejection, Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSink:
    """How the messages of one topic become rows of one table."""

    table: str
    contract: Contract
    to_frame: Callable[[list[dict[str, Any]]], pd.DataFrame]
    dataset: str | None = None


@dataclass
class EngineSink:
    """A fact sink whose rows the engine decodes itself (``sinks.engine_ingest``); after
    ``max_failures`` batches in a row the engine could not take, the Python route alone is
    used (e.g. a server that cannot reach the schema registry), and the log says so once."""

    route: EngineRoute
    retention: Callable[[], Mapping[str, int]]  # CSS → retention days of the consent now
    registry_url: str
    fallback_days: int
    max_failures: int = 3
    failures: int = 0

    @property
    def enabled(self) -> bool:
        return self.failures < self.max_failures


def _registry_unreachable(exc: WarehouseUnavailable) -> bool:
    # The engine could not fetch a writer schema: the warehouse is fine, the Python route
    # (whose codec knows the schemas) takes the batch rather than waiting.
    return "schema id" in str(exc)


async def write_curated(
    warehouse: Warehouse,
    sink: TableSink,
    engine: EngineSink | None,
    messages: list[RawMessage],
    codec: AvroCodec,
    max_backoff_s: float,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write one batch of curated messages, decoded by the engine when it can; otherwise (or
    when the engine refuses the batch) by ``write_batch``, which isolates what is refused.
    Returns (decoded messages for observers — with the engine route, one sample message
    rather than all, since nothing else is decoded in Python —, dead letters)."""
    if engine is None or not engine.enabled or not messages or not isinstance(warehouse, AvroIngest):
        return await write_batch(warehouse, sink, messages, codec, max_backoff_s)
    try:
        rows = sum(batch_record_count(m.value or b"") for m in messages)
        columns, select = engine.route.columns_and_select(engine.retention(), engine.fallback_days)
        data = b"".join(m.value or b"" for m in messages)
        insert = partial(warehouse.insert_avro, sink.table, columns, select, engine.route.structure,
                         engine.route.array, data, engine.registry_url)  # fmt: skip
        await _with_backpressure(insert, sink.table, rows, max_backoff_s, _registry_unreachable)
    except (WarehouseRejected, WarehouseUnavailable, ValueError) as exc:
        log.warning("the engine refused a batch of %d messages for %s; the Python route isolates: %s",
                    len(messages), sink.table, exc)  # fmt: skip
        written, letters = await write_batch(warehouse, sink, messages, codec, max_backoff_s)
        if not letters:
            # Python took every message: the engine, not the data, is the problem.
            engine.failures += 1
            if not engine.enabled:
                log.error("the engine could not take %s %d times in a row; the Python route from now on",
                          sink.table, engine.failures)  # fmt: skip
        return written, letters
    engine.failures = 0
    # Observers (latency) get the smallest message, decoded: a sample, cheap at any rate.
    smallest = min(messages, key=lambda m: len(m.value or b""))
    try:
        return [codec.decode(smallest.value, sink.contract)], []
    except WireFormatError:
        return [], []


async def insert_with_backpressure(
    warehouse: Warehouse, table: str, frame: pd.DataFrame, max_backoff_s: float
) -> None:
    """Insert, retrying with exponential backoff until the warehouse takes the rows.

    Raises ``WarehouseRejected`` (not retried) when the warehouse refuses the rows."""
    await _with_backpressure(partial(warehouse.insert_frame, table, frame), table, len(frame), max_backoff_s)


async def _with_backpressure(
    insert: Callable[[], None], table: str, rows: int, max_backoff_s: float,
    not_retried: Callable[[WarehouseUnavailable], bool] = lambda _exc: False,
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    backoff = 0.2
    while True:
        started = time.perf_counter()
        try:
            await loop.run_in_executor(None, insert)
        except WarehouseUnavailable as exc:
            if not_retried(exc):
                raise
            metrics.SINK_FAILURES.labels(table).inc()
            log.warning("insert into %s failed, retrying in %.1f s: %s", table, backoff, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        metrics.SINK_BATCH_SECONDS.labels(table).observe(time.perf_counter() - started)
        metrics.SINK_BATCH_ROWS.labels(table).observe(rows)
        metrics.SINK_ROWS.labels(table).inc(rows)
        return


def _refusal(sink: TableSink, msg: RawMessage, decoded: dict[str, Any] | None, reason: Reason,
             detail: str, now: datetime) -> dict[str, Any]:  # fmt: skip
    records: list[Any] = []
    css: Any = None
    if decoded is not None:
        records = next((v for v in decoded.values() if isinstance(v, list)), [decoded])
        # Curated batches carry the CSS on each record; heartbeats and dead letters on themselves.
        css = decoded.get("css") or next((r.get("css") for r in records if isinstance(r, dict)), None)
    rejection = Rejection(Stage.SINK, reason, detail[:500], len(records))
    metrics.DEAD_LETTERS.labels(Stage.SINK.value, reason.value).inc()
    dataset = Dataset(sink.dataset) if sink.dataset else None
    return dead_letter(msg, rejection, now, css if isinstance(css, str) else None, dataset, msg.value)


async def write_batch(
    warehouse: Warehouse,
    sink: TableSink,
    messages: list[RawMessage],
    codec: AvroCodec,
    max_backoff_s: float,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write one batch; return (the decoded messages written, dead letters for the rest)."""
    now = datetime.now(UTC)
    decoded: list[tuple[RawMessage, dict[str, Any]]] = []
    letters: list[dict[str, Any]] = []
    for msg in messages:
        try:
            decoded.append((msg, codec.decode(msg.value, sink.contract)))
        except WireFormatError as exc:
            # Curated topics are written by our own stream stage: this is a bug to see.
            log.error("undecodable message on %s@%d: %s", msg.topic, msg.offset, exc)
            letters.append(_refusal(sink, msg, None, Reason.UNDECODABLE, str(exc), now))
    if not decoded:
        return [], letters
    try:
        frame = sink.to_frame([d for _, d in decoded])
        if len(frame):
            await insert_with_backpressure(warehouse, sink.table, frame, max_backoff_s)
        return [d for _, d in decoded], letters
    except (WarehouseRejected, ValueError, TypeError, KeyError) as exc:
        log.error("%s refused a batch of %d messages, isolating: %s", sink.table, len(decoded), exc)
    written = []
    for msg, value in decoded:
        try:
            frame = sink.to_frame([value])
            if len(frame):
                await insert_with_backpressure(warehouse, sink.table, frame, max_backoff_s)
            written.append(value)
        except (WarehouseRejected, ValueError, TypeError, KeyError) as exc:
            letters.append(_refusal(sink, msg, value, Reason.WAREHOUSE_REJECTED, str(exc), now))
    return written, letters
