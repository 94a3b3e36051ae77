"""One frozen settings object, resolved at start-up and passed explicitly.

Every field can be overridden by an environment variable ``VIGIE_<FIELD>``
(e.g. ``VIGIE_DATA_DIR``). Nothing else in Vigie reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

import schemas
import streams

SCHEMAS_DIR = Path(schemas.__file__).parent
STREAMS_DIR = Path(streams.__file__).parent


class Settings(BaseSettings):
    """Vigie's configuration."""

    model_config = SettingsConfigDict(env_prefix="VIGIE_", frozen=True, extra="ignore")

    data_dir: Path = Field(Path(".vigie"), description="Embedded runtime's data directory.")
    broker_url: str = Field("", description="Kafka bootstrap 'host:port'; empty = embedded Tansu.")
    registry_url: str = Field("", description="Schema registry URL; empty = embedded stand-in.")
    broker_port: int = Field(0, description="Port of the embedded broker (0 = pick a free one).")
    registry_port: int = Field(0, description="Port of the embedded registry (0 = free one).")
    web_port: int = Field(0, description="Worker's status/metrics port (0 = pick a free one).")
    web_host: str = "127.0.0.1"

    organizations_file: Path = SCHEMAS_DIR / "reference" / "organizations.csv"
    schools_file: Path = Field(
        SCHEMAS_DIR / "reference" / "schools.csv",
        description="Schools of each organization: a school code outside it is refused by the stage.",
    )
    consent_file: Path = STREAMS_DIR / "mappings" / "consent.csv"
    mappings_dir: Path = STREAMS_DIR / "mappings"
    model_cache_dir: Path | None = Field(
        None,
        description="Where trained motif models are kept, one file per corpus fingerprint "
        "(default: <data_dir>/models). Only the first process to see a corpus trains.",
    )

    pseudonym_key: SecretStr | None = Field(
        None, description="HMAC key for pseudonyms. Never logged, never in the repository."
    )
    pseudonym_key_file: Path | None = Field(
        None, description="File holding the HMAC key (used when pseudonym_key is unset)."
    )
    pseudonym_key_id: str = Field("", description="Id stored beside pseudonyms; default: derived.")

    consent_reload_s: float = Field(2.0, description="How often the consent file is checked for changes.")
    warehouse_url: str = Field(
        "",
        description="ClickHouse server, 'http[s]://user:password@host:8123'; empty = the embedded "
        "engine (chDB) in the worker. Holds a password: set it from the environment only.",
    )
    warehouse_database: str = "vigie"
    warehouse_server_password: SecretStr | None = Field(
        None,
        description="Password of `vigie warehouse serve` (user 'default'); unset = generated once "
        "into <data-dir>/secrets/warehouse.password (0600). Required to listen beyond 127.0.0.1.",
    )
    language: Literal["fr", "en"] = Field(
        "fr", description="Language of `vigie report` (French by default; 'en' for the English boards)."
    )
    dead_letter_retention_days: int = Field(
        90, ge=1, le=3650, description="Days a dead letter's summary row stays in the warehouse (its TTL)."
    )
    suppression_minimum: int = Field(
        5, ge=5, description="Smallest count of individuals an aggregate may show (5 at least; some use 10)."
    )
    stream_processes: int = Field(
        -1,
        description="Processes running the stream stage beside the worker: 0 = a thread of the "
        "worker, -1 = one per CPU core (one fewer when the worker shares the stage).",
    )
    stream_share_worker: bool = Field(
        True,
        description="The worker's own thread runs stage batches too when every stage process is "
        "busy: one process (~230 MB) fewer for the same cores (issue 18).",
    )
    stream_batch_max: int = Field(200, description="Raw messages per stream take() batch.")
    stream_batch_within_s: float = 0.2
    stream_own_consumer: bool = Field(
        True,
        description="The stage reads the raw topics with its own consumer (group 'vigie-stage') "
        "inside the worker, so raw backlogs never starve the sinks; false = a Faust agent.",
    )
    stream_fetch_wait_ms: int = Field(
        250,
        ge=1,
        description="Longest the stage's fetches wait on the broker: 50 ms makes the broker spin, "
        "500 ms costs freshness at a steady rate (p99 2.7 s against 1.7 s at 250 ms, issue 18).",
    )
    sink_fetch_wait_ms: int = Field(
        500,
        ge=1,
        le=30_000,  # below the consumer's request timeout, or every idle fetch times out
        description="Longest the sinks' fetches (curated, dead letters, heartbeats) wait on the "
        "broker. Faust's own 1,500 ms made each step from idle to busy wait ~450 ms on Tansu.",
    )
    raw_topic_partitions: int = Field(
        2,
        ge=1,
        description="Partitions of each raw topic (216 of them): how many workers can share the "
        "stream stage. Every partition costs fetch work on the broker.",
    )
    topic_partitions: int = Field(
        4,
        ge=1,
        description="Partitions of the curated, dead-letter and heartbeat topics: how many workers "
        "can share the sinks. Faust gives partition N of every topic to one worker.",
    )
    replay_retention_days: int = Field(
        400,
        ge=1,
        description="Days the raw and curated topics keep their messages, so that `vigie reharmonize` "
        "can replay history with new mappings (a school year and then some).",
    )
    stream_buffer_max: int = Field(
        64,
        ge=1,
        description="Messages Faust buffers per stream before pausing its partitions: with the "
        "warehouse down, a sink holds at most this many curated batches in memory.",
    )
    worker_malloc_arenas: int = Field(
        2,
        ge=0,
        description="glibc malloc arenas of the worker (0 = glibc's default, 8 per core): the "
        "embedded engine's threads otherwise keep freed memory in arenas of their own and the "
        "worker's peak RSS swings by hundreds of MB at 7 M marks (issue 18).",
    )
    sink_batch_max: int = Field(500, description="Dead letters or heartbeats per warehouse insert.")
    sink_curated_batch_max: int = Field(
        20,
        ge=1,
        description="Curated messages per warehouse insert. Each carries a stage batch (~1,500 "
        "records in a burst): 20 bound an insert near 30k rows; 500 made the engine take ~470 MB "
        "more for one insert of a backlog (issue 18).",
    )
    sink_batch_within_s: float = Field(0.3, description="Longest a sink waits to fill a batch (freshness).")
    sink_retry_max_backoff_s: float = 10.0
    sink_engine_decode: bool = Field(
        True,
        description="The warehouse engine decodes curated batches itself (FORMAT AvroConfluent), "
        "Python only isolates what it refuses; false = decode in Python.",
    )
    warehouse_registry_url: str = Field(
        "",
        description="The schema registry as the warehouse engine reaches it (a ClickHouse server "
        "fetches schemas itself); empty = registry_url.",
    )
    broker_session_timeout_s: float = 6.0
    broker_wait_s: float = Field(
        30.0,
        gt=0,
        description="How long the worker waits for the broker at start-up before it says it cannot "
        "reach it (compose starts it once Kafka is healthy; a supervisor restarts it).",
    )
    pipeline_metrics_interval_s: float = Field(10.0, description="How often consumer lag is measured.")
    log_level: str = "INFO"
    raw_topic_discovery_s: float = Field(
        10.0, gt=0, description="How often the worker looks for new raw topics (unknown CSS or dataset)."
    )
    stewardship_retention_days: int = Field(
        30, ge=1, description="Days the stewards' log keeps an unmapped or refused value."
    )
    embedded: bool = Field(
        False, description="Set by `vigie up` for its worker: allows a generated pseudonym key."
    )

    # Production cluster (docker-compose or a real one). Replication is the engines' own:
    # 1 in the one-broker compose stack, 3 and 2 on a three-broker cluster.
    topic_replication_factor: int = Field(
        1, ge=1, description="Replicas of every topic Vigie creates (3 on a three-broker cluster)."
    )
    topic_min_insync_replicas: int = Field(
        1, ge=1, description="min.insync.replicas of those topics (2 on a three-broker cluster)."
    )
    broker_security_protocol: str = Field(
        "PLAINTEXT", description="PLAINTEXT, SASL_PLAINTEXT (compose's internal listener) or SASL_SSL."
    )
    broker_sasl_mechanism: str = "SCRAM-SHA-512"
    broker_sasl_username: str = ""
    broker_sasl_password: SecretStr | None = Field(None, description="Never logged; from the environment.")
    broker_ssl_ca_file: Path | None = Field(None, description="CA of the broker's certificate (SASL_SSL).")
    warehouse_cluster: str = Field(
        "",
        description="ClickHouse cluster name: migrations run ON CLUSTER, Replicated* tables under "
        "Distributed ones (empty = one server, or the embedded engine).",
    )

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse"

    @property
    def model_cache(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def stewardship_file(self) -> Path:
        return self.data_dir / "stewardship.sqlite"

    @property
    def runtime_file(self) -> Path:
        return self.data_dir / "runtime.json"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "lock"

    @property
    def warehouse_password_file(self) -> Path:
        return self.data_dir / "secrets" / "warehouse.password"

    @property
    def embedded_key_file(self) -> Path:
        return self.data_dir / "secrets" / "pseudonym.key"
