"""Validation of Trackier records: one model per entity that accepts both input shapes.

Two shapes reach us: the real v2 records (``title``, ``advertiserId``, ``payouts[]``) and the
simplified shape of the original test specification (``name``, ``advertiser_id``,
``payout: {amount, currency}``). Both are folded into one normalized record *before* field
validation, so every rule below is written once and the database sees one shape.

Validation is per record: a page is validated as a whole first (fast path), and only when that
fails is it re-validated record by record, so one bad neighbour never costs a good record.
Rejected records keep their raw JSON and a reason that names the field and the problem.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NotRequired

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from typing_extensions import TypedDict

from include.offer_sync.trackier.currencies import ISO_4217

MAX_NAME_LENGTH = 500
MAX_TEXT_LENGTH = 20_000
MAX_URL_LENGTH = 4_096
MAX_ID_LENGTH = 128
MAX_PAYOUT = 1_000_000_000.0
MAX_LIST_ITEMS = 1_000

# What text may hold. Names, titles, descriptions, tags and URLs are kept exactly as Trackier sent
# them, tabs, newlines, zero-width and bidi marks, C0/C1 controls included: PostgreSQL's text stores
# them, and escaping for a page, a terminal or a CSV is the reader's job. Only what PostgreSQL cannot
# store is refused: NUL (text and jsonb refuse it) and lone surrogates (not Unicode scalar values, so
# not encodable as UTF-8; pydantic's ``str`` already refuses those, see ``describe_errors``).
#
# Ids are stricter: they are join keys (offers across runs, campaigns to their advertiser, rejects to
# the offer they keep "seen"), compared byte for byte. An id with a control character in it (a stray
# CR or tab from an export) would silently be a different offer from the one it looks like, and could
# not be typed into a query; Trackier's ids are numbers, 24-hex strings and short base64 ``hashId``s.
_NUL = "\x00"
_ID_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# A name needs one character that is neither whitespace nor a control character.
_VISIBLE = re.compile(r"[^\s\x00-\x1f\x7f-\x9f]")


def id_to_str(value: Any) -> Any:
    """Trackier ids are integers in v2 and strings in the fixture; we keep them as opaque strings.

    Anything else (a boolean, an object, a fractional number) is left alone so that the ``str``
    field rejects it with its own precise message.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value


# Length limits and types are checked by pydantic-core (Rust); the few rules it cannot express
# (blank names, NUL, control characters in ids, ISO currencies) run in ONE Python validator per record, which
# keeps validation at a few microseconds per record instead of one Python call per field.
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH)]
Text = Annotated[str, Field(max_length=MAX_TEXT_LENGTH)]
Url = Annotated[str, Field(max_length=MAX_URL_LENGTH)]
Code = Annotated[str, Field(max_length=16)]
Money = Annotated[float, Field(ge=0, le=MAX_PAYOUT, allow_inf_nan=False)]
TagList = Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=MAX_LIST_ITEMS)]

_STRICTNESS = ConfigDict(extra="ignore", str_strip_whitespace=False, populate_by_name=True)


