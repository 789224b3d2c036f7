"""Spec case 6 (Error Recovery) and the reliability issue: a flaky API, crashes and overlapping runs.

Every test drives the real ``TrackierClient`` over HTTP against the fake Trackier and writes to a
fresh PostgreSQL database, calling the task bodies of ``include.offer_sync.tasks`` in DAG order
(no scheduler: a run costs well under a second). What Airflow itself decides (retry policies,
task retries) is covered by ``tests/airflow/test_retries.py``.
"""

from __future__ import annotations

import socket
import threading
import time
import traceback
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import psycopg
import pytest

from devtools.fake_trackier import FAULT_KINDS, Catalogue
from devtools.inline import DEFAULT_PARAMS, run_sync, stage_sync
from include.offer_sync import tasks
from include.offer_sync.errors import DatabaseUnavailableError, SweepRejectedError, TrackierAuthError
from include.offer_sync.load.staging import StagingTables
from include.offer_sync.settings import DatabaseSettings
from include.offer_sync.trackier.http import TrackierClient
from tests.helpers import TEST_API_KEY, assert_key_in_no_table, cursor_shard, trackier_settings

#: Every test twice: pages staged by the task process, and by validation workers (tests/db/conftest.py).
pytestmark = pytest.mark.usefixtures("either_staging_path")

DAG_ID = "trackier_offer_sync"
LIVE_TABLES = ("brands", "offers", "offer_audit")
MERGE_LOCK = "SELECT pg_advisory_lock(hashtext('trackier_offer_sync.merge'))"
MERGE_UNLOCK = "SELECT pg_advisory_unlock(hashtext('trackier_offer_sync.merge'))"


#: start_sync -> plan -> extract every shard -> check_sweep, as the DAG does; the merge is left to the test
stage = stage_sync


def merge_and_finish(db: DatabaseSettings, staged: dict[str, Any]) -> dict[str, Any]:
    p = staged["params"]
    merged = tasks.merge_catalogue(
        db, staged["run"], staged["sweep"], deactivate_missing=p["deactivate_missing"], dry_run=p["dry_run"]
    )
    return tasks.publish_result(db, staged["run"], staged["summaries"], staged["sweep"], merged)


def dump(sql: Callable[..., list[tuple[Any, ...]]], *tables: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row and column of each table, in id order: a byte-level before/after comparison."""
    return {t: sql(f"SELECT * FROM {t} ORDER BY id") for t in tables}


def page_errors(sql: Callable[..., list[tuple[Any, ...]]], run_id: str) -> list[tuple[Any, ...]]:
    return sql("SELECT entity, page, kind, error FROM sync_page_errors WHERE run_id = %s ORDER BY id", (run_id,))


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll until ``condition()`` is truthy (a synchronisation point, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Worker(threading.Thread):
    """Runs one call in a thread and keeps its result or exception for the test to inspect."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc


def waiting_merges(sql: Callable[..., list[tuple[Any, ...]]]) -> list[int]:
    """Backends of the sync that wait for the merge's advisory lock (not yet granted)."""
    rows = sql("""SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()
                    AND a.application_name = 'trackier_offer_sync' ORDER BY a.query_start""")
    return [r[0] for r in rows]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: every fault the fake serves, but a bad key and a blocked IP (retrying cannot fix them) and a
#: Retry-After 429 (its own tests below)
TRANSIENT_FAULTS = [k for k in FAULT_KINDS if k not in ("429_retry_after", "auth_400", "ip_403")]


@pytest.mark.parametrize("fault", TRANSIENT_FAULTS)
def test_case_6_error_recovery_page_fails_twice_then_succeeds(fault, fake_trackier, offers_db, sql) -> None:
    """Page 3 of the campaigns answers ``fault`` twice, then data: the run completes with every row."""
    catalogue = Catalogue(4, 100, seed=3)
    server = fake_trackier(
        catalogue, timeout_sleep_s=2.0, script=[{"path": "/v2/campaigns", "page": 3, "times": 2, "fault": fault}]
    )
    api = trackier_settings(server, page_size=20, read_timeout_s=0.3)

    result = run_sync(offers_db, api, "run-flaky")

    assert result["status"] == "completed"
    assert (result["added"], result["campaigns_processed"], result["rejected"]) == (100, 100, 0)
    assert result["complete_sweep"] is True
    assert result["metrics"]["api_retries"] == 2
    assert server.stats()["script"][0]["fired"] == 2
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(100,)]
    assert {str(i) for i in catalogue.campaign_ids()} == {r[0] for r in sql("SELECT trackier_id FROM offers")}
    assert page_errors(sql, "run-flaky") == []


