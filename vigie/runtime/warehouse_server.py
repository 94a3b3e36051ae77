"""A ClickHouse HTTP-interface stand-in over chDB, limited to what clickhouse-connect uses.

A ClickHouse server does not install on the project's machines (no binary on the
package registries), and a chDB data directory can be opened by one process only.
This small server puts the real engine (chDB) behind ClickHouse's HTTP protocol so
that several workers can share one warehouse, the server backend is exercised
with the real client (clickhouse-connect), and a warehouse outage is a real one:
stop this process and every client's insert fails until it is back.

Supported: ``GET|POST /`` with the query in the ``query`` parameter and/or the body,
``database``, ``default_format`` and ``param_<name>`` (query parameters, ``{name:Type}``)
parameters, ``INSERT … FORMAT <fmt>`` with the data in the body (identity, gzip or lz4
encoded), results in any ClickHouse format, ``X-ClickHouse-Summary`` with the rows read
and written, errors with ``X-ClickHouse-Exception-Code``; ``GET /ping``. Other settings
sent as URL parameters are accepted and ignored.

Security (chDB itself has no users and its table functions reach any file): one user,
``default``, with a password (HTTP basic auth, ``X-ClickHouse-User``/``-Key`` headers or
``user``/``password`` parameters); a GET only reads (ClickHouse's HTTP ``readonly``);
one statement per request; every statement is checked on the engine's own parse tree
before it runs (``query_guard``): no table function, engine or clause that reaches a
file or the network, no settings; ``default`` is a plain database (chDB's own is an
overlay where a table named like a path reads that file).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import re
import tempfile
import threading
import uuid
import zlib
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from vigie.runtime.datadir import secure_data_dir, write_private
from vigie.runtime.query_guard import QueryRefused, check, parse_ast, split_format

_INSERT_WITH_DATA = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<table>[\w.`\"]+)\s*(?P<columns>\([^)]*\))?\s*FORMAT\s+(?P<fmt>\w+)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_INSERT_HEAD = re.compile(rb"^(\s*INSERT\s+INTO\s+[^\n]*?FORMAT\s+\w+)[ \t]*\r?\n", re.IGNORECASE)
_INLINE_DATA_START = re.compile(r"\bVALUES\b|\bFORMAT\s+\w+", re.IGNORECASE)
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
# Formats the server reads inserted rows in: not those that load schema or template files
# named by settings. Values is read with expressions off (see ``_SESSION_SETTINGS``).
INPUT_FORMATS = frozenset({
    "Values", "Native", "RowBinary", "RowBinaryWithNames", "RowBinaryWithNamesAndTypes", "Arrow",
    "ArrowStream", "Parquet", "ORC", "CSV", "CSVWithNames", "CSVWithNamesAndTypes", "TSV",
    "TabSeparated", "TSVWithNames", "TabSeparatedWithNames", "TSVWithNamesAndTypes",
    "TabSeparatedWithNamesAndTypes", "JSONEachRow", "JSONCompactEachRow", "JSONLines", "NDJSON",
})  # fmt: skip
_SELF_DESCRIBING = frozenset({
    "Native", "Arrow", "ArrowStream", "Parquet", "ORC", "RowBinaryWithNamesAndTypes",
})  # fmt: skip
USER = "default"
# The largest request body, as sent and decoded: the worker's inserts are a few MB (a
# flush every 0.3 s); without a bound one request takes the server's memory.
MAX_BODY_BYTES = 256 * 1024 * 1024
# A body this small is read and dropped when a request is refused, so that the client
# gets the answer on a connection it can keep; a larger one is never read (closed).
_DRAIN_BYTES = 64 * 1024
# Set once on the session (clients cannot change settings): Values data holds literals
# only, else `(file('…'))` in inserted rows would read a file. Data is not parsed as SQL,
# so the parse-tree check never sees it.
_SESSION_SETTINGS = (
    "SET input_format_values_interpret_expressions = 0",
    "SET input_format_values_deduce_templates_of_expressions = 0",
)
# Database engines that keep their tables in the store (chDB's default Overlay reads files).
_DATABASE_ENGINES = frozenset({"Atomic", "Memory"})
# ClickHouse's HTTP statuses for the error codes this server raises itself.
_STATUS_OF_CODE = {
    62: HTTPStatus.BAD_REQUEST, 164: HTTPStatus.FORBIDDEN, 307: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    497: HTTPStatus.FORBIDDEN, 516: HTTPStatus.UNAUTHORIZED,
}  # fmt: skip


class BodyTooLarge(QueryRefused):
    """The request's body, as sent or decoded, is over the server's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over {limit} bytes (send smaller inserts)", code=307)


