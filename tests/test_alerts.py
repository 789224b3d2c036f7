"""Alerting (issue 4): the spec's Alerting Rules, the notifier's channels, the deadline alert.

Every rule is shown firing when its threshold is crossed and staying silent when it is not, through
real ``airflow dags test`` runs against the fake Trackier (its latency and fault knobs) and a fresh
PostgreSQL; thresholds are lowered with the ``OFFER_SYNC_*`` variables the operators use, never by
patching clocks. The webhook receiver is a real HTTP server in this process, configured exactly
as in production (``AIRFLOW_CONN_OFFER_SYNC_WEBHOOK``).

The deadline alert firing for real needs Airflow's scheduler and triggerer; that test lives in
``tests/test_alerts_live.py``.
"""

from __future__ import annotations

import email
import json
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from include.offer_sync.airflow_run import REPO_ROOT, airflow_env
from include.offer_sync.alerts import (
    DB_CONNECTION,
    DURATION,
    ERROR_RATE,
    EXTRA_NOTIFIERS_ENV,
    RUN_FAILED,
    TASK_MEMORY,
    Thresholds,
    deliver,
    evaluate,
    find_db_connection_error,
    format_alert,
)
from include.offer_sync.errors import ConfigurationError, DatabaseUnavailableError
from include.offer_sync.fake_trackier import Catalogue
from tests.conftest import latest_run

# --- a webhook receiver ----------------------------------------------------------------------------


