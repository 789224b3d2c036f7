"""Turn ``results.json`` into ``BENCHMARKS.md`` (tables) and ``docs/benchmark.png`` (via chart.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from devtools.airflow_run import REPO_ROOT

#: Every system the benchmark knows, in table order (``bench/run.py`` defines them).
SYSTEM_ORDER = ("ours", "loop", "dlt", "dlt_nonest", "fetch_only", "airflow_floor")
SIZE_ORDER = ("tiny", "1k", "10k", "100k", "1m")
SCENARIOS = (("first", "first sync"), ("nochange", "no-change resync"), ("changed10", "10% payouts changed"))


#: BENCHMARKS.md's sections written by hand (each round's levers, paired runs and ratios) sit between
#: these two lines: ``write_markdown`` keeps them as they are, after the chart, when it rewrites the
#: generated rest from ``results.json`` - a ``make bench`` must not erase the history it adds to.
HAND_WRITTEN_BEGIN = "<!-- bench.report keeps everything from here to the end marker as it is: written by hand -->"
HAND_WRITTEN_END = "<!-- end of the part written by hand -->"


def kept_by_hand(path: Path) -> list[str]:
    """The part of ``path`` written by hand, markers included ([] when the file or the part is absent).

    Raises ``ValueError`` when the part begins and does not end: writing the file then would lose it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    start = text.find(HAND_WRITTEN_BEGIN)
    if start < 0:
        return []
    end = text.find(HAND_WRITTEN_END, start)
    if end < 0:
        raise ValueError(
            f"{path}: the part written by hand begins ({HAND_WRITTEN_BEGIN!r}) but never ends "
            f"({HAND_WRITTEN_END!r} is missing); add the end marker, the file was not rewritten"
        )
    return [*text[start : end + len(HAND_WRITTEN_END)].split("\n"), ""]


