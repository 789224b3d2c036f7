"""Alert rules for the offer sync, and the one notifier that delivers every alert.

**Rules** (defaults from the spec; each threshold is an environment variable on the components that
run tasks, callbacks and triggers, and can be overridden for one run with the run's conf key
``alert_thresholds``, e.g. ``{"alert_thresholds": {"max_duration_s": 1200}}``):

==================  ===========================================  =================================
rule                fires when                                    threshold (env var, default)
==================  ===========================================  =================================
``duration``        the run took longer than the limit            ``OFFER_SYNC_MAX_DURATION_S`` 600
``error_rate``      rejected + unfetched records / sweep > limit  ``OFFER_SYNC_MAX_ERROR_RATE`` 0.05
``task_memory``     the peak RSS of any sync task > limit (MB)    ``OFFER_SYNC_MAX_TASK_RSS_MB`` 1024
``db_connection``   a database connection was lost or refused      any failure
                    (any task try; not deadlocks, timeouts, disk)
``run_failed``      the run failed outright                       any failure
``deadline``        the run is not finished N minutes after it    ``OFFER_SYNC_DEADLINE_MINUTES`` 10
                    was queued (Airflow deadline alert)
==================  ===========================================  =================================

**Where the checks run.** ``publish_result`` checks the finished ``sync_result`` (so the alert is in
that task's log, and fires under ``airflow dags test`` too; dry runs included), and
``emit_offers_event`` POSTs the completion webhook once per run that changed something (never for a
dry run, never twice, see ``pipeline.claim_event``); the DAG's success callback checks the
stored result again (an alert already recorded for the run is not sent twice); the failure callback
marks the ``sync_runs`` row failed and raises ``run_failed`` plus whatever the failed run measured;
the task-level failure and retry callbacks raise ``db_connection`` when a lost or refused connection
(``DatabaseUnavailableError``, or a psycopg ``OperationalError`` with a connection SQLSTATE) is in
the exception chain (a DB blip that a retry heals is still worth knowing about); deadlocks, lock and
statement timeouts and a full disk are other ``DatabaseError`` classes, logged as what they are and
reported by ``run_failed`` when the run fails; the deadline alert's callback runs in the triggerer
while the run is still going.

**Delivery** (``OfferSyncNotifier``, an Airflow ``BaseNotifier``; ``format_alert`` is the one place
that turns an alert into text): every alert goes to the log of whatever runs the check (the task
log for task-level checks), to the ``sync_alerts`` table, to the ``offer_sync_webhook`` HTTP
connection when it exists (JSON, retried, never failing the sync), and to any extra Airflow
notifiers listed in ``OFFER_SYNC_EXTRA_NOTIFIERS`` (Slack, e-mail ...: see ``docs/alerting.md``).
When the offers database is the thing that is down, the row cannot be written: the alert still
goes to the log, the webhook and the extra notifiers.

This module is imported when the DAG file is parsed (the deadline callback is named by its path),
so everything heavy (psycopg, the pipeline, the HTTP hook) is imported inside functions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

DAG_ID = "trackier_offer_sync"
WEBHOOK_CONN_ID = "offer_sync_webhook"
#: JSON list of extra Airflow notifiers: ``[{"class": "dotted.path.Notifier", "kwargs": {...}}]``.
EXTRA_NOTIFIERS_ENV = "OFFER_SYNC_EXTRA_NOTIFIERS"
#: The run conf key holding per-run threshold overrides.
CONF_KEY = "alert_thresholds"
#: Webhook POSTs: attempts and per-attempt timeout. A dead listener costs at most this much.
WEBHOOK_ATTEMPTS = 3
WEBHOOK_TIMEOUT_S = 10.0

DURATION = "duration"
ERROR_RATE = "error_rate"
TASK_MEMORY = "task_memory"
DB_CONNECTION = "db_connection"
RUN_FAILED = "run_failed"
DEADLINE = "deadline"
RULES: tuple[str, ...] = (DURATION, ERROR_RATE, TASK_MEMORY, DB_CONNECTION, RUN_FAILED, DEADLINE)

#: Threshold field -> environment variable (names documented in .env.example and docs/deployment.md).
ENV_VARS: dict[str, str] = {
    "max_duration_s": "OFFER_SYNC_MAX_DURATION_S",
    "max_error_rate": "OFFER_SYNC_MAX_ERROR_RATE",
    "max_task_rss_mb": "OFFER_SYNC_MAX_TASK_RSS_MB",
    "deadline_minutes": "OFFER_SYNC_DEADLINE_MINUTES",
}


# --- thresholds and alerts -----------------------------------------------------------------------


def _number(raw: Any, source: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        from include.offer_sync.errors import ConfigurationError

        raise ConfigurationError(f"{source} must be a number >= 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class Thresholds:
    """The limits the rules compare against (``measured > threshold`` fires)."""

    max_duration_s: float = 600.0
    max_error_rate: float = 0.05
    max_task_rss_mb: float = 1024.0
    deadline_minutes: float = 10.0

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Thresholds:
        """Defaults, then the ``OFFER_SYNC_*`` variables, then this run's ``alert_thresholds``."""
        environ = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for name, var in ENV_VARS.items():
            raw = environ.get(var)
            if raw is not None and str(raw).strip() != "":
                values[name] = _number(raw, var)
        for name, raw in (overrides or {}).items():
            if name not in ENV_VARS:
                log.warning("ignoring unknown alert threshold %r in the run's %s", name, CONF_KEY)
                continue
            values[name] = _number(raw, f"{CONF_KEY}.{name}")
        return cls(**values)


