"""The floor: one ``requests`` loop over every page of both lists, JSON parsed, no database.

Whatever a system spends beyond this is its own cost (validation, loading, merging, orchestration).
Run by the benchmark inside ``bench/.venv-peers``: ``python -m bench.peers.fetch_only --base-url URL``
(key in ``BENCH_API_KEY``). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import requests

from bench.peers._memory import vm_hwm_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()
    started = time.perf_counter()
    session = requests.Session()
    session.headers["X-Api-Key"] = os.environ["BENCH_API_KEY"]
    out = {"advertisers": 0, "campaigns": 0, "requests": 0}
    for entity in ("advertisers", "campaigns"):
        page = 1
        while True:
            response = session.get(
                f"{args.base_url}/v2/{entity}", params={"page": page, "limit": args.page_size}, timeout=60
            )
            response.raise_for_status()
            out["requests"] += 1
            records = response.json()[entity]
            out[entity] += len(records)
            if len(records) < args.page_size:
                break
            page += 1
    print(json.dumps({**out, "inner_wall_s": round(time.perf_counter() - started, 3), "vm_hwm_mb": vm_hwm_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
