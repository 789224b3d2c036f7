"""The data behind the fake Trackier server: advertisers and campaigns, generated lazily.

Why lazy: the benchmark sweeps a 1,000,000-campaign catalogue, and a million dicts would cost
gigabytes and seconds before the first byte is served. Here a record exists only while a page is
being rendered: record ``j`` is a pure function of ``(seed, j)`` (one BLAKE2b digest feeds every
choice), so the same arguments give byte-identical responses across processes and runs.

Mutations never materialise the base either; they are small deltas layered on top of it:

- ``_removed``: sorted keys of removed campaigns (plus a set for O(1) membership),
- ``_added``: how many campaigns were appended after the generated base (they are generated too),
- ``_payout_rules``: ``change_payouts`` calls, each a seeded affine selection of keys,
- ``_camp_overrides`` / ``_adv_overrides``: per-record field overrides from ``set_campaign``.

Every record has an integer *key* that orders the list and backs keyset pagination: for generated
records the key is the index ``j`` (``id == 100000 + j``); for fixture records it is the position
in the file (new records get the next number), so pagination works with string ids too.

A fixture catalogue (``Catalogue.from_fixture``) serves records exactly as given - it is the
spec's simplified shape, and the point is to test the client's handling of that shape.
"""

from __future__ import annotations

import base64
import bisect
import copy
import hashlib
import math
import random
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

CAMPAIGN_ID_BASE = 100_000
ADVERTISER_ID_BASE = 1_000

# 2024-01-02T03:04:05.000Z in milliseconds: every generated timestamp counts from here.
_EPOCH_MS = 1_704_164_645_000
_DAY_MS = 86_400_000

_STATUSES = ("active",) * 40 + ("pending",) * 3 + ("paused",) * 3 + ("disabled",) * 2 + ("expired",) * 2
_VISIBILITIES = ("public",) * 7 + ("private",) * 2 + ("permission",)
_CAMPAIGN_CURRENCIES = (None, None, "USD", "USD", "USD", "USD", "EUR", "EUR", "GBP", "INR", "BRL", "CAD")
_ADVERTISER_CURRENCIES = ("USD", "USD", "USD", "EUR", "EUR", "GBP", "INR", "BRL", "AUD")
_MODELS = ("cpa", "cpa", "cpa", "cpi", "cpi", "cpc", "cpm", "cps")
# Revenue range in cents per commission model (cps: percent of the sale, times 100).
_REVENUE_CENTS = {
    "cpa": (100, 15_000),
    "cpi": (30, 800),
    "cpc": (5, 200),
    "cpm": (50, 1_500),
    "cps": (200, 4_000),
}
_COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "CA", "AU", "ES", "IT", "NL", "MX", "JP", "PL", "SE", "ZA")
_DEVICES = (
    ("mobile",),
    ("desktop",),
    ("mobile", "tablet"),
    ("mobile", "desktop", "tablet"),
    ("desktop", "tablet"),
)
_OSES = (
    ("android",),
    ("ios",),
    ("android", "ios"),
    ("windows", "macos"),
    ("android", "ios", "windows", "macos"),
)
_CATEGORIES = (
    "E-commerce",
    "Finance",
    "Gaming",
    "Dating",
    "Travel",
    "Health & Beauty",
    "Education",
    "Utilities",
    "Sweepstakes",
    "Streaming",
    "Food & Drink",
    "Insurance",
    "Crypto",
    "Sports",
    "Fashion",
    "Software",
)
_KPIS = (
    "No incent traffic. Deposit within 7 days.",
    "Install + open; retention D1 >= 30%.",
    "Email submit with double opt-in.",
    "Purchase over $20; no coupon sites.",
    "Registration + KYC completed.",
    "Valid lead, no fraud, no bots.",
    "First-time depositors only.",
    "Trial start; cancellation within 24h is rejected.",
)
_OFFER_TYPES = (
    "Free Trial",
    "App Install",
    "Lead Gen",
    "First Deposit",
    "Sign Up",
    "Purchase",
    "Subscription",
    "Sweepstakes Entry",
    "Quote Request",
    "Newsletter SOI",
    "Download",
    "Registration",
)
_ADJECTIVES = (
    "Blue",
    "Bright",
    "Global",
    "Nordic",
    "Urban",
    "Prime",
    "Swift",
    "Golden",
    "Silver",
    "Green",
    "Red",
    "Alpine",
    "Coastal",
    "Metro",
    "Rapid",
    "Smart",
    "Happy",
    "Bold",
    "Clever",
    "Lucky",
    "Pacific",
    "Atlas",
    "Summit",
    "Vertex",
    "Nova",
    "Pixel",
    "Quantum",
    "Royal",
    "Solar",
    "Zen",
)
_NOUNS = (
    "Commerce",
    "Media",
    "Labs",
    "Games",
    "Finance",
    "Travel",
    "Health",
    "Studios",
    "Networks",
    "Apps",
    "Retail",
    "Bank",
    "Mobile",
    "Digital",
    "Ventures",
    "Brands",
    "Shop",
    "Outfitters",
    "Kitchen",
    "Energy",
    "Insurance",
    "Telecom",
    "Learning",
    "Fitness",
    "Pets",
)
_COMPANY_SUFFIXES = ("Ltd", "Inc.", "GmbH", "LLC", "S.A.", "Pty Ltd", "B.V.", "plc")
_TAGS = ("direct", "agency", "premium", "tier1", "tier2", "mobile", "desktop", "exclusive", "new", "vip")
# Names that exercise byte-for-byte storage: quotes, accents, non-Latin scripts, emoji, HTML-ish text.
_SPECIAL_ADVERTISER_NAMES = (
    "O'Reilly Media",
    "Café Größe",
    "Shop 🚀",
    "Müller & Söhne",
    "L'Atelier Crème",
    "Zürich Ñandú AG",
    "東京トレーディング",
    "Señor Frog's 🐸",
    "Ελληνικά Deals",
    'The "Best" Deals',
    "Back\\slash <b>Bold</b> Co",
    "Łódź Społem",
    "Ærø Fisk",
    "Dvořák & Čech",
    "मुंबई Mart",
)
_SPECIAL_TITLES = (
    "Crème de la Crème – FR Lead Gen",
    "O'Neill's Pub Finder",
    "Ünïcödé Shop 🛒 Sale",
    "日本語オファー CPI",
    "Bäckerei Müller — Rezepte",
    'Zoë\'s "Quoted" Offer',
    "Señor Frog's 🐸 App Install",
    "Back\\slash & <Tag> Deals",
    "Emoji 🎰🎁💸 Jackpot",
    "Ça va? Économisez 50 %",
)

