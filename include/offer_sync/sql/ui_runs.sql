-- Offer Sync page: the latest runs with their counts (newest first). duration_s of a run still in
-- flight is its age so far.
SELECT run_id, status, dry_run, started_at, finished_at,
       COALESCE(duration_s, extract(epoch FROM now() - started_at)) AS duration_s,
       added, updated, unchanged, deactivated, reactivated, rejected, duplicates,
       campaigns_processed, advertisers_processed, error_rate, complete_sweep, error
FROM sync_runs
ORDER BY started_at DESC
LIMIT %(limit)s
