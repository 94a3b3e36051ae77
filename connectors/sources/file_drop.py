"""File-drop source: a folder where a small CSS drops CSV or XLSX exports.

Each file is processed once, streamed in chunks (memory stays bounded whatever its size):

- a row that cannot be read is refused on its own, with its line and the column and rule it
  broke; the file's good rows go through. The refusals are listed in
  ``rejected/<name>.lignes-refusees.txt`` and counted in the connector's heartbeat, so the
  network's status view shows "fichier refusé (n lignes)" for the CSS;
- a file that cannot be taken at all (too large, unreadable, no required columns, a workbook
  with several data sheets that do not all fit the contract) moves to ``rejected/`` with a
  ``<name>.reason.txt`` beside it — never read partially without saying so;
- otherwise it moves to ``archive/`` once its changes are in the outbox.

Encoding: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252 (what Excel writes
in Québec: ’ and œ are not Latin-1). Cells are data: a formula is never evaluated (an XLSX
cell gives the value Excel stored; a CSV cell starting with ``=`` is text).

A half-written file is never read: hidden and temporary names are ignored, and a file is
read only once its size and modification time have not changed for ``settle_s`` seconds
across two looks. With ``full_export``, each file is the whole dataset: rows of the previous
files missing from it become deletions.
"""

from __future__ import annotations

import codecs
import csv
import logging
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.config import FileDropSourceConfig
from connectors.outbox import Outbox
from connectors.source_rows import (
    DEFAULT_KEYS,
    DEFAULT_WINDOW_COLUMNS,
    RowError,
    coerce_row,
    key_of_raw,
    record_key_of,
    required_columns,
    source_key,
)
from connectors.sources import Poll, Rejection
from connectors.sources.detect import detect_changes, detect_deletions

log = logging.getLogger(__name__)

SUFFIXES = {".csv", ".xlsx"}
TEMPORARY_SUFFIXES = {".tmp", ".part", ".partial", ".crdownload", ".swp"}
CHUNK_ROWS = 5_000
REPORT_SUFFIXES = (".reason.txt", ".lignes-refusees.txt")


class MalformedFile(ValueError):
    """The file cannot be taken as a whole; the message says why (never a value)."""


def _header_name(name: Any) -> str:
    return str(name or "").strip().lstrip("\ufeff")


def detect_encoding(path: Path) -> str:
    """UTF-8 (BOM or not), UTF-16 (BOM), else Windows-1252; read in blocks, never whole."""
    with path.open("rb") as f:
        head = f.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while block := f.read(1 << 20):
                decoder.decode(block)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            pass
        f.seek(0)
        windows = codecs.getincrementaldecoder("cp1252")()
        try:
            while block := f.read(1 << 20):
                windows.decode(block)
            return "cp1252"
        except UnicodeDecodeError:
            return "latin-1"  # bytes Windows-1252 leaves undefined: still text, never a crash


def _csv_rows(path: Path) -> Iterator[tuple[int | None, int, dict[str, Any]]]:
    encoding = detect_encoding(path)
    with path.open(encoding=encoding, newline="") as f:
        first = f.readline()
        if not first.strip():
            raise MalformedFile("the file is empty")
        delimiter = max((";", ",", "\t"), key=first.count)
        f.seek(0)
        reader = csv.reader(f, delimiter=delimiter)
        header = [_header_name(h) for h in next(reader)]
        try:
            for values in reader:
                if not any(v.strip() for v in values):
                    continue
                yield None, reader.line_num, dict(zip(header, values, strict=False))
        except csv.Error as exc:
            raise MalformedFile(f"CSV unreadable at line {reader.line_num}: {exc}") from None