class _Problems:
    """Collects rule violations of one record so that all of them are reported at once."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[str] = []

    def not_blank(self, field: str, value: str | None) -> None:
        if value is not None and not _VISIBLE.search(value):
            what = f" (it holds only whitespace and control characters: {_short_repr(value)})" if value.strip() else ""
            self.items.append(f"{field}: must not be blank{what}")

    def plain_ids(self, fields: dict[str, str | None]) -> None:
        """Ids are join keys: no control characters at all (see ``_ID_CONTROL_CHARS``)."""
        for name, value in fields.items():
            if value and _ID_CONTROL_CHARS.search(value):
                self.items.append(
                    f"{name}: contains control characters (got {_short_repr(value)}); an id is a join key "
                    "and must be plain text"
                )

    def storable(self, fields: dict[str, str | None]) -> None:
        """Text keeps every character PostgreSQL can store; NUL is the one it cannot."""
        for name, value in fields.items():
            if value and _NUL in value:
                self.items.append(
                    f"{name}: contains a NUL character (\\x00), which PostgreSQL cannot store in text "
                    f"(got {_short_repr(value)})"
                )

    def currency(self, field: str, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if code not in ISO_4217:
            self.items.append(f"{field}: {value[:16]!r} is not an ISO 4217 currency code")
        return code

    def raise_if_any(self) -> None:
        if self.items:
            raise ValueError("; ".join(self.items))


class PayoutRule(TypedDict):
    """One payout rule of a campaign (a campaign may have one per geo or publisher group).

    A TypedDict, not a model: pydantic-core validates it into a plain dict, keys in this order and
    absent ones filled with their defaults, which is also the JSON stored in ``offers.payouts``
    (``campaign_row`` rounds the amounts in place and writes the list as it is). A nested model cost
    5.1-6.4 us per campaign (1.5 rules each), this 2.7 us (10,000 fake campaigns, ``TypeAdapter`` on
    the rules alone); its error locations are the same (``payouts.0._id``, ``payouts.1.payout``).
    """

    __pydantic_config__ = _STRICTNESS  # type: ignore[misc]

    rule_id: Annotated[NotRequired[Id | None], Field(default=None, alias="_id")]
    model: Annotated[NotRequired[Name | None], Field(default=None)]
    payout: Money
    revenue: Annotated[NotRequired[Money | None], Field(default=None)]
    currency: Annotated[NotRequired[Code | None], Field(default=None)]
    geo: Annotated[NotRequired[TagList], Field(default_factory=list)]


#: Keys of a campaign record that ``Campaign._normalize_input`` reads besides the fields' names and
#: aliases (the specification's shape). A resync skips records whose fingerprint over these keys and
#: the fields is unchanged (``fingerprint.py``): a key read here and missing there would go unseen.
CAMPAIGN_SHAPE_KEYS: tuple[str, ...] = ("name", "advertiser_id", "payout", "category")


class Campaign(BaseModel):
    """A Trackier campaign, which becomes one row of ``offers``."""

    model_config = _STRICTNESS

    id: Id
    hash_id: Id | None = Field(default=None, alias="hashId")
    advertiser_ref: Id = Field(alias="advertiserId")
    title: Name
    description: Text | None = None
    status: Name | None = None
    visibility: Name | None = None
    currency: Code = "USD"
    comm_model: Name | None = Field(default=None, alias="commModel")
    url: Url | None = None
    preview_url: Url | None = Field(default=None, alias="previewUrl")
    geo: TagList = Field(default_factory=list)
    device: TagList = Field(default_factory=list)
    os: TagList = Field(default_factory=list)
    categories: TagList = Field(default_factory=list)
    payouts: Annotated[list[PayoutRule], Field(max_length=MAX_LIST_ITEMS)] = Field(default_factory=list)
    created: datetime | None = None
    modified: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalize_input(cls, data: Any) -> Any:
        """Map the test specification's fixture shape (``name``, ``advertiser_id``, ``payout{}``) onto the v2 names
        and turn integer ids into strings."""
        if not isinstance(data, dict):
            raise ValueError(f"a campaign must be a JSON object, got {_json_type(data)}")
        data = dict(data)
        if "title" not in data and "name" in data:
            data["title"] = data.pop("name")
        if "advertiserId" not in data and "advertiser_id" in data:
            data["advertiserId"] = data.pop("advertiser_id")
        if "payouts" not in data and "payout" in data:
            payout = data.pop("payout")
            if isinstance(payout, dict):
                data["payouts"] = [{"payout": payout.get("amount"), "currency": payout.get("currency")}]
                if "currency" not in data and payout.get("currency"):
                    data["currency"] = payout["currency"]
            else:
                data["payouts"] = [{"payout": payout}]
        if "categories" not in data and isinstance(data.get("category"), str):
            data["categories"] = [data["category"]]
        for key in ("id", "hashId", "advertiserId"):
            if key in data and type(data[key]) is not str:
                data[key] = id_to_str(data[key])
        rules = data.get("payouts")
        if isinstance(rules, list):
            # A rule is copied only when its _id must change (the caller's record is kept raw for
            # rejects, so it is never modified); most rules are taken as they are.
            fixed = None
            for i, rule in enumerate(rules):
                if not isinstance(rule, dict):
                    continue
                # pydantic's float takes true/false as 1.0/0.0: a boolean payout is a wrong type, not 1.
                for key in ("payout", "revenue"):
                    if isinstance(rule.get(key), bool):
                        raise ValueError(f"payouts.{i}.{key}: must be a number, got a boolean")
                if "_id" in rule and type(rule["_id"]) is not str:
                    if fixed is None:
                        fixed = list(rules)
                    fixed[i] = {**rule, "_id": id_to_str(rule["_id"])}
            if fixed is not None:
                data["payouts"] = fixed
        return data

    @model_validator(mode="after")
    def _rules_pydantic_cannot_express(self) -> Campaign:
        rules = self.payouts
        out_of_range: list[str] = []
        fields = self.__dict__
        for name in ("created", "modified"):  # usually already UTC ("Z"): then nothing to do
            value = fields[name]
            if value is not None and (value.tzinfo is None or value.utcoffset()):
                fields[name] = _as_utc(name, value, out_of_range)
        clean = (
            not out_of_range
            and self.id.strip()
            and self.advertiser_ref.strip()
            and _VISIBLE.search(self.title)
            and self.currency in ISO_4217
            and all(r["currency"] is None or r["currency"] in ISO_4217 for r in rules)
            and not _ID_CONTROL_CHARS.search(self._joined_ids())
            and _NUL not in self._joined_texts()
        )
        if not clean:  # the rare case: find every problem, by field, for the reject reason
            p = _Problems()
            p.items.extend(out_of_range)
            p.not_blank("id", self.id)
            p.not_blank("advertiserId", self.advertiser_ref)
            p.not_blank("title", self.title)
            ids, texts = self._named()
            p.plain_ids(ids)
            p.storable(texts)
            self.__dict__["currency"] = p.currency("currency", self.currency) or "USD"
            for i, rule in enumerate(rules):
                rule["currency"] = p.currency(f"payouts.{i}.currency", rule["currency"])
            p.raise_if_any()
        for rule in rules:
            if rule["currency"] is None:
                rule["currency"] = self.currency
        return self

    def _joined_ids(self) -> str:
        """Every id of the record (join keys) as one string, for the control-character scan (this runs
        for every record: one join, no generator)."""
        parts = [self.id, self.hash_id or "", self.advertiser_ref]
        parts += [r["rule_id"] for r in self.payouts if r["rule_id"]]
        return "".join(parts)

    def _joined_texts(self) -> str:
        """Every other string of the record (names, codes, tags, URLs, text) as one string, for the NUL
        scan (this runs for every record: one join, no generator)."""
        parts = [
            self.title,
            self.description or "",
            self.status or "",
            self.visibility or "",
            self.comm_model or "",
            self.url or "",
            self.preview_url or "",
            *self.geo,
            *self.device,
            *self.os,
            *self.categories,
        ]
        for rule in self.payouts:
            parts.append(rule["model"] or "")
            parts += rule["geo"]
        return "".join(parts)

    def _named(self) -> tuple[dict[str, str | None], dict[str, str | None]]:
        """``_joined_ids`` and ``_joined_texts`` by field path, for the reject reason."""
        ids = {"id": self.id, "hashId": self.hash_id, "advertiserId": self.advertiser_ref}
        texts = {
            "title": self.title,
            "description": self.description,
            "status": self.status,
            "visibility": self.visibility,
            "commModel": self.comm_model,
            "url": self.url,
            "previewUrl": self.preview_url,
        }
        for field in ("geo", "device", "os", "categories"):
            texts.update({f"{field}.{i}": v for i, v in enumerate(getattr(self, field))})
        for i, rule in enumerate(self.payouts):
            ids[f"payouts.{i}._id"] = rule["rule_id"]
            texts[f"payouts.{i}.model"] = rule["model"]
            texts.update({f"payouts.{i}.geo.{j}": v for j, v in enumerate(rule["geo"])})
        return ids, texts


class Advertiser(BaseModel):
    """A Trackier advertiser, which becomes one row of ``brands``.

    Campaigns point at advertisers by an id whose kind is not documented (the numeric ``id``, the
    24-hex ``_id`` or the ``hashId``), so every id the record offers is kept and the merge matches
    a campaign's ``advertiserId`` against any of them.
    """

    model_config = _STRICTNESS

    id: Id
    long_id: Id | None = Field(default=None, alias="_id")
    hash_id: Id | None = Field(default=None, alias="hashId")
    name: Name
    company: Name | None = None
    email: Name | None = None
    category: Name | None = None
    status: Name | None = None
    currency: Code | None = None
    tags: TagList = Field(default_factory=list)
    created: datetime | None = None
    modified: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalize_input(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"an advertiser must be a JSON object, got {_json_type(data)}")
        data = dict(data)
        for key in ("id", "_id", "hashId"):
            if key in data:
                data[key] = id_to_str(data[key])
        return data

    @model_validator(mode="after")
    def _rules_pydantic_cannot_express(self) -> Advertiser:
        p = _Problems()
        self.__dict__["created"] = _as_utc("created", self.created, p.items)
        self.__dict__["modified"] = _as_utc("modified", self.modified, p.items)
        p.not_blank("id", self.id)
        p.not_blank("name", self.name)
        p.plain_ids({"id": self.id, "_id": self.long_id, "hashId": self.hash_id})
        texts = {
            "name": self.name,
            "company": self.company,
            "email": self.email,
            "category": self.category,
            "status": self.status,
        }
        texts.update({f"tags.{i}": v for i, v in enumerate(self.tags)})
        p.storable(texts)
        self.__dict__["currency"] = p.currency("currency", self.currency)
        p.raise_if_any()
        return self


def _as_utc(field: str, value: datetime | None, problems: list[str]) -> datetime | None:
    """Timestamps are kept in UTC (a naive one is taken as UTC, as Trackier sends ``Z``).

    pydantic accepts UTC offsets up to +-23:59, PostgreSQL's timestamptz only up to +-15:59: an
    offset like ``+16:00`` passed validation and then failed the shard's whole COPY. In UTC the
    offset is gone; a date that leaves the years 1-9999 on the way is a problem of its record.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if not value.utcoffset():
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        problems.append(f"{field}: {value.isoformat()} is out of range once converted to UTC")
        return value


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


