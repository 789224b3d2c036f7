"""Idempotent creation of the catalogue tables, so the DAG needs nothing but its two connections."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from include.offer_sync.db import load_sql

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: brands.is_active/deactivated_at, brand_audit, sync_runs.event_*


def ensure_schema(conn: psycopg.Connection[Any]) -> bool:
    """Create the tables when they are missing; returns whether anything was created.

    The common case (schema present) costs one small query. Creation runs under an advisory lock
    so two first runs against a new database cannot race each other's DDL.
    """
    autocommit = conn.autocommit
    conn.autocommit = True  # the check is one statement, not BEGIN + SELECT + COMMIT
    try:
        row = conn.execute(load_sql("schema_version")).fetchone()  # type: ignore[arg-type]
        if row and row[0] is not None and row[0] >= SCHEMA_VERSION:
            return False
    except psycopg.errors.UndefinedTable:
        pass
    finally:
        conn.autocommit = autocommit
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('trackier_offer_sync.schema'))")
        conn.execute(load_sql("schema"))  # type: ignore[arg-type]
    log.info("created the offer sync tables (schema version %d)", SCHEMA_VERSION)
    return True
