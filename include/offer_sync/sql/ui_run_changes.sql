-- Offer Sync page, run detail: one page of a run's changes of one kind (inserted, updated,
-- deactivated, reactivated) from the audit trail, keyset-paginated on id through the
-- offer_audit (run_id, action, id) index, with the offer's current title and state.
SELECT a.id, a.offer_id, a.trackier_id, a.action, a.changes, a.recorded_at, o.title, o.is_active
FROM offer_audit AS a
LEFT JOIN offers AS o ON o.id = a.offer_id
WHERE a.run_id = %(run_id)s
  AND a.action = %(action)s
  AND a.id > %(after)s
ORDER BY a.id
LIMIT %(limit)s
