"""Unit tests of the record models: both input shapes, every payout rule, precise reject reasons."""

from __future__ import annotations

import pytest

from include.offer_sync.trackier.models import (
    ADVERTISER_COLUMNS,
    CAMPAIGN_COLUMNS,
    Advertiser,
    Campaign,
    advertiser_row,
    campaign_row,
    validate_page,
)
from tests.helpers import SPEC_FIXTURE

REAL_CAMPAIGN = {
    "id": 4021,
    "hashId": "aZ3k",
    "title": "Shop & Save – Summer",
    "description": "Line 1\nLine 2",
    "kpi": "first purchase",
    "advertiserId": "65a1b2c3d4e5f60718293a4b",
    "status": "active",
    "visibility": "public",
    "currency": "EUR",
    "commModel": "cpa",
    "url": "https://t.example/click?o=4021&c={click_id}",
    "previewUrl": "https://shop.example",
    "geo": ["DE", "AT"],
    "device": ["mobile"],
    "os": ["ios"],
    "categories": ["Retail"],
    "payouts": [
        {
            "_id": "p1",
            "model": "cpa",
            "revenue": 12.5,
            "payout": 9.0,
            "currency": "EUR",
            "geo": ["DE"],
            "created": "2024-03-01T10:00:00.000Z",
            "modified": "2024-03-02T10:00:00.000Z",
        },
        {"_id": "p2", "model": "cpa", "revenue": 10, "payout": 7.5, "geo": ["AT"]},
    ],
    "created": "2024-03-01T10:00:00.000Z",
    "modified": None,
}


def test_real_v2_campaign_keeps_every_payout_rule() -> None:
    valid, rejects = validate_page(Campaign, [REAL_CAMPAIGN])
    assert rejects == []
    (campaign,) = valid
    assert campaign.id == "4021"
    assert campaign.advertiser_ref == "65a1b2c3d4e5f60718293a4b"
    assert [r["payout"] for r in campaign.payouts] == [9.0, 7.5]
    assert [r["currency"] for r in campaign.payouts] == ["EUR", "EUR"]  # rule 2 inherits the campaign's
    row = dict(zip(CAMPAIGN_COLUMNS, campaign_row(campaign, "0123456789abcdef"), strict=True))
    assert row["payout"] == 9.0
    assert row["revenue"] == 12.5
    assert '"rule_id":"p2"' in row["payouts"]


def test_spec_fixture_shape_is_folded_into_the_v2_shape() -> None:
    (campaign,), rejects = validate_page(Campaign, SPEC_FIXTURE["campaigns"])
    assert rejects == []
    assert (campaign.id, campaign.title, campaign.advertiser_ref) == ("camp_123", "Test Campaign", "adv_001")
    assert [(r["payout"], r["currency"]) for r in campaign.payouts] == [(5.0, "USD")]
    (advertiser,), _ = validate_page(Advertiser, SPEC_FIXTURE["advertisers"])
    assert (advertiser.id, advertiser.name, advertiser.category) == ("adv_001", "Test Brand", "E-commerce")


def test_missing_currency_means_usd() -> None:
    record = {k: v for k, v in REAL_CAMPAIGN.items() if k != "currency"}
    record["payouts"] = [{"payout": 1}]
    (campaign,), _ = validate_page(Campaign, [record])
    assert campaign.currency == "USD"
    assert campaign.payouts[0]["currency"] == "USD"


def test_stored_payout_rules_have_every_key_in_order_rounded_and_nothing_else() -> None:
    """``offers.payouts`` is the validated rules as they are: six keys, absent ones null (or []),
    keys Trackier adds dropped, amounts at the 6 decimals numeric(18,6) keeps, ids as text; and the
    caller's record is left as it came (it is what a reject would store)."""
    rules = [
        {"payout": 1.23456789, "revenue": 2.0000004, "extra": {"nested": True}, "_id": 77, "geo": ["FR"]},
        {"geo": ["BE"], "currency": "chf", "model": "cpl", "payout": 3},
    ]
    record = {**REAL_CAMPAIGN, "payouts": rules}
    (campaign,), rejects = validate_page(Campaign, [record])
    assert rejects == []
    row = dict(zip(CAMPAIGN_COLUMNS, campaign_row(campaign, "0123456789abcdef"), strict=True))
    assert row["payouts"] == (
        '[{"rule_id":"77","model":null,"payout":1.234568,"revenue":2.0,"currency":"EUR","geo":["FR"]},'
        '{"rule_id":null,"model":"cpl","payout":3.0,"revenue":null,"currency":"CHF","geo":["BE"]}]'
    )
    assert (row["payout"], row["revenue"], row["payout_currency"]) == (1.234568, 2.0, "EUR")
    assert record["payouts"] is rules
    assert (rules[0]["_id"], rules[0]["payout"], rules[1]["currency"]) == (77, 1.23456789, "chf")


