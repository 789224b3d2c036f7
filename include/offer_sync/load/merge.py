"""The merge: staged sweep -> ``brands`` and ``offers``, atomically, with the audit trail.

One transaction holds the advisory lock, the brand upsert (and the deactivation of brands a
complete sweep no longer lists), the offer merge, the deactivation of offers a complete sweep no
longer lists, the audit rows and the run record. A connection killed anywhere inside leaves the
catalogue exactly as before, and the task's retry starts over.

Two guards sit at the top of that transaction, right after the lock (``merge_brands.sql``):

- A run that already merged (its task retried after the commit, or cleared and run again) writes
  nothing and returns the result it recorded, every flag included, so re-running any task of a
  run ends in the same state.
- Merges are ordered by sweep. A sweep that started (``sync_runs.started_at``) before the newest
  sweep already merged is refused: ``SweepSupersededError``, no retry, nothing written to brands
  or offers, and the run marked failed with both runs and both start times. It read the catalogue
  earlier than the sweep that merged; merging it would re-deactivate offers that came back,
  reactivate offers that ended and undo renames. Merging "only what is newer" was rejected: a
  sweep has no per-record time that says which of two reads is newer (``modified`` is optional and
  set by the advertiser side), and deactivation is decided from what a sweep did NOT see, which
  an older sweep cannot know about the newer one. The older run's data is not lost: the newer run
  read it too, later. Dry runs never merge, so they never count as the newest merged sweep; a dry
  run that is itself older than a merged sweep is refused the same way (its counts would describe
  a revert that can never happen).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from include.offer_sync.constants import DEFAULT_MAX_DEACTIVATE_RATE
from include.offer_sync.contracts import RECORD_KEYS, SWEEP_KEYS_IN_COUNTS
from include.offer_sync.db import query
from include.offer_sync.errors import CarriedOffersLostError, SweepSupersededError
from include.offer_sync.load.runs import MERGE_FLAGS, build_result, fail_run, get_run, is_merged
from include.offer_sync.load.staging import StagingTables

log = logging.getLogger(__name__)


class _DryRunRollback(Exception):
    """Raised inside the merge transaction of a dry run so that psycopg rolls it back."""


class _StagingGone(Exception):
    """The run's staging tables do not exist: fine if the run has merged (they are dropped after it)."""


@dataclass(frozen=True)
class _Superseded:
    """The merge found a newer sweep already merged; the run was marked failed with ``message``."""

    message: str


