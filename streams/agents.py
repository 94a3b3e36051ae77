"""Faust wiring of the stream stage: take raw batches, run the stage, send, then ack.

Offsets of a raw batch are acknowledged only after its curated batch and dead
letters were acknowledged by the broker (at least once; the warehouse dedups).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

import faust

from schemas.contracts import DEAD_LETTER_TOPIC, Dataset, curated_topic, raw_topic
from streams.curate import RawMessage, StageOutput, record_metrics
from streams.stewardship import StewardshipLog

log = logging.getLogger(__name__)


class StreamAgentSettings(Protocol):
    """What the stream agent reads from the one settings object (``vigie.settings.Settings``)."""

    @property
    def stream_batch_max(self) -> int: ...

    @property
    def stream_batch_within_s(self) -> float: ...


def register_stream_agents(
    app: faust.App,
    css_codes: list[str],
    run_stage: Callable[[list[RawMessage]], Awaitable[StageOutput]],
    stewardship: StewardshipLog,
    settings: StreamAgentSettings,
    concurrency: int = 1,
) -> None:
    """Declare the curate agent over every raw topic of every organization. ``run_stage``
    runs ``curate_messages`` off the event loop (in this process or a pool); with
    ``concurrency`` > 1, that many batches are in the stage at once. Unmapped codes and
    texts go to the stewardship log."""
    raw_topics = [raw_topic(css, ds) for css in css_codes for ds in Dataset]
    source = app.topic(*raw_topics, value_serializer="raw", key_serializer="raw")
    curated = {ds: app.topic(curated_topic(ds), value_serializer="raw") for ds in Dataset}
    dead = app.topic(DEAD_LETTER_TOPIC, value_serializer="raw")

    async def curate(stream: faust.StreamT[Any]) -> None:
        # noack_take (acks left to us, after the write) exists on Stream, not on StreamT.
        stream = cast(faust.Stream[Any], stream)
        loop = asyncio.get_running_loop()
        async for events in stream.noack_take(
            settings.stream_batch_max, within=settings.stream_batch_within_s
        ):
            messages = [
                RawMessage(e.message.topic, e.message.partition, e.message.offset, e.message.value)
                for e in events
            ]
            # Decoding, processing and encoding run off the event loop so that
            # consumer heartbeats keep flowing during a large batch.
            out = await run_stage(messages)
            record_metrics(out)
            await loop.run_in_executor(None, stewardship.record, out.unmapped)
            pending = [await curated[ds].send(value=value) for ds, value in out.curated]
            pending += [await dead.send(value=value) for value in out.dead_letters]
            await asyncio.gather(*pending)
            for event in events:
                await stream.ack(event)
            if out.dead_letters:
                log.info("stream batch: %d dead letters", len(out.dead_letters))

    app.agent(source, name="streams.curate", concurrency=concurrency)(curate)
