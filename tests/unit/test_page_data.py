"""The Offer Sync page's data layer without a server: progress from hand-made rows, safe errors."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.airflow_server import DAG_ID
from include.offer_sync.load.staging import StagingTables
from include.offer_sync.settings import DatabaseSettings
from include.offer_sync.ui.data import OffersDbError, build_progress, read_offers_db


def test_offers_db_error_never_shows_the_password() -> None:
    settings = DatabaseSettings(conninfo="postgresql://sync:s3cret-pw@127.0.0.1:9/offers")
    with pytest.raises(OffersDbError) as caught:
        read_offers_db(settings)
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1:9/offers" in str(caught.value)


def _ti(task_id: str, state: str | None, map_index: int = -1, label: str | None = None) -> dict[str, Any]:
    return {"task_id": task_id, "map_index": map_index, "state": state, "label": label}


def test_build_progress_counts_tasks_pages_and_live_copy_rows() -> None:
    run = {"run_id": "manual__2026-01-01T00:00:00+00:00"}
    tables = StagingTables.for_run(run["run_id"])
    shard = {"entity": "campaigns", "limit": 50, "expected_total": 400, "style": "page"}
    plans = [
        {
            "task_id": "plan_advertisers",
            "map_index": -1,
            "value": [{"entity": "advertisers", "limit": 50, "expected_total": 8, "planned_last": 1, "label": "adv"}],
        },
        {
            "task_id": "plan_campaigns",
            "map_index": -1,
            "value": [
                {**shard, "index": 0, "planned_last": 4, "label": "campaigns: pages 1-4 of 8"},
                {**shard, "index": 1, "planned_last": 8, "label": "campaigns: pages 5-8+ of 8"},
            ],
        },
        {
            "task_id": "extract_advertisers",
            "map_index": 0,
            "value": {"pages": 1, "records": 8, "rejected": 0, "label": "adv"},
        },
        {
            "task_id": "extract_campaigns",
            "map_index": 0,
            "value": {"pages": 4, "records": 200, "rejected": 2, "label": "campaigns: pages 1-4 of 8"},
        },
    ]
    tis = [
        _ti("start_sync", "success"),
        _ti("plan_advertisers", "success"),
        _ti("plan_campaigns", "success"),
        _ti("extract_advertisers", "success", 0, "adv"),
        _ti("extract_campaigns", "success", 0),
        _ti("extract_campaigns", "running", 1),
        _ti("check_sweep", None),
        _ti("merge_catalogue", None),
        _ti("publish_result", None),
        _ti("extract_campaigns", "removed", 2),
    ]
    copies = [
        {"table_name": tables.campaigns, "tuples_processed": 120},
        {"table_name": "offer_sync_stg_someoneelse_cmp", "tuples_processed": 999},
    ]

    p = build_progress(run, tis, plans, copies)

    assert p["tasks"] == {"total": 9, "done": 5, "failed": 0, "running": 1}  # "removed" is not a task
    steps = {s["key"]: (s["state"], s["done"], s["total"]) for s in p["steps"]}
    assert steps["plan"] == ("success", 2, 2)
    assert steps["extract"] == ("running", 2, 3)
    assert steps["merge"] == ("pending", 0, 1)
    assert p["totals"]["records_expected"] == 408
    assert p["totals"]["records_staged"] == 8 + 200 + 120  # finished shards + the COPY in flight
    assert p["totals"]["records_in_flight"] == 120
    assert p["totals"]["pages_fetched"] == 1 + 4 + 120 // 50
    assert p["totals"]["pages_expected"] == 9
    assert p["totals"]["rejected"] == 2
    assert p["totals"]["percent"] == round(100 * 328 / 408, 1)
    running = [s for s in p["shards"] if s["state"] == "running"]
    assert running == [
        {
            "entity": "campaigns",
            "label": "campaigns: pages 5-8+ of 8",
            "state": "running",
            "pages": None,
            "records": 120,
            "records_live": True,
            "rejected": None,
            "failed_pages": None,
        }
    ]


def test_build_progress_before_planning_has_no_expectations() -> None:
    p = build_progress({"run_id": "r"}, [_ti("start_sync", "running")], [], [])
    assert p["tasks"] == {"total": 1, "done": 0, "failed": 0, "running": 1}
    assert p["totals"]["records_expected"] is None
    assert p["totals"]["percent"] is None
    assert p["shards"] == []
    assert [s["state"] for s in p["steps"]] == ["running", "pending", "pending", "pending", "pending", "pending"]


def test_page_drives_the_dag_the_dag_file_defines() -> None:
    """The page, the DAG file and the test harness name the DAG from the one constant, which is also
    the DAG file's name (the dag-processor's convention this repository keeps)."""
    import ast
    from pathlib import Path

    from include.offer_sync import constants
    from include.offer_sync.ui.data import DAG_ID as PAGE_DAG_ID

    dag_file = Path(__file__).resolve().parents[2] / "dags" / "trackier_offer_sync.py"
    tree = ast.parse(dag_file.read_text())
    from_constants = {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "include.offer_sync.constants"
        for alias in node.names
    }
    dag_ids = [
        ast.unparse(kw.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "dag_id" and ast.unparse(node.func) == "dag"
    ]
    assert "DAG_ID" in from_constants
    assert dag_ids == ["DAG_ID"]
    assert PAGE_DAG_ID == DAG_ID == constants.DAG_ID == dag_file.stem
