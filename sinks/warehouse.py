"""The warehouse interface and its two backends, which run the same DDL and queries.

- ``ChdbWarehouse``: the ClickHouse engine in-process (chDB), the embedded default.
  One chDB data directory can be opened by a single process, and a process can
  open only one: the worker owns it and answers status queries for the others.
- ``ClickHouseWarehouse``: a ClickHouse server through clickhouse-connect (HTTP).

Insert failures are sorted in two: ``WarehouseUnavailable`` (the warehouse cannot
take writes now: retry with backoff, stop consuming) and ``WarehouseRejected`` (the
rows themselves are refused: retrying cannot help, dead-letter them).
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, unquote, urlparse

import pandas as pd


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot take writes right now: retry later (backpressure)."""


class WarehouseRejected(RuntimeError):
    """The warehouse refused these rows (bad type, unknown column…): retrying cannot help."""


# ClickHouse error codes that describe the warehouse's state, not the rows: worth a retry.
# https://github.com/ClickHouse/ClickHouse/blob/master/src/Common/ErrorCodes.cpp
TRANSIENT_ERROR_CODES = frozenset({
    159,  # TIMEOUT_EXCEEDED
    164,  # READONLY
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    243,  # NOT_ENOUGH_SPACE
    252,  # TOO_MANY_PARTS
    285,  # TOO_FEW_LIVE_REPLICAS
    319,  # UNKNOWN_STATUS_OF_INSERT
    425,  # SYSTEM_ERROR
    439,  # CANNOT_SCHEDULE_TASK
})  # fmt: skip
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")


def insert_failure(table: str, exc: BaseException, connection_lost: bool = False) -> RuntimeError:
    """Sort an insert failure into unavailable (retry) or rejected (dead-letter)."""
    code = _ERROR_CODE.search(str(exc))
    message = f"insert into {table} failed: {exc}"
    if connection_lost or (code is not None and int(code[1]) in TRANSIENT_ERROR_CODES):
        return WarehouseUnavailable(message)
    return WarehouseRejected(message)


class Warehouse(Protocol):
    """What the sinks, migrations and status views need from a warehouse."""

    database: str

    supports_access_control: bool

    def command(self, sql: str) -> None: ...

    def query(self, sql: str) -> list[dict[str, Any]]: ...

    def insert_frame(self, table: str, frame: pd.DataFrame) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class AvroIngest(Protocol):
    """A warehouse whose engine reads Confluent-framed Avro itself (both backends)."""

    def insert_avro(self, table: str, columns: list[str], select: str, structure: str, array: str,
                    data: bytes, registry_url: str) -> None: ...  # fmt: skip


def avro_insert_sql(database: str, table: str, columns: list[str], select: str, source: str, array: str,
                    registry_url: str | None = None) -> str:  # fmt: skip
    """``INSERT … SELECT`` of Confluent-framed batches read from ``source`` (a table function),
    one row per element of ``array`` (as ``r``); with ``registry_url``, the setting that tells
    the engine where to fetch the writers' schemas, as a clause."""
    head = f"INSERT INTO {database}.{table} ({', '.join(columns)})"
    sql = f"{head} SELECT {select} FROM {source} ARRAY JOIN {array} AS r"
    if registry_url is not None:
        url = registry_url.replace("\\", "\\\\").replace("'", "\\'")
        sql += f" SETTINGS format_avro_schema_registry_url = '{url}'"
    return sql


