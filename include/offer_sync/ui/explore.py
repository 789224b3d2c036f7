"""The Offer Sync page's questions after "how did the last sync go": history, one run, one offer.

- **History**: the last 30 / 90 runs with what the chart plots (added, updated, deactivated,
  rejected, duration, error rate, status) and the alert thresholds it draws, read through
  ``alerts.Thresholds.from_env`` (the same variables the alert rules use, so the lines on the chart
  are the limits that fire alerts);
- **Run detail**: one ``sync_runs`` row with its phases and shards (``metrics``), failed pages and
  anomalies (``sync_page_errors``), alerts (``sync_alerts``), reject reasons, and pages of its
  rejects and of its changes (``offer_audit``);
- **Offer lookup**: offers by Trackier id, hash id or title, one offer's current row, its audit trail
  and the run that deactivated it.

Every list that can grow with the catalogue is a *page*: keyset pagination on ``id`` through an
index that starts with the filter's columns (``offer_audit (run_id, action, id)``,
``sync_rejects (run_id, id)``), ``LIMIT n + 1`` to know whether more follow. Nothing here reads a
whole table into memory; the CSV download streams the rejects in batches of the same query.

Text search uses ``ILIKE`` with the user's ``%``, ``_`` and ``\\`` escaped, as a bound parameter.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Literal, TypedDict, get_args

import psycopg

from include.offer_sync.db import load_sql
from include.offer_sync.ui.data import DAG_ID

log = logging.getLogger(__name__)

#: Windows the History chart offers (runs).
HISTORY_WINDOWS: tuple[int, ...] = (30, 90)
HISTORY_MAX = 200
PAGE_DEFAULT = 50
PAGE_MAX = 200
SEARCH_LIMIT = 25
PAGE_ERRORS_LIMIT = 100
RUN_ALERTS_LIMIT = 50
REASON_GROUPS_LIMIT = 20
RAW_CHARS = 240
ERROR_CHARS = 1000
CSV_BATCH = 1000
#: A spreadsheet runs a cell starting with one of these as a formula: such cells get a leading '.
CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = ("id", "run_id", "entity", "record_key", "reason", "shard", "page", "rejected_at", "raw")

Action = Literal["inserted", "updated", "deactivated", "reactivated"]
ACTIONS: tuple[str, ...] = get_args(Action)


# --- payloads -------------------------------------------------------------------------------------


class ChartThresholds(TypedDict):
    """The alert limits the History chart draws; ``error`` when the variables cannot be read."""

    max_duration_s: float | None
    max_error_rate: float | None
    error: str | None


class HistoryRun(TypedDict):
    run_id: str
    status: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    added: int | None
    updated: int | None
    unchanged: int | None
    deactivated: int | None
    reactivated: int | None
    rejected: int | None
    error_rate: float | None
    complete_sweep: bool | None


class History(TypedDict):
    runs: list[HistoryRun]
    thresholds: ChartThresholds
    limit: int


class ReasonGroup(TypedDict):
    reason: str
    count: int


class RunDetail(TypedDict):
    """One run as the run-detail view shows it (``run``: the ``sync_runs`` row, see ui_run_detail.sql)."""

    run: dict[str, Any]
    phases: list[dict[str, Any]]
    shards: list[dict[str, Any]]
    page_errors: list[dict[str, Any]]
    page_errors_total: int
    alerts: list[dict[str, Any]]
    reject_reasons: list[ReasonGroup]
    airflow: dict[str, Any] | None


class Page(TypedDict):
    """One page of a keyset-paginated list: ``next`` is the cursor of the following page, or None."""

    items: list[dict[str, Any]]
    next: int | None
    limit: int


class OfferLookup(TypedDict):
    offer: dict[str, Any]
    audit: Page


# --- helpers --------------------------------------------------------------------------------------


def _rows(conn: psycopg.Connection[Any], name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    cur = conn.execute(load_sql(name), params)  # type: ignore[arg-type]  # our own .sql files
    columns = [c.name for c in cur.description or ()]
    return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


def tables_present(conn: psycopg.Connection[Any], names: list[str]) -> set[str]:
    """Which of ``names`` exist (the first sync creates them; before it the page shows nothing)."""
    return {r["name"] for r in _rows(conn, "ui_tables_exist", {"names": names}) if r["present"]}


def clamp_limit(limit: int | None, default: int = PAGE_DEFAULT, maximum: int = PAGE_MAX) -> int:
    """A page size within 1..maximum (the API also validates; this guards direct callers)."""
    if limit is None:
        return default
    return max(1, min(int(limit), maximum))


def like_pattern(text: str) -> str:
    """An ILIKE pattern matching ``text`` anywhere, its own ``%``, ``_`` and ``\\`` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _page(rows: list[dict[str, Any]], limit: int, key: str = "id") -> Page:
    """Rows fetched with ``LIMIT limit + 1`` -> one page and the cursor of the next (if any)."""
    more = len(rows) > limit
    items = rows[:limit]
    return {"items": items, "next": int(items[-1][key]) if more and items else None, "limit": limit}


