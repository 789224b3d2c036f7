"""Issue 14: a resync stages the campaigns the catalogue already holds without validating them.

Every test runs real syncs (the task bodies in DAG order, ``devtools.inline``) against the fake
Trackier over HTTP and a fresh PostgreSQL database. Carrying is an optimisation, so what these tests
protect is that it changes nothing a reader of the catalogue can see: the same offers, counts and
audit as validating every record, including where the merge must write a carried campaign anyway.
"""

from __future__ import annotations

from typing import Any

import pytest

from devtools.fake_trackier import Catalogue
from devtools.inline import stage_sync
from include.offer_sync.errors import CarriedOffersLostError
from include.offer_sync.trackier.fingerprint import campaign_fingerprint
from tests.db.test_recovery import dump, merge_and_finish
from tests.helpers import trackier_settings

LIVE_TABLES = ("brands", "offers", "offer_audit", "brand_audit")


def carried(staged: dict[str, Any]) -> int:
    """Campaigns the extract tasks of a staged sweep carried (``devtools.inline.stage_sync``'s result)."""
    return sum(s["carried"] for s in staged["summaries"] if s["entity"] == "campaigns")


def sync(db: Any, api: Any, run_id: str) -> tuple[int, dict[str, Any]]:
    """A whole sync: (campaigns carried, the run's result)."""
    staged = stage_sync(db, api, run_id)
    return carried(staged), merge_and_finish(db, staged)


def stored_matches_feed(sql: Any, catalogue: Catalogue) -> None:
    """Every active offer holds what its current record says (fingerprint, title, first payout)."""
    feed = {str(c["id"]): c for c in catalogue.iter_campaigns()}
    rows = sql("SELECT trackier_id, content_hash, title, payout FROM offers WHERE is_active")
    assert {r[0] for r in rows} == set(feed)
    for trackier_id, content_hash, title, payout in rows:
        record = feed[trackier_id]
        assert content_hash == campaign_fingerprint(record)
        assert title == record["title"]
        assert float(payout) == pytest.approx(record["payouts"][0]["payout"])


@pytest.fixture
def synced(fake_trackier, offers_db, sql) -> dict[str, Any]:
    catalogue = Catalogue(5, 200, seed=14)
    server = fake_trackier(catalogue)
    api = trackier_settings(server, page_size=50)
    first = stage_sync(offers_db, api, "run-1")
    assert carried(first) == 0, "nothing is stored yet: every record is validated"
    merge_and_finish(offers_db, first)
    return {"catalogue": catalogue, "api": api, "db": offers_db}


def test_a_resync_carries_every_unchanged_campaign_and_validates_the_changed_ones(synced, sql) -> None:
    catalogue, api, db = synced["catalogue"], synced["api"], synced["db"]
    audit_before = sql("SELECT count(*) FROM offer_audit")[0][0]
    changed = catalogue.change_payouts(0.1, seed=3)
    assert changed > 0
    staged = stage_sync(db, api, "run-2")
    assert carried(staged) == 200 - changed
    assert staged["sweep"]["campaigns_carried"] == 200 - changed
    result = merge_and_finish(db, staged)
    assert (result["added"], result["updated"], result["unchanged"]) == (0, changed, 200 - changed)
    assert sql("SELECT count(*) FROM offer_audit")[0][0] == audit_before + changed
    stored_matches_feed(sql, catalogue)


def test_a_campaign_whose_record_changed_in_any_read_field_is_not_carried(synced, sql) -> None:
    catalogue, api, db = synced["catalogue"], synced["api"], synced["db"]
    ids = catalogue.campaign_ids()
    catalogue.set_campaign(ids[0], description="a new description")
    catalogue.set_campaign(ids[1], kpi="a field we do not read")  # ignored: still carried
    n, result = sync(db, api, "run-2")
    assert n == 199
    assert (result["updated"], result["unchanged"]) == (1, 199)
    (changes,) = sql("SELECT changes FROM offer_audit WHERE run_id = 'run-2'")[0]
    assert set(changes) == {"description"}
    stored_matches_feed(sql, catalogue)


def test_a_carried_campaign_follows_its_advertiser_to_a_new_brand(synced, sql) -> None:
    """Nothing in the campaign changed, but the advertiser id it names now belongs to another
    advertiser: the merge writes the carried campaign with its stored values and the new brand."""
    catalogue, api, db = synced["catalogue"], synced["api"], synced["db"]
    advertisers = list(catalogue.iter_advertisers())
    a, b = advertisers[0], advertisers[1]
    moved = {str(c["id"]) for c in catalogue.iter_campaigns() if c["advertiserId"] == a["_id"]}
    assert moved
    before = dict(sql("SELECT trackier_id, title FROM offers"))
    catalogue.set_advertiser(a["id"], _id="0" * 24)
    catalogue.set_advertiser(b["id"], _id=a["_id"])
    n, result = sync(db, api, "run-2")
    assert n == 200
    assert result["updated"] == len(moved)
    brands = dict(sql("SELECT o.trackier_id, b.trackier_id FROM offers o JOIN brands b ON b.id = o.brand_id"))
    assert {i for i, brand in brands.items() if brand == str(b["id"])} >= moved
    assert dict(sql("SELECT trackier_id, title FROM offers")) == before
    audits = sql("SELECT trackier_id, changes FROM offer_audit WHERE run_id = 'run-2'")
    assert {r[0] for r in audits} == moved
    assert all(set(changes) == {"brand_id"} for _, changes in audits)


