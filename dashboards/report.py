"""`vigie report`: the dashboards' ClickHouse panels as one static HTML page a school
director can read and print, for people without Grafana.

Same panel definitions, same SQL (macros expanded for the chosen range, every selector at
« All »), same small-cell suppression. The rows stay codes (``run_panels``, also what the
worker serves); the page shows them through the label table in the reader's language
(French by default, English for the English boards). Charts are drawn by plotly, its script
inlined so the page works offline and can be mailed; each keeps at most ``MAX_CATEGORIES``
categories and series (the rest grouped or left to the table), each in its own colour; the
rows are folded away under the chart; an empty panel says why.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from dashboards.labels import STATE_COLOURS, TIMEZONE, WITHHELD, Language, label
from dashboards.panels import DASHBOARDS, Panel, expand_macros, qualify
from sinks.suppression import DEFAULT_MINIMUM
from sinks.warehouse import Warehouse

MAX_CATEGORIES = 10
# Ten colours a reader tells apart (Tableau 10), and grey for « Autres ».
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
           "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#17becf")  # fmt: skip
OTHERS_COLOUR = "#bab0ac"
_TZ = ZoneInfo(TIMEZONE)
_STATE_HEX = {"green": "#59a14f", "orange": "#f28e2b", "red": "#e15759"}

_TEXT = {
    "heading": ("Vigie — état du réseau scolaire", "Vigie — the school network's status"),
    "generated": (
        "Produit le {generated} pour la période du {start} au {end} (heure du Québec).",
        "Generated {generated} for {start} to {end} (Québec time).",
    ),
    "suppression": (
        "« x » : donnée retenue — moins de {minimum} élèves ou membres du personnel, ou retenue pour "
        "qu'une autre ne puisse être déduite. Effectifs arrondis à 5 près, par jour, semaine ISO, mois "
        "ou année scolaire entiers (ceux que touche la période). La santé du pipeline (Prometheus) est "
        "dans Grafana.",
        "“x”: withheld — fewer than {minimum} students or staff, or withheld so that another cannot "
        "be deduced. Counts rounded to the nearest 5, by whole day, ISO week, month or school year "
        "(those the range touches). The pipeline's own health (Prometheus) is in Grafana.",
    ),
    "empty": ("Aucune donnée pour cette période.", "No data for this range."),
    "all_withheld": (
        "Toutes les cellules sont retenues (trop peu de personnes).",
        "Every cell is withheld (too few people).",
    ),
    "data": ("Données ({n} lignes)", "Data ({n} rows)"),
    "top": (
        "Graphique : les {k} premiers sur {n}; tous sont dans les données.",
        "Chart: the first {k} of {n}; all are in the data.",
    ),
    "others": ("Autres", "Others"),
}


def _t(key: str, lang: Language, **values: Any) -> str:
    return _TEXT[key][0 if lang == "fr" else 1].format(**values)


@dataclass
class PanelResult:
    """One panel's answer over a time range (rows hold codes; NULL where withheld)."""

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
    uid: str = ""  # the dashboard and the panel's place in it: titles and notes per language
    index: int = 0


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        # Dates and times read in Québec time.
        local = value.astimezone(_TZ) if value.tzinfo else value
        return (
            local.strftime("%Y-%m-%d %H:%M") if (local.hour, local.minute) != (0, 0) else f"{local:%Y-%m-%d}"
        )
    if isinstance(value, date):
        return value.isoformat()
    return value


def run_panels(
    warehouse: Warehouse, start: datetime, end: datetime, minimum: int = DEFAULT_MINIMUM
) -> list[PanelResult]:
    """Run every ClickHouse panel of every dashboard over [start, end]; rows hold codes."""
    results = []
    for dashboard in DASHBOARDS:
        for index, panel in enumerate(dashboard.panels):
            if panel.promql:
                continue
            sql = qualify(expand_macros(panel.sql_with(minimum), start, end), warehouse.database)
            rows = [{k: _plain(v) for k, v in row.items()} for row in warehouse.query(sql)]
            results.append(PanelResult(dashboard.title[0], panel.title[0], panel.kind, panel.x, panel.y,
                                       panel.series, list(panel.columns), rows, list(panel.individuals),
                                       panel.chart, dashboard.uid, index))  # fmt: skip
    return results


