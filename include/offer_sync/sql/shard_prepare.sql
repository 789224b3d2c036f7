-- A shard (re)starts from a clean slate: its earlier partial load and page errors are removed -
-- unless the run has already merged (the task was cleared afterwards), whose data is final.
-- One statement; returns whether the run has merged.
WITH run AS (
    SELECT coalesce(bool_or(merged_at IS NOT NULL), false) AS merged
    FROM sync_runs WHERE run_id = %(run_id)s
),
cleared_rows AS (
    DELETE FROM {table}
    WHERE shard = %(shard)s AND NOT (SELECT merged FROM run)
    RETURNING 1
),
cleared_errors AS (
    DELETE FROM sync_page_errors
    WHERE run_id = %(run_id)s AND entity = %(entity)s AND shard = %(shard)s AND NOT (SELECT merged FROM run)
    RETURNING 1
)
SELECT (SELECT merged FROM run) AS merged,
       (SELECT count(*) FROM cleared_rows) AS rows_cleared,
       (SELECT count(*) FROM cleared_errors) AS errors_cleared
