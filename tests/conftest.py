"""Shared fixtures: a real PostgreSQL per test, the fake Trackier over real HTTP, a real Airflow.

- PostgreSQL: the server in ``OFFER_SYNC_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432``),
  or an embedded one from ``pgserver`` when nothing listens there. Every test that needs a database
  gets its own, created fresh and dropped afterwards: no test depends on leftover state.
- Fake Trackier: ``FakeTrackier`` on an ephemeral loopback port, in a thread of the test process.
- Airflow: one private ``AIRFLOW_HOME`` (SQLite metadata) per session; each DAG run is a real
  ``airflow dags test`` subprocess whose connections come ONLY from ``AIRFLOW_CONN_*`` variables.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from devtools.airflow_server import LiveAirflow, live_airflow
from devtools.fake_trackier import Catalogue, FakeTrackier
from include.offer_sync.settings import DatabaseSettings
from tests.helpers import TEST_API_KEY, Answer, PlainApi


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    with closing(socket.socket()) as sock:
        sock.settimeout(1)
        return sock.connect_ex((parts.hostname or "127.0.0.1", parts.port or 5432)) == 0


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL server we may create databases on (``.../postgres``)."""
    url = os.environ.get("OFFER_SYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
    if _reachable(url):
        yield url.rstrip("/") + "/postgres"
        return
    import pgserver  # embedded PostgreSQL, no system install

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


def _with_database(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return parts._replace(path=f"/{name}").geturl()


@pytest.fixture
def offers_db_url(pg_admin_url: str) -> Iterator[str]:
    """A brand-new, empty database for one test; dropped afterwards."""
    name = f"offer_sync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def offers_db(offers_db_url: str) -> DatabaseSettings:
    return DatabaseSettings(conninfo=offers_db_url)


@pytest.fixture
def sql(offers_db_url: str) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
    """Run a query against the test's database and return all rows: ``sql("SELECT ...", params)``."""
    conn = psycopg.connect(offers_db_url, autocommit=True)

    def run(query: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []

    yield run
    conn.close()


@pytest.fixture
def fake_trackier() -> Iterator[Callable[..., FakeTrackier]]:
    """Factory: ``fake_trackier(catalogue, pagination="both", **knobs)`` -> a running server."""
    servers: list[FakeTrackier] = []

    def start(catalogue: Catalogue | None = None, **kwargs: Any) -> FakeTrackier:
        kwargs.setdefault("api_key", TEST_API_KEY)
        server = FakeTrackier(catalogue if catalogue is not None else Catalogue(10, 120, seed=7), **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def airflow_server(pg_admin_url: str) -> Iterator[LiveAirflow]:
    """One real Airflow for the session (see the module docstring); the DAG is parsed, still paused."""
    with live_airflow(pg_admin_url) as live:
        yield live


@pytest.fixture
def plain_api() -> Iterator[Callable[..., PlainApi]]:
    servers: list[PlainApi] = []

    def start(answer: Callable[[str, dict[str, list[str]]], Answer], host: str = "127.0.0.2") -> PlainApi:
        servers.append(PlainApi(answer, host))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
