"""Per-run staging tables and the COPY writer that fills them.

Each run gets its own UNLOGGED tables (named from a hash of the Airflow run id), so a manual run
and the nightly run can never mix rows, and dropping them afterwards is instant. Each mapped shard
loads its rows with one ``COPY`` inside one transaction that first deletes the shard's earlier
rows: a retried or cleared shard replaces its data instead of duplicating it, and a shard killed
mid-load leaves nothing behind. Two tries of one shard that run at the same time (Airflow declared
the first one dead while it was still running) cannot both count: rows carry their try, and the
sweep check keeps only the newest try's rows (``shard_prepare.sql``, ``sweep_mark_duplicates.sql``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from include.offer_sync.constants import MAX_MAX_PAGES, MAX_RECORDS_PER_PAGE
from include.offer_sync.db import load_sql, query
from include.offer_sync.trackier.models import ADVERTISER_COLUMNS, CAMPAIGN_COLUMNS, Reject

STAGING_PREFIX = "offer_sync_stg_"
#: ``seq`` = shard * SEQ_PER_SHARD + page ordinal * SEQ_PER_PAGE + position on the page: arrival order,
#: and what a validation worker can compute for a page alone (``extract_pool.py``). The widths are
#: what ``MAX_MAX_PAGES`` and ``MAX_RECORDS_PER_PAGE`` allow; 64 shards stay far below bigint's end.
SEQ_PER_PAGE = MAX_RECORDS_PER_PAGE + 1
SEQ_PER_SHARD = (MAX_MAX_PAGES + 1) * SEQ_PER_PAGE
#: A run still 'running' after this long is dead (dagrun_timeout is 2 h): its staging may go.
STAGING_MAX_AGE = "6 hours"

# In staging, `status` is the validation status; the record's own status gets a longer name.
ADVERTISER_STAGING_COLUMNS = tuple("brand_status" if c == "status" else c for c in ADVERTISER_COLUMNS)
CAMPAIGN_STAGING_COLUMNS = tuple("offer_status" if c == "status" else c for c in CAMPAIGN_COLUMNS)
_HEAD = ("shard", "try_number", "seq", "page", "status", "carried")
_TAIL = ("reject_reason", "raw")


@dataclass(frozen=True)
class StagingTables:
    """The names of one run's staging tables."""

    run_key: str

    @classmethod
    def for_run(cls, run_id: str) -> StagingTables:
        return cls(hashlib.sha1(run_id.encode(), usedforsecurity=False).hexdigest()[:16])

    @property
    def advertisers(self) -> str:
        return f"{STAGING_PREFIX}{self.run_key}_adv"

    @property
    def campaigns(self) -> str:
        return f"{STAGING_PREFIX}{self.run_key}_cmp"

    @property
    def aliases(self) -> str:
        return f"{STAGING_PREFIX}{self.run_key}_alias"

    @property
    def tries(self) -> str:
        """Which Airflow tries started loading which shard (see ``shard_prepare.sql``)."""
        return f"{STAGING_PREFIX}{self.run_key}_tries"

    @property
    def known(self) -> str:
        """The fingerprints of the offers active when the run started (``staging_create.sql``)."""
        return f"{STAGING_PREFIX}{self.run_key}_known"

    def names(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ("advertisers", "campaigns", "aliases", "tries", "known")}

    def table_for(self, entity: str) -> str:
        return self.advertisers if entity == "advertisers" else self.campaigns


def create_staging(conn: psycopg.Connection[Any], tables: StagingTables) -> None:
    conn.execute(query("staging_create", **tables.names()))


def drop_staging(conn: psycopg.Connection[Any], tables: StagingTables) -> None:
    conn.execute(query("staging_drop", **tables.names()))


def drop_leftover_staging(conn: psycopg.Connection[Any], keep: StagingTables) -> list[str]:
    """Drop staging tables of earlier runs (killed or failed before their own clean-up).

    Called under the merge lock, so no merge is reading the tables we look at. Tables of runs
    still in flight (``sync_runs.status = 'running'``, not merged, younger than
    ``STAGING_MAX_AGE``) are kept: ``max_active_runs=1`` does not stop a second deployment, an
    ``airflow dags test`` or a cleared old run from starting while the nightly run is extracting.
    """
    rows = conn.execute(load_sql("staging_list"), {"max_age": STAGING_MAX_AGE}).fetchall()  # type: ignore[arg-type]
    stale = [r[0] for r in rows if not r[0].startswith(f"{STAGING_PREFIX}{keep.run_key}")]
    for name in stale:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    return stale


def staging_columns(entity: str) -> tuple[str, ...]:
    body = ADVERTISER_STAGING_COLUMNS if entity == "advertisers" else CAMPAIGN_STAGING_COLUMNS
    return (*_HEAD, *body, *_TAIL)


class CopyTextBuffer:
    """COPY rows formatted into bytes away from any connection: what a validation worker returns.

    The same formatter as the COPY of ``ShardWriter.copy_into`` (psycopg's text format, the default
    adapters, UTF-8), so the task process can pass the bytes on unchanged (``ShardWriter.write_data``).
    ``extract_pool.py`` uses it only when the connection's client encoding is UTF-8.
    """

    def __init__(self) -> None:
        from psycopg._copy_base import TextFormatter  # psycopg's own (C) row formatter; pinned in requirements
        from psycopg.adapt import Transformer

        self._formatter = TextFormatter(Transformer())
        self._chunks: list[Any] = []  # the formatter's full buffers, joined (copied) once in getvalue

    def write_row(self, row: tuple[Any, ...]) -> None:
        data = self._formatter.write_row(row)
        if data:
            self._chunks.append(data)

    def getvalue(self) -> bytes:
        self._chunks.append(self._formatter.end())
        data = b"".join(self._chunks)
        self._chunks = []
        return data


