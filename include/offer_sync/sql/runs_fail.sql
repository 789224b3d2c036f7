-- Mark a run failed (the breaker tripped, or a task failed for good), keeping what it measured.
UPDATE sync_runs
SET status = 'failed', finished_at = now(),
    duration_s = extract(epoch FROM now() - started_at),
    error = %(error)s, result = %(result)s
WHERE run_id = %(run_id)s
