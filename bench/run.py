"""``make bench``: our DAG against dlt and a hand-written loop, at 1k/10k/100k offers (1M on request).

For every size it starts a fresh PostgreSQL (a private cluster with ``pg_stat_statements``, see
``cluster.py``) and the fake Trackier as its own process, then for each system, on the same
catalogue: a first sync into an empty database, a no-change resync, and a resync after 10 % of the
payouts changed. It measures wall time, peak memory (sampled from ``/proc``), SQL statements
(counted by PostgreSQL), API requests (counted by the fake server), rows/s, the fake server's and
the database's CPU share, and checks that each system ends with the catalogue's row counts and
payout sum. Ours runs exactly as the demo does: ``airflow dags test trackier_offer_sync``. Beside
the peers, two reference rows run once per size: "fetch only" (every page read, nothing written) and
"Airflow alone" (``bench/airflow_floor``: our DAG's tasks with empty bodies, through the same
``airflow dags test``), what ours costs before its own code does any work.

Writes ``bench/out/results.json`` (merged with sizes measured earlier), ``BENCHMARKS.md`` and the
chart ``docs/benchmark.png``. The peers and matplotlib live in ``bench/.venv-peers``, created here
from ``bench/requirements.txt``; ``--no-peers`` runs ours only and needs neither.

    python -m bench.run --sizes 1k,10k,100k        # make bench
    python -m bench.run --sizes 1m                 # make bench SIZES=1m
    python -m bench.run --sizes tiny --no-peers    # the smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from bench.cluster import Database, start_database
from bench.procs import FakeServer, MemorySampler, is_airflow_dags_test, sampling
from bench.report import SYSTEM_ORDER
from devtools.airflow_run import REPO_ROOT, DagTestRun, airflow_env, prepare_home, run_dag_test
from devtools.fake_trackier import Catalogue
from include.offer_sync.constants import DAG_ID, DEFAULT_MAX_SHARDS, DEFAULT_PAGES_PER_SHARD
from include.offer_sync.trackier.pagination import Probe
from include.offer_sync.trackier.shards import plan_shards

BENCH_DIR = REPO_ROOT / "bench"
PEERS_VENV = BENCH_DIR / ".venv-peers"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
REQUIREMENTS = BENCH_DIR / "requirements.txt"
API_KEY = "bench-key-0c41"  # the fake server's key; never a real one
PAGE_SIZE = 1000
CHANGE_FRACTION = 0.1

#: size name -> (offers, advertisers)
SIZES: dict[str, tuple[int, int]] = {
    "tiny": (200, 4),
    "1k": (1_000, 20),
    "10k": (10_000, 200),
    "100k": (100_000, 2_000),
    "1m": (1_000_000, 20_000),
}
SCENARIOS = ("first", "nochange", "changed10")
SCENARIO_LABELS = {"first": "first sync", "nochange": "no-change resync", "changed10": "10% payouts changed"}


@dataclass(frozen=True)
class System:
    key: str
    label: str
    database: str | None  # None: loads nothing (fetch only)
    module: str | None = None  # peers: the bench.peers module run in the peers venv
    args: tuple[str, ...] = ()


OURS = System("ours", "trackier_offer_sync (airflow dags test)", "bench_ours")
PEERS: dict[str, System] = {
    "loop": System("loop", "hand-written loop", "bench_loop", "bench.peers.handwritten_loop"),
    "dlt": System("dlt", "dlt rest_api (defaults)", "bench_dlt", "bench.peers.dlt_rest_api"),
    "dlt_nonest": System(
        "dlt_nonest",
        "dlt rest_api (max_nesting=0)",
        "bench_dlt_nonest",
        "bench.peers.dlt_rest_api",
        ("--max-nesting", "0"),
    ),
    "fetch_only": System("fetch_only", "fetch only (no database)", None, "bench.peers.fetch_only"),
}
#: Airflow alone: ``airflow dags test`` of our DAG's shape with empty task bodies (``bench/airflow_floor``),
#: over the shard labels ours plans at this size. It needs no peers venv and loads nothing.
AIRFLOW_FLOOR = System("airflow_floor", "Airflow alone: our DAG's tasks, empty (airflow dags test)", None)
FLOOR_DAGS = BENCH_DIR / "airflow_floor"
FLOOR_DAG_ID = "offer_sync_airflow_floor"  # the dag_id in FLOOR_DAGS/offer_sync_floor.py
SYSTEMS: dict[str, System] = {OURS.key: OURS, **PEERS, AIRFLOW_FLOOR.key: AIRFLOW_FLOOR}

#: Per system: SQL returning (brands, offers, payout sum of the first payout rule) after a sync.
CHECK_SQL: dict[str, str] = {
    "ours": "SELECT (SELECT count(*) FROM brands), (SELECT count(*) FROM offers WHERE is_active), "
    "(SELECT sum(payout) FROM offers WHERE is_active)",
    "loop": "SELECT (SELECT count(*) FROM advertisers), (SELECT count(*) FROM offers), "
    "(SELECT sum(payout) FROM offers)",
    # dlt's defaults: the payout rules become a child table; the first rule is list index 0.
    "dlt": "SELECT (SELECT count(*) FROM trackier.advertisers), (SELECT count(*) FROM trackier.campaigns), "
    "(SELECT sum(payout) FROM trackier.campaigns__payouts WHERE _dlt_list_idx = 0)",
    # max_table_nesting=0: the payout rules stay a JSON column of campaigns.
    "dlt_nonest": "SELECT (SELECT count(*) FROM trackier.advertisers), (SELECT count(*) FROM trackier.campaigns), "
    "(SELECT sum((payouts -> 0 ->> 'payout')::numeric) FROM trackier.campaigns)",
}


def log(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------- one measurement


@dataclass
class Context:
    size: str
    offers: int
    advertisers: int
    db: Database
    fake: FakeServer
    catalogue: Catalogue  # a local twin of the server's catalogue, for the expected sums
    change_seed: int
    workdir: Path
    logs: Path
    airflow_home: Path
    #: Extra fields for ours' ``trackier_api`` connection (``--ours-extra``), e.g. an A/B of a setting.
    ours_extra: dict[str, Any] = field(default_factory=dict)
    #: The fake server renders every record before each sync, outside the measured time (``--fake-renders``).
    prerender: bool = True


def measure(ctx: Context, system: System, scenario: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one sync with every counter reset before and read after; returns its figures."""
    expected = {
        "brands": ctx.advertisers,
        "offers": ctx.catalogue.campaign_count,
        "payout_sum": ctx.catalogue.expected_payout_sum(),
    }
    ctx.db.reset_statements()
    ctx.fake.reset_stats()
    fake_cpu0, db_cpu0 = ctx.fake.cpu_s(), ctx.db.backend_cpu_s()
    started = time.perf_counter()
    try:
        out = action()
    except Exception as exc:
        out = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    wall = out.pop("wall_s", None) or (time.perf_counter() - started)
    fake_cpu = ctx.fake.cpu_s() - fake_cpu0
    db_cpu1 = ctx.db.backend_cpu_s()
    stats = ctx.fake.stats()
    figures: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "ok": out.pop("ok", True),
        "sql_statements": ctx.db.statements(system.database) if system.database else 0,
        "api_requests": stats.get("total"),
        "rows_per_s": round(expected["offers"] / wall, 1) if wall > 0 else None,
        "fake_server_cpu_s": round(fake_cpu, 3),
        "fake_server_share": round(fake_cpu / wall, 3) if wall > 0 else None,
        "db_cpu_s": round(db_cpu1 - db_cpu0, 3) if db_cpu0 is not None and db_cpu1 is not None else None,
        **out,
    }
    if figures["db_cpu_s"] is not None:
        figures["db_share"] = round(figures["db_cpu_s"] / wall, 3) if wall > 0 else None
    if system.database and (scenario == "first" or system.key == "ours"):
        # Evidence for where the statements and the database time go (every one of ours, peers' top few).
        figures["top_statements"] = ctx.db.top_statements(system.database, limit=60 if system.key == "ours" else 8)
    if system.database:  # even after a failed run: what did it leave behind?
        figures["check"] = check_rows(ctx, system, expected)
    status = "ok" if figures["ok"] and figures.get("check", {}).get("ok", True) else "FAILED"
    log(
        f"  {system.key:<10} {SCENARIO_LABELS[scenario]:<20} {figures['wall_s']:>8.2f} s  "
        f"peak {figures.get('peak_rss_mb')} MB "
        f"(pss {figures.get('peak_pss_mb')}, root hwm {figures.get('root_hwm_mb')})  "
        f"sql {figures['sql_statements']}  api {figures['api_requests']}  "
        f"fake {figures['fake_server_share']:.0%}  {status}"
    )
    return figures


