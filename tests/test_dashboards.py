"""Dashboards: the JSON Grafana loads, every panel query on the real engine over a simulated
network history, with the figures checked against true values computed in Python from the
simulated source rows (never from the panel SQL); small-cell suppression in SQL; the
production compose file."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.calendar import is_school_day, school_date
from connectors.simulator import SimulatedCss
from dashboards.grafana import DASHBOARDS_DIR, GRAFANA_DIR, dashboard_json, file_name
from dashboards.labels import LABELS, LANGUAGES, label
from dashboards.panels import (
    ATTENDANCE,
    DASHBOARDS,
    NETWORK_STATUS,
    STUDENT_SUCCESS,
    WORKFORCE,
    Panel,
    expand_macros,
    qualify,
    wrap,
)
from schemas.contracts import CURATED_RECORDS_FIELD, RAW_RECORDS_FIELD, Dataset
from sinks.rows import FACT_TABLES, consent_frame, dead_letter_frame, fact_frame, organizations_frame
from streams.absence import CANONICAL_REASONS
from streams.curate import RawMessage, dead_letter
from tests.stage import run_stage

DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "vigie.yml"
PROVISIONED = dict(re.findall(r"uid: (\S+)\n\s+type: (\S+)", DATASOURCES.read_text()))
ROOT = Path(__file__).parent.parent
MAPPINGS = ROOT / "streams" / "mappings"
MINIMUM = 5
# Montréal keeps a code list with a code no mapping knows (13X); English Montréal has not
# consented to the workforce dataset; Îles sends malformed rows; the others send nothing.
CSS = ("montreal", "english-montreal", "phares", "estuaire", "iles")
DAYS = 12
REPLACING = ("attendance_marks", "grade_results", "staff_changes", "organizations", "dead_letters")


def half_up(n: int, d: int, digits: int = 1) -> float:
    """Oracle rounding: 100 n / d, half up."""
    q = Decimal(1).scaleb(-digits)
    return float((Decimal(n * 100) / Decimal(d)).quantize(q, rounding=ROUND_HALF_UP))


def r5(n: int) -> int:
    """Oracle base-5 rounding, half up (22 → 20, 23 → 25)."""
    return (n + 2) // 5 * 5


def published(line: dict[Any, int], small: set[Any] | None = None) -> dict[Any, int | None]:
    """Oracle of the ministry views' suppression over one line of cells (key → count of
    people): a cell under the minimum (or in ``small``) is withheld, and if it is the only
    one, the next smallest too (ties by key); every other count rounded to base 5."""
    hidden = {k for k, n in line.items() if n < MINIMUM} | (small or set())
    if len(hidden) == 1:
        rest = sorted((n, k) for k, n in line.items() if k not in hidden)
        hidden |= {rest[0][1]} if rest else set()
    return {k: None if k in hidden else r5(n) for k, n in line.items()}


def published_bands(cells: dict[tuple[str, str], int]) -> dict[tuple[str, str], int | None]:
    """Oracle of ministry_results: cells (value, band) → students; a first pass on each
    value's line across bands, a second on each band's line across values."""
    first: set[tuple[str, str]] = set()
    for value in {v for v, _b in cells}:
        line = {b: n for (v, b), n in cells.items() if v == value}
        first |= {(value, b) for b, n in published(line).items() if n is None}
    hidden = set(first)
    for band in {b for _v, b in cells}:
        line = [(n, v) for (v, b), n in cells.items() if b == band]
        if sum((v, band) in first for _n, v in line) == 1:
            rest = sorted((n, v) for n, v in line if (v, band) not in first)
            hidden |= {(rest[0][1], band)} if rest else set()
    return {k: None if k in hidden else r5(n) for k, n in cells.items()}


def added(values: list[int | None]) -> int | None:
    """A panel's sum of published cells: withheld ones left out, all withheld → withheld."""
    shown = [v for v in values if v is not None]
    return sum(shown) if shown else None


