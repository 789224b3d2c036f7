"""Tests of the fake Trackier server: real HTTP against an in-thread server.

The fake is the yardstick for the client's tests and the benchmark, so what matters here is that
it is deterministic, that both pagination styles enumerate every record exactly once, and that
every fault knob is observable from the outside, exactly as a client would see it.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from devtools.fake_trackier import FAULT_KINDS, INVALID_KINDS, Catalogue, FakeTrackier
from devtools.fake_trackier.catalogue import _RangeKeys
from devtools.fake_trackier.faults import ORPHAN_ADVERTISER_ID
from devtools.fake_trackier.server import encode_token
from tests.fake.conftest import KEY

REPO = Path(__file__).resolve().parents[2]
HEX24 = set("0123456789abcdef")

FIXTURE = {
    "advertisers": [
        {"id": "adv_001", "name": "Test Brand", "category": "E-commerce"},
        {"id": "adv_002", "name": "Café Größe 🚀", "category": "Food"},
    ],
    "campaigns": [
        {
            "id": "camp_123",
            "advertiser_id": "adv_001",
            "name": "Test Campaign",
            "payout": {"amount": 5.0, "currency": "USD"},
        },
        {
            "id": "camp_007",
            "advertiser_id": "adv_002",
            "name": 'O\'Reilly "Deal"',
            "payout": {"amount": 2.5, "currency": "EUR"},
        },
        {"id": "camp_050", "advertiser_id": "adv_001", "name": "Third", "payout": {"amount": 1.25, "currency": "USD"}},
    ],
}


def get(s: requests.Session, fake: FakeTrackier, path: str, **params: Any) -> requests.Response:
    return s.get(fake.url + path, params=params, timeout=10)


def sweep_pages(
    s: requests.Session, fake: FakeTrackier, limit: int, path: str = "/v2/campaigns", **params: Any
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Page-style sweep until an empty page; returns ids and the pagination objects seen."""
    ids: list[Any] = []
    seen: list[dict[str, Any]] = []
    kind = path.rsplit("/", 1)[-1]
    for page in range(1, 10_000):
        body = get(s, fake, path, page=page, limit=limit, **params).json()
        seen.append(body["pagination"])
        if not body[kind]:
            return ids, seen
        ids.extend(r["id"] for r in body[kind])
    raise AssertionError("page sweep did not end")


def sweep_cursor(
    s: requests.Session, fake: FakeTrackier, limit: int, path: str = "/v2/campaigns", **params: Any
) -> tuple[list[Any], list[str]]:
    """Cursor sweep until an empty nextPageToken; returns ids and the tokens seen."""
    ids: list[Any] = []
    tokens: list[str] = []
    kind = path.rsplit("/", 1)[-1]
    token = ""
    for _ in range(10_000):
        query = {"limit": limit, **params}
        if token:
            query["pageToken"] = token
        body = get(s, fake, path, **query).json()
        assert set(body["pagination"]) == {"perPage", "nextPageToken"}
        ids.extend(r["id"] for r in body[kind])
        token = body["pagination"]["nextPageToken"]
        if not token:
            return ids, tokens
        tokens.append(token)
    raise AssertionError("cursor sweep did not end")


# --------------------------------------------------------------------------- the catalogue


def test_same_seed_gives_byte_identical_records_and_other_seed_differs() -> None:
    a, b, c = Catalogue(10, 500, seed=7), Catalogue(10, 500, seed=7), Catalogue(10, 500, seed=8)
    assert orjson.dumps(list(a.iter_campaigns())) == orjson.dumps(list(b.iter_campaigns()))
    assert orjson.dumps(list(a.iter_advertisers())) == orjson.dumps(list(b.iter_advertisers()))
    assert orjson.dumps(list(a.iter_campaigns())) != orjson.dumps(list(c.iter_campaigns()))


def test_two_servers_with_the_same_seed_answer_the_same_bytes(session: requests.Session) -> None:
    bodies = []
    for _ in range(2):
        with FakeTrackier(Catalogue(5, 300, seed=3), api_key=KEY) as f:
            bodies.append(get(session, f, "/v2/campaigns", page=2, limit=100).content)
            bodies.append(get(session, f, "/v2/advertisers", page=1, limit=100).content)
    assert bodies[0] == bodies[2]
    assert bodies[1] == bodies[3]


def test_advertiser_records_have_the_v2_shape_and_awkward_names() -> None:
    cat = Catalogue(200, 0)
    advertisers = list(cat.iter_advertisers())
    assert [a["id"] for a in advertisers] == list(range(1000, 1200))
    for a in advertisers:
        assert set(a) == set("id _id hashId name company email status currency tags created modified".split())
        assert len(a["_id"]) == 24
        assert set(a["_id"]) <= HEX24
        assert a["status"] == "active"
        assert len(a["currency"]) == 3
        assert a["created"].endswith("Z")
        assert len(a["created"]) == len("2024-01-02T03:04:05.000Z")
    assert len({a["_id"] for a in advertisers}) == 200
    names = [a["name"] for a in advertisers]
    assert any("'" in n for n in names)
    assert any(not n.isascii() for n in names)
    assert any(any(ord(ch) > 0xFFFF for ch in n) for n in names)  # an emoji (astral plane)
    assert len(set(names)) > 150


