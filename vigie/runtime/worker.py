"""The Faust worker: stream agents, sink agents, and the web views of the process
that owns the warehouse (status, metrics, readiness)."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from connectors.calendar import in_school_hours
from dashboards.report import results_to_json, run_panels
from dashboards.status import network_status, status_to_json
from schemas import metrics
from schemas.contracts import all_topics
from schemas.organizations import load_organizations
from sinks.agents import register_sink_agents
from sinks.migrate import migrate_up
from sinks.rows import organizations_frame
from sinks.warehouse import Warehouse, open_warehouse
from streams.agents import register_stream_agents
from streams.stewardship import StewardshipLog
from vigie.runtime.broker import ensure_pipeline_topics
from vigie.runtime.stage_pool import Stage, StagePool
from vigie.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerParts:
    """The Faust app and what must be closed after it stops."""

    app: faust.App
    warehouse: Warehouse
    pool: StagePool


def build_app(settings: Settings) -> WorkerParts:
    """Resolve every dependency once and wire the agents and views on a Faust app."""
    organizations = load_organizations(settings.organizations_file)
    # Built here first: the embedded key is generated once, before any pool child reads it.
    stage = Stage.from_settings(settings)
    consent = stage.consent
    codec = stage.codec
    processes = settings.stream_processes if settings.stream_processes >= 0 else (os.cpu_count() or 1)
    pool = StagePool(settings, processes, stage)
    warehouse = open_warehouse(settings.warehouse_url, settings.warehouse_path, settings.warehouse_database)
    applied = migrate_up(warehouse)
    if applied:
        log.info("applied migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    warehouse.insert_frame("organizations", organizations_frame(organizations.values(), datetime.now(UTC)))

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
    register_stream_agents(
        app, list(organizations), pool.run, StewardshipLog(settings.stewardship_file), settings,
        concurrency=max(1, processes),
    )  # fmt: skip
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

    @app.page("/panels")
    async def panels(web: Any, request: Any) -> Any:
        try:
            start = datetime.fromisoformat(request.query["from"])
            end = datetime.fromisoformat(request.query["to"])
        except (KeyError, ValueError):
            return web.json({"error": "from and to (ISO date-times) are required"}, status=400)
        rows = await app.loop.run_in_executor(
            None, run_panels, warehouse, start, end, settings.suppression_minimum
        )
        return web.json(results_to_json(rows))

    @app.page("/metrics")
    async def metrics_page(web: Any, _request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return WorkerParts(app, warehouse, pool)


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
    topics = all_topics(list(organizations))
    s = settings
    ensure_pipeline_topics(
        s.broker_url, topics, s.raw_topic_partitions, s.topic_partitions, s.replay_retention_days
    )
    parts = build_app(settings)
    worker = faust.Worker(parts.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        parts.pool.close()
        parts.warehouse.close()