class WebhookReceiver:
    """A real HTTP server on a free loopback port that keeps every POST (path, headers, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(raw or b"null")})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, kind: str, path: str = "/hooks/offer-sync") -> list[dict[str, Any]]:
        """Bodies of the POSTs to ``path`` whose ``X-Offer-Sync-Event`` header is ``kind``."""
        return [r["body"] for r in self.requests
                if r["path"] == path and r["headers"].get("X-Offer-Sync-Event") == kind]  # fmt: skip

    def alerts(self, rule: str | None = None) -> list[dict[str, Any]]:
        return [b for b in self.events("alert") if rule is None or b["rule"] == rule]

    def conn_env(self) -> dict[str, str]:
        """``AIRFLOW_CONN_OFFER_SYNC_WEBHOOK`` pointing at this receiver."""
        return {"AIRFLOW_CONN_OFFER_SYNC_WEBHOOK": json.dumps({"conn_type": "http",
                                                               "host": f"{self.url}/hooks/offer-sync"})}  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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


# --- the rules on a sync_result (no Airflow) --------------------------------------------------------


def _result(**overrides: Any) -> dict[str, Any]:
    tasks = [{"task": "merge_catalogue", "peak_rss_mb": 300.0}]
    result = {"run_id": "manual__1", "status": "completed", "duration_s": 10.0, "error_rate": 0.0, "rejected": 0,
              "metrics": {"peak_task_rss_mb": 300.0, "tasks": tasks}}  # fmt: skip
    result.update(overrides)
    return result


def test_each_rule_fires_only_above_its_threshold() -> None:
    limits = Thresholds(max_duration_s=600, max_error_rate=0.05, max_task_rss_mb=1024)
    assert evaluate(_result(duration_s=600.0, error_rate=0.05,
                            metrics={"peak_task_rss_mb": 1024.0, "tasks": []}), limits) == []  # fmt: skip
    tasks = [{"task": "extract_campaigns 1/2", "peak_rss_mb": 1500.0}]
    fired = evaluate(_result(duration_s=600.5, error_rate=0.0501,
                             metrics={"peak_task_rss_mb": 1500.0, "tasks": tasks}), limits)  # fmt: skip
    assert [(a.rule, a.measured, a.threshold) for a in fired] == [
        (DURATION, 600.5, 600), (ERROR_RATE, 0.0501, 0.05), (TASK_MEMORY, 1500.0, 1024)]  # fmt: skip
    assert "extract_campaigns 1/2 1500 MB" in fired[2].message
    failed = evaluate(_result(status="failed", error="plan_campaigns: TrackierAuthError: bad key"), limits)
    assert [a.rule for a in failed] == [RUN_FAILED]
    assert "TrackierAuthError" in failed[0].message
    # Not measured (a run that failed before the merge) is not "zero over the limit": no alert.
    assert evaluate({"run_id": "r", "status": "completed"}, Thresholds(0, 0, 0)) == []


def test_thresholds_come_from_env_then_run_conf() -> None:
    env = {"OFFER_SYNC_MAX_DURATION_S": "30", "OFFER_SYNC_MAX_ERROR_RATE": "0.2", "OFFER_SYNC_MAX_TASK_RSS_MB": "",
           "OFFER_SYNC_DEADLINE_MINUTES": "2.5"}  # fmt: skip
    t = Thresholds.from_env(env, overrides={"max_task_rss_mb": 64})
    assert (t.max_duration_s, t.max_error_rate, t.max_task_rss_mb, t.deadline_minutes) == (30, 0.2, 64, 2.5)
    assert Thresholds.from_env({}) == Thresholds(600, 0.05, 1024, 10)
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(ConfigurationError, match="OFFER_SYNC_MAX_DURATION_S"):
            Thresholds.from_env({"OFFER_SYNC_MAX_DURATION_S": bad})


def test_db_connection_errors_are_found_anywhere_in_the_chain() -> None:
    import psycopg

    try:
        try:
            psycopg.connect(f"postgresql://nobody@127.0.0.1:{closed_port()}/x", connect_timeout=2)
        except psycopg.OperationalError as exc:
            raise RuntimeError("while staging shard 3") from exc
    except RuntimeError as wrapped:
        found = find_db_connection_error(wrapped)
    assert isinstance(found, psycopg.OperationalError)
    assert isinstance(find_db_connection_error(DatabaseUnavailableError("down")), DatabaseUnavailableError)
    assert find_db_connection_error(ValueError("bad payout")) is None
    assert find_db_connection_error(None) is None


def test_alert_text_is_formatted_in_one_place() -> None:
    [alert] = evaluate(_result(duration_s=700.0), Thresholds(), link="http://af/dags/x/runs/manual__1")
    text = format_alert(alert)
    assert text.startswith("[WARNING] trackier_offer_sync duration: the sync took 700.0 s")
    assert "(measured 700, threshold 600)" in text
    assert text.endswith("| run manual__1 | http://af/dags/x/runs/manual__1")


class SmtpSink:
    """A minimal SMTP server (EHLO/MAIL/RCPT/DATA/QUIT) on a free loopback port, keeping each message."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        messages = self.messages

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 sink ready\r\n")
                while line := self.rfile.readline():
                    verb = line.split(b" ", 1)[0].strip().upper()
                    if verb == b"DATA":
                        self.wfile.write(b"354 go on\r\n")
                        body = b"".join(iter(lambda: self.rfile.readline(), b".\r\n"))
                        messages.append(body.decode("utf-8", "replace"))
                        self.wfile.write(b"250 queued\r\n")
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 ok\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_email_notifier_configured_in_the_environment_gets_the_alert(monkeypatch) -> None:
    """No code change: the smtp provider's SmtpNotifier, listed in OFFER_SYNC_EXTRA_NOTIFIERS, mails
    the alert text (same words as the log line) through an SMTP connection from the environment."""
    sink = SmtpSink()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_ALERT_MAIL", json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": sink.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@example.com"}}))  # fmt: skip
        monkeypatch.setenv(EXTRA_NOTIFIERS_ENV, json.dumps([{
            "class": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
            "kwargs": {"smtp_conn_id": "alert_mail", "to": "data-oncall@example.com",
                       "subject": "{{ offer_sync_alert.rule }} alert for {{ offer_sync_alert.run_id }}",
                       "html_content": "<p>{{ offer_sync_alert_text }}</p>"}}]))  # fmt: skip
        [alert] = evaluate(_result(duration_s=700.0), Thresholds())
        [report] = deliver([alert], context={}, db=False, webhook_conn_id="offer_sync_webhook_absent")
        assert report["extra_notifiers"] == [True]
        [raw] = sink.messages
        mail = email.message_from_string(raw)
        assert mail["Subject"] == "duration alert for manual__1"
        assert mail["To"] == "data-oncall@example.com"
        [part] = [p for p in mail.walk() if p.get_content_type() == "text/html"]
        assert part.get_payload(decode=True).decode() == f"<p>{format_alert(alert)}</p>"
    finally:
        sink.close()