@dataclass(frozen=True)
class Alert:
    """One fired rule: what was measured against which threshold, for which run, and where to look."""

    rule: str
    measured: float | None
    threshold: float | None
    run_id: str | None
    link: str | None
    message: str
    severity: str = "warning"  # warning | critical
    dag_id: str = DAG_ID
    raised_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_alert(alert: Alert) -> str:
    """The single human-readable form of an alert (log lines, chat messages, e-mail subjects)."""
    figures = ""
    if alert.measured is not None and alert.threshold is not None:
        figures = f" (measured {_fmt(alert.measured)}, threshold {_fmt(alert.threshold)})"
    where = f" | run {alert.run_id}" if alert.run_id else ""
    link = f" | {alert.link}" if alert.link else ""
    return f"[{alert.severity.upper()}] {alert.dag_id} {alert.rule}: {alert.message}{figures}{where}{link}"


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def run_link(run_id: str | None, dag_id: str = DAG_ID) -> str | None:
    """The run's page in the Airflow UI (``[api] base_url``; run ids hold ``:`` and ``+``)."""
    if not run_id:
        return None
    base = "http://localhost:8080"
    try:
        from airflow.sdk.configuration import conf

        base = conf.get("api", "base_url", fallback=None) or base
    except Exception:  # noqa: BLE001 - a link is a nicety; no config must not stop an alert
        log.debug("no [api] base_url; using %s in alert links", base)
    return f"{base.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def evaluate(
    result: Mapping[str, Any], thresholds: Thresholds, *, link: str | None = None, dag_id: str = DAG_ID
) -> list[Alert]:
    """The rules a ``sync_result`` breaks: duration, error rate, task memory, and a failed status.

    Values that were not measured (a run that failed before the merge has no task metrics) never
    fire: an alert always carries a real measurement.
    """
    run_id = result.get("run_id")
    alerts: list[Alert] = []

    def add(rule: str, measured: float | None, threshold: float | None, message: str, severity: str) -> None:
        alerts.append(Alert(rule, measured, threshold, run_id, link, message, severity, dag_id))

    duration = _float(result.get("duration_s"))
    if duration is not None and duration > thresholds.max_duration_s:
        limit = thresholds.max_duration_s
        add(DURATION, duration, limit, f"the sync took {duration:.1f} s, longer than the {limit:g} s limit", "warning")

    error_rate = _float(result.get("error_rate"))
    if error_rate is not None and error_rate > thresholds.max_error_rate:
        add(ERROR_RATE, error_rate, thresholds.max_error_rate,
            f"{error_rate:.2%} of the sweep was rejected or not fetched (rejected {result.get('rejected', 0)}, "
            f"failed pages {result.get('failed_pages', 0)}), over the {thresholds.max_error_rate:.2%} limit",
            "critical" if result.get("status") == "failed" else "warning")  # fmt: skip

    metrics = result.get("metrics") or {}
    peak = _float(metrics.get("peak_task_rss_mb"))
    if peak is not None and peak > thresholds.max_task_rss_mb:
        tasks = metrics.get("tasks") or []
        over = [t for t in tasks if (_float(t.get("peak_rss_mb")) or 0) > thresholds.max_task_rss_mb]
        names = ", ".join(f"{t.get('task')} {float(t['peak_rss_mb']):.0f} MB" for t in over[:5]) or "?"
        add(TASK_MEMORY, peak, thresholds.max_task_rss_mb,
            f"a sync task peaked at {peak:.0f} MB RSS, over the {thresholds.max_task_rss_mb:g} MB limit ({names})",
            "warning")  # fmt: skip

    if result.get("status") == "failed":
        error = str(result.get("error") or "see the task logs")[:500]
        add(RUN_FAILED, 1.0, 0.0, f"the sync run failed: {error}", "critical")  # 1 failed run, any is too many
    return alerts


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def find_db_connection_error(exc: BaseException | None) -> BaseException | None:
    """The lost or refused database connection in ``exc``'s chain, if any: a ``DatabaseUnavailableError``,
    or a psycopg ``OperationalError`` whose SQLSTATE says the connection is gone (``is_connection_failure``).

    Only those: psycopg also files deadlocks, lock and statement timeouts and a full disk under
    ``OperationalError``, and ``db.connect`` turns them into the other ``DatabaseError`` classes,
    which are reported as what they are (in the task log and, when the run fails, ``run_failed``).
    Classes are matched by module and name along the MRO, so psycopg is not imported just to ask.
    """
    from include.offer_sync.errors import is_connection_failure

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for cls in type(exc).__mro__:
            if cls.__module__ == "include.offer_sync.errors" and cls.__name__ == "DatabaseError":
                return None  # classified by db.connect: a more specific class than "unavailable"
            if (cls.__name__ == "DatabaseUnavailableError" and cls.__module__ == "include.offer_sync.errors") or (
                cls.__name__ == "OperationalError" and cls.__module__.split(".")[0] == "psycopg"
                and is_connection_failure(getattr(exc, "sqlstate", None))
            ):
                return exc
        exc = exc.__cause__ or exc.__context__
    return None


