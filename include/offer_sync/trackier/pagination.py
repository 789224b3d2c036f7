"""Pagination of Trackier's list endpoints: what a page, a failed page, an anomaly, a probe of
page 1 and a pagination verdict are, and the walkers that produce them
(``docs/trackier-api.md#pagination-the-least-certain-part``).

Why the walkers live here, apart from the HTTP transport (``http.py``): the transport is certain
(one request, its key, redirects, retries, rate limit, error codes), while pagination is the least
certain part of the API, so it is the part most likely to change and it reads best on its own. Each
strategy is a small function or class that takes the client as its transport and uses only its
``fetch_page`` (which retries and rate-limits) and its ``settings``, in the manner of dlt's
``rest_client/paginators.py``:

- ``probe(client, entity)`` asks page 1 (and, in ``auto``, page 2 once) and picks the style;
- ``PageNumberPaginator`` walks numbered pages, a closed range or an open-ended one, with threads
  that fetch ahead while the caller stages the current page;
- ``CursorPaginator`` follows ``nextPageToken``;
- ``RepeatGuard`` (on ``page_fingerprint``) stops any stream that serves an earlier page again, and
  ``short_page_anomaly`` says, the same way for both range walkers, that a page came back short
  before the end the total promised.

What they guarantee:

- Pagination is the least certain part of the API, so both styles are spoken: numbered pages
  (``page``/``limit``, with a total when the server gives one) and cursors (``pageToken``), with
  guards against a repeating cursor, an endless run of pages and pages that do not add up.
- Pagination proves itself. In ``auto`` the probe checks that the server honours the style it
  picked (``page=2`` is not page 1 again; a cursor moves) and falls back to the other style when it
  does not, saying why (``Probe.fallback``, which ends up in ``sync_runs.result["pagination"]``).
  In every style a page whose records are those of an earlier page (a fingerprint of the record
  ids) stops the stream with a ``repeated_page`` anomaly: never a loop up to the page cap.
- Completeness is proven, not assumed (the rule itself is applied in ``sweep.py``): a stream has
  reached the end when it ends on a short page, or when the records read match the total the API
  reported. A cursor stream that ends on a *full* page without a next token is not proof: with a
  total that says more it is cut short, and without any total the end cannot be shown, so that
  sweep is incomplete and deactivates nothing (a catalogue that is an exact multiple of the page
  size pays for this with a night without deactivation, never with live offers switched off).

``TrackierClient.probe/iter_page_range/iter_cursor`` delegate here, so callers (``extract``,
``tasks``) and tests that wrap those methods see one client. The types are what the rest of the
package sees of pagination (``extract``, ``shards``, ``load.sweep``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from include.offer_sync.errors import TrackierAuthError, TrackierResponseError, TrackierTransientError

if TYPE_CHECKING:  # http.py imports this module: the client type only for the type checker
    from include.offer_sync.trackier.http import TrackierClient

log = logging.getLogger(__name__)

Entity = Literal["advertisers", "campaigns"]

TOTAL_FIELDS = ("total", "totalCount", "totalRecords", "totalItems", "count")
TOTAL_PAGES_FIELDS = ("totalPages", "pages", "pageCount")


class PaginationVerdict(TypedDict):
    """How an entity was paginated, and why: travels in the shard dicts to ``sync_runs.result``."""

    requested: str  # the setting: auto, page or cursor
    style: str  # what the sweep used: page or cursor
    # why ``auto`` did not use the style the first page suggested, or why pages are read in a smaller
    # size than asked for (a server that serves fewer records per page than it says); None: neither
    fallback: str | None


@dataclass(frozen=True, slots=True)
class StagedRecords:
    """A page's records as a validation worker left them: staged already, only their count here.

    What ``PageNumberPaginator``'s guards need of a page's records is their number (``len``) and the
    page's fingerprint, which the worker computed (``Page.fingerprint``); the records themselves
    never came back to the task process. ``staged`` is the worker's result, opaque to the transport
    (``extract_pool.StagedPage``: the rows as COPY bytes and the page's outcome).
    """

    count: int
    staged: Any

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True)
class Page:
    """One page of an entity list, with what the server said about the pagination.

    ``records`` is the parsed list, or ``StagedRecords`` when a validation worker parsed and staged
    the page (``TrackierClient.fetch_page``'s ``stage``).
    """

    entity: Entity
    records: list[Any] | StagedRecords
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


# --- recognising a page served again ---------------------------------------------------------


def page_fingerprint(records: list[Any]) -> bytes | None:
    """8 bytes that identify a page by its record ids, in order (None for an empty page).

    Cheap on purpose (one hash over the ids, not the records): it only has to tell "the same page
    again" from "the next page". A record without an id is represented by its whole text.
    """
    if not records:
        return None
    parts = []
    for record in records:
        rid = record.get("id") if isinstance(record, dict) else None
        parts.append(repr(rid) if rid is not None else repr(record))
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8", "backslashreplace"), digest_size=8).digest()


class RepeatGuard:
    """Remembers the fingerprint of every page of one stream; a page seen before is an anomaly.

    8 bytes per page (100,000 pages: under 10 MB with the dict), computed in the fetch threads.
    Empty pages have no fingerprint: how they end a stream is decided elsewhere.
    """

    def __init__(self, entity: Entity, style: str, first_page: str | None) -> None:
        self.entity = entity
        self.style = style
        self.seen: dict[bytes, int] = {}
        if first_page:
            self.seen[bytes.fromhex(first_page)] = 1

    def check(self, result: Page | PageFailure) -> Anomaly | None:
        if not isinstance(result, Page) or result.fingerprint is None or result.page is None:
            return None
        earlier = self.seen.setdefault(result.fingerprint, result.page)
        if earlier == result.page:
            return None
        hint = (
            "the API seems to ignore page=; set pagination to auto or cursor"
            if self.style == "page"
            else "the cursor moves but the records do not"
        )
        return Anomaly(
            self.entity,
            result.page,
            "repeated_page",
            f"page {result.page} returned the same {len(result.records)} records as page {earlier} "
            f"({hint}); stopped reading this stream",
        )


def short_page_anomaly(entity: Entity, page: int, last: int, records: list[Any], limit: int) -> Anomaly:
    """A page that came back short (or empty) before ``last``, the end the range or total promised.

    The one wording for both range walkers. An empty one also says the stream stops there: with
    offset paging every later page is empty too.
    """
    return Anomaly(
        entity,
        page,
        "short_page",
        f"page {page} of {last} returned {len(records)} of {limit} records"
        + ("; the list ends early, stopped reading" if not records else ""),
    )


# --- choosing the style --------------------------------------------------------------------


def probe(client: TrackierClient, entity: Entity) -> Probe:
    """Ask for page 1 (and, in ``auto``, page 2 once) and decide how to sweep an entity.

    ``cursor`` asks nothing: the stream itself starts at page 1. ``page`` trusts the setting.
    ``auto`` prefers numbered pages (they can be split into parallel shards) when page 1 reports
    a total or carries no cursor, and proves it: ``page=2`` must not answer page 1's records
    again. A server that ignores ``page=`` (it only speaks ``pageToken``) gets the cursor
    instead, keeping the total it reported as the sweep's yardstick. With a cursor and no total,
    the cursor must move: ``pageToken`` must not answer page 1 again, else numbered pages are
    tried. Each fallback is logged and recorded in ``Probe.fallback``. The normal cost is one
    extra request per entity and sync (page 2 is fetched twice: here and by its shard).

    A page 1 that comes back short while more records exist is a server that serves fewer records
    per page than it says (``_served_cap``): the sweep then reads pages of what it serves.

    A check whose page fails for good keeps the style page 1 suggested (logged): the probe only
    picks the better style, while what keeps a wrong one safe is in the streams (a repeated page
    stops them) and in the sweep check, in every style.
    """
    requested = client.settings.pagination
    size = client.settings.page_size
    if requested == "cursor":
        return Probe("cursor", None, None, size, requested)
    first = client.fetch_page(entity, page=1, limit=size)
    per_page = first.per_page or size
    served = _served_cap(client, entity, first, per_page, requested)
    if served is not None:
        reason = (
            f"page 1 held {len(first.records)} of the {min(size, per_page)} records asked for while "
            + (f"the total says {first.total}" if first.total is not None else "page 2 held more")
            + f": the server serves at most {served} per page and says otherwise; reading pages of {served} "
            f"(set page_size to {served} to skip this check)"
        )
        log.warning("%s: %s", entity, reason)
        return _page_probe(first, served, requested, reason, served_cap=True)
    if requested == "page":
        return _page_probe(first, per_page, requested, None)
    if first.total is not None:
        more = first.total > len(first.records)
    else:
        more = first.next_token is not None or first.is_full(per_page)
    if not more:  # everything is on page 1 (the total says so, or a short page with no cursor)
        if first.total is not None:
            return _page_probe(first, per_page, requested, None)
        return Probe("cursor", None, None, per_page, requested)

    if first.total is not None or first.next_token is None:
        second = _check_page(client, entity, size, page=2)
        if not _same_records(first, second):
            return _page_probe(first, per_page, requested, None)
        reason = f"page=2 answered the same {len(first.records)} records as page 1: the API ignores page=; "
        if first.next_token:
            reason += "following nextPageToken instead (set pagination to cursor to skip this check)"
        else:
            reason += "and page 1 has no nextPageToken, so only page 1 can be read; the sweep is incomplete"
        log.warning("%s: %s", entity, reason)
        return Probe("cursor", first.total, None, per_page, requested, reason)

    second = _check_page(client, entity, size, token=first.next_token)
    if not _same_records(first, second):
        return Probe("cursor", None, None, per_page, requested)
    third = _check_page(client, entity, size, page=2)
    if third is not None and not _same_records(first, third):
        reason = (
            "nextPageToken answered page 1 again (the cursor does not move) while page=2 works: "
            "reading numbered pages instead (set pagination to page to skip this check)"
        )
        log.warning("%s: %s", entity, reason)
        return _page_probe(first, per_page, requested, reason)
    reason = (
        "nextPageToken answered page 1 again (the cursor does not move) and page=2 did not move past "
        "page 1 either: only page 1 can be read; the sweep is incomplete"
    )
    log.warning("%s: %s", entity, reason)
    return Probe("cursor", None, None, per_page, requested, reason)


def _check_page(client: TrackierClient, entity: Entity, limit: int, **where: Any) -> Page | None:
    """The probe's second page, or None when it failed for good (the check is then skipped)."""
    try:
        return client.fetch_page(entity, limit=limit, **where)
    except (TrackierTransientError, TrackierResponseError) as exc:
        what = "page 2" if "page" in where else "the next cursor page"
        log.warning(
            "%s: could not fetch %s to check the pagination (%s); keeping the style page 1 "
            "suggested, the streams still stop on a repeated page",
            entity,
            what,
            exc,
        )
        return None


def _served_cap(client: TrackierClient, entity: Entity, first: Page, per_page: int, requested: str) -> int | None:
    """The page size the server really serves, when it serves fewer records per page than it says.

    Why: a numbered-page plan counts pages by the page size, and a server that silently caps
    ``limit`` (serving 100 records where 1,000 were asked and ``perPage`` or ``totalPages`` still
    speak of 1,000) would otherwise leave every page short: with a total, a sweep of a tenth of the
    catalogue that ends incomplete every night; without one, page 1 taken for the whole list.

    A page 1 that is short (fewer records than asked for and than ``perPage``) but not empty, and not
    shown to be the whole list (a total that says more, or neither a total nor a cursor that ``auto``
    would follow to the end), is either the whole list or a cap. Page 2, asked with the served count as its
    limit, tells them apart: records that are not page 1's mean a cap (and that ``page=`` works),
    while an empty, failed or repeated page 2 leaves the probe as it was. The cost: one request,
    only when page 1 is short and not proven to be the end (a list that fits on one page without a
    total or a cursor).
    """
    served = len(first.records)
    if not served or first.is_full(per_page):
        return None
    if first.total is not None and first.total <= served:
        return None  # the total says page 1 is the whole list
    if first.total is None and first.next_token is not None and requested != "page":
        return None  # a cursor stream: its token, not the page size, says where the next page starts
    second = _check_page(client, entity, served, page=2)
    if second is None or not second.records or _same_records(first, second):
        return None
    return served


def _same_records(a: Page, b: Page | None) -> bool:
    return b is not None and a.fingerprint is not None and a.fingerprint == b.fingerprint


def _page_probe(first: Page, per_page: int, requested: str, fallback: str | None, served_cap: bool = False) -> Probe:
    """A numbered-page plan from page 1: shards by the total when there is one, else one stream.

    ``served_cap``: ``per_page`` is what the server really serves, so a reported ``totalPages``
    (counted in the page size it claims) is ignored.
    """
    fingerprint = first.fingerprint.hex() if first.fingerprint else None
    if first.total is not None:
        pages = (None if served_cap else first.total_pages) or -(-first.total // per_page)
        return Probe("page", first.total, pages, per_page, requested, fallback, fingerprint)
    return Probe("page", None, None, per_page, requested, fallback, fingerprint)


# --- walking the pages ---------------------------------------------------------------------


class PageNumberPaginator:
    """Numbered pages (``page``/``limit``) of one entity: a closed range or an open-ended one.

    ``planned_last`` is the last page the probe's total promised. An open range (the last shard
    of a sweep) reads on past a failed or short page before it, because the total says more
    pages follow: one bad page must not cost the rest of the shard. An empty page before the
    promised end stops a range (with an anomaly): with offset paging every later page is empty
    too, and a lying total must not turn into thousands of empty requests. A page with the same
    records as an earlier one (``first_page``: the probe's page 1, seen by every shard) stops it
    too (``repeated_page``): a server that ignores ``page=`` answers page 1 forever.

    With ``threads > 1`` the next pages are fetched while the caller validates and stages the
    current one; order is preserved and at most ``threads + 1`` pages are held in memory.
    """

    def __init__(
        self,
        client: TrackierClient,
        entity: Entity,
        *,
        limit: int | None = None,
        threads: int = 1,
        planned_last: int | None = None,
        first_page: str | None = None,
        stage: Callable[[int, bytes], Page | None] | None = None,
    ) -> None:
        self.client = client
        self.entity = entity
        self.limit = limit or client.settings.page_size
        self.threads = threads
        self.planned_last = planned_last
        self.guard = RepeatGuard(entity, "page", first_page)
        self.stage = stage

    def pages(self, first: int, last: int | None) -> Iterator[Page | PageFailure | Anomaly]:
        """Pages ``first..last`` in order (``last=None``: until a short or empty page)."""
        if last is None:
            return self._open_range(first)
        return self._closed_range(first, last)

    def _fetch(self, n: int) -> Page | PageFailure:
        """Page ``n``, or the failure that is recorded in its place once the retries are spent."""
        try:
            return self.client.fetch_page(self.entity, page=n, limit=self.limit, stage=self.stage)
        except TrackierAuthError:
            raise
        except (TrackierTransientError, TrackierResponseError) as exc:
            return PageFailure(self.entity, n, None, str(exc), self.client.settings.max_retries + 1)

    def _closed_range(self, first: int, last: int) -> Iterator[Page | PageFailure | Anomaly]:
        from concurrent.futures import ThreadPoolExecutor

        entity, limit, threads = self.entity, self.limit, self.threads
        cap = self.client.settings.max_pages
        stop = min(last, first + cap - 1)  # a range over the cap is cut (and reported), not refused
        window = max(1, threads) + 1
        with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=f"fetch-{entity}") as pool:
            pending = []
            next_page = first
            while next_page <= stop or pending:
                while next_page <= stop and len(pending) < window:
                    pending.append(pool.submit(self._fetch, next_page))
                    next_page += 1
                result = pending.pop(0).result()
                repeated = self.guard.check(result)
                if repeated is not None:
                    for future in pending:
                        future.cancel()
                    yield repeated
                    return
                short = isinstance(result, Page) and len(result.records) < limit
                if short and result.page is not None and result.page < last:
                    yield short_page_anomaly(entity, result.page, last, result.records, limit)
                    if not result.records:
                        for future in pending:
                            future.cancel()
                        return
                yield result
        if stop < last:
            detail = f"pages {first}-{last} are over the cap of {cap} pages; stopped after page {stop}"
            yield Anomaly(entity, stop + 1, "page_cap", detail)

    def _open_range(self, first: int) -> Iterator[Page | PageFailure | Anomaly]:
        """Pages from ``first`` until a short one. Pages up to ``planned_last`` (the API's total says
        they exist) are prefetched like a closed range; past it, one page at a time."""
        from concurrent.futures import Future, ThreadPoolExecutor

        planned_last, threads = self.planned_last, self.threads
        prefetch = planned_last is not None and threads > 1
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"fetch-{self.entity}") if prefetch else None
        ahead: dict[int, Future[Page | PageFailure]] = {}

        def get(n: int) -> Page | PageFailure:
            if pool is None or planned_last is None or n > planned_last:
                return self._fetch(n)
            for k in range(n, min(planned_last, n + threads) + 1):
                if k not in ahead:
                    ahead[k] = pool.submit(self._fetch, k)
            return ahead.pop(n).result()

        try:
            yield from self._walk_open_range(first, get)
        finally:
            if pool is not None:
                for future in ahead.values():
                    future.cancel()
                pool.shutdown(wait=True)

    def _walk_open_range(
        self, first: int, fetch: Callable[[int], Page | PageFailure]
    ) -> Iterator[Page | PageFailure | Anomaly]:
        entity, limit, planned_last = self.entity, self.limit, self.planned_last
        max_pages = self.client.settings.max_pages
        n = first
        while True:
            if n - first >= max_pages:
                yield Anomaly(entity, n, "page_cap", f"stopped after {max_pages} pages (cap)")
                return
            result = fetch(n)
            repeated = self.guard.check(result)
            if repeated is not None:
                yield repeated
                return
            yield result
            promised = planned_last is not None and n < planned_last
            if isinstance(result, PageFailure):
                if promised:
                    n += 1  # recorded by the caller; the pages after it still exist
                    continue
                return  # without a total we cannot know where the end is; the sweep is incomplete
            if len(result.records) < limit:
                if not promised:
                    return  # the end of the list
                assert planned_last is not None  # promised implies it
                yield short_page_anomaly(entity, n, planned_last, result.records, limit)
                if not result.records:
                    return
            n += 1


class CursorPaginator:
    """Follows ``nextPageToken`` from the first page to the last, with loop and cap guards.

    A cursor that comes back (``repeated_cursor``) or moves while the records do not
    (``repeated_page``) stops the stream. A stream that ends on a full page without a next
    token is yielded as it is: whether that is the end is for the sweep to decide (a total
    that matches, or none and the end is not proven; see ``sweep.py``).
    """

    def __init__(self, client: TrackierClient, entity: Entity, *, limit: int | None = None) -> None:
        self.client = client
        self.entity = entity
        self.limit = limit or client.settings.page_size

    def pages(self) -> Iterator[Page | PageFailure | Anomaly]:
        client, entity, limit = self.client, self.entity, self.limit
        max_pages = client.settings.max_pages
        seen: set[str] = set()
        guard = RepeatGuard(entity, "cursor", None)
        token: str | None = None
        ordinal = 0
        while True:
            ordinal += 1
            if ordinal > max_pages:
                yield Anomaly(entity, ordinal, "page_cap", f"stopped after {max_pages} pages (cap)")
                return
            try:
                page = client.fetch_page(entity, token=token, limit=limit)
            except TrackierAuthError:
                raise
            except (TrackierTransientError, TrackierResponseError) as exc:
                yield PageFailure(entity, ordinal, token, str(exc), client.settings.max_retries + 1)
                return  # a cursor stream cannot skip a page: the rest is unreachable this run
            page = Page(
                entity,
                page.records,
                ordinal,
                token,
                page.next_token,
                page.total,
                page.total_pages,
                page.per_page,
                page.fingerprint,
            )
            repeated = guard.check(page)
            if repeated is not None:
                yield repeated
                return
            yield page
            if page.next_token is None:
                return
            if page.next_token in seen or page.next_token == token:
                yield Anomaly(
                    entity,
                    ordinal,
                    "repeated_cursor",
                    f"page {ordinal} returned a cursor already seen; stopped to avoid a loop",
                )
                return
            if not page.records:
                yield Anomaly(entity, ordinal, "empty_page", f"page {ordinal} was empty but had a next cursor")
            seen.add(page.next_token)
            token = page.next_token
