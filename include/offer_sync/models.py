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
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from include.offer_sync.currencies import ISO_4217

MAX_NAME_LENGTH = 500
MAX_TEXT_LENGTH = 20_000
MAX_URL_LENGTH = 4_096
MAX_ID_LENGTH = 128
MAX_PAYOUT = 1_000_000_000.0
MAX_LIST_ITEMS = 1_000

# C0/C1 control characters. Tabs and newlines are fine in long text, never in names or ids.
# Lone surrogates are included: they cannot be encoded as UTF-8, so PostgreSQL could not store them.
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_CHARS_EXCEPT_WHITESPACE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _external_id(value: Any) -> str:
    """Trackier ids are integers in v2 and strings in the fixture; we keep them as opaque strings."""
    if isinstance(value, bool):
        raise ValueError("must be an id (string or integer), got a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be blank")
        if len(value) > MAX_ID_LENGTH:
            raise ValueError(f"is {len(value)} characters long, at most {MAX_ID_LENGTH} allowed")
        if _CONTROL_CHARS.search(value):
            raise ValueError("contains control characters")
        return value
    raise ValueError(f"must be an id (string or integer), got {type(value).__name__}")


def _name(value: str) -> str:
    """Names are stored byte for byte (quotes, HTML, emoji included); only blanks and controls fail."""
    if not value.strip():
        raise ValueError("must not be blank")
    if _CONTROL_CHARS.search(value):
        raise ValueError("contains control characters")
    return value


def _text(value: str) -> str:
    if _CONTROL_CHARS_EXCEPT_WHITESPACE.search(value):
        raise ValueError("contains control characters")
    return value


