"""A local fake of Trackier's v2 admin API for the demo, the tests and the benchmark.

- ``Catalogue``: deterministic advertisers/campaigns rendered lazily from ``(seed, index)``, plus
  small mutation deltas (payout changes, removals, additions, field overrides); or a fixture file
  in the original test specification's simplified shape, served as given
  (``docs/trackier-api.md#the-original-test-specifications-fixture-shape``).
- ``FakeTrackier``: the HTTP server on a daemon thread, with fault knobs (``faults.Knobs``) and
  unauthenticated controls under ``/_fake/`` (health, stats, config, mutate, and ``prerender``,
  which the benchmark calls so that rendering pages does not use the measured machine's CPU).
- ``python -m devtools.fake_trackier --help``: the same as a standalone process.
"""

import sys
from pathlib import Path

from devtools.fake_trackier.catalogue import Catalogue
from devtools.fake_trackier.faults import FAULT_KINDS, INVALID_KINDS, Knobs
from devtools.fake_trackier.server import FakeTrackier

__all__ = ["FAULT_KINDS", "INVALID_KINDS", "Catalogue", "FakeTrackier", "Knobs", "process_command"]


def process_command(port_file: Path, *, advertisers: int, campaigns: int, seed: int, api_key: str) -> list[str]:
    """``python -m devtools.fake_trackier`` on a free loopback port, which it writes to ``port_file``
    (the demo and the benchmark run the fake as a process of its own, as it would be in compose)."""
    return [
        *(sys.executable, "-m", "devtools.fake_trackier", "--port", "0", "--port-file", str(port_file)),
        *("--advertisers", str(advertisers), "--campaigns", str(campaigns), "--seed", str(seed)),
        *("--api-key", api_key),
    ]
