"""The sinks' consumer waits what the settings say on a fetch, not Faust's fixed 1,500 ms."""

from __future__ import annotations

import asyncio

import faust

from vigie.runtime.faust_fetch import transport_with_fetch_wait
from vigie.settings import Settings


def test_the_worker_consumer_waits_the_configured_time_not_fausts_1500_ms() -> None:
    """On Tansu a 1,500 ms wait held each idle-to-busy fetch ~450 ms (README, issue 18). The
    consumer is built, not started: no broker is needed to read its configuration."""

    async def built_wait(wait_ms: int | None) -> int:
        app = faust.App("vigie-test", broker="kafka://127.0.0.1:1")
        if wait_ms is not None:
            app.transport = transport_with_fetch_wait(wait_ms)(app.conf.broker_consumer, app)
        consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()  # never started: releases what the constructor opened

    assert asyncio.run(built_wait(None)) == 1500  # Faust's own, which this module replaces
    assert asyncio.run(built_wait(Settings.model_fields["sink_fetch_wait_ms"].default)) == 500
    assert asyncio.run(built_wait(120)) == 120
