"""Compartments, attacked as a curious ministry analyst would: the ministry's views on the
real engine never show a small group, even by differencing two time buckets, and the
ministry role's grants reach no row-level table. A school's direction reads its school."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from schemas.contracts import Dataset
from sinks.access import access_statements, load_school_pairs, school_role
from sinks.migrate import load_migrations
from sinks.rows import FACT_TABLES, fact_frame
from tests.curated import curated_batches

MINIMUM = 5
# The Monday of a recent week (rows older than their retention are dropped by TTL).
MONDAY = date.today() - timedelta(days=date.today().weekday() + 14)


def _marks(css: str, day: date, students: list[str], status: str, reason: str | None) -> pd.DataFrame:
    now = datetime.now(UTC)
    at = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
    return pd.DataFrame({
        "event_id": [uuid.uuid4().hex for _ in students], "record_key": [f"{day}-{s}" for s in students],
        "css": css, "school_code": "001", "group_code": "g1", "period": 1, "sheet_date": day,
        "student_pseudonym": students, "key_id": "k1", "status": status, "absence_reason": reason,
        "reason_mapped": True, "occurred_at": at, "detected_at": at, "mapping_version": "m1",
        "processed_at": now, "row_version": 1, "is_deleted": 0,
    })  # fmt: skip


def _differencing_week(warehouse) -> None:
    """20 students sick all week; 4 more only on Friday; 3 at an appointment on Wednesday;
    30 present every day."""
    sick = [f"sick{i}" for i in range(20)]
    friday_only = [f"fri{i}" for i in range(4)]
    frames = []
    for offset in range(5):
        day = MONDAY + timedelta(days=offset)
        frames.append(_marks("laval", day, [f"p{i}" for i in range(30)], "present", None))
        frames.append(_marks("laval", day, sick + (friday_only if offset == 4 else []), "absent", "maladie"))
        if offset == 2:
            frames.append(_marks("laval", day, ["rdv0", "rdv1", "rdv2"], "absent", "rendez_vous"))
    warehouse.insert_frame("attendance_marks", pd.concat(frames, ignore_index=True))


def test_two_time_ranges_on_rows_single_out_four_students(warehouse) -> None:
    """The attack the issue measured, on the row-level table a ministry analyst had."""
    _differencing_week(warehouse)
    db = warehouse.database

    def absent(days: int) -> int:
        return int(warehouse.query(
            f"SELECT uniqExact(student_pseudonym) AS n FROM {db}.attendance_marks FINAL "
            f"WHERE status = 'absent' AND absence_reason = 'maladie' AND sheet_date >= '{MONDAY}' "
            f"AND sheet_date < '{MONDAY + timedelta(days=days)}'")[0]["n"])  # fmt: skip

    assert absent(5) - absent(4) == 4


def test_the_ministry_view_publishes_no_small_group_even_by_differencing(warehouse) -> None:
    _differencing_week(warehouse)
    rows = warehouse.query(
        f"SELECT period, toString(period_start) AS start, status, absence_reason, students, marks "
        f"FROM {warehouse.database}.ministry_attendance WHERE css = 'laval'"
    )
    assert rows, "the view publishes the large groups"
    for row in rows:
        assert row["students"] >= MINIMUM and row["students"] % 5 == 0, row
        assert row["marks"] % 5 == 0
    # Fixed buckets only: an analyst can difference any two published cells of one group.
    for a, b in itertools.combinations(rows, 2):
        if (a["status"], a["absence_reason"]) == (b["status"], b["absence_reason"]):
            assert abs(a["students"] - b["students"]) not in range(1, MINIMUM), (a, b)
    by_key = {(r["period"], r["start"], r["absence_reason"]): r["students"] for r in rows}
    assert by_key[("day", str(MONDAY + timedelta(days=4)), "maladie")] == 25  # 24, rounded to base 5
    assert by_key[("day", str(MONDAY), "maladie")] == 20  # 25 − 20 = 5: not the 4
    # The week holds the 3 at an appointment: withheld with its smallest neighbour.
    assert ("week", str(MONDAY), "rendez_vous") not in by_key and (
        "week",
        str(MONDAY),
        "maladie",
    ) not in by_key
    assert by_key[("week", str(MONDAY), "")] == 30
    wednesday = str(MONDAY + timedelta(days=2))
    # 3 at an appointment: withheld, and the smallest other cell of that day with it, so
    # that the 3 cannot be recomputed from a total.
    assert ("day", wednesday, "rendez_vous") not in by_key
    assert ("day", wednesday, "maladie") not in by_key
    assert by_key[("day", wednesday, "")] == 30  # present


def test_every_ministry_view_runs_on_curated_data_and_shows_no_small_count(
    warehouse, stage_context, organizations
) -> None:
    batches = curated_batches(stage_context, organizations, "laval", 3)
    for dataset, table in FACT_TABLES.items():
        warehouse.insert_frame(table, fact_frame(dataset, batches[dataset]))
    for view, column in (("ministry_attendance", "students"), ("ministry_grades", "students"),
                         ("ministry_staff", "staff")):  # fmt: skip
        rows = warehouse.query(f"SELECT * FROM {warehouse.database}.{view}")
        assert rows or view == "ministry_staff", f"{view} publishes the large groups"  # 7 staff rows only
        assert all(r[column] >= MINIMUM and r[column] % 5 == 0 for r in rows), view
        assert not {"student_pseudonym", "staff_pseudonym", "record_key", "event_id", "school_code"} & {
            c for r in rows[:1] for c in r
        }
    grades = warehouse.query(f"SELECT DISTINCT breakdown FROM {warehouse.database}.ministry_grades")
    assert {r["breakdown"] for r in grades} <= {
        "all",
        "sex",
        "intervention_plan",
        "language_group",
        "immigration",
    }
    assert Dataset.GRADES in batches


def test_the_suppression_minimum_is_the_setting(warehouse) -> None:
    _differencing_week(warehouse)
    db = warehouse.database
    warehouse.command(f"INSERT INTO {db}.disclosure_rules (suppression_minimum) VALUES (25)")
    rows = warehouse.query(f"SELECT students FROM {db}.ministry_attendance WHERE css = 'laval'")
    assert rows and all(r["students"] >= 25 for r in rows)


def test_dead_letters_carry_a_retention(warehouse) -> None:
    [table] = warehouse.query(
        f"SELECT engine_full FROM system.tables WHERE database = '{warehouse.database}' AND name = 'dead_letters'"
    )
    assert "TTL toDateTime(failed_at) + toIntervalDay(retention_days)" in table["engine_full"]


def _granted_tables(warehouse, statement: str) -> list[str]:
    """The objects a GRANT names, from the engine's canonical form of it (its parser)."""
    canonical = warehouse.query(f"SELECT formatQuery({_quoted(statement)}) AS q")[0]["q"]
    assert canonical.startswith("GRANT ")
    target = canonical.split(" ON ", 1)[1].rsplit(" TO ", 1)[0]
    return [t.strip() for t in target.split(",")]


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def test_the_ministry_role_is_granted_no_row_level_table(warehouse, organizations) -> None:
    statements = access_statements("vigie", list(organizations), [("laval", "001")])
    ministry = [s for s in statements if s.rstrip().endswith("TO vigie_ministry")]
    grants = [s for s in ministry if s.startswith("GRANT")]
    assert grants
    granted = {t for g in grants for t in _granted_tables(warehouse, g)}
    row_level = {f"vigie.{t}" for t in [*FACT_TABLES.values(), "dead_letters"]}
    assert not granted & row_level and not any(t.endswith(".*") for t in granted)
    views = {t for t in granted if t.startswith("vigie.ministry_")}
    assert {"vigie.ministry_attendance", "vigie.ministry_grades", "vigie.ministry_staff"} <= views
    # …each of those views runs with its definer's rights on a server…
    ddl = "\n".join(s for m in load_migrations() for s in m.up)
    for view in views:
        name = view.split(".", 1)[1]
        assert f"CREATE VIEW IF NOT EXISTS {{db}}.{name} SQL SECURITY DEFINER AS" in ddl
    # …and the rest are the pipeline's own summaries and reference lists (no person in them).
    summaries = {"dead_letters_per_minute", "connector_heartbeats", "organizations",
                 "consents", "school_days"}  # fmt: skip
    assert granted - views <= {f"vigie.{t}" for t in summaries}, sorted(granted - views)
    policies = [s for s in ministry if s.startswith("CREATE ROW POLICY")]
    assert policies and all(f"vigie.{t}" not in p for p in policies for t in FACT_TABLES.values())


