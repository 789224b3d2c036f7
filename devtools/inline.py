"""A whole sync in one process, task after task, without Airflow.

The DAG is the product; this is for unit tests and profiling, which want to call the same task
bodies in the same order without a scheduler (and without a second of overhead per task).
"""

from __future__ import annotations

from typing import Any

from include.offer_sync import tasks
from include.offer_sync.settings import DatabaseSettings, TrackierSettings

DEFAULT_PARAMS: dict[str, Any] = {
    "dry_run": False, "max_error_rate": 0.05, "deactivate_missing": True, "max_deactivate_rate": 0.2,
}  # fmt: skip


def run_sync(db: DatabaseSettings, api: TrackierSettings, run_id: str, **params: Any) -> dict[str, Any]:
    """Run start, plan, extract (every shard), check, merge and publish; return ``sync_result``."""
    p = {**DEFAULT_PARAMS, **params}
    run = tasks.start_sync(db, run_id=run_id, dag_id="trackier_offer_sync", params=p)
    shards = [*tasks.plan_entity(api, "advertisers"), *tasks.plan_entity(api, "campaigns")]
    summaries = [tasks.extract(db, api, run, shard) for shard in shards]
    sweep = tasks.check(db, run, summaries, float(p["max_error_rate"]))
    merged = tasks.merge(
        db, run, sweep, deactivate_missing=bool(p["deactivate_missing"]), dry_run=bool(p["dry_run"]),
        max_deactivate_rate=float(p["max_deactivate_rate"]),
    )  # fmt: skip
    return tasks.finish(db, run, summaries, sweep, merged)
