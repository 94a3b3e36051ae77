"""Grafana dashboard JSON from the panel definitions (``panels.py``).

The files under ``dashboards/grafana/dashboards/`` are generated (`vigie dashboards export`)
and checked by the tests to match: edit ``panels.py``, not the JSON. Each dashboard exists
in French (``<name>.json``, the default) and in English (``<name>-en.json``, for the English
school boards); both carry the ``lang`` variable that the SQL labels codes with, and the
region → CSS → school selectors. Queries follow grafana-clickhouse-datasource's current model
(``editorType``, ``queryType``, ``format``, ``pluginVersion``), so the plugin does not migrate
them on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dashboards.labels import LANGUAGES, STATE_COLOURS, TIMEZONE, WITHHELD, Language, label
from dashboards.panels import CLICKHOUSE, DASHBOARDS, PLUGIN_VERSION, PROMETHEUS, Dashboard, Panel

GRAFANA_DIR = Path(__file__).parent / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
_FORMAT = {"timeseries": 0, "table": 1}  # the plugin's mapQueryTypeToGrafanaFormat


def _target(panel: Panel) -> dict[str, Any]:
    if panel.promql:
        return {"refId": "A", "datasource": PROMETHEUS, "expr": panel.query, "legendFormat": panel.legend,
                "range": True, "editorMode": "code"}  # fmt: skip
    query_type = "timeseries" if panel.kind == "timeseries" else "table"
    return {
        "refId": "A",
        "datasource": CLICKHOUSE,
        "pluginVersion": PLUGIN_VERSION,
        "editorType": "sql",
        "queryType": query_type,
        "format": _FORMAT[query_type],
        "rawSql": panel.sql,
        "meta": {},
    }


def _steps(steps: tuple[tuple[float | None, str], ...]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def _withheld(lang: Language) -> list[dict[str, Any]]:
    """Suppressed cells come back NULL: show them as « x » (explained in the description),
    never as an empty cell."""
    return [{"type": "special", "options": {"match": "null", "result": {"text": WITHHELD, "index": 0}}}]


def _field_config(panel: Panel, lang: Language) -> dict[str, Any]:
    defaults: dict[str, Any] = {"mappings": [] if panel.promql else _withheld(lang)}
    if panel.promql:
        if "" in panel.units:
            defaults["unit"] = panel.units[""]
        if "" in panel.thresholds:
            defaults["thresholds"] = _steps(panel.thresholds[""])
            defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
        return {"defaults": defaults, "overrides": []}
    overrides: list[dict[str, Any]] = []
    for column in panel.columns:
        props: list[dict[str, Any]] = [{"id": "displayName", "value": label(column, lang)}]
        if column in panel.units:
            props.append({"id": "unit", "value": panel.units[column]})
            props.append({"id": "decimals", "value": 1 if panel.units[column] == "percent" else 0})
        if column in panel.thresholds:
            props.append({"id": "thresholds", "value": _steps(panel.thresholds[column])})
            props.append({"id": "color", "value": {"mode": "thresholds"}})
            if panel.kind == "table":
                props.append({"id": "custom.cellOptions", "value": {"type": "color-text"}})
        if column.endswith("_state"):
            # The status grid: each state its colour, as a whole cell.
            mapping = {
                state: {"color": colour, "index": i, "text": label(state, lang)}
                for i, (state, colour) in enumerate(STATE_COLOURS.items())
            }
            props.append({"id": "mappings", "value": [{"type": "value", "options": mapping}]})
            props.append({"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "basic"}})
            props.append({"id": "custom.align", "value": "center"})
        overrides.append({"matcher": {"id": "byName", "options": column}, "properties": props})
    return {"defaults": defaults, "overrides": overrides}


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "table":
        return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if panel.kind == "barchart":
        # With a series column, groupingToMatrix makes the categories its first field.
        options = {"orientation": "auto", "showValue": "auto", "stacking": "none",
                   "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                   "xTickLabelRotation": -30, "xTickLabelSpacing": 0}  # fmt: skip
        return options if panel.series else {**options, "xField": panel.x}
    return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"}}  # fmt: skip


def _transformations(panel: Panel) -> list[dict[str, Any]]:
    """Bar charts and time series take one series per value of ``series`` (rows → columns)."""
    if panel.promql or not panel.series or panel.kind == "table":
        return []
    if panel.kind == "timeseries":
        return [{"id": "prepareTimeSeries", "options": {"format": "multi"}}]  # one line per series value
    return [{"id": "groupingToMatrix", "options": {"columnField": panel.series, "rowField": panel.x,
                                                     "valueField": panel.y}}]  # fmt: skip


def _variables(lang: Language, selectors: bool) -> list[dict[str, Any]]:
    languages = {
        "type": "custom", "name": "lang", "label": "Langue" if lang == "fr" else "Language",
        "query": "fr,en", "current": {"text": lang, "value": lang}, "hide": 0,
        "options": [{"text": x, "value": x, "selected": x == lang} for x in LANGUAGES],
    }  # fmt: skip
    if not selectors:
        return []

    def query(name: str, title: tuple[str, str], sql: str) -> dict[str, Any]:
        return {
            "type": "query", "name": name, "label": title[LANGUAGES.index(lang)],
            "datasource": CLICKHOUSE,
            "query": {"refId": f"{name}-var", "queryType": "sql", "rawSql": sql},
            "definition": sql, "refresh": 1, "multi": True, "includeAll": True,
            "current": {"text": ["All"], "value": ["$__all"]}, "sort": 1,
        }  # fmt: skip

    return [
        languages,
        query("region", ("Région", "Region"),
              "SELECT DISTINCT region_name FROM organizations FINAL ORDER BY region_name"),
        # Two columns: the plugin takes the first as the value, the second as the text.
        query("css", ("CSS", "School board"),
              "SELECT code, name FROM organizations FINAL "
              "WHERE $__conditionalAll(region_name IN (${region:singlequote}), $region) ORDER BY name"),
        # Schools seen in the last 60 days: a list of codes the ministry is granted (the
        # panels then read each chosen school's rows, suppressed among its CSS's schools).
        query("school", ("École", "School"),
              "SELECT DISTINCT school_code FROM ministry_schools "
              "WHERE $__conditionalAll(css IN (${css:singlequote}), $css) ORDER BY school_code"),
    ]  # fmt: skip


def dashboard_json(dashboard: Dashboard, lang: Language = "fr") -> dict[str, Any]:
    """One dashboard as Grafana's JSON model, in one language: two panels per row."""
    at = LANGUAGES.index(lang)
    panels = []
    y = 0
    for i, panel in enumerate(dashboard.panels):
        wide = panel.chart == "grid"
        height = 22 if wide else 10
        x = 0 if wide else 12 * (i % 2)
        entry: dict[str, Any] = {
            "id": i + 1,
            "type": panel.kind,
            "title": panel.title[at],
            "datasource": PROMETHEUS if panel.promql else CLICKHOUSE,
            "gridPos": {"h": height, "w": 24 if wide else 12, "x": x, "y": y},
            "targets": [_target(panel)],
            "fieldConfig": _field_config(panel, lang),
            "options": _options(panel),
            "transformations": _transformations(panel),
        }
        if panel.empty[at]:
            entry["description"] = panel.empty[at]
        panels.append(entry)
        if wide or x == 12:
            y += height
    uid = dashboard.uid if lang == "fr" else f"{dashboard.uid}-en"
    return {
        "uid": uid,
        "title": dashboard.title[at],
        "description": dashboard.description[at],
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "tags": ["vigie", lang],
        "timezone": TIMEZONE,
        "time": {"from": dashboard.time_from, "to": "now"},
        "refresh": "1m",
        "templating": {"list": _variables(lang, dashboard.variables)},
        "links": [_other_language(dashboard, lang)],
        "panels": panels,
    }


def _other_language(dashboard: Dashboard, lang: Language) -> dict[str, Any]:
    """A link to the same board in the other language, keeping the time range and selectors."""
    other = dashboard.uid if lang == "en" else f"{dashboard.uid}-en"
    title = "English" if lang == "fr" else "Français"
    return {"type": "link", "title": title, "icon": "doc", "url": f"/d/{other}", "keepTime": True,
            "includeVars": True, "targetBlank": False}  # fmt: skip


def file_name(dashboard: Dashboard, lang: Language) -> str:
    stem = dashboard.uid.removeprefix("vigie-")
    return f"{stem}.json" if lang == "fr" else f"{stem}-en.json"


def export(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard's JSON file, in each language; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        for lang in LANGUAGES:
            path = directory / file_name(dashboard, lang)
            path.write_text(
                json.dumps(dashboard_json(dashboard, lang), indent=2, ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
            written.append(path)
    return written
