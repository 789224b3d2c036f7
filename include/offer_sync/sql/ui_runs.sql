-- Offer Sync page: the latest runs with their counts (newest first). duration_s of a run still in
-- flight is its age so far. A failed run never reached the merge that fills the count columns:
-- its counts come from the sync_result it recorded (nothing written: 0; rejects and error rate as
-- measured before it failed).
SELECT run_id, status, dry_run, started_at, finished_at,
       COALESCE(duration_s, extract(epoch FROM now() - started_at)) AS duration_s,
       COALESCE(added, (result ->> 'added')::integer) AS added,
       COALESCE(updated, (result ->> 'updated')::integer) AS updated,
       COALESCE(unchanged, (result ->> 'unchanged')::integer) AS unchanged,
       COALESCE(deactivated, (result ->> 'deactivated')::integer) AS deactivated,
       COALESCE(reactivated, (result ->> 'reactivated')::integer) AS reactivated,
       COALESCE(rejected, (result ->> 'rejected')::integer) AS rejected,
       COALESCE(duplicates, (result ->> 'duplicates')::integer) AS duplicates,
       COALESCE(campaigns_processed, (result ->> 'campaigns_processed')::integer) AS campaigns_processed,
       COALESCE(advertisers_processed, (result ->> 'advertisers_processed')::integer) AS advertisers_processed,
       COALESCE(error_rate, (result ->> 'error_rate')::double precision) AS error_rate,
       COALESCE(complete_sweep, (result ->> 'complete_sweep')::boolean) AS complete_sweep, error
FROM sync_runs
ORDER BY started_at DESC
LIMIT %(limit)s
