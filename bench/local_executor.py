"""The benchmark's second row: the same syncs under a real scheduler with LocalExecutor.

``airflow dags test`` (the headline, as the demo runs it) executes task instances one after
another in one process. A deployment runs the mapped extract tasks in parallel, each in its own
process. This script measures that on the same catalogue: a private PostgreSQL for the offers
(bench.cluster), the fake Trackier as its own process, and api-server + scheduler + dag-processor
started by ``running_airflow`` of ``devtools/airflow_server.py`` (LocalExecutor, parallelism 4, metadata on the
PostgreSQL given by ``--pg-admin-url``).

    python -m bench.local_executor --sizes 100k,1m

Wall time per run is the DAG run's ``end_date - start_date`` from Airflow's REST API; the first
sync is the catch-up run the scheduler starts when the DAG is unpaused, on an api-server that has
already built its execution API (``running_airflow`` asks for it first and the result records how
long that took: a deployed api-server does it once in its life, not once per sync). Each run also
records its task instances' queued/started/ended offsets and durations (``tasks``), so the row shows
where its time goes: in the task processes, or between them (the scheduler and the executor).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.cluster import start_database
from bench.run import API_KEY, CHANGE_FRACTION, PAGE_SIZE, SIZES, FakeServer
from devtools.airflow_run import DAG_ID, REPO_ROOT, trackier_conn_for

OUT = REPO_ROOT / "bench" / "out" / "local_executor.json"


def _seconds(run: dict[str, Any]) -> float:
    start = datetime.fromisoformat(run["start_date"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(run["end_date"].replace("Z", "+00:00"))
    return round((end - start).total_seconds(), 2)


def bench_size(
    size: str, pg_admin_url: str, seed: int, change_seed: int, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    sys.path.insert(0, str(REPO_ROOT))
    from devtools.airflow_server import running_airflow  # the tests' harness: one way to start Airflow

    offers, advertisers = SIZES[size]
    workdir = Path(tempfile.mkdtemp(prefix=f"le-{size}-"))
    out: dict[str, Any] = {"size": size, "offers": offers, "runs": {}}
    with start_database(workdir) as db:
        fake = FakeServer(workdir, advertisers, offers, seed, API_KEY).start()
        try:
            url = db.create("bench_local_executor")
            conn = trackier_conn_for(fake.url, API_KEY, page_size=PAGE_SIZE, requests_per_second=0, **(extra or {}))
            with running_airflow(trackier_conn=conn, offers_db_url=url, pg_admin_url=pg_admin_url) as af:
                af.wait_for_dag()
                out["execution_api_warmup_s"] = af.execution_api_warmup_s
                fake.prerender()  # before each sync, outside its time (bench.procs.FakeServer.prerender)
                af.unpause()  # the scheduler starts the catch-up run: the first sync
                deadline = time.monotonic() + 1800
                while not (runs := af.dag_runs()) or runs[0]["state"] not in ("success", "failed"):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the first sync did not finish")
                    time.sleep(2)
                out["runs"]["first"] = _record(af, runs[0]["dag_run_id"])
                out["runs"]["nochange"] = _record(af, af.trigger())
                fake.mutate("change_payouts", fraction=CHANGE_FRACTION, seed=change_seed)
                fake.prerender()  # the mutation dropped what was rendered
                out["runs"]["changed10"] = _record(af, af.trigger())
        finally:
            fake.stop()
    return out


def _record(af: Any, run_id: str) -> dict[str, Any]:
    run = af.wait_for_run(run_id, timeout=1800)
    result = af.return_value(run_id, "publish_result") or {}
    metrics = result.get("metrics") or {}
    record = {
        "state": run["state"],
        "wall_s": _seconds(run),
        **{k: result.get(k) for k in ("status", "added", "updated", "unchanged", "duration_s")},
        "peak_task_rss_mb": metrics.get("peak_task_rss_mb"),
        "db_statements": metrics.get("db_statements"),
        "shards_with_workers": metrics.get("shards_with_workers"),
        "tasks": _task_times(af, run_id),
    }
    print(f"  {run_id}: { {k: v for k, v in record.items() if k != 'tasks'} }", flush=True)
    for task in record["tasks"]:
        print(f"    {task}", flush=True)
    return record


def _task_times(af: Any, run_id: str) -> list[dict[str, Any]]:
    """Each task instance of the run, in start order: seconds from the run's start until it was
    queued, until it started, its own duration (what runs in the task process) and its end, from
    Airflow's metadata. The gaps between one task's end and the next one's start are the
    scheduler's and the executor's share of the wall time."""
    rows = af.metadata(
        "SELECT ti.task_id, ti.rendered_map_index, "
        "EXTRACT(EPOCH FROM ti.queued_dttm - dr.start_date), EXTRACT(EPOCH FROM ti.start_date - dr.start_date), "
        "ti.duration, EXTRACT(EPOCH FROM ti.end_date - dr.start_date) "
        "FROM task_instance ti JOIN dag_run dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id "
        "WHERE ti.dag_id = %s AND ti.run_id = %s ORDER BY ti.start_date, ti.map_index",
        (DAG_ID, run_id),
    )
    return [
        {
            "task": f"{task}[{label}]" if label else task,
            "queued_s": _round(queued),
            "started_s": _round(started),
            "duration_s": _round(duration),
            "ended_s": _round(ended),
        }
        for task, label, queued, started, duration, ended in rows
    ]


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.local_executor", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,1m")
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where Airflow's own metadata database is created (and dropped)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--change-seed", type=int, default=9)
    parser.add_argument("--ours-extra", type=json.loads, default={}, help="JSON merged into the trackier_api extra")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    out = args.out
    results = json.loads(out.read_text()) if out.exists() else {}
    for size in args.sizes.split(","):
        print(f"size {size}", flush=True)
        results[size] = bench_size(size, args.pg_admin_url, args.seed, args.change_seed, args.ours_extra)
        results[size]["ours_extra"] = args.ours_extra
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
