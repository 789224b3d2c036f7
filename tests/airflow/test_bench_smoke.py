"""The benchmark command runs end to end at a tiny size and writes its table (ours only, no dlt).

No timing is asserted: the machine is shared and CI is slower. What is asserted is that the
harness measured something real for each of the three syncs (first, no-change, 10% changed),
that our counts and the row/payout cross-check came out right, and that BENCHMARKS.md got its
table. It runs three real ``airflow dags test`` runs (about 30 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cluster import private_cluster_available
from bench.report import HAND_WRITTEN_BEGIN, HAND_WRITTEN_END
from devtools.airflow_run import REPO_ROOT

pytestmark = pytest.mark.airflow


#: What a benchmark round writes by hand into BENCHMARKS.md: a rerun must keep it, byte for byte.
BY_HAND = "\n".join(
    [
        HAND_WRITTEN_BEGIN,
        "## Issue 14, some round (written by hand)",
        "",
        "| scenario | ours | loop | ratio |",
        "|---|---|---|---|",
        "| 1M first sync | 60.8 s | 180.0 s | 2.96x |",
        "Ünïcode, `code`, <b>not html</b> and a trailing space ",
        HAND_WRITTEN_END,
    ]
)


def test_bench_tiny_writes_results_and_table(tmp_path: Path) -> None:
    out, markdown, chart = tmp_path / "out", tmp_path / "BENCHMARKS.md", tmp_path / "benchmark.png"
    markdown.write_text(f"# An older table\n\n## Summary\nstale numbers\n\n{BY_HAND}\n\n## Stale generated tail\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--sizes",
            "tiny",
            "--no-peers",
            "--fresh",
            "--out",
            str(out),
            "--markdown",
            str(markdown),
            "--chart",
            str(chart),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    entry = results["sizes"]["tiny"]
    assert (entry["offers"], entry["advertisers"]) == (200, 4)
    assert list(entry["systems"]) == ["ours"]  # --no-peers: no dlt, no loop
    runs = entry["systems"]["ours"]["runs"]
    assert list(runs) == ["first", "nochange", "changed10"]

    counts_statements = private_cluster_available() is None
    assert entry["database"]["counts_statements"] is counts_statements
    for scenario, run in runs.items():
        assert run["ok"], (scenario, run.get("error"))
        assert run["check"]["ok"], (scenario, run["check"])  # same rows and payout sum as the catalogue
        assert run["wall_s"] > 0
        assert run["rows_per_s"] > 0
        assert run["peak_rss_mb"] > 10  # sampled from /proc while Airflow ran
        assert run["api_requests"] >= 2  # advertisers and campaigns, counted by the fake server
        assert 0 <= run["fake_server_share"] < 5
        if counts_statements:
            assert run["sql_statements"] > 0  # counted by pg_stat_statements
        else:
            assert run["sql_statements"] is None
        assert {"extract", "validate", "stage", "check", "merge"} <= set(run["phases_s"])
        tasks = {t["task"].split("[")[0] for t in run["tasks"]}
        assert {"start_sync", "extract_campaigns", "merge_catalogue", "publish_result"} <= tasks
        assert all(t["state"] == "success" and t["airflow_s"] is not None for t in run["tasks"])

    # The three syncs differ in what they change, and the harness saw it.
    assert runs["first"]["sync_result"]["added"] == 200
    assert runs["nochange"]["sync_result"]["unchanged"] == 200
    assert runs["changed10"]["sync_result"]["updated"] == 20  # 10 % of the payouts changed
    assert runs["changed10"]["check"]["expected"]["payout_sum"] != runs["first"]["check"]["expected"]["payout_sum"]

    text = markdown.read_text()
    assert "### tiny: 200 offers, 4 advertisers" in text
    assert "| **trackier_offer_sync (airflow dags test)** |" in text
    assert "## Machine" in text
    assert "make bench" in text
    assert "dlt rest_api" not in text.split("## How each figure is measured")[0]  # no peer rows were made up
    # The part written by hand is kept as it was, once, after the chart; the stale generated parts are gone.
    assert text.count(BY_HAND) == 1
    assert text.index("## Chart") < text.index(BY_HAND) < text.index("## How each figure is measured")
    assert "stale numbers" not in text
    assert "## Stale generated tail" not in text


SHAPE_PROBE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
out = {}
for folder in sys.argv[1:]:
    bag = DagBag(dag_folder=folder)
    for dag_id, dag in bag.dags.items():
        out[dag_id] = {
            "errors": sorted(bag.import_errors),
            "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids),
                                  "mapped": "MappedOperator" in t.__class__.__name__,
                                  "map_index_template": getattr(t, "map_index_template", None),
                                  "outlets": len(getattr(t, "outlets", []) or [])}
                      for t in dag.tasks},
        }
print("RESULT" + json.dumps(out))
"""


def test_airflow_floor_has_our_dags_tasks_and_runs_over_our_shard_labels(tmp_path: Path) -> None:
    """The floor (``bench/airflow_floor``) is only a fair measure of Airflow's own cost if it is our
    DAG with the work taken out: same task ids, same dependencies, same mapping and outlet; and the
    bench runs it over the shard labels ours plans at the same size."""
    from bench.run import FLOOR_DAG_ID, FLOOR_DAGS, floor_shards
    from devtools.airflow_run import parse_only_env
    from include.offer_sync.constants import DAG_ID

    proc = subprocess.run(
        [sys.executable, "-c", SHAPE_PROBE, str(REPO_ROOT / "dags"), str(FLOOR_DAGS)],
        env=parse_only_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, proc.stdout[-3000:] + proc.stderr[-3000:]
    dags = json.loads(line[len("RESULT") :])
    assert dags[FLOOR_DAG_ID]["errors"] == []
    assert dags[FLOOR_DAG_ID]["tasks"] == dags[DAG_ID]["tasks"]

    # 1M: four campaign shards of 250 pages and one advertiser shard, labelled as ours labels them.
    assert floor_shards(1_000_000, 20_000) == {
        "advertiser_shards": ["advertisers: pages 1-20+ of 20"],
        "campaign_shards": [f"campaigns: pages {a}-{b} of 1000" for a, b in ((1, 250), (251, 500), (501, 750))]
        + ["campaigns: pages 751-1000+ of 1000"],
    }

    out, markdown = tmp_path / "out", tmp_path / "BENCHMARKS.md"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "bench.run", "--sizes", "1k", "--systems", "airflow_floor", "--fresh"),
            *("--out", str(out), "--markdown", str(markdown), "--chart", str(tmp_path / "chart.png")),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    floor = json.loads((out / "results.json").read_text())["sizes"]["1k"]["systems"]["airflow_floor"]
    assert list(floor["runs"]) == ["first"]  # Airflow's own cost does not depend on the data
    first = floor["runs"]["first"]
    assert first["ok"], first.get("error")
    assert first["api_requests"] == 0  # empty tasks: nothing reached the fake Trackier
    names = sorted(t["task"] for t in first["tasks"])
    assert names == sorted(
        [
            *("start_sync", "plan_advertisers", "plan_campaigns", "check_sweep", "merge_catalogue"),
            *("publish_result", "emit_offers_event"),
            *("extract_advertisers[advertisers: pages 1-1+ of 1]", "extract_campaigns[campaigns: pages 1-1+ of 1]"),
        ]
    )
    assert all(t["state"] == "success" for t in first["tasks"])
    assert "Airflow alone" in markdown.read_text()