def band_of(percent: float) -> str:
    rounded = int(Decimal(str(percent)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return "0-60" if rounded <= 60 else "61-74" if rounded <= 74 else "75-100"


def simulated_history(organizations, now: datetime) -> list[tuple[str, Dataset, dict[str, Any]]]:
    """Raw batches: DAYS school days of attendance for a few groups of each CSS, evaluations
    (one of them all at exactly 74.5 %) and staff changes."""
    out: list[tuple[str, Dataset, dict[str, Any]]] = []
    today = school_date(now)  # the schools' day, in Québec: the panels cut days there too
    for code in CSS:
        sim = SimulatedCss(organizations[code], seed=5)
        sim.groups = 4
        out += [
            (code, Dataset.ATTENDANCE, sim.attendance_sheet(today, now)) for _ in range(4 * 6 * DAYS)
        ]
        out += [(code, Dataset.GRADES, sim.evaluation(today, now)) for _ in range(16)]
        out += [(code, Dataset.STAFF, sim.staff_changes(today, now)) for _ in range(40)]
    edge = SimulatedCss(organizations["phares"], seed=5).evaluation(today, now)
    edge["scale"] = "percent"
    for result in edge["results"]:
        result["result"] = "74.5"
    out.append(("phares", Dataset.GRADES, edge))
    return _with_students_at_risk(out)


AT_RISK = 6


def _with_students_at_risk(
    history: list[tuple[str, Dataset, dict[str, Any]]],
) -> list[tuple[str, Dataset, dict[str, Any]]]:
    """Six students of one Phares group evaluated in French miss three whole days (chronic:
    ≥ 10 % of 12) and fail every evaluation: students at risk."""
    french = next(
        b for css, ds, b in history if css == "phares" and ds is Dataset.GRADES and b["subject_code"] == "FRA"
    )
    chosen = {r["student_local_id"] for r in french["results"][:AT_RISK]}
    sheets = [b for css, ds, b in history if css == "phares" and ds is Dataset.ATTENDANCE]
    days = sorted({b["sheet_date"] for b in sheets})[:3]
    # The CSS's own absent code, as its sheets write it: the status of marks with a motif.
    codes = Counter(
        m["status_code"] for b in sheets for m in b["marks"] if m["absence_text"] or m["absence_code"]
    )
    absent_code = codes.most_common(1)[0][0]
    for sheet in sheets:
        if sheet["group_code"] == french["group_code"] and sheet["sheet_date"] in days:
            for mark in sheet["marks"]:
                if mark["student_local_id"] in chosen:
                    mark.update(status_code=absent_code, absence_code=None, absence_text="malade")
    for css, ds, batch in history:
        if css == "phares" and ds is Dataset.GRADES:
            for result in batch["results"]:
                if result["student_local_id"] in chosen:
                    result["result"] = "40" if batch["scale"] == "percent" else "E"
    return history


@pytest.fixture(scope="module")
def history(organizations):
    return simulated_history(organizations, datetime.now(UTC))


def load_history(wh, stage_context, organizations, history) -> None:
    """The history through the real stream stage into a migrated database: curated rows
    (each inserted twice, as an at-least-once redelivery would) and dead letters."""
    now = datetime.now(UTC)
    wh.insert_frame("organizations", organizations_frame(organizations.values(), now))
    wh.insert_frame("consents", consent_frame(stage_context.consent, now))
    batches: dict[Dataset, list[dict[str, Any]]] = defaultdict(list)
    letters = []
    for offset, (css, ds, raw) in enumerate(history):
        out = run_stage(css, ds, raw, stage_context)
        batches[ds].append(
            {"mapping_version": "m1", "processed_at": now, CURATED_RECORDS_FIELD[ds]: out.records}
        )
        msg = RawMessage(f"raw.{css}.{ds.value}", 0, offset, None)
        letters += [dead_letter(msg, r, now, css, ds) for r in out.rejections]
    for ds, rows in batches.items():
        for _ in range(2):
            wh.insert_frame(FACT_TABLES[ds], fact_frame(ds, rows))
    wh.insert_frame("dead_letters", dead_letter_frame(letters))


@pytest.fixture(scope="module")
def history_warehouse(chdb_session, stage_context, organizations, history):
    """One database holding the history (``load_history``)."""
    from sinks.migrate import migrate_up

    wh = chdb_session.for_database(f"h_{uuid.uuid4().hex[:10]}")
    migrate_up(wh)
    load_history(wh, stage_context, organizations, history)
    return wh


def _run(wh, panel: Panel, end: datetime | None = None, labels: bool = False, lang: str = "fr") -> list[dict]:
    end = end or datetime.now(UTC) + timedelta(hours=1)
    sql = expand_macros(panel.sql_with(MINIMUM, labels), end - timedelta(days=60), end, lang=lang)
    return wh.query(qualify(sql, wh.database))


def _rows_of(history, dataset: Dataset):
    for css, ds, batch in history:
        if ds is dataset:
            for rec in batch[RAW_RECORDS_FIELD[ds]]:
                yield css, batch, rec


# -- the generated JSON ------------------------------------------------------------------


def test_the_dashboard_files_are_generated_from_the_panel_definitions() -> None:
    files = sorted(p.name for p in DASHBOARDS_DIR.glob("*.json"))
    assert files == sorted(file_name(d, lang) for d in DASHBOARDS for lang in LANGUAGES)
    for dashboard in DASHBOARDS:
        for lang in LANGUAGES:
            on_disk = json.loads((DASHBOARDS_DIR / file_name(dashboard, lang)).read_text())
            assert on_disk == dashboard_json(dashboard, lang), (
                f"run `vigie dashboards export` ({dashboard.uid})"
            )


def _models() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))]


