"""Publish a CSS's batches to its raw topics: Avro (Confluent wire format) over Kafka.

One ``ConnectorPublisher`` per CSS; several may share one confluent-kafka producer
(the simulator runs the whole network in one process). Delivery is confirmed by
callback: the counts below only move when the broker acknowledged a message.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from connectors import CONNECTOR_VERSION
from schemas import metrics
from schemas.contracts import (
    HEARTBEAT_CONTRACT,
    RAW_RECORDS_FIELD,
    Dataset,
    heartbeat_topic,
    load_contract,
    raw_contract,
    raw_topic,
)
from schemas.wire import AvroCodec


def make_producer(bootstrap: str, extra: dict[str, Any] | None = None) -> Producer:
    """An at-least-once producer (acks from all replicas); ``extra`` passes TLS/SASL settings
    through, and may turn idempotence on where the broker keeps producer state."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        # Not idempotent by default: measured here, an idempotent producer stalls for good
        # after a Tansu restart (the broker forgets producer ids), while a re-sent message
        # costs nothing downstream (same event_id, deduplicated by the warehouse).
        "enable.idempotence": False,
        "linger.ms": 20,
        "message.timeout.ms": 300_000,
        # A broker restart is expected and retried; librdkafka need not print each disconnect.
        "log.connection.close": False,
    }
    config.update(extra or {})
    return Producer(config)


@dataclass
class DeliveryStats:
    """What the broker acknowledged, per dataset (records, not messages)."""

    acked_records: dict[str, int] = field(default_factory=dict)
    failed_messages: int = 0
    last_send_at: datetime | None = None
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class ConnectorPublisher:
    """The Kafka side of one CSS's connector."""

    def __init__(
        self, css: str, source_system: str, codec: AvroCodec, producer: Producer, connector_id: str = ""
    ) -> None:
        self.css = css
        self.source_system = source_system
        self.connector_id = connector_id or f"{css}-connector"
        self._codec = codec
        self._producer = producer
        self.stats = DeliveryStats()

    def publish(self, dataset: Dataset, batch: dict[str, Any], key: str | None = None) -> None:
        """Encode one natural batch (sheet, evaluation, change set) and produce it."""
        records = len(batch[RAW_RECORDS_FIELD[dataset]])
        value = self._codec.encode(raw_contract(dataset), batch)
        with self.stats.lock:
            self.stats.in_flight += 1

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            with self.stats.lock:
                self.stats.in_flight -= 1
                if err is not None:
                    self.stats.failed_messages += 1
                    return
                acked = self.stats.acked_records
                acked[dataset.value] = acked.get(dataset.value, 0) + records
                self.stats.last_send_at = datetime.now(UTC)
            metrics.CONNECTOR_EVENTS_SENT.labels(dataset.value).inc(records)

        self._produce(raw_topic(self.css, dataset), value, key, delivered)

    def heartbeat(self, source_lag_s: float | None = None) -> None:
        """Tell the network this connector is alive, with its outbox depth."""
        with self.stats.lock:
            depth, last = self.stats.in_flight, self.stats.last_send_at
        beat = {
            "css": self.css,
            "connector_id": self.connector_id,
            "sent_at": datetime.now(UTC),
            "outbox_depth": depth,
            "last_send_at": last,
            "source_lag_s": source_lag_s,
            "connector_version": CONNECTOR_VERSION,
        }
        value = self._codec.encode(load_contract(HEARTBEAT_CONTRACT), beat)
        self._produce(heartbeat_topic(self.css), value, self.css, None)

    def _produce(self, topic: str, value: bytes, key: str | None, callback: Any) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=callback)
                break
            except BufferError:
                # Local queue full: wait for deliveries instead of dropping (backpressure).
                self._producer.poll(0.1)
        self._producer.poll(0)


def flush(producer: Producer, timeout_s: float) -> int:
    """Wait for outstanding deliveries; return how many are still pending."""
    deadline = time.monotonic() + timeout_s
    remaining = len(producer)
    while remaining and time.monotonic() < deadline:
        remaining = producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
    return int(remaining)
