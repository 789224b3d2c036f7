-- A re-run of the sweep check records this run's rejects afresh.
DELETE FROM sync_rejects WHERE run_id = %(run_id)s
