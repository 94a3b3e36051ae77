"""The warehouse on the real ClickHouse engine (chDB): migrations, idempotent inserts, status."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from dashboards.status import network_status
from schemas.contracts import Dataset
from sinks.migrate import applied_versions, load_migrations, migrate_down, migrate_up
from sinks.rows import FACT_TABLES, dead_letter_frame, fact_frame
from tests.curated import curated_batches

TODAY = date.today()


def _tables(wh) -> set[str]:
    rows = wh.query(f"SELECT name FROM system.tables WHERE database = '{wh.database}'")
    return {r["name"] for r in rows} - {"schema_migrations"}


def _schema(wh) -> list[tuple[str, str, str]]:
    return [(r["table"], r["name"], r["type"]) for r in wh.query(
        f"SELECT table, name, type FROM system.columns WHERE database = '{wh.database}' "
        "AND table != 'schema_migrations' ORDER BY table, position")]  # fmt: skip


def test_migrations_round_trip(empty_warehouse) -> None:
    wh = empty_warehouse
    migrations = load_migrations()
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    assert migrate_up(wh) == migrations
    after_up = _schema(wh)
    assert set(FACT_TABLES.values()) <= _tables(wh)
    assert migrate_up(wh) == []  # idempotent
    migrate_down(wh, 0)
    assert _tables(wh) == set() and applied_versions(wh) == set()
    migrate_up(wh)
    assert _schema(wh) == after_up


def _curated(stage_context, organizations, css: str, ticks: int = 2):
    return curated_batches(stage_context, organizations, css, ticks)


def _count(wh, table: str) -> int:
    return int(wh.query(f"SELECT count() AS n FROM {wh.database}.{table} FINAL")[0]["n"])


@pytest.mark.parametrize("dataset", list(Dataset))
def test_feeding_the_same_events_twice_leaves_the_warehouse_unchanged(
    warehouse, stage_context, organizations, dataset: Dataset
) -> None:
    batches = _curated(stage_context, organizations, "laval")[dataset]
    frame = fact_frame(dataset, batches)
    table = FACT_TABLES[dataset]
    warehouse.insert_frame(table, frame)
    once = warehouse.query(
        f"SELECT * EXCEPT ingested_at FROM {warehouse.database}.{table} FINAL ORDER BY event_id"
    )
    warehouse.insert_frame(table, frame)
    twice = warehouse.query(
        f"SELECT * EXCEPT ingested_at FROM {warehouse.database}.{table} FINAL ORDER BY event_id"
    )
    assert len(once) == len(frame) == len({r["event_id"] for r in once}) > 0
    assert twice == once


def test_reharmonized_event_replaces_its_row(warehouse, stage_context, organizations) -> None:
    [batch, *_] = _curated(stage_context, organizations, "laval", 1)[Dataset.ATTENDANCE]
    warehouse.insert_frame("attendance_marks", fact_frame(Dataset.ATTENDANCE, [batch]))
    newer = {**batch, "mapping_version": "m2", "processed_at": datetime.now(UTC)}
    warehouse.insert_frame("attendance_marks", fact_frame(Dataset.ATTENDANCE, [newer]))
    rows = warehouse.query(
        f"SELECT DISTINCT mapping_version AS v FROM {warehouse.database}.attendance_marks FINAL"
    )
    assert rows == [{"v": "m2"}]
    assert _count(warehouse, "attendance_marks") == len(batch["marks"])


def test_status_view_counts_per_organization_and_dataset(
    warehouse, stage_context, organizations, consent
) -> None:
    for css in ("laval", "phares"):
        for ds, batches in _curated(stage_context, organizations, css).items():
            warehouse.insert_frame(FACT_TABLES[ds], fact_frame(ds, batches))
    now = datetime.now(UTC)
    warehouse.insert_frame("dead_letters", dead_letter_frame([
        {"dead_letter_id": "d1", "failed_at": now, "stage": "consent", "reason_code": "no_consent",
         "reason": "no consent", "source_topic": "raw.iles.staff", "source_partition": 0, "source_offset": 1,
         "css": "iles", "dataset": "staff", "event_id": None, "record_count": 4},
        {"dead_letter_id": "d2", "failed_at": now, "stage": "decode", "reason_code": "undecodable",
         "reason": "bad", "source_topic": "raw.laval.grades", "source_partition": 0, "source_offset": 2,
         "css": "laval", "dataset": "grades", "event_id": None, "record_count": 0},
    ]))  # fmt: skip
    statuses = {s.code: s for s in network_status(warehouse, organizations, consent, TODAY)}
    assert len(statuses) == 72
    for ds in Dataset:
        expected = _count(warehouse, FACT_TABLES[ds]) - 0
        assert sum(s.datasets[ds.value].events for s in statuses.values()) == expected
    assert statuses["laval"].datasets["attendance"].events > 0
    assert statuses["laval"].datasets["attendance"].last_event_at
    assert statuses["montreal"].datasets["attendance"].events == 0
    assert statuses["iles"].datasets["staff"].withheld_no_consent == 4
    assert not statuses["iles"].datasets["staff"].consented
    assert statuses["laval"].dead_letters == 1


def test_dead_letters_never_store_the_payload(warehouse) -> None:
    columns = {r["name"] for r in warehouse.query(
        f"SELECT name FROM system.columns "
        f"WHERE database = '{warehouse.database}' AND table = 'dead_letters'")}  # fmt: skip
    assert "payload" not in columns


def test_corrections_replace_deletions_hide_and_late_old_versions_lose(
    warehouse, stage_context, organizations
) -> None:
    from datetime import timedelta

    [batch, *_] = _curated(stage_context, organizations, "laval", 1)[Dataset.ATTENDANCE]
    first = batch["marks"][0]
    later = first["detected_at"] + timedelta(minutes=5)
    corrected = {**first, "event_id": "v2", "status": "present", "absence_reason": None, "detected_at": later}
    deleted = {**batch["marks"][1], "event_id": "del", "deleted": True, "detected_at": later}
    stamp = {"mapping_version": "m1", "processed_at": datetime.now(UTC)}
    table = f"{warehouse.database}.attendance_marks"
    warehouse.insert_frame("attendance_marks", fact_frame(Dataset.ATTENDANCE, [batch]))
    warehouse.insert_frame(
        "attendance_marks", fact_frame(Dataset.ATTENDANCE, [{**stamp, "marks": [corrected, deleted]}])
    )
    # The first version arrives again late (redelivery): it must not win over the correction.
    warehouse.insert_frame("attendance_marks", fact_frame(Dataset.ATTENDANCE, [{**stamp, "marks": [first]}]))

    rows = {r["record_key"]: r for r in warehouse.query(f"SELECT * FROM {table} FINAL")}
    assert len(rows) == len(batch["marks"]) - 1
    assert rows[first["record_key"]]["event_id"] == "v2"
    assert rows[first["record_key"]]["status"] == "present"
    assert batch["marks"][1]["record_key"] not in rows


def test_dead_letters_expire_after_their_retention(warehouse) -> None:
    """Dead letters carry a TTL like every fact table (VIGIE_DEAD_LETTER_RETENTION_DAYS): one
    older than its retention is gone after the engine applies TTLs."""
    now = datetime.now(UTC)

    def letter(i: str, failed_at: datetime) -> dict:
        return {"dead_letter_id": i, "failed_at": failed_at, "stage": "decode", "reason_code": "undecodable",
                "reason": "value: not Avro", "source_topic": "raw.laval.grades", "source_partition": 0,
                "source_offset": 1, "css": "laval", "dataset": "grades", "event_id": None, "record_count": 0}  # fmt: skip

    old, fresh = letter("old", now - timedelta(days=10)), letter("fresh", now - timedelta(days=1))
    warehouse.insert_frame("dead_letters", dead_letter_frame([old, fresh], retention_days=7))
    db = warehouse.database
    assert {r["retention_days"] for r in warehouse.query(f"SELECT retention_days FROM {db}.dead_letters")} == {7}
    warehouse.command(f"OPTIMIZE TABLE {db}.dead_letters FINAL")
    kept = [r["dead_letter_id"] for r in warehouse.query(f"SELECT dead_letter_id FROM {db}.dead_letters")]
    assert kept == ["fresh"]
