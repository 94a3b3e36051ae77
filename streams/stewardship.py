"""What the data stewards need to fix mappings: codes and texts no mapping or reference
covered, per CSS.

Kept in a small SQLite file in the stream stage's data directory — never in the
warehouse nor on a curated topic, since a free-text reason may name a person. Even here
the file is the stage's alone (mode 0600), values are masked before they are stored
(phone numbers, e-mail addresses, codes permanents, postal codes), and an entry not seen
for the retention period is deleted. Counts accumulate across batches and restarts.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from streams.harmonize import Unmapped

_SCHEMA = """
CREATE TABLE IF NOT EXISTS unmapped (
    css TEXT NOT NULL, dataset TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    count INTEGER NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
    PRIMARY KEY (css, dataset, field, value)
)
"""
_UPSERT = (
    "INSERT INTO unmapped VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (css, dataset, field, value) DO UPDATE SET count = count + excluded.count, "
    "first_seen = min(first_seen, excluded.first_seen), last_seen = max(last_seen, excluded.last_seen)"
)
DEFAULT_RETENTION_DAYS = 30

# Order matters: an e-mail before anything inside it, a code permanent (4 letters, 8 digits)
# before its digits could look like a phone number.
_MASKS = (
    (re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "[courriel]"),
    (re.compile(r"\b[A-Za-z]{4}\s?\d{8}\b"), "[code permanent]"),
    (re.compile(r"\b[A-Za-z]\d[A-Za-z][\s-]?\d[A-Za-z]\d\b"), "[code postal]"),
    (re.compile(r"(\+?1[\s.-]?)?(\(\d{3}\)|\d{3})[\s.-]?\d{3}[\s.-]?\d{4}\b"), "[téléphone]"),
    (re.compile(r"\b\d{3}[\s.-]\d{4}\b"), "[téléphone]"),
)


def mask(text: str) -> str:
    """``text`` with phone numbers, e-mail addresses, codes permanents and postal codes
    replaced by what they are."""
    for pattern, label in _MASKS:
        text = pattern.sub(label, text)
    return text


@dataclass(frozen=True)
class UnmappedEntry:
    """One unmapped code or text (masked) with how often and when it was seen."""

    css: str
    dataset: str
    field: str
    value: str
    count: int
    first_seen: str
    last_seen: str


def _owner_only(path: Path) -> None:
    """Create ``path`` with mode 0600 if missing, and tighten it (and SQLite's side files)."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            file.chmod(0o600)


class StewardshipLog:
    """Counts of unmapped values, in SQLite (WAL, so reports can read while the worker writes)."""

    def __init__(self, path: Path, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.retention = timedelta(days=retention_days)
        _owner_only(path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()  # several stage batches may report at once
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        _owner_only(path)
        self._remask()
        self.purge()

    def _remask(self) -> None:
        """Mask what an earlier version stored in clear (once; masked values stay as they are)."""
        rows = self._db.execute(
            "SELECT css, dataset, field, value, count, first_seen, last_seen FROM unmapped"
        )
        clear = [row for row in rows.fetchall() if mask(row[3]) != row[3]]
        if not clear:
            return
        with self._lock, self._db:
            for css, dataset, field, value, count, first, last in clear:
                self._db.execute(
                    "DELETE FROM unmapped WHERE css = ? AND dataset = ? AND field = ? AND value = ?",
                    (css, dataset, field, value),
                )
                self._db.execute(_UPSERT, (css, dataset, field, mask(value), count, first, last))

    def purge(self, now: datetime | None = None) -> int:
        """Delete the entries not seen for the retention period; return how many."""
        cutoff = ((now or datetime.now(UTC)) - self.retention).isoformat(timespec="seconds")
        with self._lock, self._db:
            return self._db.execute("DELETE FROM unmapped WHERE last_seen < ?", (cutoff,)).rowcount

    def record(self, seen: Counter[Unmapped], now: datetime | None = None) -> None:
        """Add a batch's unmapped values (masked) to the counts, and apply the retention."""
        if not seen:
            return
        stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        masked: Counter[tuple[str, str, str, str]] = Counter()
        for u, n in seen.items():
            masked[(u.css, u.dataset, u.field, mask(u.value))] += n
        with self._lock, self._db:
            self._db.executemany(_UPSERT, [(*key, n, stamp, stamp) for key, n in masked.items()])
        self.purge(now)

    def report(self, css: str | None = None) -> list[UnmappedEntry]:
        """Unmapped values (masked), most frequent first, optionally for one CSS."""
        sql = "SELECT css, dataset, field, value, count, first_seen, last_seen FROM unmapped"
        args: tuple[str, ...] = ()
        if css is not None:
            sql += " WHERE css = ?"
            args = (css,)
        rows = self._db.execute(sql + " ORDER BY css, count DESC, value", args).fetchall()
        # Masked again on the way out: a row written by another process's older version.
        return [UnmappedEntry(r[0], r[1], r[2], mask(r[3]), r[4], r[5], r[6]) for r in rows]

    def close(self) -> None:
        self._db.close()
