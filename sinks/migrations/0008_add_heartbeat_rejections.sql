-- What a connector refused today (malformed rows, whole files), so the status view shows
-- "fichier refusé (n lignes)" for a CSS instead of "silent". Reasons name a column and a
-- rule, never a value or a file name (the stage drops `last_rejection` text: it stays at the
-- CSS; the column is kept for the contract).
-- migrate:up
ALTER TABLE {db}.connector_heartbeats ADD COLUMN IF NOT EXISTS rejected_rows Int64 DEFAULT 0 AFTER connector_version;
ALTER TABLE {db}.connector_heartbeats ADD COLUMN IF NOT EXISTS rejected_files Int64 DEFAULT 0 AFTER rejected_rows;
ALTER TABLE {db}.connector_heartbeats ADD COLUMN IF NOT EXISTS last_rejection Nullable(String) AFTER rejected_files;
ALTER TABLE {db}.connector_heartbeats ADD COLUMN IF NOT EXISTS last_rejection_at Nullable(DateTime64(3, 'UTC')) AFTER last_rejection;
-- migrate:down
ALTER TABLE {db}.connector_heartbeats DROP COLUMN IF EXISTS last_rejection_at;
ALTER TABLE {db}.connector_heartbeats DROP COLUMN IF EXISTS last_rejection;
ALTER TABLE {db}.connector_heartbeats DROP COLUMN IF EXISTS rejected_files;
ALTER TABLE {db}.connector_heartbeats DROP COLUMN IF EXISTS rejected_rows;
