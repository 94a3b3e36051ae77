"""A ClickHouse HTTP-interface stand-in over chDB, limited to what clickhouse-connect uses.

A ClickHouse server does not install on the project's machines (no binary on the
package registries), and a chDB data directory can be opened by one process only.
This small server puts the real engine (chDB) behind ClickHouse's HTTP protocol so
that several workers can share one warehouse, the server backend is exercised
with the real client (clickhouse-connect), and a warehouse outage is a real one:
stop this process and every client's insert fails until it is back.

Supported: ``GET|POST /`` with the query in the ``query`` parameter and/or the body,
``database`` and ``default_format`` parameters, ``INSERT … FORMAT <fmt>`` with the
data in the body (identity, gzip or lz4 encoded), results in any ClickHouse format,
errors as status 500 with ``X-ClickHouse-Exception-Code``; ``GET /ping``. Settings
sent as URL parameters are accepted and ignored. No authentication: bind it to
loopback.
"""

from __future__ import annotations

import gzip
import re
import tempfile
import threading
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

_INSERT_WITH_DATA = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<table>[\w.`\"]+)\s*(?P<columns>\([^)]*\))?\s*FORMAT\s+(?P<fmt>\w+)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_INSERT_HEAD = re.compile(rb"^(\s*INSERT\s+INTO\s+[^\n]*?FORMAT\s+\w+)[ \t]*\r?\n", re.IGNORECASE)
_FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
# Parameters that are part of the protocol, not engine settings.
_PROTOCOL_PARAMS = {"query", "database", "default_format"}


def _decode_body(body: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding == "identity":
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        # A streamed insert is a sequence of frames, one per block: decode every one
        # (lz4.frame.decompress alone stops after the first and drops the rest).
        out, rest = [], body
        while rest:
            decompressor = lz4.frame.LZ4FrameDecompressor()
            out.append(decompressor.decompress(rest))
            if not decompressor.eof:
                raise ValueError("truncated lz4 frame in the request body")
            rest = decompressor.unused_data
        return b"".join(out)
    raise ValueError(f"unsupported Content-Encoding {encoding!r} (send identity, gzip or lz4)")


class WarehouseServer:
    """Serve one chDB data directory over the ClickHouse HTTP protocol."""

    def __init__(self, path: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._session = session.Session(str(path))
        self._lock = threading.Lock()
        self._closed = False
        self._spool = Path(tempfile.mkdtemp(prefix="vigie-warehouse-"))
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def execute(self, sql: str, data: bytes | None, database: str | None, fmt: str) -> tuple[bytes, str]:
        """Run one statement; return (result bytes, result format)."""
        with self._lock:
            if self._closed:
                raise ConnectionError("Code: 210. DB::Exception: the warehouse server is shutting down")
            if database:
                self._session.query(f"USE {database}")
            if data is not None:
                match = _INSERT_WITH_DATA.match(sql)
                if match is None:
                    raise ValueError("a body of data goes with 'INSERT INTO t [(cols)] FORMAT f' only")
                spool = self._spool / f"{uuid.uuid4().hex}.data"
                spool.write_bytes(data)
                try:
                    columns = (match["columns"] or "").strip()
                    select = columns[1:-1] if columns else "*"
                    self._session.query(
                        f"INSERT INTO {match['table']} {columns} "
                        f"SELECT {select} FROM file('{spool}', '{match['fmt']}')"
                    )
                finally:
                    spool.unlink(missing_ok=True)
                return b"", fmt
            explicit = _FORMAT_CLAUSE.search(sql)
            if explicit:
                fmt = explicit[1]
            result = self._session.query(sql, fmt)
        return (result.bytes() if result is not None else b""), fmt

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # queries may be large; the engine's errors are returned to the client

            def do_GET(self) -> None:
                self._serve(b"")

            def do_POST(self) -> None:
                self._serve(self._read_body())

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    # clickhouse-connect streams inserts as they are serialized.
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _serve(self, body: bytes) -> None:
                url = urlparse(self.path)
                if url.path == "/ping":
                    self._reply(HTTPStatus.OK, b"Ok.\n", {})
                    return
                params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                try:
                    body = _decode_body(body, self.headers.get("Content-Encoding"))
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
                    result, fmt = server.execute(query, data, params.get("database"), fmt)
                except Exception as exc:  # the engine's message is the client's answer
                    message = str(exc)
                    code = _ERROR_CODE.search(message)
                    self._reply(
                        HTTPStatus.INTERNAL_SERVER_ERROR,
                        (
                            message
                            if message.startswith("Code:")
                            else f"Code: 1000. DB::Exception: {message}"
                        ).encode()
                        + b"\n",
                        {"X-ClickHouse-Exception-Code": code[1] if code else "1000"},
                    )
                    return
                self._reply(
                    HTTPStatus.OK, result,
                    {"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
                     "X-ClickHouse-Query-Id": params.get("query_id") or uuid.uuid4().hex,
                     "X-ClickHouse-Summary": '{"read_rows":"0","written_rows":"0"}'},
                )  # fmt: skip

            def _reply(self, status: HTTPStatus, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
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
