"""Validation workers: the other cores validate an extract task's pages while it fetches the next.

Why: a first sync is CPU-bound in the task process. Under ``airflow dags test`` (one task at a
time) every page was fetched, parsed, fingerprinted, validated, turned into rows and formatted for
COPY in one process, under one GIL: per record (10,000 fake campaigns, one core, GC as in a task)
orjson parsing 8-11 us, the fingerprint 5, pydantic validation 15, the row 9.5, COPY formatting 5.

The task process keeps what must stay in one place: the page stream with its pagination guards
(``pagination.py`` is unchanged), the known fingerprints and the carried records
(``page_staging.carry_page``), the shard's one COPY and its page errors. What is left of each page
- on a first sync every record, on a no-change resync none - goes to a pool of forked workers, which
run the task process's own validation step (``page_staging.VALIDATE``) into a ``CopyTextBuffer``
and return the rows as COPY bytes with a ``PageOutcome``.

What stays the same, by construction:

- Rows are numbered (``seq``) in the task process when the page is handed out
  (``ShardWriter.reserve``: carried rows first, then the worker's valid and rejected rows, as
  ``page_staging.stage_page`` numbers them), and pages are taken back in the order they came: the
  staged rows are the ones the task process alone would have written (tests/db/test_validation_workers.py),
  and the summary and the log lines come in page order.
- One COPY per shard, in the task process's transaction: no statement is added, and a failed or
  killed worker aborts the COPY like any other error (nothing of the shard lands).
- Records travel by ``marshal``, which carries every value a JSON parser produces (lone surrogates,
  NaN, integers over 64 bits), so every page can go to a worker.

Measured (BENCHMARKS.md, "Issue 14, fourth round"): at 1M under ``airflow dags test`` the eight
campaign extract tasks took 69 s without workers and 51 s with two (first sync 112.8 -> 90.3 s, same
evening); one 50,000-campaign shard outside Airflow (``python -m bench.shard``) 3.27/3.56 s -> 2.69/2.71 s,
with both cores then busy (task process 1.1-1.3 s of CPU, workers 2.3-2.4 s, the fake server and
PostgreSQL the rest). Under LocalExecutor, where two mapped extract tasks already share the two cores,
they cost instead (1M first sync 101.5 s without, 113.9 s with), and so they do on a resync that
validates only a tenth of its records (the 1M 10% resync's campaign tasks 4.0-4.9 s without, 4.9-5.6 s
with, under ``dags test``): hence off by default (``DEFAULT_VALIDATE_PROCESSES``), a setting for a
first sync, or a resync after a validation change, by a task that has cores to itself.

Workers are forked before the task starts its fetch threads, live for one shard, do not log (the
task's log channel is the task process's; what they have to say travels in ``PageOutcome``), die
with the task process (``PR_SET_PDEATHSIG``) and are killed when the shard fails.

Not used (the task process stages every page) with fewer than two usable cores, for a shard
under ``POOL_MIN_RECORDS`` records (forking and relaying would cost more than they save), or when
the connection's client encoding is not UTF-8 (the workers format text as UTF-8).
"""

from __future__ import annotations

import ctypes
import logging
import marshal
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from include.offer_sync.load.staging import CopyTextBuffer, ShardWriter
from include.offer_sync.page_staging import VALIDATE, PageOutcome, Unvalidated

log = logging.getLogger(__name__)

#: Pages handed out and not yet taken back, per worker. One keeps each worker busy (the task process
#: carries and relays the next page meanwhile) and memory flat: a page travels as ~0.7 MB of records
#: and ~0.7 MB of rows. Measured with ``python -m bench.shard --size 100k --processes 2`` (50,000
#: campaigns, twice each): 1 per worker 2.55/2.30 s and the task's VmHWM +1.5-3 MB over no workers;
#: 2 per worker 2.72/3.03 s and +3.6-5.5 MB.
PAGES_IN_FLIGHT_PER_WORKER = 1
_PR_SET_PDEATHSIG = 1
#: Where this process's cgroups are listed, and where the cgroup file systems are mounted.
PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: How often the task process, while it waits for a page, checks that no worker died. Only a wait
#: that lasts this long pays for the check; a worker's page takes ~0.1-0.2 s (5,000 campaigns).
_LIVENESS_POLL_S = 1.0


