-- Offer Sync page, run detail: the alerts raised for one run (sync_alerts is small: a few per run).
SELECT id, rule, severity, measured, threshold, message, link, raised_at
FROM sync_alerts
WHERE run_id = %(run_id)s
ORDER BY raised_at, id
LIMIT %(limit)s
