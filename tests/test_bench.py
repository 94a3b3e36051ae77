"""`vigie bench --json` runs the whole measurement and reports every field (values are
measured by the bench itself, not asserted against targets here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration
FIELDS = {"events", "events_per_s", "baseline_events_per_s", "ratio", "p50_latency_s", "p99_latency_s",
          "peak_rss_mb"}  # fmt: skip


def test_bench_json_reports_throughput_baseline_latency_and_memory() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vigie.cli", "bench", "--records", "3000", "--latency-rate", "2000",
         "--latency-seconds", "2", "--json"],
        capture_output=True, text=True, timeout=300, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert set(result) >= FIELDS
    assert result["events"] >= 3000
    assert result["events_per_s"] > 0 and result["baseline_events_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["events_per_s"] / result["baseline_events_per_s"], rel=0.02
    )
    assert 0 < result["p50_latency_s"] <= result["p99_latency_s"]
    assert result["latency_events"] >= 2000 * 2 * 0.9  # the latency phase really sent at its rate
    assert result["peak_rss_mb"] > 50
    assert "end to end" in done.stderr  # progress is shown while it runs
