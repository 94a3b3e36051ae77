-- The per-minute summaries hold one uniqExact state per minute and organization: in a burst,
-- tens of thousands of event ids each. A merge decoded whole granules of them from every part
-- and built the merged states in blocks of 8,192 rows: at the end of a 7 M-mark day one merge
-- of 5 parts of events_per_minute took 326 MB, the worker's highest RSS (read in
-- system.merges during `vigie bench`). Granules of 256 KB and blocks of 4 rows (1 MB) hold one
-- merge to ~40–50 MB (measured alone in chDB, same inserts). Same states, same counts.
--
-- The granule size is fixed when a table is created, so each table is rebuilt in place (an
-- atomic replace; its columns are those of the table it copies; the materialized views write
-- to the table by name). Run with the sinks
-- stopped, as `vigie up` does: counts a sink adds during the copy would not be copied (the
-- facts themselves are not touched). A cluster's replicated tables keep their granules and
-- take the block sizes in place (sinks/migrate.py, for_cluster).
-- migrate:up
CREATE OR REPLACE TABLE {db}.events_per_minute
ENGINE = AggregatingMergeTree ORDER BY (dataset, css, minute) TTL minute + INTERVAL 400 DAY
SETTINGS index_granularity_bytes = 262144, merge_max_block_size = 4, merge_max_block_size_bytes = 1048576
AS SELECT * FROM {db}.events_per_minute;
CREATE OR REPLACE TABLE {db}.dead_letters_per_minute
ENGINE = AggregatingMergeTree ORDER BY (css, dataset, stage, reason_code, minute) TTL minute + INTERVAL 400 DAY
SETTINGS index_granularity_bytes = 262144, merge_max_block_size = 4, merge_max_block_size_bytes = 1048576
AS SELECT * FROM {db}.dead_letters_per_minute;
-- migrate:down
CREATE OR REPLACE TABLE {db}.dead_letters_per_minute
ENGINE = AggregatingMergeTree ORDER BY (css, dataset, stage, reason_code, minute) TTL minute + INTERVAL 400 DAY
AS SELECT * FROM {db}.dead_letters_per_minute;
CREATE OR REPLACE TABLE {db}.events_per_minute
ENGINE = AggregatingMergeTree ORDER BY (dataset, css, minute) TTL minute + INTERVAL 400 DAY
AS SELECT * FROM {db}.events_per_minute;
