"""The merge: staged sweep -> ``brands`` and ``offers``, atomically, with the audit trail.

One transaction holds the advisory lock, the brand upsert, the offer merge, the deactivation of
offers a complete sweep no longer lists, the audit rows and the run record. A connection killed
anywhere inside leaves the catalogue exactly as before, and the task's retry starts over. A run
that already merged (its task cleared and run again) returns its recorded counts and writes
nothing, so re-running any task of a run ends in the same state.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from include.offer_sync.db import query
from include.offer_sync.runs import build_result
from include.offer_sync.staging import StagingTables

log = logging.getLogger(__name__)


class _DryRunRollback(Exception):
    """Raised inside the merge transaction of a dry run so that psycopg rolls it back."""


def merge_sweep(
    conn: psycopg.Connection[Any],
    run_id: str,
    sweep: dict[str, Any],
    *,
    deactivate_missing: bool = True,
    max_deactivate_rate: float = 0.2,
    dry_run: bool = False,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge the run's staged sweep; returns the counts (``added``, ``updated`` ...).

    ``max_deactivate_rate`` is the share of active offers one run may deactivate: a feed that
    looks complete but is empty or cut short must not switch the catalogue off.
    """
    t = StagingTables.for_run(run_id)
    names = t.names()
    params = {"run_id": run_id}
    timings: dict[str, float] = {}
    counts: dict[str, Any] = {}
    try:
        with conn.transaction():
            started = time.perf_counter()
            merged_at, stored = conn.execute(query("runs_merged_get"), params).fetchone() or (None, None)
            timings["lock_wait_s"] = time.perf_counter() - started
            if merged_at is not None and stored:
                log.info("run %s already merged at %s; returning its recorded counts", run_id, merged_at)
                return {k: stored.get(k) for k in stored} | {"already_merged": True}

            t0 = time.perf_counter()
            brands_added, brands_updated = conn.execute(query("merge_brands", **names), params).fetchone()
            t1 = time.perf_counter()
            added, updated, reactivated, seen, _rows, _audit = conn.execute(
                query("merge_offers", **names), params
            ).fetchone()
            t2 = time.perf_counter()
            deactivated = 0
            blocked = False
            may_deactivate = deactivate_missing and sweep["complete_sweep"]
            if may_deactivate:
                deactivated, would, active, _ = conn.execute(
                    query("merge_deactivate", **names), {**params, "max_rate": max_deactivate_rate}
                ).fetchone()
                if would and not deactivated:
                    may_deactivate, blocked = False, True
                    problem = (
                        f"deactivation guard: {would} of {active} active offers ({would / max(active, 1):.1%}) "
                        f"are missing from the feed, over max_deactivate_rate {max_deactivate_rate:.0%}; none "
                        "were deactivated. If that many offers really ended, trigger a run with a higher "
                        "max_deactivate_rate."
                    )
                    log.warning(problem)
                    sweep = {**sweep, "problems": [problem, *sweep.get("problems", [])]}
            elif deactivate_missing:
                log.warning("incomplete sweep: no offer is deactivated this run (%s)", sweep["problems"][:3])
            t3 = time.perf_counter()
            timings.update(brands_s=t1 - t0, offers_s=t2 - t1, deactivate_s=t3 - t2)
            counts = {
                **{k: sweep[k] for k in ("advertisers_processed", "campaigns_processed", "rejected",
                                         "duplicates", "error_rate", "complete_sweep", "failed_pages")},
                "added": added, "updated": updated, "reactivated": reactivated,
                "unchanged": seen - added - updated - reactivated, "deactivated": deactivated,
                "brands_added": brands_added, "brands_updated": brands_updated,
                "deactivation_skipped": deactivate_missing and not may_deactivate,
                "deactivation_blocked": blocked,
                "problems": sweep.get("problems", []),
            }  # fmt: skip
            merge_metrics = {**(metrics or {}), "merge": {k: round(v, 3) for k, v in timings.items()}}
            # The sweep's verdict goes with the counts: a check_sweep cleared after the merge reads it back.
            provisional = build_result(run_id, "completed", counts, 0.0, dry_run=dry_run, metrics=merge_metrics,
                                       complete_sweep=sweep["complete_sweep"], failed_pages=sweep["failed_pages"],
                                       problems=sweep["problems"][:10])  # fmt: skip
            if dry_run:
                raise _DryRunRollback
            _record_merge(conn, run_id, provisional, merge_metrics, sweep["complete_sweep"], dry_run=False)
    except _DryRunRollback:
        log.info("dry run: the merge was computed and rolled back; nothing was written")
        with conn.transaction():  # keep what the dry run found, outside the rolled-back merge
            _record_merge(conn, run_id, provisional, merge_metrics, sweep["complete_sweep"], dry_run=True)
    log.info(
        "merge of run %s: %d added, %d updated, %d unchanged, %d reactivated, %d deactivated; "
        "brands %d added, %d updated (%s)",
        run_id, counts["added"], counts["updated"], counts["unchanged"], counts["reactivated"],
        counts["deactivated"], counts["brands_added"], counts["brands_updated"],
        ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()),
    )  # fmt: skip
    return counts | {"merge_timings": {k: round(v, 3) for k, v in timings.items()}}


def _record_merge(
    conn: psycopg.Connection[Any],
    run_id: str,
    result: dict[str, Any],
    metrics: dict[str, Any],
    complete_sweep: bool,
    *,
    dry_run: bool,
) -> None:
    """Write the merge's counts to the run's row (inside the merge's transaction, unless a dry run)."""
    conn.execute(
        query("runs_record_merge"),
        {"run_id": run_id, **{k: result[k] for k in result if k in _RECORD_KEYS},
         "complete_sweep": complete_sweep, "dry_run": dry_run, "result": Jsonb(result), "metrics": Jsonb(metrics)},
    )  # fmt: skip


_RECORD_KEYS = {
    "added", "updated", "unchanged", "deactivated", "reactivated", "rejected", "duplicates",
    "campaigns_processed", "advertisers_processed", "brands_added", "brands_updated", "error_rate",
}  # fmt: skip