def test_case_6_error_recovery_retry_after_is_honoured(fake_trackier) -> None:
    """A 429 with ``Retry-After: 1.5`` makes the client wait 1.5 s (wall clock), not its 10-50 ms backoff."""
    server = fake_trackier(
        Catalogue(2, 30, seed=1), retry_after=1.5, script=[{"path": "/v2/campaigns", "times": 1, "fault": "429"}]
    )
    client = TrackierClient(trackier_settings(server, page_size=10))

    started = time.monotonic()
    page = client.fetch_page("campaigns", page=1)
    waited = time.monotonic() - started

    assert len(page.records) == 10
    assert waited >= 1.5, f"retried after {waited:.3f}s, before the server's Retry-After of 1.5s"
    assert (client.stats.requests, client.stats.retries, client.stats.wait_s) == (2, 1, 1.5)
    assert server.stats()["by_status"] == {"429": 1, "200": 1}


def test_case_6_error_recovery_retry_after_as_http_date_and_capped(fake_trackier) -> None:
    """``Retry-After`` as an HTTP date is honoured too; an absurd value is capped (max_retry_after_s)."""
    server = fake_trackier(
        Catalogue(2, 30, seed=1),
        retry_after=formatdate(time.time() + 3, usegmt=True),
        script=[{"path": "/v2/campaigns", "times": 1, "fault": "429"}],
    )
    client = TrackierClient(trackier_settings(server, page_size=10))
    started = time.monotonic()
    client.fetch_page("campaigns", page=1)
    assert time.monotonic() - started >= 1.0  # the date has one-second resolution: 2..3 s away
    assert client.stats.retries == 1

    server.configure(retry_after=3600, script=[{"path": "/v2/campaigns", "times": 1, "fault": "429"}])
    capped = TrackierClient(trackier_settings(server, page_size=10, max_retry_after_s=0.2))
    started = time.monotonic()
    capped.fetch_page("campaigns", page=1)
    assert capped.stats.wait_s == 0.2
    assert time.monotonic() - started < 60, "an hour-long Retry-After must not stall the nightly run"


@pytest.mark.parametrize(
    ("knobs", "server_key", "expected"),
    [
        ({}, "the-real-key", ["code 13", "invalid API key", "password of the trackier_api connection"]),
        ({"ip_not_whitelisted": True}, TEST_API_KEY, ["code 41", "IP not whitelisted", "allow-list"]),
    ],
    ids=["wrong_key_400_code_13", "ip_not_whitelisted_403_code_41"],
)
def test_case_6_error_recovery_auth_errors_fail_at_once_without_leaking_the_key(
    knobs, server_key, expected, fake_trackier, offers_db, sql, caplog
) -> None:
    """Bad credentials are not retried: one request, an actionable message, and the key nowhere."""
    caplog.set_level("DEBUG")
    server = fake_trackier(Catalogue(2, 30, seed=1), api_key=server_key, **knobs)
    api = trackier_settings(server, page_size=10)

    with pytest.raises(TrackierAuthError) as probe_error:
        tasks.plan_entity(api, "campaigns")
    assert server.stats()["total"] == 1, "a bad key or a blocked IP must not be asked again"
    for fragment in expected:
        assert fragment in str(probe_error.value)

    # The same through an extract (cursor style: no probe first), with the run record open.
    server.reset_stats()
    run = tasks.start_sync(offers_db, run_id="run-auth", dag_id=DAG_ID, params=dict(DEFAULT_PARAMS))
    shard = cursor_shard()
    with pytest.raises(TrackierAuthError) as extract_error:
        tasks.extract_shard(offers_db, api, run, shard)
    assert server.stats()["total"] == 1
    assert sql("SELECT count(*) FROM sync_page_errors") == [(0,)], "not a page failure: the whole run stops"

    # The key is in no log record, no exception text or traceback, and no table.
    for error in (probe_error.value, extract_error.value):
        text = "".join(traceback.format_exception(error)) + repr(error)
        assert TEST_API_KEY not in text
    assert TEST_API_KEY not in caplog.text
    assert TEST_API_KEY not in repr(api)
    assert TEST_API_KEY not in repr(TrackierClient(api))
    assert_key_in_no_table(sql, TEST_API_KEY)


