"""Connection settings for the Trackier API and the offers database.

Both come from Airflow connections (``trackier_api``, ``offers_db``), which users set with
``AIRFLOW_CONN_*`` environment variables or a secrets backend. Everything that is only *inferred*
about the real API (page size, pagination style, rate limit) is a connection extra, so a wrong
guess costs one config change. The API key is held as a ``SecretStr``: it never appears in a repr,
a log line, an exception or an XCom.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import SecretStr

from include.offer_sync.errors import ConfigurationError

TRACKIER_CONN_ID = "trackier_api"
OFFERS_DB_CONN_ID = "offers_db"
WEBHOOK_CONN_ID = "offer_sync_webhook"

PaginationStyle = Literal["auto", "page", "cursor"]


@dataclass(frozen=True)
class TrackierSettings:
    """How to talk to Trackier. Defaults follow ``TRACKIER_API.md``; extras override them."""

    base_url: str
    api_key: SecretStr = field(repr=False)
    page_size: int = 1000
    pagination: PaginationStyle = "auto"
    requests_per_second: float = 5.0  # for the whole sweep; 0 disables the client-side limiter
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    max_pages: int = 100_000
    pages_per_shard: int = 50
    max_shards: int = 8
    fetch_threads: int = 2

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"trackier_api: base URL must start with http:// or https://, got {self.base_url!r}"
            )
        if not self.api_key.get_secret_value():
            raise ConfigurationError(
                "trackier_api: no API key. Put the network (admin) API key from Trackier's panel "
                "(Automation -> API) in the connection's password field."
            )
        if not 1 <= self.page_size <= 1000:
            raise ConfigurationError(f"trackier_api: page_size must be 1..1000, got {self.page_size}")
        if self.pagination not in ("auto", "page", "cursor"):
            raise ConfigurationError(
                f"trackier_api: pagination must be auto, page or cursor, got {self.pagination!r}"
            )

    def with_overrides(self, **overrides: Any) -> TrackierSettings:
        """Apply run-time ``Param`` overrides (``None`` means keep the connection's value)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_connection(cls, conn: Any) -> TrackierSettings:
        """Build settings from an Airflow ``Connection`` (HTTP type: host, password, extra)."""
        extra = _extra_dict(conn)
        base_url = _http_base_url(conn)
        known = {f for f in cls.__dataclass_fields__ if f not in ("base_url", "api_key")}
        unknown = set(extra) - known
        if unknown:
            raise ConfigurationError(
                f"trackier_api: unknown extra field(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        typed: dict[str, Any] = {}
        for key, value in extra.items():
            kind = type(getattr(cls, key, None)) if hasattr(cls, key) else str
            try:
                typed[key] = kind(value) if kind in (int, float) else value
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"trackier_api: extra {key}={value!r} is not a number") from exc
        return cls(base_url=base_url, api_key=SecretStr(conn.password or ""), **typed)

    @classmethod
    def from_airflow(cls, conn_id: str = TRACKIER_CONN_ID) -> TrackierSettings:
        """Read the connection through the Task SDK (env vars, secrets backend or metadata DB)."""
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception as exc:  # the SDK raises its own NotFound types
            raise ConfigurationError(
                f"connection {conn_id!r} is not defined; set AIRFLOW_CONN_{conn_id.upper()}"
            ) from exc
        return cls.from_connection(conn)


def _extra_dict(conn: Any) -> dict[str, Any]:
    extra = getattr(conn, "extra_dejson", None)
    if extra is None:
        raw = getattr(conn, "extra", None) or "{}"
        extra = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return dict(extra)


def _http_base_url(conn: Any) -> str:
    """Mirror the HTTP provider: a host with a scheme is used as is, else schema/conn_type decide."""
    host = (conn.host or "").rstrip("/")
    if not host:
        raise ConfigurationError("trackier_api: the connection has no host (the API base URL)")
    if "://" in host:
        base = host
    else:
        scheme = next(
            (s for s in (conn.schema, conn.conn_type) if s in ("http", "https")),
            "https",
        )
        base = f"{scheme}://{host}"
    if conn.port and not urlsplit(base).port:
        base = f"{base}:{conn.port}"
    return base


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the catalogue lives. ``conninfo`` is a libpq URL; its password is never logged."""

    conninfo: str = field(repr=False)
    schema: str | None = None

    @property
    def display(self) -> str:
        """The URL without its password, for logs and the demo's output."""
        parts = urlsplit(self.conninfo)
        socket_dir = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("host")
        netloc = parts.hostname or unquote(socket_dir or "")
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        return f"{parts.scheme}://{netloc}{parts.path}"

    @classmethod
    def from_connection(cls, conn: Any) -> DatabaseSettings:
        extra = _extra_dict(conn)
        user = quote(conn.login or "", safe="")
        password = quote(conn.password or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = conn.host or extra.get("host") or "localhost"
        database = quote(conn.schema or "", safe="")
        options = {k: v for k, v in extra.items() if k in ("sslmode", "sslrootcert", "application_name")}
        if host.startswith("/"):  # a Unix socket directory (e.g. an embedded server): libpq takes it as ?host=
            options = {"host": host, **({"port": conn.port} if conn.port else {}), **options}
            netloc = auth.rstrip("@") + "@" if auth else ""
        else:
            netloc = f"{auth}{host}" + (f":{conn.port}" if conn.port else "")
        query = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in options.items())
        url = f"postgresql://{netloc}/{database}" + (f"?{query}" if query else "")
        return cls(conninfo=url, schema=extra.get("search_path") or extra.get("schema"))

    @classmethod
    def from_airflow(cls, conn_id: str = OFFERS_DB_CONN_ID) -> DatabaseSettings:
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception as exc:
            raise ConfigurationError(
                f"connection {conn_id!r} is not defined; set AIRFLOW_CONN_{conn_id.upper()}"
            ) from exc
        return cls.from_connection(conn)

    @classmethod
    def from_env(cls) -> DatabaseSettings | None:
        url = os.environ.get("OFFER_SYNC_DB_URL")
        return cls(conninfo=url) if url else None
