-- The breakdowns the ministry reports student success by: plan d'intervention, language
-- group and immigration generation (harmonized; null where the CSS does not record them).
-- migrate:up
ALTER TABLE {db}.grade_results ADD COLUMN IF NOT EXISTS intervention_plan Nullable(Bool) AFTER sex;
ALTER TABLE {db}.grade_results ADD COLUMN IF NOT EXISTS language_group LowCardinality(Nullable(String)) AFTER intervention_plan;
ALTER TABLE {db}.grade_results ADD COLUMN IF NOT EXISTS immigration LowCardinality(Nullable(String)) AFTER language_group;
-- migrate:down
ALTER TABLE {db}.grade_results DROP COLUMN IF EXISTS immigration;
ALTER TABLE {db}.grade_results DROP COLUMN IF EXISTS language_group;
ALTER TABLE {db}.grade_results DROP COLUMN IF EXISTS intervention_plan;
