"""Fault knobs of the fake Trackier server and the record corruptions it can inject.

Everything here is deterministic on purpose: a failing test must fail the same way on the next
run. Random-looking decisions are ``hash01(fault_seed, request_number, knob)`` draws, where the
request number counts API requests since the last ``configure``/``reset_stats``; record corruption
depends only on ``(fault_seed, record id)`` so a retried page is corrupted identically.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from devtools.fake_trackier.catalogue import hash01

# Faults a ``script`` entry may name. Most also have a ``rate_*`` knob.
FAULT_KINDS: tuple[str, ...] = (
    "429",
    "429_retry_after",
    "500",
    "502",
    "503",
    "timeout",
    "reset",
    "html_200",
    "truncated",
    "short_read",
    "success_false",
    "auth_400",
    "ip_403",
)

# Ways a campaign is corrupted by ``invalid_rate`` / ``invalid_ids`` (see ``corrupt_record``).
INVALID_KINDS: tuple[str, ...] = (
    "missing_title",
    "missing_id",
    "missing_advertiser_id",
    "payout_string",
    "id_object",
    "negative_payout",
    "nan_payout",
    "infinity_payout",
    "unknown_currency",
    "long_title",
    "control_chars",
    "orphan_advertiser",
)

# Text the sync must refuse because PostgreSQL cannot store it. Only used when named in
# ``invalid_kind`` (never drawn by ``invalid_rate``, so the kinds drawn for existing ids stay the same):
# a NUL in the description (titles get theirs from ``control_chars``), and a lone surrogate in the
# title, sent as the JSON escape ``\ud800`` (valid JSON syntax, but not Unicode text).
TEXT_KINDS: tuple[str, ...] = ("nul_description", "lone_surrogate_title")

# The subset that makes sense for an advertiser record (no payout, no advertiser reference).
ADVERTISER_INVALID_KINDS: tuple[str, ...] = (
    "missing_title",
    "missing_id",
    "id_object",
    "unknown_currency",
    "long_title",
    "control_chars",
)

# Redirect statuses the ``redirect_status`` knob may use (all keep the method for a GET).
REDIRECT_STATUSES: tuple[int, ...] = (301, 302, 303, 307, 308)
# The path prefix under which the fake also serves the API, never redirected (``redirect_to``).
MOVED_PREFIX = "/moved"

# An advertiser id no generated advertiser has (theirs are BLAKE2b output; this is all zeros).
ORPHAN_ADVERTISER_ID = "000000000000000000000000"
LONG_TITLE_LENGTH = 100_000

# orjson cannot write NaN/Infinity; with ``nan_literal`` these strings are swapped for the bare
# tokens after serialisation (what Python's json module accepts and strict parsers reject).
NAN_SENTINEL = "__fake_trackier_NaN__"
INF_SENTINEL = "__fake_trackier_Infinity__"
# orjson cannot write a lone surrogate either; this is swapped for the JSON escape after serialisation.
SURROGATE_SENTINEL = "__fake_trackier_lone_surrogate__"

ERROR_BODIES: dict[str, tuple[int, str]] = {
    "bad_request": (20, "bad request"),
    "unauthorized": (12, "Unauthorized"),
    "invalid_key": (13, "Invalid API Key"),
    "not_found": (31, "Not found"),
    "too_many": (40, "Too many requests"),
    "ip": (41, "IP not whitelisted"),
    "internal": (51, "Internal error"),
}

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
HTML_503 = (
    b"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    b"<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
HTML_200 = (
    b"<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\n<body><h1>We'll be back soon</h1>"
    b"<p>Trackier is undergoing scheduled maintenance. Please try again later.</p></body></html>\n"
)

_RATE_KNOBS = (
    "rate_429",
    "rate_5xx",
    "rate_timeout",
    "rate_reset",
    "rate_html_200",
    "rate_truncated",
    "rate_short_read",
    "rate_success_false",
    "invalid_rate",
)


@dataclasses.dataclass
class Knobs:
    """Every fault knob, all off by default. ``update`` validates, so typos fail loudly."""

    # Delay added to every /v2 request, plus a deterministic 0..jitter extra.
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    # HTTP 429, body code 40; ``retry_after`` (seconds, or a raw string) adds a Retry-After header.
    rate_429: float = 0.0
    retry_after: float | str | None = None
    # One of 500 (JSON, code 51), 502 or 503 (nginx-style HTML).
    rate_5xx: float = 0.0
    # Sleep ``timeout_sleep_s`` before answering (normally) - a client read timeout fires first.
    rate_timeout: float = 0.0
    timeout_sleep_s: float = 30.0
    # Close the socket with an RST and no response at all.
    rate_reset: float = 0.0
    # HTTP 200 with an HTML maintenance page.
    rate_html_200: float = 0.0
    # HTTP 200 whose JSON body is cut in half (Content-Length matches the cut body: bad JSON).
    rate_truncated: float = 0.0
    # Content-Length of the full body, only half of it sent, then the connection closes.
    rate_short_read: float = 0.0
    # HTTP 200 with {"success": false, "error": {"code": 51, ...}}.
    rate_success_false: float = 0.0
    # Fraction of campaigns (by id) served corrupted; ``invalid_ids`` always are; the kind is
    # ``invalid_kind`` (one kind, or {id: kind}) or picked per id from INVALID_KINDS.
    invalid_rate: float = 0.0
    invalid_ids: list[Any] = dataclasses.field(default_factory=list)
    invalid_kind: str | dict[str, str] | None = None
    # Also corrupt advertisers at ``invalid_rate`` (off: keeps rejected-campaign counts exact).
    invalid_advertisers: bool = False
    # NaN/Infinity payouts as bare tokens (invalid JSON) instead of the strings "NaN"/"Infinity".
    nan_literal: bool = False
    # Tabs, newlines and CRs inside strings sent as raw bytes instead of JSON escapes: invalid JSON,
    # but what hand-rolled serialisers emit; the client must read the page, not lose it.
    raw_control_chars: bool = False
    # Pages after the first start with the previous page's last record (one extra record).
    duplicate_ids: bool = False
    # N (remove the lowest live id after N list requests), {"after": N, "op": ..., args}, or a list.
    change_while_paging: int | dict[str, Any] | list[dict[str, Any]] | None = None
    # Cursor pages after page K hand back the token they were asked with.
    repeat_cursor: int | None = None
    # These pages (page number / cursor ordinal) carry ``short_page_size`` (default limit // 2)
    # records although more follow; 0 gives an empty page mid-sweep.
    short_page_at: int | list[int] | None = None
    short_page_size: int | None = None
    # Added to the reported ``total`` (and so to ``totalPages``).
    total_lie: int = 0
    # A silent cap: every page holds at most N records while ``perPage``/``limit`` and ``totalPages``
    # still speak of the limit asked for (a server whose real maximum is lower than it admits).
    # Numbered pages count in served records: page k starts at record (k - 1) * min(limit, N).
    serve_at_most: int | None = None
    # Whether list answers carry ``total``: None = numbered pages do and cursor pages do not (the
    # documented shapes); True = both do (a cursor-only API that still counts); False = neither.
    report_total: bool | None = None
    # The cursor page with this ordinal answers without ``nextPageToken`` although more records
    # follow (a token that stops early: a full page that looks like the last one).
    cursor_stops_after: int | None = None
    # Pages after page K serve page K's records again: numbered pages K+1, K+2 ... repeat page K,
    # and cursor pages after K repeat it too while their ``nextPageToken`` still moves on.
    repeat_page_after: int | None = None
    # Answer every /v2 request with ``redirect_status`` and ``Location: <redirect_to><path>?<query>``:
    # a path prefix such as "/moved" (same host; the fake serves /moved/v2/... like /v2/... and never
    # redirects it) or a base URL such as "http://127.0.0.2:8080" (another host).
    redirect_to: str | None = None
    redirect_status: int = 302
    # Every /v2 request: HTTP 403, code 41.
    ip_not_whitelisted: bool = False
    # [{"path": "/v2/campaigns", "page": 7, "times": 2, "fault": "503"}]; path/page optional,
    # times -1 = always. The first matching entry with fires left wins; it beats the rate knobs.
    script: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # Seed of every random-looking decision (with the request number, or the record id).
    fault_seed: int = 0

    def __post_init__(self) -> None:
        # Ids compared as strings (the client may send 100001 or "100001"), looked up per record.
        self.invalid_set: frozenset[str] = frozenset(str(i) for i in self.invalid_ids)

    def update(self, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into the knobs after validating all of them (all or nothing)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        trial = copy.deepcopy(self)
        for name, value in values.items():
            setattr(trial, name, _validate(name, value))
        for name in values:
            setattr(self, name, getattr(trial, name))
        self.invalid_set = frozenset(str(i) for i in self.invalid_ids)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def short_pages(self) -> set[int]:
        if self.short_page_at is None:
            return set()
        return {self.short_page_at} if isinstance(self.short_page_at, int) else set(self.short_page_at)

    def cwp_triggers(self) -> list[dict[str, Any]]:
        """``change_while_paging`` as a list of ``{"after": N, "op": ..., ...}`` triggers."""
        value = self.change_while_paging
        if value is None:
            return []
        if isinstance(value, int):
            return [{"after": value, "op": "remove_first"}]
        return [dict(value)] if isinstance(value, dict) else [dict(v) for v in value]


def _number(name: str, value: Any, lo: float = 0.0, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number within [{lo}, {hi}], got {value!r}")
    return float(value)


def _validate(name: str, value: Any) -> Any:
    """Type-check one knob value; return the normalised value."""
    if name in _RATE_KNOBS:
        return _number(name, value, 0.0, 1.0)
    if name in ("latency_ms", "latency_jitter_ms", "timeout_sleep_s"):
        return _number(name, value)
    if name == "retry_after":
        if value is None or isinstance(value, str):
            return value
        return _number(name, value)
    if name == "report_total":
        if value is not None and not isinstance(value, bool):
            raise ValueError("report_total must be true, false or null")
        return value
    if name == "redirect_to":
        if value is not None and (not isinstance(value, str) or not value.startswith(("/", "http://", "https://"))):
            raise ValueError("redirect_to must be a path prefix (/moved), a base URL (http://host:port) or null")
        return value.rstrip("/") if value else value
    if name == "redirect_status":
        if value not in REDIRECT_STATUSES:
            raise ValueError(f"redirect_status must be one of {REDIRECT_STATUSES}")
        return value
    if name in ("invalid_advertisers", "nan_literal", "raw_control_chars", "duplicate_ids", "ip_not_whitelisted"):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if name == "invalid_ids":
        if not isinstance(value, list):
            raise ValueError("invalid_ids must be a list of campaign ids")
        return list(value)
    if name == "invalid_kind":
        if value is None:
            return None
        if not isinstance(value, (str, dict)):
            raise ValueError(f"invalid_kind must be one of {INVALID_KINDS} or a {{id: kind}} map")
        kinds = [value] if isinstance(value, str) else list(value.values())
        bad = [k for k in kinds if k not in INVALID_KINDS and k not in TEXT_KINDS]
        if bad:
            raise ValueError(f"invalid_kind {bad[0]!r} is not one of {INVALID_KINDS + TEXT_KINDS}")
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value
    if name in ("cursor_stops_after", "repeat_page_after", "serve_at_most"):
        if value is not None and (not _is_int(value) or value < 1):
            raise ValueError(f"{name} must be a page number (>= 1) or null")
        return value
    if name in ("repeat_cursor", "short_page_size"):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be a non-negative integer or null")
        return value
    if name == "short_page_at":
        items = [value] if isinstance(value, int) else value if isinstance(value, list) else None
        if value is not None and (items is None or not all(_is_int(p) for p in items)):
            raise ValueError("short_page_at must be a page number, a list of them, or null")
        return value
    if name in ("total_lie", "fault_seed"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        return value
    if name == "change_while_paging":
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        items = [value] if isinstance(value, dict) else value if isinstance(value, list) else None
        if items is None or not all(isinstance(i, dict) and _is_int(i.get("after")) for i in items):
            raise ValueError('change_while_paging must be N, {"after": N, "op": ...} or a list of those')
        return value
    if name == "script":
        if not isinstance(value, list):
            raise ValueError("script must be a list of {path, page, times, fault} entries")
        out = []
        for entry in value:
            if not isinstance(entry, dict) or entry.get("fault") not in FAULT_KINDS:
                raise ValueError(f"script entry {entry!r}: 'fault' must be one of {FAULT_KINDS}")
            times = entry.get("times", 1)
            if isinstance(times, bool) or not isinstance(times, int) or times < -1:
                raise ValueError(f"script entry {entry!r}: 'times' must be -1 (always) or >= 0")
            out.append({"path": entry.get("path"), "page": entry.get("page"), "times": times, "fault": entry["fault"]})
        return out
    raise ValueError(f"unknown knob {name}")  # pragma: no cover - update() filters names first


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def draw(seed: int, n: int, knob: str) -> float:
    """The uniform draw that decides whether ``knob`` fires on API request number ``n``."""
    return hash01("req", seed, n, knob)


def record_is_invalid(knobs: Knobs, record_id: Any, advertiser: bool = False) -> str | None:
    """The corruption kind for a record id, or None. Depends only on the knobs and the id.

    ``invalid_ids``/``invalid_kind`` name campaigns; advertisers are only hit by ``invalid_rate``
    and only when ``invalid_advertisers`` is on (a broken advertiser orphans all its campaigns,
    which would blur a test that counts rejected campaigns).
    """
    if advertiser:
        if not knobs.invalid_advertisers or knobs.invalid_rate <= 0:
            return None
        if hash01("invalid-adv", knobs.fault_seed, str(record_id)) >= knobs.invalid_rate:
            return None
        pick = int(hash01("kind-adv", knobs.fault_seed, str(record_id)) * len(ADVERTISER_INVALID_KINDS))
        return ADVERTISER_INVALID_KINDS[pick]
    if str(record_id) in knobs.invalid_set:
        pass
    elif knobs.invalid_rate <= 0 or hash01("invalid", knobs.fault_seed, str(record_id)) >= knobs.invalid_rate:
        return None
    kind = knobs.invalid_kind
    if isinstance(kind, str):
        return kind
    if isinstance(kind, dict) and str(record_id) in kind:
        return kind[str(record_id)]
    pick = int(hash01("kind", knobs.fault_seed, str(record_id)) * len(INVALID_KINDS))
    return INVALID_KINDS[pick]


def corrupt_record(record: Any, kind: str) -> Any:
    """A corrupted *copy* of ``record`` (v2 or simplified shape); the original is left alone."""
    if not isinstance(record, dict):
        return record
    rec = copy.deepcopy(record)
    title_key = "title" if "title" in rec else "name"
    adv_key = "advertiserId" if "advertiserId" in rec or "advertiser_id" not in rec else "advertiser_id"
    if kind == "missing_title":
        rec.pop(title_key, None)
    elif kind == "missing_id":
        rec.pop("id", None)
    elif kind == "missing_advertiser_id":
        rec.pop(adv_key, None)
    elif kind == "id_object":
        rec["id"] = {}
    elif kind == "payout_string":
        _set_payout(rec, lambda _old: "abc")
    elif kind == "negative_payout":
        _set_payout(rec, lambda old: -abs(old) if isinstance(old, (int, float)) and old else -5.0)
    elif kind == "nan_payout":
        _set_payout(rec, lambda _old: NAN_SENTINEL)
    elif kind == "infinity_payout":
        _set_payout(rec, lambda _old: INF_SENTINEL)
    elif kind == "unknown_currency":
        rec["currency"] = "XXQ"
        payouts = rec.get("payouts")
        if isinstance(payouts, list):
            for rule in payouts:
                if isinstance(rule, dict):
                    rule["currency"] = "XXQ"
        elif isinstance(rec.get("payout"), dict):
            rec["payout"]["currency"] = "XXQ"
    elif kind == "long_title":
        base = str(rec.get(title_key) or "Long title") + " "
        rec[title_key] = (base * (LONG_TITLE_LENGTH // len(base) + 1))[:LONG_TITLE_LENGTH]
    elif kind == "control_chars":
        rec[title_key] = f"Bad\x00title\x07with\x1bcontrols\x7f {rec.get(title_key, '')}"
    elif kind == "nul_description":
        rec["description"] = f"{rec.get('description') or ''} hidden\x00NUL"
    elif kind == "lone_surrogate_title":
        rec[title_key] = f"Broken {SURROGATE_SENTINEL} {rec.get(title_key, '')}"
    elif kind == "orphan_advertiser":
        rec[adv_key] = ORPHAN_ADVERTISER_ID if adv_key == "advertiserId" else "adv_does_not_exist"
    else:
        raise ValueError(f"unknown corruption kind {kind!r}")
    return rec


def _set_payout(rec: dict[str, Any], fn: Any) -> None:
    payouts = rec.get("payouts")
    if isinstance(payouts, list) and payouts and isinstance(payouts[0], dict):
        payouts[0]["payout"] = fn(payouts[0].get("payout"))
    elif isinstance(rec.get("payout"), dict):
        rec["payout"]["amount"] = fn(rec["payout"].get("amount"))
    else:
        rec["payout"] = fn(rec.get("payout"))


def apply_nan_literal(body: bytes) -> bytes:
    """Swap the quoted sentinels for bare ``NaN``/``Infinity`` tokens (invalid JSON on purpose)."""
    body = body.replace(f'"{NAN_SENTINEL}"'.encode(), b"NaN")
    return body.replace(f'"{INF_SENTINEL}"'.encode(), b"Infinity")


def apply_nan_strings(body: bytes) -> bytes:
    """Default: the client sees the strings ``"NaN"``/``"Infinity"`` (``float()`` accepts them!)."""
    return body.replace(NAN_SENTINEL.encode(), b"NaN").replace(INF_SENTINEL.encode(), b"Infinity")


_ESCAPED_CONTROL = re.compile(rb"(?<!\\)\\([tnr])")
_RAW_CONTROL = {b"t": b"\t", b"n": b"\n", b"r": b"\r"}


def apply_raw_control_chars(body: bytes) -> bytes:
    """Swap the JSON escapes ``\\t``, ``\\n``, ``\\r`` for the raw bytes (invalid JSON on purpose)."""
    return _ESCAPED_CONTROL.sub(lambda m: _RAW_CONTROL[m.group(1)], body)


def apply_lone_surrogates(body: bytes) -> bytes:
    """Swap the sentinel for ``\ud800``: a JSON escape of a lone surrogate (orjson refuses to read it,
    Python's json module accepts it)."""
    return body.replace(SURROGATE_SENTINEL.encode(), b"\\ud800")