def usable_cores(proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT) -> int:
    """The cores this process may use: its CPU affinity, capped by its cgroup's CPU quota.

    Why the quota: a container's CPU limit (Kubernetes ``resources.limits.cpu``, ``docker run
    --cpus``) is a quota, not an affinity: a pod limited to one CPU on a 32-core node sees 32 cores
    in ``sched_getaffinity``, and 32 workers there would only take turns being throttled.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(proc_cgroup, cgroup_root)
    return cores if limit is None else max(1, min(cores, limit))


def cgroup_cpu_limit(proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """The whole CPUs this process's cgroup quota allows (rounded up), or None when none applies.

    Reads cgroup v2 (``cpu.max``: ``"<quota> <period>"`` or ``"max ..."``, at ``/sys/fs/cgroup`` or,
    on a hybrid host, ``/sys/fs/cgroup/unified``) and v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``,
    -1 for none) for the process's own cgroup and every parent up to the mount, as
    ``/proc/self/cgroup`` names them, and takes the tightest. Anything unreadable counts as no quota:
    this only ever lowers the number of validation workers.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[int] = []
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controllers == "":  # v2: "0::/path"
            for mount in (cgroup_root, cgroup_root / "unified"):
                limits += _quotas(mount, path, _v2_quota)
        elif "cpu" in controllers.split(","):  # v1: "4:cpu,cpuacct:/path"
            for mount in dict.fromkeys((cgroup_root / controllers, cgroup_root / "cpu")):
                limits += _quotas(mount, path, _v1_quota)
    return min(limits) if limits else None


def _quotas(mount: Path, path: str, read: Callable[[Path], int | None]) -> list[int]:
    """The quota of the cgroup at ``path`` under ``mount`` and of each of its parents (None: skipped)."""
    found: list[int] = []
    parts = [p for p in path.strip("/").split("/") if p and p not in (".", "..")]
    for depth in range(len(parts), -1, -1):
        cores = read(mount.joinpath(*parts[:depth]))
        if cores is not None:
            found.append(cores)
    return found


