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

from include.offer_sync.constants import DEFAULT_FETCH_THREADS
from include.offer_sync.db import connect, query
from include.offer_sync.errors import SyncError
from include.offer_sync.load.runs import get_run, is_merged
from include.offer_sync.load.staging import ShardWriter, StagingTables
from include.offer_sync.settings import DatabaseSettings
from include.offer_sync.trackier.fingerprint import KnownFingerprints, campaign_fingerprint, carried_keys
from include.offer_sync.trackier.http import TrackierClient
from include.offer_sync.trackier.models import (
    Advertiser,
    Campaign,
    Reject,
    advertiser_row,
    campaign_row,
    validate_page,
    validate_positions,
)
from include.offer_sync.trackier.pagination import Anomaly, Page, PageFailure

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
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
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
) -> ShardSummary:
    """Fetch, validate and stage one shard; returns its summary.

    The whole shard is one transaction (delete earlier rows of this shard, one COPY, its page
    errors), so a retry of this task replaces its data and a crash leaves none. ``try_number`` (the
    Airflow try) goes on every row: if an earlier try of this shard is still running (a zombie),
    only the newest try's rows count, and a try that finds a newer one started writes nothing.
    """
    started = time.perf_counter()
    _calm_garbage_collector()
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

    if shard["style"] == "cursor":
        pages = client.iter_cursor(entity, limit=limit)
    else:
        pages = client.iter_page_range(
            entity,
            shard["first"],
            shard["last"],
            limit=limit,
            threads=fetch_threads,
            planned_last=shard.get("planned_last"),
            first_page=shard.get("first_page"),
        )
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
        stage_page = _stage_advertisers if entity == "advertisers" else _stage_campaigns
        writer = ShardWriter(cur, tables.table_for(entity), entity, index, try_number)
        try:
            waited = time.perf_counter()
            for item in pages:
                summary.fetch_wait_s += time.perf_counter() - waited
                last_item = item
                if isinstance(item, Page):
                    if summary.expected_total is None and item.total is not None:
                        summary.expected_total = item.total  # a cursor page's total: the sweep's yardstick
                    stage_page(item, writer, summary, known)
                elif isinstance(item, PageFailure):
                    summary.failed_pages += 1
                    summary.failed_records_estimate += limit
                    where = f"page {item.page}" + (" (cursor)" if item.token is not None else "")
                    summary.errors.append(f"{where}: {item.error}")
                    page_errors.append(
                        (run_id, entity, index, item.page, item.token, "failed_page", item.error, item.attempts)
                    )
                    log.error(
                        "%s: %s failed for good after %d attempts: %s", shard["label"], where, item.attempts, item.error
                    )
                elif isinstance(item, Anomaly):
                    summary.anomalies += 1
                    summary.errors.append(f"{item.kind}: {item.detail}")
                    page_errors.append((run_id, entity, index, item.page, None, item.kind, item.detail, None))
                    log.warning("%s: %s", shard["label"], item.detail)
                waited = time.perf_counter()
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


def _stage_advertisers(page: Page, writer: ShardWriter, summary: ShardSummary, known: KnownFingerprints) -> None:
    t0 = time.perf_counter()
    valid, rejects = validate_page(Advertiser, page.records)
    t1 = time.perf_counter()
    # Rows go to COPY as they are built: no third copy of the page is held in memory.
    for record in valid:
        writer.write_valid(page.page, advertiser_row(record))
    _finish_page(page, writer, summary, rejects, len(valid), t1 - t0, time.perf_counter() - t1)


def _stage_campaigns(page: Page, writer: ShardWriter, summary: ShardSummary, known: KnownFingerprints) -> None:
    """Carry the records the catalogue already holds (``trackier/fingerprint.py``), validate the rest.

    The fingerprint and the lookup count as validation time, the carried rows' COPY as staging.
    """
    t0 = time.perf_counter()
    fresh: list[Any] = []
    fingerprints: list[str | None] = []
    carried: list[tuple[str, str, str]] = []
    for record in page.records:
        fingerprint = campaign_fingerprint(record)
        if fingerprint is not None and fingerprint in known:
            keys = carried_keys(record)
            if keys is not None:
                carried.append((*keys, fingerprint))
                continue
        fresh.append(record)
        fingerprints.append(fingerprint)
    valid, rejects = validate_positions(Campaign, fresh) if fresh else ([], [])
    t1 = time.perf_counter()
    number = page.page
    for trackier_id, advertiser_ref, fingerprint in carried:
        writer.write_carried(number, trackier_id, advertiser_ref, fingerprint)
    for position, record in valid:
        # A valid record always has a fingerprint: it is a JSON object that orjson could write.
        writer.write_valid(number, campaign_row(record, fingerprints[position]))  # type: ignore[arg-type]
    summary.carried += len(carried)
    _finish_page(page, writer, summary, rejects, len(valid) + len(carried), t1 - t0, time.perf_counter() - t1)


def _finish_page(
    page: Page,
    writer: ShardWriter,
    summary: ShardSummary,
    rejects: list[Reject],
    valid: int,
    validate_s: float,
    stage_s: float,
) -> None:
    t = time.perf_counter()
    for reject in rejects:
        writer.write_reject(page.page, reject)
    summary.validate_s += validate_s
    summary.stage_s += stage_s + time.perf_counter() - t
    summary.pages += 1
    summary.records += len(page.records)
    summary.valid += valid
    summary.rejected += len(rejects)
    summary.last_page = page.page
    if rejects:
        log.warning(
            "%s page %s: %d of %d records rejected, e.g. %s: %s",
            page.entity,
            page.page,
            len(rejects),
            len(page.records),
            rejects[0].record_key,
            rejects[0].reason,
        )
