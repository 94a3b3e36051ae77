"""Every dashboard panel, defined once: Grafana's JSON and `vigie report` come from here.

A panel over people (students, staff) counts them in a column (``individuals``); its SQL
is wrapped by ``suppressed`` so that no returned row counts fewer than the minimum, and in
each ``group`` where exactly one cell was withheld, the next smallest is withheld too
(complementary suppression: the panels show no totals, and a lone gap in a group could
otherwise be recomputed from a total shown elsewhere). Panel SQL uses the Grafana
ClickHouse plugin's macros (``$__timeFilter``, ``$__fromTime``, ``$__toTime``,
``$__timeInterval``, ``$__interval_s``); ``expand_macros`` expands them for the report and
the tests exactly as the plugin does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sinks.suppression import DEFAULT_MINIMUM

CLICKHOUSE = {"type": "grafana-clickhouse-datasource", "uid": "vigie-clickhouse"}
PROMETHEUS = {"type": "prometheus", "uid": "vigie-prometheus"}
DB = "vigie"  # the Grafana datasource's default database; the embedded store uses it too


@dataclass(frozen=True)
class Panel:
    """One panel: a title, a chart kind and one query (SQL or PromQL)."""

    title: str
    kind: str  # table | timeseries | barchart
    query: str
    columns: tuple[str, ...] = ()  # columns the panel shows (checked against the engine)
    individuals: tuple[str, ...] = ()  # columns counting people: each is 0 or ≥ the minimum
    groups: tuple[str, ...] = ()  # complementary suppression within these columns
    x: str = ""  # the report's chart: category or time column …
    y: str = ""  # … and value column
    series: str = ""  # … and the column splitting series, if any
    promql: bool = False
    legend: str = ""
    chart: str = ""  # the report's chart when not the kind's: "grid" (state per row and column)

    @property
    def sql(self) -> str:
        """The query as Grafana runs it (suppression applied where the panel counts people)."""
        return self.sql_with(DEFAULT_MINIMUM)

    def sql_with(self, minimum: int) -> str:
        """The query with another suppression minimum (a setting: some agencies use 10)."""
        if self.promql or not self.individuals:
            return self.query
        return suppressed(self.query, self.individuals, self.groups, minimum)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)
    time_from: str = "now-24h"


def suppressed(
    sql: str, individuals: tuple[str, ...], groups: tuple[str, ...] = (), minimum: int = DEFAULT_MINIMUM
) -> str:
    """Wrap a grouped query: withhold every row where a count of people is between 1 and
    ``minimum`` - 1, and, per group, the smallest remaining row when exactly one was withheld."""
    small = " OR ".join(f"({c} > 0 AND {c} < {minimum})" for c in individuals)
    size = individuals[0]
    over = f"PARTITION BY {', '.join(groups)}" if groups else ""
    return (
        "SELECT * EXCEPT (_small, _withheld, _rank) FROM (\n"
        f"  SELECT *, countIf(_small) OVER ({over}) AS _withheld,\n"
        f"         row_number() OVER ({over} ORDER BY _small DESC, {size} ASC) AS _rank\n"
        f"  FROM (SELECT *, ({small}) AS _small FROM (\n{sql}\n  ))\n"
        ")\nWHERE NOT _small AND NOT (_withheld = 1 AND _rank = 2)"
    )


_TIME_FILTER = re.compile(r"\$__timeFilter\(([^)]+)\)")
_TIME_INTERVAL = re.compile(r"\$__timeInterval\(([^)]+)\)")


def expand_macros(sql: str, start: datetime, end: datetime, interval_s: int = 60) -> str:
    """Expand the Grafana ClickHouse plugin's macros for a time range (UTC)."""
    lo, hi = int(start.timestamp()), int(end.timestamp())
    sql = _TIME_FILTER.sub(lambda m: f"{m[1]} >= toDateTime({lo}) AND {m[1]} <= toDateTime({hi})", sql)
    sql = _TIME_INTERVAL.sub(
        lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {interval_s} second)", sql
    )
    return (
        sql.replace("$__fromTime", f"toDateTime({lo})")
        .replace("$__toTime", f"toDateTime({hi})")
        .replace("$__interval_s", str(interval_s))
    )


_LATEST_DAY = f"(SELECT max(sheet_date) FROM {DB}.attendance_marks)"
_SCHOOL_YEAR_START = (
    "if(toMonth(today()) >= 8, makeDate(toYear(today()), 8, 1), makeDate(toYear(today()) - 1, 8, 1))"
)
_ATTENDANCE = f"{DB}.attendance_marks AS a FINAL INNER JOIN {DB}.organizations AS o FINAL ON o.code = a.css"
_GRADES = f"{DB}.grade_results AS g FINAL INNER JOIN {DB}.organizations AS o FINAL ON o.code = g.css"
_STAFF = f"{DB}.staff_changes AS s FINAL INNER JOIN {DB}.organizations AS o FINAL ON o.code = s.css"

