"""The body of each DAG task, named like the task and callable without a scheduler.

The DAG file only wires these: ``start_sync``, ``plan_entity`` (both ``plan_*`` tasks), ``extract_shard``
(both mapped ``extract_*`` tasks), ``check_sweep``, ``merge_catalogue``, ``publish_result``, and
``claim_event``/``release_event_claim`` (``emit_offers_event`` and its failure callback).

Every function takes explicit settings and returns a small JSON-serialisable dict: that is what
travels through XCom. Records never do; they go from the API straight into staging tables.
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypedDict

from psycopg.types.json import Jsonb

from include.offer_sync import db as dbmod
from include.offer_sync import extract
from include.offer_sync.constants import DEFAULT_MAX_DEACTIVATE_RATE
from include.offer_sync.contracts import (
    MergeResult,
    RunHandle,
    RunMetrics,
    Shard,
    ShardSummary,
    Sweep,
    SyncResult,
    TaskMetrics,
)
from include.offer_sync.db import connect
from include.offer_sync.extract import peak_rss_mb
from include.offer_sync.load import sweep as sweep_checks
from include.offer_sync.load.merge import merge_sweep
from include.offer_sync.load.runs import (
    MERGE_FLAGS,
    build_result,
    get_run,
    is_finished,
    is_merged,
    recorded_sweep,
    seal_staging,
    start_run,
)
from include.offer_sync.load.schema import ensure_schema
from include.offer_sync.load.staging import StagingTables, create_staging, drop_leftover_staging, drop_staging
from include.offer_sync.load.sweep import pagination_verdicts
from include.offer_sync.settings import DatabaseSettings, TrackierSettings
from include.offer_sync.trackier.http import TrackierClient
from include.offer_sync.trackier.pagination import Entity
from include.offer_sync.trackier.ratelimit import sweep_rate_limiter
from include.offer_sync.trackier.shards import plan_shards

log = logging.getLogger(__name__)


def _statements_since(start: int) -> int:
    return dbmod.STATEMENTS.count - start


def _task_metrics(t0: float, s0: int) -> TaskMetrics:
    """What a task measured about itself since ``t0 = time.perf_counter()``, ``s0 = STATEMENTS.count``."""
    return {
        "wall_s": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "db_statements": _statements_since(s0),
    }


def start_sync(
    db: DatabaseSettings,
    *,
    run_id: str,
    dag_id: str,
    params: dict[str, Any],
) -> RunHandle:
    """Create the schema if needed, drop stale staging, create this run's staging, open the run record.

    A run that already merged (this task cleared and run again) is left exactly as it is: its
    results are final, and the tasks after this one recognise it and return what it recorded.
    A run that has not merged (a failed run cleared and re-run) starts over as a new sweep: its
    start time, result, counts, rejects and page errors are reset (``runs_start.sql``).
    """
    t0 = time.perf_counter()
    s0 = dbmod.STATEMENTS.count
    tables = StagingTables.for_run(run_id)
    stale: list[str] = []
    with connect(db) as conn:
        ensure_schema(conn)
        with conn.transaction():
            # The merge lock (no other run is merging while we look for tables it might still need),
            # taken by the same statement that reads whether this run has merged already (from the
            # snapshot before the lock: runs_start.sql re-checks merged_at itself, see its header).
            merged_at, _ = conn.execute(dbmod.query("runs_merged_get"), {"run_id": run_id}).fetchone()
            if merged_at is not None:
                log.info("run %s already merged; its results are final and nothing is restarted", run_id)
            else:
                stale = drop_leftover_staging(conn, keep=tables)
                create_staging(conn, tables)
                start_run(
                    conn,
                    run_id=run_id,
                    dag_id=dag_id,
                    dry_run=bool(params.get("dry_run")),
                    params=params,
                    plan={"run_key": tables.run_key},
                )
    if stale:
        log.info("dropped %d staging tables left by earlier runs: %s", len(stale), ", ".join(stale))
    return {
        "run_id": run_id,
        "run_key": tables.run_key,
        "metrics": _task_metrics(t0, s0),
    }


def plan_entity(api: TrackierSettings, entity: Entity) -> list[Shard]:
    """Probe page 1 of an entity and split its sweep into shards (``trackier/shards.py``)."""
    t0 = time.perf_counter()
    client = TrackierClient(api)
    probe = client.probe(entity)
    shards = plan_shards(entity, probe, api.pages_per_shard, api.max_shards)
    # The rate is the whole sweep's; its extract tasks share it at run time (ratelimit.py).
    for shard in shards:
        shard["requests_per_second"] = api.requests_per_second
    log.info(
        "%s: %s pagination, total %s, %d shard(s): %s",
        entity,
        probe.style,
        probe.total,
        len(shards),
        "; ".join(s["label"] for s in shards),
    )
    shards[0]["probe"] = {
        "requests": client.stats.requests,
        "wall_s": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    return shards


def extract_shard(
    db: DatabaseSettings,
    api: TrackierSettings,
    run: RunHandle,
    shard: Shard,
    *,
    try_number: int = 1,
) -> ShardSummary:
    """Fetch, validate and stage one shard (a mapped task instance).

    ``try_number`` is the Airflow try of the task instance (1 in-process): the staged rows carry
    it, so that two tries of one shard running at once (a zombie and its retry) cannot both count.
    """
    s0 = dbmod.STATEMENTS.count
    with sweep_rate_limiter(db, run["run_id"], shard["requests_per_second"]) as limiter:
        client = TrackierClient(api, limiter=limiter)
        summary = extract.extract_shard(
            db,
            client,
            run["run_id"],
            shard,
            fetch_threads=api.fetch_threads,
            try_number=try_number,
            validate_processes=api.validate_processes,
        ).as_dict()
    summary["db_statements"] = _statements_since(s0)
    return summary


def expected_totals(summaries: list[ShardSummary]) -> dict[str, int | None]:
    """The record totals the API promised on page 1, per entity (None when it gave none)."""
    return {s["entity"]: s.get("expected_total") for s in summaries}


def check_sweep(db: DatabaseSettings, run: RunHandle, summaries: list[ShardSummary], max_error_rate: float) -> Sweep:
    """Whole-sweep checks and the error-rate breaker (raises when it trips)."""
    t0 = time.perf_counter()
    s0 = dbmod.STATEMENTS.count
    with connect(db, autocommit=True) as conn:  # the read is one statement; the checks open a transaction
        # Sealing waits until no try of an extract task of this run is still writing (a zombie
        # try's COPY lands before the check, never after it); held until this connection closes.
        record = seal_staging(conn, run["run_id"])
        if is_merged(record):
            assert record is not None
            log.info("run %s already merged; returning the sweep it recorded", run["run_id"])
            sweep = recorded_sweep(record)
        else:
            sweep = sweep_checks.check_sweep(
                conn,
                run["run_id"],
                summaries,
                expected_totals=expected_totals(summaries),
                max_error_rate=max_error_rate,
            )
    sweep["metrics"] = _task_metrics(t0, s0)
    return sweep


def merge_catalogue(
    db: DatabaseSettings,
    run: RunHandle,
    sweep: Sweep,
    *,
    deactivate_missing: bool,
    dry_run: bool,
    max_deactivate_rate: float = DEFAULT_MAX_DEACTIVATE_RATE,
) -> MergeResult:
    """The atomic merge into brands/offers (``load/merge.py``)."""
    t0 = time.perf_counter()
    s0 = dbmod.STATEMENTS.count
    with connect(db) as conn:
        counts = merge_sweep(
            conn,
            run["run_id"],
            sweep,
            deactivate_missing=deactivate_missing,
            dry_run=dry_run,
            max_deactivate_rate=max_deactivate_rate,
        )
    counts["metrics"] = _task_metrics(t0, s0)
    return counts


def collect_metrics(run: RunHandle, summaries: list[ShardSummary], sweep: Sweep, merged: MergeResult) -> RunMetrics:
    """Measured figures of the whole run, per phase and per task, for sync_runs and the event."""
    extract_tasks = [{"task": s["label"], "wall_s": s["wall_s"], "peak_rss_mb": s["peak_rss_mb"]} for s in summaries]
    tasks = [
        {"task": "start_sync", **{k: run["metrics"][k] for k in ("wall_s", "peak_rss_mb")}},
        *extract_tasks,
        {"task": "check_sweep", **{k: sweep["metrics"][k] for k in ("wall_s", "peak_rss_mb")}},
        {"task": "merge_catalogue", **{k: merged["metrics"][k] for k in ("wall_s", "peak_rss_mb")}},
    ]
    return {
        "phases_s": {
            "extract": round(sum(s["fetch_wait_s"] for s in summaries), 3),
            "validate": round(sum(s["validate_s"] for s in summaries), 3),
            "stage": round(sum(s["stage_s"] for s in summaries), 3),
            "check": sweep["metrics"]["wall_s"],
            "merge": merged["metrics"]["wall_s"],
        },
        "merge_path": merged.get("merge_path"),  # first_sync (empty offers table) or general
        "tasks": tasks,
        "peak_task_rss_mb": max(t["peak_rss_mb"] for t in tasks),
        "api_requests": sum(s["requests"] + s["probe_requests"] for s in summaries),
        "api_retries": sum(s["retries"] for s in summaries),
        "pages_fetched": sum(s["pages"] for s in summaries),
        "pages_failed": sum(s["failed_pages"] for s in summaries),
        "records_fetched": sum(s["records"] for s in summaries),
        "records_valid": sum(s["valid"] for s in summaries),
        "records_rejected": sweep["rejected"],
        "db_statements": run["metrics"]["db_statements"]
        + sum(s["db_statements"] for s in summaries)
        + sweep["metrics"]["db_statements"]
        + merged["metrics"]["db_statements"],
        "shards": {
            "advertisers": sum(1 for s in summaries if s["entity"] == "advertisers"),
            "campaigns": sum(1 for s in summaries if s["entity"] == "campaigns"),
        },
        "shards_with_workers": sum(1 for s in summaries if s["processes"]),
    }


def publish_result(
    db: DatabaseSettings,
    run: RunHandle,
    summaries: list[ShardSummary],
    sweep: Sweep,
    merged: MergeResult,
) -> SyncResult:
    """Close the run: final status, duration, metrics; drop staging; return ``sync_result``."""
    run_id = run["run_id"]
    metrics = collect_metrics(run, summaries, sweep, merged)
    problems = merged.get("problems") or sweep["problems"]  # the merge adds the deactivation guard's
    clean = (
        sweep["complete_sweep"]
        and sweep["rejected"] == 0
        and sweep["failed_pages"] == 0
        and not merged.get("deactivation_blocked")
    )
    status = "completed" if clean else "completed_with_errors"
    # The duration and the dry-run flag are filled in by the UPDATE itself, from the run's row.
    provisional = build_result(
        run_id,
        status,
        merged,
        0.0,
        complete_sweep=sweep["complete_sweep"],
        failed_pages=sweep["failed_pages"],
        problems=problems[:10],
        metrics=metrics,
        pagination=pagination_verdicts(summaries),
        **{k: bool(merged.get(k)) for k in MERGE_FLAGS},
    )
    with connect(db, autocommit=True) as conn:
        row = conn.execute(
            dbmod.query("runs_finish"),
            {
                "run_id": run_id,
                "status": status,
                "result": Jsonb(provisional),
                "metrics": Jsonb(metrics),
                "error": "; ".join(problems[:5]) or None,
            },
        ).fetchone()
        if row is None:
            # This task cleared and run again: the run's result is final; hand it out unchanged.
            record = get_run(conn, run_id)
            drop_staging(conn, StagingTables.for_run(run_id))
            if is_finished(record):
                assert record is not None
                log.info("run %s already finished (%s); returning its recorded result", run_id, record["status"])
                return dict(record["result"])
            raise RuntimeError(f"run {run_id} has no sync_runs row to finish")
        result = dict(row[0])
        drop_staging(conn, StagingTables.for_run(run_id))
    log.info("sync %s: %s", status, {k: result[k] for k in result if k not in ("metrics", "problems")})
    return result


class EventClaim(TypedDict):
    """What ``claim_event`` found: the ``sync_result`` to emit, or why there is nothing to emit."""

    result: SyncResult | None
    reason: str


def claim_event(db: DatabaseSettings, run_id: str, *, try_number: int) -> EventClaim:
    """Claim the run's one ``offers`` event and completion webhook (``runs_claim_event.sql``).

    ``result`` is the stored ``sync_result`` when this call got the claim; ``None`` for a dry run
    (nothing changed: downstream DAGs must not run on it), and when the event was already emitted
    (``publish_result`` or this task cleared and run again).
    """
    with connect(db, autocommit=True) as conn:
        row = conn.execute(dbmod.query("runs_claim_event"), {"run_id": run_id, "try_number": try_number}).fetchone()
    claimed, found, dry_run, status, merged_at, emitted_at, claimed_try = row
    if claimed is not None:
        return {"result": dict(claimed), "reason": "claimed"}
    if found is None:
        reason = f"run {run_id} has no sync_runs record"
    elif dry_run:
        reason = "dry run: nothing was written, so no offers event and no completion webhook"
    elif emitted_at is not None:
        reason = f"the offers event of run {run_id} was already emitted at {emitted_at.isoformat()} (try {claimed_try})"
    else:
        reason = f"run {run_id} is {status} and {'merged' if merged_at else 'not merged'}: nothing to announce"
    return {"result": None, "reason": reason}


def release_event_claim(run_id: str, try_number: int, db: DatabaseSettings | None = None) -> bool:
    """Give back the event claim of a failed try of ``emit_offers_event``; never raises (a callback).

    Returns whether a claim was released.
    """
    try:
        db = db or DatabaseSettings.from_airflow()
        with connect(db, autocommit=True) as conn:
            released = conn.execute(
                dbmod.query("runs_release_event"), {"run_id": run_id, "try_number": try_number}
            ).rowcount
        if released:
            log.warning(
                "run %s: try %s failed after claiming the offers event; released for its retry", run_id, try_number
            )
        return bool(released)
    except Exception:
        log.exception("could not release the offers event claim of run %s try %s", run_id, try_number)
        return False