def _v2_quota(group: Path) -> int | None:
    try:
        quota, period = (group / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        return _cores(int(quota), int(period))
    except (OSError, ValueError):
        return None


def _v1_quota(group: Path) -> int | None:
    try:
        quota = int((group / "cpu.cfs_quota_us").read_text())
        period = int((group / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return _cores(quota, period)


def _cores(quota: int, period: int) -> int | None:
    if quota <= 0 or period <= 0:  # v1 says -1 for "no quota"
        return None
    return max(1, -(-quota // period))


def pool_size(requested: int, expected_records: int | None, min_records: int, encoding: str) -> int:
    """How many workers a shard gets: 0 (the task process stages every page) or at least 2.

    ``expected_records`` is None when the API gave no total (a stream of unknown length, possibly
    the whole entity): that gets workers.
    """
    if requested < 2:  # off (the default): no need to read the cgroup files for every shard
        return 0
    workers = min(requested, usable_cores())
    if workers < 2 or encoding.replace("-", "").lower() != "utf8":
        return 0
    if expected_records is not None and expected_records < min_records:
        return 0
    return workers


class PagePool:
    """Pages' unvalidated records handed to the workers in order, their rows written to the COPY in order."""

    def __init__(self, pool: ProcessPoolExecutor, workers: int, entity: str, shard: int, try_number: int) -> None:
        self._pool = pool
        self.workers = workers
        self._shard = (entity, shard, try_number)
        self._window = workers * PAGES_IN_FLIGHT_PER_WORKER
        #: The workers' exit sentinels: readable once a worker is gone, whoever reaped it.
        self._sentinels = [p.sentinel for p in _processes(pool)]
        self._pending: deque[tuple[int | None, PageOutcome, Future[tuple[bytes, PageOutcome, float]] | None]] = deque()
        #: Seconds the task process waited for a worker's result (the workers were the bottleneck).
        self.wait_s = 0.0
        #: The largest ``VmHWM`` a worker reported (its own peak, pages shared with the task included).
        self.peak_rss_mb = 0.0

    def submit(self, number: int | None, rest: Unvalidated, writer: ShardWriter) -> None:
        """Validate ``rest`` (what ``carry_page`` left of page ``number``) in a worker; nothing to do, no worker."""
        if not rest.records:
            self._pending.append((number, rest.outcome, None))
            return
        t = time.perf_counter()
        # marshal: every value a JSON parser produces (lone surrogates, NaN, big integers included)
        # travels, 1.8 us per record out and 4.8 us back in (orjson: 1.2 and 8.4, and not all of them).
        payload = marshal.dumps((rest.records, rest.fingerprints))
        seq = writer.reserve(len(rest.records))
        future = self._pool.submit(_validate_in_worker, *self._shard, number, seq, payload)
        outcome = replace(rest.outcome, stage_s=rest.outcome.stage_s + time.perf_counter() - t)
        self._pending.append((number, outcome, future))

    def collect(self, writer: ShardWriter, *, everything: bool = False) -> Iterator[tuple[int | None, PageOutcome]]:
        """Write the finished pages' rows, oldest first; waits while too many are in flight (or for all)."""
        while self._pending and (everything or len(self._pending) > self._window or _done(self._pending[0][2])):
            number, carried, future = self._pending.popleft()
            if future is None:
                yield number, carried
                continue
            waited = time.perf_counter()
            data, outcome, peak_mb = self._result(future)  # a worker's error (or death) raises here
            self.wait_s += time.perf_counter() - waited
            self.peak_rss_mb = max(self.peak_rss_mb, peak_mb)
            t = time.perf_counter()
            writer.write_data(data)
            relayed = PageOutcome(0, 0, 0, 0, 0.0, time.perf_counter() - t)
            yield number, carried.plus(outcome).plus(relayed)

    def _result(self, future: Future[tuple[bytes, PageOutcome, float]]) -> tuple[bytes, PageOutcome, float]:
        """``future.result()``, or ``BrokenProcessPool`` when a worker died and the pool did not notice.

        The pool notices a dead worker unless the worker died part way through sending a result (the
        kernel's OOM killer does not wait for a message's end): its manager thread then waits for the
        rest of that message forever, as the task process itself holds the pipe's write end, and no
        future would ever finish (``tests/db/test_validation_workers.py``, the fail-or-die test's
        ``worker-dies-part-way-through-sending-its-rows`` case).
        """
        while True:
            try:
                return future.result(timeout=_LIVENESS_POLL_S)
            except TimeoutError:
                if multiprocessing.connection.wait(self._sentinels, timeout=0):
                    raise BrokenProcessPool("a validation worker died while the task waited for its page") from None


def _processes(pool: ProcessPoolExecutor) -> list[multiprocessing.process.BaseProcess]:
    return list((getattr(pool, "_processes", None) or {}).values())  # no public way to reach the workers


def _done(future: Future[Any] | None) -> bool:
    return future is None or future.done()


@contextmanager
def page_pool(entity: str, shard: int, try_number: int, workers: int) -> Iterator[PagePool | None]:
    """``workers`` forked workers for one shard (None when ``workers`` is 0), gone when the block ends.

    The workers are forked here, before the caller starts its fetch threads (a ``fork`` pool starts
    all its workers on the first call, which is made here). A worker that dies (killed, out of
    memory) fails the shard with ``BrokenProcessPool``.
    """
    if workers < 2:
        yield None
        return
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker, initargs=(os.getpid(),)
    )
    try:
        pool.submit(os.getpid).result()  # starts every worker now
    except Exception as exc:  # noqa: BLE001 - any reason the workers cannot start: the task stages alone
        # e.g. fork refused (EAGAIN, ENOMEM under a container's limits) or a daemonic host process
        # ("daemonic processes are not allowed to have children"): slower, never wrong.
        _terminate(pool)
        log.warning(
            "%s shard %s: the %d validation workers did not start (%s: %s); the task validates every page itself",
            entity,
            shard,
            workers,
            type(exc).__name__,
            exc,
        )
        yield None
        return
    try:
        yield PagePool(pool, workers, entity, shard, try_number)
    except BaseException:
        _terminate(pool)
        raise
    else:
        pool.shutdown(wait=True)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop now: the shard failed, its pages in flight are of no use.

    A worker killed part way through sending its page's rows leaves the pool's manager thread reading
    the rest of that message, and the task process holds the result pipe's write end too: the read
    would never end, nor would ``shutdown`` (CPython 3.11: the CI run of 3537e2b hung there; killing
    two workers that each return 4 MB at a random moment hung it within the first three tries). Once
    every worker is gone, closing the task process's write end ends that read (EOF: the pool breaks,
    cleans up and exits; ``test_killing_the_workers_while_one_is_sending_its_rows_ends_the_pool``).
    """
    processes = _processes(pool)
    for process in processes:
        process.kill()
    pending = [p.sentinel for p in processes]
    while pending:  # SIGKILL cannot be caught: this waits for the kernel, not for the workers
        ready = multiprocessing.connection.wait(pending)
        pending = [s for s in pending if s not in ready]
    writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
    if writer is not None:
        writer.close()
    pool.shutdown(wait=True, cancel_futures=True)


def _init_worker(parent: int) -> None:
    """Die with the task process, leave signals to it, and never write to its log channel."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the task process died before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the task process, which ends the pool
    logging.disable(logging.CRITICAL)


def _validate_in_worker(
    entity: str, shard: int, try_number: int, number: int | None, seq: int, payload: bytes
) -> tuple[bytes, PageOutcome, float]:
    """The task process's own validation step, into a buffer instead of the COPY."""
    from include.offer_sync.extract import peak_rss_mb  # loaded already: the worker is a fork of the task

    t = time.perf_counter()
    records, fingerprints = marshal.loads(payload)  # noqa: S302 - written by the task process that forked us
    buffer = CopyTextBuffer()
    writer = ShardWriter(buffer, entity, shard, try_number, seq=seq)
    outcome = VALIDATE[entity](number, records, fingerprints, writer)
    data = buffer.getvalue()
    # Unpacking, row building and formatting count as staging; validation as itself.
    staging = time.perf_counter() - t - outcome.validate_s
    return data, replace(outcome, stage_s=staging), peak_rss_mb()
