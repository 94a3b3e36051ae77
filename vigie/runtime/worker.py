"""The Faust worker: stream agents, sink agents, and the web views of the process
that owns the warehouse (status, metrics, readiness)."""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import faust

from connectors.calendar import in_school_hours
from dashboards.report import results_to_json, run_panels
from dashboards.status import network_status, status_to_json
from schemas import metrics
from schemas.contracts import (
    DEAD_LETTER_CONTRACT,
    RAW_TOPIC_PATTERN,
    Dataset,
    all_topics,
    curated_contract,
    load_contract,
)
from schemas.organizations import load_organizations
from sinks.agents import register_sink_agents
from sinks.migrate import migrate_up
from sinks.rows import organizations_frame
from sinks.warehouse import Warehouse, open_warehouse
from streams.agents import register_stream_agents
from streams.curate import StageOutput, record_metrics
from streams.signing import Signer
from streams.stage_loop import StageLoop, StageLoopConfig, StageService
from streams.stewardship import StewardshipLog
from vigie.runtime.broker import BrokerError, client_config, ensure_pipeline_topics
from vigie.runtime.datadir import secure_data_dir
from vigie.runtime.faust_fetch import transport_with_fetch_wait
from vigie.runtime.stage_pool import Stage, StagePool, prepare_model_apart
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
    secure_data_dir(settings.data_dir)  # the key, the stewards' log and the store are private
    organizations = load_organizations(settings.organizations_file)
    prepare_model_apart(settings)  # trained (once per corpus) outside the long-lived worker
    # Built here first: the embedded key is generated once, before any pool child reads it.
    stage = Stage.from_settings(settings)
    consent = stage.consent
    codec = stage.codec
    # The stage encodes in its own processes: register the outputs' contracts here too, so the
    # sinks decode them from memory and never wait on the registry inside the event loop.
    for contract in (*(curated_contract(ds) for ds in Dataset), load_contract(DEAD_LETTER_CONTRACT)):
        codec.schema_id(contract)
    processes = stage_processes(settings)
    pool = StagePool(settings, processes, stage, share_local=shares_stage(settings))
    warehouse = open_warehouse(settings.warehouse_url, settings.warehouse_path, settings.warehouse_database)
    applied = migrate_up(warehouse, cluster=settings.warehouse_cluster)
    if applied:
        log.info("applied migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in applied))
    warehouse.insert_frame("organizations", organizations_frame(organizations.values(), datetime.now(UTC)))
    # The ministry views suppress below this minimum (a setting; some agencies use 10).
    warehouse.command(
        f"INSERT INTO {warehouse.database}.disclosure_rules (suppression_minimum) "
        f"VALUES ({int(settings.suppression_minimum)})"
    )

    app = faust.App(
        "vigie",
        broker=f"kafka://{settings.broker_url}",
        datadir=str(settings.data_dir / "faust"),
        store="memory://",
        autodiscover=False,
        topic_partitions=1,
        topic_replication_factor=settings.topic_replication_factor,
        broker_credentials=faust_credentials(settings),
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
    # Faust's consumer waits 1,500 ms per fetch, not a setting; ours waits sink_fetch_wait_ms.
    app.transport = transport_with_fetch_wait(settings.sink_fetch_wait_ms)(app.conf.broker_consumer, app)
    # The worker's own topics (curated, dead letters, checked heartbeats) carry its MAC.
    signer = Signer(stage.ctx.pseudonymizer.key)
    stewardship = StewardshipLog(settings.stewardship_file, settings.stewardship_retention_days)
    stage_service: StageService | None = None
    if settings.stream_own_consumer:
        # The stage reads the raw topics in its own consumer group, so that no raw topic's
        # backlog ever holds back the sinks' topics in Faust's one delivery loop (issue 18).
        stage_service = register_stage_service(app, settings, pool, stewardship, signer)
    else:
        subscription = register_stream_agents(
            app, list(organizations), pool.run, stewardship, settings,
            concurrency=max(1, processes), discovered=raw_topics_on_broker(settings.broker_url),
            signer=signer,
        )  # fmt: skip
        # Faust coalesces subscription changes for 45 s by default; a new raw topic (a typo'd
        # CSS code, an unknown dataset) should be read, and dead-lettered, sooner than that.
        app.topics._resubscribe_sleep_lock_seconds = settings.raw_topic_discovery_s  # type: ignore[attr-defined]

        @app.timer(settings.raw_topic_discovery_s)
        async def discover_raw_topics() -> None:
            names = await app.loop.run_in_executor(None, raw_topics_on_broker, settings.broker_url)
            for topic in subscription.add(names):
                log.warning("new raw topic %s: subscribing (unknown ones are dead-lettered)", topic)

    # The engine decodes curated batches itself, asking this registry (it must reach it).
    engine_registry = (
        (settings.warehouse_registry_url or settings.registry_url) if settings.sink_engine_decode else None
    )
    register_sink_agents(
        app, warehouse, codec, settings, consent, organizations=list(organizations), signer=signer,
        engine_registry_url=engine_registry,
    )  # fmt: skip

    state: dict[str, Any] = {"assigned": False}

    @app.on_partitions_assigned.connect
    async def on_assigned(*_args: Any, **_kwargs: Any) -> None:
        state["assigned"] = True

    @app.page("/ready")
    async def ready(web: Any, _request: Any) -> Any:
        # Ready when the sinks have their partitions and the stage its processes and partitions.
        up = state["assigned"] and (stage_service is None or stage_service.ready)
        return web.json({"ready": up}, status=200 if up else 503)

    @app.page("/progress")
    async def progress(web: Any, _request: Any) -> Any:
        # Rows written per table: what `vigie bench` polls (the whole /metrics page is costly).
        return web.json({"rows": sink_rows_by_table()})

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
        if stage_service is not None and stage_service.stage is not None:
            # The raw topics are read by the stage's own consumer, not Faust's.
            metrics.CONSUMER_LAG.labels("raw").set(stage_service.stage.lag_messages)

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
        body, content_type = metrics.exposition()
        # As a header: aiohttp's content_type argument refuses parameters (version, charset).
        return web.bytes(body, headers={"Content-Type": content_type})

    return WorkerParts(app, warehouse, pool)


def sink_rows_by_table() -> dict[str, int]:
    """The sinks' row counters (``vigie_sink_rows_total``) by table, from this process."""
    rows: dict[str, int] = {}
    for family in metrics.SINK_ROWS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                rows[sample.labels["table"]] = int(sample.value)
    return rows


def stage_processes(settings: Settings) -> int:
    """Stage processes to start: the setting, or one per core (one fewer when the worker's
    thread shares the stage, since the worker then does a process's share itself)."""
    if settings.stream_processes >= 0:
        return settings.stream_processes
    cores = os.cpu_count() or 1
    return cores - 1 if shares_stage(settings) else cores


def shares_stage(settings: Settings) -> bool:
    """Whether the worker's thread runs stage batches too (the stage's own consumer only: the
    Faust agent path, kept for comparison, hands batches to the processes alone)."""
    return settings.stream_share_worker and settings.stream_own_consumer


def register_stage_service(
    app: faust.App, settings: Settings, pool: StagePool, stewardship: StewardshipLog, signer: Signer
) -> StageService:
    """The stream stage's own consumer loop, started and stopped with the Faust app."""
    config = StageLoopConfig(
        client=client_config(settings),
        batch_max=settings.stream_batch_max,
        batch_within_s=settings.stream_batch_within_s,
        max_in_flight=max(2, 2 * pool.workers),  # one batch in each process (or thread), one waiting
        fetch_wait_ms=settings.stream_fetch_wait_ms,
        session_timeout_s=settings.broker_session_timeout_s,
        discovery_s=settings.raw_topic_discovery_s,
    )

    def on_output(out: StageOutput) -> None:
        record_metrics(out)
        stewardship.record(out.unmapped)
        if out.dead_letters:
            log.info("stream batch: %d dead letters", len(out.dead_letters))

    service = StageService(lambda: StageLoop(config, pool.submit, on_output, signer), pool.warm)
    app._extra_services.append(service)  # type: ignore[arg-type]  # an instance: started with the app
    return service


def raw_topics_on_broker(bootstrap: str, timeout_s: float = 10.0) -> list[str]:
    """Topics under the raw prefix that exist on the broker (the stage's pattern subscription);
    empty when the broker does not answer in time (the next discovery tries again)."""
    from confluent_kafka.admin import AdminClient

    try:
        names = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout_s).topics
    except Exception as exc:  # KafkaException: retried at the next discovery
        log.warning("raw topic discovery failed: %s", type(exc).__name__)
        return []
    return sorted(n for n in names if re.fullmatch(RAW_TOPIC_PATTERN, n))


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


class WorkerStartupError(RuntimeError):
    """The worker cannot start: the message is the one line an operator needs."""


def faust_credentials(settings: Settings) -> Any:
    """Faust's SASL credentials when the broker wants them (compose: SCRAM on the internal
    listener), else None. The password comes from the settings, never from the code."""
    if not settings.broker_sasl_username:
        return None
    ssl_context = None
    if settings.broker_security_protocol.upper() == "SASL_SSL":
        import ssl

        cafile = str(settings.broker_ssl_ca_file) if settings.broker_ssl_ca_file else None
        ssl_context = ssl.create_default_context(cafile=cafile)
    password = settings.broker_sasl_password.get_secret_value() if settings.broker_sasl_password else ""
    return faust.SASLCredentials(
        username=settings.broker_sasl_username, password=password,
        mechanism=settings.broker_sasl_mechanism, ssl_context=ssl_context,
    )  # fmt: skip


def check_startup(settings: Settings) -> list[str]:
    """What must hold before Faust starts, checked in the order an operator fixes it: the key,
    then the broker (topics created). Returns the topics; raises WorkerStartupError."""
    from streams.pseudonymize import PseudonymKeyError, load_pseudonymizer

    key = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else None
    try:
        load_pseudonymizer(key, settings.pseudonym_key_file, settings.pseudonym_key_id,
                           settings.embedded_key_file if settings.embedded else None)  # fmt: skip
    except PseudonymKeyError as exc:
        raise WorkerStartupError(str(exc)) from None
    organizations = load_organizations(settings.organizations_file)
    topics = all_topics(list(organizations))
    s = settings
    try:
        # Idempotent: `vigie up` already did it; a standalone worker on a real cluster may not have.
        ensure_pipeline_topics(client_config(s), topics, s.raw_topic_partitions, s.topic_partitions,
                               s.topic_replication_factor, s.topic_min_insync_replicas,
                               replay_retention_days=s.replay_retention_days,
                               timeout_s=s.broker_wait_s)  # fmt: skip
    except BrokerError as exc:
        raise WorkerStartupError(str(exc)) from None
    return topics


def run_worker(settings: Settings) -> None:
    """Run the worker until SIGTERM/SIGINT (Faust stops the agents gracefully).
    Raises WorkerStartupError (one line, no traceback needed) when it cannot start."""
    from sinks.migrate import MigrationError
    from sinks.warehouse import WarehouseUnavailable
    from vigie.runtime.allocator import limit_malloc_arenas

    limit_malloc_arenas(settings.worker_malloc_arenas)  # before the engine starts its threads
    check_startup(settings)
    try:
        parts = build_app(settings)
    except (WarehouseUnavailable, MigrationError) as exc:
        raise WorkerStartupError(f"warehouse: {exc}") from None
    worker = faust.Worker(parts.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    finally:
        parts.pool.close()
        parts.warehouse.close()
