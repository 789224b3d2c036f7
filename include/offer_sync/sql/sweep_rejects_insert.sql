-- Keep every rejected record of the run, raw, with its reason, for inspection. A re-run of the
-- sweep check replaces the run's earlier rejects (the DELETE and the INSERT share one snapshot).
WITH cleared AS (DELETE FROM sync_rejects WHERE run_id = %(run_id)s)
INSERT INTO sync_rejects (run_id, entity, record_key, reason, raw, shard, page)
SELECT %(run_id)s, 'advertisers', trackier_id, reject_reason, raw, shard, page
FROM {advertisers} WHERE status = 'rejected'
UNION ALL
SELECT %(run_id)s, 'campaigns', trackier_id, reject_reason,
       -- an orphan's raw record was not kept in staging; rebuild the useful part of it
       -- (a carried orphan staged no title either: its stored offer's is the same)
       coalesce(raw, jsonb_build_object(
           'id', trackier_id, 'advertiserId', advertiser_ref,
           'title', CASE WHEN carried THEN (SELECT o.title FROM offers AS o WHERE o.trackier_id = s.trackier_id)
                         ELSE title END)::text),
       shard, page
FROM {campaigns} AS s WHERE status = 'rejected'
