-- One run's record.
SELECT run_id, status, dry_run, started_at, merged_at, finished_at, duration_s, result, metrics, error,
       extract(epoch FROM now() - started_at) AS elapsed_s
FROM sync_runs WHERE run_id = %(run_id)s
