"""Fixtures of the Airflow tier: ``airflow`` runs the DAG through ``airflow dags test`` with a
private AIRFLOW_HOME (SQLite metadata) and connections given only as ``AIRFLOW_CONN_*``.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.airflow_run import DagTestRun, airflow_env, parse_only_env, prepare_home, run_dag_test
from devtools.fake_trackier import FakeTrackier
from tests.helpers import trackier_conn


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
        environment = airflow_env(
            self.home, trackier_conn=trackier_conn(server, **(conn_extra or {})), offers_db_url=offers_db_url, extra=env
        )
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
    env = parse_only_env(home)
    prepare_home(home, env)
    return AirflowHarness(home)
