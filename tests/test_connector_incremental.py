"""Incremental SQL reads on PostgreSQL, MariaDB and SQLite: a watermark with a lookback, deletion
detection bounded to recent days, malformed rows that hold nothing back, state without identities."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from connectors.config import SqlSourceConfig
from connectors.outbox import Outbox
from connectors.sources.sql import SqlSource
from schemas.contracts import Dataset
from tests.connector_fixtures import SourceTable, attendance_row, source_table

TODAY = datetime.now(UTC).date()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def table(request, tmp_path: Path):
    yield from source_table(request.param, tmp_path)


def _row(n: int, day: date = TODAY, updated: datetime | None = None, **extra) -> dict:
    # Naive times, as most school systems keep them (local time without a zone). Never ahead of
    # the clock: a row stamped later than now is read again until its time has passed (clock
    # skew), so "today at 8:00" made the no-change poll fail when the suite ran before 8:00.
    at_eight = datetime.combine(day, datetime.min.time()).replace(hour=8)
    stamp = updated or min(at_eight, datetime.now() - timedelta(minutes=5))
    return {**attendance_row(n, updated=stamp), "sheet_date": day, **extra}


def _source(table: SourceTable, outbox: Outbox, **extra) -> SqlSource:
    config = SqlSourceConfig(kind="sql", dataset=Dataset.ATTENDANCE, source_system="GPI", url=table.url,
                             table=table.name, watermark="updated_at",
                             **{"delete_check_every_s": 0, **extra})  # fmt: skip
    return SqlSource(config, "laval", outbox)


def _commit(source: SqlSource, outbox: Outbox) -> list:
    changes = []
    for poll in source.poll():
        outbox.commit_poll(source.id, [], poll.upserts, poll.deletes, poll.kv)
        changes += poll.changes
    return changes


def test_a_no_change_poll_reads_no_row(table: SourceTable, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    table.insert([_row(n, day=TODAY - timedelta(days=n % 3)) for n in range(30)])
    source = _source(table, outbox, lookback_s=0)
    assert len(_commit(source, outbox)) == 30
    read = source.rows_read
    assert _commit(source, outbox) == []
    assert source.rows_read == read  # neither the rows nor their keys were read again
    source.close()


def test_corrections_insertions_and_deletions_in_the_window(table: SourceTable, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    table.insert([_row(n) for n in range(6)])
    source = _source(table, outbox, lookback_s=0)
    before = {c.row["student_local_id"]: c for c in _commit(source, outbox)}
    later = datetime.combine(TODAY, datetime.min.time()).replace(hour=9)
    table.execute(
        "UPDATE {t} SET status_code = 'A', updated_at = :u WHERE student_local_id = 'ST00001'", u=later
    )
    table.execute("DELETE FROM {t} WHERE student_local_id IN ('ST00002', 'ST00003')")
    table.insert([_row(9, updated=later)])  # same day, one in, two out: the count alone would miss one
    changes = {(c.row["student_local_id"], c.op): c for c in _commit(source, outbox)}
    assert set(changes) == {("ST00001", "upsert"), ("ST00002", "delete"), ("ST00003", "delete"),
                            ("ST00009", "upsert")}  # fmt: skip
    assert changes[("ST00002", "delete")].record_key == before["ST00002"].record_key
    assert changes[("ST00002", "delete")].row["status_code"] == "P"  # the version it ends
    assert _commit(source, outbox) == []
    source.close()


def test_a_delete_alone_is_found_by_the_day_count(table: SourceTable, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    yesterday = TODAY - timedelta(days=1)
    table.insert([_row(n, day=yesterday) for n in range(5)] + [_row(n, day=TODAY) for n in range(5, 8)])
    source = _source(table, outbox, lookback_s=0)
    _commit(source, outbox)
    table.execute("DELETE FROM {t} WHERE student_local_id = 'ST00004'")  # no watermark moves
    changes = _commit(source, outbox)
    assert [(c.row["student_local_id"], c.op) for c in changes] == [("ST00004", "delete")]
    source.close()


def test_deletion_detection_is_bounded_to_the_window(table: SourceTable, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    old = TODAY - timedelta(days=60)
    table.insert([_row(1, day=old), _row(2, day=old), _row(3, day=TODAY)])
    source = _source(table, outbox, lookback_s=0, delete_window_days=14)
    _commit(source, outbox)
    table.execute("DELETE FROM {t} WHERE student_local_id IN ('ST00001', 'ST00003')")
    changes = _commit(source, outbox)
    # Only today's deletion: sixty-day-old sheets are not compared (that is what keeps a poll cheap).
    assert [(c.row["student_local_id"], c.op) for c in changes] == [("ST00003", "delete")]
    source.close()


def test_a_late_commit_inside_the_lookback_is_read(table: SourceTable, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    now = datetime.now().replace(microsecond=0)  # the connector's local time, as the rows'
    table.insert([_row(1, updated=now - timedelta(seconds=30))])
    source = _source(table, outbox, lookback_s=600, delete_window_days=None, detect_deletes=False)
    _commit(source, outbox)
    # A transaction that began before the last poll commits now, stamped before the watermark.
    table.insert([_row(2, updated=now - timedelta(seconds=60))])
    changes = _commit(source, outbox)
    assert [c.row["student_local_id"] for c in changes] == ["ST00002"]
    source.close()


def test_a_malformed_row_does_not_hold_back_other_deletions(table: SourceTable, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    table.insert([_row(n) for n in range(5)])
    source = _source(table, outbox, lookback_s=0)
    _commit(source, outbox)
    later = datetime.combine(TODAY, datetime.min.time()).replace(hour=10)
    table.execute(
        "UPDATE {t} SET status_code = NULL, updated_at = :u WHERE student_local_id = 'ST00001'", u=later
    )
    table.execute("DELETE FROM {t} WHERE student_local_id = 'ST00003'")
    polls = list(source.poll())
    for poll in polls:
        outbox.commit_poll(source.id, [], poll.upserts, poll.deletes, poll.kv)
    changes = [(c.row["student_local_id"], c.op) for p in polls for c in p.changes]
    assert changes == [("ST00003", "delete")]  # the malformed ST00001 is not deleted either
    rejections = [str(r) for p in polls for r in p.rejections]
    assert rejections and "status_code" in rejections[0] and "Léa" not in rejections[0]
    source.close()


def test_the_whole_table_mode_also_skips_malformed_rows_alone(table: SourceTable, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    table.insert([_row(n) for n in range(4)])
    config = SqlSourceConfig(kind="sql", dataset=Dataset.ATTENDANCE, source_system="GPI", url=table.url,
                             table=table.name)  # fmt: skip
    source = SqlSource(config, "laval", outbox)
    _commit(source, outbox)
    table.execute("UPDATE {t} SET period = NULL WHERE student_local_id = 'ST00000'")  # its key unreadable
    table.execute("UPDATE {t} SET status_code = NULL WHERE student_local_id = 'ST00001'")
    table.execute("DELETE FROM {t} WHERE student_local_id = 'ST00002'")
    changes = [(c.row["student_local_id"], c.op) for c in _commit(source, outbox)]
    # ST00000's key cannot be read: it might be any row, so no deletion is inferred this poll…
    assert changes == []
    table.execute("DELETE FROM {t} WHERE student_local_id = 'ST00000'")
    # …and once it is gone, ST00002's deletion goes, while the malformed ST00001 stays.
    assert sorted((c.row["student_local_id"], c.op) for c in _commit(source, outbox)) == [
        ("ST00000", "delete"), ("ST00002", "delete")]  # fmt: skip
    source.close()


def test_detection_state_holds_hashes_not_identities(tmp_path: Path) -> None:
    for table in source_table("sqlite", tmp_path):
        outbox = Outbox(tmp_path / "outbox.sqlite")
        table.insert([_row(n) for n in range(3)])
        _commit(_source(table, outbox), outbox)
        outbox.close()
        with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
            dump = "\n".join(db.iterdump())
        assert "ST00001" in dump  # the source's own key names the row
        for identity in ("Léa", "Tremblay", "2015-03-04", "malade"):
            assert identity not in dump, identity


def test_a_missing_table_is_one_clear_line(tmp_path: Path) -> None:
    from connectors.sources import SourceError

    config = SqlSourceConfig(kind="sql", dataset=Dataset.ATTENDANCE, source_system="GPI",
                             url=f"sqlite:///{tmp_path / 'empty.sqlite'}", table="presences")  # fmt: skip
    source = SqlSource(config, "laval", Outbox(tmp_path / "outbox.sqlite"))
    with pytest.raises(SourceError) as caught:
        list(source.poll())
    message = str(caught.value)
    assert "\n" not in message and "no such table: presences" in message


def test_a_malformed_row_is_reported_once_not_at_every_poll(tmp_path: Path) -> None:
    for table in source_table("sqlite", tmp_path):
        outbox = Outbox(tmp_path / "outbox.sqlite")
        table.insert([_row(1), _row(2, status_code=None)])
        config = SqlSourceConfig(kind="sql", dataset=Dataset.ATTENDANCE, source_system="GPI", url=table.url,
                                 table=table.name)  # fmt: skip
        source = SqlSource(config, "laval", outbox)
        counts = []
        for _ in range(3):
            polls = list(source.poll())
            for poll in polls:
                outbox.commit_poll(source.id, [], poll.upserts, poll.deletes, poll.kv)
            counts.append(sum(p.skipped_rows for p in polls))
        assert counts == [1, 0, 0]  # the status view's count is rows refused, not polls made
        source.close()


def test_acknowledged_batches_leave_the_outbox_file(tmp_path: Path) -> None:
    from connectors.outbox import OutboxItem

    outbox = Outbox(tmp_path / "outbox.sqlite")
    items = [OutboxItem("raw.laval.attendance", None, "c", bytes(50_000), 25) for _ in range(200)]
    outbox.commit_poll("s", items)

    def pages() -> int:
        return int(outbox._db.execute("PRAGMA page_count").fetchone()[0])

    full = pages()
    outbox.ack([i.seq for i in outbox.pending(1000, set())])
    assert outbox.depth() == 0
    assert pages() < full / 5  # the space of identified batches is given back, not kept as free pages
    outbox.close()


def test_a_number_watermark_with_a_lookback_in_versions(tmp_path: Path) -> None:
    """A counter (or SQL Server rowversion, read as 8 bytes): ``lookback_s`` counts versions."""
    from connectors.sources.sql import _lower_bound, _wm_encode

    stored = _wm_encode(bytes.fromhex("00000000000007d0"))  # rowversion 2000
    assert stored == {"kind": "rowversion", "v": 2000}
    assert _lower_bound({**stored, "polled_at": "2026-11-30T10:00:00+00:00"}, 50) == (1950).to_bytes(8, "big")
    for table in source_table("postgresql", tmp_path):
        table.execute("ALTER TABLE {t} ADD COLUMN version BIGINT")
        table.insert([{**_row(n), "version": n} for n in range(5)])
        outbox = Outbox(tmp_path / "outbox.sqlite")
        config = SqlSourceConfig(kind="sql", dataset=Dataset.ATTENDANCE, source_system="GPI", url=table.url,
                                 table=table.name, watermark="version", lookback_s=0)  # fmt: skip
        source = SqlSource(config, "laval", outbox)
        assert len(_commit(source, outbox)) == 5
        read = source.rows_read
        table.execute("UPDATE {t} SET status_code = 'A', version = 7 WHERE student_local_id = 'ST00002'")
        assert [c.row["student_local_id"] for c in _commit(source, outbox)] == ["ST00002"]
        assert source.rows_read == read + 1
        source.close()


def test_deletions_are_looked_for_at_their_own_pace(tmp_path: Path) -> None:
    for table in source_table("sqlite", tmp_path):
        outbox = Outbox(tmp_path / "outbox.sqlite")
        table.insert([_row(n) for n in range(3)])
        source = _source(table, outbox, lookback_s=0, delete_check_every_s=3600)
        _commit(source, outbox)
        table.execute("DELETE FROM {t} WHERE student_local_id = 'ST00001'")
        assert _commit(source, outbox) == []  # a no-change poll: not even the count per day
        source._deletions_checked_at -= 3600  # an hour later
        assert [(c.row["student_local_id"], c.op) for c in _commit(source, outbox)] == [("ST00001", "delete")]
        source.close()


@pytest.mark.parametrize("field", ["watermark", "delete_window_column"])
def test_column_names_in_the_config_cannot_carry_sql(field: str, tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a plain column name"):
        SqlSourceConfig(kind="sql", dataset=Dataset.ATTENDANCE, source_system="GPI", url="sqlite://",
                        table="presences", **{field: "updated_at; DROP TABLE presences"})  # fmt: skip


def test_a_css_code_must_be_one_of_the_network(organizations) -> None:
    from connectors.config import ConnectorConfigError, check_css

    check_css("montreal", organizations)
    for hostile in ("../../etc", "montreal.attendance", "MONTREAL", ""):
        with pytest.raises(ConnectorConfigError, match="n'est pas l'un des 72"):
            check_css(hostile, organizations)
