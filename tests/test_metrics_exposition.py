"""Clients a user already has read Vigie's metrics unmodified: `promtool check metrics` passes on
the worker's and the connector's /metrics, each with the versioned content type, and the
connector exposes only its own metrics."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from schemas import metrics
from schemas.contracts import HEARTBEAT_TOPIC, Dataset, raw_topic
from tests.connector_fixtures import attendance_row, source_table
from tests.embedded import HTTP, TEST_ENV, vigie_up
from vigie.runtime.broker import TansuBroker, ensure_topics, free_port

WORKER_ONLY = ("vigie_stream_", "vigie_sink_", "vigie_dead_letters", "vigie_school_", "vigie_consumer_lag",
               "vigie_record_to_warehouse", "vigie_css_last_event", "vigie_connector_last_heartbeat")  # fmt: skip


def _promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


def _metric_names(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_every_metric_passes_promtool_with_samples() -> None:
    """Every metric of schemas/metrics.py with a sample in it, as the worker exposes them."""
    metrics.STREAM_RECORDS.labels("attendance", "laval", "curated").inc()
    metrics.SINK_BATCH_SECONDS.labels("attendance_marks").observe(0.1)
    metrics.SCHOOL_HOURS.set(1)
    metrics.CONSUMER_LAG.labels("raw").set(3)
    body, content_type = metrics.exposition()
    assert "version=0.0.4" in content_type
    checked = _promtool_check(body.decode())
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.integration
def test_the_running_worker_metrics_pass_promtool(tmp_path: Path) -> None:
    with vigie_up(tmp_path / "vigie") as (_proc, info):
        answer = HTTP.get(f"{info.web_url}/metrics", timeout=60)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    checked = _promtool_check(answer.text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "vigie_sink_rows_total" in answer.text or "vigie_sink_rows" in answer.text


@pytest.mark.integration
def test_the_running_connector_exposes_only_its_metrics_and_passes_promtool(tmp_path: Path, registry) -> None:
    broker = TansuBroker(0, tmp_path / "tansu.log").start()
    ensure_topics(broker.bootstrap, [*(raw_topic("laval", ds) for ds in Dataset), HEARTBEAT_TOPIC])
    port = free_port()
    try:
        with contextlib.contextmanager(source_table)("sqlite", tmp_path) as table:
            table.insert([attendance_row(1)])
            config = tmp_path / "connector.toml"
            config.write_text(
                f'css = "laval"\noutbox = "outbox.sqlite"\npoll_every_s = 0.2\nheartbeat_every_s = 1\n'
                f'[broker]\nbootstrap = "{broker.bootstrap}"\n[registry]\nurl = "{registry.url}"\n'
                f'[[sources]]\nkind = "sql"\ndataset = "attendance"\nsource_system = "GPI"\n'
                f'url = "{table.url}"\ntable = "{table.name}"\n'
            )
            proc = subprocess.Popen(
                [sys.executable, "-m", "vigie.cli", "connector", "run", "--config", str(config),
                 "--metrics-port", str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **TEST_ENV},
            )  # fmt: skip
            try:
                text, content_type = "", ""
                deadline = time.monotonic() + 60
                while "vigie_connector_records_sent_total{" not in text and time.monotonic() < deadline:
                    time.sleep(0.3)
                    try:
                        answer = HTTP.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
                        text, content_type = answer.text, answer.headers["content-type"]
                    except httpx.HTTPError:
                        continue
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(30)
    finally:
        broker.stop()
    assert "vigie_connector_records_sent_total{" in text, "the connector never reported a send"
    assert content_type.startswith("text/plain; version=")
    names = _metric_names(text)
    assert not [n for n in names if n.startswith(WORKER_ONLY)], names
    checked = _promtool_check(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
