-- The brands step of the merge, and the gate in front of the whole merge. One statement, run right
-- after merge_lock.sql took the merge lock, so that its snapshot includes every merge committed
-- before ours (a statement that waits for a lock still reads the snapshot it started with).
--
-- Gate: nothing is written when this run has already merged (a retried or cleared merge task:
-- the caller returns the recorded result) or when a sweep that STARTED LATER than this one has
-- already merged (merging this older sweep would revert newer data: the caller fails the run).
-- Sweeps are ordered by sync_runs.started_at (the database clock at start_sync); dry runs never
-- merge, so they never count.
--
-- Brands (when the gate is open):
--   added / updated : this sweep's valid advertisers upserted; unchanged rows are not touched
--   reactivated     : inactive brands that are listed again (is_active back to true, audited)
--   deactivated     : active brands a COMPLETE sweep no longer lists at all (%(deactivate)s), never
--                     deleted, audited. "Listed" includes rejected and duplicate records, as for
--                     offers. Guard: when more than %(max_rate)s of the active brands would go at
--                     once, none do and the caller reports why.
-- offers_empty: whether `offers` holds no row at all, read under the merge lock (only merges write
-- offers): merge.py then takes the first-sync path (merge_offers_first.sql) and skips the offer
-- deactivation, which has nothing to find in a table that only holds this sweep's rows.
WITH run AS (
    SELECT r.merged_at, r.result, r.started_at, newer.run_id AS newer_run_id,
           newer.started_at AS newer_started_at
    FROM sync_runs AS r
    LEFT JOIN LATERAL (
        SELECT n.run_id, n.started_at
        FROM sync_runs AS n
        WHERE n.merged_at IS NOT NULL AND NOT n.dry_run
          AND n.run_id <> r.run_id AND n.started_at > r.started_at
        ORDER BY n.started_at DESC
        LIMIT 1
    ) AS newer ON true
    WHERE r.run_id = %(run_id)s
),
gate AS (
    SELECT NOT EXISTS (SELECT 1 FROM run WHERE merged_at IS NOT NULL OR newer_run_id IS NOT NULL) AS open
),
listed AS (
    SELECT s.*
    FROM {advertisers} AS s
    WHERE s.status = 'valid' AND (SELECT open FROM gate)
),
was_inactive AS (
    SELECT b.id FROM brands AS b JOIN listed AS s ON s.trackier_id = b.trackier_id WHERE NOT b.is_active
),
upserted AS (
    INSERT INTO brands AS b (trackier_id, long_id, hash_id, name, company, email, category, status,
                             currency, tags, source_created, source_modified, content_hash,
                             last_sync_run_id)
    SELECT trackier_id, long_id, hash_id, name, company, email, category, brand_status,
           currency, coalesce(tags, ARRAY[]::text[]), source_created, source_modified, content_hash,
           %(run_id)s
    FROM listed
    ON CONFLICT (trackier_id) DO UPDATE
    SET long_id = excluded.long_id, hash_id = excluded.hash_id, name = excluded.name,
        company = excluded.company, email = excluded.email, category = excluded.category,
        status = excluded.status, currency = excluded.currency, tags = excluded.tags,
        source_created = excluded.source_created, source_modified = excluded.source_modified,
        content_hash = excluded.content_hash, is_active = true, deactivated_at = NULL,
        updated_at = now(), last_sync_run_id = excluded.last_sync_run_id
    WHERE b.content_hash IS DISTINCT FROM excluded.content_hash OR NOT b.is_active
    RETURNING b.id, b.trackier_id, (xmax = 0) AS inserted
),
candidates AS (
    SELECT b.id, b.trackier_id
    FROM brands AS b
    WHERE %(deactivate)s AND (SELECT open FROM gate) AND b.is_active
      AND NOT EXISTS (SELECT 1 FROM {advertisers} AS s WHERE s.trackier_id = b.trackier_id)
),
verdict AS (
    SELECT (SELECT count(*) FROM candidates) AS would,
           (SELECT count(*) FROM brands WHERE is_active) AS active
),
gone AS (
    UPDATE brands AS b
    SET is_active = false, deactivated_at = now(), updated_at = now(), last_sync_run_id = %(run_id)s
    FROM candidates AS c, verdict AS v
    WHERE b.id = c.id
      AND v.would <= %(max_rate)s * v.active
    RETURNING b.id, b.trackier_id
),
audit AS (
    INSERT INTO brand_audit (run_id, brand_id, trackier_id, action, changes)
    SELECT %(run_id)s, id, trackier_id, 'deactivated',
           jsonb_build_object('is_active', jsonb_build_object('old', true, 'new', false))
    FROM gone
    UNION ALL
    SELECT %(run_id)s, u.id, u.trackier_id, 'reactivated',
           jsonb_build_object('is_active', jsonb_build_object('old', false, 'new', true))
    FROM upserted AS u
    JOIN was_inactive AS w ON w.id = u.id
    RETURNING action
)
SELECT (SELECT open FROM gate) AS gate_open,
       (SELECT merged_at FROM run) AS merged_at,
       (SELECT result FROM run) AS stored_result,
       (SELECT started_at FROM run) AS started_at,
       (SELECT newer_run_id FROM run) AS newer_run_id,
       (SELECT newer_started_at FROM run) AS newer_started_at,
       (SELECT count(*) FROM upserted WHERE inserted) AS brands_added,
       (SELECT count(*) FROM upserted AS u WHERE NOT u.inserted
                                              AND u.id NOT IN (SELECT id FROM was_inactive)) AS brands_updated,
       (SELECT count(*) FROM audit WHERE action = 'reactivated') AS brands_reactivated,
       (SELECT count(*) FROM audit WHERE action = 'deactivated') AS brands_deactivated,
       (SELECT would FROM verdict) AS brands_would_deactivate,
       (SELECT active FROM verdict) AS brands_active_before,
       NOT EXISTS (SELECT 1 FROM offers) AS offers_empty
