"""Draw ``docs/benchmark.png`` from ``results.json``: wall time and peak memory against N per system.

Runs inside ``bench/.venv-peers`` (matplotlib is not in the DAG's venv):
``python bench/chart.py bench/out/results.json docs/benchmark.png``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend must be chosen first
from matplotlib.ticker import FuncFormatter

STYLE = {
    "ours": ("trackier_offer_sync (Airflow)", "tab:blue", "o", "-"),
    "loop": ("hand-written loop", "tab:orange", "s", "-"),
    "dlt": ("dlt rest_api (defaults)", "tab:red", "^", "-"),
    "dlt_nonest": ("dlt rest_api (max_nesting=0)", "tab:red", "v", "--"),
}


def main(results_file: str, out_file: str) -> int:
    results = json.loads(Path(results_file).read_text())
    sizes = sorted(results["sizes"].values(), key=lambda e: e["offers"])
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(12, 4.8))
    for key, (label, color, marker, line) in STYLE.items():
        points = []
        for entry in sizes:
            runs = entry["systems"].get(key, {}).get("runs", {})
            first, nochange = runs.get("first"), runs.get("nochange")
            if first and first.get("ok"):
                points.append(
                    (
                        entry["offers"],
                        first["wall_s"],
                        first.get("peak_pss_mb") or first.get("peak_rss_mb"),
                        nochange["wall_s"] if nochange and nochange.get("ok") else None,
                    )
                )
        if not points:
            continue
        xs = [p[0] for p in points]
        ax_time.plot(
            xs, [p[1] for p in points], marker=marker, linestyle=line, color=color, label=f"{label}, first sync"
        )
        resync = [(p[0], p[3]) for p in points if p[3] is not None]
        if resync:
            ax_time.plot(
                [r[0] for r in resync],
                [r[1] for r in resync],
                marker=marker,
                linestyle=":",
                color=color,
                alpha=0.6,
                label=f"{label}, no-change resync",
            )
        mem = [(p[0], p[2]) for p in points if p[2] is not None]
        ax_mem.plot([m[0] for m in mem], [m[1] for m in mem], marker=marker, linestyle=line, color=color, label=label)
    # Reference lines, first sync only (neither depends on what a database holds).
    for key, marker, linestyle, label in (
        ("fetch_only", ".", ":", "fetch only, no database (the floor)"),
        ("airflow_floor", "x", "--", "Airflow alone: our DAG's tasks, empty (airflow dags test)"),
    ):
        reference = [
            (e["offers"], e["systems"][key]["runs"]["first"]["wall_s"])
            for e in sizes
            if e["systems"].get(key, {}).get("runs", {}).get("first", {}).get("ok")
        ]
        if reference:
            ax_time.plot(
                [p[0] for p in reference],
                [p[1] for p in reference],
                marker=marker,
                linestyle=linestyle,
                color="grey",
                label=label,
            )
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
    for ax, title, unit in (
        (ax_time, "Wall time per sync", "seconds"),
        (ax_mem, "Peak memory (PSS of the process tree, else RSS)", "MB"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(plain)
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain if ax is ax_mem else FuncFormatter(lambda v, _: ""))
        ax.set_xlabel("offers (N)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_time.legend(fontsize=7, loc="upper left")
    ax_mem.legend(fontsize=7, loc="upper left")
    machine = results.get("machine", {})
    title = (
        f"Trackier offer sync vs peers - {machine.get('nproc', '?')} cores, {machine.get('cpu_model', '?')}, "
        f"PostgreSQL {machine.get('postgresql', '?')}"
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
