-- Roles and row policies for a ClickHouse server (chDB has no access control: the
-- embedded engine uses the css_* parameterized views of migration 0002 instead).
-- Applied by `vigie migrate` (an administrator's step: the worker needs no such grant),
-- idempotently, after the migrations, so a CSS added to the
-- reference list gets its role without a new migration. Placeholders: {db}, and in
-- the per-CSS section {css} (organization code) and {role}.
-- Once a table has a row policy, a user without one on it sees no rows: each role
-- below is given exactly the rows it may read.
-- access:ministry
CREATE ROLE IF NOT EXISTS vigie_ministry;
GRANT SELECT ON {db}.* TO vigie_ministry;
CREATE ROW POLICY IF NOT EXISTS vigie_ministry_all ON {db}.attendance_marks, {db}.grade_results, {db}.staff_changes, {db}.dead_letters, {db}.connector_heartbeats, {db}.events_per_minute, {db}.dead_letters_per_minute FOR SELECT USING 1 TO vigie_ministry;
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
