-- The breakdowns the ministry's dashboards show, as aggregate views (issue 13, item 10):
-- the panels (dashboards/panels.py) read only these, the ministry_* views of 0005/0009 and
-- the pipeline summaries, which is all the ministry's Grafana datasource user is granted
-- (sinks/access.sql).
--
-- Same rules as 0005/0009: counts of people in fixed time buckets (day, ISO week from its
-- Monday, month, school year from 1 August), a cell under the suppression minimum
-- (disclosure_rules, never under 5) withheld, and where one cell alone of a line would be
-- withheld the next smallest of that line too (complementary suppression); every published
-- count rounded to base 5 (half up). Unlike 0005, a withheld cell stays in the view with
-- NULL counts, so that a dashboard shows it as « x » in place instead of losing the row.
-- `school` is '' on the row of a whole CSS and a school code on a school's row; school rows
-- are suppressed among themselves too (a second pass across the schools of a CSS, whose row
-- is published apart), so that a school's withheld cell cannot be recomputed as its CSS's
-- minus the other schools'. Result bands get a second pass across the values of a
-- breakdown, as in 0005 (one band's cells of all values add up to the band's whole).
-- migrate:up
CREATE VIEW IF NOT EXISTS {db}.ministry_schools SQL SECURITY DEFINER AS
SELECT DISTINCT css, school_code FROM {db}.attendance_marks WHERE sheet_date >= today() - 60;

CREATE VIEW IF NOT EXISTS {db}.ministry_attendance_rates SQL SECURITY DEFINER AS
WITH (SELECT greatest(5, ifNull(argMaxOrNull(suppression_minimum, changed_at), 5)) FROM {db}.disclosure_rules) AS min_n
SELECT period, period_start, css, school,
       if(hidden, NULL, toUInt64(intDiv(students + 2, 5) * 5)) AS students,
       if(hidden, NULL, toUInt64(intDiv(marks + 2, 5) * 5)) AS marks,
       if(hidden, NULL, toUInt64(intDiv(absent_marks + 2, 5) * 5)) AS absent_marks
FROM (
    SELECT *, small OR (withheld = 1 AND rank = 2) AS hidden
    FROM (
        SELECT *, countIf(small) OVER line AS withheld,
               row_number() OVER (line ORDER BY small DESC, students ASC, school) AS rank
        FROM (
            SELECT bucket.1 AS period, bucket.2 AS period_start, css, scope AS school,
                   uniqExact(student_pseudonym) AS students, count() AS marks,
                   countIf(status = 'absent') AS absent_marks, students < min_n AS small
            FROM {db}.attendance_marks FINAL
            ARRAY JOIN [('day', sheet_date), ('week', toMonday(sheet_date)), ('month', toStartOfMonth(sheet_date))] AS bucket
            ARRAY JOIN ['', school_code] AS scope
            GROUP BY period, period_start, css, school
        )
        WINDOW line AS (PARTITION BY period, period_start, css, school = '')
    )
);

CREATE VIEW IF NOT EXISTS {db}.ministry_absences SQL SECURITY DEFINER AS
WITH (SELECT greatest(5, ifNull(argMaxOrNull(suppression_minimum, changed_at), 5)) FROM {db}.disclosure_rules) AS min_n
SELECT period, period_start, css, school, reason, if(hidden, NULL, toUInt64(intDiv(students + 2, 5) * 5)) AS students
FROM (
    SELECT *, hidden1 OR (withheld2 = 1 AND rank2 = 2) AS hidden
    FROM (
        -- Second pass: the line of one reason across the schools of a CSS (the CSS row stands alone).
        SELECT *, countIf(hidden1) OVER across AS withheld2,
               row_number() OVER (across ORDER BY hidden1 DESC, students ASC, school) AS rank2
        FROM (
            SELECT *, small OR (withheld = 1 AND rank = 2) AS hidden1
            FROM (
                SELECT *, countIf(small) OVER line AS withheld,
                       row_number() OVER (line ORDER BY small DESC, students ASC, reason) AS rank
                FROM (
                    SELECT bucket.1 AS period, bucket.2 AS period_start, css, scope AS school,
                           toString(ifNull(absence_reason, 'inconnu')) AS reason,
                           uniqExact(student_pseudonym) AS students, students < min_n AS small
                    FROM {db}.attendance_marks FINAL
                    ARRAY JOIN [('day', sheet_date), ('week', toMonday(sheet_date)), ('month', toStartOfMonth(sheet_date))] AS bucket
                    ARRAY JOIN ['', school_code] AS scope
                    WHERE status = 'absent'
                    GROUP BY period, period_start, css, school, reason
                )
                WINDOW line AS (PARTITION BY period, period_start, css, school)
            )
        )
        WINDOW across AS (PARTITION BY period, period_start, css, reason, school = '')
    )
);

