-- A retried shard records its page errors afresh.
DELETE FROM sync_page_errors WHERE run_id = %(run_id)s AND entity = %(entity)s AND shard = %(shard)s
