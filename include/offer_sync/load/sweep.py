"""Set-level checks of a staged sweep, before anything touches the live tables.

Per-record validation happened in the mapped tasks; what only the whole sweep can tell is
checked here: the same id twice (a deterministic winner), campaigns whose advertiser exists
nowhere, whether the sweep is complete (no failed page, no pagination anomaly, totals add up),
and the error-rate circuit breaker. A garbage feed trips the breaker and the catalogue is left
exactly as it was, while the rejects are kept for inspection.

A sweep is complete only when it can show it, because only a complete sweep may deactivate the
offers it did not see. Per entity, that means: no failed page, no pagination anomaly (a short page
in the middle, a repeated cursor or page, the page cap), and then either

- the API reported a total, and exactly that many records arrived; or
- the API reported no total, and the stream ended on a short (or empty) page.

A cursor stream that ends on a *full* page without a next token proves nothing: with a total that
says more it was cut short (the totals differ); without any total the end cannot be shown, so the
sweep is incomplete (``UNPROVEN_END``): everything read is merged, nothing is deactivated. The
price is that a catalogue whose size is an exact multiple of the page size, served by an API with
no total, skips deactivation on such a night; the alternative risks switching live offers off.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import psycopg

from include.offer_sync.db import query
from include.offer_sync.errors import SweepRejectedError
from include.offer_sync.load.runs import fail_run
from include.offer_sync.load.staging import StagingTables
from include.offer_sync.trackier.pagination import PaginationVerdict

log = logging.getLogger(__name__)

UNPROVEN_END = (
    "the stream ended on a full page and the API reported no total: the end cannot be proven, "
    "no offer is deactivated this run"
)


def pagination_verdicts(shard_summaries: list[dict[str, Any]]) -> dict[str, PaginationVerdict]:
    """How each entity was paginated and why (the probe's verdict, carried by its shards)."""
    verdicts: dict[str, PaginationVerdict] = {}
    for summary in shard_summaries:
        verdict = summary.get("pagination")
        if verdict and summary["entity"] not in verdicts:
            verdicts[summary["entity"]] = verdict
    return verdicts


def check_sweep(
    conn: psycopg.Connection[Any],
    run_id: str,
    shard_summaries: list[dict[str, Any]],
    *,
    expected_totals: dict[str, int | None],
    max_error_rate: float,
) -> dict[str, Any]:
    """Resolve duplicates and orphans in staging, keep the rejects, and decide if we may merge.

    Returns the sweep's counts. Raises ``SweepRejectedError`` (after committing the rejects and a
    failed run record) when rejected plus failed records exceed ``max_error_rate``.
    """
    t = StagingTables.for_run(run_id)
    names = t.names()
    with conn.transaction():
        conn.execute(query("sweep_prepare", **names))
        conn.execute(query("sweep_mark_duplicates", **names))
        conn.execute(query("sweep_build_aliases", **names))
        conn.execute(query("sweep_mark_orphans", **names))
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        unidentified = carried = 0
        for entity, status, n, no_id, carried_n in conn.execute(query("sweep_counts", **names)):
            counts[entity][status] += n
            carried += carried_n if status == "valid" else 0
            if status == "rejected":
                unidentified += no_id
        conn.execute(query("sweep_rejects_insert", **names), {"run_id": run_id})

    received = {e: sum(counts[e].values()) for e in ("advertisers", "campaigns")}
    rejected = sum(counts[e]["rejected"] for e in counts)
    duplicates = sum(counts[e]["duplicate"] for e in counts)
    failed_pages = sum(s["failed_pages"] for s in shard_summaries)
    failed_records = sum(s["failed_records_estimate"] for s in shard_summaries)
    anomalies = sum(s["anomalies"] for s in shard_summaries)
    problems = [e for s in shard_summaries for e in s.get("errors", [])]

    # Totals: the server's promise against what arrived (duplicates included: they were served).
    # Without a total, only a stream that ended on a short page has shown its end.
    for entity, total in expected_totals.items():
        if total is not None and failed_pages == 0 and received[entity] != total:
            anomalies += 1
            problems.append(f"{entity}: the API reported {total} records, the sweep received {received[entity]}")
        elif total is None and any(s.get("ended_on_full_page") for s in shard_summaries if s["entity"] == entity):
            anomalies += 1
            problems.append(f"{entity}: {UNPROVEN_END}")
    if unidentified:
        problems.append(f"{unidentified} rejected records had no usable id")

    denominator = sum(received.values()) + failed_records
    error_rate = (rejected + failed_records) / denominator if denominator else 0.0
    complete = failed_pages == 0 and anomalies == 0 and unidentified == 0
    sweep = {
        "advertisers_processed": received["advertisers"],
        "campaigns_processed": received["campaigns"],
        "advertisers_valid": counts["advertisers"]["valid"],
        "campaigns_valid": counts["campaigns"]["valid"],
        "campaigns_carried": carried,
        "rejected": rejected,
        "duplicates": duplicates,
        "failed_pages": failed_pages,
        "failed_records_estimate": failed_records,
        "anomalies": anomalies,
        "complete_sweep": complete,
        "error_rate": round(error_rate, 6),
        "problems": problems[:20],
        "pagination": pagination_verdicts(shard_summaries),
    }
    log.info("sweep of run %s: %s", run_id, {k: v for k, v in sweep.items() if k != "problems"})
    for problem in problems[:20]:
        log.warning("sweep problem: %s", problem)
    for entity, verdict in sweep["pagination"].items():
        if verdict["fallback"]:
            log.warning("%s: pagination fell back to %s: %s", entity, verdict["style"], verdict["fallback"])

    if error_rate > max_error_rate:
        reason = (
            f"error-rate circuit breaker: {rejected} rejected and ~{failed_records} unfetched records "
            f"are {error_rate:.2%} of the sweep, over the limit of {max_error_rate:.2%}. The offers and "
            f"brands tables were not touched; the rejects are in sync_rejects (run_id = {run_id!r})."
        )
        with conn.transaction():
            fail_run(conn, run_id, reason, {**sweep, "error_rate": error_rate})
        raise SweepRejectedError(reason)
    return sweep
