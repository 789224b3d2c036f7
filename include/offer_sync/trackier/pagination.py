"""Pagination of Trackier's list endpoints: what a page, a failed page, an anomaly, a probe of
page 1 and a pagination verdict are (``docs/trackier-api.md#pagination-the-least-certain-part``).

The walkers that produce them (the probe, page ranges, cursors, the fallback from ``auto``) are
methods of ``TrackierClient`` in ``http.py``: they share its retry and rate-limit state. These
types are what the rest of the package sees of pagination (``extract``, ``shards``, ``load.sweep``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypedDict

Entity = Literal["advertisers", "campaigns"]

TOTAL_FIELDS = ("total", "totalCount", "totalRecords", "totalItems", "count")
TOTAL_PAGES_FIELDS = ("totalPages", "pages", "pageCount")


class PaginationVerdict(TypedDict):
    """How an entity was paginated, and why: travels in the shard dicts to ``sync_runs.result``."""

    requested: str  # the setting: auto, page or cursor
    style: str  # what the sweep used: page or cursor
    fallback: str | None  # why ``auto`` did not use the style the first page suggested (None: it did)


@dataclass(frozen=True)
class Page:
    """One page of an entity list, with what the server said about the pagination."""

    entity: Entity
    records: list[Any]
    page: int | None
    token: str | None
    next_token: str | None
    total: int | None
    total_pages: int | None
    per_page: int | None
    #: ``page_fingerprint(records)``: how a page that repeats an earlier one is recognised.
    fingerprint: bytes | None = None

    def is_full(self, limit: int) -> bool:
        """Whether the page holds as many records as a page can (so more may follow)."""
        return len(self.records) >= min(limit, self.per_page or limit)


@dataclass(frozen=True)
class PageFailure:
    """A page that still failed after every retry: recorded, and the sweep marked incomplete."""

    entity: Entity
    page: int | None
    token: str | None
    error: str
    attempts: int


@dataclass(frozen=True)
class Anomaly:
    """Something in the pagination that does not add up (not fatal, but the sweep is incomplete)."""

    entity: Entity
    page: int | None
    kind: str
    detail: str


@dataclass(frozen=True)
class Probe:
    """What the first page (or two) told us about how to sweep an entity."""

    style: Literal["page", "cursor"]
    total: int | None
    total_pages: int | None
    page_size: int
    requested: str = "auto"
    fallback: str | None = None
    #: Hex fingerprint of page 1, so that every shard of a page sweep recognises page 1 served again.
    first_page: str | None = None

    def verdict(self) -> PaginationVerdict:
        return {"requested": self.requested, "style": self.style, "fallback": self.fallback}