def test_a_school_role_reads_its_own_school_only_and_every_statement_parses(warehouse, organizations) -> None:
    schools = [("laval", "001"), ("laval", "002"), ("phares", "001")]
    statements = access_statements("vigie", list(organizations), schools)
    for statement in statements:
        assert warehouse.query(f"SELECT formatQuery({_quoted(statement)}) AS q")[0]["q"]
    role = school_role("laval", "002")
    [policy] = [s for s in statements if s.startswith("CREATE ROW POLICY") and f" {role} " in s]
    assert "USING css = 'laval' AND school_code = '002'" in policy
    assert len({school_role(c, s) for c, s in schools}) == len(schools)
    with pytest.raises(ValueError, match="not in the reference"):
        access_statements("vigie", list(organizations), [("atlantis", "001")])
    with pytest.raises(ValueError, match="cannot name a role"):
        access_statements("vigie", list(organizations), [("laval", "1'; DROP TABLE x; --")])


def test_the_schools_reference_gives_one_role_per_school(tmp_path: Path) -> None:
    from schemas.schools import SchoolsError

    with pytest.raises(SchoolsError, match="cannot read"):  # a missing reference is an error, not "no schools"
        load_school_pairs(tmp_path / "absent.csv")
    assert len(load_school_pairs()) > 72  # the shipped reference: several schools per CSS
    path = tmp_path / "schools.csv"
    path.write_text(
        "css_code,school_code,name,kind\nlaval,001,École A,primaire\nlaval,002,École B,secondaire\n"
    )
    assert load_school_pairs(path) == [("laval", "001"), ("laval", "002")]


