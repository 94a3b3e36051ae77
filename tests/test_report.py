"""`vigie report` on a running pipeline fed a simulated network history: every ClickHouse
panel answers through the worker with its columns and no cell under five people, and the
page renders its charts in headless Chromium (screenshot in test-artifacts/)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.publisher import ConnectorPublisher, flush, make_producer
from dashboards.labels import LABELS
from dashboards.panels import DASHBOARDS
from dashboards.report import MAX_CATEGORIES, _figure, _panel, render_html, run_panels
from schemas.contracts import RAW_RECORDS_FIELD
from schemas.wire import AvroCodec
from tests.curated import HISTORY_CSS, network_history
from tests.embedded import vigie, vigie_up, wait_for, worker_status
from tests.test_dashboards import load_history, simulated_history

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"


@pytest.mark.integration
def test_report_of_a_running_pipeline_renders_every_panel_in_chromium(tmp_path: Path, organizations) -> None:
    data_dir = tmp_path / "vigie"
    history = network_history(organizations)
    sent = sum(len(batch[RAW_RECORDS_FIELD[ds]]) for _, ds, batch in history)
    with vigie_up(data_dir) as (_proc, info):
        codec = AvroCodec.from_url(info.registry_url)
        producer = make_producer(info.broker)
        publishers = {css: ConnectorPublisher(css, "SIS", codec, producer) for css in HISTORY_CSS}
        for css, ds, batch in history:
            publishers[css].publish(ds, batch)
        for publisher in publishers.values():
            publisher.heartbeat()
        assert flush(producer, 60) == 0

        def stored() -> int:
            return sum(d["events"] + d["withheld_no_consent"] for s in worker_status(data_dir)
                       for d in s["datasets"].values())  # fmt: skip

        wait_for(lambda: stored() >= sent, 180, f"{sent:,} records stored", 2)
        ARTIFACTS.mkdir(exist_ok=True)
        page, data = ARTIFACTS / "report.html", tmp_path / "panels.json"
        done = vigie("report", "--out", str(page), "--data", str(data), "--days", "40", data_dir=data_dir)
        assert "source : worker en cours" in done.stdout

    results = json.loads(data.read_text())
    panels = {p.title[0]: p for d in DASHBOARDS for p in d.panels if not p.promql}
    assert {r["title"] for r in results} == set(panels)
    for result in results:
        panel = panels[result["title"]]
        assert result["rows"], f"{panel.title}: no rows"
        assert set(panel.columns) <= set(result["rows"][0])
        for column in panel.individuals:
            assert all(r[column] is None or r[column] == 0 or r[column] >= 5 for r in result["rows"]), (
                panel.title,
                column,
            )

    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `make test` installs Debian's chromium package"
    browse = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
    ]
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    subprocess.run([*browse, "--window-size=1300,2400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    assert shot.stat().st_size > 20_000
    dom = subprocess.run([*browse, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout  # fmt: skip
    # plotly draws each chart as an SVG once its script ran: one per panel with rows.
    assert dom.count('class="main-svg"') >= 2 * sum(1 for r in results if r["rows"])
    assert "Vigie — assiduité" in dom and "donnée retenue" in dom and '<html lang="fr">' in dom


# -- the page a director prints, over the simulated history (no pipeline: fast) -----------


CODES_NEVER_SHOWN = ("sante_rdv", "absence_rate_pct", "prepose_eleves_handicapes", "no_consent", "61-74",
                     "chronic_pct", "unmapped_pct", "attendance_state")  # fmt: skip


def _dom(page: Path) -> str:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `make test` installs Debian's chromium package"
    browse = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000"]
    return subprocess.run([*browse, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                          check=True).stdout  # fmt: skip


@pytest.fixture(scope="module")
def report_warehouse(chdb_session, stage_context, organizations):
    from sinks.migrate import migrate_up

    wh = chdb_session.for_database(f"r_{uuid.uuid4().hex[:10]}")
    migrate_up(wh)
    load_history(wh, stage_context, organizations, simulated_history(organizations, datetime.now(UTC)))
    return wh


def test_the_report_reads_in_french_with_folded_tables_and_small_charts(report_warehouse) -> None:
    end = datetime.now(UTC) + timedelta(hours=1)
    start = end - timedelta(days=30)
    results = run_panels(report_warehouse, start, end, 5)
    for result in results:
        if not result.rows or result.chart == "grid":
            continue
        fig, _note = _figure(result, _panel(result), "fr", start, end)
        assert len(fig.data) <= MAX_CATEGORIES, result.title
        for trace in fig.data:
            assert len(set(trace.x)) <= MAX_CATEGORIES or result.kind == "timeseries", result.title
        colours = [t.line.color if result.kind == "timeseries" else t.marker.color for t in fig.data]
        assert len(set(colours)) == len(colours), result.title  # one colour per series
        if result.kind == "timeseries":
            assert fig.layout.xaxis.type == "date" and fig.layout.xaxis.tickformat == "%Y-%m-%d"
    ARTIFACTS.mkdir(exist_ok=True)
    for lang, heading, withheld in (("fr", "Vigie — assiduité", "donnée retenue"),
                                    ("en", "Vigie — attendance", "withheld")):  # fmt: skip
        page = ARTIFACTS / f"report-{lang}.html"
        page.write_text(render_html(results, start, end, 5, lang), encoding="utf-8")
        dom = _dom(page)
        assert f'<html lang="{lang}">' in dom and heading in dom and withheld in dom
        assert dom.count("<details>") == sum(1 for r in results if r.rows)
        assert dom.count('class="main-svg"') >= 2 * sum(1 for r in results if r.rows)
        visible = re.sub(r"<script.*?</script>", "", dom.split("<h1>", 1)[1], flags=re.S)
        for code in CODES_NEVER_SHOWN:
            assert code not in visible, (lang, code)
        assert LABELS["sante_rdv"][0 if lang == "fr" else 1] in visible


def test_an_empty_panel_says_why(warehouse) -> None:
    end = datetime.now(UTC)
    results = run_panels(warehouse, end - timedelta(days=3), end, 5)
    page = render_html(results, end - timedelta(days=3), end, 5, "fr")
    assert "après au moins 10 jours de classe" in page  # chronic absenteeism
    assert page.count("class='note empty'") == sum(1 for r in results if not r.rows)


def test_report_refuses_an_unknown_language_in_one_line(tmp_path: Path) -> None:
    done = vigie("report", "--out", str(tmp_path / "r.html"), "--lang", "de", data_dir=tmp_path, check=False)
    assert done.returncode == 2 and "--lang should be fr or en, got 'de'" in done.stderr
    assert "Traceback" not in done.stderr
    env = {**os.environ, "VIGIE_LANGUAGE": "de"}
    done = subprocess.run([sys.executable, "-m", "vigie.cli", "report", "--out", str(tmp_path / "r.html"),
                           "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert done.returncode == 2 and "language" in done.stderr and "Traceback" not in done.stderr
