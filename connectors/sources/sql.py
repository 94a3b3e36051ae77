"""SQL source: any SQLAlchemy URL (PostgreSQL, MariaDB/MySQL, SQLite, SQL Server), a table
or a query.

Two ways to read, chosen by the configuration:

- with a ``watermark`` (a modification time, or SQL Server ``rowversion``): each poll reads
  only the rows past the last watermark seen, re-reading a ``lookback`` window so that a
  transaction committed late is not missed. A no-change poll reads no row.
- without one: each poll reads the whole table (fine for small tables, not for Montréal).

Changes are found by hashing each typed row and comparing with the hash last sent. Deletions
are looked for in a recent window only (``delete_window_days`` of the dataset's date column,
e.g. the sheets of the last two weeks): the source's row count per day is compared with the
state's, and only a day whose count differs (or that had changes) has its keys compared.

Rows are streamed in chunks (bounded memory); each chunk is committed to the outbox as it is
read. A malformed row is skipped and reported; its key (when readable) still counts as present,
so it never looks deleted and never holds back other rows' deletions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, SQLAlchemyError

from connectors.config import SqlSourceConfig
from connectors.outbox import Outbox
from connectors.source_rows import (
    DEFAULT_KEYS,
    DEFAULT_WINDOW_COLUMNS,
    RowError,
    coerce_row,
    key_of_raw,
    record_key_of,
    scope_value,
    source_key,
)
from connectors.sources import Poll, Rejection, SourceError
from connectors.sources.detect import detect_changes, detect_deletions

log = logging.getLogger(__name__)

CHUNK_ROWS = 20_000


def describe_db_error(exc: SQLAlchemyError) -> str:
    """One line saying what the database refused. A data error's text can quote a value from
    the source (a name, a date of birth), so only its kind is given."""
    if isinstance(exc, DataError):
        return f"{type(exc.orig or exc).__name__} (a value the database could not convert)"
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {detail[0] if detail else ''}".strip()


# -- watermark values: what the database returned, kept as JSON between polls ----------------
def _wm_encode(value: Any) -> dict[str, Any]:
    if isinstance(value, bytes | bytearray | memoryview):  # SQL Server rowversion: binary(8)
        return {"kind": "rowversion", "v": int.from_bytes(bytes(value), "big")}
    if isinstance(value, datetime):
        return {"kind": "datetime", "v": value.isoformat()}
    if isinstance(value, date):
        return {"kind": "date", "v": value.isoformat()}
    if isinstance(value, bool):
        raise TypeError("a boolean cannot be a watermark")
    if isinstance(value, int):
        return {"kind": "int", "v": value}
    if isinstance(value, float | Decimal):
        return {"kind": "number", "v": str(value)}
    return {"kind": "text", "v": str(value)}


def _wm_key(stored: dict[str, Any]) -> Any:
    """A comparable form of a stored watermark."""
    kind, v = stored["kind"], stored["v"]
    if kind == "datetime":
        return datetime.fromisoformat(v)
    if kind == "date":
        return date.fromisoformat(v)
    if kind == "number":
        return Decimal(v)
    return v


def _lower_bound(stored: dict[str, Any], lookback: float) -> Any:
    """The parameter of ``watermark > :lower``: the newest value seen, moved back to cover
    transactions that committed late (those started up to ``lookback`` seconds — or
    rowversion/number units — before the previous poll)."""
    kind, v = stored["kind"], stored["v"]
    if kind == "rowversion":
        return max(0, int(v) - int(lookback)).to_bytes(8, "big")
    if kind == "int":
        return int(v) - int(lookback)
    if kind == "number":
        return Decimal(v) - Decimal(str(lookback))
    polled = datetime.fromisoformat(stored["polled_at"])
    if kind == "date":
        return min(date.fromisoformat(v), (polled - timedelta(seconds=lookback)).date())
    if kind == "datetime":
        newest = datetime.fromisoformat(v)
        if newest.tzinfo is None:  # a local time without zone: compare in the connector's local time
            polled = polled.astimezone().replace(tzinfo=None)
        return min(newest, polled - timedelta(seconds=lookback))
    try:  # ISO text (SQLite keeps times as text): same shape back, so text comparison holds
        newest = datetime.fromisoformat(v)
    except ValueError:
        return v
    if newest.tzinfo is None:
        polled = polled.astimezone().replace(tzinfo=None)
    lower = min(newest, polled - timedelta(seconds=lookback))
    if len(v) <= 10:
        return lower.date().isoformat()
    return lower.isoformat(sep="T" if "T" in v else " ")


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
        self.scope_column = (
            None
            if config.delete_window_days is None
            else config.delete_window_column or DEFAULT_WINDOW_COLUMNS[config.dataset]
        )
        self.waiting = 0
        self._reported: set[bytes] = set()
        self._deletions_checked_at = -float("inf")
        self.rows_read = 0  # rows fetched from the database since start (what a poll costs)

    @property
    def label(self) -> str:
        return f"{self.dataset.value} ({self.config.table or 'query'})"

    # -- reading -----------------------------------------------------------------------------
    def _chunks(self, conn: Connection, sql: str, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).execute(text(sql), params)
        for part in result.mappings().partitions(CHUNK_ROWS):
            self.rows_read += len(part)
            yield [dict(r) for r in part]

    def _typed(self, raw_rows: list[dict[str, Any]], poll: Poll, present: set[str]) -> list[dict[str, Any]]:
        """Typed rows; a malformed one is reported (column and rule, never the value) and its key,
        when readable, added to ``present``; ``poll.hold_deletions`` when it is not."""
        rows = []
        for raw in raw_rows:
            try:
                typed = coerce_row(self.dataset, raw)
                source_key(typed, self.key_columns)
                rows.append(typed)
            except RowError as exc:
                # A malformed row stays in the table and is read again by every whole-table
                # poll: it is reported once per run, not counted again at every poll.
                mark = hashlib.sha256(repr(sorted(raw.items(), key=lambda kv: kv[0])).encode()).digest()[:12]
                if mark not in self._reported:
                    self._reported.add(mark)
                    poll.skipped_rows += 1
                    poll.rejections.append(Rejection(self.label, None, str(exc)))
                key = key_of_raw(self.dataset, raw, self.key_columns)
                if key is None:
                    poll.hold_deletions = True
                else:
                    present.add(record_key_of(self.css, self.source_system, self.dataset, key))
        return rows

    def _detect(self, poll: Poll, rows: list[dict[str, Any]], seen_since: str | None = None) -> set[str]:
        keys = [record_key_of(self.css, self.source_system, self.dataset, source_key(r, self.key_columns))
                for r in rows]  # fmt: skip
        known = self._outbox.fingerprints(self.id, keys)
        return detect_changes(
            poll, self.css, self.source_system, self.dataset, rows, self.key_columns, known,
            self.scope_column, seen_since, keep_skeleton=self.config.detect_deletes,
        )  # fmt: skip

    def poll(self) -> Iterator[Poll]:
        """Yield the polls of this look at the source, one per chunk read, then one with the
        deletions and the new watermark. The caller commits each before asking for the next."""
        try:
            with self._engine.connect() as conn:
                if self.config.watermark is None:
                    yield from self._poll_whole(conn)
                else:
                    yield from self._poll_since(conn)
        except SQLAlchemyError as exc:
            raise SourceError(f"{self.label}: {describe_db_error(exc)}") from None

    def _poll_whole(self, conn: Connection) -> Iterator[Poll]:
        seen: set[str] = set()
        hold = False
        since = self._since()
        for raw in self._chunks(conn, self._sql, {}):
            poll = Poll()
            seen |= self._detect(poll, self._typed(raw, poll, seen), since)
            hold |= poll.hold_deletions
            yield poll
        final = Poll()
        if self.config.detect_deletes and not hold:
            state = self._outbox.source_state(self.id, since=since)
            detect_deletions(final, self.css, self.source_system, self.dataset, state, seen, self.key_columns)
        yield final

    def _since(self) -> str | None:
        if self.config.delete_window_days is None:
            return None
        return (datetime.now(UTC).date() - timedelta(days=self.config.delete_window_days)).isoformat()

    def _poll_since(self, conn: Connection) -> Iterator[Poll]:
        wm = self.config.watermark
        assert wm is not None
        stored_text = self._outbox.get(self._watermark_kv)
        stored = json.loads(stored_text) if stored_text and stored_text.startswith("{") else None
        started = datetime.now(UTC)
        sql, params = f"SELECT * FROM ({self._sql}) q", {}
        if stored is not None:
            sql += f" WHERE q.{wm} > :lower"
            params["lower"] = _lower_bound(stored, self.config.lookback_s)
        newest = None if stored is None else (_wm_key(stored), stored)
        hold = changed = False
        for raw in self._chunks(conn, sql, params):
            poll = Poll()
            for r in raw:
                value = r.get(wm)
                if value is not None:
                    enc = _wm_encode(value)
                    if newest is None or _wm_key(enc) > newest[0]:
                        newest = (_wm_key(enc), enc)
            present: set[str] = set()
            self._detect(poll, self._typed(raw, poll, present))
            changed |= bool(poll.changes)
            hold |= poll.hold_deletions
            yield poll
        final = Poll()
        if newest is not None:
            final.kv[self._watermark_kv] = json.dumps({**newest[1], "polled_at": started.isoformat()})
        # Deletions often come with other changes (a sheet taken again): look whenever this poll
        # found some, and otherwise at most every delete_check_every_s.
        due = changed or time.monotonic() - self._deletions_checked_at >= self.config.delete_check_every_s
        if self.config.detect_deletes and not hold and due:
            self._deletions_in_window(conn, final)
            self._deletions_checked_at = time.monotonic()
        yield final

    def _deletions_in_window(self, conn: Connection, poll: Poll) -> None:
        """Compare keys only for the days whose row count differs from the state's."""
        col = self.scope_column
        since = self._since()
        if col is None or since is None:  # no window: compare every key (small tables only)
            present: set[str] = set()
            seen: set[str] = set()
            for raw in self._chunks(conn, self._sql, {}):
                seen |= self._detect(poll, self._typed(raw, poll, present))
            if not poll.hold_deletions:
                state = self._outbox.source_state(self.id)
                detect_deletions(poll, self.css, self.source_system, self.dataset, state, seen | present,
                                 self.key_columns)  # fmt: skip
            return
        bound: Any = since if conn.dialect.name == "sqlite" else date.fromisoformat(since)
        counts_sql = (
            f"SELECT q.{col} AS s, count(*) AS n FROM ({self._sql}) q "
            f"WHERE q.{col} >= :since GROUP BY q.{col}"
        )
        source_counts: dict[str, int] = {}
        raw_value: dict[str, Any] = {}
        for s, n in conn.execute(text(counts_sql), {"since": bound}):
            scope = scope_value(s)
            if scope is None:
                continue
            source_counts[scope] = source_counts.get(scope, 0) + int(n)
            raw_value.setdefault(scope, s)
        # The chunks read above are committed by now: a day where a row was deleted (even if
        # another was inserted) has more rows in the state than in the source.
        state_counts = self._outbox.scope_counts(self.id, since)
        scopes = {
            s for s in set(source_counts) | set(state_counts) if source_counts.get(s) != state_counts.get(s)
        }
        sqlite = conn.dialect.name == "sqlite"
        for scope in sorted(scopes):
            value = raw_value.get(scope, scope if sqlite else date.fromisoformat(scope))
            rows_sql = f"SELECT * FROM ({self._sql}) q WHERE q.{col} = :scope"
            scope_present: set[str] = set()
            scope_seen: set[str] = set()
            scope_poll = Poll()
            for raw in self._chunks(conn, rows_sql, {"scope": value}):
                # Rows of the day not seen through the watermark (committed later than the
                # lookback, or changed without touching it) are sent here too.
                scope_seen |= self._detect(scope_poll, self._typed(raw, scope_poll, scope_present))
            poll.merge(scope_poll)
            if scope_poll.hold_deletions:
                continue
            state = self._outbox.source_state(self.id, [scope])
            seen_here = scope_seen | scope_present
            detect_deletions(
                poll, self.css, self.source_system, self.dataset, state, seen_here, self.key_columns
            )

    def close(self) -> None:
        self._engine.dispose()