def db_connection_alert(
    error: BaseException | str, *, run_id: str | None, where: str, severity: str = "critical",
    link: str | None = None, dag_id: str = DAG_ID,
) -> Alert:  # fmt: skip
    """``db_connection``: measured = 1 failed connection, threshold = 0 (any failure alerts)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return Alert(DB_CONNECTION, 1.0, 0.0, run_id, link, f"{where}: database connection failed: {text[:500]}",
                 severity, dag_id)  # fmt: skip


# --- delivery -------------------------------------------------------------------------------------


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
    alerts: Sequence[Alert], *, context: Mapping[str, Any] | None = None, db: Any = None,
    webhook_conn_id: str = WEBHOOK_CONN_ID,
) -> list[dict[str, Any]]:  # fmt: skip
    """Send each alert everywhere it goes; an alert this run already recorded is not sent again."""
    if not alerts:
        return []
    if db is None:
        db = _db_settings()
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


def _db_settings() -> Any:
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
        from include.offer_sync.schema import ensure_schema

        ids: list[int | bool | None] = []
        with connect(db, autocommit=True) as conn:
            ensure_schema(conn)
            for alert in alerts:
                row = conn.execute(query("alerts_insert"), {
                    "run_id": alert.run_id, "rule": alert.rule, "severity": alert.severity,
                    "measured": alert.measured, "threshold": alert.threshold, "message": alert.message,
                    "link": alert.link,
                }).fetchone()  # fmt: skip
                ids.append(int(row[0]) if row else False)
        return ids
    except Exception as exc:  # noqa: BLE001 - the database may be the very thing that is down
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("could not record %d alert(s) in sync_alerts (%s): they go to the log and webhook only",
                    len(alerts), reason)  # fmt: skip
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
            retry_args, endpoint=None, json=body,
            headers={"Content-Type": "application/json", "X-Offer-Sync-Event": event},
            extra_options={"timeout": WEBHOOK_TIMEOUT_S},
        )  # fmt: skip
        log.info("webhook %s: %s event delivered (HTTP %s)", conn_id, event, response.status_code)
        return True
    except Exception as exc:  # noqa: BLE001 - by design: a dead webhook is logged, never fatal
        log.warning("webhook %s: could not deliver the %s event after %d attempt(s): %s", conn_id, event,
                    WEBHOOK_ATTEMPTS, type(exc).__name__)  # fmt: skip
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
        if not isinstance(specs, list) or not all(isinstance(s, dict) and isinstance(s.get("class"), str)
                                                   for s in specs):  # fmt: skip
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


# --- the checks, called from the DAG ------------------------------------------------------------


def _conf(context: Mapping[str, Any]) -> dict[str, Any]:
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) if dag_run is not None else None
    if conf is None and isinstance(dag_run, Mapping):
        conf = dag_run.get("conf")
    return dict(conf or {})


def thresholds_for(conf: Mapping[str, Any] | None) -> Thresholds:
    """The thresholds of a run: env vars, overridden by the run conf's ``alert_thresholds``."""
    overrides = (conf or {}).get(CONF_KEY)
    return Thresholds.from_env(overrides=overrides if isinstance(overrides, Mapping) else None)


