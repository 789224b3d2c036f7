-- Record one alert and return its id; nothing (no row) when this run already raised the same rule.
-- A finished run is checked twice (by publish_result, then by the DAG's success callback), and an
-- operator must get each alert once. Alerts without a run (run_id NULL) are always recorded.
INSERT INTO sync_alerts (run_id, rule, severity, measured, threshold, message, link)
SELECT %(run_id)s::text, %(rule)s, %(severity)s, %(measured)s, %(threshold)s, %(message)s, %(link)s
WHERE %(run_id)s::text IS NULL
   OR NOT EXISTS (SELECT 1 FROM sync_alerts WHERE run_id = %(run_id)s::text AND rule = %(rule)s)
RETURNING id
