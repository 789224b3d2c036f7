"""Unit tests of campaign fingerprints: what lets a resync stage a record without validating it.

A carried record is trusted to validate exactly as the record that produced the stored offer did,
so the fingerprint must change whenever anything validation reads changes, and only then.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from devtools.fake_trackier.catalogue import Catalogue
from include.offer_sync.trackier import models
from include.offer_sync.trackier.fingerprint import (
    FINGERPRINT_KEYS,
    KnownFingerprints,
    campaign_fingerprint,
    carried_keys,
)
from include.offer_sync.trackier.models import Campaign, campaign_row, validate_page
from tests.helpers import SPEC_FIXTURE
from tests.unit.test_models import REAL_CAMPAIGN


def _verdict(record: Any) -> Any:
    """What validation makes of one record: its staging row (without the hash), or its reject reason."""
    valid, rejects = validate_page(Campaign, [copy.deepcopy(record)])
    if valid:
        return ("valid", campaign_row(valid[0], "-")[:-1])
    return ("rejected", rejects[0].reason)


SAMPLES = {
    "real v2 shape": REAL_CAMPAIGN,
    "specification shape": SPEC_FIXTURE["campaigns"][0],
    "fake server": next(Catalogue(2, 4, seed=3).iter_campaigns()),
}


def test_fingerprint_ignores_key_order_at_every_depth() -> None:
    reordered = dict(reversed(list(REAL_CAMPAIGN.items())))
    reordered["payouts"] = [dict(reversed(list(rule.items()))) for rule in REAL_CAMPAIGN["payouts"]]
    assert campaign_fingerprint(reordered) == campaign_fingerprint(REAL_CAMPAIGN)
    assert re.fullmatch("[0-9a-f]{16}", campaign_fingerprint(REAL_CAMPAIGN) or "")


@pytest.mark.parametrize(
    "change",
    [
        {"title": "Shop & Save – Winter"},
        {"id": "4021"},  # same id as text: the same offer, but not the same record
        {"payouts": [{**REAL_CAMPAIGN["payouts"][0], "payout": 9.01}, REAL_CAMPAIGN["payouts"][1]]},
        {"payouts": [REAL_CAMPAIGN["payouts"][0]]},
        {"modified": "2024-03-02T10:00:00.000Z"},
        {"geo": None},  # null is not the same as absent: absent means [], null is rejected
    ],
    ids=["title", "id type", "one payout amount", "a payout rule removed", "modified", "null list"],
)
def test_fingerprint_changes_with_what_validation_reads(change: dict[str, Any]) -> None:
    assert campaign_fingerprint({**REAL_CAMPAIGN, **change}) != campaign_fingerprint(REAL_CAMPAIGN)


def test_an_absent_key_differs_from_a_null_one() -> None:
    without_geo = {k: v for k, v in REAL_CAMPAIGN.items() if k != "geo"}
    assert campaign_fingerprint(without_geo) != campaign_fingerprint({**without_geo, "geo": None})
    assert _verdict(without_geo)[0] == "valid"
    assert _verdict({**without_geo, "geo": None})[0] == "rejected"


def test_keys_validation_does_not_read_do_not_change_the_fingerprint() -> None:
    """Counters and texts the models ignore may change on every fetch; they must not defeat carrying."""
    noisy = {**REAL_CAMPAIGN, "kpi": "something else", "clicks": 1234, "stats": {"cr": 0.5}}
    assert campaign_fingerprint(noisy) == campaign_fingerprint(REAL_CAMPAIGN)


def _candidate_keys() -> set[str]:
    """Every key some record could carry that validation might read: the samples' keys, and every
    string literal in models.py (a key the normalizer reads has to be written there)."""
    source = Path(models.__file__).read_text(encoding="utf-8")
    literals = set(re.findall(r"""["']([A-Za-z_][A-Za-z0-9_]*)["']""", source))
    return literals | {k for sample in SAMPLES.values() for k in sample}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_key_that_changes_validation_is_fingerprinted(name: str) -> None:
    """The property carrying rests on: a key outside FINGERPRINT_KEYS never changes the verdict.

    Each candidate key outside the fingerprint is removed, and set to values of every JSON type;
    validation of the sample must not notice. A key the normalizer starts reading without being
    added to ``models.CAMPAIGN_SHAPE_KEYS`` fails here.
    """
    sample = SAMPLES[name]
    expected = _verdict(sample)
    outside = sorted(_candidate_keys() - set(FINGERPRINT_KEYS))
    assert "kpi" in outside  # the check reaches keys the samples really carry
    for key in outside:
        variants = [{k: v for k, v in sample.items() if k != key}]
        variants += [{**sample, key: value} for value in ("x", 7, 2.5, True, None, [], ["x"], {"amount": 1})]
        for variant in variants:
            assert _verdict(variant) == expected, f"{key!r} changes validation but is not in FINGERPRINT_KEYS"


def test_records_that_cannot_be_fingerprinted_are_validated_instead() -> None:
    assert campaign_fingerprint(["not", "an", "object"]) is None
    assert campaign_fingerprint({**REAL_CAMPAIGN, "title": "lone \ud800 surrogate"}) is None


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"id": 4021, "advertiserId": 77}, ("4021", "77")),
        ({"id": 4021.0, "advertiser_id": "a1"}, ("4021", "a1")),  # the specification's shape
        ({"id": "x", "advertiser_ref": "a1"}, ("x", "a1")),  # the field name (populate_by_name)
        ({"id": "x", "advertiserId": "a1", "advertiser_id": "a1"}, ("x", "a1")),
        ({"id": "x", "advertiserId": "a1", "advertiser_id": "b2"}, None),  # ambiguous: validate it
        ({"id": "x"}, None),
        ({"advertiserId": "a1"}, None),
        ({"id": True, "advertiserId": "a1"}, None),
    ],
)
def test_carried_keys_are_the_ids_validation_would_produce(record: dict[str, Any], expected: Any) -> None:
    assert carried_keys(record) == expected


