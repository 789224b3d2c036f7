-- First, rows of superseded tries: when two Airflow tries of one shard loaded at once (a zombie
-- and its retry), both copies are in staging with the same seq. Only the newest try that started
-- the shard ({tries}) counts; the older tries' rows are deleted. (The sweep check is sealed,
-- sweep_seal.sql, so no try is still loading now.) Without this, both copies would be marked
-- duplicates of each other below and the offer would silently not be updated.
-- Then the same id twice in one sweep (a record moved between pages while we paged, or the API
-- repeated it): keep one deterministic winner - the latest `modified`, then the last one read - and
-- mark the others 'duplicate'. They are counted, not rejected: the record itself is fine.
-- Both entities in one statement. All CTEs share one snapshot, so the ranking excludes the
-- superseded rows explicitly; in the usual case (one try per shard) `stale` is empty and the
-- DELETEs do not even scan staging (a one-time filter). Likewise the duplicated ids are found
-- first (`*_dups`, one aggregate over staging) and, in the usual case where there are none, the
-- UPDATE's join is not run at all: it used to hash every staged row first. A staged 1M sweep,
-- twice each, rolled back: 1.72 s -> 1.44 s.
WITH newest AS (
    SELECT entity, shard, max(try_number) AS try_number, count(DISTINCT try_number) > 1 AS overlapped
    FROM {tries}
    GROUP BY entity, shard
),
stale AS (
    SELECT entity, shard, try_number FROM newest WHERE overlapped
),
adv_superseded AS (
    DELETE FROM {advertisers} AS s
    USING stale AS n
    WHERE EXISTS (SELECT 1 FROM stale)
      AND n.entity = 'advertisers' AND s.shard = n.shard AND s.try_number <> n.try_number
    RETURNING 1
),
cmp_superseded AS (
    DELETE FROM {campaigns} AS s
    USING stale AS n
    WHERE EXISTS (SELECT 1 FROM stale)
      AND n.entity = 'campaigns' AND s.shard = n.shard AND s.try_number <> n.try_number
    RETURNING 1
),
adv_current AS NOT MATERIALIZED (
    SELECT seq, try_number, trackier_id, source_modified
    FROM {advertisers} AS x
    WHERE status = 'valid'
      AND NOT EXISTS (SELECT 1 FROM stale AS n
                      WHERE n.entity = 'advertisers' AND n.shard = x.shard AND n.try_number <> x.try_number)
),
cmp_current AS NOT MATERIALIZED (
    -- A carried campaign (staged without its values) was modified when its stored offer says: the
    -- stored row came from a record with the same fingerprint. Looked up only for duplicated ids.
    SELECT seq, try_number, trackier_id,
           CASE WHEN x.carried
                THEN (SELECT o.source_modified FROM offers AS o WHERE o.trackier_id = x.trackier_id)
                ELSE x.source_modified END AS source_modified
    FROM {campaigns} AS x
    WHERE status = 'valid'
      AND NOT EXISTS (SELECT 1 FROM stale AS n
                      WHERE n.entity = 'campaigns' AND n.shard = x.shard AND n.try_number <> x.try_number)
),
adv_dups AS MATERIALIZED (
    SELECT trackier_id FROM adv_current GROUP BY trackier_id HAVING count(*) > 1
),
adv AS (
    UPDATE {advertisers} AS s
    SET status = 'duplicate'
    FROM (
        SELECT seq, try_number,
               row_number() OVER (PARTITION BY trackier_id
                                  ORDER BY source_modified DESC NULLS LAST, seq DESC) AS rn
        FROM adv_current
        WHERE trackier_id IN (SELECT trackier_id FROM adv_dups)
    ) AS d
    WHERE EXISTS (SELECT 1 FROM adv_dups)
      AND s.seq = d.seq
      AND s.try_number = d.try_number
      AND d.rn > 1
    RETURNING 1
),
cmp_dups AS MATERIALIZED (
    SELECT trackier_id FROM cmp_current GROUP BY trackier_id HAVING count(*) > 1
),
cmp AS (
    UPDATE {campaigns} AS s
    SET status = 'duplicate'
    FROM (
        SELECT seq, try_number,
               row_number() OVER (PARTITION BY trackier_id
                                  ORDER BY source_modified DESC NULLS LAST, seq DESC) AS rn
        FROM cmp_current
        WHERE trackier_id IN (SELECT trackier_id FROM cmp_dups)
    ) AS d
    WHERE EXISTS (SELECT 1 FROM cmp_dups)
      AND s.seq = d.seq
      AND s.try_number = d.try_number
      AND d.rn > 1
    RETURNING 1
)
SELECT (SELECT count(*) FROM adv) AS advertisers, (SELECT count(*) FROM cmp) AS campaigns,
       (SELECT count(*) FROM adv_superseded) AS advertisers_superseded,
       (SELECT count(*) FROM cmp_superseded) AS campaigns_superseded