def test_dashboards_follow_the_grafana_and_plugin_models_users_expect() -> None:
    models = _models()
    assert len({m["uid"] for m in models}) == len(models) == 10
    for model in models:
        assert model["timezone"] == "America/Toronto"
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)) and model["panels"], model["uid"]
        variables = {v["name"]: v for v in model["templating"]["list"]}
        if "pipeline" not in model["uid"]:
            assert {"lang", "region", "css", "school"} <= set(variables)
            # Chained: the CSS list follows the region, the school list the CSS.
            assert "${region:singlequote}" in variables["css"]["query"]["rawSql"]
            assert "${css:singlequote}" in variables["school"]["query"]["rawSql"]
        for panel in model["panels"]:
            assert panel["title"] and panel["targets"], panel
            for ref in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
                assert PROVISIONED.get(ref["uid"]) == ref["type"], ref
            for target in panel["targets"]:
                if target["datasource"]["type"] == "prometheus":
                    assert "[5m]" not in target["expr"]
                    assert "$__rate_interval" in target["expr"] or "rate(" not in target["expr"]
                    continue
                # The plugin's current query model: no migration on load.
                assert target["pluginVersion"] and target["editorType"] == "sql"
                assert (target["queryType"], target["format"]) in (("table", 1), ("timeseries", 0))
                sql = target["rawSql"]
                assert "vigie." not in sql  # the database comes from the datasource
                assert not re.search(
                    r"\$__timeFilter\((\w\.)?(sheet_date|evaluation_date|effective_date)\)", sql
                )
                if "region_name" in sql or "css" in sql:
                    assert "$__conditionalAll(" in sql, panel["title"]
            overrides = panel["fieldConfig"]["overrides"]
            if panel["datasource"]["type"] != "prometheus":
                # Numbers carry a unit; the status grid's states a colour per value.
                kinds = {p["id"] for o in overrides for p in o["properties"]}
                assert "unit" in kinds or "mappings" in kinds, panel["title"]


def test_every_title_column_and_code_reads_in_the_dashboards_language() -> None:
    french = json.loads((DASHBOARDS_DIR / "attendance.json").read_text())
    english = json.loads((DASHBOARDS_DIR / "attendance-en.json").read_text())
    assert french["title"] == "Vigie — assiduité" and english["title"] == "Vigie — attendance"
    names = {p["value"] for panel in french["panels"] for o in panel["fieldConfig"]["overrides"]
             for p in o["properties"] if p["id"] == "displayName"}  # fmt: skip
    assert "Taux d'absence (%)" in names and not any("_" in n for n in names)
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels:
            for column in panel.columns:
                assert column in LABELS, f"{panel.title[0]}: no label for column {column}"
    # Every canonical code the pipeline can emit has a label in both languages.
    vocab = set(CANONICAL_REASONS)
    for name, column in (("job_classes", "job_class"), ("subjects", "subject"), ("competencies", "competency"),
                         ("leave_types", "leave_type")):  # fmt: skip
        with (MAPPINGS / f"{name}.csv").open(encoding="utf-8") as f:
            vocab |= {r[column] for r in csv.DictReader(f)}
    missing = sorted(c for c in vocab if c not in LABELS)
    assert not missing, missing
    assert label("sante_rdv") == "Rendez-vous de santé" and label("sante_rdv", "en") == "Health appointment"


def test_every_panel_reading_a_replacing_table_reads_it_with_final() -> None:
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels:
            for match in re.finditer(
                rf"\b(?:FROM|JOIN)\s+({'|'.join(REPLACING)})\b(\s+AS\s+\w+)?(\s+FINAL)?", panel.query
            ):
                assert match[3], f"{panel.title[0]}: {match[1]} without FINAL"


def test_every_panel_over_people_is_aggregated_and_suppressed() -> None:
    """The ministry sees aggregates only: a panel that reads students or staff counts them in
    suppressed columns and never returns a pseudonym, a school-level row without suppression,
    or a raw record."""
    for dashboard in DASHBOARDS:
        for panel in dashboard.panels:
            if panel.promql:
                continue
            assert "GROUP BY" in panel.query, panel.title[1]
            assert not any("pseudonym" in c or c in ("student", "record_key", "event_id") for c in panel.columns)
            # People are counted by the ministry's views, never by a panel from the rows.
            assert not re.search(r"(student|staff)_pseudonym", panel.query), panel.title[1]
            assert not re.search(
                r"\b(FROM|JOIN)\s+(attendance_marks|grade_results|staff_changes|dead_letters)\b", panel.query
            ), panel.title[1]
            people = re.findall(r"\bsum\(\w+\.(students|staff|teachers|at_risk|chronic_students)\)", panel.query)
            if people:  # a count of people shows « x » where the view withheld it
                assert set(panel.individuals) <= set(panel.columns) and not set(panel.individuals) & set(panel.keys)
                assert panel.individuals, f"{panel.title[1]} shows people without its withheld cells"


def test_the_school_days_table_is_the_quebec_calendar(warehouse) -> None:
    stored = {
        date.fromisoformat(str(r["day"]))
        for r in warehouse.query(f"SELECT day FROM {warehouse.database}.school_days")
    }
    expected = set()
    d = date(2024, 8, 1)
    while d < date(2036, 7, 1):
        if is_school_day(d):
            expected.add(d)
        d += timedelta(days=1)
    assert stored == expected


# -- every panel on the engine, and the true figures ---------------------------------------

