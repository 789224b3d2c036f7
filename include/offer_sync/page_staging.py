"""Staging one page: carry what the catalogue already holds, validate the rest, write the rows.

``stage_page`` runs in the task process and, on the response's own bytes, in the validation workers
(``extract_pool.py``, which inherit the known fingerprints at the fork): which process stages a page
never changes its rows. Rows of a page are numbered carried first, then valid, then rejected, from
the number ``ShardWriter.at_page`` gives the page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from include.offer_sync.load.staging import ShardWriter
from include.offer_sync.trackier.fingerprint import KnownFingerprints, campaign_fingerprint, carried_keys
from include.offer_sync.trackier.models import (
    Advertiser,
    Campaign,
    Reject,
    advertiser_row,
    campaign_row,
    validate_page,
    validate_positions,
)


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """What staging one page (or the validated part of it) did: counts, timings, the first reject.

    Small and picklable: a validation worker returns it with its rows' COPY bytes
    (``extract_pool.StagedPage``), the task process folds it into the ``ShardSummary``.
    """

    records: int
    valid: int  # carried included
    carried: int
    rejected: int
    validate_s: float
    stage_s: float
    first_reject: tuple[str | None, str] | None = None

    def plus(self, other: PageOutcome) -> PageOutcome:
        """Two parts of one page (the carried records, the validated rest) as one."""
        return PageOutcome(
            records=self.records + other.records,
            valid=self.valid + other.valid,
            carried=self.carried + other.carried,
            rejected=self.rejected + other.rejected,
            validate_s=self.validate_s + other.validate_s,
            stage_s=self.stage_s + other.stage_s,
            first_reject=self.first_reject or other.first_reject,
        )


@dataclass(frozen=True, slots=True)
class Unvalidated:
    """The records of a page still to validate, after ``carry_page`` staged the ones it could carry."""

    records: list[Any]
    #: Each record's fingerprint (campaigns; None for advertisers, whose rows hash what is stored).
    fingerprints: list[str | None] | None
    outcome: PageOutcome  # of the carried part


def carry_page(
    entity: str, number: int | None, records: list[Any], writer: ShardWriter, known: KnownFingerprints
) -> Unvalidated:
    """Stage the campaigns the catalogue already holds (``trackier/fingerprint.py``) and return the rest.

    The fingerprint and the lookup count as validation time, the carried rows' COPY as staging.
    Advertisers are never carried.
    """
    if entity != "campaigns":
        return Unvalidated(records, None, PageOutcome(0, 0, 0, 0, 0.0, 0.0))
    t0 = time.perf_counter()
    fresh: list[Any] = []
    fingerprints: list[str | None] = []
    carried: list[tuple[str, str, str]] = []
    for record in records:
        fingerprint = campaign_fingerprint(record)
        if fingerprint is not None and fingerprint in known:
            keys = carried_keys(record)
            if keys is not None:
                carried.append((*keys, fingerprint))
                continue
        fresh.append(record)
        fingerprints.append(fingerprint)
    t1 = time.perf_counter()
    for trackier_id, advertiser_ref, fingerprint in carried:
        writer.write_carried(number, trackier_id, advertiser_ref, fingerprint)
    done = PageOutcome(len(carried), len(carried), len(carried), 0, t1 - t0, time.perf_counter() - t1)
    return Unvalidated(fresh, fingerprints, done)


def validate_advertisers(
    number: int | None, records: list[Any], fingerprints: list[str | None] | None, writer: ShardWriter
) -> PageOutcome:
    """Validate advertisers and write their rows (valid, then rejected)."""
    t0 = time.perf_counter()
    valid, rejects = validate_page(Advertiser, records)
    t1 = time.perf_counter()
    # Rows go to COPY as they are built: no third copy of the page is held in memory.
    for record in valid:
        writer.write_valid(number, advertiser_row(record))
    return _write_rejects(number, records, writer, rejects, len(valid), t1 - t0, t1)


def validate_campaigns(
    number: int | None, records: list[Any], fingerprints: list[str | None] | None, writer: ShardWriter
) -> PageOutcome:
    """Validate the campaigns ``carry_page`` left and write their rows (valid, then rejected)."""
    assert fingerprints is not None  # carry_page computes them for every campaign
    t0 = time.perf_counter()
    valid, rejects = validate_positions(Campaign, records) if records else ([], [])
    t1 = time.perf_counter()
    for position, record in valid:
        # A valid record always has a fingerprint: it is a JSON object that orjson could write.
        writer.write_valid(number, campaign_row(record, fingerprints[position]))  # type: ignore[arg-type]
    return _write_rejects(number, records, writer, rejects, len(valid), t1 - t0, t1)


#: Each entity's validation step: the same function runs in the task process and in the workers.
VALIDATE = {"advertisers": validate_advertisers, "campaigns": validate_campaigns}


def stage_page(
    entity: str, number: int | None, records: list[Any], writer: ShardWriter, known: KnownFingerprints
) -> PageOutcome:
    """One page staged in the task process: carried where it can be, validated otherwise.

    Rows are numbered carried first, then valid, then rejected (``extract_pool.py`` keeps that order).
    """
    rest = carry_page(entity, number, records, writer, known)
    return rest.outcome.plus(VALIDATE[entity](number, rest.records, rest.fingerprints, writer))


def _write_rejects(
    number: int | None,
    records: list[Any],
    writer: ShardWriter,
    rejects: list[Reject],
    valid: int,
    validate_s: float,
    staged_from: float,
) -> PageOutcome:
    for reject in rejects:
        writer.write_reject(number, reject)
    return PageOutcome(
        records=len(records),
        valid=valid,
        carried=0,
        rejected=len(rejects),
        validate_s=validate_s,
        stage_s=time.perf_counter() - staged_from,
        first_reject=(rejects[0].record_key, rejects[0].reason) if rejects else None,
    )