def test_campaign_records_have_the_v2_shape() -> None:
    cat = Catalogue(13, 2000)
    adv_ids = {a["_id"] for a in cat.iter_advertisers()}
    campaigns = list(cat.iter_campaigns())
    assert [c["id"] for c in campaigns] == list(range(100_000, 102_000))
    statuses = [c["status"] for c in campaigns]
    assert statuses.count("active") > len(campaigns) / 2
    assert set(statuses) == {"active", "pending", "paused", "disabled", "expired"}
    assert sum("currency" not in c for c in campaigns) > 0  # missing currency means USD
    assert any(c["modified"] is None for c in campaigns)
    assert {len(c["payouts"]) for c in campaigns} == {1, 2, 3}
    assert any(c["geo"] == ["ALL"] for c in campaigns)
    assert any(not c["title"].isascii() for c in campaigns)
    for c in campaigns:
        assert c["advertiserId"] in adv_ids
        assert c["commModel"] in ("cpa", "cpi", "cpc", "cpm", "cps")
        assert c["visibility"] in ("public", "private", "permission")
        assert c["url"].startswith("https://")
        assert c["previewUrl"].startswith("https://")
        assert isinstance(c["hashId"], str)
        assert c["hashId"].isalnum()
        for rule in c["payouts"]:
            assert set(rule) == set("_id model revenue payout currency geo created modified".split())
            assert len(rule["_id"]) == 24
            assert set(rule["_id"]) <= HEX24
            assert 0 < rule["payout"] <= rule["revenue"]
            assert round(rule["payout"], 2) == rule["payout"]
            assert round(rule["revenue"], 2) == rule["revenue"]
            assert rule["model"] == c["commModel"]


