"""Unit tests of the record models: both input shapes, every payout rule, precise reject reasons."""

from __future__ import annotations

import pytest

from include.offer_sync.models import (
    CAMPAIGN_COLUMNS,
    Advertiser,
    Campaign,
    advertiser_row,
    campaign_row,
    validate_page,
)
from tests.conftest import SPEC_FIXTURE

REAL_CAMPAIGN = {
    "id": 4021, "hashId": "aZ3k", "title": "Shop & Save – Summer", "description": "Line 1\nLine 2",
    "kpi": "first purchase", "advertiserId": "65a1b2c3d4e5f60718293a4b", "status": "active",
    "visibility": "public", "currency": "EUR", "commModel": "cpa",
    "url": "https://t.example/click?o=4021&c={click_id}", "previewUrl": "https://shop.example",
    "geo": ["DE", "AT"], "device": ["mobile"], "os": ["ios"], "categories": ["Retail"],
    "payouts": [
        {"_id": "p1", "model": "cpa", "revenue": 12.5, "payout": 9.0, "currency": "EUR", "geo": ["DE"],
         "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-02T10:00:00.000Z"},
        {"_id": "p2", "model": "cpa", "revenue": 10, "payout": 7.5, "geo": ["AT"]},
    ],
    "created": "2024-03-01T10:00:00.000Z", "modified": None,
}  # fmt: skip


def test_real_v2_campaign_keeps_every_payout_rule() -> None:
    valid, rejects = validate_page(Campaign, [REAL_CAMPAIGN])
    assert rejects == []
    (campaign,) = valid
    assert campaign.id == "4021"
    assert campaign.advertiser_ref == "65a1b2c3d4e5f60718293a4b"
    assert [r.payout for r in campaign.payouts] == [9.0, 7.5]
    assert [r.currency for r in campaign.payouts] == ["EUR", "EUR"]  # rule 2 inherits the campaign's
    row = dict(zip(CAMPAIGN_COLUMNS, campaign_row(campaign), strict=True))
    assert row["payout"] == 9.0
    assert row["revenue"] == 12.5
    assert '"rule_id":"p2"' in row["payouts"]


def test_spec_fixture_shape_is_folded_into_the_v2_shape() -> None:
    (campaign,), rejects = validate_page(Campaign, SPEC_FIXTURE["campaigns"])
    assert rejects == []
    assert (campaign.id, campaign.title, campaign.advertiser_ref) == ("camp_123", "Test Campaign", "adv_001")
    assert [(r.payout, r.currency) for r in campaign.payouts] == [(5.0, "USD")]
    (advertiser,), _ = validate_page(Advertiser, SPEC_FIXTURE["advertisers"])
    assert (advertiser.id, advertiser.name, advertiser.category) == ("adv_001", "Test Brand", "E-commerce")


def test_missing_currency_means_usd() -> None:
    record = {k: v for k, v in REAL_CAMPAIGN.items() if k != "currency"}
    record["payouts"] = [{"payout": 1}]
    (campaign,), _ = validate_page(Campaign, [record])
    assert campaign.currency == "USD"
    assert campaign.payouts[0].currency == "USD"


@pytest.mark.parametrize(
    ("change", "expected_reason"),
    [
        ({"title": None}, "title: Input should be a valid string"),
        ({"title": "   "}, "title: must not be blank"),
        ({"title": "a" * 600}, "title: String should have at most 500 characters"),
        ({"title": "bad\x07bell"}, "title: contains control characters"),
        ({"advertiserId": None}, "advertiserId: Input should be a valid string (got None)"),
        ({"id": {"x": 1}}, "id: Input should be a valid string"),
        ({"id": True}, "id: Input should be a valid string (got True)"),
        ({"id": 1.5}, "id: Input should be a valid string (got 1.5)"),
        ({"id": "a\ud800b"}, "id: Input should be a valid string, unable to parse raw data as a unicode string"),
        ({"geo": ["US", "G\x00B"]}, "geo.1: contains control characters"),
        ({"payouts": [{"payout": 1, "_id": "r\x1b1"}]}, "payouts.0._id: contains control characters"),
        ({"description": "ok\ttabs\nnewlines but a \x00 NUL"}, "description: contains control characters"),
        ({"currency": "XXQ"}, "currency: 'XXQ' is not an ISO 4217 currency code"),
        ({"payouts": [{"payout": -1}]}, "payouts.0.payout: Input should be greater than or equal to 0"),
        ({"payouts": [{"payout": "NaN"}]}, "payouts.0.payout: Input should be a finite number"),
        ({"payouts": [{"payout": "Infinity"}]}, "payouts.0.payout: Input should be a finite number"),
        ({"payouts": [{"payout": "abc"}]}, "payouts.0.payout: Input should be a valid number"),
        ({"payouts": [{"payout": 1, "currency": "usdollar"}]}, "payouts.0.currency: 'usdollar' is not an ISO"),
        ({"created": "yesterday"}, "created: Input should be a valid datetime"),
    ],
)
def test_invalid_campaign_is_rejected_with_field_and_problem(change: dict, expected_reason: str) -> None:
    record = {**REAL_CAMPAIGN, **change}
    good = {**REAL_CAMPAIGN, "id": 9999}
    valid, rejects = validate_page(Campaign, [good, record, {**good, "id": 10000}])
    assert [c.id for c in valid] == ["9999", "10000"], "a bad neighbour must not cost good records"
    assert len(rejects) == 1
    assert expected_reason in rejects[0].reason
    assert rejects[0].raw.startswith("{")


