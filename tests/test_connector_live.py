"""The connector against a real broker (Tansu): crash with SIGKILL, broker outage, nothing lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors.config import load_connector_config
from connectors.runner import Connector
from schemas.contracts import Dataset, heartbeat_topic, raw_contract, raw_topic
from schemas.wire import AvroCodec
from tests.connector_fixtures import SourceTable, attendance_row
from tests.embedded import TEST_ENV, wait_for
from vigie.runtime.broker import TansuBroker, ensure_topics

pytestmark = pytest.mark.integration
TOPIC = raw_topic("laval", Dataset.ATTENDANCE)


@pytest.fixture
def broker(tmp_path: Path):
    b = TansuBroker(0, tmp_path / "tansu.log").start()
    ensure_topics(b.bootstrap, [*(raw_topic("laval", ds) for ds in Dataset), heartbeat_topic("laval")])
    yield b
    b.stop()


def _config(tmp_path: Path, broker: TansuBroker, registry, table: SourceTable) -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(f"""
css = "laval"
outbox = "outbox.sqlite"
poll_every_s = 0.2
heartbeat_every_s = 1
[broker]
bootstrap = "{broker.bootstrap}"
[broker.config]
"message.timeout.ms" = 600000
[registry]
url = "{registry.url}"
[[sources]]
kind = "sql"
dataset = "attendance"
source_system = "GPI"
url = "{table.url}"
table = "{table.name}"
""")
    return path


class TopicReader:
    """Reads a topic from the beginning in the background."""

    def __init__(self, bootstrap: str, topic: str, codec: AvroCodec, marks: list[dict] | None = None) -> None:
        self.marks: list[dict] = list(marks or [])
        self._codec = codec
        self._stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader",
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                   "log.connection.close": False})  # fmt: skip
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    self.marks += self._codec.decode(msg.value(), raw_contract(Dataset.ATTENDANCE))["marks"]

    def ids(self) -> set[str]:
        return {m["event_id"] for m in self.marks}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def _outbox_depth(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


def test_connector_sends_changes_and_heartbeats(tmp_path, broker, registry, codec) -> None:
    table = SourceTable(f"sqlite:///{tmp_path / 'source.sqlite'}")
    table.insert([attendance_row(n) for n in range(60)])
    config = load_connector_config(_config(tmp_path, broker, registry, table))
    Connector(config).run(once=True)
    reader = TopicReader(broker.bootstrap, TOPIC, codec)
    try:
        wait_for(lambda: len(reader.ids()) == 60, 30, "60 marks on the raw topic", every_s=0.2)
        assert {m["op"] for m in reader.marks} == {"upsert"}
        assert all(m["first_name"] == "Léa" for m in reader.marks)  # raw topics carry the identified record
    finally:
        reader.close()
    assert _outbox_depth(config.outbox) == 0
    beats = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "hb", "auto.offset.reset": "earliest"}
    )
    beats.assign([TopicPartition(heartbeat_topic("laval"), 0, OFFSET_BEGINNING)])
    try:
        got = beats.consume(10, timeout=10)
        assert any(m.error() is None for m in got)
    finally:
        beats.close()


def test_sigkill_mid_stream_loses_nothing_and_duplicates_share_event_ids(
    tmp_path, broker, registry, codec
) -> None:
    table = SourceTable(f"sqlite:///{tmp_path / 'source.sqlite'}")
    config_path = _config(tmp_path, broker, registry, table)
    env = {**os.environ, **TEST_ENV}
    command = [sys.executable, "-m", "vigie.cli", "connector", "run", "--config", str(config_path)]
    reader = TopicReader(broker.bootstrap, TOPIC, codec)
    inserted = 0
    try:
        for round_ in range(4):
            proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(6):  # changes keep arriving while the connector works
                table.insert([attendance_row(inserted + n, group=f"G{round_}") for n in range(25)])
                inserted += 25
                time.sleep(0.15)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        # A last, clean run sends whatever the kills left in the outbox or undetected.
        subprocess.run([*command, "--once"], env=env, check=True, timeout=120, capture_output=True)
        wait_for(
            lambda: len({m["record_key"] for m in reader.marks}) >= inserted, 60, "every row on the topic"
        )
    finally:
        reader.close()
    by_row: dict[str, set[str]] = defaultdict(set)
    for mark in reader.marks:
        by_row[mark["record_key"]].add(mark["event_id"])
    assert len(by_row) == inserted
    assert all(len(ids) == 1 for ids in by_row.values()), "a re-sent row version must keep its event_id"
    assert _outbox_depth(tmp_path / "outbox.sqlite") == 0


def test_broker_outage_outbox_holds_then_drains(tmp_path, broker, registry, codec) -> None:
    table = SourceTable(f"sqlite:///{tmp_path / 'source.sqlite'}")
    config_path = _config(tmp_path, broker, registry, table)
    config = load_connector_config(config_path)
    connector = subprocess.Popen(
        [sys.executable, "-m", "vigie.cli", "connector", "run", "--config", str(config_path)],
        env={**os.environ, **TEST_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    reader = TopicReader(broker.bootstrap, TOPIC, codec)
    try:
        table.insert([attendance_row(n, group="before") for n in range(100)])
        wait_for(lambda: len(reader.ids()) >= 100, 30, "the first rows", every_s=0.2)
        # librdkafka 2.14's consumer can crash on the metadata of a restarted Tansu
        # (librdkafka issue #5280, seen here in 1 run of 3): this reader is closed before
        # the outage and a new one reads the restarted broker.
        before = list(reader.marks)
        reader.close()

        broker.stop()
        table.insert([attendance_row(100 + n, group="during") for n in range(100)])
        wait_for(lambda: _outbox_depth(config.outbox) > 0, 30, "the outbox to hold the new rows", every_s=0.2)
        time.sleep(2)
        assert _outbox_depth(config.outbox) > 0

        broker.start()  # same port; Tansu keeps nothing, so the topics are created again
        ensure_topics(broker.bootstrap, [TOPIC, heartbeat_topic("laval")])
        reader = TopicReader(broker.bootstrap, TOPIC, codec, marks=before)
        table.insert([attendance_row(200 + n, group="after") for n in range(100)])
        wait_for(lambda: len({m["record_key"] for m in reader.marks}) >= 300, 120, "all rows", every_s=0.5)
        wait_for(lambda: _outbox_depth(config.outbox) == 0, 30, "the outbox to drain", every_s=0.2)
        assert connector.poll() is None, "the connector kept running through the outage"
    finally:
        connector.send_signal(signal.SIGTERM)
        _, stderr = connector.communicate(timeout=60)
        reader.close()
    assert connector.returncode == 0, stderr[-2000:]
    assert len({m["record_key"] for m in reader.marks}) == 300
