"""dlt's ``rest_api`` source against the same fake Trackier: the off-the-shelf peer.

Configured as issue 9 says: postgres destination, ``write_disposition="merge"``,
``primary_key="id"``, 1000 records a page (numbered pages, ``pagination.totalPages`` as the total),
once with dlt's defaults (nested lists become child tables such as ``campaigns__payouts``) and once
with ``--max-nesting 0`` (nested lists stay JSON columns of ``campaigns``). The pipeline's local
state lives in ``--pipelines-dir`` so a resync finds the state of the first sync, as it would in
production. Telemetry is off (there is no network here, and it must not skew the timing).

Run by the benchmark inside ``bench/.venv-peers``:
``python -m bench.peers.dlt_rest_api --base-url URL --db-url URL --pipelines-dir DIR [--max-nesting 0]``
(key in ``BENCH_API_KEY``). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from urllib.parse import urlsplit

from bench.peers._memory import vm_hwm_mb


def with_password(url: str) -> str:
    """dlt insists on a password; the benchmark's private cluster trusts loopback, so any will do."""
    parts = urlsplit(url)
    if parts.password or not parts.username:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:trust@{host}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--pipelines-dir", required=True)
    parser.add_argument("--pipeline-name", default="trackier_bench")
    parser.add_argument("--max-nesting", type=int, default=None)
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    started = time.perf_counter()

    import dlt
    from dlt.sources.rest_api import rest_api_source

    paginator = {"type": "page_number", "base_page": 1, "page_param": "page", "total_path": "pagination.totalPages"}
    config = {
        "client": {
            "base_url": args.base_url.rstrip("/") + "/v2/",
            "auth": {
                "type": "api_key",
                "name": "X-Api-Key",
                "api_key": os.environ["BENCH_API_KEY"],
                "location": "header",
            },
        },
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "merge",
            "endpoint": {"params": {"limit": args.page_size}, "paginator": paginator},
        },
        "resources": [
            {"name": "advertisers", "endpoint": {"path": "advertisers", "data_selector": "advertisers"}},
            {"name": "campaigns", "endpoint": {"path": "campaigns", "data_selector": "campaigns"}},
        ],
    }
    source = rest_api_source(config, max_table_nesting=args.max_nesting)  # type: ignore[arg-type]
    pipeline = dlt.pipeline(
        pipeline_name=args.pipeline_name,
        pipelines_dir=args.pipelines_dir,
        destination=dlt.destinations.postgres(credentials=with_password(args.db_url)),
        dataset_name="trackier",
    )
    info = pipeline.run(source)
    row_counts = dict(pipeline.last_trace.last_normalize_info.row_counts) if pipeline.last_trace else {}
    print(
        json.dumps(
            {
                "loads": len(info.loads_ids),
                "row_counts": row_counts,
                "dlt_version": dlt.__version__,
                "inner_wall_s": round(time.perf_counter() - started, 3),
                "vm_hwm_mb": vm_hwm_mb(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
