-- Offer Sync page, offer lookup: one offer's current row with its brand and, when it is inactive,
-- the audit row and run that deactivated it ("why is this offer inactive?").
SELECT o.id, o.trackier_id, o.hash_id, o.title, o.description, o.status, o.visibility, o.currency,
       o.comm_model, o.payout, o.payout_currency, o.revenue, o.payouts, o.geo, o.device, o.os,
       o.categories, o.url, o.preview_url, o.source_created, o.source_modified, o.is_active,
       o.deactivated_at, o.first_seen_at, o.updated_at, o.last_sync_run_id,
       b.trackier_id AS brand_trackier_id, b.name AS brand,
       d.run_id AS deactivated_by, d.recorded_at AS deactivation_recorded_at,
       r.started_at AS deactivation_run_started_at, r.status AS deactivation_run_status,
       r.complete_sweep AS deactivation_run_complete_sweep
FROM offers AS o
JOIN brands AS b ON b.id = o.brand_id
LEFT JOIN LATERAL (
    SELECT a.run_id, a.recorded_at
    FROM offer_audit AS a
    WHERE a.offer_id = o.id AND a.action = 'deactivated' AND NOT o.is_active
    ORDER BY a.recorded_at DESC, a.id DESC
    LIMIT 1
) AS d ON true
LEFT JOIN sync_runs AS r ON r.run_id = d.run_id
WHERE o.trackier_id = %(trackier_id)s
