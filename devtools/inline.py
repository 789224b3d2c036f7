"""A whole sync in one process, task after task, without Airflow.

The DAG is the product; this is for unit tests and profiling, which want to call the same task
bodies in the same order without a scheduler (and without a second of overhead per task).
"""

from __future__ import annotations

from typing import Any

from include.offer_sync import tasks
from include.offer_sync.constants import DAG_ID, DEFAULT_MAX_DEACTIVATE_RATE, DEFAULT_MAX_ERROR_RATE
from include.offer_sync.settings import DatabaseSettings, TrackierSettings

#: The Trigger form's defaults (the DAG's Params read the same constants).
DEFAULT_PARAMS: dict[str, Any] = {
    "dry_run": False,
    "max_error_rate": DEFAULT_MAX_ERROR_RATE,
    "deactivate_missing": True,
    "max_deactivate_rate": DEFAULT_MAX_DEACTIVATE_RATE,
}


def stage_sync(db: DatabaseSettings, api: TrackierSettings, run_id: str, **params: Any) -> dict[str, Any]:
    """start_sync -> plan -> extract every shard -> check_sweep, as the DAG does; the merge is left out.

    Returns ``run``, ``shards``, ``summaries``, ``sweep`` and the ``params`` used (defaults filled in).
    """
    p = {**DEFAULT_PARAMS, **params}
    run = tasks.start_sync(db, run_id=run_id, dag_id=DAG_ID, params=p)
    shards = [*tasks.plan_entity(api, "advertisers"), *tasks.plan_entity(api, "campaigns")]
    summaries = [tasks.extract_shard(db, api, run, shard) for shard in shards]
    sweep = tasks.check_sweep(db, run, summaries, float(p["max_error_rate"]))
    return {"run": run, "shards": shards, "summaries": summaries, "sweep": sweep, "params": p}


def run_sync(db: DatabaseSettings, api: TrackierSettings, run_id: str, **params: Any) -> dict[str, Any]:
    """Run start, plan, extract (every shard), check, merge and publish; return ``sync_result``."""
    staged = stage_sync(db, api, run_id, **params)
    p, run, summaries, sweep = staged["params"], staged["run"], staged["summaries"], staged["sweep"]
    merged = tasks.merge_catalogue(
        db,
        run,
        sweep,
        deactivate_missing=bool(p["deactivate_missing"]),
        dry_run=bool(p["dry_run"]),
        max_deactivate_rate=float(p["max_deactivate_rate"]),
    )
    return tasks.publish_result(db, run, summaries, sweep, merged)
