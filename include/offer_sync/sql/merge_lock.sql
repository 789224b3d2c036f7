-- One merge at a time per database, whoever starts it (nightly run, manual trigger, another
-- deployment): held until this transaction commits or rolls back.
SELECT pg_advisory_xact_lock(hashtext('trackier_offer_sync.merge'))
