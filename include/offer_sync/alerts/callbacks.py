"""Where the alert checks run: the end of a run, Airflow's callbacks, the deadline.

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

This module is imported when the DAG file is parsed (the deadline callback is named by its path),
so everything heavy (psycopg, the pipeline, the HTTP hook) is imported inside functions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from include.offer_sync.alerts.delivery import (
    WEBHOOK_CONN_ID,
    OfferSyncNotifier,
    offers_db_or_none,
    post_json,
    webhook_configured,
)
from include.offer_sync.alerts.rules import (
    DAG_ID,
    DEADLINE,
    Alert,
    db_connection_alert,
    evaluate,
    find_db_connection_error,
    fmt_number,
    format_alert,
    run_link,
    thresholds_for,
)

log = logging.getLogger(__name__)


def _conf(context: Mapping[str, Any]) -> dict[str, Any]:
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) if dag_run is not None else None
    if conf is None and isinstance(dag_run, Mapping):
        conf = dag_run.get("conf")
    return dict(conf or {})


def _dag_id(context: Mapping[str, Any]) -> str:
    dag = context.get("dag")
    return str(getattr(dag, "dag_id", None) or DAG_ID)


def announce_result(
    result: Mapping[str, Any],
    *,
    conf: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    dag_id: str = DAG_ID,
) -> list[dict[str, Any]]:
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
    db = offers_db_or_none()
    if db is None or not run_id:
        return
    try:
        from include.offer_sync.db import connect
        from include.offer_sync.load.runs import get_run

        with connect(db) as conn:
            record = get_run(conn, str(run_id))
    except Exception as exc:
        if find_db_connection_error(exc) is None:
            log.exception("success callback could not read run %s", run_id)
            return
        OfferSyncNotifier(
            [db_connection_alert(exc, run_id=run_id, where="success callback", link=link, dag_id=dag_id)], db=False
        )(dict(context))
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
    from include.offer_sync.load.runs import record_failure

    run_id = str(context.get("run_id") or "")
    dag_id = _dag_id(context)
    link = run_link(run_id, dag_id)
    ti = context.get("ti")
    task = getattr(ti, "task_id", None)
    map_index = getattr(ti, "map_index", None)
    if task and isinstance(map_index, int) and map_index >= 0:
        task = f"{task}[{map_index}]"
    error = (
        f"task {task} failed ({context.get('reason') or 'task_failure'})"
        if task
        else str(context.get("reason") or "the run failed")
    )
    db = offers_db_or_none()
    result: dict[str, Any] | None = None
    alerts: list[Alert] = []
    if db is not None:
        try:
            with connect(db):
                pass
        except Exception as exc:  # noqa: BLE001 - the outage is what we report
            alerts.append(
                db_connection_alert(
                    exc, run_id=run_id, where="failure callback (marking the run failed)", link=link, dag_id=dag_id
                )
            )
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
        alert = db_connection_alert(
            db_error,
            run_id=run_id,
            where=where,
            severity="critical" if final else "warning",
            link=run_link(run_id, dag_id),
            dag_id=dag_id,
        )
        OfferSyncNotifier([alert])(dict(context))
    elif final and run_id and exc is not None:
        # The DAG's failure callback sees no exception; record the real one on the run now.
        db = offers_db_or_none()
        if db is not None:
            from include.offer_sync.load.runs import record_failure

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
    alert = Alert(
        DEADLINE,
        measured,
        float(threshold_s),
        run_id,
        run_link(run_id, dag_id),
        f"the run is still {state} {fmt_number(measured or 0)} s after it was queued; its deadline was "
        f"{threshold_s / 60:g} min (OFFER_SYNC_DEADLINE_MINUTES)",
        "critical",
        dag_id,
    )
    notifier = OfferSyncNotifier([alert])
    notifier.context = dict(context or {})
    try:
        await notifier
    except Exception:
        log.exception("deadline alert delivery failed")
    return format_alert(alert)
