"""Issue 12: whatever shape Trackier's pagination really has, the sync never hangs, never loses an
offer and never switches live offers off; and the key never goes to another host.

Each plausible answer of the real API is a mode of the fake Trackier (``report_total``,
``cursor_stops_after``, ``repeat_page_after``, ``redirect_to``, the ``pagination`` modes), served
over real HTTP and synced into a fresh PostgreSQL database by the same task bodies the DAG runs
(``devtools.inline.run_sync``). A few odd shapes the fake cannot produce (a cursor that
does not move while ``page=`` works, a redirect loop) are served by a tiny plain HTTP server
(``PlainApi``), which also plays "the other host" and records every request it gets. The DAG-level
tests at the end run the same cases through ``airflow dags test``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr

from devtools.fake_trackier import Catalogue
from devtools.inline import DEFAULT_PARAMS, run_sync
from include.offer_sync import tasks
from include.offer_sync.errors import (
    ConfigurationError,
    FatalSyncError,
    TrackierRedirectError,
    TrackierResponseError,
)
from include.offer_sync.load.sweep import UNPROVEN_END
from include.offer_sync.settings import TrackierSettings
from include.offer_sync.trackier.http import MAX_REDIRECTS, TrackierClient
from tests.helpers import TEST_API_KEY, Answer, PlainApi, cursor_shard, json_body, trackier_settings

#: Every test twice: pages staged by the task process, and by validation workers (tests/db/conftest.py).
pytestmark = pytest.mark.usefixtures("either_staging_path")

# A regression must end in a failed assertion, not in 100,000 requests: every sync here is capped.
CAP = {"max_pages": 200}


# --- helpers ---------------------------------------------------------------------------------


def _settings(url: str, **overrides: Any) -> TrackierSettings:
    values: dict[str, Any] = {
        "base_url": url,
        "api_key": SecretStr(TEST_API_KEY),
        "page_size": 10,
        "requests_per_second": 0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
    }
    return TrackierSettings(**{**values, **overrides})


def page_errors(sql: Callable[..., list[tuple[Any, ...]]], run_id: str) -> list[tuple[Any, ...]]:
    return sql("SELECT entity, page, kind, error FROM sync_page_errors WHERE run_id = %s ORDER BY id", (run_id,))


def stored_result(sql: Callable[..., list[tuple[Any, ...]]], run_id: str) -> dict[str, Any]:
    return sql("SELECT result FROM sync_runs WHERE run_id = %s", (run_id,))[0][0]


# --- auto proves its choice -------------------------------------------------------------------


def test_a_pagetoken_only_catalogue_of_3000_with_a_total_finishes_in_bounded_requests_with_every_offer_stored(
    fake_trackier, offers_db, sql
) -> None:
    """Measured on main: ``auto`` chose numbered pages, every page was page 1 again and the open last
    shard read on (1,777 requests in 4 minutes, never finished). Now page 2 is checked once."""
    catalogue = Catalogue(20, 3000, seed=4)
    server = fake_trackier(catalogue, pagination="cursor", report_total=True)
    api = trackier_settings(server, page_size=50, pagination="auto", **CAP)

    result = run_sync(offers_db, api, "run-cursor-only")

    assert result["status"] == "completed", result["problems"]
    assert result["complete_sweep"] is True  # 3,000 is 60 full pages: the total proves the end
    assert (result["added"], result["campaigns_processed"]) == (3000, 3000)
    assert sql("SELECT count(*), count(*) FILTER (WHERE is_active) FROM offers") == [(3000, 3000)]
    stored = {int(i) for (i,) in sql("SELECT trackier_id FROM offers")}
    assert stored == {int(i) for i in catalogue.campaign_ids()}
    # Campaigns: page 1 and page=2 (the probe), then the 60 pages of the cursor stream. Advertisers:
    # 20 fit on page 1 (nothing to check), then the one-page stream.
    assert server.stats()["list_requests"] == 2 + 60 + 1 + 1
    assert result["metrics"]["api_requests"] == server.stats()["total"]
    verdict = result["pagination"]["campaigns"]
    assert (verdict["requested"], verdict["style"]) == ("auto", "cursor")
    assert "page=2 answered the same 50 records as page 1: the API ignores page=" in verdict["fallback"]
    assert stored_result(sql, "run-cursor-only")["pagination"] == result["pagination"]
    assert result["pagination"]["advertisers"]["fallback"] is None


def test_auto_keeps_numbered_pages_when_page_2_moves_at_the_cost_of_one_request(fake_trackier) -> None:
    server = fake_trackier(Catalogue(4, 230, seed=1), pagination="both")
    client = TrackierClient(trackier_settings(server, page_size=50))
    probe = client.probe("campaigns")
    assert (probe.style, probe.total, probe.total_pages, probe.fallback) == ("page", 230, 5, None)
    assert server.stats()["list_requests"] == 2
    assert probe.first_page is not None  # each shard recognises page 1 served again


@pytest.mark.parametrize(
    ("mode", "knobs", "style", "total", "fallback"),
    [
        ("page", {}, "page", 230, None),  # numbered pages with a total: page 2 moves
        ("page", {"report_total": False}, "page", None, None),  # no total and no cursor: page 2 moves
        ("cursor", {}, "cursor", None, None),  # a cursor without a total: the cursor moves
        ("cursor", {"report_total": True}, "cursor", 230, "the API ignores page=; following nextPageToken"),
        (
            "cursor",
            {"report_total": True, "cursor_stops_after": 1},
            "cursor",
            230,
            "page 1 has no nextPageToken, so only page 1 can be read",
        ),
        ("cursor", {"repeat_page_after": 1}, "cursor", None, "the cursor does not move"),
    ],
)
def test_auto_checks_the_style_it_picks_against_every_server_shape(
    mode, knobs, style, total, fallback, fake_trackier
) -> None:
    server = fake_trackier(Catalogue(4, 230, seed=1), pagination=mode, **knobs)
    probe = TrackierClient(trackier_settings(server, page_size=50)).probe("campaigns")
    assert (probe.style, probe.total) == (style, total)
    if fallback is None:
        assert probe.fallback is None
    else:
        assert fallback in probe.fallback
    assert server.stats()["list_requests"] <= 3


def test_auto_reads_numbered_pages_when_the_cursor_does_not_move(plain_api) -> None:
    """A server whose ``nextPageToken`` always leads back to page 1, while ``page=`` works."""
    records = [{"id": i} for i in range(1, 26)]

    def answer(path: str, query: dict[str, list[str]]) -> Answer:
        page = int(query.get("page", ["1"])[0])  # a pageToken is ignored: page 1 again
        chunk = records[(page - 1) * 10 : page * 10]
        return 200, {}, json_body({"success": True, "campaigns": chunk, "pagination": {"nextPageToken": "same"}})

    api = plain_api(answer, host="127.0.0.1")
    client = TrackierClient(_settings(api.url))
    probe = client.probe("campaigns")
    assert (probe.style, probe.total) == ("page", None)
    assert "nextPageToken answered page 1 again (the cursor does not move) while page=2 works" in probe.fallback
    pages = list(client.iter_page_range("campaigns", 1, None, first_page=probe.first_page))
    assert [r["id"] for p in pages for r in p.records] == list(range(1, 26))


# --- a sweep is complete only when it can show it ---------------------------------------------


@pytest.mark.parametrize("pagination", ["auto", "cursor"])
def test_a_cursor_that_stops_early_on_a_full_page_while_its_total_says_more_deactivates_nothing(
    pagination, fake_trackier, offers_db, sql
) -> None:
    """Measured on main: 110 campaigns, 100 seen, 10 live offers deactivated, status completed."""
    catalogue = Catalogue(3, 110, seed=8)
    server = fake_trackier(catalogue, pagination="cursor", report_total=True)
    api = trackier_settings(server, page_size=50, pagination=pagination, **CAP)
    first = run_sync(offers_db, api, "run-1")
    assert (first["status"], first["added"]) == ("completed", 110)

    server.configure(cursor_stops_after=2)  # page 2: 50 records, no next token, total still 110
    result = run_sync(offers_db, api, "run-2")

    assert result["status"] == "completed_with_errors"
    assert result["complete_sweep"] is False
    assert (result["deactivated"], result["unchanged"], result["campaigns_processed"]) == (0, 100, 100)
    assert "campaigns: the API reported 110 records, the sweep received 100" in result["problems"]
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(110,)]
    assert sql("SELECT complete_sweep, status FROM sync_runs WHERE run_id = 'run-2'") == [
        (False, "completed_with_errors")
    ]


def test_no_total_and_a_full_last_page_is_no_proof_of_the_end_so_nothing_is_deactivated(
    fake_trackier, offers_db, sql
) -> None:
    """The rule for a cursor API that reports no total: a stream ending on a short page has shown
    its end; one ending on a full page without a next token has not (an exact multiple of the page
    size and a token that stops early look the same), so that run deactivates nothing."""
    catalogue = Catalogue(3, 103, seed=8)
    server = fake_trackier(catalogue, pagination="cursor")
    api = trackier_settings(server, page_size=50, pagination="cursor", **CAP)
    first = run_sync(offers_db, api, "run-1")  # 50, 50, 3: ended on a short page
    assert (first["status"], first["complete_sweep"], first["added"]) == ("completed", True, 103)

    catalogue.remove_campaigns(ids=catalogue.campaign_ids()[:3])  # 100 left: the last page is full
    unproven = run_sync(offers_db, api, "run-2")
    assert unproven["status"] == "completed_with_errors"
    assert unproven["complete_sweep"] is False
    assert unproven["deactivated"] == 0
    assert f"campaigns: {UNPROVEN_END}" in unproven["problems"]
    assert UNPROVEN_END == (
        "the stream ended on a full page and the API reported no total: the end cannot be "
        "proven, no offer is deactivated this run"
    )
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(103,)]
    assert page_errors(sql, "run-2") == []  # no page failed and nothing repeated: only the end is unproven

    catalogue.remove_campaigns(ids=catalogue.campaign_ids()[:1])  # 99: the stream ends on a short page again
    proven = run_sync(offers_db, api, "run-3")
    assert (proven["status"], proven["complete_sweep"], proven["deactivated"]) == ("completed", True, 4)

    # A token that stops early without any total is the same shape, and gets the same answer.
    server.configure(cursor_stops_after=1)
    early = run_sync(offers_db, api, "run-4")
    assert (early["complete_sweep"], early["deactivated"], early["campaigns_processed"]) == (False, 0, 50)
    assert f"campaigns: {UNPROVEN_END}" in early["problems"]
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(99,)]


def test_numbered_pages_without_a_total_still_end_on_a_short_page(fake_trackier, offers_db, sql) -> None:
    catalogue = Catalogue(3, 100, seed=8)
    server = fake_trackier(catalogue, pagination="page", report_total=False)
    api = trackier_settings(server, page_size=50, **CAP)
    result = run_sync(offers_db, api, "run-1")  # pages of 50, 50, then an empty page 3: the end, shown
    assert (result["status"], result["complete_sweep"], result["added"]) == ("completed", True, 100)
    assert result["pagination"]["campaigns"] == {"requested": "auto", "style": "page", "fallback": None}
    catalogue.remove_campaigns(ids=catalogue.campaign_ids()[:2])
    again = run_sync(offers_db, api, "run-2")
    assert (again["status"], again["deactivated"]) == ("completed", 2)


# --- a server that serves fewer records per page than it says -----------------------------------


@pytest.mark.parametrize("report_total", [True, False])
def test_a_server_that_silently_caps_the_page_size_is_read_whole_in_pages_of_what_it_serves(
    report_total, fake_trackier, offers_db, sql
) -> None:
    """The server serves 20 records per page while ``perPage`` (and ``totalPages``) say the 50 asked
    for. Before: with a total, 5 pages of 20 were read (100 of 230 offers, an incomplete sweep every
    night); without one, page 1 was taken for the whole list (20 offers, and a "complete" sweep)."""
    catalogue = Catalogue(4, 230, seed=1)
    server = fake_trackier(catalogue, pagination="page", report_total=report_total, serve_at_most=20)
    api = trackier_settings(server, page_size=50, pagination="auto", **CAP)

    probe = TrackierClient(api).probe("campaigns")
    assert (probe.style, probe.page_size) == ("page", 20)
    assert (probe.total, probe.total_pages) == ((230, 12) if report_total else (None, None))
    assert "the server serves at most 20 per page" in probe.fallback
    assert server.stats()["list_requests"] == 2  # page 1, and page 2 asked with limit=20

    result = run_sync(offers_db, api, "run-capped")
    assert (result["status"], result["complete_sweep"], result["added"]) == ("completed", True, 230), result["problems"]
    assert {int(i) for (i,) in sql("SELECT trackier_id FROM offers")} == {int(i) for i in catalogue.campaign_ids()}
    assert page_errors(sql, "run-capped") == []
    assert "serves at most 20 per page" in result["pagination"]["campaigns"]["fallback"]


def test_forced_numbered_pages_are_read_whole_from_a_capping_server_that_also_hands_out_cursors(plain_api) -> None:
    """``pagination: page`` on a server that answers 4 records where 10 were asked, with no total and
    a ``nextPageToken`` on every page: the token does not say where a numbered page ends, the probe
    still finds the cap (before: page 1's 4 records were taken for the whole list)."""
    records = [{"id": i} for i in range(1, 24)]

    def answer(path: str, query: dict[str, list[str]]) -> Answer:
        limit = min(int(query.get("limit", ["100"])[0]), 4)
        page = int(query.get("page", ["1"])[0])
        chunk = records[(page - 1) * limit : page * limit]
        body = {"success": True, "campaigns": chunk, "pagination": {"perPage": 10, "nextPageToken": "t"}}
        return 200, {}, json_body(body)

    api = plain_api(answer, host="127.0.0.1")
    client = TrackierClient(_settings(api.url, pagination="page"))
    probe = client.probe("campaigns")
    assert (probe.style, probe.page_size, probe.total) == ("page", 4, None)
    pages = list(client.iter_page_range("campaigns", 1, None, limit=probe.page_size, first_page=probe.first_page))
    assert [r["id"] for p in pages for r in p.records] == list(range(1, 24))


def test_a_short_first_page_that_is_the_whole_list_costs_one_request_and_changes_nothing(
    fake_trackier, offers_db, sql
) -> None:
    server = fake_trackier(Catalogue(2, 30, seed=3), pagination="page", report_total=False)
    api = trackier_settings(server, page_size=50, **CAP)
    probe = TrackierClient(api).probe("campaigns")
    assert (probe.style, probe.page_size, probe.fallback) == ("cursor", 50, None)  # one page, as before
    assert server.stats()["list_requests"] == 2  # page 2 (limit=30) came back empty: no cap
    # With a total that says page 1 is everything, nothing more is asked.
    server.configure(report_total=True)
    server.reset_stats()
    assert TrackierClient(api).probe("campaigns").total == 30
    assert server.stats()["list_requests"] == 1
    result = run_sync(offers_db, api, "run-small")
    assert (result["status"], result["complete_sweep"], result["added"]) == ("completed", True, 30)


# --- repeated pages stop a stream, in every style ----------------------------------------------


@pytest.mark.parametrize(
    ("mode", "pagination", "knobs"),
    [
        ("page", "page", {"repeat_page_after": 2}),  # numbered pages 3, 4 ... are page 2 again
        ("both", "auto", {"repeat_page_after": 2}),  # the probe sees page 2 move; page 3 does not
        ("cursor", "cursor", {"repeat_page_after": 2}),  # the token moves, the records do not
        ("cursor", "page", {"report_total": True}),  # page= forced on an API that ignores it
    ],
)
def test_a_repeated_page_stops_the_stream_and_deactivates_nothing_in_every_style(
    mode, pagination, knobs, fake_trackier, offers_db, sql
) -> None:
    catalogue = Catalogue(3, 205, seed=2)
    server = fake_trackier(catalogue, pagination=mode)
    sharding = {"page_size": 20, "pages_per_shard": 3, "max_shards": 8, **CAP}
    assert run_sync(offers_db, trackier_settings(server, **sharding), "run-1")["status"] == "completed"
    catalogue.remove_campaigns(ids=catalogue.campaign_ids()[:3])
    server.configure(**knobs)
    server.reset_stats()

    api = trackier_settings(server, pagination=pagination, **sharding)
    result = run_sync(offers_db, api, "run-2", max_error_rate=1.0)

    assert result["status"] == "completed_with_errors"
    assert result["complete_sweep"] is False
    assert result["deactivated"] == 0
    assert sql("SELECT count(*) FROM offers WHERE is_active") == [(205,)]
    errors = page_errors(sql, "run-2")
    assert errors
    assert {k for _, _, k, _ in errors} == {"repeated_page"}
    assert all(e == "campaigns" and "returned the same 20 records as page" in m for e, _, _, m in errors)
    # Every stream stopped at its first repeat: a few requests per shard, nowhere near the cap.
    assert server.stats()["list_requests"] <= 25, server.stats()


def test_a_repeated_page_is_not_staged_twice(fake_trackier) -> None:
    server = fake_trackier(Catalogue(2, 200, seed=2), pagination="page", repeat_page_after=2)
    client = TrackierClient(trackier_settings(server, page_size=20, pagination="page"))
    items = list(client.iter_page_range("campaigns", 1, None, threads=3))
    assert [type(i).__name__ for i in items] == ["Page", "Page", "Anomaly"]
    assert (items[2].kind, items[2].page) == ("repeated_page", 3)
    assert "page 3 returned the same 20 records as page 2" in items[2].detail


# --- redirects ---------------------------------------------------------------------------------


def test_a_redirect_to_another_host_sends_the_key_nowhere_and_fails_the_run_at_once(
    fake_trackier, plain_api, offers_db, sql
) -> None:
    """Measured on main: the key followed a 302 to the other host on every request, for minutes."""
    other = plain_api(lambda path, query: (200, {}, json_body({"success": True, "campaigns": [], "advertisers": []})))
    server = fake_trackier(Catalogue(2, 30, seed=1), redirect_to=other.url)
    api = trackier_settings(server, page_size=10, max_retries=5)

    with pytest.raises(TrackierRedirectError) as error:
        run_sync(offers_db, api, "run-redirect")

    assert isinstance(error.value, ConfigurationError)
    assert isinstance(error.value, FatalSyncError)  # the DAG's retry policy: FAIL, no retries
    message = str(error.value)
    assert f"to another host, {other.url}" in message
    assert f"put it in the host of the trackier_api connection (now {server.url})" in message
    assert TEST_API_KEY not in message
    assert other.keyed_requests() == []
    assert other.requests == []
    assert server.stats()["total"] == 1, "asked once: neither retried nor followed"

    # An extract (a cursor stream: no probe before it) stops the same way, and records no page error.
    server.reset_stats()
    run = tasks.start_sync(offers_db, run_id="run-extract", dag_id="trackier_offer_sync", params=dict(DEFAULT_PARAMS))
    shard = cursor_shard()
    with pytest.raises(TrackierRedirectError):
        tasks.extract_shard(offers_db, api, run, shard)
    assert server.stats()["total"] == 1
    assert other.requests == []
    assert sql("SELECT count(*) FROM sync_page_errors") == [(0,)]


def test_a_redirect_to_another_path_on_another_host_names_the_base_url_to_configure(fake_trackier, plain_api) -> None:
    other = plain_api(lambda path, query: (500, {}, b"{}"))
    server = fake_trackier(Catalogue(2, 30, seed=1), redirect_to=f"{other.url}/api", redirect_status=301)
    with pytest.raises(TrackierRedirectError, match=rf"to another host, {other.url}/api;"):
        TrackierClient(trackier_settings(server)).fetch_page("campaigns", page=1)
    assert other.requests == []


@pytest.mark.parametrize("target", ["relative", "absolute"])
def test_a_redirect_within_the_same_host_is_followed_with_the_key(target, fake_trackier, offers_db, sql) -> None:
    catalogue = Catalogue(3, 120, seed=5)
    server = fake_trackier(catalogue)
    server.configure(redirect_to="/moved" if target == "relative" else f"{server.url}/moved")
    api = trackier_settings(server, page_size=25, **CAP)

    result = run_sync(offers_db, api, "run-moved")

    assert (result["status"], result["added"]) == ("completed", 120)
    stats = server.stats()
    assert stats["faults"]["redirect"] * 2 == stats["total"], "each request: one redirect, one answer"
    assert stats["by_status"]["302"] == stats["by_status"]["200"]
    assert result["metrics"]["api_requests"] == stats["total"]


@pytest.mark.parametrize(
    ("location", "error", "requests_made"),
    [
        ("/v2/campaigns?limit=10&page=1", TrackierResponseError, 1 + MAX_REDIRECTS),  # a loop: bounded
        ("https://{host}/v2/campaigns", TrackierRedirectError, 1),  # http -> https: another origin
        ("http://localhost:{port}/v2/campaigns", TrackierRedirectError, 1),  # another name for the host
    ],
)
def test_redirect_loops_are_bounded_and_other_origins_refused(location, error, requests_made, plain_api) -> None:
    holder: dict[str, PlainApi] = {}

    def answer(path: str, query: dict[str, list[str]]) -> Answer:
        api = holder["api"]
        host, port = api.server.server_address[:2]
        return 302, {"Location": location.format(host=f"{host}:{port}", port=port)}, b""

    holder["api"] = api = plain_api(answer, host="127.0.0.1")
    client = TrackierClient(_settings(api.url, max_retries=3))
    with pytest.raises(error):
        client.fetch_page("campaigns", page=1)
    assert len(api.requests) == requests_made
    assert client.stats.retries == 0
