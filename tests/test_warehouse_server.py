"""`vigie warehouse serve`, attacked: a curious analyst or a hostile CSS who can reach the
port tries to read the pseudonym key, write files, reach the network or the store
without the password; the worker's own client (clickhouse-connect) must still work."""

from __future__ import annotations

import base64
import gzip
import os
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import httpx
import lz4.frame
import pandas as pd
import pytest

from tests.embedded import HTTP, TEST_ENV, WarehouseProcess
from vigie.runtime.datadir import write_private
from vigie.runtime.query_guard import QueryRefused, check, parse_ast
from vigie.runtime.warehouse_server import BodyTooLarge, _decode_body

pytestmark = pytest.mark.integration

KEY = "k3y-" + uuid.uuid4().hex  # what an attacker must never see in a response


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseProcess]:
    data_dir = tmp_path_factory.mktemp("served")
    write_private(data_dir / "secrets" / "pseudonym.key", KEY)
    server = WarehouseProcess(data_dir).start()
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=server.port, username="default", password=server.password
    )
    client.command("CREATE DATABASE IF NOT EXISTS att")
    client.command("CREATE TABLE IF NOT EXISTS att.t (k UInt64, s String) ENGINE = MergeTree ORDER BY k")
    client.close()
    yield server
    server.stop()


def _post(server: WarehouseProcess, sql: str, **kwargs: object) -> httpx.Response:
    return HTTP.post(server.address, content=sql.encode(), auth=("default", server.password), timeout=30,
                      **kwargs)  # type: ignore[arg-type]  # fmt: skip


def _get(server: WarehouseProcess, sql: str, password: str | None = None) -> httpx.Response:
    return HTTP.get(server.address, params={"query": sql}, auth=("default", password or server.password),
                     timeout=30)  # fmt: skip


