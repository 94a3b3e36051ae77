"""Grafana dashboards: every panel has a query, and every query runs on the real engine."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

import vigie.dashboards

GRAFANA = Path(vigie.dashboards.__file__).parent / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "vigie.yml"
PROVISIONED_UIDS = set(re.findall(r"uid: (\S+)", DATASOURCES.read_text()))


def expand_macros(sql: str, database: str) -> str:
    """Expand the Grafana ClickHouse macros the dashboards use, for the last 24 hours."""
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        lambda m: f"{m[1]} >= now64(3) - INTERVAL 1 DAY AND {m[1]} <= now64(3)",
        sql,
    )
    return sql.replace("vigie.", f"{database}.")


def test_dashboards_have_unique_uids_queries_and_known_datasources() -> None:
    assert DASHBOARDS
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in PROVISIONED_UIDS
                assert target.get("rawSql") or target.get("expr")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_runs_against_the_warehouse(warehouse, path: Path) -> None:
    now = datetime.now(UTC)
    from vigie.sinks.rows import dead_letter_frame

    warehouse.insert_frame("dead_letters", dead_letter_frame([{
        "dead_letter_id": "d", "failed_at": now, "stage": "decode", "reason_code": "undecodable",
        "reason": "x", "source_topic": "raw.laval.grades", "source_partition": 0, "source_offset": 1,
        "css": "laval", "dataset": "grades", "event_id": None, "record_count": 0}]))  # fmt: skip
    for panel in json.loads(path.read_text())["panels"]:
        for target in panel["targets"]:
            rows = warehouse.query(expand_macros(target["rawSql"], warehouse.database))
            assert isinstance(rows, list), panel["title"]
            if "dead_letters" in target["rawSql"]:
                assert rows and {"reason_code", "letters"} <= set(rows[0])
