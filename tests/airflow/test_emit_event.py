"""The `offers` Asset event and the completion webhook through real Airflow runs (issue 12).

Downstream DAGs are scheduled on the `offers` Asset and the webhook tells other systems a sync
changed the catalogue, so both must come exactly once per run that wrote something: never for a
dry run (which changed nothing; its alert checks still run), never a second time when the run is
run again. Each test runs ``airflow dags test`` (Airflow's own task runner: a task's outlet event
is recorded when it succeeds, not when it is skipped) against the fake Trackier, a fresh
PostgreSQL database and a real HTTP webhook receiver, and reads Airflow's metadata database.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from devtools.airflow_run import DagTestRun, airflow_bin, airflow_env
from devtools.airflow_server import wait_until
from devtools.fake_trackier import Catalogue
from include.offer_sync.alerts.rules import DURATION
from tests.airflow.test_alerts import alert_rows, webhook  # noqa: F401  (fixture)
from tests.helpers import trackier_conn

pytestmark = pytest.mark.airflow

DAG_ID = "trackier_offer_sync"


def dags_test(
    airflow,
    server,
    offers_db_url: str,
    *,
    logical_date: str | None = None,
    conf: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> DagTestRun:
    """``airflow dags test`` as the harness runs it, optionally for a fixed logical date (a re-run)."""
    environment = airflow_env(airflow.home, trackier_conn=trackier_conn(server), offers_db_url=offers_db_url, extra=env)
    cmd = [airflow_bin(), "dags", "test", DAG_ID, *([logical_date] if logical_date else [])]
    if conf:
        cmd += ["-c", json.dumps(conf)]
    proc = subprocess.run(cmd, env=environment, capture_output=True, text=True, timeout=600)
    run = DagTestRun(proc.returncode, proc.stdout + proc.stderr, 0.0)
    assert run.succeeded, run.output[-6000:]
    return run


def latest_run_id(airflow) -> str:
    [(run_id,)] = airflow.metadata("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,))
    return run_id


#: (event id, emitting task, extra) of every `offers` event of one run, in Airflow's metadata database
#: (``{mark}``: the placeholder of its driver, SQLite's ``?`` or psycopg's ``%s``)
OFFERS_EVENTS_SQL = (
    "SELECT e.id, e.source_task_id, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
    "WHERE a.name = 'offers' AND e.source_run_id = {mark} ORDER BY e.id"
)


def _events(rows) -> list[tuple[int, str, dict[str, Any]]]:
    return [(i, task, json.loads(extra) if isinstance(extra, str) else extra) for i, task, extra in rows]


def offers_events(airflow, run_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    """(event id, emitting task, extra) of every `offers` event that run emitted."""
    return _events(airflow.metadata(OFFERS_EVENTS_SQL.format(mark="?"), (run_id,)))


def task_state(airflow, run_id: str, task_id: str) -> str | None:
    [(state,)] = airflow.metadata("SELECT state FROM task_instance WHERE run_id = ? AND task_id = ?", (run_id, task_id))
    return state


def stored_result(sql, run_id: str) -> dict[str, Any]:
    [(result,)] = sql("SELECT result FROM sync_runs WHERE run_id = %s", (run_id,))
    return result


def test_a_dry_run_emits_no_offers_event_and_no_webhook_but_still_alerts(
    airflow,
    fake_trackier,
    offers_db_url,
    sql,
    webhook,  # noqa: F811
) -> None:
    catalogue = Catalogue(advertisers=3, campaigns=40, seed=14)
    server = fake_trackier(catalogue)
    env = {**webhook.conn_env(), "OFFER_SYNC_MAX_DURATION_S": "0.001"}  # every run breaks the duration rule

    dags_test(airflow, server, offers_db_url, env=env)
    real = latest_run_id(airflow)
    result = stored_result(sql, real)
    assert (result["added"], result["dry_run"]) == (40, False)
    [(_, task, extra)] = offers_events(airflow, real)
    assert (task, extra) == ("emit_offers_event", result)
    assert webhook.events("sync_result") == [result]
    assert task_state(airflow, real, "emit_offers_event") == "success"

    catalogue.add_campaigns(5)
    run = dags_test(airflow, server, offers_db_url, conf={"dry_run": True}, env=env)
    dry = latest_run_id(airflow)
    dry_result = stored_result(sql, dry)
    assert (dry_result["dry_run"], dry_result["added"], dry_result["status"]) == (True, 5, "completed")
    assert offers_events(airflow, dry) == [], "a dry run changed nothing: downstream DAGs must not run"
    assert webhook.events("sync_result") == [result], "no completion webhook for a dry run"
    assert task_state(airflow, dry, "emit_offers_event") == "skipped"
    assert task_state(airflow, dry, "publish_result") == "success"
    assert "dry run: nothing was written, so no offers event and no completion webhook" in run.output
    # ... and its alert checks still ran: the duration alert, recorded and sent.
    assert [r["run_id"] for r in alert_rows(sql, DURATION)] == [real, dry]
    assert [a["run_id"] for a in webhook.alerts(DURATION)] == [real, dry]
    assert sql("SELECT event_emitted_at IS NULL FROM sync_runs WHERE run_id = %s", (dry,)) == [(True,)]


def test_clearing_publish_result_or_the_emit_task_does_not_emit_the_event_twice(airflow_server) -> None:
    """A real scheduler (LocalExecutor): a finished run's publish_result is cleared with its downstream
    task, then emit_offers_event alone; both run again, and the run still has exactly one event."""
    af = airflow_server
    af.unpause_and_settle()
    run_id = af.trigger()
    assert af.wait_for_run(run_id)["state"] == "success", af.log_tail("scheduler")
    [(result,)] = af.sql("SELECT result FROM sync_runs WHERE run_id = %s", (run_id,))
    first = live_offers_events(af, run_id)
    assert [(task, extra) for _, task, extra in first] == [("emit_offers_event", result)]

    for cleared in (["publish_result"], ["emit_offers_event"]):
        tries = live_tries(af, run_id)
        resp = af.api(
            "POST",
            f"/api/v2/dags/{DAG_ID}/clearTaskInstances",
            json={
                "dry_run": False,
                "dag_run_id": run_id,
                "task_ids": cleared,
                "only_failed": False,
                "include_downstream": True,
                "reset_dag_runs": True,
            },
        )
        assert resp.status_code == 200, resp.text
        wait_until(
            lambda: (
                live_tries(af, run_id)["emit_offers_event"][0] > tries["emit_offers_event"][0]  # noqa: B023
                and af.dag_run(run_id)["state"] in ("success", "failed")
            ),
            300,
            what=f"{cleared} to run again",
        )
        assert af.dag_run(run_id)["state"] == "success", af.log_tail("scheduler")
        again = live_tries(af, run_id)
        for task in ("publish_result", "emit_offers_event"):
            if task in cleared or cleared == ["publish_result"]:
                assert again[task][0] == tries[task][0] + 1, (task, tries, again)
        assert again["emit_offers_event"][1] == "skipped"
        assert again["publish_result"][1] == "success"
        assert live_offers_events(af, run_id) == first, f"clearing {cleared} emitted the event again"
        assert af.return_value(run_id, "publish_result") == result


def live_offers_events(af, run_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    return _events(af.metadata(OFFERS_EVENTS_SQL.format(mark="%s"), (run_id,)))


def live_tries(af, run_id: str) -> dict[str, tuple[int, str | None]]:
    rows = af.metadata(
        "SELECT task_id, try_number, state FROM task_instance WHERE run_id = %s AND map_index = -1", (run_id,)
    )
    return {task: (tries, state) for task, tries, state in rows}
