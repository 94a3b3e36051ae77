-- The ministry's compartment: aggregate views only, never a row-level table.
--
-- Each ministry_* view counts people (distinct pseudonyms) in fixed time buckets — day,
-- ISO week (from its Monday) and month for attendance; ISO week and month for staff;
-- school year and étape for grades — so that a reader cannot pick two ranges whose
-- difference is a small group. A row is published only if it counts at least the
-- suppression minimum (disclosure_rules, 5 by default, a setting the worker writes);
-- where one cell alone of a line would be withheld, the next smallest of that line is
-- withheld too (complementary suppression: two passes for the grades' two-way lines);
-- every published count is rounded to base 5 (half up), so a difference of two published
-- counts never equals a small group. A withheld row is absent.
--
-- On a ClickHouse server the views run with their definer's rights (SQL SECURITY
-- DEFINER): the ministry role is granted these views only (sinks/access.sql). chDB parses
-- and runs the same DDL (no access control there: the CSS parameterized views of 0002
-- compartment the embedded store).
--
-- dead_letters gets a retention like the fact tables: each row carries its retention in
-- days (default 90), and TTL drops it that many days after it failed.
-- migrate:up
ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS retention_days UInt16 DEFAULT 90;
ALTER TABLE {db}.dead_letters MODIFY TTL toDateTime(failed_at) + toIntervalDay(retention_days);

CREATE TABLE IF NOT EXISTS {db}.disclosure_rules (
    suppression_minimum UInt16,
    changed_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree
ORDER BY changed_at;

CREATE VIEW IF NOT EXISTS {db}.ministry_attendance SQL SECURITY DEFINER AS
WITH (SELECT ifNull(argMaxOrNull(suppression_minimum, changed_at), 5) FROM {db}.disclosure_rules) AS min_n
SELECT period, period_start, css, status, absence_reason,
       toUInt64(intDiv(students + 2, 5) * 5) AS students, toUInt64(intDiv(marks + 2, 5) * 5) AS marks
FROM (
    SELECT *, countIf(small) OVER line AS withheld,
           row_number() OVER (line ORDER BY small DESC, students ASC, status, absence_reason) AS rank
    FROM (
        SELECT bucket.1 AS period, bucket.2 AS period_start, css, toString(status) AS status,
               toString(ifNull(absence_reason, '')) AS absence_reason,
               uniqExact(student_pseudonym) AS students, count() AS marks, students < min_n AS small
        FROM {db}.attendance_marks FINAL
        ARRAY JOIN [('day', sheet_date), ('week', toMonday(sheet_date)), ('month', toStartOfMonth(sheet_date))] AS bucket
        GROUP BY period, period_start, css, status, absence_reason
    )
    WINDOW line AS (PARTITION BY period, period_start, css)
)
WHERE NOT small AND NOT (withheld = 1 AND rank = 2);

CREATE VIEW IF NOT EXISTS {db}.ministry_grades SQL SECURITY DEFINER AS
WITH (SELECT ifNull(argMaxOrNull(suppression_minimum, changed_at), 5) FROM {db}.disclosure_rules) AS min_n
SELECT school_year, etape, css, subject_code, breakdown, breakdown_value, result_band,
       toUInt64(intDiv(students + 2, 5) * 5) AS students
FROM (
    -- Second pass: the line of one result band across the values of one breakdown.
    SELECT *, countIf(hidden) OVER by_value AS withheld2,
           row_number() OVER (by_value ORDER BY hidden DESC, students ASC, breakdown_value) AS rank2
    FROM (
        SELECT *, small OR (withheld = 1 AND rank = 2) AS hidden
        FROM (
            -- First pass: the line of one breakdown value across the result bands.
            SELECT *, countIf(small) OVER by_band AS withheld,
                   row_number() OVER (by_band ORDER BY small DESC, students ASC, result_band) AS rank
            FROM (
                SELECT toUInt16(toYear(evaluation_date) - if(toMonth(evaluation_date) < 8, 1, 0)) AS school_year,
                       etape, css, toString(subject_code) AS subject_code,
                       split.1 AS breakdown, split.2 AS breakdown_value,
                       toString(ifNull(result_band, '')) AS result_band,
                       uniqExact(student_pseudonym) AS students, students < min_n AS small
                FROM {db}.grade_results FINAL
                ARRAY JOIN [
                    ('all', ''),
                    ('sex', toString(ifNull(sex, ''))),
                    ('intervention_plan', ifNull(toString(intervention_plan), '')),
                    ('language_group', toString(ifNull(language_group, ''))),
                    ('immigration', toString(ifNull(immigration, '')))
                ] AS split
                GROUP BY school_year, etape, css, subject_code, breakdown, breakdown_value, result_band
            )
            WINDOW by_band AS (PARTITION BY school_year, etape, css, subject_code, breakdown, breakdown_value)
        )
    )
    WINDOW by_value AS (PARTITION BY school_year, etape, css, subject_code, breakdown, result_band)
)
WHERE NOT hidden AND NOT (withheld2 = 1 AND rank2 = 2);

CREATE VIEW IF NOT EXISTS {db}.ministry_staff SQL SECURITY DEFINER AS
WITH (SELECT ifNull(argMaxOrNull(suppression_minimum, changed_at), 5) FROM {db}.disclosure_rules) AS min_n
SELECT period, period_start, css, job_class, change_type, toUInt64(intDiv(staff + 2, 5) * 5) AS staff
FROM (
    SELECT *, countIf(small) OVER line AS withheld,
           row_number() OVER (line ORDER BY small DESC, staff ASC, job_class, change_type) AS rank
    FROM (
        SELECT bucket.1 AS period, bucket.2 AS period_start, css, toString(job_class) AS job_class,
               toString(change_type) AS change_type, uniqExact(staff_pseudonym) AS staff, staff < min_n AS small
        FROM {db}.staff_changes FINAL
        ARRAY JOIN [('week', toMonday(effective_date)), ('month', toStartOfMonth(effective_date))] AS bucket
        GROUP BY period, period_start, css, job_class, change_type
    )
    WINDOW line AS (PARTITION BY period, period_start, css)
)
WHERE NOT small AND NOT (withheld = 1 AND rank = 2);
-- migrate:down
DROP VIEW IF EXISTS {db}.ministry_staff;
DROP VIEW IF EXISTS {db}.ministry_grades;
DROP VIEW IF EXISTS {db}.ministry_attendance;
DROP TABLE IF EXISTS {db}.disclosure_rules;
ALTER TABLE {db}.dead_letters REMOVE TTL;
ALTER TABLE {db}.dead_letters DROP COLUMN IF EXISTS retention_days;
