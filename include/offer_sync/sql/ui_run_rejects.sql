-- Offer Sync page, run detail: one page of a run's rejects, keyset-paginated on id (the
-- sync_rejects (run_id, id) index), optionally only those whose reason contains a text: %(pattern)s
-- is an ILIKE pattern whose wildcards the caller has escaped with a backslash. The raw record is
-- cut to %(raw_chars)s characters for the page; NULL keeps it whole (the CSV download).
SELECT id, entity, record_key, reason,
       CASE WHEN %(raw_chars)s::integer IS NULL THEN raw ELSE left(raw, %(raw_chars)s::integer) END AS raw,
       shard, page, rejected_at
FROM sync_rejects
WHERE run_id = %(run_id)s
  AND id > %(after)s
  AND (%(pattern)s::text IS NULL OR reason ILIKE %(pattern)s::text ESCAPE '\')
ORDER BY id
LIMIT %(limit)s