def _dag_id(context: Mapping[str, Any]) -> str:
    dag = context.get("dag")
    return str(getattr(dag, "dag_id", None) or DAG_ID)


def announce_result(
    result: Mapping[str, Any], *, conf: Mapping[str, Any] | None = None, context: Mapping[str, Any] | None = None,
    dag_id: str = DAG_ID,
) -> list[dict[str, Any]]:  # fmt: skip
    """In ``publish_result``: check the finished result against the rules. Never raises.

    Dry runs are checked too. The completion webhook is not posted here: ``post_sync_result``
    does that from ``emit_offers_event``, with the run's one ``offers`` event (never for a dry
    run, never twice).
    """
    report: list[dict[str, Any]] = []
    try:
        alerts = evaluate(result, thresholds_for(conf), link=run_link(result.get("run_id"), dag_id), dag_id=dag_id)
        if alerts:
            notifier = OfferSyncNotifier(alerts)
            notifier(dict(context or {}))
            report = notifier.delivered
        else:
            log.info("alert checks passed: duration, error rate and task memory are within their limits")
    except Exception:
        log.exception("alert checks on the finished run failed")
    return report


def post_sync_result(result: Mapping[str, Any], conn_id: str = WEBHOOK_CONN_ID) -> bool | None:
    """The completion webhook: POST ``sync_result`` when the connection exists. Never raises.

    Returns whether it was delivered (``None``: no webhook configured).
    """
    if not webhook_configured(conn_id):
        return None
    return post_json(conn_id, result, "sync_result")


def on_run_success(context: Mapping[str, Any]) -> None:
    """DAG ``on_success_callback``: check the run's stored ``sync_result`` (duplicates are dropped)."""
    run_id = context.get("run_id")
    dag_id = _dag_id(context)
    link = run_link(run_id, dag_id)
    db = _db_settings()
    if db is None or not run_id:
        return
    try:
        from include.offer_sync.db import connect
        from include.offer_sync.runs import get_run

        with connect(db) as conn:
            record = get_run(conn, str(run_id))
    except Exception as exc:
        if find_db_connection_error(exc) is None:
            log.exception("success callback could not read run %s", run_id)
            return
        OfferSyncNotifier([db_connection_alert(exc, run_id=run_id, where="success callback", link=link,
                                               dag_id=dag_id)], db=False)(dict(context))  # fmt: skip
        return
    if not record or not record.get("result"):
        log.warning("success callback: run %s has no stored sync_result", run_id)
        return
    alerts = evaluate(record["result"], thresholds_for(_conf(context)), link=link, dag_id=dag_id)
    if alerts:
        OfferSyncNotifier(alerts, db=db)(dict(context))


