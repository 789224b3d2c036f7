-- Take the merge lock - one merge at a time per database, whoever starts it (nightly run, manual
-- trigger, another deployment); held until the transaction ends - and read whether this run has
-- already merged (a cleared and re-run merge task must not merge twice). One statement.
WITH merge_lock AS (
    SELECT pg_advisory_xact_lock(hashtext('trackier_offer_sync.merge')) AS taken
)
SELECT r.merged_at, r.result
FROM merge_lock
LEFT JOIN sync_runs AS r ON r.run_id = %(run_id)s
