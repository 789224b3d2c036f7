"""The sweep-wide request rate: one budget for all of a sweep's tasks, whatever runs them.

Measured where it matters, at the fake Trackier's request log (arrival times of every request),
with the limiter state in a real PostgreSQL shared by separate processes.
"""

from __future__ import annotations

import multiprocessing
import uuid
from typing import Any

import psycopg
import pytest

from devtools.fake_trackier import Catalogue
from devtools.inline import run_sync
from include.offer_sync import db as dbmod
from include.offer_sync.settings import DatabaseSettings
from include.offer_sync.tasks import plan_entity
from include.offer_sync.trackier.http import RateLimiter, TrackierClient
from include.offer_sync.trackier.ratelimit import SweepRateLimiter
from tests.helpers import trackier_settings

RATE = 10.0


def max_in_any_window(times: list[float], window: float) -> int:
    """The most requests that arrived within any ``window`` seconds (a window starts at a request)."""
    times = sorted(times)
    best, end = 0, 0
    for start, t in enumerate(times):
        while end < len(times) and times[end] < t + window:
            end += 1
        best = max(best, end - start)
    return best


def _fetch_pages(
    conninfo: str,
    base_url: str,
    api_key: str,
    sweep: str,
    pages: list[int],
    pause_s: float,
    shared: bool,
    go: Any,
    out: Any,
) -> None:
    """One task process: fetch ``pages`` through the sweep's limiter (or a private one)."""
    import time

    from pydantic import SecretStr

    from include.offer_sync.settings import TrackierSettings

    settings = TrackierSettings(base_url=base_url, api_key=SecretStr(api_key), page_size=10, requests_per_second=RATE)
    limiter: Any = SweepRateLimiter(DatabaseSettings(conninfo=conninfo), sweep, RATE) if shared else RateLimiter(RATE)
    client = TrackierClient(settings, limiter=limiter)
    go.wait(30)
    for page in pages:
        client.fetch_page("campaigns", page=page)
        time.sleep(pause_s)
    out.put({"requests": client.stats.requests, **(limiter.stats() if shared else {})})
    if shared:
        limiter.close()


def run_two_processes(fake: Any, offers_db_url: str, *, shared: bool) -> tuple[list[float], list[dict[str, Any]]]:
    """A fast and a slow task process of one sweep, started together; returns the server's log."""
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    sweep = f"sweep-{uuid.uuid4().hex[:8]}"
    jobs = [
        # The fast one could go far above the rate alone; the slow one lets some of its slots expire.
        (list(range(1, 31)), 0.0),
        (list(range(31, 41)), 0.15),
    ]
    procs = [
        ctx.Process(
            target=_fetch_pages, args=(offers_db_url, fake.url, "test-key-3f9a", sweep, pages, pause, shared, go, out)
        )
        for pages, pause in jobs
    ]
    for proc in procs:
        proc.start()
    fake.reset_stats()
    go.set()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return fake.request_times(), results


def test_two_processes_share_one_sweep_budget(fake_trackier: Any, offers_db_url: str) -> None:
    fake = fake_trackier(Catalogue(2, 400, seed=3))
    times, results = run_two_processes(fake, offers_db_url, shared=True)
    assert sorted(r["requests"] for r in results) == [10, 30]
    assert len(times) == 40
    # Summed over both processes: the whole run no faster than the rate, and no window above it
    # (a window of d seconds holds rate*d + 1 slots; +1 more for a request the OS sent late).
    assert max(times) - min(times) >= (len(times) - 1) / RATE - 0.05
    assert max_in_any_window(times, 1.0) <= RATE + 2, sorted(times)
    assert max_in_any_window(times, 2.0) <= 2 * RATE + 2
    # Batched: far fewer statements than requests.
    assert sum(r["reservations"] for r in results) < len(times) / 2, results


def test_private_limiters_would_double_the_rate(fake_trackier: Any, offers_db_url: str) -> None:
    # The same two processes, each with its own local bucket: the measurement above would catch it.
    fake = fake_trackier(Catalogue(2, 400, seed=3))
    times, _ = run_two_processes(fake, offers_db_url, shared=False)
    assert max_in_any_window(times, 2.0) > 2 * RATE + 2
    assert max(times) - min(times) < (len(times) - 1) / RATE - 0.05


