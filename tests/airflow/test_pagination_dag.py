"""Issue 12 through Airflow: ``auto`` falls back to cursors and says so; a redirect to another host
fails the run at once, without retries, and the key goes nowhere."""

from __future__ import annotations

import pytest

from devtools.fake_trackier import Catalogue
from tests.helpers import TEST_API_KEY, json_body


@pytest.mark.airflow
def test_dag_auto_falls_back_to_cursors_on_a_pagetoken_only_api_says_so_and_never_deactivates_on_an_early_stop(
    airflow, fake_trackier, offers_db_url, sql
) -> None:
    from tests.helpers import latest_run

    catalogue = Catalogue(6, 330, seed=3)
    server = fake_trackier(catalogue, pagination="cursor", report_total=True)

    run = airflow.run(server, offers_db_url)

    assert run.succeeded, run.output[-3000:]
    result = latest_run(sql)
    assert (result["status"], result["added"], result["complete_sweep"]) == ("completed", 330, True)
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(330,)]
    verdict = result["pagination"]["campaigns"]
    assert (verdict["requested"], verdict["style"]) == ("auto", "cursor")
    assert "the API ignores page=; following nextPageToken instead" in verdict["fallback"]
    assert airflow.return_value(result["run_id"], "publish_result")["pagination"] == result["pagination"]
    plan = airflow.return_value(result["run_id"], "plan_campaigns")
    assert [(s["style"], s["expected_total"]) for s in plan] == [("cursor", 330)]
    assert "campaigns: pagination fell back to cursor: page=2 answered the same 50 records" in run.output
    # 330 campaigns: page 1 and page=2 to probe, then 7 cursor pages; 6 advertisers: one page, twice.
    assert server.stats()["list_requests"] == 2 + 7 + 2

    # The next night the cursor stops after a full page 4 while the total still says 325.
    catalogue.remove_campaigns(ids=catalogue.campaign_ids()[:5])
    server.configure(cursor_stops_after=4)
    run = airflow.run(server, offers_db_url)

    assert run.succeeded, run.output[-3000:]
    result = latest_run(sql)
    assert (result["status"], result["complete_sweep"], result["deactivated"]) == ("completed_with_errors", False, 0)
    assert "campaigns: the API reported 325 records, the sweep received 200" in result["problems"]
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(330,)]


@pytest.mark.airflow
def test_dag_redirect_to_another_host_fails_at_once_without_retries_and_sends_the_key_nowhere(
    airflow, fake_trackier, plain_api, offers_db_url, sql
) -> None:
    from tests.airflow.test_retries import FAST_RETRIES, _latest_run_id, _task_states

    other = plain_api(lambda path, query: (200, {}, json_body({"success": True, "campaigns": [], "advertisers": []})))
    server = fake_trackier(Catalogue(2, 20, seed=1), redirect_to=other.url)

    run = airflow.run(server, offers_db_url, env=FAST_RETRIES)

    assert not run.succeeded
    states = _task_states(airflow, _latest_run_id(airflow))
    # Both probes failed on their first try although two retries were allowed: the retry policy.
    assert states["plan_advertisers"] == ("failed", 1), states
    assert states["plan_campaigns"] == ("failed", 1), states
    assert server.stats()["total"] == 2, "one request per probe, none repeated"
    assert other.requests == []
    assert f"redirected GET /v2/campaigns to another host, {other.url}" in run.output
    assert "put it in the host of the trackier_api connection" in run.output
    assert TEST_API_KEY not in run.output
