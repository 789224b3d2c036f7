"""A worker process that dies or hangs in the middle of the merge leaves the catalogue untouched and
does not block the next merge.

The merge runs in a real process of its own (``tests/merge_process.py``: the ``merge_catalogue`` and
``publish_result`` task bodies), against a real PostgreSQL database. The test pauses it inside the
merge transaction, after it has written brands and offers, by holding a row lock on an offer the
merge is about to deactivate; then it kills the process with SIGKILL (a crash, the OOM killer) or
stops it with SIGSTOP (a hung worker). What must hold:

- the killed worker's backend goes away by itself, releasing the merge lock, even while its
  statement is still waiting (``client_connection_check_interval``); the stopped worker's session
  is ended by ``idle_in_transaction_session_timeout`` once its statement has finished;
- ``brands``, ``offers``, ``offer_audit`` and the run record are exactly as before;
- the next merge (the task's retry) takes the lock well within ``lock_timeout`` and merges with
  exact counts; the stopped worker, resumed, writes nothing and fails with the timeout's name.

The same, with a real Airflow scheduler killing a real task process, is in
``test_a_task_process_killed_mid_merge_under_the_scheduler_is_retried_and_merges``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from devtools.airflow_run import REPO_ROOT
from devtools.airflow_server import live_airflow
from devtools.fake_trackier import Catalogue
from devtools.inline import run_sync
from include.offer_sync.settings import DatabaseSettings
from tests.db.test_recovery import LIVE_TABLES, dump, merge_and_finish, stage, wait_for
from tests.helpers import trackier_settings

Sql = Callable[..., list[tuple[Any, ...]]]


def _prepare(fake_trackier: Any, offers_db: DatabaseSettings) -> tuple[dict[str, Any], list[Any]]:
    """Run 1 synced; the catalogue then changes (2 updates, 1 brand rename, 4 removed, 6 added); run 2
    is staged and checked, ready to merge. Returns run 2's staged state and the campaign ids of run 1."""
    catalogue = Catalogue(5, 150, seed=12)
    server = fake_trackier(catalogue)
    api = trackier_settings(server, page_size=25)
    run_sync(offers_db, api, "run-1")
    ids = catalogue.campaign_ids()
    rules = catalogue.get_campaign(ids[10])["payouts"]
    catalogue.set_campaign(ids[10], payouts=[{**rules[0], "payout": rules[0]["payout"] + 1}, *rules[1:]])
    catalogue.set_campaign(ids[11], title="Renamed\tmid-merge")
    catalogue.set_advertiser(catalogue.advertiser_ids()[0], name="Brand renamed")
    catalogue.remove_campaigns(ids=ids[:4])
    catalogue.add_campaigns(6)
    return stage(offers_db, api, "run-2"), ids


def _assert_run_2_merged(result: dict[str, Any], sql: Sql, ids: list[Any]) -> None:
    assert result["status"] == "completed"
    assert (result["added"], result["updated"], result["deactivated"], result["unchanged"]) == (6, 2, 4, 144)
    assert (result["brands_added"], result["brands_updated"]) == (0, 1)
    assert sql("SELECT count(*) FROM offer_audit WHERE run_id = 'run-2'") == [(12,)]
    assert sql("SELECT title FROM offers WHERE trackier_id = %s", (str(ids[11]),)) == [("Renamed\tmid-merge",)]


@pytest.fixture
def merge_process(tmp_path: Path, offers_db_url: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``tests.merge_process`` for a staged run; every process started is killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(staged: dict[str, Any], **env: str) -> subprocess.Popen[str]:
        path = tmp_path / f"staged-{len(started)}.json"
        path.write_text(
            json.dumps({**{k: staged[k] for k in ("run", "sweep", "summaries", "params")}, "db_url": offers_db_url})
        )
        environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.merge_process", str(path)],
            cwd=REPO_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _blocked_merge_backend(sql: Sql) -> int:
    """The merge's backend once it waits on our row lock, after it wrote brands and offers."""
    pid = wait_for(
        lambda: sql("""SELECT pid FROM pg_stat_activity WHERE application_name = 'trackier_offer_sync'
                                    AND datname = current_database() AND wait_event_type = 'Lock'"""),
        "the merge to block on the held offer row",
        timeout=60,
    )[0][0]
    written = sql(
        """SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                     WHERE l.pid = %s AND l.mode = 'RowExclusiveLock' AND c.relname IN ('brands', 'offers')
                     ORDER BY 1""",
        (pid,),
    )
    assert written == [("brands",), ("offers",)], "it is mid-merge: it has written brands and offers"
    assert sql("""SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND granted""", (pid,)) == [
        (1,)
    ], "it holds the merge lock"
    return int(pid)


def _gone(sql: Sql, pid: int) -> bool:
    return not sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))