class ShardWriter:
    """Builds one shard's staging rows and streams them into its table through a single COPY.

    One COPY per shard (not per page) keeps the statement count independent of the catalogue
    size; the caller owns the transaction, so the shard lands whole or not at all. Every row
    carries ``try_number``, the Airflow try that wrote it: two tries of one shard produce the same
    ``seq`` values, and only the newest try's rows may count (``sweep_mark_duplicates.sql``).

    The rows go to ``sink`` (anything with ``write_row``): the COPY itself (``copy_into``), or, in a
    validation worker, a ``CopyTextBuffer`` whose bytes the task process writes with ``write_data``.
    ``seq`` numbers the rows in page order: ``at_page`` starts each page's numbers at a value its
    ordinal in the shard's stream alone fixes (``SEQ_PER_PAGE``; ``first_page`` is the stream's first
    page number), so a worker that stages a page numbers its rows exactly as the task process would,
    without knowing how many rows the pages before it had.
    """

    def __init__(self, sink: Any, entity: str, shard: int, try_number: int = 1, *, first_page: int = 1) -> None:
        self.entity = entity
        self.shard = shard
        self.try_number = try_number
        self.first_page = first_page
        self._sink = sink
        self._copy_cm: Any = None
        self._seq = shard * SEQ_PER_SHARD
        self._body_width = len(staging_columns(entity)) - len(_HEAD) - len(_TAIL)
        self._empty_body = (None,) * self._body_width
        # A carried campaign (``trackier/fingerprint.py``) stages its id, advertiser id and
        # fingerprint only: the padding between them, computed once.
        self._carried_gap = (None,) * (self._body_width - 4)

    @classmethod
    def copy_into(
        cls,
        cursor: psycopg.Cursor[Any],
        table: str,
        entity: str,
        shard: int,
        try_number: int = 1,
        *,
        first_page: int = 1,
    ) -> ShardWriter:
        """A writer whose rows go into ``table`` through one COPY on ``cursor`` (ended by ``close``)."""
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in staging_columns(entity))
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), columns)
        copy_cm = cursor.copy(statement)
        writer = cls(copy_cm.__enter__(), entity, shard, try_number, first_page=first_page)
        writer._copy_cm = copy_cm
        return writer

    def at_page(self, page: int) -> ShardWriter:
        """Number the next rows as page number ``page`` (a cursor stream's pages count from 1).

        A page holds at most ``MAX_RECORDS_PER_PAGE`` rows (``http.page_from_body`` refuses more) and
        a stream at most ``MAX_MAX_PAGES`` pages (``TrackierSettings.max_pages``).
        """
        ordinal = page - self.first_page + 1
        if not 0 < ordinal <= MAX_MAX_PAGES:
            raise ValueError(f"page ordinal {ordinal} is outside 1..{MAX_MAX_PAGES}")
        self._seq = self.shard * SEQ_PER_SHARD + ordinal * SEQ_PER_PAGE
        return self

    def write_data(self, data: bytes) -> None:
        """Rows already formatted by a ``CopyTextBuffer`` (whole rows, numbered by ``at_page``)."""
        if data:
            self._sink.write(data)

    def write_valid(self, page: int | None, row: tuple[Any, ...]) -> None:
        self._seq += 1
        self._sink.write_row((self.shard, self.try_number, self._seq, page, "valid", False, *row, None, None))

    def write_carried(self, page: int | None, trackier_id: str, advertiser_ref: str, content_hash: str) -> None:
        """A campaign whose fingerprint is a stored offer's: valid, and its values are the stored ones.

        Only what the sweep check and the merge compare on is staged (``CAMPAIGN_COLUMNS`` starts with
        trackier_id, hash_id, advertiser_ref and ends with content_hash); the merge reads the rest from
        ``offers`` in the rare case it has to write the row (``merge_offers.sql``).
        """
        self._seq += 1
        self._sink.write_row(
            (
                self.shard,
                self.try_number,
                self._seq,
                page,
                "valid",
                True,
                trackier_id,
                None,
                advertiser_ref,
                *self._carried_gap,
                content_hash,
                None,
                None,
            )
        )

    def write_reject(self, page: int | None, reject: Reject) -> None:
        self._seq += 1
        body = (reject.record_key, *self._empty_body[1:])  # keep the id: it still counts as "seen"
        self._sink.write_row(
            (self.shard, self.try_number, self._seq, page, "rejected", False, *body, reject.reason, reject.raw)
        )

    def close(self, exc: BaseException | None = None) -> None:
        """End the COPY of ``copy_into`` (aborted when ``exc`` is given); nothing for other sinks."""
        if self._copy_cm is None:
            return
        copy_cm, self._copy_cm = self._copy_cm, None
        if exc is None:
            copy_cm.__exit__(None, None, None)
        else:
            copy_cm.__exit__(type(exc), exc, exc.__traceback__)
