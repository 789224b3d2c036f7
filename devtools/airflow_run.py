"""Run the DAG for real through ``airflow dags test``, for the demo, the tests and the benchmark.

This is the same path an operator takes on a laptop: a private ``AIRFLOW_HOME`` with a SQLite
metadata database, the repository's ``dags/`` folder, and the two connections passed ONLY as
``AIRFLOW_CONN_*`` environment variables (never written to the metadata database).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include.offer_sync.constants import DAG_ID

REPO_ROOT = Path(__file__).resolve().parents[1]


#: Connection extras for a fake server in tests: small pages, no client-side rate limit, fast backoff.
FAKE_CONN_EXTRA: dict[str, Any] = {
    "page_size": 50,
    "requests_per_second": 0,
    "backoff_base_s": 0.05,
    "backoff_max_s": 0.2,
}


def trackier_conn_for(url: str, api_key: str, **extra: Any) -> dict[str, Any]:
    """The ``trackier_api`` connection (``AIRFLOW_CONN_TRACKIER_API`` JSON) for a Trackier at ``url``."""
    return {"conn_type": "http", "host": url, "password": api_key, "extra": extra}


def airflow_env(
    home: Path, *, trackier_conn: dict[str, Any] | str, offers_db_url: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment for an Airflow CLI process: private home, our dags, connections via env vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACK_DEPTH": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
            "AIRFLOW_CONN_TRACKIER_API": trackier_conn if isinstance(trackier_conn, str) else json.dumps(trackier_conn),
            "AIRFLOW_CONN_OFFERS_DB": offers_db_url,
        }
    )
    env.update(extra or {})
    return env


def parse_only_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """``airflow_env`` for a process that parses the DAG but runs no task: both connections point at
    a closed port, so nothing the test did not mean to reach can be reached."""
    return airflow_env(
        home,
        trackier_conn={"conn_type": "http", "host": "http://127.0.0.1:9"},
        offers_db_url="postgresql://unused@127.0.0.1:9/unused",
        extra=extra,
    )


def airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def prepare_home(home: Path, env: dict[str, str]) -> None:
    """``airflow db migrate`` once per home, then re-serialize the DAGs (``dags test`` needs it)."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "airflow.db").exists():
        _check(subprocess.run([airflow_bin(), "db", "migrate"], env=env, capture_output=True, text=True), "db migrate")
    _check(
        subprocess.run([airflow_bin(), "dags", "reserialize"], env=env, capture_output=True, text=True),
        "dags reserialize",
    )


@dataclass
class DagTestRun:
    returncode: int
    output: str
    wall_s: float

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and "state=success" in self.output


def run_dag_test(
    env: dict[str, str], conf: dict[str, Any] | None = None, timeout: float = 1800, dag_id: str = DAG_ID
) -> DagTestRun:
    """``airflow dags test <dag_id> -c <conf>``: one real DAG run, tasks one after another."""
    cmd = [airflow_bin(), "dags", "test", dag_id]
    if conf:
        cmd += ["-c", json.dumps(conf)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return DagTestRun(proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - started)


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"airflow {what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
