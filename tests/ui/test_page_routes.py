"""The Offer Sync page's server side: auth on every route, triggering as the user, error states.

The HTTP tests talk to the plugin inside the real api-server of ``airflow_server`` (Airflow does
not protect plugin routes by itself, so each must be shown to refuse the anonymous, the bad token
and the viewer). ``build_progress`` is pure and is tested on hand-made rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import psycopg
import pytest
import requests

from devtools.airflow_server import LiveAirflow

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
    from include.offer_sync.load.schema import ensure_schema

    af = airflow_server
    with psycopg.connect(af.offers_db_url, autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute(
            "INSERT INTO sync_runs (run_id, dag_id, status, started_at, finished_at, duration_s, added, updated, "
            "unchanged, deactivated, reactivated, rejected, error_rate, complete_sweep, metrics) VALUES "
            "(%s, 'trackier_offer_sync', 'completed_with_errors', '2020-01-01T02:00Z', '2020-01-01T02:01Z', 60, "
            '1, 0, 0, 1, 0, 3, 0.5, true, \'{"phases_s": {"merge": 1.5}}\')',
            (PROBE_RUN,),
        )
        conn.cursor().executemany(
            "INSERT INTO sync_rejects (run_id, entity, record_key, reason, raw) VALUES (%s, 'campaigns', %s, %s, %s)",
            [
                (PROBE_RUN, "=2+3", "currency: bad (got '<img src=x onerror=alert(1)>')", '{"id": "=2+3"}'),
                (PROBE_RUN, "77", "title: blank (got '')", "{}"),
                (PROBE_RUN, "78", "title: blank (got ' ')", "{}"),
            ],
        )
        brand = conn.execute(
            "INSERT INTO brands (trackier_id, name, content_hash) VALUES ('probe-brand', "
            "'Probe Brand', 'h') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        offer = conn.execute(
            "INSERT INTO offers (trackier_id, brand_id, title, currency, content_hash, is_active, deactivated_at) "
            "VALUES ('probe-offer', %s, 'Probe 100%% offer', 'USD', 'h', false, now()) RETURNING id",
            (brand,),
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO offer_audit (run_id, offer_id, trackier_id, action, changes) VALUES "
            "(%s, %s, 'probe-offer', 'inserted', NULL), (%s, %s, 'probe-offer', 'deactivated', "
            '\'{"is_active": {"old": true, "new": false}}\')',
            (PROBE_RUN, offer, PROBE_RUN, offer),
        )
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
    assert {k: run.json()["run"][k] for k in ("added", "deactivated", "rejected")} == {
        "added": 1,
        "deactivated": 1,
        "rejected": 3,
    }
    assert run.json()["phases"] == [{"key": "merge", "title": "Merge", "seconds": 1.5}]
    assert run.json()["airflow"] is None  # not a run Airflow knows
    reasons = {g["reason"]: g["count"] for g in run.json()["reject_reasons"]}
    assert reasons == {"title: blank": 2, "currency: bad": 1}

    page = af.api("GET", "/offer-sync/api/run/rejects", user="viewer", params={"run_id": probe_run, "limit": 2})
    assert page.status_code == 200
    assert len(page.json()["items"]) == 2
    rest = af.api(
        "GET",
        "/offer-sync/api/run/rejects",
        user="viewer",
        params={"run_id": probe_run, "limit": 2, "after": page.json()["next"]},
    )
    assert [r["record_key"] for r in page.json()["items"] + rest.json()["items"]] == ["=2+3", "77", "78"]
    assert rest.json()["next"] is None

    download = af.api("GET", "/offer-sync/api/run/rejects.csv", user="viewer", params={"run_id": probe_run})
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"] == 'attachment; filename="rejects-manual__ui_routes_probe.csv"'
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [r["record_key"] for r in rows] == ["'=2+3", "77", "78"]
    assert rows[0]["reason"] == "currency: bad (got '<img src=x onerror=alert(1)>')"
    only_blank = af.api(
        "GET", "/offer-sync/api/run/rejects.csv", user="viewer", params={"run_id": probe_run, "reason": "title: blank"}
    )
    assert len(list(csv.DictReader(io.StringIO(only_blank.text)))) == 2

    changes = af.api(
        "GET", "/offer-sync/api/run/changes", user="viewer", params={"run_id": probe_run, "action": "deactivated"}
    )
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
    bad_action = af.api(
        "GET", "/offer-sync/api/run/changes", user="viewer", params={"run_id": probe_run, "action": "x"}
    )
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