def test_the_workers_client_inserts_and_reads_with_parameters_and_a_true_summary(served) -> None:
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=served.port, username="default", password=served.password, compress="lz4"
    )
    frame = pd.DataFrame({"k": range(1000, 1037), "s": [f"r{i}" for i in range(37)]})
    summary = client.insert_df("t", frame, database="att")
    assert summary.written_rows == 37  # X-ClickHouse-Summary reports what was written
    # {name:Type} placeholders travel as param_name (server-side binding).
    got = client.query(
        "SELECT count() AS n FROM att.t WHERE k >= {low:UInt64} AND s != {s:String}",
        parameters={"low": 1000, "s": "r0\t'\\\n"},
    ).result_rows
    assert got == [(37,)]
    client.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM file('{key}', 'RawBLOB')",
        "SELECT file('{key}')",
        "select * from FILE('{key}', 'RawBLOB')",
        "SELECT * FROM att.t WHERE s IN (SELECT * FROM file('{key}', 'RawBLOB'))",
        "WITH x AS (SELECT * FROM file('{key}', 'RawBLOB')) SELECT * FROM x",
        "SELECT * FROM view(SELECT * FROM file('{key}', 'RawBLOB'))",
        "SELECT 1; SELECT * FROM file('{key}', 'RawBLOB')",
        "SELECT 1 /* ; */ ; SELECT * FROM file('{key}', 'RawBLOB')",
        "INSERT INTO att.t (s) SELECT * FROM file('{key}', 'RawBLOB')",
        "CREATE TABLE att.stolen ENGINE = Memory AS SELECT * FROM file('{key}', 'RawBLOB')",
        "CREATE TABLE att.k (s String) ENGINE = File(RawBLOB, '{key}')",
        "CREATE TABLE att.k2 AS file('{key}', 'RawBLOB')",
        "CREATE DATABASE fs ENGINE = Filesystem('{dir}')",
        "CREATE DICTIONARY att.d (s String) PRIMARY KEY s SOURCE(FILE(path '{key}' format 'RawBLOB')) "
        "LAYOUT(FLAT()) LIFETIME(0)",
        "CREATE TABLE att.dflt (s String DEFAULT file('{key}')) ENGINE = Memory",
        "INSERT INTO att.t (s) FROM INFILE '{key}' FORMAT RawBLOB",
        "SELECT * FROM url('http://127.0.0.1:1/x', 'RawBLOB')",
        "SELECT * FROM s3('http://127.0.0.1:1/b/x', 'RawBLOB')",
        "SELECT * FROM remote('127.0.0.1:9000', system.one)",
        "SELECT * FROM postgresql('127.0.0.1:5432', 'test', 't', 'postgres', '')",
        "SELECT * FROM mysql('127.0.0.1:3306', 'test', 't', 'root', '')",
        "SELECT * FROM executable('cat', 'RawBLOB', 's String')",
        "SELECT * FROM hdfs('hdfs://x/y', 'RawBLOB')",
        "SELECT * FROM azureBlobStorage('http://x', 'c', 'b')",
        "SELECT * FROM Python(x)",
        "INSERT INTO FUNCTION file('{dir}/written.txt', 'RawBLOB') SELECT 'x'",
        "SELECT 'x' INTO OUTFILE '{dir}/written.txt'",
        "BACKUP TABLE att.t TO File('{dir}/written.zip')",
        "CREATE TABLE att.w (s String) ENGINE = MergeTree ORDER BY s "
        "SETTINGS disk = disk(type = local, path = '{dir}/')",
        "SET allow_introspection_functions = 1",
        # The only SETTINGS a client may send: a table's granule and merge block sizes, alone.
        "CREATE TABLE att.w2 (s String) ENGINE = MergeTree ORDER BY s "
        "SETTINGS merge_max_block_size = 4, disk = disk(type = local, path = '{dir}/')",
        "CREATE TABLE att.w3 (s String) ENGINE = MergeTree ORDER BY s SETTINGS merge_max_block_size = 4 "
        "AS SELECT * FROM att.t SETTINGS readonly = 0",
        "ALTER TABLE att.t MODIFY SETTING merge_max_block_size = 4",
        "CREATE TABLE att.w4 (s String) ENGINE = MergeTree ORDER BY s SETTINGS storage_policy = 'default'",
        # A line break in a name adds a line of the client's choosing to EXPLAIN AST (red team):
        "CREATE TABLE att.nl (a Int32, `c\n Storage definition` Int32) ENGINE = MergeTree ORDER BY a",
        "ALTER TABLE att.t (MODIFY COLUMN `s\n Storage definition` MODIFY SETTING max_compress_block_size = 1)",
        "ALTER TABLE att.t (MODIFY COLUMN `s\u2028 Storage definition` MODIFY SETTING max_compress_block_size = 1)",
        "SELECT 1 SETTINGS readonly = 0",
        "SYSTEM FLUSH LOGS",
        "ATTACH TABLE att.a FROM '{dir}' (s String) ENGINE = MergeTree ORDER BY s",
        "CREATE USER mallory",
        "KILL QUERY WHERE 1",
    ],
)
def test_a_client_with_the_password_cannot_reach_files_or_the_network(served, sql: str) -> None:
    text = sql.format(key=served.data_dir / "secrets" / "pseudonym.key", dir=served.data_dir)
    answer = _post(served, text)
    assert answer.status_code in (400, 403), answer.text
    assert answer.headers["X-ClickHouse-Exception-Code"] in ("62", "164", "497")
    assert KEY not in answer.text
    assert not (served.data_dir / "written.txt").exists() and not (served.data_dir / "written.zip").exists()
    rows = _post(served, "SELECT s FROM att.t FORMAT TSVRaw").text
    assert KEY not in rows


def test_inserted_data_cannot_smuggle_an_expression(served) -> None:
    """Values input can evaluate expressions: the server reads literals only."""
    key = served.data_dir / "secrets" / "pseudonym.key"
    for sql in (f"INSERT INTO att.t (k, s) FORMAT Values\n(1, file('{key}'))",
                f"INSERT INTO att.t (k, s) VALUES (1, file('{key}'))"):  # fmt: skip
        answer = _post(served, sql)
        assert answer.status_code != 200 and "Interpreting expressions is disabled" in answer.text
    assert KEY not in _post(served, "SELECT s FROM att.t FORMAT TSVRaw").text


def test_wrong_or_missing_password_is_refused(served) -> None:
    wrong = _get(served, "SELECT count() FROM att.t", password="not-the-password")
    assert wrong.status_code == 401 and wrong.headers["X-ClickHouse-Exception-Code"] == "516"
    anonymous = HTTP.get(served.address, params={"query": "SELECT 1"}, timeout=30)
    assert anonymous.status_code == 401
    other_user = HTTP.get(served.address, params={"query": "SELECT 1"}, auth=("admin", served.password))
    assert other_user.status_code == 401
    with pytest.raises(Exception, match="516"):
        clickhouse_connect.get_client(host="127.0.0.1", port=served.port, username="default", password="x")
    ping = HTTP.get(f"{served.address}/ping")
    assert ping.status_code == 200  # health checks need no password
    assert "Python" not in ping.headers.get("server", "")  # no banner to fingerprint


