"""What the Offer Sync page shows, as plain JSON-ready dicts.

Two sources, read separately so one being down never hides the other:

- the offers database (the ``offers_db`` connection): ``sync_runs`` (latest runs and their counts),
  ``sync_rejects``, ``sync_alerts``, and PostgreSQL's ``pg_stat_progress_copy`` view, which reports
  ``tuples_processed`` for every COPY in flight. Each extract shard streams its records into the
  run's staging tables through one COPY, so this view gives live "records staged" figures while
  costing the sync itself zero extra statements;
- Airflow's metadata database (the api-server's own session): the DAG's paused flag, its active
  run, that run's task instances (tasks done / total) and the XComs of ``plan_*`` (what the sweep
  expects: records and pages) and of finished ``extract_*`` shards (pages and records fetched).

``build_progress`` is a pure function of those rows so it can be tested without either database.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from include.offer_sync.constants import DAG_ID, EXTRACT_TASKS, PLAN_TASKS
from include.offer_sync.db import load_sql
from include.offer_sync.load.staging import StagingTables
from include.offer_sync.settings import OFFERS_DB_CONN_ID, DatabaseSettings

log = logging.getLogger(__name__)

RUN_LIMIT = 15
REJECT_LIMIT = 25
ALERT_LIMIT = 15
RAW_CHARS = 240
CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 5000

#: The DAG's steps in order, as the page shows them: (key, title, task ids).
STEPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("start", "Start", ("start_sync",)),
    ("plan", "Plan", tuple(PLAN_TASKS)),
    ("extract", "Fetch & stage", tuple(EXTRACT_TASKS)),
    ("check", "Check", ("check_sweep",)),
    ("merge", "Merge", ("merge_catalogue",)),
    ("publish", "Publish", ("publish_result", "emit_offers_event")),
)
DONE_STATES = frozenset({"success", "skipped"})
FAILED_STATES = frozenset({"failed", "upstream_failed"})
ACTIVE_STATES = frozenset({"running", "deferred", "up_for_retry", "up_for_reschedule", "restarting"})


# --- the offers database ---------------------------------------------------------------------


class OffersDbError(Exception):
    """The offers database cannot be read; the message is safe to show (no password)."""


_settings_cache: dict[str, tuple[float, DatabaseSettings]] = {}
_settings_lock = threading.Lock()
SETTINGS_TTL_S = 60.0


def offers_db_settings(conn_id: str = OFFERS_DB_CONN_ID) -> DatabaseSettings:
    """The ``offers_db`` connection as seen by the api-server (env var, secrets backend or DB).

    Cached for a minute: the page polls every few seconds, and a remote secrets backend should
    not be asked that often.
    """
    now = time.monotonic()
    with _settings_lock:
        cached = _settings_cache.get(conn_id)
        if cached and now - cached[0] < SETTINGS_TTL_S:
            return cached[1]
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or a secrets backend's own error
        raise OffersDbError(f"the {conn_id} connection is not defined (set AIRFLOW_CONN_{conn_id.upper()})") from exc
    settings = DatabaseSettings.from_connection(conn)
    with _settings_lock:
        _settings_cache[conn_id] = (now, settings)
    return settings


def _rows(conn: psycopg.Connection[Any], name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cur = conn.execute(load_sql(name), params)  # type: ignore[arg-type]  # our own .sql files
    columns = [c.name for c in cur.description or ()]
    return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


@contextmanager
def offers_connection(settings: DatabaseSettings) -> Iterator[psycopg.Connection[Any]]:
    """A short-lived, read-mostly connection for one page request.

    Autocommit (no transaction left open between statements), a connect timeout and a statement
    timeout (a slow query must not pin an api-server worker), and the connection's schema as the
    search path. Any psycopg error becomes ``OffersDbError`` with a message fit for the page.
    """
    try:
        with psycopg.connect(
            settings.conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="trackier_offer_sync_ui",
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        ) as conn:
            if settings.schema:
                conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
            yield conn
    except psycopg.Error as exc:
        raise OffersDbError(db_error_text(settings, exc)) from exc


def db_error_text(settings: DatabaseSettings, exc: psycopg.Error) -> str:
    """``cannot read the offers database at <host/db>: <last line of the error>`` (no password)."""
    text = str(exc).strip().splitlines()
    reason = text[-1] if text else type(exc).__name__
    return f"cannot read the offers database at {settings.display}: {reason}"


def read_offers_db(settings: DatabaseSettings, run_key: str | None = None) -> dict[str, Any]:
    """Latest runs, rejects and alerts, plus the live COPY progress of run ``run_key`` (if any).

    Raises ``OffersDbError`` with a message fit for the page when the database cannot be read.
    """
    with offers_connection(settings) as conn:
        present = {
            r["name"]
            for r in _rows(conn, "ui_tables_exist", {"names": ["sync_runs", "sync_rejects", "sync_alerts"]})
            if r["present"]
        }
        result: dict[str, Any] = {
            "schema_ready": "sync_runs" in present,
            "runs": _rows(conn, "ui_runs", {"limit": RUN_LIMIT}) if "sync_runs" in present else [],
            "rejects": _rows(conn, "ui_rejects", {"limit": REJECT_LIMIT, "raw_chars": RAW_CHARS})
            if "sync_rejects" in present
            else [],
            "alerts": _rows(conn, "ui_alerts", {"limit": ALERT_LIMIT}) if "sync_alerts" in present else [],
            "copy_progress": [],
        }
        if run_key:
            tables = StagingTables(run_key)
            result["copy_progress"] = _rows(
                conn, "ui_copy_progress", {"tables": [tables.advertisers, tables.campaigns]}
            )
        return result


# --- Airflow's metadata database ---------------------------------------------------------------


def _xcom_value(raw: Any) -> Any:
    """XCom values are stored as JSON; some arrive already decoded, some as a JSON string."""
    if isinstance(raw, (str, bytes)):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def read_airflow(session: Any, dag_id: str = DAG_ID) -> dict[str, Any]:
    """The DAG's state, its recent runs, and the rows behind the active run's progress."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    dag = session.scalar(select(DagModel).where(DagModel.dag_id == dag_id))
    runs = session.execute(
        select(
            DagRun.run_id,
            DagRun.state,
            DagRun.run_type,
            DagRun.triggering_user_name,
            DagRun.conf,
            DagRun.queued_at,
            DagRun.start_date,
            DagRun.end_date,
        )
        .where(DagRun.dag_id == dag_id)
        .order_by(DagRun.run_after.desc(), DagRun.id.desc())
        .limit(RUN_LIMIT * 2)
    ).all()
    recent = [
        {
            "run_id": r.run_id,
            "state": str(r.state) if r.state else None,
            "run_type": str(r.run_type),
            "triggered_by": r.triggering_user_name,
            "conf": r.conf or {},
            "queued_at": r.queued_at,
            "start_date": r.start_date,
            "end_date": r.end_date,
        }
        for r in runs
    ]
    active = [r for r in recent if r["state"] in ("queued", "running")]
    running = next((r for r in reversed(active) if r["state"] == "running"), None)
    current = running or (active[-1] if active else None)
    tis: list[dict[str, Any]] = []
    xcoms: list[dict[str, Any]] = []
    if current is not None:
        tis = [
            {
                "task_id": t.task_id,
                "map_index": t.map_index,
                "state": str(t.state) if t.state else None,
                "label": t._rendered_map_index,
            }
            for t in session.execute(
                select(
                    TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state, TaskInstance._rendered_map_index
                ).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == current["run_id"])
            ).all()
        ]
        xcoms = [
            {"task_id": x.task_id, "map_index": x.map_index, "value": _xcom_value(x.value)}
            for x in session.execute(
                select(XComModel.task_id, XComModel.map_index, XComModel.value).where(
                    XComModel.dag_id == dag_id,
                    XComModel.run_id == current["run_id"],
                    XComModel.key == "return_value",
                    XComModel.task_id.in_([*PLAN_TASKS, *EXTRACT_TASKS]),
                )
            ).all()
        ]
    return {
        "dag_found": dag is not None,
        "is_paused": bool(dag.is_paused) if dag is not None else None,
        "recent": recent,
        "queued_count": sum(1 for r in active if r["state"] == "queued"),
        "current": current,
        "task_instances": tis,
        "xcoms": xcoms,
    }


