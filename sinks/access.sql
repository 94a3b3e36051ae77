-- Roles and row policies for a ClickHouse server (chDB has no access control: the
-- embedded engine uses the css_* parameterized views of migration 0002 instead).
-- Applied by `vigie migrate` (an administrator's step: the worker needs no such grant),
-- idempotently, after the migrations, so a CSS or a school added to the reference lists
-- gets its role without a new migration. Placeholders: {db}; in the per-CSS section {css}
-- (organization code) and {role}; in the per-school section {css}, {school} and {role}.
-- Once a table has a row policy, a user without one on it sees no rows: each role
-- below is given exactly the rows it may read.
-- access:writer
-- Whoever runs the migrations (the worker's user, `vigie_writer` in the compose stack: a
-- configuration user holding every grant) is the definer of the ministry views and sees
-- all rows, so that the SQL SECURITY DEFINER views see everything they aggregate. The
-- policy names CURRENT_USER, not a role called like that user: ClickHouse resolves a
-- shared name to the user, whose configuration storage is read-only, and the GRANT fails.
CREATE ROW POLICY IF NOT EXISTS vigie_writer_all ON {db}.attendance_marks, {db}.grade_results, {db}.staff_changes, {db}.dead_letters, {db}.connector_heartbeats, {db}.events_per_minute, {db}.dead_letters_per_minute FOR SELECT USING 1 TO CURRENT_USER;
-- access:ministry
-- Aggregates only: the ministry_* views (suppressed, rounded, fixed time buckets, run
-- with their definer's rights) and the pipeline's own counts; no row-level table.
CREATE ROLE IF NOT EXISTS vigie_ministry;
GRANT SELECT ON {db}.ministry_attendance TO vigie_ministry;
GRANT SELECT ON {db}.ministry_grades TO vigie_ministry;
GRANT SELECT ON {db}.ministry_staff TO vigie_ministry;
-- The dashboards' breakdowns (migration 0010), same rules; and the school calendar (no people).
GRANT SELECT ON {db}.ministry_schools TO vigie_ministry;
GRANT SELECT ON {db}.ministry_attendance_rates TO vigie_ministry;
GRANT SELECT ON {db}.ministry_absences TO vigie_ministry;
GRANT SELECT ON {db}.ministry_absence_episodes TO vigie_ministry;
GRANT SELECT ON {db}.ministry_chronic_absence TO vigie_ministry;
GRANT SELECT ON {db}.ministry_students_at_risk TO vigie_ministry;
GRANT SELECT ON {db}.ministry_results TO vigie_ministry;
GRANT SELECT ON {db}.ministry_staff_changes TO vigie_ministry;
GRANT SELECT ON {db}.ministry_teachers TO vigie_ministry;
GRANT SELECT ON {db}.ministry_completeness TO vigie_ministry;
GRANT SELECT ON {db}.school_days TO vigie_ministry;
-- Not events_per_minute (exact records per minute: see migration 0010); its hourly, rounded
-- form and the last record's minute instead. REVOKE: a server set up before keeps no grant.
REVOKE SELECT ON {db}.events_per_minute FROM vigie_ministry;
GRANT SELECT ON {db}.ministry_pipeline TO vigie_ministry;
GRANT SELECT ON {db}.ministry_freshness TO vigie_ministry;
GRANT SELECT ON {db}.dead_letters_per_minute TO vigie_ministry;
GRANT SELECT ON {db}.connector_heartbeats TO vigie_ministry;
GRANT SELECT ON {db}.organizations TO vigie_ministry;
GRANT SELECT ON {db}.consents TO vigie_ministry;
-- Read-only settings: a reader's settings reach inside a DEFINER view (found: with
-- max_execution_time tiny and timeout_overflow_mode = 'break' a view returns an aggregate
-- over the part it read, and the read/result/group-by *_overflow_mode = 'break' limits do
-- the same), so that a ministry reader could steer which rows a published cell counts.
-- readonly = 1 fixes every setting (and refuses table functions); the Grafana plugin's
-- client sets max_execution_time, the one setting left changeable (overflow stays 'throw').
CREATE SETTINGS PROFILE OR REPLACE vigie_ministry_profile SETTINGS readonly = 1, max_execution_time = 60 MAX 600 CHANGEABLE_IN_READONLY TO vigie_ministry;
CREATE ROW POLICY IF NOT EXISTS vigie_ministry_all ON {db}.connector_heartbeats, {db}.dead_letters_per_minute FOR SELECT USING 1 TO vigie_ministry;
-- access:css
CREATE ROLE IF NOT EXISTS {role};
GRANT SELECT ON {db}.attendance_marks TO {role};
GRANT SELECT ON {db}.grade_results TO {role};
GRANT SELECT ON {db}.staff_changes TO {role};
GRANT SELECT ON {db}.dead_letters TO {role};
GRANT SELECT ON {db}.connector_heartbeats TO {role};
GRANT SELECT ON {db}.events_per_minute TO {role};
GRANT SELECT ON {db}.dead_letters_per_minute TO {role};
CREATE ROW POLICY IF NOT EXISTS {role} ON {db}.attendance_marks, {db}.grade_results, {db}.staff_changes, {db}.dead_letters, {db}.connector_heartbeats, {db}.events_per_minute, {db}.dead_letters_per_minute FOR SELECT USING css = '{css}' TO {role};
-- access:school
-- A school's direction: its own school's rows (pseudonymized), nothing of its CSS beyond.
CREATE ROLE IF NOT EXISTS {role};
GRANT SELECT ON {db}.attendance_marks TO {role};
GRANT SELECT ON {db}.grade_results TO {role};
GRANT SELECT ON {db}.staff_changes TO {role};
CREATE ROW POLICY IF NOT EXISTS {role} ON {db}.attendance_marks, {db}.grade_results, {db}.staff_changes FOR SELECT USING css = '{css}' AND school_code = '{school}' TO {role};