def _results(css: str, students: list[str], sex: str, band: str) -> pd.DataFrame:
    at = datetime(MONDAY.year, MONDAY.month, MONDAY.day, 8, tzinfo=UTC)
    return pd.DataFrame({
        "event_id": [uuid.uuid4().hex for _ in students], "record_key": [f"g-{s}-{band}" for s in students],
        "css": css, "school_code": "001", "group_code": "g1", "level": "sec1", "subject_code": "francais",
        "competency_code": "lire", "etape": 1, "evaluation_date": MONDAY, "student_pseudonym": students,
        "key_id": "k1", "sex": sex, "result_band": band, "passed": True, "occurred_at": at,
        "detected_at": at, "mapping_version": "m1", "processed_at": datetime.now(UTC), "row_version": 1,
        "is_deleted": 0,
    })  # fmt: skip


def test_a_small_breakdown_cell_cannot_be_recomputed_from_the_all_line(warehouse) -> None:
    """3 boys in band 60-69: the 'all' line and the girls' line would give them away."""
    frames = [
        _results("laval", [f"f{i}" for i in range(30)], "F", "75-100"),
        _results("laval", [f"m{i}" for i in range(3)], "M", "75-100"),
        _results("laval", [f"f2{i}" for i in range(10)], "F", "60-74"),
        _results("laval", [f"m2{i}" for i in range(10)], "M", "60-74"),
    ]
    warehouse.insert_frame("grade_results", pd.concat(frames, ignore_index=True))
    rows = warehouse.query(
        f"SELECT breakdown, breakdown_value AS value, result_band AS band, students "
        f"FROM {warehouse.database}.ministry_grades WHERE css = 'laval'"
    )
    shown = {(r["breakdown"], r["value"], r["band"]): r["students"] for r in rows}
    assert shown[("all", "", "75-100")] == 35 and shown[("all", "", "60-74")] == 20
    assert ("sex", "M", "75-100") not in shown
    # all − F = M would give 3: the F cell of that band is withheld too, and so is the M
    # cell of the other band (else the M line's total would).
    assert ("sex", "F", "75-100") not in shown and ("sex", "M", "60-74") not in shown
    assert all(v >= MINIMUM and v % 5 == 0 for v in shown.values())