def _decode_body(body: bytes, encoding: str | None, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body without its Content-Encoding, refused past ``limit`` bytes as it is decoded
    (a 1 MB gzip of zeros is 1 GB: decoding it whole would take the server's memory)."""
    if not encoding or encoding == "identity":
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body
    if encoding not in ("gzip", "lz4"):
        raise ValueError(f"unsupported Content-Encoding {encoding!r} (send identity, gzip or lz4)")
    import lz4.frame

    # A body is a sequence of members (gzip) or frames (lz4, one per block of a streamed
    # insert): decode every one, not only the first.
    out: list[bytes] = []
    size, rest = 0, body
    while rest:
        room = limit - size + 1
        if encoding == "gzip":
            inflate = zlib.decompressobj(wbits=31)
            chunk, done = inflate.decompress(rest, room), inflate.eof
            rest = inflate.unused_data
        else:
            frame = lz4.frame.LZ4FrameDecompressor()
            chunk = frame.decompress(rest, max_length=room)
            done, rest = frame.eof, frame.unused_data
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        if not done:
            raise ValueError(f"truncated {encoding} data in the request body")
        out.append(chunk)
    return b"".join(out)


@dataclass(frozen=True)
class Outcome:
    """What one statement returned, and the counts for ``X-ClickHouse-Summary``."""

    body: bytes
    fmt: str
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    elapsed_s: float = 0.0

    def summary(self) -> str:
        return json.dumps({
            "read_rows": str(self.read_rows), "read_bytes": str(self.read_bytes),
            "written_rows": str(self.written_rows), "written_bytes": str(self.written_bytes),
            "total_rows_to_read": str(self.read_rows), "result_rows": str(self.written_rows),
            "result_bytes": str(self.written_bytes), "elapsed_ns": str(int(self.elapsed_s * 1e9)),
        })  # fmt: skip


def _query_id(given: str | None) -> str:
    """The client's query id echoed back only if it is a plain token (no header injection)."""
    return given if given and re.fullmatch(r"[\w.:-]{1,128}", given) else uuid.uuid4().hex


def _escaped(text: str) -> str:
    """A query parameter's value in ClickHouse's escaped text form (as the HTTP ``param_``
    values are sent), so that the engine reads back exactly ``text``."""
    return text.translate({ord("\\"): "\\\\", ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r", 0: "\\0"})


def _outcome(result: Any, fmt: str) -> Outcome:
    if result is None:
        return Outcome(b"", fmt)
    return Outcome(
        result.bytes(), fmt, result.rows_read(), result.bytes_read(), result.rows_written(),
        result.bytes_written(), result.elapsed(),
    )  # fmt: skip


class WarehouseServer:
    """Serve one chDB data directory over the ClickHouse HTTP protocol, to one user with
    a password."""

    def __init__(
        self,
        path: Path,
        password: str,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        from chdb import session

        if not password:
            raise ValueError("the warehouse server needs a password")
        secure_data_dir(path)
        self.path = path
        self.max_body_bytes = max_body_bytes
        self._password = password.encode("utf-8")
        self._session = session.Session(str(path))
        for setting in _SESSION_SETTINGS:
            self._session.query(setting)
        self._close_the_file_system()
        self._lock = threading.Lock()
        self._closed = False
        self._spool = Path(tempfile.mkdtemp(prefix="vigie-warehouse-"))
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True

    def _close_the_file_system(self) -> None:
        """Take chDB's ``default`` database out: in chDB (clickhouse-local) it is an Overlay
        over a Filesystem database, where a table named like a path is that file, e.g.
        ``INSERT INTO t SELECT * FROM `…/pseudonym.key``` or a view over `/etc/passwd`,
        which no parse-tree rule sees (it is an identifier). chDB rebuilds the overlay at
        each start, so this runs at each start: detach it, then attach its own Atomic part
        alone when it has one (tables a client made in ``default``); when that cannot be
        attached (a new or empty store) the server runs without a ``default`` database
        (creating one would write metadata the next start's overlay cannot re-attach).
        Refuse to serve if any database still reaches outside the store."""
        if self._database_engines().get("default") == "Overlay":
            self._session.query("DETACH DATABASE default")
            # Nothing of its own to attach (new or empty store): no `default` in this session.
            with contextlib.suppress(Exception):
                self._session.query("ATTACH DATABASE default")  # metadata/default.sql, Atomic
        outside = {n: e for n, e in self._database_engines().items() if e not in _DATABASE_ENGINES}
        if outside:
            self._session.close()
            raise RuntimeError(f"the warehouse holds databases that reach outside it: {outside}")

    def _database_engines(self) -> dict[str, str]:
        text = self._session.query("SELECT name, engine FROM system.databases", "TSVRaw").bytes().decode()
        return dict(line.split("\t", 1) for line in text.splitlines() if line)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def authenticated(self, user: str, password: str) -> bool:
        """Whether these credentials are the server's (compared in constant time)."""
        ok_user = hmac.compare_digest(user.encode("utf-8"), USER.encode("utf-8"))
        return hmac.compare_digest(password.encode("utf-8"), self._password) and ok_user

    def _canonical(self, sql: str, params: dict[str, str]) -> tuple[str, str]:
        """(canonical text, EXPLAIN AST) of one statement, both from the engine's parser;
        with the session lock held."""
        # The text travels as a query parameter: no quoting to get wrong. formatQuery parses
        # with multi-statements off, so 'SELECT 1; SELECT …' stops here.
        try:
            formatted = self._session.query(
                "SELECT formatQuery({q:String})", "TSVRaw", params={"q": _escaped(sql)}
            )
        except Exception as exc:  # the client's syntax error, without our wrapping query
            message = str(exc).split(" In scope SELECT formatQuery", 1)[0].rstrip(" .:")
            if "Multi-statements" in message:
                raise QueryRefused("one statement per request (no multi-statements)", 62) from None
            raise QueryRefused(message.removeprefix("Code: 62. DB::Exception: "), 62) from None
        canonical = formatted.bytes().decode("utf-8").rstrip("\n")
        # Only one statement can follow EXPLAIN AST now.
        ast = self._session.query(f"EXPLAIN AST {canonical}", "TSVRaw", params=params or None)
        return canonical, ast.bytes().decode("utf-8")

    def _inline_rows(self, sql: str, canonical: str) -> bytes:
        """The rows after ``VALUES`` / ``FORMAT f`` in an insert's text: the first split whose
        head the engine formats to the same canonical statement. A wrong split can only
        refuse the insert: what follows the head is read as data, never as SQL."""
        for match in _INLINE_DATA_START.finditer(sql):
            head = sql[: match.end()]
            try:
                formatted = self._session.query(
                    "SELECT formatQuery({q:String})", "TSVRaw", params={"q": _escaped(head)}
                )
            except Exception:
                continue
            if formatted.bytes().decode("utf-8").rstrip("\n") == canonical:
                return sql[match.end() :].lstrip(" \t").removeprefix("\r").removeprefix("\n").encode("utf-8")
        raise QueryRefused("send the rows in the body after 'INSERT INTO t FORMAT f'", code=62)

    def execute(
        self,
        sql: str,
        data: bytes | None,
        database: str | None,
        fmt: str,
        params: dict[str, str] | None = None,
        read_only: bool = False,
    ) -> Outcome:
        """Check, then run one statement; ``data`` is the body of an ``INSERT … FORMAT f``."""
        params = params or {}
        with self._lock:
            if self._closed:
                raise ConnectionError("Code: 210. DB::Exception: the warehouse server is shutting down")
            if database:
                if not re.fullmatch(r"\w+", database):
                    raise QueryRefused(f"database name {database!r} is not an identifier", code=62)
                self._session.query(f"USE {database}")
            canonical, ast = self._canonical(sql, params)
            tree = parse_ast(ast)
            check(tree, canonical, read_only)
            is_insert = tree.kind == "InsertQuery"
            has_select = any(c.kind.startswith("Select") for c in tree.children)
            if is_insert and not has_select:
                match = _INSERT_WITH_DATA.match(canonical)
                if match is None:
                    raise QueryRefused("rows go with 'INSERT INTO t [(cols)] FORMAT f' or VALUES only", 62)
                if match["fmt"] not in INPUT_FORMATS:
                    raise QueryRefused(f"format {match['fmt']} is not accepted for inserts", 62)
                if data is None:
                    # Rows inline after VALUES/FORMAT f: never run the client's text (chDB would
                    # run a '; SELECT …' after the rows); the rows go through the spool as data.
                    data = self._inline_rows(sql, canonical)
                spool = self._spool / f"{uuid.uuid4().hex}.data"
                spool.write_bytes(data)
                try:
                    columns = (match["columns"] or "").strip()
                    if match["fmt"] in _SELF_DESCRIBING:  # columns matched by name
                        select = columns[1:-1] if columns else "*"
                        head = f"SELECT {select} FROM file('{spool}', '{match['fmt']}')"
                    else:  # text rows take the table's structure, as a client's insert does
                        head = f"FROM INFILE '{spool}' FORMAT {match['fmt']}"
                    result = self._session.query(f"INSERT INTO {match['table']} {columns} {head}")
                finally:
                    spool.unlink(missing_ok=True)
                return _outcome(result, fmt)
            if data is not None:
                raise QueryRefused("a body of data goes with 'INSERT INTO t [(cols)] FORMAT f' only", 62)
            if tree.kind.startswith("Select"):
                statement, explicit = split_format(canonical)
                # The engine refuses table functions itself under readonly = 1: a second lock.
                statement += "\nSETTINGS readonly = 1"
            else:
                statement, explicit = canonical, None
            fmt = explicit or fmt
            result = self._session.query(statement, fmt, params=params or None)
        return _outcome(result, fmt)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # No "BaseHTTP/0.6 Python/3.x" banner for a scanner to match.
            server_version = "vigie-warehouse"
            sys_version = ""
            # A connection that sends nothing for this long is closed, so that idle or
            # trickling clients (authenticated or not) cannot hold the server's threads.
            timeout = 120

            def log_message(self, format: str, *args: Any) -> None:
                pass  # queries may be large; the engine's errors are returned to the client

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _announced(self) -> int | None:
                """The body's announced length (None: chunked, length unknown)."""
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    return None
                length = int(self.headers.get("Content-Length") or 0)
                if length < 0:
                    raise ValueError("negative Content-Length")
                return length

            def _read_body(self) -> bytes:
                """The body, read only once the client is authenticated, up to the limit."""
                limit = server.max_body_bytes
                length = self._announced()
                if length is not None:
                    if length > limit:
                        raise BodyTooLarge(limit)
                    return self.rfile.read(length) if length else b""
                # clickhouse-connect streams inserts as they are serialized.
                chunks: list[bytes] = []
                total = 0
                while True:
                    size = int(self.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
                    if size < 0:
                        raise ValueError("negative chunk size")
                    if size == 0:
                        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    total += size
                    if total > limit:
                        raise BodyTooLarge(limit)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline(8)

            def _leave_body_unread(self) -> None:
                """Before refusing a request: drop a small body, else close the connection
                after the answer (its unread bytes would be read as the next request)."""
                try:
                    length = self._announced()
                except ValueError:
                    length = None
                if length is not None and length <= _DRAIN_BYTES:
                    self.rfile.read(length)
                else:
                    self.close_connection = True

            def _credentials(self, params: dict[str, str]) -> tuple[str, str]:
                header = self.headers.get("Authorization") or ""
                if header.lower().startswith("basic "):
                    try:
                        user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
                    except ValueError:
                        return "", ""
                    return user, password
                if self.headers.get("X-ClickHouse-User") is not None:
                    return self.headers["X-ClickHouse-User"], self.headers.get("X-ClickHouse-Key") or ""
                return params.get("user", USER), params.get("password", "")

            def _serve(self) -> None:
                url = urlparse(self.path)
                if url.path == "/ping":  # as ClickHouse: a health check needs no credentials
                    self._leave_body_unread()
                    self._reply(HTTPStatus.OK, b"Ok.\n", {})
                    return
                params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                # Credentials come from the URL and the headers: a client without them never
                # gets its body read (else anyone reaching the port could fill the memory).
                if not server.authenticated(*self._credentials(params)):
                    self._leave_body_unread()
                    self._error(
                        516, f"{USER}: Authentication failed: password is incorrect, or there is no "
                        "user with such name. (AUTHENTICATION_FAILED)",
                    )  # fmt: skip
                    return
                query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
                # GET only reads, as ClickHouse's HTTP interface; a client may ask for it on POST.
                read_only = self.command == "GET" or params.get("readonly", "0") not in ("", "0")
                try:
                    if self.command == "POST":
                        try:
                            body = self._read_body()
                        except ValueError:  # a malformed length: the stream's framing is lost
                            self.close_connection = True
                            raise
                    else:  # a GET's query is in its URL; a body sent with it is not read
                        self._leave_body_unread()
                        body = b""
                    body = _decode_body(body, self.headers.get("Content-Encoding"), server.max_body_bytes)
                    query = params.get("query")
                    data: bytes | None = None
                    head = _INSERT_HEAD.match(body) if query is None else None
                    if head is not None:
                        # clickhouse-connect sends 'INSERT … FORMAT f\n' + data in one body.
                        query, data = head[1].decode("utf-8"), body[head.end() :]
                    elif query is None:
                        query = body.decode("utf-8")
                    elif body and _INSERT_WITH_DATA.match(query):
                        data = body
                    elif body:
                        query = f"{query}\n{body.decode('utf-8')}"
                    fmt = params.get("default_format", "TabSeparated")
                    if not re.fullmatch(r"\w+", fmt):
                        raise QueryRefused(f"unknown format {fmt[:40]!r}", code=73)
                    outcome = server.execute(
                        query, data, params.get("database"), fmt, query_params, read_only
                    )
                except QueryRefused as exc:
                    if isinstance(exc, BodyTooLarge):
                        self.close_connection = True  # the rest of the body stays unread
                    self._error(exc.code, str(exc))
                    return
                except Exception as exc:  # the engine's message is the client's answer
                    message = str(exc)
                    code = _ERROR_CODE.search(message)
                    if message.startswith("Code:") and code:
                        self._error(int(code[1]), message, raw=True)
                    else:
                        self._error(1000, message)
                    return
                self._reply(
                    HTTPStatus.OK, outcome.body,
                    {"X-ClickHouse-Format": outcome.fmt, "X-ClickHouse-Timezone": "UTC",
                     "X-ClickHouse-Query-Id": _query_id(params.get("query_id")),
                     "X-ClickHouse-Summary": outcome.summary()},
                )  # fmt: skip

            def _error(self, code: int, message: str, raw: bool = False) -> None:
                text = message if raw else f"Code: {code}. DB::Exception: {message}"
                self._reply(
                    _STATUS_OF_CODE.get(code, HTTPStatus.INTERNAL_SERVER_ERROR),
                    text.encode("utf-8") + b"\n",
                    {"X-ClickHouse-Exception-Code": str(code)},
                )

            def _reply(self, status: HTTPStatus, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                if self.close_connection:
                    self.send_header("Connection", "close")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def serve_forever(self) -> None:
        """Serve until ``shutdown`` (from another thread) or a signal."""
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> WarehouseServer:
        """Serve from a background thread (tests, and `vigie up` when asked to share its store)."""
        threading.Thread(target=self.serve_forever, name="warehouse-server", daemon=True).start()
        return self

    def close(self) -> None:
        """Stop listening and close the engine (after ``serve_forever`` returned)."""
        self._httpd.server_close()
        with self._lock:
            self._closed = True
            self._session.close()

    def shutdown(self) -> None:
        """Stop a server started with ``start``."""
        self._httpd.shutdown()
        self.close()


LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def server_password(explicit: str | None, file: Path) -> str:
    """The password: ``explicit`` when set, else the one in ``file``, generated there
    (0600, 32 random bytes) on first use."""
    if explicit:
        return explicit
    try:
        stored = file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        stored = ""
    if stored:
        return stored
    import secrets

    generated = secrets.token_urlsafe(32)
    write_private(file, generated + "\n")
    return generated
