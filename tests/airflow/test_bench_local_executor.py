"""The benchmark's LocalExecutor row (``bench/local_executor.py``) at the smallest size: a real
api-server, scheduler and dag-processor, three syncs, and where each run's time went."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devtools.airflow_run import REPO_ROOT

DAG_TASKS = {
    "start_sync",
    "plan_advertisers",
    "plan_campaigns",
    "extract_advertisers",
    "extract_campaigns",
    "check_sweep",
    "merge_catalogue",
    "publish_result",
    "emit_offers_event",
}


def test_local_executor_row_times_every_task_of_each_sync_on_a_warmed_api_server(tmp_path: Path) -> None:
    out = tmp_path / "local_executor.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.local_executor", "--sizes", "tiny", "--out", str(out)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())["tiny"]

    # The api-server built its execution API before the first sync was started, not during it.
    assert isinstance(result["execution_api_warmup_s"], float)
    assert result["execution_api_warmup_s"] > 0

    runs = result["runs"]
    assert (runs["first"]["state"], runs["first"]["added"]) == ("success", 200)
    assert (runs["nochange"]["state"], runs["nochange"]["unchanged"]) == ("success", 200)
    assert runs["changed10"]["state"] == "success"
    assert runs["changed10"]["updated"] > 0
    for scenario, run in runs.items():
        tasks = run["tasks"]
        assert {t["task"].split("[", 1)[0] for t in tasks} == DAG_TASKS, scenario
        # Mapped tasks carry their shard's label, as the grid shows it.
        assert any(t["task"].startswith("extract_campaigns[campaigns: pages 1-") for t in tasks), scenario
        for t in tasks:
            assert 0 <= t["queued_s"] <= t["started_s"] <= t["ended_s"] <= run["wall_s"] + 0.01, (scenario, t)
            assert t["duration_s"] >= 0, (scenario, t)
        # In start order: the first task is the one every other waits for.
        assert tasks[0]["task"] == "start_sync", scenario
        assert [t["started_s"] for t in tasks] == sorted(t["started_s"] for t in tasks), scenario
