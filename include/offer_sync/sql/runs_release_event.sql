-- A try of emit_offers_event that claimed the run's event and then failed (its success, which is
-- what makes Airflow record the Asset event, never reached Airflow): give the claim back, so that
-- the task's retry emits the event. Only that try's own claim is released.
UPDATE sync_runs
SET event_emitted_at = NULL, event_claimed_try = NULL
WHERE run_id = %(run_id)s AND event_claimed_try = %(try_number)s