def _process_state(pid: int) -> str:
    """The kernel's one-letter state of a process (``T``: stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def test_a_merge_process_killed_with_sigkill_changes_nothing_and_the_next_merge_proceeds(
    fake_trackier, offers_db, offers_db_url, sql, merge_process, monkeypatch
) -> None:
    staged, ids = _prepare(fake_trackier, offers_db)
    before = dump(sql, *LIVE_TABLES)
    run_before = sql("SELECT status, merged_at, added, result FROM sync_runs WHERE run_id = 'run-2'")

    with psycopg.connect(offers_db_url) as blocker:
        # ids[0] left the feed: the merge writes brands and offers, then waits here to deactivate it.
        blocker.execute("SELECT 1 FROM offers WHERE trackier_id = %s FOR UPDATE", (str(ids[0]),))
        worker = merge_process(staged, OFFER_SYNC_CLIENT_CHECK_INTERVAL="1s")
        pid = _blocked_merge_backend(sql)

        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(30) == -signal.SIGKILL
        # Still blocked on our lock, yet the backend notices its client is gone and ends, freeing the
        # merge lock: without client_connection_check_interval it would wait on, holding it.
        wait_for(lambda: _gone(sql, pid), "the killed worker's backend to end", timeout=60)
        assert dump(sql, *LIVE_TABLES) == before, "a merge killed mid-way leaves the catalogue exactly as it was"
        assert sql("SELECT status, merged_at, added, result FROM sync_runs WHERE run_id = 'run-2'") == run_before
        blocker.rollback()

    # The task's retry: a short lock_timeout proves it does not wait for anything the dead worker held.
    monkeypatch.setenv("OFFER_SYNC_LOCK_TIMEOUT", "5s")
    _assert_run_2_merged(merge_and_finish(offers_db, staged), sql, ids)


def test_a_hung_merge_process_is_cut_off_by_the_idle_in_transaction_timeout_and_the_next_merge_proceeds(
    fake_trackier, offers_db, offers_db_url, sql, merge_process, monkeypatch
) -> None:
    staged, ids = _prepare(fake_trackier, offers_db)
    before = dump(sql, *LIVE_TABLES)

    with psycopg.connect(offers_db_url) as blocker:
        blocker.execute("SELECT 1 FROM offers WHERE trackier_id = %s FOR UPDATE", (str(ids[0]),))
        worker = merge_process(staged, OFFER_SYNC_IDLE_IN_TRANSACTION_TIMEOUT="1s")
        pid = _blocked_merge_backend(sql)
        os.kill(worker.pid, signal.SIGSTOP)  # hung: alive, connected, never sends another statement
        wait_for(lambda: _process_state(worker.pid) == "T", "the worker to stop")
        blocker.rollback()  # its statement finishes; its transaction then sits idle with the merge lock

    wait_for(lambda: _gone(sql, pid), "the server to end the idle transaction", timeout=60)
    assert dump(sql, *LIVE_TABLES) == before, "the hung merge's writes were rolled back"

    monkeypatch.setenv("OFFER_SYNC_LOCK_TIMEOUT", "5s")
    _assert_run_2_merged(merge_and_finish(offers_db, staged), sql, ids)
    after = dump(sql, *LIVE_TABLES)

    # Resumed, the hung worker finds its session ended: it fails and writes nothing. What it is told
    # depends on a race: the server's FATAL 25P03 message ("idle-in-transaction timeout") when it reads
    # it, or only "server closed the connection" when its next statement meets the closed socket first
    # (the reset discards the unread message).
    os.kill(worker.pid, signal.SIGCONT)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode != 0, out
    failure = re.search(r"^include\.offer_sync\.errors\.(\w+): (.*)", err, re.MULTILINE)
    assert failure, err[-2000:]
    assert failure[1] in ("DatabaseTimeoutError", "DatabaseUnavailableError"), err[-2000:]
    if failure[1] == "DatabaseTimeoutError":
        assert "idle_in_transaction_session_timeout = 1s" in failure[2]
    else:
        assert failure[2].startswith("lost the connection to the offers database")
    assert dump(sql, *LIVE_TABLES) == after


def _task_process_of_backend(af: Any, backend_pid: int) -> psutil.Process:
    """The process, among the scheduler's descendants (LocalExecutor forks the task processes), whose
    database connection is served by ``backend_pid``: matched by the backend's client port."""
    port = af.sql("SELECT client_port FROM pg_stat_activity WHERE pid = %s", (backend_pid,))[0][0]
    scheduler = psutil.Process(af.processes["scheduler"].pid)
    owners = [p for p in scheduler.children(recursive=True) if _has_local_port(p, port)]
    assert len(owners) == 1, owners
    return owners[0]


