"""The Offer Sync page's server side: auth on every route, triggering as the user, error states.

The HTTP tests talk to the plugin inside the real api-server of ``airflow_server`` (Airflow does
not protect plugin routes by itself, so each must be shown to refuse the anonymous, the bad token
and the viewer). ``build_progress`` is pure and is tested on hand-made rows.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import requests

from include.offer_sync.settings import DatabaseSettings
from include.offer_sync.staging import StagingTables
from include.offer_sync.ui.data import OffersDbError, build_progress, read_offers_db
from tests.airflow_server import DAG_ID, LiveAirflow

PAGE = "/offer-sync/"
STATUS = "/offer-sync/api/status"
SYNC = "/offer-sync/api/sync"


# --- auth --------------------------------------------------------------------------------------


@pytest.mark.airflow
def test_every_route_refuses_anonymous_and_bad_tokens(airflow_server: LiveAirflow) -> None:
    af = airflow_server
    page = requests.get(af.url + PAGE, allow_redirects=False, timeout=30)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/auth/login?next=")  # back to the page after login
    for path in (STATUS, "/offer-sync/static/page.js", "/offer-sync/static/page.css"):
        assert requests.get(af.url + path, timeout=30).status_code == 401, path
        bad = requests.get(af.url + path, headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
        assert bad.status_code == 403, path
    assert requests.post(af.url + SYNC, json={}, timeout=30).status_code == 401
    forged = requests.get(af.url + PAGE, cookies={"_token": "forged"}, allow_redirects=False, timeout=30)
    assert forged.status_code == 303


@pytest.mark.airflow
def test_viewer_sees_the_page_but_cannot_trigger(airflow_server: LiveAirflow) -> None:
    af = airflow_server
    status = af.api("GET", STATUS, user="viewer")
    assert status.status_code == 200
    assert status.json()["user"] == {"name": "viewer", "can_trigger": False}
    html = af.api("GET", PAGE, user="viewer")
    assert html.status_code == 200
    assert 'data-can-trigger="false"' in html.text
    runs_before = len(af.dag_runs())
    refused = af.api("POST", SYNC, user="viewer", json={"dry_run": True})
    assert refused.status_code == 403
    assert len(af.dag_runs()) == runs_before


@pytest.mark.airflow
def test_sync_button_api_triggers_as_the_user_once(airflow_server: LiveAirflow) -> None:
    af = airflow_server
    af.unpause_and_settle()
    assert af.api("POST", SYNC, user="op", data='{"dry_run": true}').status_code == 415  # not JSON: refused
    assert af.api("POST", SYNC, user="op", json={"dry_run": True, "page_size": 1}).status_code == 422

    created = af.api("POST", SYNC, user="op", json={"dry_run": True})
    assert created.status_code == 201, created.text
    run_id = created.json()["run_id"]
    again = af.api("POST", SYNC, user="op", json={"dry_run": True})  # still queued or running
    assert again.status_code == 409
    assert run_id in again.json()["detail"]

    run = af.dag_run(run_id)
    assert run["triggering_user_name"] == "op"
    assert run["conf"] == {"dry_run": True}
    status = af.api("GET", STATUS, user="op").json()
    assert status["active"]["run_id"] == run_id
    assert status["active"]["triggered_by"] == "op"
    assert af.wait_for_run(run_id)["state"] == "success", af.log_tail("scheduler")
    assert af.sql("SELECT dry_run FROM sync_runs WHERE run_id = %s", (run_id,)) == [(True,)]
    latest = af.api("GET", STATUS, user="op").json()
    assert latest["active"] is None
    assert latest["runs"][0]["run_id"] == run_id
    assert latest["runs"][0]["triggered_by"] == "op"


@pytest.mark.airflow
def test_offers_db_down_is_reported_not_fatal(airflow_server: LiveAirflow, pg_admin_url: str) -> None:
    af = airflow_server
    af.unpause_and_settle()  # nothing may be connected to the database we take away
    name = af.offers_db_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{name}_away"')
    try:
        resp = af.api("GET", STATUS, user="viewer")
        assert resp.status_code == 200
        data = resp.json()
        assert data["offers_db"]["ok"] is False
        assert name in data["offers_db"]["error"]
        assert data["runs"] == []
        assert data["dag_found"] is True  # Airflow's side still answers
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}_away" RENAME TO "{name}"')
    assert af.api("GET", STATUS, user="viewer").json()["offers_db"]["ok"] is True


def test_offers_db_error_never_shows_the_password() -> None:
    settings = DatabaseSettings(conninfo="postgresql://sync:s3cret-pw@127.0.0.1:9/offers")
    with pytest.raises(OffersDbError) as caught:
        read_offers_db(settings)
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1:9/offers" in str(caught.value)


# --- progress ----------------------------------------------------------------------------------


def _ti(task_id: str, state: str | None, map_index: int = -1, label: str | None = None) -> dict[str, Any]:
    return {"task_id": task_id, "map_index": map_index, "state": state, "label": label}


def test_build_progress_counts_tasks_pages_and_live_copy_rows() -> None:
    run = {"run_id": "manual__2026-01-01T00:00:00+00:00"}
    tables = StagingTables.for_run(run["run_id"])
    shard = {"entity": "campaigns", "limit": 50, "expected_total": 400, "style": "page"}
    plans = [
        {"task_id": "plan_advertisers", "map_index": -1,
         "value": [{"entity": "advertisers", "limit": 50, "expected_total": 8, "planned_last": 1, "label": "adv"}]},
        {"task_id": "plan_campaigns", "map_index": -1,
         "value": [{**shard, "index": 0, "planned_last": 4, "label": "campaigns: pages 1-4 of 8"},
                   {**shard, "index": 1, "planned_last": 8, "label": "campaigns: pages 5-8+ of 8"}]},
        {"task_id": "extract_advertisers", "map_index": 0,
         "value": {"pages": 1, "records": 8, "rejected": 0, "label": "adv"}},
        {"task_id": "extract_campaigns", "map_index": 0,
         "value": {"pages": 4, "records": 200, "rejected": 2, "label": "campaigns: pages 1-4 of 8"}},
    ]  # fmt: skip
    tis = [
        _ti("start_sync", "success"), _ti("plan_advertisers", "success"), _ti("plan_campaigns", "success"),
        _ti("extract_advertisers", "success", 0, "adv"), _ti("extract_campaigns", "success", 0),
        _ti("extract_campaigns", "running", 1), _ti("check_sweep", None), _ti("merge_catalogue", None),
        _ti("publish_result", None), _ti("extract_campaigns", "removed", 2),
    ]  # fmt: skip
    copies = [{"table_name": tables.campaigns, "tuples_processed": 120},
              {"table_name": "offer_sync_stg_someoneelse_cmp", "tuples_processed": 999}]  # fmt: skip

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
    assert running == [{"entity": "campaigns", "label": "campaigns: pages 5-8+ of 8", "state": "running",
                        "pages": None, "records": 120, "records_live": True, "rejected": None,
                        "failed_pages": None}]  # fmt: skip


def test_build_progress_before_planning_has_no_expectations() -> None:
    p = build_progress({"run_id": "r"}, [_ti("start_sync", "running")], [], [])
    assert p["tasks"] == {"total": 1, "done": 0, "failed": 0, "running": 1}
    assert p["totals"]["records_expected"] is None
    assert p["totals"]["percent"] is None
    assert p["shards"] == []
    assert [s["state"] for s in p["steps"]] == ["running", "pending", "pending", "pending", "pending", "pending"]


def test_page_drives_the_dag_the_dag_file_defines() -> None:
    from pathlib import Path

    from include.offer_sync.ui.data import DAG_ID as PAGE_DAG_ID

    dag_file = Path(__file__).resolve().parents[1] / "dags" / "trackier_offer_sync.py"
    assert f'DAG_ID = "{PAGE_DAG_ID}"' in dag_file.read_text()
    assert PAGE_DAG_ID == DAG_ID
