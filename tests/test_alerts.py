"""Alert rules: checked and unit-tested by promtool, named after metrics that exist, and a real
Prometheus scraping a running worker with the rules loaded."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

import schemas.metrics  # noqa: F401  (registers every Vigie metric)
from connectors.publisher import ConnectorPublisher, flush, make_producer
from connectors.simulator import SimulatedCss
from dashboards.panels import PIPELINE
from schemas.contracts import Dataset
from schemas.wire import AvroCodec
from tests.embedded import HTTP, vigie_up, wait_for
from vigie.runtime.broker import free_port

ALERTS = Path(__file__).parent.parent / "deploy" / "alerts"
RULES = ALERTS / "vigie.rules.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=ALERTS)


def test_the_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = _promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    tested = _promtool("test", "rules", "vigie.rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_metric_a_rule_uses_is_exported_by_vigie() -> None:
    exported = {
        sample_name
        for metric in REGISTRY.collect()
        for sample_name in [metric.name, f"{metric.name}_total"]
        if metric.name.startswith("vigie_")
    }
    used = set(re.findall(r"\b(vigie_[a-z_]+)\b", RULES.read_text()))
    assert used and used <= exported, used - exported
    # Every rule is exercised by the promtool tests.
    names = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    assert names <= set(re.findall(r"alertname: (\w+)", (ALERTS / "vigie.rules.test.yml").read_text()))


@pytest.mark.integration
def test_prometheus_scrapes_a_running_worker_with_the_rules_loaded(tmp_path: Path, organizations) -> None:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is missing: `make test` installs Debian's prometheus package"
    with vigie_up(tmp_path / "vigie") as (_proc, info):
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{RULES}]\n"
            "scrape_configs:\n"
            "  - job_name: vigie-worker\n"
            f"    static_configs: [{{targets: ['{info.web_url.removeprefix('http://')}']}}]\n"
        )
        port = free_port()
        server = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"),
        )  # fmt: skip
        try:
            codec = AvroCodec.from_url(info.registry_url)
            producer = make_producer(info.broker)
            sim = SimulatedCss(organizations["laval"], seed=3)
            publisher = ConnectorPublisher("laval", sim.source_system, codec, producer)
            publisher.publish(Dataset.ATTENDANCE, sim.attendance_sheet(date.today(), datetime.now(UTC)))
            publisher.heartbeat()
            assert flush(producer, 30) == 0

            api = f"http://127.0.0.1:{port}/api/v1"

            def scraped(query: str) -> float:
                try:
                    result = HTTP.get(f"{api}/query", params={"query": query}, timeout=5).json()["data"][
                        "result"
                    ]
                except (httpx.HTTPError, KeyError, ValueError):
                    return 0.0
                return sum(float(r["value"][1]) for r in result)

            wait_for(lambda: scraped('vigie_sink_rows_total{table="attendance_marks"}') > 0, 90,
                     "Prometheus to scrape the worker's sink rows", 0.5)  # fmt: skip
            assert (
                scraped('vigie_connector_last_heartbeat_timestamp_seconds{css="laval"}') > time.time() - 600
            )
            assert scraped('up{job="vigie-worker"}') == 1
            # Every pipeline-dashboard query is valid PromQL for this Prometheus.
            for panel in PIPELINE.panels:
                # Grafana sets $__rate_interval to at least four scrape intervals.
                query = panel.query.replace("$__rate_interval", "4s")
                answer = HTTP.get(f"{api}/query", params={"query": query}, timeout=5).json()
                assert answer["status"] == "success", (panel.title, answer)
            groups = HTTP.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            assert len(rules) == 6 and all(r["health"] in ("ok", "unknown") for r in rules), rules
        finally:
            server.terminate()
            server.wait(30)
