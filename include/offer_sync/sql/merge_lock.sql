-- The merge lock: one merge at a time per database, whoever starts it (nightly run, manual trigger,
-- another deployment); held until the transaction ends. A statement of its own, on purpose: a
-- statement that waits for a lock keeps the snapshot it started with, so whatever the merge must
-- see of the merge that held the lock before it (merged_at, which sweep merged last) is read by
-- the NEXT statement (merge_brands.sql).
SELECT pg_advisory_xact_lock(hashtext('trackier_offer_sync.merge'))
