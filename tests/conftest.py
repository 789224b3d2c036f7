"""Shared fixtures: a real PostgreSQL per test, the fake Trackier over real HTTP, a real Airflow.

- PostgreSQL: the server in ``OFFER_SYNC_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432``),
  or an embedded one from ``pgserver`` when nothing listens there. Every test that needs a database
  gets its own, created fresh and dropped afterwards: no test depends on leftover state.
- Fake Trackier: ``FakeTrackier`` on an ephemeral loopback port, in a thread of the test process.
- Airflow: one private ``AIRFLOW_HOME`` (SQLite metadata) per session; each DAG run is a real
  ``airflow dags test`` subprocess whose connections come ONLY from ``AIRFLOW_CONN_*`` variables.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from include.offer_sync.airflow_run import DagTestRun, airflow_env, prepare_home, run_dag_test
from include.offer_sync.fake_trackier import Catalogue, FakeTrackier
from include.offer_sync.settings import DatabaseSettings, TrackierSettings
from tests.airflow_server import airflow_server  # noqa: F401  (session fixture: a running api-server + scheduler)

TEST_API_KEY = "test-key-3f9a"  # a fake key, for the fake server only
SPEC_FIXTURE = {
    "advertisers": [{"id": "adv_001", "name": "Test Brand", "category": "E-commerce"}],
    "campaigns": [
        {
            "id": "camp_123",
            "advertiser_id": "adv_001",
            "name": "Test Campaign",
            "payout": {"amount": 5.0, "currency": "USD"},
        }
    ],
}


# --- PostgreSQL -------------------------------------------------------------------------------


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


# --- fake Trackier ---------------------------------------------------------------------------


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


def trackier_settings(server: FakeTrackier, **overrides: Any) -> TrackierSettings:
    """Client settings for a fake server; fast retries so failure tests stay quick."""
    values: dict[str, Any] = {
        "base_url": server.url, "api_key": TEST_API_KEY, "page_size": 50, "requests_per_second": 0,
        "backoff_base_s": 0.01, "backoff_max_s": 0.05, "read_timeout_s": 5,
    }  # fmt: skip
    values.update(overrides)
    from pydantic import SecretStr

    values["api_key"] = SecretStr(values["api_key"])
    return TrackierSettings(**values)


def trackier_conn(server: FakeTrackier, **extra: Any) -> dict[str, Any]:
    """The ``AIRFLOW_CONN_TRACKIER_API`` JSON for a fake server."""
    return {
        "conn_type": "http",
        "host": server.url,
        "password": TEST_API_KEY,
        "extra": {"page_size": 50, "requests_per_second": 0, "backoff_base_s": 0.05, "backoff_max_s": 0.2,
                  **extra},
    }  # fmt: skip


# --- real Airflow ------------------------------------------------------------------------------


@dataclass
class AirflowHarness:
    """Runs the DAG through ``airflow dags test`` with env-var connections."""

    home: Path

    def run(
        self,
        server: FakeTrackier,
        offers_db_url: str,
        conf: dict[str, Any] | None = None,
        conn_extra: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        dag_id: str = "trackier_offer_sync",
    ) -> DagTestRun:
        environment = airflow_env(self.home, trackier_conn=trackier_conn(server, **(conn_extra or {})),
                                  offers_db_url=offers_db_url, extra=env)  # fmt: skip
        return run_dag_test(environment, conf, dag_id=dag_id, timeout=600)

    def metadata(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read Airflow's own metadata database (SQLite), e.g. task instances and asset events."""
        with closing(sqlite3.connect(self.home / "airflow.db")) as conn:
            return conn.execute(query, params).fetchall()

    def asset_events(self, asset_name: str = "offers") -> list[dict[str, Any]]:
        rows = self.metadata(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = ? ORDER BY e.id",
            (asset_name,),
        )
        return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]

    def return_value(self, run_id: str, task_id: str) -> Any:
        rows = self.metadata(
            "SELECT value FROM xcom WHERE run_id = ? AND task_id = ? AND key = 'return_value'", (run_id, task_id)
        )
        return json.loads(rows[0][0]) if rows else None


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> AirflowHarness:
    home = tmp_path_factory.mktemp("airflow_home")
    env = airflow_env(home, trackier_conn={"conn_type": "http", "host": "http://127.0.0.1:9"},
                      offers_db_url="postgresql://unused@127.0.0.1:9/unused")  # fmt: skip
    prepare_home(home, env)
    return AirflowHarness(home)


def latest_run(sql: Callable[..., list[tuple[Any, ...]]]) -> dict[str, Any]:
    """The newest ``sync_runs`` row's ``result`` (the sync_result contract)."""
    rows = sql("SELECT result FROM sync_runs ORDER BY started_at DESC LIMIT 1")
    assert rows, "no sync_runs row was written"
    return rows[0][0]