def on_run_failure(context: Mapping[str, Any]) -> None:
    """DAG ``on_failure_callback``: mark the run failed, raise ``run_failed`` and what it measured."""
    from include.offer_sync.db import connect
    from include.offer_sync.pipeline import record_failure

    run_id = str(context.get("run_id") or "")
    dag_id = _dag_id(context)
    link = run_link(run_id, dag_id)
    ti = context.get("ti")
    task = getattr(ti, "task_id", None)
    map_index = getattr(ti, "map_index", None)
    if task and isinstance(map_index, int) and map_index >= 0:
        task = f"{task}[{map_index}]"
    error = f"task {task} failed ({context.get('reason') or 'task_failure'})" if task else str(
        context.get("reason") or "the run failed")  # fmt: skip
    db = _db_settings()
    result: dict[str, Any] | None = None
    alerts: list[Alert] = []
    if db is not None:
        try:
            with connect(db):
                pass
        except Exception as exc:  # noqa: BLE001 - the outage is what we report
            alerts.append(db_connection_alert(exc, run_id=run_id, where="failure callback (marking the run failed)",
                                              link=link, dag_id=dag_id))  # fmt: skip
            db = False
            error += "; the offers database is unreachable, so sync_runs could not be updated"
        else:
            result = record_failure(db, run_id, error)
    base = {"run_id": run_id, "status": "failed", "error": error}
    if result:
        base = {**result, "status": "failed", "error": result.get("error") or error}
    alerts = evaluate(base, thresholds_for(_conf(context)), link=link, dag_id=dag_id) + alerts
    OfferSyncNotifier(alerts, db=db if db is not None else False)(dict(context))


def _task_callback(context: Mapping[str, Any], *, final: bool) -> None:
    exc = context.get("exception")
    db_error = find_db_connection_error(exc if isinstance(exc, BaseException) else None)
    ti = context.get("ti")
    run_id = str(context.get("run_id") or getattr(ti, "run_id", "") or "")
    dag_id = str(getattr(ti, "dag_id", None) or _dag_id(context))
    task = str(getattr(ti, "task_id", "?"))
    map_index = getattr(ti, "map_index", None)
    if isinstance(map_index, int) and map_index >= 0:
        task = f"{task}[{map_index}]"
    try_number = getattr(ti, "try_number", None)
    if db_error is not None:
        where = f"task {task} try {try_number}" + ("" if final else " (will be retried)")
        alert = db_connection_alert(db_error, run_id=run_id, where=where, severity="critical" if final else "warning",
                                    link=run_link(run_id, dag_id), dag_id=dag_id)  # fmt: skip
        OfferSyncNotifier([alert])(dict(context))
    elif final and run_id and exc is not None:
        # The DAG's failure callback sees no exception; record the real one on the run now.
        db = _db_settings()
        if db is not None:
            from include.offer_sync.pipeline import record_failure

            record_failure(db, run_id, f"{task}: {type(exc).__name__}: {str(exc)[:1000]}")


def on_task_failure(context: Mapping[str, Any]) -> None:
    """Task ``on_failure_callback``: DB-connection alert, or record the error on the run. Never raises."""
    try:
        _task_callback(context, final=True)
    except Exception:
        log.exception("task failure callback failed")


def on_task_retry(context: Mapping[str, Any]) -> None:
    """Task ``on_retry_callback``: a DB-connection failure alerts even if the retry then heals it."""
    try:
        _task_callback(context, final=False)
    except Exception:
        log.exception("task retry callback failed")


async def deadline_missed(context: Mapping[str, Any] | None = None, *, threshold_s: float, dag_id: str = DAG_ID) -> str:
    """The deadline alert's callback: the run is still not finished ``threshold_s`` after it was queued.

    Airflow's scheduler notices the missed deadline and queues this on the triggerer with a small
    context (``dag_run`` as the REST API shows it, ``deadline``). Returns the alert's text: Airflow
    stores the return value in the ``callback.output`` text column (a dict there crashes the
    triggerer in 3.3.2).
    """
    dag_run = dict((context or {}).get("dag_run") or {})
    run_id = dag_run.get("dag_run_id") or dag_run.get("run_id")
    dag_id = str(dag_run.get("dag_id") or dag_id)
    since = dag_run.get("queued_at") or dag_run.get("start_date")
    measured: float | None = None
    if since:
        started = since if isinstance(since, datetime) else datetime.fromisoformat(str(since).replace("Z", "+00:00"))
        measured = round((datetime.now(UTC) - started).total_seconds(), 1)
    state = dag_run.get("state") or "running"
    alert = Alert(DEADLINE, measured, float(threshold_s), run_id, run_link(run_id, dag_id),
                  f"the run is still {state} {_fmt(measured or 0)} s after it was queued; its deadline was "
                  f"{threshold_s / 60:g} min (OFFER_SYNC_DEADLINE_MINUTES)", "critical", dag_id)  # fmt: skip
    notifier = OfferSyncNotifier([alert])
    notifier.context = dict(context or {})
    try:
        await notifier
    except Exception:
        log.exception("deadline alert delivery failed")
    return format_alert(alert)
