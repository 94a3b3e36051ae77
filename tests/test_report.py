"""`vigie report` on a running pipeline fed a simulated network history: every ClickHouse
panel answers through the worker with its columns and no cell under five people, and the
page renders its charts in headless Chromium (screenshot in test-artifacts/)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from connectors.publisher import ConnectorPublisher, flush, make_producer
from dashboards.panels import DASHBOARDS
from schemas.contracts import RAW_RECORDS_FIELD
from schemas.wire import AvroCodec
from tests.curated import HISTORY_CSS, network_history
from tests.embedded import status_json, vigie, vigie_up, wait_for

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"


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
            return sum(d["events"] + d["withheld_no_consent"] for s in status_json(data_dir)
                       for d in s["datasets"].values())  # fmt: skip

        wait_for(lambda: stored() >= sent, 180, f"{sent:,} records stored", 2)
        ARTIFACTS.mkdir(exist_ok=True)
        page, data = ARTIFACTS / "report.html", tmp_path / "panels.json"
        done = vigie("report", "--out", str(page), "--data", str(data), "--days", "40", data_dir=data_dir)
        assert "from the worker" in done.stdout

    results = json.loads(data.read_text())
    panels = {p.title: p for d in DASHBOARDS for p in d.panels if not p.promql}
    assert {r["title"] for r in results} == set(panels)
    for result in results:
        panel = panels[result["title"]]
        assert result["rows"], f"{panel.title}: no rows"
        assert set(panel.columns) <= set(result["rows"][0])
        for column in panel.individuals:
            assert all(r[column] == 0 or r[column] >= 5 for r in result["rows"]), (panel.title, column)

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
    assert dom.count('class="main-svg"') >= 2 * len(results)
    assert "Vigie — attendance" in dom and "withheld" in dom
