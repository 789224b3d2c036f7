"""The alert rules on a ``sync_result`` and the notifier's channels, without Airflow or a database."""

from __future__ import annotations

import email
import json
import socketserver
import threading
from typing import Any

import pytest

from include.offer_sync.alerts.delivery import EXTRA_NOTIFIERS_ENV, deliver
from include.offer_sync.alerts.rules import (
    DURATION,
    ERROR_RATE,
    RUN_FAILED,
    TASK_MEMORY,
    Thresholds,
    evaluate,
    find_db_connection_error,
    format_alert,
)
from include.offer_sync.errors import ConfigurationError, DatabaseUnavailableError
from tests.airflow.test_alerts import closed_port


def _result(**overrides: Any) -> dict[str, Any]:
    tasks = [{"task": "merge_catalogue", "peak_rss_mb": 300.0}]
    result = {
        "run_id": "manual__1",
        "status": "completed",
        "duration_s": 10.0,
        "error_rate": 0.0,
        "rejected": 0,
        "metrics": {"peak_task_rss_mb": 300.0, "tasks": tasks},
    }
    result.update(overrides)
    return result


def test_each_rule_fires_only_above_its_threshold() -> None:
    limits = Thresholds(max_duration_s=600, max_error_rate=0.05, max_task_rss_mb=1024)
    assert (
        evaluate(_result(duration_s=600.0, error_rate=0.05, metrics={"peak_task_rss_mb": 1024.0, "tasks": []}), limits)
        == []
    )
    tasks = [{"task": "extract_campaigns 1/2", "peak_rss_mb": 1500.0}]
    fired = evaluate(
        _result(duration_s=600.5, error_rate=0.0501, metrics={"peak_task_rss_mb": 1500.0, "tasks": tasks}), limits
    )
    assert [(a.rule, a.measured, a.threshold) for a in fired] == [
        (DURATION, 600.5, 600),
        (ERROR_RATE, 0.0501, 0.05),
        (TASK_MEMORY, 1500.0, 1024),
    ]
    assert "extract_campaigns 1/2 1500 MB" in fired[2].message
    failed = evaluate(_result(status="failed", error="plan_campaigns: TrackierAuthError: bad key"), limits)
    assert [a.rule for a in failed] == [RUN_FAILED]
    assert "TrackierAuthError" in failed[0].message
    # Not measured (a run that failed before the merge) is not "zero over the limit": no alert.
    assert evaluate({"run_id": "r", "status": "completed"}, Thresholds(0, 0, 0)) == []


def test_thresholds_come_from_env_then_run_conf() -> None:
    env = {
        "OFFER_SYNC_MAX_DURATION_S": "30",
        "OFFER_SYNC_MAX_ERROR_RATE": "0.2",
        "OFFER_SYNC_MAX_TASK_RSS_MB": "",
        "OFFER_SYNC_DEADLINE_MINUTES": "2.5",
    }
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
        monkeypatch.setenv(
            "AIRFLOW_CONN_ALERT_MAIL",
            json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": sink.port,
                    "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@example.com"},
                }
            ),
        )
        monkeypatch.setenv(
            EXTRA_NOTIFIERS_ENV,
            json.dumps(
                [
                    {
                        "class": "airflow.providers.smtp.notifications.smtp.SmtpNotifier",
                        "kwargs": {
                            "smtp_conn_id": "alert_mail",
                            "to": "data-oncall@example.com",
                            "subject": "{{ offer_sync_alert.rule }} alert for {{ offer_sync_alert.run_id }}",
                            "html_content": "<p>{{ offer_sync_alert_text }}</p>",
                        },
                    }
                ]
            ),
        )
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