def test_a_sweep_alone_gets_the_full_rate_and_the_limiter_costs_few_statements(
    fake_trackier: Any, offers_db_url: str, sql: Any
) -> None:
    # Every task one after another in one process, as under `airflow dags test`.
    fake = fake_trackier(Catalogue(4, 400, seed=5))
    api = trackier_settings(fake, page_size=10, requests_per_second=20, pages_per_shard=5, max_shards=8)
    db = DatabaseSettings(conninfo=offers_db_url)
    fake.reset_stats()
    result = run_sync(db, api, run_id="rate-alone")
    times = fake.request_times()
    assert result["added"] == 400
    assert len(times) >= 42  # 40 campaign pages, advertisers, the probes
    span = max(times) - min(times)
    assert span >= (len(times) - 3) / 20 - 0.05  # the two probes use their own one-request bucket
    # The old split gave each task 20 / (4 * 2) = 2.5 requests/s: over 16 s for these requests.
    assert span < 2 * len(times) / 20 + 1, span
    assert max_in_any_window(times, 1.0) <= 20 + 3
    # One schedule for the whole sweep, keyed by the run.
    assert sql("SELECT sweep FROM sync_rate_limits") == [("rate-alone",)]


def test_limiter_off_touches_nothing_in_the_database(fake_trackier: Any, offers_db_url: str, sql: Any) -> None:
    fake = fake_trackier(Catalogue(4, 200, seed=5))
    db = DatabaseSettings(conninfo=offers_db_url)
    off = run_sync(db, trackier_settings(fake, page_size=10, requests_per_second=0), run_id="rate-off")
    assert off["status"] == "completed"
    assert not sql("SELECT 1 FROM pg_tables WHERE tablename = 'sync_rate_limits'")
    # The statement counter sees the limiter's statements whenever it is on, so "off" really is zero.
    on = run_sync(db, trackier_settings(fake, page_size=10, requests_per_second=200), run_id="rate-on")
    assert on["metrics"]["db_statements"] > off["metrics"]["db_statements"]


def test_plan_gives_every_shard_the_whole_sweep_rate(fake_trackier: Any) -> None:
    fake = fake_trackier(Catalogue(2, 400, seed=3))
    api = trackier_settings(fake, page_size=10, requests_per_second=5, pages_per_shard=5, max_shards=8)
    shards = plan_entity(api, "campaigns")
    assert len(shards) == 8
    assert {s["requests_per_second"] for s in shards} == {5}


def test_an_idle_sweep_does_not_bank_requests_for_a_burst(offers_db_url: str) -> None:
    # Slots are handed out from "now" after a pause, never from where the schedule stopped.
    import time

    limiter = SweepRateLimiter(DatabaseSettings(conninfo=offers_db_url), "idle-sweep", 5.0)
    try:
        for _ in range(3):
            limiter.acquire()
        time.sleep(1.5)
        started = time.monotonic()
        stamps = []
        for _ in range(6):
            limiter.acquire()
            stamps.append(time.monotonic() - started)
    finally:
        limiter.close()
    # Six requests after the pause still take five intervals: no catch-up burst.
    assert stamps[-1] >= 5 / 5.0 - 0.05, stamps


def test_a_zero_rate_is_refused_by_the_shared_limiter(offers_db_url: str) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        SweepRateLimiter(DatabaseSettings(conninfo=offers_db_url), "x", 0)


def test_limiter_statements_are_counted(offers_db_url: str) -> None:
    limiter = SweepRateLimiter(DatabaseSettings(conninfo=offers_db_url), "counted", 1000.0)
    before = dbmod.STATEMENTS.count
    try:
        limiter.acquire()
    finally:
        limiter.close()
    assert dbmod.STATEMENTS.count > before
    with psycopg.connect(offers_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM sync_rate_limits WHERE sweep = 'counted'").fetchone()[0] == 1
