-- A retried shard starts from a clean slate: its earlier partial load is removed first.
DELETE FROM {table} WHERE shard = %(shard)s
