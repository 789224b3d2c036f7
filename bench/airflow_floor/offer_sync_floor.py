"""The Airflow floor: our DAG's shape with empty task bodies (``python -m bench.run --systems airflow_floor``).

What ``airflow dags test trackier_offer_sync`` costs before our code does any work: the CLI starting,
the DAG parsed and serialised, the run created, the in-process execution API built (its first request
initialises Cadwyn's versioned routes: 2.9 s of the 100k profile's samples, ``bench.profile``), and
one supervised task instance per task and shard. Same tasks, same dependencies, same mapped extract
tasks over the same shard labels (``dag_run.conf``: ``advertiser_shards`` and ``campaign_shards``,
label lists from ``trackier/shards.py``'s ``plan_shards``, as the bench computes them), the same
``map_index_template``, retries and an outlet Asset on the last task; the bodies return a small dict
and touch neither the API nor a database. Not in it: our DAG's Params and callbacks.

The benchmark subtracts nothing: it reports this floor beside ours, so a reader sees how much of a
small sync's wall time is Airflow's under ``dags test``. It lives under ``bench/`` (its own dags
folder, ``AIRFLOW__CORE__DAGS_FOLDER``), never beside the product's DAGs.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, get_current_context, task

FLOOR_DAG_ID = "offer_sync_airflow_floor"  # also spelled in bench/run.py (FLOOR_DAG_ID); a test holds them equal


@dag(
    dag_id=FLOOR_DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    tags=["bench"],
)
def offer_sync_airflow_floor() -> None:
    @task
    def start_sync() -> dict:
        return {"run_id": get_current_context()["run_id"]}

    @task
    def plan_advertisers(run: dict) -> list[dict]:
        labels = get_current_context()["dag_run"].conf.get("advertiser_shards") or ["advertisers: pages 1-1+ of 1"]
        return [{"label": label} for label in labels]

    @task
    def plan_campaigns(run: dict) -> list[dict]:
        labels = get_current_context()["dag_run"].conf.get("campaign_shards") or ["campaigns: pages 1-1+ of 1"]
        return [{"label": label} for label in labels]

    @task(map_index_template="{{ shard_label }}")
    def extract_advertisers(shard: dict, run: dict) -> dict:
        get_current_context()["shard_label"] = shard["label"]  # type: ignore[typeddict-unknown-key]
        return {"label": shard["label"], "records": 0}

    @task(map_index_template="{{ shard_label }}")
    def extract_campaigns(shard: dict, run: dict) -> dict:
        get_current_context()["shard_label"] = shard["label"]  # type: ignore[typeddict-unknown-key]
        return {"label": shard["label"], "records": 0}

    @task
    def check_sweep(run: dict, advertisers: list[dict], campaigns: list[dict]) -> dict:
        return {"shards": len(advertisers) + len(campaigns)}

    @task
    def merge_catalogue(run: dict, sweep: dict) -> dict:
        return {"added": 0}

    @task
    def publish_result(run: dict, advertisers: list[dict], campaigns: list[dict], sweep: dict, merged: dict) -> dict:
        return {"status": "completed", **merged}

    @task(outlets=[Asset(name="offer_sync_airflow_floor", uri="bench://offer-sync-airflow-floor")])
    def emit_offers_event(result: dict) -> None:
        get_current_context()["outlet_events"][
            Asset(name="offer_sync_airflow_floor", uri="bench://offer-sync-airflow-floor")
        ].extra = result

    run = start_sync()
    advertisers = extract_advertisers.partial(run=run).expand(shard=plan_advertisers(run))
    campaigns = extract_campaigns.partial(run=run).expand(shard=plan_campaigns(run))
    sweep = check_sweep(run, advertisers, campaigns)
    merged = merge_catalogue(run, sweep)
    emit_offers_event(publish_result(run, advertisers, campaigns, sweep, merged))


offer_sync_airflow_floor()
