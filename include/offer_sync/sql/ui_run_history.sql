-- Offer Sync page, History: the last %(limit)s runs, oldest first (the chart's x axis), with the
-- counts and measurements it plots. Reads sync_runs_started_idx backwards; a run still in flight
-- gets its age so far as its duration. A failed run never reached the merge that fills the count
-- columns: its counts come from the sync_result it recorded (nothing written: 0; what it
-- measured before failing: rejects, error rate).
SELECT run_id, status, dry_run, started_at, finished_at,
       COALESCE(duration_s, extract(epoch FROM now() - started_at)) AS duration_s,
       COALESCE(added, (result ->> 'added')::integer) AS added,
       COALESCE(updated, (result ->> 'updated')::integer) AS updated,
       COALESCE(unchanged, (result ->> 'unchanged')::integer) AS unchanged,
       COALESCE(deactivated, (result ->> 'deactivated')::integer) AS deactivated,
       COALESCE(reactivated, (result ->> 'reactivated')::integer) AS reactivated,
       COALESCE(rejected, (result ->> 'rejected')::integer) AS rejected,
       COALESCE(error_rate, (result ->> 'error_rate')::double precision) AS error_rate,
       COALESCE(complete_sweep, (result ->> 'complete_sweep')::boolean) AS complete_sweep
FROM (
    SELECT *
    FROM sync_runs
    ORDER BY started_at DESC
    LIMIT %(limit)s
) AS latest
ORDER BY started_at, run_id