def _xlsx_rows(
    path: Path, required: set[str], rename: dict[str, str]
) -> Iterator[tuple[int | None, int, dict[str, Any]]]:
    """Rows of every data sheet. A sheet with data whose header lacks the required columns
    rejects the whole file (checked before any row is given, so nothing is sent partially)."""
    from openpyxl import load_workbook

    try:
        # read_only streams the sheets; data_only gives the value Excel stored, not the formula.
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise MalformedFile(f"not a readable XLSX workbook ({type(exc).__name__})") from None
    try:
        sheets = []
        for number, sheet in enumerate(workbook.worksheets, start=1):
            rows = sheet.iter_rows(values_only=True)
            header = next(rows, None)
            if header is None or not any(v is not None for v in header):
                continue  # an empty sheet
            names = [rename.get(_header_name(h), _header_name(h)) for h in header]
            missing = required - set(names)
            if missing:
                raise MalformedFile(
                    f"sheet {number} of {len(workbook.worksheets)}: missing required column(s): "
                    f"{', '.join(sorted(missing))} (every sheet with data must follow the contract; "
                    "remove the other sheets or export one file per sheet)"
                )
            sheets.append(number)
        if not sheets:
            raise MalformedFile("the workbook has no data")
        for number in sheets:
            rows = workbook.worksheets[number - 1].iter_rows(values_only=True)
            header = [_header_name(h) for h in next(rows)]
            for line, values in enumerate(rows, start=2):
                if any(v is not None and str(v).strip() for v in values):
                    yield (
                        number if len(workbook.worksheets) > 1 else None,
                        line,
                        dict(zip(header, values, strict=False)),
                    )
    finally:
        workbook.close()


