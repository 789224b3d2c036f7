-- Offer Sync page, run detail: one run's row (counts, timings, the measurements in metrics and
-- the problems its result reports). Explicit columns: the page must not break when sync_runs grows.
-- A failed run has no merge counts in its columns: they come from the sync_result it recorded.
SELECT run_id, dag_id, status, dry_run, started_at, merged_at, finished_at,
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
       COALESCE(brands_added, (result ->> 'brands_added')::integer) AS brands_added,
       COALESCE(brands_updated, (result ->> 'brands_updated')::integer) AS brands_updated,
       COALESCE(error_rate, (result ->> 'error_rate')::double precision) AS error_rate,
       COALESCE(complete_sweep, (result ->> 'complete_sweep')::boolean) AS complete_sweep,
       params, metrics, result -> 'problems' AS problems, result -> 'failed_pages' AS failed_pages, error
FROM sync_runs
WHERE run_id = %(run_id)s
