"""The ``sync_runs`` record and the ``sync_result`` contract.

``sync_result`` is what operators and tests rely on: the final task's return value, the ``offers``
Asset event's ``extra`` and the ``result`` column of the run's row all carry the same dict. Its
names are fixed; extra keys (reactivated, duplicates, metrics ...) may be added, never renamed.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from include.offer_sync.contracts import COUNT_KEYS, MERGE_FLAGS, RECORDED_SWEEP_COUNTS, RESULT_KEYS, Status
from include.offer_sync.db import connect, query
from include.offer_sync.settings import DatabaseSettings

# The key lists are derived from the TypedDicts in contracts.py (one home): RESULT_KEYS is the
# operators' contract, COUNT_KEYS the integer counts in sync_result order, MERGE_FLAGS the merge's
# verdicts carried to the final result (and kept by a retried merge).
__all__ = ["COUNT_KEYS", "MERGE_FLAGS", "RESULT_KEYS", "Status"]

log = logging.getLogger(__name__)


def build_result(
    run_id: str,
    status: Status,
    counts: dict[str, Any],
    duration_s: float,
    **extra: Any,
) -> dict[str, Any]:
    """A ``sync_result`` dict: every contract key present, counts as ints, rates as floats."""
    result: dict[str, Any] = {"status": status, "run_id": run_id, "duration_s": round(float(duration_s), 3)}
    for key in COUNT_KEYS:
        result[key] = int(counts.get(key) or 0)
    result["error_rate"] = round(float(counts.get("error_rate") or 0.0), 6)
    result.update(extra)
    return result


def start_run(
    conn: psycopg.Connection[Any],
    *,
    run_id: str,
    dag_id: str,
    dry_run: bool,
    params: dict[str, Any],
    plan: dict[str, Any],
) -> None:
    """Open the run's record, or start a run that has not merged over (see ``runs_start.sql``).

    The sweep's start is the database's ``now()``: one clock for every deployment, and the one
    the merge compares to order overlapping sweeps.
    """
    conn.execute(
        query("runs_start"),
        {"run_id": run_id, "dag_id": dag_id, "dry_run": dry_run, "params": Jsonb(params), "plan": Jsonb(plan)},
    )


def get_run(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any] | None:
    cur = conn.execute(query("runs_get"), {"run_id": run_id})
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([c.name for c in cur.description or ()], row, strict=True))


def seal_staging(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any] | None:
    """Wait until no extract try of the run is still writing its staging, then read the run's record.

    The lock is session-level (``sweep_seal.sql``): ``conn`` holds it until it closes, so no
    earlier try of a shard can add rows while the sweep is checked.
    """
    cur = conn.execute(query("sweep_seal"), {"run_id": run_id})
    row = cur.fetchone()
    if row is None or row[0] is None:
        return None
    return dict(zip([c.name for c in cur.description or ()], row, strict=True))


def fail_run(
    conn: psycopg.Connection[Any], run_id: str, error: str, counts: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Record a failed run (with whatever it counted) and return its ``sync_result``."""
    run = get_run(conn, run_id)
    if run is None:
        return build_result(run_id, "failed", counts or {}, 0.0, error=error)
    stored = dict(run.get("result") or {})
    merged_counts = {**stored, **(counts or {})}
    result = build_result(
        run_id,
        "failed",
        merged_counts,
        float(run["elapsed_s"]),
        error=error,
        metrics=stored.get("metrics") or run.get("metrics") or {},
    )
    conn.execute(query("runs_fail"), {"run_id": run_id, "error": error[:4000], "result": Jsonb(result)})
    return result


def is_merged(record: dict[str, Any] | None) -> bool:
    """Whether a run's merge has committed (a dry run never has: it rolls its merge back)."""
    return record is not None and record.get("merged_at") is not None


def is_finished(record: dict[str, Any] | None) -> bool:
    """Whether a run merged and closed: its ``result`` is final."""
    if record is None or not is_merged(record):
        return False
    return record["status"] in ("completed", "completed_with_errors") and bool(record["result"])


def recorded_sweep(record: dict[str, Any]) -> dict[str, Any]:
    """The sweep figures a merged run recorded, for a ``check_sweep`` that is cleared and run again.

    Once a run has merged, its staging tables are gone (or about to be) and what it found is
    history: re-checking would count an empty staging and overwrite the run's rejects. The merge
    records these figures in ``result`` in the same transaction, so they are always there.
    """
    result = dict(record.get("result") or {})
    sweep: dict[str, Any] = {k: int(result.get(k) or 0) for k in RECORDED_SWEEP_COUNTS}
    sweep.update(
        complete_sweep=bool(result.get("complete_sweep")),
        error_rate=float(result.get("error_rate") or 0.0),
        problems=list(result.get("problems") or []),
        already_merged=True,
    )
    return sweep


def record_failure(db: DatabaseSettings, run_id: str, error: str) -> dict[str, Any] | None:
    """Mark a run failed from a failure callback; never raises (the callback must not mask the error)."""
    try:
        with connect(db) as conn, conn.transaction():
            record = get_run(conn, run_id)
            if record is None or record["status"] != "running":
                return dict(record["result"]) if record and record["result"] else None
            return fail_run(conn, run_id, error)
    except Exception:
        log.exception("could not record the failure of run %s", run_id)
        return None
