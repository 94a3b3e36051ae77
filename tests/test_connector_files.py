"""File drops as secretaries export them: Windows-1252, BOMs, several sheets, formulas, bad rows,
files too large, full exports that delete."""

from __future__ import annotations

from pathlib import Path

from connectors.config import FileDropSourceConfig
from connectors.outbox import Outbox
from connectors.sources.file_drop import CHUNK_ROWS, FileDropSource
from schemas.contracts import Dataset

HEADER = ["school_code", "group_code", "period", "sheet_date", "student_local_id", "nom", "status_code",
          "absence_text"]  # fmt: skip


def _source(folder: Path, outbox: Outbox, **extra) -> FileDropSource:
    config = FileDropSourceConfig(kind="file_drop", dataset=Dataset.ATTENDANCE, source_system="Excel",
                                  folder=folder, columns={"nom": "last_name"}, settle_s=0.0, **extra)  # fmt: skip
    return FileDropSource(config, "iles", outbox)


def _look(source: FileDropSource, outbox: Outbox, looks: int = 2) -> tuple[list, list]:
    """Two looks (a file is read once it stopped changing); (changes, polls)."""
    changes, polls = [], []
    for _ in range(looks):
        for poll in source.poll():
            outbox.commit_poll(source.id, [], poll.upserts, poll.deletes, poll.kv)
            if poll.on_committed:
                poll.on_committed()
            changes += poll.changes
            polls.append(poll)
    return changes, polls


def _csv(rows: list[list[str]], sep: str = ";") -> str:
    return "\r\n".join(sep.join(r) for r in [HEADER, *rows]) + "\r\n"


def _line(n: int, text: str = "", status: str = "A", date: str = "2026-11-20") -> list[str]:
    return ["E1", "G1", "2", date, f"ST{n}", "Côté", status, text]


def test_windows_1252_export_keeps_apostrophes_and_ligatures(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "o.sqlite")
    source = _source(folder, outbox)
    (folder / "excel.csv").write_bytes(
        _csv([_line(1, "rdv chez l’orthodontiste, mal au cœur")]).encode("cp1252")
    )
    [change], _ = _look(source, outbox)
    assert change.row["absence_text"] == "rdv chez l’orthodontiste, mal au cœur"
    assert change.row["last_name"] == "Côté"


def test_utf8_with_bom_and_comma_separated(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "o.sqlite")
    source = _source(folder, outbox)
    (folder / "bom.csv").write_bytes(b"\xef\xbb\xbf" + _csv([_line(1, "grippe – fièvre")], ",").encode())
    [change], _ = _look(source, outbox)
    assert change.row["school_code"] == "E1" and change.row["absence_text"] == "grippe – fièvre"


def test_bad_rows_are_refused_alone_with_line_and_column(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "o.sqlite")
    source = _source(folder, outbox)
    rows = [_line(n) for n in range(88)] + [_line(99, date="31/02")]
    (folder / "jour.csv").write_text(_csv(rows), encoding="utf-8")
    changes, polls = _look(source, outbox)
    assert len(changes) == 88  # 88 good rows go through; 89 used to be lost for one date
    refused = [r for p in polls for r in p.rejections]
    assert [(r.line, r.reason) for r in refused] == [(90, "column sheet_date: not a valid date")]
    report = (folder / "rejected" / "jour.csv.lignes-refusees.txt").read_text()
    assert "line 90: column sheet_date: not a valid date" in report and "31/02" not in report
    assert (folder / "archive" / "jour.csv").exists()


def test_every_sheet_of_a_workbook_is_read(tmp_path: Path) -> None:
    from openpyxl import Workbook

    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "o.sqlite")
    source = _source(folder, outbox)
    wb = Workbook()
    first = wb.active
    assert first is not None
    first.append(HEADER)
    for n in range(2):
        first.append(_line(n))
    second = wb.create_sheet("groupe 2")
    second.append(HEADER)
    for n in range(2, 12):
        second.append(_line(n))
    wb.create_sheet("vide")
    wb.save(folder / "classeur.xlsx")
    changes, _ = _look(source, outbox)
    assert len(changes) == 12  # not 2: the second sheet was silently lost before


