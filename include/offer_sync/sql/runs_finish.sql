-- Close the run record: final status, duration and the sync_result contract.
UPDATE sync_runs
SET status = %(status)s, finished_at = now(), duration_s = %(duration_s)s,
    result = %(result)s, metrics = %(metrics)s, error = %(error)s
WHERE run_id = %(run_id)s
