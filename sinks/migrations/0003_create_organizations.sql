-- The reference list of school organizations, as the worker last loaded it, so that
-- dashboards can show all 72 (silent ones included) and group them by region.
-- migrate:up
CREATE TABLE IF NOT EXISTS {db}.organizations (
    code LowCardinality(String),
    name String,
    kind LowCardinality(String),
    language LowCardinality(String),
    region_code LowCardinality(String),
    region_name LowCardinality(String),
    students_approx UInt32,
    loaded_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY code;
-- migrate:down
DROP TABLE IF EXISTS {db}.organizations;