def check_rows(ctx: Context, system: System, expected: dict[str, Any]) -> dict[str, Any]:
    """Does the system end with the catalogue's rows and payout sum? (dlt: the nested equivalent.)"""
    assert system.database is not None
    try:
        with psycopg.connect(ctx.db.url(system.database), autocommit=True) as conn:
            row = conn.execute(CHECK_SQL[system.key]).fetchone()  # type: ignore[arg-type]
    except psycopg.Error as exc:
        return {"ok": False, "error": str(exc).strip()[:300], "expected": expected}
    assert row is not None
    brands, offers, payout = int(row[0]), int(row[1]), Decimal(row[2] or 0)
    exp_payout = Decimal(str(expected["payout_sum"]))
    ok = brands == expected["brands"] and offers == expected["offers"] and abs(payout - exp_payout) < Decimal("0.01")
    return {"ok": ok, "brands": brands, "offers": offers, "payout_sum": float(payout), "expected": expected}


# --------------------------------------------------------------------------------- ours


def ours_conn(ctx: Context) -> dict[str, Any]:
    return {
        "conn_type": "http",
        "host": ctx.fake.url,
        "password": API_KEY,
        "extra": {"page_size": PAGE_SIZE, "requests_per_second": 0, **ctx.ours_extra},
    }


