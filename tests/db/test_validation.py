"""Spec case 3 (Data Validation): bad records are rejected with reasons, good ones stored exactly.

The records travel as JSON from the fake Trackier over HTTP through the real client, validation,
the staging COPY, the sweep checks and the merge into a fresh PostgreSQL database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from devtools.fake_trackier import Catalogue
from devtools.fake_trackier.faults import Knobs, record_is_invalid
from devtools.inline import run_sync
from include.offer_sync.errors import SweepRejectedError
from tests.helpers import trackier_settings

LIVE_TABLES = ("brands", "offers", "offer_audit")

ADVERTISERS = [
    {"id": "adv-1", "name": 'O\'Brien & "Sons" <b>Ltd</b> 🎉', "category": "E-commerce"},
    {"id": "adv-2", "name": "Robert'); DROP TABLE brands;--"},
    {"id": "adv-3", "name": "\u202eRTL override\u200d zero\u200bwidth \\N \\. %s"},
    {"id": "adv-bad", "name": "   "},  # blank name: rejected, so its campaign is an orphan
]


def _campaign(cid: Any, title: Any = None, adv: str = "adv-1", payout: Any = 1.5, **extra: Any) -> dict[str, Any]:
    record = {
        "id": cid,
        "advertiserId": adv,
        "title": f"Campaign {cid}" if title is None else title,
        "currency": "USD",
        "payouts": [{"payout": payout, "currency": "USD"}],
    }
    record.update(extra)
    return record


# Valid records whose text must come back byte for byte.
HOSTILE_TITLES = {
    "1": 'O\'Reilly "quoted" `back` \\ back\\\\slash',
    "2": "'; DROP TABLE offers; --",
    "3": "<script>alert('x')</script> &amp; &lt;b&gt; <img src=x onerror=alert(1)>",
    "4": "Emoji 🎉🔥 — naïve café 中文 العربية 👩‍👩‍👧 \U0001f600",
    "5": "%s %(name)s {0} {placeholder} $1 \\N \\. COPY escapes",
    "6": "x" * 500,  # exactly the length limit
}
VALID = [
    *[_campaign(int(cid), title, adv=f"adv-{int(cid) % 3 + 1}") for cid, title in HOSTILE_TITLES.items()],
    _campaign(7, description="line 1\nline 2\ttabbed\r\nend"),
    _campaign(8, payout=0),
    _campaign(9, payout=1_000_000_000, geo=["US", 'A"B', "{x,y}", "NULL", "\\", "a,b"]),
    _campaign(10, created="2000-01-01T00:00:00+16:00"),  # an offset PostgreSQL refuses: stored in UTC
]

# Invalid records: id -> (record, a fragment the reject reason must contain).
INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "101": (_campaign(101, title=123), "title: Input should be a valid string"),
    "103": (_campaign(103, payout="abc"), "payouts.0.payout: Input should be a valid number"),
    "104": ({k: v for k, v in _campaign(104).items() if k != "title"}, "title: Field required"),
    "105": ({k: v for k, v in _campaign(105).items() if k != "advertiserId"}, "advertiserId: Field required"),
    "106": (_campaign(106, payout=-5), "payouts.0.payout: Input should be greater than or equal to 0"),
    "107": (_campaign(107), "payouts.0.payout: Input should be a finite number"),  # NaN, corrupted by the fake
    "108": (_campaign(108), "payouts.0.payout: Input should be a finite number"),  # Infinity, likewise
    "109": (_campaign(109, currency="XXQ"), "currency: 'XXQ' is not an ISO 4217 currency code"),
    "110": (_campaign(110, title="t" * 100_000), "title: String should have at most 500 characters"),
    "111": (_campaign(111, title="Bad\x00title\x07bell"), "title: contains a NUL character"),
    "112": (_campaign(112, adv="adv-nobody"), "advertiserId: adv-nobody matches no advertiser"),
    "113": (_campaign(113, adv="adv-bad"), "advertiserId: adv-bad matches no advertiser"),
    "114": (_campaign(114, geo="US"), "geo: Input should be a valid list"),
    "115": (_campaign(115, payout=True), "payouts.0.payout: must be a number, got a boolean"),
    "116": (_campaign(116, created="0001-01-01T00:00:00+01:00"), "created: 0001-01-01T00:00:00+01:00 is out of range"),
}
# Invalid records without a usable id (filed with record_key NULL).
UNIDENTIFIED = [
    ({"advertiserId": "adv-1", "title": "no id at all", "payouts": [{"payout": 1}]}, "id: Field required"),
    (_campaign({"nested": 1}), "id: Input should be a valid string"),
    (_campaign("abc\x00def"), "id: contains control characters"),
]
# The same campaign twice in one sweep, on different pages.
DUPLICATES_FIRST = [
    _campaign(200, "Dup newer (read first)", modified="2024-05-02T00:00:00.000Z"),
    _campaign(201, "First read", modified=None),
]
DUPLICATES_LATER = [
    _campaign(200, "Dup older (read last)", modified="2024-05-01T00:00:00.000Z"),
    _campaign(201, "Last read", modified=None),
]


def _mixed_fixture() -> dict[str, list[Any]]:
    invalid = [record for record, _ in INVALID.values()]
    campaigns = [
        *DUPLICATES_FIRST,
        *VALID[:5],
        *invalid[:7],
        *[r for r, _ in UNIDENTIFIED],
        *VALID[5:],
        *invalid[7:],
        *DUPLICATES_LATER,
    ]
    return {"advertisers": ADVERTISERS, "campaigns": campaigns}


def test_case_3_data_validation_mixed_batch_stores_the_valid_and_rejects_the_invalid_with_reasons(
    fake_trackier, offers_db, sql
) -> None:
    server = fake_trackier(
        Catalogue.from_fixture(_mixed_fixture()),
        invalid_ids=[107, 108],
        nan_literal=True,
        invalid_kind={"107": "nan_payout", "108": "infinity_payout"},
    )
    result = run_sync(offers_db, trackier_settings(server, page_size=5), "run-mixed", max_error_rate=0.9)

    # Counts: 12 distinct valid campaigns, 2 duplicates, 18 rejected campaigns + 1 rejected advertiser.
    assert result["status"] == "completed_with_errors"
    assert (result["added"], result["duplicates"], result["rejected"]) == (12, 2, 19)
    assert (result["campaigns_processed"], result["advertisers_processed"]) == (32, 4)
    assert (result["brands_added"], result["error_rate"]) == (3, round(19 / 36, 6))
    assert result["complete_sweep"] is False, "records without a usable id make the sweep incomplete"
    assert "3 rejected records had no usable id" in result["problems"]

    # Every invalid record is kept raw with a reason that names the field.
    rejects = sql("SELECT entity, record_key, reason, raw FROM sync_rejects WHERE run_id = 'run-mixed'")
    by_key = {key: (entity, reason, raw) for entity, key, reason, raw in rejects if key is not None}
    assert set(by_key) == {*INVALID, "adv-bad"}
    for key, (_, fragment) in INVALID.items():
        entity, reason, raw = by_key[key]
        assert entity == "campaigns"
        assert fragment in reason, (key, reason)
        assert json.loads(raw)["id"] in (int(key), key)  # orphans keep a rebuilt excerpt
    assert by_key["adv-bad"][:2] == ("advertisers", "name: must not be blank")
    assert len(by_key["110"][2]) > 100_000, "the raw record is kept whole for inspection"
    unidentified = sorted(reason for _, key, reason, _ in rejects if key is None)
    assert len(unidentified) == 3
    for (_, fragment), reason in zip(sorted(UNIDENTIFIED, key=lambda u: u[1]), unidentified, strict=True):
        assert fragment in reason

    # Valid records, hostile text included, byte for byte.
    rows = {r[0]: r[1:] for r in sql("SELECT trackier_id, title, convert_to(title, 'UTF8') FROM offers")}
    assert set(rows) == {*(str(r["id"]) for r in VALID), "200", "201"}
    for cid, title in HOSTILE_TITLES.items():
        assert rows[cid] == (title, title.encode())
    assert sql("SELECT description FROM offers WHERE trackier_id = '7'") == [("line 1\nline 2\ttabbed\r\nend",)]
    assert sql("SELECT payout FROM offers WHERE trackier_id IN ('8', '9') ORDER BY trackier_id") == [
        (Decimal("0E-6"),),
        (Decimal("1000000000.000000"),),
    ]
    assert sql("SELECT geo FROM offers WHERE trackier_id = '9'") == [(["US", 'A"B', "{x,y}", "NULL", "\\", "a,b"],)]
    brands = dict(sql("SELECT trackier_id, convert_to(name, 'UTF8') FROM brands"))
    assert brands == {a["id"]: a["name"].encode() for a in ADVERTISERS[:3]}
    # Duplicates: the latest `modified` wins, else the one read last; the loser is counted, not stored.
    assert sql("SELECT trackier_id, title FROM offers WHERE trackier_id IN ('200', '201') ORDER BY 1") == [
        ("200", "Dup newer (read first)"),
        ("201", "Last read"),
    ]
    # The catalogue's tables are intact (the SQL in the names was data, nothing else).
    assert sql("SELECT count(*) FROM offers") == [(12,)]
    assert sql("SELECT source_created = '1999-12-31T08:00:00Z' FROM offers WHERE trackier_id = '10'") == [(True,)]


def test_case_3_data_validation_invalid_rate_rejects_exactly_the_corrupted_records(
    fake_trackier, offers_db, sql
) -> None:
    """``invalid_rate``: every kind of corruption the fake knows, each rejected and filed under its field."""
    catalogue = Catalogue(6, 400, seed=19)
    server = fake_trackier(catalogue, invalid_rate=0.08, fault_seed=5)
    knobs = Knobs(invalid_rate=0.08, fault_seed=5)
    kinds = {str(cid): record_is_invalid(knobs, cid) for cid in catalogue.campaign_ids()}
    corrupted = {cid: kind for cid, kind in kinds.items() if kind is not None}
    assert len(set(corrupted.values())) >= 8, "the seed should exercise most corruption kinds"

    result = run_sync(offers_db, trackier_settings(server, page_size=50), "run-rate", max_error_rate=0.25)

    assert result["rejected"] == len(corrupted)
    assert result["added"] == 400 - len(corrupted)
    assert result["status"] == "completed_with_errors"
    field_of = {
        "missing_title": "title",
        "missing_id": "id",
        "missing_advertiser_id": "advertiserId",
        "payout_string": "payouts.0.payout",
        "id_object": "id",
        "negative_payout": "payouts.0.payout",
        "nan_payout": "payouts.0.payout",
        "infinity_payout": "payouts.0.payout",
        "unknown_currency": "currency",
        "long_title": "title",
        "control_chars": "title",
        "orphan_advertiser": "advertiserId",
    }
    rejects = sql("SELECT record_key, reason FROM sync_rejects WHERE run_id = 'run-rate'")
    keyed = {key: reason for key, reason in rejects if key is not None}
    for cid, kind in corrupted.items():
        if kind in ("missing_id", "id_object"):
            continue
        assert keyed[cid].startswith(field_of[kind] + ":"), (cid, kind, keyed[cid])
    anonymous = [reason for key, reason in rejects if key is None]
    assert len(anonymous) == sum(k in ("missing_id", "id_object") for k in corrupted.values())
    assert all(reason.startswith("id:") for reason in anonymous)
    stored = {r[0] for r in sql("SELECT trackier_id FROM offers")}
    assert stored == {cid for cid, kind in kinds.items() if kind is None}


def test_case_3_data_validation_duplicate_ids_across_pages_are_counted_once(fake_trackier, offers_db, sql) -> None:
    """``duplicate_ids``: each page repeats the previous page's last record; one row each, all counted."""
    catalogue = Catalogue(3, 100, seed=4)
    server = fake_trackier(catalogue, pagination="page", duplicate_ids=True)
    result = run_sync(offers_db, trackier_settings(server, page_size=20, pagination="page"), "run-dup")

    assert result["duplicates"] == 4  # pages 2..5 each start with a repeat
    assert (result["added"], result["campaigns_processed"], result["rejected"]) == (100, 104, 0)
    assert sql("SELECT count(*), count(DISTINCT trackier_id) FROM offers") == [(100, 100)]
    # More records than the total promised: reported, and no deactivation from such a sweep.
    assert "campaigns: the API reported 100 records, the sweep received 104" in result["problems"]
    assert result["complete_sweep"] is False