# --- history --------------------------------------------------------------------------------------


def chart_thresholds(environ: Mapping[str, str] | None = None) -> ChartThresholds:
    """Duration and error-rate alert limits, read exactly as the alert rules read them.

    The api-server must see the same ``OFFER_SYNC_MAX_*`` variables as the components that run the
    checks (the bundled compose file passes them to every component); a per-run override in the
    run's conf (``alert_thresholds``) applies to that run's alerts only and is not drawn.
    """
    from include.offer_sync.alerts.rules import Thresholds
    from include.offer_sync.errors import ConfigurationError

    try:
        limits = Thresholds.from_env(environ)
    except ConfigurationError as exc:
        return {"max_duration_s": None, "max_error_rate": None, "error": str(exc)}
    return {"max_duration_s": limits.max_duration_s, "max_error_rate": limits.max_error_rate, "error": None}


def run_history(conn: psycopg.Connection[Any], limit: int, environ: Mapping[str, str] | None = None) -> History:
    """The last ``limit`` runs, oldest first, and the thresholds to draw over them."""
    limit = clamp_limit(limit, HISTORY_WINDOWS[0], HISTORY_MAX)
    runs: list[Any] = []
    if "sync_runs" in tables_present(conn, ["sync_runs"]):
        runs = _rows(conn, "ui_run_history", {"limit": limit})
    return {"runs": runs, "thresholds": chart_thresholds(environ), "limit": limit}


# --- one run --------------------------------------------------------------------------------------

#: Phases in the order they happen; extract, validate and stage are summed over the shards.
PHASES: tuple[tuple[str, str], ...] = (
    ("extract", "Fetch (waiting for Trackier)"),
    ("validate", "Validate"),
    ("stage", "Stage (COPY)"),
    ("check", "Check the sweep"),
    ("merge", "Merge"),
)
_NOT_SHARDS = frozenset({"start_sync", "check_sweep", "merge_catalogue", "publish_result"})


