-- The merge's counts, committed in the same transaction as the merge itself.
UPDATE sync_runs
SET merged_at = CASE WHEN %(dry_run)s THEN NULL ELSE now() END,
    added = %(added)s, updated = %(updated)s, unchanged = %(unchanged)s,
    deactivated = %(deactivated)s, reactivated = %(reactivated)s, rejected = %(rejected)s,
    duplicates = %(duplicates)s, campaigns_processed = %(campaigns_processed)s,
    advertisers_processed = %(advertisers_processed)s, brands_added = %(brands_added)s,
    brands_updated = %(brands_updated)s, error_rate = %(error_rate)s,
    complete_sweep = %(complete_sweep)s, result = %(result)s, metrics = %(metrics)s
WHERE run_id = %(run_id)s
