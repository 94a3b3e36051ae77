"""Every dashboard panel, defined once: Grafana's JSON and `vigie report` come from here.

A panel's ``query`` returns codes (``sante_rdv``, ``0-60``) and counts; ``Panel.sql`` wraps
it once for everything a reader needs:

- small-cell suppression: a row where a count of people (``individuals``) is between 1 and
  the minimum is *kept* with its counts and everything derived from them set to NULL (shown
  « x », never dropped), and in each ``group`` where exactly one row was withheld the next
  smallest is withheld too (complementary suppression: a lone gap could be recomputed from
  a total shown elsewhere);
- the panel's order (``order``, on codes, so bands read 0-60, 61-74, 75-100);
- labels: ``coded`` columns are shown through the label table in the dashboard's language
  (the Grafana variable ``lang``; the report labels in Python from the same table).

Every ClickHouse panel reads only what the ministry's Grafana datasource user is granted
(``vigie_ministry``, sinks/access.sql): the ministry_* views (migrations 0005 and 0010 —
counts of people suppressed with complementary cells and rounded to base 5, in fixed day,
ISO week, month or school-year buckets), the organizations, consents, school calendar and
dead-letter summary. A panel over a range reads the whole buckets that overlap it, so two
ranges differ only by whole published cells; rates are computed from the rounded counts.

Panel SQL names tables without a database (Grafana's datasource supplies its default
database; ``qualify`` adds one for the report and the tests) and uses the Grafana
ClickHouse plugin's macros (``$__timeFilter``, ``$__dateFilter``, ``$__toTime``,
``$__conditionalAll``); ``expand_macros`` expands them exactly as the plugin does.
Percentages are rounded half up with integer arithmetic (74.5 → 75, never banker's
rounding); the views take result bands from the percent rounded half up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from dashboards.labels import TIMEZONE, Language, label_sql
from sinks.suppression import DEFAULT_MINIMUM

CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "vigie-clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "vigie-prometheus"}
PLUGIN_VERSION = "4.20.0"  # grafana-clickhouse-datasource query model the targets follow

# Tables and views panels read; ``qualify`` prefixes them with a database.
TABLES = (
    "attendance_marks", "grade_results", "staff_changes", "organizations", "consents",
    "dead_letters", "events_per_minute", "dead_letters_per_minute", "connector_heartbeats", "school_days",
    "ministry_attendance", "ministry_grades", "ministry_staff", "ministry_schools", "ministry_attendance_rates",
    "ministry_absences", "ministry_absence_episodes", "ministry_chronic_absence", "ministry_students_at_risk",
    "ministry_results", "ministry_staff_changes", "ministry_teachers", "ministry_completeness",
    "ministry_pipeline", "ministry_freshness",
)  # fmt: skip

# Freshness per dataset (network status grid). Attendance is expected every period of a
# school day, so its clock runs only during school hours of school days (the Québec
# calendar, table school_days); evaluations and staff changes come a few times a week,
# so theirs counts school days. Outside school hours nothing turns late.
ATTENDANCE_LIVE_MIN, ATTENDANCE_LATE_MIN = 15, 120  # school minutes since the last record
GRADES_LIVE_DAYS, GRADES_LATE_DAYS = 10, 20  # school days since the last evaluation
STAFF_LIVE_DAYS, STAFF_LATE_DAYS = 2, 5  # school days since the last staff change
SCHOOL_START_H, SCHOOL_END_H = 8, 16  # as connectors/calendar.py SCHOOL_HOURS


@dataclass(frozen=True)
class Panel:
    """One panel: a title in each language, a chart kind and one query (SQL or PromQL)."""

    title: tuple[str, str]  # (fr, en)
    kind: str  # table | timeseries | barchart
    query: str
    columns: tuple[str, ...] = ()  # columns the panel shows, in order
    keys: tuple[str, ...] = ()  # columns naming a row: never withheld
    individuals: tuple[str, ...] = ()  # columns counting people: each is 0, ≥ minimum, or withheld
    groups: tuple[str, ...] = ()  # complementary suppression within these columns
    coded: tuple[str, ...] = ()  # columns holding codes shown as labels
    order: str = ""  # ORDER BY over the query's columns (codes)
    x: str = ""  # the report's chart: category or time column …
    y: str = ""  # … and value column
    series: str = ""  # … and the column splitting series, if any
    promql: bool = False
    legend: str = ""
    chart: str = ""  # "grid": one row per organization, state columns coloured
    units: dict[str, str] = field(default_factory=dict)  # Grafana unit per column
    thresholds: dict[str, tuple[tuple[float | None, str], ...]] = field(default_factory=dict)
    empty: tuple[str, str] = ("", "")  # why the panel may be empty (fr, en)
    worst_low: bool = False  # the report charts the lowest values first (completeness)

    @property
    def sql(self) -> str:
        """The query as Grafana runs it: suppressed, ordered, labelled by ``$lang``; a time
        series returns only its time, series and value (Grafana would plot every number)."""
        if self.promql:
            return self.query
        shown = tuple(c for c in (self.x, self.series, self.y) if c) if self.kind == "timeseries" else None
        return wrap(self, DEFAULT_MINIMUM, True, shown)

    def sql_with(self, minimum: int, labels: bool = False) -> str:
        """The query with a suppression minimum (a setting: some agencies use 10); codes
        stay codes unless ``labels``."""
        if self.promql:
            return self.query
        return wrap(self, minimum, labels)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: tuple[str, str]
    description: tuple[str, str]
    panels: tuple[Panel, ...] = field(default_factory=tuple)
    time_from: str = "now-24h"
    variables: bool = True  # region → CSS → school selectors


def pct(numerator: str, denominator: str, digits: int = 1) -> str:
    """100 × n / d rounded half up to ``digits`` decimals (non-negative integer counts),
    NULL when d is 0. Integer arithmetic: no float makes 74.5 come out 74.4999."""
    scale = 10**digits
    return (
        f"if(({denominator}) = 0, NULL, intDiv(toUInt64({numerator}) * {200 * scale} + ({denominator}), "
        f"2 * toUInt64({denominator})) / {scale})"
    )


def wrap(panel: Panel, minimum: int, labels: bool, columns: tuple[str, ...] | None = None) -> str:
    """Suppress, order and label a panel's query (see the module docstring); return
    ``columns`` (default: all the panel's)."""
    hide = ""
    windows = ""
    source = f"(\n{panel.query}\n)"
    if panel.individuals:
        small = " OR ".join(f"({c} > 0 AND {c} < {minimum})" for c in panel.individuals)
        size = panel.individuals[0]
        over = f"PARTITION BY {', '.join(panel.groups)}" if panel.groups else ""
        source = f"(SELECT *, ({small}) AS _small FROM {source})"
        windows = (
            f",\n    countIf(_small) OVER ({over}) AS _withheld,"
            f"\n    row_number() OVER ({over} ORDER BY _small DESC, {size} ASC) AS _rank"
        )
        hide = "(t._small OR (t._withheld = 1 AND t._rank = 2))"
    shown = []
    for column in columns or panel.columns:
        expression = f"t.{column}"
        if hide and column not in panel.keys:
            expression = f"if({hide}, NULL, {expression})"
        if labels and column in panel.coded:
            expression = label_sql(expression)
        shown.append(f"{expression} AS {column}")
    order = panel.order or ", ".join(panel.keys) or "tuple()"
    return (
        f"SELECT {', '.join(shown)}\n"
        f"FROM (SELECT *{windows},\n    row_number() OVER (ORDER BY {order}) AS _pos\n  FROM {source}) AS t\n"
        "ORDER BY t._pos"
    )


_TIME_FILTER = re.compile(r"\$__timeFilter\(([^)]+)\)")
_DATE_FILTER = re.compile(r"\$__dateFilter\(([^)]+)\)")
_CONDITIONAL_ALL = re.compile(r"\$__conditionalAll\((.+?), ?\$\w+\)")
_QUALIFY = re.compile(rf"\b(FROM|JOIN)\s+({'|'.join(TABLES)})\b")


def expand_macros(
    sql: str,
    start: datetime,
    end: datetime,
    interval_s: int = 60,
    lang: Language = "fr",
    selected: dict[str, list[str]] | None = None,
) -> str:
    """Expand the Grafana ClickHouse plugin's macros for a time range (UTC) as the plugin
    does (pkg/macros/macros.go), with ``$lang`` set and every selector at « All » unless
    ``selected`` names its values (then ``${name:singlequote}`` is their quoted list)."""
    lo, hi = int(start.timestamp()), int(end.timestamp())
    chosen = selected or {}

    def condition(match: re.Match[str]) -> str:
        variable = match[0].rsplit("$", 1)[1].rstrip(")")
        if variable not in chosen:
            return "1=1"
        quoted = ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in chosen[variable])
        return match[1].replace(f"${{{variable}:singlequote}}", quoted)

    sql = _CONDITIONAL_ALL.sub(condition, sql)
    sql = _TIME_FILTER.sub(lambda m: f"{m[1]} >= toDateTime({lo}) AND {m[1]} <= toDateTime({hi})", sql)
    sql = _DATE_FILTER.sub(
        lambda m: f"{m[1]} >= toDate('{start:%Y-%m-%d}') AND {m[1]} <= toDate('{end:%Y-%m-%d}')", sql
    )
    return (
        sql.replace("$__fromTime", f"toDateTime({lo})")
        .replace("$__toTime", f"toDateTime({hi})")
        .replace("$__interval_s", str(interval_s))
        .replace("${lang}", lang)
    )