# Odd but storable text, as a real panel may hold it (pasted from spreadsheets, e-mails, RTL editors):
# tabs, newlines, CR, zero-width and bidi marks, C0 and C1 controls, COPY escape sequences, SQL and HTML,
# emoji sequences, a title near the 500-character limit. Every one must reach `offers`/`brands` byte for
# byte (the sync rejects only what PostgreSQL cannot store: NUL, lone surrogates; see faults.TEXT_KINDS).
# Advertiser ``i`` with ``i % 50 == 29`` and campaign ``j`` with ``j % 50 == 41`` get one, in turn.
ODD_ADVERTISER_NAMES = (
    "Tab\tSeparated Ltd",
    "Line\nBreak Media",
    "CRLF\r\nTraders",
    "Zero\u200bWidth\u200dJoin Co",
    "\u202eRTL override\u202c Inc",
    "\u200fمتجر عربي\u200e Shop",
    "C1\x85NEL\x9bCSI Controls",
    "Bell\x07Esc\x1b[1mBold\x7f",
    "Robert'); DROP TABLE brands;--",
    "<script>alert('x')</script> Ads",
)
ODD_TITLES = (
    "Tab\tin the title",
    "Two\nlines",
    "Carriage\rreturn",
    "Windows\r\nline end",
    "\tleading tab",
    "trailing newline\n",
    "zero\u200bwidth\u200c\u200d\u2060joiners\ufeff",
    "\u202eRTL override\u202c mixed",
    "\u200fאבג\u200e and \u061cعربي",
    "👩‍👩‍👧‍👦 family 🏳️‍🌈 flags 🇩🇪",
    "'; DROP TABLE offers; -- ' OR 1=1",
    "<img src=x onerror=alert(1)> &amp; </td>",
    "\\N \\. \\t \\\\ COPY escapes",
    "%s %(x)s {0} $1 NULL",
    "C0 " + "".join(map(chr, range(1, 32))) + " end",
    "DEL \x7f C1 " + "".join(map(chr, range(0x80, 0xA0))) + " end",
    "\uffff\ufffe noncharacters \U0010fffd",
    "Long " + "wörd\t🚀 " * 69,
)
assert all(len(t) <= 488 for t in ODD_TITLES)  # with " #<id>" still within the 500-character limit

_MODEL_LABEL = {m: m.upper() for m in _MODELS}
_MOD_SPAN_MS = 400 * _DAY_MS
# Geo targeting choices: start country x 1-3 countries (a stride of 5 keeps them distinct).
_GEO_CHOICES: tuple[tuple[tuple[tuple[str, ...], str], ...], ...] = tuple(
    tuple(
        (
            tuple(_COUNTRIES[(start + k * 5) % 16] for k in range(n)),
            "/".join(_COUNTRIES[(start + k * 5) % 16] for k in range(n)),
        )
        for n in (1, 2, 3)
    )
    for start in range(16)
)
_GEO_ALL: tuple[tuple[str, ...], str] = (("ALL",), "WW")
# The generator indexes these tables with hard-coded moduli (speed); keep the sizes in step.
assert (len(_MODELS), len(_CAMPAIGN_CURRENCIES), len(_COUNTRIES), len(_OFFER_TYPES)) == (8, 12, 16, 12)
assert (len(_CATEGORIES), len(_KPIS), len(_STATUSES), len(_VISIBILITIES)) == (16, 8, 50, 10)
assert (len(_DEVICES), len(_OSES)) == (5, 5)

_DAY_PREFIX: dict[int, str] = {}


def _iso(ms: int) -> str:
    """ISO-8601 with milliseconds and ``Z``, the format Trackier uses.

    The date part is cached per day: formatting is a third of the cost of rendering a campaign,
    and a whole catalogue spans only a few thousand days.
    """
    day, rem = divmod(ms, _DAY_MS)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        t = time.gmtime(day * 86_400)
        prefix = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        if len(_DAY_PREFIX) < 100_000:
            _DAY_PREFIX[day] = prefix
    sec, msec = divmod(rem, 1000)
    hour, sec = divmod(sec, 3600)
    minute, sec = divmod(sec, 60)
    return f"{prefix}{hour:02d}:{minute:02d}:{sec:02d}.{msec:03d}Z"


def _u16(d: bytes, i: int) -> int:
    return d[i] | (d[i + 1] << 8)


def _u32(d: bytes, i: int) -> int:
    return int.from_bytes(d[i : i + 4], "little")


