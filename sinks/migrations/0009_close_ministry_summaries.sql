-- The ministry's compartment, closed further (red-team pass of issue 13).
--
-- 1. The ministry views never publish a count under 5, whatever disclosure_rules says.
--
-- 0005 took the suppression minimum from disclosure_rules as written: the worker writes
-- VIGIE_SUPPRESSION_MINIMUM there, which accepted 1 to 4, and anyone with the writer role
-- can insert a row. Found: with a minimum of 1, a cell of 3 students was published (as 5)
-- and cells of 1 or 2 as 0, i.e. their existence. The minimum can be raised (10, as some
-- agencies use), never lowered under 5. Same views otherwise (0005's SQL, replaced).
-- 2. The dead-letter summary names only known organizations (see below).
-- migrate:up
CREATE OR REPLACE VIEW {db}.ministry_attendance SQL SECURITY DEFINER AS
WITH (SELECT greatest(5, ifNull(argMaxOrNull(suppression_minimum, changed_at), 5)) FROM {db}.disclosure_rules) AS min_n
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

CREATE OR REPLACE VIEW {db}.ministry_grades SQL SECURITY DEFINER AS
WITH (SELECT greatest(5, ifNull(argMaxOrNull(suppression_minimum, changed_at), 5)) FROM {db}.disclosure_rules) AS min_n
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

CREATE OR REPLACE VIEW {db}.ministry_staff SQL SECURITY DEFINER AS
WITH (SELECT greatest(5, ifNull(argMaxOrNull(suppression_minimum, changed_at), 5)) FROM {db}.disclosure_rules) AS min_n
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

-- The dead-letter summary (granted to the ministry) keeps a CSS only if it is one of the
-- organizations: a letter for `raw.<anything>.attendance` carries the topic's segment as
-- its css (found: 'jean-tremblay-2011-04-05' reached dead_letters_per_minute). Unknown ones
-- count under ''. Rows already summarized keep their css (it is in the sort key).
DROP VIEW IF EXISTS {db}.dead_letters_per_minute_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dead_letters_per_minute_mv TO {db}.dead_letters_per_minute AS
SELECT toStartOfMinute(failed_at) AS minute,
       if(ifNull(css, '') IN (SELECT code FROM {db}.organizations), ifNull(css, ''), '') AS css,
       ifNull(dataset, '') AS dataset, stage, reason_code, uniqExactState(dead_letter_id) AS letters
FROM {db}.dead_letters GROUP BY minute, css, dataset, stage, reason_code;
-- migrate:down
CREATE OR REPLACE VIEW {db}.ministry_attendance SQL SECURITY DEFINER AS
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

CREATE OR REPLACE VIEW {db}.ministry_grades SQL SECURITY DEFINER AS
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

CREATE OR REPLACE VIEW {db}.ministry_staff SQL SECURITY DEFINER AS
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

DROP VIEW IF EXISTS {db}.dead_letters_per_minute_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dead_letters_per_minute_mv TO {db}.dead_letters_per_minute AS
SELECT toStartOfMinute(failed_at) AS minute, ifNull(css, '') AS css, ifNull(dataset, '') AS dataset,
       stage, reason_code, uniqExactState(dead_letter_id) AS letters
FROM {db}.dead_letters GROUP BY minute, css, dataset, stage, reason_code;
