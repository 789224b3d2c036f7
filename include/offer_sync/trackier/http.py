"""The Trackier v2 HTTP client: auth, retries, rate limiting and both pagination styles.

Why it looks like this:

- The key goes in the ``X-Api-Key`` header, never the URL, so it cannot leak through a logged URL
  or an exception message (``requests`` puts URLs in its errors, never headers).
- What to retry follows ``docs/trackier-api.md#errors-and-limits``:
  timeouts, dropped connections, 429, 5xx and app codes
  40/50/51 are retried with exponential backoff and jitter (``Retry-After`` wins when present);
  a bad key, a non-whitelisted IP or a locked account (codes 5/12/13/41/42/102) fail at once with
  a message that says what to fix. ``"success": false`` on HTTP 200 is an error, not data.
- The key goes to the configured host and nowhere else. Redirects are not followed blindly
  (``requests`` strips ``Authorization`` on a cross-host redirect, not custom headers such as
  ``X-Api-Key``): one to the same scheme, host and port is followed, a few hops at most; one to any
  other origin is a configuration error (``TrackierRedirectError``) that names the host to put in
  the ``trackier_api`` connection, raised before anything is sent there and never retried.
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
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests

from include.offer_sync.errors import (
    TrackierAuthError,
    TrackierRedirectError,
    TrackierResponseError,
    TrackierTransientError,
)
from include.offer_sync.settings import TrackierSettings
from include.offer_sync.trackier.pagination import (
    TOTAL_FIELDS,
    TOTAL_PAGES_FIELDS,
    Anomaly,
    Entity,
    Page,
    PageFailure,
    Probe,
)

log = logging.getLogger(__name__)

#: App error codes after which asking again is pointless, and what the operator should do.
FATAL_CODES: dict[int, str] = {
    5: "Trackier says the request is unauthorized (code 5). Check that the key is a network/admin "
    "API key (panel: Automation -> API); publisher and advertiser keys cannot list {path}.",
    12: "Trackier says the request is unauthorized (code 12). Check that the key is a network/admin "
    "API key (panel: Automation -> API); publisher and advertiser keys cannot list {path}.",
    13: "Trackier rejected the API key (code 13: invalid API key). Put the network/admin API key "
    "from the panel (Automation -> API) in the password of the trackier_api connection.",
    102: "Trackier rejected the API key (code 102: invalid API key). Put the network/admin API key "
    "from the panel (Automation -> API) in the password of the trackier_api connection.",
    41: "Trackier refused this machine's IP address (code 41: IP not whitelisted). Add the Airflow "
    "workers' egress IP to the API allow-list in the Trackier panel.",
    42: "Trackier says the account is locked (code 42). Contact Trackier support; retrying will not help.",
}
TRANSIENT_CODES = {40, 50, 51}

#: Redirects within the configured origin followed per request before giving up on it.
MAX_REDIRECTS = 5


@dataclass
class RequestStats:
    """Counters a task reports in its summary (and the run in ``sync_runs``)."""

    requests: int = 0
    retries: int = 0
    wait_s: float = 0.0


class RateLimiter:
    """A thread-safe token bucket: at most ``rate`` requests per second, bursts of ``burst``.

    Local to one process: what a client uses when it is given no shared limiter. The extract
    tasks of a sweep share one budget through ``ratelimit.SweepRateLimiter`` instead.
    """

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until a request may go out; returns the seconds waited."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)
        return wait


class TrackierClient:
    """Talks to one Trackier account. Safe to share between the threads of one task."""

    def __init__(
        self,
        settings: TrackierSettings,
        *,
        requests_per_second: float | None = None,
        session: requests.Session | None = None,
        limiter: Any = None,
    ) -> None:
        self.settings = settings
        rate = settings.requests_per_second if requests_per_second is None else requests_per_second
        # ``limiter``: anything with ``acquire() -> float``, e.g. the sweep-wide one (ratelimit.py).
        self.limiter = limiter if limiter is not None else RateLimiter(rate)
        self.stats = RequestStats()
        self._stats_lock = threading.Lock()
        self._local = threading.local()
        self._session = session
        self._redirect_logged = False
        self._headers = {
            "X-Api-Key": settings.api_key.get_secret_value(),
            "Accept": "application/json",
            "User-Agent": "trackier-offer-sync/1.0",
        }

    def __repr__(self) -> str:  # the key must never show up, not even in a debugger
        return f"TrackierClient(base_url={self.settings.base_url!r})"

    # --- one request ------------------------------------------------------------------------

    def _http(self) -> requests.Session:
        if self._session is not None:
            return self._session
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def get_json(
        self, path: str, params: list[tuple[str, Any]] | dict[str, Any], *, list_key: str | None = None
    ) -> dict[str, Any]:
        """GET ``path`` and return its JSON body, retrying what is worth retrying.

        With ``list_key``, a body without that list counts as a transient failure too (a proxy
        page or a half-deployed API, most likely), so it is retried like any other.

        Raises ``TrackierAuthError`` at once for key/IP/account problems, ``TrackierResponseError``
        at once for a request the server calls malformed (retrying it would not change it), and
        ``TrackierTransientError`` once the retries are spent.
        """
        s = self.settings
        attempts = s.max_retries + 1
        last: Exception | None = None
        for attempt in range(1, attempts + 1):
            self.limiter.acquire()
            try:
                body = self._get_once(path, params)
                if list_key is not None and not isinstance(body.get(list_key), list):
                    raise TrackierTransientError(f"the response has no {list_key!r} list (keys: {sorted(body)[:10]})")
                return body
            except TrackierAuthError:
                raise
            except TrackierTransientError as exc:
                last = exc
                if attempt == attempts:
                    break
                retry_after = getattr(exc, "retry_after", None)
                if retry_after is not None:
                    wait = min(retry_after, s.max_retry_after_s)
                else:
                    wait = min(s.backoff_max_s, s.backoff_base_s * 2 ** (attempt - 1))
                    wait *= random.uniform(0.5, 1.5)
                with self._stats_lock:
                    self.stats.retries += 1
                    self.stats.wait_s += wait
                log.warning(
                    "GET %s %s failed (attempt %d/%d): %s; retrying in %.2fs",
                    path,
                    _safe_params(params),
                    attempt,
                    attempts,
                    exc,
                    wait,
                )
                time.sleep(wait)
        assert last is not None
        raise last

    def _send(self, url: str, params: Any) -> requests.Response:
        """One HTTP GET, redirects not followed; transport failures become ``TrackierTransientError``."""
        s = self.settings
        with self._stats_lock:
            self.stats.requests += 1
        try:
            return self._http().get(
                url,
                params=params,
                headers=self._headers,
                timeout=(s.connect_timeout_s, s.read_timeout_s),
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise TrackierTransientError(f"timed out after {s.read_timeout_s}s") from exc
        except requests.ConnectionError as exc:
            raise TrackierTransientError(f"connection failed: {_first_line(exc)}") from exc
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            # The connection dropped while the body was streaming (fewer bytes than Content-Length,
            # a broken chunk or gzip stream). Not a ConnectionError in requests' hierarchy, but the
            # same thing to us: a new request will most likely get the whole page.
            raise TrackierTransientError(f"the response body was cut off: {_first_line(exc)}") from exc

    def _follow(self, path: str, params: Any) -> requests.Response:
        """GET ``path``, following redirects only within the configured scheme, host and port.

        The key travels in a header on every request, so a redirect is followed only when its
        target is the origin the operator configured; anything else raises before a byte goes there.
        """
        base = self.settings.base_url
        resp = self._send(f"{base}{path}", params)
        for _ in range(MAX_REDIRECTS):
            if not resp.is_redirect:
                return resp
            target = urljoin(resp.url, resp.headers["Location"])
            resp.close()
            if _origin(target) != _origin(base):
                raise TrackierRedirectError(_redirect_message(path, base, target))
            # Said once per client: a moved path costs a request per page, the connection can say it.
            level = logging.DEBUG if self._redirect_logged else logging.WARNING
            self._redirect_logged = True
            log.log(
                level,
                "GET %s was redirected (HTTP %s) to %s on the same host; following it (put the new "
                "path in the trackier_api host to save the extra request)",
                path,
                resp.status_code,
                urlsplit(target).path,
            )
            resp = self._send(target, None)  # the target URL carries the query string already
        if resp.is_redirect:
            resp.close()
            raise TrackierResponseError(f"GET {path}: more than {MAX_REDIRECTS} redirects within {_origin(base)}")
        return resp

    def _get_once(self, path: str, params: Any) -> dict[str, Any]:
        resp = self._follow(path, params)
        body = _parse_json(resp)
        code = _error_code(body)
        status = resp.status_code

        if status in (400, 401, 403) or code in FATAL_CODES:
            if code in FATAL_CODES:
                raise TrackierAuthError(FATAL_CODES[code].format(path=path))
            if status == 401:
                raise TrackierAuthError(FATAL_CODES[13].format(path=path).replace("code 13: ", "HTTP 401: "))
            if status == 403:
                raise TrackierAuthError(
                    f"Trackier answered 403 (no permission) for {path}. Use a network/admin API key "
                    "(panel: Automation -> API) and check the account's IP allow-list."
                )
            if code not in TRANSIENT_CODES:
                raise TrackierResponseError(f"HTTP 400 for {path}: {_error_message(body) or 'bad request'}")
        if status == 429 or code == 40:
            raise TrackierTransientError(f"rate limited (HTTP {status}, code {code})", retry_after=_retry_after(resp))
        if status >= 500:
            raise TrackierTransientError(f"HTTP {status} from Trackier", retry_after=_retry_after(resp))
        if status != 200:
            raise TrackierResponseError(f"unexpected HTTP {status} for {path}")
        if body is None:
            kind = resp.headers.get("Content-Type", "no content type").split(";")[0]
            raise TrackierTransientError(f"HTTP 200 with a body that is not JSON ({kind}, {len(resp.content)} bytes)")
        if not isinstance(body, dict):
            raise TrackierTransientError(f"HTTP 200 with a JSON {type(body).__name__}, expected an object")
        if body.get("success") is False:
            raise TrackierTransientError(
                f"HTTP 200 with success:false (code {code}: {_error_message(body) or 'no message'})"
            )
        return body

    # --- pages -----------------------------------------------------------------------------

    def fetch_page(
        self,
        entity: Entity,
        *,
        page: int | None = None,
        token: str | None = None,
        limit: int | None = None,
    ) -> Page:
        """Fetch one page in either style. ``page`` selects numbered pages, else the cursor style."""
        limit = limit or self.settings.page_size
        params: list[tuple[str, Any]] = [("limit", limit)]
        if page is not None:
            params.append(("page", page))
        elif token:
            params.append(("pageToken", token))
        body = self.get_json(f"/v2/{entity}", params, list_key=entity)
        records = body[entity]
        pagination = body.get("pagination") or {}
        if not isinstance(pagination, dict):
            pagination = {}
        next_token = pagination.get("nextPageToken")
        return Page(
            entity=entity,
            records=records,
            page=page,
            token=token,
            next_token=next_token if isinstance(next_token, str) and next_token else None,
            total=_first_int(pagination, TOTAL_FIELDS),
            total_pages=_first_int(pagination, TOTAL_PAGES_FIELDS),
            per_page=_first_int(pagination, ("perPage", "limit")),
            fingerprint=page_fingerprint(records),
        )

    def probe(self, entity: Entity) -> Probe:
        """Ask for page 1 (and, in ``auto``, page 2 once) and decide how to sweep an entity.

        ``cursor`` asks nothing: the stream itself starts at page 1. ``page`` trusts the setting.
        ``auto`` prefers numbered pages (they can be split into parallel shards) when page 1 reports
        a total or carries no cursor, and proves it: ``page=2`` must not answer page 1's records
        again. A server that ignores ``page=`` (it only speaks ``pageToken``) gets the cursor
        instead, keeping the total it reported as the sweep's yardstick. With a cursor and no total,
        the cursor must move: ``pageToken`` must not answer page 1 again, else numbered pages are
        tried. Each fallback is logged and recorded in ``Probe.fallback``. The normal cost is one
        extra request per entity and sync (page 2 is fetched twice: here and by its shard).

        A check whose page fails for good keeps the style page 1 suggested (logged): the probe only
        picks the better style, while what keeps a wrong one safe is in the streams (a repeated page
        stops them) and in the sweep check, in every style.
        """
        requested = self.settings.pagination
        size = self.settings.page_size
        if requested == "cursor":
            return Probe("cursor", None, None, size, requested)
        first = self.fetch_page(entity, page=1, limit=size)
        per_page = first.per_page or size
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
            second = self._check_page(entity, size, page=2)
            if not _same_records(first, second):
                return _page_probe(first, per_page, requested, None)
            reason = f"page=2 answered the same {len(first.records)} records as page 1: the API ignores page=; "
            if first.next_token:
                reason += "following nextPageToken instead (set pagination to cursor to skip this check)"
            else:
                reason += "and page 1 has no nextPageToken, so only page 1 can be read; the sweep is incomplete"
            log.warning("%s: %s", entity, reason)
            return Probe("cursor", first.total, None, per_page, requested, reason)

        second = self._check_page(entity, size, token=first.next_token)
        if not _same_records(first, second):
            return Probe("cursor", None, None, per_page, requested)
        third = self._check_page(entity, size, page=2)
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

    def _check_page(self, entity: Entity, limit: int, **where: Any) -> Page | None:
        """The probe's second page, or None when it failed for good (the check is then skipped)."""
        try:
            return self.fetch_page(entity, limit=limit, **where)
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

    def iter_page_range(
        self,
        entity: Entity,
        first: int,
        last: int | None,
        *,
        limit: int | None = None,
        threads: int = 1,
        planned_last: int | None = None,
        first_page: str | None = None,
    ) -> Iterator[Page | PageFailure | Anomaly]:
        """Pages ``first..last`` in order (``last=None``: until a short or empty page).

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
        limit = limit or self.settings.page_size
        guard = _RepeatGuard(entity, "page", first_page)

        def fetch(n: int) -> Page | PageFailure:
            try:
                return self.fetch_page(entity, page=n, limit=limit)
            except TrackierAuthError:
                raise
            except (TrackierTransientError, TrackierResponseError) as exc:
                return PageFailure(entity, n, None, str(exc), self.settings.max_retries + 1)

        if last is None:
            yield from self._iter_open_range(entity, first, limit, fetch, planned_last, threads, guard)
            return
        from concurrent.futures import ThreadPoolExecutor

        cap = self.settings.max_pages
        stop = min(last, first + cap - 1)  # a range over the cap is cut (and reported), not refused
        window = max(1, threads) + 1
        with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=f"fetch-{entity}") as pool:
            pending = []
            next_page = first
            while next_page <= stop or pending:
                while next_page <= stop and len(pending) < window:
                    pending.append(pool.submit(fetch, next_page))
                    next_page += 1
                result = pending.pop(0).result()
                repeated = guard.check(result)
                if repeated is not None:
                    for future in pending:
                        future.cancel()
                    yield repeated
                    return
                short = isinstance(result, Page) and len(result.records) < limit
                if short and result.page is not None and result.page < last:
                    yield Anomaly(
                        entity,
                        result.page,
                        "short_page",
                        f"page {result.page} of {last} returned {len(result.records)} of {limit} records"
                        + ("; the list ends early, stopped reading" if not result.records else ""),
                    )
                    if not result.records:
                        for future in pending:
                            future.cancel()
                        return
                yield result
        if stop < last:
            detail = f"pages {first}-{last} are over the cap of {cap} pages; stopped after page {stop}"
            yield Anomaly(entity, stop + 1, "page_cap", detail)

    def _iter_open_range(
        self,
        entity: Entity,
        first: int,
        limit: int,
        fetch: Callable[[int], Page | PageFailure],
        planned_last: int | None,
        threads: int,
        guard: _RepeatGuard,
    ) -> Iterator[Page | PageFailure | Anomaly]:
        """Pages from ``first`` until a short one. Pages up to ``planned_last`` (the API's total says
        they exist) are prefetched like a closed range; past it, one page at a time."""
        from concurrent.futures import Future, ThreadPoolExecutor

        prefetch = planned_last is not None and threads > 1
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"fetch-{entity}") if prefetch else None
        ahead: dict[int, Future[Page | PageFailure]] = {}

        def get(n: int) -> Page | PageFailure:
            if pool is None or planned_last is None or n > planned_last:
                return fetch(n)
            for k in range(n, min(planned_last, n + threads) + 1):
                if k not in ahead:
                    ahead[k] = pool.submit(fetch, k)
            return ahead.pop(n).result()

        try:
            yield from self._walk_open_range(entity, first, limit, get, planned_last, guard)
        finally:
            if pool is not None:
                for future in ahead.values():
                    future.cancel()
                pool.shutdown(wait=True)

    def _walk_open_range(
        self,
        entity: Entity,
        first: int,
        limit: int,
        fetch: Callable[[int], Page | PageFailure],
        planned_last: int | None,
        guard: _RepeatGuard,
    ) -> Iterator[Page | PageFailure | Anomaly]:
        n = first
        while True:
            if n - first >= self.settings.max_pages:
                yield Anomaly(entity, n, "page_cap", f"stopped after {self.settings.max_pages} pages (cap)")
                return
            result = fetch(n)
            repeated = guard.check(result)
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
                yield Anomaly(
                    entity,
                    n,
                    "short_page",
                    f"page {n} of {planned_last} returned {len(result.records)} of {limit} records"
                    + ("; the list ends early, stopped reading" if not result.records else ""),
                )
                if not result.records:
                    return
            n += 1

    def iter_cursor(self, entity: Entity, *, limit: int | None = None) -> Iterator[Page | PageFailure | Anomaly]:
        """Follow ``nextPageToken`` from the first page to the last, with loop and cap guards.

        A cursor that comes back (``repeated_cursor``) or moves while the records do not
        (``repeated_page``) stops the stream. A stream that ends on a full page without a next
        token is yielded as it is: whether that is the end is for the sweep to decide (a total
        that matches, or none and the end is not proven; see ``sweep.py``).
        """
        limit = limit or self.settings.page_size
        seen: set[str] = set()
        guard = _RepeatGuard(entity, "cursor", None)
        token: str | None = None
        ordinal = 0
        while True:
            ordinal += 1
            if ordinal > self.settings.max_pages:
                yield Anomaly(entity, ordinal, "page_cap", f"stopped after {self.settings.max_pages} pages (cap)")
                return
            try:
                page = self.fetch_page(entity, token=token, limit=limit)
            except TrackierAuthError:
                raise
            except (TrackierTransientError, TrackierResponseError) as exc:
                yield PageFailure(entity, ordinal, token, str(exc), self.settings.max_retries + 1)
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


class _RepeatGuard:
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


def _parse_json(resp: requests.Response) -> Any:
    """orjson first (fast); the stdlib parser second, because it accepts what orjson refuses and a
    record may legitimately hold (lone surrogates, NaN, and - with ``strict=False`` - raw tabs and
    newlines inside strings, which hand-rolled serialisers send): one odd record must not lose its page."""
    try:
        return orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        try:
            return json.loads(resp.content, strict=False)
        except (ValueError, UnicodeDecodeError):
            return None


def _error_code(body: Any) -> int | None:
    if isinstance(body, dict):
        err = body.get("error")
        code = err.get("code") if isinstance(err, dict) else body.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
        if isinstance(code, str) and code.isdigit():
            return int(code)
    return None


def _error_message(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        msg = body["error"].get("message")
        return str(msg)[:200] if msg is not None else None
    return None


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


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


def _same_records(a: Page, b: Page | None) -> bool:
    return b is not None and a.fingerprint is not None and a.fingerprint == b.fingerprint


def _page_probe(first: Page, per_page: int, requested: str, fallback: str | None) -> Probe:
    """A numbered-page plan from page 1: shards by the total when there is one, else one stream."""
    fingerprint = first.fingerprint.hex() if first.fingerprint else None
    if first.total is not None:
        pages = first.total_pages or -(-first.total // per_page)
        return Probe("page", first.total, pages, per_page, requested, fallback, fingerprint)
    return Probe("page", None, None, per_page, requested, fallback, fingerprint)


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with default ports filled in: what "the same host" means for the key."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


def _redirect_message(path: str, base: str, target: str) -> str:
    """What to do about a redirect to another host; names only scheme, host, port and path prefix."""
    parts = urlsplit(target)
    suggested = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    if parts.path.endswith(path) and len(parts.path) > len(path):
        suggested += parts.path[: -len(path)]
    return (
        f"Trackier redirected GET {path} to another host, {suggested}; the API key was not sent there and "
        f"the run stops. If {suggested} is where the Trackier API lives now, put it in the host of the "
        f"trackier_api connection (now {base}); if not, check that host for a typo or a proxy in between."
    )


def _first_int(mapping: dict[str, Any], names: tuple[str, ...]) -> int | None:
    for name in names:
        value = mapping.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _safe_params(params: Any) -> str:
    items = params.items() if isinstance(params, dict) else params
    return "&".join(f"{k}={v}" for k, v in items if k.lower() not in ("apikey", "api_key"))


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
