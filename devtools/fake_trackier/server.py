"""An HTTP fake of Trackier's v2 admin API, with deterministic fault injection.

It speaks the shapes in ``docs/trackier-api.md``: ``X-Api-Key`` auth, ``{"success": ...}``
envelopes, both pagination styles (numbered ``page``/``limit`` with totals, and opaque
``pageToken`` keyset cursors), and the app error codes. Faults are knobs (see ``faults.Knobs``)
so the client's retry, validation and pagination guards can each be provoked on demand.

Built on ``http.server`` so it needs nothing beyond the standard library and orjson; the
catalogue renders records lazily, so a page of 1000 records costs a few milliseconds even at
1,000,000 campaigns. Responses are written with a single ``sendall`` (headers + body): writing
them separately would meet Nagle's algorithm and delayed ACKs and add ~40 ms per request.

Layout: ``ServerState`` holds everything mutable (knobs, counters, the catalogue) and turns a
request into a ``Reply`` without touching sockets; ``_Handler`` only parses and delivers, which
keeps the fault logic testable and the socket tricks (reset, short read) in one place.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hmac
import math
import re
import socket
import struct
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Self, TextIO
from urllib.parse import parse_qs, urlsplit

import orjson

from devtools.fake_trackier.catalogue import Catalogue
from devtools.fake_trackier.faults import (
    ERROR_BODIES,
    HTML_200,
    HTML_502,
    HTML_503,
    INF_SENTINEL,
    MOVED_PREFIX,
    NAN_SENTINEL,
    SURROGATE_SENTINEL,
    Knobs,
    apply_lone_surrogates,
    apply_nan_literal,
    apply_nan_strings,
    apply_raw_control_chars,
    corrupt_record,
    draw,
    record_is_invalid,
)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
PAGINATION_MODES = ("both", "page", "cursor")
_JSON = "application/json; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_CAMPAIGN_PATH = re.compile(r"^/v2/campaigns/([^/]+)/?$")
_API_KEY_IN_QUERY = re.compile(r"(?i)(apikey=)[^&]*")
_NAN_KINDS = frozenset({"nan_payout", "infinity_payout", "lone_surrogate_title"})  # need a byte rewrite


class _BadRequest(Exception):
    """A malformed request parameter: answered with HTTP 400, app code 20."""


@dataclasses.dataclass
class Reply:
    """What to answer, decided before any byte is written.

    ``action`` is ``send`` (a normal response), ``reset`` (abort the TCP connection with RST and
    send nothing) or ``short_read`` (announce the full Content-Length, send half, then close).
    """

    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    action: str = "send"
    delay_s: float = 0.0
    fault: str | None = None
    api: bool = False


def error_body(kind: str) -> bytes:
    code, message = ERROR_BODIES[kind]
    return orjson.dumps({"success": False, "error": {"code": code, "message": message}})


def _error(status: int, kind: str, fault: str | None = None) -> Reply:
    return Reply(status, error_body(kind), fault=fault)


def _fail(status: int, code: int, message: str) -> Reply:
    return Reply(status, orjson.dumps({"success": False, "error": {"code": code, "message": message}}))


# (style "page"|"cursor", page ordinal, limit, page number or last key served, token as received)
_PageParams = tuple[str, int, int, int, str | None]


def encode_token(kind: str, last_key: int, ordinal: int) -> str:
    """An opaque cursor: the last key served and the ordinal of the page it leads to.

    The ordinal lets cursor-mode faults (``script`` pages, ``short_page_at``, ``repeat_cursor``)
    address "the 7th page" as they do in page mode; the client must not care what is inside.
    """
    raw = f"{kind[0]}:{last_key}:{ordinal}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_token(kind: str, token: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tag, last, ordinal = raw.split(":")
        result = int(last), int(ordinal)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _BadRequest("malformed pageToken") from exc
    if tag != kind[0] or result[0] < -1 or result[1] < 1:
        raise _BadRequest("malformed pageToken")
    return result


def _int_param(query: Mapping[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    value = values[-1].strip()
    if not value.isdigit():
        raise _BadRequest(f"{name} must be a positive integer")
    number = int(value)
    if number < 1:
        raise _BadRequest(f"{name} must be a positive integer")
    return number


def _retry_after_header(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def redact(path: str) -> str:
    """The request path with any ``apiKey=`` value masked, for log lines."""
    return _API_KEY_IN_QUERY.sub(r"\1***", path)


class ServerState:
    """Everything mutable behind the server, shared by the handler threads.

    ``configure`` replaces ``self.knobs`` with a new object rather than editing it, so a request
    that already took a reference keeps a consistent set of knobs for its whole life.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        api_key: str,
        pagination: str = "both",
        knobs: Mapping[str, Any] | None = None,
        verbose: bool = False,
        log: TextIO | None = None,
    ) -> None:
        if pagination not in PAGINATION_MODES:
            raise ValueError(f"pagination must be one of {PAGINATION_MODES}")
        if not api_key:
            raise ValueError("api_key must not be empty")
        self.catalogue = catalogue
        self._api_key = api_key.encode()
        self.pagination = pagination
        self.verbose = verbose
        self.log = log or sys.stderr
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.knobs = Knobs()
        self._script_fired: list[int] = []
        self._cwp: list[dict[str, Any]] = []
        self._cwp_count = 0
        self._reset_counters()
        self.configure(dict(knobs or {}))

    # ------------------------------------------------------------------ knobs and stats

    def configure(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Merge knobs (plus ``pagination``/``api_key``); also restarts the fault draw sequence."""
        values = dict(values)
        pagination = values.pop("pagination", self.pagination)
        api_key = values.pop("api_key", None)
        if pagination not in PAGINATION_MODES:
            raise ValueError(f"pagination must be one of {PAGINATION_MODES}")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ValueError("api_key must be a non-empty string")
        new = dataclasses.replace(self.knobs)
        new.update(values)
        with self.lock:
            self.knobs = new
            self.pagination = pagination
            if api_key is not None:
                self._api_key = api_key.encode()
            self._seq = 0
            if "script" in values:
                self._script_fired = [0] * len(new.script)
            if "change_while_paging" in values:
                self._cwp = [{**t, "fired": False} for t in new.cwp_triggers()]
                self._cwp_count = 0
        return self.config()

    def config(self) -> dict[str, Any]:
        """Current knobs and pagination mode (the key is never included)."""
        return {**self.knobs.as_dict(), "pagination": self.pagination}

    def _reset_counters(self) -> None:
        self._seq = 0
        self._total = 0
        self._list_requests = 0
        self._by_path: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._mutations: list[dict[str, Any]] = []
        self._request_times: list[float] = []

    def request_times(self) -> list[float]:
        """``time.monotonic()`` at the arrival of every ``/v2`` request since the last reset.

        The clock is system-wide on Linux, so tests compare it with times taken in other processes.
        """
        with self.lock:
            return list(self._request_times)

    def reset_stats(self) -> None:
        with self.lock:
            self._reset_counters()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "total": self._total,
                "list_requests": self._list_requests,
                "by_path": dict(self._by_path),
                "by_status": dict(self._by_status),
                "faults": dict(self._faults),
                "mutations": list(self._mutations),
                "script": [
                    {**entry, "fired": fired}
                    for entry, fired in zip(self.knobs.script, self._script_fired, strict=False)
                ],
            }

    def record_status(self, status: str) -> None:
        with self.lock:
            self._by_status[status] += 1

    def _count_fault(self, name: str, n: int = 1) -> None:
        with self.lock:
            self._faults[name] += n

    # ------------------------------------------------------------------ mutations

    def mutate(self, op: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one catalogue mutation by name (control endpoint and ``change_while_paging``)."""
        cat = self.catalogue
        result: dict[str, Any]
        if op == "change_payouts":
            fraction, seed = float(args.get("fraction", 0.1)), int(args.get("seed", 0))
            result = {"changed": cat.change_payouts(fraction, seed)}
        elif op == "remove_campaigns":
            ids = args.get("ids")
            if ids is not None and not isinstance(ids, list):
                raise ValueError("ids must be a list")
            result = {"removed": cat.remove_campaigns(ids=ids, count=int(args.get("count", 0)))}
        elif op == "remove_first":
            # The nastiest mid-sweep change for offset paging: every later record shifts by one.
            first = cat.campaign_keys().slice(0, 1)
            ids = [cat.campaign(first[0]).get("id")] if first else []
            result = {"removed": cat.remove_campaigns(ids=ids)}
        elif op == "add_campaigns":
            result = {"added": cat.add_campaigns(int(args.get("count", 1)))}
        elif op == "restore":
            cat.restore()
            result = {}
        elif op == "set_campaign":
            fields = args.get("fields") or {}
            if not isinstance(fields, dict):
                raise ValueError("fields must be an object")
            result = {"campaign": cat.set_campaign(args.get("id"), **fields)}
        elif op == "set_advertiser":
            fields = args.get("fields") or {}
            if not isinstance(fields, dict):
                raise ValueError("fields must be an object")
            result = {"advertiser": cat.set_advertiser(args.get("id"), **fields)}
        else:
            raise ValueError(f"unknown op {op!r}")
        result["campaign_count"] = cat.campaign_count
        return result

    # ------------------------------------------------------------------ control endpoints

    def handle_control(self, method: str, path: str, body: bytes) -> Reply:
        """``/_fake/*``: unauthenticated test controls (bind the server to loopback only)."""
        routes = {
            "/_fake/health": ("GET",),
            "/_fake/stats": ("GET",),
            "/_fake/reset_stats": ("POST",),
            "/_fake/config": ("GET", "POST"),
            "/_fake/mutate": ("POST",),
            "/_fake/prerender": ("POST",),
        }
        path = path.rstrip("/")
        if path not in routes:
            return _fail(404, 31, "Not found")
        if method not in routes[path]:
            return _fail(405, 30, "Method not allowed")
        try:
            payload = orjson.loads(body) if body.strip() else {}
            if not isinstance(payload, dict):
                raise TypeError("the body must be a JSON object")
            if path == "/_fake/health":
                out: dict[str, Any] = {
                    "success": True,
                    "ok": True,
                    "advertisers": self.catalogue.advertiser_count,
                    "campaigns": self.catalogue.campaign_count,
                    "fixture": self.catalogue.fixture,
                    "pagination": self.pagination,
                }
            elif path == "/_fake/stats":
                out = {"success": True, **self.stats()}
            elif path == "/_fake/reset_stats":
                self.reset_stats()
                out = {"success": True}
            elif path == "/_fake/prerender":
                out = {"success": True, "records": self.catalogue.prerender()}
            elif path == "/_fake/config":
                out = {
                    "success": True,
                    "config": self.configure(payload) if method == "POST" else self.config(),
                }
            else:
                op = payload.pop("op", None)
                if not isinstance(op, str):
                    raise ValueError('the body needs an "op"')
                out = {"success": True, "op": op, "result": self.mutate(op, payload)}
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            return _fail(400, 20, message)
        return Reply(200, orjson.dumps(out))

    # ------------------------------------------------------------------ the API

    def handle_api(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Any,
        *,
        raw_query: str = "",
        moved: bool = False,
    ) -> Reply:
        """Decide the reply to one ``/v2`` request: redirect, auth, routing, faults, then the page.

        ``moved`` says the request came in under ``MOVED_PREFIX`` (the target of a same-host
        ``redirect_to``), which is served like ``/v2`` and never redirected again.
        """
        route = self._route(path)
        template = "/v2/campaigns/{id}" if route and route[0] == "campaign" else path.rstrip("/") or "/"
        with self.lock:
            knobs = self.knobs
            n = self._seq
            self._seq += 1
            self._total += 1
            self._by_path[template] += 1
            self._request_times.append(time.monotonic())
        if knobs.redirect_to is not None and not moved:
            # Like a load balancer or a moved API: answered before the key is even looked at.
            self._count_fault("redirect")
            location = f"{knobs.redirect_to}{path}" + (f"?{raw_query}" if raw_query else "")
            return Reply(knobs.redirect_status, b"", _HTML, headers=[("Location", location)], fault="redirect")
        if knobs.ip_not_whitelisted:
            self._count_fault("ip_not_whitelisted")
            return _error(403, "ip", fault="ip_not_whitelisted")
        key = headers.get("X-Api-Key") or (query.get("apiKey") or [None])[-1]
        if not key:
            return _error(401, "unauthorized")
        if not hmac.compare_digest(key.encode("utf-8", "surrogateescape"), self._api_key):
            return _error(400, "invalid_key")
        if route is None:
            return _error(404, "not_found")
        if method != "GET":
            return _fail(405, 30, "Method not allowed")

        ordinal: int | None = None
        page_params: _PageParams | None = None
        if route[0] in ("campaigns", "advertisers"):
            try:
                page_params = self._page_params(route[0], query)
            except _BadRequest as exc:
                return _fail(400, 20, str(exc))
            ordinal = page_params[1]
            self._count_list_request()

        delay = 0.0
        if knobs.latency_ms or knobs.latency_jitter_ms:
            delay += (knobs.latency_ms + draw(knobs.fault_seed, n, "jitter") * knobs.latency_jitter_ms) / 1000
        fault = self._scripted_fault(knobs, path, template, ordinal) or self._random_fault(knobs, n)
        # A timeout is a delay, not a reply: it composes with whatever is answered afterwards.
        timed_out = fault == "timeout" or bool(
            knobs.rate_timeout and draw(knobs.fault_seed, n, "timeout") < knobs.rate_timeout
        )
        if fault == "timeout":
            fault = None
        if timed_out:
            self._count_fault("timeout")
            delay += knobs.timeout_sleep_s
        if fault is not None:
            self._count_fault(fault)
        early = self._early_fault_reply(knobs, fault)
        if early is not None:
            early.delay_s = delay
            early.api = True
            return early

        if route[0] == "campaign":
            reply = self._single_campaign(knobs, route[1])
        else:
            assert page_params is not None
            filters = [v for v in query.get("advertiser[]", []) + query.get("advertiser", []) if v]
            reply = self._list(knobs, route[0], page_params, filters)
        reply.delay_s = delay
        reply.api = True
        reply.fault = fault or ("timeout" if timed_out else None)
        if reply.status == 200 and fault == "truncated":
            reply.body = reply.body[: len(reply.body) // 2]
        elif reply.status == 200 and fault == "short_read":
            reply.action = "short_read"
        return reply

    @staticmethod
    def _route(path: str) -> tuple[str, str | None] | None:
        if path in ("/v2/campaigns", "/v2/campaigns/"):
            return ("campaigns", None)
        if path in ("/v2/advertisers", "/v2/advertisers/"):
            return ("advertisers", None)
        m = _CAMPAIGN_PATH.match(path)
        return ("campaign", m.group(1)) if m else None

    def _count_list_request(self) -> None:
        """Count a list request and fire any ``change_while_paging`` trigger that is now due."""
        due: list[dict[str, Any]] = []
        with self.lock:
            self._list_requests += 1
            self._cwp_count += 1
            for trigger in self._cwp:
                if not trigger["fired"] and self._cwp_count > trigger["after"]:
                    trigger["fired"] = True
                    due.append(trigger)
        for trigger in due:
            args = {k: v for k, v in trigger.items() if k not in ("after", "op", "fired")}
            result = self.mutate(str(trigger.get("op", "remove_first")), args)
            with self.lock:
                self._faults["change_while_paging"] += 1
                self._mutations.append({"after": trigger["after"], "op": trigger.get("op"), "result": result})

    def _page_params(self, kind: str, query: Mapping[str, list[str]]) -> _PageParams:
        """``(style, ordinal, limit, page_or_last_key, token)``; raises ``_BadRequest``."""
        limit = min(_int_param(query, "limit", DEFAULT_LIMIT), MAX_LIMIT)
        use_pages = self.pagination == "page" or (self.pagination == "both" and "page" in query)
        if use_pages:
            page = _int_param(query, "page", 1)
            return ("page", page, limit, page, None)
        token = (query.get("pageToken") or [""])[-1]
        if not token:
            return ("cursor", 1, limit, -1, None)
        last_key, ordinal = decode_token(kind, token)
        return ("cursor", ordinal, limit, last_key, token)

    def _scripted_fault(self, knobs: Knobs, path: str, template: str, ordinal: int | None) -> str | None:
        if not knobs.script:
            return None
        with self.lock:
            for i, entry in enumerate(knobs.script):
                if entry["path"] not in (None, path, path.rstrip("/"), template):
                    continue
                if entry["page"] is not None and entry["page"] != ordinal:
                    continue
                if entry["times"] != -1 and self._script_fired[i] >= entry["times"]:
                    continue
                self._script_fired[i] += 1
                return str(entry["fault"])
        return None

    @staticmethod
    def _random_fault(knobs: Knobs, n: int) -> str | None:
        """At most one response fault per request, checked in a fixed order with independent draws."""
        seed = knobs.fault_seed
        if knobs.rate_reset and draw(seed, n, "reset") < knobs.rate_reset:
            return "reset"
        if knobs.rate_short_read and draw(seed, n, "short_read") < knobs.rate_short_read:
            return "short_read"
        if knobs.rate_429 and draw(seed, n, "429") < knobs.rate_429:
            return "429"
        if knobs.rate_5xx and draw(seed, n, "5xx") < knobs.rate_5xx:
            return ("500", "502", "503")[int(draw(seed, n, "5xx-kind") * 3)]
        if knobs.rate_html_200 and draw(seed, n, "html_200") < knobs.rate_html_200:
            return "html_200"
        if knobs.rate_success_false and draw(seed, n, "success_false") < knobs.rate_success_false:
            return "success_false"
        if knobs.rate_truncated and draw(seed, n, "truncated") < knobs.rate_truncated:
            return "truncated"
        return None

    @staticmethod
    def _early_fault_reply(knobs: Knobs, fault: str | None) -> Reply | None:
        """Replies for faults that replace the response entirely (no page is rendered)."""
        if fault is None or fault in ("truncated", "short_read"):
            return None
        if fault == "reset":
            return Reply(0, action="reset", fault=fault)
        if fault in ("429", "429_retry_after"):
            reply = _error(429, "too_many", fault=fault)
            retry_after = knobs.retry_after
            if retry_after is None and fault == "429_retry_after":
                retry_after = 1
            if retry_after is not None:
                reply.headers.append(("Retry-After", _retry_after_header(retry_after)))
            return reply
        if fault == "500":
            return _error(500, "internal", fault=fault)
        if fault == "502":
            return Reply(502, HTML_502, _HTML, fault=fault)
        if fault == "503":
            return Reply(503, HTML_503, _HTML, fault=fault)
        if fault == "html_200":
            return Reply(200, HTML_200, _HTML, fault=fault)
        if fault == "success_false":
            return _error(200, "internal", fault=fault)
        if fault == "auth_400":
            return _error(400, "invalid_key", fault=fault)
        if fault == "ip_403":
            return _error(403, "ip", fault=fault)
        raise AssertionError(f"unhandled fault {fault}")  # pragma: no cover - FAULT_KINDS is closed

    @staticmethod
    def _corrupts(knobs: Knobs, advertiser: bool) -> bool:
        """Whether the knobs may corrupt records of this kind (``_corrupt`` would touch them)."""
        if not (knobs.invalid_rate > 0 or (knobs.invalid_set and not advertiser)):
            return False
        return not advertiser or knobs.invalid_advertisers

    def _corrupt(self, knobs: Knobs, records: list[Any], advertiser: bool) -> tuple[list[Any], bool]:
        """Corrupt the records the knobs select; also says whether a NaN/Infinity sentinel was used."""
        if not self._corrupts(knobs, advertiser):
            return records, False
        out = []
        hit = 0
        nan = False
        for rec in records:
            kind = record_is_invalid(knobs, rec.get("id") if isinstance(rec, dict) else None, advertiser)
            if kind is not None:
                rec = corrupt_record(rec, kind)
                hit += 1
                nan = nan or kind in _NAN_KINDS
            out.append(rec)
        if hit:
            self._count_fault("invalid_records", hit)
        return out, nan

    def _dumps(self, knobs: Knobs, body: dict[str, Any], nan: bool) -> bytes:
        data = orjson.dumps(body)
        if nan and (NAN_SENTINEL.encode() in data or INF_SENTINEL.encode() in data):
            data = apply_nan_literal(data) if knobs.nan_literal else apply_nan_strings(data)
        if nan and SURROGATE_SENTINEL.encode() in data:
            data = apply_lone_surrogates(data)
        if knobs.raw_control_chars:
            data = apply_raw_control_chars(data)
        return data

    def _single_campaign(self, knobs: Knobs, campaign_id: str | None) -> Reply:
        rec = self.catalogue.get_campaign(campaign_id)
        if rec is None:
            return _error(404, "not_found")
        (rec,), nan = self._corrupt(knobs, [rec], advertiser=False)
        return Reply(200, self._dumps(knobs, {"success": True, "campaign": rec}, nan))

    def _list(self, knobs: Knobs, kind: str, params: _PageParams, filters: list[str]) -> Reply:
        """One list page in either style, with the pagination faults applied."""
        style, ordinal, limit, position, token = params
        cat = self.catalogue
        space = cat.campaign_keys(filters or None) if kind == "campaigns" else cat.advertiser_keys()
        short = knobs.short_pages()
        short_size = knobs.short_page_size if knobs.short_page_size is not None else limit // 2
        served = min(limit, knobs.serve_at_most or limit)  # the pagination below still says `limit`
        pagination: dict[str, Any]
        if style == "page":
            if knobs.repeat_page_after is not None and position > knobs.repeat_page_after:
                position = knobs.repeat_page_after  # the asked page number is still reported below
                self._count_fault("repeat_page")
            offset = (position - 1) * served
            total = space.count()
            keys = space.slice(offset, served)
            if ordinal in short and ordinal < math.ceil(total / limit):
                keys = keys[:short_size]
                self._count_fault("short_page")
            if knobs.duplicate_ids and ordinal > 1 and keys:
                prev = space.key_at(offset - 1)
                if prev is not None:
                    keys = [prev, *keys]
                    self._count_fault("duplicate_ids")
            reported = total + knobs.total_lie
            pagination = {
                "page": ordinal,
                "limit": limit,
                "perPage": limit,
                "total": reported,
                "totalPages": math.ceil(reported / limit),
            }
            if knobs.report_total is False:
                del pagination["total"], pagination["totalPages"]
        else:
            last_key = position
            keys = space.after(last_key, served + 1)
            has_next = len(keys) > served
            keys = keys[:served]
            if ordinal in short and has_next:
                keys = keys[:short_size]
                self._count_fault("short_page")
            next_token = encode_token(kind, keys[-1] if keys else last_key, ordinal + 1) if has_next else ""
            if knobs.repeat_cursor is not None and ordinal > knobs.repeat_cursor and has_next and token:
                next_token = token
                self._count_fault("repeat_cursor")
            if knobs.repeat_page_after is not None and ordinal >= knobs.repeat_page_after and has_next:
                next_token = encode_token(kind, last_key, ordinal + 1)  # a new token, the same records
                if ordinal > knobs.repeat_page_after:
                    self._count_fault("repeat_page")
            if knobs.cursor_stops_after is not None and ordinal >= knobs.cursor_stops_after and has_next:
                next_token = ""  # a full page that claims to be the last
                self._count_fault("cursor_stops_early")
            still_live = last_key >= 0 and space.after(last_key - 1, 1) == [last_key]
            if knobs.duplicate_ids and ordinal > 1 and still_live:
                keys = [last_key, *keys]
                self._count_fault("duplicate_ids")
            pagination = {"perPage": limit, "nextPageToken": next_token}
            if knobs.report_total:
                pagination["total"] = space.count() + knobs.total_lie
        advertiser = kind == "advertisers"
        if not (knobs.raw_control_chars or self._corrupts(knobs, advertiser)):
            rendered = cat.rendered(kind, keys)  # kept by /_fake/prerender: what orjson would write
            if rendered is not None:
                parts = (b'{"success":true,"', kind.encode(), b'":[', b",".join(rendered), b'],"pagination":')
                return Reply(200, b"".join((*parts, orjson.dumps(pagination), b"}")))
        records = cat.campaigns(keys) if kind == "campaigns" else cat.advertisers(keys)
        records, nan = self._corrupt(knobs, records, advertiser=advertiser)
        body = {"success": True, kind: records, "pagination": pagination}
        return Reply(200, self._dumps(knobs, body, nan))


class _Handler(BaseHTTPRequestHandler):
    """Parses a request, asks ``ServerState`` what to answer, and delivers it (or a fault)."""

    protocol_version = "HTTP/1.1"
    server_version = "fake-trackier/1.0"
    sys_version = ""
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            return b""
        return self.rfile.read(size) if size > 0 else b""

    def _dispatch(self, method: str) -> None:
        started = time.perf_counter()
        state = self.server.state
        parts = urlsplit(self.path)
        path = parts.path
        try:
            body = self._read_body()
            if path.startswith("/_fake/") or path == "/_fake":
                reply = state.handle_control(method, path, body)
            elif path.startswith(("/v2/", f"{MOVED_PREFIX}/v2/")) or path in ("/v2", f"{MOVED_PREFIX}/v2"):
                query = parse_qs(parts.query, keep_blank_values=True)
                moved = path.startswith(f"{MOVED_PREFIX}/")
                reply = state.handle_api(
                    method,
                    path.removeprefix(MOVED_PREFIX) if moved else path,
                    query,
                    self.headers,
                    raw_query=parts.query,
                    moved=moved,
                )
                reply.api = True
            else:
                reply = _error(404, "not_found")
        except Exception:  # noqa: BLE001 - a bug in the fake: answer like Trackier would, say so on stderr
            traceback.print_exc(file=state.log)
            reply = _error(500, "internal", fault="fake_bug")
        self._deliver(reply, state)
        if state.verbose:
            took = (time.perf_counter() - started) * 1000
            status = reply.action if reply.action != "send" else str(reply.status)
            fault = f" fault={reply.fault}" if reply.fault else ""
            print(
                f"{self.client_address[0]} {method} {redact(self.path)} -> {status} "
                f"{len(reply.body)}B {took:.1f}ms{fault}",
                file=state.log,
                flush=True,
            )

    def _deliver(self, reply: Reply, state: ServerState) -> None:
        if reply.delay_s > 0:
            state.stop_event.wait(reply.delay_s)  # interruptible, so stop() never waits 30 s
        if reply.api:
            state.record_status(reply.action if reply.action != "send" else str(reply.status))
        if reply.action == "reset":
            self.close_connection = True
            try:
                # SO_LINGER with a zero timeout turns close() into an RST: "connection reset by peer".
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass
            return
        body = reply.body
        if reply.action == "short_read":
            self.close_connection = True
        lines = [
            f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(body)}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
        ]
        lines.extend(f"{name}: {value}" for name, value in reply.headers)
        if self.close_connection:
            lines.append("Connection: close")
        if reply.action == "short_read":
            body = body[: len(body) // 2]  # Content-Length above promised the whole body
        try:
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        except OSError:  # the client gave up (e.g. its read timeout fired during a "timeout" fault)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the base class logs the raw request line, which may carry ``apiKey=``."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # do not join handler threads on close: a "timeout" fault sleeps 30 s
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: ServerState) -> None:
        self.state = state
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can take seconds.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections so they can exit."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # clients dropping connections is normal here (timeouts, resets we caused)
        super().handle_error(request, client_address)


class FakeTrackier:
    """The fake server on a background daemon thread: ``with FakeTrackier(cat) as fake: fake.url``.

    It binds and starts serving in the constructor (``autostart=False`` to delay until ``start``),
    so ``.url`` is usable at once; ``stop()`` (or leaving the ``with`` block) shuts it down.
    """

    def __init__(
        self,
        catalogue: Catalogue | None = None,
        api_key: str = "test-key",
        pagination: str = "both",
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        autostart: bool = True,
        log: TextIO | None = None,
        **knobs: Any,
    ) -> None:
        self.catalogue = catalogue if catalogue is not None else Catalogue(20, 200)
        self.state = ServerState(self.catalogue, api_key, pagination, knobs, verbose=verbose, log=log)
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        if autostart:
            self.start()

    def start(self) -> Self:
        if self._server is None:
            self.state.stop_event.clear()
            self._server = _Server(self._address, self.state)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="fake-trackier",
                daemon=True,
            )
            self._thread.start()
        return self

    @property
    def host(self) -> str:
        assert self._server is not None, "not started"
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Merge fault knobs (and ``pagination``); returns the resulting configuration."""
        return self.state.configure(knobs)

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def reset_stats(self) -> None:
        self.state.reset_stats()

    def request_times(self) -> list[float]:
        """Arrival time (``time.monotonic()``) of every API request since the last ``reset_stats``."""
        return self.state.request_times()

    def mutate(self, op: str, **args: Any) -> dict[str, Any]:
        """Same as ``POST /_fake/mutate``: e.g. ``mutate("remove_campaigns", count=3)``."""
        return self.state.mutate(op, args)

    def stop(self) -> None:
        if self._server is None:
            return
        self.state.stop_event.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
