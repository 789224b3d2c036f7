"""Validation workers: the other cores parse and stage an extract task's pages as they arrive.

Why: a first sync is CPU-bound in the task process. Under ``airflow dags test`` (one task at a
time) every page was fetched, parsed, fingerprinted, validated, turned into rows and formatted for
COPY in one process, under one GIL: per record (10,000 fake campaigns, one core, GC as in a task)
orjson parsing 8-11 us, the fingerprint 5, pydantic validation 15, the row 9.5, COPY formatting 5.

A worker takes a response's bytes, not its records: a fetch thread hands a 200 response's body to
``PagePool.stage``, and a worker parses it (``http.parse_body``), judges it as the client would
(``http.accepted_page``; a body it does not take goes back to the client, which parses, retries or
raises as always), reads its envelope (``http.page_from_body``), stages its records into a
``CopyTextBuffer`` with the task process's own step (``page_staging.stage_page``: carried with the
known fingerprints it inherited at the fork, validated otherwise) and returns the ``Page`` with its
rows as COPY bytes in place of the records (``pagination.StagedRecords``). The task process keeps
the HTTP, the pagination and its guards (which need only the records' count and the page's
fingerprint), the shard's one COPY and its page errors: per record it does almost nothing.

The first version handed the workers parsed records (``marshal``) and kept parsing, fingerprinting
and carrying in the task process; the task process stayed the bottleneck (BENCHMARKS.md, "Issue 14,
tenth round": two workers under ``dags test``, 52.1 s against 45.8 s without). Measured with
``python -m bench.shard --size 1m --processes 0,2`` (a 250,000-campaign shard, outside Airflow, the
same machine minutes apart): without workers 13.6-14.9 s (task CPU 12.5-13.7 s); the first version
14.0/14.5 s (task 6.9-7.0 s, workers 11.4-11.6 s); this one 10.9/11.5 s (task 1.8 s, workers
12.1-12.9 s), with a fetch thread per page in flight (two per worker: a worker must not wait while
its thread does the next request).

What stays the same, by construction:

- Rows are numbered (``seq``) by page: ``ShardWriter.at_page`` starts a page's numbers at a value
  its ordinal alone fixes, so a worker numbers a page's rows as the task process would, and the
  paginator hands pages back in order: the staged rows are the ones the task process alone would
  have written (tests/db/test_validation_workers.py), and the summary and the log lines come in
  page order.
- One COPY per shard, in the task process's transaction: no statement is added, and a failed or
  killed worker aborts the COPY like any other error (nothing of the shard lands).
- The worker parses with the client's parser (orjson, then the stdlib's for what orjson refuses),
  so every page the client could read, a worker reads.

Workers are forked before the task starts its fetch threads, live for one shard, do not log (the
task's log channel is the task process's; what they have to say travels in ``PageOutcome``), die
with the task process (``PR_SET_PDEATHSIG``) and are killed when the shard fails.

Not used (the task process stages every page) with fewer than two usable cores, for a shard
under ``POOL_MIN_RECORDS`` records (forking and relaying would cost more than they save), for a
cursor stream (each request waits for the last page's cursor: nothing to run ahead of), or when
the connection's client encoding is not UTF-8 (the workers format text as UTF-8).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

from include.offer_sync.constants import AUTO, MAX_AUTO_VALIDATE_PROCESSES
from include.offer_sync.load.staging import CopyTextBuffer, ShardWriter
from include.offer_sync.page_staging import PageOutcome, stage_page
from include.offer_sync.trackier.fingerprint import KnownFingerprints
from include.offer_sync.trackier.http import accepted_page, page_from_body, parse_body
from include.offer_sync.trackier.pagination import Entity, Page, StagedRecords

log = logging.getLogger(__name__)

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


def pool_size(requested: int | str, expected_records: int | None, min_records: int, encoding: str) -> int:
    """How many workers a shard gets: 0 (the task process stages every page) or at least 2.

    ``requested`` is ``validate_processes``: a number, or ``auto`` (the usable cores, at most
    ``MAX_AUTO_VALIDATE_PROCESSES``, and none while other work keeps half a core busy: ``busy_elsewhere``).
    ``expected_records`` is None when the API gave no total (a stream of unknown length, possibly the
    whole entity): that gets workers.
    """
    auto = requested == AUTO
    # What needs no system file first: a small shard or a non-UTF-8 connection never reads the cgroups.
    if not auto and int(requested) < 2:
        return 0
    if encoding.replace("-", "").lower() != "utf8":
        return 0
    if expected_records is not None and expected_records < min_records:
        return 0
    cores = usable_cores()
    workers = min(MAX_AUTO_VALIDATE_PROCESSES, cores) if auto else min(int(requested), cores)
    if workers < 2:
        return 0
    if auto:
        busy = busy_elsewhere()
        log.info("validation workers: %d cores usable, %.2f busy with other work", cores, busy)
        if busy >= BUSY_ELSEWHERE_MAX:
            return 0
    return workers


#: ``busy_elsewhere`` samples the run queue this often, this many times (0.1 s in all, once per shard),
#: and takes the median.
RUN_QUEUE_SAMPLES, RUN_QUEUE_INTERVAL_S = 20, 0.005
#: With ``auto``, no workers from half a core busy elsewhere: under ``airflow dags test`` at 1M the
#: extract tasks found 0.00-0.25 (the fake server and PostgreSQL between two statements), a sibling
#: extract task keeps a whole core busy.
BUSY_ELSEWHERE_MAX = 0.5
PROC_STAT = Path("/proc/stat")


def busy_elsewhere(samples: int = RUN_QUEUE_SAMPLES, interval_s: float = RUN_QUEUE_INTERVAL_S) -> float:
    """How many cores other work keeps busy right now: the kernel's runnable tasks, this one excluded.

    ``procs_running`` of ``/proc/stat`` (runnable threads, machine-wide), sampled over 0.1 s; the
    median of the samples, so that what runs for a moment (in less than half of the samples) does
    not cost a whole shard its workers, while what keeps a core busy (a sibling extract task) is in
    most samples and counts. The mean it replaces once read 1.20 as the first 1M campaign shard of an
    ``airflow dags test`` started, with every other shard of the run at 0.05-0.15 (what ran then was
    not caught; a rerun listing the runnable threads at each shard start found this task alone):
    that shard went without workers, 9.0 s against 6.2-6.6 s for the other three (BENCHMARKS.md,
    "Issue 14, twelfth round").

    Why at all: workers only pay when their cores would otherwise be idle. Where mapped extract tasks
    already run side by side (LocalExecutor, a Celery worker with several slots), each of them plus
    its workers only takes turns on the same cores: at 1M on 2 cores the no-change resync took 35.1 s
    with workers against 28.1 s without (BENCHMARKS.md, "Issue 14, eleventh round"). Under ``airflow
    dags test``, or a worker slot with the machine to itself, the queue holds the task alone
    (measured there: 0.0-0.3 besides it). Machine-wide on purpose: other containers' work takes the
    same cores (a container with its own view of ``/proc`` counts only its own). Unreadable (not
    Linux): 0.
    """
    counts: list[int] = []
    for i in range(samples):
        try:
            with PROC_STAT.open("rb") as stat:
                for line in stat:
                    if line.startswith(b"procs_running "):
                        counts.append(max(0, int(line.split()[1]) - 1))  # this task, reading
                        break
        except (OSError, ValueError):
            return 0.0
        if i + 1 < samples:
            time.sleep(interval_s)
    return float(statistics.median(counts)) if counts else 0.0


@dataclass(frozen=True, slots=True)
class StagedPage:
    """What a worker made of one page besides its envelope: the rows as COPY bytes, and the outcome."""

    data: bytes
    outcome: PageOutcome
    #: The worker's ``VmHWM`` when it finished the page (its own peak, pages shared with the task included).
    peak_rss_mb: float


class PagePool:
    """Pages' bytes parsed and staged by the workers, for the fetch threads that asked for them.

    ``stage`` is what ``TrackierClient.fetch_page`` calls, in a fetch thread, with a 200 response's
    bytes: it blocks that thread until a worker returns the page (``pagination.StagedRecords``) or
    refuses the body (None: the client parses it itself). The paginator then hands the pages to the
    task process in order, as it always does, and ``relay`` writes their rows to the COPY.
    """

    def __init__(
        self, pool: ProcessPoolExecutor, workers: int, entity: str, shard: int, try_number: int, first_page: int
    ) -> None:
        self._pool = pool
        self.workers = workers
        self._shard = (entity, shard, try_number, first_page)
        #: The workers' exit sentinels: readable once a worker is gone, whoever reaped it.
        self._sentinels = [p.sentinel for p in _processes(pool)]
        self._lock = threading.Lock()
        #: Seconds the fetch threads waited for the workers' pages (summed over the threads; the
        #: workers' own time included: where the task process's main thread waited shows in fetch waits).
        self.wait_s = 0.0
        #: The largest ``VmHWM`` a worker reported.
        self.peak_rss_mb = 0.0

    def stage(self, number: int, content: bytes) -> Page | None:
        """Page ``number`` (of the shard starting at ``first_page``) parsed and staged by a worker."""
        t = time.perf_counter()
        future = self._pool.submit(_stage_in_worker, *self._shard, number, content)
        page = self._result(future)  # a worker's error (or death) raises here, in the fetch thread
        with self._lock:
            self.wait_s += time.perf_counter() - t
            if page is not None:
                self.peak_rss_mb = max(self.peak_rss_mb, staged(page).peak_rss_mb)
        return page

    @staticmethod
    def relay(page: Page, writer: ShardWriter) -> PageOutcome:
        """Write a staged page's rows to the shard's COPY; its outcome, the relaying counted as staging."""
        done = staged(page)
        t = time.perf_counter()
        writer.write_data(done.data)
        return done.outcome.plus(PageOutcome(0, 0, 0, 0, 0.0, time.perf_counter() - t))

    def _result(self, future: Future[Page | None]) -> Page | None:
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


def staged(page: Page) -> StagedPage:
    """The worker's result a staged page carries (``Page.records`` is ``StagedRecords``)."""
    records = page.records
    assert isinstance(records, StagedRecords)
    return records.staged  # type: ignore[no-any-return]


