"""The merge SQL: exact counts, audit rows with old and new values, deactivation and reactivation.

These run the task bodies in-process (``devtools.inline``) against the fake Trackier and
a fresh PostgreSQL, so each sync takes a fraction of a second; the same path through Airflow is
covered by ``tests/airflow/test_spec_cases.py``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from devtools.fake_trackier import Catalogue
from devtools.inline import run_sync, stage_sync
from include.offer_sync.errors import SweepRejectedError
from include.offer_sync.trackier.models import CAMPAIGN_COLUMNS
from tests.helpers import trackier_settings

COUNTS = ("added", "updated", "unchanged", "deactivated", "reactivated", "rejected")


def _counts(result: dict) -> tuple:
    return tuple(result[k] for k in COUNTS)


@pytest.fixture
def world(fake_trackier, offers_db):
    catalogue = Catalogue(6, 90, seed=21)
    server = fake_trackier(catalogue)
    return catalogue, trackier_settings(server, page_size=20, pages_per_shard=2), offers_db


def test_first_sync_inserts_everything_with_an_audit_row_each(world, sql) -> None:
    _, api, db = world
    result = run_sync(db, api, "run-1")
    assert _counts(result) == (90, 0, 0, 0, 0, 0)
    assert (result["brands_added"], result["brands_updated"]) == (6, 0)
    assert sql("SELECT action, count(*) FROM offer_audit GROUP BY action") == [("inserted", 90)]
    assert sql("SELECT count(*) FROM offers o LEFT JOIN brands b ON b.id = o.brand_id WHERE b.id IS NULL") == [(0,)]


def test_resync_of_the_same_catalogue_writes_nothing(world, sql) -> None:
    _, api, db = world
    run_sync(db, api, "run-1")
    before = sql("SELECT id, xmin::text, updated_at FROM offers ORDER BY id")
    result = run_sync(db, api, "run-2")
    assert _counts(result) == (0, 0, 90, 0, 0, 0)
    assert (result["brands_added"], result["brands_updated"]) == (0, 0)
    # Not a single row was rewritten (same xmin): unchanged offers cost no writes at all.
    assert sql("SELECT id, xmin::text, updated_at FROM offers ORDER BY id") == before
    assert sql("SELECT count(*) FROM offer_audit WHERE run_id = 'run-2'") == [(0,)]


def test_changes_are_counted_exactly_and_audited_with_old_and_new_values(world, sql) -> None:
    catalogue, api, db = world
    run_sync(db, api, "run-1")
    ids = catalogue.campaign_ids()
    catalogue.set_campaign(ids[0], title="Renamed <b>offer</b> 'quoted'")
    record = catalogue.get_campaign(ids[1])
    old_payout = record["payouts"][0]["payout"]
    catalogue.set_campaign(ids[1], payouts=[{**record["payouts"][0], "payout": old_payout + 2}])
    result = run_sync(db, api, "run-2")
    assert _counts(result) == (0, 2, 88, 0, 0, 0)
    audit = dict(sql("SELECT trackier_id, changes FROM offer_audit WHERE run_id = 'run-2' AND action = 'updated'"))
    assert set(audit) == {str(ids[0]), str(ids[1])}
    assert audit[str(ids[0])]["title"]["new"] == "Renamed <b>offer</b> 'quoted'"
    assert set(audit[str(ids[0])]) == {"title"}
    assert set(audit[str(ids[1])]) == {"payout", "payouts"}
    assert Decimal(str(audit[str(ids[1])]["payout"]["old"])) == Decimal(str(old_payout))
    assert Decimal(str(audit[str(ids[1])]["payout"]["new"])) == Decimal(str(old_payout + 2))


def test_removed_offers_are_deactivated_and_come_back_reactivated(world, sql) -> None:
    catalogue, api, db = world
    run_sync(db, api, "run-1")
    removed = catalogue.remove_campaigns(count=3)
    result = run_sync(db, api, "run-2")
    assert _counts(result) == (0, 0, 87, 3, 0, 0)
    assert sql("SELECT count(*) FROM offers WHERE NOT is_active AND deactivated_at IS NOT NULL") == [(3,)]
    assert sql("SELECT count(*) FROM offers") == [(90,)], "deactivated, never deleted"
    catalogue.restore()
    result = run_sync(db, api, "run-3")
    assert _counts(result) == (0, 0, 87, 0, 3, 0)
    rows = sql("SELECT trackier_id, action FROM offer_audit WHERE run_id IN ('run-2', 'run-3') ORDER BY id")
    expected = [(str(i), "deactivated") for i in removed] + [(str(i), "reactivated") for i in removed]
    assert sorted(rows) == sorted(expected)
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(90,)]


def test_new_campaigns_are_added(world, sql) -> None:
    catalogue, api, db = world
    run_sync(db, api, "run-1")
    catalogue.add_campaigns(4)
    assert _counts(run_sync(db, api, "run-2")) == (4, 0, 90, 0, 0, 0)


def test_dry_run_computes_counts_and_writes_nothing(world, sql) -> None:
    catalogue, api, db = world
    run_sync(db, api, "run-1")
    catalogue.remove_campaigns(count=2)
    catalogue.add_campaigns(5)
    snapshot = sql("SELECT id, xmin::text FROM offers ORDER BY id")
    result = run_sync(db, api, "run-dry", dry_run=True)
    assert result["dry_run"] is True
    assert _counts(result) == (5, 0, 88, 2, 0, 0)
    assert sql("SELECT id, xmin::text FROM offers ORDER BY id") == snapshot
    assert sql("SELECT count(*) FROM offer_audit WHERE run_id = 'run-dry'") == [(0,)]
    # ... and a real run afterwards applies exactly those changes.
    assert _counts(run_sync(db, api, "run-2")) == (5, 0, 88, 2, 0, 0)


def test_invalid_records_are_rejected_and_kept_and_valid_ones_merged(fake_trackier, offers_db, sql) -> None:
    catalogue = Catalogue(3, 60, seed=4)
    bad = catalogue.campaign_ids()[5]
    server = fake_trackier(catalogue, invalid_ids=[bad], invalid_kind="negative_payout")
    result = run_sync(offers_db, trackier_settings(server, page_size=25), "run-1", max_error_rate=0.5)
    assert result["status"] == "completed_with_errors"
    assert (result["added"], result["rejected"]) == (59, 1)
    ((key, reason, raw),) = sql("SELECT record_key, reason, raw FROM sync_rejects")
    assert key == str(bad)
    assert "payout" in reason
    assert str(bad) in raw


def test_breaker_trips_and_leaves_the_catalogue_untouched(fake_trackier, offers_db, sql) -> None:
    catalogue = Catalogue(3, 60, seed=4)
    server = fake_trackier(catalogue)
    api = trackier_settings(server, page_size=25)
    run_sync(offers_db, api, "run-1")
    snapshot = sql("SELECT * FROM offers ORDER BY id")
    server.configure(invalid_rate=0.5)
    with pytest.raises(SweepRejectedError, match="circuit breaker"):
        run_sync(offers_db, api, "run-2")
    assert sql("SELECT * FROM offers ORDER BY id") == snapshot
    assert sql("SELECT status FROM sync_runs WHERE run_id = 'run-2'") == [("failed",)]
    assert sql("SELECT count(*) > 0 FROM sync_rejects WHERE run_id = 'run-2'") == [(True,)]


def test_staging_is_dropped_after_the_run(world, sql) -> None:
    _, api, db = world
    run_sync(db, api, "run-1")
    assert sql("SELECT count(*) FROM pg_class WHERE relname LIKE 'offer\\_sync\\_stg\\_%'") == [(0,)]


def test_a_feed_that_lost_most_offers_deactivates_none(world, sql) -> None:
    """An empty or truncated feed that still looks complete must not switch the catalogue off."""
    catalogue, api, db = world
    run_sync(db, api, "run-1")
    catalogue.remove_campaigns(count=60)  # two thirds of the catalogue vanish at once
    result = run_sync(db, api, "run-2")
    assert result["status"] == "completed_with_errors"
    assert result["deactivated"] == 0
    assert any("deactivation guard: 60 of 90 active offers" in p for p in result["problems"])
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(90,)]
    assert sql("SELECT count(*) FROM offer_audit WHERE action = 'deactivated'") == [(0,)]
    # An operator who knows it is real raises the limit for one run, and it goes through.
    result = run_sync(db, api, "run-3", max_deactivate_rate=1.0)
    assert (result["status"], result["deactivated"]) == ("completed", 60)


def _stage_sweep(db, api, run_id: str) -> dict:
    """Start, plan, extract and check a sweep (everything before the merge); returns the sweep."""
    return stage_sync(db, api, run_id, max_error_rate=0.5)["sweep"]


def test_first_sync_path_writes_exactly_what_the_general_merge_writes(fake_trackier, offers_db) -> None:
    """merge_offers_first.sql (empty offers) against merge_offers.sql on the same staged sweep.

    Both run in one transaction each, rolled back, on the same empty table, with a rejected record
    in the sweep: the same output row, the same offers rows (every stored column; the brand by its
    trackier_id, since identity values are not rolled back) and the same audit rows.
    """
    import psycopg

    from include.offer_sync.db import connect, query
    from include.offer_sync.load.staging import StagingTables

    catalogue = Catalogue(4, 70, seed=8)
    ids = catalogue.campaign_ids()
    server = fake_trackier(catalogue, invalid_ids=[ids[3]], invalid_kind="negative_payout")
    _stage_sweep(offers_db, trackier_settings(server, page_size=20), "run-1")
    names = StagingTables.for_run("run-1").names()
    params = {"run_id": "run-1"}
    # Every offers column filled from staging (the advertiser reference becomes brand_id, compared
    # by the brand's trackier_id below), and the ones the merge sets itself.
    stored = (
        *(c for c in CAMPAIGN_COLUMNS if c != "advertiser_ref"),
        "is_active",
        "deactivated_at",
        "last_sync_run_id",
    )
    offer_columns = ", ".join(f"o.{c}" for c in stored) + ", b.trackier_id"
    outcomes = {}
    with connect(offers_db) as conn:
        for path in ("merge_offers_first", "merge_offers"):
            with conn.transaction():
                conn.execute(query("merge_brands", **names), {**params, "deactivate": True, "max_rate": 0.2})
                assert conn.execute("SELECT count(*) FROM offers").fetchone() == (0,)
                out = conn.execute(query(path, **names), params).fetchone()
                rows = conn.execute(
                    f"SELECT {offer_columns} FROM offers AS o JOIN brands AS b ON b.id = o.brand_id "
                    "ORDER BY o.trackier_id"
                ).fetchall()
                audit = conn.execute(
                    "SELECT a.run_id, o.trackier_id, a.trackier_id, a.action, a.changes "
                    "FROM offer_audit AS a JOIN offers AS o ON o.id = a.offer_id "
                    "ORDER BY a.trackier_id"
                ).fetchall()
                outcomes[path] = (tuple(out), rows, audit)
                raise psycopg.Rollback
    first, general = outcomes["merge_offers_first"], outcomes["merge_offers"]
    assert first[0] == general[0] == (69, 0, 0, 69, 0, 69, 0)  # the last: carried offers lost
    assert len(first[1]) == 69
    assert str(ids[3]) not in {r[0] for r in first[1]}
    assert first[1] == general[1]
    assert first[2] == general[2]


def test_merge_takes_the_first_sync_path_only_into_an_empty_offers_table(world, sql) -> None:
    catalogue, api, db = world
    first = run_sync(db, api, "run-1")
    assert sql("SELECT metrics->>'merge_path' FROM sync_runs WHERE run_id = 'run-1'") == [("first_sync",)]
    assert _counts(first) == (90, 0, 0, 0, 0, 0)
    catalogue.remove_campaigns(count=2)
    second = run_sync(db, api, "run-2")
    assert sql("SELECT metrics->>'merge_path' FROM sync_runs WHERE run_id = 'run-2'") == [("general",)]
    assert _counts(second) == (0, 0, 88, 2, 0, 0)
