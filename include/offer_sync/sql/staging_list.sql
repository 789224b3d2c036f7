-- Staging tables left behind by runs that are no longer running (failed or killed runs).
-- A run still in flight keeps its tables: a manual run started next to the nightly one (or a
-- second deployment on the same database) must not pull them from under it. A run still marked
-- 'running' after %(max_age)s is dead (the DAG's dagrun_timeout is far shorter): its tables go.
SELECT c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname = current_schema()
  AND starts_with(c.relname, 'offer_sync_stg_')
  AND NOT EXISTS (
      SELECT 1
      FROM sync_runs AS r
      WHERE r.status = 'running'
        AND r.merged_at IS NULL
        AND r.started_at > now() - %(max_age)s::interval
        AND starts_with(c.relname, 'offer_sync_stg_' || (r.plan ->> 'run_key') || '_')
  )