def test_case_6_error_recovery_page_failing_for_good_is_recorded_and_a_later_run_heals(
    fake_trackier, offers_db, sql
) -> None:
    """Page 7 of 30 never answers: the other 29 are stored, nothing is deactivated, the next run heals."""
    catalogue = Catalogue(5, 600, seed=8)
    server = fake_trackier(catalogue)
    api = trackier_settings(server, page_size=20)
    assert run_sync(offers_db, api, "run-1")["added"] == 600

    removed = catalogue.remove_campaigns(ids=catalogue.campaign_ids()[-3:])  # on the last page
    catalogue.add_campaigns(2)
    server.configure(script=[{"path": "/v2/campaigns", "page": 7, "times": -1, "fault": "503"}])
    result = run_sync(offers_db, api, "run-2")

    assert result["status"] == "completed_with_errors"
    assert result["complete_sweep"] is False
    assert result["failed_pages"] == 1
    assert result["deactivated"] == 0, "an incomplete sweep cannot know what is gone"
    assert (result["added"], result["unchanged"]) == (2, 577)  # 599 live, 20 on page 7 unread, 2 new
    assert result["campaigns_processed"] == 599 - 20
    ((entity, page, kind, error),) = page_errors(sql, "run-2")
    assert (entity, page, kind) == ("campaigns", 7, "failed_page")
    assert "503" in error
    assert sql("SELECT attempts FROM sync_page_errors WHERE run_id = 'run-2'") == [(api.max_retries + 1,)]
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(602,)]
    assert result["problems"]
    assert "page 7" in result["problems"][0]
    assert sql("SELECT status, error IS NOT NULL FROM sync_runs WHERE run_id = 'run-2'") == [
        ("completed_with_errors", True)
    ]

    server.configure(script=[])
    healed = run_sync(offers_db, api, "run-3")
    assert healed["status"] == "completed"
    assert (healed["added"], healed["deactivated"], healed["unchanged"]) == (0, 3, 599)
    assert sorted(r[0] for r in sql("SELECT trackier_id FROM offers WHERE NOT is_active")) == sorted(
        str(i) for i in removed
    )


def _sync_with_removals(catalogue: Catalogue, server: Any, api: Any, db: DatabaseSettings, **knobs: Any) -> dict:
    """A clean first run, then 3 campaigns vanish and a faulty second run: the guard must stop deactivation."""
    assert run_sync(db, api, "run-1")["status"] == "completed"
    catalogue.remove_campaigns(ids=catalogue.campaign_ids()[:3])
    server.configure(**knobs)
    return run_sync(db, api, "run-2")


def test_case_6_error_recovery_repeated_cursor_is_detected(fake_trackier, offers_db, sql) -> None:
    catalogue = Catalogue(3, 200, seed=2)
    server = fake_trackier(catalogue, pagination="cursor")
    # 200 is no multiple of 30: run 1's stream ends on a short page, which proves its end (sweep.py).
    api = trackier_settings(server, page_size=30, pagination="cursor")
    result = _sync_with_removals(catalogue, server, api, offers_db, repeat_cursor=2)

    assert result["status"] == "completed_with_errors"
    assert result["complete_sweep"] is False
    assert result["deactivated"] == 0
    kinds = [(e, k) for e, _, k, _ in page_errors(sql, "run-2")]
    assert kinds == [("campaigns", "repeated_cursor")]
    assert any("cursor already seen" in p for p in result["problems"])
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(200,)]


