"""Text fidelity: names and titles reach ``brands``/``offers`` exactly as Trackier sent them.

Tabs, newlines, CR, zero-width and bidi marks, C0 and C1 controls, SQL, HTML, COPY escape sequences,
emoji sequences and near-limit lengths are all text PostgreSQL stores; the sync keeps them byte for
byte (escaping them is the job of whoever displays them). It refuses only what cannot be stored -
NUL and lone surrogates - with a reason, and counts those records as rejected. Everything here goes
through the fake Trackier over real HTTP, the real client, the staging COPY and the merge into a
real PostgreSQL database; the expected values are the bytes the fake served, read back over HTTP.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from devtools.fake_trackier import Catalogue, FakeTrackier
from devtools.fake_trackier.catalogue import ODD_ADVERTISER_NAMES, ODD_TITLES
from devtools.inline import run_sync
from tests.helpers import SPEC_FIXTURE, TEST_API_KEY, latest_run, trackier_settings


def served(server: FakeTrackier, entity: str) -> list[Any]:
    """Every record the fake serves for ``entity``, parsed from the bytes on the wire.

    Python's json module, not orjson: it reads the JSON escape of a lone surrogate (``\\ud800``)
    into the string the client sees too.
    """
    records: list[Any] = []
    page = 1
    with requests.Session() as session:
        session.headers["X-Api-Key"] = TEST_API_KEY
        while True:
            resp = session.get(f"{server.url}/v2/{entity}", params={"page": page, "limit": 1000}, timeout=30)
            resp.raise_for_status()
            batch = json.loads(resp.content)[entity]
            records += batch
            if len(batch) < 1000:
                return records
            page += 1


def test_a_tab_in_one_title_of_a_nine_record_catalogue_is_stored_and_the_run_completes(
    fake_trackier, offers_db, sql
) -> None:
    """Before: the tab was "control characters", 1 of 9 rejected tripped the 5% breaker, nothing stored."""
    fixture = json.loads(json.dumps(SPEC_FIXTURE))
    template = fixture["campaigns"][0]
    fixture["campaigns"] = [{**template, "id": f"camp_{i}", "name": f"Campaign {i}"} for i in range(9)]
    fixture["campaigns"][4]["name"] = "Summer\tSale"
    server = fake_trackier(Catalogue.from_fixture(fixture))

    result = run_sync(offers_db, trackier_settings(server), "run-tab")

    assert result["status"] == "completed", result.get("error")
    assert (result["added"], result["rejected"], result["error_rate"]) == (9, 0, 0.0)
    assert sql("SELECT count(*) FROM offers") == [(9,)]
    assert sql("SELECT convert_to(title, 'UTF8') FROM offers WHERE trackier_id = 'camp_4'") == [(b"Summer\tSale",)]
    assert sql("SELECT count(*) FROM sync_rejects") == [(0,)]


def test_every_odd_but_storable_name_and_title_of_the_hostile_catalogue_is_stored_byte_for_byte(
    fake_trackier, offers_db, sql
) -> None:
    # 500 advertisers and 900 campaigns: every odd advertiser name (i % 50 == 29) and title (j % 50 == 41).
    catalogue = Catalogue(len(ODD_ADVERTISER_NAMES) * 50, len(ODD_TITLES) * 50, seed=5)
    ids = catalogue.campaign_ids()
    # Odd text in arrays too (text[] literals inside a text-format COPY).
    catalogue.set_campaign(ids[41], categories=[t for t in ODD_TITLES if len(t) <= 128][:8], geo=["D\tE", "A\nT"])
    # And three records with text PostgreSQL cannot store.
    unstorable = {str(ids[3]): "control_chars", str(ids[5]): "nul_description", str(ids[7]): "lone_surrogate_title"}
    server = fake_trackier(catalogue, invalid_ids=list(unstorable), invalid_kind=unstorable)

    result = run_sync(offers_db, trackier_settings(server, page_size=100), "run-hostile")

    campaigns = served(server, "campaigns")
    advertisers = served(server, "advertisers")
    titles = [c["title"] for c in campaigns]
    names = [a["name"] for a in advertisers]
    assert all(any(t.startswith(f"{odd} #") for t in titles) for odd in ODD_TITLES), "every odd title was served"
    assert set(ODD_ADVERTISER_NAMES) <= set(names), "every odd advertiser name was served"

    assert result["status"] == "completed_with_errors"
    assert (result["added"], result["rejected"]) == (len(campaigns) - 3, 3)
    assert (result["brands_added"], result["advertisers_processed"]) == (len(advertisers), len(advertisers))

    # Offers: title, description and arrays, compared as the bytes PostgreSQL holds.
    stored = {
        r[0]: r[1:]
        for r in sql("""SELECT trackier_id, convert_to(title, 'UTF8'),
                                                 convert_to(description, 'UTF8'), categories, geo FROM offers""")
    }
    expected = {
        str(c["id"]): (c["title"].encode(), c["description"].encode(), c["categories"], c["geo"])
        for c in campaigns
        if str(c["id"]) not in unstorable
    }
    assert stored == expected
    assert stored[str(ids[41])][2][:2] == [ODD_TITLES[0], ODD_TITLES[1]]
    assert stored[str(ids[41])][3] == ["D\tE", "A\nT"]

    # Brands: name and company byte for byte (the company is the name plus a suffix).
    brands = {
        r[0]: r[1:]
        for r in sql("SELECT trackier_id, convert_to(name, 'UTF8'), convert_to(company, 'UTF8') FROM brands")
    }
    assert brands == {str(a["id"]): (a["name"].encode(), a["company"].encode()) for a in advertisers}

    # The unstorable ones: rejected, filed under their id, with the reason, and nothing of them stored.
    rejects = dict(sql("SELECT record_key, reason FROM sync_rejects WHERE run_id = 'run-hostile'"))
    assert set(rejects) == set(unstorable)
    assert rejects[str(ids[3])].startswith("title: contains a NUL character (\\x00), which PostgreSQL cannot store")
    assert rejects[str(ids[5])].startswith("description: contains a NUL character")
    assert rejects[str(ids[7])].startswith("title: contains a lone surrogate, which is not Unicode text")
    assert latest_run(sql)["rejected"] == 3


def test_raw_tabs_and_newlines_inside_json_strings_do_not_lose_the_page(fake_trackier, offers_db, sql) -> None:
    """A server that writes tabs and newlines raw inside JSON strings (invalid JSON, strict parsers
    refuse it) still delivers its page: the titles are stored with the raw characters, nothing fails."""
    fixture = json.loads(json.dumps(SPEC_FIXTURE))
    template = fixture["campaigns"][0]
    fixture["campaigns"] = [{**template, "id": f"camp_{i}", "name": f"Campaign {i}"} for i in range(9)]
    fixture["campaigns"][2]["name"] = "Line one\nline\ttwo\r\n"
    server = fake_trackier(Catalogue.from_fixture(fixture), raw_control_chars=True)
    wire = requests.get(f"{server.url}/v2/campaigns", headers={"X-Api-Key": TEST_API_KEY}, timeout=30).content
    assert b"Line one\nline\ttwo\r\n" in wire  # the fake really sends the raw bytes

    result = run_sync(offers_db, trackier_settings(server), "run-raw-controls")

    assert result["status"] == "completed", result.get("error")
    assert (result["added"], result["rejected"], result["failed_pages"]) == (9, 0, 0)
    assert sql("SELECT convert_to(title, 'UTF8') FROM offers WHERE trackier_id = 'camp_2'") == [
        (b"Line one\nline\ttwo\r\n",)
    ]
