-- The breakdowns the ministry reports student success by: plan d'intervention, language
-- group and immigration generation (harmonized; null where the CSS does not record them).
-- migrate:up
ALTER TABLE {db}.grade_results ADD COLUMN intervention_plan Nullable(Bool) AFTER sex;
ALTER TABLE {db}.grade_results ADD COLUMN language_group LowCardinality(Nullable(String)) AFTER intervention_plan;
ALTER TABLE {db}.grade_results ADD COLUMN immigration LowCardinality(Nullable(String)) AFTER language_group;
-- migrate:down
ALTER TABLE {db}.grade_results DROP COLUMN immigration;
ALTER TABLE {db}.grade_results DROP COLUMN language_group;
ALTER TABLE {db}.grade_results DROP COLUMN intervention_plan;
