"""Database errors are reported as what they are, and only a lost connection is a ``db_connection`` alert.

psycopg files a deadlock, a serialization failure, a lock or statement timeout, a cancelled query and
a full disk under ``OperationalError``, like a dropped connection. ``db.connect`` sorts them by
SQLSTATE into ``DatabaseConflictError`` (retried, quickly), ``DatabaseTimeoutError`` (names the
setting to raise), ``DatabaseCanceledError``, ``DatabaseResourceError`` and
``DatabaseUnavailableError`` (the only one the ``db_connection`` alert rule picks up). Every error
here is provoked for real on a real PostgreSQL server (two sessions deadlocking, a held lock, a
sleeping statement, ``pg_cancel_backend``, ``pg_terminate_backend``, an idle transaction, a real
``temp_file_limit``), except a full disk and an out-of-memory server, which cannot be caused on a
shared test machine: those are psycopg's own exception classes raised inside ``connect``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from devtools.fake_trackier import Catalogue
from include.offer_sync.alerts.rules import find_db_connection_error
from include.offer_sync.db import connect, session_settings
from include.offer_sync.errors import (
    ConfigurationError,
    DatabaseCanceledError,
    DatabaseConflictError,
    DatabaseError,
    DatabaseResourceError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    FatalSyncError,
)
from include.offer_sync.settings import DatabaseSettings
from tests.db.test_recovery import MERGE_LOCK, MERGE_UNLOCK, Worker, merge_and_finish, stage, wait_for
from tests.helpers import trackier_settings

Sql = Callable[..., list[tuple[Any, ...]]]


def waiting_on_a_lock(sql: Sql, pid: int) -> bool:
    return bool(sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'", (pid,)))


@pytest.fixture
def table(sql: Sql) -> str:
    sql("CREATE TABLE scratch (id int PRIMARY KEY, v int NOT NULL)")
    sql("INSERT INTO scratch VALUES (1, 0), (2, 0)")
    return "scratch"


def run_in_sync_session(db: DatabaseSettings, body: Callable[[psycopg.Connection[Any]], Any]) -> Worker:
    """Run ``body`` on a connection from ``db.connect`` in a thread; the worker keeps its error."""
    pid: list[int] = []

    def work() -> Any:
        with connect(db) as conn:
            pid.append(conn.info.backend_pid)
            with conn.transaction():
                return body(conn)

    worker = Worker(work)
    worker.pid = pid  # type: ignore[attr-defined]
    worker.start()
    return worker


def error_of(provoke: Callable[[], Any]) -> BaseException:
    """The exception ``provoke()`` raises (it must raise one)."""
    try:
        provoke()
    except BaseException as exc:
        return exc
    raise AssertionError("nothing was raised")


def in_session(db: DatabaseSettings, *statements: str, transaction: bool = False, pause_s: float = 0.0) -> None:
    """Run ``statements`` on one ``db.connect`` session, pausing ``pause_s`` before the last one."""
    with connect(db) as conn:
        if transaction:
            conn.execute("BEGIN")
        for i, statement in enumerate(statements):
            if i == len(statements) - 1:
                time.sleep(pause_s)
            conn.execute(statement)  # type: ignore[arg-type]


def running(sql: Sql, worker: Worker, statement: str) -> bool:
    """Whether the worker's session runs ``statement`` now."""
    pid = worker.pid  # type: ignore[attr-defined]
    return bool(pid) and bool(sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query = %s", (pid[0], statement)))


def assert_not_a_connection_alert(error: BaseException) -> None:
    assert isinstance(error, DatabaseError)
    assert not isinstance(error, DatabaseUnavailableError)
    assert not isinstance(error, FatalSyncError), "transient: Airflow's retry must run the task again"
    assert find_db_connection_error(error) is None, "the db_connection alert is for lost connections only"
    assert "lost the connection" not in str(error)


def test_a_real_deadlock_is_a_conflict_error_that_the_dag_retries_quickly(offers_db, offers_db_url, table, sql) -> None:
    reached_row_2 = threading.Event()

    def sync_side(conn: psycopg.Connection[Any]) -> None:
        conn.execute("SET LOCAL deadlock_timeout = '50ms'")  # this session runs the check: it is the victim
        conn.execute("UPDATE scratch SET v = 1 WHERE id = 1")
        reached_row_2.set()
        conn.execute("UPDATE scratch SET v = 1 WHERE id = 2")

    with psycopg.connect(offers_db_url) as other:
        other.execute("SET deadlock_timeout = '30s'")
        other.execute("UPDATE scratch SET v = 2 WHERE id = 2")
        worker = run_in_sync_session(offers_db, sync_side)
        reached_row_2.wait(10)
        wait_for(lambda: waiting_on_a_lock(sql, worker.pid[0]), "the sync session to wait for row 2")
        other.execute("UPDATE scratch SET v = 2 WHERE id = 1")  # closes the cycle; returns once the victim is gone
        other.commit()
        worker.join(30)

    error = worker.error
    assert isinstance(error, DatabaseConflictError), error
    assert error.sqlstate == "40P01"
    assert "broke a deadlock" in str(error)
    assert "SQLSTATE 40P01 deadlock_detected" in str(error)
    assert "nothing of it was stored" in str(error)
    assert_not_a_connection_alert(error)
    assert sql("SELECT v FROM scratch ORDER BY id") == [(2,), (2,)], "the sync's half was rolled back"

    # The DAG's retry policy retries it after seconds, not after the 30 s exponential backoff.
    from dags.trackier_offer_sync import NO_RETRY_ON_FATAL

    decision = NO_RETRY_ON_FATAL.evaluate(error, try_number=1, max_tries=4)
    assert (decision.action.value, decision.retry_delay.total_seconds()) == ("retry", 5.0)
    assert NO_RETRY_ON_FATAL.evaluate(ConfigurationError("x"), try_number=1, max_tries=4).action.value == "fail"


def test_a_real_serialization_failure_is_a_conflict_error(offers_db, offers_db_url, table, sql) -> None:
    read_done = threading.Event()
    other_done = threading.Event()

    def sync_side(conn: psycopg.Connection[Any]) -> None:
        # As under a database whose default_transaction_isolation is repeatable read.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SELECT v FROM scratch WHERE id = 1").fetchall()
        read_done.set()
        other_done.wait(10)
        conn.execute("UPDATE scratch SET v = v + 1 WHERE id = 1")

    worker = run_in_sync_session(offers_db, sync_side)
    read_done.wait(10)
    sql("UPDATE scratch SET v = 7 WHERE id = 1")  # autocommit: a concurrent, committed change
    other_done.set()
    worker.join(30)

    error = worker.error
    assert isinstance(error, DatabaseConflictError), error
    assert error.sqlstate == "40001"
    assert "could not serialize" in str(error)
    assert "default_transaction_isolation" in str(error)
    assert_not_a_connection_alert(error)


def test_a_real_lock_timeout_on_the_merge_lock_names_the_setting_and_the_retry_merges(
    fake_trackier, offers_db, offers_db_url, sql, monkeypatch
) -> None:
    """Another holder of the merge lock (here: the test) outlasts lock_timeout: the real merge task body
    fails with a timeout that says which variable to raise, and its retry merges once the lock is free."""
    server = fake_trackier(Catalogue(2, 30, seed=3))
    staged = stage(offers_db, trackier_settings(server, page_size=10), "run-lock")
    monkeypatch.setenv("OFFER_SYNC_LOCK_TIMEOUT", "300ms")

    with psycopg.connect(offers_db_url, autocommit=True) as holder:
        holder.execute(MERGE_LOCK)
        with pytest.raises(DatabaseTimeoutError) as raised:
            merge_and_finish(offers_db, staged)
        holder.execute(MERGE_UNLOCK)

    error = raised.value
    assert (error.sqlstate, error.setting, error.variable) == ("55P03", "lock_timeout", "OFFER_SYNC_LOCK_TIMEOUT")
    message = str(error)
    assert "waited longer than lock_timeout" in message
    assert "merge lock" in message
    assert "lock_timeout = 300ms" in message
    assert "raise OFFER_SYNC_LOCK_TIMEOUT" in message
    assert_not_a_connection_alert(error)
    assert sql("SELECT count(*) FROM offers") == [(0,)]

    result = merge_and_finish(offers_db, staged)  # the task's retry
    assert (result["status"], result["added"]) == ("completed", 30)


def test_a_real_statement_timeout_names_the_setting(offers_db, monkeypatch) -> None:
    monkeypatch.setenv("OFFER_SYNC_STATEMENT_TIMEOUT", "100ms")
    error = error_of(lambda: in_session(offers_db, "SELECT pg_sleep(5)"))
    assert isinstance(error, DatabaseTimeoutError), error
    assert (error.sqlstate, error.setting) == ("57014", "statement_timeout")
    assert error.variable == "OFFER_SYNC_STATEMENT_TIMEOUT"
    assert "ran longer than statement_timeout" in str(error)
    assert "statement_timeout = 100ms" in str(error)
    assert_not_a_connection_alert(error)


def test_a_statement_timeout_set_on_the_role_says_so(offers_db, offers_db_url, sql) -> None:
    """Unset OFFER_SYNC_STATEMENT_TIMEOUT leaves the database's own statement_timeout alone (a DBA's choice)."""
    database = offers_db_url.rsplit("/", 1)[1]
    sql(f"ALTER DATABASE \"{database}\" SET statement_timeout = '100ms'")
    with connect(offers_db) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("100ms",)
    error = error_of(lambda: in_session(offers_db, "SELECT pg_sleep(5)"))
    assert isinstance(error, DatabaseTimeoutError), error
    assert "statement_timeout is the role's or database's own value" in str(error)
    assert "ALTER ROLE ... SET statement_timeout" in str(error)


def test_a_query_cancelled_by_pg_cancel_backend_is_reported_as_cancelled(offers_db, sql) -> None:
    worker = run_in_sync_session(offers_db, lambda conn: conn.execute("SELECT pg_sleep(30)"))
    wait_for(lambda: running(sql, worker, "SELECT pg_sleep(30)"), "the statement to run")
    assert sql("SELECT pg_cancel_backend(%s)", (worker.pid[0],)) == [(True,)]  # type: ignore[attr-defined]
    worker.join(30)
    error = worker.error
    assert isinstance(error, DatabaseCanceledError), error
    assert error.sqlstate == "57014"
    assert "pg_cancel_backend" in str(error)
    assert "canceling statement due to user request" in str(error)
    assert_not_a_connection_alert(error)


def test_a_session_idle_in_its_transaction_is_ended_by_the_server_and_reported_as_that_timeout(
    offers_db, monkeypatch
) -> None:
    monkeypatch.setenv("OFFER_SYNC_IDLE_IN_TRANSACTION_TIMEOUT", "200ms")
    # A stalled worker: 1.5 s between two statements of one transaction.
    error = error_of(lambda: in_session(offers_db, "SELECT 1", "SELECT 2", transaction=True, pause_s=1.5))
    assert isinstance(error, DatabaseTimeoutError), error
    assert (error.sqlstate, error.setting) == ("25P03", "idle_in_transaction_session_timeout")
    assert "OFFER_SYNC_IDLE_IN_TRANSACTION_TIMEOUT" in str(error)
    assert "= 200ms" in str(error)
    assert_not_a_connection_alert(error)


def test_a_terminated_backend_is_a_lost_connection_and_the_only_db_connection_alert(offers_db, sql) -> None:
    worker = run_in_sync_session(offers_db, lambda conn: conn.execute("SELECT pg_sleep(30)"))
    wait_for(lambda: running(sql, worker, "SELECT pg_sleep(30)"), "the statement to run")
    assert sql("SELECT pg_terminate_backend(%s)", (worker.pid[0],)) == [(True,)]  # type: ignore[attr-defined]
    worker.join(30)
    error = worker.error
    assert isinstance(error, DatabaseUnavailableError), error
    assert error.sqlstate == "57P01"
    assert str(error).startswith("lost the connection to the offers database at ")
    assert find_db_connection_error(error) is error


def test_a_real_temp_file_limit_is_a_resource_error(offers_db) -> None:
    """Class 53 for real: temp_file_limit (configuration_limit_exceeded), as a full disk would be reported."""
    error = error_of(
        lambda: in_session(
            offers_db,
            "SET temp_file_limit = '64kB'",
            "SET work_mem = '64kB'",
            "SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC",
        )
    )
    assert isinstance(error, DatabaseResourceError), error
    assert error.sqlstate == "53400"
    assert "temporary file size exceeds temp_file_limit" in str(error)
    assert_not_a_connection_alert(error)


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (
            psycopg.errors.DiskFull('could not extend file "base/16384/16397": No space left on device'),
            "is out of disk space: free space on the database server's data disk (SQLSTATE 53100 disk_full)",
        ),
        (
            psycopg.errors.OutOfMemory("out of memory"),
            "ran out of memory: give the server more memory or lower OFFER_SYNC_WORK_MEM (now 256MB)",
        ),
    ],
)
def test_a_full_disk_and_an_out_of_memory_server_are_reported_as_what_they_are(offers_db, error, says) -> None:
    """Cannot be provoked on a shared test machine: psycopg's own classes, raised inside a real session."""
    with pytest.raises(DatabaseResourceError) as raised, connect(offers_db):
        raise error
    assert says in str(raised.value)
    assert raised.value.__cause__ is error
    assert_not_a_connection_alert(raised.value)


