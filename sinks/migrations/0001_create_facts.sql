-- Fact tables per dataset, dead letters and connector heartbeats.
-- Fact tables are ReplacingMergeTree keyed by the source row (record_key): a
-- redelivered or re-harmonized event replaces its own row, a correction (newer
-- row_version, the connector's detection time) replaces the previous version, and a
-- deletion (is_deleted = 1) hides the row. Read with FINAL.
-- migrate:up
CREATE TABLE IF NOT EXISTS {db}.attendance_marks (
    event_id String,
    record_key String,
    css LowCardinality(String),
    school_code String,
    group_code String,
    period UInt8,
    sheet_date Date,
    student_pseudonym String,
    key_id LowCardinality(String),
    age_band LowCardinality(Nullable(String)),
    status LowCardinality(String),
    absence_reason LowCardinality(Nullable(String)),
    reason_mapped Bool,
    occurred_at DateTime64(3, 'UTC'),
    detected_at DateTime64(3, 'UTC'),
    mapping_version LowCardinality(String),
    processed_at DateTime64(3, 'UTC'),
    row_version UInt64,
    is_deleted UInt8,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(row_version, is_deleted)
PARTITION BY toYYYYMM(sheet_date)
ORDER BY (css, sheet_date, record_key);

CREATE TABLE IF NOT EXISTS {db}.grade_results (
    event_id String,
    record_key String,
    css LowCardinality(String),
    school_code String,
    group_code String,
    level LowCardinality(String),
    subject_code LowCardinality(String),
    competency_code LowCardinality(String),
    etape UInt8,
    evaluation_date Date,
    student_pseudonym String,
    key_id LowCardinality(String),
    age_band LowCardinality(Nullable(String)),
    sex LowCardinality(Nullable(String)),
    result_percent Nullable(Float64),
    result_band LowCardinality(Nullable(String)),
    passed Bool,
    occurred_at DateTime64(3, 'UTC'),
    detected_at DateTime64(3, 'UTC'),
    mapping_version LowCardinality(String),
    processed_at DateTime64(3, 'UTC'),
    row_version UInt64,
    is_deleted UInt8,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(row_version, is_deleted)
PARTITION BY toYYYYMM(evaluation_date)
ORDER BY (css, evaluation_date, record_key);

CREATE TABLE IF NOT EXISTS {db}.staff_changes (
    event_id String,
    record_key String,
    css LowCardinality(String),
    staff_pseudonym String,
    key_id LowCardinality(String),
    age_band LowCardinality(Nullable(String)),
    job_class LowCardinality(String),
    change_type LowCardinality(String),
    leave_type LowCardinality(Nullable(String)),
    school_code Nullable(String),
    legally_qualified Nullable(Bool),
    effective_date Date,
    occurred_at DateTime64(3, 'UTC'),
    detected_at DateTime64(3, 'UTC'),
    mapping_version LowCardinality(String),
    processed_at DateTime64(3, 'UTC'),
    row_version UInt64,
    is_deleted UInt8,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(row_version, is_deleted)
ORDER BY (css, record_key);

-- Dead letters keep the reason, never the payload (it may hold identifiers).
CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    dead_letter_id String,
    failed_at DateTime64(3, 'UTC'),
    stage LowCardinality(String),
    reason_code LowCardinality(String),
    reason String,
    source_topic String,
    source_partition Int32,
    source_offset Int64,
    css LowCardinality(Nullable(String)),
    dataset LowCardinality(Nullable(String)),
    event_id Nullable(String),
    record_count UInt32,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(failed_at)
ORDER BY dead_letter_id;

CREATE TABLE IF NOT EXISTS {db}.connector_heartbeats (
    css LowCardinality(String),
    connector_id String,
    sent_at DateTime64(3, 'UTC'),
    outbox_depth Int64,
    last_send_at Nullable(DateTime64(3, 'UTC')),
    source_lag_s Nullable(Float64),
    connector_version String,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY (css, connector_id, sent_at)
TTL toDateTime(sent_at) + INTERVAL 30 DAY;
-- migrate:down
DROP TABLE IF EXISTS {db}.connector_heartbeats;
DROP TABLE IF EXISTS {db}.dead_letters;
DROP TABLE IF EXISTS {db}.staff_changes;
DROP TABLE IF EXISTS {db}.grade_results;
DROP TABLE IF EXISTS {db}.attendance_marks;
