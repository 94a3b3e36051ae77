-- Retention follows consent: each fact row carries the retention (days) that its CSS's
-- consent set when the row was written, and TTL drops the row that many days after its
-- event date. A new consent changes the rows written from then on.
--
-- Summaries for the network status view, kept by materialized views: events and
-- unmapped records per minute, CSS and dataset; dead letters per minute, CSS, stage and
-- reason. They count distinct event ids (uniqExact states), and bucket by the
-- connector's detection time, which a redelivery does not change: a batch delivered
-- twice is counted once.
--
-- Compartments in the embedded engine: chDB has no roles or row policies, so each fact
-- table has a parameterized view bound to one CSS; the server's roles and row policies
-- are in sinks/access.sql.
-- migrate:up
ALTER TABLE {db}.attendance_marks ADD COLUMN IF NOT EXISTS retention_days UInt16 DEFAULT 365;
ALTER TABLE {db}.attendance_marks MODIFY TTL sheet_date + toIntervalDay(retention_days);
ALTER TABLE {db}.grade_results ADD COLUMN IF NOT EXISTS retention_days UInt16 DEFAULT 365;
ALTER TABLE {db}.grade_results MODIFY TTL evaluation_date + toIntervalDay(retention_days);
ALTER TABLE {db}.staff_changes ADD COLUMN IF NOT EXISTS retention_days UInt16 DEFAULT 365;
ALTER TABLE {db}.staff_changes MODIFY TTL effective_date + toIntervalDay(retention_days);

-- The consent file as the worker last loaded it (one snapshot per load).
CREATE TABLE IF NOT EXISTS {db}.consents (
    loaded_at DateTime64(3, 'UTC'),
    css LowCardinality(String),
    dataset LowCardinality(String),
    purpose String,
    valid_from Date,
    valid_to Nullable(Date),
    retention_days UInt16
) ENGINE = MergeTree
ORDER BY (loaded_at, css, dataset)
TTL toDateTime(loaded_at) + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS {db}.events_per_minute (
    minute DateTime('UTC'),
    css LowCardinality(String),
    dataset LowCardinality(String),
    events AggregateFunction(uniqExact, String),
    unmapped AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree
ORDER BY (dataset, css, minute)
TTL minute + INTERVAL 400 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.attendance_marks_per_minute TO {db}.events_per_minute AS
SELECT toStartOfMinute(detected_at) AS minute, css, 'attendance' AS dataset,
       uniqExactState(event_id) AS events,
       uniqExactStateIf(event_id, NOT reason_mapped) AS unmapped
FROM {db}.attendance_marks GROUP BY minute, css;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.grade_results_per_minute TO {db}.events_per_minute AS
SELECT toStartOfMinute(detected_at) AS minute, css, 'grades' AS dataset,
       uniqExactState(event_id) AS events,
       uniqExactStateIf(event_id, subject_code = 'inconnu' OR competency_code = 'inconnu') AS unmapped
FROM {db}.grade_results GROUP BY minute, css;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.staff_changes_per_minute TO {db}.events_per_minute AS
SELECT toStartOfMinute(detected_at) AS minute, css, 'staff' AS dataset,
       uniqExactState(event_id) AS events,
       uniqExactStateIf(event_id, job_class = 'inconnu') AS unmapped
FROM {db}.staff_changes GROUP BY minute, css;

CREATE TABLE IF NOT EXISTS {db}.dead_letters_per_minute (
    minute DateTime('UTC'),
    css LowCardinality(String),
    dataset LowCardinality(String),
    stage LowCardinality(String),
    reason_code LowCardinality(String),
    letters AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree
ORDER BY (css, dataset, stage, reason_code, minute)
TTL minute + INTERVAL 400 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dead_letters_per_minute_mv TO {db}.dead_letters_per_minute AS
SELECT toStartOfMinute(failed_at) AS minute, ifNull(css, '') AS css, ifNull(dataset, '') AS dataset,
       stage, reason_code, uniqExactState(dead_letter_id) AS letters
FROM {db}.dead_letters GROUP BY minute, css, dataset, stage, reason_code;

CREATE VIEW IF NOT EXISTS {db}.css_attendance_marks AS
SELECT * FROM {db}.attendance_marks FINAL WHERE css = {css:String};
CREATE VIEW IF NOT EXISTS {db}.css_grade_results AS
SELECT * FROM {db}.grade_results FINAL WHERE css = {css:String};
CREATE VIEW IF NOT EXISTS {db}.css_staff_changes AS
SELECT * FROM {db}.staff_changes FINAL WHERE css = {css:String};
-- migrate:down
DROP VIEW IF EXISTS {db}.css_staff_changes;
DROP VIEW IF EXISTS {db}.css_grade_results;
DROP VIEW IF EXISTS {db}.css_attendance_marks;
DROP VIEW IF EXISTS {db}.dead_letters_per_minute_mv;
DROP TABLE IF EXISTS {db}.dead_letters_per_minute;
DROP VIEW IF EXISTS {db}.staff_changes_per_minute;
DROP VIEW IF EXISTS {db}.grade_results_per_minute;
DROP VIEW IF EXISTS {db}.attendance_marks_per_minute;
DROP TABLE IF EXISTS {db}.events_per_minute;
DROP TABLE IF EXISTS {db}.consents;
ALTER TABLE {db}.staff_changes REMOVE TTL;
ALTER TABLE {db}.staff_changes DROP COLUMN IF EXISTS retention_days;
ALTER TABLE {db}.grade_results REMOVE TTL;
ALTER TABLE {db}.grade_results DROP COLUMN IF EXISTS retention_days;
ALTER TABLE {db}.attendance_marks REMOVE TTL;
ALTER TABLE {db}.attendance_marks DROP COLUMN IF EXISTS retention_days;
