"""Connection settings for the Trackier API and the offers database.

Both come from Airflow connections (``trackier_api``, ``offers_db``), which users set with
``AIRFLOW_CONN_*`` environment variables or a secrets backend. Everything that is only *inferred*
about the real API (page size, pagination style, rate limit) is a connection extra, so a wrong
guess costs one config change. The API key is held as a ``SecretStr``: it never appears in a repr,
a log line, an exception or an XCom.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from include.offer_sync.constants import (
    AUTO,
    DEFAULT_FETCH_THREADS,
    DEFAULT_MAX_PAGES,
    DEFAULT_MAX_SHARDS,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PAGES_PER_SHARD,
    DEFAULT_VALIDATE_PROCESSES,
    MAX_MAX_PAGES,
    MAX_PAGE_SIZE,
    MAX_VALIDATE_PROCESSES,
    OFFERS_DB_CONN_ID,
    TRACKIER_CONN_ID,
)
from include.offer_sync.errors import ConfigurationError

__all__ = ["OFFERS_DB_CONN_ID", "TRACKIER_CONN_ID", "DatabaseSettings", "TrackierSettings"]


PaginationStyle = Literal["auto", "page", "cursor"]


@dataclass(frozen=True)
class TrackierSettings:
    """How to talk to Trackier. Defaults follow ``docs/trackier-api.md``; extras override them."""

    base_url: str
    api_key: SecretStr = field(repr=False)
    page_size: int = DEFAULT_PAGE_SIZE
    pagination: PaginationStyle = "auto"
    requests_per_second: float = 5.0  # for the whole sweep; 0 disables the client-side limiter
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    max_pages: int = DEFAULT_MAX_PAGES
    pages_per_shard: int = DEFAULT_PAGES_PER_SHARD
    max_shards: int = DEFAULT_MAX_SHARDS
    fetch_threads: int = DEFAULT_FETCH_THREADS
    validate_processes: int | str = DEFAULT_VALIDATE_PROCESSES  # a number, or AUTO

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
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ConfigurationError(f"trackier_api: page_size must be 1..{MAX_PAGE_SIZE}, got {self.page_size}")
        if not 1 <= self.max_pages <= MAX_MAX_PAGES:
            raise ConfigurationError(f"trackier_api: max_pages must be 1..{MAX_MAX_PAGES}, got {self.max_pages}")
        workers = self.validate_processes
        if isinstance(workers, str) and workers.strip().isdigit():  # "2" from a hand-written extra
            workers = int(workers)
            object.__setattr__(self, "validate_processes", workers)
        if workers != AUTO and not (type(workers) is int and 0 <= workers <= MAX_VALIDATE_PROCESSES):
            raise ConfigurationError(
                f"trackier_api: validate_processes must be {AUTO!r} or 0..{MAX_VALIDATE_PROCESSES} (0: stage in the "
                f"task process), got {workers!r}"
            )
        if self.pagination not in ("auto", "page", "cursor"):
            raise ConfigurationError(f"trackier_api: pagination must be auto, page or cursor, got {self.pagination!r}")

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
            raise ConfigurationError(f"trackier_api: unknown extra field(s) {sorted(unknown)}; known: {sorted(known)}")
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


#: Extras of ``offers_db`` that are ours, not libpq's: the schema the catalogue lives in.
_SCHEMA_EXTRAS = ("search_path", "schema")


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the catalogue lives. ``conninfo`` is a libpq connection string; its password is never logged."""

    conninfo: str = field(repr=False)
    schema: str | None = None

    @property
    def display(self) -> str:
        """``postgresql://user@host:port/dbname`` without the password, for logs and the demo's output."""
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = conninfo_to_dict(self.conninfo)
        except psycopg.ProgrammingError:  # a malformed string must not hide the error we are reporting
            return "postgresql://(unparsable connection string)"
        netloc = str(params.get("host") or params.get("hostaddr") or "")
        if params.get("port"):
            netloc = f"{netloc}:{params['port']}"
        if params.get("user"):
            netloc = f"{params['user']}@{netloc}"
        return f"postgresql://{netloc}/{params.get('dbname') or ''}"

    @classmethod
    def from_connection(cls, conn: Any) -> DatabaseSettings:
        """The libpq arguments Airflow's ``PostgresHook.get_conn`` would connect with, as a conninfo string.

        The hook decides what a Postgres connection means: host, port, login, password, the schema
        field as the database, IAM tokens when ``iam`` is set, and every other extra passed to libpq
        as is (``sslmode``, ``sslcert``, ``sslkey``, ``sslrootcert``, ``options``, ``keepalives``,
        ``target_session_attrs``, ``application_name`` ...). Hand-picking options here used to drop
        all but three without a word. Only our own ``search_path``/``schema`` extra is taken out.
        """
        from psycopg.conninfo import make_conninfo

        args = _postgres_hook_connect_args(conn)
        extra = _extra_dict(conn)
        return cls(conninfo=make_conninfo(**args), schema=extra.get("search_path") or extra.get("schema"))

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


def _postgres_hook_connect_args(conn: Any) -> dict[str, Any]:
    """The keyword arguments ``PostgresHook.get_conn`` passes to the driver, without connecting.

    ``get_conn`` builds them (connection fields, IAM token, extras minus the hook's own keys) and
    hands them to ``_create_connection``; this subclass returns them instead of connecting. The
    cursor factory the ``cursor`` extra selects is dropped: the sync uses its own cursors.
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    class _ConnectArgs(PostgresHook):
        ignored_extra_options = PostgresHook.ignored_extra_options | set(_SCHEMA_EXTRAS)

        def _create_connection(self, conn_args: dict[str, Any]) -> Any:
            return conn_args

    args: dict[str, Any] = _ConnectArgs(connection=conn).get_conn()  # type: ignore[assignment]
    if not isinstance(args, dict):
        raise ConfigurationError("offers_db: the installed Postgres provider builds connections differently")
    return {k: v for k, v in args.items() if v is not None and k not in ("row_factory", "cursor_factory")}
