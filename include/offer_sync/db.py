"""Database access: connections with clear errors, and SQL loaded from the ``.sql`` files beside us.

SQL lives in files a DBA can read; Python only fills in identifiers (the per-run staging tables,
through ``psycopg.sql.Identifier``) and binds values as parameters. Nothing from Trackier is ever
formatted into SQL text.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from include.offer_sync.constants import DAG_ID
from include.offer_sync.errors import (
    ConfigurationError,
    DatabaseCanceledError,
    DatabaseConflictError,
    DatabaseError,
    DatabaseResourceError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    is_connection_failure,
)
from include.offer_sync.settings import DatabaseSettings

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("sql")
#: pg_stat_activity.application_name of the sync's sessions.
APPLICATION_NAME = DAG_ID

# Per-session settings of every connection the sync opens: setting -> (environment variable, default).
# None as default leaves the server's (role's, database's) own value alone.
#
# - jit is off: our statements are few, large and run once; JIT compilation cost more than it saved
#   (about a second of a two-second merge at 100k offers).
# - work_mem: hash joins over a sweep want more than the default 4 MB to stay in memory.
# - lock_timeout bounds every lock wait, the merge lock (an advisory lock: another run merging, or a
#   dead worker's transaction) included, so that a stuck holder fails the waiting task with a clear
#   error and Airflow's retry instead of blocking every later run until the 2-hour run timeout. 5 min
#   is fifteen times the merge of a million offers (about 20 s, BENCHMARKS.md); a merge longer than
#   that only costs a waiting run a retry.
# - idle_in_transaction_session_timeout ends a session whose transaction sits idle: the sync never
#   waits on anything (an API, a webhook) inside a transaction, so an idle one means its worker hung
#   (stopped, swapped out, partitioned away) while holding the merge's locks. Shorter than
#   lock_timeout, so that a run waiting behind a hung worker gets the lock before it gives up.
# - client_connection_check_interval (PostgreSQL 14+) makes a backend notice, while a statement runs,
#   that its client process died (SIGKILL, OOM killer), and abort instead of finishing the statement
#   and keeping its locks until then.
# - statement_timeout is only set when asked for: a role may have one on purpose.
SESSION_SETTINGS: dict[str, tuple[str, str | None]] = {
    "work_mem": ("OFFER_SYNC_WORK_MEM", "256MB"),
    "lock_timeout": ("OFFER_SYNC_LOCK_TIMEOUT", "5min"),
    "idle_in_transaction_session_timeout": ("OFFER_SYNC_IDLE_IN_TRANSACTION_TIMEOUT", "2min"),
    "client_connection_check_interval": ("OFFER_SYNC_CLIENT_CHECK_INTERVAL", "10s"),
    "statement_timeout": ("OFFER_SYNC_STATEMENT_TIMEOUT", None),
}
_DURATION = re.compile(r"\d+(us|ms|s|min|h|d)?")
_MEMORY = re.compile(r"\d+(B|kB|MB|GB|TB)?")


def session_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The per-session settings in effect (``SESSION_SETTINGS`` with the environment applied).

    Values are checked here (a typo becomes a ``ConfigurationError`` naming the variable, not a
    refused connection) and must be plain PostgreSQL values: ``300ms``, ``5min``, ``0`` (off), ``256MB``;
    ``default`` leaves the setting to the server (e.g. ``client_connection_check_interval``, which
    PostgreSQL 13 and older do not know: setting it there would refuse every connection).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for setting, (variable, default) in SESSION_SETTINGS.items():
        raw = environ.get(variable)
        value = default if raw is None or not raw.strip() else raw.strip()
        if value is None or value.lower() == "default":
            continue
        pattern = _MEMORY if setting == "work_mem" else _DURATION
        if not pattern.fullmatch(value):
            example = "256MB" if setting == "work_mem" else "5min, 30s or 500ms (0 turns it off)"
            raise ConfigurationError(
                f"{variable} must be a PostgreSQL {setting} value such as {example}, got {value!r}"
            )
        values[setting] = value
    return values


def session_options(settings: Mapping[str, str]) -> str:
    """The libpq ``options`` string that applies ``settings`` (and ``jit=off``) to a new session."""
    return " ".join(["-c jit=off", *(f"-c {k}={v}" for k, v in settings.items())])


@cache
def load_sql(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def query(name: str, **identifiers: str) -> sql.Composed | sql.SQL:
    """``sql/<name>.sql`` with ``{placeholders}`` filled by quoted identifiers (table names only)."""
    text = sql.SQL(load_sql(name))  # type: ignore[arg-type]  # our own files, not user input
    if not identifiers:
        return text
    return text.format(**{k: sql.Identifier(v) for k, v in identifiers.items()})


class CountingCursor(psycopg.Cursor[Any]):
    """Counts the statements this process sends, for the run's measurements.

    ``execute``, ``stream`` and ``copy`` count one each, ``executemany`` one per parameter set (as PostgreSQL's
    ``pg_stat_statements`` would count its calls).
    """

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> CountingCursor:  # type: ignore[override]
        STATEMENTS.count += 1
        return super().execute(query, params, **kwargs)  # type: ignore[return-value]

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:  # type: ignore[override]
        params_seq = list(params_seq)
        STATEMENTS.count += len(params_seq)
        super().executemany(query, params_seq, **kwargs)

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        STATEMENTS.count += 1
        return super().stream(query, params, **kwargs)

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        STATEMENTS.count += 1
        return super().copy(statement, params, **kwargs)


class _StatementCounter:
    count: int = 0


STATEMENTS = _StatementCounter()


def session_parameters(conninfo: str, session: Mapping[str, str]) -> dict[str, str]:
    """Our libpq defaults, merged with what the connection itself sets instead of overwriting it.

    Keyword arguments to ``psycopg.connect`` replace the same keys of the conninfo string, so passing
    our ``options`` (``session_options``) would silently drop an ``options`` the operator put in the
    ``offers_db`` connection (``-c statement_timeout=...``). Both go in: ours first, the
    connection's after them, and PostgreSQL applies the last ``-c`` for a setting, so the
    connection's own value wins. ``application_name`` and ``connect_timeout`` are defaults only.
    """
    from psycopg.conninfo import conninfo_to_dict

    own = conninfo_to_dict(conninfo)
    params = {"application_name": APPLICATION_NAME, "connect_timeout": "10"}
    params = {key: value for key, value in params.items() if key not in own}
    ours = session_options(session)
    params["options"] = f"{ours} {own['options']}" if own.get("options") else ours
    return params


@contextmanager
def connect(settings: DatabaseSettings, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the offers database, with the sync's session settings.

    A refused connection, and any database error inside the block that is not about the data
    (a lost connection, a deadlock, a timeout, a full disk), becomes a ``DatabaseError`` subclass
    that says what happened and what to do (see ``classify_error``).
    """
    session = session_settings()
    try:
        conn = psycopg.connect(
            settings.conninfo,
            autocommit=autocommit,
            cursor_factory=CountingCursor,
            **session_parameters(settings.conninfo, session),
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailableError(
            f"cannot connect to the offers database at {settings.display}: {reason}. "
            "Check the offers_db connection (AIRFLOW_CONN_OFFERS_DB) and that the server is up.",
            exc.sqlstate,
        ) from exc
    try:
        if settings.schema:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
        yield conn
    except psycopg.Error as exc:
        error = classify_error(exc, settings.display, session, broken=conn.broken)
        if error is None:
            raise
        raise error from exc
    finally:
        conn.close()


# SQLSTATE -> condition name, for the ones the messages below name.
_CONDITIONS = {
    "40P01": "deadlock_detected",
    "40001": "serialization_failure",
    "55P03": "lock_not_available",
    "57014": "query_canceled",
    "25P03": "idle_in_transaction_session_timeout",
    "53100": "disk_full",
    "53200": "out_of_memory",
    "53400": "configuration_limit_exceeded",
    "57P01": "admin_shutdown",
    "57P02": "crash_shutdown",
    "57P03": "cannot_connect_now",
    "57P04": "database_dropped",
    "57P05": "idle_session_timeout",
    "53300": "too_many_connections",
}
_ROLLED_BACK = "The transaction was rolled back; nothing of it was stored."
# Timeouts: SQLSTATE -> (setting, what happened).
_TIMEOUTS = {
    "55P03": (
        "lock_timeout",
        "waited longer than lock_timeout for a lock another session held (another run "
        "merging holds the merge lock; a long transaction on brands or offers holds rows)",
    ),
    "57014": ("statement_timeout", "cancelled a statement that ran longer than statement_timeout"),
    "25P03": (
        "idle_in_transaction_session_timeout",
        "ended this session because its transaction sat idle longer than idle_in_transaction_session_timeout: "
        "the task process stalled (stopped, swapped out or cut off) in the middle of its work",
    ),
    "57P05": ("idle_session_timeout", "ended this session because it sat idle longer than idle_session_timeout"),
}


def classify_error(
    exc: psycopg.Error, where: str, session: Mapping[str, str], *, broken: bool = False
) -> DatabaseError | None:
    """The ``DatabaseError`` an operator should see for ``exc``, or None when it is about our SQL or
    the data (a bug, a constraint): those keep psycopg's own, precise exception.

    Sorted by SQLSTATE, not by psycopg's exception class: psycopg files deadlocks, lock and
    statement timeouts and a full disk under ``OperationalError``, along with a lost connection.
    ``where`` is the database as shown to operators, ``session`` the settings from ``session_settings``.
    """
    state = exc.sqlstate
    said = " ".join((exc.diag.message_primary or str(exc) or type(exc).__name__).split())[:300].rstrip(".")
    code = f"SQLSTATE {state} {_CONDITIONS.get(state or '', '')}".rstrip()
    db = f"the offers database at {where}"
    if state in ("40P01", "40001"):
        what = (
            "broke a deadlock by cancelling this transaction: another session locked the same rows in the "
            "opposite order"
            if state == "40P01"
            else "could not serialize this transaction with a concurrent one (the database runs it at "
            "REPEATABLE READ or SERIALIZABLE: see default_transaction_isolation)"
        )
        message = f"{db} {what} ({code}). {_ROLLED_BACK} This is transient: the task's retry runs it again."
        return DatabaseConflictError(f"{message} Server said: {said}", state)
    if state in _TIMEOUTS and (state != "57014" or "statement timeout" in said):
        setting, what = _TIMEOUTS[state]
        variable = SESSION_SETTINGS.get(setting, (None, None))[0]
        value = session.get(setting)
        now = f"{setting} = {value}" if value else f"{setting} is the role's or database's own value"
        change = f"raise {variable}, or ALTER ROLE ... SET {setting}" if variable else f"ALTER ROLE ... SET {setting}"
        message = (
            f"{db} {what} ({code}; {now}). {_ROLLED_BACK} The task's retry runs it again; "
            f"if this keeps happening, {change}."
        )
        return DatabaseTimeoutError(f"{message} Server said: {said}", state, setting=setting, variable=variable)
    if state == "57014":
        message = (
            f"{db} cancelled a statement on request ({code}): someone ran pg_cancel_backend on this session "
            f"or cancelled it from a tool. {_ROLLED_BACK}"
        )
        return DatabaseCanceledError(f"{message} Server said: {said}", state)
    if state is not None and state[:2] in ("53", "58") and state != "53300":
        what = {
            "53100": "is out of disk space: free space on the database server's data disk",
            "53200": "ran out of memory: give the server more memory or lower OFFER_SYNC_WORK_MEM "
            f"(now {session.get('work_mem', 'the server default')})",
        }.get(state, "ran out of a resource or hit a system error: see the server's log")
        message = f"{db} {what} ({code}). {_ROLLED_BACK} The task's retry runs it again."
        return DatabaseResourceError(f"{message} Server said: {said}", state)
    if (isinstance(exc, psycopg.OperationalError) and is_connection_failure(state)) or broken:
        how = code if state else "the connection closed"
        message = f"lost the connection to {db} ({how}): {said}. {_ROLLED_BACK} The task's retry reconnects."
        return DatabaseUnavailableError(message, state)
    return None