def _processes(pool: ProcessPoolExecutor) -> list[multiprocessing.process.BaseProcess]:
    return list((getattr(pool, "_processes", None) or {}).values())  # no public way to reach the workers


@contextmanager
def page_pool(
    entity: str, shard: int, try_number: int, workers: int, first_page: int, known: KnownFingerprints
) -> Iterator[PagePool | None]:
    """``workers`` forked workers for one shard (None when ``workers`` is 0), gone when the block ends.

    The workers are forked here, before the caller starts its fetch threads (a ``fork`` pool starts
    all its workers on the first call, which is made here), and inherit ``known``, the run's known
    fingerprints (8 bytes per offer, shared copy-on-write). A worker that dies (killed, out of
    memory) fails the shard with ``BrokenProcessPool``.
    """
    if workers < 2:
        yield None
        return
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(os.getpid(), known),  # inherited by the fork, never pickled
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
        yield PagePool(pool, workers, entity, shard, try_number, first_page)
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


#: The run's known fingerprints, as the worker inherited them from the task process (``_init_worker``).
_KNOWN = KnownFingerprints()


def _init_worker(parent: int, known: KnownFingerprints) -> None:
    """Die with the task process, leave signals to it, never write to its log channel; keep ``known``."""
    global _KNOWN
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the task process died before prctl took effect
        os._exit(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the task process, which ends the pool
    logging.disable(logging.CRITICAL)
    _KNOWN = known


def _stage_in_worker(
    entity: Entity, shard: int, try_number: int, first_page: int, number: int, content: bytes
) -> Page | None:
    """The task process's parsing (``http.py``) and staging (``page_staging.stage_page``) of one
    response's bytes, into a buffer instead of the COPY; None for a body the client must judge."""
    from include.offer_sync.extract import peak_rss_mb  # loaded already: the worker is a fork of the task

    t = time.perf_counter()
    body = parse_body(content)
    if not accepted_page(body, entity):
        return None
    page = page_from_body(entity, body, number, None)  # too many records: TrackierResponseError, a failed page
    records = page.records
    assert isinstance(records, list)  # parsed here, not staged yet
    parsed = time.perf_counter() - t
    buffer = CopyTextBuffer()
    writer = ShardWriter(buffer, entity, shard, try_number, first_page=first_page).at_page(number)
    outcome = stage_page(entity, number, records, writer, _KNOWN)
    data = buffer.getvalue()
    # Parsing counts as validation here (in the task process it shows as fetch waits).
    outcome = replace(outcome, validate_s=outcome.validate_s + parsed)
    return replace(page, records=StagedRecords(len(records), StagedPage(data, outcome, peak_rss_mb())))
