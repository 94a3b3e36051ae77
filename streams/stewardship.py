"""What the data stewards need to fix mappings: codes and texts no mapping covered, per CSS.

Kept in a small SQLite file in the stream stage's data directory — never in the
warehouse nor on a curated topic, since a free-text reason may name a person.
Counts accumulate across batches and restarts.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from streams.harmonize import Unmapped

_SCHEMA = """
CREATE TABLE IF NOT EXISTS unmapped (
    css TEXT NOT NULL, dataset TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    count INTEGER NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
    PRIMARY KEY (css, dataset, field, value)
)
"""


@dataclass(frozen=True)
class UnmappedEntry:
    """One unmapped code or text with how often and when it was seen."""

    css: str
    dataset: str
    field: str
    value: str
    count: int
    first_seen: str
    last_seen: str


class StewardshipLog:
    """Counts of unmapped values, in SQLite (WAL, so reports can read while the worker writes)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()  # several stage batches may report at once
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def record(self, seen: Counter[Unmapped]) -> None:
        """Add a batch's unmapped values to the counts."""
        if not seen:
            return
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO unmapped VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (css, dataset, field, value) "
                "DO UPDATE SET count = count + excluded.count, last_seen = excluded.last_seen",
                [(u.css, u.dataset, u.field, u.value, n, now, now) for u, n in seen.items()],
            )

    def report(self, css: str | None = None) -> list[UnmappedEntry]:
        """Unmapped values, most frequent first, optionally for one CSS."""
        sql = "SELECT css, dataset, field, value, count, first_seen, last_seen FROM unmapped"
        args: tuple[str, ...] = ()
        if css is not None:
            sql += " WHERE css = ?"
            args = (css,)
        rows = self._db.execute(sql + " ORDER BY css, count DESC, value", args).fetchall()
        return [UnmappedEntry(*row) for row in rows]

    def close(self) -> None:
        self._db.close()
