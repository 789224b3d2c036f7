-- Offer Sync page, run detail: the pages that failed for good and the pagination anomalies of one
-- run (few per run; capped anyway), with how many there are in all.
SELECT id, entity, shard, page, cursor, kind, left(error, %(text_chars)s) AS error, attempts, recorded_at,
       count(*) OVER () AS total
FROM sync_page_errors
WHERE run_id = %(run_id)s
ORDER BY id
LIMIT %(limit)s
