"""The client's pagination in both styles, over real HTTP against the fake Trackier, and shard planning."""

from __future__ import annotations

import pytest

from devtools.fake_trackier import Catalogue
from include.offer_sync.errors import TrackierAuthError
from include.offer_sync.trackier.http import TrackierClient
from include.offer_sync.trackier.pagination import Page
from include.offer_sync.trackier.shards import plan_shards
from tests.helpers import trackier_settings


def _ids(items) -> list:
    return [r["id"] for item in items if isinstance(item, Page) for r in item.records]


def test_probe_finds_numbered_pages_and_totals(fake_trackier) -> None:
    server = fake_trackier(Catalogue(4, 230, seed=1), pagination="both")
    client = TrackierClient(trackier_settings(server, page_size=50))
    probe = client.probe("campaigns")
    assert (probe.style, probe.total, probe.total_pages, probe.page_size) == ("page", 230, 5, 50)


def test_numbered_page_ranges_cover_every_record_once(fake_trackier) -> None:
    catalogue = Catalogue(4, 230, seed=1)
    server = fake_trackier(catalogue, pagination="both")
    client = TrackierClient(trackier_settings(server, page_size=50))
    shards = plan_shards("campaigns", client.probe("campaigns"), pages_per_shard=2, max_shards=8)
    assert [(s["first"], s["last"]) for s in shards] == [(1, 2), (3, 4), (5, None)]  # last is open-ended
    seen = []
    for shard in shards:
        seen += _ids(client.iter_page_range("campaigns", shard["first"], shard["last"], threads=3))
    assert seen == catalogue.campaign_ids()


def test_cursor_only_api_is_one_stream_per_entity(fake_trackier) -> None:
    catalogue = Catalogue(4, 230, seed=1)
    server = fake_trackier(catalogue, pagination="cursor")
    client = TrackierClient(trackier_settings(server, page_size=50))
    probe = client.probe("campaigns")
    assert (probe.style, probe.total) == ("cursor", None)
    shards = plan_shards("campaigns", probe, pages_per_shard=2, max_shards=8)
    assert len(shards) == 1
    assert shards[0]["style"] == "cursor"
    assert _ids(client.iter_cursor("campaigns")) == catalogue.campaign_ids()


def test_forced_cursor_style_works_against_a_server_that_speaks_both(fake_trackier) -> None:
    catalogue = Catalogue(3, 120, seed=2)
    server = fake_trackier(catalogue, pagination="both")
    client = TrackierClient(trackier_settings(server, page_size=40, pagination="cursor"))
    assert client.probe("campaigns").style == "cursor"
    assert _ids(client.iter_cursor("campaigns")) == catalogue.campaign_ids()


def test_numbered_pages_without_a_total_read_until_a_short_page(fake_trackier) -> None:
    catalogue = Catalogue(3, 120, seed=2)
    server = fake_trackier(catalogue, pagination="page")
    client = TrackierClient(trackier_settings(server, page_size=50, pagination="page"))
    assert _ids(client.iter_page_range("campaigns", 1, None)) == catalogue.campaign_ids()


def test_coarse_shards_are_capped(fake_trackier) -> None:
    server = fake_trackier(Catalogue(2, 1000, seed=3))
    client = TrackierClient(trackier_settings(server, page_size=10))
    shards = plan_shards("campaigns", client.probe("campaigns"), pages_per_shard=5, max_shards=4)
    assert len(shards) == 4  # 100 pages: 25 per shard, never more than max_shards
    assert shards[0]["first"] == 1
    assert shards[-1]["planned_last"] == 100


def test_by_default_a_big_sweep_gets_no_more_shards_than_may_run_at_once(fake_trackier) -> None:
    """A shard past what ``max_active_tis_per_dagrun`` lets run at once only adds a task instance."""
    from include.offer_sync.constants import API_TASKS_PER_ENTITY

    server = fake_trackier(Catalogue(2, 1000, seed=3))
    client = TrackierClient(trackier_settings(server, page_size=1))  # 1,000 pages
    settings = client.settings
    shards = plan_shards("campaigns", client.probe("campaigns"), settings.pages_per_shard, settings.max_shards)
    assert len(shards) == API_TASKS_PER_ENTITY
    assert [(s["first"], s["planned_last"]) for s in shards] == [(1, 250), (251, 500), (501, 750), (751, 1000)]


def test_the_key_goes_in_a_header_never_the_url(fake_trackier) -> None:
    server = fake_trackier(Catalogue(2, 10, seed=3), verbose=False)
    client = TrackierClient(trackier_settings(server))
    assert "test-key" not in repr(client)
    assert "test-key" not in repr(client.settings)
    page = client.fetch_page("campaigns", page=1)
    assert len(page.records) == 10


def test_wrong_key_fails_at_once_with_what_to_fix(fake_trackier) -> None:
    server = fake_trackier(Catalogue(2, 10, seed=3))
    client = TrackierClient(trackier_settings(server, api_key="not-the-key"))
    with pytest.raises(TrackierAuthError, match=r"code 13.*network/admin API key") as excinfo:
        client.fetch_page("campaigns", page=1)
    assert "not-the-key" not in str(excinfo.value)
    assert client.stats.requests == 1, "a bad key must not be retried"


def test_a_200_without_the_record_list_is_retried() -> None:
    """A proxy answering ``{"success": true}`` with no list must be retried, not taken as data."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = [{"success": True}, {"success": True, "campaigns": [{"id": 1}], "pagination": {}}]
    served: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answers[min(len(served), 1)]).encode()
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from pydantic import SecretStr

        from include.offer_sync.settings import TrackierSettings

        client = TrackierClient(
            TrackierSettings(
                base_url=f"http://127.0.0.1:{server.server_port}",
                api_key=SecretStr("k"),
                requests_per_second=0,
                backoff_base_s=0.01,
                backoff_max_s=0.02,
            )
        )
        page = client.fetch_page("campaigns", page=1)
    finally:
        server.shutdown()
    assert page.records == [{"id": 1}]
    assert len(served) == 2
    assert client.stats.retries == 1