# --- rows for the staging tables ---------------------------------------------------------------

CAMPAIGN_COLUMNS: tuple[str, ...] = (
    "trackier_id",
    "hash_id",
    "advertiser_ref",
    "title",
    "description",
    "status",
    "visibility",
    "currency",
    "comm_model",
    "payout",
    "payout_currency",
    "revenue",
    "payouts",
    "geo",
    "device",
    "os",
    "categories",
    "url",
    "preview_url",
    "source_created",
    "source_modified",
    "content_hash",
)

ADVERTISER_COLUMNS: tuple[str, ...] = (
    "trackier_id",
    "long_id",
    "hash_id",
    "name",
    "company",
    "email",
    "category",
    "status",
    "currency",
    "tags",
    "source_created",
    "source_modified",
    "content_hash",
)


def _content_hash(values: Iterable[Any]) -> str:
    """A digest of everything we store, so the merge compares one column instead of twenty."""
    return hashlib.md5(orjson.dumps(list(values)), usedforsecurity=False).hexdigest()


def pg_array(values: list[str]) -> str:
    """A ``text[]`` literal. Formatting it here is twice as fast as letting COPY adapt a list.

    Elements are always quoted; only a list with a quote or backslash in it needs escaping, element
    by element (the usual list has none, and is joined in one go).
    """
    if not values:
        return "{}"
    joined = '","'.join(values)
    if "\\" not in joined and joined.count('"') == 2 * (len(values) - 1):
        return '{"' + joined + '"}'
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _iso(value: datetime | None) -> str | None:
    """``value.isoformat()``, the same characters, from orjson's RFC 3339 writer.

    0.45 us instead of 1.2 us per timestamp (two per campaign); identical to ``isoformat`` on 200,000
    random UTC datetimes (years 1-9999, with and without microseconds) and on every fake campaign.
    """
    return None if value is None else orjson.dumps(value)[1:-1].decode()


