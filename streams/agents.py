"""Faust wiring of the stream stage: take raw batches, run the stage, send, then ack.

Offsets of a raw batch are acknowledged only after its curated batch and dead
letters were acknowledged by the broker (at least once; the warehouse dedups).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

import faust

from schemas.contracts import (
    DEAD_LETTER_TOPIC,
    HEARTBEAT_TOPIC,
    RAW_TOPIC_PATTERN,
    Dataset,
    curated_topic,
    heartbeat_topic,
    raw_topic,
)
from streams.curate import RawMessage, StageOutput, record_metrics
from streams.signing import Signer
from streams.stewardship import StewardshipLog

log = logging.getLogger(__name__)


class StreamAgentSettings(Protocol):
    """What the stream agent reads from the one settings object (``vigie.settings.Settings``)."""

    @property
    def stream_batch_max(self) -> int: ...

    @property
    def stream_batch_within_s(self) -> float: ...


class RawSubscription:
    """The raw topics the curate agent reads: every topic under the raw prefix, known or not.

    faust-streaming's ``app.topic(pattern=...)`` subscribes to nothing (faust-streaming issue
    #62: the pattern never reaches aiokafka, and the conductor routes only named topics), so
    the pattern is applied here: the worker lists the broker's topics and ``add`` extends the
    agent's topic list — shared by the agent's clones of its channel — then asks Faust's
    conductor to resubscribe (a rebalance; a new topic is read from its beginning).
    """

    def __init__(self, app: faust.App, names: list[str]) -> None:
        self._app = app
        self.topic = app.topic(*names, value_serializer="raw", key_serializer="raw")
        # A list, not the tuple app.topic() keeps: extended in place, seen by every clone.
        self._names: list[str] = list(self.topic.topics)
        self.topic.topics = self._names

    def add(self, names: list[str]) -> list[str]:
        """Subscribe to those of ``names`` that are raw topics not read yet; return them."""
        current = set(self._names)
        new = sorted({n for n in names if n not in current and re.fullmatch(RAW_TOPIC_PATTERN, n)})
        if new:
            self._names.extend(new)
            # Faust's own trigger when a channel's topics change (Conductor.add/discard use it).
            cast(Any, self._app.topics)._flag_changes()
        return new


def register_stream_agents(
    app: faust.App,
    css_codes: list[str],
    run_stage: Callable[[list[RawMessage]], Awaitable[StageOutput]],
    stewardship: StewardshipLog,
    settings: StreamAgentSettings,
    concurrency: int = 1,
    discovered: list[str] | None = None,
    signer: Signer | None = None,
) -> RawSubscription:
    """Declare the curate agent over every raw topic: each organization's datasets and
    heartbeats, plus ``discovered`` (topics under the raw prefix found on the broker, e.g. of
    an unknown organization: they are read and dead-lettered, never left unread). ``run_stage``
    runs ``curate_messages`` off the event loop (in this process or a pool); with
    ``concurrency`` > 1, that many batches are in the stage at once. Unmapped codes and
    texts go to the stewardship log; checked heartbeats to the heartbeat topic. With a
    ``signer``, every message sent carries its MAC (the sinks store only what verifies)."""
    raw_topics = [raw_topic(css, ds) for css in css_codes for ds in Dataset]
    raw_topics += [heartbeat_topic(css) for css in css_codes]
    raw_topics += [t for t in discovered or [] if t not in raw_topics and re.fullmatch(RAW_TOPIC_PATTERN, t)]
    subscription = RawSubscription(app, raw_topics)
    source = subscription.topic
    curated = {ds: app.topic(curated_topic(ds), value_serializer="raw") for ds in Dataset}
    dead = app.topic(DEAD_LETTER_TOPIC, value_serializer="raw")
    beats = app.topic(HEARTBEAT_TOPIC, value_serializer="raw")

    def _signed(topic: faust.TopicT, value: bytes) -> dict[str, bytes] | None:
        return signer.headers(topic.get_topic_name(), value) if signer is not None else None

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
            sends = [(curated[ds], value) for ds, value in out.curated]
            sends += [(dead, value) for value in out.dead_letters]
            sends += [(beats, value) for value in out.heartbeats]
            pending = [await topic.send(value=value, headers=_signed(topic, value)) for topic, value in sends]
            await asyncio.gather(*pending)
            for event in events:
                await stream.ack(event)
            if out.dead_letters:
                log.info("stream batch: %d dead letters", len(out.dead_letters))

    app.agent(source, name="streams.curate", concurrency=concurrency)(curate)
    return subscription
