"""The Faust worker: stream agents, sink agents, and the web views of the process
that owns the warehouse (status, metrics, readiness)."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vigie import metrics
from vigie.connectors.calendar import in_school_hours
from vigie.dashboards.status import network_status, status_to_json
from vigie.reference.organizations import load_organizations
from vigie.runtime.broker import ensure_topics
from vigie.schemas.contracts import all_topics
from vigie.schemas.wire import AvroCodec
from vigie.settings import Settings
from vigie.sinks.agents import register_sink_agents
from vigie.sinks.migrate import migrate_up
from vigie.sinks.warehouse import Warehouse, open_warehouse
from vigie.streams.agents import register_stream_agents
from vigie.streams.consent import ConsentWatcher
from vigie.streams.harmonize import Harmonizer
from vigie.streams.process import StageContext
from vigie.streams.pseudonymize import load_pseudonymizer
from vigie.streams.stewardship import StewardshipLog

log = logging.getLogger(__name__)


def build_app(settings: Settings) -> tuple[faust.App, Warehouse]:
    """Resolve every dependency once and wire the agents and views on a Faust app."""
    organizations = load_organizations(settings.organizations_file)
    consent = ConsentWatcher(settings.consent_file, settings.consent_reload_s)
    key = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else None
    pseudonymizer = load_pseudonymizer(
        key, settings.pseudonym_key_file, settings.pseudonym_key_id,
        settings.embedded_key_file if settings.embedded else None,
    )  # fmt: skip
    ctx = StageContext(organizations, consent, pseudonymizer, Harmonizer(settings.mappings_dir))
    codec = AvroCodec.from_url(settings.registry_url)
    warehouse = open_warehouse(settings.warehouse_url, settings.warehouse_path, settings.warehouse_database)
    applied = migrate_up(warehouse)
    if applied:
        log.info("applied migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))

    app = faust.App(
        "vigie",
        broker=f"kafka://{settings.broker_url}",
        datadir=str(settings.data_dir / "faust"),
        store="memory://",
        autodiscover=False,
        topic_partitions=1,
        topic_replication_factor=1,
        topic_disable_leader=True,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_session_timeout_s / 6,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=settings.stream_buffer_max,
        producer_acks=-1,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
    )
    register_stream_agents(app, ctx, codec, StewardshipLog(settings.stewardship_file), settings)
    register_sink_agents(app, warehouse, codec, settings, consent)

    state: dict[str, Any] = {"assigned": False}

    @app.on_partitions_assigned.connect
    async def on_assigned(*_args: Any, **_kwargs: Any) -> None:
        state["assigned"] = True

    @app.page("/ready")
    async def ready(web: Any, _request: Any) -> Any:
        return web.json({"ready": state["assigned"]}, status=200 if state["assigned"] else 503)

    @app.page("/status")
    async def status(web: Any, _request: Any) -> Any:
        loop = app.loop
        rows = await loop.run_in_executor(
            None, network_status, warehouse, organizations, consent.current(), date.today()
        )
        return web.json(status_to_json(rows))

    @app.timer(settings.pipeline_metrics_interval_s)
    async def observe_pipeline() -> None:
        metrics.SCHOOL_HOURS.set(1 if in_school_hours(datetime.now(UTC)) else 0)
        for group, lag in consumer_lag(app).items():
            metrics.CONSUMER_LAG.labels(group).set(lag)

    @app.page("/metrics")
    async def metrics_page(web: Any, _request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app, warehouse


def _topic_group(topic: str) -> str:
    # Bounded label: the kind of topic, not the 216 raw topic names.
    return topic.split(".", 1)[0] if topic.startswith(("raw.", "curated.")) else topic


def consumer_lag(app: faust.App) -> dict[str, int]:
    """Uncommitted messages on this worker's partitions, by topic group."""
    consumer = app.consumer
    committed = getattr(consumer, "_committed_offset", {})
    lag: dict[str, int] = defaultdict(int)
    for tp in consumer.assignment():
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not fetched yet
            continue
        if highwater is None:
            continue
        done = committed.get(tp)
        # Faust records the last committed offset; the next message to commit is after it.
        lag[_topic_group(tp.topic)] += max(0, highwater - (done + 1 if done is not None else 0))
    return dict(lag)


def run_worker(settings: Settings) -> None:
    """Run the worker until SIGTERM/SIGINT (Faust stops the agents gracefully)."""
    organizations = load_organizations(settings.organizations_file)
    # Idempotent: `vigie up` already did it; a standalone worker on a real cluster may not have.
    ensure_topics(settings.broker_url, all_topics(list(organizations)), settings.topic_partitions)
    app, warehouse = build_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        warehouse.close()
