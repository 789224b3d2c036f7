"""Pre-rendered records (``/_fake/prerender``): the benchmark's fake server answers from kept JSON.

The bench asks for it before every measured sync so that rendering pages (the fake server's CPU)
does not run on the cores the measured systems share. It must not change a single byte a client
sees, must be dropped by every mutation, and must step aside whenever a knob corrupts records.
Real HTTP against an in-thread server, as in ``test_fake_trackier.py``.
"""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import orjson
import requests

from devtools.fake_trackier import Catalogue, FakeTrackier
from tests.fake.conftest import KEY


def prerender(s: requests.Session, fake: FakeTrackier) -> int:
    reply = s.post(fake.url + "/_fake/prerender", json={}, timeout=30)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["records"])


def every_body(s: requests.Session, fake: FakeTrackier, kind: str = "campaigns", **params: Any) -> list[bytes]:
    """Every page of ``kind`` in both pagination styles, as raw response bytes."""
    bodies: list[bytes] = []
    for page in range(1, 10_000):
        reply = s.get(f"{fake.url}/v2/{kind}", params={"page": page, "limit": 100, **params}, timeout=10)
        assert reply.status_code == 200, reply.text
        bodies.append(reply.content)
        if not json.loads(reply.content, strict=False)[kind]:  # raw control bytes are a knob
            break
    token = ""
    for _ in range(10_000):
        query = {"limit": 70, **params, **({"pageToken": token} if token else {})}
        reply = s.get(f"{fake.url}/v2/{kind}", params=query, timeout=10)
        assert reply.status_code == 200, reply.text
        bodies.append(reply.content)
        token = json.loads(reply.content, strict=False)["pagination"]["nextPageToken"]
        if not token:
            break
    return bodies


def mutate_a_little(fake: FakeTrackier) -> None:
    fake.mutate("change_payouts", fraction=0.1, seed=3)
    fake.mutate("remove_campaigns", count=5)
    fake.mutate("add_campaigns", count=7)
    fake.mutate("set_campaign", id=100_010, fields={"title": 'Ünïcode "quoted" \u2028 title'})
    fake.mutate("set_advertiser", id=1_002, fields={"company": "Renamed & Co"})


def test_prerendered_pages_are_byte_for_byte_the_rendered_ones(session: requests.Session, fake: FakeTrackier) -> None:
    mutate_a_little(fake)
    rendered = {kind: every_body(session, fake, kind) for kind in ("campaigns", "advertisers")}
    filtered = every_body(session, fake, "campaigns", advertiser=1_003)

    assert prerender(session, fake) == fake.catalogue.campaign_count + fake.catalogue.advertiser_count

    for kind in ("campaigns", "advertisers"):
        assert every_body(session, fake, kind) == rendered[kind]
    assert every_body(session, fake, "campaigns", advertiser=1_003) == filtered
    by_page = [orjson.loads(body) for body in rendered["campaigns"]]
    counted = sum(len(body["campaigns"]) for body in by_page if "page" in body["pagination"])
    assert counted == fake.catalogue.campaign_count  # every campaign was compared


def test_a_mutation_after_prerender_is_served_at_once(session: requests.Session, fake: FakeTrackier) -> None:
    prerender(session, fake)
    kept = every_body(session, fake)

    changed = fake.mutate("change_payouts", fraction=0.5, seed=11)["changed"]
    after = every_body(session, fake)

    assert changed > 0
    assert after != kept
    fake.catalogue._rendered = None  # what a server that never prerendered answers
    assert every_body(session, fake) == after


def test_knobs_that_corrupt_records_still_corrupt_them_after_prerender(
    session: requests.Session, fake: FakeTrackier
) -> None:
    fake.mutate("set_campaign", id=100_004, fields={"title": "tab\there"})
    clean = every_body(session, fake)
    knobs = {"invalid_rate": 0.2, "invalid_advertisers": True, "raw_control_chars": True, "fault_seed": 5}
    fake.configure(**knobs)
    corrupted = every_body(session, fake)
    fake.configure(**knobs)  # restarts the deterministic draws
    prerender(session, fake)

    assert every_body(session, fake) == corrupted
    assert corrupted != clean
    assert any(b"tab\\there" in body for body in clean)  # the JSON escape
    assert any(b"tab\there" in body for body in corrupted)  # the raw byte, invalid JSON
    fake.configure(invalid_rate=0.0, raw_control_chars=False)
    assert every_body(session, fake) == clean  # the knobs off: served from what was kept


def test_a_fixture_catalogue_prerenders_its_records_as_given(session: requests.Session) -> None:
    fixture = {
        "advertisers": [{"id": "adv_1", "name": "Café 🚀"}],
        "campaigns": [{"id": f"camp_{i}", "advertiser_id": "adv_1", "name": f"C{i}", "n": i / 3} for i in range(250)],
    }
    with FakeTrackier(Catalogue.from_fixture(fixture), api_key=KEY) as server:
        before = every_body(session, server)
        assert prerender(session, server) == 251
        assert every_body(session, server) == before
        server.mutate("set_campaign", id="camp_7", fields={"name": "changed"})
        assert b'"changed"' in b"".join(every_body(session, server))


def test_what_prerender_keeps_is_about_the_size_of_the_json_and_is_kept_once() -> None:
    # The bench prerenders 1M campaigns before each sync: an 8 KiB buffer kept per record (orjson's)
    # held 8 GB, and building the new copy beside the old one twice that.
    catalogue = Catalogue(advertisers=20, campaigns=5_000, seed=7)
    json_bytes = sum(len(orjson.dumps(catalogue.campaign(k))) for k in catalogue.campaign_keys())
    tracemalloc.start()
    try:
        catalogue.prerender()
        first, _ = tracemalloc.get_traced_memory()
        kept = catalogue._rendered
        tracemalloc.reset_peak()
        assert catalogue.prerender() == 5_020
        assert catalogue._rendered is kept  # nothing changed: nothing rendered again
        again, peak_again = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first < 1.5 * json_bytes, (first, json_bytes)
    assert peak_again < first + 1_000_000, (peak_again, first)
    assert again <= first + 10_000
