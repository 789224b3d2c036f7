-- Seal a run's staging before its sweep is checked, and read the run's record (as runs_get.sql).
-- Every try of an extract task holds this run's staging lock SHARED from shard_prepare.sql until
-- its connection closes; taking it EXCLUSIVE here waits until none is still loading, so a zombie
-- try (an earlier try of a shard that is still running after Airflow started the next one) lands
-- its rows before the check, where sweep_mark_duplicates.sql drops them, never after it. Session
-- level: held until the check's connection closes. The record is read from the snapshot taken
-- before the wait; only merged_at is used from it, and a run's merge never runs during its check.
WITH sealed AS (
    SELECT pg_advisory_lock(hashtext('trackier_offer_sync.staging'), hashtext(%(run_id)s)) AS taken
)
SELECT r.run_id, r.status, r.dry_run, r.started_at, r.merged_at, r.finished_at, r.duration_s, r.result,
       r.metrics, r.error, extract(epoch FROM now() - r.started_at) AS elapsed_s
FROM sealed
LEFT JOIN sync_runs AS r ON r.run_id = %(run_id)s
