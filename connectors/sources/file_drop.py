"""File-drop source: a folder where a small CSS drops CSV or XLSX exports.

Each file is processed once: archived after its changes are in the outbox, or moved
to ``rejected/`` with a ``<name>.reason.txt`` beside it when it is malformed (a
missing column, a bad value on some line). A half-written file is never read: hidden
and temporary names are ignored, and a file is read only once its size and
modification time have not changed for ``settle_s`` seconds across two looks.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.config import FileDropSourceConfig
from connectors.outbox import Outbox
from connectors.source_rows import DEFAULT_KEYS, RowError, coerce_row, required_columns
from connectors.sources import Poll
from connectors.sources.detect import detect_changes

log = logging.getLogger(__name__)

SUFFIXES = {".csv", ".xlsx"}
TEMPORARY_SUFFIXES = {".tmp", ".part", ".partial", ".crdownload", ".swp"}


class MalformedFile(ValueError):
    """The file cannot be taken as a whole; the message lists why (never a value)."""


def _header_name(name: Any) -> str:
    return str(name or "").strip().lstrip("\ufeff")


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (comma or semicolon, UTF-8 or Latin-1) or the first sheet of an XLSX file."""
    if path.suffix.lower() == ".xlsx":
        from openpyxl import load_workbook

        try:
            workbook = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:
            raise MalformedFile(f"not a readable XLSX workbook ({type(exc).__name__})") from None
        try:
            sheet = workbook.worksheets[0]
            values = list(sheet.iter_rows(values_only=True))
        finally:
            workbook.close()
        if not values:
            raise MalformedFile("the first sheet is empty")
        header = [_header_name(h) for h in values[0]]
        return [dict(zip(header, row, strict=False)) for row in values[1:] if any(v is not None for v in row)]
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # spreadsheet exports on Windows
    first = text.splitlines()[0] if text else ""
    if not first.strip():
        raise MalformedFile("the file is empty")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    reader.fieldnames = [_header_name(h) for h in reader.fieldnames or []]
    try:
        return [row for row in reader if any((v or "").strip() for v in row.values() if isinstance(v, str))]
    except csv.Error as exc:
        raise MalformedFile(f"CSV unreadable at line {reader.line_num}: {exc}") from None


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
        self.id = f"drop:{config.dataset.value}:{self.folder.resolve()}"
        self._seen: dict[Path, tuple[int, int]] = {}
        self.waiting = 0  # files seen but not settled yet: another look is needed

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

    def _rename(self, row: dict[str, Any]) -> dict[str, Any]:
        mapping = self.config.columns
        return {mapping.get(k, k): v for k, v in row.items()}

    def _parse(self, path: Path) -> list[dict[str, Any]]:
        rows = [self._rename(r) for r in read_table(path)]
        if not rows:
            raise MalformedFile("no data rows")
        missing = required_columns(self.dataset) - set(rows[0])
        if missing:
            raise MalformedFile(f"missing required column(s): {', '.join(sorted(missing))}")
        typed, problems = [], []
        for line, row in enumerate(rows, start=2):
            try:
                typed.append(coerce_row(self.dataset, row))
            except RowError as exc:
                problems.append(f"line {line}: {exc}")
        if problems:
            shown = "\n".join(problems[:50])
            more = f"\n… and {len(problems) - 50} more" if len(problems) > 50 else ""
            raise MalformedFile(f"{len(problems)} malformed row(s):\n{shown}{more}")
        return typed

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

    def poll(self) -> list[Poll]:
        polls = []
        state = self._outbox.source_state(self.id)
        for path in self._candidates():
            try:
                rows = self._parse(path)
            except MalformedFile as exc:
                self._reject(path, str(exc))
                continue
            except OSError as exc:
                log.warning("%s: cannot read %s yet: %s", self.id, path.name, exc.strerror)
                continue
            poll = Poll()
            try:
                detect_changes(
                    poll, self.css, self.source_system, self.dataset, rows, self.key_columns, state
                )
            except RowError as exc:
                self._reject(path, str(exc))
                continue

            def archive(path: Path = path) -> None:
                self._move(path, self.archive)

            poll.on_committed = archive
            polls.append(poll)
        return polls

    def close(self) -> None:
        return None
