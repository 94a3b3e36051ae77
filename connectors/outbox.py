"""The durable outbox between change detection and Kafka (SQLite, WAL).

A poll's batches and the change-detection state that produced them are committed in
one transaction, so a ``kill -9`` at any moment either keeps both (the batches will be
sent) or neither (the changes are detected again). A batch leaves the outbox only after
the broker acknowledged it; a crash between the acknowledgement and the delete re-sends
the same bytes, with the same event ids, which downstream recognises.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key TEXT, contract TEXT NOT NULL,
        body BLOB NOT NULL, records INTEGER NOT NULL, created_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS source_state (
        source TEXT NOT NULL, record_key TEXT NOT NULL, fingerprint TEXT NOT NULL,
        source_key TEXT NOT NULL, row_json TEXT NOT NULL, PRIMARY KEY (source, record_key))""",
    "CREATE TABLE IF NOT EXISTS kv (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


@dataclass(frozen=True)
class OutboxItem:
    """One encoded batch waiting for the broker (``seq`` is 0 until stored)."""

    topic: str
    key: str | None
    contract: str
    body: bytes
    records: int
    seq: int = 0


@dataclass(frozen=True)
class SourceRowState:
    """What the connector last sent for a source row."""

    fingerprint: str
    source_key: str
    row_json: str


class Outbox:
    """SQLite file holding unsent batches, change-detection state and watermarks."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One connector loop uses it at a time, but not always the thread that opened it.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed poll survives a power cut, not only a process kill.
        self._db.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            self._db.execute(statement)

    def close(self) -> None:
        self._db.close()

    def depth(self) -> int:
        """Batches not yet acknowledged by the broker."""
        return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def commit_poll(
        self,
        source: str,
        items: Iterable[OutboxItem],
        upserts: Iterable[tuple[str, SourceRowState]] = (),
        deletes: Iterable[str] = (),
        kv: dict[str, str] | None = None,
    ) -> None:
        """Store a poll's batches and its new state in one transaction."""
        now = time.time()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO outbox (topic, key, contract, body, records, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(i.topic, i.key, i.contract, i.body, i.records, now) for i in items],
            )
            db.executemany(
                "INSERT INTO source_state VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, record_key) DO UPDATE "
                "SET fingerprint = excluded.fingerprint, source_key = excluded.source_key, "
                "row_json = excluded.row_json",
                [(source, rk, s.fingerprint, s.source_key, s.row_json) for rk, s in upserts],
            )
            db.executemany(
                "DELETE FROM source_state WHERE source = ? AND record_key = ?",
                [(source, rk) for rk in deletes],
            )
            db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", list((kv or {}).items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def source_state(self, source: str) -> dict[str, SourceRowState]:
        rows = self._db.execute(
            "SELECT record_key, fingerprint, source_key, row_json FROM source_state WHERE source = ?",
            (source,),
        )
        return {rk: SourceRowState(fp, key, row) for rk, fp, key, row in rows}

    def pending(self, limit: int, exclude: set[int]) -> list[OutboxItem]:
        """Oldest batches first, skipping those already in flight."""
        rows = self._db.execute(
            "SELECT seq, topic, key, contract, body, records FROM outbox ORDER BY seq LIMIT ?",
            (limit + len(exclude),),
        ).fetchall()
        items = [OutboxItem(t, k, c, b, r, seq) for seq, t, k, c, b, r in rows if seq not in exclude]
        return items[:limit]

    def ack(self, seqs: Iterable[int]) -> None:
        """Remove batches the broker acknowledged (one transaction: one fsync, not one per batch)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def get(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])
