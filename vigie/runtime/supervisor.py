"""``vigie up``: broker, registry stand-in and worker started, watched and stopped together.

The supervisor holds an exclusive lock on the data directory for its lifetime and
writes ``runtime.json`` (ports, pids) so other commands can find the running
worker: it alone may open the warehouse, so it answers their status queries.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx

from schemas.contracts import all_topics
from schemas.organizations import load_organizations
from vigie.runtime.broker import TansuBroker, ensure_pipeline_topics, free_port
from vigie.runtime.datadir import secure_data_dir, write_private
from vigie.runtime.orphans import stop_with_parent
from vigie.runtime.registry import RegistryServer
from vigie.settings import Settings


class RuntimeStartError(RuntimeError):
    """The embedded runtime could not start, or is already running."""


@dataclass(frozen=True)
class RuntimeInfo:
    """What ``runtime.json`` records about a running ``vigie up``."""

    pid: int
    worker_pid: int
    broker: str
    registry_url: str
    web_url: str
    started_at: str

    @classmethod
    def read(cls, path: Path) -> RuntimeInfo | None:
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None


class DataDirLock:
    """An exclusive, non-blocking flock on ``<data-dir>/lock``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        # Whichever command comes first creates the data directory private (see datadir).
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        f = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600), "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._file = f
        return True

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class EmbeddedRuntime:
    """Start, watch and stop the embedded stack on one data directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
        self.data_dir = self.settings.data_dir
        self.logs = self.data_dir / "logs"
        self._lock = DataDirLock(self.settings.lock_file)
        self._broker: TansuBroker | None = None
        self._registry: RegistryServer | None = None
        self._worker: subprocess.Popen[bytes] | None = None
        self.info: RuntimeInfo | None = None

    def start(self, ready_timeout_s: float = 120.0, say: Any = print) -> RuntimeInfo:
        secure_data_dir(self.data_dir)  # before the lock file, the logs and the worker exist
        if not self._lock.acquire():
            running = RuntimeInfo.read(self.settings.runtime_file)
            pid = f" (pid {running.pid})" if running else ""
            raise RuntimeStartError(f"vigie up is already running on {self.data_dir}{pid}")
        try:
            return self._start(ready_timeout_s, say)
        except BaseException:
            self.stop()
            raise

    def _start(self, ready_timeout_s: float, say: Any) -> RuntimeInfo:
        self._start_infrastructure(say)
        return self._start_worker(ready_timeout_s, say)

    def start_infrastructure(self, say: Any = print) -> tuple[str, str]:
        """Broker, registry and topics only (the benchmark loads its input before the worker
        starts); return (bootstrap, registry URL). Finish with ``start_worker``."""
        secure_data_dir(self.data_dir)
        if not self._lock.acquire():
            raise RuntimeStartError(f"vigie up is already running on {self.data_dir}")
        try:
            return self._start_infrastructure(say)
        except BaseException:
            self.stop()
            raise

    def start_worker(self, ready_timeout_s: float = 120.0, say: Any = print) -> RuntimeInfo:
        try:
            return self._start_worker(ready_timeout_s, say)
        except BaseException:
            self.stop()
            raise

    def _start_infrastructure(self, say: Any) -> tuple[str, str]:
        s = self.settings
        orgs = load_organizations(s.organizations_file)
        self._broker = TansuBroker(s.broker_port, self.logs / "tansu.log").start()
        say(f"broker    Tansu on {self._broker.bootstrap}")
        self._registry = RegistryServer(s.web_host, s.registry_port, self.data_dir / "registry.json").start()
        say(f"registry  {self._registry.url}")
        ensure_pipeline_topics(
            self._broker.bootstrap,
            all_topics(list(orgs)),
            s.raw_topic_partitions,
            s.topic_partitions,
            replay_retention_days=s.replay_retention_days,
        )
        return self._broker.bootstrap, self._registry.url

    def _start_worker(self, ready_timeout_s: float, say: Any) -> RuntimeInfo:
        s = self.settings
        assert self._broker is not None and self._registry is not None, "start the infrastructure first"
        web_port = s.web_port or free_port()
        env = {
            **os.environ,
            "VIGIE_DATA_DIR": str(self.data_dir),
            "VIGIE_BROKER_URL": self._broker.bootstrap,
            "VIGIE_REGISTRY_URL": self._registry.url,
            "VIGIE_WEB_PORT": str(web_port),
            "VIGIE_EMBEDDED": "true",
        }
        if s.warehouse_url:  # the worker writes to a ClickHouse server instead of its own store
            env["VIGIE_WAREHOUSE_URL"] = s.warehouse_url
        from streams.absence_model import is_cached
        from vigie.runtime.stage_pool import prepare_model_apart

        if not is_cached(s.mappings_dir, s.model_cache):
            # Trained here, not inside the worker's readiness wait: 1–3 min once per corpus.
            say("model     training the motif d'absence model for this corpus (once, 1 to 3 min)…")
            prepare_model_apart(s)
        self.logs.mkdir(parents=True, exist_ok=True)
        worker_log = self.logs / "worker.log"
        with worker_log.open("ab") as log:
            self._worker = subprocess.Popen(
                [sys.executable, "-m", "vigie.cli", "worker"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=stop_with_parent(),
            )  # fmt: skip
        web_url = f"http://{s.web_host}:{web_port}"
        say(f"worker    pid {self._worker.pid}, status and metrics on {web_url}")
        self._wait_ready(web_url, ready_timeout_s, worker_log)
        self.info = RuntimeInfo(
            os.getpid(), self._worker.pid, self._broker.bootstrap, self._registry.url, web_url,
            datetime.now(UTC).isoformat(timespec="seconds"),
        )  # fmt: skip
        write_private(self.settings.runtime_file, json.dumps(asdict(self.info), indent=2))
        return self.info

    def _wait_ready(self, web_url: str, timeout_s: float, worker_log: Path) -> None:
        deadline = time.monotonic() + timeout_s
        # One client for the whole wait: each new one loads the CA bundle (~40 ms of CPU),
        # which every 50 ms took most of a core from the worker it waits for.
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self._worker is not None and self._worker.poll() is not None:
                    raise RuntimeStartError(f"the worker exited during start-up:\n{_tail(worker_log)}")
                try:
                    if client.get(f"{web_url}/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise RuntimeStartError(f"the worker was not ready after {timeout_s:.0f} s:\n{_tail(worker_log)}")

    @property
    def worker_pid(self) -> int | None:
        return None if self._worker is None else self._worker.pid

    def worker_alive(self) -> bool:
        return self._worker is not None and self._worker.poll() is None

    def wait(self) -> int:
        """Block until SIGINT/SIGTERM or until a component dies; return an exit code."""
        stop = {"signal": 0}

        def on_signal(signum: int, _frame: Any) -> None:
            stop["signal"] = signum

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop["signal"]:
                if not self.worker_alive():
                    return 1
                if self._broker is not None and not self._broker.alive():
                    return 1
                time.sleep(0.3)
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the worker first (it commits offsets and closes the warehouse), then the rest."""
        if self._worker is not None and self._worker.poll() is None:
            self._worker.send_signal(signal.SIGTERM)
            try:
                self._worker.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._worker.kill()
                self._worker.wait()
        if self._registry is not None:
            self._registry.stop()
            self._registry = None
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        self.settings.runtime_file.unlink(missing_ok=True)
        self._lock.release()
