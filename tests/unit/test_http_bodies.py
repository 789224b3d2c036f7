"""A page's bytes judged by a validation worker (``http.accepted_page``) the way the client judges them.

A worker parses a 200 response itself and takes only a body the client would have returned as a
page; anything else it hands back, and the client parses and judges the same bytes as it always
did. Each odd body below is served over real HTTP and fetched twice, without and with the worker's
staging step (run in this process): the page, or the error raised, must be the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from include.offer_sync import extract_pool
from include.offer_sync.errors import TrackierAuthError, TrackierResponseError, TrackierTransientError
from include.offer_sync.settings import TrackierSettings
from include.offer_sync.trackier import http
from include.offer_sync.trackier.http import TrackierClient
from include.offer_sync.trackier.pagination import Page, StagedRecords

CAMPAIGN = {
    "id": 7,
    "title": "Seven",
    "advertiserId": 3,
    "status": "active",
    "payouts": [{"payout": 1.5, "currency": "USD"}],
}

BODIES: dict[str, bytes] = {
    "a page with totals": orjson.dumps({"success": True, "campaigns": [CAMPAIGN], "pagination": {"total": 9}}),
    "a page with a cursor and an odd pagination": orjson.dumps(
        {"campaigns": [CAMPAIGN, {**CAMPAIGN, "id": 8}], "pagination": {"nextPageToken": "n2", "perPage": "x"}}
    ),
    "a page whose pagination is not an object": orjson.dumps({"campaigns": [CAMPAIGN], "pagination": [1, 2]}),
    "a page only the stdlib parser reads (NaN, a raw tab)": b'{"campaigns": [{"id": 7, "title": "a\tb", "x": NaN}]}',
    "an empty page": b'{"campaigns": []}',
    "success false": orjson.dumps({"success": False, "error": {"code": 50, "message": "busy"}}),
    "a fatal app code": orjson.dumps({"code": 13, "campaigns": []}),
    "a fatal app code as text, beside records": orjson.dumps({"error": {"code": "41"}, "campaigns": [CAMPAIGN]}),
    "a rate limit on 200": orjson.dumps({"error": {"code": 40}, "campaigns": []}),
    "no list": orjson.dumps({"success": True, "campaign": []}),
    "a list of the wrong kind": orjson.dumps({"campaigns": {"0": CAMPAIGN}}),
    "a JSON array": b"[]",
    "not JSON": b"<html>proxy error</html>",
}


def _fetch(url: str, stage: Callable[[int, bytes], Page | None] | None) -> Any:
    settings = TrackierSettings(base_url=url, api_key=SecretStr("k"), max_retries=0, requests_per_second=0)
    try:
        return TrackierClient(settings).fetch_page("campaigns", page=1, limit=10, stage=stage)
    except (TrackierAuthError, TrackierResponseError, TrackierTransientError) as exc:
        return type(exc), str(exc)


def _in_this_process(number: int, content: bytes) -> Page | None:
    """What a worker runs (``extract_pool._stage_in_worker``), here, so that the test sees it run."""
    return extract_pool._stage_in_worker("campaigns", 0, 1, 1, number, content)


def _comparable(result: Any) -> Any:
    if isinstance(result, Page):
        return (
            len(result.records),
            result.next_token,
            result.total,
            result.total_pages,
            result.per_page,
            result.fingerprint,
        )
    return result


@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
def test_a_worker_takes_exactly_the_bodies_the_client_returns_as_pages(plain_api, body: bytes) -> None:
    api = plain_api(lambda path, query: (200, {}, body), host="127.0.0.1")

    plain = _fetch(api.url, None)
    staged = _fetch(api.url, _in_this_process)

    assert _comparable(staged) == _comparable(plain)
    if isinstance(plain, Page):
        assert isinstance(staged.records, StagedRecords), "a page the client returns is one the worker takes"
        assert staged.records.staged.outcome.records == len(plain.records)
    else:
        assert len(api.requests) == 2, "an error body is judged once per fetch, by the client"


def test_a_page_with_more_records_than_a_page_may_hold_is_refused_by_both(plain_api, monkeypatch) -> None:
    monkeypatch.setattr(http, "MAX_RECORDS_PER_PAGE", 2)
    body = orjson.dumps({"campaigns": [CAMPAIGN, {**CAMPAIGN, "id": 8}, {**CAMPAIGN, "id": 9}]})
    api = plain_api(lambda path, query: (200, {}, body), host="127.0.0.1")

    plain = _fetch(api.url, None)
    staged = _fetch(api.url, _in_this_process)

    assert plain == staged
    assert plain[0] is TrackierResponseError
    assert "holds 3 records, more than the 2 a page may hold" in plain[1]