def campaign_row(c: Campaign, content_hash: str) -> tuple[Any, ...]:
    """The staging row of a valid campaign, in ``CAMPAIGN_COLUMNS`` order (COPY-ready values).

    ``content_hash`` is the record's fingerprint (``fingerprint.campaign_fingerprint`` of the raw
    record it was validated from): computed from the source, before validation, so that a resync
    can recognise an unchanged record without validating it.
    """
    # Amounts rounded to the 6 decimals numeric(18,6) keeps, so that equal amounts hash equal. The
    # rules are the validated dicts (``PayoutRule``: the stored keys, in the stored order), rounded in
    # place: a campaign is validated for this row and nothing else reads its rules.
    payouts = c.payouts
    for rule in payouts:
        rule["payout"] = round(rule["payout"], 6)
        if rule["revenue"] is not None:
            rule["revenue"] = round(rule["revenue"], 6)
    first = payouts[0] if payouts else None
    row = (
        c.id,
        c.hash_id,
        c.advertiser_ref,
        c.title,
        c.description,
        c.status,
        c.visibility,
        c.currency,
        c.comm_model,
        first["payout"] if first else None,
        first["currency"] if first else None,
        first["revenue"] if first else None,
        orjson.dumps(payouts).decode(),
        pg_array(c.geo),
        pg_array(c.device),
        pg_array(c.os),
        pg_array(c.categories),
        c.url,
        c.preview_url,
        _iso(c.created),
        _iso(c.modified),
    )
    return (*row, content_hash)