def test_carried_keys_match_the_validated_record_for_every_sample() -> None:
    for sample in SAMPLES.values():
        (campaign,), _ = validate_page(Campaign, [sample])
        assert carried_keys(sample) == (campaign.id, campaign.advertiser_ref)


def _known(data: bytes) -> KnownFingerprints:
    """The set as an extract task builds it, from one chunk (8-byte big-endian values, ascending)."""
    known = KnownFingerprints(len(data))
    if data:
        known.add(data)
    return known.seal()


def test_known_fingerprints_find_exactly_the_stored_ones() -> None:
    stored = sorted(campaign_fingerprint({**REAL_CAMPAIGN, "id": i}) or "" for i in range(500))
    known = _known(b"".join(bytes.fromhex(h) for h in stored))
    assert len(known) == 500
    assert all(h in known for h in stored)
    assert campaign_fingerprint({**REAL_CAMPAIGN, "id": 500}) not in known
    assert "0000000000000000" not in known
    assert "ffffffffffffffff" not in known
    assert "0123456789abcdef" not in _known(b"")


def test_known_fingerprints_refuse_a_torn_value() -> None:
    with pytest.raises(ValueError, match="not a whole number of 8-byte values"):
        _known(b"\x00" * 12)


def test_the_fingerprint_is_what_the_payload_bytes_say_not_the_python_objects() -> None:
    """The same JSON bytes parsed twice give the same fingerprint (what a resync sees)."""
    raw = orjson.dumps(SAMPLES["fake server"])
    assert campaign_fingerprint(orjson.loads(raw)) == campaign_fingerprint(orjson.loads(raw))


def test_known_fingerprints_streamed_in_chunks_equal_the_whole() -> None:
    stored = sorted(bytes.fromhex(campaign_fingerprint({**REAL_CAMPAIGN, "id": i}) or "") for i in range(300))
    whole = b"".join(stored)
    known = KnownFingerprints(len(whole))
    for start in range(0, len(whole), 8 * 64):  # chunks of 64 values, as the server sends them
        known.add(whole[start : start + 8 * 64])
    known.seal()
    assert len(known) == 300
    assert all(fp.hex() in known for fp in stored)


def test_known_fingerprints_check_that_what_was_announced_arrived() -> None:
    value = bytes.fromhex("0123456789abcdef")
    short = KnownFingerprints(16)
    short.add(value)
    with pytest.raises(ValueError, match="1 of 2 announced values arrived"):
        short.seal()
    with pytest.raises(ValueError, match="more values than the 1 announced"):
        KnownFingerprints(8).add(value * 2)