PANELS = [(d.uid, p) for d in DASHBOARDS for p in d.panels if not p.promql]


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=[p.title[1][:40] for _, p in PANELS])
def test_every_panel_runs_in_both_languages_with_its_columns_and_no_small_cell(
    history_warehouse, uid, panel
) -> None:
    for labels in (False, True):
        rows = _run(history_warehouse, panel, labels=labels)
        assert rows, f"{uid}: {panel.title[1]} returned no rows"
        assert list(rows[0]) == list(panel.columns)
        for column in panel.individuals:
            small = [r for r in rows if r[column] is not None and 0 < int(r[column]) < MINIMUM]
            assert not small, f"{panel.title[1]}: {column} under {MINIMUM} in {small[:3]}"
    # Exactly what Grafana runs (its SQL, with only the columns it draws) also runs.
    end = datetime.now(UTC) + timedelta(hours=1)
    grafana = expand_macros(panel.sql, end - timedelta(days=60), end)
    assert history_warehouse.query(qualify(grafana, history_warehouse.database))
    if panel.coded:
        codes = _run(history_warehouse, panel)
        for lang in LANGUAGES:
            labelled = _run(history_warehouse, panel, labels=True, lang=lang)
            for coded, shown in zip(codes, labelled, strict=True):
                for column in panel.coded:
                    assert shown[column] == label(coded[column], lang), column


def test_dead_letters_exclude_consent_withholdings_and_count_true_refusals(
    history_warehouse, history
) -> None:
    rows = {r["css"]: r for r in _run(history_warehouse, NETWORK_STATUS.panels[3])}
    # English Montréal's staff changes were withheld (no consent): not a refusal.
    assert rows["english-montreal"]["dead_letters"] == 0
    malformed = Counter(
        css for ds in (Dataset.ATTENDANCE, Dataset.GRADES) for css, _b, rec in _rows_of(history, ds)
        if rec.get("status_code") == "?" or rec.get("result") == "abs?"
    )  # fmt: skip
    assert malformed["iles"] > 0
    assert {css: r["dead_letters"] for css, r in rows.items() if r["dead_letters"]} == dict(malformed)


def test_unmapped_counts_only_marks_that_should_have_a_motif(history_warehouse, history, harmonizer) -> None:
    with (MAPPINGS / "attendance_status.csv").open(encoding="utf-8") as f:
        status = {r["local_code"]: r["status"] for r in csv.DictReader(f)}
    # Per CSS and dataset: the ministry reads them per hour, rounded to base 5 (one hour here).
    truth: Counter[tuple[str, Dataset]] = Counter()
    records: Counter[tuple[str, Dataset]] = Counter()
    late_without_motif = 0
    for css, _batch, rec in _rows_of(history, Dataset.ATTENDANCE):
        if css == "iles":
            continue
        records[(css, Dataset.ATTENDANCE)] += 1
        kind = status[rec["status_code"]]
        if kind == "absent":
            truth[(css, Dataset.ATTENDANCE)] += not harmonizer.absence.classify(
                css, rec["absence_code"], rec["absence_text"]
            ).mapped
        elif kind in ("retard", "depart_hatif"):
            late_without_motif += not (rec["absence_code"] or rec["absence_text"])
    for css, batch, _rec in _rows_of(history, Dataset.GRADES):
        if css != "iles":
            records[(css, Dataset.GRADES)] += 1
            truth[(css, Dataset.GRADES)] += harmonizer.subject(css, batch["subject_code"]) is None or harmonizer.competency(
                css, batch["competency_code"]) is None  # fmt: skip
    for css, _batch, rec in _rows_of(history, Dataset.STAFF):
        if css not in ("iles", "english-montreal"):
            records[(css, Dataset.STAFF)] += 1
            truth[(css, Dataset.STAFF)] += harmonizer.job_class(css, rec["job_code"]) is None
    assert late_without_motif > 100 and truth[("montreal", Dataset.ATTENDANCE)] > 0
    rows = {r["css"]: r for r in _run(history_warehouse, NETWORK_STATUS.panels[3])}
    for css in {c for c, _ds in records}:
        events = sum(r5(n) for (c, _ds), n in records.items() if c == css)  # redelivered rows once
        unmapped = sum(r5(n) for (c, _ds), n in truth.items() if c == css)
        assert (rows[css]["events"], rows[css]["unmapped"]) == (events, unmapped), css
        assert rows[css]["unmapped_pct"] == half_up(unmapped, events, 2), css


def test_completeness_lists_every_organization_and_zero_for_those_that_sent_nothing(
    history_warehouse, history, organizations
) -> None:
    rows = _run(history_warehouse, NETWORK_STATUS.panels[2])
    assert len(rows) == len(organizations) == 72
    latest = max(b["sheet_date"] for _c, ds, b in history if ds is Dataset.ATTENDANCE)
    seen: dict[str, set[str]] = defaultdict(set)
    today: dict[str, set[str]] = defaultdict(set)
    for css, ds, batch in history:
        if ds is Dataset.ATTENDANCE:
            seen[css].add(batch["school_code"])
            if batch["sheet_date"] == latest:
                today[css].add(batch["school_code"])
    for row in rows:
        expected = len(seen[row["css"]])
        want = half_up(len(today[row["css"]]), expected) if expected else 0
        assert (row["schools_expected"], row["completeness_pct"]) == (expected, want), row["css"]
    assert rows[0]["completeness_pct"] == 0  # the worst first