def _has_local_port(process: psutil.Process, port: int) -> bool:
    """Whether ``process`` has a TCP connection from local ``port``; a process that ended while we
    looked (the scheduler forks and reaps short-lived children all the time) has none."""
    try:
        return any(c.laddr and c.laddr.port == port for c in process.net_connections(kind="tcp"))
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


@pytest.mark.airflow
def test_a_task_process_killed_mid_merge_under_the_scheduler_is_retried_and_merges(pg_admin_url) -> None:
    """The real thing: LocalExecutor runs merge_catalogue in its own task process; SIGKILL it mid-merge."""
    catalogue = Catalogue(5, 150, seed=12)
    env = {"OFFER_SYNC_RETRY_DELAY_S": "1", "OFFER_SYNC_CLIENT_CHECK_INTERVAL": "1s", "OFFER_SYNC_LOCK_TIMEOUT": "30s"}
    with live_airflow(pg_admin_url, catalogue, extra_env=env) as af:
        af.unpause_and_settle()  # the catch-up run of the nightly schedule: the first sync
        assert af.sql("SELECT count(*) FROM offers") == [(150,)]
        ids = catalogue.campaign_ids()
        rules = catalogue.get_campaign(ids[10])["payouts"]
        catalogue.set_campaign(ids[10], payouts=[{**rules[0], "payout": rules[0]["payout"] + 1}, *rules[1:]])
        catalogue.set_campaign(ids[11], title="Renamed\tmid-merge")
        catalogue.set_advertiser(catalogue.advertiser_ids()[0], name="Brand renamed")
        catalogue.remove_campaigns(ids=ids[:4])
        catalogue.add_campaigns(6)
        before = dump(af.sql, *LIVE_TABLES)

        with psycopg.connect(af.offers_db_url) as blocker:
            blocker.execute("SELECT 1 FROM offers WHERE trackier_id = %s FOR UPDATE", (str(ids[0]),))
            run_id = af.trigger()
            backend = _blocked_merge_backend(af.sql)
            task = _task_process_of_backend(af, backend)
            [(ti_pid, try_number)] = af.metadata(
                "SELECT pid, try_number FROM task_instance WHERE run_id = %s AND task_id = 'merge_catalogue'", (run_id,)
            )
            assert (task.pid, try_number) == (ti_pid, 1), "the process holding the merge is merge_catalogue's task"

            task.kill()  # SIGKILL
            task.wait(30)
            wait_for(lambda: _gone(af.sql, backend), "the killed task's backend to end", timeout=60)
            assert dump(af.sql, *LIVE_TABLES) == before, "the killed merge left the catalogue exactly as it was"
            assert af.sql("SELECT merged_at FROM sync_runs WHERE run_id = %s", (run_id,)) == [(None,)]
            blocker.rollback()

        run = af.wait_for_run(run_id, timeout=300)
        assert run["state"] == "success"
        [(state, tries)] = af.metadata(
            "SELECT state, try_number FROM task_instance WHERE run_id = %s AND task_id = 'merge_catalogue'", (run_id,)
        )
        assert (state, tries) == ("success", 2), "Airflow retried the killed task, and the retry merged"
        result = af.return_value(run_id, "publish_result")
        assert result["status"] == "completed"
        assert (result["added"], result["updated"], result["deactivated"], result["unchanged"]) == (6, 2, 4, 144)
        assert af.sql("SELECT title FROM offers WHERE trackier_id = %s", (str(ids[11]),)) == [("Renamed\tmid-merge",)]