def test_a_ministry_readers_settings_cannot_steer_what_a_view_counts(warehouse, organizations) -> None:
    """Settings reach inside SQL SECURITY DEFINER views: with a 'break' overflow mode a view
    aggregates only the part it read, a subset the reader steers (by time, rows or bytes
    read). The ministry's profile fixes every setting (readonly = 1) except the client's
    max_execution_time, whose overflow mode then stays 'throw'."""
    _differencing_week(warehouse)
    db = warehouse.database
    view = f"SELECT * FROM {db}.ministry_attendance WHERE css = 'laval'"
    full = warehouse.query(view)
    steered = warehouse.query(
        f"{view} SETTINGS max_execution_time = 0.000001, timeout_overflow_mode = 'break'"
    )
    assert steered != full  # the attack, on the engine: a partial aggregate, no error
    statements = access_statements("vigie", list(organizations), [])
    profiles = [
        warehouse.query(f"SELECT formatQuery({_quoted(s)}) AS q")[0]["q"]
        for s in statements
        if s.startswith("CREATE SETTINGS PROFILE")
    ]
    [ministry] = [p for p in profiles if p.endswith(" TO vigie_ministry")]
    settings = ministry.split("` SETTINGS ", 1)[1].rsplit(" TO ", 1)[0].split(", ")
    assert "readonly = 1" in settings
    changeable = [s for s in settings if "CHANGEABLE_IN_READONLY" in s]
    assert [s.split(" = ")[0] for s in changeable] == ["max_execution_time"]


def test_a_careless_minimum_under_five_publishes_no_small_group(warehouse) -> None:
    """VIGIE_SUPPRESSION_MINIMUM accepted 1, and the writer role can insert any minimum:
    the views then showed Wednesday's 3 students at an appointment (as 5)."""
    _differencing_week(warehouse)
    db = warehouse.database
    warehouse.command(f"INSERT INTO {db}.disclosure_rules (suppression_minimum) VALUES (1)")
    rows = warehouse.query(
        f"SELECT period, toString(period_start) AS start, absence_reason, students "
        f"FROM {db}.ministry_attendance WHERE css = 'laval'"
    )
    shown = {(r["period"], r["start"], r["absence_reason"]): r["students"] for r in rows}
    assert ("day", str(MONDAY + timedelta(days=2)), "rendez_vous") not in shown
    assert rows and all(r["students"] >= MINIMUM for r in rows)


def test_the_suppression_minimum_setting_cannot_go_under_five() -> None:
    from pydantic import ValidationError

    from vigie.settings import Settings

    with pytest.raises(ValidationError, match="suppression_minimum"):
        Settings(suppression_minimum=1)
    assert Settings(suppression_minimum=10).suppression_minimum == 10


def test_a_topic_named_after_a_person_does_not_reach_the_ministrys_counts(warehouse, organizations) -> None:
    """Raw topics are consumed by pattern: `raw.<anything>.attendance` is dead-lettered as an
    unknown organization with its topic's CSS segment as `css`, which the dead-letter
    summary (granted to the ministry) copied: a free string, e.g. a name and a birth date."""
    from sinks.rows import organizations_frame

    db = warehouse.database
    warehouse.insert_frame("organizations", organizations_frame(organizations.values(), datetime.now(UTC)))
    for css in ("jean-tremblay-2011-04-05", "laval"):
        warehouse.command(
            f"INSERT INTO {db}.dead_letters (dead_letter_id, failed_at, stage, reason_code, reason, "
            f"source_topic, source_partition, source_offset, css, dataset, record_count) VALUES "
            f"('{uuid.uuid4().hex}', now64(3), 'css_check', 'unknown_css', 'css: not an organization', "
            f"'raw.{css}.attendance', 0, 0, '{css}', 'attendance', 1)"
        )
    seen = {r["css"] for r in warehouse.query(f"SELECT DISTINCT css FROM {db}.dead_letters_per_minute")}
    assert "laval" in seen and seen <= {*organizations, ""}, seen