def test_absence_rates_and_chronic_absenteeism_match_the_sources(history_warehouse, history) -> None:
    with (MAPPINGS / "attendance_status.csv").open(encoding="utf-8") as f:
        status = {r["local_code"]: r["status"] for r in csv.DictReader(f)}
    latest = max(b["sheet_date"] for _c, ds, b in history if ds is Dataset.ATTENDANCE)
    marks: Counter[str] = Counter()
    absent: Counter[str] = Counter()
    day_marks: dict[tuple[str, str, date], list[bool]] = defaultdict(list)
    for css, batch, rec in _rows_of(history, Dataset.ATTENDANCE):
        if rec["status_code"] == "?":
            continue
        is_absent = status[rec["status_code"]] == "absent"
        day_marks[(css, rec["student_local_id"], batch["sheet_date"])].append(is_absent)
        if batch["sheet_date"] == latest:
            marks[css] += 1
            absent[css] += is_absent
    rates = {r["css"]: r for r in _run(history_warehouse, ATTENDANCE.panels[0])}
    for css in marks:
        # The ministry reads marks rounded to base 5: the rate is computed from those.
        assert rates[css]["absence_rate_pct"] == half_up(r5(absent[css]), r5(marks[css])), css
    days: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for (css, student, _day), flags in day_marks.items():
        days[(css, student)].append(2 * sum(flags) >= len(flags))  # absent half the day or more
    chronic = {r["css"]: r for r in _run(history_warehouse, ATTENDANCE.panels[4])}
    truth = {}
    for css in CSS:
        enrolled = [v for (c, _s), v in days.items() if c == css and len(v) >= 10]
        truth[css] = (len(enrolled), sum(sum(v) >= 0.1 * len(v) for v in enrolled))
    small = {css for css, counts in truth.items() if any(0 < n < MINIMUM for n in counts)}
    assert set(chronic) == {css for css, (n, _c) in truth.items() if n}  # nothing vanishes
    for css, (students, n_chronic) in truth.items():
        row = chronic.get(css)
        if row is None:
            continue
        if css in small:  # withheld, shown « x »
            assert row["students"] is row["chronic_students"] is row["chronic_pct"] is None, css
        else:  # rounded to base 5, the rate from the rounded counts
            assert (row["students"], row["chronic_students"]) == (r5(students), r5(n_chronic)), css
            assert row["chronic_pct"] == half_up(r5(n_chronic), r5(students)), css


def test_absence_episodes_match_the_sources(history_warehouse, history, harmonizer) -> None:
    with (MAPPINGS / "attendance_status.csv").open(encoding="utf-8") as f:
        status = {r["local_code"]: r["status"] for r in csv.DictReader(f)}
    marks: dict[tuple[str, str], dict[date, list[str | None]]] = defaultdict(lambda: defaultdict(list))
    for css, batch, rec in _rows_of(history, Dataset.ATTENDANCE):
        if rec["status_code"] == "?":
            continue
        reason = None
        if status[rec["status_code"]] == "absent":
            reason = harmonizer.absence.classify(css, rec["absence_code"], rec["absence_text"]).category
        marks[(css, rec["student_local_id"])][batch["sheet_date"]].append(
            reason if status[rec["status_code"]] == "absent" else ""
        )
    # Cells of the ministry's view: (css, month the episode started) × (reason, duration).
    episodes: Counter[tuple[str, date, str, str]] = Counter()
    students: dict[tuple[str, date, str, str], set[tuple[str, str]]] = defaultdict(set)
    for student, days in marks.items():
        run: list[list[str | None]] = []
        started = date.min
        for day in [*sorted(days), None]:
            absent = day is not None and 2 * sum(m != "" for m in days[day]) >= len(days[day])
            if absent:
                if not run:
                    started = day.replace(day=1)
                run.append(days[day])
            elif run:
                reasons = [m for d in run for m in d if m]
                counts = Counter(reasons)
                reason = min(counts, key=lambda r: (-counts[r], r)) if counts else "inconnu"
                n = len(run)
                duration = "1j" if n == 1 else "2-3j" if n <= 3 else "4-5j" if n <= 5 else "6j+"
                episodes[(student[0], started, reason, duration)] += 1
                students[(student[0], started, reason, duration)].add(student)
                run = []
    assert sum(episodes.values()) > 20
    lines: dict[tuple[str, date], dict[tuple[str, str], int]] = defaultdict(dict)
    for (css, month, reason, duration), found in students.items():
        lines[(css, month)][(reason, duration)] = len(found)
    shown_students: dict[tuple[str, str], list[int | None]] = defaultdict(list)
    shown_episodes: dict[tuple[str, str], list[int | None]] = defaultdict(list)
    for (css, month), line in lines.items():
        for key, n in published(line).items():
            shown_students[key].append(n)
            shown_episodes[key].append(None if n is None else r5(episodes[(css, month, *key)]))
    rows = _run(history_warehouse, ATTENDANCE.panels[3])
    assert [(r["reason"], r["duration"]) for r in rows] == sorted(shown_students)  # every cell, in order
    for row in rows:
        key = (row["reason"], row["duration"])
        assert (row["episodes"], row["students"]) == (added(shown_episodes[key]), added(shown_students[key])), key
    assert any(r["students"] is not None for r in rows)