NETWORK_STATUS = Dashboard(
    "vigie-network-status",
    "Vigie — network status",
    "The 72 organizations: live, late, silent or without consent, per dataset; flow and refusals.",
    (
        Panel(
            "Organizations — state per dataset",
            "table",
            f"""SELECT o.region_name AS region, o.code AS css, d.dataset AS dataset,
  multiIf((o.code, d.dataset) NOT IN (
            SELECT css, dataset FROM {DB}.consents
            WHERE loaded_at = (SELECT max(loaded_at) FROM {DB}.consents)
              AND valid_from <= today() AND (valid_to IS NULL OR valid_to >= today())), 'no consent',
          l.last_minute >= now() - INTERVAL 15 MINUTE, 'live',
          l.last_minute >= now() - INTERVAL 2 HOUR, 'late', 'silent') AS state,
  if(l.last_minute = toDateTime(0), NULL, dateDiff('minute', l.last_minute, now())) AS minutes_since_last
FROM {DB}.organizations AS o FINAL
CROSS JOIN (SELECT arrayJoin(['attendance', 'grades', 'staff']) AS dataset) AS d
LEFT JOIN (SELECT css, dataset, max(minute) AS last_minute FROM {DB}.events_per_minute GROUP BY css, dataset) AS l
  ON l.css = o.code AND l.dataset = d.dataset
ORDER BY region, css, dataset""",
            ("region", "css", "dataset", "state", "minutes_since_last"),
            x="dataset",
            y="state",
            series="css",
            chart="grid",
        ),
        Panel(
            "Events per minute, by dataset",
            "timeseries",
            f"""SELECT minute AS time, dataset, uniqExactMerge(events) AS events
FROM {DB}.events_per_minute WHERE $__timeFilter(minute)
GROUP BY time, dataset ORDER BY time""",
            ("time", "dataset", "events"),
            x="time",
            y="events",
            series="dataset",
        ),
        Panel(
            "Attendance completeness, latest school day (schools reporting vs. expected)",
            "table",
            f"""SELECT css, uniqExactIf(school_code, sheet_date = {_LATEST_DAY}) AS schools_reported,
  uniqExact(school_code) AS schools_expected,
  round(100 * schools_reported / schools_expected, 1) AS completeness_pct
FROM {DB}.attendance_marks WHERE sheet_date >= {_LATEST_DAY} - 30
GROUP BY css ORDER BY completeness_pct, css""",
            ("css", "schools_reported", "schools_expected", "completeness_pct"),
            x="css",
            y="completeness_pct",
        ),
        Panel(
            "Dead letters and unmapped values per CSS",
            "table",
            f"""SELECT e.css AS css, e.events AS events, e.unmapped AS unmapped,
  round(100 * e.unmapped / e.events, 2) AS unmapped_pct, ifNull(d.letters, 0) AS dead_letters
FROM (SELECT css, uniqExactMerge(events) AS events, uniqExactMerge(unmapped) AS unmapped
      FROM {DB}.events_per_minute WHERE $__timeFilter(minute) GROUP BY css) AS e
LEFT JOIN (SELECT css, uniqExactMerge(letters) AS letters
           FROM {DB}.dead_letters_per_minute WHERE $__timeFilter(minute) GROUP BY css) AS d ON d.css = e.css
ORDER BY dead_letters DESC, unmapped_pct DESC, css""",
            ("css", "events", "unmapped", "unmapped_pct", "dead_letters"),
            x="css",
            y="unmapped_pct",
        ),
    ),
)

