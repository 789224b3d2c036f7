"""A local fake of Trackier's v2 admin API for the demo, the tests and the benchmark.

- ``Catalogue``: deterministic advertisers/campaigns rendered lazily from ``(seed, index)``, plus
  small mutation deltas (payout changes, removals, additions, field overrides); or a fixture file
  in the original test specification's simplified shape, served as given
  (``docs/trackier-api.md#the-original-test-specifications-fixture-shape``).
- ``FakeTrackier``: the HTTP server on a daemon thread, with fault knobs (``faults.Knobs``).
- ``python -m devtools.fake_trackier --help``: the same as a standalone process.
"""

from devtools.fake_trackier.catalogue import Catalogue
from devtools.fake_trackier.faults import FAULT_KINDS, INVALID_KINDS, Knobs
from devtools.fake_trackier.server import FakeTrackier

__all__ = ["FAULT_KINDS", "INVALID_KINDS", "Catalogue", "FakeTrackier", "Knobs"]
