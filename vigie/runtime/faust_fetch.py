"""Faust's Kafka consumer with a fetch wait of our choosing.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``, not a setting. The
embedded broker (Tansu) answers a fetch that finds no data only after a pause taken from that
wait, so each idle-to-busy step of the sinks' consumer (curated batches, dead letters,
heartbeats) waited ~450 ms on it (measured: a message produced to a partition a consumer
waits on arrived after 452 ms with a 1,500 ms wait, 1 ms with 500, 250 or 100). The sinks'
consumer reads 20 partitions, so a shorter wait costs the broker little (the stage's 432 raw
partitions are another matter: ``stream_fetch_wait_ms``).
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


def transport_with_fetch_wait(fetch_wait_ms: int) -> type[faust_aiokafka.Transport]:
    """Faust's aiokafka transport whose worker consumer waits at most ``fetch_wait_ms``."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # Read by aiokafka's fetcher when the consumer starts (after this).
            consumer._fetch_max_wait_ms = fetch_wait_ms
            return consumer

    class WaitingConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        Consumer = WaitingConsumer

    return Transport