def run_ours(ctx: Context, scenario: str, url: str) -> dict[str, Any]:
    """One ``airflow dags test`` through ``airflow_run`` (the demo's path), plus what it recorded."""
    env = airflow_env(ctx.airflow_home, trackier_conn=ours_conn(ctx), offers_db_url=url)
    # A task that fails waits for its retries (30 s and up) inside `dags test`: bound the wait.
    run, sampler, out = dag_test(ctx, OURS, scenario, env, None, timeout=600 + ctx.offers * 0.003)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT result FROM sync_runs ORDER BY started_at DESC LIMIT 1").fetchone()
    result = row[0] if row else None
    if result:
        metrics = result.get("metrics") or {}
        out["sync_result"] = {
            k: result.get(k)
            for k in ("status", "added", "updated", "unchanged", "deactivated", "reactivated", "rejected", "duration_s")
        }
        out["phases_s"] = metrics.get("phases_s")
        out["peak_task_rss_mb"] = metrics.get("peak_task_rss_mb")
        out["self_counted_statements"] = metrics.get("db_statements")
        out["shards"] = metrics.get("shards")
        inner = {t["task"]: t for t in metrics.get("tasks") or []}
    else:
        inner = {}
    add_task_times(out, run, sampler, ctx.airflow_home, inner, DAG_ID)
    return out


