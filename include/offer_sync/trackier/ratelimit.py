"""One request rate for the whole sweep, however its tasks are spread over processes and hosts.

``requests_per_second`` in the ``trackier_api`` connection is a budget for the sweep. Dividing it
among the tasks in advance was wrong both ways: under ``airflow dags test`` (one task at a time)
each task got an eighth of it and 100,000 offers took 99.9 s instead of 25 s, and nothing tied the
guess to how many tasks really ran at once on how many Celery workers or pods.

So the tasks share the budget at run time, through the one thing every task process on every host
already reaches: the offers PostgreSQL (Redis is not there under LocalExecutor or Kubernetes). The
limiter is a schedule of request slots ``1 / rate`` seconds apart, kept in one row per sweep
(``sync_rate_limits``; ``sql/rate_limit_*.sql``):

- A process reserves a *batch* of consecutive slots in one statement; the row lock hands each
  slot to exactly one process. The schedule never starts in the past, so an idle sweep does not
  save up requests for a burst, and a task running alone gets the full rate.
- A request goes out no earlier than its slot, and a slot not used by the end of its interval
  (the process was busy, the shard ended) is dropped rather than used late. Each interval carries
  at most one request, so any window of ``d`` seconds sees at most ``rate * d + 1`` requests,
  summed over every process.
- Batches adapt: a process starts with one slot per statement and doubles the batch while it
  uses every slot in time (it keeps up with the rate), up to one second's worth; a slot it lets
  expire halves it. A process that keeps up costs one statement per second of requests; a slow
  one never blocks the schedule with slots it cannot use.

With ``requests_per_second: 0`` (the benchmarks) there is no limiter at all: no connection, no
table, no statement.

Not covered: the one page-1 request of each plan task (two per sweep), which goes through the
client's own one-request bucket before any extract task exists.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Protocol

import psycopg

from include.offer_sync.db import connect, query
from include.offer_sync.settings import DatabaseSettings

log = logging.getLogger(__name__)

#: A batch holds at most this many seconds of the sweep's schedule: what a process may leave unused
#: when its shard ends (other processes wait behind it for that long at most).
MAX_BATCH_S = 1.0
#: Scheduling slack: a thread woken this late for its slot still uses it.
GRACE_S = 0.02


class Limiter(Protocol):
    """What ``TrackierClient`` needs: block until one request may go out; return the seconds waited."""

    def acquire(self) -> float: ...


class SweepRateLimiter:
    """Request slots of one sweep, shared through the offers database (see the module docstring).

    Thread-safe: the fetch threads of one task share an instance. ``close()`` releases its
    database connection (``sweep_rate_limiter`` does that).
    """

    def __init__(
        self,
        db: DatabaseSettings,
        sweep: str,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("a SweepRateLimiter needs a positive rate; with 0 there is no limiter")
        self.db = db
        self.sweep = sweep
        self.rate = float(rate)
        self.interval = 1.0 / self.rate
        self.max_batch = max(1, math.floor(self.rate * MAX_BATCH_S))
        self.batch = 1
        self.reservations = 0
        self.expired = 0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._slots: collections.deque[float] = collections.deque()
        self._expired_in_batch = 0
        self._stack = ExitStack()
        self._conn: psycopg.Connection[Any] | None = None

    def acquire(self) -> float:
        with self._lock:
            slot = self._next_slot()
        wait = slot - self._clock()
        if wait > 0:
            self._sleep(wait)
            return wait
        return 0.0

    def _next_slot(self) -> float:
        """The next slot still usable (called under the lock); reserves a batch when none is left."""
        while True:
            now = self._clock()
            while self._slots and now > self._slots[0] + self.interval + GRACE_S:
                self._slots.popleft()
                self._expired_in_batch += 1
                self.expired += 1
            if self._slots:
                return self._slots.popleft()
            self._adapt_batch()
            self._reserve(self.batch)

    def _adapt_batch(self) -> None:
        if self.reservations == 0:
            return
        if self._expired_in_batch:
            self.batch = max(1, self.batch // 2)
        else:
            self.batch = min(self.max_batch, self.batch * 2)
        self._expired_in_batch = 0

    def _reserve(self, n: int) -> None:
        params = {"sweep": self.sweep, "n": n, "interval_s": self.interval}
        conn = self._connection()
        try:
            first_in_s, created = conn.execute(query("rate_limit_reserve"), params).fetchone()
        except psycopg.errors.UndefinedTable:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('trackier_offer_sync.rate_limit'))")
                conn.execute(query("rate_limit_create"))
            first_in_s, created = conn.execute(query("rate_limit_reserve"), params).fetchone()
        received = self._clock()
        if created:
            conn.execute(query("rate_limit_cleanup"))
        self.reservations += 1
        # Slot times on this process's clock: only the offset from "now" crosses hosts, so clocks
        # need not agree; the round trip only makes us later, never earlier.
        start = received + float(first_in_s)
        self._slots.extend(start + i * self.interval for i in range(n))

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            self._conn = self._stack.enter_context(connect(self.db, autocommit=True))
        return self._conn

    def close(self) -> None:
        self._stack.close()
        self._conn = None

    def stats(self) -> dict[str, Any]:
        """For the task log: how many statements the limiter cost and how many slots went unused."""
        return {
            "rate": self.rate,
            "reservations": self.reservations,
            "expired_slots": self.expired,
            "batch": self.batch,
        }


class _Unlimited:
    """The limiter when ``requests_per_second`` is 0: free, touches nothing."""

    def acquire(self) -> float:
        return 0.0


@contextmanager
def sweep_rate_limiter(db: DatabaseSettings, sweep: str, rate: float) -> Iterator[Limiter]:
    """The limiter for one task of sweep ``sweep`` (its run id): shared when ``rate > 0``, else none."""
    if rate <= 0:
        yield _Unlimited()
        return
    limiter = SweepRateLimiter(db, sweep, rate)
    try:
        yield limiter
    finally:
        limiter.close()
        if limiter.reservations:
            log.info(
                "sweep rate limit %.3g req/s: %d reservations, %d slots unused (batch %d at the end)",
                limiter.rate,
                limiter.reservations,
                limiter.expired,
                limiter.batch,
            )
