"""The warehouse interface and its embedded backend (chDB, the ClickHouse engine in-process).

Both backends (embedded chDB here; a ClickHouse server through clickhouse-connect
later) run the same DDL and queries. One chDB data directory can be opened by a
single process, and a process can open only one: the worker owns it and answers
status queries for the other commands.
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path
from typing import Any, Protocol

import pandas as pd


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot take writes right now: retry later (backpressure)."""


class Warehouse(Protocol):
    """What the sinks, migrations and status views need from a warehouse."""

    database: str

    def command(self, sql: str) -> None: ...

    def query(self, sql: str) -> list[dict[str, Any]]: ...

    def insert_frame(self, table: str, frame: pd.DataFrame) -> None: ...

    def close(self) -> None: ...


class ChdbWarehouse:
    """chDB session on a data directory, shared by threads behind a lock."""

    def __init__(self, path: Path, database: str = "vigie") -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.database = database
        self._lock = threading.Lock()
        self._session = session.Session(str(path))
        # Atomic is the engine refreshable materialized views need.
        self.command(f"CREATE DATABASE IF NOT EXISTS {database} ENGINE = Atomic")

    def for_database(self, database: str) -> ChdbWarehouse:
        """The same store under another database (chDB allows one store per process)."""
        other = copy.copy(self)  # shares the session and its lock
        other.database = database
        other.command(f"CREATE DATABASE IF NOT EXISTS {database} ENGINE = Atomic")
        return other

    def command(self, sql: str) -> None:
        with self._lock:
            self._session.query(sql)

    def query(self, sql: str) -> list[dict[str, Any]]:
        with self._lock:
            result = self._session.query(sql, "JSONEachRow")
        text = result.bytes().decode("utf-8") if result is not None else ""
        return [json.loads(line) for line in text.splitlines() if line]

    def insert_frame(self, table: str, frame: pd.DataFrame) -> None:
        """Insert a DataFrame through chDB's Python() table function (the fast route)."""
        columns = ", ".join(frame.columns)
        with self._lock:
            try:
                self._session.query(
                    f"INSERT INTO {self.database}.{table} ({columns}) SELECT {columns} FROM Python(frame)"
                )
            except Exception as exc:
                raise WarehouseUnavailable(f"insert into {table} failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._session.close()