def qualify(sql: str, database: str) -> str:
    """Name the database of every table a panel reads (Grafana takes the datasource's)."""
    return _QUALIFY.sub(lambda m: f"{m[1]} {database}.{m[2]}", sql)


def _in(column: str, variable: str) -> str:
    """A filter on a Grafana multi-value selector; « All » becomes 1=1 (no IN list at all)."""
    return f"$__conditionalAll({column} IN (${{{variable}:singlequote}}), ${variable})"


def _where_org(alias: str = "o", css: str = "") -> str:
    """Region and CSS selectors on the organizations row ``alias`` (or a fact's css column)."""
    return f"{_in(f'{alias}.region_name', 'region')} AND {_in(css or f'{alias}.code', 'css')}"


_TZ = f"'{TIMEZONE}'"


def _school_year(moment: str) -> str:
    """The school year (from 1 August, named by its first calendar year) of a time, Québec time."""
    day = f"toDate({moment}, {_TZ})"
    return f"toUInt16(toYear({day}) - if(toMonth({day}) < 8, 1, 0))"


def _school(alias: str) -> str:
    """The school selector on a ministry view: « All » reads the whole-CSS rows (school ''),
    a selection reads those schools' rows, each suppressed among its CSS's schools."""
    return f"({alias}.school = '') = ($__conditionalAll(0, $school)) AND {_in(f'{alias}.school', 'school')}"


