"""Constants and helpers that test modules import (fixtures live in the conftest files)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devtools.airflow_run import FAKE_CONN_EXTRA, trackier_conn_for
from devtools.fake_trackier import FakeTrackier
from include.offer_sync.settings import TrackierSettings

TEST_API_KEY = "test-key-3f9a"  # a fake key, for the fake server only
SPEC_FIXTURE = {
    "advertisers": [{"id": "adv_001", "name": "Test Brand", "category": "E-commerce"}],
    "campaigns": [
        {
            "id": "camp_123",
            "advertiser_id": "adv_001",
            "name": "Test Campaign",
            "payout": {"amount": 5.0, "currency": "USD"},
        }
    ],
}


def trackier_settings(server: FakeTrackier, **overrides: Any) -> TrackierSettings:
    """Client settings for a fake server; fast retries so failure tests stay quick."""
    values: dict[str, Any] = {
        "base_url": server.url,
        "api_key": TEST_API_KEY,
        "page_size": 50,
        "requests_per_second": 0,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "read_timeout_s": 5,
    }
    values.update(overrides)
    from pydantic import SecretStr

    values["api_key"] = SecretStr(values["api_key"])
    return TrackierSettings(**values)


def trackier_conn(server: FakeTrackier, **extra: Any) -> dict[str, Any]:
    """The ``AIRFLOW_CONN_TRACKIER_API`` JSON for a fake server."""
    return trackier_conn_for(server.url, TEST_API_KEY, **{**FAKE_CONN_EXTRA, **extra})


def latest_run(sql: Callable[..., list[tuple[Any, ...]]]) -> dict[str, Any]:
    """The newest ``sync_runs`` row's ``result`` (the sync_result contract)."""
    rows = sql("SELECT result FROM sync_runs ORDER BY started_at DESC LIMIT 1")
    assert rows, "no sync_runs row was written"
    return rows[0][0]


class WebhookReceiver:
    """A real HTTP server on a free loopback port that keeps every POST (path, headers, JSON body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(raw or b"null")})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, kind: str, path: str = "/hooks/offer-sync") -> list[dict[str, Any]]:
        """Bodies of the POSTs to ``path`` whose ``X-Offer-Sync-Event`` header is ``kind``."""
        return [
            r["body"] for r in self.requests if r["path"] == path and r["headers"].get("X-Offer-Sync-Event") == kind
        ]

    def alerts(self, rule: str | None = None) -> list[dict[str, Any]]:
        return [b for b in self.events("alert") if rule is None or b["rule"] == rule]

    def conn_env(self) -> dict[str, str]:
        """``AIRFLOW_CONN_OFFER_SYNC_WEBHOOK`` pointing at this receiver."""
        return {
            "AIRFLOW_CONN_OFFER_SYNC_WEBHOOK": json.dumps({"conn_type": "http", "host": f"{self.url}/hooks/offer-sync"})
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def assert_key_in_no_table(sql: Callable[..., list[tuple[Any, ...]]], key: str) -> None:
    """Scan every column of every table of the sync (cast to text) for the key."""
    tables = [
        r[0]
        for r in sql("""SELECT table_name FROM information_schema.tables
                                   WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'""")
    ]
    assert "sync_runs" in tables
    for table in tables:
        hits = sql(f"SELECT count(*) FROM {table} AS t WHERE t::text LIKE %s", (f"%{key}%",))
        assert hits == [(0,)], f"the API key is stored in {table}"


Answer = tuple[int, dict[str, str], bytes]


class PlainApi:
    """A plain HTTP server on its own loopback address that answers with ``answer(path, query)``
    and records every request (path and headers), to see exactly what reached it."""

    def __init__(self, answer: Callable[[str, dict[str, list[str]]], Answer], host: str = "127.0.0.2") -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append((self.path, dict(self.headers.items())))
                parts = urlsplit(self.path)
                status, headers, body = answer(parts.path, parse_qs(parts.query))
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://{host}:{self.server.server_port}"

    def keyed_requests(self) -> list[str]:
        """Paths of the requests that carried an API key (header or query)."""
        return [
            path
            for path, headers in self.requests
            if "x-api-key" in {h.lower() for h in headers} or "apikey=" in path.lower()
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def json_body(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def cursor_shard(limit: int = 10) -> dict[str, Any]:
    """A campaigns shard as plan_* hands it to extract_*: one cursor stream, no probe before it."""
    return {
        "entity": "campaigns",
        "index": 0,
        "style": "cursor",
        "first": None,
        "last": None,
        "limit": limit,
        "label": "campaigns: cursor stream",
        "expected_total": None,
        "requests_per_second": 0,
    }
