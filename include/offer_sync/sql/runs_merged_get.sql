-- Has this run already merged? (A cleared and re-run merge task must not merge twice.)
SELECT merged_at, result FROM sync_runs WHERE run_id = %(run_id)s FOR UPDATE