def _weeks(alias: str, period: str = "week") -> str:
    """Whole buckets only: the ISO weeks (or months) that overlap the chosen range, whole.
    Two ranges then differ by whole published buckets, never by a few days' rows."""
    start = "toMonday" if period == "week" else "toStartOfMonth"
    return (
        f"{alias}.period = '{period}' AND {alias}.period_start >= {start}(toDate($__fromTime, {_TZ})) "
        f"AND {alias}.period_start <= toDate($__toTime, {_TZ})"
    )


def _years(alias: str) -> str:
    """The school years that overlap the chosen range."""
    return f"{alias}.school_year BETWEEN {_school_year('$__fromTime')} AND {_school_year('$__toTime')}"


_ORG = "INNER JOIN organizations AS o FINAL ON o.code = a.css"
_LATEST_DAY = (
    "(SELECT max(period_start) FROM ministry_attendance_rates WHERE period = 'day' AND $__dateFilter(period_start))"
)
PERCENT = "percent"
_RATE_THRESHOLDS: tuple[tuple[float | None, str], ...] = ((None, "green"), (8, "orange"), (12, "red"))


def _state(dataset: str, f: str) -> str:
    """The freshness state of one dataset of organization ``o`` (columns of join ``f``)."""
    if dataset == "attendance":
        minutes = f"{f}.school_minutes"
        timely = f"{minutes} <= {ATTENDANCE_LIVE_MIN}, 'live', {minutes} <= {ATTENDANCE_LATE_MIN}, 'late'"
    else:
        live, late = (
            (GRADES_LIVE_DAYS, GRADES_LATE_DAYS)
            if dataset == "grades"
            else (STAFF_LIVE_DAYS, STAFF_LATE_DAYS)
        )
        days = f"{f}.school_days"
        timely = f"{days} <= {live}, 'live', {days} <= {late}, 'late'"
    return (
        f"multiIf((o.code, '{dataset}') NOT IN (SELECT css, dataset FROM consents "
        f"WHERE loaded_at = (SELECT max(loaded_at) FROM consents) AND valid_from <= toDate($__toTime, {_TZ}) "
        f"AND (valid_to IS NULL OR valid_to >= toDate($__toTime, {_TZ}))), 'no_consent', "
        f"{f}.css = '', 'silent', {timely}, 'silent')"  # '' : no record at all (LEFT JOIN default)
    )