CREATE VIEW IF NOT EXISTS {db}.ministry_absence_episodes SQL SECURITY DEFINER AS
WITH (SELECT greatest(5, ifNull(argMaxOrNull(suppression_minimum, changed_at), 5)) FROM {db}.disclosure_rules) AS min_n
SELECT period, period_start, css, school, reason, duration,
       if(hidden, NULL, toUInt64(intDiv(episodes + 2, 5) * 5)) AS episodes,
       if(hidden, NULL, toUInt64(intDiv(students + 2, 5) * 5)) AS students
FROM (
    SELECT *, hidden1 OR (withheld2 = 1 AND rank2 = 2) AS hidden
    FROM (
        -- Second pass: the line of one reason and duration across the schools of a CSS.
        SELECT *, countIf(hidden1) OVER across AS withheld2,
               row_number() OVER (across ORDER BY hidden1 DESC, students ASC, school) AS rank2
        FROM (
            SELECT *, small OR (withheld = 1 AND rank = 2) AS hidden1
            FROM (
                SELECT *, countIf(small) OVER line AS withheld,
                       row_number() OVER (line ORDER BY small DESC, students ASC, reason, duration) AS rank
                FROM (
                    -- An episode counts in the week and the month it started.
                    SELECT bucket.1 AS period, bucket.2 AS period_start, css, scope AS school, reason, duration,
                           count() AS episodes, uniqExact(student) AS students, students < min_n AS small
                    FROM (
                        -- An episode's motif: the most frequent motif of its absences (ties: the first code).
                        SELECT css, student, run, any(school) AS school, min(sheet_date) AS started,
                               arrayFlatten(groupArray(reasons)) AS all_reasons,
                               if(empty(all_reasons), 'inconnu',
                                  arraySort(r -> (-countEqual(all_reasons, r), r), arrayDistinct(all_reasons))[1]) AS reason,
                               count() AS days,
                               multiIf(days = 1, '1j', days <= 3, '2-3j', days <= 5, '4-5j', '6j+') AS duration
                        FROM (
                            -- Consecutive absent days (of the days the student has marks) share a run number.
                            SELECT css, student, school, sheet_date, absent_day, reasons,
                                   row_number() OVER (PARTITION BY css, student ORDER BY sheet_date)
                                     - row_number() OVER (PARTITION BY css, student, absent_day ORDER BY sheet_date) AS run
                            FROM (
                                -- A day missed: absent at half or more of the day's periods.
                                SELECT css, student_pseudonym AS student, any(school_code) AS school, sheet_date,
                                       avg(status = 'absent') >= 0.5 AS absent_day,
                                       groupArrayIf(toString(ifNull(absence_reason, 'inconnu')), status = 'absent') AS reasons
                                FROM {db}.attendance_marks FINAL
                                GROUP BY css, student, sheet_date
                            )
                        )
                        WHERE absent_day
                        GROUP BY css, student, run
                    )
                    ARRAY JOIN [('week', toMonday(started)), ('month', toStartOfMonth(started))] AS bucket
                    ARRAY JOIN ['', school] AS scope
                    GROUP BY period, period_start, css, school, reason, duration
                )
                WINDOW line AS (PARTITION BY period, period_start, css, school)
            )
        )
        WINDOW across AS (PARTITION BY period, period_start, css, reason, duration, school = '')
    )
);

