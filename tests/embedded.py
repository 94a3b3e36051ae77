"""Helpers that run `vigie up` as a real subprocess (Tansu, registry, Faust worker, chDB)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from vigie.runtime.supervisor import RuntimeInfo

# One HTTP client for every test request: a new client loads the CA bundle (~40 ms of CPU),
# and the tests poll. No kept-alive connection, since the tests kill and restart servers.
HTTP = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))

# Tansu holds every JoinGroup for half the group's session timeout (its coordinator sleeps in
# 1 s steps until then): 6 s, the default, costs 3 s per consumer join, 2 s costs 1 s. The
# test workers join dozens of times; their heartbeats keep up with 2 s on this machine.
TEST_ENV = {"VIGIE_PSEUDONYM_KEY": "integration-test-key-not-a-secret", "VIGIE_LOG_LEVEL": "INFO",
            "VIGIE_BROKER_SESSION_TIMEOUT_S": "2"}  # fmt: skip


def vigie(
    *args: str, data_dir: Path, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the `vigie` command as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "vigie.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=timeout, check=check, env={**os.environ, **TEST_ENV},
    )  # fmt: skip


@contextmanager
def vigie_up(
    data_dir: Path, timeout_s: float = 120, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], RuntimeInfo]]:
    """`vigie up` in the background until the worker is ready; SIGINT and wait on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vigie.cli", "up", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **TEST_ENV, **(env or {})},
    )  # fmt: skip
    runtime_file = data_dir / "runtime.json"
    deadline = time.monotonic() + timeout_s
    info = None
    while info is None:
        if proc.poll() is not None:
            raise AssertionError(
                f"vigie up exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("vigie up was not ready in time")
        info = RuntimeInfo.read(runtime_file)
        time.sleep(0.2)
    try:
        yield proc, info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def process_running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has exited; init reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def status_json(data_dir: Path) -> list[dict[str, Any]]:
    """What `vigie status --json` prints, from the command itself."""
    return json.loads(vigie("status", "--json", data_dir=data_dir).stdout)


def worker_status(data_dir: Path) -> list[dict[str, Any]]:
    """The same rows, read from the running worker's /status page (the page `vigie status`
    reads): for polling, where a `vigie status` process per poll costs a second of CPU."""
    info = RuntimeInfo.read(data_dir / "runtime.json")
    assert info is not None, f"no running worker in {data_dir}"
    rows: list[dict[str, Any]] = HTTP.get(f"{info.web_url}/status", timeout=60).json()
    return rows


def reader_from_start(bootstrap: str, topic: str) -> Any:
    """A consumer of every partition of ``topic`` from its first message, assigned rather than
    subscribed: joining a new consumer group on the embedded broker cost ~24 s per read."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-reader-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return consumer


def wait_for(predicate: Any, timeout_s: float, what: str, every_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


def dump_warehouse(data_dir: Path, database: str = "vigie") -> dict[str, list[dict[str, Any]]]:
    """Every row of every ReplacingMergeTree table (read with FINAL), read by a separate
    process (chDB: one store per process)."""
    script = textwrap.dedent(f"""
        import json, sys
        from chdb import session
        s = session.Session({str(data_dir / "warehouse")!r})
        out = {{}}
        for (name,) in [tuple(json.loads(l).values()) for l in
                        s.query("SELECT name FROM system.tables WHERE database = '{database}' "
                                "AND engine = 'ReplacingMergeTree'",
                                "JSONEachRow").bytes().decode().splitlines()]:
            text = s.query(f"SELECT * FROM {database}.{{name}} FINAL", "JSONEachRow").bytes().decode()
            out[name] = [json.loads(l) for l in text.splitlines() if l]
        s.close()
        json.dump(out, sys.stdout)
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


class WarehouseProcess:
    """`vigie warehouse serve` as a subprocess: the real engine behind ClickHouse's HTTP
    protocol, which tests can kill (a real outage) and restart on the same data and port."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        from vigie.runtime.broker import free_port

        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def password(self) -> str:
        """The password the server generated into its data directory."""
        return (self.data_dir / "secrets" / "warehouse.password").read_text().strip()

    @property
    def url(self) -> str:
        return f"http://default:{self.password}@127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """The URL without credentials."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> WarehouseProcess:
        import httpx

        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "warehouse-server.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vigie.cli", "warehouse", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **TEST_ENV},
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"vigie warehouse serve exited {self.proc.returncode}")
            try:
                if HTTP.get(f"{self.address}/ping", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("vigie warehouse serve did not answer in time")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def query_warehouse(data_dir: Path, sql: str, database: str = "vigie") -> list[dict[str, Any]]:
    """Run one query on a stopped runtime's store, from a separate process."""
    script = textwrap.dedent(f"""
        import sys
        from chdb import session
        s = session.Session({str(data_dir / "warehouse")!r})
        sys.stdout.write(s.query({sql!r}, "JSONEachRow").bytes().decode())
        s.close()
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line]


class WorkerProcess:
    """`vigie worker` against a given broker, registry and warehouse server."""

    def __init__(self, data_dir: Path, broker: str, registry_url: str, warehouse_url: str) -> None:
        from vigie.runtime.broker import free_port

        self.data_dir = data_dir
        self.web_url = f"http://127.0.0.1:{free_port()}"
        self.env = {
            **os.environ, **TEST_ENV, "VIGIE_DATA_DIR": str(data_dir), "VIGIE_BROKER_URL": broker,
            "VIGIE_REGISTRY_URL": registry_url, "VIGIE_WAREHOUSE_URL": warehouse_url,
            "VIGIE_WEB_PORT": self.web_url.rsplit(":", 1)[1],
        }  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120) -> WorkerProcess:
        import httpx

        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "worker.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vigie.cli", "worker"], stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"vigie worker exited {self.proc.returncode}, see {self.data_dir}/worker.log"
                )
            try:
                if HTTP.get(f"{self.web_url}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("vigie worker was not ready in time")

    def metric(self, name: str) -> float:
        """The sum of one metric's samples on this worker's /metrics page."""

        text = HTTP.get(f"{self.web_url}/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))  # fmt: skip

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