def _freshness(dataset: str) -> str:
    """Per CSS, the school minutes (school hours of school days, Québec time) and the school
    days since its last record of one dataset, up to the range's end."""
    opens = f"toUnixTimestamp(toDateTime(d, {_TZ})) + {SCHOOL_START_H * 3600}"
    closes = f"toUnixTimestamp(toDateTime(d, {_TZ})) + {SCHOOL_END_H * 3600}"
    last, now = "toUnixTimestamp(max(last_minute))", "toUnixTimestamp($__toTime)"
    return f"""(WITH (SELECT groupUniqArray(day) FROM school_days
        WHERE day BETWEEN toDate($__toTime, {_TZ}) - 60 AND toDate($__toTime, {_TZ})) AS _days
  SELECT css,
    arraySum(d -> intDiv(greatest(0, least({now}, {closes}) - greatest({last}, {opens})), 60), _days) AS school_minutes,
    arrayCount(d -> d > toDate(max(last_minute), {_TZ}), _days) AS school_days
  FROM ministry_freshness WHERE dataset = '{dataset}' AND day <= toDate($__toTime, 'UTC') AND last_minute <= $__toTime
  GROUP BY css)"""


NETWORK_STATUS = Dashboard(
    "vigie-network-status",
    ("Vigie — état du réseau", "Vigie — network status"),
    (
        "Les 72 organismes : à jour, en retard, silencieux ou sans consentement, par jeu de données "
        "(selon les heures de classe et le calendrier scolaire du Québec); flux et rejets.",
        "The 72 organizations: live, late, silent or without consent, per dataset (by school hours "
        "and the Québec school calendar); flow and refusals.",
    ),
    (
        Panel(
            ("Organismes — état par jeu de données", "Organizations — state per dataset"),
            "table",
            f"""SELECT o.region_name AS region, o.code AS css, o.name AS organization,
  {_state("attendance", "fa")} AS attendance_state,
  {_state("grades", "fg")} AS grades_state,
  {_state("staff", "fs")} AS staff_state
FROM organizations AS o FINAL
LEFT JOIN {_freshness("attendance")} AS fa ON fa.css = o.code
LEFT JOIN {_freshness("grades")} AS fg ON fg.css = o.code
LEFT JOIN {_freshness("staff")} AS fs ON fs.css = o.code
WHERE {_where_org()}""",
            ("region", "css", "organization", "attendance_state", "grades_state", "staff_state"),
            keys=("region", "css", "organization"),
            order="region, css",
            x="css",
            y="attendance_state",
            chart="grid",
        ),
        Panel(
            (
                "Enregistrements par heure, par jeu de données (arrondis à 5 près par CSS)",
                "Records per hour, by dataset (rounded to the nearest 5 per CSS)",
            ),
            "timeseries",
            f"""SELECT toTimeZone(e.hour, {_TZ}) AS time, e.dataset AS dataset, sum(e.records) AS events
FROM ministry_pipeline AS e INNER JOIN organizations AS o FINAL ON o.code = e.css
WHERE $__timeFilter(e.hour) AND {_where_org(css="e.css")}
GROUP BY time, dataset""",
            ("time", "dataset", "events"),
            keys=("time", "dataset"),
            coded=("dataset",),
            order="time, dataset",
            x="time",
            y="events",
            series="dataset",
            units={"events": "short"},
        ),
        Panel(
            (
                "Complétude des présences, dernier jour de classe (écoles ayant transmis / attendues)",
                "Attendance completeness, latest school day (schools reporting / expected)",
            ),
            "table",
            f"""SELECT o.region_name AS region, o.code AS css, c.reported AS schools_reported,
  c.expected AS schools_expected,
  if(c.expected = 0, 0, {pct("c.reported", "c.expected")}) AS completeness_pct
FROM organizations AS o FINAL
LEFT JOIN (SELECT css, sum(schools_reported) AS reported, sum(schools_expected) AS expected
           FROM ministry_completeness
           WHERE day = (SELECT max(day) FROM ministry_completeness WHERE $__dateFilter(day))
           GROUP BY css) AS c ON c.css = o.code
WHERE {_where_org()}""",
            ("region", "css", "schools_reported", "schools_expected", "completeness_pct"),
            keys=("region", "css"),
            order="completeness_pct, region, css",
            x="css",
            y="completeness_pct",
            units={"completeness_pct": PERCENT},
            thresholds={"completeness_pct": ((None, "red"), (80, "orange"), (95, "green"))},
            worst_low=True,
        ),
        Panel(
            ("Rejets et valeurs non classées par CSS", "Dead letters and unmapped values per CSS"),
            "table",
            f"""SELECT o.region_name AS region, o.code AS css, f.events AS events, f.unmapped AS unmapped,
  {pct("f.unmapped", "f.events", 2)} AS unmapped_pct, d.letters AS dead_letters
FROM organizations AS o FINAL
LEFT JOIN (
  -- Records and unmapped values (records, not people) from the pipeline's hourly summary
  -- (rounded to base 5 per hour, CSS and dataset), by the hour they were detected.
  SELECT css, sum(records) AS events, sum(unmapped) AS unmapped
  FROM ministry_pipeline WHERE $__timeFilter(hour)
  GROUP BY css) AS f ON f.css = o.code
LEFT JOIN (
  -- Records withheld for lack of consent are not refusals to fix: the status grid shows them.
  SELECT css, uniqExactMerge(letters) AS letters FROM dead_letters_per_minute
  WHERE reason_code != 'no_consent' AND $__timeFilter(minute) GROUP BY css) AS d ON d.css = o.code
WHERE {_where_org()} AND (f.events > 0 OR d.letters > 0)""",
            ("region", "css", "events", "unmapped", "unmapped_pct", "dead_letters"),
            keys=("region", "css"),
            order="dead_letters DESC, unmapped_pct DESC, css",
            x="css",
            y="unmapped_pct",
            units={"events": "short", "unmapped": "short", "unmapped_pct": PERCENT, "dead_letters": "short"},
            thresholds={"unmapped_pct": ((None, "green"), (1, "orange"), (5, "red"))},
        ),
    ),
)

