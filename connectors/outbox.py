"""The durable outbox between change detection and Kafka (SQLite, WAL).

A poll's batches and the change-detection state that produced them are committed in
one transaction, so a ``kill -9`` at any moment either keeps both (the batches will be
sent) or neither (the changes are detected again). A batch leaves the outbox only after
the broker acknowledged it; a crash between the acknowledgement and the delete re-sends
the same bytes, with the same event ids, which downstream recognises.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key TEXT, contract TEXT NOT NULL,
        body BLOB NOT NULL, records INTEGER NOT NULL, created_at REAL NOT NULL)""",
    # Change-detection state: a hash per row and the row's key columns (needed to name a
    # deletion), never its identifying content (names, birth dates…). ``scope`` is the row's
    # deletion-window value (e.g. its sheet date), so a poll compares one window, not the table.
    """CREATE TABLE IF NOT EXISTS row_state (
        source TEXT NOT NULL, record_key TEXT NOT NULL, fingerprint TEXT NOT NULL,
        scope TEXT, skeleton TEXT NOT NULL, PRIMARY KEY (source, record_key)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS row_state_scope ON row_state (source, scope)",
    # 0.1 kept whole identified rows here; the rows are detected again once (same event ids).
    "DROP TABLE IF EXISTS source_state",
    "CREATE TABLE IF NOT EXISTS kv (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def _sid(source: str) -> str:
    """A source's id as stored beside each of its rows: a short digest, since a drop folder's
    id holds its full path and millions of rows would repeat it (in the table and its index)."""
    return hashlib.sha256(source.encode()).hexdigest()[:12]


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
    """What the connector last sent for a source row: its hash, its deletion-window value and
    its skeleton (key, header and required columns, without direct identifiers)."""

    fingerprint: str
    scope: str | None
    skeleton: str


class Outbox:
    """SQLite file holding unsent batches, change-detection state and watermarks."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One connector loop uses it at a time, but not always the thread that opened it.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        # Acknowledged batches leave the file too, not only the table (a new outbox only:
        # SQLite fixes this mode when the first table is created).
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
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
        sid = _sid(source)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO outbox (topic, key, contract, body, records, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(i.topic, i.key, i.contract, i.body, i.records, now) for i in items],
            )
            db.executemany(
                "INSERT INTO row_state VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, record_key) DO UPDATE "
                "SET fingerprint = excluded.fingerprint, scope = excluded.scope, "
                "skeleton = excluded.skeleton",
                [(sid, rk, s.fingerprint, s.scope, s.skeleton) for rk, s in upserts],
            )
            db.executemany(
                "DELETE FROM row_state WHERE source = ? AND record_key = ?",
                [(sid, rk) for rk in deletes],
            )
            db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", list((kv or {}).items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def source_state(
        self, source: str, scopes: Iterable[str | None] | None = None, since: str | None = None
    ) -> dict[str, SourceRowState]:
        """The state of a source's rows: all of them, those of the given scopes, or those whose
        scope is ``since`` or later."""
        sql = "SELECT record_key, fingerprint, scope, skeleton FROM row_state WHERE source = ?"
        sid = _sid(source)
        if since is not None:
            rows = self._db.execute(sql + " AND scope >= ?", (sid, since)).fetchall()
        elif scopes is None:
            rows = self._db.execute(sql, (sid,)).fetchall()
        else:
            rows = []
            for scope in scopes:
                rows += self._db.execute(sql + " AND scope IS ?", (sid, scope)).fetchall()
        return {rk: SourceRowState(fp, scope, skel) for rk, fp, scope, skel in rows}

    def fingerprints(self, source: str, record_keys: Iterable[str]) -> dict[str, str]:
        """The last-sent hash of the given rows (those known): one indexed look-up per chunk."""
        keys = list(record_keys)
        out: dict[str, str] = {}
        for start in range(0, len(keys), 900):  # under SQLite's bound-parameter limit
            chunk = keys[start : start + 900]
            out.update(
                self._db.execute(
                    f"SELECT record_key, fingerprint FROM row_state WHERE source = ? "
                    f"AND record_key IN ({', '.join('?' * len(chunk))})",
                    (_sid(source), *chunk),
                ).fetchall()
            )
        return out

    def scope_counts(self, source: str, since: str) -> dict[str, int]:
        """Rows known per scope (deletion-window value) from ``since`` on."""
        rows = self._db.execute(
            "SELECT scope, count(*) FROM row_state WHERE source = ? AND scope >= ? GROUP BY scope",
            (_sid(source), since),
        )
        return {scope: int(n) for scope, n in rows}

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
        # executescript steps the pragma to completion (execute frees a single page).
        self._db.executescript("PRAGMA incremental_vacuum(4096);")  # give back up to ~16 MB

    def records_pending(self) -> int:
        """Records (not batches) not yet acknowledged."""
        return int(self._db.execute("SELECT coalesce(sum(records), 0) FROM outbox").fetchone()[0])

    def put(self, name: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (name, value))

    def get(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])
