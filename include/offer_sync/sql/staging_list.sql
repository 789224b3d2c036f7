-- Staging tables left behind by runs that are no longer running (failed or killed runs).
SELECT c.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname = current_schema()
  AND c.relname LIKE 'offer\_sync\_stg\_%'