ATTENDANCE = Dashboard(
    "vigie-attendance",
    ("Vigie — assiduité", "Vigie — attendance"),
    (
        "Taux d'absence par région et CSS, motifs d'absence, épisodes et absentéisme chronique, par "
        "jour, semaine ISO ou année scolaire entiers. Effectifs et présences arrondis à 5 près (taux "
        "calculés sur ces nombres). « x » : donnée retenue (moins de 5 élèves, ou pour qu'une autre "
        "ne puisse être déduite).",
        "Absence rates by region and CSS, absence reasons, episodes and chronic absenteeism, by "
        "whole day, ISO week or school year. Counts of students and marks rounded to the nearest 5 "
        "(rates computed from them). “x”: withheld (under 5 students, or so that another cannot be "
        "deduced).",
    ),
    (
        Panel(
            (
                "Taux d'absence, dernier jour de classe, par région et CSS",
                "Absence rate, latest school day, by region and CSS",
            ),
            "table",
            f"""SELECT o.region_name AS region, a.css AS css, sum(a.students) AS students,
  {pct("sum(a.absent_marks)", "sum(a.marks)")} AS absence_rate_pct
FROM ministry_attendance_rates AS a {_ORG}
WHERE a.period = 'day' AND a.period_start = {_LATEST_DAY} AND {_where_org(css="a.css")} AND {_school("a")}
GROUP BY region, css""",
            ("region", "css", "students", "absence_rate_pct"),
            keys=("region", "css"),
            individuals=("students",),
            groups=("region",),
            order="region, css",
            x="css",
            y="absence_rate_pct",
            units={"students": "short", "absence_rate_pct": PERCENT},
            thresholds={"absence_rate_pct": _RATE_THRESHOLDS},
        ),
        Panel(
            ("Taux d'absence par jour, par région", "Absence rate per day, by region"),
            "timeseries",
            f"""SELECT toDateTime(a.period_start, {_TZ}) AS time, o.region_name AS region,
  sum(a.students) AS students, {pct("sum(a.absent_marks)", "sum(a.marks)")} AS absence_rate_pct
FROM ministry_attendance_rates AS a {_ORG}
WHERE a.period = 'day' AND $__dateFilter(a.period_start) AND {_where_org(css="a.css")} AND {_school("a")}
GROUP BY time, region""",
            ("time", "region", "students", "absence_rate_pct"),
            keys=("time", "region"),
            individuals=("students",),
            groups=("time",),
            order="time, region",
            x="time",
            y="absence_rate_pct",
            series="region",
            units={"students": "short", "absence_rate_pct": PERCENT},
        ),
        Panel(
            (
                "Élèves absents par motif d'absence et région (par semaine ISO, semaines de la période additionnées)",
                "Absent students by absence reason and region (per ISO week, the range's weeks added up)",
            ),
            "barchart",
            f"""SELECT o.region_name AS region, a.reason AS reason, sum(a.students) AS students
FROM ministry_absences AS a {_ORG}
WHERE {_weeks("a")} AND {_where_org(css="a.css")} AND {_school("a")}
GROUP BY region, reason""",
            ("region", "reason", "students"),
            keys=("region", "reason"),
            individuals=("students",),
            groups=("region",),
            coded=("reason",),
            order="region, students DESC, reason",
            x="reason",
            y="students",
            series="region",
            units={"students": "short"},
        ),
        Panel(
            (
                "Épisodes d'absence : nombre, motif et durée (jours de classe consécutifs d'absence "
                "d'au moins une demi-journée; mois de début entiers)",
                "Absence episodes: number, reason and duration (consecutive school days absent at "
                "least half the day; whole months of start)",
            ),
            "barchart",
            f"""SELECT a.reason AS reason, a.duration AS duration, sum(a.episodes) AS episodes,
  sum(a.students) AS students
FROM ministry_absence_episodes AS a {_ORG}
WHERE {_weeks("a", "month")} AND {_where_org(css="a.css")} AND {_school("a")}
GROUP BY reason, duration""",
            ("reason", "duration", "episodes", "students"),
            keys=("reason", "duration"),
            individuals=("students",),
            groups=("reason",),
            coded=("reason", "duration"),
            order="reason, duration",
            x="reason",
            y="episodes",
            series="duration",
            units={"episodes": "short", "students": "short"},
            empty=(
                "Aucun élève absent au moins une demi-journée dans la période choisie.",
                "No student absent half a day or more in the chosen range.",
            ),
        ),
        Panel(
            (
                "Absentéisme chronique cette année scolaire, par CSS (≥ 10 % des jours manqués, au moins "
                "une demi-journée, après 10 jours)",
                "Chronic absenteeism this school year, by CSS (≥ 10% of days missed, half a day or "
                "more, after 10 days)",
            ),
            "table",
            f"""SELECT o.region_name AS region, a.css AS css, sum(a.students) AS students,
  sum(a.chronic_students) AS chronic_students, {pct("chronic_students", "students")} AS chronic_pct
FROM ministry_chronic_absence AS a {_ORG}
WHERE a.school_year = {_school_year("$__toTime")} AND a.school = '' AND {_where_org(css="a.css")}
GROUP BY region, css""",
            ("region", "css", "students", "chronic_students", "chronic_pct"),
            keys=("region", "css"),
            individuals=("students", "chronic_students"),
            groups=("region",),
            order="chronic_pct DESC, region, css",
            x="css",
            y="chronic_pct",
            units={"students": "short", "chronic_students": "short", "chronic_pct": PERCENT},
            thresholds={"chronic_pct": ((None, "green"), (10, "orange"), (20, "red"))},
            empty=(
                "L'absentéisme chronique se calcule après au moins 10 jours de classe inscrits "
                "dans l'année scolaire : aucun élève n'en compte encore assez.",
                "Chronic absenteeism is computed after at least 10 enrolled school days this "
                "school year: no student has enough yet.",
            ),
        ),
    ),
    time_from="now-30d",
)


