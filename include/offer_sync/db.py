"""Database access: connections with clear errors, and SQL loaded from the ``.sql`` files beside us.

SQL lives in files a DBA can read; Python only fills in identifiers (the per-run staging tables,
through ``psycopg.sql.Identifier``) and binds values as parameters. Nothing from Trackier is ever
formatted into SQL text.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from include.offer_sync.errors import DatabaseUnavailableError
from include.offer_sync.settings import DatabaseSettings

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("sql")
# Our statements are few, large and run once: JIT compilation cost more than it saved (about a
# second of a two-second merge at 100k offers), and hash joins over a sweep want more than the
# default 4 MB of work_mem to stay in memory. Both are per-session; OFFER_SYNC_WORK_MEM tunes the
# second for a shared database server.
SESSION_OPTIONS = f"-c jit=off -c work_mem={os.environ.get('OFFER_SYNC_WORK_MEM', '256MB')}"
APPLICATION_NAME = "trackier_offer_sync"


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

    ``execute`` and ``copy`` count one each, ``executemany`` one per parameter set (as PostgreSQL's
    ``pg_stat_statements`` would count its calls).
    """

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> CountingCursor:  # type: ignore[override]
        STATEMENTS.count += 1
        return super().execute(query, params, **kwargs)  # type: ignore[return-value]

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:  # type: ignore[override]
        params_seq = list(params_seq)
        STATEMENTS.count += len(params_seq)
        super().executemany(query, params_seq, **kwargs)

    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        STATEMENTS.count += 1
        return super().copy(statement, params, **kwargs)


class _StatementCounter:
    count: int = 0


STATEMENTS = _StatementCounter()


def session_parameters(conninfo: str) -> dict[str, str]:
    """Our libpq defaults, merged with what the connection itself sets instead of overwriting it.

    Keyword arguments to ``psycopg.connect`` replace the same keys of the conninfo string, so passing
    ``options=SESSION_OPTIONS`` would silently drop an ``options`` the operator put in the
    ``offers_db`` connection (``-c statement_timeout=...``). Both go in: ours first, the
    connection's after them, and PostgreSQL applies the last ``-c`` for a setting, so the
    connection's own value wins. ``application_name`` and ``connect_timeout`` are defaults only.
    """
    from psycopg.conninfo import conninfo_to_dict

    own = conninfo_to_dict(conninfo)
    params = {"application_name": APPLICATION_NAME, "connect_timeout": "10"}
    params = {key: value for key, value in params.items() if key not in own}
    params["options"] = f"{SESSION_OPTIONS} {own['options']}" if own.get("options") else SESSION_OPTIONS
    return params


@contextmanager
def connect(settings: DatabaseSettings, *, autocommit: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the offers database; a refused connection becomes a clear, retryable error."""
    try:
        conn = psycopg.connect(
            settings.conninfo,
            autocommit=autocommit,
            cursor_factory=CountingCursor,
            **session_parameters(settings.conninfo),
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailableError(
            f"cannot connect to the offers database at {settings.display}: {reason}. "
            "Check the offers_db connection (AIRFLOW_CONN_OFFERS_DB) and that the server is up."
        ) from exc
    try:
        if settings.schema:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.schema)))
        yield conn
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"lost the connection to the offers database at {settings.display}: {str(exc).strip()[:300]}"
        ) from exc
    finally:
        conn.close()
