"""Fixtures of the fake server's own tests: an in-thread server and a session that holds its key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from devtools.fake_trackier import Catalogue, FakeTrackier

KEY = "test-key"


@pytest.fixture
def session() -> Iterator[requests.Session]:
    s = requests.Session()
    s.headers["X-Api-Key"] = KEY
    yield s
    s.close()


@pytest.fixture
def fake() -> Iterator[FakeTrackier]:
    with FakeTrackier(Catalogue(advertisers=7, campaigns=2345, seed=42), api_key=KEY) as server:
        yield server
