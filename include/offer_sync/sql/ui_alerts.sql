-- Offer Sync page: the latest alerts raised by the DAG's callbacks and deadline alerts.
SELECT id, run_id, rule, severity, measured, threshold, message, link, raised_at
FROM sync_alerts
ORDER BY raised_at DESC, id DESC
LIMIT %(limit)s