@pytest.mark.parametrize("pagination", ["page", "cursor"])
def test_case_6_error_recovery_page_cap_is_detected(pagination, fake_trackier, offers_db, sql) -> None:
    catalogue = Catalogue(3, 200, seed=2)
    server = fake_trackier(catalogue, pagination="both")
    api = trackier_settings(server, page_size=20, pagination=pagination)
    assert run_sync(offers_db, api, "run-1")["added"] == 200
    catalogue.remove_campaigns(ids=catalogue.campaign_ids()[:3])
    capped = trackier_settings(server, page_size=20, pagination=pagination, max_pages=4)
    result = run_sync(offers_db, capped, "run-2", max_error_rate=1.0)

    assert result["complete_sweep"] is False
    assert result["deactivated"] == 0
    assert result["status"] == "completed_with_errors"
    assert ("campaigns", "page_cap") in [(e, k) for e, _, k, _ in page_errors(sql, "run-2")]
    assert result["campaigns_processed"] == 80


def test_case_6_error_recovery_page_cap_inside_a_planned_range_is_reported_not_a_crash(
    fake_trackier, offers_db, sql
) -> None:
    """A planned page range longer than the cap (e.g. a lying total) is cut and reported, not a crash."""
    server = fake_trackier(Catalogue(3, 200, seed=2))
    api = trackier_settings(server, page_size=10, pages_per_shard=8, max_pages=5)
    result = run_sync(offers_db, api, "run-1", max_error_rate=1.0)
    assert result["complete_sweep"] is False
    assert result["status"] == "completed_with_errors"
    assert ("campaigns", "page_cap") in [(e, k) for e, _, k, _ in page_errors(sql, "run-1")]


def test_case_6_error_recovery_short_page_mid_stream_is_reported_and_the_rest_still_read(
    fake_trackier, offers_db, sql
) -> None:
    catalogue = Catalogue(3, 200, seed=2)
    server = fake_trackier(catalogue, pagination="page")
    api = trackier_settings(server, page_size=20, pagination="page")
    result = _sync_with_removals(catalogue, server, api, offers_db, short_page_at=3, short_page_size=5)

    assert result["complete_sweep"] is False
    assert result["deactivated"] == 0
    assert ("campaigns", 3, "short_page") in [(e, p, k) for e, p, k, _ in page_errors(sql, "run-2")]
    # The pages after the short one were still read: 197 live campaigns, 15 not served by page 3.
    assert result["campaigns_processed"] == 197 - 15
    assert result["unchanged"] == 197 - 15


def test_case_6_error_recovery_total_mismatch_is_detected(fake_trackier, offers_db, sql) -> None:
    catalogue = Catalogue(3, 200, seed=2)
    server = fake_trackier(catalogue, pagination="page")
    api = trackier_settings(server, page_size=20, pagination="page")
    result = _sync_with_removals(catalogue, server, api, offers_db, total_lie=7)

    assert result["complete_sweep"] is False
    assert result["deactivated"] == 0
    assert result["status"] == "completed_with_errors"
    assert "campaigns: the API reported 204 records, the sweep received 197" in result["problems"]
    assert sql("SELECT error FROM sync_runs WHERE run_id = 'run-2'")[0][0].count("reported 204") == 1