@pytest.mark.parametrize(
    ("change", "expected_reason"),
    [
        ({"title": None}, "title: Input should be a valid string"),
        ({"title": "   "}, "title: must not be blank"),
        ({"title": "a" * 600}, "title: String should have at most 500 characters"),
        ({"title": "\x07\t\r\n"}, "title: must not be blank (it holds only whitespace and control characters: "),
        ({"title": "bad\x00NUL"}, "title: contains a NUL character (\\x00), which PostgreSQL cannot store"),
        ({"title": "a\ud800b"}, "title: contains a lone surrogate, which is not Unicode text"),
        ({"advertiserId": None}, "advertiserId: Input should be a valid string (got None)"),
        ({"id": {"x": 1}}, "id: Input should be a valid string"),
        ({"id": True}, "id: Input should be a valid string (got True)"),
        ({"id": 1.5}, "id: Input should be a valid string (got 1.5)"),
        ({"id": "a\ud800b"}, "id: contains a lone surrogate, which is not Unicode text"),
        ({"id": "77\t"}, "id: contains control characters (got '77\\t'); an id is a join key"),
        ({"hashId": "aZ\r\n"}, "hashId: contains control characters"),
        ({"advertiserId": "65a1\x85"}, "advertiserId: contains control characters"),
        ({"geo": ["US", "G\x00B"]}, "geo.1: contains a NUL character"),
        ({"payouts": [{"payout": 1, "_id": "r\x1b1"}]}, "payouts.0._id: contains control characters"),
        ({"payouts": [{"payout": 1, "model": "c\x00pa"}]}, "payouts.0.model: contains a NUL character"),
        ({"description": "ok\ttabs\nnewlines but a \x00 NUL"}, "description: contains a NUL character"),
        ({"url": "https://x.example/\x00"}, "url: contains a NUL character"),
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


# Storable text that is odd: kept exactly, in every text field (only ids are stricter).
ODD_TEXT = [
    'O\'Brien "Deals"',
    "'; DROP TABLE offers; --",
    "<img src=x onerror=alert(1)>",
    "Café 🚀 Größe",
    "Tab\there",
    "Line\nbreak",
    "CR\rLF\r\n",
    "\tleading tab",
    "trailing newline\n",
    "bell\x07 esc\x1b[31m del\x7f",
    "C1 \x85 NEL \x9b CSI \x80\x9f",
    "zero\u200bwidth\u200d\ufeff",
    "\u202eRTL override\u202c \u200f",
    "👩‍👩‍👧 🎉",
    "back\\slash \\N \\. \\t",
    "\uffff\ufffe noncharacters",
]


@pytest.mark.parametrize("text", ODD_TEXT)
def test_odd_but_storable_text_is_kept_exactly_in_every_text_field(text: str) -> None:
    record = {
        **REAL_CAMPAIGN,
        "title": text,
        "description": text,
        "status": text,
        "visibility": text,
        "commModel": text,
        "url": text,
        "previewUrl": text,
        "geo": [text],
        "categories": [text],
        "payouts": [{**REAL_CAMPAIGN["payouts"][0], "model": text, "geo": [text]}],
    }
    (campaign,), rejects = validate_page(Campaign, [record])
    assert rejects == []
    row = dict(zip(CAMPAIGN_COLUMNS, campaign_row(campaign, "0123456789abcdef"), strict=True))
    fields = ("title", "description", "status", "visibility", "comm_model", "url", "preview_url")
    assert [row[k] for k in fields] == [text] * len(fields)
    assert campaign.geo == campaign.categories == campaign.payouts[0]["geo"] == [text]
    assert campaign.payouts[0]["model"] == text
    adv = {"id": 5, "name": text, "company": text, "email": text, "category": text, "status": text, "tags": [text]}
    (advertiser,), adv_rejects = validate_page(Advertiser, [adv])
    assert adv_rejects == []
    assert [
        advertiser.name,
        advertiser.company,
        advertiser.email,
        advertiser.category,
        advertiser.status,
        *advertiser.tags,
    ] == [text] * 6


def test_every_problem_of_a_record_is_reported_at_once() -> None:
    record = {**REAL_CAMPAIGN, "title": "bad\x00", "currency": "XXQ", "geo": ["\x00"], "id": "4\n"}
    _, (reject,) = validate_page(Campaign, [record])
    assert "title: contains a NUL character" in reject.reason
    assert "currency: 'XXQ' is not an ISO 4217 currency code" in reject.reason
    assert "geo.0: contains a NUL character" in reject.reason
    assert "id: contains control characters" in reject.reason
    assert reject.record_key is None, "an id that can never be an offer's id files the reject as unidentified"


def test_integer_ids_become_strings_and_descriptions_keep_whitespace() -> None:
    record = {**REAL_CAMPAIGN, "id": 77.0, "advertiserId": 1001, "description": "a\tb\r\nc"}
    (campaign,), _ = validate_page(Campaign, [record])
    assert (campaign.id, campaign.advertiser_ref, campaign.description) == ("77", "1001", "a\tb\r\nc")


def test_campaign_row_carries_the_fingerprint_it_is_given_as_content_hash() -> None:
    (campaign,), _ = validate_page(Campaign, [REAL_CAMPAIGN])
    assert campaign_row(campaign, "00ff00ff00ff00ff")[-1] == "00ff00ff00ff00ff"


def test_advertiser_keeps_every_id_it_offers() -> None:
    (adv,), _ = validate_page(
        Advertiser,
        [
            {
                "id": 1001,
                "_id": "65a1b2c3d4e5f60718293a4b",
                "hashId": "h1",
                "name": "Acme",
                "currency": "usd",
                "tags": ["x"],
            }
        ],
    )
    assert (adv.id, adv.long_id, adv.hash_id, adv.currency) == ("1001", "65a1b2c3d4e5f60718293a4b", "h1", "USD")
    assert advertiser_row(adv)[0] == "1001"


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["IN", "IT"],
        [""],
        ["a,b", "{x}", "NULL", " spaced "],
        ['say "hi"', "plain"],
        ["back\\slash", "ok"],
        ['\\"', '"', "\\"],
        ["tab\there", "new\nline", "é🎉"],
    ],
)
def test_text_arrays_reach_postgresql_exactly_as_sent(values: list[str], sql) -> None:
    """pg_array's one-go join (no quote or backslash) and its escaping path give the same literal
    PostgreSQL reads back as the list itself."""
    from include.offer_sync.trackier.models import pg_array

    assert sql("SELECT %s::text[]", (pg_array(values),)) == [(values,)]