def test_staff_absences_by_job_class_and_iso_week_match_the_sources(
    history_warehouse, history, harmonizer
) -> None:
    # Cells of the ministry's view: (css, ISO week) × (job class, change type), people.
    people: dict[tuple[str, str], dict[tuple[str, str], set[tuple[str, str]]]] = defaultdict(
        lambda: defaultdict(set)
    )
    for css, _batch, rec in _rows_of(history, Dataset.STAFF):
        if css in ("english-montreal", "iles"):
            continue
        year, week, _ = rec["effective_date"].isocalendar()
        job = harmonizer.job_class(css, rec["job_code"]) or "inconnu"
        # The simulator's staff identity: the same person recurs under one employee number.
        people[(css, f"{year}-W{week:02d}")][(job, rec["change_type"])].add((rec["first_name"], rec["employee_number"]))
    truth: dict[tuple[str, str], list[int | None]] = defaultdict(list)
    for (_css, week), line in people.items():
        for (job, change), n in published({k: len(v) for k, v in line.items()}).items():
            if change == "leave_start":
                truth[(week, job)].append(n)
    rows = _run(history_warehouse, WORKFORCE.panels[0])
    assert [(r["week"], r["job_class"]) for r in rows] == sorted(truth)
    assert any(r["staff_count"] is not None for r in rows)
    for row in rows:
        assert row["staff_count"] == added(truth[(row["week"], row["job_class"])]), row


def test_students_at_risk_match_the_sources(history_warehouse, history, harmonizer) -> None:
    with (MAPPINGS / "attendance_status.csv").open(encoding="utf-8") as f:
        status = {r["local_code"]: r["status"] for r in csv.DictReader(f)}
    day_marks: dict[tuple[str, str], dict[date, list[bool]]] = defaultdict(lambda: defaultdict(list))
    school: dict[tuple[str, str], str] = {}
    for css, batch, rec in _rows_of(history, Dataset.ATTENDANCE):
        if rec["status_code"] != "?":
            day_marks[(css, rec["student_local_id"])][batch["sheet_date"]].append(
                status[rec["status_code"]] == "absent"
            )
            school[(css, rec["student_local_id"])] = batch["school_code"]
    assert len({b["evaluation_date"] for _c, ds, b in history if ds is Dataset.GRADES}) == 1
    bands: dict[tuple[str, str], set[str]] = defaultdict(set)
    for css, batch, rec in _rows_of(history, Dataset.GRADES):
        subject = harmonizer.subject(css, batch["subject_code"])
        if rec["result"] != "abs?" and subject in ("francais", "english_language_arts", "mathematique"):
            bands[(css, rec["student_local_id"])].add(
                band_of(harmonizer.grade(batch["scale"], rec["result"]).percent)
            )
    enrolled: Counter[tuple[str, str]] = Counter()
    at_risk: Counter[tuple[str, str]] = Counter()
    for student, days in day_marks.items():
        if len(days) < 10:
            continue
        where = (student[0], school[student])
        enrolled[where] += 1
        missed = sum(2 * sum(flags) >= len(flags) for flags in days.values())
        # Every simulated evaluation has the same date: the latest result of a subject is
        # that day's lowest, so a student is low in it when any result is.
        if missed >= 0.1 * len(days) and "0-60" in bands[student]:
            at_risk[where] += 1
    assert sum(at_risk.values()) >= AT_RISK
    rows = _run(history_warehouse, STUDENT_SUCCESS.panels[6])
    assert sorted((r["css"], r["school"]) for r in rows) == sorted(enrolled)  # every school, none vanishes
    by_css: dict[str, dict[str, int]] = defaultdict(dict)
    for (css, school), n in enrolled.items():
        by_css[css][school] = n
    shown: dict[tuple[str, str], int | None] = {}
    for css, line in by_css.items():
        risky = {school for school in line if 0 < at_risk[(css, school)] < MINIMUM}
        shown |= {(css, school): n for school, n in published(line, risky).items()}
    for row in rows:
        where = (row["css"], row["school"])
        if shown[where] is None:
            assert row["students"] is row["at_risk"] is row["at_risk_pct"] is None, where
        else:
            assert (row["students"], row["at_risk"]) == (shown[where], r5(at_risk[where])), where
            assert row["at_risk_pct"] == half_up(r5(at_risk[where]), shown[where])
    assert any(r["at_risk"] for r in rows)


