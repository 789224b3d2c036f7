"""The deadline alert and the completion event on a real Airflow: scheduler, triggerer, dag-processor.

``airflow dags test`` cannot show either: its runs are never queued (so Airflow creates no deadline
for them) and it never schedules the DAGs that wait on an Asset. This test starts the real
components (``devtools/airflow_server.py``, plus a triggerer started here, which runs deadline
callbacks), holds a sync run past a 6-second deadline, and checks that:

- the scheduler noticed the missed deadline and the triggerer ran our callback while the run was
  still running: the alert reached the webhook and the ``sync_alerts`` table with the measured
  wait against the threshold;
- once released, the run finishes; its ``offers`` Asset event carries the counts, and the
  scheduler starts ``offers_consumer_example`` from that event, which reads the same counts.

The run is held deterministically, not by timing: the API tasks use a pool with zero slots until
the alert has been seen, then the pool is opened through the REST API.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.airflow_run import airflow_bin
from devtools.airflow_server import AirflowServer, free_port, live_airflow, wait_until
from devtools.fake_trackier import Catalogue
from tests.helpers import WebhookReceiver

pytestmark = pytest.mark.airflow

DAG_ID = "trackier_offer_sync"
HELD_POOL = "offer_sync_held"
CONSUMER = "offers_consumer_example"


@contextlib.contextmanager
def running_triggerer(server: AirflowServer) -> Iterator[subprocess.Popen[bytes]]:
    """``airflow triggerer`` with the server's environment, in its own process group."""
    env = {**server.env, "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
    with (server.home / "triggerer.log").open("wb") as log:
        proc = subprocess.Popen(
            [airflow_bin(), "triggerer"],
            env=env,
            cwd=server.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _ok(resp: Any) -> Any:
    assert resp.status_code < 300, f"{resp.request.method} {resp.url}: {resp.status_code} {resp.text[:2000]}"
    return resp


def _runs(server: AirflowServer, dag_id: str) -> list[dict[str, Any]]:
    resp = server.api("GET", f"/api/v2/dags/{dag_id}/dagRuns")
    resp.raise_for_status()
    return list(resp.json()["dag_runs"])


def test_deadline_alert_fires_while_the_run_is_held_and_the_consumer_runs_from_the_event(pg_admin_url) -> None:
    webhook = WebhookReceiver()
    env = {**webhook.conn_env(), "OFFER_SYNC_DEADLINE_MINUTES": "0.1", "OFFER_SYNC_API_POOL": HELD_POOL}
    try:
        with (
            live_airflow(pg_admin_url, catalogue=Catalogue(3, 60, seed=9), extra_env=env) as live,
            running_triggerer(live.airflow) as triggerer,
        ):
            af = live.airflow
            _ok(af.api("POST", "/api/v2/pools", json={"name": HELD_POOL, "slots": 0}))
            af.wait_for_dag(CONSUMER)
            af.unpause(CONSUMER)
            # Unpausing a @daily DAG (catchup off) makes the scheduler create the latest interval's
            # run at once: that run is the one we hold. (A manual trigger would queue behind it.)
            af.unpause()
            [run] = wait_until(lambda: _runs(af, DAG_ID), timeout=120, what="the scheduled run")
            run_id = run["dag_run_id"]

            # Held: start_sync runs, the plan tasks wait for a pool slot that does not exist.
            [alert] = wait_until(lambda: webhook.alerts("deadline"), timeout=180, what="the deadline alert")
            assert af.dag_run(run_id)["state"] == "running"
            assert [r["dag_run_id"] for r in _runs(af, DAG_ID)] == [run_id]
            assert triggerer.poll() is None, af.log_tail("triggerer")
            assert alert["run_id"] == run_id
            assert alert["threshold"] == 6.0
            assert alert["measured"] >= 6.0
            assert alert["severity"] == "critical"
            assert "still running" in alert["message"]
            assert alert["link"] == f"{af.url}/dags/trackier_offer_sync/runs/" + run_id.replace(":", "%3A").replace(
                "+", "%2B"
            )
            rows = live.sql("SELECT run_id, rule, measured, threshold FROM sync_alerts WHERE rule = 'deadline'")
            assert rows == [(run_id, "deadline", alert["measured"], 6.0)]

            # Released: the run finishes and publishes its result.
            _ok(
                af.api(
                    "PATCH",
                    f"/api/v2/pools/{HELD_POOL}",
                    json={"pool": HELD_POOL, "slots": 4, "include_deferred": False},
                )
            )
            final = af.wait_for_run(run_id, timeout=300)
            assert final["state"] == "success", af.log_tail("scheduler")
            [(result,)] = live.sql("SELECT result FROM sync_runs WHERE run_id = %s", (run_id,))
            assert (result["status"], result["added"], result["campaigns_processed"]) == ("completed", 60, 60)
            assert webhook.events("sync_result") == [result]
            assert len(webhook.alerts("deadline")) == 1  # a missed deadline alerts once

            # The Asset event starts the consumer, which reads the counts from it.
            consumer = wait_until(
                lambda: [r for r in _runs(af, CONSUMER) if r["state"] in ("success", "failed")],
                timeout=240,
                what="an offers_consumer_example run",
            )
            assert consumer[0]["state"] == "success"
            assert consumer[0]["run_type"] == "asset_triggered"
            counts = af.return_value(consumer[0]["dag_run_id"], "read_sync_counts", dag_id=CONSUMER)
            assert counts["events"] == 1
            for key in ("status", "added", "updated", "unchanged", "deactivated", "rejected", "run_id"):
                assert counts["latest"][key] == result[key], key

            # Airflow recorded the deadline callback as a success, and the triggerer is still up.
            [(state, output)] = af.metadata("SELECT state, output FROM callback")
            assert state == "success"
            assert output.startswith("[CRITICAL] trackier_offer_sync deadline:")
            assert triggerer.poll() is None, af.log_tail("triggerer")
    finally:
        webhook.close()
