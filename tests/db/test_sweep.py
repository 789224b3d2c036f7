"""``load.sweep.check_sweep`` directly, on staging filled by the real extract from a fake Trackier
serving hand-written records: duplicates, orphans, a total that does not add up, the error-rate
breaker at and over its limit."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.fake_trackier import Catalogue
from devtools.inline import DEFAULT_PARAMS
from include.offer_sync import tasks
from include.offer_sync.db import connect
from include.offer_sync.errors import SweepRejectedError
from include.offer_sync.load import sweep
from include.offer_sync.load.staging import StagingTables
from tests.helpers import trackier_settings


def _campaign(cid: str, advertiser: str, name: str) -> dict[str, Any]:
    return {"id": cid, "advertiser_id": advertiser, "name": name, "payout": {"amount": 5.0, "currency": "USD"}}


def _staged(fake_trackier, offers_db, campaigns: list[dict[str, Any]], run_id: str = "run-1"):
    fixture = {"advertisers": [{"id": "adv_1", "name": "Brand One"}], "campaigns": campaigns}
    server = fake_trackier(Catalogue.from_fixture(fixture))
    api = trackier_settings(server, page_size=50)
    run = tasks.start_sync(offers_db, run_id=run_id, dag_id="d", params=dict(DEFAULT_PARAMS))
    shards = [*tasks.plan_entity(api, "advertisers"), *tasks.plan_entity(api, "campaigns")]
    return run, [tasks.extract_shard(offers_db, api, run, shard) for shard in shards]


def _check(offers_db, run_id: str, summaries, *, totals=None, max_error_rate: float = 1.0) -> dict[str, Any]:
    totals = totals if totals is not None else {s["entity"]: s["expected_total"] for s in summaries}
    with connect(offers_db, autocommit=True) as conn:
        return sweep.check_sweep(conn, run_id, summaries, expected_totals=totals, max_error_rate=max_error_rate)


def test_the_same_id_twice_is_one_offer_and_one_duplicate_both_received(fake_trackier, offers_db) -> None:
    run, summaries = _staged(
        fake_trackier,
        offers_db,
        [
            _campaign("c1", "adv_1", "First"),
            _campaign("c2", "adv_1", "Other"),
            _campaign("c1", "adv_1", "Again"),
        ],
    )
    swept = _check(offers_db, run["run_id"], summaries)
    assert (swept["campaigns_processed"], swept["campaigns_valid"], swept["duplicates"]) == (3, 2, 1)
    assert (swept["rejected"], swept["complete_sweep"]) == (0, True)


def test_a_campaign_of_an_unknown_advertiser_is_rejected_with_its_reason(fake_trackier, offers_db, sql) -> None:
    run, summaries = _staged(
        fake_trackier,
        offers_db,
        [
            _campaign("c1", "adv_1", "Kept"),
            _campaign("c2", "adv_nowhere", "Orphan"),
        ],
    )
    swept = _check(offers_db, run["run_id"], summaries)
    assert (swept["rejected"], swept["campaigns_valid"]) == (1, 1)
    assert swept["error_rate"] == pytest.approx(1 / 3, abs=1e-6)  # 1 of 3 records received
    [(entity, reason)] = sql("SELECT entity, reason FROM sync_rejects WHERE run_id = %s", (run["run_id"],))
    assert entity == "campaigns"
    assert "adv_nowhere" in reason


def test_a_total_that_does_not_add_up_makes_the_sweep_incomplete_and_says_both_numbers(
    fake_trackier, offers_db
) -> None:
    run, summaries = _staged(fake_trackier, offers_db, [_campaign("c1", "adv_1", "Only")])
    swept = _check(offers_db, run["run_id"], summaries, totals={"advertisers": 1, "campaigns": 7})
    assert swept["complete_sweep"] is False
    assert swept["anomalies"] >= 1
    assert "campaigns: the API reported 7 records, the sweep received 1" in swept["problems"]


def test_the_breaker_passes_at_its_limit_and_trips_above_it_leaving_the_live_tables_alone(
    fake_trackier, offers_db, sql
) -> None:
    campaigns = [_campaign("c1", "adv_1", "Kept"), _campaign("c2", "adv_1", "Kept too"), _campaign("c3", "nope", "X")]
    run, summaries = _staged(fake_trackier, offers_db, campaigns)
    assert _check(offers_db, run["run_id"], summaries, max_error_rate=0.25)["error_rate"] == 0.25  # 1 of 4

    run, summaries = _staged(fake_trackier, offers_db, campaigns, run_id="run-2")
    with pytest.raises(SweepRejectedError, match="error-rate circuit breaker"):
        _check(offers_db, run["run_id"], summaries, max_error_rate=0.2)
    [(status, error)] = sql("SELECT status, error FROM sync_runs WHERE run_id = 'run-2'")
    assert status == "failed"
    assert "over the limit of 20.00%" in error
    assert sql("SELECT count(*) FROM sync_rejects WHERE run_id = 'run-2'") == [(1,)]  # committed all the same
    assert sql("SELECT count(*) FROM offers") == [(0,)]
    assert sql("SELECT count(*) FROM brands") == [(0,)]


def test_the_check_leaves_statistics_on_the_aliases_and_the_carried_flag_for_the_merge(
    fake_trackier, offers_db, sql
) -> None:
    # Without them the planner guessed 200 distinct aliases and half of the campaigns carried, and
    # hashed the whole wide staging table in the orphan check and the merge (sweep_build_aliases.sql).
    run, summaries = _staged(fake_trackier, offers_db, [_campaign("c1", "adv_1", "Kept")])
    names = StagingTables.for_run(run["run_id"]).names()
    _check(offers_db, run["run_id"], summaries)
    analyzed = sql(
        "SELECT tablename, attname FROM pg_stats WHERE tablename = ANY(%s) ORDER BY 1, 2",
        ([names["aliases"], names["campaigns"]],),
    )
    assert (names["aliases"], "alias") in analyzed
    assert (names["aliases"], "trackier_id") in analyzed
    assert (names["campaigns"], "carried") in analyzed