def test_a_result_of_74_5_percent_is_in_the_75_100_band(history_warehouse, history, harmonizer) -> None:
    # Cells of the ministry's view: (css, competency) × band, students.
    cells: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for css, batch, rec in _rows_of(history, Dataset.GRADES):
        if rec["result"] == "abs?":
            continue
        competency = harmonizer.competency(css, batch["competency_code"]) or "inconnu"
        percent = harmonizer.grade(batch["scale"], rec["result"]).percent
        if percent is not None:
            cells[(css, competency)][band_of(percent)].add(rec["student_local_id"])
    truth: dict[tuple[str, str], list[int | None]] = defaultdict(list)
    for css in {c for c, _competency in cells}:
        table = {(k, b): len(v) for (c, k), line in cells.items() if c == css for b, v in line.items()}
        for key, n in published_bands(table).items():
            truth[key].append(n)
    rows = _run(history_warehouse, STUDENT_SUCCESS.panels[1])
    # Nothing vanishes: every (competency, band) cell is a row, in the panel's order.
    assert [(r["competency"], r["band"]) for r in rows] == sorted(truth)
    for row in rows:
        assert row["students"] == added(truth[(row["competency"], row["band"])]), row
    edge = [r for r in _rows_of(history, Dataset.GRADES) if r[2]["result"] == "74.5"]
    assert edge and band_of(74.5) == "75-100"
    competency = harmonizer.competency("phares", edge[0][1]["competency_code"])
    # The 74.5 % evaluation's students count in Phares' 75-100 cell, which is published.
    assert len(cells[("phares", competency)]["75-100"]) >= len(edge) >= MINIMUM
    shown = {(r["competency"], r["band"]): r["students"] for r in rows}
    assert shown[(competency, "75-100")] == added(truth[(competency, "75-100")])


def test_suppressed_cells_stay_in_place_as_withheld(history_warehouse, history, harmonizer) -> None:
    teachers: dict[str, set[tuple[str, str]]] = defaultdict(set)
    unqualified: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for css, _batch, rec in _rows_of(history, Dataset.STAFF):
        job = harmonizer.job_class(css, rec["job_code"])
        if css in ("english-montreal", "iles") or job not in ("enseignant", "suppleant"):
            continue
        if rec["legally_qualified"] is not None:
            teachers[css].add((rec["first_name"], rec["employee_number"]))
            if not rec["legally_qualified"]:
                unqualified[css].add((rec["first_name"], rec["employee_number"]))
    # One line across the CSS of the school year; a CSS with a small count of either withheld.
    small = {css for css in teachers if 0 < len(unqualified[css]) < MINIMUM}
    shown = published({css: len(people) for css, people in teachers.items()}, small)
    rows = _run(history_warehouse, WORKFORCE.panels[2])
    assert sorted(r["css"] for r in rows) == sorted(teachers)  # every CSS in place, withheld or not
    assert [(r["region"], r["css"]) for r in rows] == sorted((r["region"], r["css"]) for r in rows)
    for row in rows:
        if shown[row["css"]] is None:
            assert row["teachers"] is row["unqualified_teachers"] is None  # the whole cell is withheld
        else:
            assert (row["teachers"], row["unqualified_teachers"]) == (
                shown[row["css"]], r5(len(unqualified[row["css"]]))), row["css"]  # fmt: skip
    assert any(r["teachers"] is not None for r in rows)


def test_the_status_grid_lists_all_organizations_with_consent_and_silence(history_warehouse) -> None:
    rows = {r["css"]: r for r in _run(history_warehouse, NETWORK_STATUS.panels[0], end=datetime.now(UTC))}
    assert len(rows) == 72
    assert rows["english-montreal"]["staff_state"] == "no_consent"
    assert rows["laval"]["attendance_state"] == "silent"  # never sent anything
    assert rows["phares"]["grades_state"] == "live"


TORONTO = ZoneInfo("America/Toronto")


@pytest.fixture(scope="module")
def freshness_warehouse(chdb_session, stage_context, organizations):
    """Last records at chosen Québec times: Phares attendance on Friday 27 November 2026 at
    15:55, Estuaire's on Tuesday 24 November at 10:00, Laval's on the Friday before the
    semaine de relâche (26 February 2027) at 15:55; Phares' last evaluation on Monday
    16 November and last staff change on Tuesday 24 November."""
    from sinks.migrate import migrate_up

    wh = chdb_session.for_database(f"f_{uuid.uuid4().hex[:10]}")
    migrate_up(wh)
    now = datetime.now(UTC)
    wh.insert_frame("organizations", organizations_frame(organizations.values(), now))
    wh.insert_frame("consents", consent_frame(stage_context.consent, now))
    for css, dataset, local in (
        ("phares", "attendance", datetime(2026, 11, 27, 15, 55)),
        ("estuaire", "attendance", datetime(2026, 11, 24, 10, 0)),
        ("laval", "attendance", datetime(2027, 2, 26, 15, 55)),
        ("phares", "grades", datetime(2026, 11, 16, 11, 0)),
        ("phares", "staff", datetime(2026, 11, 24, 9, 0)),
    ):
        at = int(local.replace(tzinfo=TORONTO).timestamp())
        wh.command(f"INSERT INTO {wh.database}.events_per_minute SELECT toDateTime({at}, 'UTC'), '{css}', "
                   f"'{dataset}', uniqExactState('e'), uniqExactState('')")  # fmt: skip
    return wh