@pytest.mark.parametrize(
    ("sent", "staged"),
    [
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05+00:00"),
        ("2024-01-02T03:04:05.000001Z", "2024-01-02T03:04:05.000001+00:00"),
        ("2024-01-02T03:04:05.1+14:00", "2024-01-01T13:04:05.100000+00:00"),
        ("2024-01-02T03:04:05-15:59", "2024-01-02T19:03:05+00:00"),
        ("2024-01-02T03:04:05", "2024-01-02T03:04:05+00:00"),  # naive: taken as UTC
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00"),
        ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999+00:00"),
    ],
)
def test_timestamps_are_staged_as_iso_text_in_utc(sent: str, staged: str) -> None:
    """Both timestamps reach COPY as ``isoformat()`` text in UTC, four-digit years and six-digit
    fractions included (written by orjson, which must keep producing exactly these strings)."""
    (campaign,), rejects = validate_page(Campaign, [{**REAL_CAMPAIGN, "created": sent, "modified": sent}])
    assert rejects == []
    row = dict(zip(CAMPAIGN_COLUMNS, campaign_row(campaign, "0123456789abcdef"), strict=True))
    assert row["source_created"] == row["source_modified"] == staged
    (advertiser,), _ = validate_page(Advertiser, [{"id": 1, "name": "A", "created": sent}])
    assert advertiser_row(advertiser)[ADVERTISER_COLUMNS.index("source_created")] == staged
