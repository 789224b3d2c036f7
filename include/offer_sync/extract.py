"""One mapped task's work: fetch a shard page by page, validate each page, COPY it to staging.

Streaming is what keeps memory flat at a million offers: at most a few pages are held at once
(the ones being prefetched by the fetch threads and the one being validated), never a sweep.
Nothing but a small summary leaves this function; the records go to PostgreSQL.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from include.offer_sync.constants import DEFAULT_FETCH_THREADS, DEFAULT_VALIDATE_PROCESSES, POOL_MIN_RECORDS
from include.offer_sync.db import connect, query
from include.offer_sync.errors import SyncError
from include.offer_sync.extract_pool import PagePool, page_pool, pool_size
from include.offer_sync.load.runs import get_run, is_merged
from include.offer_sync.load.staging import ShardWriter, StagingTables
from include.offer_sync.page_staging import PageOutcome, stage_page
from include.offer_sync.settings import DatabaseSettings
from include.offer_sync.trackier.fingerprint import KnownFingerprints
from include.offer_sync.trackier.http import TrackierClient
from include.offer_sync.trackier.pagination import Anomaly, Page, PageFailure, StagedRecords

log = logging.getLogger(__name__)

PAGE_ERROR_INSERT = query("page_error_insert")


class StaleTryError(SyncError):
    """An earlier try of a shard woke up after a newer try had started it: it must not write."""


@dataclass
class ShardSummary:
    """What a shard reports through XCom: counts and timings, never records."""

    entity: str
    shard: int
    label: str
    pages: int = 0
    records: int = 0
    valid: int = 0
    #: Valid campaigns staged without validation: their fingerprint was a stored offer's.
    carried: int = 0
    rejected: int = 0
    failed_pages: int = 0
    failed_records_estimate: int = 0
    anomalies: int = 0
    requests: int = 0
    retries: int = 0
    retry_wait_s: float = 0.0
    fetch_wait_s: float = 0.0
    validate_s: float = 0.0
    stage_s: float = 0.0
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    #: Validation workers the shard used (0: the task process staged every page, ``extract_pool.py``).
    processes: int = 0
    #: Seconds the fetch threads waited for the workers' pages (summed over the threads, the workers'
    #: own time included), and the workers' largest ``VmHWM`` (which counts the pages they share
    #: with the task process copy-on-write).
    worker_wait_s: float = 0.0
    worker_peak_rss_mb: float = 0.0
    last_page: int | None = None
    expected_total: int | None = None
    probe_requests: int = 0
    #: The end of the entity's stream was a full page (see ``sweep.py``: no proof of the end).
    ended_on_full_page: bool = False
    #: The probe's verdict (``client.PaginationVerdict``), passed on to ``sync_runs.result``.
    pagination: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.failed_pages == 0 and self.anomalies == 0

    def as_dict(self) -> dict[str, Any]:
        data = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}
        data["errors"] = self.errors[:5]  # a sample for the log and the UI; all are in sync_page_errors
        data["complete"] = self.complete
        return data


def _calm_garbage_collector() -> None:
    """Make the cyclic GC cheap for the rest of this task process.

    A page is thousands of short-lived dicts, freed by reference counting; but every allocation
    burst also triggers generation scans over everything alive - under Airflow, hundreds of
    thousands of objects from its imports. Freezing those (they live as long as the process) and
    collecting less often roughly halved the CPU per record in a profile of a 100k sync.

    Garbage of earlier tasks is collected first: under ``airflow dags test`` every task runs in this
    one process, and a cycle frozen here would never be freed.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


#: glibc's ``mallopt`` parameter number for the size from which a block gets its own mapping.
_M_MMAP_THRESHOLD = -3
#: Blocks from this size up (a page's response, ~0.7 MB; the known fingerprints, 8 MB at 1M) are
#: mapped on their own and unmapped when freed. glibc's own starting value is 128 KiB.
MMAP_THRESHOLD_BYTES = 256 * 1024