ATTENDANCE = Dashboard(
    "vigie-attendance",
    "Vigie — attendance",
    "Absence rates by region and CSS, motifs d'absence, chronic absenteeism. Cells under 5 students withheld.",
    (
        Panel(
            "Absence rate, latest school day, by region and CSS",
            "table",
            f"""SELECT o.region_name AS region, a.css AS css, uniqExact(a.student_pseudonym) AS students,
  countIf(a.status = 'absent') AS absent_marks, count() AS marks,
  round(100 * absent_marks / marks, 1) AS absence_rate_pct
FROM {_ATTENDANCE} WHERE a.sheet_date = {_LATEST_DAY}
GROUP BY region, css ORDER BY region, css""",
            ("region", "css", "students", "absence_rate_pct"),
            individuals=("students",),
            groups=("region",),
            x="css",
            y="absence_rate_pct",
        ),
        Panel(
            "Absence rate over time, by region",
            "timeseries",
            f"""SELECT toDateTime(a.sheet_date) AS time, o.region_name AS region,
  uniqExact(a.student_pseudonym) AS students,
  round(100 * countIf(a.status = 'absent') / count(), 1) AS absence_rate_pct
FROM {_ATTENDANCE} WHERE $__timeFilter(a.sheet_date)
GROUP BY time, region ORDER BY time, region""",
            ("time", "region", "students", "absence_rate_pct"),
            individuals=("students",),
            groups=("time",),
            x="time",
            y="absence_rate_pct",
            series="region",
        ),
        Panel(
            "Absent students by motif d'absence and region",
            "barchart",
            f"""SELECT o.region_name AS region, ifNull(a.absence_reason, 'inconnu') AS reason,
  uniqExact(a.student_pseudonym) AS students, count() AS absent_marks
FROM {_ATTENDANCE} WHERE a.status = 'absent' AND $__timeFilter(a.sheet_date)
GROUP BY region, reason ORDER BY region, students DESC""",
            ("region", "reason", "students"),
            individuals=("students",),
            groups=("region",),
            x="reason",
            y="students",
            series="region",
        ),
        Panel(
            "Chronic absenteeism this school year, by CSS (≥ 10 % of days missed, after 10 days)",
            "table",
            f"""SELECT css, count() AS students, countIf(absent_days >= 0.1 * days) AS chronic_students,
  round(100 * chronic_students / students, 1) AS chronic_pct
FROM (
  SELECT css, student, count() AS days, countIf(absent_day) AS absent_days FROM (
    SELECT css, student_pseudonym AS student, sheet_date, min(status = 'absent') AS absent_day
    FROM {DB}.attendance_marks FINAL WHERE sheet_date >= {_SCHOOL_YEAR_START}
    GROUP BY css, student, sheet_date)
  GROUP BY css, student HAVING days >= 10)
GROUP BY css ORDER BY chronic_pct DESC, css""",
            ("css", "students", "chronic_students", "chronic_pct"),
            individuals=("students", "chronic_students"),
            x="css",
            y="chronic_pct",
        ),
    ),
    time_from="now-30d",
)


def _bands_by(title: str, expression: str, alias: str, column: str) -> Panel:
    """Result bands by one student characteristic (rows where the CSS records it)."""
    return Panel(
        title,
        "barchart",
        f"""SELECT {expression} AS {alias}, g.result_band AS band, uniqExact(g.student_pseudonym) AS students
FROM {DB}.grade_results AS g FINAL
WHERE g.result_band IS NOT NULL AND {column} IS NOT NULL AND $__timeFilter(g.evaluation_date)
GROUP BY {alias}, band ORDER BY {alias}, band""",
        (alias, "band", "students"),
        individuals=("students",),
        groups=(alias,),
        x="band",
        y="students",
        series=alias,
    )


STUDENT_SUCCESS = Dashboard(
    "vigie-student-success",
    "Vigie — student success",
    "Result bands (0-60, 61-74, 75-100) by subject, level, competency, sex, plan d'intervention, language group and immigration. Cells under 5 students withheld.",
    (
        Panel(
            "Result bands by subject and level",
            "barchart",
            f"""SELECT g.subject_code AS subject, g.level AS level, g.result_band AS band,
  uniqExact(g.student_pseudonym) AS students
FROM {DB}.grade_results AS g FINAL
WHERE g.result_band IS NOT NULL AND $__timeFilter(g.evaluation_date)
GROUP BY subject, level, band ORDER BY subject, level, band""",
            ("subject", "level", "band", "students"),
            individuals=("students",),
            groups=("subject", "level"),
            x="subject",
            y="students",
            series="band",
        ),
        Panel(
            "Result bands by competency",
            "barchart",
            f"""SELECT g.competency_code AS competency, g.result_band AS band,
  uniqExact(g.student_pseudonym) AS students
FROM {DB}.grade_results AS g FINAL
WHERE g.result_band IS NOT NULL AND $__timeFilter(g.evaluation_date)
GROUP BY competency, band ORDER BY competency, band""",
            ("competency", "band", "students"),
            individuals=("students",),
            groups=("competency",),
            x="competency",
            y="students",
            series="band",
        ),
        Panel(
            "Result bands by sex and region",
            "barchart",
            f"""SELECT o.region_name AS region, ifNull(g.sex, 'non déclaré') AS sex, g.result_band AS band,
  uniqExact(g.student_pseudonym) AS students
FROM {_GRADES} WHERE g.result_band IS NOT NULL AND $__timeFilter(g.evaluation_date)
GROUP BY region, sex, band ORDER BY region, sex, band""",
            ("region", "sex", "band", "students"),
            individuals=("students",),
            groups=("region", "sex"),
            x="band",
            y="students",
            series="sex",
        ),
        _bands_by(
            "Result bands by plan d'intervention",
            "if(g.intervention_plan, 'avec PI', 'sans PI')",
            "plan",
            "g.intervention_plan",
        ),
        _bands_by("Result bands by language group", "g.language_group", "language_group", "g.language_group"),
        _bands_by("Result bands by immigration generation", "g.immigration", "immigration", "g.immigration"),
    ),
    time_from="now-90d",
)