def test_get_only_reads(served) -> None:
    assert _get(served, "SELECT count() FROM att.t").status_code == 200
    for sql in ("CREATE TABLE att.g (a Int8) ENGINE = Memory", "INSERT INTO att.t (k) SELECT 1",
                "DROP TABLE att.t", "ALTER TABLE att.t DELETE WHERE 1", "TRUNCATE TABLE att.t"):  # fmt: skip
        answer = _get(served, sql)
        assert answer.status_code == 403 and answer.headers["X-ClickHouse-Exception-Code"] == "164", sql
    assert _get(served, "EXISTS TABLE att.t").text.strip() == "1"


def test_the_password_file_is_private_and_never_printed(served) -> None:
    secret = served.data_dir / "secrets" / "warehouse.password"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(served.data_dir.stat().st_mode) == 0o700
    log = (served.data_dir / "warehouse-server.log").read_text()
    assert str(secret) in log and served.password not in log


def test_listening_beyond_loopback_needs_an_explicit_password(tmp_path: Path) -> None:
    env = {k: v for k, v in {**os.environ, **TEST_ENV}.items() if k != "VIGIE_WAREHOUSE_SERVER_PASSWORD"}
    done = subprocess.run(
        [sys.executable, "-m", "vigie.cli", "warehouse", "serve", "--host", "0.0.0.0", "--port", "0",
         "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 2 and "VIGIE_WAREHOUSE_SERVER_PASSWORD" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_guard_reads_the_engines_tree_not_the_text() -> None:
    """Pure rules on EXPLAIN AST output as chDB prints it."""
    table_function = (
        "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 2)\n"
        "   ExpressionList (children 1)\n    Asterisk\n   TablesInSelectQuery (children 1)\n"
        "    TablesInSelectQueryElement (children 1)\n     TableExpression (children 1)\n"
        "      Function generateRandomStructure (children 1)\n"
    )
    with pytest.raises(QueryRefused, match="table function"):
        check(parse_ast(table_function), "SELECT …", read_only=True)
    numbers = table_function.replace("generateRandomStructure", "numbers")
    check(parse_ast(numbers), "SELECT * FROM numbers(1)", read_only=True)
    with pytest.raises(QueryRefused, match="one statement"):
        parse_ast("ShowTables\nShowTables\n")


def test_rows_written_inline_are_data_never_a_second_statement(served) -> None:
    key = served.data_dir / "secrets" / "pseudonym.key"
    sneaky = _post(
        served, f"INSERT INTO att.t (k, s) VALUES (7, 'x'); SELECT * FROM file('{key}', 'RawBLOB')"
    )
    assert KEY not in sneaky.text
    plain = _post(served, "INSERT INTO att.t (k, s) VALUES (8, 'a;b'), (9, 'c')")
    assert plain.status_code == 200, plain.text
    assert '"written_rows":"2"' in plain.headers["X-ClickHouse-Summary"].replace(" ", "")
    csv = _post(served, "INSERT INTO att.t (k, s) FORMAT CSV\n10,d\n")
    assert csv.status_code == 200, csv.text
    got = _post(served, "SELECT s FROM att.t WHERE k IN (8, 9, 10) ORDER BY k FORMAT TSVRaw").text
    assert got.split() == ["a;b", "c", "d"]


def test_protocol_parameters_cannot_inject_headers_or_formats(served) -> None:
    answer = HTTP.get(served.address, params={"query": "SELECT 1", "query_id": "a\r\nSet-Cookie: x=1"},
                       auth=("default", served.password), timeout=30)  # fmt: skip
    assert answer.status_code == 200 and "set-cookie" not in answer.headers
    odd = HTTP.get(served.address, params={"query": "SELECT 1", "default_format": "CSV --x"},
                    auth=("default", served.password), timeout=30)  # fmt: skip
    assert odd.status_code != 200 and "Traceback" not in odd.text


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO att.t (s) SELECT * FROM `{key}`",
        "CREATE TABLE att.copied ENGINE = Memory AS SELECT * FROM `{key}`",
        "CREATE VIEW att.passwd AS SELECT * FROM `/etc/passwd`",
        "CREATE VIEW att.keyview AS SELECT * FROM default.`{key}`",
    ],
)
def test_a_table_named_like_a_path_is_not_that_file(served, sql: str) -> None:
    """chDB's `default` database is an Overlay over a Filesystem database: a backquoted path
    is a table over that file, an identifier that no parse-tree rule refuses. Found reading
    the key with INSERT … SELECT and /etc/passwd through a view."""
    _post(served, sql.format(key=served.data_dir / "secrets" / "pseudonym.key"))
    for read in ("SELECT s FROM att.t", "SELECT * FROM att.copied", "SELECT * FROM att.passwd",
                 "SELECT * FROM att.keyview", f"DESCRIBE TABLE `{served.data_dir}/secrets/pseudonym.key`"):  # fmt: skip
        answer = _post(served, read)
        assert KEY not in answer.text and "root:" not in answer.text, read
    databases = _get(served, "SELECT name, engine FROM system.databases FORMAT TSVRaw").text
    assert "Overlay" not in databases and "Filesystem" not in databases


