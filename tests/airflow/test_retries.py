"""Spec case 6 (Error Recovery) where Airflow itself decides: which failures it retries.

Real ``airflow dags test`` runs against the fake Trackier and PostgreSQL. A bad key or a blocked
IP must fail the run at once (the DAG's ``retry_policy`` turns ``FatalSyncError`` into FAIL even
with retries left); a database outage is transient and must be retried by Airflow. Retries are
shortened through ``OFFER_SYNC_TASK_RETRIES``/``OFFER_SYNC_RETRY_DELAY_S`` so that a wrongly
retried task shows up as a higher ``try_number`` within seconds instead of minutes.
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from devtools.fake_trackier import Catalogue
from tests.helpers import assert_key_in_no_table, trackier_conn

pytestmark = pytest.mark.airflow

FAST_RETRIES = {"OFFER_SYNC_TASK_RETRIES": "2", "OFFER_SYNC_RETRY_DELAY_S": "1"}


def _latest_run_id(airflow: Any) -> str:
    rows = airflow.metadata("SELECT run_id FROM dag_run WHERE dag_id = 'trackier_offer_sync' ORDER BY id DESC LIMIT 1")
    assert rows, "no DAG run recorded"
    return rows[0][0]


def _task_states(airflow: Any, run_id: str) -> dict[str, tuple[str, int]]:
    rows = airflow.metadata(
        "SELECT task_id, state, try_number FROM task_instance WHERE run_id = ? AND map_index = -1", (run_id,)
    )
    return {task: (state, tries) for task, state, tries in rows}


def _files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("fault", ["wrong_key", "ip_not_whitelisted"])
def test_case_6_error_recovery_airflow_does_not_retry_a_fatal_auth_error_and_never_shows_the_key(
    fault, airflow, fake_trackier, offers_db_url, sql
) -> None:
    secret = f"sk-live-{uuid.uuid4().hex}"
    if fault == "wrong_key":
        server = fake_trackier(Catalogue(2, 20, seed=1), api_key="the-key-trackier-expects")
        expected = "code 13"
    else:
        server = fake_trackier(Catalogue(2, 20, seed=1), api_key=secret, ip_not_whitelisted=True)
        expected = "code 41"
    conn = {**trackier_conn(server), "password": secret}
    env = {**FAST_RETRIES, "AIRFLOW_CONN_TRACKIER_API": json.dumps(conn)}

    run = airflow.run(server, offers_db_url, env=env)

    assert not run.succeeded
    run_id = _latest_run_id(airflow)
    states = _task_states(airflow, run_id)
    # Both probes failed on their first try although two retries were allowed: the retry policy.
    assert states["plan_advertisers"] == ("failed", 1), states
    assert states["plan_campaigns"] == ("failed", 1), states
    assert states["start_sync"] == ("success", 1)
    assert airflow.metadata("SELECT count(*) FROM task_instance_history WHERE run_id = ?", (run_id,)) == [(0,)]
    assert server.stats()["total"] == 2, "one request per probe, none repeated"
    assert expected in run.output, run.output[-3000:]
    assert "Automation -> API" in run.output or "allow-list" in run.output

    # The key: not in the output, not in Airflow's home (metadata DB, XCom, logs), not in our tables.
    assert secret not in run.output
    assert _files_containing(airflow.home, secret.encode()) == []
    xcoms = airflow.metadata("SELECT value FROM xcom WHERE run_id = ?", (run_id,))
    assert xcoms, "start_sync pushed its result"
    assert all(secret not in str(v) for (v,) in xcoms)
    assert_key_in_no_table(sql, secret)


def test_case_6_error_recovery_airflow_retries_a_database_outage(airflow, fake_trackier) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = fake_trackier(Catalogue(2, 20, seed=1))

    run = airflow.run(server, f"postgresql://postgres:db-pass-4711@127.0.0.1:{port}/offers", env=FAST_RETRIES)

    assert not run.succeeded
    run_id = _latest_run_id(airflow)
    states = _task_states(airflow, run_id)
    assert states["start_sync"] == ("failed", 3), states  # the first try and both retries
    history = airflow.metadata(
        "SELECT try_number, state FROM task_instance_history WHERE run_id = ? AND task_id = 'start_sync' "
        "ORDER BY try_number",
        (run_id,),
    )
    assert [t for t, _ in history] == [1, 2], history  # each earlier try is kept (its own state: failed)
    assert f"cannot connect to the offers database at postgresql://postgres@127.0.0.1:{port}/offers" in run.output
    assert "db-pass-4711" not in run.output