def merge_sweep(
    conn: psycopg.Connection[Any],
    run_id: str,
    sweep: dict[str, Any],
    *,
    deactivate_missing: bool = True,
    max_deactivate_rate: float = DEFAULT_MAX_DEACTIVATE_RATE,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Merge the run's staged sweep; returns the counts (``added``, ``updated`` ...).

    ``max_deactivate_rate`` is the share of active offers (and, separately, of active brands) one
    run may deactivate: a feed that looks complete but is empty or cut short must not switch the
    catalogue off. Raises ``SweepSupersededError`` when a newer sweep has already merged.
    """
    t = StagingTables.for_run(run_id)
    names = t.names()
    params = {"run_id": run_id}
    timings: dict[str, float] = {}
    counts: dict[str, Any] = {}
    may_deactivate = deactivate_missing and bool(sweep["complete_sweep"])
    outcome: _Superseded | None = None
    try:
        with conn.transaction():
            started = time.perf_counter()
            conn.execute(query("merge_lock"))
            timings["lock_wait_s"] = time.perf_counter() - started

            t0 = time.perf_counter()
            try:
                brands = conn.execute(
                    query("merge_brands", **names),
                    {**params, "deactivate": may_deactivate, "max_rate": max_deactivate_rate},
                ).fetchone()
            except psycopg.errors.UndefinedTable as exc:
                raise _StagingGone from exc  # only a finished run drops its staging (checked below)
            (
                gate_open,
                merged_at,
                stored,
                started_at,
                newer_run_id,
                newer_started_at,
                brands_added,
                brands_updated,
                brands_reactivated,
                brands_deactivated,
                brands_would,
                brands_active,
                offers_empty,
            ) = brands
            if not gate_open and merged_at is not None:
                log.info("run %s already merged at %s; returning its recorded result", run_id, merged_at)
                return dict(stored or {}) | {"already_merged": True}
            if not gate_open:
                outcome = _Superseded(_superseded_message(run_id, started_at, newer_run_id, newer_started_at))
                log.error(outcome.message)
                fail_run(conn, run_id, outcome.message)  # commits with the transaction; brands/offers untouched
            else:
                t1 = time.perf_counter()
                carried = int(sweep.get("campaigns_carried") or 0)
                if offers_empty and carried:
                    raise CarriedOffersLostError(_lost_message(carried))
                if offers_empty:
                    # The first sync: every valid campaign is new, nothing to compare, and the table's
                    # constraints are built once after the insert instead of row by row.
                    conn.execute(query("merge_offers_first_defer"))
                    merged_offers = conn.execute(query("merge_offers_first", **names), params).fetchone()
                    conn.execute(query("merge_offers_first_restore"))
                else:
                    merged_offers = conn.execute(query("merge_offers", **names), params).fetchone()
                added, updated, reactivated, seen, _rows, _audit, lost = merged_offers
                if lost:
                    raise CarriedOffersLostError(_lost_message(lost))  # rolls the merge back
                t2 = time.perf_counter()
                deactivated = 0
                guards: list[str] = []  # what the deactivation guards stopped, first in the run's problems
                offers_blocked = brands_blocked = False
                if may_deactivate:
                    would = active = 0  # offers was empty: every offer in it now is one this sweep saw
                    if not offers_empty:
                        deactivated, would, active, _ = conn.execute(
                            query("merge_deactivate", **names), {**params, "max_rate": max_deactivate_rate}
                        ).fetchone()
                    if would and not deactivated:
                        offers_blocked = True
                        guards.append(_guard_problem("offers", would, active, max_deactivate_rate))
                    if brands_would and not brands_deactivated:
                        brands_blocked = True
                        guards.append(_guard_problem("brands", brands_would, brands_active, max_deactivate_rate))
                    for problem in guards:
                        log.warning(problem)
                elif deactivate_missing:
                    log.warning(
                        "incomplete sweep: no offer or brand is deactivated this run (%s)", sweep["problems"][:3]
                    )
                problems = [*guards, *sweep.get("problems", [])]
                t3 = time.perf_counter()
                timings.update(brands_s=t1 - t0, offers_s=t2 - t1, deactivate_s=t3 - t2)
                counts = {
                    **{k: sweep[k] for k in SWEEP_KEYS_IN_COUNTS},
                    "added": added,
                    "updated": updated,
                    "reactivated": reactivated,
                    "unchanged": seen - added - updated - reactivated,
                    "deactivated": deactivated,
                    "brands_added": brands_added,
                    "brands_updated": brands_updated,
                    "brands_deactivated": brands_deactivated,
                    "brands_reactivated": brands_reactivated,
                    # skipped: asked to deactivate, but no offer was (incomplete sweep, or the guard)
                    "deactivation_skipped": deactivate_missing and (not may_deactivate or offers_blocked),
                    "deactivation_blocked": offers_blocked or brands_blocked,
                    "brands_deactivation_blocked": brands_blocked,
                    "problems": problems,
                }
                merge_metrics = {
                    "merge": {k: round(v, 3) for k, v in timings.items()},
                    "merge_path": "first_sync" if offers_empty else "general",
                }
                # The sweep's verdict and the merge's flags go with the counts: a retried merge task
                # and a check_sweep cleared after the merge read them back from here.
                provisional = build_result(
                    run_id,
                    "completed",
                    counts,
                    0.0,
                    dry_run=dry_run,
                    metrics=merge_metrics,
                    complete_sweep=sweep["complete_sweep"],
                    failed_pages=sweep["failed_pages"],
                    problems=problems[:10],
                    **{k: counts[k] for k in MERGE_FLAGS},
                )
                if dry_run:
                    raise _DryRunRollback
                _record_merge(conn, run_id, provisional, merge_metrics, sweep["complete_sweep"], dry_run=False)
    except _StagingGone as gone:
        record = get_run(conn, run_id)
        if not is_merged(record):
            raise gone.__cause__ from None  # type: ignore[misc]  # the UndefinedTable itself
        assert record is not None
        log.info("run %s already merged at %s; returning its recorded result", run_id, record["merged_at"])
        return dict(record["result"] or {}) | {"already_merged": True}
    except _DryRunRollback:
        log.info("dry run: the merge was computed and rolled back; nothing was written")
        with conn.transaction():  # keep what the dry run found, outside the rolled-back merge
            _record_merge(conn, run_id, provisional, merge_metrics, sweep["complete_sweep"], dry_run=True)
    if outcome is not None:
        raise SweepSupersededError(outcome.message)
    log.info(
        "merge of run %s: %d added, %d updated, %d unchanged, %d reactivated, %d deactivated; "
        "brands %d added, %d updated, %d reactivated, %d deactivated (%s)",
        run_id,
        counts["added"],
        counts["updated"],
        counts["unchanged"],
        counts["reactivated"],
        counts["deactivated"],
        counts["brands_added"],
        counts["brands_updated"],
        counts["brands_reactivated"],
        counts["brands_deactivated"],
        ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()),
    )
    return counts | {
        "merge_timings": {k: round(v, 3) for k, v in timings.items()},
        "merge_path": merge_metrics["merge_path"],
    }


def _lost_message(lost: int) -> str:
    return (
        f"{lost} campaigns this run found unchanged (a stored offer had their fingerprint, so only their "
        "ids were staged) have no stored offer any more: offers was emptied or rows were deleted while the "
        "run fetched. Nothing was merged; run the sync again (it validates every record it does not find)."
    )


def _guard_problem(what: str, would: int, active: int, max_rate: float) -> str:
    return (
        f"deactivation guard: {would} of {active} active {what} ({would / max(active, 1):.1%}) "
        f"are missing from the feed, over max_deactivate_rate {max_rate:.0%}; none were deactivated. "
        f"If that many {what} really ended, trigger a run with a higher max_deactivate_rate."
    )


def _superseded_message(run_id: str, started_at: datetime | None, newer_run_id: str, newer_started_at: datetime) -> str:
    def iso(value: datetime | None) -> str:
        return value.isoformat(timespec="seconds") if value is not None else "?"

    return (
        f"sweep superseded: run {run_id} started its sweep at {iso(started_at)}, before run {newer_run_id} "
        f"(sweep started {iso(newer_started_at)}), which has already merged; merging it would revert newer "
        "data. Nothing was written to brands or offers. The catalogue is as the newer run left it; "
        "trigger a new run (or clear this one from start_sync) to sync again."
    )


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
        {
            "run_id": run_id,
            **{k: result[k] for k in result if k in RECORD_KEYS},
            "complete_sweep": complete_sweep,
            "dry_run": dry_run,
            "result": Jsonb(result),
            "metrics": Jsonb(metrics),
        },
    )
