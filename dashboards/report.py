"""`vigie report`: the dashboards' ClickHouse panels as one static HTML page, for people
without Grafana. Same panel definitions, same SQL (macros expanded for the chosen range),
same small-cell suppression; charts drawn by plotly, its script inlined so the page works
offline and can be mailed.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from dashboards.panels import DASHBOARDS, DB, expand_macros
from sinks.suppression import DEFAULT_MINIMUM
from sinks.warehouse import Warehouse


@dataclass
class PanelResult:
    """One panel's answer over a time range."""

    dashboard: str
    title: str
    kind: str
    x: str
    y: str
    series: str
    columns: list[str]
    rows: list[dict[str, Any]]
    individuals: list[str]
    chart: str = ""


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def run_panels(
    warehouse: Warehouse, start: datetime, end: datetime, minimum: int = DEFAULT_MINIMUM
) -> list[PanelResult]:
    """Run every ClickHouse panel of every dashboard over [start, end]."""
    results = []
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels:
            if panel.promql:
                continue
            # Panels name Grafana's database; a warehouse may use another (VIGIE_WAREHOUSE_DATABASE).
            sql = panel.sql_with(minimum).replace(f"{DB}.", f"{warehouse.database}.")
            rows = warehouse.query(expand_macros(sql, start, end))
            rows = [{k: _plain(v) for k, v in row.items()} for row in rows]
            columns = list(rows[0]) if rows else list(panel.columns)
            results.append(PanelResult(dashboard.title, panel.title, panel.kind, panel.x, panel.y,
                                       panel.series, columns, rows, list(panel.individuals), panel.chart))  # fmt: skip
    return results


def results_to_json(results: list[PanelResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


def results_from_json(data: list[dict[str, Any]]) -> list[PanelResult]:
    return [PanelResult(**d) for d in data]


STATE_LEVELS = {"no consent": 0, "silent": 1, "late": 2, "live": 3}


def _grid(result: PanelResult) -> Any:
    """One row per organization, one column per dataset, coloured by state."""
    import plotly.graph_objects as go

    names = sorted({str(r[result.series]) for r in result.rows}, reverse=True)
    columns = sorted({str(r[result.x]) for r in result.rows})
    cell = {(str(r[result.series]), str(r[result.x])): str(r[result.y]) for r in result.rows}
    z = [[STATE_LEVELS.get(cell.get((n, c), ""), 1) for c in columns] for n in names]
    text = [[cell.get((n, c), "") for c in columns] for n in names]
    colours = [[0, "#b0b7bf"], [0.25, "#b0b7bf"], [0.25, "#d9534f"], [0.5, "#d9534f"],
               [0.5, "#f0ad4e"], [0.75, "#f0ad4e"], [0.75, "#5cb85c"], [1, "#5cb85c"]]  # fmt: skip
    fig = go.Figure(go.Heatmap(z=z, x=columns, y=names, text=text, texttemplate="%{text}", zmin=-0.5,
                               zmax=3.5, colorscale=colours, showscale=False, xgap=2, ygap=2))  # fmt: skip
    fig.update_layout(height=24 * len(names) + 80, margin={"l": 200, "r": 10, "t": 10, "b": 30})
    return fig


def _figure(result: PanelResult) -> Any:
    import plotly.graph_objects as go

    if result.chart == "grid":
        return _grid(result)

    series: dict[str, tuple[list[Any], list[Any]]] = {}
    for row in result.rows:
        name = str(row.get(result.series, "")) if result.series else result.y
        xs, ys = series.setdefault(name, ([], []))
        xs.append(row.get(result.x))
        ys.append(row.get(result.y))
    fig = go.Figure()
    for name, (xs, ys) in series.items():
        if result.kind == "timeseries":
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name))
        else:
            fig.add_trace(go.Bar(x=xs, y=ys, name=name))
    fig.update_layout(
        barmode="group", height=340, margin={"l": 40, "r": 10, "t": 10, "b": 80},
        yaxis_title=result.y, legend={"orientation": "h"},
    )  # fmt: skip
    return fig


def _table(result: PanelResult, limit: int = 40) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in result.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if r.get(c) is None else str(r.get(c)))}</td>" for c in result.columns)
        + "</tr>"
        for r in result.rows[:limit]
    )  # fmt: skip
    more = (
        f"<p class='note'>{len(result.rows) - limit} more rows not shown.</p>"
        if len(result.rows) > limit
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def render_html(results: list[PanelResult], start: datetime, end: datetime, minimum: int) -> str:
    """The report page: one section per dashboard, a chart (and the rows) per panel."""
    parts: list[str] = []
    script_inlined = False
    current = None
    for i, result in enumerate(results):
        if result.dashboard != current:
            current = result.dashboard
            parts.append(f"<h2>{html.escape(current)}</h2>")
        parts.append(f"<section class='panel'><h3>{html.escape(result.title)}</h3>")
        if not result.rows:
            parts.append("<p class='note'>No rows to show for this range (or every cell was withheld).</p>")
        else:
            fig = _figure(result)
            parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if not script_inlined else False,
                                     div_id=f"chart-{i}", config={"displayModeBar": False}))  # fmt: skip
            script_inlined = True
            parts.append(_table(result))
        parts.append("</section>")
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"""<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>Vigie — rapport du réseau</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1d2733; }}
 h1 {{ margin-bottom: 0; }} h2 {{ border-bottom: 2px solid #0b5394; padding-bottom: .2rem; margin-top: 2.5rem; }}
 .panel {{ margin: 1.5rem 0; }} .note {{ color: #5c6670; font-size: .9rem; }}
 table {{ border-collapse: collapse; font-size: .85rem; }} td, th {{ border: 1px solid #d0d7de; padding: .2rem .5rem; }}
</style></head><body>
<h1>Vigie — the network's status</h1>
<p class="note">Generated {html.escape(generated)} for {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC.
Every count of students or staff below {minimum} is withheld, with a second cell where one alone could be
recomputed. The pipeline's own health is in Grafana (Prometheus), not here.</p>
{"".join(parts)}
</body></html>
"""
