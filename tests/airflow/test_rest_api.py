"""Triggering a sync and reading its result through Airflow's REST API v2, as the README shows.

Both tests run against a real Airflow (``airflow_server``: api-server, scheduler, dag-processor on
free ports, its own metadata database) wired to a fake Trackier and a fresh offers database:

- ``test_rest_api_with_plain_http`` is the curl recipe step by step (``requests`` stands in for
  curl): token, unpause, trigger with a changed param, poll the run, read ``publish_result``'s
  return value, then check the rows in PostgreSQL;
- ``test_rest_api_with_official_client`` does the same with ``apache-airflow-client``, as a dry run.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest
import requests

from devtools.airflow_server import DAG_ID, LiveAirflow
from include.offer_sync.contracts import RESULT_KEYS as CONTRACT_KEYS

pytestmark = pytest.mark.airflow

#: the operators' contract: publish_result's XCom carries at least these keys
RESULT_KEYS = set(CONTRACT_KEYS)


def _catalogue_ids(live: LiveAirflow) -> tuple[set[str], set[str]]:
    cat = live.fake.catalogue
    return {str(i) for i in cat.campaign_ids()}, {str(i) for i in cat.advertiser_ids()}


def _db_ids(live: LiveAirflow) -> tuple[set[str], set[str]]:
    offers = {r[0] for r in live.sql("SELECT trackier_id FROM offers WHERE is_active")}
    brands = {r[0] for r in live.sql("SELECT trackier_id FROM brands")}
    return offers, brands


def _offers_state(live: LiveAirflow) -> tuple[Any, ...]:
    """(rows, last change) of ``offers``; the table exists once a first sync has started."""
    if live.sql("SELECT to_regclass('offers') IS NULL")[0][0]:
        return (0, None)
    return live.sql("SELECT count(*), max(updated_at) FROM offers")[0]


def test_rest_api_with_plain_http(airflow_server: LiveAirflow) -> None:
    base = airflow_server.url
    # 1. A token (SimpleAuthManager here; the FAB auth manager answers the same endpoint).
    resp = requests.post(
        f"{base}/auth/token", timeout=30, json={"username": "op", "password": airflow_server.passwords["op"]}
    )
    assert resp.status_code == 201, resp.text
    headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}

    # 2. Unpause (new DAGs start paused; a triggered run would wait in the queue).
    resp = requests.patch(f"{base}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["is_paused"] is False

    # 3. Trigger with changed params (logical_date must be present, null = "now").
    conf = {"page_size": 100, "max_error_rate": 0.1}
    resp = requests.post(
        f"{base}/api/v2/dags/{DAG_ID}/dagRuns", headers=headers, timeout=30, json={"logical_date": None, "conf": conf}
    )
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["dag_run_id"]
    assert resp.json()["conf"] == conf

    # 4. Poll the run's state (run ids contain ':' and '+': URL-encode them).
    run_url = f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"
    deadline = time.monotonic() + 300
    while (state := requests.get(run_url, headers=headers, timeout=30).json()["state"]) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run {run_id} still {state}"
        time.sleep(2)
    assert state == "success", airflow_server.log_tail("scheduler")

    # 5. The result: publish_result's return value (the sync_result contract).
    resp = requests.get(
        f"{run_url}/taskInstances/publish_result/xcomEntries/return_value",
        headers=headers,
        params={"deserialize": "true"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()["value"]
    assert result.keys() >= RESULT_KEYS
    assert result["run_id"] == run_id
    assert result["status"] == "completed"

    # 6. The rows landed, and the changed params reached the tasks.
    campaigns, advertisers = _catalogue_ids(airflow_server)
    assert _db_ids(airflow_server) == (campaigns, advertisers)
    assert result["campaigns_processed"] == len(campaigns)
    assert result["added"] + result["updated"] + result["unchanged"] == len(campaigns)
    row = airflow_server.sql(
        "SELECT status, params, added, updated, unchanged FROM sync_runs WHERE run_id = %s", (run_id,)
    )
    assert row, "the run wrote no sync_runs row"
    status, params, *counts = row[0]
    assert status == "completed"
    assert params["page_size"] == 100
    assert params["max_error_rate"] == 0.1
    assert counts == [result["added"], result["updated"], result["unchanged"]]
    # page_size=100 from conf, not the connection's 50: at most ceil(n/100) + 1 pages per entity.
    max_pages = -(-len(campaigns) // 100) + 1 + -(-len(advertisers) // 100) + 1
    assert result["metrics"]["pages_fetched"] <= max_pages


def test_rest_api_with_official_client(airflow_server: LiveAirflow) -> None:
    from airflow_client.client import ApiClient, Configuration
    from airflow_client.client.api.dag_api import DAGApi
    from airflow_client.client.api.dag_run_api import DagRunApi
    from airflow_client.client.api.x_com_api import XComApi
    from airflow_client.client.models.dag_patch_body import DAGPatchBody
    from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody

    # The client has no call for /auth/token: get the token with a plain POST.
    login = {"username": "op", "password": airflow_server.passwords["op"]}
    token = requests.post(f"{airflow_server.url}/auth/token", json=login, timeout=30).json()["access_token"]
    before = _offers_state(airflow_server)

    config = Configuration(host=airflow_server.url, access_token=token)  # no /api/v2 in host
    with ApiClient(config) as client:
        dag = DAGApi(client).patch_dag(DAG_ID, DAGPatchBody(is_paused=False))
        assert dag.is_paused is False
        run = DagRunApi(client).trigger_dag_run(DAG_ID, TriggerDAGRunPostBody(conf={"dry_run": True}))
        assert run.conf == {"dry_run": True}
        deadline = time.monotonic() + 300
        while (state := DagRunApi(client).get_dag_run(DAG_ID, run.dag_run_id).state.value) not in ("success", "failed"):
            assert time.monotonic() < deadline, f"run {run.dag_run_id} still {state}"
            time.sleep(2)
        assert state == "success", airflow_server.log_tail("scheduler")
        entry = XComApi(client).get_xcom_entry(
            DAG_ID, "publish_result", run.dag_run_id, "return_value", deserialize=True
        )
        result = entry.actual_instance.value  # the response is a wrapper around the entry

    assert result.keys() >= RESULT_KEYS
    assert result["run_id"] == run.dag_run_id
    assert result["dry_run"] is True
    assert result["status"] == "completed"
    campaigns, _ = _catalogue_ids(airflow_server)
    assert result["campaigns_processed"] == len(campaigns)
    # A dry run computes the counts and writes nothing to the catalogue.
    assert _offers_state(airflow_server) == before
    row = airflow_server.sql("SELECT dry_run, status FROM sync_runs WHERE run_id = %s", (run.dag_run_id,))
    assert row == [(True, "completed")]