class FileDropSource:
    """Watches one drop folder for one dataset."""

    def __init__(self, config: FileDropSourceConfig, css: str, outbox: Outbox) -> None:
        self.config = config
        self.css = css
        self.source_system = config.source_system
        self.dataset = config.dataset
        self.folder = config.folder
        self.archive = self.folder / "archive"
        self.rejected = self.folder / "rejected"
        for folder in (self.folder, self.archive, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)
        self._outbox = outbox
        self.key_columns = tuple(config.key or DEFAULT_KEYS[config.dataset])
        self.scope_column = DEFAULT_WINDOW_COLUMNS[config.dataset]
        self.id = f"drop:{config.dataset.value}:{self.folder.resolve()}"
        self._seen: dict[Path, tuple[int, int]] = {}
        self.waiting = 0  # files seen but not settled yet: another look is needed
        self.label = f"{config.dataset.value} (fichier)"

    def _candidates(self) -> list[Path]:
        ready = []
        now = time.time()
        current: dict[Path, tuple[int, int]] = {}
        for path in sorted(self.folder.iterdir()):
            name = path.name
            if not path.is_file() or name.startswith((".", "~")) or path.suffix.lower() in TEMPORARY_SUFFIXES:
                continue
            st = path.stat()
            stamp = (st.st_size, st.st_mtime_ns)
            current[path] = stamp
            if path.suffix.lower() not in SUFFIXES:
                self._reject(
                    path, f"unsupported file type {path.suffix or '(none)'}: drop .csv or .xlsx files"
                )
                current.pop(path)
                continue
            if self._seen.get(path) == stamp and now - st.st_mtime >= self.config.settle_s:
                ready.append(path)
        self._seen = current
        self.waiting = len(current) - len(ready)
        return ready

    def _rows(self, path: Path) -> Iterator[tuple[int | None, int, dict[str, Any]]]:
        size = path.stat().st_size
        if size > self.config.max_bytes:
            raise MalformedFile(
                f"the file is {size:,} bytes, over this source's limit of {self.config.max_bytes:,} "
                "(max_bytes): split the export"
            )
        required = required_columns(self.dataset)
        mapping = self.config.columns
        xlsx = path.suffix.lower() == ".xlsx"
        raw = _xlsx_rows(path, required, mapping) if xlsx else _csv_rows(path)
        checked = False
        for sheet, line, row in raw:
            renamed = {mapping.get(k, k): v for k, v in row.items()}
            if not checked:
                missing = required - set(renamed)
                if missing:
                    raise MalformedFile(f"missing required column(s): {', '.join(sorted(missing))}")
                checked = True
            yield sheet, line, renamed
        if not checked:
            raise MalformedFile("no data rows")

    def _move(self, path: Path, folder: Path) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = folder / path.name
        if target.exists():
            target = folder / f"{path.stem}.{stamp}{path.suffix}"
        shutil.move(path, target)
        return target

    def _reject(self, path: Path, reason: str) -> None:
        target = self._move(path, self.rejected)
        target.with_name(target.name + ".reason.txt").write_text(
            f"{path.name} was not processed.\n\n{reason}\n\nFix the file and drop it again.\n",
            encoding="utf-8",
        )
        log.warning("%s: %s rejected: %s", self.id, path.name, reason.splitlines()[0])

    def _report_rows(self, path: Path, refused: list[Rejection], total: int) -> None:
        shown = "\n".join(
            (f"{r.where.split(', ', 1)[1]}, " if ", " in r.where else "") + f"line {r.line}: {r.reason}"
            for r in refused[:1000]
        )
        more = f"\n… and {len(refused) - 1000} more" if len(refused) > 1000 else ""
        (self.rejected / f"{path.name}.lignes-refusees.txt").write_text(
            f"{path.name}: {len(refused)} of {total} row(s) refused; the other rows were sent.\n\n"
            f"{shown}{more}\n\nFix these rows and drop them again (the rows already sent are "
            "recognised and not doubled).\n",
            encoding="utf-8",
        )
        log.warning("%s: %s: %d of %d row(s) refused", self.id, path.name, len(refused), total)

    def poll(self) -> Iterator[Poll]:
        for path in self._candidates():
            try:
                yield from self._poll_file(path)
            except MalformedFile as exc:
                self._reject(path, str(exc))
                refusal = Rejection(self.label, None, str(exc).splitlines()[0])
                yield Poll(rejections=[refusal], rejected_files=1)
            except OSError as exc:
                log.warning("%s: cannot read %s yet: %s", self.id, path.name, exc.strerror)

    def _poll_file(self, path: Path) -> Iterator[Poll]:
        seen: set[str] = set()
        refused: list[Rejection] = []
        hold = False
        total = sent = 0
        poll = Poll()
        rows: list[dict[str, Any]] = []
        rows_in = self._rows(path)
        while True:
            try:
                sheet, line, raw = next(rows_in)
            except StopIteration:
                break
            except MalformedFile as exc:
                if sent:  # say exactly what happened: the rows before were already sent
                    raise MalformedFile(f"{exc}\n(the {sent} row(s) before it were read and sent)") from None
                raise
            total += 1
            try:
                typed = coerce_row(self.dataset, raw)
                source_key(typed, self.key_columns)
                rows.append(typed)
            except RowError as exc:
                where = self.label if sheet is None else f"{self.label}, feuille {sheet}"
                rejection = Rejection(where, line, str(exc))
                refused.append(rejection)
                poll.skipped_rows += 1
                poll.rejections.append(rejection)
                key = key_of_raw(self.dataset, raw, self.key_columns)
                if key is None:
                    hold = True
                elif self.config.full_export:
                    seen.add(record_key_of(self.css, self.source_system, self.dataset, key))
            if len(rows) >= CHUNK_ROWS:
                found = self._detect(poll, rows)
                if self.config.full_export:  # keys are kept only when they can mean deletions
                    seen |= found
                sent = total
                yield poll
                poll, rows = Poll(), []
        found = self._detect(poll, rows)
        if self.config.full_export:
            seen |= found
        if self.config.full_export and not hold:
            state = self._outbox.source_state(self.id)
            detect_deletions(poll, self.css, self.source_system, self.dataset, state, seen, self.key_columns)
        if refused:
            self._report_rows(path, refused, total)

        def archive(path: Path = path) -> None:
            self._move(path, self.archive)

        poll.on_committed = archive
        yield poll

    def _detect(self, poll: Poll, rows: list[dict[str, Any]]) -> set[str]:
        keys = [record_key_of(self.css, self.source_system, self.dataset, source_key(r, self.key_columns))
                for r in rows]  # fmt: skip
        known = self._outbox.fingerprints(self.id, keys)
        return detect_changes(
            poll, self.css, self.source_system, self.dataset, rows, self.key_columns, known,
            self.scope_column, keep_skeleton=self.config.full_export,
        )  # fmt: skip

    def close(self) -> None:
        return None