def _steady_allocator() -> None:
    """Give every big buffer of this task its own mapping, returned to the system when it is freed.

    glibc starts mapping blocks of 128 KiB and more on their own, but raises that threshold to the
    size of any such block freed (up to 32 MB): after the first shard freed its 8 MB of known
    fingerprints, every page buffer came from the heaps of the task's threads instead, and those
    fragmented. Under ``airflow dags test``, where every task runs in one process, the heaps grew
    62.7 -> 130.6 MB over the eight campaign extracts of a 1M first sync with only ~60 MB in use
    (``mallinfo2``), ``malloc_trim`` returned little of it, and the process's peak crept task after
    task: 285 -> 303 MB in the no-change resync, over the 300 MB target. Setting the threshold fixes
    it (and stops its growth); measured the same way: heaps 62.9 -> 68.2 MB, peaks 276 / 284 /
    285 MB for the first sync / no-change / 10 % resyncs against 290 / 303 / 297 MB, times unchanged
    (61.1 / 37.1 / 39.2 s against 64.4 / 28.6-36.9 / 40.9-42.1 s; BENCHMARKS.md, eighth round).
    A process-wide setting that stays for the process's life; not glibc (musl): nothing to do.
    """
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def _libc_function(name: str) -> Any:
    """The C library's function ``name``, or None where there is none (not glibc, no ``libc``)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def _return_memory() -> None:
    """Collect this task's garbage and hand the freed heap back to the operating system.

    Under ``airflow dags test`` (and a Celery worker's long-lived process) the next task runs in this
    process: without this its resident memory only grew, task after task, ~2-4 MB per 125k-record
    shard at 1M, and the known fingerprints (8 MB) of the next shard were allocated anew on top.
    Measured at 1M under ``airflow dags test`` (VmHWM after the last extract task): first sync
    298.3 -> 289.3 MB, no-change resync 310.9 -> 296.5 MB. ``malloc_trim`` is glibc's; elsewhere
    this only collects.
    """
    gc.collect()
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


def peak_rss_mb() -> float:
    """Peak resident memory of this process since it started: ``VmHWM`` from ``/proc/self/status``.

    Not ``getrusage().ru_maxrss``: Linux carries it across fork and exec, so a task process started
    by a big parent (a scheduler, a Celery worker, a test runner holding a few GB) reported the
    parent's peak, e.g. 2,730 MB for a task that never went above 277 MB. ``VmHWM`` is reset at
    exec. Where ``/proc`` is missing (not Linux), ``ru_maxrss`` is the best there is.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def extract_shard(
    db: DatabaseSettings,
    client: TrackierClient,
    run_id: str,
    shard: dict[str, Any],
    *,
    fetch_threads: int = DEFAULT_FETCH_THREADS,
    try_number: int = 1,
    validate_processes: int | str = DEFAULT_VALIDATE_PROCESSES,
    pool_min_records: int | None = None,
) -> ShardSummary:
    """Fetch, validate and stage one shard; returns its summary.

    The whole shard is one transaction (delete earlier rows of this shard, one COPY, its page
    errors), so a retry of this task replaces its data and a crash leaves none. ``try_number`` (the
    Airflow try) goes on every row: if an earlier try of this shard is still running (a zombie),
    only the newest try's rows count, and a try that finds a newer one started writes nothing.

    ``validate_processes``: pages are parsed and staged in that many forked workers (``auto``: one
    per idle core) when the shard is big enough and the cores are there (``extract_pool.pool_size``);
    the rows staged are the same either way.
    """
    started = time.perf_counter()
    _calm_garbage_collector()
    _steady_allocator()
    entity = shard["entity"]
    index = int(shard["index"])
    tables = StagingTables.for_run(run_id)
    summary = ShardSummary(
        entity=entity,
        shard=index,
        label=shard["label"],
        expected_total=shard.get("expected_total"),
        probe_requests=(shard.get("probe") or {}).get("requests", 0),
        pagination=shard.get("pagination"),
    )
    page_errors: list[tuple[Any, ...]] = []
    limit = int(shard["limit"])

    cursor = shard["style"] == "cursor"
    first = 1 if cursor else int(shard["first"])
    # The shard that reads to the end of the entity's list (a cursor stream or the open last range).
    tail = shard["last"] is None
    last_item: Page | PageFailure | Anomaly | None = None

    # Autocommit: the clean-up is one statement and the COPY is its own transaction (a COPY lands
    # whole or not at all), which keeps the statements per shard at two, whatever the shard size.
    with connect(db, autocommit=True) as conn, conn.cursor() as cur:
        newer_try, known = None, KnownFingerprints()
        try:
            merged, newer_try, known = _prepare_shard(cur, tables, entity, run_id, index, try_number)
        except psycopg.errors.UndefinedTable:
            merged = is_merged(get_run(conn, run_id))  # staging is gone: only a finished run drops it
            if not merged:
                raise
        if newer_try is not None:
            raise StaleTryError(
                f"{shard['label']}: try {try_number} of this shard stops: try {newer_try} has already started "
                "loading it (this try was presumably declared dead by Airflow while still running)"
            )
        if merged:
            # This task cleared and run again after the merge: the run's data is final and its
            # staging gone; fetching again could only overwrite the page errors it recorded.
            log.info("%s: run %s already merged; nothing to fetch", shard["label"], run_id)
            summary.wall_s = time.perf_counter() - started
            return summary
        writer = ShardWriter.copy_into(cur, tables.table_for(entity), entity, index, try_number, first_page=first)
        min_records = POOL_MIN_RECORDS if pool_min_records is None else pool_min_records
        # A cursor stream is fetched one page after the other, each waiting for the last one's
        # cursor: workers could not run ahead of it, so its pages are staged here.
        expected = _expected_records(shard)
        workers = 0 if cursor else pool_size(validate_processes, expected, min_records, conn.info.encoding)
        try:
            with page_pool(entity, index, try_number, workers, first, known) as pool:
                if cursor:
                    pages = client.iter_cursor(entity, limit=limit)
                else:
                    pages = client.iter_page_range(
                        entity,
                        first,
                        shard["last"],
                        limit=limit,
                        # a fetch thread waits for its page's worker: one per worker keeps them all busy
                        threads=max(fetch_threads, 2 * workers),
                        planned_last=shard.get("planned_last"),
                        first_page=shard.get("first_page"),
                        stage=None if pool is None else pool.stage,
                    )
                waited = time.perf_counter()
                for item in pages:
                    summary.fetch_wait_s += time.perf_counter() - waited
                    last_item = item
                    if isinstance(item, Page):
                        if summary.expected_total is None and item.total is not None:
                            summary.expected_total = item.total  # a cursor page's total: the sweep's yardstick
                        assert item.page is not None  # numbered pages, or a cursor page's ordinal
                        if isinstance(item.records, StagedRecords):
                            outcome = PagePool.relay(item, writer)
                        else:  # no workers, or a body the workers left to the client to judge
                            writer.at_page(item.page)
                            outcome = stage_page(entity, item.page, item.records, writer, known)
                        _count_page(summary, entity, item.page, outcome)
                    elif isinstance(item, PageFailure):
                        summary.failed_pages += 1
                        summary.failed_records_estimate += limit
                        where = f"page {item.page}" + (" (cursor)" if item.token is not None else "")
                        summary.errors.append(f"{where}: {item.error}")
                        page_errors.append(
                            (run_id, entity, index, item.page, item.token, "failed_page", item.error, item.attempts)
                        )
                        log.error(
                            "%s: %s failed for good after %d attempts: %s",
                            shard["label"],
                            where,
                            item.attempts,
                            item.error,
                        )
                    elif isinstance(item, Anomaly):
                        summary.anomalies += 1
                        summary.errors.append(f"{item.kind}: {item.detail}")
                        page_errors.append((run_id, entity, index, item.page, None, item.kind, item.detail, None))
                        log.warning("%s: %s", shard["label"], item.detail)
                    waited = time.perf_counter()
                if pool is not None:
                    summary.processes = pool.workers
                    summary.worker_wait_s = pool.wait_s
                    summary.worker_peak_rss_mb = pool.peak_rss_mb
        except BaseException as exc:
            writer.close(exc)
            raise
        writer.close()
        summary.ended_on_full_page = tail and isinstance(last_item, Page) and last_item.is_full(limit)
        if page_errors:
            cur.executemany(PAGE_ERROR_INSERT, page_errors)

    stats = client.stats
    summary.requests, summary.retries, summary.retry_wait_s = stats.requests, stats.retries, stats.wait_s
    summary.wall_s = time.perf_counter() - started
    summary.peak_rss_mb = peak_rss_mb()
    del known
    _return_memory()
    log.info(
        "%s: %d pages, %d records (%d valid, %d rejected), %d failed pages, %d requests (%d retried) in %.1fs",
        shard["label"],
        summary.pages,
        summary.records,
        summary.valid,
        summary.rejected,
        summary.failed_pages,
        summary.requests,
        summary.retries,
        summary.wall_s,
    )
    return summary


def _expected_records(shard: dict[str, Any]) -> int | None:
    """Records the shard should hold by the probe's numbers (None: unknown, e.g. a cursor stream)."""
    last = shard.get("planned_last") or shard.get("last")
    if shard.get("style") == "page" and last is not None and shard.get("first") is not None:
        return (int(last) - int(shard["first"]) + 1) * int(shard["limit"])
    total = shard.get("expected_total")
    return int(total) if total is not None else None


def _prepare_shard(
    cur: psycopg.Cursor[Any], tables: StagingTables, entity: str, run_id: str, index: int, try_number: int
) -> tuple[bool, int | None, KnownFingerprints]:
    """``shard_prepare.sql``: (merged, newer_try, the run's known fingerprints for a campaign shard).

    One row per chunk of the known fingerprints (one row without them for any other shard), streamed
    in single-row mode and binary (bytea as bytes): the array is allocated once at its final size
    and no second copy of the values is held.
    """
    merged, newer_try, known, chunks = False, None, KnownFingerprints(), 0
    for row in cur.stream(
        query("shard_prepare", table=tables.table_for(entity), tries=tables.tries, known=tables.known),
        {"run_id": run_id, "entity": entity, "shard": index, "try_number": try_number},
        binary=True,
    ):
        merged, newer_try, total_bytes, chunk = row[0], row[1], row[5], row[6]
        if chunk is not None:
            if chunks == 0:
                known = KnownFingerprints(total_bytes)
            known.add(chunk)
            chunks += 1
    return merged, newer_try, known.seal()


def _count_page(summary: ShardSummary, entity: str, number: int | None, outcome: PageOutcome) -> None:
    summary.validate_s += outcome.validate_s
    summary.stage_s += outcome.stage_s
    summary.pages += 1
    summary.records += outcome.records
    summary.valid += outcome.valid
    summary.carried += outcome.carried
    summary.rejected += outcome.rejected
    summary.last_page = number
    if outcome.first_reject is not None:
        key, reason = outcome.first_reject
        log.warning(
            "%s page %s: %d of %d records rejected, e.g. %s: %s",
            entity,
            number,
            outcome.rejected,
            outcome.records,
            key,
            reason,
        )