def test_case_6_error_recovery_connection_killed_mid_merge_changes_nothing_and_the_retry_completes(
    fake_trackier, offers_db, offers_db_url, sql
) -> None:
    catalogue = Catalogue(5, 150, seed=12)
    server = fake_trackier(catalogue)
    api = trackier_settings(server, page_size=25)
    run_sync(offers_db, api, "run-1")

    ids = catalogue.campaign_ids()
    victim = ids[10]
    rules = catalogue.get_campaign(victim)["payouts"]
    catalogue.set_campaign(victim, payouts=[{**rules[0], "payout": rules[0]["payout"] + 1}, *rules[1:]])
    catalogue.set_campaign(ids[11], title="Renamed mid-merge")
    catalogue.set_advertiser(catalogue.advertiser_ids()[0], name="Brand renamed")
    catalogue.remove_campaigns(ids=ids[:4])
    catalogue.add_campaigns(6)
    staged = stage(offers_db, api, "run-2")
    before = dump(sql, *LIVE_TABLES)
    run_before = sql("SELECT status, merged_at, added, result FROM sync_runs WHERE run_id = 'run-2'")

    # Hold a row lock on the victim offer: the merge writes brands, then blocks inside the offers merge.
    with psycopg.connect(offers_db_url) as blocker:
        blocker.execute("SELECT 1 FROM offers WHERE trackier_id = %s FOR UPDATE", (str(victim),))
        worker = Worker(lambda: merge_and_finish(offers_db, staged))
        worker.start()
        pid = wait_for(
            lambda: sql("""SELECT pid FROM pg_stat_activity
                                      WHERE application_name = 'trackier_offer_sync' AND wait_event_type = 'Lock'
                                        AND datname = current_database() AND query ILIKE '%%INTO offers%%'"""),
            "the merge to block inside the offers statement",
        )[0][0]
        # It really is mid-merge: it already holds the write lock it took to upsert brands.
        assert sql(
            """SELECT mode FROM pg_locks WHERE pid = %s AND relation = 'brands'::regclass
                      AND mode = 'RowExclusiveLock'""",
            (pid,),
        ) == [("RowExclusiveLock",)]
        assert sql("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
        worker.join(30)
        blocker.rollback()

    assert isinstance(worker.error, DatabaseUnavailableError), worker.error
    assert "offers database" in str(worker.error)
    assert dump(sql, *LIVE_TABLES) == before, "a killed merge must leave the catalogue exactly as it was"
    assert sql("SELECT status, merged_at, added, result FROM sync_runs WHERE run_id = 'run-2'") == run_before

    # The task's retry: the same merge again, exact counts, then the run closes.
    result = merge_and_finish(offers_db, staged)
    assert result["status"] == "completed"
    assert (result["added"], result["updated"], result["deactivated"], result["unchanged"]) == (6, 2, 4, 144)
    assert (result["brands_added"], result["brands_updated"]) == (0, 1)
    assert sql("SELECT count(*) FROM offer_audit WHERE run_id = 'run-2'") == [(12,)]
    assert sql("SELECT title FROM offers WHERE trackier_id = %s", (str(ids[11]),)) == [("Renamed mid-merge",)]


def test_case_6_error_recovery_rerunning_the_tasks_of_a_finished_run_changes_nothing(
    fake_trackier, offers_db, sql
) -> None:
    """Clearing any task of a finished run (Airflow "Clear") and running it again: same final state."""
    catalogue = Catalogue(4, 120, seed=31)
    server = fake_trackier(catalogue, invalid_ids=[catalogue.campaign_ids()[7]], invalid_kind="negative_payout")
    api = trackier_settings(server, page_size=25)
    run_sync(offers_db, api, "run-1", max_error_rate=0.5)
    catalogue.remove_campaigns(ids=catalogue.campaign_ids()[:2])
    catalogue.add_campaigns(3)
    staged = stage(offers_db, api, "run-2", max_error_rate=0.5)
    first = merge_and_finish(offers_db, staged)
    assert (first["added"], first["deactivated"], first["rejected"]) == (3, 2, 1)

    def state() -> dict[str, Any]:
        return {
            **dump(sql, *LIVE_TABLES, "sync_rejects", "sync_page_errors"),
            "sync_runs": sql("""SELECT run_id, status, merged_at, finished_at, added, updated, unchanged,
                                       deactivated, rejected, error, result - 'metrics' - 'duration_s'
                                FROM sync_runs ORDER BY run_id"""),
            "staging": sql("SELECT relname FROM pg_class WHERE relname LIKE 'offer\\_sync\\_stg\\_%%'"),
        }

    final = state()
    rejects = sql("SELECT record_key, reason FROM sync_rejects WHERE run_id = 'run-2'")
    assert len(rejects) == 1

    # Each task alone, then all of them in DAG order (a clear with downstream tasks).
    run, shards, summaries, sweep = staged["run"], staged["shards"], staged["summaries"], staged["sweep"]
    p = staged["params"]
    again = tasks.merge_catalogue(offers_db, run, sweep, deactivate_missing=True, dry_run=False)
    assert again["already_merged"] is True
    assert (again["added"], again["deactivated"]) == (3, 2), "a re-run merge reports the recorded counts"
    assert state() == final
    assert tasks.publish_result(offers_db, run, summaries, sweep, again)["status"] == first["status"]
    assert state() == final
    tasks.check_sweep(offers_db, run, summaries, float(p["max_error_rate"]))
    assert state() == final
    tasks.extract_shard(offers_db, api, run, shards[-1])
    assert state() == final
    rerun = stage(offers_db, api, "run-2", max_error_rate=0.5)
    result = merge_and_finish(offers_db, rerun)
    assert state() == final
    for key in ("status", "added", "updated", "unchanged", "deactivated", "rejected", "campaigns_processed"):
        assert result[key] == first[key], key


def test_case_6_error_recovery_tasks_cleared_between_merge_and_publish_finish_the_run_as_recorded(
    fake_trackier, offers_db, sql
) -> None:
    """publish_result failed after the merge committed; extract and check_sweep are cleared and re-run."""
    catalogue = Catalogue(3, 100, seed=5)
    server = fake_trackier(catalogue, script=[{"path": "/v2/campaigns", "page": 2, "times": -1, "fault": "502"}])
    api = trackier_settings(server, page_size=20)
    staged = stage(offers_db, api, "run-1", max_error_rate=0.5)
    p = staged["params"]
    merged = tasks.merge_catalogue(offers_db, staged["run"], staged["sweep"], deactivate_missing=True, dry_run=False)
    assert sql("SELECT status, merged_at IS NOT NULL FROM sync_runs") == [("running", True)]
    page_errors_before = sql("SELECT * FROM sync_page_errors ORDER BY id")
    assert [(r[2], r[4], r[6]) for r in page_errors_before] == [("campaigns", 2, "failed_page")]

    server.configure(script=[])  # the API behaves now: a re-fetch would tell a different story
    server.reset_stats()
    summaries = [tasks.extract_shard(offers_db, api, staged["run"], shard) for shard in staged["shards"]]
    assert server.stats()["total"] == 0, "nothing is fetched for a run that already merged"
    sweep = tasks.check_sweep(offers_db, staged["run"], summaries, float(p["max_error_rate"]))
    for key in ("complete_sweep", "failed_pages", "rejected", "campaigns_processed", "problems"):
        assert sweep[key] == staged["sweep"][key], key
    result = tasks.publish_result(offers_db, staged["run"], summaries, sweep, merged)

    assert result["status"] == "completed_with_errors"
    assert (result["complete_sweep"], result["failed_pages"]) == (False, 1)
    assert (result["added"], result["campaigns_processed"]) == (80, 80)
    assert sql("SELECT * FROM sync_page_errors ORDER BY id") == page_errors_before


def test_case_6_error_recovery_staging_of_dead_runs_is_still_cleaned_up(fake_trackier, offers_db, sql) -> None:
    """In-flight runs keep their staging; failed ones and runs 'running' for hours lose it."""
    server = fake_trackier(Catalogue(2, 40, seed=9), invalid_rate=0.5)
    api = trackier_settings(server, page_size=20)
    with pytest.raises(SweepRejectedError):
        stage(offers_db, api, "run-tripped")  # the breaker: status failed, staging left behind
    server.configure(invalid_rate=0.0)
    stage(offers_db, api, "run-stuck")
    sql("UPDATE sync_runs SET started_at = now() - interval '7 hours' WHERE run_id = 'run-stuck'")
    stage(offers_db, api, "run-in-flight")

    def staged_runs() -> set[str]:
        keys = {r[0][15:31] for r in sql("SELECT relname FROM pg_class WHERE relname LIKE 'offer\\_sync\\_stg\\_%%'")}
        return {
            run_id
            for run_id in ("run-tripped", "run-stuck", "run-in-flight", "run-next")
            if StagingTables.for_run(run_id).run_key in keys
        }

    # run-in-flight's start dropped the tripped run's tables and those of the run stuck for 7 hours.
    assert staged_runs() == {"run-in-flight"}
    stage(offers_db, api, "run-next")
    assert staged_runs() == {"run-in-flight", "run-next"}, "a run in flight keeps its tables"


def test_case_6_error_recovery_overlapping_merges_are_serialized(fake_trackier, offers_db, offers_db_url, sql) -> None:
    """Two runs in flight at once (nightly + manual): their merges queue on the advisory lock."""
    catalogue = Catalogue(4, 100, seed=17)
    server = fake_trackier(catalogue)
    api = trackier_settings(server, page_size=25)
    nightly = stage(offers_db, api, "run-nightly")
    catalogue.add_campaigns(5)
    catalogue.remove_campaigns(ids=catalogue.campaign_ids()[:2])
    manual = stage(offers_db, api, "run-manual")  # starts while the nightly run is still in flight

    with psycopg.connect(offers_db_url, autocommit=True) as holder:
        holder.execute(MERGE_LOCK)
        first = Worker(lambda: merge_and_finish(offers_db, nightly))
        first.start()
        wait_for(lambda: len(waiting_merges(sql)) == 1, "the nightly merge to queue on the lock")
        second = Worker(lambda: merge_and_finish(offers_db, manual))
        second.start()
        wait_for(lambda: len(waiting_merges(sql)) == 2, "the manual merge to queue behind it")
        assert sql("SELECT count(*) FROM offers") == [(0,)], "nothing merged while the lock is held"
        holder.execute(MERGE_UNLOCK)
        first.join(60)
        second.join(60)

    assert (first.error, second.error) == (None, None)
    a, b = first.result, second.result
    assert (a["added"], a["deactivated"], a["unchanged"]) == (100, 0, 0)
    assert (b["added"], b["deactivated"], b["unchanged"]) == (5, 2, 98)
    merged = sql("SELECT run_id FROM sync_runs WHERE merged_at IS NOT NULL ORDER BY merged_at")
    assert merged == [("run-nightly",), ("run-manual",)]
    assert sql("SELECT count(*), count(*) FILTER (WHERE is_active) FROM offers") == [(105, 103)]
    assert sql("SELECT run_id, action, count(*) FROM offer_audit GROUP BY 1, 2 ORDER BY 1, 2") == [
        ("run-manual", "deactivated", 2),
        ("run-manual", "inserted", 5),
        ("run-nightly", "inserted", 100),
    ]


def test_case_6_error_recovery_database_outage_is_a_clear_retryable_error(closed_port, fake_trackier) -> None:
    db = DatabaseSettings(conninfo=f"postgresql://postgres:s3cret@127.0.0.1:{closed_port}/offers")
    with pytest.raises(DatabaseUnavailableError) as error:
        tasks.start_sync(db, run_id="run-x", dag_id=DAG_ID, params=dict(DEFAULT_PARAMS))
    message = str(error.value)
    assert f"127.0.0.1:{closed_port}" in message
    assert "offers_db" in message
    assert "cannot connect" in message
    assert "s3cret" not in message
    # Every stage that touches the database says the same.
    server = fake_trackier(Catalogue(1, 5, seed=1))
    api = trackier_settings(server, page_size=5)
    shard = tasks.plan_entity(api, "campaigns")[0]
    with pytest.raises(DatabaseUnavailableError, match=f"127.0.0.1:{closed_port}"):
        tasks.extract_shard(db, api, {"run_id": "run-x"}, shard)
