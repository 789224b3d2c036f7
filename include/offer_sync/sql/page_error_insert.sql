-- One page that failed for good, or one pagination anomaly, of a shard.
INSERT INTO sync_page_errors (run_id, entity, shard, page, cursor, kind, error, attempts)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