def test_errors_about_the_data_or_our_sql_keep_psycopgs_own_exception(offers_db, table) -> None:
    with pytest.raises(psycopg.errors.UniqueViolation), connect(offers_db) as conn:
        conn.execute("INSERT INTO scratch VALUES (1, 0)")
    with pytest.raises(psycopg.errors.UndefinedTable), connect(offers_db) as conn:
        conn.execute("SELECT * FROM no_such_table")


def test_every_session_gets_the_timeouts_and_a_bad_value_is_a_configuration_error(offers_db, monkeypatch) -> None:
    shown = "SELECT current_setting(%s)"
    with connect(offers_db) as conn:
        values = {
            s: conn.execute(shown, (s,)).fetchone()[0]
            for s in (
                "lock_timeout",
                "idle_in_transaction_session_timeout",
                "client_connection_check_interval",
                "work_mem",
                "statement_timeout",
                "jit",
            )
        }
    assert values == {
        "lock_timeout": "5min",
        "idle_in_transaction_session_timeout": "2min",
        "client_connection_check_interval": "10s",
        "work_mem": "256MB",
        "statement_timeout": "0",
        "jit": "off",
    }

    monkeypatch.setenv("OFFER_SYNC_LOCK_TIMEOUT", "90s")
    monkeypatch.setenv("OFFER_SYNC_IDLE_IN_TRANSACTION_TIMEOUT", "0")  # 0 turns it off
    monkeypatch.setenv("OFFER_SYNC_CLIENT_CHECK_INTERVAL", "default")  # the server's own (PostgreSQL 13)
    assert "client_connection_check_interval" not in session_settings()
    with connect(offers_db) as conn:
        assert conn.execute(shown, ("lock_timeout",)).fetchone() == ("90s",)
        assert conn.execute(shown, ("idle_in_transaction_session_timeout",)).fetchone() == ("0",)
        assert conn.execute(shown, ("client_connection_check_interval",)).fetchone() == ("0",)

    for bad in ("5 minutes", "-1", "5min; DROP TABLE offers", "1e3"):
        monkeypatch.setenv("OFFER_SYNC_LOCK_TIMEOUT", bad)
        with pytest.raises(ConfigurationError, match="OFFER_SYNC_LOCK_TIMEOUT must be a PostgreSQL lock_timeout"):
            session_settings()
        with pytest.raises(ConfigurationError), connect(offers_db):
            pass
    assert issubclass(ConfigurationError, FatalSyncError), "a typo is not retried"


def test_the_merge_waits_on_a_merge_lock_within_lock_timeout_then_completes(
    fake_trackier, offers_db, offers_db_url, sql, monkeypatch
) -> None:
    """The lock timeout bounds the wait; it does not cut short a wait that ends in time."""
    server = fake_trackier(Catalogue(2, 20, seed=4))
    staged = stage(offers_db, trackier_settings(server, page_size=10), "run-wait")
    monkeypatch.setenv("OFFER_SYNC_LOCK_TIMEOUT", "30s")
    with psycopg.connect(offers_db_url, autocommit=True) as holder:
        holder.execute(MERGE_LOCK)
        worker = Worker(lambda: merge_and_finish(offers_db, staged))
        worker.start()
        wait_for(
            lambda: sql("""SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"""),
            "the merge to wait for the lock",
        )
        holder.execute(MERGE_UNLOCK)
        worker.join(60)
    assert worker.error is None, worker.error
    assert (worker.result["status"], worker.result["added"]) == ("completed", 20)