def render_chart(results_path: Path, chart: Path, peers_python: Path) -> str:
    """Draw the chart with the peers venv's matplotlib; returns '' or why there is no chart."""
    if not peers_python.exists():
        return "chart skipped: bench/.venv-peers (matplotlib) is not installed; run without --no-peers"
    proc = subprocess.run(
        [str(peers_python), str(REPO_ROOT / "bench" / "chart.py"), str(results_path), str(chart)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return f"chart failed: {proc.stderr.strip()[-400:]}"
    return ""


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(peer: Any, ours: Any) -> str:
    if not isinstance(peer, int | float) or not isinstance(ours, int | float) or not ours:
        return "-"
    return f"{peer / ours:.2f}x"


def _check(run: dict[str, Any]) -> str:
    if not run.get("ok"):
        return "FAILED: " + str(run.get("error", "")).splitlines()[0][:80] if run.get("error") else "FAILED"
    check = run.get("check")
    if check is None:
        return "n/a"
    if check.get("ok"):
        return "ok"
    exp = check.get("expected", {})
    return (
        f"MISMATCH brands {check.get('brands')}/{exp.get('brands')}, offers {check.get('offers')}/"
        f"{exp.get('offers')}, payout {check.get('payout_sum')}/{exp.get('payout_sum')}"
    )


def _sizes(results: dict[str, Any]) -> list[dict[str, Any]]:
    entries = results.get("sizes", {})
    return [entries[s] for s in SIZE_ORDER if s in entries] + [v for k, v in entries.items() if k not in SIZE_ORDER]


def size_table(entry: dict[str, Any]) -> list[str]:
    """One size: systems x metrics, each peer's ratio to ours."""
    systems = entry["systems"]
    ours = systems.get("ours", {}).get("runs", {})
    head = (
        "| system | first sync s | vs ours | no-change resync s | vs ours | 10% changed s | vs ours "
        "| peak RSS MB | vs ours | SQL statements (first / no-change / 10%) | API requests | rows/s (first) "
        "| fake server CPU share | DB CPU share | same rows & payout sum |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for key in SYSTEM_ORDER:
        if key not in systems:
            continue
        runs = systems[key]["runs"]
        first = runs.get("first", {})
        cells = [f"**{systems[key]['label']}**" if key == "ours" else systems[key]["label"]]
        for scenario, _ in SCENARIOS:
            run = runs.get(scenario)
            cells.append(_num(run.get("wall_s")) if run else "-")
            cells.append(
                ""
                if key == "ours"
                else _ratio(run.get("wall_s") if run else None, ours.get(scenario, {}).get("wall_s"))
            )
        peak = max((_memory(r) or 0 for r in runs.values()), default=None) or None
        ours_peak = max((_memory(r) or 0 for r in ours.values()), default=None) or None
        cells += [_num(peak, 0), "" if key == "ours" else _ratio(peak, ours_peak)]
        cells.append(" / ".join(_num(runs[s].get("sql_statements")) for s, _ in SCENARIOS if s in runs))
        cells.append(" / ".join(_num(runs[s].get("api_requests")) for s, _ in SCENARIOS if s in runs))
        cells.append(_num(first.get("rows_per_s"), 0))
        cells.append(
            " / ".join(
                f"{runs[s]['fake_server_share']:.0%}"
                for s, _ in SCENARIOS
                if s in runs and runs[s].get("fake_server_share") is not None
            )
        )
        cells.append(
            " / ".join(
                f"{runs[s]['db_share']:.0%}" for s, _ in SCENARIOS if s in runs and runs[s].get("db_share") is not None
            )
            or "-"
        )
        cells.append(
            "; ".join(f"{s}: {_check(runs[s])}" for s, _ in SCENARIOS if s in runs)
            if any(_check(r) != "ok" for r in runs.values())
            else "ok"
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _memory(run: dict[str, Any]) -> float | None:
    """A run's peak memory: the tree's PSS when it was sampled, else its RSS."""
    return run.get("peak_pss_mb") or run.get("peak_rss_mb")


def _task_peak(run: dict[str, Any]) -> float | None:
    """The task process's own peak: its ``VmHWM`` where sampled, else the tree's RSS."""
    return run.get("root_hwm_mb") or run.get("peak_rss_mb")


def summary_tables(entries: list[dict[str, Any]]) -> list[str]:
    """Sizes x systems for the headline metrics."""
    out: list[str] = []
    sizes = [e["size"] for e in entries]
    metrics = (
        ("First sync, wall time (s)", lambda r: r.get("first", {}).get("wall_s"), 2),
        ("No-change resync, wall time (s)", lambda r: r.get("nochange", {}).get("wall_s"), 2),
        ("Resync with 10% of payouts changed, wall time (s)", lambda r: r.get("changed10", {}).get("wall_s"), 2),
        (
            "Peak memory over the three syncs (MB: the process tree's PSS where sampled, so pages the "
            "validation workers share with their task process count once; else RSS)",
            lambda r: max((_memory(x) or 0 for x in r.values()), default=None) or None,
            0,
        ),
        ("SQL statements, first sync (pg_stat_statements)", lambda r: r.get("first", {}).get("sql_statements"), 0),
        ("SQL statements, no-change resync", lambda r: r.get("nochange", {}).get("sql_statements"), 0),
    )
    scenario_of = {
        "First": "first",
        "No-change": "nochange",
        "Resync": "changed10",
        "SQL statements, first": "first",
        "SQL statements, no-change": "nochange",
    }
    for title, get, digits in metrics:
        scenario = next((v for k, v in scenario_of.items() if title.startswith(k)), None)
        out += [f"**{title}**", "", "| system | " + " | ".join(sizes) + " |", "|---|" + "---|" * len(sizes)]
        for key in SYSTEM_ORDER:
            if not any(key in e["systems"] for e in entries):
                continue
            label = next(e["systems"][key]["label"] for e in entries if key in e["systems"])
            cells = []
            for e in entries:
                runs = e["systems"].get(key, {}).get("runs")
                ours = e["systems"].get("ours", {}).get("runs")
                value = get(runs) if runs else None
                cell = _num(value, digits)
                if key != "ours" and runs and ours and value is not None:
                    cell += f" ({_ratio(value, get(ours))})"
                picked = [runs.get(scenario)] if runs and scenario else list((runs or {}).values())
                if any(r and _check(r) != "ok" and _check(r) != "n/a" for r in picked):
                    cell += " FAILED"
                cells.append(cell)
            lines = f"| {'**' + label + '**' if key == 'ours' else label} | " + " | ".join(cells) + " |"
            out.append(lines)
        out.append("")
    return out


def ours_detail(entry: dict[str, Any]) -> list[str]:
    runs = entry["systems"].get("ours", {}).get("runs", {})
    if not runs:
        return []
    out = [
        f"#### Ours at {entry['size']}: counts, phases and Airflow overhead",
        "",
        "| sync | status | added | updated | unchanged | deactivated | rejected | extract (fetch wait) s "
        "| validate s | stage (COPY) s | check s | merge s | time in task instances s | outside tasks s "
        "| peak task RSS (in-task VmHWM) MB | self-counted statements |",
        "|---|" + "---|" * 15,
    ]
    for scenario, label in SCENARIOS:
        run = runs.get(scenario)
        if not run:
            continue
        res, ph = run.get("sync_result") or {}, run.get("phases_s") or {}
        out.append(
            "| "
            + " | ".join(
                [
                    label,
                    str(res.get("status", "FAILED" if not run.get("ok") else "-")),
                    *(_num(res.get(k)) for k in ("added", "updated", "unchanged", "deactivated", "rejected")),
                    *(_num(ph.get(k)) for k in ("extract", "validate", "stage", "check", "merge")),
                    _num(run.get("airflow_tasks_s")),
                    _num(run.get("outside_tasks_s")),
                    _num(run.get("peak_task_rss_mb"), 0),
                    _num(run.get("self_counted_statements")),
                ]
            )
            + " |"
        )
    first = runs.get("first", {})
    if first.get("tasks"):
        out += [
            "",
            f"Task instances of the first sync at {entry['size']} (Airflow's metadata DB; memory sampled "
            "from /proc while the task ran):",
            "",
            "| task instance | Airflow duration s | in-task wall s | Airflow overhead s | sampled RSS MB "
            "| in-task VmHWM MB |",
            "|---|---|---|---|---|---|",
        ]
        for t in first["tasks"]:
            out.append(
                f"| {t['task']} | {_num(t.get('airflow_s'))} | {_num(t.get('inner_wall_s'))} | "
                f"{_num(t.get('overhead_s'))} | {_num(t.get('sampled_peak_rss_mb'), 0)} | "
                f"{_num(t.get('inner_peak_rss_mb'), 0)} |"
            )
    top = [s for s in first.get("top_statements") or [] if not s["query"].startswith("SELECT (SELECT count(*)")]
    if top:
        top = top[:12]
        out += [
            "",
            f"Most expensive statements of the first sync at {entry['size']} (pg_stat_statements; all of "
            "them in results.json):",
            "",
            "| calls | total ms | rows | statement |",
            "|---|---|---|---|",
        ]
        for s in top:
            query = s["query"].replace("|", "\\|")
            out.append(f"| {s['calls']:,} | {s['total_ms']:,.1f} | {s['rows']:,} | `{query}` |")
        out += [
            "",
            "A staging `COPY` stays open while its shard streams (fetch, validate, write), so its time is the "
            "shard's wall time, not work done by the database.",
        ]
    out.append("")
    return out


def targets(entries: list[dict[str, Any]]) -> list[str]:
    """Issue 9's targets next to what this run measured (only for sizes measured)."""
    rows = []
    by = {e["size"]: e["systems"].get("ours", {}).get("runs", {}) for e in entries}

    def wall(size: str, scenario: str) -> float | None:
        return by.get(size, {}).get(scenario, {}).get("wall_s")

    for size, scenario, limit in (
        ("100k", "first", 20),
        ("1m", "first", 90),
        ("1m", "nochange", 60),
        ("1m", "changed10", 75),
    ):
        value = wall(size, scenario)
        if value is not None:
            rows.append(
                f"| {size} {dict(SCENARIOS)[scenario]} under {limit} s | {value:.1f} s | "
                f"{'met' if value < limit else 'NOT met'} |"
            )
    stmts = [
        (s, sc, r.get("sql_statements"))
        for s, runs in by.items()
        for sc, r in runs.items()
        if r.get("sql_statements") is not None
    ]
    if stmts:
        worst = max(stmts, key=lambda x: x[2])
        rows.append(
            f"| SQL statements per sync at most 50, any size | max {worst[2]} ({worst[0]} "
            f"{dict(SCENARIOS)[worst[1]]}) | {'met' if worst[2] <= 50 else 'NOT met'} |"
        )
    # The task process itself: its own VmHWM where sampled (its validation workers are processes of
    # their own, reported per shard as worker_peak_rss_mb), else the tree's RSS.
    peaks = [(s, peak) for s, runs in by.items() for r in runs.values() if (peak := _task_peak(r))]
    if peaks:
        worst_p = max(peaks, key=lambda x: x[1])
        tasks = by.get(worst_p[0], {}).get("first", {}).get("tasks") or [{}]
        baseline = tasks[0].get("sampled_peak_rss_mb")
        base = f"; Airflow alone, during the first task: {baseline:.0f} MB" if baseline else ""
        rows.append(
            f"| Peak RSS of the task process under 300 MB | max {worst_p[1]:.0f} MB at {worst_p[0]} "
            f"(whole `airflow dags test` process{base}) | "
            f"{'met' if worst_p[1] < 300 else 'NOT met'} |"
        )
    shares = [
        r.get("fake_server_share")
        for runs in by.values()
        for r in runs.values()
        if r.get("fake_server_share") is not None
    ]
    if shares:
        rows.append(
            f"| The fake server is not the bottleneck | its CPU at most {max(shares):.0%} of the wall time "
            f"| {'met' if max(shares) < 0.5 else 'check'} |"
        )
    if not rows:
        return []
    return ["| target (issue 9) | measured | |", "|---|---|---|", *rows, ""]


def write_markdown(results: dict[str, Any], path: Path, chart: Path, chart_note: str) -> None:
    """Write ``path`` from ``results``, keeping its part written by hand (``kept_by_hand``)."""
    by_hand = kept_by_hand(path)
    entries = _sizes(results)
    machine = results.get("machine", {})
    chart_rel = os.path.relpath(chart, path.parent)
    sizes_run = ",".join(e["size"] for e in entries)
    cores = machine.get("nproc") or 1
    loads = [x for e in entries for x in (e.get("load_avg_start", [0])[0], e.get("load_avg_end", [0])[0])]
    loads += [s["load_avg"][0] for e in entries for s in e["systems"].values() if s.get("load_avg")]
    worst_load = max(loads, default=0)
    lines = [
        "# Benchmarks: trackier_offer_sync vs dlt vs a hand-written loop",
        "",
        *(
            [
                f"**Measured on a busy machine (1-minute load average up to {worst_load:.1f} on {cores} cores): these "
                "numbers validate the harness; they are not final. Re-run `make bench` on a quiet machine.**",
                "",
            ]
            if worst_load > cores
            else []
        ),
        "Written by `python -m bench.run` (`make bench`); every number below comes from "
        "`bench/out/results.json` of that run. Each size gets a fresh PostgreSQL and a fresh fake Trackier "
        "(separate process, loopback); every system loads the **same catalogue** three times: a first sync into an "
        "empty database, a no-change resync, and a resync after 10% of the payouts changed. Ours runs exactly as "
        "the demo does: `airflow dags test trackier_offer_sync` (task instances one after another, in one process).",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench                 # 1k, 10k, 100k offers (python -m bench.run --sizes 1k,10k,100k)",
        "make bench SIZES=1m        # 1,000,000 offers / 20,000 advertisers (python -m bench.run --sizes 1m)",
        "python -m bench.run --sizes tiny --no-peers --out /tmp/b --markdown /tmp/b/B.md   # the smoke test's run",
        "```",
        "",
        f"This file was last written by `{results.get('command', 'python -m bench.run')}` "
        f"(sizes in it: {sizes_run}; results of earlier sizes are kept in results.json until `--fresh`).",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {machine.get('nproc', '?')} cores usable (nproc), {machine.get('cpu_model', '?')} |",
        f"| memory | {machine.get('memory_gib', '?')} GiB |",
        f"| kernel | {machine.get('kernel', '?')} |",
        f"| PostgreSQL | {machine.get('postgresql', '?')} ({machine.get('database', '?')}) |",
        f"| Python / Airflow / psycopg | {machine.get('python', '?')} / {machine.get('airflow', '?')} / "
        f"{machine.get('psycopg', '?')} |",
        f"| dlt / matplotlib (bench/.venv-peers) | {machine.get('dlt', 'not installed')} / "
        f"{machine.get('matplotlib', 'not installed')} |",
        "",
        "Load average at the start and end of each size (the machine may be shared; a load above the core count "
        "means the numbers are noisy):",
        "",
        "| size | started (UTC) | load at start | load at end | code (commit, uncommitted core files) |",
        "|---|---|---|---|---|",
    ]
    for e in entries:
        code = e.get("code", {})
        files = code.get("uncommitted_core_files", [])
        dirty = f"{len(files)} uncommitted file(s) under include/ and dags/ (see results.json)" if files else "clean"
        start = " ".join(f"{x:.2f}" for x in e.get("load_avg_start", []))
        end = " ".join(f"{x:.2f}" for x in e.get("load_avg_end", []))
        commit = code.get("commit", "?")
        lines.append(f"| {e['size']} | {e.get('started_at', '?')} | {start} | {end} | {commit}, {dirty} |")
    lines += ["", "## Summary (sizes x systems; in brackets: the peer's figure divided by ours)", ""]
    lines += summary_tables(entries)
    lines += ["## Chart", ""]
    lines += [f"![wall time and peak memory against N]({chart_rel})" if not chart_note else f"_{chart_note}_", ""]
    lines += by_hand
    lines += ["## Issue 9 targets", ""] + (targets(entries) or ["_no size measured yet_", ""])
    lines += ["## Per size: systems x metrics", ""]
    for e in entries:
        db = e.get("database", {})
        lines += [
            f"### {e['size']}: {e['offers']:,} offers, {e['advertisers']:,} advertisers",
            "",
            f"Database: {db.get('kind')} PostgreSQL {db.get('version')}"
            + (f" - **{db['note']}**" if db.get("note") else "")
            + f". Page size {e.get('page_size')}; client-side rate limit "
            f"{e.get('client_rate_limit')}.",
            "",
        ]
        lines += size_table(e)
        when = [
            f"{s['label']} at {s['measured_at'][11:19]} UTC (load {s['load_avg'][0]:.1f})"
            for s in e["systems"].values()
            if s.get("measured_at")
        ]
        if when:
            lines += ["", "Measured: " + "; ".join(when) + "."]
        lines.append("")
        lines += ours_detail(e)
    lines += [
        "## How each figure is measured",
        "",
        "- **wall time**: the whole command, start to exit: for ours the `airflow dags test` process "
        "(interpreter start, DAG parse, every task instance); for the peers their Python process (imports included).",
        "- **peak RSS**: `/proc/<pid>/status` of the process and all its children, sampled every 0.2 s (summed "
        "`VmRSS`), and the root's `VmHWM` high-water mark; the larger is reported. `airflow dags test` runs every "
        "task instance inside its own process, so the per-task `VmHWM` the DAG records in "
        "`sync_result.metrics.tasks` is that process's peak so far (it only grows); the 'sampled RSS' column "
        "attributes samples to the task instance running at the time.",
        "- **SQL statements**: PostgreSQL's own `pg_stat_statements` (`track = top`, `track_utility` on, so "
        "BEGIN/COMMIT/COPY count), `sum(calls)` for the system's database after `pg_stat_statements_reset()`. "
        "Airflow's metadata database is SQLite and is not counted. 'self-counted' is the DAG's own counter.",
        "- **API requests**: the fake server's `GET /_fake/stats` total, reset before each sync.",
        "- **fake server CPU share**: its process's utime+stime (`/proc/<pid>/stat`) during the sync divided by "
        "the sync's wall time: how much of the run the server itself was busy (1 core = 100%).",
        "- **DB CPU share**: CPU time of the PostgreSQL backends that exited during the sync (the postmaster's "
        "reaped children, `cutime+cstime`) divided by wall time.",
        "- **same rows & payout sum**: brands/advertisers and active offers/campaigns must equal the catalogue's "
        "counts, and the sum of the first payout rule's `payout` must equal the catalogue's "
        "`expected_payout_sum()` (after the 10% change too). For dlt with defaults that is "
        "`campaigns__payouts.payout` where `_dlt_list_idx = 0`; with `max_nesting=0` it is "
        "`campaigns.payouts->0->>'payout'`.",
        "- **PostgreSQL**: a private cluster per size (`initdb` as the postgres OS user, free loopback port). "
        "Defaults except: `shared_preload_libraries='pg_stat_statements'`, `pg_stat_statements.track=top`, "
        "`max_connections=200`, `listen_addresses='127.0.0.1'`, initdb `--encoding=UTF8 --locale=C.UTF-8` "
        "(as the machine's server). `fsync`, `synchronous_commit` and `shared_buffers` are left at their defaults.",
        "- **client**: ours with `page_size: 1000` and `requests_per_second: 0` in the `trackier_api` connection "
        "extra (no client-side rate limit); the peers also ask for 1000 records a page.",
        "- **peers**: `bench/peers/` run in `bench/.venv-peers` (from `bench/requirements.txt`), never in the "
        "DAG's venv. The hand-written loop uses `requests` + `psycopg2`, one connection, one "
        "`INSERT ... ON CONFLICT` per record and a commit per page, no validation and no audit. dlt uses its "
        '`rest_api` source, postgres destination, `write_disposition="merge"`, `primary_key="id"`. '
        "'fetch only' reads every page with `requests` and parses it, and writes nothing: the floor.",
        "- **Airflow alone**: `airflow dags test` of `bench/airflow_floor/` - our DAG's tasks, dependencies, "
        "mapping and outlet with empty bodies, mapped over the shard labels ours plans at that size (one run: "
        "it does not depend on the data). What ours costs before its own code does any work; its 'vs ours' is "
        "that share of ours' time.",
        "- **fake server**: asked to render every record before each sync (`/_fake/prerender`), outside the "
        "measured time, as a real Trackier renders on its own machines; `--fake-renders per-request` renders each "
        "page when it is asked for, on the measured machine (every round before the eighth).",
        "- **LocalExecutor**: `python -m bench.local_executor` runs the same syncs under a scheduler (mapped "
        "extract tasks in parallel); its figures are in the part written by hand.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report``: rewrite BENCHMARKS.md and the chart from results.json, no re-run."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "out")
    parser.add_argument("--markdown", type=Path, default=REPO_ROOT / "BENCHMARKS.md")
    parser.add_argument("--chart", type=Path, default=REPO_ROOT / "docs" / "benchmark.png")
    args = parser.parse_args(argv)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text())
    note = render_chart(results_path, args.chart, REPO_ROOT / "bench" / ".venv-peers" / "bin" / "python")
    write_markdown(results, args.markdown, args.chart, note)
    print(f"wrote {args.markdown}" + (f" ({note})" if note else f" and {args.chart}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
