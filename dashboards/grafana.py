"""Grafana dashboard JSON from the panel definitions (``panels.py``).

The files under ``dashboards/grafana/dashboards/`` are generated (`vigie dashboards export`)
and checked by the tests to match: edit ``panels.py``, not the JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dashboards.panels import CLICKHOUSE, DASHBOARDS, PROMETHEUS, Dashboard, Panel

GRAFANA_DIR = Path(__file__).parent / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"


def _target(panel: Panel) -> dict[str, Any]:
    if panel.promql:
        return {"refId": "A", "datasource": PROMETHEUS, "expr": panel.query, "legendFormat": panel.legend}
    return {
        "refId": "A",
        "datasource": CLICKHOUSE,
        "editorType": "sql",
        "format": 0 if panel.kind == "timeseries" else 1,  # 0 = time series, 1 = table
        "queryType": "timeseries" if panel.kind == "timeseries" else "table",
        "rawSql": panel.sql,
    }


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    """One dashboard as Grafana's JSON model: two panels per row."""
    panels = []
    for i, panel in enumerate(dashboard.panels):
        panels.append({
            "id": i + 1,
            "type": panel.kind,
            "title": panel.title,
            "datasource": PROMETHEUS if panel.promql else CLICKHOUSE,
            "gridPos": {"h": 10, "w": 12, "x": 12 * (i % 2), "y": 10 * (i // 2)},
            "targets": [_target(panel)],
        })  # fmt: skip
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "tags": ["vigie"],
        "time": {"from": dashboard.time_from, "to": "now"},
        "refresh": "1m",
        "panels": panels,
    }


def export(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard's JSON file; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = directory / f"{dashboard.uid.removeprefix('vigie-')}.json"
        path.write_text(
            json.dumps(dashboard_json(dashboard), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        written.append(path)
    return written
