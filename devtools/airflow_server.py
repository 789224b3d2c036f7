"""A real Airflow for tests: api-server, scheduler and dag-processor on free local ports.

``airflow dags test`` (the ``airflow`` fixture in ``conftest.py``) runs tasks in one process and
never starts the UI or the REST API. Tests of what an operator does (REST API, the Trigger form,
the Offer Sync page) need the real components, so this module starts them:

- its own metadata database, created fresh on the test PostgreSQL and dropped afterwards
  (``postgresql+psycopg2://...``; ``airflow db migrate`` takes ~4 s);
- ``LocalExecutor`` with ``AIRFLOW__CORE__PARALLELISM=4`` (the default 32 forks 32 idle workers), or
  ``executor="CeleryExecutor"`` with ``celery_workers=("a", "b")``: the local Redis as broker (a
  random database number and a queue of its own, so parallel runs do not share tasks), a fresh
  PostgreSQL database as result backend, and one ``airflow celery worker -H <name> -c 2`` per name,
  each recording its name as the task instances' hostname (``devtools/worker_hostname.py``);
- free ports for the api-server and the scheduler's log server, so two instances can coexist;
- users from ``SimpleAuthManager`` with a passwords file written here (``admin``, ``op``,
  ``viewer``: each password is random, see ``AirflowServer.passwords``);
- connections ONLY from ``AIRFLOW_CONN_*`` variables (never the metadata database);
- every process in its own process group, killed as a group on exit (the scheduler forks
  executor workers and task supervisors that a plain ``terminate()`` would orphan);
- an api-server that has built its execution API before ``running_airflow`` yields: Airflow builds
  it on the first request under ``/execution/`` (6.8 s on two slow cores), which the first task of
  the first run would otherwise pay (``_warm_execution_api``).

Use it as a context manager::

    with running_airflow(trackier_conn={...}, offers_db_url=url, pg_admin_url=admin) as af:
        token = af.token("admin")
        af.api("PATCH", "/api/v2/dags/trackier_offer_sync", json={"is_paused": False})

or through the session fixture ``airflow_server`` (registered in ``conftest.py``), which also
owns a fake Trackier (``.fake``, knobs changeable at run time) and a fresh offers database
(``.offers_db_url``, ``.sql(...)``). One instance serves the whole session: start-up costs
~15 s on two cores, so tests share it and must compare against the database's state, not assume
an empty one (and put back any fake knob or catalogue change they make).

``live_airflow(pg_admin_url, catalogue, **running_airflow_kwargs)`` builds the same bundle for a
test that needs its own instance (other env vars, ``triggerer=True`` for async deadline
callbacks). Helpers on ``AirflowServer``: ``token(user)``, ``api(method, path, user=...)``,
``unpause_and_settle()``, ``trigger(conf=...)``, ``wait_for_run(run_id)``, ``dag_runs()``,
``return_value(run_id, task_id)``, ``metadata(sql)``, ``log_tail(component)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
import requests

from devtools.airflow_run import FAKE_CONN_EXTRA, airflow_bin, airflow_env, trackier_conn_for
from include.offer_sync.constants import DAG_ID

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
#: ``name -> role`` of the SimpleAuthManager users every instance has.
USERS: dict[str, str] = {"admin": "admin", "op": "op", "viewer": "viewer"}
COMPONENTS = ("scheduler", "dag-processor", "api-server")
#: The broker for CeleryExecutor runs (a Redis this machine runs; a random database number is used).
REDIS_URL = os.environ.get("OFFER_SYNC_TEST_REDIS", "redis://127.0.0.1:6379")
CELERY_CONCURRENCY = 2
TERMINAL_STATES = frozenset({"success", "failed"})
#: The fake Trackier's API key for the session fixture (fake server only).
FIXTURE_API_KEY = "test-key-airflow-server"


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it; the race is harmless in tests)."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_database(url: str, name: str, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    parts = parts._replace(path=f"/{name}")
    if scheme:
        parts = parts._replace(scheme=scheme)
    return parts.geturl()


@dataclass
class AirflowServer:
    """A running Airflow: base ``url``, its ``env``, users' ``passwords`` and helpers for the API."""

    url: str
    home: Path
    env: dict[str, str]
    metadata_db_url: str
    passwords: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Seconds the api-server took to build its execution API when ``running_airflow`` asked for it
    #: (``_warm_execution_api``); None until then.
    execution_api_warmup_s: float | None = None
    _tokens: dict[str, str] = field(default_factory=dict)

    # --- auth ----------------------------------------------------------------------------------

    def token(self, username: str = "admin") -> str:
        """A JWT from ``POST /auth/token`` (cached per user; valid 24 h)."""
        if username not in self._tokens:
            resp = requests.post(
                f"{self.url}/auth/token", timeout=30, json={"username": username, "password": self.passwords[username]}
            )
            resp.raise_for_status()
            self._tokens[username] = resp.json()["access_token"]
        return self._tokens[username]

    def api(self, method: str, path: str, *, user: str | None = "admin", **kwargs: Any) -> requests.Response:
        """One HTTP request to ``url + path`` as ``user`` (``None``: no credentials)."""
        headers = dict(kwargs.pop("headers", None) or {})
        if user is not None:
            headers["Authorization"] = f"Bearer {self.token(user)}"
        timeout = kwargs.pop("timeout", 30)
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=timeout, **kwargs)

    # --- DAG runs ------------------------------------------------------------------------------

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout: float = 120) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id`` (the API knows it); returns the DAG."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self.api("GET", f"/api/v2/dags/{dag_id}")
            if resp.status_code == 200:
                return resp.json()
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAG {dag_id} did not appear in {timeout}s:\n{self.log_tail('dag-processor')}")
            time.sleep(0.5)

    def unpause(self, dag_id: str = DAG_ID) -> None:
        resp = self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        resp.raise_for_status()

    def dag_runs(self, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        """The DAG's runs, newest first."""
        resp = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 100})
        resp.raise_for_status()
        return list(resp.json()["dag_runs"])

    def unpause_and_settle(self, dag_id: str = DAG_ID, timeout: float = 300) -> None:
        """Unpause, then wait until no run is queued or running.

        Unpausing a scheduled DAG with ``catchup=False`` makes the scheduler run the latest missed
        interval at once; tests that click "Sync" want that run out of the way first.
        """
        self.unpause(dag_id)
        dag = self.api("GET", f"/api/v2/dags/{dag_id}").json()
        if dag.get("timetable_summary") not in (None, "None", ""):
            wait_until(
                lambda: any(r["run_type"] == "scheduled" for r in self.dag_runs(dag_id)),
                timeout,
                what=f"the catch-up run of {dag_id}",
            )
        wait_until(
            lambda: not any(r["state"] in ("queued", "running") for r in self.dag_runs(dag_id)),
            timeout,
            interval=1,
            what=f"no active runs of {dag_id}",
        )

    def trigger(self, dag_id: str = DAG_ID, conf: dict[str, Any] | None = None) -> str:
        """Trigger a run through the REST API; returns its run id."""
        resp = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        resp.raise_for_status()
        return str(resp.json()["dag_run_id"])

    def dag_run(self, run_id: str, dag_id: str = DAG_ID) -> dict[str, Any]:
        resp = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
        resp.raise_for_status()
        return dict(resp.json())

    def wait_for_run(self, run_id: str, dag_id: str = DAG_ID, timeout: float = 300) -> dict[str, Any]:
        """Poll the run until it succeeds or fails; returns the final DAG run JSON."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(run_id, dag_id)
            if run["state"] in TERMINAL_STATES:
                return run
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['state']} after {timeout}s:\n{self.log_tail('scheduler')}")
            time.sleep(1)

    def return_value(self, run_id: str, task_id: str, dag_id: str = DAG_ID) -> Any:
        """A task's return value through ``.../xcomEntries/return_value``."""
        run = quote(run_id, safe="")
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/xcomEntries/return_value"
        resp = self.api("GET", path, params={"deserialize": "true"})
        resp.raise_for_status()
        return resp.json()["value"]

    # --- diagnostics ---------------------------------------------------------------------------

    def metadata(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Rows from Airflow's own metadata database (read-only use, e.g. task instances)."""
        with psycopg.connect(self.metadata_db_url.replace("+psycopg2", ""), autocommit=True) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def log_path(self, component: str) -> Path:
        return self.home / f"{component}.log"

    def log_tail(self, component: str, chars: int = 4000) -> str:
        path = self.log_path(component)
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def check_alive(self) -> None:
        """Raise with the component's log if one of the processes has exited."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{self.log_tail(name)}")


def _wait_healthy(server: AirflowServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        server.check_alive()
        with contextlib.suppress(requests.RequestException):
            resp = requests.get(f"{server.url}/api/v2/monitor/health", timeout=5)
            if resp.status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"api-server not healthy after {timeout}s:\n{server.log_tail('api-server')}")
        time.sleep(0.5)


def _warm_execution_api(server: AirflowServer, timeout: float) -> None:
    """Have the api-server build its execution API now, before a task needs it.

    Airflow 3.3's api-server builds the execution API (the routes task processes talk to, Cadwyn's
    versioned copies of them) on the first request under ``/execution/``, not when it starts. On the
    bench machine of 2026-12-02 that first request took 6.8 s, and without this call the first task of
    the first DAG run paid it: the LocalExecutor first sync's ``start_sync`` logged "Pre Execute" at
    01:54:20.8 and its next line 8.3 s later, and the run took 143.2 s against 127.3 s with the
    api-server warmed first (``python -m bench.local_executor --sizes 1m``). A deployed api-server
    pays it once in its life, not once per sync, so the harness pays it here, outside what tests and
    the benchmark time, and records how long it took.
    """
    started = time.monotonic()
    resp = requests.get(f"{server.url}/execution/health", timeout=timeout)
    resp.raise_for_status()
    server.execution_api_warmup_s = round(time.monotonic() - started, 2)


def _stop(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM the process group we created, then SIGKILL whatever is left of it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    # The leader may be gone while its children (executor workers, task supervisors) live on.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def running_airflow(
    *,
    trackier_conn: dict[str, Any] | str,
    offers_db_url: str,
    pg_admin_url: str,
    home: Path | None = None,
    extra_env: dict[str, str] | None = None,
    triggerer: bool = False,
    startup_timeout: float = 180,
    base_path: str = "",
    components: tuple[str, ...] = COMPONENTS,
    executor: str = "LocalExecutor",
    celery_workers: tuple[str, ...] = (),
) -> Iterator[AirflowServer]:
    """Start api-server, scheduler and dag-processor; stop them and drop the metadata DB on exit.

    ``trackier_conn``/``offers_db_url`` become ``AIRFLOW_CONN_TRACKIER_API``/``AIRFLOW_CONN_OFFERS_DB``
    for every component (the api-server needs ``offers_db`` for the Offer Sync page).
    ``triggerer=True`` also starts ``airflow triggerer`` (deferrable tasks, async deadline callbacks).
    ``extra_env`` is applied last (e.g. ``AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION``).
    ``base_path`` (e.g. ``"/airflow"``) serves everything under a sub-path (``[api] base_url`` with a
    path); ``.url`` then includes it. ``components`` leaves some out, e.g. no scheduler for a test
    that only reads what is already in the databases (fewer processes on a small machine).
    ``executor="CeleryExecutor"`` also starts one worker per name in ``celery_workers`` (see the module
    docstring); their logs are ``log_path("worker-<name>")``.
    """
    import tempfile

    owned_home = home is None
    home = Path(tempfile.mkdtemp(prefix="airflow_server_")) if home is None else home
    home.mkdir(parents=True, exist_ok=True)
    meta_name = f"airflow_meta_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{meta_name}"')
    metadata_db_url = _with_database(pg_admin_url, meta_name, scheme="postgresql+psycopg2")
    celery = executor == "CeleryExecutor"
    results_name = f"airflow_results_{uuid.uuid4().hex[:12]}"
    queue = f"offer_sync_test_{uuid.uuid4().hex[:12]}"
    broker = f"{REDIS_URL.rstrip('/')}/{secrets.randbelow(15) + 1}"
    if celery:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{results_name}"')

    api_port, log_port, trigger_log_port = free_port(), free_port(), free_port()
    url = f"http://127.0.0.1:{api_port}{base_path.rstrip('/')}"
    passwords = {name: secrets.token_urlsafe(12) for name in USERS}
    passwords_file = home / "simple_auth_manager_passwords.json"
    passwords_file.write_text(json.dumps(passwords))
    from cryptography.fernet import Fernet

    env = airflow_env(home, trackier_conn=trackier_conn, offers_db_url=offers_db_url)
    env.pop("OFFER_SYNC_API_POOL", None)  # the DAG then uses default_pool: nothing to create
    env.update(
        {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db_url,
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        }
    )
    if celery:
        env.update(
            {
                "AIRFLOW__CELERY__BROKER_URL": broker,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + _with_database(pg_admin_url, results_name),
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(CELERY_CONCURRENCY),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devtools.worker_hostname.hostname",
            }
        )
    env.update(extra_env or {})
    server = AirflowServer(url=url, home=home, env=env, metadata_db_url=metadata_db_url, passwords=passwords)
    try:
        migrate = subprocess.run([airflow_bin(), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")
        for component in (*components, *(["triggerer"] if triggerer else [])):
            args = [airflow_bin(), component] + (
                ["--port", str(api_port), "--host", "127.0.0.1"] if component == "api-server" else []
            )
            log = server.log_path(component).open("wb")
            server.processes[component] = subprocess.Popen(
                args,
                env=env,
                cwd=home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: we kill the whole group on exit
            )
            log.close()
        for name in celery_workers if celery else ():
            worker_env = {
                **env,
                "OFFER_SYNC_TEST_HOSTNAME": name,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            }
            log = server.log_path(f"worker-{name}").open("wb")
            server.processes[f"worker-{name}"] = subprocess.Popen(
                [airflow_bin(), "celery", "worker", "-H", name, "-q", queue, "-c", str(CELERY_CONCURRENCY)],
                env=worker_env,
                cwd=home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.close()
        _wait_healthy(server, startup_timeout)
        _warm_execution_api(server, startup_timeout)
        yield server
    finally:
        for component in reversed(list(server.processes)):
            _stop(server.processes[component])
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{meta_name}" WITH (FORCE)')
            if celery:
                conn.execute(f'DROP DATABASE IF EXISTS "{results_name}" WITH (FORCE)')
        if celery:
            _drop_queue_keys(broker, queue)
        if owned_home and os.environ.get("KEEP_AIRFLOW_HOME") != "1":
            import shutil

            shutil.rmtree(home, ignore_errors=True)


def _drop_queue_keys(broker: str, queue: str) -> None:
    """Remove what this run left in Redis: its queue's keys, then kombu's own bookkeeping keys
    (bindings, unacked sets, binding deadlines) if nothing else is left in that database number."""
    import redis

    client = redis.Redis.from_url(broker)
    try:
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)
        rest = list(client.scan_iter(count=1000))
        if rest and all(key.startswith((b"_kombu.", b"unacked")) for key in rest):
            client.delete(*rest)
    finally:
        client.close()


@dataclass
class LiveAirflow:
    """What ``airflow_server`` yields: the Airflow, its fake Trackier and its offers database."""

    airflow: AirflowServer
    fake: Any  # devtools.fake_trackier.FakeTrackier
    offers_db_url: str

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on the offers database and return its rows."""
        with psycopg.connect(self.offers_db_url, autocommit=True) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def __getattr__(self, name: str) -> Any:  # af.url, af.token(), af.api(...) ...
        return getattr(self.airflow, name)