def test_a_broken_extra_notifier_does_not_stop_the_alert(monkeypatch, caplog) -> None:
    monkeypatch.setenv(EXTRA_NOTIFIERS_ENV, json.dumps([{"class": "no.such.Notifier"}]))
    [alert] = evaluate(_result(duration_s=700.0), Thresholds())
    with caplog.at_level("WARNING"):
        [report] = deliver([alert], context={}, db=False, webhook_conn_id="offer_sync_webhook_absent")
    assert report["extra_notifiers"] == [False]
    assert "OFFER SYNC ALERT [WARNING] trackier_offer_sync duration" in caplog.text
    assert "extra notifier no.such.Notifier failed" in caplog.text


# --- the deadline alert on the parsed DAG ----------------------------------------------------------

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
    env = airflow_env(tmp_path, trackier_conn={"conn_type": "http", "host": "http://127.0.0.1:9"},
                      offers_db_url="postgresql://x@127.0.0.1:9/x",
                      extra={"OFFER_SYNC_DEADLINE_MINUTES": minutes})  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", PARSE_PROBE, str(REPO_ROOT / "dags")], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(line[len("RESULT") :])


def test_deadline_alert_is_attached_to_the_dag(tmp_path) -> None:
    parsed = _parse(tmp_path, "0.25")
    assert parsed["errors"] == {}
    assert parsed["deadlines"] == [{
        "reference": "DagRunQueuedAtDeadline", "interval_s": 15.0, "callback": "AsyncCallback",
        "path": "include.offer_sync.alerts.deadline_missed",
        "kwargs": {"threshold_s": 15.0, "dag_id": "trackier_offer_sync"},
    }]  # fmt: skip
    assert parsed["serialized_deadline"] is True
    assert parsed["callbacks"] == [True, True]
    # The example consumer listens to the very Asset the sync emits.
    assert parsed["consumer_schedule"] == [["offers", "trackier-offer-sync://offers"]]
    # The documented default, and 0 switches it off.
    assert _parse(tmp_path, "10")["deadlines"][0]["interval_s"] == 600.0
    assert _parse(tmp_path, "0")["deadlines"] == []


# --- the rules through real DAG runs ---------------------------------------------------------------


@pytest.mark.airflow
def test_healthy_run_raises_no_alert_and_posts_its_sync_result(airflow, fake_trackier, offers_db_url, sql,
                                                               webhook) -> None:  # fmt: skip
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
    chat = {"class": "airflow.providers.http.notifications.http.HttpNotifier",
            "kwargs": {"http_conn_id": "team_chat", "endpoint": "chat", "json": message}}  # fmt: skip
    env = {**webhook.conn_env(), "OFFER_SYNC_MAX_TASK_RSS_MB": "1",
           "OFFER_SYNC_EXTRA_NOTIFIERS": json.dumps([chat]),
           "AIRFLOW_CONN_TEAM_CHAT": json.dumps({"conn_type": "http", "host": webhook.url})}  # fmt: skip

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
    env = {"AIRFLOW_CONN_OFFER_SYNC_WEBHOOK": json.dumps({"conn_type": "http",
                                                         "host": f"http://127.0.0.1:{closed_port()}/hook"}),
           "OFFER_SYNC_MAX_DURATION_S": "0.001"}  # fmt: skip
    run = airflow.run(server, offers_db_url, env=env)
    _ran(run)
    result = latest_run(sql)
    assert result["status"] == "completed"
    assert result["added"] == 20
    [row] = alert_rows(sql, DURATION)
    assert row["run_id"] == result["run_id"]
    assert "could not deliver the alert event after 3 attempt(s)" in run.output
    assert "could not deliver the sync_result event after 3 attempt(s)" in run.output
