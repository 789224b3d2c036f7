"""Spec case 4 (Performance Testing), in the part a test can assert without timing anything.

Speed itself is shown by the benchmark (``make bench``, BENCHMARKS.md), never by a timed assertion
on a shared machine. What must hold at any size, and what these tests check on 1,000 and 20,000
offers through real HTTP and PostgreSQL: the sync completes with every offer stored, the number of
SQL statements does not grow with the catalogue (set-based SQL and one COPY per shard, not a
statement per record), and memory stays flat (pages are streamed into COPY, never collected).
"""

from __future__ import annotations

import tracemalloc

from devtools.fake_trackier import Catalogue
from devtools.inline import run_sync
from tests.helpers import trackier_settings


def _sync(fake_trackier, offers_db, campaigns: int, run_id: str) -> tuple[dict, int]:
    """One first sync of ``campaigns`` offers; returns its result and the peak Python allocation."""
    api = trackier_settings(fake_trackier(Catalogue(campaigns // 40, campaigns, seed=4)), page_size=1000)
    tracemalloc.start()
    try:
        result = run_sync(offers_db, api, run_id)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_case_4_performance_statements_and_memory_do_not_grow_with_the_catalogue(fake_trackier, offers_db, sql) -> None:
    # Both measured runs start from the same state: schema created, tables empty (first-sync path).
    _sync(fake_trackier, offers_db, 1_000, "run-warm-up")
    sql("TRUNCATE offers, brands, offer_audit, brand_audit")
    small, small_peak = _sync(fake_trackier, offers_db, 1_000, "run-small")
    sql("TRUNCATE offers, brands, offer_audit, brand_audit")
    large, large_peak = _sync(fake_trackier, offers_db, 20_000, "run-large")

    assert (small["status"], small["added"]) == ("completed", 1_000)
    assert (large["status"], large["added"], large["rejected"]) == ("completed", 20_000, 0)
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(20_000,)]
    # Twenty times the offers, the same statements: nothing is sent per record.
    assert large["metrics"]["db_statements"] == small["metrics"]["db_statements"]
    # Twenty times the offers, about the same peak: a few pages in flight, never the sweep.
    assert large_peak < 2 * small_peak, (small_peak, large_peak)