def test_a_workbook_with_a_foreign_sheet_is_refused_whole(tmp_path: Path) -> None:
    from openpyxl import Workbook

    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "o.sqlite")
    source = _source(folder, outbox)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(HEADER)
    ws.append(_line(1))
    notes = wb.create_sheet("notes")
    notes.append(["élève", "commentaire"])
    notes.append(["Léa", "absente souvent"])
    wb.save(folder / "classeur.xlsx")
    changes, polls = _look(source, outbox)
    assert changes == []  # never partially: nothing sent until the file is fixed
    reason = (folder / "rejected" / "classeur.xlsx.reason.txt").read_text()
    assert "sheet 2 of 2: missing required column(s)" in reason and "Léa" not in reason
    assert sum(p.rejected_files for p in polls) == 1


def test_cells_are_data_never_formulas(tmp_path: Path) -> None:
    from openpyxl import Workbook

    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "o.sqlite")
    source = _source(folder, outbox)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(HEADER)
    ws.append(_line(1, text='=HYPERLINK("http://x")'))
    ws.append([*_line(2)[:6], "=A1", ""])  # a formula Excel never computed: no value to send
    wb.save(folder / "formules.xlsx")
    (folder / "injection.csv").write_text(_csv([_line(3, text="=cmd|' /C calc'!A0")]), encoding="utf-8")
    changes, polls = _look(source, outbox)
    by_id = {c.row["student_local_id"]: c.row for c in changes}
    assert set(by_id) == {"ST1", "ST3"}
    assert by_id["ST3"]["absence_text"] == "=cmd|' /C calc'!A0"  # text, as typed; never evaluated
    assert by_id["ST1"]["absence_text"] is None  # openpyxl's stored value of an uncomputed formula
    assert [r.line for p in polls for r in p.rejections] == [3]


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "o.sqlite")
    source = _source(folder, outbox, max_bytes=1_000)
    (folder / "gros.csv").write_text(_csv([_line(n) for n in range(100)]), encoding="utf-8")
    changes, _ = _look(source, outbox)
    assert changes == []
    assert "over this source's limit of 1,000" in (folder / "rejected" / "gros.csv.reason.txt").read_text()


def test_a_large_file_is_read_in_chunks(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "o.sqlite")
    source = _source(folder, outbox)
    n = CHUNK_ROWS * 2 + 10
    (folder / "annee.csv").write_text(_csv([_line(i) for i in range(n)]), encoding="utf-8")
    changes, polls = _look(source, outbox)
    assert len(changes) == n
    assert max(len(p.changes) for p in polls) <= CHUNK_ROWS  # never the whole file in memory at once
    assert (folder / "archive" / "annee.csv").exists()


def test_a_full_export_deletes_the_rows_it_no_longer_has(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "o.sqlite")
    source = _source(folder, outbox, full_export=True)
    (folder / "lundi.csv").write_text(_csv([_line(n) for n in range(5)]), encoding="utf-8")
    assert len(_look(source, outbox)[0]) == 5
    (folder / "mardi.csv").write_text(_csv([_line(n) for n in (0, 1, 3)] + [_line(7)]), encoding="utf-8")
    changes = {(c.row["student_local_id"], c.op) for c in _look(source, outbox)[0]}
    assert changes == {("ST2", "delete"), ("ST4", "delete"), ("ST7", "upsert")}


def test_a_drop_without_full_export_never_deletes(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "o.sqlite")
    source = _source(folder, outbox)
    (folder / "lundi.csv").write_text(_csv([_line(n) for n in range(3)]), encoding="utf-8")
    _look(source, outbox)
    (folder / "mardi.csv").write_text(_csv([_line(9)]), encoding="utf-8")
    assert {c.op for c in _look(source, outbox)[0]} == {"upsert"}


def test_hostile_files_are_refused_with_a_reason_not_a_crash(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    outbox = Outbox(tmp_path / "o.sqlite")
    source = _source(folder, outbox)
    (folder / "enorme.csv").write_text(_csv([_line(1, text="x" * 200_000)]), encoding="utf-8")
    (folder / "faux.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    changes, polls = _look(source, outbox)
    assert changes == []
    reasons = {p.name: p.read_text() for p in (folder / "rejected").glob("*.reason.txt")}
    assert set(reasons) == {"enorme.csv.reason.txt", "faux.xlsx.reason.txt"}
    assert "CSV unreadable at line 2" in reasons["enorme.csv.reason.txt"]
    assert "not a readable XLSX workbook" in reasons["faux.xlsx.reason.txt"]
    assert sum(p.rejected_files for p in polls) == 2