def _results(breakdown: str) -> str:
    """Rows of ``ministry_results`` for one breakdown over the school years of the range
    (étape 0: the whole year), with the region and CSS selectors, and the school one."""
    return (
        f"ministry_results AS a {_ORG}\n"
        f"WHERE a.breakdown = '{breakdown}' AND a.etape = 0 AND {_years('a')} AND {_where_org(css='a.css')}\n"
        f"  AND {_school('a')}"
    )


def _bands_by(title: tuple[str, str], breakdown: str, alias: str) -> Panel:
    """Result bands by one student characteristic (rows where the CSS records it)."""
    return Panel(
        title,
        "barchart",
        f"""SELECT a.value AS {alias}, a.band AS band, sum(a.students) AS students
FROM {_results(breakdown)}
GROUP BY {alias}, band""",
        (alias, "band", "students"),
        keys=(alias, "band"),
        individuals=("students",),
        groups=(alias,),
        coded=(alias, "band"),
        order=f"{alias}, band",
        x="band",
        y="students",
        series=alias,
        units={"students": "short"},
    )


STUDENT_SUCCESS = Dashboard(
    "vigie-student-success",
    ("Vigie — réussite scolaire", "Vigie — student success"),
    (
        "Tranches de résultat (0-60, 61-74, 75-100, arrondi à l'unité supérieure dès ,5) par matière, "
        "niveau, compétence, sexe, plan d'intervention, groupe linguistique et immigration, pour les "
        "années scolaires de la période; élèves à risque. Effectifs arrondis à 5 près. « x » : donnée "
        "retenue (moins de 5 élèves, ou pour qu'une autre ne puisse être déduite).",
        "Result bands (0-60, 61-74, 75-100, .5 rounded up) by subject, level, competency, sex, "
        "intervention plan, language group and immigration, for the school years of the range; "
        "students at risk. Counts rounded to the nearest 5. “x”: withheld (under 5 students, or so "
        "that another cannot be deduced).",
    ),
    (
        Panel(
            ("Tranches de résultat par matière et niveau", "Result bands by subject and level"),
            "barchart",
            f"""SELECT a.value AS subject, a.detail AS level, a.band AS band, sum(a.students) AS students
FROM {_results("subject_level")}
GROUP BY subject, level, band""",
            ("subject", "level", "band", "students"),
            keys=("subject", "level", "band"),
            individuals=("students",),
            groups=("subject", "level"),
            coded=("subject", "level", "band"),
            order="subject, level, band",
            x="subject",
            y="students",
            series="band",
            units={"students": "short"},
        ),
        Panel(
            ("Tranches de résultat par compétence", "Result bands by competency"),
            "barchart",
            f"""SELECT a.value AS competency, a.band AS band, sum(a.students) AS students
FROM {_results("competency")}
GROUP BY competency, band""",
            ("competency", "band", "students"),
            keys=("competency", "band"),
            individuals=("students",),
            groups=("competency",),
            coded=("competency", "band"),
            order="competency, band",
            x="competency",
            y="students",
            series="band",
            units={"students": "short"},
        ),
        Panel(
            ("Tranches de résultat par sexe et région", "Result bands by sex and region"),
            "barchart",
            f"""SELECT o.region_name AS region, a.value AS sex, a.band AS band, sum(a.students) AS students
FROM {_results("sex")}
GROUP BY region, sex, band""",
            ("region", "sex", "band", "students"),
            keys=("region", "sex", "band"),
            individuals=("students",),
            groups=("region", "sex"),
            coded=("sex", "band"),
            order="region, sex, band",
            x="band",
            y="students",
            series="sex",
            units={"students": "short"},
        ),
        _bands_by(
            ("Tranches de résultat selon le plan d'intervention", "Result bands by intervention plan"),
            "plan",
            "plan",
        ),
        _bands_by(
            ("Tranches de résultat par groupe linguistique", "Result bands by language group"),
            "language_group",
            "language_group",
        ),
        _bands_by(
            ("Tranches de résultat par génération d'immigration", "Result bands by immigration generation"),
            "immigration",
            "immigration",
        ),
        Panel(
            (
                "Élèves à risque par école et CSS (absentéisme chronique et 0-60 en langue "
                "d'enseignement ou en mathématique)",
                "Students at risk by school and CSS (chronically absent and 0-60 in the language "
                "of instruction or mathematics)",
            ),
            "table",
            f"""SELECT o.region_name AS region, a.css AS css, a.school AS school, sum(a.students) AS students,
  sum(a.at_risk) AS at_risk, {pct("at_risk", "students")} AS at_risk_pct
FROM ministry_students_at_risk AS a {_ORG}
WHERE a.school_year = {_school_year("$__toTime")} AND a.school != '' AND {_where_org(css="a.css")}
  AND {_in("a.school", "school")}
GROUP BY region, css, school""",
            ("region", "css", "school", "students", "at_risk", "at_risk_pct"),
            keys=("region", "css", "school"),
            individuals=("students", "at_risk"),
            groups=("css",),
            order="region, css, school",
            x="school",
            y="at_risk_pct",
            series="css",
            units={"students": "short", "at_risk": "short", "at_risk_pct": PERCENT},
            thresholds={"at_risk_pct": ((None, "green"), (5, "orange"), (10, "red"))},
            empty=(
                "Le risque se calcule pour les élèves ayant au moins 10 jours de classe inscrits "
                "cette année scolaire : aucun n'en compte encore assez.",
                "Risk is computed for students with at least 10 enrolled school days this school "
                "year: none has enough yet.",
            ),
        ),
    ),
    time_from="now-90d",
)

