"""What the benchmark's LocalExecutor row (``bench/local_executor.py``) reads off a real Airflow:
the session's api-server, scheduler and dag-processor (``airflow_server``), one sync of its own."""

from __future__ import annotations

from bench.local_executor import _seconds, _task_times
from devtools.airflow_server import DAG_ID, LiveAirflow


def test_the_api_server_built_its_execution_api_before_any_run(airflow_server: LiveAirflow) -> None:
    # running_airflow asked for it before yielding (a task's first request would otherwise pay it).
    assert isinstance(airflow_server.execution_api_warmup_s, float)
    assert airflow_server.execution_api_warmup_s > 0


def test_task_times_list_every_task_instance_of_a_run_in_start_order(airflow_server: LiveAirflow) -> None:
    airflow_server.unpause_and_settle()
    run_id = airflow_server.trigger()
    run = airflow_server.wait_for_run(run_id, timeout=300)
    assert run["state"] == "success", airflow_server.log_tail("scheduler")
    wall_s = _seconds(run) + 0.01  # both rounded to 0.01 s
    dag_tasks = {t["task_id"] for t in airflow_server.api("GET", f"/api/v2/dags/{DAG_ID}/tasks").json()["tasks"]}

    tasks = _task_times(airflow_server, run_id)

    # Every task of the DAG as the api-server serves it, and nothing else.
    assert {t["task"].split("[", 1)[0] for t in tasks} == dag_tasks
    # Mapped tasks carry their shard's label, as the grid shows it.
    assert any(t["task"].startswith("extract_campaigns[campaigns: ") for t in tasks)
    for t in tasks:
        assert 0 <= t["queued_s"] <= t["started_s"] <= t["ended_s"] <= wall_s, t
        assert t["duration_s"] >= 0, t
    # In start order: the first task is the one every other waits for.
    assert tasks[0]["task"] == "start_sync"
    assert [t["started_s"] for t in tasks] == sorted(t["started_s"] for t in tasks)
    # Another run's task instances are not mixed in.
    rows = airflow_server.metadata("SELECT 1 FROM task_instance WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id))
    assert len(tasks) == len(rows)
