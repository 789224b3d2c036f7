"""The distributed path: CeleryExecutor with two workers runs the sync like ``airflow dags test`` does.

Everything is real and local: Redis (the machine's, on its own database number and queue) as the
broker, fresh PostgreSQL databases for Airflow's metadata and Celery's results, the scheduler,
dag-processor, api-server and triggerer, and two ``airflow celery worker`` processes with different
Celery hostnames, each recording its name as the hostname of the task instances it runs. The run is
triggered through the REST API, with small shards so that there are eight mapped extract tasks to
spread. The same catalogue then goes through ``airflow dags test`` into another fresh database, and
the two must agree: the run's counts and the offers and brands tables, row for row.

The Trackier connection keeps the client-side rate limit on, so the sweep-wide limiter is checked
where it matters most: eight extract tasks on two hosts, one budget, measured at the fake server.

``python -m bench.executors`` runs the same catalogue under dags test, LocalExecutor and this set-up
and prints the wall times (BENCHMARKS.md, "Executors").
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from devtools.airflow_server import DAG_ID, live_airflow
from devtools.fake_trackier import Catalogue
from tests.db.test_rate_limit import max_in_any_window
from tests.helpers import latest_run

WORKERS = ("worker-a", "worker-b")
#: 2,400 campaigns of 50 per page = 48 pages; 6 pages per shard = 8 mapped campaign extracts.
CATALOGUE = {"advertisers": 12, "campaigns": 2400, "seed": 21}
CONF = {"pages_per_shard": 6, "max_shards": 8}
RATE = 10
#: The connection extras of both runs (page size 50 and fast retries come from the fixtures).
CONN_EXTRA = {"requests_per_second": RATE}
#: Task-level settings for both runs: no schedule (no catch-up run on unpause), no deadline alerts.
TASK_ENV = {"OFFER_SYNC_SCHEDULE": "none", "OFFER_SYNC_DEADLINE_MINUTES": "0"}
#: The counts that must be equal, whoever ran the tasks.
COUNTS = (
    "status",
    "added",
    "updated",
    "unchanged",
    "deactivated",
    "reactivated",
    "rejected",
    "duplicates",
    "campaigns_processed",
    "advertisers_processed",
    "brands_added",
    "brands_updated",
    "failed_pages",
    "complete_sweep",
    "error_rate",
    "dry_run",
)
#: Every column of a row except where and when it was written (ids, timestamps, run ids).
CONTENT = """
    SELECT jsonb_object_agg(key, value ORDER BY key)
    FROM jsonb_each(to_jsonb(t))
    WHERE key NOT IN ('id', 'brand_id') AND key NOT LIKE '%\\_at' AND key NOT LIKE '%run\\_id'
"""


def table_contents(sql: Any) -> dict[str, list[Any]]:
    offer_content = CONTENT.replace("to_jsonb(t)", "to_jsonb(o)")
    offers = sql(
        f"SELECT b.trackier_id, ({offer_content}) FROM offers o JOIN brands b ON b.id = o.brand_id "
        "ORDER BY o.trackier_id"
    )
    brands = sql(f"SELECT ({CONTENT}) FROM brands t ORDER BY t.trackier_id")
    return {"offers": offers, "brands": brands}


@pytest.mark.airflow
def test_celery_two_workers_share_the_mapped_extracts_and_match_dags_test(
    pg_admin_url: str, airflow: Any, fake_trackier: Any, offers_db_url: str, sql: Any
) -> None:
    # --- the distributed run -----------------------------------------------------------------
    with live_airflow(
        pg_admin_url,
        Catalogue(**CATALOGUE),
        conn_extra=CONN_EXTRA,
        executor="CeleryExecutor",
        celery_workers=WORKERS,
        triggerer=True,
        extra_env=TASK_ENV,
    ) as af:
        af.unpause()
        af.fake.reset_stats()
        started = time.perf_counter()
        run_id = af.trigger(conf=CONF)
        run = af.wait_for_run(run_id, timeout=900)
        celery_wall_s = time.perf_counter() - started
        assert run["state"] == "success", af.log_tail("scheduler")
        result = af.return_value(run_id, "publish_result")
        request_times = af.fake.request_times()
        instances = af.metadata(
            "SELECT task_id, map_index, hostname, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
            (DAG_ID, run_id),
        )
        worker_logs = {name: af.log_path(f"worker-{name}").read_text(errors="replace") for name in WORKERS}
        celery_tables = table_contents(af.sql)
    print(f"\nCeleryExecutor, 2 workers x {2} slots: trigger to success {celery_wall_s:.1f} s")

    # Eight mapped campaign extracts and one advertiser extract, all run, spread over both workers.
    extracts = [(task, index, host) for task, index, host, state in instances if task.startswith("extract_")]
    assert all(state == "success" for *_, state in instances), instances
    assert sorted((t, i) for t, i, _ in extracts) == [("extract_advertisers", 0)] + [
        ("extract_campaigns", i) for i in range(8)
    ]
    assert {host for *_, host in extracts} == set(WORKERS), extracts
    # Every task instance ran on one of the two workers, never in the scheduler.
    assert {host for _, _, host, _ in instances} <= set(WORKERS), instances
    # The workers' own logs agree: each executed extract tasks of this run.
    for name in WORKERS:
        ours = [t for t, _, host in extracts if host == name]
        assert ours
        assert f"task_id='{ours[0]}'" in worker_logs[name], worker_logs[name][-3000:]

    # One request budget for the sweep, though up to four extracts ran at once on two hosts.
    assert len(request_times) >= 48
    assert max(request_times) - min(request_times) >= (len(request_times) - 3) / RATE - 0.05
    assert max_in_any_window(request_times, 2.0) <= 2 * RATE + 4

    # --- the same catalogue through `airflow dags test` ---------------------------------------------
    server = fake_trackier(Catalogue(**CATALOGUE))
    started = time.perf_counter()
    dags_test = airflow.run(server, offers_db_url, conf=CONF, conn_extra=CONN_EXTRA, env=TASK_ENV)
    print(f"airflow dags test: {time.perf_counter() - started:.1f} s")
    assert dags_test.succeeded, dags_test.output[-3000:]
    expected = latest_run(sql)

    assert result["status"] == "completed"
    assert result["added"] == CATALOGUE["campaigns"]
    assert {k: result[k] for k in COUNTS} == {k: expected[k] for k in COUNTS}
    assert celery_tables == table_contents(sql)