def dag_test(
    ctx: Context,
    system: System,
    scenario: str,
    env: dict[str, str],
    conf: dict[str, Any] | None,
    *,
    timeout: float,
    dag_id: str = DAG_ID,
) -> tuple[DagTestRun, MemorySampler, dict[str, Any]]:
    """One sampled ``airflow dags test`` (ours, or the Airflow floor): its log kept, its wall time,
    memory and CPU as ``measure`` reads them."""
    with sampling(is_airflow_dags_test) as sampler:
        run = run_dag_test(env, conf, timeout=timeout, dag_id=dag_id)
    (ctx.logs / f"{ctx.size}-{system.key}-{scenario}.log").write_text(run.output, encoding="utf-8")
    out: dict[str, Any] = {
        "wall_s": run.wall_s,
        "ok": run.succeeded,
        "peak_rss_mb": sampler.peak_mb,
        # With validation workers the tree's RSS counts the pages they share with the task process
        # once per process; PSS counts them once, and the root's VmHWM is the task process alone.
        "peak_pss_mb": sampler.peak_pss_mb,
        "root_hwm_mb": sampler.root_hwm_mb,
        "process_cpu_s": sampler.root_cpu_s,
    }
    if not run.succeeded:
        out["error"] = f"airflow dags test {dag_id} failed; tail: " + run.output[-1500:]
    return run, sampler, out


def add_task_times(
    out: dict[str, Any],
    run: DagTestRun,
    sampler: MemorySampler,
    home: Path,
    inner: dict[str, dict[str, Any]],
    dag_id: str,
) -> None:
    """The run's task instances (``airflow_tasks``), and its time inside and outside them, into ``out``."""
    out["tasks"] = airflow_tasks(home, sampler, inner, dag_id)
    if out["tasks"]:
        in_tasks = sum(t["airflow_s"] or 0 for t in out["tasks"])
        out["airflow_tasks_s"] = round(in_tasks, 3)
        out["outside_tasks_s"] = round(run.wall_s - in_tasks, 3)