def advertiser_row(a: Advertiser) -> tuple[Any, ...]:
    """The staging row of a valid advertiser, in ``ADVERTISER_COLUMNS`` order (COPY-ready values)."""
    row = (
        a.id,
        a.long_id,
        a.hash_id,
        a.name,
        a.company,
        a.email,
        a.category,
        a.status,
        a.currency,
        pg_array(a.tags),
        _iso(a.created),
        _iso(a.modified),
    )
    return (*row, _content_hash(row[1:]))


# --- validation of whole pages -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reject:
    """A record that failed validation, with what to show an operator and what to keep."""

    record_key: str | None
    reason: str
    raw: str


def describe_errors(error: ValidationError, limit: int = 5) -> str:
    """``payouts.0.payout: Input should be greater than or equal to 0 (got -5)`` - field first."""
    parts = []
    for item in error.errors(include_url=False)[:limit]:
        msg = item["msg"].removeprefix("Value error, ")
        if not item["loc"] and item["type"] == "value_error" and ": " in msg:
            parts.append(msg)  # a record-level rule: the message names its fields itself
            continue
        loc = ".".join(str(p) for p in item["loc"]) or "record"
        if item["type"] == "string_unicode":  # pydantic's words for a lone surrogate (JSON "\ud800")
            msg = "contains a lone surrogate, which is not Unicode text: it cannot be encoded as UTF-8 or stored"
        if item["type"] not in ("missing", "model_type") and "input" in item:
            shown = _short_repr(item["input"])
            if shown is not None:
                msg = f"{msg} (got {shown})"
        parts.append(f"{loc}: {msg}")
    extra = error.error_count() - limit
    if extra > 0:
        parts.append(f"... and {extra} more")
    return "; ".join(parts)


def _short_repr(value: Any, width: int = 60) -> str | None:
    if isinstance(value, (dict, list)):
        return None  # the raw record is kept; repeating a big structure in the reason helps nobody
    text = repr(value)
    if len(text) > width:
        text = f"{text[: width - 20]}... ({len(str(value))} characters)"
    return text


def _record_key(record: Any) -> str | None:
    """The id a reject is filed under, or None when there is no usable one.

    An id with control characters or lone surrogates is refused as an id (see ``_ID_CONTROL_CHARS``),
    so it can never be the id of a stored offer; NUL and lone surrogates could not even be stored
    in the text column (the whole shard's COPY failed on one such record). Such a reject counts as
    unidentified, which keeps the sweep from deactivating anything (the offer it may stand for is
    not switched off); the raw record (JSON-escaped) still shows the id.
    """
    if isinstance(record, dict):
        key = record.get("id")
        if isinstance(key, (str, int)) and not isinstance(key, bool):
            text = str(key)[:MAX_ID_LENGTH]
            return None if _ID_CONTROL_CHARS.search(text) else text
    return None


def _raw(record: Any) -> str:
    try:
        return orjson.dumps(record).decode()
    except TypeError:
        return repr(record)


_CAMPAIGN_PAGE = TypeAdapter(list[Campaign])
_ADVERTISER_PAGE = TypeAdapter(list[Advertiser])


def validate_page(model: type[Campaign] | type[Advertiser], records: list[Any]) -> tuple[list[Any], list[Reject]]:
    """Validate a page: the valid records, and a ``Reject`` for every invalid one (``validate_positions``)."""
    valid, rejects = validate_positions(model, records)
    return [record for _, record in valid], rejects


def validate_positions(
    model: type[Campaign] | type[Advertiser], records: list[Any]
) -> tuple[list[tuple[int, Any]], list[Reject]]:
    """Validate a page: each valid record with its position in ``records``, and a ``Reject`` for every
    invalid one.

    The whole-page adapter is tried first because it is several times faster than a Python loop;
    a page with errors is validated again record by record so that each keeps its own verdict.
    The positions pair a campaign with the fingerprint of the raw record it came from.
    """
    adapter = _CAMPAIGN_PAGE if model is Campaign else _ADVERTISER_PAGE
    try:
        return list(enumerate(adapter.validate_python(records))), []
    except ValidationError:
        return _one_by_one(model, records)


def _one_by_one(
    model: type[Campaign] | type[Advertiser], records: list[Any]
) -> tuple[list[tuple[int, Any]], list[Reject]]:
    valid: list[tuple[int, Any]] = []
    rejects: list[Reject] = []
    for position, record in enumerate(records):
        try:
            valid.append((position, model.model_validate(record)))
        except ValidationError as exc:
            rejects.append(Reject(_record_key(record), describe_errors(exc), _raw(record)))
    return valid, rejects