@pytest.mark.parametrize(
    ("css", "dataset", "at", "state"),
    [
        ("phares", "attendance", datetime(2026, 11, 27, 21, 0), "live"),  # evening: no school minutes pass
        ("phares", "attendance", datetime(2026, 11, 28, 14, 0), "live"),  # Saturday
        ("phares", "attendance", datetime(2026, 11, 30, 8, 10), "live"),  # 5 + 10 school minutes
        ("phares", "attendance", datetime(2026, 11, 30, 8, 30), "late"),  # 35
        ("phares", "attendance", datetime(2026, 11, 30, 10, 30), "silent"),  # 155
        ("estuaire", "attendance", datetime(2026, 11, 24, 10, 20), "late"),  # in class, 20 minutes
        ("laval", "attendance", datetime(2027, 3, 3, 11, 0), "live"),  # semaine de relâche
        ("laval", "attendance", datetime(2027, 3, 8, 11, 0), "silent"),  # back in class
        ("phares", "grades", datetime(2026, 11, 27, 12, 0), "live"),  # 9 school days
        ("phares", "grades", datetime(2026, 12, 4, 12, 0), "late"),  # 14
        ("phares", "grades", datetime(2027, 1, 15, 12, 0), "silent"),  # the Fêtes do not count, but 24 do
        ("phares", "staff", datetime(2026, 11, 26, 12, 0), "live"),  # 2 school days
        ("phares", "staff", datetime(2026, 11, 27, 12, 0), "late"),  # 3
    ],
)
def test_freshness_runs_on_school_time_per_dataset(freshness_warehouse, css, dataset, at, state) -> None:
    end = at.replace(tzinfo=TORONTO)
    rows = {r["css"]: r for r in _run(freshness_warehouse, NETWORK_STATUS.panels[0], end=end)}
    assert rows[css][f"{dataset}_state"] == state
    assert rows["kativik"]["attendance_state"] == "silent"  # never sent anything


def test_a_curious_analyst_narrowing_to_one_school_still_sees_no_small_cell(
    history_warehouse, history
) -> None:
    """Selecting a single school (or a hostile value) in the Grafana selectors filters before
    suppression: the narrower view withholds more, never less, and a quote cannot escape."""
    schools = sorted({b["school_code"] for _c, ds, b in history if ds is Dataset.ATTENDANCE})
    end = datetime.now(UTC) + timedelta(hours=1)
    narrowed = 0
    for panel in (
        ATTENDANCE.panels[0],
        ATTENDANCE.panels[2],
        ATTENDANCE.panels[3],
        STUDENT_SUCCESS.panels[2],
    ):
        for school in [*schools, "x') OR 1=1 --"]:
            sql = expand_macros(panel.sql_with(MINIMUM), end - timedelta(days=60), end,
                                selected={"school": [school]})  # fmt: skip
            rows = history_warehouse.query(qualify(sql, history_warehouse.database))
            for row in rows:
                for column in panel.individuals:
                    assert row[column] is None or row[column] == 0 or row[column] >= MINIMUM, (school, row)
            narrowed += sum(1 for r in rows if r[panel.individuals[0]] is None)
    assert narrowed  # one school alone is small enough that cells are withheld


# -- suppression SQL ---------------------------------------------------------------------

cells = st.dictionaries(
    st.tuples(st.sampled_from("abcd"), st.sampled_from("vwxyz")), st.integers(0, 30), min_size=1, max_size=16
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells)
def test_suppression_sql_keeps_every_row_in_order_and_never_one_gap_alone_per_group(
    warehouse, counts
) -> None:
    table = f"{warehouse.database}.cells_{uuid.uuid4().hex[:6]}"
    warehouse.command(f"CREATE TABLE {table} (g String, c String, n UInt32) ENGINE = Memory")
    values = ", ".join(f"('{g}', '{c}', {n})" for (g, c), n in counts.items())
    warehouse.command(f"INSERT INTO {table} VALUES {values}")
    panel = Panel(("t", "t"), "table", f"SELECT g, c, n FROM {table}", ("g", "c", "n"), keys=("g", "c"),
                  individuals=("n",), groups=("g",), order="g, c")  # fmt: skip
    rows = warehouse.query(wrap(panel, MINIMUM, False))
    assert [(r["g"], r["c"]) for r in rows] == sorted(counts)  # nothing vanishes, order kept
    assert all(r["n"] is None or r["n"] == 0 or r["n"] >= MINIMUM for r in rows)
    assert all(r["n"] is None or counts[(r["g"], r["c"])] == r["n"] for r in rows)  # shown values are true
    assert all(r["n"] is None for r in rows if 0 < counts[(r["g"], r["c"])] < MINIMUM)
    withheld = Counter(r["g"] for r in rows if r["n"] is None)
    # A group never loses exactly one cell (its total would reveal it) unless it has no other.
    sizes = Counter(g for g, _ in counts)
    assert not any(withheld[g] == 1 and sizes[g] > 1 for g in withheld)


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