def floor_shards(offers: int, advertisers: int) -> dict[str, list[str]]:
    """The shard labels ours plans for this catalogue (numbered pages with a total, default settings)."""
    labels: dict[str, list[str]] = {}
    for key, entity, total in (
        ("advertiser_shards", "advertisers", advertisers),
        ("campaign_shards", "campaigns", offers),
    ):
        probe = Probe(style="page", total=total, total_pages=-(-total // PAGE_SIZE), page_size=PAGE_SIZE)
        labels[key] = [s["label"] for s in plan_shards(entity, probe, DEFAULT_PAGES_PER_SHARD, DEFAULT_MAX_SHARDS)]
    return labels


def run_floor(ctx: Context, scenario: str) -> dict[str, Any]:
    """``airflow dags test`` of ``bench/airflow_floor`` (our tasks, empty), in its own Airflow home."""
    home = ctx.airflow_home.with_name(ctx.airflow_home.name + "-floor")
    env = airflow_env(
        home,
        trackier_conn=ours_conn(ctx),
        offers_db_url="postgresql://unused@127.0.0.1:9/unused",  # the floor's tasks touch no database
        extra={"AIRFLOW__CORE__DAGS_FOLDER": str(FLOOR_DAGS)},
    )
    prepare_home(home, env)  # outside the measured time, as for ours (bench_size)
    conf = floor_shards(ctx.offers, ctx.advertisers)
    run, sampler, out = dag_test(ctx, AIRFLOW_FLOOR, scenario, env, conf, timeout=300, dag_id=FLOOR_DAG_ID)
    out["shards"] = {"advertisers": len(conf["advertiser_shards"]), "campaigns": len(conf["campaign_shards"])}
    add_task_times(out, run, sampler, home, {}, FLOOR_DAG_ID)
    return out


def airflow_tasks(
    home: Path, sampler: MemorySampler, inner: dict[str, dict[str, Any]], dag_id: str = DAG_ID
) -> list[dict[str, Any]]:
    """Task instances of the latest run, from Airflow's SQLite metadata: duration, memory, our own wall."""
    try:
        with contextlib.closing(sqlite3.connect(home / "airflow.db")) as conn:
            run = conn.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
            ).fetchone()
            if not run:
                return []
            rows = conn.execute(
                "SELECT task_id, map_index, rendered_map_index, start_date, end_date, duration, state "
                "FROM task_instance WHERE dag_id = ? AND run_id = ? ORDER BY start_date",
                (dag_id, run[0]),
            ).fetchall()
    except sqlite3.Error:
        return []
    tasks = []
    for task_id, map_index, label, start, end, duration, state in rows:
        start_ts, end_ts = _epoch(start), _epoch(end)
        name = label if map_index is not None and map_index >= 0 and label else task_id
        mine = inner.get(name) or inner.get(task_id) or {}
        entry = {
            "task": task_id if map_index is None or map_index < 0 else f"{task_id}[{label or map_index}]",
            "state": state,
            "airflow_s": round(float(duration), 3) if duration is not None else None,
            "inner_wall_s": mine.get("wall_s"),
            "inner_peak_rss_mb": mine.get("peak_rss_mb"),
            "sampled_peak_rss_mb": sampler.peak_between(start_ts, end_ts) if start_ts and end_ts else None,
        }
        if entry["airflow_s"] is not None and entry["inner_wall_s"] is not None:
            entry["overhead_s"] = round(entry["airflow_s"] - entry["inner_wall_s"], 3)
        tasks.append(entry)
    return tasks


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    text = str(value).replace(" ", "T")
    dt = datetime.fromisoformat(text)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


# --------------------------------------------------------------------------------- peers


def peers_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
    env.update(
        {
            "BENCH_API_KEY": API_KEY,
            "PYTHONPATH": str(REPO_ROOT),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "DLT_DATA_DIR": str(workdir / "dlt-data"),
        }
    )
    return env


def run_peer(ctx: Context, system: System, scenario: str, url: str | None) -> dict[str, Any]:
    assert system.module is not None
    cmd = [
        str(PEERS_PYTHON),
        "-m",
        system.module,
        "--base-url",
        ctx.fake.url,
        "--page-size",
        str(PAGE_SIZE),
        *system.args,
    ]
    if url:
        cmd += ["--db-url", url]
    if system.module.endswith("dlt_rest_api"):
        cmd += ["--pipelines-dir", str(ctx.workdir / f"dlt-pipelines-{system.key}")]
    log_path = ctx.logs / f"{ctx.size}-{system.key}-{scenario}.log"
    with open(log_path, "w+", encoding="utf-8") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=peers_env(ctx.workdir), stdout=subprocess.PIPE, stderr=err, text=True
        )
        with sampling(proc.pid) as sampler:
            assert proc.stdout is not None
            stdout = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)  # its CPU time, which Popen would not tell
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    log_path.write_text(stdout + "\n" + stderr, encoding="utf-8")
    out: dict[str, Any] = {
        "wall_s": wall,
        "ok": proc.returncode == 0,
        "peak_rss_mb": sampler.peak_mb,
        "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
    }
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
        out["reported"] = json.loads(lines[-1])
        # The peer's own VmHWM at exit: a run shorter than a sample interval would otherwise be missed.
        # (wait4's ru_maxrss is no use here: Linux carries the parent's pre-exec image into it.)
        out["peak_rss_mb"] = round(max(out["peak_rss_mb"] or 0.0, out["reported"].get("vm_hwm_mb") or 0.0), 1)
    if proc.returncode != 0:
        out["error"] = f"exit {proc.returncode}: {stderr[-1500:]}"
    return out


