-- The offer merge when `offers` is EMPTY (the first sync into a fresh database; merge.py picks it
-- from merge_brands.sql's `offers_empty`, read under the merge lock, so no other merge can fill the
-- table in between). Every valid campaign is then new: there is nothing to compare, update,
-- reactivate or diff, so the general merge_offers.sql's narrow compare, its second pass over
-- staging for the wide columns and its change detection are skipped, and the rows go straight
-- from staging into offers. Same result and audit as merge_offers.sql on an empty table: one
-- offers row and one 'inserted' audit row per valid campaign whose advertiser resolves to a
-- brand, the same output columns (updated and reactivated are 0, seen = added). No campaign can be
-- carried (staged without its values, see merge_offers.sql) into an empty table: merge.py fails
-- the run before this statement if the extract tasks reported any (`lost` is then theirs).
WITH inserted AS (
    INSERT INTO offers (trackier_id, hash_id, brand_id, title, description, status, visibility,
                        currency, comm_model, payout, payout_currency, revenue, payouts, geo, device,
                        os, categories, url, preview_url, source_created, source_modified,
                        content_hash, last_sync_run_id)
    SELECT s.trackier_id, s.hash_id, b.id, s.title, s.description, s.offer_status, s.visibility,
           s.currency, s.comm_model, s.payout, s.payout_currency, s.revenue,
           coalesce(s.payouts, '[]'::jsonb), coalesce(s.geo, ARRAY[]::text[]),
           coalesce(s.device, ARRAY[]::text[]), coalesce(s.os, ARRAY[]::text[]),
           coalesce(s.categories, ARRAY[]::text[]), s.url, s.preview_url, s.source_created,
           s.source_modified, s.content_hash, %(run_id)s
    FROM {campaigns} AS s
    JOIN {aliases} AS a ON a.alias = s.advertiser_ref
    JOIN brands AS b ON b.trackier_id = a.trackier_id
    WHERE s.status = 'valid' AND NOT s.carried
    RETURNING id, trackier_id
),
audit_inserted AS (
    INSERT INTO offer_audit (run_id, offer_id, trackier_id, action, changes)
    SELECT %(run_id)s, id, trackier_id, 'inserted', NULL FROM inserted
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted)       AS added,
       0::bigint                             AS updated,
       0::bigint                             AS reactivated,
       (SELECT count(*) FROM inserted)       AS seen,
       0::bigint                             AS rows_updated,
       (SELECT count(*) FROM audit_inserted) AS audit_rows,
       0::bigint                             AS lost
