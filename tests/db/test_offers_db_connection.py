"""The ``offers_db`` Airflow connection reaches PostgreSQL with every libpq option it sets.

The connection is read the way the DAG reads it (``DatabaseSettings.from_airflow()``, i.e. the
Task SDK's ``BaseHook.get_connection`` over ``AIRFLOW_CONN_OFFERS_DB``) and turned into connect
arguments by Airflow's ``PostgresHook``. Each test then opens a real session on the test PostgreSQL
through ``db.connect`` and looks at what the server or libpq says is in effect.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
import pytest

from include.offer_sync.db import connect
from include.offer_sync.errors import DatabaseUnavailableError
from include.offer_sync.settings import DatabaseSettings


def settings_from_env(monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any] | str) -> DatabaseSettings:
    """``DatabaseSettings`` exactly as a task gets them, from ``AIRFLOW_CONN_OFFERS_DB``."""
    monkeypatch.setenv("AIRFLOW_CONN_OFFERS_DB", conn if isinstance(conn, str) else json.dumps(conn))
    return DatabaseSettings.from_airflow()


def conn_json(url: str, **extra: Any) -> dict[str, Any]:
    """The JSON form of a Postgres connection to the database ``url`` points at."""
    parts = urlsplit(url)
    return {
        "conn_type": "postgres",
        "host": parts.hostname,
        "port": parts.port or 5432,
        "login": parts.username,
        "password": parts.password,
        "schema": parts.path.lstrip("/"),
        "extra": extra,
    }


def show(conn: psycopg.Connection[Any], setting: str) -> str:
    return str(conn.execute(f"SHOW {setting}").fetchone()[0])


def test_ssl_options_statement_timeout_and_target_session_attrs_reach_the_session(
    monkeypatch: pytest.MonkeyPatch, offers_db_url: str
) -> None:
    settings = settings_from_env(
        monkeypatch,
        conn_json(
            offers_db_url,
            sslmode="disable",
            options="-c statement_timeout=12345 -c work_mem=7MB",
            target_session_attrs="read-write",
            keepalives=1,
            keepalives_idle=31,
            application_name="offers-sync-prod",
        ),
    )
    with connect(settings) as conn:
        assert show(conn, "statement_timeout") == "12345ms"
        # The connection's own -c comes after ours, so its work_mem wins; our jit=off stays.
        assert show(conn, "work_mem") == "7MB"
        assert show(conn, "jit") == "off"
        assert show(conn, "application_name") == "offers-sync-prod"
        ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
        assert ssl is False
        # libpq's own view of the options in effect for this session (PQconninfo).
        in_effect = conn.info.get_parameters()
        assert in_effect["target_session_attrs"] == "read-write"
        assert in_effect["keepalives"] == "1"
        assert in_effect["keepalives_idle"] == "31"
        assert in_effect["sslmode"] == "disable"


def test_connection_without_options_gets_the_sync_session_defaults(
    monkeypatch: pytest.MonkeyPatch, offers_db_url: str
) -> None:
    settings = settings_from_env(monkeypatch, offers_db_url)
    with connect(settings) as conn:
        assert show(conn, "jit") == "off"
        assert show(conn, "work_mem") == "256MB"
        assert show(conn, "application_name") == "trackier_offer_sync"


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        # The test server has no SSL: an sslmode that demands it must make libpq refuse.
        ({"sslmode": "require"}, "SSL"),
        # The test server is a primary: a session that must be a standby cannot be had.
        ({"target_session_attrs": "standby"}, "standby"),
    ],
)
def test_connection_options_are_enforced_by_libpq_not_dropped(
    monkeypatch: pytest.MonkeyPatch, offers_db_url: str, extra: dict[str, str], refusal: str
) -> None:
    with psycopg.connect(offers_db_url) as probe:
        assert show(probe, "ssl") == "off", "this test needs a server without SSL"
    settings = settings_from_env(monkeypatch, conn_json(offers_db_url, **extra))
    with pytest.raises(DatabaseUnavailableError, match=refusal), connect(settings):
        pass


def test_uri_form_keeps_every_option_and_the_schema_extra(monkeypatch: pytest.MonkeyPatch, offers_db_url: str) -> None:
    with psycopg.connect(offers_db_url, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA catalogue")
    options = quote("-c statement_timeout=4321", safe="")
    settings = settings_from_env(
        monkeypatch,
        f"{offers_db_url}?options={options}&search_path=catalogue&target_session_attrs=primary&sslmode=prefer",
    )
    assert settings.schema == "catalogue"
    assert "password" not in settings.display
    with connect(settings) as conn:
        assert show(conn, "statement_timeout") == "4321ms"
        assert show(conn, "search_path") == "catalogue"
        assert conn.info.get_parameters()["target_session_attrs"] == "primary"


def test_unix_socket_host_still_works(monkeypatch: pytest.MonkeyPatch, offers_db_url: str) -> None:
    with psycopg.connect(offers_db_url) as probe:
        socket_dir = show(probe, "unix_socket_directories").split(",")[0].strip()
    database = urlsplit(offers_db_url).path.lstrip("/")
    user = urlsplit(offers_db_url).username or "postgres"
    # Both spellings an operator may use: the host field, and libpq's ?host= in a URI.
    as_json = {
        "conn_type": "postgres",
        "host": socket_dir,
        "login": user,
        "schema": database,
        "extra": {"options": "-c statement_timeout=2222"},
    }
    as_uri = f"postgresql://{user}@/{database}?host={quote(socket_dir, safe='')}"
    for conn in (as_json, as_uri):
        settings = settings_from_env(monkeypatch, conn)
        with connect(settings) as session:
            assert session.info.host == socket_dir
            assert session.execute("SELECT current_database()").fetchone()[0] == database
        assert settings.display == f"postgresql://{user}@{socket_dir}/{database}"
