"""Fingerprints of campaign records: how a resync recognises, before validating, what it already has.

A resync fetches the whole catalogue again, and nearly all of it is what the last sync stored. A
campaign costs about 45 us of CPU to validate and turn into a staging row (pydantic 30, row
building 12: CPU time per record over 20,000 fake campaigns, BENCHMARKS.md), while its fingerprint costs about 4
and a lookup in the set of stored fingerprints about 1.4. So each extract task first loads the
fingerprints of the active offers (``shard_prepare.sql``, 8 bytes per offer), and a fetched record
whose fingerprint is among them is *carried*: staged as (id, advertiser id, fingerprint) only,
neither validated nor rebuilt. The merge then treats it as unchanged (its ``content_hash`` is the
stored one) and, where it must write it anyway (its brand changed, or it was deactivated while
this run was fetching), takes its values from the stored row, which is what the same record
produced last time.

The fingerprint is ``offers.content_hash`` for campaigns: 16 hex digits of a keyed BLAKE2b over
every key of the record that validation reads (``FINGERPRINT_KEYS``: each model field by name and
by alias, plus the keys of the specification's older shape), keys sorted at every depth, so key
order does not matter and a key that is absent differs from one that is null. Keys the models do not
read (Trackier's counters, a ``kpi`` text) are left out on purpose: if they changed on every fetch,
a fingerprint of the whole record would never match and every resync would rewrite every offer.

The key of the hash is derived from the source of the validation code (``models.py``,
``currencies.py`` and this file): any change to what validation accepts or how a row is built
changes every fingerprint, so the first sync after such a deploy validates everything again and
rewrites each offer once (unchanged offers are not counted or audited: their stored values are
equal). Carrying never outlives the code that validated the record.
"""

from __future__ import annotations

import bisect
import hashlib
import sys
from array import array
from pathlib import Path
from typing import Any

import orjson

from include.offer_sync.trackier import currencies, models
from include.offer_sync.trackier.models import CAMPAIGN_SHAPE_KEYS, Campaign, id_to_str

#: Bump when something outside the files hashed below changes what a carried record stands for.
FINGERPRINT_VERSION = 1


def _campaign_keys() -> tuple[str, ...]:
    keys = set(CAMPAIGN_SHAPE_KEYS)
    for name, field in Campaign.model_fields.items():
        keys.add(name)  # populate_by_name: the field name is accepted as input too
        if field.alias:
            keys.add(field.alias)
    return tuple(sorted(keys))


#: Every top-level key of a campaign record that validation reads (nested payout rules are hashed whole).
FINGERPRINT_KEYS: tuple[str, ...] = _campaign_keys()


def _code_key() -> bytes:
    """The BLAKE2b key: a digest of the validation code's source (see the module docstring)."""
    digest = hashlib.blake2b(f"offer-sync fingerprint v{FINGERPRINT_VERSION}".encode(), digest_size=32)
    for module in (models, currencies, sys.modules[__name__]):
        try:
            digest.update(Path(module.__file__ or "").read_bytes())
        except OSError:
            # Installed without sources (a zip, bytecode only): fall back to the version alone.
            digest.update(module.__name__.encode())
    return digest.digest()


_KEYS = frozenset(FINGERPRINT_KEYS)
# A keyed hasher set up once and copied per record: 0.9 us less per record than passing the key to
# each new hasher (4.5 against 5.4 us for the whole fingerprint, 20,000 fake campaigns).
_HASHER = hashlib.blake2b(digest_size=8, key=_code_key())
_OPTIONS = orjson.OPT_SORT_KEYS


def campaign_fingerprint(record: Any) -> str | None:
    """The record's fingerprint (16 hex digits), or None for a record that cannot have one.

    None means "validate it": not a JSON object, or a value orjson cannot write (a lone surrogate
    in a string, which validation rejects with its own reason).
    """
    if type(record) is not dict:
        return None
    # Drop the keys validation does not read from a copy, only when there are any: a set difference
    # of the key views runs in C. 1.5 against 2.3 us per record for the dict comprehension it
    # replaced (5,000 fake campaigns, whose one extra key is ``kpi``; min of 5).
    extra = record.keys() - _KEYS
    if extra:
        record = record.copy()
        for key in extra:
            del record[key]
    try:
        body = orjson.dumps(record, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return None
    hasher = _HASHER.copy()
    hasher.update(body)
    return hasher.hexdigest()


def carried_keys(record: dict[str, Any]) -> tuple[str, str] | None:
    """The (id, advertiser id) a carried record is staged under, as validation would produce them.

    None when they are not unambiguous plain strings (then the record is validated instead): the
    advertiser id may come under three names (``advertiserId``, the fixture's ``advertiser_id``, the
    field name ``advertiser_ref``), and rather than repeat pydantic's precedence between them, a
    record that gives two different values is simply not carried.
    """
    trackier_id = id_to_str(record.get("id"))
    refs = {id_to_str(record[k]) for k in ("advertiserId", "advertiser_id", "advertiser_ref") if k in record}
    if type(trackier_id) is not str or len(refs) != 1:
        return None
    (ref,) = refs
    if type(ref) is not str:
        return None
    return trackier_id, ref


class KnownFingerprints:
    """The fingerprints of the active offers, as a sorted array: 8 bytes per offer.

    A Python ``set`` of a million ints costs about 60 MB; the array costs 8 MB and a lookup (binary
    search) about 1.4 us. It is filled chunk by chunk as PostgreSQL streams them
    (``staging_create.sql``, ``shard_prepare.sql``) into an array allocated once at its final size:
    no second copy of the million values is ever held.
    """

    __slots__ = ("_filled", "_values")

    def __init__(self, total_bytes: int = 0) -> None:
        if total_bytes % 8:
            raise ValueError(f"known fingerprints: {total_bytes} bytes is not a whole number of 8-byte values")
        self._values = array("Q", [0]) * (total_bytes // 8)
        self._filled = 0

    def add(self, chunk: bytes) -> None:
        """Append the next chunk (8-byte big-endian values, ascending, each chunk after the last)."""
        part = array("Q")
        part.frombytes(chunk)  # raises ValueError for a torn value
        end = self._filled + len(part)
        if end > len(self._values):
            raise ValueError(f"known fingerprints: more values than the {len(self._values)} announced")
        self._values[self._filled : end] = part
        self._filled = end

    def seal(self) -> KnownFingerprints:
        """Check that every announced value arrived and put them in this machine's byte order."""
        if self._filled != len(self._values):
            raise ValueError(f"known fingerprints: {self._filled} of {len(self._values)} announced values arrived")
        if sys.byteorder == "little":
            self._values.byteswap()
        return self

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, fingerprint: str) -> bool:
        values = self._values
        if not values:
            return False
        key = int(fingerprint, 16)
        i = bisect.bisect_left(values, key)
        return i < len(values) and values[i] == key