# The dashboards' views (migration 0010): each line of cells, and its columns counting people.
PANEL_VIEWS = {
    "ministry_attendance_rates": (("period", "period_start", "css", "school == ''"), ("students",)),
    "ministry_absences": (("period", "period_start", "css", "school"), ("students",)),
    "ministry_absence_episodes": (("period", "period_start", "css", "school"), ("students", "episodes")),
    "ministry_chronic_absence": (("school_year", "css", "school == ''"), ("students", "chronic_students")),
    "ministry_students_at_risk": (("school_year", "css", "school == ''"), ("students", "at_risk")),
    "ministry_results": (("school_year", "etape", "css", "school", "breakdown", "value", "detail"), ("students",)),
    "ministry_staff_changes": (("period", "period_start", "css"), ("staff",)),
    "ministry_teachers": (("school_year",), ("teachers", "unqualified_teachers")),
}


def _line(row: dict, keys: tuple[str, ...]) -> tuple:
    return tuple(row["school"] == "" if k == "school == ''" else row[k] for k in keys)


def test_every_panel_view_withholds_small_cells_with_a_complement_and_rounds_to_five(
    warehouse, stage_context, organizations
) -> None:
    """A curious analyst reading the dashboards' views directly: every count of people is
    withheld (NULL, shown « x »), or 0, or at least 5 and a multiple of 5; no line has a
    single withheld cell (it could be recomputed from the line's total); no pseudonym."""
    batches = curated_batches(stage_context, organizations, "laval", 3)
    for dataset, table in FACT_TABLES.items():
        warehouse.insert_frame(table, fact_frame(dataset, batches[dataset]))
    _differencing_week(warehouse)
    withheld_somewhere = 0
    for view, (keys, people) in PANEL_VIEWS.items():
        rows = warehouse.query(f"SELECT * FROM {warehouse.database}.{view}")
        # (chronic absence and risk need 10 school days; three days of curated data have none)
        assert rows or view in ("ministry_teachers", "ministry_staff_changes", "ministry_chronic_absence",
                                "ministry_students_at_risk"), view  # fmt: skip
        assert not {"student_pseudonym", "staff_pseudonym", "student", "record_key", "event_id"} & {
            c for r in rows[:1] for c in r
        }
        lines: dict[tuple, list[dict]] = {}
        for row in rows:
            lines.setdefault(_line(row, keys), []).append(row)
            for column in people:
                n = row[column]
                assert n is None or (n % 5 == 0 and (n == 0 or n >= MINIMUM)), (view, row)
            # A withheld cell withholds all its people counts together.
            assert len({row[c] is None for c in people}) == 1, (view, row)
        for line, cells in lines.items():
            hidden = sum(r[people[0]] is None for r in cells)
            withheld_somewhere += hidden
            assert hidden != 1 or len(cells) == 1, (view, line)
    assert withheld_somewhere  # the data has small cells: the check above is not vacuous


def test_a_small_school_cannot_be_read_off_its_css_minus_the_other_schools(warehouse) -> None:
    """Selecting schools one by one in the dashboard: school 002 has 3 students, so 001
    (its complement) is withheld too, and the CSS row minus 001 gives nothing."""
    big = _marks("laval", MONDAY, [f"a{i}" for i in range(30)], "present", None)
    sick = _marks("laval", MONDAY, [f"s{i}" for i in range(20)], "absent", "maladie")
    small = _marks("laval", MONDAY, ["b0", "b1", "b2"], "absent", "maladie").assign(school_code="002")
    warehouse.insert_frame("attendance_marks", pd.concat([big, sick, small], ignore_index=True))
    # By motif: school 002's 3 sick students withhold 001's sick ones too (CSS 23 − 001 20 = 3).
    by_motif = {
        r["school"]: r["students"]
        for r in warehouse.query(
            f"SELECT school, students FROM {warehouse.database}.ministry_absences "
            f"WHERE css = 'laval' AND period = 'day' AND reason = 'maladie'"
        )
    }
    assert by_motif == {"": 25, "001": None, "002": None}
    rows = {
        r["school"]: r["students"]
        for r in warehouse.query(
            f"SELECT school, students FROM {warehouse.database}.ministry_attendance_rates "
            f"WHERE css = 'laval' AND period = 'day'"
        )
    }
    assert rows == {"": 55, "001": None, "002": None}