class ChdbWarehouse:
    """chDB session on a data directory, shared by threads behind a lock."""

    # chDB has no users, roles or row policies: compartments are parameterized views.
    supports_access_control = False

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
                raise insert_failure(table, exc) from exc

    def insert_avro(self, table: str, columns: list[str], select: str, structure: str, array: str,
                    data: bytes, registry_url: str) -> None:  # fmt: skip
        """Insert Confluent-framed Avro batches decoded by the engine (``file()`` over a private
        spool file: chDB takes no insert data beside the query)."""
        spool = self.path.parent / "spool"
        spool.mkdir(mode=0o700, exist_ok=True)
        path = spool / f"{table}.avro"
        shape = structure.replace("\\", "\\\\").replace("'", "\\'")
        source = f"file('{path}', 'AvroConfluent', '{shape}')"
        sql = avro_insert_sql(self.database, table, columns, select, source, array, registry_url)
        with self._lock:  # one spool file per table: the lock serializes its writers
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as spooled:
                    spooled.write(data)
                self._session.query(sql)
            except OSError as exc:
                raise WarehouseUnavailable(f"insert into {table} failed: {exc}") from exc
            except Exception as exc:
                raise insert_failure(table, exc) from exc
            finally:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._session.close()


class ClickHouseWarehouse:
    """A ClickHouse server through clickhouse-connect.

    ``url`` is ``http[s]://[user[:password]@]host:port[?database=…&compress=…]``; the
    password may also come from the environment through the settings, never the logs.
    """

    supports_access_control = True

    def __init__(self, url: str, database: str = "vigie", connect_timeout_s: float = 5.0) -> None:
        import clickhouse_connect

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"warehouse URL must look like http://host:8123, got {redact_url(url)!r}")
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.database = database
        self.url = redact_url(url)
        self._lock = threading.Lock()
        self._client_args: dict[str, Any] = {
            "host": parsed.hostname,
            "port": parsed.port or (8443 if parsed.scheme == "https" else 8123),
            "username": unquote(parsed.username or "default"),
            "password": unquote(parsed.password or ""),
            "secure": parsed.scheme == "https",
            "compress": options.get("compress", "lz4"),
            "connect_timeout": connect_timeout_s,
            "send_receive_timeout": 120,
            "autogenerate_session_id": False,
        }
        self._connect = clickhouse_connect.get_client
        self._client: Any = None
        self.command(f"CREATE DATABASE IF NOT EXISTS {database}")

    def _get(self) -> Any:
        if self._client is None:
            self._client = self._connect(**self._client_args)
        return self._client

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from clickhouse_connect.driver.exceptions import OperationalError

        with self._lock:
            try:
                return getattr(self._get(), method)(*args, **kwargs)
            except OperationalError as exc:
                self._client = None  # reconnect on the next call
                raise WarehouseUnavailable(f"ClickHouse at {self.url} is unreachable: {exc}") from exc

    def command(self, sql: str) -> None:
        self._call("command", sql)

    def query(self, sql: str) -> list[dict[str, Any]]:
        result = self._call("query", sql)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def insert_frame(self, table: str, frame: pd.DataFrame) -> None:
        try:
            self._call("insert_df", table, frame, database=self.database)
        except WarehouseUnavailable:
            raise
        except Exception as exc:
            raise insert_failure(table, exc) from exc

    def insert_avro(self, table: str, columns: list[str], select: str, structure: str, array: str,
                    data: bytes, registry_url: str) -> None:  # fmt: skip
        """Insert Confluent-framed Avro batches decoded by the server (``input()`` over the
        request body). The server itself fetches the schemas from ``registry_url``."""
        shape = structure.replace("\\", "\\\\").replace("'", "\\'")
        sql = avro_insert_sql(self.database, table, columns, select, f"input('{shape}')", array)
        try:
            # A query-level setting (an HTTP parameter): it governs how the body is parsed.
            settings = {"format_avro_schema_registry_url": registry_url}
            self._call("command", f"{sql} FORMAT AvroConfluent", data=data, settings=settings)
        except WarehouseUnavailable:
            raise
        except Exception as exc:
            raise insert_failure(table, exc) from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
    return parsed._replace(netloc=netloc).geturl()


def open_warehouse(url: str, path: Path, database: str) -> Warehouse:
    """The server backend when ``url`` is set, else the embedded engine on ``path``."""
    if url:
        return ClickHouseWarehouse(url, database)
    return ChdbWarehouse(path, database)
