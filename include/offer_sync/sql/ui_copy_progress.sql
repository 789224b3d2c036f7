-- Offer Sync page: rows received so far by the shard COPYs in flight into one run's staging tables.
-- PostgreSQL keeps these counters for every COPY anyway; reading them costs the sync nothing.
SELECT c.relname AS table_name, p.pid, p.tuples_processed, p.tuples_excluded, p.bytes_processed
FROM pg_stat_progress_copy p
JOIN pg_class c ON c.oid = p.relid
WHERE p.datname = current_database()
  AND c.relname = ANY(%(tables)s)
