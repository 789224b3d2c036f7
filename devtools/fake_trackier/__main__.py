"""Run the fake Trackier server as a process: ``python -m devtools.fake_trackier``.

Used by the demo and the benchmark. ``--port 0`` picks a free port and ``--port-file`` publishes
it (written atomically once the socket listens), so a script can start the server and wait for
the file instead of guessing ports or sleeping. SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import orjson

from devtools.fake_trackier.catalogue import Catalogue
from devtools.fake_trackier.server import PAGINATION_MODES, FakeTrackier


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m devtools.fake_trackier", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; keep it loopback)")
    p.add_argument("--port", type=int, default=0, help="port, 0 = any free port (default)")
    p.add_argument("--advertisers", type=int, default=20)
    p.add_argument("--campaigns", type=int, default=200)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--api-key",
        default=os.environ.get("FAKE_TRACKIER_API_KEY", "demo-key"),
        help="expected X-Api-Key (default: $FAKE_TRACKIER_API_KEY or demo-key)",
    )
    p.add_argument("--pagination", choices=PAGINATION_MODES, default="both")
    p.add_argument("--fixture", type=Path, help="serve this JSON file as given (the test specification's shape)")
    p.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    p.add_argument("--config", default=None, help="fault knobs as a JSON object, or @path to a JSON file")
    p.add_argument("--verbose", action="store_true", help="log one line per request to stderr")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    knobs: dict[str, object] = {}
    if args.config:
        text = Path(args.config[1:]).read_bytes() if args.config.startswith("@") else args.config.encode()
        knobs = orjson.loads(text)
        if not isinstance(knobs, dict):
            print("--config must be a JSON object", file=sys.stderr)
            return 2
    if args.fixture:
        catalogue = Catalogue.from_fixture(args.fixture, seed=args.seed)
    else:
        catalogue = Catalogue(args.advertisers, args.campaigns, seed=args.seed)
    fake = FakeTrackier(
        catalogue,
        api_key=args.api_key,
        pagination=args.pagination,
        host=args.host,
        port=args.port,
        verbose=args.verbose,
        **knobs,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if args.port_file:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{fake.port}\n")
        os.replace(tmp, args.port_file)
    print(
        f"fake-trackier listening on {fake.url} ({catalogue.advertiser_count} advertisers, "
        f"{catalogue.campaign_count} campaigns, pagination={args.pagination})",
        file=sys.stderr,
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    fake.stop()
    print("fake-trackier stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