def _dump(sql: Callable[..., list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sql(f"SELECT * FROM {t} ORDER BY id") for t in LIVE_TABLES}


@pytest.mark.parametrize("garbage", ["invalid_records", "failed_pages"])
def test_case_3_data_validation_error_rate_over_the_limit_leaves_the_catalogue_byte_identical(
    garbage, fake_trackier, offers_db, sql
) -> None:
    catalogue = Catalogue(5, 200, seed=23)
    server = fake_trackier(catalogue)
    api = trackier_settings(server, page_size=20)
    assert run_sync(offers_db, api, "run-good")["added"] == 200
    before = _dump(sql)

    # The feed goes bad (and the catalogue really changed too: nothing of it may land either).
    catalogue.remove_campaigns(count=20)
    catalogue.set_advertiser(catalogue.advertiser_ids()[0], name="Changed while broken")
    if garbage == "invalid_records":
        server.configure(invalid_rate=0.3, fault_seed=2)
    else:
        server.configure(script=[{"path": "/v2/campaigns", "page": p, "times": -1, "fault": "500"} for p in (2, 5)])
    with pytest.raises(SweepRejectedError) as error:
        run_sync(offers_db, api, "run-bad")

    message = str(error.value)
    assert "error-rate circuit breaker" in message
    assert "over the limit of 5.00%" in message
    assert "were not touched" in message
    assert "run-bad" in message
    assert _dump(sql) == before, "brands, offers and the audit trail must be byte-identical"
    ((status, reason, result),) = sql("SELECT status, error, result FROM sync_runs WHERE run_id = 'run-bad'")
    assert (status, reason) == ("failed", message)
    assert result["status"] == "failed"
    assert result["error_rate"] > 0.05
    rejects = sql("SELECT count(*) FROM sync_rejects WHERE run_id = 'run-bad'")[0][0]
    failed = sql("SELECT count(*) FROM sync_page_errors WHERE run_id = 'run-bad' AND kind = 'failed_page'")[0][0]
    if garbage == "invalid_records":
        assert rejects == result["rejected"] > 0, "the rejects are kept for inspection"
    else:
        assert (rejects, failed) == (0, 2)

    # The feed recovers: the next run applies everything the broken one could not.
    server.configure(invalid_rate=0.0, script=[])
    healed = run_sync(offers_db, api, "run-healed")
    assert (healed["status"], healed["deactivated"], healed["brands_updated"]) == ("completed", 20, 1)