WORKFORCE = Dashboard(
    "vigie-workforce",
    ("Vigie — main-d'œuvre", "Vigie — workforce"),
    (
        "Le bulletin hebdomadaire de la pénurie, en continu : absences du personnel par corps d'emploi "
        "et semaine, postes ouverts, enseignants non légalement qualifiés (semaines ISO et années "
        "scolaires entières; effectifs arrondis à 5 près). « x » : donnée retenue.",
        "The weekly shortage bulletin, live: staff absences by job class and week, open positions, "
        "teachers without a legal qualification (whole ISO weeks and school years; counts rounded "
        "to the nearest 5). “x”: withheld.",
    ),
    (
        Panel(
            (
                "Absences du personnel commencées, par corps d'emploi et semaine ISO",
                "Staff absences started, by job class and ISO week",
            ),
            "barchart",
            f"""SELECT concat(toString(toISOYear(a.period_start)), '-W',
  leftPad(toString(toISOWeek(a.period_start)), 2, '0')) AS week, a.job_class AS job_class,
  sum(a.staff) AS staff_count
FROM ministry_staff_changes AS a {_ORG}
WHERE a.change_type = 'leave_start' AND {_weeks("a")} AND {_where_org(css="a.css")}
GROUP BY week, job_class""",
            ("week", "job_class", "staff_count"),
            keys=("week", "job_class"),
            individuals=("staff_count",),
            groups=("week",),
            coded=("job_class",),
            order="week, job_class",
            x="week",
            y="staff_count",
            series="job_class",
            units={"staff_count": "short"},
        ),
        Panel(
            (
                "Postes ouverts par région et CSS (semaines ISO de la période)",
                "Open positions by region and CSS (ISO weeks of the range)",
            ),
            "table",
            f"""SELECT o.region_name AS region, a.css AS css, sum(a.staff) AS positions_opened
FROM ministry_staff_changes AS a {_ORG}
WHERE a.change_type = 'position_open' AND {_weeks("a")} AND {_where_org(css="a.css")}
GROUP BY region, css""",
            ("region", "css", "positions_opened"),
            keys=("region", "css"),
            individuals=("positions_opened",),
            groups=("region",),
            order="positions_opened DESC, css",
            x="css",
            y="positions_opened",
            units={"positions_opened": "short"},
        ),
        Panel(
            (
                "Enseignants non légalement qualifiés, par région et CSS (années scolaires de la période)",
                "Teachers without a legal qualification, by region and CSS (school years of the range)",
            ),
            "table",
            f"""SELECT o.region_name AS region, a.css AS css, sum(a.unqualified_teachers) AS unqualified_teachers,
  sum(a.teachers) AS teachers
FROM ministry_teachers AS a {_ORG}
WHERE {_years("a")} AND {_where_org(css="a.css")}
GROUP BY region, css""",
            ("region", "css", "unqualified_teachers", "teachers"),
            keys=("region", "css"),
            individuals=("teachers", "unqualified_teachers"),
            groups=("region",),
            order="region, css",
            x="css",
            y="unqualified_teachers",
            units={"unqualified_teachers": "short", "teachers": "short"},
        ),
    ),
    time_from="now-7d",
)

