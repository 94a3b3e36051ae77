"""SQL source: any SQLAlchemy URL (PostgreSQL, SQLite, SQL Server), a table or a query.

Each poll reads the rows (only those past the watermark when one is configured),
emits new and changed rows (row hash against the last version sent), and, where
``detect_deletes`` is on, emits a delete for rows that are gone.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from connectors.config import SqlSourceConfig
from connectors.outbox import Outbox
from connectors.source_rows import DEFAULT_KEYS, RowError, coerce_row
from connectors.sources import Poll
from connectors.sources.detect import detect_changes, detect_deletions

log = logging.getLogger(__name__)


class SqlSource:
    """Polls one table or query of a local database."""

    def __init__(
        self, config: SqlSourceConfig, css: str, outbox: Outbox, engine: Engine | None = None
    ) -> None:
        self.config = config
        self.css = css
        self.source_system = config.source_system
        self.dataset = config.dataset
        self._outbox = outbox
        self._engine = engine or create_engine(config.url, pool_pre_ping=True)
        self.key_columns = tuple(config.key or DEFAULT_KEYS[config.dataset])
        body = config.query or f"SELECT * FROM {config.table}"
        self._sql = body.strip().rstrip(";")
        # Stable across restarts, and without the URL (it may hold a password).
        digest = hashlib.sha256(f"{config.dataset}\x1f{self._sql}".encode()).hexdigest()[:10]
        self.id = f"sql:{config.dataset.value}:{digest}"
        self._watermark_kv = f"{self.id}:watermark"
        self.waiting = 0

    def _typed(self, raw_rows: list[dict[str, Any]], poll: Poll) -> list[dict[str, Any]]:
        rows = []
        for raw in raw_rows:
            try:
                rows.append(coerce_row(self.dataset, raw))
            except RowError as exc:
                poll.skipped_rows += 1
                log.warning("%s: row skipped: %s", self.id, exc)  # the message names a column, not a value
        return rows

    def poll(self) -> list[Poll]:
        poll = Poll()
        wm = self.config.watermark
        state = self._outbox.source_state(self.id)
        with self._engine.connect() as conn:
            if wm is None:
                raw_rows = [dict(r) for r in conn.execute(text(self._sql)).mappings()]
                all_rows = raw_rows
            else:
                last = self._outbox.get(self._watermark_kv)
                sql = f"SELECT * FROM ({self._sql}) q"
                params: dict[str, Any] = {}
                if last is not None:
                    sql += f" WHERE q.{wm} > :last"
                    params["last"] = last
                raw_rows = [dict(r) for r in conn.execute(text(sql + f" ORDER BY q.{wm}"), params).mappings()]
                all_rows = (
                    [dict(r) for r in conn.execute(text(f"SELECT * FROM ({self._sql}) q")).mappings()]
                    if self.config.detect_deletes
                    else []
                )
                if raw_rows:
                    poll.kv[self._watermark_kv] = str(raw_rows[-1][wm])
        typed = self._typed(raw_rows, poll)
        seen = detect_changes(
            poll, self.css, self.source_system, self.dataset, typed, self.key_columns, state
        )
        # A row skipped as malformed is not a deleted row: no deletion is inferred from a
        # poll that skipped rows (their keys are unknown).
        if self.config.detect_deletes and not poll.skipped_rows:
            if wm is not None:
                snapshot = Poll()
                scratch = dict(state)
                seen = detect_changes(
                    snapshot, self.css, self.source_system, self.dataset,
                    self._typed(all_rows, snapshot), self.key_columns, scratch,
                )  # fmt: skip
                if snapshot.skipped_rows:
                    return [poll]
            detect_deletions(poll, self.css, self.source_system, self.dataset, state, seen)
        return [poll]

    def close(self) -> None:
        self._engine.dispose()