WORKFORCE = Dashboard(
    "vigie-workforce",
    "Vigie — workforce",
    "The weekly shortage report, live: staff absences, open positions, teachers without a legal qualification.",
    (
        Panel(
            "Staff absences started, latest day, by job class and region",
            "barchart",
            f"""SELECT o.region_name AS region, s.job_class AS job_class, uniqExact(s.staff_pseudonym) AS staff
FROM {_STAFF}
WHERE s.change_type = 'leave_start' AND s.effective_date = (SELECT max(effective_date) FROM {DB}.staff_changes)
GROUP BY region, job_class ORDER BY region, staff DESC""",
            ("region", "job_class", "staff"),
            individuals=("staff",),
            groups=("region",),
            x="job_class",
            y="staff",
            series="region",
        ),
        Panel(
            "Unfilled positions by region and CSS",
            "table",
            f"""SELECT o.region_name AS region, s.css AS css, count() AS positions_opened
FROM {_STAFF} WHERE s.change_type = 'position_open' AND $__timeFilter(s.effective_date)
GROUP BY region, css ORDER BY positions_opened DESC, css""",
            ("region", "css", "positions_opened"),
            x="css",
            y="positions_opened",
        ),
        Panel(
            "Teachers without a legal qualification, by region and CSS",
            "table",
            f"""SELECT o.region_name AS region, s.css AS css,
  uniqExactIf(s.staff_pseudonym, s.legally_qualified = false) AS unqualified_teachers,
  uniqExact(s.staff_pseudonym) AS teachers
FROM {_STAFF} WHERE s.job_class IN ('enseignant', 'suppleant') AND s.legally_qualified IS NOT NULL
GROUP BY region, css ORDER BY region, css""",
            ("region", "css", "unqualified_teachers", "teachers"),
            individuals=("teachers", "unqualified_teachers"),
            groups=("region",),
            x="css",
            y="unqualified_teachers",
        ),
    ),
    time_from="now-7d",
)

PIPELINE = Dashboard(
    "vigie-pipeline",
    "Vigie — pipeline",
    "For on-call engineers: throughput, lag, refusals, freshness, connector outboxes (Prometheus).",
    (
        Panel(
            "Records curated per second, by dataset",
            "timeseries",
            'sum by (dataset) (rate(vigie_stream_records_total{outcome="curated"}[5m]))',
            promql=True,
            legend="{{dataset}}",
        ),
        Panel(
            "Consumer lag (messages), by topic group",
            "timeseries",
            "sum by (topic_group) (vigie_consumer_lag_messages)",
            promql=True,
            legend="{{topic_group}}",
        ),
        Panel(
            "Dead letters per second, by reason",
            "timeseries",
            "sum by (reason_code) (rate(vigie_dead_letters_total[5m]))",
            promql=True,
            legend="{{reason_code}}",
        ),
        Panel(
            "Record → warehouse latency, p99 (s)",
            "timeseries",
            "histogram_quantile(0.99, sum by (le) (rate(vigie_record_to_warehouse_seconds_bucket[5m])))",
            promql=True,
            legend="p99",
        ),
        Panel(
            "Connector outbox depth, by CSS",
            "timeseries",
            "max by (css) (vigie_connector_outbox_depth)",
            promql=True,
            legend="{{css}}",
        ),
        Panel(
            "Warehouse insert failures per second",
            "timeseries",
            "sum by (table) (rate(vigie_sink_insert_failures_total[5m]))",
            promql=True,
            legend="{{table}}",
        ),
    ),
    time_from="now-6h",
)

DASHBOARDS: tuple[Dashboard, ...] = (NETWORK_STATUS, ATTENDANCE, STUDENT_SUCCESS, WORKFORCE, PIPELINE)