-- Chronic absenteeism: a student missing at least 10 % of the school days enrolled in the
-- school year, counted after 10 enrolled days. The bucket is the school year (from 1 August).
CREATE VIEW IF NOT EXISTS {db}.ministry_chronic_absence SQL SECURITY DEFINER AS
WITH (SELECT greatest(5, ifNull(argMaxOrNull(suppression_minimum, changed_at), 5)) FROM {db}.disclosure_rules) AS min_n
SELECT school_year, css, school,
       if(hidden, NULL, toUInt64(intDiv(students + 2, 5) * 5)) AS students,
       if(hidden, NULL, toUInt64(intDiv(chronic_students + 2, 5) * 5)) AS chronic_students
FROM (
    SELECT *, small OR (withheld = 1 AND rank = 2) AS hidden
    FROM (
        SELECT *, countIf(small) OVER line AS withheld,
               row_number() OVER (line ORDER BY small DESC, students ASC, school) AS rank
        FROM (
            SELECT school_year, css, scope AS school, count() AS students,
                   countIf(absent_days >= 0.1 * days) AS chronic_students,
                   students < min_n OR (chronic_students > 0 AND chronic_students < min_n) AS small
            FROM (
                SELECT school_year, css, student, any(school) AS school, count() AS days, countIf(absent_day) AS absent_days
                FROM (
                    SELECT toUInt16(toYear(sheet_date) - if(toMonth(sheet_date) < 8, 1, 0)) AS school_year, css,
                           student_pseudonym AS student, any(school_code) AS school, sheet_date,
                           avg(status = 'absent') >= 0.5 AS absent_day
                    FROM {db}.attendance_marks FINAL
                    GROUP BY school_year, css, student, sheet_date
                )
                GROUP BY school_year, css, student
                HAVING days >= 10
            )
            ARRAY JOIN ['', school] AS scope
            GROUP BY school_year, css, school
        )
        WINDOW line AS (PARTITION BY school_year, css, school = '')
    )
);

-- Students at risk: chronically absent and whose latest result of the school year in the
-- language of instruction or mathematics is in the 0-60 band (several the same day: the lowest).
CREATE VIEW IF NOT EXISTS {db}.ministry_students_at_risk SQL SECURITY DEFINER AS
WITH (SELECT greatest(5, ifNull(argMaxOrNull(suppression_minimum, changed_at), 5)) FROM {db}.disclosure_rules) AS min_n
SELECT school_year, css, school,
       if(hidden, NULL, toUInt64(intDiv(students + 2, 5) * 5)) AS students,
       if(hidden, NULL, toUInt64(intDiv(at_risk + 2, 5) * 5)) AS at_risk
FROM (
    SELECT *, small OR (withheld = 1 AND rank = 2) AS hidden
    FROM (
        SELECT *, countIf(small) OVER line AS withheld,
               row_number() OVER (line ORDER BY small DESC, students ASC, school) AS rank
        FROM (
            SELECT c.school_year AS school_year, c.css AS css, scope AS school, count() AS students,
                   countIf(c.absent_days >= 0.1 * c.days AND r.student != '') AS at_risk,
                   students < min_n OR (at_risk > 0 AND at_risk < min_n) AS small
            FROM (
                SELECT school_year, css, student, any(school) AS school, count() AS days, countIf(absent_day) AS absent_days
                FROM (
                    SELECT toUInt16(toYear(sheet_date) - if(toMonth(sheet_date) < 8, 1, 0)) AS school_year, css,
                           student_pseudonym AS student, any(school_code) AS school, sheet_date,
                           avg(status = 'absent') >= 0.5 AS absent_day
                    FROM {db}.attendance_marks FINAL
                    GROUP BY school_year, css, student, sheet_date
                )
                GROUP BY school_year, css, student
                HAVING days >= 10
            ) AS c
            LEFT JOIN (
                SELECT DISTINCT school_year, css, student FROM (
                    SELECT toUInt16(toYear(evaluation_date) - if(toMonth(evaluation_date) < 8, 1, 0)) AS school_year,
                           css, student_pseudonym AS student, subject_code,
                           argMax(multiIf(result_percent IS NULL, result_band, floor(result_percent + 0.5) <= 60, '0-60',
                                          floor(result_percent + 0.5) <= 74, '61-74', '75-100'),
                                  (evaluation_date, etape, -ifNull(result_percent, 0))) AS latest_band
                    FROM {db}.grade_results FINAL
                    WHERE subject_code IN ('francais', 'english_language_arts', 'mathematique')
                    GROUP BY school_year, css, student, subject_code
                )
                WHERE latest_band = '0-60'
            ) AS r ON r.school_year = c.school_year AND r.css = c.css AND r.student = c.student
            ARRAY JOIN ['', c.school] AS scope
            GROUP BY school_year, css, school
        )
        WINDOW line AS (PARTITION BY school_year, css, school = '')
    )
);