def test_missing_required_fields_are_named() -> None:
    _, (reject,) = validate_page(Campaign, [{"id": 5}])
    assert "title: Field required" in reject.reason
    assert "advertiserId: Field required" in reject.reason
    assert reject.record_key == "5"


def test_a_record_that_is_not_an_object_is_rejected() -> None:
    _, rejects = validate_page(Campaign, ["text", 42, None, ["list"]])
    assert [r.reason for r in rejects] == [
        "record: a campaign must be a JSON object, got a string (got 'text')",
        "record: a campaign must be a JSON object, got a number (got 42)",
        "record: a campaign must be a JSON object, got null (got None)",
        "record: a campaign must be a JSON object, got an array",
    ]


def test_hostile_but_valid_names_are_kept_byte_for_byte() -> None:
    names = ["O'Brien \"Deals\"", "'; DROP TABLE offers; --", "<img src=x onerror=alert(1)>", "Café 🚀 Größe"]
    records = [{**REAL_CAMPAIGN, "id": i, "title": n} for i, n in enumerate(names)]
    valid, rejects = validate_page(Campaign, records)
    assert rejects == []
    assert [c.title for c in valid] == names


def test_every_problem_of_a_record_is_reported_at_once() -> None:
    record = {**REAL_CAMPAIGN, "title": "bad\x07", "currency": "XXQ", "geo": ["\x01"]}
    _, (reject,) = validate_page(Campaign, [record])
    assert "title: contains control characters" in reject.reason
    assert "currency: 'XXQ' is not an ISO 4217 currency code" in reject.reason
    assert "geo.0: contains control characters" in reject.reason


def test_integer_ids_become_strings_and_descriptions_keep_whitespace() -> None:
    record = {**REAL_CAMPAIGN, "id": 77.0, "advertiserId": 1001, "description": "a\tb\r\nc"}
    (campaign,), _ = validate_page(Campaign, [record])
    assert (campaign.id, campaign.advertiser_ref, campaign.description) == ("77", "1001", "a\tb\r\nc")


def test_content_hash_changes_with_content_not_with_key_order() -> None:
    (a,), _ = validate_page(Campaign, [REAL_CAMPAIGN])
    (b,), _ = validate_page(Campaign, [dict(reversed(list(REAL_CAMPAIGN.items())))])
    changed = {**REAL_CAMPAIGN, "payouts": [{**REAL_CAMPAIGN["payouts"][0], "payout": 9.01}]}
    (c,), _ = validate_page(Campaign, [changed])
    assert campaign_row(a)[-1] == campaign_row(b)[-1]
    assert campaign_row(a)[-1] != campaign_row(c)[-1]


def test_advertiser_keeps_every_id_it_offers() -> None:
    (adv,), _ = validate_page(Advertiser, [{"id": 1001, "_id": "65a1b2c3d4e5f60718293a4b", "hashId": "h1",
                                           "name": "Acme", "currency": "usd", "tags": ["x"]}])  # fmt: skip
    assert (adv.id, adv.long_id, adv.hash_id, adv.currency) == ("1001", "65a1b2c3d4e5f60718293a4b", "h1", "USD")
    assert advertiser_row(adv)[0] == "1001"
