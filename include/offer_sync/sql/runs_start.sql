-- Open (or re-open, when the first task is cleared and run again) this run's record.
INSERT INTO sync_runs (run_id, dag_id, status, dry_run, params, plan, started_at)
VALUES (%(run_id)s, %(dag_id)s, 'running', %(dry_run)s, %(params)s, %(plan)s, %(started_at)s)
ON CONFLICT (run_id) DO UPDATE
SET status = CASE WHEN sync_runs.merged_at IS NULL THEN 'running' ELSE sync_runs.status END,
    params = excluded.params, plan = excluded.plan, error = NULL
