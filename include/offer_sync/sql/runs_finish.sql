-- Close the run record: final status, duration and the sync_result contract (whose duration_s and
-- dry_run come from the row itself). A run that already finished is left alone: no row returned.
UPDATE sync_runs
SET status = %(status)s,
    finished_at = now(),
    duration_s = round(extract(epoch FROM now() - started_at)::numeric, 3),
    result = %(result)s::jsonb || jsonb_build_object(
        'duration_s', round(extract(epoch FROM now() - started_at)::numeric, 3),
        'dry_run', dry_run),
    metrics = %(metrics)s,
    error = %(error)s
WHERE run_id = %(run_id)s
  AND NOT (merged_at IS NOT NULL AND status IN ('completed', 'completed_with_errors') AND result IS NOT NULL)
RETURNING result