def _currency(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 4217 code, got {type(value).__name__}")
    code = value.strip().upper()
    if code not in ISO_4217:
        raise ValueError(f"{value[:16]!r} is not an ISO 4217 currency code")
    return code


def _money(value: float) -> float:
    """Round to the 6 decimals the ``numeric(18,6)`` columns keep, so equal amounts hash equal."""
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return round(value, 6)


ExternalId = Annotated[str, BeforeValidator(_external_id)]
Name = Annotated[str, Field(max_length=MAX_NAME_LENGTH), AfterValidator(_name)]
Text = Annotated[str, Field(max_length=MAX_TEXT_LENGTH), AfterValidator(_text)]
ShortText = Annotated[str, Field(max_length=MAX_NAME_LENGTH), AfterValidator(_name)]
Url = Annotated[str, Field(max_length=MAX_URL_LENGTH), AfterValidator(_name)]
Currency = Annotated[str, BeforeValidator(_currency)]
Money = Annotated[float, Field(ge=0, le=MAX_PAYOUT, allow_inf_nan=False), AfterValidator(_money)]
Tag = Annotated[str, Field(max_length=128), AfterValidator(_name)]
TagList = Annotated[list[Tag], Field(max_length=MAX_LIST_ITEMS)]

_STRICTNESS = ConfigDict(extra="ignore", str_strip_whitespace=False, populate_by_name=True)


class PayoutRule(BaseModel):
    """One payout rule of a campaign (a campaign may have one per geo or publisher group)."""

    model_config = _STRICTNESS

    rule_id: ExternalId | None = Field(default=None, alias="_id")
    model: ShortText | None = None
    payout: Money
    revenue: Money | None = None
    currency: Currency | None = None
    geo: TagList = Field(default_factory=list)


class Campaign(BaseModel):
    """A Trackier campaign, which becomes one row of ``offers``."""

    model_config = _STRICTNESS

    id: ExternalId
    hash_id: ExternalId | None = Field(default=None, alias="hashId")
    advertiser_ref: ExternalId = Field(alias="advertiserId")
    title: Name
    description: Text | None = None
    status: ShortText | None = None
    visibility: ShortText | None = None
    currency: Currency = "USD"
    comm_model: ShortText | None = Field(default=None, alias="commModel")
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
    def _fold_simplified_shape(cls, data: Any) -> Any:
        """Map the spec's fixture shape (``name``, ``advertiser_id``, ``payout{}``) onto the v2 names."""
        if not isinstance(data, dict):
            raise ValueError(f"a campaign must be a JSON object, got {_json_type(data)}")
        if "title" in data and "advertiserId" in data and "payout" not in data:
            return data  # the common case: a real v2 record
        data = dict(data)
        if "title" not in data and "name" in data:
            data["title"] = data.pop("name")
        if "advertiserId" not in data and "advertiser_id" in data:
            data["advertiserId"] = data.pop("advertiser_id")
        if "payouts" not in data and "payout" in data:
            payout = data.pop("payout")
            if isinstance(payout, dict):
                data["payouts"] = [{"payout": payout.get("amount"), "currency": payout.get("currency")}]
            else:
                data["payouts"] = [{"payout": payout}]
            if "currency" not in data and isinstance(payout, dict) and payout.get("currency"):
                data["currency"] = payout["currency"]
        if "categories" not in data and isinstance(data.get("category"), str):
            data["categories"] = [data["category"]]
        return data

    @model_validator(mode="after")
    def _rule_currency_defaults_to_campaign(self) -> Campaign:
        for rule in self.payouts:
            if rule.currency is None:
                rule.currency = self.currency
        return self


class Advertiser(BaseModel):
    """A Trackier advertiser, which becomes one row of ``brands``.

    Campaigns point at advertisers by an id whose kind is not documented (the numeric ``id``, the
    24-hex ``_id`` or the ``hashId``), so every id the record offers is kept and the merge matches
    a campaign's ``advertiserId`` against any of them.
    """

    model_config = _STRICTNESS

    id: ExternalId
    long_id: ExternalId | None = Field(default=None, alias="_id")
    hash_id: ExternalId | None = Field(default=None, alias="hashId")
    name: Name
    company: ShortText | None = None
    email: ShortText | None = None
    category: ShortText | None = None
    status: ShortText | None = None
    currency: Currency | None = None
    tags: TagList = Field(default_factory=list)
    created: datetime | None = None
    modified: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _must_be_object(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"an advertiser must be a JSON object, got {_json_type(data)}")
        return data


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


# --- rows for the staging tables ---------------------------------------------------------------

CAMPAIGN_COLUMNS: tuple[str, ...] = (
    "trackier_id", "hash_id", "advertiser_ref", "title", "description", "status", "visibility",
    "currency", "comm_model", "payout", "payout_currency", "revenue", "payouts", "geo", "device",
    "os", "categories", "url", "preview_url", "source_created", "source_modified", "content_hash",
)  # fmt: skip

ADVERTISER_COLUMNS: tuple[str, ...] = (
    "trackier_id", "long_id", "hash_id", "name", "company", "email", "category", "status",
    "currency", "tags", "source_created", "source_modified", "content_hash",
)  # fmt: skip


def _content_hash(values: Iterable[Any]) -> str:
    """A digest of everything we store, so the merge compares one column instead of twenty."""
    return hashlib.md5(orjson.dumps(list(values), default=str), usedforsecurity=False).hexdigest()


def campaign_row(c: Campaign) -> tuple[Any, ...]:
    """The staging row of a valid campaign, in ``CAMPAIGN_COLUMNS`` order."""
    first = c.payouts[0] if c.payouts else None
    payouts = [
        {"rule_id": r.rule_id, "model": r.model, "payout": r.payout, "revenue": r.revenue,
         "currency": r.currency, "geo": r.geo}
        for r in c.payouts
    ]  # fmt: skip
    payouts_json = orjson.dumps(payouts).decode()
    row = (
        c.id, c.hash_id, c.advertiser_ref, c.title, c.description, c.status, c.visibility, c.currency,
        c.comm_model, first.payout if first else None, first.currency if first else None,
        first.revenue if first else None, payouts_json, c.geo, c.device, c.os, c.categories,
        c.url, c.preview_url, c.created, c.modified,
    )  # fmt: skip
    # The advertiser reference is compared as the brand it resolves to, in SQL; hash the rest here.
    return (*row, _content_hash((row[1], *row[3:])))


def advertiser_row(a: Advertiser) -> tuple[Any, ...]:
    """The staging row of a valid advertiser, in ``ADVERTISER_COLUMNS`` order."""
    row = (
        a.id, a.long_id, a.hash_id, a.name, a.company, a.email, a.category, a.status, a.currency,
        a.tags, a.created, a.modified,
    )  # fmt: skip
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
        loc = ".".join(str(p) for p in item["loc"]) or "record"
        msg = item["msg"].removeprefix("Value error, ")
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
    if isinstance(record, dict):
        key = record.get("id")
        if isinstance(key, (str, int)) and not isinstance(key, bool):
            return str(key)[:MAX_ID_LENGTH]
    return None


def _raw(record: Any) -> str:
    try:
        return orjson.dumps(record).decode()
    except TypeError:
        return repr(record)


_CAMPAIGN_PAGE = TypeAdapter(list[Campaign])
_ADVERTISER_PAGE = TypeAdapter(list[Advertiser])


def validate_page(
    model: type[Campaign] | type[Advertiser], records: list[Any]
) -> tuple[list[Any], list[Reject]]:
    """Validate a page: the valid records, and a ``Reject`` for every invalid one.

    The whole-page adapter is tried first because it is several times faster than a Python loop;
    a page with errors is validated again record by record so that each keeps its own verdict.
    """
    adapter = _CAMPAIGN_PAGE if model is Campaign else _ADVERTISER_PAGE
    try:
        return adapter.validate_python(records), []
    except ValidationError:
        pass
    valid: list[Any] = []
    rejects: list[Reject] = []
    for record in records:
        try:
            valid.append(model.model_validate(record))
        except ValidationError as exc:
            rejects.append(Reject(_record_key(record), describe_errors(exc), _raw(record)))
    return valid, rejects
