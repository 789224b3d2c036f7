"""A lock timeout inside a DAG run (issue 12's error classification, through Airflow): the run fails
as a timeout with what to change, and no ``db_connection`` alert is raised."""

from __future__ import annotations

import psycopg
import pytest

from devtools.fake_trackier import Catalogue


@pytest.mark.airflow
def test_a_lock_timeout_in_a_dag_run_fails_it_as_a_timeout_not_a_connection_alert(
    airflow, fake_trackier, offers_db_url, sql
) -> None:
    """Through Airflow: merge_catalogue waits on a row another session holds, times out on every try;
    the run fails with the timeout's message, and no db_connection alert is raised."""
    catalogue = Catalogue(2, 30, seed=6)
    server = fake_trackier(catalogue)
    assert airflow.run(server, offers_db_url).succeeded
    victim = str(catalogue.campaign_ids()[5])
    catalogue.set_campaign(victim, title="Renamed while locked")
    env = {"OFFER_SYNC_LOCK_TIMEOUT": "1s", "OFFER_SYNC_TASK_RETRIES": "1", "OFFER_SYNC_RETRY_DELAY_S": "1"}

    with psycopg.connect(offers_db_url) as holder:  # e.g. an application's long transaction on that offer
        holder.execute("SELECT 1 FROM offers WHERE trackier_id = %s FOR UPDATE", (victim,))
        run = airflow.run(server, offers_db_url, env=env)
        holder.rollback()

    assert not run.succeeded
    assert "DatabaseTimeoutError" in run.output
    assert "lock_timeout = 1s" in run.output
    assert "raise OFFER_SYNC_LOCK_TIMEOUT" in run.output
    [(status, error)] = sql("SELECT status, error FROM sync_runs ORDER BY started_at DESC LIMIT 1")
    assert status == "failed"
    assert "merge_catalogue: DatabaseTimeoutError" in error
    rules = [r for (r,) in sql("SELECT rule FROM sync_alerts ORDER BY id")]
    assert "db_connection" not in rules, rules
    assert "run_failed" in rules
    [(message,)] = sql("SELECT message FROM sync_alerts WHERE rule = 'run_failed'")
    assert "lock_timeout" in message
    assert sql("SELECT title FROM offers WHERE trackier_id = %s", (victim,)) != [("Renamed while locked",)]