def results_to_json(results: list[PanelResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


def results_from_json(data: list[dict[str, Any]]) -> list[PanelResult]:
    return [PanelResult(**d) for d in data]


def _panel(result: PanelResult) -> Panel | None:
    for dashboard in DASHBOARDS:
        if dashboard.uid == result.uid and result.index < len(dashboard.panels):
            return dashboard.panels[result.index]
    return None


def _cell(column: str, value: Any, coded: tuple[str, ...], lang: Language) -> str:
    if value is None:
        return WITHHELD
    if column in coded or column.endswith("_state"):
        return label(value, lang)
    if isinstance(value, float):
        return f"{value:,.1f}".replace(",", "\u202f").replace(".", "," if lang == "fr" else ".")
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u202f" if lang == "fr" else ",")
    return str(value)


def _grid(result: PanelResult, lang: Language) -> Any:
    """One row per organization, one column per dataset, each state its colour."""
    import plotly.graph_objects as go

    states = [c for c in result.columns if c.endswith("_state")]
    levels = {state: i for i, state in enumerate(STATE_COLOURS)}
    rows = list(reversed(result.rows))  # plotly draws the first row at the bottom
    names = [str(r.get("organization") or r["css"]) for r in rows]
    columns = [label(c, lang) for c in states]
    z = [[levels.get(str(r[c]), 0) for c in states] for r in rows]
    text = [[label(r[c], lang) for c in states] for r in rows]
    n = len(STATE_COLOURS)
    colours = []
    for i, colour in enumerate(STATE_COLOURS.values()):
        hexa = _STATE_HEX.get(colour, colour)
        colours += [[i / n, hexa], [(i + 1) / n, hexa]]
    fig = go.Figure(go.Heatmap(z=z, x=columns, y=names, text=text, texttemplate="%{text}", zmin=-0.5,
                               zmax=n - 0.5, colorscale=colours, showscale=False, xgap=2, ygap=2,
                               hovertemplate="%{y} — %{x} : %{text}<extra></extra>"))  # fmt: skip
    fig.update_layout(height=20 * len(names) + 80, margin={"l": 330, "r": 10, "t": 30, "b": 10},
                      xaxis={"side": "top"}, font={"size": 11})  # fmt: skip
    return fig


def _series(
    result: PanelResult, panel: Panel | None, lang: Language
) -> tuple[dict[str, list[tuple[Any, Any]]], str]:
    """Points per series, at most MAX_CATEGORIES series and categories; a note if some are left
    to the table."""
    coded = panel.coded if panel else ()
    counting = result.y in result.individuals or (panel is not None and panel.units.get(result.y) == "short")
    rows = [r for r in result.rows if r.get(result.y) is not None]
    note = ""
    if not result.series and result.kind != "timeseries":
        # One bar per row: the rows that matter most (the panel's worst first).
        ordered = sorted(rows, key=lambda r: r[result.y], reverse=not (panel and panel.worst_low))
        if len(ordered) > MAX_CATEGORIES:
            note = _t("top", lang, k=MAX_CATEGORIES, n=len(ordered))
        name = label(result.y, lang)
        return {
            name: [(_cell(result.x, r[result.x], coded, lang), r[result.y]) for r in ordered[:MAX_CATEGORIES]]
        }, note
    weight: dict[str, float] = defaultdict(float)
    for r in rows:
        weight[str(r.get(result.series, ""))] += float(r[result.y])
    ranked = sorted(weight, key=lambda s: -weight[s])
    keep = set(ranked[: MAX_CATEGORIES - 1]) if len(ranked) > MAX_CATEGORIES else set(ranked)
    others = _t("others", lang)
    series: dict[str, dict[Any, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        name = str(r.get(result.series, ""))
        if name in keep:
            series[_cell(result.series, name, coded, lang)][_cell(result.x, r[result.x], coded, lang)] += r[
                result.y
            ]
        elif counting:  # counts add up; rates do not, and are left to the table
            series[others][_cell(result.x, r[result.x], coded, lang)] += r[result.y]
    if len(ranked) > len(keep) and not counting:
        note = _t("top", lang, k=len(keep), n=len(ranked))
    # Categories on the x axis: the most important ones.
    if result.kind != "timeseries":
        totals: dict[Any, float] = defaultdict(float)
        for points in series.values():
            for x, y in points.items():
                totals[x] += y
        if len(totals) > MAX_CATEGORIES:
            top = set(sorted(totals, key=lambda x: -totals[x])[:MAX_CATEGORIES])
            series = defaultdict(lambda: defaultdict(float), {
                s: defaultdict(float, {x: y for x, y in p.items() if x in top}) for s, p in series.items()})  # fmt: skip
            note = _t("top", lang, k=MAX_CATEGORIES, n=len(totals))
    return {s: list(p.items()) for s, p in series.items()}, note


def _figure(
    result: PanelResult, panel: Panel | None, lang: Language, start: datetime, end: datetime
) -> tuple[Any, str]:
    import plotly.graph_objects as go

    if result.chart == "grid":
        return _grid(result, lang), ""
    series, note = _series(result, panel, lang)
    fig = go.Figure()
    for i, (name, points) in enumerate(series.items()):
        colour = OTHERS_COLOUR if name == _t("others", lang) else PALETTE[i % len(PALETTE)]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if result.kind == "timeseries":
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, line={"color": colour}))
        else:
            # Values printed on the bars when few: the page is read on paper.
            text = [_cell(result.y, y, (), lang) for y in ys] if len(series) == 1 else None
            fig.add_trace(go.Bar(x=xs, y=ys, name=name, marker_color=colour, text=text, textposition="outside",
                                 cliponaxis=False))  # fmt: skip
    percent = bool(panel and panel.units.get(result.y) == "percent")
    layout: dict[str, Any] = {
        "barmode": "group", "height": 400, "margin": {"l": 60, "r": 10, "t": 40, "b": 10},
        "yaxis": {"title": {"text": label(result.y, lang)}, "rangemode": "tozero", "automargin": True,
                  "ticksuffix": " %" if percent else "", "separatethousands": True},
        "xaxis": {"title": {"text": label(result.x, lang)}, "automargin": True, "tickangle": -30},
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "showlegend": len(series) > 1, "font": {"size": 12},
        "separators": ", " if lang == "fr" else ".,",
    }  # fmt: skip
    if result.kind == "timeseries":
        # A date axis over the report's whole range, in days: never sub-second ticks.
        layout["xaxis"].update({"type": "date", "tickformat": "%Y-%m-%d", "tickangle": 0,
                                "range": [_plain(start), _plain(end)], "dtick": 86_400_000 * max(1, (end - start).days // 8)})  # fmt: skip
    fig.update_layout(**layout)
    return fig, note


def _table(result: PanelResult, panel: Panel | None, lang: Language) -> str:
    coded = panel.coded if panel else ()
    head = "".join(f"<th>{html.escape(label(c, lang))}</th>" for c in result.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(c, r.get(c), coded, lang))}</td>" for c in result.columns) + "</tr>"
        for r in result.rows
    )  # fmt: skip
    summary = html.escape(_t("data", lang, n=len(result.rows)))
    return f"<details><summary>{summary}</summary><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></details>"


def render_html(
    results: list[PanelResult], start: datetime, end: datetime, minimum: int, lang: Language = "fr"
) -> str:
    """The report page: one section per dashboard, a chart and the folded rows per panel."""
    at = 0 if lang == "fr" else 1
    titles = {d.uid: d.title[at] for d in DASHBOARDS}
    parts: list[str] = []
    script_inlined = False
    current = None
    for i, result in enumerate(results):
        panel = _panel(result)
        dashboard = titles.get(result.uid, result.dashboard)
        if dashboard != current:
            current = dashboard
            parts.append(f"<h2>{html.escape(current)}</h2>")
        title = panel.title[at] if panel else result.title
        parts.append(f"<section class='panel'><h3>{html.escape(title)}</h3>")
        withheld = bool(result.rows) and all(r.get(result.y) is None for r in result.rows)
        if not result.rows or withheld:
            why = (panel.empty[at] if panel and panel.empty[at] else "") or _t("empty", lang)
            if withheld:
                why = f"{_t('all_withheld', lang)} {panel.empty[at] if panel else ''}".strip()
            parts.append(f"<p class='note empty'>{html.escape(why)}</p>")
        else:
            fig, note = _figure(result, panel, lang, start, end)
            parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if not script_inlined else False,
                                     div_id=f"chart-{i}", config={"displayModeBar": False, "locale": lang}))  # fmt: skip
            script_inlined = True
            if note:
                parts.append(f"<p class='note'>{html.escape(note)}</p>")
        if result.rows:
            parts.append(_table(result, panel, lang))
        parts.append("</section>")
    stamp = "%Y-%m-%d %H:%M"
    generated = datetime.now(_TZ).strftime(stamp)
    intro = _t("generated", lang, generated=generated, start=start.astimezone(_TZ).strftime(stamp),
               end=end.astimezone(_TZ).strftime(stamp))  # fmt: skip
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(_t("heading", lang))}</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1d2733; max-width: 1100px; }}
 h1 {{ margin-bottom: 0; }} h2 {{ border-bottom: 2px solid #0b5394; padding-bottom: .2rem; margin-top: 2.5rem; }}
 .panel {{ margin: 1.5rem 0; break-inside: avoid; }} .note {{ color: #5c6670; font-size: .9rem; }}
 .empty {{ font-style: italic; }}
 details {{ margin-top: .5rem; }} summary {{ cursor: pointer; color: #0b5394; }}
 table {{ border-collapse: collapse; font-size: .85rem; margin-top: .4rem; }}
 td, th {{ border: 1px solid #d0d7de; padding: .2rem .5rem; }} td {{ text-align: right; }}
 @media print {{ details {{ display: none; }} body {{ margin: 0; }} }}
</style></head><body>
<h1>{html.escape(_t("heading", lang))}</h1>
<p class="note">{html.escape(intro)}<br>{html.escape(_t("suppression", lang, minimum=minimum))}</p>
{"".join(parts)}
</body></html>
"""