def _phases(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = metrics.get("phases_s") or {}
    out = []
    for key, title in PHASES:
        value = raw.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out.append({"key": key, "title": title, "seconds": float(value)})
    return out


def _shards(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The extract tasks' measurements (``metrics.tasks`` minus the single tasks around them)."""
    out = []
    for task in metrics.get("tasks") or []:
        if not isinstance(task, Mapping) or task.get("task") in _NOT_SHARDS:
            continue
        label = str(task.get("task") or "")
        out.append(
            {
                "label": label,
                "entity": label.split(":", 1)[0] if ":" in label else None,
                "wall_s": task.get("wall_s"),
                "peak_rss_mb": task.get("peak_rss_mb"),
            }
        )
    return out


def run_row(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any] | None:
    """The run's ``sync_runs`` row (ui_run_detail.sql), or None when there is no such run (yet)."""
    if "sync_runs" not in tables_present(conn, ["sync_runs"]):
        return None
    rows = _rows(conn, "ui_run_detail", {"run_id": run_id})
    return rows[0] if rows else None


def run_detail(conn: psycopg.Connection[Any], run_id: str) -> RunDetail | None:
    """Everything the run-detail view shows above its two paginated lists; None: no such run."""
    present = tables_present(conn, ["sync_runs", "sync_page_errors", "sync_alerts", "sync_rejects"])
    if "sync_runs" not in present:
        return None
    rows = _rows(conn, "ui_run_detail", {"run_id": run_id})
    if not rows:
        return None
    run = rows[0]
    metrics = run.get("metrics") or {}
    page_errors = (
        _rows(conn, "ui_run_page_errors", {"run_id": run_id, "limit": PAGE_ERRORS_LIMIT, "text_chars": ERROR_CHARS})
        if "sync_page_errors" in present
        else []
    )
    total = int(page_errors[0]["total"]) if page_errors else 0
    for row in page_errors:
        row.pop("total", None)
    return {
        "run": run,
        "phases": _phases(metrics),
        "shards": _shards(metrics),
        "page_errors": page_errors,
        "page_errors_total": total,
        "alerts": _rows(conn, "ui_run_alerts", {"run_id": run_id, "limit": RUN_ALERTS_LIMIT})
        if "sync_alerts" in present
        else [],
        "reject_reasons": _rows(conn, "ui_run_reject_reasons", {"run_id": run_id, "limit": REASON_GROUPS_LIMIT})  # type: ignore[typeddict-item]
        if "sync_rejects" in present
        else [],
        "airflow": None,
    }


def airflow_run_info(session: Any, run_id: str, dag_id: str = DAG_ID) -> dict[str, Any] | None:
    """Who or what started the run, and Airflow's state of it (None: Airflow no longer has it)."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    row = session.execute(
        select(DagRun.state, DagRun.run_type, DagRun.triggering_user_name).where(
            DagRun.dag_id == dag_id, DagRun.run_id == run_id
        )
    ).first()
    if row is None:
        return None
    return {
        "state": str(row.state) if row.state else None,
        "run_type": str(row.run_type),
        "triggered_by": row.triggering_user_name,
    }


def run_rejects(
    conn: psycopg.Connection[Any],
    run_id: str,
    *,
    reason: str | None = None,
    after: int = 0,
    limit: int = PAGE_DEFAULT,
    raw_chars: int | None = RAW_CHARS,
) -> Page:
    """One page of the run's rejects (id > ``after``), those whose reason contains ``reason``."""
    limit = clamp_limit(limit)
    if "sync_rejects" not in tables_present(conn, ["sync_rejects"]):
        return {"items": [], "next": None, "limit": limit}
    rows = _rows(
        conn,
        "ui_run_rejects",
        {
            "run_id": run_id,
            "after": max(0, int(after)),
            "limit": limit + 1,
            "raw_chars": raw_chars,
            "pattern": like_pattern(reason) if reason else None,
        },
    )
    return _page(rows, limit)


def run_changes(
    conn: psycopg.Connection[Any], run_id: str, action: Action, *, after: int = 0, limit: int = PAGE_DEFAULT
) -> Page:
    """One page of the run's audit rows of one kind (id > ``after``), with each offer's title."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    limit = clamp_limit(limit)
    if "offer_audit" not in tables_present(conn, ["offer_audit"]):
        return {"items": [], "next": None, "limit": limit}
    rows = _rows(
        conn, "ui_run_changes", {"run_id": run_id, "action": action, "after": max(0, int(after)), "limit": limit + 1}
    )
    return _page(rows, limit)


# --- the rejects as CSV ---------------------------------------------------------------------------


def csv_cell(value: Any) -> Any:
    """A value safe to open in a spreadsheet: text that would run as a formula gets a leading '."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(CSV_FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_lines(rows: list[dict[str, Any]], run_id: str, header: bool) -> str:
    """CSV text for a batch of ``run_rejects`` rows (with the header line first when asked)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = {**row, "run_id": run_id}
        writer.writerow([csv_cell(values.get(col)) for col in CSV_COLUMNS])
    return buffer.getvalue()


def iter_rejects_csv(
    conn: psycopg.Connection[Any],
    run_id: str,
    reason: str | None = None,
    batch: int = CSV_BATCH,
    first: Page | None = None,
) -> Iterator[str]:
    """The run's rejects as CSV chunks, one keyset batch at a time (raw records whole).

    ``first`` is a batch the caller already read (to answer errors before the response starts).
    Memory stays at one batch whatever the number of rejects.
    """
    page = first if first is not None else run_rejects(conn, run_id, reason=reason, limit=batch, raw_chars=None)
    yield csv_lines(page["items"], run_id, header=True)
    while page["next"] is not None:
        page = run_rejects(conn, run_id, reason=reason, after=page["next"], limit=batch, raw_chars=None)
        yield csv_lines(page["items"], run_id, header=False)


# --- offers ---------------------------------------------------------------------------------------


def search_offers(conn: psycopg.Connection[Any], q: str, limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Offers whose Trackier id or hash id is ``q`` (first), then titles containing ``q``."""
    text = q.strip()
    if not text or "offers" not in tables_present(conn, ["offers"]):
        return []
    return _rows(
        conn,
        "ui_offer_search",
        {"q": text, "pattern": like_pattern(text), "limit": clamp_limit(limit, SEARCH_LIMIT, PAGE_MAX)},
    )


def offer_audit(
    conn: psycopg.Connection[Any], offer_id: int, *, before: int | None = None, limit: int = PAGE_DEFAULT
) -> Page:
    """One page of an offer's audit trail, newest first (ids below ``before``)."""
    limit = clamp_limit(limit)
    rows = _rows(conn, "ui_offer_audit", {"offer_id": offer_id, "before": before, "limit": limit + 1})
    return _page(rows, limit)


def offer_lookup(
    conn: psycopg.Connection[Any], trackier_id: str, *, before: int | None = None, limit: int = PAGE_DEFAULT
) -> OfferLookup | None:
    """The offer's current row (and the run that deactivated it) plus a page of its audit trail."""
    if not {"offers", "offer_audit", "sync_runs"} <= tables_present(conn, ["offers", "offer_audit", "sync_runs"]):
        return None
    rows = _rows(conn, "ui_offer_get", {"trackier_id": trackier_id})
    if not rows:
        return None
    offer = rows[0]
    return {"offer": offer, "audit": offer_audit(conn, int(offer["id"]), before=before, limit=limit)}
