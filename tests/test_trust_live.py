"""The running worker against a hostile or careless CSS (issue 13, items 5 and 7): a forged
heartbeat counts for nobody, and a topic nobody expected — created after the worker started,
by a connector whose CSS code is a typo — is read and dead-lettered, never left unread."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.publisher import ConnectorPublisher, flush, make_producer
from connectors.simulator import SimulatedCss
from schemas.contracts import (
    DEAD_LETTER_CONTRACT,
    DEAD_LETTER_TOPIC,
    HEARTBEAT_CONTRACT,
    HEARTBEAT_TOPIC,
    Dataset,
    heartbeat_topic,
    load_contract,
    raw_contract,
)
from schemas.wire import AvroCodec
from sinks.rows import UNKNOWN_RAW_TOPIC
from tests.embedded import (
    HTTP,
    dump_warehouse,
    reader_from_start,
    status_json,
    vigie_up,
    wait_for,
    worker_status,
)
from vigie.runtime.broker import ensure_topics

pytestmark = pytest.mark.integration


def test_forged_heartbeats_and_unknown_topics_on_the_running_worker(tmp_path: Path, organizations) -> None:
    data_dir = tmp_path / "vigie"
    today, now = date.today(), datetime.now(UTC)
    typo = SimulatedCss(organizations["laval"], seed=6).attendance_sheet(today, now)
    typo["css"] = "lavall"
    with vigie_up(data_dir, env={"VIGIE_RAW_TOPIC_DISCOVERY_S": "1"}) as (proc, info):
        codec = AvroCodec.from_url(info.registry_url)
        producer = make_producer(info.broker)
        ConnectorPublisher(
            "laval", "test", codec, producer, connector_id="poste de Jean Tremblay"
        ).heartbeat()
        # Laval's connector claims to be Montréal's, on its own heartbeat topic.
        forged = {"css": "montreal", "connector_id": "x", "sent_at": now, "outbox_depth": 999_999,
                  "last_send_at": now, "source_lag_s": 0.0, "connector_version": "0.1.0"}  # fmt: skip
        producer.produce(heartbeat_topic("laval"), codec.encode(load_contract(HEARTBEAT_CONTRACT), forged))
        # The same, written straight onto the worker's own topics (the embedded broker has no
        # ACLs): a heartbeat for Montréal, and a dead letter claiming 999,999 refused records.
        producer.produce(HEARTBEAT_TOPIC, codec.encode(load_contract(HEARTBEAT_CONTRACT), forged))
        letter = {"dead_letter_id": "forged", "failed_at": now, "stage": "validate", "reason_code": "no_consent",
                  "reason": "forged", "source_topic": "raw.montreal.attendance", "source_partition": 0,
                  "source_offset": 0, "css": "montreal", "dataset": "attendance", "event_id": None,
                  "record_count": 999_999, "payload": None}  # fmt: skip
        producer.produce(DEAD_LETTER_TOPIC, codec.encode(load_contract(DEAD_LETTER_CONTRACT), letter))
        # A connector configured with css = "lavall": its topic appears after the worker started.
        ensure_topics(info.broker, ["raw.lavall.attendance"])
        producer.produce("raw.lavall.attendance", codec.encode(raw_contract(Dataset.ATTENDANCE), typo))
        assert flush(producer, 30) == 0

        def refused() -> dict | None:
            row = next(s for s in worker_status(data_dir) if s["code"] == "laval")
            return row if row["dead_letters"] >= 1 and row["last_heartbeat_at"] else None

        laval = wait_for(refused, 120, "the forged heartbeat's dead letter and laval's heartbeat")
        assert laval["last_heartbeat_at"]
        montreal = next(s for s in status_json(data_dir) if s["code"] == "montreal")
        assert not montreal["last_heartbeat_at"] and montreal["dead_letters"] == 0
        metrics = HTTP.get(f"{info.web_url}/metrics", timeout=10).text
        beats = [line for line in metrics.splitlines() if line.startswith("vigie_connector_last_heartbeat")]
        assert any('css="laval"' in line for line in beats)
        assert not any('css="montreal"' in line or "lavall" in line for line in beats)

        # Discovered at run time, read from its beginning, dead-lettered.
        letters = _dead_letters_until(
            info.broker, codec, lambda ds: any(d["reason_code"] == "unknown_css" for d in ds), 120
        )
        [unknown_topic] = [d for d in letters if d["reason_code"] == "unknown_css"]
        assert unknown_topic["source_topic"] == "raw.lavall.attendance"  # findable on the topic
        assert codec.decode(unknown_topic["payload"], raw_contract(Dataset.ATTENDANCE))["css"] == "lavall"
        assert proc.poll() is None

        def stored() -> int | None:
            # On the topic is not yet in the warehouse: a stop drops a sink's unfinished batch
            # (read again at the next start), so wait for both letters to be written.
            rows = HTTP.get(f"{info.web_url}/progress", timeout=10).json()["rows"].get("dead_letters", 0)
            return rows if rows >= 2 else None

        wait_for(stored, 60, "the unknown topic's and the forged heartbeat's dead letters stored")

    worker_log = (data_dir / "logs" / "worker.log").read_text(encoding="utf-8")
    for topic in (DEAD_LETTER_TOPIC, HEARTBEAT_TOPIC):  # read by the sinks, and refused
        assert f"unsigned messages on {topic} refused" in worker_log
    tables = dump_warehouse(data_dir)
    assert {b["css"] for b in tables["connector_heartbeats"]} == {"laval"}
    assert "Tremblay" not in str(tables["connector_heartbeats"])
    assert 999_999 not in {b["outbox_depth"] for b in tables["connector_heartbeats"]}
    [unknown] = [d for d in tables["dead_letters"] if d["reason_code"] == "unknown_css"]
    assert (unknown["css"], unknown["source_topic"], unknown["record_count"]) == (
        None, UNKNOWN_RAW_TOPIC, len(typo["marks"]))  # fmt: skip
    [mismatch] = [d for d in tables["dead_letters"] if d["reason_code"] == "css_mismatch"]
    assert (mismatch["css"], mismatch["source_topic"]) == ("laval", heartbeat_topic("laval"))
    assert "lavall" not in str(tables)
    assert 999_999 not in {d["record_count"] for d in tables["dead_letters"]}
    assert "montreal" not in {d["css"] for d in tables["dead_letters"]}


def _dead_letters_until(broker: str, codec: AvroCodec, done: Any, timeout_s: float) -> list[dict]:
    """Read the dead-letter topic from the start until ``done(letters)`` holds."""
    consumer = reader_from_start(broker, DEAD_LETTER_TOPIC)
    letters: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(letters):
            if time.monotonic() > deadline:
                raise AssertionError(f"dead letters seen: {[(d['reason_code'], d['css']) for d in letters]}")
            for msg in consumer.consume(100, timeout=1.0):
                if msg.error() is None:
                    letters.append(codec.decode(msg.value(), load_contract(DEAD_LETTER_CONTRACT)))
    finally:
        consumer.close()
    return letters
