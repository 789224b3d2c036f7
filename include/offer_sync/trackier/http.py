"""The Trackier v2 HTTP transport: auth, redirects, retries, rate limiting and error codes.

This module is the certain part of the API: one request, sent safely and retried when that can
help (``get_json``), and one page of a list in either pagination style (``fetch_page``). How the
pages are walked (the probe, numbered pages, cursors, their guards) is the least certain part
(``docs/trackier-api.md#pagination-the-least-certain-part``) and lives in ``pagination.py``, whose
strategies take this client as their transport; ``TrackierClient.probe``, ``iter_page_range`` and
``iter_cursor`` only delegate to them, so callers and tests keep one object to hold.

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
- A page is read in either style (``page``/``limit`` or ``pageToken``), with whatever the server
  says about totals, and fingerprinted (``pagination.page_fingerprint``) in the fetch thread, so
  that the walkers can recognise a page served again without holding its records.
"""

from __future__ import annotations

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

from include.offer_sync.constants import MAX_PAGE_SIZE, MAX_RECORDS_PER_PAGE
from include.offer_sync.errors import (
    TrackierAuthError,
    TrackierRedirectError,
    TrackierResponseError,
    TrackierTransientError,
)
from include.offer_sync.settings import TrackierSettings
from include.offer_sync.trackier import pagination
from include.offer_sync.trackier.pagination import (
    TOTAL_FIELDS,
    TOTAL_PAGES_FIELDS,
    Anomaly,
    Entity,
    Page,
    PageFailure,
    Probe,
    page_fingerprint,
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
        self,
        path: str,
        params: list[tuple[str, Any]] | dict[str, Any],
        *,
        list_key: str | None = None,
        stage: Callable[[bytes], Any] | None = None,
    ) -> Any:
        """GET ``path`` and return its JSON body, retrying what is worth retrying.

        With ``list_key``, a body without that list counts as a transient failure too (a proxy
        page or a half-deployed API, most likely), so it is retried like any other.

        With ``stage``, an HTTP 200 response's bytes go to ``stage`` first, which parses and takes
        them (a validation worker, ``extract_pool.py``) and returns what it made of them, or returns
        None for a body it would not take (``accepted_page``: an error body, no list); then this
        client parses and judges the same bytes itself, as without ``stage``.

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
                body = self._get_once(path, params, stage)
                if not isinstance(body, dict):
                    return body  # taken by ``stage``, which checked what the lines below check
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

    def _get_once(self, path: str, params: Any, stage: Callable[[bytes], Any] | None = None) -> Any:
        resp = self._follow(path, params)
        if stage is not None and resp.status_code == 200:
            staged = stage(resp.content)
            if staged is not None:
                return staged
        body = parse_body(resp.content)
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
        stage: Callable[[int, bytes], Page | None] | None = None,
    ) -> Page:
        """Fetch one page in either style. ``page`` selects numbered pages, else the cursor style.

        ``stage`` (numbered pages only): the page's bytes are parsed and staged by it
        (``extract_pool.PagePool.stage``), which returns the ``Page`` with ``StagedRecords``; a body
        it does not take is parsed here as always.
        """
        limit = limit or self.settings.page_size
        params: list[tuple[str, Any]] = [("limit", limit)]
        if page is not None:
            params.append(("page", page))
        elif token:
            params.append(("pageToken", token))
        number = page
        staged = None if stage is None or number is None else (lambda content: stage(number, content))
        body = self.get_json(f"/v2/{entity}", params, list_key=entity, stage=staged)
        if isinstance(body, Page):
            return body
        return page_from_body(entity, body, page, token)

    # --- pagination, delegated (the strategies live in pagination.py) ----------------------

    def probe(self, entity: Entity) -> Probe:
        """How to sweep ``entity``: see ``pagination.probe``."""
        return pagination.probe(self, entity)

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
        stage: Callable[[int, bytes], Page | None] | None = None,
    ) -> Iterator[Page | PageFailure | Anomaly]:
        """Pages ``first..last`` in order (``last=None``: until a short page): see ``PageNumberPaginator``."""
        paginator = pagination.PageNumberPaginator(
            self,
            entity,
            limit=limit,
            threads=threads,
            planned_last=planned_last,
            first_page=first_page,
            stage=stage,
        )
        return paginator.pages(first, last)

    def iter_cursor(self, entity: Entity, *, limit: int | None = None) -> Iterator[Page | PageFailure | Anomaly]:
        """Follow ``nextPageToken`` from page 1 to the last: see ``CursorPaginator``."""
        return pagination.CursorPaginator(self, entity, limit=limit).pages()


def parse_body(content: bytes) -> Any:
    """A response body as JSON (None: not JSON). orjson first (fast); the stdlib parser second,
    because it accepts what orjson refuses and a record may legitimately hold (lone surrogates, NaN,
    and - with ``strict=False`` - raw tabs and newlines inside strings, which hand-rolled serialisers
    send): one odd record must not lose its page. The validation workers parse with this too."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        try:
            return json.loads(content, strict=False)
        except (ValueError, UnicodeDecodeError):
            return None


def accepted_page(body: Any, entity: Entity) -> bool:
    """Whether an HTTP 200 ``body`` is a page ``get_json(list_key=entity)`` returns as it is.

    The same judgement as ``TrackierClient._get_once`` and ``get_json`` make of a 200 response (no
    fatal or rate-limit app code, a JSON object, not ``success: false``, the entity's list present),
    for a validation worker that parses the bytes itself: what it refuses, the client parses and
    judges again, so an error body is retried or raised exactly as before
    (``tests/unit/test_http_bodies.py`` holds the two to the same answers).
    """
    if not isinstance(body, dict):
        return False
    code = _error_code(body)
    if code in FATAL_CODES or code == 40 or body.get("success") is False:
        return False
    return isinstance(body.get(entity), list)


def page_from_body(entity: Entity, body: dict[str, Any], page: int | None, token: str | None) -> Page:
    """A ``Page`` from an accepted body: its records and what its ``pagination`` says.

    Raises ``TrackierResponseError`` (the page is recorded as failed, nothing of it staged) for a page
    of more than ``MAX_RECORDS_PER_PAGE`` records: we ask for at most ``MAX_PAGE_SIZE``, and staging
    numbers a page's rows in a field of that width.
    """
    records = body[entity]
    if len(records) > MAX_RECORDS_PER_PAGE:
        where = f"page {page}" if page is not None else "a cursor page"
        raise TrackierResponseError(
            f"{where} of {entity} holds {len(records):,} records, more than the {MAX_RECORDS_PER_PAGE:,} a page "
            f"may hold (we ask for at most {MAX_PAGE_SIZE}); the page is skipped and the sweep is incomplete"
        )
    envelope = body.get("pagination") or {}
    if not isinstance(envelope, dict):
        envelope = {}
    next_token = envelope.get("nextPageToken")
    return Page(
        entity=entity,
        records=records,
        page=page,
        token=token,
        next_token=next_token if isinstance(next_token, str) and next_token else None,
        total=_first_int(envelope, TOTAL_FIELDS),
        total_pages=_first_int(envelope, TOTAL_PAGES_FIELDS),
        per_page=_first_int(envelope, ("perPage", "limit")),
        fingerprint=page_fingerprint(records),
    )


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
