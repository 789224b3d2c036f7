"""One extract shard outside Airflow, with and without validation workers: ``python -m bench.shard``.

Starts a private PostgreSQL and the fake Trackier as its own process, every record rendered before
the first shard (as ``bench.run`` does before each sync), plans the campaigns, and runs the first
campaign shard through ``tasks.extract_shard`` once per ``--processes`` value (alternating,
``--repeat`` times), each into a fresh run's staging. Prints the shard's wall time, the CPU of this
process and of its children (the workers), and the summary's validate/stage/wait split, with the
load average: what ``extract_pool.py`` quotes.

    python -m bench.shard --size 100k --processes 0,auto --repeat 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from bench.cluster import start_database
from bench.run import API_KEY, PAGE_SIZE, SIZES, FakeServer
from include.offer_sync import tasks
from include.offer_sync.constants import AUTO
from include.offer_sync.settings import DatabaseSettings, TrackierSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shard", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100k", choices=list(SIZES))
    parser.add_argument("--processes", default="0,auto", help="validate_processes values to compare")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    offers, advertisers = SIZES[args.size]
    modes = [p if p == AUTO else int(p) for p in args.processes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-shard-"))
    with start_database(workdir) as cluster:
        db = DatabaseSettings(cluster.create("bench_shard"))
        fake = FakeServer(workdir, advertisers, offers, args.seed, API_KEY).start()
        # As bench.run does before each sync: rendering on request cost the fake 3.0 CPU-s of a
        # 250k shard's ~12.7 on these two cores (twelfth round), work a real Trackier does elsewhere.
        fake.prerender()
        try:
            for round_ in range(args.repeat):
                for mode in modes:
                    api = TrackierSettings(
                        base_url=fake.url,
                        api_key=SecretStr(API_KEY),
                        page_size=PAGE_SIZE,
                        requests_per_second=0,
                        validate_processes=mode,
                    )
                    run = tasks.start_sync(db, run_id=f"shard-{round_}-{mode}", dag_id="bench_shard", params={})
                    shard = tasks.plan_entity(api, "campaigns")[0]
                    t0, c0 = time.perf_counter(), os.times()
                    s = tasks.extract_shard(db, api, run, shard)
                    wall, c1 = time.perf_counter() - t0, os.times()
                    own = c1.user - c0.user + c1.system - c0.system
                    children = c1.children_user - c0.children_user + c1.children_system - c0.children_system
                    print(
                        f"validate_processes={mode} workers={s['processes']} records={s['records']} "
                        f"wall={wall:.2f}s cpu: task={own:.2f}s workers={children:.2f}s | "
                        f"validate={s['validate_s']:.2f}s stage={s['stage_s']:.2f}s "
                        f"fetch_wait={s['fetch_wait_s']:.2f}s "
                        f"worker_wait={s['worker_wait_s']:.2f}s | VmHWM task {s['peak_rss_mb']:.0f} MB, "
                        f"workers {s['worker_peak_rss_mb']:.0f} MB | load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
        finally:
            fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
