"""Alerting (issue 4): the test specification's Alerting Rules, the notifier's channels, the deadline alert.

Every rule is shown firing when its threshold is crossed and staying silent when it is not, through
real ``airflow dags test`` runs against the fake Trackier (its latency and fault knobs) and a fresh
PostgreSQL; thresholds are lowered with the ``OFFER_SYNC_*`` variables the operators use, never by
patching clocks. The webhook receiver is a real HTTP server in this process, configured exactly
as in production (``AIRFLOW_CONN_OFFER_SYNC_WEBHOOK``).

The deadline alert firing for real needs Airflow's scheduler and triggerer; that test lives in
``tests/airflow/test_alerts_live.py``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from devtools.airflow_run import REPO_ROOT, airflow_env
from devtools.fake_trackier import Catalogue
from include.offer_sync.alerts.rules import DB_CONNECTION, DURATION, ERROR_RATE, RUN_FAILED, TASK_MEMORY
from tests.helpers import WebhookReceiver, latest_run


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connections are refused at once."""
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alert_rows(sql, rule: str | None = None) -> list[dict[str, Any]]:
    rows = sql("SELECT run_id, rule, severity, measured, threshold, message, link FROM sync_alerts ORDER BY id")
    keys = ("run_id", "rule", "severity", "measured", "threshold", "message", "link")
    return [dict(zip(keys, r, strict=True)) for r in rows if rule is None or r[1] == rule]


def _ran(run) -> None:
    assert run.succeeded, run.output[-6000:]


def _assert_carries(alert: dict[str, Any], run_id: str, measured: float, threshold: float) -> None:
    """An alert (row or webhook body) names the run, links to it and carries the figures."""
    assert alert["run_id"] == run_id
    assert alert["measured"] == pytest.approx(measured)
    assert alert["threshold"] == pytest.approx(threshold)
    assert alert["measured"] > alert["threshold"]
    assert alert["link"].endswith("/dags/trackier_offer_sync/runs/" + run_id.replace(":", "%3A").replace("+", "%2B"))


PARSE_PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags["trackier_offer_sync"]
deadlines = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline] if dag.deadline else []
out = {"errors": {k: str(v)[:300] for k, v in bag.import_errors.items()}, "deadlines": [
    {"reference": type(d.reference).__name__, "interval_s": d.interval.total_seconds(),
     "callback": type(d.callback).__name__, "path": d.callback.path, "kwargs": d.callback.kwargs}
    for d in deadlines]}
