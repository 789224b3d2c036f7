-- Offer Sync page: the latest rejected records with their reasons (raw record cut for display).
SELECT id, run_id, entity, record_key, reason, left(raw, %(raw_chars)s) AS raw, shard, page, rejected_at
FROM sync_rejects
ORDER BY id DESC
LIMIT %(limit)s