def _seed_bytes(seed: int, person: bytes) -> Any:
    """A keyed BLAKE2b to ``copy()`` per record: cheaper than building a new hasher each time."""
    return hashlib.blake2b(digest_size=64, key=str(seed).encode(), person=person)


def hash01(*parts: object) -> float:
    """A deterministic uniform number in [0, 1) from any parts (used for seeded selections)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


class _RangeKeys:
    """Live keys ``0..total-1`` minus a small sorted set of removed keys, without listing them."""

    __slots__ = ("removed", "removed_set", "total")

    def __init__(self, total: int, removed: list[int], removed_set: set[int]) -> None:
        self.total = total
        self.removed = removed
        self.removed_set = removed_set

    def count(self) -> int:
        return self.total - len(self.removed)

    def key_at(self, offset: int) -> int | None:
        """The key at position ``offset`` among live keys: fixed point of ``k = offset + removed<=k``."""
        if offset < 0 or offset >= self.count():
            return None
        k = offset
        while True:
            nxt = offset + bisect.bisect_right(self.removed, k)
            if nxt == k:
                return k
            k = nxt

    def slice(self, offset: int, limit: int) -> list[int]:
        first = self.key_at(offset)
        if first is None:
            return []
        return [first, *self.after(first, limit - 1)] if limit > 0 else []

    def after(self, key: int, limit: int) -> list[int]:
        out: list[int] = []
        k = max(key + 1, 0)
        removed = self.removed_set
        while len(out) < limit and k < self.total:
            if k not in removed:
                out.append(k)
            k += 1
        return out

    def __iter__(self) -> Iterator[int]:
        removed = self.removed_set
        return (k for k in range(self.total) if k not in removed)


class _ListKeys:
    """An explicit sorted list of live keys (fixture catalogues and filtered views)."""

    __slots__ = ("keys",)

    def __init__(self, keys: list[int]) -> None:
        self.keys = keys

    def count(self) -> int:
        return len(self.keys)

    def key_at(self, offset: int) -> int | None:
        return self.keys[offset] if 0 <= offset < len(self.keys) else None

    def slice(self, offset: int, limit: int) -> list[int]:
        return self.keys[offset : offset + limit] if offset >= 0 else []

    def after(self, key: int, limit: int) -> list[int]:
        i = bisect.bisect_right(self.keys, key)
        return self.keys[i : i + limit]

    def __iter__(self) -> Iterator[int]:
        return iter(self.keys)


KeySpace = _RangeKeys | _ListKeys


class Catalogue:
    """Advertisers and campaigns in Trackier v2 shape, deterministic in ``(advertisers, campaigns, seed)``.

    Thread-safe: the HTTP server reads it from many threads while the control endpoint mutates it;
    one re-entrant lock guards the (small) mutable state, record rendering itself is pure.
    """

    def __init__(self, advertisers: int, campaigns: int, seed: int = 42) -> None:
        if advertisers < 1 and campaigns > 0:
            raise ValueError("campaigns need at least one advertiser to point at")
        if advertisers < 0 or campaigns < 0:
            raise ValueError("counts must not be negative")
        self.seed = seed
        self.fixture = False
        self._n_advertisers = advertisers
        self._n_campaigns = campaigns
        self._adv_hasher = _seed_bytes(seed, b"advertiser")
        self._camp_hasher = _seed_bytes(seed, b"campaign")
        self._lock = threading.RLock()
        # Fixture state (unused for generated catalogues).
        self._fx_base: dict[str, list[Any]] = {"advertisers": [], "campaigns": []}
        self._fx_adv: dict[int, Any] = {}
        self._fx_camp: dict[int, Any] = {}
        self._fx_adv_keys: list[int] = []
        self._fx_camp_keys: list[int] = []
        self._fx_next_key = 0
        self._adv_index: dict[str, int] | None = None
        self._adv_id_cache: dict[int, str] = {}
        self._adv_info_cache: dict[int, tuple[str, str, str]] = {}
        self._filter_cache: dict[tuple[Any, ...], _ListKeys] = {}
        self.restore()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_fixture(cls, source: str | Path | Mapping[str, Any], seed: int = 42) -> Catalogue:
        """Serve a file (or dict) in the test specification's shape
        (``docs/trackier-api.md``), records as given, in file order."""
        data = dict(source) if isinstance(source, Mapping) else orjson.loads(Path(source).read_bytes())
        if not isinstance(data, dict):
            raise TypeError("a fixture is a JSON object with 'advertisers' and 'campaigns' lists")
        advertisers = data.get("advertisers") or []
        campaigns = data.get("campaigns") or []
        if not isinstance(advertisers, list) or not isinstance(campaigns, list):
            raise TypeError("fixture 'advertisers' and 'campaigns' must be lists")
        cat = cls.__new__(cls)
        cat.seed = seed
        cat.fixture = True
        cat._n_advertisers = 0
        cat._n_campaigns = 0
        cat._adv_hasher = _seed_bytes(seed, b"advertiser")
        cat._camp_hasher = _seed_bytes(seed, b"campaign")
        cat._lock = threading.RLock()
        cat._fx_base = {"advertisers": copy.deepcopy(advertisers), "campaigns": copy.deepcopy(campaigns)}
        cat._adv_index = None
        cat._adv_id_cache = {}
        cat._adv_info_cache = {}
        cat._filter_cache = {}
        cat.restore()
        return cat

    def restore(self) -> None:
        """Drop every mutation: back to the generated base (or the fixture as loaded)."""
        with self._lock:
            self._version = getattr(self, "_version", 0) + 1
            self._rendered: dict[str, dict[int, bytes]] | None = None  # prerender's; every mutation drops it
            self._removed: list[int] = []
            self._removed_set: set[int] = set()
            self._added = 0
            self._payout_rules: list[tuple[int, int, int, int, int]] = []
            self._camp_overrides: dict[int, dict[str, Any]] = {}
            self._adv_overrides: dict[int, dict[str, Any]] = {}
            self._filter_cache = {}
            self._remove_calls = 0
            if self.fixture:
                advs = copy.deepcopy(self._fx_base["advertisers"])
                camps = copy.deepcopy(self._fx_base["campaigns"])
                self._fx_adv = dict(enumerate(advs))
                self._fx_adv_keys = list(range(len(advs)))
                self._fx_camp = dict(enumerate(camps))
                self._fx_camp_keys = list(range(len(camps)))
                self._fx_next_key = len(camps)

    # ------------------------------------------------------------------ counts and iteration

    @property
    def advertiser_count(self) -> int:
        return len(self._fx_adv_keys) if self.fixture else self._n_advertisers

    @property
    def campaign_count(self) -> int:
        """Live campaigns (base + added - removed)."""
        with self._lock:
            return self.campaign_keys().count()

    def __len__(self) -> int:
        return self.campaign_count

    @property
    def version(self) -> int:
        """Bumped by every mutation, so callers can cache derived views."""
        return self._version

    def advertiser_keys(self) -> KeySpace:
        if self.fixture:
            return _ListKeys(self._fx_adv_keys)
        return _RangeKeys(self._n_advertisers, [], set())

    def campaign_keys(self, advertisers: list[str] | None = None) -> KeySpace:
        """Live campaign keys, optionally only those whose advertiser matches one of ``advertisers``."""
        with self._lock:
            if advertisers:
                return self._filtered_keys(advertisers)
            if self.fixture:
                return _ListKeys(self._fx_camp_keys)
            return _RangeKeys(self._n_campaigns + self._added, self._removed, self._removed_set)

    def iter_campaigns(self) -> Iterator[dict[str, Any]]:
        """Every live campaign in id order, rendered one at a time (never all in memory)."""
        for key in list(self.campaign_keys()) if self.fixture else self.campaign_keys():
            rec = self.campaign(key)
            if rec is not None:
                yield rec

    def iter_advertisers(self) -> Iterator[dict[str, Any]]:
        for key in self.advertiser_keys():
            rec = self.advertiser(key)
            if rec is not None:
                yield rec

    def campaign_ids(self) -> list[Any]:
        """Ids of live campaigns in order (a list: at 1M campaigns this is ~40 MB, use sparingly)."""
        if self.fixture:
            with self._lock:
                return [
                    self._fx_camp[k].get("id") if isinstance(self._fx_camp[k], dict) else None
                    for k in self._fx_camp_keys
                ]
        return [CAMPAIGN_ID_BASE + k for k in self.campaign_keys()]

    def advertiser_ids(self) -> list[Any]:
        if self.fixture:
            return [a.get("id") if isinstance(a, dict) else None for a in self.iter_advertisers()]
        return [ADVERTISER_ID_BASE + i for i in range(self._n_advertisers)]

    def expected_payout_sum(self) -> float:
        """Sum of the first payout rule's ``payout`` over live campaigns (a benchmark cross-check).

        Generated records take a fast path that computes just that number from the digest, so a
        1M-campaign catalogue sums in a second or two without rendering a million records.
        """
        cents = 0
        other = 0.0
        with self._lock:
            keys = list(self.campaign_keys()) if self.fixture else None
        if keys is not None:
            for key in keys:
                rec = self.campaign(key)
                value = _first_payout(rec)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    other += value
            return round(other, 2)
        for key in self.campaign_keys():
            if key in self._camp_overrides:
                value = _first_payout(self.campaign(key))
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    cents += round(value * 100)
                continue
            d = self._camp_digest(key)
            rev, pay = self._first_rule_cents(d)
            cents += self._apply_payout_rules(key, rev, pay)
        return cents / 100

    # ------------------------------------------------------------------ lookup

    def campaign_key_for_id(self, campaign_id: Any) -> int | None:
        """The key of the live campaign with this public id (int or its string form)."""
        with self._lock:
            if self.fixture:
                for key in self._fx_camp_keys:
                    rec = self._fx_camp[key]
                    if isinstance(rec, dict) and _same_id(rec.get("id"), campaign_id):
                        return key
                return None
            try:
                key = int(campaign_id) - CAMPAIGN_ID_BASE
            except (TypeError, ValueError):
                return None
            if 0 <= key < self._n_campaigns + self._added and key not in self._removed_set:
                return key
            return None

    def get_campaign(self, campaign_id: Any) -> dict[str, Any] | None:
        key = self.campaign_key_for_id(campaign_id)
        return None if key is None else self.campaign(key)

    # ------------------------------------------------------------------ rendering

    def campaign(self, key: int) -> Any:
        """The campaign at ``key`` as served (a fresh dict for generated ones; do not mutate fixtures)."""
        if self.fixture:
            return self._fx_camp.get(key)
        rec = self._gen_campaign(key)
        if self._payout_rules:
            rule = rec["payouts"][0]
            rev = round(rule["revenue"] * 100)
            pay = round(rule["payout"] * 100)
            new = self._apply_payout_rules(key, rev, pay)
            if new != pay:
                rule["payout"] = new / 100
        override = self._camp_overrides.get(key)
        if override:
            rec.update(copy.deepcopy(override))
        return rec

    def campaigns(self, keys: list[int]) -> list[Any]:
        return [self.campaign(k) for k in keys]

    def advertiser(self, key: int) -> Any:
        if self.fixture:
            return self._fx_adv.get(key)
        rec = self._gen_advertiser(key)
        override = self._adv_overrides.get(key)
        if override:
            rec.update(copy.deepcopy(override))
        return rec

    def advertisers(self, keys: list[int]) -> list[Any]:
        return [self.advertiser(k) for k in keys]

    # ------------------------------------------------------------------ pre-rendered JSON

    def prerender(self) -> int:
        """Render every live record's JSON once and keep it until the next mutation.

        Why: rendering is what the fake server spends its CPU on (BLAKE2b digests, dict building,
        ``orjson``: about 14 us per campaign served, HTTP included), and on a two-core benchmark
        machine that CPU is taken from the systems being measured - a real Trackier renders on its
        own machines. Measured in a 1M first sync under ``airflow dags test``: 14 s of the fake
        server's CPU in 64 s (22 %), and on the resyncs the sync waited 5.7 s for pages. With the
        records pre-rendered a page is a join of kept bytes. The bench calls this
        (``/_fake/prerender``) before each measured sync, outside the measured time; without it
        nothing is kept and every page is rendered as before. The responses are the same, byte for
        byte (``tests/fake/test_prerender.py``). Costs the server ~1.1 KB per campaign (1.1 GB at 1M).
        """
        with self._lock:  # mutations take it too: none can land while this renders
            if self._rendered is not None:
                return sum(len(table) for table in self._rendered.values())  # nothing changed since
            keys = list(self.campaign_keys())
            # orjson's bytes keep its 8 KiB write buffer (tracemalloc: 8,174 B per ~980-byte campaign):
            # an exact copy is kept instead, or 1M campaigns would hold 8 GB.
            campaigns = {key: bytes(memoryview(orjson.dumps(self.campaign(key)))) for key in keys}
            advertisers = {
                key: bytes(memoryview(orjson.dumps(self.advertiser(key)))) for key in list(self.advertiser_keys())
            }
            self._rendered = {"campaigns": campaigns, "advertisers": advertisers}
            return len(campaigns) + len(advertisers)

    def rendered(self, kind: str, keys: list[int]) -> list[bytes] | None:
        """The JSON of these records from ``prerender``, or None when it was not called since the
        last mutation (the caller renders them then)."""
        rendered = self._rendered
        if rendered is None:
            return None
        table = rendered[kind]
        try:
            return [table[key] for key in keys]
        except KeyError:
            return None

    def advertiser_long_id(self, i: int) -> str:
        """The 24-hex ``_id`` of generated advertiser ``i`` (what campaigns' ``advertiserId`` holds).

        Cached (bounded): every campaign page needs a handful of these, hashing each time costs ~10 %.
        """
        cached = self._adv_id_cache.get(i)
        if cached is None:
            h = self._adv_hasher.copy()
            h.update(i.to_bytes(8, "little"))
            cached = h.digest()[:12].hex()
            if len(self._adv_id_cache) >= 100_000:
                self._adv_id_cache.clear()
            self._adv_id_cache[i] = cached
        return cached

    def _gen_advertiser(self, i: int) -> dict[str, Any]:
        h = self._adv_hasher.copy()
        h.update(i.to_bytes(8, "little"))
        d = h.digest()
        combos = len(_ADJECTIVES) * len(_NOUNS)
        if i % 50 == 3:
            name = _SPECIAL_ADVERTISER_NAMES[(i // 50) % len(_SPECIAL_ADVERTISER_NAMES)]
            if i >= 50 * len(_SPECIAL_ADVERTISER_NAMES):
                name = f"{name} {i // (50 * len(_SPECIAL_ADVERTISER_NAMES)) + 1}"
        elif i % 50 == 29:
            name = ODD_ADVERTISER_NAMES[(i // 50) % len(ODD_ADVERTISER_NAMES)]
            if i >= 50 * len(ODD_ADVERTISER_NAMES):
                name = f"{name} {i // (50 * len(ODD_ADVERTISER_NAMES)) + 1}"
        else:
            # A stride coprime with the combo count spreads neighbouring ids over different names.
            c = (i * 7919) % combos
            name = f"{_ADJECTIVES[c % len(_ADJECTIVES)]} {_NOUNS[c // len(_ADJECTIVES)]}"
            if i >= combos:
                name = f"{name} {i // combos + 1}"
        slug = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum()) or f"adv{i}"
        created_ms = _EPOCH_MS + i * 3_600_000 + _u16(d, 20) * 1000 + d[22] * 3
        modified = None if d[23] % 3 == 0 else _iso(created_ms + _u32(d, 24) % (300 * _DAY_MS))
        ntags = d[28] % 3
        tags = [_TAGS[(d[29] + t * 3) % len(_TAGS)] for t in range(ntags)]
        return {
            "id": ADVERTISER_ID_BASE + i,
            "_id": d[:12].hex(),
            "hashId": _hash_id(d[12:18]),
            "name": name,
            "company": f"{name} {_COMPANY_SUFFIXES[d[18] % len(_COMPANY_SUFFIXES)]}",
            "email": f"partners+{i}@{slug[:30]}.example.com",
            "status": "active",
            "currency": _ADVERTISER_CURRENCIES[d[19] % len(_ADVERTISER_CURRENCIES)],
            "tags": tags,
            "created": _iso(created_ms),
            "modified": modified,
        }

    def _camp_digest(self, j: int) -> bytes:
        h = self._camp_hasher.copy()
        h.update(j.to_bytes(8, "little"))
        return h.digest()

    @staticmethod
    def _first_rule_cents(d: bytes) -> tuple[int, int]:
        """Revenue and payout (in cents) of the first payout rule; shared by render and fast sums."""
        lo, hi = _REVENUE_CENTS[_MODELS[d[3] % len(_MODELS)]]
        rev = lo + _u16(d, 40) % (hi - lo + 1)
        pay = max(1, rev * (50 + d[42] % 41) // 100)  # 50-90 % of revenue: always below it
        return rev, pay

    def _adv_info(self, i: int) -> tuple[str, str, str]:
        """``(_id, name, url-safe domain)`` of advertiser ``i``, cached: every campaign needs them."""
        info = self._adv_info_cache.get(i)
        if info is None:
            adv = self._gen_advertiser(i)
            slug = "".join(ch for ch in adv["name"].lower() if ch.isascii() and ch.isalnum()) or f"adv{i}"
            info = (adv["_id"], adv["name"], f"{slug[:40]}.example.com")
            if len(self._adv_info_cache) >= 100_000:
                self._adv_info_cache.clear()
            self._adv_info_cache[i] = info
        return info

    def _gen_campaign(self, j: int) -> dict[str, Any]:
        """Campaign ``j`` from one 64-byte digest: each byte range feeds one choice.

        Hot path of the benchmark (a 1000-record page renders in ~5 ms), hence the lookup tables
        and the absence of helper calls for trivial things.
        """
        d = self._camp_digest(j)
        cid = CAMPAIGN_ID_BASE + j
        model = _MODELS[d[3] % 8]
        currency = _CAMPAIGN_CURRENCIES[d[2] % 12]
        if d[4] % 7 == 0:
            geo_t, geo_label = _GEO_ALL
        else:
            geo_t, geo_label = _GEO_CHOICES[d[6] % 16][d[5] % 3]
        adv = self._n_advertisers
        if adv:
            advertiser, brand, domain = self._adv_info(j % adv)
        else:
            advertiser, brand, domain = "0" * 24, "Unknown", "unknown.example.com"
        offer = _OFFER_TYPES[d[7] % 12]
        if j % 50 == 17:
            title = f"{_SPECIAL_TITLES[(j // 50) % len(_SPECIAL_TITLES)]} #{cid}"
        elif j % 50 == 41:
            title = f"{ODD_TITLES[(j // 50) % len(ODD_TITLES)]} #{cid}"
        else:
            title = f"{brand} - {offer} - {geo_label} [{_MODEL_LABEL[model]}] #{cid}"
        hash_id = base64.b64encode(d[8:14], b"xY").decode()
        if d[15] % 3 == 0:
            categories = [_CATEGORIES[d[14] % 16], _CATEGORIES[(d[14] + 1 + d[15] % 7) % 16]]
        else:
            categories = [_CATEGORIES[d[14] % 16]]
        created_ms = _EPOCH_MS + j * 47_000 + (d[16] | d[17] << 8) % 40_000
        created = _iso(created_ms)
        if d[18] % 4 == 0:
            modified = None
            rule_modified = created
        else:
            modified = rule_modified = _iso(created_ms + int.from_bytes(d[19:23], "little") % _MOD_SPAN_MS)
        pay_currency = currency or "USD"
        lo, hi = _REVENUE_CENTS[model]
        rev0 = lo + (d[40] | d[41] << 8) % (hi - lo + 1)
        pay0 = max(1, rev0 * (50 + d[42] % 41) // 100)  # must match _first_rule_cents
        payouts = [
            {
                "_id": d[44:56].hex(),
                "model": model,
                "revenue": rev0 / 100,
                "payout": pay0 / 100,
                "currency": pay_currency,
                "geo": list(geo_t),
                "created": created,
                "modified": rule_modified,
            }
        ]
        nrules = 1 if d[43] < 154 else (2 if d[43] < 218 else 3)
        for r in range(1, nrules):
            # Extra rules: one country each, revenue 80-120 % of the first rule's.
            off = 56 if r == 1 else 28
            rev = max(2, rev0 * (80 + d[off] % 41) // 100)
            pay = max(1, rev * (50 + d[off + 1] % 41) // 100)
            payouts.append(
                {
                    "_id": (d[off : off + 8] + d[r : r + 4]).hex(),
                    "model": model,
                    "revenue": rev / 100,
                    "payout": pay / 100,
                    "currency": pay_currency,
                    "geo": [_COUNTRIES[(d[off + 2] + r) % 16]],
                    "created": created,
                    "modified": rule_modified,
                }
            )
        rec: dict[str, Any] = {
            "id": cid,
            "hashId": hash_id,
            "title": title,
            "description": f"{offer} offer by {brand} for {geo_label} traffic. Creatives in the panel.",
            "kpi": _KPIS[d[23] % 8],
            "advertiserId": advertiser,
            "status": _STATUSES[d[0] % 50],
            "visibility": _VISIBILITIES[d[1] % 10],
        }
        if currency is not None:  # a missing currency means USD in Trackier
            rec["currency"] = currency
        rec["commModel"] = model
        rec["url"] = f"https://{domain}/click?offer_id={cid}&aff_id={{aff_id}}&click_id={{click_id}}"
        rec["previewUrl"] = f"https://www.{domain}/landing/{hash_id}"
        rec["geo"] = list(geo_t)
        rec["device"] = list(_DEVICES[d[24] % 5])
        rec["os"] = list(_OSES[d[25] % 5])
        rec["categories"] = categories
        rec["payouts"] = payouts
        rec["created"] = created
        rec["modified"] = modified
        return rec

    # ------------------------------------------------------------------ filtered views

    def _advertiser_matchers(self, values: list[str]) -> tuple[set[int], set[str]]:
        """Advertiser indices (generated) and raw ids (any) that a filter value list selects.

        A value may be the 24-hex ``_id`` campaigns point at, or the numeric advertiser ``id``.
        """
        indices: set[int] = set()
        raw: set[str] = set()
        for value in values:
            raw.add(value)
            if self.fixture:
                continue
            if self._adv_index is None:
                self._adv_index = {self.advertiser_long_id(i): i for i in range(self._n_advertisers)}
            if value in self._adv_index:
                indices.add(self._adv_index[value])
            elif value.isdigit() and 0 <= int(value) - ADVERTISER_ID_BASE < self._n_advertisers:
                i = int(value) - ADVERTISER_ID_BASE
                indices.add(i)
                raw.add(self.advertiser_long_id(i))
        return indices, raw

    def _filtered_keys(self, values: list[str]) -> _ListKeys:
        cache_key = (self._version, tuple(sorted(set(values))))
        cached = self._filter_cache.get(cache_key)
        if cached is not None:
            return cached
        indices, raw = self._advertiser_matchers(values)
        if self.fixture:
            keys = []
            for key in self._fx_camp_keys:
                rec = self._fx_camp[key]
                if isinstance(rec, dict):
                    ref = rec.get("advertiserId", rec.get("advertiser_id"))
                    if ref is not None and str(ref) in raw:
                        keys.append(key)
        else:
            total = self._n_campaigns + self._added
            adv = self._n_advertisers
            selected: set[int] = set()
            for i in indices:
                selected.update(range(i, total, adv))
            selected.difference_update(self._removed_set)
            # set_campaign may have moved a campaign to another advertiser: trust the override.
            for key, override in self._camp_overrides.items():
                if "advertiserId" in override and key not in self._removed_set and key < total:
                    if str(override["advertiserId"]) in raw:
                        selected.add(key)
                    else:
                        selected.discard(key)
            keys = sorted(selected)
        view = _ListKeys(keys)
        if len(self._filter_cache) > 16:
            self._filter_cache.clear()
        self._filter_cache[cache_key] = view
        return view

    # ------------------------------------------------------------------ mutations

    def _bump(self) -> None:
        self._version += 1
        self._filter_cache = {}
        self._rendered = None  # what prerender kept is stale

    def change_payouts(self, fraction: float, seed: int) -> int:
        """Set a new first-rule ``payout`` on ``fraction`` of live campaigns; returns how many changed.

        The new value depends only on ``(seed, key)`` and the base record, so repeating a call is a
        no-op rather than a second change (it *sets*, never increments). The value stays within
        ``[0.01, revenue]`` and always differs from the base payout.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be within [0, 1]")
        with self._lock:
            if self.fixture:
                return self._fx_change_payouts(fraction, seed)
            space = self.campaign_keys()
            total = self._n_campaigns + self._added
            k = round(fraction * space.count())
            if total == 0 or k == 0:
                return 0
            # A seeded affine permutation of [0, total): key j is chosen iff (a*j+b) % total < k.
            # It picks exactly k keys spread over the whole range, with O(1) state.
            rng = random.Random(f"payouts:{seed}")
            a = rng.randrange(1, max(2, total)) | 1
            while math.gcd(a, total) != 1:
                a += 1
            b = rng.randrange(total)
            rule = (seed, a, b, total, k)
            self._payout_rules = [r for r in self._payout_rules if r[0] != seed] + [rule]
            self._bump()
            return k - sum(1 for j in self._removed if j < total and (a * j + b) % total < k)

    def _apply_payout_rules(self, key: int, rev: int, pay: int) -> int:
        """The first-rule payout (cents) of ``key`` after every ``change_payouts`` rule, in order."""
        for seed, a, b, total, k in self._payout_rules:
            if key < total and (a * key + b) % total < k:
                pay = _new_payout_cents(seed, key, rev, pay)
        return pay

    def _fx_change_payouts(self, fraction: float, seed: int) -> int:
        keys = list(self._fx_camp_keys)
        k = round(fraction * len(keys))
        chosen = random.Random(f"payouts:{seed}").sample(keys, k) if k else []
        changed = 0
        base = self._fx_base["campaigns"]
        for key in chosen:
            rec = self._fx_camp[key]
            original = base[key] if key < len(base) else rec
            base_value = _first_payout(original)
            if not isinstance(base_value, (int, float)) or isinstance(base_value, bool):
                continue
            cents = round(base_value * 100)
            new = _new_payout_cents(seed, key, max(cents * 2, cents + 100), cents)
            self._fx_camp[key] = _with_first_payout(rec, new / 100)
            changed += 1
        self._bump()
        return changed

    def remove_campaigns(self, ids: list[Any] | None = None, count: int = 0) -> list[Any]:
        """Remove campaigns by id and/or ``count`` seeded-random live ones; returns the removed ids.

        Removed campaigns vanish from lists and from ``GET /v2/campaigns/{id}``. Unknown ids are
        ignored (they are not in the returned list).
        """
        removed: list[Any] = []
        with self._lock:
            for cid in ids or []:
                key = self.campaign_key_for_id(cid)
                if key is not None:
                    removed.append(self._remove_key(key))
            if count > 0:
                rng = random.Random(f"remove:{self.seed}:{self._remove_calls}")
                self._remove_calls += 1
                for _ in range(count):
                    space = self.campaign_keys()
                    n = space.count()
                    if n == 0:
                        break
                    key = space.key_at(rng.randrange(n))
                    assert key is not None
                    removed.append(self._remove_key(key))
            self._bump()
        return removed

    def _remove_key(self, key: int) -> Any:
        if self.fixture:
            rec = self._fx_camp.pop(key)
            self._fx_camp_keys.remove(key)
            return rec.get("id") if isinstance(rec, dict) else None
        bisect.insort(self._removed, key)
        self._removed_set.add(key)
        return CAMPAIGN_ID_BASE + key

    def add_campaigns(self, count: int) -> list[Any]:
        """Append ``count`` new campaigns with ids after the current maximum; returns their ids."""
        if count < 0:
            raise ValueError("count must not be negative")
        with self._lock:
            if self.fixture:
                out = [self._fx_add_campaign() for _ in range(count)]
            else:
                start = self._n_campaigns + self._added
                self._added += count
                out = [CAMPAIGN_ID_BASE + j for j in range(start, start + count)]
            self._bump()
            return out

    def _fx_add_campaign(self) -> Any:
        """A fixture campaign is cloned from the last one (same shape), with a fresh id and name."""
        template = self._fx_camp[self._fx_camp_keys[-1]] if self._fx_camp_keys else None
        if template is None and self._fx_base["campaigns"]:
            template = self._fx_base["campaigns"][-1]
        key = self._fx_next_key
        self._fx_next_key += 1
        ids = [r.get("id") for r in self._fx_camp.values() if isinstance(r, dict)]
        int_ids = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
        if int_ids and len(int_ids) == len(ids):
            new_id: Any = max(int_ids) + 1
        else:
            new_id = f"camp_added_{key}"
        rec = copy.deepcopy(template) if isinstance(template, dict) else {}
        rec["id"] = new_id
        name_field = "title" if "title" in rec else "name"
        rec[name_field] = f"Added Campaign {new_id}"
        if not {"advertiserId", "advertiser_id"} & rec.keys() and self._fx_adv_keys:
            first = self._fx_adv[self._fx_adv_keys[0]]
            rec["advertiser_id"] = first.get("id") if isinstance(first, dict) else None
        self._fx_camp[key] = rec
        self._fx_camp_keys.append(key)
        return new_id

    def set_campaign(self, campaign_id: Any, **fields: Any) -> dict[str, Any]:
        """Override top-level fields of one live campaign (e.g. a rename); returns the new record."""
        with self._lock:
            key = self.campaign_key_for_id(campaign_id)
            if key is None:
                raise KeyError(f"no live campaign with id {campaign_id!r}")
            if self.fixture:
                rec = dict(self._fx_camp[key])
                rec.update(copy.deepcopy(fields))
                self._fx_camp[key] = rec
            else:
                self._camp_overrides.setdefault(key, {}).update(copy.deepcopy(fields))
            self._bump()
            return self.campaign(key)

    def set_advertiser(self, advertiser_id: Any, **fields: Any) -> dict[str, Any]:
        """Override top-level fields of one advertiser (by numeric ``id`` or fixture id)."""
        with self._lock:
            for key in self.advertiser_keys():
                rec = self.advertiser(key)
                if isinstance(rec, dict) and _same_id(rec.get("id"), advertiser_id):
                    if self.fixture:
                        new = dict(rec)
                        new.update(copy.deepcopy(fields))
                        self._fx_adv[key] = new
                    else:
                        self._adv_overrides.setdefault(key, {}).update(copy.deepcopy(fields))
                    self._bump()
                    return self.advertiser(key)
            raise KeyError(f"no advertiser with id {advertiser_id!r}")


def _hash_id(b: bytes) -> str:
    """A short alphanumeric id like Trackier's ``hashId`` (base64 of 6 digest bytes, no symbols)."""
    return base64.b64encode(b, altchars=b"xY").decode()


def _new_payout_cents(seed: int, key: int, rev: int, pay: int) -> int:
    """A new payout in ``[1, rev]`` that differs from ``pay``; a pure function of its arguments."""
    h = int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "little")
    if rev > pay:
        return pay + 1 + h % (rev - pay)
    return max(1, pay - 1 - h % max(1, pay - 1)) if pay > 1 else 2


def _same_id(a: Any, b: Any) -> bool:
    return a == b or (a is not None and b is not None and str(a) == str(b))


def _first_payout(rec: Any) -> Any:
    """The first payout amount of a record in either shape (v2 ``payouts[0].payout`` or ``payout``)."""
    if not isinstance(rec, dict):
        return None
    payouts = rec.get("payouts")
    if isinstance(payouts, list) and payouts and isinstance(payouts[0], dict):
        return payouts[0].get("payout")
    payout = rec.get("payout")
    if isinstance(payout, dict):
        return payout.get("amount")
    return payout


def _with_first_payout(rec: Any, value: float) -> Any:
    """A copy of ``rec`` whose first payout amount is ``value`` (either shape)."""
    rec = copy.deepcopy(rec)
    payouts = rec.get("payouts")
    if isinstance(payouts, list) and payouts and isinstance(payouts[0], dict):
        payouts[0]["payout"] = value
    elif isinstance(rec.get("payout"), dict):
        rec["payout"]["amount"] = value
    else:
        rec["payout"] = value
    return rec