def test_range_keys_match_an_explicit_list_under_random_removals() -> None:
    rng = random.Random(5)
    for _ in range(50):
        total = rng.randrange(1, 300)
        removed = sorted(rng.sample(range(total), rng.randrange(0, total)))
        live = [k for k in range(total) if k not in set(removed)]
        space = _RangeKeys(total, removed, set(removed))
        assert space.count() == len(live)
        assert [space.key_at(i) for i in range(len(live) + 1)] == [*live, None]
        assert space.slice(3, 7) == live[3:10]
        assert space.after(-1, 5) == live[:5]
        if live:
            assert space.after(live[len(live) // 2], 4) == live[len(live) // 2 + 1 : len(live) // 2 + 5]


def test_expected_payout_sum_matches_the_served_records() -> None:
    cat = Catalogue(5, 3000)

    def served() -> float:
        return round(sum(c["payouts"][0]["payout"] for c in cat.iter_campaigns()), 2)

    assert cat.expected_payout_sum() == served()
    cat.change_payouts(0.25, seed=3)
    cat.remove_campaigns(count=20)
    cat.add_campaigns(7)
    cat.set_campaign(100_010, payouts=[{"payout": 1.5, "revenue": 2.0}])
    assert cat.expected_payout_sum() == served()


# --------------------------------------------------------------------------- pagination


def test_page_style_lists_each_id_once_with_totals(fake: FakeTrackier, session: requests.Session) -> None:
    ids, seen = sweep_pages(session, fake, limit=1000)
    assert ids == list(range(100_000, 102_345))
    assert seen[0] == {"page": 1, "limit": 1000, "perPage": 1000, "total": 2345, "totalPages": 3}
    assert seen[-1]["page"] == 4  # the page past the end is an empty list, not an error
    advertisers, _ = sweep_pages(session, fake, limit=3, path="/v2/advertisers")
    assert advertisers == list(range(1000, 1007))


def test_cursor_style_enumerates_every_id_once(fake: FakeTrackier, session: requests.Session) -> None:
    ids, tokens = sweep_cursor(session, fake, limit=333)
    assert ids == list(range(100_000, 102_345))
    assert len(tokens) == math.ceil(2345 / 333) - 1
    assert len(set(tokens)) == len(tokens)
    advertisers, _ = sweep_cursor(session, fake, limit=2, path="/v2/advertisers")
    assert advertisers == list(range(1000, 1007))


def test_limit_defaults_clamps_and_validation(fake: FakeTrackier, session: requests.Session) -> None:
    body = get(session, fake, "/v2/campaigns", page=1).json()
    assert len(body["campaigns"]) == 100
    assert body["pagination"]["limit"] == 100
    body = get(session, fake, "/v2/campaigns", page=1, limit=5000).json()
    assert len(body["campaigns"]) == 1000
    assert body["pagination"]["perPage"] == 1000
    assert get(session, fake, "/v2/campaigns", limit=5000).json()["pagination"]["perPage"] == 1000
    for bad in (
        {"limit": 0},
        {"limit": "abc"},
        {"page": 0},
        {"page": -1},
        {"page": "x"},
        {"limit": ""},
        {"pageToken": "not-a-token!"},
        {"pageToken": "YTox"},
    ):
        r = get(session, fake, "/v2/campaigns", **bad)
        assert r.status_code == 400, bad
        assert r.json() == {"success": False, "error": {"code": 20, "message": r.json()["error"]["message"]}}


def test_server_pagination_modes(session: requests.Session) -> None:
    cat = Catalogue(3, 250)
    with FakeTrackier(cat, api_key=KEY, pagination="cursor") as f:
        body = get(session, f, "/v2/campaigns", page=2, limit=100).json()  # page is ignored
        assert [c["id"] for c in body["campaigns"]][:1] == [100_000]
        assert set(body["pagination"]) == {"perPage", "nextPageToken"}
        assert sweep_cursor(session, f, limit=100)[0] == list(range(100_000, 100_250))
    with FakeTrackier(cat, api_key=KEY, pagination="page") as f:
        body = get(session, f, "/v2/campaigns", limit=100).json()  # no page param: page 1
        assert body["pagination"] == {"page": 1, "limit": 100, "perPage": 100, "total": 250, "totalPages": 3}
        f.configure(pagination="both")
        assert "nextPageToken" in get(session, f, "/v2/campaigns", limit=100).json()["pagination"]


def test_advertiser_filter_in_both_styles(fake: FakeTrackier, session: requests.Session) -> None:
    advertisers = list(fake.catalogue.iter_advertisers())
    wanted = {advertisers[2]["_id"], advertisers[5]["_id"]}
    expected = [c["id"] for c in fake.catalogue.iter_campaigns() if c["advertiserId"] in wanted]
    params = {"advertiser[]": sorted(wanted)}
    ids, seen = sweep_pages(session, fake, limit=100, **params)
    assert ids == expected
    assert seen[0]["total"] == len(expected)
    assert sweep_cursor(session, fake, limit=77, **params)[0] == expected
    by_number = get(session, fake, "/v2/campaigns", page=1, limit=1000, **{"advertiser[]": "1002"}).json()
    assert {c["advertiserId"] for c in by_number["campaigns"]} == {advertisers[2]["_id"]}
    nobody = get(session, fake, "/v2/campaigns", page=1, **{"advertiser[]": "f" * 24}).json()
    assert nobody["campaigns"] == []
    assert nobody["pagination"]["total"] == 0


def test_single_campaign_and_not_found(fake: FakeTrackier, session: requests.Session) -> None:
    r = get(session, fake, "/v2/campaigns/100123")
    assert r.status_code == 200
    assert r.json() == {"success": True, "campaign": fake.catalogue.get_campaign(100_123)}
    for missing in ("/v2/campaigns/99", "/v2/campaigns/abc", "/v2/nothing"):
        r = get(session, fake, missing)
        assert r.status_code == 404
        assert r.json() == {"success": False, "error": {"code": 31, "message": "Not found"}}


# --------------------------------------------------------------------------- auth


def test_auth_missing_and_wrong_key_and_query_key(fake: FakeTrackier) -> None:
    r = requests.get(fake.url + "/v2/campaigns", timeout=5)
    assert r.status_code == 401
    assert r.json() == {"success": False, "error": {"code": 12, "message": "Unauthorized"}}
    r = requests.get(fake.url + "/v2/campaigns", headers={"X-Api-Key": "nope"}, timeout=5)
    assert r.status_code == 400
    assert r.json() == {"success": False, "error": {"code": 13, "message": "Invalid API Key"}}
    r = requests.get(fake.url + "/v2/campaigns", params={"apiKey": KEY, "limit": 1}, timeout=5)
    assert r.status_code == 200
    assert len(r.json()["campaigns"]) == 1


def test_the_key_never_appears_in_responses_or_logs() -> None:
    secret = "s3cr3t-KEY-value"
    log = io.StringIO()
    with FakeTrackier(Catalogue(2, 10), api_key=secret, verbose=True, log=log) as f:
        bodies = [
            requests.get(f.url + "/v2/campaigns", params={"apiKey": secret, "page": 1}, timeout=5),
            requests.get(f.url + "/v2/campaigns", params={"apiKey": secret + "x"}, timeout=5),
            requests.get(f.url + "/v2/campaigns", headers={"X-Api-Key": secret}, timeout=5),
            requests.get(f.url + "/_fake/stats", timeout=5),
            requests.post(f.url + "/_fake/config", json={"api_key": secret, "total_lie": 1}, timeout=5),
            requests.get(f.url + "/_fake/config", timeout=5),
        ]
    text = log.getvalue()
    assert "apiKey=***" in text
    assert len(text.splitlines()) == 6
    assert secret not in text
    assert all(secret.encode() not in r.content and secret not in str(r.headers) for r in bodies)


# --------------------------------------------------------------------------- faults


def test_scripted_page_7_fails_twice_then_succeeds_in_both_styles(session: requests.Session) -> None:
    script = [{"path": "/v2/campaigns", "page": 7, "times": 2, "fault": "503"}]
    with FakeTrackier(Catalogue(3, 1000), api_key=KEY, script=script) as f:
        statuses = [get(session, f, "/v2/campaigns", page=7, limit=100).status_code for _ in range(4)]
        assert statuses == [503, 503, 200, 200]
        assert get(session, f, "/v2/campaigns", page=6, limit=100).status_code == 200
        assert f.stats()["script"][0]["fired"] == 2

        f.configure(script=[{"page": 7, "times": 2, "fault": "500"}])  # cursor: the 7th page
        token, statuses, ids = "", [], []
        while True:
            r = get(session, f, "/v2/campaigns", limit=100, **({"pageToken": token} if token else {}))
            statuses.append(r.status_code)
            if r.status_code != 200:
                assert r.json()["error"]["code"] == 51
                continue  # retry the same token
            ids.extend(c["id"] for c in r.json()["campaigns"])
            token = r.json()["pagination"]["nextPageToken"]
            if not token:
                break
        assert statuses == [200] * 6 + [500, 500] + [200] * 4
        assert ids == list(range(100_000, 101_000))


def test_always_failing_script_and_every_script_fault_kind(session: requests.Session) -> None:
    expect = {
        "429": 429,
        "429_retry_after": 429,
        "500": 500,
        "502": 502,
        "503": 503,
        "html_200": 200,
        "truncated": 200,
        "success_false": 200,
        "auth_400": 400,
        "ip_403": 403,
    }
    with FakeTrackier(Catalogue(2, 50), api_key=KEY) as f:
        for fault, status in expect.items():
            f.configure(script=[{"path": "/v2/advertisers", "times": -1, "fault": fault}])
            for _ in range(2):
                assert get(session, f, "/v2/advertisers").status_code == status, fault
            assert get(session, f, "/v2/campaigns").status_code == 200
        assert set(FAULT_KINDS) - set(expect) == {"timeout", "reset", "short_read"}  # tested below


def test_rate_429_with_and_without_retry_after(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(2, 50), api_key=KEY, rate_429=1.0, retry_after=7) as f:
        r = get(session, f, "/v2/campaigns")
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "7"
        assert r.json() == {"success": False, "error": {"code": 40, "message": "Too many requests"}}
        f.configure(retry_after=None)
        assert "Retry-After" not in get(session, f, "/v2/campaigns").headers
        f.configure(rate_429=0.0, script=[{"fault": "429_retry_after", "times": 1}])
        assert get(session, f, "/v2/campaigns").headers["Retry-After"] == "1"
        assert get(session, f, "/v2/campaigns").status_code == 200


def test_rate_5xx_bodies(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(2, 50), api_key=KEY, rate_5xx=1.0) as f:
        seen = {}
        for _ in range(40):
            r = get(session, f, "/v2/campaigns")
            seen[r.status_code] = r
        assert set(seen) == {500, 502, 503}
        assert seen[500].json() == {"success": False, "error": {"code": 51, "message": "Internal error"}}
        assert seen[502].headers["Content-Type"].startswith("text/html")
        assert b"502" in seen[502].content
        assert seen[503].headers["Content-Type"].startswith("text/html")


def test_random_faults_are_reproducible_and_roughly_at_rate(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(2, 50), api_key=KEY) as f:
        runs = []
        for _ in range(2):
            f.configure(rate_5xx=0.3, rate_429=0.1, fault_seed=11)  # configure restarts the draws
            runs.append([get(session, f, "/v2/campaigns").status_code for _ in range(200)])
        assert runs[0] == runs[1]
        failures = sum(s != 200 for s in runs[0])
        assert 40 < failures < 120  # 1 - 0.9 * 0.7 = 37 % expected
        f.configure(fault_seed=12)
        assert [get(session, f, "/v2/campaigns").status_code for _ in range(200)] != runs[0]


def test_timeout_reset_and_short_read_faults(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(2, 50), api_key=KEY, rate_timeout=1.0, timeout_sleep_s=0.6) as f:
        with pytest.raises(requests.exceptions.ReadTimeout):
            session.get(f.url + "/v2/campaigns", timeout=0.15)
        f.configure(rate_timeout=0.0, rate_reset=1.0)
        with pytest.raises(requests.exceptions.ConnectionError):
            get(session, f, "/v2/campaigns")
        f.configure(rate_reset=0.0, rate_short_read=1.0)
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
            get(session, f, "/v2/campaigns").json()
        f.configure(rate_short_read=0.0, script=[{"fault": "timeout", "times": 1}], timeout_sleep_s=0.05)
        assert get(session, f, "/v2/campaigns").status_code == 200  # a patient client gets the page
        stats = f.stats()
        assert stats["faults"]["timeout"] == 2
        assert stats["faults"]["reset"] == 1
        assert stats["by_status"]["reset"] == 1
        assert stats["by_status"]["short_read"] == 1


def test_html_200_truncated_and_success_false(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(2, 50), api_key=KEY, rate_html_200=1.0) as f:
        r = get(session, f, "/v2/campaigns")
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/html")
        f.configure(rate_html_200=0.0, rate_truncated=1.0)
        r = get(session, f, "/v2/campaigns", page=1)
        assert r.status_code == 200
        assert r.content.startswith(b'{"success":true')
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(r.content)
        f.configure(rate_truncated=0.0, rate_success_false=1.0)
        r = get(session, f, "/v2/campaigns")
        assert r.status_code == 200
        assert r.json() == {"success": False, "error": {"code": 51, "message": "Internal error"}}


def test_ip_not_whitelisted_beats_everything(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(2, 50), api_key=KEY, ip_not_whitelisted=True) as f:
        for path in ("/v2/campaigns", "/v2/advertisers", "/v2/campaigns/100001"):
            r = requests.get(f.url + path, timeout=5)  # even without a key
            assert r.status_code == 403
            assert r.json() == {"success": False, "error": {"code": 41, "message": "IP not whitelisted"}}
        assert requests.get(f.url + "/_fake/health", timeout=5).json()["ok"] is True


def test_latency_is_added(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(2, 50), api_key=KEY, latency_ms=120, latency_jitter_ms=10) as f:
        started = time.perf_counter()
        assert get(session, f, "/v2/campaigns").status_code == 200
        assert time.perf_counter() - started >= 0.12


def test_invalid_rate_corrupts_deterministically_by_id(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(3, 1000), api_key=KEY, invalid_rate=0.1, fault_seed=4) as f:
        first = get(session, f, "/v2/campaigns", page=1, limit=1000).content
        again = get(session, f, "/v2/campaigns", page=1, limit=1000).content
        assert first == again
        clean = list(f.catalogue.iter_campaigns())
        served = json.loads(first)["campaigns"]
        assert len(served) == len(clean) == 1000
        changed = [c for c, base in zip(served, clean, strict=True) if c != base]
        assert 60 < len(changed) < 140
        assert f.stats()["faults"]["invalid_records"] == 2 * len(changed)
        # A retried page via cursor sees the same corruption.
        cursor = json.loads(get(session, f, "/v2/campaigns", limit=1000).content)["campaigns"]
        assert cursor == served
        # Advertisers are untouched unless asked for.
        advertisers = get(session, f, "/v2/advertisers", page=1).json()["advertisers"]
        assert advertisers == list(f.catalogue.iter_advertisers())
        f.configure(invalid_rate=1.0, invalid_advertisers=True)
        advertisers = get(session, f, "/v2/advertisers", page=1).json()["advertisers"]
        assert all(a not in list(f.catalogue.iter_advertisers()) for a in advertisers)


def test_every_invalid_kind_via_invalid_ids(session: requests.Session) -> None:
    ids = list(range(100_000, 100_000 + len(INVALID_KINDS)))
    kinds = dict(zip(map(str, ids), INVALID_KINDS, strict=True))
    with FakeTrackier(Catalogue(3, 100), api_key=KEY, invalid_ids=ids, invalid_kind=kinds) as f:
        raw = get(session, f, "/v2/campaigns", page=1, limit=len(ids) + 1).content
        served = json.loads(raw)["campaigns"]
        assert served[-1] == f.catalogue.get_campaign(100_000 + len(ids))  # not listed: untouched
        got = dict(zip(INVALID_KINDS, served, strict=False))
        assert "title" not in got["missing_title"]
        assert "id" not in got["missing_id"]
        assert "advertiserId" not in got["missing_advertiser_id"]
        assert got["payout_string"]["payouts"][0]["payout"] == "abc"
        assert got["id_object"]["id"] == {}
        assert got["negative_payout"]["payouts"][0]["payout"] < 0
        assert got["nan_payout"]["payouts"][0]["payout"] == "NaN"
        assert got["infinity_payout"]["payouts"][0]["payout"] == "Infinity"
        assert got["unknown_currency"]["currency"] == "XXQ"
        assert got["unknown_currency"]["payouts"][0]["currency"] == "XXQ"
        assert len(got["long_title"]["title"]) == 100_000
        assert "\x00" in got["control_chars"]["title"]
        assert "\x1b" in got["control_chars"]["title"]
        assert got["orphan_advertiser"]["advertiserId"] == ORPHAN_ADVERTISER_ID
        assert ORPHAN_ADVERTISER_ID not in {a["_id"] for a in f.catalogue.iter_advertisers()}
        # The single-record endpoint serves the same corruption.
        assert get(session, f, "/v2/campaigns/100006").json()["campaign"] == got["nan_payout"]

        f.configure(nan_literal=True)
        raw = get(session, f, "/v2/campaigns", page=1, limit=len(ids)).content
        assert b'"payout":NaN' in raw
        assert b'"payout":Infinity' in raw
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)  # strict parsers reject it ...
        assert math.isnan(json.loads(raw)["campaigns"][6]["payouts"][0]["payout"])  # ... json does not


def test_duplicate_ids_across_pages(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(3, 250), api_key=KEY, duplicate_ids=True) as f:
        ids, _ = sweep_pages(session, f, limit=100)
        assert ids.count(100_099) == 2
        assert ids.count(100_199) == 2
        assert len(ids) == 252
        assert sorted(set(ids)) == list(range(100_000, 100_250))
        ids, _ = sweep_cursor(session, f, limit=100)
        assert ids.count(100_099) == 2
        assert ids.count(100_199) == 2
        assert len(ids) == 252


def test_change_while_paging_shifts_the_totals(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(3, 300), api_key=KEY, change_while_paging=2) as f:
        ids, seen = sweep_pages(session, f, limit=100)
        assert [p["total"] for p in seen] == [300, 300, 299, 299]
        assert len(ids) == 299
        assert len(set(ids)) == 299
        # offset paging after a removal at the front skips a record that is still live:
        skipped = set(f.catalogue.campaign_ids()) - set(ids)
        assert skipped == {100_200}
        mutation = f.stats()["mutations"][0]
        assert mutation["after"] == 2
        assert mutation["result"]["removed"] == [100_000]
        f.catalogue.restore()
        f.configure(change_while_paging={"after": 1, "op": "add_campaigns", "count": 5})
        ids, _ = sweep_cursor(session, f, limit=100)
        assert ids == list(range(100_000, 100_305))  # keyset cursors pick up the appended ones


def test_repeat_cursor_short_page_and_total_lie(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(3, 500), api_key=KEY, repeat_cursor=2) as f:
        tokens = []
        token = ""
        for _ in range(4):
            params = {"pageToken": token} if token else {}
            body = get(session, f, "/v2/campaigns", limit=100, **params).json()
            token = body["pagination"]["nextPageToken"]
            tokens.append(token)
        assert tokens[1] == tokens[2] == tokens[3]
        assert tokens[0] != tokens[1]

        f.configure(repeat_cursor=None, short_page_at=2, total_lie=5)
        body = get(session, f, "/v2/campaigns", page=2, limit=100).json()
        assert len(body["campaigns"]) == 50
        assert body["pagination"]["total"] == 505
        assert body["pagination"]["totalPages"] == 6
        assert len(get(session, f, "/v2/campaigns", page=5, limit=100).json()["campaigns"]) == 100  # the last
        ids, _ = sweep_cursor(session, f, limit=100)  # cursors lose nothing on a short page
        assert ids == list(range(100_000, 100_500))
        f.configure(short_page_size=0, short_page_at=[2, 3])
        ids, tokens = sweep_cursor(session, f, limit=100)
        assert ids == list(range(100_000, 100_500))
        assert len(tokens) == 6


def _cursor_pages(s: requests.Session, f: FakeTrackier, limit: int, pages: int) -> list[dict[str, Any]]:
    """The first ``pages`` cursor answers (following whatever token comes back), or fewer at the end."""
    bodies: list[dict[str, Any]] = []
    token = ""
    for _ in range(pages):
        body = get(s, f, "/v2/campaigns", limit=limit, **({"pageToken": token} if token else {})).json()
        bodies.append(body)
        token = body["pagination"]["nextPageToken"]
        if not token:
            break
    return bodies


def test_report_total_puts_a_total_on_cursor_pages_or_takes_it_off_numbered_pages(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(3, 250), api_key=KEY, pagination="cursor", report_total=True) as f:
        body = get(session, f, "/v2/campaigns", page=2, limit=100).json()  # page= is still ignored
        assert [c["id"] for c in body["campaigns"]][:1] == [100_000]
        assert body["pagination"]["total"] == 250
        assert body["pagination"]["nextPageToken"]
        f.configure(total_lie=-40)
        assert get(session, f, "/v2/campaigns", limit=100).json()["pagination"]["total"] == 210
        f.configure(pagination="page", report_total=False, total_lie=0)
        body = get(session, f, "/v2/campaigns", page=2, limit=100).json()
        assert [c["id"] for c in body["campaigns"]][:1] == [100_100]
        assert body["pagination"] == {"page": 2, "limit": 100, "perPage": 100}
    with pytest.raises(ValueError, match="report_total"):
        FakeTrackier(Catalogue(1, 1), api_key=KEY, report_total="yes", autostart=False)


def test_serve_at_most_caps_every_page_while_the_pagination_still_speaks_of_the_asked_limit(
    session: requests.Session,
) -> None:
    with FakeTrackier(Catalogue(3, 250), api_key=KEY, serve_at_most=40) as f:
        body = get(session, f, "/v2/campaigns", page=2, limit=100).json()
        assert [c["id"] for c in body["campaigns"]] == list(range(100_040, 100_080))  # page 2 of 40s
        assert body["pagination"] == {"page": 2, "limit": 100, "perPage": 100, "total": 250, "totalPages": 3}
        assert len(get(session, f, "/v2/campaigns", page=1, limit=25).json()["campaigns"]) == 25  # under the cap
        ids, _ = sweep_cursor(session, f, limit=100)  # a cursor loses nothing: its token says where it stopped
        assert ids == list(range(100_000, 100_250))
        assert get(session, f, "/v2/campaigns", limit=100).json()["pagination"]["perPage"] == 100
    with pytest.raises(ValueError, match="serve_at_most"):
        FakeTrackier(Catalogue(1, 1), api_key=KEY, serve_at_most=0, autostart=False)


def test_cursor_stops_after_ends_the_stream_on_a_full_page(session: requests.Session) -> None:
    with FakeTrackier(
        Catalogue(3, 250), api_key=KEY, pagination="cursor", cursor_stops_after=2, report_total=True
    ) as f:
        bodies = _cursor_pages(session, f, limit=100, pages=10)
        assert len(bodies) == 2
        assert [len(b["campaigns"]) for b in bodies] == [100, 100]  # full, yet no next token
        assert bodies[-1]["pagination"]["nextPageToken"] == ""
        assert bodies[-1]["pagination"]["total"] == 250  # while the total says 50 more
        assert f.stats()["faults"] == {"cursor_stops_early": 1}
    with pytest.raises(ValueError, match="cursor_stops_after"):
        FakeTrackier(Catalogue(1, 1), api_key=KEY, cursor_stops_after=0, autostart=False)


def test_repeat_page_after_serves_the_same_records_again_in_both_styles(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(3, 500), api_key=KEY, repeat_page_after=2) as f:
        pages = [get(session, f, "/v2/campaigns", page=n, limit=100).json() for n in (1, 2, 3, 4)]
        ids = [[c["id"] for c in p["campaigns"]] for p in pages]
        assert ids[0] != ids[1] == ids[2] == ids[3]
        assert [p["pagination"]["page"] for p in pages] == [1, 2, 3, 4]  # the asked number, as a server would
        assert pages[3]["pagination"]["total"] == 500
        # Cursors: the token moves on every page, the records stop moving after page 2.
        bodies = _cursor_pages(session, f, limit=100, pages=5)
        tokens = [b["pagination"]["nextPageToken"] for b in bodies]
        assert len(set(tokens)) == 5
        ids = [[c["id"] for c in b["campaigns"]] for b in bodies]
        assert ids[0] != ids[1] == ids[2] == ids[3] == ids[4]
        assert f.stats()["faults"]["repeat_page"] == 2 + 3


def test_redirect_to_a_path_prefix_or_another_host(session: requests.Session) -> None:
    with FakeTrackier(Catalogue(3, 50), api_key=KEY, redirect_to="/moved") as f:
        r = session.get(f.url + "/v2/campaigns?limit=10&page=2", allow_redirects=False, timeout=5)
        assert r.status_code == 302
        assert r.headers["Location"] == "/moved/v2/campaigns?limit=10&page=2"
        assert r.content == b""
        r = session.get(f.url + "/v2/campaigns", params={"limit": 10, "page": 2}, timeout=5)  # followed
        assert [c["id"] for c in r.json()["campaigns"]][:1] == [100_010]
        assert session.get(f.url + "/moved/v2/campaigns/100003", timeout=5).json()["campaign"]["id"] == 100_003
        r = requests.get(f.url + "/v2/campaigns", allow_redirects=False, timeout=5)  # before any key check
        assert r.status_code == 302
        f.configure(redirect_to="http://127.0.0.2:9/", redirect_status=308)
        r = session.get(f.url + "/v2/advertisers?limit=5", allow_redirects=False, timeout=5)
        assert (r.status_code, r.headers["Location"]) == (308, "http://127.0.0.2:9/v2/advertisers?limit=5")
        assert f.stats()["faults"]["redirect"] == 4
        assert f.stats()["by_status"]["302"] == 3
        f.configure(redirect_to=None)
        assert session.get(f.url + "/v2/campaigns", allow_redirects=False, timeout=5).status_code == 200
        for bad in ({"redirect_to": "ftp://x"}, {"redirect_to": 5}, {"redirect_status": 200}):
            with pytest.raises(ValueError, match="redirect_"):
                f.configure(**bad)


# --------------------------------------------------------------------------- mutations and control


def test_mutations_change_responses(fake: FakeTrackier, session: requests.Session) -> None:
    cat = fake.catalogue
    before = {c["id"]: c["payouts"][0]["payout"] for c in cat.iter_campaigns()}
    changed = cat.change_payouts(0.1, seed=7)
    assert changed == round(0.1 * 2345)
    assert cat.change_payouts(0.1, seed=7) == changed  # sets, never increments
    after_body = sweep_pages(session, fake, limit=1000)
    assert after_body[0] == list(range(100_000, 102_345))
    pages = [get(session, fake, "/v2/campaigns", page=p, limit=1000).json() for p in range(1, 4)]
    served = {c["id"]: c for page in pages for c in page["campaigns"]}
    diffs = [i for i in before if served[i]["payouts"][0]["payout"] != before[i]]
    assert len(diffs) == changed
    assert all(0 < served[i]["payouts"][0]["payout"] <= served[i]["payouts"][0]["revenue"] for i in diffs)

    removed = cat.remove_campaigns(ids=[100_001, 100_002, 999], count=3)
    assert removed[:2] == [100_001, 100_002]
    assert len(removed) == 5
    added = cat.add_campaigns(4)
    assert added == [102_345, 102_346, 102_347, 102_348]
    ids, seen = sweep_pages(session, fake, limit=1000)
    assert set(ids) == (set(range(100_000, 102_349)) - set(removed))
    assert seen[0]["total"] == 2345 - 5 + 4
    assert get(session, fake, "/v2/campaigns/100001").status_code == 404

    renamed = cat.set_campaign(100_000, title="Renamed 🚀 Offer")
    assert renamed["title"] == "Renamed 🚀 Offer"
    assert get(session, fake, "/v2/campaigns/100000").json()["campaign"]["title"] == "Renamed 🚀 Offer"
    with pytest.raises(KeyError):
        cat.set_campaign(100_001, title="gone")

    cat.restore()
    assert sweep_pages(session, fake, limit=1000)[0] == list(range(100_000, 102_345))
    assert {c["id"]: c["payouts"][0]["payout"] for c in cat.iter_campaigns()} == before


def test_control_endpoints(fake: FakeTrackier, session: requests.Session) -> None:
    post = requests.post
    assert requests.get(fake.url + "/_fake/health", timeout=5).json()["campaigns"] == 2345
    r = post(fake.url + "/_fake/mutate", json={"op": "remove_campaigns", "count": 3}, timeout=5).json()
    assert len(r["result"]["removed"]) == 3
    assert r["result"]["campaign_count"] == 2342
    r = post(fake.url + "/_fake/mutate", json={"op": "add_campaigns", "count": 2}, timeout=5).json()
    assert r["result"]["added"] == [102_345, 102_346]
    r = post(fake.url + "/_fake/mutate", json={"op": "change_payouts", "fraction": 0.5, "seed": 1}, timeout=5)
    assert r.json()["result"]["changed"] > 1000
    r = post(
        fake.url + "/_fake/mutate", json={"op": "set_campaign", "id": 100_005, "fields": {"title": "X"}}, timeout=5
    )
    assert r.json()["result"]["campaign"]["title"] == "X"
    assert get(session, fake, "/v2/campaigns/100005").json()["campaign"]["title"] == "X"
    r = post(fake.url + "/_fake/mutate", json={"op": "restore"}, timeout=5).json()
    assert r["result"]["campaign_count"] == 2345
    assert post(fake.url + "/_fake/mutate", json={"op": "explode"}, timeout=5).status_code == 400
    assert post(fake.url + "/_fake/mutate", data=b"{not json", timeout=5).status_code == 400

    r = post(fake.url + "/_fake/config", json={"total_lie": 3, "rate_429": 0.0}, timeout=5)
    assert r.json()["config"]["total_lie"] == 3
    assert "api_key" not in r.json()["config"]
    assert get(session, fake, "/v2/campaigns", page=1).json()["pagination"]["total"] == 2348
    bad = post(fake.url + "/_fake/config", json={"rate_4299": 1}, timeout=5)
    assert bad.status_code == 400
    assert "rate_4299" in bad.json()["error"]["message"]
    assert post(fake.url + "/_fake/config", json={"rate_429": 2}, timeout=5).status_code == 400
    bad_script = {"script": [{"fault": "boom"}]}
    assert post(fake.url + "/_fake/config", json=bad_script, timeout=5).status_code == 400

    stats = requests.get(fake.url + "/_fake/stats", timeout=5).json()
    assert stats["by_path"] == {"/v2/campaigns/{id}": 1, "/v2/campaigns": 1}
    assert stats["by_status"] == {"200": 2}
    assert stats["total"] == 2
    assert stats["list_requests"] == 1
    assert post(fake.url + "/_fake/reset_stats", timeout=5).json() == {"success": True}
    assert fake.stats()["total"] == 0
    assert requests.get(fake.url + "/_fake/reset_stats", timeout=5).status_code == 405


def test_fixture_is_served_as_given(tmp_path: Path, session: requests.Session) -> None:
    path = tmp_path / "fixture.json"
    path.write_text(json.dumps(FIXTURE, ensure_ascii=False), encoding="utf-8")
    cat = Catalogue.from_fixture(path)
    assert cat.campaign_count == 3
    assert cat.advertiser_count == 2
    with FakeTrackier(cat, api_key=KEY) as f:
        body = get(session, f, "/v2/campaigns", page=1).json()
        pagination = {"page": 1, "limit": 100, "perPage": 100, "total": 3, "totalPages": 1}
        assert body == {"success": True, "campaigns": FIXTURE["campaigns"], "pagination": pagination}
        assert get(session, f, "/v2/advertisers", page=1).json()["advertisers"] == FIXTURE["advertisers"]
        assert sweep_cursor(session, f, limit=2)[0] == ["camp_123", "camp_007", "camp_050"]  # file order
        assert sweep_cursor(session, f, limit=1, **{"advertiser[]": "adv_001"})[0] == ["camp_123", "camp_050"]
        assert get(session, f, "/v2/campaigns/camp_007").json()["campaign"] == FIXTURE["campaigns"][1]

        assert cat.remove_campaigns(ids=["camp_007"]) == ["camp_007"]
        added = cat.add_campaigns(1)
        assert sweep_pages(session, f, limit=10)[0] == ["camp_123", "camp_050", *added]
        assert cat.change_payouts(1.0, seed=3) == 3
        served = get(session, f, "/v2/campaigns", page=1).json()["campaigns"]
        amounts = [c["payout"]["amount"] for c in served]
        assert amounts[:2] != [5.0, 1.25]
        cat.set_campaign("camp_123", name="Renamed")
        assert get(session, f, "/v2/campaigns/camp_123").json()["campaign"]["name"] == "Renamed"
        f.configure(invalid_ids=["camp_050"], invalid_kind="payout_string")
        assert get(session, f, "/v2/campaigns/camp_050").json()["campaign"]["payout"]["amount"] == "abc"
        cat.restore()
        f.configure(invalid_ids=[])
        assert get(session, f, "/v2/campaigns", page=1).json()["campaigns"] == FIXTURE["campaigns"]
    assert Catalogue.from_fixture(FIXTURE).campaign_ids() == ["camp_123", "camp_007", "camp_050"]


def test_a_million_campaigns_serve_the_last_page_without_materialising(session: requests.Session) -> None:
    tracemalloc.start()
    try:
        cat = Catalogue(advertisers=500, campaigns=1_000_000)
        with FakeTrackier(cat, api_key=KEY) as f:
            body = get(session, f, "/v2/campaigns", page=1000, limit=1000).json()
            # Tokens are opaque to clients; the test forges one to jump to the 1000th page.
            cursor = get(
                session, f, "/v2/campaigns", limit=1000, pageToken=encode_token("campaigns", 998_999, 1000)
            ).json()
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [c["id"] for c in body["campaigns"]] == list(range(1_099_000, 1_100_000))
    assert body["pagination"] == {"page": 1000, "limit": 1000, "perPage": 1000, "total": 1_000_000, "totalPages": 1000}
    assert [c["id"] for c in cursor["campaigns"]] == list(range(1_099_000, 1_100_000))
    assert cursor["pagination"]["nextPageToken"] == ""
    # The whole catalogue as dicts would be ~3 GB; a page and its JSON are a few MB.
    assert peak < 60 * 1024 * 1024, peak


# --------------------------------------------------------------------------- the CLI


def test_cli_port_file_config_and_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.fake_trackier",
            "--port",
            "0",
            "--campaigns",
            "120",
            "--advertisers",
            "4",
            "--api-key",
            "cli-key",
            "--port-file",
            str(port_file),
            "--verbose",
            "--config",
            '{"total_lie": 2}',
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert proc.poll() is None, "server exited early"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        body = requests.get(
            url + "/v2/campaigns", params={"page": 1}, headers={"X-Api-Key": "cli-key"}, timeout=5
        ).json()
        assert body["pagination"]["total"] == 122
        assert len(body["campaigns"]) == 100
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert "GET /v2/campaigns?page=1 -> 200" in err
    assert "cli-key" not in err