# --- progress of the running sync --------------------------------------------------------------


def _step_state(states: Sequence[str | None]) -> str:
    if not states:
        return "pending"
    if any(s in FAILED_STATES for s in states):
        return "failed"
    if all(s in DONE_STATES for s in states):
        return "success"
    if any(s in ACTIVE_STATES or s in DONE_STATES for s in states):
        return "running"
    if any(s in ("queued", "scheduled") for s in states):
        return "queued"
    return "pending"


def _expected(plans: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, int | None]]:
    """Records and pages the sweep expects per entity, from the ``plan_*`` shard lists."""
    out: dict[str, dict[str, int | None]] = {}
    for entity, shards in plans.items():
        if not shards:
            continue
        total = shards[0].get("expected_total")
        limit = shards[0].get("limit") or 0
        planned = [s.get("planned_last") for s in shards if s.get("planned_last")]
        if planned:
            pages: int | None = int(max(planned))
        elif total is not None and limit:
            pages = max(1, math.ceil(int(total) / int(limit)))
        else:
            pages = None
        out[entity] = {
            "records": int(total) if total is not None else None,
            "pages": pages,
            "limit": int(limit) if limit else None,
            "shards": len(shards),
        }
    return out


def build_progress(
    run: dict[str, Any],
    task_instances: Iterable[dict[str, Any]],
    xcoms: Iterable[dict[str, Any]],
    copy_rows: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    """Tasks done / total, steps, shards and records/pages staged so far for one DAG run."""
    tis = [t for t in task_instances if t.get("state") != "removed"]
    states = [t.get("state") for t in tis]
    tasks = {
        "total": len(tis),
        "done": sum(1 for s in states if s in DONE_STATES),
        "failed": sum(1 for s in states if s in FAILED_STATES),
        "running": sum(1 for s in states if s in ACTIVE_STATES),
    }
    steps = [
        {
            "key": key,
            "title": title,
            "state": _step_state([t.get("state") for t in tis if t["task_id"] in ids]),
            "done": sum(1 for t in tis if t["task_id"] in ids and t.get("state") in DONE_STATES),
            "total": sum(1 for t in tis if t["task_id"] in ids),
        }
        for key, title, ids in STEPS
    ]

    plans: dict[str, list[dict[str, Any]]] = {}
    summaries: dict[tuple[str, int], dict[str, Any]] = {}
    for x in xcoms:
        value = x.get("value")
        if x["task_id"] in PLAN_TASKS and isinstance(value, list):
            plans[PLAN_TASKS[x["task_id"]]] = [s for s in value if isinstance(s, dict)]
        elif x["task_id"] in EXTRACT_TASKS and isinstance(value, dict):
            summaries[(x["task_id"], int(x.get("map_index", -1)))] = value
    expected = _expected(plans)

    tables = StagingTables.for_run(run["run_id"])
    in_flight = {"advertisers": 0, "campaigns": 0}
    for row in copy_rows:
        if row.get("table_name") in (tables.advertisers, tables.campaigns):
            entity = "advertisers" if row["table_name"] == tables.advertisers else "campaigns"
            in_flight[entity] += int(row.get("tuples_processed") or 0)

    extract_tis = sorted(
        (t for t in tis if t["task_id"] in EXTRACT_TASKS), key=lambda t: (t["task_id"], t["map_index"])
    )
    running_per_entity = {
        e: sum(1 for t in extract_tis if EXTRACT_TASKS[t["task_id"]] == e and t.get("state") in ACTIVE_STATES)
        for e in in_flight
    }
    shards = []
    for t in extract_tis:
        index = int(t["map_index"])
        summary = summaries.get((t["task_id"], index), {})
        entity = EXTRACT_TASKS[t["task_id"]]
        planned = plans.get(entity) or []
        plan_label = planned[index].get("label") if 0 <= index < len(planned) else None
        # The rows in flight can be pinned on a shard only when it is its entity's one running shard.
        live = (
            not summary
            and t.get("state") in ACTIVE_STATES
            and running_per_entity[entity] == 1
            and in_flight[entity] > 0
        )
        shards.append(
            {
                "entity": entity,
                "label": t.get("label") or summary.get("label") or plan_label or f"{entity} #{index}",
                "state": t.get("state") or "pending",
                "pages": summary.get("pages"),
                "records": in_flight[entity] if live else summary.get("records"),
                "records_live": live,
                "rejected": summary.get("rejected"),
                "failed_pages": summary.get("failed_pages"),
            }
        )

    entities = {}
    for entity in ("advertisers", "campaigns"):
        finished = [s for (task, _), s in summaries.items() if EXTRACT_TASKS[task] == entity]
        limit = (expected.get(entity) or {}).get("limit")
        live_pages = in_flight[entity] // limit if limit else 0
        entities[entity] = {
            "records_staged": sum(int(s.get("records") or 0) for s in finished) + in_flight[entity],
            "records_in_flight": in_flight[entity],
            "rejected": sum(int(s.get("rejected") or 0) for s in finished),
            "pages_fetched": sum(int(s.get("pages") or 0) for s in finished) + live_pages,
            "records_expected": (expected.get(entity) or {}).get("records"),
            "pages_expected": (expected.get(entity) or {}).get("pages"),
        }
    records_expected = [e["records_expected"] for e in entities.values()]
    pages_expected = [e["pages_expected"] for e in entities.values()]
    planned = len(expected) == 2
    totals = {
        "records_staged": sum(e["records_staged"] for e in entities.values()),
        "records_in_flight": sum(e["records_in_flight"] for e in entities.values()),
        "rejected": sum(e["rejected"] for e in entities.values()),
        "pages_fetched": sum(e["pages_fetched"] for e in entities.values()),
        "records_expected": sum(records_expected) if planned and None not in records_expected else None,  # type: ignore[arg-type]
        "pages_expected": sum(pages_expected) if planned and None not in pages_expected else None,  # type: ignore[arg-type]
    }
    if totals["pages_expected"] is not None:
        # The open-ended last shard reads until a short (possibly empty) page: one more than planned.
        totals["pages_expected"] = max(totals["pages_expected"], totals["pages_fetched"])
    if totals["records_expected"]:
        totals["percent"] = min(100.0, round(100.0 * totals["records_staged"] / totals["records_expected"], 1))
    else:
        totals["percent"] = None
    return {
        "run_id": run["run_id"],
        "run_key": tables.run_key,
        "tasks": tasks,
        "steps": steps,
        "shards": shards,
        "entities": entities,
        "totals": totals,
    }


# --- the whole page --------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "is_finite") and hasattr(value, "as_integer_ratio"):  # Decimal
        return float(value)
    return value


def snapshot(session: Any, settings_loader: Any = offers_db_settings, dag_id: str = DAG_ID) -> dict[str, Any]:
    """Everything the page shows, for ``GET /api/status``."""
    airflow = read_airflow(session, dag_id)
    current = airflow["current"]
    run_key = StagingTables.for_run(current["run_id"]).run_key if current and current["state"] == "running" else None
    offers: dict[str, Any] = {"runs": [], "rejects": [], "alerts": [], "copy_progress": [], "schema_ready": False}
    offers_error = None
    try:
        offers = read_offers_db(settings_loader(), run_key)
    except OffersDbError as exc:
        offers_error = str(exc)
        log.warning("Offer Sync page: %s", offers_error)

    by_run = {r["run_id"]: r for r in airflow["recent"]}
    runs = []
    for row in offers["runs"]:
        dag_run = by_run.get(row["run_id"], {})
        runs.append(
            {
                **row,
                "triggered_by": dag_run.get("triggered_by"),
                "run_type": dag_run.get("run_type"),
                "airflow_state": dag_run.get("state"),
            }
        )

    active = None
    if current is not None:
        active = {
            "run_id": current["run_id"],
            "state": current["state"],
            "run_type": current["run_type"],
            "triggered_by": current["triggered_by"],
            "queued_at": current["queued_at"],
            "start_date": current["start_date"],
            "dry_run": bool((current["conf"] or {}).get("dry_run")),
            "queued_behind": airflow["queued_count"] - (1 if current["state"] == "queued" else 0),
        }
        if current["state"] == "running":
            active["progress"] = build_progress(
                current, airflow["task_instances"], airflow["xcoms"], offers["copy_progress"]
            )
    return jsonable(
        {
            "dag_id": dag_id,
            "dag_found": airflow["dag_found"],
            "is_paused": airflow["is_paused"],
            "active": active,
            "runs": runs,
            "rejects": offers["rejects"],
            "alerts": offers["alerts"],
            "offers_db": {"ok": offers_error is None, "error": offers_error, "schema_ready": offers["schema_ready"]},
        }
    )
