"""The whole embedded pipeline: connector → Tansu → Faust stream and sink agents → chDB."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer

from connectors.publisher import ConnectorPublisher, flush, make_producer
from connectors.simulator import SimulatedCss
from schemas.contracts import RAW_RECORDS_FIELD, Dataset
from schemas.organizations import Organization
from schemas.wire import AvroCodec
from tests.embedded import (
    HTTP,
    dump_warehouse,
    process_running,
    status_json,
    vigie,
    vigie_up,
    wait_for,
    worker_status,
)
from vigie.runtime.bench import child_processes

pytestmark = pytest.mark.integration


def _org_status(statuses: list[dict], code: str) -> dict:
    return next(s for s in statuses if s["code"] == code)


def test_identified_events_arrive_deidentified_and_garbage_is_dead_lettered(
    tmp_path: Path, organizations: dict[str, Organization]
) -> None:
    data_dir = tmp_path / "vigie"
    today, now = date.today(), datetime.now(UTC)
    sim = SimulatedCss(organizations["laval"], seed=42)
    batches = [(Dataset.ATTENDANCE, sim.attendance_sheet(today, now)),
               (Dataset.GRADES, sim.evaluation(today, now)),
               (Dataset.STAFF, sim.staff_changes(today, now))]  # fmt: skip
    late_sheet = sim.attendance_sheet(today, now)
    unconsented = SimulatedCss(organizations["english-montreal"], seed=42).staff_changes(today, now)
    identifiers: set[str] = set()
    for ds, batch in [*batches, (Dataset.ATTENDANCE, late_sheet), (Dataset.STAFF, unconsented)]:
        for rec in batch[RAW_RECORDS_FIELD[ds]]:
            identifiers |= {rec[k] for k in ("first_name", "last_name", "code_permanent", "postal_code",
                                              "email", "phone", "employee_number") if rec.get(k)}  # fmt: skip
            identifiers |= {rec["birth_date"].isoformat()} if rec.get("birth_date") else set()
    identifiers = {i for i in identifiers if len(i) >= 4}
    assert len(identifiers) > 50

    with vigie_up(data_dir) as (proc, info):
        # A second `vigie up` on the same data directory is refused with a clear message.
        second = vigie("up", data_dir=data_dir, check=False, timeout=60)
        assert second.returncode != 0 and "already running" in second.stderr

        codec = AvroCodec.from_url(info.registry_url)
        producer = make_producer(info.broker)
        laval = ConnectorPublisher("laval", sim.source_system, codec, producer)
        for ds, batch in batches:
            laval.publish(ds, batch)
        laval.heartbeat()
        ConnectorPublisher("english-montreal", "HR", codec, producer).publish(Dataset.STAFF, unconsented)
        assert flush(producer, 30) == 0
        raw = Producer({"bootstrap.servers": info.broker})
        raw.produce("raw.laval.attendance", value=b"\x00\x00\x00\x00\x2a this is not avro")
        raw.produce("raw.laval.grades", value=b'{"json": "instead of avro"}')
        raw.flush(30)
        # The worker keeps running: a batch sent after the garbage still arrives.
        laval.publish(Dataset.ATTENDANCE, late_sheet)
        assert flush(producer, 30) == 0

        expected = {ds.value: len(b[RAW_RECORDS_FIELD[ds]]) for ds, b in batches}
        expected["attendance"] += len(late_sheet["marks"])

        def arrived() -> list[dict] | None:
            statuses = worker_status(data_dir)
            row = _org_status(statuses, "laval")
            counts = {ds: row["datasets"][ds]["events"] for ds in expected}
            withheld = _org_status(statuses, "english-montreal")["datasets"]["staff"]["withheld_no_consent"]
            done = counts == expected and row["dead_letters"] >= 2 and withheld == len(unconsented["changes"])
            return statuses if done and row["last_heartbeat_at"] else None

        statuses = wait_for(arrived, 90, "events in the warehouse")
        assert len(statuses) == 72
        assert proc.poll() is None
        metrics = HTTP.get(f"{info.web_url}/metrics", timeout=10).text
        assert 'vigie_stream_records_total{css="laval",dataset="attendance",outcome="curated"}' in metrics
        assert 'vigie_dead_letters_total{reason_code="undecodable",stage="decode"} 2.0' in metrics
    assert proc.returncode == 0, "vigie up should stop cleanly on SIGINT"

    tables = dump_warehouse(data_dir)
    facts = tables["attendance_marks"] + tables["grade_results"] + tables["staff_changes"]
    assert len(facts) == sum(expected.values())
    # The public reference list of organizations names places ("René-Lévesque") that are
    # also surnames; every other table is scanned.
    reference = tables.pop("organizations")
    assert len(reference) == 72
    everything = json.dumps(tables, ensure_ascii=False)
    leaked = [i for i in identifiers if i in everything]
    assert not leaked, f"identifiers reached the warehouse: {leaked[:3]}"
    assert all(len(r["student_pseudonym"]) == 32 for r in tables["attendance_marks"])
    assert {r["age_band"] for r in tables["attendance_marks"]} - {None}

    letters = {(r["source_topic"], r["reason_code"]): r for r in tables["dead_letters"]}
    assert letters[("raw.laval.attendance", "undecodable")]["reason"]
    assert letters[("raw.laval.grades", "undecodable")]["stage"] == "decode"
    assert letters[("raw.english-montreal.staff", "no_consent")]["record_count"] == len(
        unconsented["changes"]
    )
    assert not any(r["css"] == "english-montreal" for r in tables["staff_changes"])

    # Not running any more: `vigie status` reads the data directory itself.
    offline = status_json(data_dir)
    assert _org_status(offline, "laval")["datasets"]["attendance"]["events"] == expected["attendance"]

    # A second `vigie up` on the same data directory keeps the warehouse's data.
    with vigie_up(data_dir):
        again = _org_status(status_json(data_dir), "laval")
        assert {ds: again["datasets"][ds]["events"] for ds in expected} == expected


def test_up_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "vigie"
    with vigie_up(data_dir) as (proc, _info):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
    assert not (data_dir / "runtime.json").exists()
    # The lock was released: a command needing the data directory can take it.
    assert vigie("migrate", data_dir=data_dir).returncode == 0


def test_a_killed_up_leaves_no_broker_or_worker_behind(tmp_path: Path) -> None:
    """SIGKILL (the out-of-memory killer, a CI timeout) gives `vigie up` no chance to stop
    what it started: its broker and worker, in sessions of their own, used to keep running
    with nobody to stop them. The kernel now sends them SIGTERM when it dies."""
    data_dir = tmp_path / "vigie"
    with vigie_up(data_dir) as (proc, info):
        started = child_processes(proc.pid)
        assert info.worker_pid in started and len(started) >= 2  # the worker and the broker
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 60
        while any(process_running(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in started if process_running(p)]
        for pid in left:  # never leave them to the next tests
            os.kill(pid, signal.SIGKILL)
        assert not left, "processes of the killed vigie up still run"
