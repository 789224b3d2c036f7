-- Offers that a COMPLETE sweep did not see at all are gone from Trackier: deactivate them (never
-- delete) and audit it. "Seen" includes rejected and duplicate records: an offer whose record
-- came back invalid still exists, so it keeps its last good values instead.
-- Guard: when more than %(max_rate)s of the active offers would go at once (an empty or truncated
-- feed that still looks complete), nothing is deactivated and the caller reports why.
WITH candidates AS (
    SELECT o.id, o.trackier_id
    FROM offers AS o
    WHERE o.is_active
      AND NOT EXISTS (SELECT 1 FROM {campaigns} AS s WHERE s.trackier_id = o.trackier_id)
),
verdict AS (
    SELECT (SELECT count(*) FROM candidates) AS would,
           (SELECT count(*) FROM offers WHERE is_active) AS active
),
gone AS (
    UPDATE offers AS o
    SET is_active = false, deactivated_at = now(), updated_at = now(), last_sync_run_id = %(run_id)s
    FROM candidates AS c, verdict AS v
    WHERE o.id = c.id
      AND v.would <= %(max_rate)s * v.active
    RETURNING o.id, o.trackier_id
),
audit AS (
    INSERT INTO offer_audit (run_id, offer_id, trackier_id, action, changes)
    SELECT %(run_id)s, id, trackier_id, 'deactivated',
           jsonb_build_object('is_active', jsonb_build_object('old', true, 'new', false))
    FROM gone
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS deactivated,
       (SELECT would FROM verdict)  AS would_deactivate,
       (SELECT active FROM verdict) AS active_before,
       (SELECT count(*) FROM audit) AS audit_rows
