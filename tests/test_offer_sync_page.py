"""The Offer Sync page's server side: auth on every route, triggering as the user, error states.

The HTTP tests talk to the plugin inside the real api-server of ``airflow_server`` (Airflow does
not protect plugin routes by itself, so each must be shown to refuse the anonymous, the bad token
and the viewer). ``build_progress`` is pure and is tested on hand-made rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
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
PROBE_RUN = "manual__ui_routes_probe"
#: The read-only JSON/CSV routes of the History, Run detail and Offer lookup views (valid queries).
READ_ROUTES = (
    ("/offer-sync/api/history", {"limit": 30}),
    ("/offer-sync/api/run", {"run_id": PROBE_RUN}),
    ("/offer-sync/api/run/rejects", {"run_id": PROBE_RUN}),
    ("/offer-sync/api/run/rejects.csv", {"run_id": PROBE_RUN}),
    ("/offer-sync/api/run/changes", {"run_id": PROBE_RUN, "action": "updated"}),
    ("/offer-sync/api/offers", {"q": "probe"}),
    ("/offer-sync/api/offer", {"trackier_id": "probe"}),
)
STATIC = ("page.js", "page.css", "theme.js", "common.js", "chart.js", "views.js")


# --- auth --------------------------------------------------------------------------------------


@pytest.mark.airflow
def test_every_route_refuses_anonymous_and_bad_tokens(airflow_server: LiveAirflow) -> None:
    af = airflow_server
    page = requests.get(af.url + PAGE, allow_redirects=False, timeout=30)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/auth/login?next=")  # back to the page after login
    routes = [(STATUS, {}), *READ_ROUTES, *((f"/offer-sync/static/{name}", {}) for name in STATIC)]
    for path, params in routes:
        assert requests.get(af.url + path, params=params, timeout=30).status_code == 401, path
        bad = requests.get(af.url + path, params=params, headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
        assert bad.status_code == 403, path
        forged = requests.get(af.url + path, params=params, cookies={"_token": "forged"}, timeout=30)
        assert forged.status_code in (401, 403), path
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


@pytest.fixture
def probe_run(airflow_server: LiveAirflow) -> Iterator[str]:
    """A finished run with rejects and one offer it deactivated, in the session's offers database.

    Started in 2020, so it is never "the last sync" of other tests; the offer is inactive, so no
    later sync counts it; everything is deleted afterwards.
    """
    from include.offer_sync.schema import ensure_schema

    af = airflow_server
    with psycopg.connect(af.offers_db_url, autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute(
            "INSERT INTO sync_runs (run_id, dag_id, status, started_at, finished_at, duration_s, added, updated, "
            "unchanged, deactivated, reactivated, rejected, error_rate, complete_sweep, metrics) VALUES "
            "(%s, 'trackier_offer_sync', 'completed_with_errors', '2020-01-01T02:00Z', '2020-01-01T02:01Z', 60, "
            "1, 0, 0, 1, 0, 3, 0.5, true, '{\"phases_s\": {\"merge\": 1.5}}')", (PROBE_RUN,))
        conn.cursor().executemany(
            "INSERT INTO sync_rejects (run_id, entity, record_key, reason, raw) VALUES (%s, 'campaigns', %s, %s, %s)",
            [(PROBE_RUN, "=2+3", "currency: bad (got '<img src=x onerror=alert(1)>')", '{"id": "=2+3"}'),
             (PROBE_RUN, "77", "title: blank (got '')", "{}"), (PROBE_RUN, "78", "title: blank (got ' ')", "{}")])
        brand = conn.execute("INSERT INTO brands (trackier_id, name, content_hash) VALUES ('probe-brand', "
                             "'Probe Brand', 'h') RETURNING id").fetchone()[0]  # type: ignore[index]
        offer = conn.execute(
            "INSERT INTO offers (trackier_id, brand_id, title, currency, content_hash, is_active, deactivated_at) "
            "VALUES ('probe-offer', %s, 'Probe 100%% offer', 'USD', 'h', false, now()) RETURNING id", (brand,)
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO offer_audit (run_id, offer_id, trackier_id, action, changes) VALUES "
                     "(%s, %s, 'probe-offer', 'inserted', NULL), (%s, %s, 'probe-offer', 'deactivated', "
                     "'{\"is_active\": {\"old\": true, \"new\": false}}')", (PROBE_RUN, offer, PROBE_RUN, offer))
    try:
        yield PROBE_RUN
    finally:
        with psycopg.connect(af.offers_db_url, autocommit=True) as conn:
            conn.execute("DELETE FROM offer_audit WHERE run_id = %s", (PROBE_RUN,))
            conn.execute("DELETE FROM offers WHERE trackier_id = 'probe-offer'")
            conn.execute("DELETE FROM brands WHERE trackier_id = 'probe-brand'")
            conn.execute("DELETE FROM sync_rejects WHERE run_id = %s", (PROBE_RUN,))
            conn.execute("DELETE FROM sync_runs WHERE run_id = %s", (PROBE_RUN,))


@pytest.mark.airflow
def test_viewer_reads_history_run_offers_and_the_rejects_csv(airflow_server: LiveAirflow, probe_run: str) -> None:
    af = airflow_server
    history = af.api("GET", "/offer-sync/api/history", user="viewer", params={"limit": 90})
    assert history.status_code == 200
    assert probe_run in [r["run_id"] for r in history.json()["runs"]]
    assert set(history.json()["thresholds"]) == {"max_duration_s", "max_error_rate", "error"}

    run = af.api("GET", "/offer-sync/api/run", user="viewer", params={"run_id": probe_run})
    assert run.status_code == 200
    assert {k: run.json()["run"][k] for k in ("added", "deactivated", "rejected")} == {"added": 1, "deactivated": 1,
                                                                                      "rejected": 3}  # fmt: skip
    assert run.json()["phases"] == [{"key": "merge", "title": "Merge", "seconds": 1.5}]
    assert run.json()["airflow"] is None  # not a run Airflow knows
    reasons = {g["reason"]: g["count"] for g in run.json()["reject_reasons"]}
    assert reasons == {"title: blank": 2, "currency: bad": 1}

    page = af.api("GET", "/offer-sync/api/run/rejects", user="viewer", params={"run_id": probe_run, "limit": 2})
    assert page.status_code == 200
    assert len(page.json()["items"]) == 2
    rest = af.api("GET", "/offer-sync/api/run/rejects", user="viewer",
                  params={"run_id": probe_run, "limit": 2, "after": page.json()["next"]})  # fmt: skip
    assert [r["record_key"] for r in page.json()["items"] + rest.json()["items"]] == ["=2+3", "77", "78"]
    assert rest.json()["next"] is None

    download = af.api("GET", "/offer-sync/api/run/rejects.csv", user="viewer", params={"run_id": probe_run})
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"] == 'attachment; filename="rejects-manual__ui_routes_probe.csv"'
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [r["record_key"] for r in rows] == ["'=2+3", "77", "78"]
    assert rows[0]["reason"] == "currency: bad (got '<img src=x onerror=alert(1)>')"
    only_blank = af.api("GET", "/offer-sync/api/run/rejects.csv", user="viewer",
                        params={"run_id": probe_run, "reason": "title: blank"})  # fmt: skip
    assert len(list(csv.DictReader(io.StringIO(only_blank.text)))) == 2

    changes = af.api("GET", "/offer-sync/api/run/changes", user="viewer",
                     params={"run_id": probe_run, "action": "deactivated"})  # fmt: skip
    assert [c["trackier_id"] for c in changes.json()["items"]] == ["probe-offer"]
    found = af.api("GET", "/offer-sync/api/offers", user="viewer", params={"q": "100%"})
    assert [o["trackier_id"] for o in found.json()["offers"]] == ["probe-offer"]
    offer = af.api("GET", "/offer-sync/api/offer", user="viewer", params={"trackier_id": "probe-offer"}).json()
    assert offer["offer"]["deactivated_by"] == probe_run
    assert [a["action"] for a in offer["audit"]["items"]] == ["deactivated", "inserted"]

    # Clear errors for what does not exist or is not allowed.
    assert af.api("GET", "/offer-sync/api/run", user="viewer", params={"run_id": "nope"}).status_code == 404
    assert af.api("GET", "/offer-sync/api/run/rejects.csv", user="viewer", params={"run_id": "nope"}).status_code == 404
    assert af.api("GET", "/offer-sync/api/offer", user="viewer", params={"trackier_id": "nope"}).status_code == 404
    bad_action = af.api("GET", "/offer-sync/api/run/changes", user="viewer",
                        params={"run_id": probe_run, "action": "x"})  # fmt: skip
    assert bad_action.status_code == 422
    assert af.api("GET", "/offer-sync/api/history", user="viewer", params={"limit": 100000}).status_code == 422
    assert af.api("GET", "/offer-sync/api/offers", user="viewer", params={"q": ""}).status_code == 422


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
        for path, params in READ_ROUTES:  # the other views say why, with the same safe message
            down = af.api("GET", path, user="viewer", params=params)
            assert down.status_code == 503, path
            assert name in down.json()["detail"], path
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
