"""``make demo``: one real sync through Airflow against a local fake Trackier, with a readable result.

It needs no account and no system database: the offers database is ``OFFER_SYNC_DB_URL`` (or
``AIRFLOW_CONN_OFFERS_DB``) when set, otherwise an embedded PostgreSQL (``pgserver``) kept under
``.demo/`` so that a second ``make demo`` syncs the same catalogue again and shows it unchanged.
Options change the fake catalogue between runs, to see updates, deactivations and rejects.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import requests

from devtools.airflow_run import REPO_ROOT, airflow_env, prepare_home, run_dag_test
from devtools.fake_trackier import process_command

DEMO_DIR = REPO_ROOT / ".demo"
DEMO_API_KEY = "demo-key"  # the fake server's key; a real key never goes in a file like this


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--advertisers", type=int, default=25)
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--change-payouts",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="change this fraction of payouts before syncing (e.g. 0.1)",
    )
    parser.add_argument("--remove", type=int, default=0, metavar="N", help="remove N campaigns before syncing")
    parser.add_argument("--invalid-rate", type=float, default=0.0, help="serve this fraction of invalid records")
    parser.add_argument("--dry-run", action="store_true", help="trigger with the dry_run param")
    parser.add_argument("--reset", action="store_true", help="forget the demo database and start empty")
    args = parser.parse_args(argv)

    DEMO_DIR.mkdir(exist_ok=True)
    with offers_database(reset=args.reset) as db_url, fake_trackier(args) as api_url:
        home = DEMO_DIR / "airflow"
        trackier = {
            "conn_type": "http",
            "host": api_url,
            "password": DEMO_API_KEY,
            "extra": {"page_size": 100, "requests_per_second": 0},
        }
        env = airflow_env(home, trackier_conn=trackier, offers_db_url=db_url)
        _step("preparing Airflow (private AIRFLOW_HOME, SQLite metadata)")
        prepare_home(home, env)
        _mutate(api_url, args)
        _step(f"running `airflow dags test trackier_offer_sync` against {api_url}")
        conf = {"dry_run": True} if args.dry_run else None
        run = run_dag_test(env, conf)
        log_file = DEMO_DIR / "last-run.log"
        log_file.write_text(run.output, encoding="utf-8")
        result = _latest_result(db_url)
        if result is None:
            print(run.output[-4000:], file=sys.stderr)
            print(f"\nThe sync did not record a result; full Airflow output in {log_file}", file=sys.stderr)
            return 1
        print(render_result(result, run.wall_s, db_url))
        print(f"\nFull Airflow output: {log_file}")
        return 0 if run.succeeded else 1


def render_result(result: dict[str, Any], wall_s: float, db_url: str) -> str:
    """The run's sync_result as the table an operator reads."""
    metrics = result.get("metrics") or {}
    rows = [
        ("status", result["status"] + ("  (dry run: nothing written)" if result.get("dry_run") else "")),
        ("offers added", result["added"]),
        ("offers updated", result["updated"]),
        ("offers unchanged", result["unchanged"]),
        ("offers deactivated", result["deactivated"]),
        ("offers reactivated", result.get("reactivated", 0)),
        ("records rejected", result["rejected"]),
        ("campaigns processed", result["campaigns_processed"]),
        ("advertisers processed", result["advertisers_processed"]),
        ("brands added / updated", f"{result['brands_added']} / {result['brands_updated']}"),
        ("error rate", f"{result['error_rate']:.2%}"),
        ("sync duration", f"{result['duration_s']:.1f} s  (airflow dags test wall time {wall_s:.1f} s)"),
    ]
    phases = metrics.get("phases_s") or {}
    if phases:
        order = ("extract", "validate", "stage", "check", "merge")
        rows.append(("time per phase", ", ".join(f"{k} {phases[k]:.2f}s" for k in order if k in phases)))
    if metrics:
        rows += [
            ("API requests (retried)", f"{metrics.get('api_requests')} ({metrics.get('api_retries')})"),
            ("SQL statements", metrics.get("db_statements")),
            ("peak task memory", f"{metrics.get('peak_task_rss_mb', 0):.0f} MB"),
        ]
    for problem in result.get("problems") or []:
        rows.append(("problem", problem))
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * 62 + "+"
    out = [line, f"| {'Trackier offer sync':<{width}} | {result['run_id'][:60]:<60} |", line]
    out += [f"| {k:<{width}} | {str(v)[:60]:<60} |" for k, v in rows]
    out.append(line)
    out.append(f"Offers database: {_display(db_url)}  (tables brands, offers, offer_audit, sync_runs, sync_rejects)")
    return "\n".join(out)


@contextmanager
def offers_database(reset: bool = False) -> Iterator[str]:
    """The offers DB URL: the user's, or an embedded PostgreSQL that persists under ``.demo/``."""
    url = os.environ.get("OFFER_SYNC_DB_URL")
    if url:
        _step(f"offers database from OFFER_SYNC_DB_URL: {_display(url)}")
        yield url
        return
    if os.environ.get("AIRFLOW_CONN_OFFERS_DB", "").startswith("postgres"):
        url = os.environ["AIRFLOW_CONN_OFFERS_DB"]
        _step(f"offers database from AIRFLOW_CONN_OFFERS_DB: {_display(url)}")
        yield url
        return
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")
    import pgserver  # embedded PostgreSQL from PyPI: no system install, no root needed

    data = DEMO_DIR / "pgdata"
    if reset and data.exists():
        import shutil

        shutil.rmtree(data)
    _step(f"starting an embedded PostgreSQL in {data} (set OFFER_SYNC_DB_URL to use your own)")
    server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextmanager
def fake_trackier(args: argparse.Namespace) -> Iterator[str]:
    """The fake Trackier API as its own process, on a free loopback port."""
    port_file = DEMO_DIR / "fake-trackier.port"
    port_file.unlink(missing_ok=True)
    cmd = process_command(
        port_file, advertisers=args.advertisers, campaigns=args.campaigns, seed=args.seed, api_key=DEMO_API_KEY
    )
    if args.invalid_rate:
        cmd += ["--config", json.dumps({"invalid_rate": args.invalid_rate})]
    _step(
        f"starting the fake Trackier API ({args.advertisers} advertisers, {args.campaigns} campaigns, seed {args.seed})"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake Trackier server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def _mutate(api_url: str, args: argparse.Namespace) -> None:
    ops = []
    if args.change_payouts:
        ops.append({"op": "change_payouts", "fraction": args.change_payouts, "seed": int(time.time())})
    if args.remove:
        ops.append({"op": "remove_campaigns", "count": args.remove})
    for op in ops:
        response = requests.post(f"{api_url}/_fake/mutate", json=op, timeout=30)
        response.raise_for_status()
        _step(f"changed the fake catalogue: {op['op']} -> {response.text[:120]}")


def _latest_result(db_url: str) -> dict[str, Any] | None:
    try:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT result FROM sync_runs ORDER BY started_at DESC LIMIT 1").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def _display(url: str) -> str:
    from include.offer_sync.settings import DatabaseSettings

    return DatabaseSettings(conninfo=url).display


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