-- Result bands (from the percent rounded half up: 74.5 → 75-100) by one breakdown of the
-- students: subject and level, competency, sex, intervention plan, language group,
-- immigration. etape 0 is the whole school year; a line is one breakdown value across bands.
CREATE VIEW IF NOT EXISTS {db}.ministry_results SQL SECURITY DEFINER AS
WITH (SELECT greatest(5, ifNull(argMaxOrNull(suppression_minimum, changed_at), 5)) FROM {db}.disclosure_rules) AS min_n
SELECT school_year, etape, css, school, breakdown, value, detail, band,
       if(hidden, NULL, toUInt64(intDiv(students + 2, 5) * 5)) AS students
FROM (
    SELECT *, hidden1 OR (withheld2 = 1 AND rank2 = 2) AS hidden
    FROM (
        -- Second pass: the line of one band across the values of a breakdown (their sum is the whole).
        SELECT *, countIf(hidden1) OVER across AS withheld2,
               row_number() OVER (across ORDER BY hidden1 DESC, students ASC, value, detail) AS rank2
        FROM (
            SELECT *, small OR (withheld = 1 AND rank = 2) AS hidden1
            FROM (
                SELECT *, countIf(small) OVER line AS withheld,
                       row_number() OVER (line ORDER BY small DESC, students ASC, band) AS rank
                FROM (
                    SELECT toUInt16(toYear(evaluation_date) - if(toMonth(evaluation_date) < 8, 1, 0)) AS school_year,
                           step AS etape, css, scope AS school, split.1 AS breakdown, split.2 AS value, split.3 AS detail,
                           multiIf(result_percent IS NULL, toString(result_band), floor(result_percent + 0.5) <= 60, '0-60',
                                   floor(result_percent + 0.5) <= 74, '61-74', '75-100') AS band,
                           uniqExact(student_pseudonym) AS students, students < min_n AS small
                    FROM {db}.grade_results FINAL
                    ARRAY JOIN [toUInt8(0), etape] AS step
                    ARRAY JOIN ['', school_code] AS scope
                    ARRAY JOIN [
                        ('subject_level', toString(subject_code), toString(level)),
                        ('competency', toString(competency_code), ''),
                        ('sex', toString(ifNull(sex, 'non_declare')), ''),
                        ('plan', if(intervention_plan IS NULL, '', if(intervention_plan, 'avec_pi', 'sans_pi')), ''),
                        ('language_group', toString(ifNull(language_group, '')), ''),
                        ('immigration', toString(ifNull(immigration, '')), '')
                    ] AS split
                    WHERE band IS NOT NULL AND split.2 != ''
                    GROUP BY school_year, etape, css, school, breakdown, value, detail, band
                )
                WINDOW line AS (PARTITION BY school_year, etape, css, school, breakdown, value, detail)
            )
        )
        WINDOW across AS (PARTITION BY school_year, etape, css, school, breakdown, band)
    )
);

-- Staff changes (people) by job class and change type, per ISO week and month; withheld
-- cells kept as NULL (ministry_staff of 0005 drops them).
CREATE VIEW IF NOT EXISTS {db}.ministry_staff_changes SQL SECURITY DEFINER AS
WITH (SELECT greatest(5, ifNull(argMaxOrNull(suppression_minimum, changed_at), 5)) FROM {db}.disclosure_rules) AS min_n
SELECT period, period_start, css, job_class, change_type, if(hidden, NULL, toUInt64(intDiv(staff + 2, 5) * 5)) AS staff
FROM (
    SELECT *, small OR (withheld = 1 AND rank = 2) AS hidden
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
);

