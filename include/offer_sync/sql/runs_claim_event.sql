-- Claim the run's one `offers` Asset event and completion webhook (emit_offers_event). Atomic: of
-- any number of tries, clears and re-runs of that task, exactly one gets the stored sync_result
-- back; a dry run (nothing changed) never does, nor a run that did not merge and complete.
-- The claim records which try took it, so that a try that then fails releases it
-- (runs_release_event.sql) and its retry emits instead. One statement; the run's row as it was
-- before the claim tells the caller why it got nothing.
WITH claimed AS (
    UPDATE sync_runs
    SET event_emitted_at = now(), event_claimed_try = %(try_number)s
    WHERE run_id = %(run_id)s
      AND NOT dry_run
      AND merged_at IS NOT NULL
      AND status IN ('completed', 'completed_with_errors')
      AND result IS NOT NULL
      AND event_emitted_at IS NULL
    RETURNING result
)
SELECT (SELECT result FROM claimed) AS claimed_result,
       r.run_id, r.dry_run, r.status, r.merged_at, r.event_emitted_at, r.event_claimed_try
FROM (SELECT 1) AS one
LEFT JOIN sync_runs AS r ON r.run_id = %(run_id)s
