-- Open this run's record, or re-open it when start_sync runs again (a retry, or the run cleared
-- and re-run). A run that has not merged starts over as a new sweep: started_at is now (the
-- database's clock, the one clock every deployment shares: it orders overlapping sweeps, see
-- merge_brands.sql), and everything the earlier attempt recorded - result, counts, error,
-- metrics, finish time, its rejects and page errors - is cleared, so that the duration, the
-- Offer Sync page and the alerts describe this attempt only. A run that has merged keeps
-- everything: its results are final. One statement.
WITH fresh AS (
    -- Whether the run may start over (read here, in this statement's snapshot, which was taken
    -- after start_sync took the merge lock in its previous statement).
    SELECT NOT EXISTS (
        SELECT 1 FROM sync_runs WHERE run_id = %(run_id)s AND merged_at IS NOT NULL
    ) AS ok
),
cleared_rejects AS (
    DELETE FROM sync_rejects WHERE run_id = %(run_id)s AND (SELECT ok FROM fresh)
    RETURNING 1
),
cleared_page_errors AS (
    DELETE FROM sync_page_errors WHERE run_id = %(run_id)s AND (SELECT ok FROM fresh)
    RETURNING 1
)
INSERT INTO sync_runs AS r (run_id, dag_id, status, dry_run, params, plan, started_at)
-- (the clean-ups above run although nothing reads them: data-modifying CTEs always run to completion)
VALUES (%(run_id)s, %(dag_id)s, 'running', %(dry_run)s, %(params)s, %(plan)s, now())
ON CONFLICT (run_id) DO UPDATE
SET status = CASE WHEN r.merged_at IS NULL THEN 'running' ELSE r.status END,
    params = excluded.params, plan = excluded.plan,
    dry_run = CASE WHEN r.merged_at IS NULL THEN excluded.dry_run ELSE r.dry_run END,
    started_at = CASE WHEN r.merged_at IS NULL THEN now() ELSE r.started_at END,
    error = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.error END,
    finished_at = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.finished_at END,
    duration_s = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.duration_s END,
    result = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.result END,
    metrics = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.metrics END,
    added = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.added END,
    updated = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.updated END,
    unchanged = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.unchanged END,
    deactivated = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.deactivated END,
    reactivated = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.reactivated END,
    rejected = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.rejected END,
    duplicates = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.duplicates END,
    campaigns_processed = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.campaigns_processed END,
    advertisers_processed = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.advertisers_processed END,
    brands_added = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.brands_added END,
    brands_updated = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.brands_updated END,
    error_rate = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.error_rate END,
    complete_sweep = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.complete_sweep END,
    event_emitted_at = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.event_emitted_at END,
    event_claimed_try = CASE WHEN r.merged_at IS NULL THEN NULL ELSE r.event_claimed_try END