def test_a_carried_campaign_deactivated_while_the_run_fetched_is_reactivated_as_stored(synced, sql) -> None:
    api, db = synced["api"], synced["db"]
    staged = stage_sync(db, api, "run-2")
    assert carried(staged) == 200
    row = sql("SELECT trackier_id, title, payouts, content_hash FROM offers ORDER BY trackier_id LIMIT 1")[0]
    sql("UPDATE offers SET is_active = false, deactivated_at = now() WHERE trackier_id = %s", (row[0],))
    result = merge_and_finish(db, staged)
    assert (result["reactivated"], result["updated"], result["unchanged"]) == (1, 0, 199)
    after = sql(
        "SELECT trackier_id, title, payouts, content_hash, is_active FROM offers WHERE trackier_id = %s", (row[0],)
    )
    assert after == [(*row, True)]
    (changes,) = sql("SELECT changes FROM offer_audit WHERE run_id = 'run-2' AND action = 'reactivated'")[0]
    assert changes == {"is_active": {"old": False, "new": True}}


def test_a_run_whose_carried_offers_vanished_fails_and_writes_nothing(synced, sql) -> None:
    api, db = synced["api"], synced["db"]
    staged = stage_sync(db, api, "run-2")
    (victim,) = sql("SELECT id FROM offers ORDER BY id LIMIT 1")[0]
    sql("DELETE FROM offer_audit WHERE offer_id = %s", (victim,))
    sql("DELETE FROM offers WHERE id = %s", (victim,))
    before = dump(sql, *LIVE_TABLES)
    with pytest.raises(CarriedOffersLostError, match="1 campaigns this run found unchanged"):
        merge_and_finish(db, staged)
    assert dump(sql, *LIVE_TABLES) == before


def test_an_emptied_catalogue_fails_a_run_that_carried_campaigns(synced, sql) -> None:
    """With offers empty, the merge takes the insert-only first-sync path, which cannot take carried rows."""
    api, db = synced["api"], synced["db"]
    staged = stage_sync(db, api, "run-2")
    sql("TRUNCATE offers, offer_audit")
    with pytest.raises(CarriedOffersLostError, match="200 campaigns this run found unchanged"):
        merge_and_finish(db, staged)
    assert sql("SELECT count(*) FROM offers") == [(0,)]
    # The next run finds nothing stored, validates everything and fills the table again.
    n, result = sync(db, api, "run-3")
    assert (n, result["added"]) == (0, 200)


def test_duplicates_among_carried_campaigns_are_resolved_as_when_validated(fake_trackier, offers_db, sql) -> None:
    catalogue = Catalogue(5, 200, seed=15)
    api = trackier_settings(fake_trackier(catalogue, duplicate_ids=True), page_size=50)
    _, first = sync(offers_db, api, "run-1")
    n, second = sync(offers_db, api, "run-2")
    assert first["duplicates"] == second["duplicates"] > 0
    assert n == second["campaigns_processed"]
    assert (second["unchanged"], second["updated"], second["deactivated"]) == (200, 0, 0)
    stored_matches_feed(sql, catalogue)


def test_an_offer_whose_stored_hash_is_older_than_fingerprints_is_validated(synced, sql) -> None:
    """Offers stored by a version before fingerprints (a 32-digit md5) are never carried; the first
    resync rewrites them with their fingerprint, without counting or auditing an update."""
    api, db = synced["api"], synced["db"]
    sql("UPDATE offers SET content_hash = md5(trackier_id)")
    n, result = sync(db, api, "run-2")
    assert n == 0
    assert (result["updated"], result["unchanged"]) == (0, 200)
    assert sql("SELECT count(*) FROM offer_audit WHERE run_id = 'run-2'") == [(0,)]
    assert sync(db, api, "run-3")[0] == 200


def test_a_stale_copy_beside_a_carried_campaign_does_not_win(fake_trackier, offers_db, sql) -> None:
    """Duplicates keep the copy modified last. A carried copy stages no timestamp of its own: its stored
    offer's is used, so an older copy that follows it in the feed (and would win on arrival order)
    does not overwrite the stored offer."""
    advertisers = [{"id": "adv_001", "name": "Test Brand"}]
    current = {
        "id": "camp_1",
        "advertiser_id": "adv_001",
        "name": "Current title",
        "payout": {"amount": 5.0, "currency": "USD"},
        "modified": "2024-05-02T00:00:00Z",
    }
    stale = {**current, "name": "Stale title", "modified": "2024-05-01T00:00:00Z"}
    first = Catalogue.from_fixture({"advertisers": advertisers, "campaigns": [current]})
    sync(offers_db, trackier_settings(fake_trackier(first)), "run-1")
    both = Catalogue.from_fixture({"advertisers": advertisers, "campaigns": [current, stale]})
    n, result = sync(offers_db, trackier_settings(fake_trackier(both)), "run-2")
    assert n == 1, "the current copy is carried, the stale one validated"
    assert (result["duplicates"], result["updated"], result["unchanged"]) == (1, 0, 1)
    assert sql("SELECT title FROM offers") == [("Current title",)]
