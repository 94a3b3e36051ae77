"""Cluster settings of the worker's Kafka clients: replication, min ISR, SASL; checked against a
real broker (Tansu) where it can answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from vigie.runtime.broker import (
    BrokerError,
    TansuBroker,
    client_config,
    ensure_pipeline_topics,
    ensure_topics,
)
from vigie.runtime.worker import faust_credentials
from vigie.settings import Settings


def test_client_config_carries_sasl_only_when_set() -> None:
    plain = client_config(Settings(broker_url="kafka:9092"))
    assert plain == {"bootstrap.servers": "kafka:9092"}
    sasl = client_config(Settings(broker_url="kafka:9092", broker_security_protocol="SASL_PLAINTEXT",
                                  broker_sasl_username="vigie-worker",
                                  broker_sasl_password=SecretStr("pw")))  # fmt: skip
    assert sasl["security.protocol"] == "SASL_PLAINTEXT"
    assert (sasl["sasl.mechanism"], sasl["sasl.username"], sasl["sasl.password"]) == (
        "SCRAM-SHA-512", "vigie-worker", "pw",
    )  # fmt: skip
    assert "pw" not in repr(Settings(broker_sasl_password=SecretStr("pw")))  # never in a log line


def test_faust_gets_scram_credentials_from_the_settings() -> None:
    assert faust_credentials(Settings()) is None
    creds = faust_credentials(Settings(broker_sasl_username="vigie-worker", broker_sasl_password=SecretStr("pw"),
                                       broker_security_protocol="SASL_PLAINTEXT"))  # fmt: skip
    assert creds.username == "vigie-worker" and creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.ssl_context is None  # SASL_PLAINTEXT: the compose stack's internal listener


def test_min_isr_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(BrokerError, match="no write could ever be acknowledged"):
        ensure_topics("127.0.0.1:1", ["t"], 1, replication_factor=1, min_insync_replicas=2)


@pytest.mark.integration
def test_topics_get_the_configured_partitions_and_replication(tmp_path: Path) -> None:
    broker = TansuBroker(0, tmp_path / "tansu.log").start()
    try:
        config = client_config(Settings(broker_url=broker.bootstrap))
        ensure_pipeline_topics(config, ["raw.laval.attendance", "curated.attendance"], 2, 3, 1, 1)
        topics = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=20).topics
        assert len(topics["raw.laval.attendance"].partitions) == 2
        assert len(topics["curated.attendance"].partitions) == 3
        assert all(len(p.replicas) == 1 for p in topics["curated.attendance"].partitions.values())
    finally:
        broker.stop()


def test_an_unreachable_broker_is_one_clear_error() -> None:
    with pytest.raises(BrokerError, match=r"cannot reach the broker at 127\.0\.0\.1:1"):
        ensure_topics("127.0.0.1:1", ["t"], timeout_s=2)
