"""``load.merge.merge_sweep`` directly, on a sweep staged and checked by the real tasks: the counts,
one audit row per change, the two reasons not to deactivate (an incomplete sweep, the guard), a dry
run, and a merge called again after its run merged."""

from __future__ import annotations

from typing import Any

from devtools.fake_trackier import Catalogue
from devtools.inline import DEFAULT_PARAMS
from include.offer_sync import tasks
from include.offer_sync.db import connect
from include.offer_sync.load import merge
from tests.helpers import trackier_settings


def _stage(offers_db, api, run_id: str) -> dict[str, Any]:
    run = tasks.start_sync(offers_db, run_id=run_id, dag_id="d", params=dict(DEFAULT_PARAMS))
    shards = [*tasks.plan_entity(api, "advertisers"), *tasks.plan_entity(api, "campaigns")]
    summaries = [tasks.extract_shard(offers_db, api, run, shard) for shard in shards]
    return tasks.check_sweep(offers_db, run, summaries, 1.0)


def _merge(offers_db, run_id: str, swept: dict[str, Any], **options: Any) -> dict[str, Any]:
    options = {"deactivate_missing": True, "max_deactivate_rate": 0.2, "dry_run": False, **options}
    with connect(offers_db) as conn:
        return merge.merge_sweep(conn, run_id, swept, **options)


def _synced(fake_trackier, offers_db) -> tuple[Catalogue, Any]:
    catalogue = Catalogue(3, 30, seed=11)
    api = trackier_settings(fake_trackier(catalogue), page_size=50)
    first = _merge(offers_db, "run-1", _stage(offers_db, api, "run-1"))
    assert (first["added"], first["brands_added"], first["deactivated"]) == (30, 3, 0)
    return catalogue, api


def test_counts_and_one_audit_row_per_change(fake_trackier, offers_db, sql) -> None:
    catalogue, api = _synced(fake_trackier, offers_db)
    ids = catalogue.campaign_ids()
    catalogue.set_campaign(ids[0], title="Renamed")
    catalogue.remove_campaigns(ids=ids[1:3])
    [new_id] = catalogue.add_campaigns(1)

    merged = _merge(offers_db, "run-2", _stage(offers_db, api, "run-2"))

    counts = {k: merged[k] for k in ("added", "updated", "unchanged", "deactivated", "reactivated")}
    assert counts == {"added": 1, "updated": 1, "unchanged": 27, "deactivated": 2, "reactivated": 0}
    audit = sql("SELECT action, trackier_id FROM offer_audit WHERE run_id = 'run-2' ORDER BY action, trackier_id")
    assert audit == sorted(
        [("inserted", str(new_id)), ("updated", str(ids[0])), *(("deactivated", str(i)) for i in ids[1:3])]
    )
    [(changes,)] = sql("SELECT changes FROM offer_audit WHERE run_id = 'run-2' AND action = 'updated'")
    assert "Renamed" in str(changes)


def test_an_incomplete_sweep_deactivates_nothing_and_says_so(fake_trackier, offers_db, sql) -> None:
    catalogue, api = _synced(fake_trackier, offers_db)
    catalogue.remove_campaigns(count=2)
    swept = {**_stage(offers_db, api, "run-2"), "complete_sweep": False}

    merged = _merge(offers_db, "run-2", swept)

    assert (merged["deactivated"], merged["deactivation_skipped"], merged["deactivation_blocked"]) == (0, True, False)
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(30,)]


def test_the_guard_blocks_a_mass_deactivation_and_puts_its_reason_first(fake_trackier, offers_db, sql) -> None:
    catalogue, api = _synced(fake_trackier, offers_db)
    catalogue.remove_campaigns(count=10)  # a third of the catalogue, over the 20% guard

    merged = _merge(offers_db, "run-2", _stage(offers_db, api, "run-2"))

    assert (merged["deactivated"], merged["deactivation_blocked"], merged["deactivation_skipped"]) == (0, True, True)
    assert merged["problems"][0].startswith("deactivation guard: 10 of 30 active offers")
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(30,)]
    assert _merge(offers_db, "run-3", _stage(offers_db, api, "run-3"), max_deactivate_rate=0.5)["deactivated"] == 10


def test_a_dry_run_counts_everything_and_writes_nothing(fake_trackier, offers_db, sql) -> None:
    api = trackier_settings(fake_trackier(Catalogue(3, 30, seed=11)), page_size=50)

    merged = _merge(offers_db, "run-1", _stage(offers_db, api, "run-1"), dry_run=True)

    assert (merged["added"], merged["brands_added"]) == (30, 3)
    assert sql("SELECT count(*) FROM offers") == [(0,)]
    assert sql("SELECT count(*) FROM offer_audit") == [(0,)]
    assert sql("SELECT merged_at FROM sync_runs WHERE run_id = 'run-1'") == [(None,)]


def test_a_merge_called_again_after_its_run_merged_returns_the_recorded_counts_and_writes_nothing(
    fake_trackier, offers_db, sql
) -> None:
    catalogue, api = _synced(fake_trackier, offers_db)
    catalogue.remove_campaigns(count=2)
    swept = _stage(offers_db, api, "run-2")
    first = _merge(offers_db, "run-2", swept)
    before = sql("SELECT * FROM offers ORDER BY id"), sql("SELECT count(*) FROM offer_audit")

    again = _merge(offers_db, "run-2", swept)

    assert again["already_merged"] is True
    assert {k: again[k] for k in ("added", "updated", "deactivated")} == {
        k: first[k] for k in ("added", "updated", "deactivated")
    }
    assert (sql("SELECT * FROM offers ORDER BY id"), sql("SELECT count(*) FROM offer_audit")) == before
