"""Issue 12, the merge and the run lifecycle: overlapping runs, retries, clears, zombies, brands.

Every test calls the real task bodies of ``include.offer_sync.tasks`` (what the DAG's tasks
call) in DAG order, against the fake Trackier over real HTTP and a fresh PostgreSQL database. What
only Airflow decides (outlet events, skipped tasks, webhooks) is in ``tests/airflow/test_emit_event.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest

from devtools.fake_trackier import Catalogue
from devtools.inline import DEFAULT_PARAMS, run_sync
from include.offer_sync import tasks
from include.offer_sync.alerts.rules import Thresholds, evaluate
from include.offer_sync.errors import SweepRejectedError, SweepSupersededError
from include.offer_sync.extract import StaleTryError, extract_shard
from include.offer_sync.load import runs
from include.offer_sync.settings import DatabaseSettings
from include.offer_sync.trackier.http import TrackierClient
from tests.db.test_recovery import (
    MERGE_LOCK,
    MERGE_UNLOCK,
    Worker,
    dump,
    merge_and_finish,
    stage,
    wait_for,
    waiting_merges,
)
from tests.helpers import trackier_settings

LIVE_TABLES = ("brands", "offers", "offer_audit", "brand_audit")
SQL = Callable[..., list[tuple[Any, ...]]]


def offers_view(sql: SQL) -> dict[str, tuple[str, bool]]:
    """trackier_id -> (title, is_active): what a reader of the catalogue sees."""
    return {r[0]: (r[1], r[2]) for r in sql("SELECT trackier_id, title, is_active FROM offers")}


# --- two overlapping runs: merges are ordered by sweep --------------------------------------------


@pytest.fixture
def overlapping(fake_trackier, offers_db, sql) -> dict[str, Any]:
    """An OLDER sweep and a NEWER sweep of a changed catalogue, both staged, neither merged.

    Before them: 90 offers merged, then 3 (``gone_before``) deactivated. Between the two sweeps
    the 3 come back, 2 others (``gone_now``) end and one offer is renamed. So the older sweep, if
    merged last, would deactivate the 3 again, reactivate the 2 and undo the rename.
    """
    catalogue = Catalogue(6, 90, seed=21)
    server = fake_trackier(catalogue)
    api = trackier_settings(server, page_size=20)
    run_sync(offers_db, api, "run-base")
    ids = catalogue.campaign_ids()
    gone_before = catalogue.remove_campaigns(ids=ids[:3])
    assert run_sync(offers_db, api, "run-base-2")["deactivated"] == 3

    older = stage(offers_db, api, "run-older")  # e.g. the nightly run, still extracting
    catalogue.restore()
    gone_now = catalogue.remove_campaigns(ids=ids[10:12])
    catalogue.set_campaign(ids[20], title="Renamed after the older sweep read it")
    newer = stage(offers_db, api, "run-newer")  # e.g. a manual run started a bit later
    started = dict(sql("SELECT run_id, started_at FROM sync_runs WHERE run_id IN ('run-older', 'run-newer')"))
    assert started["run-older"] < started["run-newer"]
    # What the newer sweep saw: every offer ever listed, the 2 gone ones inactive, the rename applied.
    titles = {str(c["id"]): c["title"] for c in Catalogue(6, 90, seed=21).iter_campaigns()}
    titles[str(ids[20])] = "Renamed after the older sweep read it"
    expected = {i: (title, i not in {str(g) for g in gone_now}) for i, title in titles.items()}
    return {
        "db": offers_db,
        "older": older,
        "newer": newer,
        "expected": expected,
        "started": started,
        "gone_before": gone_before,
        "gone_now": gone_now,
    }


def test_overlapping_runs_older_sweep_merging_first_then_newer_both_merge(overlapping, sql) -> None:
    """The harmless order: the older sweep merges, then the newer one; the catalogue ends as the newer saw it."""
    db, older, newer = overlapping["db"], overlapping["older"], overlapping["newer"]
    first = merge_and_finish(db, older)
    assert (first["status"], first["reactivated"], first["deactivated"], first["updated"]) == ("completed", 0, 0, 0)
    second = merge_and_finish(db, newer)
    assert second["status"] == "completed"
    assert (second["reactivated"], second["deactivated"], second["updated"]) == (3, 2, 1)
    assert offers_view(sql) == overlapping["expected"]
    assert sql("SELECT run_id, status FROM sync_runs WHERE run_id IN ('run-older', 'run-newer') ORDER BY 1") == [
        ("run-newer", "completed"),
        ("run-older", "completed"),
    ]


def test_overlapping_runs_older_sweep_merging_after_newer_fails_and_writes_nothing(overlapping, sql) -> None:
    """The harmful order: the newer sweep merged first; the older one must not revert it."""
    db, older, newer = overlapping["db"], overlapping["older"], overlapping["newer"]
    assert merge_and_finish(db, newer)["status"] == "completed"
    assert offers_view(sql) == overlapping["expected"]
    before = dump(sql, *LIVE_TABLES)

    with pytest.raises(SweepSupersededError) as error:
        merge_and_finish(db, older)

    assert dump(sql, *LIVE_TABLES) == before, "the older sweep wrote to the catalogue"
    assert offers_view(sql) == overlapping["expected"]
    [(status, message, result, merged_at)] = sql(
        "SELECT status, error, result, merged_at FROM sync_runs WHERE run_id = 'run-older'"
    )
    assert (status, merged_at) == ("failed", None)
    older_start, newer_start = overlapping["started"]["run-older"], overlapping["started"]["run-newer"]
    for text in (str(error.value), message, result["error"]):
        assert "run-older" in text
        assert "run-newer" in text
        assert older_start.isoformat(timespec="seconds") in text
        assert newer_start.isoformat(timespec="seconds") in text
        assert "merging it would revert newer data" in text
    assert result["status"] == "failed"
    # The failure is final: Airflow's retry policy does not retry it, and a failure callback leaves it.
    from include.offer_sync.errors import FatalSyncError

    assert isinstance(error.value, FatalSyncError)
    assert runs.record_failure(db, "run-older", "merge_catalogue: SweepSupersededError")["error"] == message


def test_overlapping_runs_queued_on_the_merge_lock_newer_first_the_older_one_still_sees_it(
    overlapping, offers_db_url, sql
) -> None:
    """Both merges wait on the lock, the newer one first. The older merge's check must read what the
    newer one committed while it waited (a statement that waits for a lock keeps its old snapshot)."""
    db, older, newer = overlapping["db"], overlapping["older"], overlapping["newer"]
    with psycopg.connect(offers_db_url, autocommit=True) as holder:
        holder.execute(MERGE_LOCK)
        first = Worker(lambda: merge_and_finish(db, newer))
        first.start()
        wait_for(lambda: len(waiting_merges(sql)) == 1, "the newer merge to queue on the lock")
        second = Worker(lambda: merge_and_finish(db, older))
        second.start()
        wait_for(lambda: len(waiting_merges(sql)) == 2, "the older merge to queue behind it")
        holder.execute(MERGE_UNLOCK)
        first.join(60)
        second.join(60)

    assert first.error is None, first.error
    assert isinstance(second.error, SweepSupersededError), second.error
    assert offers_view(sql) == overlapping["expected"]
    assert sql("SELECT run_id, status FROM sync_runs WHERE run_id IN ('run-older', 'run-newer') ORDER BY 1") == [
        ("run-newer", "completed"),
        ("run-older", "failed"),
    ]


def test_dry_runs_never_count_as_the_newest_merged_sweep(fake_trackier, offers_db, sql) -> None:
    catalogue = Catalogue(3, 40, seed=5)
    api = trackier_settings(fake_trackier(catalogue), page_size=20)
    older = stage(offers_db, api, "run-older")
    assert run_sync(offers_db, api, "run-dry", dry_run=True)["dry_run"] is True  # started later, merged nothing
    assert merge_and_finish(offers_db, older)["added"] == 40


# --- a retried merge keeps every flag --------------------------------------------------------------


def test_a_merge_retried_after_its_commit_keeps_every_flag_of_its_result(fake_trackier, offers_db, sql) -> None:
    """The merge committed, then its task failed and was retried: the retry returns the recorded
    result with deactivation_blocked and the rest, so the run still ends completed_with_errors."""
    catalogue = Catalogue(6, 90, seed=21)
    api = trackier_settings(fake_trackier(catalogue), page_size=20)
    run_sync(offers_db, api, "run-1")
    catalogue.remove_campaigns(count=60)  # the deactivation guard trips
    staged = stage(offers_db, api, "run-2")

    def merge() -> dict:
        return tasks.merge_catalogue(offers_db, staged["run"], staged["sweep"], deactivate_missing=True, dry_run=False)

    first = merge()
    assert (first["deactivation_blocked"], first["deactivation_skipped"]) == (True, True)

    retried = merge()  # the task's next try: the merge has already committed

    assert retried["already_merged"] is True
    for key in (
        "deactivation_blocked",
        "deactivation_skipped",
        "brands_deactivation_blocked",
        "problems",
        "added",
        "updated",
        "unchanged",
        "deactivated",
        "complete_sweep",
        "failed_pages",
    ):
        assert retried[key] == first[key], key
    assert any("deactivation guard: 60 of 90 active offers" in p for p in retried["problems"])
    result = tasks.publish_result(offers_db, staged["run"], staged["summaries"], staged["sweep"], retried)
    assert result["status"] == "completed_with_errors"
    assert (result["deactivation_blocked"], result["deactivated"]) == (True, 0)
    assert sql("SELECT status FROM sync_runs WHERE run_id = 'run-2'") == [("completed_with_errors",)]


# --- a cleared re-run starts over -----------------------------------------------------------------


def test_a_failed_run_cleared_and_rerun_resets_its_record_rejects_and_page_errors(
    fake_trackier, offers_db, sql
) -> None:
    catalogue = Catalogue(3, 100, seed=13)
    server = fake_trackier(
        catalogue, invalid_rate=0.3, script=[{"path": "/v2/campaigns", "page": 2, "times": -1, "fault": "503"}]
    )
    api = trackier_settings(server, page_size=20)
    with pytest.raises(SweepRejectedError):
        run_sync(offers_db, api, "run-1")
    [(status, error, first_start)] = sql("SELECT status, error, started_at FROM sync_runs WHERE run_id = 'run-1'")
    assert status == "failed"
    assert "circuit breaker" in error
    assert sql("SELECT count(*) > 0 FROM sync_rejects WHERE run_id = 'run-1'") == [(True,)]
    assert sql("SELECT count(*) FROM sync_page_errors WHERE run_id = 'run-1'") == [(1,)]
    # The operator looks into it for an hour, fixes the cause and clears the run.
    sql("UPDATE sync_runs SET started_at = started_at - interval '1 hour' WHERE run_id = 'run-1'")
    server.configure(invalid_rate=0.0, script=[])

    # Its first task runs again: while the re-run is in flight, nothing of the failed attempt shows.
    tasks.start_sync(offers_db, run_id="run-1", dag_id="trackier_offer_sync", params=dict(DEFAULT_PARAMS))
    assert sql(
        """SELECT status, error, result, metrics, finished_at, duration_s, rejected, error_rate,
                         started_at > %s FROM sync_runs WHERE run_id = 'run-1'""",
        (first_start,),
    ) == [("running", None, None, None, None, None, None, None, True)]
    assert sql("SELECT count(*) FROM sync_rejects WHERE run_id = 'run-1'") == [(0,)]
    assert sql("SELECT count(*) FROM sync_page_errors WHERE run_id = 'run-1'") == [(0,)]

    result = run_sync(offers_db, api, "run-1")

    assert result["status"] == "completed"
    assert (result["added"], result["rejected"], result["failed_pages"]) == (100, 0, 0)
    assert result["duration_s"] < 600, "the pause before the re-run is not part of the sync"
    assert [a.rule for a in evaluate(result, Thresholds())] == []
    [(status, error, started, finished, stored)] = sql(
        "SELECT status, error, started_at, finished_at, result FROM sync_runs WHERE run_id = 'run-1'"
    )
    assert (status, error) == ("completed", None)
    assert started > first_start
    assert finished >= started
    assert stored == result
    assert sql("SELECT count(*) FROM sync_rejects WHERE run_id = 'run-1'") == [(0,)]
    assert sql("SELECT count(*) FROM sync_page_errors WHERE run_id = 'run-1'") == [(0,)]


# --- two tries of one shard at once -------------------------------------------------------------


class GatedClient(TrackierClient):
    """The real client; after handing out the first page of a stream it waits for ``gate``.

    It stands for a task try that Airflow declared dead (a zombie) while it was still loading.
    """

    def __init__(self, *args: Any, gate: threading.Event, reached: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate, self.reached = gate, reached

    def _gated(self, pages: Iterator[Any]) -> Iterator[Any]:
        for n, item in enumerate(pages):
            yield item
            if n == 0:
                self.reached.set()
                assert self.gate.wait(60), "the test never opened the gate"

    def iter_page_range(self, *args: Any, **kwargs: Any) -> Iterator[Any]:  # type: ignore[override]
        return self._gated(super().iter_page_range(*args, **kwargs))

    def iter_cursor(self, *args: Any, **kwargs: Any) -> Iterator[Any]:  # type: ignore[override]
        return self._gated(super().iter_cursor(*args, **kwargs))


def waiting_seals(sql: SQL) -> list[int]:
    """Backends of the sync waiting for a two-key advisory lock (the staging seal)."""
    rows = sql("""SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND NOT l.granted
                    AND a.datname = current_database() AND a.application_name = 'trackier_offer_sync'""")
    return [r[0] for r in rows]


def test_two_tries_of_one_shard_loading_at_once_cannot_hide_an_offer(fake_trackier, offers_db, sql) -> None:
    catalogue = Catalogue(4, 100, seed=19)
    server = fake_trackier(catalogue)
    api = trackier_settings(server, page_size=20, fetch_threads=1)
    run_sync(offers_db, api, "run-1")
    ids = catalogue.campaign_ids()
    catalogue.set_campaign(ids[50], title="Renamed while two tries loaded it")
    record = catalogue.get_campaign(ids[90])
    catalogue.set_campaign(
        ids[90],
        payouts=[{**record["payouts"][0], "payout": record["payouts"][0]["payout"] + 1}, *record["payouts"][1:]],
    )

    run = tasks.start_sync(offers_db, run_id="run-2", dag_id="trackier_offer_sync", params=dict(DEFAULT_PARAMS))
    [adv_shard] = tasks.plan_entity(api, "advertisers")
    [cmp_shard] = tasks.plan_entity(api, "campaigns")  # 5 pages: one shard
    summaries = [tasks.extract_shard(offers_db, api, run, adv_shard)]

    # Try 1 prepares the shard and starts its COPY, then hangs: Airflow declares it dead and starts try 2.
    gate, reached = threading.Event(), threading.Event()
    zombie = Worker(
        lambda: extract_shard(
            offers_db, GatedClient(api, gate=gate, reached=reached), "run-2", cmp_shard, fetch_threads=1, try_number=1
        )
    )
    zombie.start()
    assert reached.wait(30), zombie.error
    summaries.append(tasks.extract_shard(offers_db, api, run, cmp_shard, try_number=2))  # try 2 loads it all

    # The check must wait for the zombie (it holds the staging lock) rather than race its COPY.
    check = Worker(lambda: tasks.check_sweep(offers_db, run, summaries, 0.05))
    check.start()
    wait_for(lambda: waiting_seals(sql), "the sweep check to wait for the zombie try")
    assert check.is_alive()
    gate.set()  # the zombie wakes up and commits its copy of the shard
    zombie.join(60)
    check.join(60)
    assert zombie.error is None, zombie.error
    assert check.error is None, check.error
    sweep = check.result

    assert (sweep["campaigns_processed"], sweep["duplicates"], sweep["complete_sweep"]) == (100, 0, True)
    merged = tasks.merge_catalogue(offers_db, run, sweep, deactivate_missing=True, dry_run=False)
    result = tasks.publish_result(offers_db, run, summaries, sweep, merged)
    assert result["status"] == "completed"
    assert (result["updated"], result["unchanged"], result["duplicates"]) == (2, 98, 0)
    assert sql("SELECT title FROM offers WHERE trackier_id = %s", (str(ids[50]),)) == [
        ("Renamed while two tries loaded it",)
    ]
    assert sorted(r[0] for r in sql("SELECT trackier_id FROM offer_audit WHERE run_id = 'run-2'")) == sorted(
        [str(ids[50]), str(ids[90])]
    )


def test_an_earlier_try_that_wakes_up_after_a_newer_try_started_writes_nothing(fake_trackier, offers_db, sql) -> None:
    api = trackier_settings(fake_trackier(Catalogue(2, 40, seed=23)), page_size=20)
    run = tasks.start_sync(offers_db, run_id="run-1", dag_id="trackier_offer_sync", params=dict(DEFAULT_PARAMS))
    [cmp_shard] = tasks.plan_entity(api, "campaigns")
    tasks.extract_shard(offers_db, api, run, cmp_shard, try_number=3)
    staged = sql("SELECT count(*), min(try_number), max(try_number) FROM offer_sync_stg_" + run["run_key"] + "_cmp")
    assert staged == [(40, 3, 3)]

    with pytest.raises(StaleTryError, match="try 2 of this shard stops: try 3 has already started"):
        tasks.extract_shard(offers_db, api, run, cmp_shard, try_number=2)

    assert sql("SELECT count(*), min(try_number) FROM offer_sync_stg_" + run["run_key"] + "_cmp") == [(40, 3)]


def test_a_shard_loaded_again_replaces_its_rows_and_a_first_try_leaves_other_shards_alone(
    fake_trackier, offers_db, sql
) -> None:
    """shard_prepare.sql deletes a shard's earlier rows only when an earlier try of it registered
    (the scan is skipped for a first try): a repeat of the same try and a later try both replace the
    shard's rows, and a first try of one shard never touches another shard's rows."""
    api = trackier_settings(fake_trackier(Catalogue(2, 60, seed=31)), page_size=10, pages_per_shard=3)
    run = tasks.start_sync(offers_db, run_id="run-1", dag_id="trackier_offer_sync", params=dict(DEFAULT_PARAMS))
    first, second = tasks.plan_entity(api, "campaigns")  # 6 pages: two shards of 3 pages
    table = "offer_sync_stg_" + run["run_key"] + "_cmp"

    def staged() -> list:
        return sql(f"SELECT shard, try_number, count(*) FROM {table} GROUP BY 1, 2 ORDER BY 1, 2")

    tasks.extract_shard(offers_db, api, run, first)
    tasks.extract_shard(offers_db, api, run, second)
    assert staged() == [(0, 1, 30), (1, 1, 30)]
    tasks.extract_shard(offers_db, api, run, first)  # the same try again (in-process re-run)
    assert staged() == [(0, 1, 30), (1, 1, 30)]
    tasks.extract_shard(offers_db, api, run, second, try_number=2)  # Airflow's retry of shard 1
    assert staged() == [(0, 1, 30), (1, 2, 30)]


# --- every counted update has its diff ------------------------------------------------------------


def test_a_change_of_source_created_alone_is_an_update_with_its_diff(fake_trackier, offers_db, sql) -> None:
    catalogue = Catalogue(3, 30, seed=29)
    api = trackier_settings(fake_trackier(catalogue), page_size=20)
    run_sync(offers_db, api, "run-1")
    victim = str(catalogue.campaign_ids()[4])
    catalogue.set_campaign(catalogue.campaign_ids()[4], created="2019-05-06T07:08:09.000Z")

    result = run_sync(offers_db, api, "run-2")

    assert (result["updated"], result["unchanged"]) == (1, 29)
    [(trackier_id, changes)] = sql("SELECT trackier_id, changes FROM offer_audit WHERE run_id = 'run-2'")
    assert trackier_id == victim
    assert set(changes) == {"source_created"}
    assert datetime.fromisoformat(changes["source_created"]["new"]).isoformat() == "2019-05-06T07:08:09+00:00"
    assert sql("""SELECT count(*) FROM offer_audit
                  WHERE action = 'updated' AND (changes IS NULL OR changes = '{}'::jsonb)""") == [(0,)]


# --- brands that are gone -----------------------------------------------------------------------


def _brand_fixture(extra_advertisers: int, seed: int = 31) -> dict[str, list[dict[str, Any]]]:
    """A generated catalogue as a fixture, plus advertisers that have no campaigns (free to vanish)."""
    base = Catalogue(6, 60, seed=seed)
    advertisers = list(base.iter_advertisers())
    for n in range(extra_advertisers):
        advertisers.append(
            {
                **advertisers[0],
                "id": 900000 + n,
                "_id": f"{900000 + n:024x}",
                "hashId": f"xtra{n}",
                "name": f"Dormant brand {n}",
            }
        )
    return {"advertisers": advertisers, "campaigns": list(base.iter_campaigns())}


def test_brands_a_complete_sweep_no_longer_lists_are_deactivated_and_come_back(fake_trackier, offers_db, sql) -> None:
    full = fake_trackier(Catalogue.from_fixture(_brand_fixture(1)))
    without = fake_trackier(Catalogue.from_fixture(_brand_fixture(0)))
    first = run_sync(offers_db, trackier_settings(full, page_size=20), "run-1")
    assert (first["brands_added"], first["brands_deactivated"], first["brands_reactivated"]) == (7, 0, 0)

    gone = run_sync(offers_db, trackier_settings(without, page_size=20), "run-2")

    assert gone["status"] == "completed"
    assert (gone["brands_deactivated"], gone["brands_reactivated"], gone["brands_updated"]) == (1, 0, 0)
    assert (gone["deactivated"], gone["unchanged"]) == (0, 60), "offers are not touched"
    assert sql("SELECT trackier_id, is_active, deactivated_at IS NOT NULL FROM brands WHERE NOT is_active") == [
        ("900000", False, True)
    ]
    assert sql("SELECT count(*) FROM brands") == [(7,)], "deactivated, never deleted"
    assert sql("SELECT run_id, trackier_id, action, changes FROM brand_audit") == [
        ("run-2", "900000", "deactivated", {"is_active": {"old": True, "new": False}})
    ]
    assert sql("SELECT brands_updated FROM sync_runs WHERE run_id = 'run-2'") == [(0,)]

    back = run_sync(offers_db, trackier_settings(full, page_size=20), "run-3")

    assert (back["brands_reactivated"], back["brands_deactivated"], back["brands_added"]) == (1, 0, 0)
    assert back["brands_updated"] == 0
    assert sql("SELECT count(*) FROM brands WHERE is_active AND deactivated_at IS NULL") == [(7,)]
    assert sql("SELECT run_id, action FROM brand_audit ORDER BY id") == [
        ("run-2", "deactivated"),
        ("run-3", "reactivated"),
    ]
    # Every result key of the contract is still there; the brand counts are only added.
    for key in ("added", "updated", "unchanged", "deactivated", "brands_added", "brands_updated"):
        assert key in back


def test_brands_are_not_deactivated_by_an_incomplete_sweep_or_past_the_guard(fake_trackier, offers_db, sql) -> None:
    full = fake_trackier(Catalogue.from_fixture(_brand_fixture(3)))
    api_full = trackier_settings(full, page_size=20)
    run_sync(offers_db, api_full, "run-1")  # 9 brands
    without = fake_trackier(Catalogue.from_fixture(_brand_fixture(0)))
    api_without = trackier_settings(without, page_size=20)

    # 3 of 9 brands (33%) at once: over max_deactivate_rate 20%, none go, and the run says why.
    guarded = run_sync(offers_db, api_without, "run-2")
    assert guarded["status"] == "completed_with_errors"
    assert (guarded["brands_deactivated"], guarded["deactivation_blocked"]) == (0, True)
    assert guarded["brands_deactivation_blocked"] is True
    assert any("deactivation guard: 3 of 9 active brands" in p for p in guarded["problems"])
    assert sql("SELECT count(*) FROM brands WHERE is_active") == [(9,)]

    # An incomplete sweep (a page that failed for good) cannot tell what is gone.
    without.configure(script=[{"path": "/v2/campaigns", "page": 2, "times": -1, "fault": "503"}])
    partial = run_sync(offers_db, api_without, "run-3", max_deactivate_rate=1.0, max_error_rate=1.0)
    assert (partial["complete_sweep"], partial["brands_deactivated"]) == (False, 0)
    assert sql("SELECT count(*) FROM brands WHERE is_active") == [(9,)]

    # The operator confirms the clean-up with a higher limit: all three go, audited.
    without.configure(script=[])
    confirmed = run_sync(offers_db, api_without, "run-4", max_deactivate_rate=1.0)
    assert (confirmed["status"], confirmed["brands_deactivated"]) == ("completed", 3)
    assert sql("SELECT count(*) FROM brand_audit WHERE action = 'deactivated'") == [(3,)]


# --- the schema upgrade -------------------------------------------------------------------------


def test_a_version_1_database_is_upgraded_in_place(offers_db: DatabaseSettings, offers_db_url, sql) -> None:
    """A catalogue created before brands could be deactivated gets the new columns and table, keeping its rows."""
    from include.offer_sync.db import connect
    from include.offer_sync.load.schema import SCHEMA_VERSION, ensure_schema

    with connect(offers_db) as conn:
        ensure_schema(conn)
        conn.commit()
    # Back to what version 1 looked like.
    sql("ALTER TABLE brands DROP COLUMN is_active, DROP COLUMN deactivated_at")
    sql("ALTER TABLE sync_runs DROP COLUMN event_emitted_at, DROP COLUMN event_claimed_try")
    sql("DROP TABLE brand_audit")
    sql("DELETE FROM offer_sync_schema WHERE version > 1")
    sql("""INSERT INTO brands (trackier_id, name, content_hash) VALUES ('b1', 'Old brand', 'h')""")

    with connect(offers_db) as conn:
        assert ensure_schema(conn) is True
        conn.commit()

    assert sql("SELECT trackier_id, is_active, deactivated_at FROM brands") == [("b1", True, None)]
    assert sql("SELECT max(version) FROM offer_sync_schema") == [(SCHEMA_VERSION,)]
    assert sql("SELECT count(*) FROM brand_audit") == [(0,)]
    assert sql("SELECT count(*) FROM sync_runs WHERE event_emitted_at IS NOT NULL") == [(0,)]


# --- the event claim ----------------------------------------------------------------------------


def test_the_offers_event_is_claimed_once_and_a_failed_try_gives_its_claim_back(fake_trackier, offers_db, sql) -> None:
    api = trackier_settings(fake_trackier(Catalogue(2, 20, seed=37)), page_size=20)
    result = run_sync(offers_db, api, "run-1")
    dry = run_sync(offers_db, api, "run-dry", dry_run=True)

    first = tasks.claim_event(offers_db, "run-1", try_number=1)
    assert first == {"result": result, "reason": "claimed"}
    again = tasks.claim_event(offers_db, "run-1", try_number=2)  # the task cleared and run again
    assert again["result"] is None
    assert "already emitted" in again["reason"]
    assert "(try 1)" in again["reason"]
    assert tasks.claim_event(offers_db, "run-dry", try_number=1)["result"] is None
    assert dry["dry_run"] is True

    # Try 1 failed after its claim (Airflow never recorded its event): only its own claim is released.
    assert tasks.release_event_claim("run-1", 2, db=offers_db) is False
    assert tasks.release_event_claim("run-1", 1, db=offers_db) is True
    retry = tasks.claim_event(offers_db, "run-1", try_number=2)
    assert retry["result"] == result
    assert sql("SELECT event_claimed_try, event_emitted_at IS NOT NULL FROM sync_runs WHERE run_id = 'run-1'") == [
        (2, True)
    ]
