-- start_sync: take the merge lock (no merge is reading staging while we drop leftover tables) and
-- read whether this run has merged already (a cleared start_sync must not restart a finished run).
-- One statement. Its read uses the snapshot taken BEFORE the lock was granted, so a merge of this
-- very run committing meanwhile is not seen here; that is harmless, because runs_start.sql (a
-- later statement, a fresh snapshot) re-checks merged_at itself and never resets a merged run.
-- The merge does not rely on this read: see merge_lock.sql.
WITH merge_lock AS (
    SELECT pg_advisory_xact_lock(hashtext('trackier_offer_sync.merge')) AS taken
)
SELECT r.merged_at, r.result
FROM merge_lock
LEFT JOIN sync_runs AS r ON r.run_id = %(run_id)s
