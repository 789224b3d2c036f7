"""The product owner's spec cases 1 and 5 and its fixture, through a real Airflow run.

Each test runs ``airflow dags test trackier_offer_sync`` against the fake Trackier (real HTTP) and
a fresh PostgreSQL database, with the connections given only as ``AIRFLOW_CONN_*`` variables.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from devtools.fake_trackier import Catalogue
from include.offer_sync.load.runs import RESULT_KEYS
from tests.helpers import SPEC_FIXTURE, latest_run

pytestmark = pytest.mark.airflow


def _assert_ran(run) -> None:
    assert run.succeeded, run.output[-4000:]


def test_case_1_nightly_sync_job_execution(airflow, fake_trackier, offers_db_url, sql) -> None:
    """Spec case 1: the sync inserts offers, reports exact counts and emits the completion event."""
    catalogue = Catalogue(advertisers=12, campaigns=230, seed=11)
    server = fake_trackier(catalogue)

    run = airflow.run(server, offers_db_url)
    _assert_ran(run)

    sync_result = latest_run(sql)
    # The spec's own assertions, verbatim:
    assert sync_result["status"] == "completed"
    assert sync_result["added"] > 0 or sync_result["updated"] > 0
    assert sync_result["campaigns_processed"] > 0
    # ... and exact numbers: every contract key present, every campaign and advertiser landed.
    assert set(RESULT_KEYS) <= set(sync_result)
    assert sync_result["added"] == 230
    assert sync_result["campaigns_processed"] == 230
    assert sync_result["advertisers_processed"] == 12
    assert sync_result["brands_added"] == 12
    assert (sync_result["updated"], sync_result["unchanged"], sync_result["deactivated"]) == (0, 0, 0)
    assert sync_result["rejected"] == 0
    assert sync_result["error_rate"] == 0.0

    # The database: every offer linked to its advertiser's brand through a real foreign key.
    assert sql("SELECT count(*) FROM brands") == [(12,)]
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(230,)]
    fk = sql("""SELECT confrelid::regclass::text FROM pg_constraint
                WHERE conrelid = 'offers'::regclass AND contype = 'f'""")
    assert fk == [("brands",)]
    expected = {str(c["id"]): (c["advertiserId"], c["payouts"][0]["payout"]) for c in catalogue.iter_campaigns()}
    stored = sql("""SELECT o.trackier_id, b.long_id, o.payout FROM offers o JOIN brands b ON b.id = o.brand_id""")
    assert {r[0]: (r[1], float(r[2])) for r in stored} == expected
    assert sql("SELECT count(*) FROM offer_audit WHERE action = 'inserted'") == [(230,)]

    # The completion event: the `offers` Asset event carries the same sync_result.
    events = airflow.asset_events("offers")
    assert events, "no Asset event on 'offers'"
    event = events[-1]
    assert event["run_id"] == sync_result["run_id"]
    for key in ("status", "added", "updated", "unchanged", "campaigns_processed", "rejected"):
        assert event[key] == sync_result[key]
    # ... and the final task returned it too.
    assert airflow.return_value(sync_result["run_id"], "publish_result")["added"] == 230


def test_case_5_duplicate_handling(airflow, fake_trackier, offers_db_url, sql) -> None:
    """Spec case 5: the same offers synced again are updated, never duplicated, with exact counts."""
    catalogue = Catalogue(advertisers=5, campaigns=80, seed=5)
    server = fake_trackier(catalogue)

    _assert_ran(airflow.run(server, offers_db_url))
    first = latest_run(sql)
    assert (first["added"], first["updated"], first["unchanged"]) == (80, 0, 0)
    snapshot = sql("SELECT trackier_id, content_hash, payout FROM offers ORDER BY trackier_id")

    # Same catalogue again: nothing added, nothing updated, no duplicate rows, same contents.
    _assert_ran(airflow.run(server, offers_db_url))
    second = latest_run(sql)
    assert (second["added"], second["updated"], second["unchanged"]) == (0, 0, 80)
    assert sql("SELECT count(*), count(DISTINCT trackier_id) FROM offers") == [(80, 80)]
    assert sql("SELECT trackier_id, content_hash, payout FROM offers ORDER BY trackier_id") == snapshot

    # One payout changes: exactly one update, with an audit row holding the old and new value.
    victim = catalogue.campaign_ids()[17]
    old = next(c for c in catalogue.iter_campaigns() if c["id"] == victim)["payouts"][0]["payout"]
    new_rules = next(c for c in catalogue.iter_campaigns() if c["id"] == victim)["payouts"]
    new_rules[0] = {**new_rules[0], "payout": round(old + 1.25, 2)}
    catalogue.set_campaign(victim, payouts=new_rules)
    _assert_ran(airflow.run(server, offers_db_url))
    third = latest_run(sql)
    assert (third["added"], third["updated"], third["unchanged"]) == (0, 1, 79)
    audit = sql("""SELECT changes FROM offer_audit WHERE action = 'updated' AND trackier_id = %s""", (str(victim),))
    assert len(audit) == 1
    assert Decimal(str(audit[0][0]["payout"]["old"])) == Decimal(str(old))
    assert Decimal(str(audit[0][0]["payout"]["new"])) == Decimal(str(round(old + 1.25, 2)))
    assert sql("SELECT payout FROM offers WHERE trackier_id = %s", (str(victim),)) == [
        (Decimal(str(round(old + 1.25, 2))).quantize(Decimal("0.000001")),)
    ]

    # A campaign disappears: deactivated, not deleted, and the audit says so.
    gone = catalogue.remove_campaigns(ids=[catalogue.campaign_ids()[3]])
    _assert_ran(airflow.run(server, offers_db_url))
    fourth = latest_run(sql)
    assert (fourth["added"], fourth["updated"], fourth["deactivated"], fourth["unchanged"]) == (0, 0, 1, 79)
    assert sql("SELECT is_active FROM offers WHERE trackier_id = %s", (str(gone[0]),)) == [(False,)]
    assert sql("SELECT count(*) FROM offers") == [(80,)]
    assert sql("SELECT action FROM offer_audit WHERE trackier_id = %s ORDER BY id", (str(gone[0]),)) == [
        ("inserted",),
        ("deactivated",),
    ]


def test_spec_fixture_syncs_one_brand_and_one_offer(airflow, fake_trackier, offers_db_url, sql) -> None:
    """The spec's fixture (adv_001 / camp_123, simplified shape) gives one brand and one 5.0 USD offer."""
    server = fake_trackier(Catalogue.from_fixture(SPEC_FIXTURE))
    _assert_ran(airflow.run(server, offers_db_url))

    result = latest_run(sql)
    assert result["status"] == "completed"
    assert (result["added"], result["brands_added"], result["campaigns_processed"]) == (1, 1, 1)
    assert sql("SELECT trackier_id, name, category FROM brands") == [("adv_001", "Test Brand", "E-commerce")]
    rows = sql("""SELECT o.trackier_id, o.title, o.payout, o.payout_currency, o.currency, b.trackier_id
                  FROM offers o JOIN brands b ON b.id = o.brand_id""")
    assert rows == [("camp_123", "Test Campaign", Decimal("5.000000"), "USD", "USD", "adv_001")]