def ensure_peers_venv() -> str | None:
    """Create/refresh ``bench/.venv-peers`` from ``bench/requirements.txt``; returns an error or None."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = PEERS_VENV / ".requirements-sha256"
    if PEERS_PYTHON.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return None
    log(f"installing the peers (dlt, matplotlib ...) into {PEERS_VENV.relative_to(REPO_ROOT)} (separate venv)")
    base = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base, "-m", "venv", str(PEERS_VENV)],
        [str(PEERS_PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(PEERS_PYTHON), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
    ]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return f"{' '.join(step[:4])} failed: {proc.stderr[-800:]}"
    stamp.write_text(digest)
    return None


# --------------------------------------------------------------------------------- one size


def bench_size(size: str, args: argparse.Namespace, workroot: Path, logs: Path, home: Path) -> dict[str, Any]:
    offers, advertisers = SIZES[size]
    log(f"size {size}: {offers:,} offers, {advertisers:,} advertisers (seed {args.seed})")
    workdir = Path(tempfile.mkdtemp(prefix=f"{size}-", dir=workroot))
    entry: dict[str, Any] = {
        "size": size,
        "offers": offers,
        "advertisers": advertisers,
        "seed": args.seed,
        "change_seed": args.change_seed,
        "change_fraction": CHANGE_FRACTION,
        "page_size": PAGE_SIZE,
        "client_rate_limit": "off (requests_per_second: 0 in the trackier_api connection extra)",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_avg_start": os.getloadavg(),
        "code": code_version(),
        "systems": {},
    }
    catalogue = Catalogue(advertisers, offers, seed=args.seed)
    with start_database(workdir) as db:
        fake = FakeServer(workdir, advertisers, offers, args.seed, API_KEY).start()
        try:
            entry["database"] = {
                "kind": db.kind,
                "version": db.server_version(),
                "counts_statements": db.counts_statements,
                "note": db.note,
                "settings": db.settings,
            }
            if db.note:
                log(f"  NOTE: {db.note}")
            ctx = Context(
                size,
                offers,
                advertisers,
                db,
                fake,
                catalogue,
                args.change_seed,
                workdir,
                logs,
                home,
                args.ours_extra,
                prerender=args.fake_renders == "before",
            )
            env = airflow_env(home, trackier_conn=ours_conn(ctx), offers_db_url=db.url(OURS.database or ""))
            prepare_home(home, env)  # serialize the DAG as it is now (others may be editing it)
            for key in args.systems:
                system = SYSTEMS[key]
                entry["systems"][key] = {
                    "label": system.label,
                    "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "load_avg": os.getloadavg(),
                    "runs": run_scenarios(ctx, system),
                }
        finally:
            fake.stop()
    entry["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    entry["load_avg_end"] = os.getloadavg()
    shutil.rmtree(workdir, ignore_errors=True)
    return entry


def run_scenarios(ctx: Context, system: System) -> dict[str, Any]:
    """First sync, no-change resync, 10 % payouts changed: same catalogue, restored for each system."""
    ctx.fake.mutate("restore")
    ctx.catalogue.restore()
    url = ctx.db.create(system.database) if system.database else None
    runs: dict[str, Any] = {}
    for scenario in SCENARIOS:
        if scenario == "changed10":
            changed = ctx.fake.mutate("change_payouts", fraction=CHANGE_FRACTION, seed=ctx.change_seed)
            local = ctx.catalogue.change_payouts(CHANGE_FRACTION, ctx.change_seed)
            if changed["result"]["changed"] != local:
                raise RuntimeError(f"catalogue twin out of step: server changed {changed}, local {local}")
        if ctx.prerender:
            ctx.fake.prerender()  # after the mutation: it drops what was rendered before
        if system.key == "ours":
            assert url is not None
            runs[scenario] = measure(ctx, system, scenario, lambda s=scenario: run_ours(ctx, s, url))
        elif system.key == AIRFLOW_FLOOR.key:
            runs[scenario] = measure(ctx, system, scenario, lambda s=scenario: run_floor(ctx, s))
        else:
            runs[scenario] = measure(ctx, system, scenario, lambda s=scenario: run_peer(ctx, system, s, url))
        if system.key in ("fetch_only", AIRFLOW_FLOOR.key) and scenario == "first":
            break  # neither fetching nor Airflow's own cost depends on what a database holds
    return runs


def code_version() -> dict[str, Any]:
    def git(*a: str) -> str:
        proc = subprocess.run(["git", *a], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        return proc.stdout.rstrip("\n")  # not strip(): porcelain lines start with a status column

    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "uncommitted_core_files": [
            line[3:] for line in git("status", "--porcelain", "--", "include", "dags").splitlines()
        ],
    }


def machine_info(peers_versions: dict[str, str]) -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    from importlib.metadata import version

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "airflow": version("apache-airflow"),
        "psycopg": version("psycopg"),
        **peers_versions,
    }


# --------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1k,10k,100k", help=f"comma-separated, from {', '.join(SIZES)}")
    p.add_argument(
        "--no-peers",
        action="store_true",
        help="ours only: no dlt, no peers venv (the chart is drawn only if that venv exists)",
    )
    p.add_argument(
        "--systems",
        default=",".join(SYSTEM_ORDER),
        help="which systems to run (default all); others measured earlier stay in results.json",
    )
    p.add_argument("--seed", type=int, default=42, help="the fake catalogue's seed")
    p.add_argument("--change-seed", type=int, default=9, help="seed of the 10%% payout change")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "out", help="results.json, logs (default bench/out)")
    p.add_argument("--markdown", type=Path, default=REPO_ROOT / "BENCHMARKS.md")
    p.add_argument("--chart", type=Path, default=REPO_ROOT / "docs" / "benchmark.png")
    p.add_argument("--fresh", action="store_true", help="forget sizes measured earlier in results.json")
    p.add_argument(
        "--ours-extra",
        type=json.loads,
        default={},
        help="JSON merged into ours' trackier_api connection extra, e.g. '{\"validate_processes\": 0}'",
    )
    p.add_argument(
        "--fake-renders",
        choices=("before", "per-request"),
        default="before",
        help="the fake server renders every record before each sync, outside the measured time (default), "
        "or each page as it is asked for, on the measured machine's CPU (the rounds before the eighth)",
    )
    args = p.parse_args(argv)
    args.sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown:
        p.error(f"unknown size(s) {unknown}; known: {list(SIZES)}")
    args.systems = ["ours"] if args.no_peers else [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in args.systems if s not in SYSTEM_ORDER]
    if bad:
        p.error(f"unknown system(s) {bad}; known: {list(SYSTEM_ORDER)}")
    args.systems = [s for s in SYSTEM_ORDER if s in args.systems]
    return args


def main(argv: list[str] | None = None) -> int:
    from bench.report import render_chart, write_markdown

    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    results_path = args.out / "results.json"
    results: dict[str, Any] = {}
    if results_path.exists() and not args.fresh:
        with contextlib.suppress(ValueError):
            results = json.loads(results_path.read_text())
    results.setdefault("sizes", {})
    peers_versions: dict[str, str] = {}
    if any(SYSTEMS[s].module for s in args.systems):
        error = ensure_peers_venv()
        if error:
            log(f"cannot install the peers, running ours (and the Airflow floor) only: {error}")
            args.systems = [s for s in args.systems if not SYSTEMS[s].module]
    if PEERS_PYTHON.exists():  # versions of what measured the peers (also when they are not re-run now)
        proc = subprocess.run(
            [str(PEERS_PYTHON), "-c", "import dlt, matplotlib; print(dlt.__version__, matplotlib.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            dlt_v, mpl_v = proc.stdout.split()
            peers_versions = {"dlt": dlt_v, "matplotlib": mpl_v}
    results["machine"] = machine_info(peers_versions)
    results["command"] = "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv)
    failed = False
    with tempfile.TemporaryDirectory(prefix="offer-sync-bench-") as tmp:
        workroot = Path(tmp)
        home = workroot / "airflow-home"
        for size in args.sizes:
            entry = bench_size(size, args, workroot, logs, home)
            results["machine"]["postgresql"] = entry["database"]["version"]
            results["machine"]["database"] = entry["database"]["kind"]
            entry["machine"] = results["machine"]
            previous = results["sizes"].get(size)
            if previous and not args.fresh:  # keep the systems not re-run this time
                merged = {**previous.get("systems", {}), **entry["systems"]}
                entry["systems"] = {k: merged[k] for k in SYSTEM_ORDER if k in merged}
            results["sizes"][size] = entry
            results["generated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            results_path.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
            failed |= any(
                not r.get("ok") or not r.get("check", {}).get("ok", True)
                for s in entry["systems"].values()
                for r in s["runs"].values()
            )
    chart_note = render_chart(results_path, args.chart, PEERS_PYTHON)
    write_markdown(results, args.markdown, args.chart, chart_note)
    log(f"wrote {results_path}, {args.markdown}" + (f", {args.chart}" if not chart_note else f" ({chart_note})"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