# The scheduler works from the serialized DAG: the deadline must survive serialization.
out["serialized_deadline"] = bool(DagSerialization.to_dict(dag)["dag"].get("deadline"))
out["callbacks"] = [bool(dag.has_on_success_callback), bool(dag.has_on_failure_callback)]
consumer = bag.dags.get("offers_consumer_example")
cond = consumer.timetable.asset_condition if consumer else None
out["consumer_schedule"] = [(a.name, a.uri.rstrip("/")) for a in cond.objects] if cond else None
print("RESULT" + json.dumps(out, default=str))
"""


def _parse(tmp_path, minutes: str) -> dict[str, Any]:
    env = airflow_env(
        tmp_path,
        trackier_conn={"conn_type": "http", "host": "http://127.0.0.1:9"},
        offers_db_url="postgresql://x@127.0.0.1:9/x",
        extra={"OFFER_SYNC_DEADLINE_MINUTES": minutes},
    )
    proc = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(REPO_ROOT / "dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(line[len("RESULT") :])


def test_deadline_alert_is_attached_to_the_dag(tmp_path) -> None:
    parsed = _parse(tmp_path, "0.25")
    assert parsed["errors"] == {}
    assert parsed["deadlines"] == [
        {
            "reference": "DagRunQueuedAtDeadline",
            "interval_s": 15.0,
            "callback": "AsyncCallback",
            "path": "include.offer_sync.alerts.callbacks.deadline_missed",
            "kwargs": {"threshold_s": 15.0, "dag_id": "trackier_offer_sync"},
        }
    ]
    assert parsed["serialized_deadline"] is True
    assert parsed["callbacks"] == [True, True]
    # The example consumer listens to the very Asset the sync emits.
    assert parsed["consumer_schedule"] == [["offers", "trackier-offer-sync://offers"]]
    # The documented default, and 0 switches it off.
    assert _parse(tmp_path, "10")["deadlines"][0]["interval_s"] == 600.0
    assert _parse(tmp_path, "0")["deadlines"] == []


@pytest.mark.airflow
def test_healthy_run_raises_no_alert_and_posts_its_sync_result(
    airflow, fake_trackier, offers_db_url, sql, webhook
) -> None:
    """Default thresholds: every rule stays silent; the completion webhook gets the sync_result."""
    server = fake_trackier(Catalogue(advertisers=6, campaigns=120, seed=3))
    _ran(airflow.run(server, offers_db_url, env=webhook.conn_env()))
    result = latest_run(sql)
    assert result["status"] == "completed"
    assert alert_rows(sql) == []
    assert webhook.alerts() == []
    # The completion webhook: the same JSON as sync_runs.result and the Asset event, posted once.
    assert webhook.events("sync_result") == [result]
    assert airflow.asset_events("offers")[-1] == result
    # ... and the measurements it carries are real: phases, per-task RSS, statements, API calls.
    metrics = result["metrics"]
    assert set(metrics["phases_s"]) >= {"extract", "validate", "stage", "merge"}
    assert metrics["records_fetched"] == 126
    assert metrics["records_valid"] == 126
    assert metrics["records_rejected"] == 0
    assert metrics["api_requests"] >= server.stats()["list_requests"] > 0
    assert metrics["db_statements"] > 0
    assert metrics["peak_task_rss_mb"] == max(t["peak_rss_mb"] for t in metrics["tasks"]) > 0
    assert {t["task"] for t in metrics["tasks"]} >= {"start_sync", "check_sweep", "merge_catalogue"}
    assert sql("SELECT metrics FROM sync_runs WHERE run_id = %s", (result["run_id"],)) == [(metrics,)]


@pytest.mark.airflow
def test_alert_rule_run_duration_over_10_minutes(airflow, fake_trackier, offers_db_url, sql, webhook) -> None:
    """Spec rule "duration > 10 min": slow API (latency knob) + a 1 s limit fires; 600 s is silent."""
    server = fake_trackier(Catalogue(advertisers=3, campaigns=60, seed=4), latency_ms=400)
    env = {**webhook.conn_env(), "OFFER_SYNC_MAX_DURATION_S": "1"}
    _ran(airflow.run(server, offers_db_url, env=env))
    result = latest_run(sql)
    # Every request waited 400 ms, and the plan and extract tasks wait on them in sequence.
    assert result["duration_s"] > 0.8
    [row] = alert_rows(sql, DURATION)
    _assert_carries(row, result["run_id"], result["duration_s"], 1.0)
    assert row["severity"] == "warning"
    assert f"{result['duration_s']:.1f} s" in row["message"]
    [body] = webhook.alerts(DURATION)
    _assert_carries(body, result["run_id"], result["duration_s"], 1.0)
    assert body["text"].startswith("[WARNING] trackier_offer_sync duration:")
    # Checked by publish_result and again by the success callback: delivered once.
    assert len(webhook.alerts()) == 1
    assert len(alert_rows(sql)) == 1

    # The same slow sync under the default limit (600 s): silent.
    _ran(airflow.run(server, offers_db_url, env=webhook.conn_env()))
    assert latest_run(sql)["run_id"] != result["run_id"]
    assert len(alert_rows(sql)) == 1
    assert len(webhook.alerts()) == 1


@pytest.mark.airflow
def test_alert_rule_error_rate_over_5_percent(airflow, fake_trackier, offers_db_url, sql, webhook) -> None:
    """Spec rule "error rate > 5%": 3% rejects is silent; 10% trips the breaker and alerts with 10%."""
    catalogue = Catalogue(advertisers=4, campaigns=100, seed=8)
    ids = catalogue.campaign_ids()
    server = fake_trackier(catalogue, invalid_ids=ids[:3], invalid_kind="missing_title")
    _ran(airflow.run(server, offers_db_url, env=webhook.conn_env()))
    quiet = latest_run(sql)
    assert quiet["status"] == "completed_with_errors"
    assert 0 < quiet["error_rate"] <= 0.05
    assert alert_rows(sql) == []
    assert webhook.alerts() == []

    server.configure(invalid_ids=ids[:10])
    run = airflow.run(server, offers_db_url, env=webhook.conn_env())
    assert not run.succeeded
    failed = latest_run(sql)
    assert failed["status"] == "failed"
    assert failed["error_rate"] > 0.05
    [row] = alert_rows(sql, ERROR_RATE)
    _assert_carries(row, failed["run_id"], failed["error_rate"], 0.05)
    assert row["severity"] == "critical"
    [body] = webhook.alerts(ERROR_RATE)
    _assert_carries(body, failed["run_id"], failed["error_rate"], 0.05)
    # The breaker failing the run is also the "run failed" rule, with the breaker's reason.
    [failed_row] = alert_rows(sql, RUN_FAILED)
    assert failed_row["run_id"] == failed["run_id"]
    assert "over the limit" in failed_row["message"]


@pytest.mark.airflow
def test_alert_rule_memory_over_1gb(airflow, fake_trackier, offers_db_url, sql, webhook) -> None:
    """Spec rule "memory > 1GB": a 1 MB limit fires with the measured peak RSS; a per-run override
    (conf ``alert_thresholds``) above the peak keeps it silent. Extra notifiers get the same alert."""
    server = fake_trackier(Catalogue(advertisers=3, campaigns=40, seed=5))
    message = {"text": "{{ offer_sync_alert_text }}", "rule": "{{ offer_sync_alert.rule }}"}
    chat = {
        "class": "airflow.providers.http.notifications.http.HttpNotifier",
        "kwargs": {"http_conn_id": "team_chat", "endpoint": "chat", "json": message},
    }
    env = {
        **webhook.conn_env(),
        "OFFER_SYNC_MAX_TASK_RSS_MB": "1",
        "OFFER_SYNC_EXTRA_NOTIFIERS": json.dumps([chat]),
        "AIRFLOW_CONN_TEAM_CHAT": json.dumps({"conn_type": "http", "host": webhook.url}),
    }

    _ran(airflow.run(server, offers_db_url, env=env, conf={"alert_thresholds": {"max_task_rss_mb": 1_000_000}}))
    assert alert_rows(sql) == []
    assert webhook.alerts() == []

    _ran(airflow.run(server, offers_db_url, env=env))
    result = latest_run(sql)
    peak = result["metrics"]["peak_task_rss_mb"]
    [row] = alert_rows(sql, TASK_MEMORY)
    _assert_carries(row, result["run_id"], peak, 1.0)
    [body] = webhook.alerts(TASK_MEMORY)
    _assert_carries(body, result["run_id"], peak, 1.0)
    # The extra notifier (a provider's HttpNotifier, configured only through the environment).
    chats = [r["body"] for r in webhook.requests if r["path"] == "/chat"]
    assert chats == [{"text": body["text"], "rule": "task_memory"}]


@pytest.mark.airflow
def test_alert_rule_database_connection_failure(airflow, fake_trackier, webhook, tmp_path) -> None:
    """Spec rule "DB connection failures": offers_db on a closed port fails the run; the alert
    cannot be stored in the dead database, so it goes to the log and the webhook."""
    server = fake_trackier(Catalogue(advertisers=2, campaigns=10, seed=1))
    dead_db = f"postgresql://postgres@127.0.0.1:{closed_port()}/offers"
    env = {**webhook.conn_env(), "OFFER_SYNC_TASK_RETRIES": "1", "OFFER_SYNC_RETRY_DELAY_S": "1"}
    run = airflow.run(server, dead_db, env=env)
    assert not run.succeeded
    assert "state=failed" in run.output

    db_alerts = webhook.alerts(DB_CONNECTION)
    # start_sync's first try (retried: warning), its last try (critical), and the failure callback.
    assert [a["severity"] for a in db_alerts] == ["warning", "critical", "critical"], db_alerts
    run_id = db_alerts[0]["run_id"]
    for alert in db_alerts:
        assert alert["run_id"] == run_id
        assert alert["measured"] == 1.0
        assert alert["threshold"] == 0.0
        assert "database connection failed" in alert["message"]
        assert "127.0.0.1" in alert["message"]
        assert alert["link"].endswith(run_id.replace(":", "%3A").replace("+", "%2B"))
    assert "task start_sync try 1 (will be retried)" in db_alerts[0]["message"]
    [failed] = webhook.alerts(RUN_FAILED)
    assert failed["run_id"] == run_id
    assert "unreachable" in failed["message"]
    # The task log (dags test prints it) has the alert and why no row was written.
    assert "OFFER SYNC ALERT [CRITICAL] trackier_offer_sync db_connection" in run.output
    assert "could not record 1 alert(s) in sync_alerts" in run.output
    assert webhook.events("sync_result") == []


@pytest.mark.airflow
def test_alert_rule_run_failed_outright(airflow, fake_trackier, offers_db_url, sql, webhook) -> None:
    """A run that fails (here: Trackier refuses the key) is marked failed and alerts with the cause."""
    server = fake_trackier(Catalogue(advertisers=2, campaigns=10, seed=2), api_key="a-different-key")
    run = airflow.run(server, offers_db_url, env=webhook.conn_env())
    assert not run.succeeded
    [record] = sql("SELECT run_id, status, error FROM sync_runs")
    assert record[1] == "failed"
    assert "TrackierAuthError" in record[2]
    [row] = alert_rows(sql, RUN_FAILED)
    assert row["run_id"] == record[0]
    assert row["severity"] == "critical"
    assert (row["measured"], row["threshold"]) == (1.0, 0.0)
    assert "TrackierAuthError" in row["message"]
    assert "test-key" not in row["message"]
    [body] = webhook.alerts(RUN_FAILED)
    assert body["message"] == row["message"]
    assert body["run_id"] == record[0]
    assert [r["rule"] for r in alert_rows(sql)] == [RUN_FAILED]


@pytest.mark.airflow
def test_dead_webhook_does_not_fail_the_sync(airflow, fake_trackier, offers_db_url, sql) -> None:
    """The webhook's port is closed: the sync still succeeds, the alert is still recorded."""
    server = fake_trackier(Catalogue(advertisers=2, campaigns=20, seed=6))
    env = {
        "AIRFLOW_CONN_OFFER_SYNC_WEBHOOK": json.dumps(
            {"conn_type": "http", "host": f"http://127.0.0.1:{closed_port()}/hook"}
        ),
        "OFFER_SYNC_MAX_DURATION_S": "0.001",
    }
    run = airflow.run(server, offers_db_url, env=env)
    _ran(run)
    result = latest_run(sql)
    assert result["status"] == "completed"
    assert result["added"] == 20
    [row] = alert_rows(sql, DURATION)
    assert row["run_id"] == result["run_id"]
    assert "could not deliver the alert event after 3 attempt(s)" in run.output
    assert "could not deliver the sync_result event after 3 attempt(s)" in run.output
