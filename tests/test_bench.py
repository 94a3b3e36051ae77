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
    cpu = result["cpu_us_per_record"]  # where the time goes, per process
    assert set(cpu) == {"worker", "stage", "broker", "baseline", "baseline_broker", "stage_alone",
                        "classifier"}  # fmt: skip
    assert cpu["stage"] > 0 and cpu["worker"] > 0 and cpu["baseline"] > 0
    assert 0 < cpu["classifier"] < cpu["stage_alone"]  # the motif d'absence model's part of the stage
    assert "end to end" in done.stderr  # progress is shown while it runs


def test_several_runs_report_the_median_of_each_figure() -> None:
    from vigie.runtime.bench import BenchResult, median_result

    def run(rate: float, base: float, p99: float, stage_us: float) -> BenchResult:
        return BenchResult(events=1000, events_per_s=rate, baseline_events_per_s=base, ratio=rate / base,
                           p50_latency_s=0.5, p99_latency_s=p99, peak_rss_mb=800.0, messages=40,
                           elapsed_s=1000 / rate, baseline_elapsed_s=1000 / base, latency_rate_per_s=100,
                           latency_events=100, cpu_us_per_record={"stage": stage_us}, load_average=1.0)  # fmt: skip

    result = median_result(
        [run(30_000, 60_000, 1.9, 30), run(10_000, 70_000, 9.0, 50), run(40_000, 50_000, 1.5, 28)]
    )
    assert result.events_per_s == 30_000 and result.baseline_events_per_s == 60_000
    assert result.ratio == 0.5  # from the medians, not a median of ratios
    assert result.p99_latency_s == 1.9 and result.cpu_us_per_record == {"stage": 30}
    assert len(result.runs) == 3 and result.runs[1]["events_per_s"] == 10_000
