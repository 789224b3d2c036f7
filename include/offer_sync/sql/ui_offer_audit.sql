-- Offer Sync page, offer lookup: one offer's audit trail, newest first, keyset-paginated on id
-- (%(before)s: the last id of the previous page), with the status of the run behind each change.
SELECT a.id, a.run_id, a.action, a.changes, a.recorded_at,
       r.status AS run_status, r.started_at AS run_started_at, r.dry_run AS run_dry_run
FROM offer_audit AS a
LEFT JOIN sync_runs AS r ON r.run_id = a.run_id
WHERE a.offer_id = %(offer_id)s
  AND (%(before)s::bigint IS NULL OR a.id < %(before)s::bigint)
ORDER BY a.id DESC
LIMIT %(limit)s
