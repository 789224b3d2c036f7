"""Delivery of alerts: the one Airflow notifier and its channels.

**Delivery** (``OfferSyncNotifier``, an Airflow ``BaseNotifier``; ``format_alert`` is the one place
that turns an alert into text): every alert goes to the log of whatever runs the check (the task
log for task-level checks), to the ``sync_alerts`` table, to the ``offer_sync_webhook`` HTTP
connection when it exists (JSON, retried, never failing the sync), and to any extra Airflow
notifiers listed in ``OFFER_SYNC_EXTRA_NOTIFIERS`` (Slack, e-mail ...: see ``docs/alerting.md``).
When the offers database is the thing that is down, the row cannot be written: the alert still
goes to the log, the webhook and the extra notifiers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseNotifier

from include.offer_sync.alerts.rules import Alert, format_alert
from include.offer_sync.constants import EXTRA_NOTIFIERS_ENV, WEBHOOK_CONN_ID

log = logging.getLogger(__name__)

# EXTRA_NOTIFIERS_ENV names a JSON list of extra Airflow notifiers:
# ``[{"class": "dotted.path.Notifier", "kwargs": {...}}]``.
#: Webhook POSTs: attempts and per-attempt timeout. A dead listener costs at most this much.
WEBHOOK_ATTEMPTS = 3
WEBHOOK_TIMEOUT_S = 10.0


class OfferSyncNotifier(BaseNotifier):
    """Delivers alerts: log, ``sync_alerts`` row, webhook, extra notifiers. Never raises.

    Use it like any Airflow notifier (``OfferSyncNotifier(alerts)(context)``, or ``await`` it in the
    triggerer). ``db`` is the offers database's ``DatabaseSettings``; by default it is read from the
    ``offers_db`` connection, and ``db=False`` skips the table (it is known to be unreachable).
    After a call, ``delivered`` lists what happened to each alert (for callers and tests).
    """

    template_fields = ()

    def __init__(self, alerts: Sequence[Alert], *, db: Any = None, webhook_conn_id: str = WEBHOOK_CONN_ID) -> None:
        super().__init__()
        self.alerts = list(alerts)
        self.db = db
        self.webhook_conn_id = webhook_conn_id
        self.delivered: list[dict[str, Any]] = []

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        # Nothing to render; and the DAG callbacks of `airflow dags test` pass a SerializedDAG as
        # context["dag"], which has no template environment.
        if self.template_fields:
            super().render_template_fields(context, jinja_env)

    def notify(self, context: Any) -> None:
        self.delivered = deliver(self.alerts, context=context, db=self.db, webhook_conn_id=self.webhook_conn_id)

    async def async_notify(self, context: Any) -> None:
        # Database and HTTP clients here are blocking: keep them off the triggerer's event loop.
        await asyncio.to_thread(self.notify, context)


def deliver(
    alerts: Sequence[Alert],
    *,
    context: Mapping[str, Any] | None = None,
    db: Any = None,
    webhook_conn_id: str = WEBHOOK_CONN_ID,
) -> list[dict[str, Any]]:
    """Send each alert everywhere it goes; an alert this run already recorded is not sent again."""
    if not alerts:
        return []
    if db is None:
        db = offers_db_or_none()
    recorded = _record(alerts, db) if db else [None] * len(alerts)
    webhook = webhook_conn_id if webhook_configured(webhook_conn_id) else None
    extras = extra_notifier_specs()
    report: list[dict[str, Any]] = []
    for alert, row_id in zip(alerts, recorded, strict=True):
        text = format_alert(alert)
        if row_id is False:
            log.info("alert already raised for run %s, not sent again: %s", alert.run_id, text)
            report.append({"rule": alert.rule, "duplicate": True})
            continue
        (log.error if alert.severity == "critical" else log.warning)("OFFER SYNC ALERT %s", text)
        entry: dict[str, Any] = {"rule": alert.rule, "row_id": row_id, "text": text}
        if webhook:
            entry["webhook"] = post_json(webhook, {"event": "alert", **alert.as_dict(), "text": text}, "alert")
        entry["extra_notifiers"] = [_call_extra(spec, alert, text, context) for spec in extras]
        report.append(entry)
    return report


def offers_db_or_none() -> Any:
    """The offers database settings, or None (logged) when the connection is missing: alerts still go out."""
    try:
        from include.offer_sync.settings import DatabaseSettings

        return DatabaseSettings.from_airflow()
    except Exception as exc:  # noqa: BLE001 - no offers_db connection: alerts still go to log and webhook
        log.warning("alerts are not recorded in sync_alerts: %s", exc)
        return None


def _record(alerts: Sequence[Alert], db: Any) -> list[int | bool | None]:
    """Insert the rows; per alert: its id, False (already raised for this run) or None (not recorded)."""
    try:
        from include.offer_sync.db import connect, query
        from include.offer_sync.load.schema import ensure_schema

        ids: list[int | bool | None] = []
        with connect(db, autocommit=True) as conn:
            ensure_schema(conn)
            for alert in alerts:
                row = conn.execute(query("alerts_insert"), alert.row()).fetchone()
                ids.append(int(row[0]) if row else False)
        return ids
    except Exception as exc:  # noqa: BLE001 - the database may be the very thing that is down
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning(
            "could not record %d alert(s) in sync_alerts (%s): they go to the log and webhook only", len(alerts), reason
        )
        return [None] * len(alerts)


def webhook_configured(conn_id: str = WEBHOOK_CONN_ID) -> bool:
    """Whether the webhook connection exists (``AIRFLOW_CONN_OFFER_SYNC_WEBHOOK`` or a secrets backend)."""
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - not configured (or unreadable): no webhook, never an error
        if type(exc).__name__ != "AirflowNotFoundException":
            log.warning("webhook connection %r is unusable: %s", conn_id, exc)
        return False
    return True


def post_json(conn_id: str, payload: Mapping[str, Any], event: str) -> bool:
    """POST ``payload`` as JSON to the HTTP connection, retrying; returns whether it was accepted.

    Retries connection errors, timeouts, 429 and 5xx (``WEBHOOK_ATTEMPTS`` attempts, exponential
    wait); never raises: a listener that is down must not fail or stall the sync for long.
    """
    try:
        import tenacity
        from airflow.providers.http.hooks.http import HttpHook

        body = json.loads(json.dumps(dict(payload), default=str))
        hook = HttpHook(method="POST", http_conn_id=conn_id)
        retry_args = {
            "stop": tenacity.stop_after_attempt(WEBHOOK_ATTEMPTS),
            "wait": tenacity.wait_exponential(multiplier=0.5, max=4),
            "retry": tenacity.retry_if_exception(_retryable),
            "reraise": True,
        }
        response = hook.run_with_advanced_retry(
            retry_args,
            endpoint=None,
            json=body,
            headers={"Content-Type": "application/json", "X-Offer-Sync-Event": event},
            extra_options={"timeout": WEBHOOK_TIMEOUT_S},
        )
        log.info("webhook %s: %s event delivered (HTTP %s)", conn_id, event, response.status_code)
        return True
    except Exception as exc:  # noqa: BLE001 - by design: a dead webhook is logged, never fatal
        log.warning(
            "webhook %s: could not deliver the %s event after %d attempt(s): %s",
            conn_id,
            event,
            WEBHOOK_ATTEMPTS,
            type(exc).__name__,
        )
        return False


def _retryable(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return True
    status = str(exc).split(":", 1)[0]  # HttpHook raises AirflowException("<status>:<reason>")
    return status.isdigit() and (status == "429" or status.startswith("5"))


def extra_notifier_specs(environ: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The ``OFFER_SYNC_EXTRA_NOTIFIERS`` list: ``[{"class": "...", "kwargs": {...}}, ...]``."""
    raw = (os.environ if environ is None else environ).get(EXTRA_NOTIFIERS_ENV, "").strip()
    if not raw:
        return []
    try:
        specs = json.loads(raw)
        if isinstance(specs, dict):
            specs = [specs]
        if not isinstance(specs, list) or not all(
            isinstance(s, dict) and isinstance(s.get("class"), str) for s in specs
        ):
            raise ValueError('expected a list of {"class": "dotted.path", "kwargs": {...}}')
        return specs
    except ValueError as exc:
        log.warning("ignoring %s: %s", EXTRA_NOTIFIERS_ENV, exc)
        return []


def _call_extra(spec: Mapping[str, Any], alert: Alert, text: str, context: Mapping[str, Any] | None) -> bool:
    """Instantiate one configured notifier (fresh: rendering templates mutates it) and call it.

    Its template fields are rendered against the callback context plus ``offer_sync_alert`` (the
    alert as a dict) and ``offer_sync_alert_text`` (``format_alert``), so e.g. a SlackNotifier with
    ``text="{{ offer_sync_alert_text }}"`` posts the same words as the log line.
    """
    path = str(spec["class"])
    try:
        from airflow.sdk._shared.module_loading import import_string

        notifier = import_string(path)(**dict(spec.get("kwargs") or {}))
        ctx: dict[str, Any] = dict(context or {})
        if not hasattr(ctx.get("dag"), "get_template_env"):
            ctx.pop("dag", None)  # `dags test` callbacks pass a SerializedDAG: render without it
        ctx.update(offer_sync_alert=alert.as_dict(), offer_sync_alert_text=text)
        notifier(ctx)
        return True
    except Exception as exc:  # noqa: BLE001 - one broken chat integration must not stop the others
        log.warning("extra notifier %s failed for the %s alert: %s", path, alert.rule, exc)
        return False
