-- Merge this sweep's valid campaigns into offers in one set-based statement, with the audit trail.
--   added       : campaigns new to offers
--   updated     : active offers whose content (or brand) changed; audit keeps old and new values
--   reactivated : inactive offers that are back in the feed (with any content change in the audit)
--   unchanged   : everything else that was seen; those rows are not written at all
-- The old and new documents compared for the audit hold every stored field the content hash
-- covers (source_created included), and `updated` is counted from the audit rows written, which
-- need a non-empty diff: every counted update has its diff. (A row whose hash changed while no
-- stored value did - impossible with today's hash - would be rewritten, not counted, not audited.)
-- All CTEs read one snapshot, so `old` holds the values from before the UPDATE. Unchanged rows are
-- recognised on narrow columns and never read in full, which is what makes a resync cheap.
-- Carried campaigns (staging.carried: the fingerprint was a stored offer's, so only the id, the
-- advertiser id and content_hash were staged, see trackier/fingerprint.py) are unchanged by
-- construction; when one must be written anyway (its brand changed, or it was deactivated while
-- this run fetched), its values are taken from its stored row: the record that produced them had
-- this very fingerprint. `lost` counts carried campaigns whose offer is gone (nothing in this
-- package deletes offers): merge.py fails the run rather than drop them.
WITH keyed AS (
    -- Narrow first: every valid staged campaign with the brand it resolves to.
    SELECT s.seq, s.trackier_id, s.content_hash, s.carried, b.id AS brand_id
    FROM {campaigns} AS s
    JOIN {aliases} AS a ON a.alias = s.advertiser_ref
    JOIN brands AS b ON b.trackier_id = a.trackier_id
    WHERE s.status = 'valid'
),
todo AS (
    -- Compare on the narrow columns only (hash, brand, active flag): on a resync most rows stop here.
    SELECT k.seq, k.carried, k.brand_id, o.id AS offer_id, o.is_active AS was_active
    FROM keyed AS k
    LEFT JOIN offers AS o ON o.trackier_id = k.trackier_id
    WHERE o.id IS NULL
       OR o.content_hash IS DISTINCT FROM k.content_hash
       OR o.brand_id IS DISTINCT FROM k.brand_id
       OR NOT o.is_active
),
src AS (
    -- The wide columns, read only for new and changed campaigns.
    SELECT s.trackier_id, s.hash_id, t.brand_id, s.title, s.description,
           s.offer_status AS status, s.visibility, s.currency, s.comm_model, s.payout,
           s.payout_currency, s.revenue, coalesce(s.payouts, '[]'::jsonb) AS payouts,
           coalesce(s.geo, ARRAY[]::text[]) AS geo, coalesce(s.device, ARRAY[]::text[]) AS device,
           coalesce(s.os, ARRAY[]::text[]) AS os, coalesce(s.categories, ARRAY[]::text[]) AS categories,
           s.url, s.preview_url, s.source_created, s.source_modified, s.content_hash,
           t.offer_id, t.was_active
    FROM todo AS t
    JOIN (SELECT * FROM {campaigns} AS x WHERE x.seq IN (SELECT seq FROM todo WHERE NOT carried)) AS s
      ON s.seq = t.seq
    -- The planner expects every staged row in todo and, joining todo to staging directly, hashed
    -- all of staging (wide rows: more than work_mem at a million). The IN lets it hash todo's seqs
    -- instead and only scan staging, keeping the changed rows. And a one-time filter: on a resync
    -- where nothing changed, todo is empty and staging is not read a second time at all.
    WHERE EXISTS (SELECT 1 FROM todo WHERE NOT carried)
    UNION ALL
    -- A carried campaign to write (new brand, or reactivated): its stored values, its new brand.
    SELECT o.trackier_id, o.hash_id, t.brand_id, o.title, o.description, o.status, o.visibility,
           o.currency, o.comm_model, o.payout, o.payout_currency, o.revenue, o.payouts, o.geo,
           o.device, o.os, o.categories, o.url, o.preview_url, o.source_created, o.source_modified,
           o.content_hash, t.offer_id, t.was_active
    FROM todo AS t
    JOIN offers AS o ON o.id = t.offer_id
    WHERE t.carried
),
changed AS (
    SELECT * FROM src WHERE offer_id IS NOT NULL
),
updated AS (
    UPDATE offers AS o
    SET hash_id = c.hash_id, brand_id = c.brand_id, title = c.title, description = c.description,
        status = c.status, visibility = c.visibility, currency = c.currency, comm_model = c.comm_model,
        payout = c.payout, payout_currency = c.payout_currency, revenue = c.revenue, payouts = c.payouts,
        geo = c.geo, device = c.device, os = c.os, categories = c.categories, url = c.url,
        preview_url = c.preview_url, source_created = c.source_created,
        source_modified = c.source_modified, content_hash = c.content_hash, is_active = true,
        deactivated_at = NULL, updated_at = now(), last_sync_run_id = %(run_id)s
    FROM changed AS c
    WHERE o.id = c.offer_id
    RETURNING o.id
),
inserted AS (
    INSERT INTO offers (trackier_id, hash_id, brand_id, title, description, status, visibility,
                        currency, comm_model, payout, payout_currency, revenue, payouts, geo, device,
                        os, categories, url, preview_url, source_created, source_modified,
                        content_hash, last_sync_run_id)
    SELECT trackier_id, hash_id, brand_id, title, description, status, visibility,
           currency, comm_model, payout, payout_currency, revenue, payouts, geo, device,
           os, categories, url, preview_url, source_created, source_modified,
           content_hash, %(run_id)s
    FROM src
    WHERE offer_id IS NULL
    RETURNING id, trackier_id
),
audit_inserted AS (
    INSERT INTO offer_audit (run_id, offer_id, trackier_id, action, changes)
    SELECT %(run_id)s, id, trackier_id, 'inserted', NULL FROM inserted
    RETURNING 1
),
diffs AS MATERIALIZED (
    -- What changed, column by column (each changed column: its old and new value): one term per stored
    -- column, built only for a column whose value differs (usually one or two), NULL when none does.
    -- Building both whole rows as jsonb and pairing their keys instead took the merge of a 100k
    -- resync with a tenth of the payouts changed from 0.73 s to 1.05-1.19 s (same counts and audit rows).
    -- MATERIALIZED: referenced once, this CTE would be inlined into audit_changed, and its
    -- `changes IS NOT NULL` filter would build the diff a second time per row.
    -- The old values are read per changed offer through the primary key (LATERAL ... OFFSET 0 keeps
    -- the planner from turning it into a hash of the whole offers table, which it did, estimating
    -- every staged row as changed). All CTEs share one snapshot: these are the values from before
    -- the UPDATE.
    SELECT c.offer_id, c.trackier_id, c.was_active,
           nullif(CASE WHEN o.brand_id IS DISTINCT FROM c.brand_id THEN jsonb_build_object('brand_id', jsonb_build_object('old', o.brand_id, 'new', c.brand_id)) ELSE '{{}}' END
             || CASE WHEN o.title IS DISTINCT FROM c.title THEN jsonb_build_object('title', jsonb_build_object('old', o.title, 'new', c.title)) ELSE '{{}}' END
             || CASE WHEN o.description IS DISTINCT FROM c.description THEN jsonb_build_object('description', jsonb_build_object('old', o.description, 'new', c.description)) ELSE '{{}}' END
             || CASE WHEN o.status IS DISTINCT FROM c.status THEN jsonb_build_object('status', jsonb_build_object('old', o.status, 'new', c.status)) ELSE '{{}}' END
             || CASE WHEN o.visibility IS DISTINCT FROM c.visibility THEN jsonb_build_object('visibility', jsonb_build_object('old', o.visibility, 'new', c.visibility)) ELSE '{{}}' END
             || CASE WHEN o.currency IS DISTINCT FROM c.currency THEN jsonb_build_object('currency', jsonb_build_object('old', o.currency, 'new', c.currency)) ELSE '{{}}' END
             || CASE WHEN o.comm_model IS DISTINCT FROM c.comm_model THEN jsonb_build_object('comm_model', jsonb_build_object('old', o.comm_model, 'new', c.comm_model)) ELSE '{{}}' END
             || CASE WHEN o.payout IS DISTINCT FROM c.payout THEN jsonb_build_object('payout', jsonb_build_object('old', o.payout, 'new', c.payout)) ELSE '{{}}' END
             || CASE WHEN o.payout_currency IS DISTINCT FROM c.payout_currency THEN jsonb_build_object('payout_currency', jsonb_build_object('old', o.payout_currency, 'new', c.payout_currency)) ELSE '{{}}' END
             || CASE WHEN o.revenue IS DISTINCT FROM c.revenue THEN jsonb_build_object('revenue', jsonb_build_object('old', o.revenue, 'new', c.revenue)) ELSE '{{}}' END
             || CASE WHEN o.payouts IS DISTINCT FROM c.payouts THEN jsonb_build_object('payouts', jsonb_build_object('old', o.payouts, 'new', c.payouts)) ELSE '{{}}' END
             || CASE WHEN o.geo IS DISTINCT FROM c.geo THEN jsonb_build_object('geo', jsonb_build_object('old', o.geo, 'new', c.geo)) ELSE '{{}}' END
             || CASE WHEN o.device IS DISTINCT FROM c.device THEN jsonb_build_object('device', jsonb_build_object('old', o.device, 'new', c.device)) ELSE '{{}}' END
             || CASE WHEN o.os IS DISTINCT FROM c.os THEN jsonb_build_object('os', jsonb_build_object('old', o.os, 'new', c.os)) ELSE '{{}}' END
             || CASE WHEN o.categories IS DISTINCT FROM c.categories THEN jsonb_build_object('categories', jsonb_build_object('old', o.categories, 'new', c.categories)) ELSE '{{}}' END
             || CASE WHEN o.url IS DISTINCT FROM c.url THEN jsonb_build_object('url', jsonb_build_object('old', o.url, 'new', c.url)) ELSE '{{}}' END
             || CASE WHEN o.preview_url IS DISTINCT FROM c.preview_url THEN jsonb_build_object('preview_url', jsonb_build_object('old', o.preview_url, 'new', c.preview_url)) ELSE '{{}}' END
             || CASE WHEN o.hash_id IS DISTINCT FROM c.hash_id THEN jsonb_build_object('hash_id', jsonb_build_object('old', o.hash_id, 'new', c.hash_id)) ELSE '{{}}' END
             || CASE WHEN o.source_created IS DISTINCT FROM c.source_created THEN jsonb_build_object('source_created', jsonb_build_object('old', o.source_created, 'new', c.source_created)) ELSE '{{}}' END
             || CASE WHEN o.source_modified IS DISTINCT FROM c.source_modified THEN jsonb_build_object('source_modified', jsonb_build_object('old', o.source_modified, 'new', c.source_modified)) ELSE '{{}}' END
             || CASE WHEN NOT o.is_active THEN jsonb_build_object('is_active', jsonb_build_object('old', false, 'new', true)) ELSE '{{}}' END,
                  '{{}}'::jsonb) AS changes
    FROM changed AS c
    CROSS JOIN LATERAL (SELECT * FROM offers AS x WHERE x.id = c.offer_id OFFSET 0) AS o
),
audit_changed AS (
    -- A reactivation always has a diff (is_active); an update only when a stored value changed.
    INSERT INTO offer_audit (run_id, offer_id, trackier_id, action, changes)
    SELECT %(run_id)s, offer_id, trackier_id, CASE WHEN was_active THEN 'updated' ELSE 'reactivated' END, changes
    FROM diffs
    WHERE changes IS NOT NULL
    RETURNING action
)
SELECT (SELECT count(*) FROM inserted)                                   AS added,
       (SELECT count(*) FROM audit_changed WHERE action = 'updated')     AS updated,
       (SELECT count(*) FROM audit_changed WHERE action = 'reactivated') AS reactivated,
       (SELECT count(*) FROM keyed)                                      AS seen,
       (SELECT count(*) FROM updated)                                    AS rows_updated,
       (SELECT count(*) FROM audit_inserted) + (SELECT count(*) FROM audit_changed) AS audit_rows,
       (SELECT count(*) FROM todo WHERE carried AND offer_id IS NULL)         AS lost
