"""Dashboards: the JSON Grafana loads, every panel query on the real engine over a simulated
network history, small-cell suppression in SQL, and the production compose file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboards.grafana import DASHBOARDS_DIR, GRAFANA_DIR, dashboard_json
from dashboards.panels import DASHBOARDS, expand_macros, suppressed
from sinks.rows import FACT_TABLES, consent_frame, fact_frame, organizations_frame
from tests.curated import curate_history, network_history

DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "vigie.yml"
PROVISIONED = dict(re.findall(r"uid: (\S+)\n\s+type: (\S+)", DATASOURCES.read_text()))
ROOT = Path(__file__).parent.parent
MINIMUM = 5


def test_the_dashboard_files_are_generated_from_the_panel_definitions() -> None:
    files = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert [p.stem for p in files] == sorted(d.uid.removeprefix("vigie-") for d in DASHBOARDS)
    for dashboard in DASHBOARDS:
        on_disk = json.loads((DASHBOARDS_DIR / f"{dashboard.uid.removeprefix('vigie-')}.json").read_text())
        assert on_disk == dashboard_json(dashboard), f"run `vigie dashboards export` ({dashboard.uid})"


def test_dashboards_have_unique_uids_queries_and_resolvable_datasources() -> None:
    models = [json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))]
    assert len({m["uid"] for m in models}) == len(models) == 5
    for model in models:
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)) and model["panels"], model["uid"]
        for panel in model["panels"]:
            assert panel["title"] and panel["targets"], panel
            for ref in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
                assert PROVISIONED.get(ref["uid"]) == ref["type"], ref
            for target in panel["targets"]:
                query = (
                    target.get("rawSql")
                    if ref["type"] == "grafana-clickhouse-datasource"
                    else target.get("expr")
                )
                assert query and query.strip(), panel["title"]


@pytest.fixture(scope="module")
def history_warehouse(chdb_session, stage_context, organizations):
    """One database holding a simulated history of three CSS, through the stream stage."""
    wh = chdb_session.for_database(f"h_{uuid.uuid4().hex[:10]}")
    from sinks.migrate import migrate_up

    migrate_up(wh)
    now = datetime.now(UTC)
    wh.insert_frame("organizations", organizations_frame(organizations.values(), now))
    wh.insert_frame("consents", consent_frame(stage_context.consent, now))
    for ds, batches in curate_history(stage_context, network_history(organizations)).items():
        wh.insert_frame(FACT_TABLES[ds], fact_frame(ds, batches))
    return wh


def _run(wh, sql: str) -> list[dict]:
    now = datetime.now(UTC)
    return wh.query(
        expand_macros(sql, now - timedelta(days=60), now + timedelta(hours=1)).replace(
            "vigie.", f"{wh.database}."
        )
    )


PANELS = [(d.uid, p) for d in DASHBOARDS for p in d.panels if not p.promql]


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=[p.title[:40] for _, p in PANELS])
def test_every_panel_returns_rows_with_its_columns_and_no_cell_under_five_people(
    history_warehouse, uid, panel
) -> None:
    rows = _run(history_warehouse, panel.sql)
    assert rows, f"{uid}: {panel.title} returned no rows"
    assert set(panel.columns) <= set(rows[0]), set(panel.columns) - set(rows[0])
    assert {panel.x, panel.y} <= set(rows[0])
    for column in panel.individuals:
        small = [r for r in rows if 0 < int(r[column]) < MINIMUM]
        assert not small, f"{panel.title}: {column} under {MINIMUM} in {small[:3]}"
    if panel.individuals and panel.groups:
        # Complementary suppression: no group shows all but one of its cells.
        raw = Counter(tuple(r[g] for g in panel.groups) for r in _run(history_warehouse, panel.query))
        shown = Counter(tuple(r[g] for g in panel.groups) for r in rows)
        assert not any(raw[g] - shown[g] == 1 and shown[g] for g in raw), panel.title


def test_the_network_status_grid_lists_all_72_organizations(history_warehouse) -> None:
    grid = _run(history_warehouse, DASHBOARDS[0].panels[0].sql)
    assert len({r["css"] for r in grid}) == 72 and len(grid) == 72 * 3
    states = {(r["css"], r["dataset"]): r["state"] for r in grid}
    assert states[("phares", "attendance")] == "live"
    assert states[("kativik", "staff")] == "no consent"
    assert states[("laval", "attendance")] == "silent"


cells = st.dictionaries(
    st.tuples(st.sampled_from("abcd"), st.sampled_from("vwxyz")), st.integers(1, 30), min_size=1, max_size=16
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells)
def test_suppression_sql_withholds_small_cells_and_never_one_alone_per_group(warehouse, counts) -> None:
    table = f"{warehouse.database}.cells_{uuid.uuid4().hex[:6]}"
    warehouse.command(f"CREATE TABLE {table} (g String, c String, n UInt32) ENGINE = Memory")
    values = ", ".join(f"('{g}', '{c}', {n})" for (g, c), n in counts.items())
    warehouse.command(f"INSERT INTO {table} VALUES {values}")
    rows = warehouse.query(suppressed(f"SELECT g, c, n FROM {table}", ("n",), ("g",)))
    assert all(int(r["n"]) >= MINIMUM for r in rows)
    assert all(counts[(r["g"], r["c"])] == int(r["n"]) for r in rows)  # shown values are true
    total = Counter(g for g, _ in counts)
    shown = Counter(r["g"] for r in rows)
    # A group that lost exactly one cell shows nothing else (its total would reveal it).
    assert not any(total[g] - shown[g] == 1 and shown[g] for g in total)


def test_the_compose_stack_validates_and_needs_its_secrets_from_the_environment(
    monkeypatch, tmp_path
) -> None:
    """(The stack's own invariants are in tests/test_compose.py.)"""
    from vigie.deploy.render import render
    from vigie.settings import Settings

    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is missing: `make test` installs Debian's docker-compose package"
    base = [compose, "-f", str(ROOT / "docker-compose.yml"), "--project-directory", str(ROOT)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIE_", "GRAFANA_ADMIN"))}
    (tmp_path / "empty.env").write_text("")
    missing = subprocess.run([*base, "--env-file", str(tmp_path / "empty.env"), "config", "-q"],
                             capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert missing.returncode != 0 and "set it in .env" in missing.stderr  # no secret defaults in the repo
    render(Settings().organizations_file, tmp_path / "secrets", tmp_path / ".env", "kafka.example")
    rendered = [*base, "--env-file", str(tmp_path / ".env"), "config"]
    done = subprocess.run([*rendered, "-q"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    services = subprocess.run([*rendered, "--services"], capture_output=True, text=True, timeout=60,
                              env=env, check=True).stdout.split()  # fmt: skip
    assert {"kafka", "schema-registry", "clickhouse", "grafana", "prometheus", "worker", "connector"} <= set(
        services
    )
    # The sample connector's configuration is one `vigie connector run` accepts.
    from connectors.config import load_connector_config

    monkeypatch.setenv("VIGIE_SAMPLE_SOURCE_URL", "sqlite:////tmp/sample.sqlite")
    monkeypatch.setenv("VIGIE_SAMPLE_KAFKA_PASSWORD", "k")
    monkeypatch.setenv("VIGIE_SAMPLE_REGISTRY_PASSWORD", "r")
    config = load_connector_config(ROOT / "deploy" / "connector" / "connector.toml")
    assert config.css == "laval" and config.broker.bootstrap == "kafka:9092"