PIPELINE = Dashboard(
    "vigie-pipeline",
    ("Vigie — pipeline", "Vigie — pipeline"),
    (
        "Pour l'équipe de garde : débit, retard de consommation, rejets, fraîcheur, files des connecteurs (Prometheus).",
        "For on-call engineers: throughput, lag, refusals, freshness, connector outboxes (Prometheus).",
    ),
    (
        Panel(
            (
                "Enregistrements traités par seconde, par jeu de données",
                "Records curated per second, by dataset",
            ),
            "timeseries",
            'sum by (dataset) (rate(vigie_stream_records_total{outcome="curated"}[$__rate_interval]))',
            promql=True,
            legend="{{dataset}}",
            units={"": "rps"},
        ),
        Panel(
            (
                "Retard de consommation (messages), par groupe de sujets",
                "Consumer lag (messages), by topic group",
            ),
            "timeseries",
            "sum by (topic_group) (vigie_consumer_lag_messages)",
            promql=True,
            legend="{{topic_group}}",
            units={"": "short"},
        ),
        Panel(
            (
                "Rejets par seconde, par motif (hors absence de consentement)",
                "Dead letters per second, by reason (consent withholdings excluded)",
            ),
            "timeseries",
            'sum by (reason_code) (rate(vigie_dead_letters_total{reason_code!="no_consent"}[$__rate_interval]))',
            promql=True,
            legend="{{reason_code}}",
            units={"": "rps"},
        ),
        Panel(
            ("Délai enregistrement → entrepôt, p99", "Record → warehouse latency, p99"),
            "timeseries",
            "histogram_quantile(0.99, sum by (le) (rate(vigie_record_to_warehouse_seconds_bucket[$__rate_interval])))",
            promql=True,
            legend="p99",
            units={"": "s"},
            thresholds={"": ((None, "green"), (2, "red"))},
        ),
        Panel(
            ("File d'attente des connecteurs, par CSS", "Connector outbox depth, by CSS"),
            "timeseries",
            "max by (css) (vigie_connector_outbox_depth)",
            promql=True,
            legend="{{css}}",
            units={"": "short"},
            thresholds={"": ((None, "green"), (500, "orange"))},
        ),
        Panel(
            ("Échecs d'insertion dans l'entrepôt par seconde", "Warehouse insert failures per second"),
            "timeseries",
            "sum by (table) (rate(vigie_sink_insert_failures_total[$__rate_interval]))",
            promql=True,
            legend="{{table}}",
            units={"": "rps"},
        ),
    ),
    time_from="now-6h",
    variables=False,
)

DASHBOARDS: tuple[Dashboard, ...] = (NETWORK_STATUS, ATTENDANCE, STUDENT_SUCCESS, WORKFORCE, PIPELINE)
