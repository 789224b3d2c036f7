-- A shard's try (re)starts from a clean slate, in one statement that returns what to do:
--   merged     : the run has already merged (the task was cleared afterwards): its data is final,
--                nothing is removed, the caller writes nothing.
--   newer_try  : a NEWER try of this shard has already started (this try is a zombie that woke
--                up late): nothing is removed, the caller writes nothing.
-- Otherwise this try is recorded in {tries}, the shard's rows of this and earlier tries and its
-- page errors are removed, and the run's staging lock is taken SHARED for the rest of this
-- session (the connection): the sweep check waits for it (sweep_seal.sql), so rows of a try still
-- loading always land before the check. Two tries that prepared at the same time both load; the
-- check keeps only the newest try's rows (sweep_mark_duplicates.sql).
--   known      : for a campaign shard that goes ahead, the run's snapshot of the active offers'
--                fingerprints (staging_create.sql), one row per chunk in ascending order, each
--                row repeating the columns above: the caller streams them (single-row mode) into
--                one array. Returned here, not by a query of its own, so that a shard still costs
--                two statements (prepare and COPY) and a sync stays under 50 at a million offers.
--                Any other shard gets one row, with known NULL.
WITH run AS (
    SELECT coalesce(bool_or(merged_at IS NOT NULL), false) AS merged
    FROM sync_runs WHERE run_id = %(run_id)s
),
newer AS (
    SELECT max(try_number) AS try_number FROM {tries}
    WHERE entity = %(entity)s AND shard = %(shard)s AND try_number > %(try_number)s
),
go AS (
    SELECT NOT (SELECT merged FROM run) AND (SELECT try_number FROM newer) IS NULL AS ok
),
staging_lock AS (
    SELECT pg_advisory_lock_shared(hashtext('trackier_offer_sync.staging'), hashtext(%(run_id)s)) AS taken
    WHERE (SELECT ok FROM go)
),
registered AS (
    INSERT INTO {tries} (entity, shard, try_number)
    SELECT %(entity)s, %(shard)s, %(try_number)s WHERE (SELECT ok FROM go)
    RETURNING 1
),
cleared_rows AS (
    -- Staging has no index: this DELETE scans the whole table (a million rows by the last shard of a
    -- large sweep). A shard's rows are always loaded by a try registered in {tries} (in this very
    -- statement), so without an earlier try of this shard there is nothing to delete, and the
    -- one-time EXISTS filter skips the scan: the usual first try of every shard costs no scan.
    DELETE FROM {table}
    WHERE shard = %(shard)s AND try_number <= %(try_number)s AND (SELECT ok FROM go)
      AND EXISTS (SELECT 1 FROM {tries} WHERE entity = %(entity)s AND shard = %(shard)s
                                          AND try_number <= %(try_number)s)
    RETURNING 1
),
cleared_errors AS (
    DELETE FROM sync_page_errors
    WHERE run_id = %(run_id)s AND entity = %(entity)s AND shard = %(shard)s AND (SELECT ok FROM go)
    RETURNING 1
),
outcome AS (
    SELECT (SELECT merged FROM run) AS merged,
           (SELECT try_number FROM newer) AS newer_try,
           (SELECT count(*) FROM staging_lock) AS locked,
           (SELECT count(*) FROM cleared_rows) AS rows_cleared,
           (SELECT count(*) FROM cleared_errors) AS errors_cleared,
           (SELECT ok FROM go) AND %(entity)s = 'campaigns' AS wants_known
)
SELECT o.merged, o.newer_try, o.locked, o.rows_cleared, o.errors_cleared,
       sum(length(k.fingerprints)) OVER () AS known_bytes, k.fingerprints AS known
FROM outcome AS o
LEFT JOIN {known} AS k ON o.wants_known
ORDER BY k.chunk
