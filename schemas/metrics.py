"""Every Prometheus metric Vigie exports, in one place.

Dashboards and alert rules are checked against these names. Labels stay bounded:
stage, dataset, outcome, reason codes and the 72 organization codes. Names follow
Prometheus's conventions (``promtool check metrics`` passes): base units, ``_total``
counters. The worker exposes the default registry; a connector exposes only
``CONNECTOR_REGISTRY`` (its own metrics), never the worker's.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import REGISTRY

STREAM_RECORDS = Counter(
    "vigie_stream_records_total",
    "Records leaving the stream stage, by dataset, CSS and outcome (curated, rejected).",
    ["dataset", "css", "outcome"],
)
STREAM_MESSAGES = Counter(
    "vigie_stream_messages_total", "Raw messages consumed by the stream stage.", ["dataset"]
)
DEAD_LETTERS = Counter(
    "vigie_dead_letters_total", "Refusals sent to the dead-letter topic.", ["stage", "reason_code"]
)
SINK_ROWS = Counter("vigie_sink_rows_total", "Rows inserted into the warehouse.", ["table"])
SINK_BATCH_SECONDS = Histogram("vigie_sink_batch_seconds", "Duration of one warehouse insert.", ["table"])
SINK_BATCH_ROWS = Histogram(
    "vigie_sink_batch_rows",
    "Rows in one warehouse insert.",
    ["table"],
    buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000),
)
SINK_FAILURES = Counter(
    "vigie_sink_insert_failures_total",
    "Warehouse inserts that failed and were retried (backpressure).",
    ["table"],
)
RECORD_LATENCY = Histogram(
    "vigie_record_to_warehouse_seconds",
    "Connector detection time to warehouse insert, per record.",
    ["dataset"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
CONNECTOR_OUTBOX_DEPTH = Gauge(
    "vigie_connector_outbox_depth",
    "Batches a connector has not had acknowledged (the connector's own, or its last heartbeat's).",
    ["css"],
)
CONNECTOR_LAST_HEARTBEAT = Gauge(
    "vigie_connector_last_heartbeat_timestamp_seconds",
    "When a CSS's connector last sent a heartbeat (Unix time, as the worker received it).",
    ["css"],
)
CONNECTOR_LAST_SEND = Gauge(
    "vigie_connector_last_send_timestamp_seconds",
    "When a connector last had a batch acknowledged by the broker (Unix time).",
    ["css"],
)
CSS_LAST_EVENT = Gauge(
    "vigie_css_last_event_timestamp_seconds",
    "When the stream stage last curated a record of a CSS and dataset (Unix time).",
    ["css", "dataset"],
)
CONSUMER_LAG = Gauge(
    "vigie_consumer_lag_messages",
    "Messages not yet committed on this worker's assigned partitions (high watermark minus "
    "committed offset). On Tansu the watermark advances per batch, so this undercounts.",
    ["topic_group"],
)
SCHOOL_HOURS = Gauge(
    # Not "_hours": promtool reads a trailing unit and wants seconds; this is a 0/1 state.
    "vigie_school_in_session",
    "1 during school hours (8:00-16:00 America/Toronto) of a Québec school day, else 0.",
)
CONNECTOR_EVENTS_SENT = Counter(
    "vigie_connector_records_sent_total", "Records a connector had acknowledged.", ["dataset"]
)


# What a connector process exposes: its own metrics and process facts, nothing of the worker.
CONNECTOR_REGISTRY = CollectorRegistry()
for _metric in (CONNECTOR_OUTBOX_DEPTH, CONNECTOR_LAST_SEND, CONNECTOR_EVENTS_SENT):
    CONNECTOR_REGISTRY.register(_metric)
ProcessCollector(registry=CONNECTOR_REGISTRY)
PlatformCollector(registry=CONNECTOR_REGISTRY)


def exposition(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The text exposition of ``registry`` and its full content type: text format 0.0.4, with
    its version (what every Prometheus, 2.x included, negotiates; the names are all legacy-valid)."""
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