def fixture_trackier_conn(server: Any, **extra: Any) -> dict[str, Any]:
    """``AIRFLOW_CONN_TRACKIER_API`` for a fake server: page size 50, no client-side rate limit."""
    return trackier_conn_for(server.url, FIXTURE_API_KEY, **{**FAKE_CONN_EXTRA, **extra})


@contextlib.contextmanager
def live_airflow(
    pg_admin_url: str, catalogue: Any = None, conn_extra: dict[str, Any] | None = None, **kwargs: Any
) -> Iterator[LiveAirflow]:
    """A fake Trackier + a fresh offers database + a running Airflow wired to both.

    ``conn_extra`` adds to (or overrides) the ``trackier_api`` extras of ``fixture_trackier_conn``.
    """
    from devtools.fake_trackier import Catalogue, FakeTrackier

    offers_name = f"offer_sync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{offers_name}"')
    offers_db_url = _with_database(pg_admin_url, offers_name)
    fake = FakeTrackier(catalogue if catalogue is not None else Catalogue(8, 400, seed=11), api_key=FIXTURE_API_KEY)
    try:
        with running_airflow(
            trackier_conn=fixture_trackier_conn(fake, **(conn_extra or {})),
            offers_db_url=offers_db_url,
            pg_admin_url=pg_admin_url,
            **kwargs,
        ) as server:
            server.wait_for_dag()
            yield LiveAirflow(server, fake, offers_db_url)
    finally:
        fake.stop()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{offers_name}" WITH (FORCE)')


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        time.sleep(interval)
