"""Change detection against real PostgreSQL and SQLite, file drops, the outbox, the config."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from connectors.config import (
    ConnectorConfigError,
    FileDropSourceConfig,
    SqlSourceConfig,
    load_connector_config,
)
from connectors.outbox import Outbox, OutboxItem
from connectors.source_rows import build_batches
from connectors.sources.file_drop import FileDropSource
from connectors.sources.sql import SqlSource
from schemas.contracts import Dataset
from tests.connector_fixtures import SourceTable, attendance_row, source_table


@pytest.fixture(params=["sqlite", "postgresql"])
def table(request, tmp_path: Path):
    yield from source_table(request.param, tmp_path)


def _sql_source(table: SourceTable, outbox: Outbox, **extra) -> SqlSource:
    config = SqlSourceConfig(kind="sql", dataset=Dataset.ATTENDANCE, source_system="GPI", url=table.url,
                             table=table.name, **extra)  # fmt: skip
    return SqlSource(config, "laval", outbox)


def _commit(source, outbox: Outbox) -> list:
    changes = []
    for poll in source.poll():
        outbox.commit_poll(source.id, [], poll.upserts, poll.deletes, poll.kv)
        if poll.on_committed:
            poll.on_committed()
        changes += poll.changes
    return changes


def test_sql_emits_only_new_changed_and_deleted_rows(table: SourceTable, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    table.insert([attendance_row(n) for n in range(10)])
    source = _sql_source(table, outbox)

    first = _commit(source, outbox)
    assert len(first) == 10 and {c.op for c in first} == {"upsert"}
    assert _commit(source, outbox) == []  # nothing changed, nothing sent

    table.execute(
        "UPDATE {t} SET status_code = 'A', absence_text = 'malade' WHERE student_local_id = 'ST00003'"
    )
    table.execute("DELETE FROM {t} WHERE student_local_id = 'ST00007'")
    table.insert([attendance_row(10)])
    changes = {c.row["student_local_id"]: c for c in _commit(source, outbox)}
    assert set(changes) == {"ST00003", "ST00007", "ST00010"}
    before = {c.row["student_local_id"]: c for c in first}
    # A correction: same source row, new version.
    assert changes["ST00003"].record_key == before["ST00003"].record_key
    assert changes["ST00003"].event_id != before["ST00003"].event_id
    assert changes["ST00003"].row["status_code"] == "A"
    # A deletion carries the last version it deletes.
    assert changes["ST00007"].op == "delete"
    assert changes["ST00007"].record_key == before["ST00007"].record_key
    assert changes["ST00007"].row["status_code"] == "P"
    assert _commit(source, outbox) == []
    source.close()
    outbox.close()


def test_change_detection_survives_a_restart(table: SourceTable, tmp_path: Path) -> None:
    table.insert([attendance_row(n) for n in range(5)])
    outbox = Outbox(tmp_path / "outbox.sqlite")
    assert len(_commit(_sql_source(table, outbox), outbox)) == 5
    outbox.close()
    reopened = Outbox(tmp_path / "outbox.sqlite")
    assert _commit(_sql_source(table, reopened), reopened) == []
    reopened.close()


def test_same_row_version_gives_the_same_event_id(table: SourceTable, tmp_path: Path) -> None:
    table.insert([attendance_row(1)])
    one = [c for p in _sql_source(table, Outbox(tmp_path / "a.sqlite")).poll() for c in p.changes]
    two = [c for p in _sql_source(table, Outbox(tmp_path / "b.sqlite")).poll() for c in p.changes]
    assert [c.event_id for c in one] == [c.event_id for c in two]


def test_watermark_reads_only_newer_rows_and_still_sees_deletions(tmp_path: Path) -> None:
    for table in source_table("postgresql", tmp_path):
        outbox = Outbox(tmp_path / "outbox.sqlite")
        table.insert([attendance_row(n, updated=datetime(2026, 11, 20, 8, n)) for n in range(4)])
        source = _sql_source(table, outbox, watermark="updated_at")
        assert len(_commit(source, outbox)) == 4
        table.execute(
            "UPDATE {t} SET status_code = 'R', updated_at = '2026-11-20 09:00' WHERE student_local_id = 'ST00001'"
        )
        table.execute("DELETE FROM {t} WHERE student_local_id = 'ST00002'")
        changes = {(c.row["student_local_id"], c.op) for c in _commit(source, outbox)}
        assert changes == {("ST00001", "upsert"), ("ST00002", "delete")}
        assert (
            outbox.get(
                f"{source.id}:watermark",
            )
            is not None
        )
        outbox.close()


def test_malformed_sql_rows_are_skipped_and_do_not_look_deleted(table: SourceTable, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    table.insert([attendance_row(n) for n in range(3)])
    source = _sql_source(table, outbox)
    assert len(_commit(source, outbox)) == 3
    table.execute("UPDATE {t} SET status_code = NULL WHERE student_local_id = 'ST00001'")
    polls = list(source.poll())
    assert sum(p.skipped_rows for p in polls) == 1
    assert not [c for p in polls for c in p.changes if c.op == "delete"]


# -- file drop ---------------------------------------------------------------------------------

HEADER = "school_code;group_code;period;sheet_date;student_local_id;nom;status_code;absence_text\n"


def _drop_source(folder: Path, outbox: Outbox) -> FileDropSource:
    config = FileDropSourceConfig(kind="file_drop", dataset=Dataset.ATTENDANCE, source_system="Excel",
                                  folder=folder, columns={"nom": "last_name"}, settle_s=0.0)  # fmt: skip
    return FileDropSource(config, "iles", outbox)


def _settle(source: FileDropSource, outbox: Outbox) -> list:
    """Two looks: a file is read only once it stopped changing."""
    assert _commit(source, outbox) == [] or True
    return _commit(source, outbox)


def test_file_drop_processes_each_file_once_and_archives_it(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "outbox.sqlite")
    source = _drop_source(folder, outbox)
    rows = "".join(f"E1;G1;2;2026-11-20;ST{n};Roy;{'A' if n % 3 == 0 else 'P'};malade\n" for n in range(6))
    (folder / "presences-2026-11-20.csv").write_text(HEADER + rows, encoding="utf-8")
    assert _commit(source, outbox) == []  # first look: maybe still being written
    changes = _commit(source, outbox)
    assert len(changes) == 6
    assert changes[0].row["last_name"] == "Roy"  # renamed column
    assert (folder / "archive" / "presences-2026-11-20.csv").exists()
    assert not (folder / "presences-2026-11-20.csv").exists()
    # The same export dropped again: nothing new to send, still archived.
    (folder / "again.csv").write_text(HEADER + rows, encoding="utf-8")
    assert _settle(source, outbox) == []
    assert (folder / "archive" / "again.csv").exists()


def test_file_drop_rejects_malformed_files_with_a_reason(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "outbox.sqlite")
    source = _drop_source(folder, outbox)
    good = "E1;G1;2;2026-11-20;ST1;Roy;P;\n"
    (folder / "bad-date.csv").write_text(HEADER + good + "E1;G1;2;20 nov;ST2;Roy;P;\n", encoding="utf-8")
    (folder / "no-status.csv").write_text(
        HEADER.replace(";status_code", "") + "E1;G1;2;2026-11-20;ST3;Roy;\n"
    )
    (folder / "notes.txt").write_text("hello")
    (folder / "empty.csv").write_text("")
    # One bad date refuses its row, not the file: the good row goes through.
    assert [c.row["student_local_id"] for c in _settle(source, outbox)] == ["ST1"]
    reasons = {p.name: p.read_text() for p in (folder / "rejected").glob("*.reason.txt")}
    refused = (folder / "rejected" / "bad-date.csv.lignes-refusees.txt").read_text()
    assert "line 3: column sheet_date: not a valid date" in refused  # the good row went through
    assert "missing required column(s): status_code" in reasons["no-status.csv.reason.txt"]
    assert "unsupported file type .txt" in reasons["notes.txt.reason.txt"]
    assert "empty" in reasons["empty.csv.reason.txt"]
    assert "Roy" not in "".join(reasons.values()) + refused  # reasons name columns and lines, never values
    assert (folder / "archive" / "bad-date.csv").exists()
    assert not list(folder.glob("*.csv"))


def test_file_drop_never_reads_a_half_written_file(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "outbox.sqlite")
    source = _drop_source(folder, outbox)
    (folder / "upload.csv.part").write_text(HEADER + "E1;G1;2;2026-11-20;ST1;Roy;P;\n")
    (folder / ".~lock.presences.csv#").write_text("lock")
    growing = folder / "growing.csv"
    growing.write_text(HEADER)
    assert _commit(source, outbox) == []
    with growing.open("a") as f:
        f.write("E1;G1;2;2026-11-20;ST1;Roy;P;\n")
    assert _commit(source, outbox) == []  # it changed since the last look: not yet
    assert len(_commit(source, outbox)) == 1
    assert (folder / "upload.csv.part").exists() and not (folder / "rejected" / "upload.csv.part").exists()


def test_file_drop_reads_xlsx(tmp_path: Path) -> None:
    from openpyxl import Workbook

    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "outbox.sqlite")
    source = _drop_source(folder, outbox)
    wb = Workbook()
    ws = wb.active
    ws.append(["school_code", "group_code", "period", "sheet_date", "student_local_id", "status_code"])
    ws.append(["E1", "G2", 3, datetime(2026, 11, 20), 12345, "A"])
    wb.save(folder / "export.xlsx")
    [change] = _settle(source, outbox)
    assert change.row["student_local_id"] == "12345" and change.row["period"] == 3
    assert change.row["sheet_date"].isoformat() == "2026-11-20"


# -- outbox and batching -------------------------------------------------------------------------


def test_outbox_keeps_batches_until_acknowledged(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    items = [OutboxItem("raw.laval.attendance", "G1", "c.avsc", b"body%d" % i, 10) for i in range(3)]
    outbox.commit_poll("src", items)
    assert outbox.depth() == 3
    pending = outbox.pending(10, exclude=set())
    assert [p.body for p in pending] == [b"body0", b"body1", b"body2"]
    assert [p.body for p in outbox.pending(10, exclude={pending[0].seq})] == [b"body1", b"body2"]
    outbox.ack([pending[1].seq])
    outbox.close()
    again = Outbox(tmp_path / "o.sqlite")
    assert [p.body for p in again.pending(10, set())] == [b"body0", b"body2"]


def test_a_failed_poll_commit_leaves_neither_batches_nor_state(tmp_path: Path) -> None:
    from connectors.outbox import SourceRowState

    outbox = Outbox(tmp_path / "o.sqlite")
    item = OutboxItem("t", None, "c", b"x", 1)
    with pytest.raises(Exception):  # noqa: B017 - any failure inside the transaction
        outbox.commit_poll("src", [item], [("rk", SourceRowState("fp", "k", "{}"))], kv={"a": object()})  # type: ignore[dict-item]
    assert outbox.depth() == 0 and outbox.source_state("src") == {}


def test_batches_follow_natural_units(tmp_path: Path) -> None:
    from connectors.source_rows import coerce_row, make_change, row_fingerprint, source_key

    rows = [coerce_row(Dataset.ATTENDANCE, attendance_row(n, group=f"G{n // 12}")) for n in range(24)]
    changes = [make_change("laval", "GPI", Dataset.ATTENDANCE, r, source_key(r, ("student_local_id",)),
                           row_fingerprint(r), "upsert") for r in rows]  # fmt: skip
    batches = build_batches("laval", "GPI", changes, datetime.now().astimezone(), max_records=500)
    # One sheet per (school, group, period, day): 2 groups × 6 periods, 2 marks each.
    assert len(batches) == 12
    assert all(b["css"] == "laval" and len(b["marks"]) == n == 2 for _, b, n in batches)
    assert {(b["group_code"], b["period"]) for _, b, _ in batches} == {
        (f"G{g}", p) for g in (0, 1) for p in range(1, 7)
    }
    small = build_batches("laval", "GPI", changes, datetime.now().astimezone(), max_records=1)
    assert len(small) == 24


# -- configuration -------------------------------------------------------------------------------

TOML = """
css = "laval"
outbox = "outbox.sqlite"
[broker]
bootstrap = "127.0.0.1:9092"
[broker.config]
"security.protocol" = "SASL_SSL"
"sasl.password" = "${VIGIE_TEST_SASL_PASSWORD}"
[registry]
url = "http://127.0.0.1:8081"
[[sources]]
kind = "sql"
dataset = "attendance"
source_system = "GPI"
url = "sqlite:///source.sqlite"
table = "presences"
[[sources]]
kind = "file_drop"
dataset = "staff"
source_system = "Excel"
folder = "drop/rh"
"""


def test_toml_and_yaml_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    import yaml

    monkeypatch.setenv("VIGIE_TEST_SASL_PASSWORD", "s3cret")
    (tmp_path / "c.toml").write_text(TOML)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tomllib.loads(TOML)))
    for name in ("c.toml", "c.yaml"):
        config = load_connector_config(tmp_path / name)
        assert config.css == "laval" and config.broker.config["sasl.password"] == "s3cret"
        assert config.outbox == tmp_path / "outbox.sqlite"
        assert isinstance(config.sources[1], FileDropSourceConfig)
        assert config.sources[1].folder == tmp_path / "drop/rh"


@pytest.mark.parametrize(
    ("change", "message"),
    [(('table = "presences"', 'table = "presences"\nquery = "SELECT 1"'), "exactly one of 'query' or 'table'"),
     (('dataset = "staff"', 'dataset = "payroll"'), "sources.1.file_drop.dataset"),
     (('css = "laval"', 'css = "laval"\ncolour = "blue"'), "colour: Extra inputs are not permitted"),
     (("${VIGIE_TEST_SASL_PASSWORD}", "${VIGIE_TEST_UNSET_VAR}"), "VIGIE_TEST_UNSET_VAR is not set"),
     (('[broker]', '[broker'), "not valid TOML")],
)  # fmt: skip
def test_config_errors_are_specific(
    tmp_path: Path, monkeypatch, change: tuple[str, str], message: str
) -> None:
    monkeypatch.setenv("VIGIE_TEST_SASL_PASSWORD", "x")
    monkeypatch.delenv("VIGIE_TEST_UNSET_VAR", raising=False)
    path = tmp_path / "c.toml"
    path.write_text(TOML.replace(*change, 1))
    with pytest.raises(ConnectorConfigError, match=message):
        load_connector_config(path)
