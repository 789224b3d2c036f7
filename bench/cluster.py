"""A fresh PostgreSQL per benchmark size, so that PostgreSQL itself counts the statements.

The machine's own server is shared with other engineers and has no ``pg_stat_statements``; a
private cluster (``initdb`` from ``/usr/lib/postgresql/15/bin``) on a free loopback port does, and
it starts empty, so every size begins from the same state. Settings are PostgreSQL's defaults
except the ones listed in ``CLUSTER_SETTINGS`` (documented in BENCHMARKS.md): in particular
``fsync`` and ``synchronous_commit`` stay on, the durability every real deployment has.

``initdb`` refuses to run as root, so as root the binaries run as the ``postgres`` OS user (via
``runuser``); as any other user they run as that user. Where the binaries do not exist the
benchmark falls back to the embedded server from ``pgserver`` and says so: no statement counts then.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

PG_BIN = Path(os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))

#: Everything we change from PostgreSQL's defaults, and why (BENCHMARKS.md repeats this).
CLUSTER_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",  # loopback only
    "shared_preload_libraries": "'pg_stat_statements'",  # PostgreSQL counts the statements
    "pg_stat_statements.track": "top",  # `all` would also count FK checks run inside each insert
    "max_connections": "200",  # dlt's parallel loader and Airflow open several at once
}
#: initdb options: UTF-8 and the C.UTF-8 locale, as the machine's own server is set up.
INITDB_OPTIONS = ["--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C.UTF-8"]


@dataclass
class Database:
    """A running server for one benchmark size: where it is and what it can measure."""

    admin_url: str
    kind: str  # "private cluster" | "embedded pgserver"
    counts_statements: bool
    note: str = ""
    postmaster_pid: int | None = None
    settings: dict[str, str] = field(default_factory=dict)

    def url(self, database: str) -> str:
        parts = urlsplit(self.admin_url)
        return parts._replace(path=f"/{database}").geturl()

    def create(self, database: str) -> str:
        """A new, empty database (dropped first if a previous attempt left it); returns its URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
        return self.url(database)

    def reset_statements(self) -> None:
        if self.counts_statements:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")

    def statements(self, database: str) -> int | None:
        """``sum(calls)`` of ``pg_stat_statements`` for one database since the last reset."""
        if not self.counts_statements:
            return None
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s "
                "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
                (database,),
            ).fetchone()
        return int(row[0]) if row else 0

    def top_statements(self, database: str, limit: int = 12) -> list[dict[str, Any]]:
        """The most expensive statements (by total time) since the last reset: profiling evidence."""
        if not self.counts_statements:
            return []
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT s.calls, round(s.total_exec_time::numeric, 1), s.rows, left(regexp_replace(s.query, "
                "'\\s+', ' ', 'g'), 160) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                "WHERE d.datname = %s ORDER BY s.total_exec_time DESC LIMIT %s",
                (database, limit),
            ).fetchall()
        return [{"calls": r[0], "total_ms": float(r[1]), "rows": r[2], "query": r[3]} for r in rows]

    def server_version(self) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def backend_cpu_s(self) -> float | None:
        """CPU seconds of server processes that have exited (the postmaster's reaped children).

        Every sync connection is a backend that exits when the connection closes, so the change
        across one sync is (nearly all of) the database's CPU time for it.
        """
        if self.postmaster_pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.postmaster_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # After the ")" field 3 is the state; cutime and cstime are fields 16 and 17 of the line.
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def private_cluster_available() -> str | None:
    """None when a private cluster can be made here, else the reason it cannot."""
    for name in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / name).exists():
            return f"{PG_BIN / name} does not exist"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres OS user to run initdb as"
        if not shutil.which("runuser"):
            return "running as root and runuser is missing"
    return None


@contextmanager
def start_database(workdir: Path) -> Iterator[Database]:
    """A fresh private cluster (preferred) or the embedded pgserver; stopped and removed on exit."""
    reason = private_cluster_available()
    if reason is None:
        with _private_cluster() as db:
            yield db
        return
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")
    import pgserver

    data = Path(tempfile.mkdtemp(prefix="pgserver-", dir=workdir))
    server = pgserver.get_server(data, cleanup_mode="delete")
    try:
        yield Database(
            admin_url=server.get_uri(),
            kind="embedded pgserver",
            counts_statements=False,
            note=f"no private cluster ({reason}): embedded pgserver, statements not counted",
        )
    finally:
        server.cleanup()


@contextmanager
def _private_cluster() -> Iterator[Database]:
    # Directly under the system temp dir: the postgres user must reach it, and our own work dirs are 0700.
    root = Path(tempfile.mkdtemp(prefix="offer-sync-bench-pg-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = free_port()
    run = subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), *INITDB_OPTIONS]),
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"initdb failed: {run.stderr[-2000:]}")
    with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
        conf.write("\n# benchmark (bench/cluster.py)\n")
        conf.write(f"port = {port}\nunix_socket_directories = '{root}'\n")
        for key, value in CLUSTER_SETTINGS.items():
            conf.write(f"{key} = {value}\n")
    start = subprocess.run(
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"]),
        capture_output=True,
        text=True,
        check=False,
    )
    if start.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {start.stdout[-1000:]} {start.stderr[-1000:]} {tail}")
    try:
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        db = Database(
            admin_url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
            kind="private cluster",
            counts_statements=True,
            postmaster_pid=pid,
            settings={"initdb": " ".join(INITDB_OPTIONS), **CLUSTER_SETTINGS},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(db.admin_url, autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield db
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)
