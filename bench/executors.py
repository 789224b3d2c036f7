"""The same sync under ``airflow dags test``, LocalExecutor and CeleryExecutor with two workers.

    python -m bench.executors                # the catalogue of tests/airflow/test_celery_executor.py
    python -m bench.executors --rate 0       # the client-side rate limit off

Each system gets the catalogue of ``tests/airflow/test_celery_executor.py`` (12 advertisers, 2,400
campaigns, 50 per page, 6 pages per shard: 8 mapped campaign extracts) from its own fake Trackier
into its own fresh offers database, with the components of ``devtools/airflow_server.py`` (real
scheduler, dag-processor, api-server, triggerer; Redis + two ``airflow celery worker -c 2`` for
Celery). Wall time is from the REST trigger to the run's success for the two executors (their
components already up), and the whole process for ``airflow dags test`` (which starts Airflow
itself, ~9 s of it). The load average is printed with each figure: this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from devtools.airflow_run import airflow_env, prepare_home, run_dag_test
from devtools.airflow_server import FIXTURE_API_KEY, fixture_trackier_conn, live_airflow
from devtools.fake_trackier import Catalogue, FakeTrackier
from tests.airflow.test_celery_executor import CATALOGUE, CONF, TASK_ENV, WORKERS

ADMIN_URL = os.environ.get("OFFER_SYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/") + "/postgres"


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def executor_run(executor: str, conn_extra: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"executor": executor, "celery_workers": WORKERS} if executor == "CeleryExecutor" else {}
    with live_airflow(
        ADMIN_URL, Catalogue(**CATALOGUE), conn_extra=conn_extra, triggerer=True, extra_env=TASK_ENV, **kwargs
    ) as af:
        af.unpause()
        load_before = _load()
        started = time.perf_counter()
        run_id = af.trigger(conf=CONF)
        run = af.wait_for_run(run_id, timeout=1800)
        wall = time.perf_counter() - started
        result = af.return_value(run_id, "publish_result") if run["state"] == "success" else {}
    return {
        "system": executor,
        "state": run["state"],
        "wall_s": round(wall, 1),
        "added": result.get("added"),
        "load_before": load_before,
        "load_after": _load(),
    }


def dags_test_run(conn_extra: dict[str, Any]) -> dict[str, Any]:
    name = f"offer_sync_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    server = FakeTrackier(Catalogue(**CATALOGUE), api_key=FIXTURE_API_KEY)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_executors_") as home:
            env = airflow_env(
                Path(home), trackier_conn=fixture_trackier_conn(server, **conn_extra), offers_db_url=url, extra=TASK_ENV
            )
            prepare_home(Path(home), env)
            load_before = _load()
            run = run_dag_test(env, CONF, timeout=1800)
        with psycopg.connect(url) as conn:
            added = conn.execute("SELECT count(*) FROM offers").fetchone()[0]
    finally:
        server.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "system": "airflow dags test",
        "state": "success" if run.succeeded else "failed",
        "wall_s": round(run.wall_s, 1),
        "added": added,
        "load_before": load_before,
        "load_after": _load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10, help="requests_per_second of the trackier_api connection")
    args = parser.parse_args()
    conn_extra = {"requests_per_second": args.rate}
    rows = [
        dags_test_run(conn_extra),
        executor_run("LocalExecutor", conn_extra),
        executor_run("CeleryExecutor", conn_extra),
    ]
    print(f"catalogue {CATALOGUE}, conf {CONF}, requests_per_second {args.rate}")
    print("| system | state | wall s | offers | load average before | after |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['system']} | {row['state']} | {row['wall_s']} | {row['added']} | {row['load_before']} "
            f"| {row['load_after']} |"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