-- Teachers (and substitutes) seen in the school year, and those without a legal
-- qualification; one line per school year across the CSS.
CREATE VIEW IF NOT EXISTS {db}.ministry_teachers SQL SECURITY DEFINER AS
WITH (SELECT greatest(5, ifNull(argMaxOrNull(suppression_minimum, changed_at), 5)) FROM {db}.disclosure_rules) AS min_n
SELECT school_year, css,
       if(hidden, NULL, toUInt64(intDiv(teachers + 2, 5) * 5)) AS teachers,
       if(hidden, NULL, toUInt64(intDiv(unqualified_teachers + 2, 5) * 5)) AS unqualified_teachers
FROM (
    SELECT *, small OR (withheld = 1 AND rank = 2) AS hidden
    FROM (
        SELECT *, countIf(small) OVER line AS withheld,
               row_number() OVER (line ORDER BY small DESC, teachers ASC, css) AS rank
        FROM (
            SELECT toUInt16(toYear(effective_date) - if(toMonth(effective_date) < 8, 1, 0)) AS school_year, css,
                   uniqExact(staff_pseudonym) AS teachers,
                   uniqExactIf(staff_pseudonym, legally_qualified = false) AS unqualified_teachers,
                   teachers < min_n OR (unqualified_teachers > 0 AND unqualified_teachers < min_n) AS small
            FROM {db}.staff_changes FINAL
            WHERE job_class IN ('enseignant', 'suppleant') AND legally_qualified IS NOT NULL
            GROUP BY school_year, css
        )
        WINDOW line AS (PARTITION BY school_year)
    )
);

-- Attendance completeness per day and CSS: schools that sent marks that day, and schools
-- that sent any in the 30 days up to it (schools, not people: exact). A row for every CSS
-- that reported in those 30 days, on every day the network reported.
CREATE VIEW IF NOT EXISTS {db}.ministry_completeness SQL SECURITY DEFINER AS
SELECT day, css, uniqExactIf(school_code, sheet_date = day) AS schools_reported,
       uniqExact(school_code) AS schools_expected
FROM (SELECT DISTINCT css, school_code, sheet_date FROM {db}.attendance_marks)
-- Each school's day of marks counts on that day and the 30 after it.
ARRAY JOIN arrayMap(k -> sheet_date + k, range(31)) AS day
WHERE day IN (SELECT DISTINCT sheet_date FROM {db}.attendance_marks)
GROUP BY day, css;

-- The pipeline as the ministry reads it (it is no longer granted events_per_minute, whose
-- exact per-minute record counts told when exactly one record arrived: read beside a bucket
-- read at two moments, that singled out what the one record said). Records and unmapped
-- values per hour, CSS and dataset, rounded to base 5 (records, not people: no suppression).
CREATE VIEW IF NOT EXISTS {db}.ministry_pipeline SQL SECURITY DEFINER AS
SELECT hour, css, dataset, toUInt64(intDiv(records + 2, 5) * 5) AS records,
       toUInt64(intDiv(unmapped + 2, 5) * 5) AS unmapped
FROM (
    SELECT toStartOfHour(minute) AS hour, css, dataset, uniqExactMerge(events) AS records,
           uniqExactMerge(unmapped) AS unmapped
    FROM {db}.events_per_minute
    GROUP BY hour, css, dataset
);

-- Freshness (the status grid): per CSS, dataset and day, the minute of the day's last record;
-- a time, no count.
CREATE VIEW IF NOT EXISTS {db}.ministry_freshness SQL SECURITY DEFINER AS
SELECT css, dataset, toDate(minute) AS day, max(minute) AS last_minute
FROM {db}.events_per_minute
GROUP BY css, dataset, day;
-- migrate:down
DROP VIEW IF EXISTS {db}.ministry_freshness;
DROP VIEW IF EXISTS {db}.ministry_pipeline;
DROP VIEW IF EXISTS {db}.ministry_completeness;
DROP VIEW IF EXISTS {db}.ministry_teachers;
DROP VIEW IF EXISTS {db}.ministry_staff_changes;
DROP VIEW IF EXISTS {db}.ministry_results;
DROP VIEW IF EXISTS {db}.ministry_students_at_risk;
DROP VIEW IF EXISTS {db}.ministry_chronic_absence;
DROP VIEW IF EXISTS {db}.ministry_absence_episodes;
DROP VIEW IF EXISTS {db}.ministry_absences;
DROP VIEW IF EXISTS {db}.ministry_attendance_rates;
DROP VIEW IF EXISTS {db}.ministry_schools;
