"""Profile one first sync of ours with py-spy: ``python -m bench.profile --size 100k``.

Same setup as the benchmark (fresh private PostgreSQL, the fake Trackier as its own process,
``page_size: 1000``, no client-side rate limit) and the same command as ``run_dag_test``
(``airflow dags test trackier_offer_sync``), run under ``py-spy record --format raw`` from
``bench/.venv-peers``. Writes the collapsed stacks (``bench/out/profile-<size>.txt``, open it in
speedscope or inferno) and a summary (``profile-<size>.md``): time per phase category, our own
functions (inclusive), and the hottest leaf functions (self time), plus the database's view
(``pg_stat_statements``), since py-spy cannot see inside PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psycopg

from bench.cluster import start_database
from bench.procs import FakeServer
from bench.run import API_KEY, BENCH_DIR, PAGE_SIZE, PEERS_VENV, SIZES, ensure_peers_venv, log
from devtools.airflow_run import DAG_ID, airflow_bin, airflow_env, prepare_home, trackier_conn_for

# The first matching rule (looking at every frame of a stack, innermost first) names its category.
CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("validate (pydantic, models.py)", re.compile(r"include/offer_sync/trackier/models\.py|pydantic")),
    ("stage (COPY, staging.py)", re.compile(r"include/offer_sync/load/staging\.py")),
    ("fetch: JSON parse", re.compile(r"orjson|_parse_json|json/decoder")),
    ("fetch: HTTP (requests/urllib3/socket)", re.compile(r"requests/|urllib3/|http/client|socket\.py|ssl\.py")),
    ("merge (merge.py, waiting on PostgreSQL)", re.compile(r"include/offer_sync/load/merge\.py")),
    ("sweep check (sweep.py)", re.compile(r"include/offer_sync/load/sweep\.py")),
    ("other offer_sync code (runs, schema, db, tasks)", re.compile(r"include/offer_sync/|dags/trackier")),
    ("Python imports (module loading)", re.compile(r"<frozen importlib|_find_and_load")),
    ("Airflow / SQLAlchemy / other", re.compile(r".")),
)
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def summarise(raw: Path, top: int = 25) -> tuple[str, dict[str, float]]:
    """Markdown summary of py-spy's collapsed stacks (``frame;frame;... count`` per line)."""
    total = 0
    categories: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for name, pattern in CATEGORIES:
            if any(pattern.search(frame) for frame in reversed(frames)):
                categories[name] += count
                break
        seen: set[str] = set()
        for frame in frames:
            m = FRAME.match(frame)
            if m and ("include/offer_sync/" in m["file"] or "/dags/" in m["file"]):
                key = f"{m['func']} ({m['file'].split('/work/main/')[-1]})"
                if key not in seen:
                    seen.add(key)
                    ours[key] += count
        m = FRAME.match(frames[-1])
        leaves[f"{m['func']} ({m['file'].split('site-packages/')[-1]})" if m else frames[-1]] += count
    if not total:
        return "_py-spy recorded no samples_", {}
    shares = {name: n / total for name, n in categories.items()}
    lines = [f"{total:,} samples (all threads, idle excluded).", "", "| category | share of samples |", "|---|---|"]
    lines += [f"| {name} | {n / total:.1%} |" for name, n in categories.most_common()]
    lines += [
        "",
        "Our functions, inclusive (a sample counts for every one of ours on its stack):",
        "",
        "| function | share |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {n / total:.1%} |" for name, n in ours.most_common(top)]
    lines += ["", "Hottest leaf functions (self time):", "", "| function | share |", "|---|---|"]
    lines += [f"| `{name}` | {n / total:.1%} |" for name, n in leaves.most_common(top)]
    return "\n".join(lines), shares


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100k", choices=list(SIZES))
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    args = parser.parse_args(argv)
    error = ensure_peers_venv()
    py_spy = PEERS_VENV / "bin" / "py-spy"
    if error or not py_spy.exists():
        print(f"py-spy is not available in {PEERS_VENV}: {error or 'missing'}", file=sys.stderr)
        return 1
    offers, advertisers = SIZES[args.size]
    args.out.mkdir(parents=True, exist_ok=True)
    raw, report = args.out / f"profile-{args.size}.txt", args.out / f"profile-{args.size}.md"
    with tempfile.TemporaryDirectory(prefix="offer-sync-profile-") as tmp, start_database(Path(tmp)) as db:
        fake = FakeServer(Path(tmp), advertisers, offers, args.seed, API_KEY).start()
        try:
            url = db.create("bench_profile")
            conn = trackier_conn_for(fake.url, API_KEY, page_size=PAGE_SIZE, requests_per_second=0)
            home = Path(tmp) / "airflow-home"
            env = airflow_env(home, trackier_conn=conn, offers_db_url=url)
            prepare_home(home, env)
            db.reset_statements()
            cmd = [
                str(py_spy),
                "record",
                "--format",
                "raw",
                "--rate",
                str(args.rate),
                "--subprocesses",
                "-o",
                str(raw),
                "--",
                airflow_bin(),
                "dags",
                "test",
                DAG_ID,
            ]
            log(f"profiling a first sync at {args.size} ({offers:,} offers) under py-spy")
            started = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - started
            (args.out / f"profile-{args.size}.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
            with psycopg.connect(url, autocommit=True) as c:
                row = c.execute("SELECT result FROM sync_runs ORDER BY started_at DESC LIMIT 1").fetchone()
            result = row[0] if row else {}
            statements = db.top_statements("bench_profile", limit=15)
        finally:
            fake.stop()
    summary, _ = summarise(raw) if raw.exists() else ("_no profile written_", {})
    metrics = (result or {}).get("metrics", {})
    text = [
        f"# Profile: first sync of {offers:,} offers under py-spy ({args.rate} Hz)",
        "",
        f"`airflow dags test` exit {proc.returncode}, wall {wall:.1f} s under the profiler; sync_result status "
        f"{(result or {}).get('status')}, phases {json.dumps(metrics.get('phases_s'))}.",
        "",
        summary,
        "",
        "## PostgreSQL's view (pg_stat_statements, by total execution time)",
        "",
        "| calls | total ms | rows | statement |",
        "|---|---|---|---|",
        *(
            f"| {s['calls']} | {s['total_ms']:,.1f} | {s['rows']:,} | `{s['query'].replace('|', '/')}` |"
            for s in statements
        ),
        "",
    ]
    report.write_text("\n".join(text), encoding="utf-8")
    log(f"wrote {raw} and {report}")
    print("\n".join(text))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