def test_the_default_database_keeps_its_tables_across_restarts_without_the_file_system(
    tmp_path: Path,
) -> None:
    write_private(tmp_path / "secrets" / "pseudonym.key", KEY)
    server = WarehouseProcess(tmp_path).start()
    try:
        assert KEY not in _post(server, f"SELECT * FROM `{tmp_path}/secrets/pseudonym.key`").text
        assert _post(server, "CREATE DATABASE default ENGINE = Atomic").status_code == 200
        assert _post(server, "CREATE VIEW default.kept AS SELECT 42 AS x").status_code == 200
    finally:
        server.stop()
    for _ in range(2):  # the Overlay is rebuilt by chDB at each start: closed again, each time
        server.start()
        try:
            assert _get(server, "SELECT x FROM default.kept").text.strip() == "42"
            assert KEY not in _post(server, f"SELECT * FROM `{tmp_path}/secrets/pseudonym.key`").text
        finally:
            server.kill()  # as an outage would: nothing is shut down cleanly
    server.start()
    try:
        assert _get(server, "SELECT x FROM default.kept").text.strip() == "42"
        leaked = _post(server, f"INSERT INTO default.kept SELECT * FROM `{tmp_path}/secrets/pseudonym.key`")
        assert KEY not in leaked.text
        assert (
            KEY
            not in _post(
                server, f"CREATE VIEW default.k AS SELECT * FROM `{tmp_path}/secrets/pseudonym.key`"
            ).text
        )
        assert KEY not in _get(server, "SELECT * FROM default.k").text
    finally:
        server.stop()


def _raw(server: WarehouseProcess, head: str) -> bytes:
    """Send request headers only (no body follows) and return what the server answers."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as conn:
        conn.sendall(head.encode("latin-1"))
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = conn.recv(4096)
            if not piece:
                break
            answer += piece
        return answer


def test_a_client_without_the_password_never_gets_its_body_read(served) -> None:
    """Found: the body was read (into memory, whole) before the credentials were checked,
    so anyone reaching the port could announce gigabytes and fill the server's memory.
    Now the answer comes before a byte of the body is read."""
    for framing in ("Content-Length: 1000000000000", "Transfer-Encoding: chunked"):
        answer = _raw(served, f"POST /?user=default&password=wrong HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 401"), answer[:80]
    assert _get(served, "SELECT 1").text.strip() == "1"


def test_an_oversized_or_bomb_body_is_refused_not_buffered(served) -> None:
    auth = base64.b64encode(f"default:{served.password}".encode()).decode()
    answer = _raw(
        served,
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Length: 1000000000000\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413") and b"X-ClickHouse-Exception-Code: 307" in answer
    # A gzip (or lz4) body is decoded up to the limit only: 64 KB of gzip is 64 MB of zeros.
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    with pytest.raises(BodyTooLarge):
        _decode_body(bomb, "gzip", limit=1024 * 1024)
    with pytest.raises(BodyTooLarge):
        _decode_body(lz4.frame.compress(b"\0" * (8 * 1024 * 1024)), "lz4", limit=1024 * 1024)
    two_members = gzip.compress(b"a,1\n") + gzip.compress(b"b,2\n")
    assert _decode_body(two_members, "gzip", limit=8) == b"a,1\nb,2\n"
    assert _get(served, "SELECT 1").text.strip() == "1"
