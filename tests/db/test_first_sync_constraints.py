"""Issue 14: the first sync builds offers' constraints once, after its insert, and leaves them as declared.

``merge_offers_first_defer.sql`` drops the primary key, the unique constraint, the brand index and
the foreign key (and offer_audit's primary key and two secondary indexes, when the trail is empty
too) before filling the empty table and ``merge_offers_first_restore.sql`` builds them back in the
same transaction. What must
hold: afterwards both tables have exactly the constraints and indexes ``schema.sql`` declares, and
they work; a kept audit trail keeps its indexes; a role that may not alter the tables syncs with
them in place.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from devtools.fake_trackier import Catalogue
from devtools.inline import run_sync
from include.offer_sync.db import connect
from include.offer_sync.load.schema import ensure_schema
from include.offer_sync.settings import DatabaseSettings
from tests.helpers import trackier_settings

DEFINITIONS = """
    SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'offers'::regclass
    UNION ALL
    SELECT 'index', indexname, indexdef FROM pg_indexes WHERE tablename = 'offers'
    UNION ALL
    SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'offer_audit'::regclass
    UNION ALL
    SELECT 'index', indexname, indexdef FROM pg_indexes WHERE tablename = 'offer_audit'
    ORDER BY 1, 2
"""
#: offer_audit's secondary indexes, by name, with their relation's oid (a rebuilt index has a new one).
AUDIT_INDEXES = """
    SELECT indexrelid::regclass::text, indexrelid::bigint FROM pg_index
    WHERE indrelid = 'offer_audit'::regclass AND NOT indisprimary ORDER BY 1
"""
#: Both tables' primary-key indexes, by name, with their relation's oid.
PRIMARY_KEYS = """
    SELECT indexrelid::regclass::text, indexrelid::bigint FROM pg_index
    WHERE indrelid IN ('offers'::regclass, 'offer_audit'::regclass) AND indisprimary ORDER BY 1
"""


def test_the_first_sync_leaves_offers_with_the_constraints_schema_sql_declares(fake_trackier, offers_db, sql) -> None:
    with connect(offers_db) as conn:
        ensure_schema(conn)
    declared = sql(DEFINITIONS)
    assert ("constraint", "offers_brand_id_fkey", "FOREIGN KEY (brand_id) REFERENCES brands(id)") in declared
    audit_indexes = sql(AUDIT_INDEXES)
    assert [name for name, _ in audit_indexes] == ["offer_audit_offer_idx", "offer_audit_run_action_idx"]
    primary_keys = sql(PRIMARY_KEYS)
    assert [name for name, _ in primary_keys] == ["offer_audit_pkey", "offers_pkey"]
    api = trackier_settings(fake_trackier(Catalogue(4, 120, seed=5)), page_size=40)
    result = run_sync(offers_db, api, "run-1")
    assert result["added"] == 120
    assert sql("SELECT metrics->>'merge_path' FROM sync_runs WHERE run_id = 'run-1'") == [("first_sync",)]
    assert sql(DEFINITIONS) == declared
    rebuilt = sql(AUDIT_INDEXES)
    assert [n for n, _ in rebuilt] == [n for n, _ in audit_indexes]
    assert not {oid for _, oid in rebuilt} & {oid for _, oid in audit_indexes}, "built after the insert"
    rebuilt_keys = sql(PRIMARY_KEYS)
    assert [n for n, _ in rebuilt_keys] == [n for n, _ in primary_keys]
    assert not {oid for _, oid in rebuilt_keys} & {oid for _, oid in primary_keys}, "keys built after the insert"
    # The audit trail reads through them as before: the run's inserts, by offer and by run.
    assert sql("SELECT count(*) FROM offer_audit WHERE run_id = 'run-1' AND action = 'inserted'") == [(120,)]
    # ... and they hold: an unknown brand and a second row for an id are refused.
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        sql(
            "INSERT INTO offers (trackier_id, brand_id, title, currency, content_hash) "
            "VALUES ('x', -1, 't', 'USD', 'h')"
        )
    with pytest.raises(psycopg.errors.UniqueViolation):
        sql(
            "INSERT INTO offers (trackier_id, brand_id, title, currency, content_hash) "
            "SELECT trackier_id, brand_id, title, currency, content_hash FROM offers LIMIT 1"
        )
    for table in ("offers", "offer_audit"):  # the rebuilt primary keys hold too
        with pytest.raises(psycopg.errors.UniqueViolation):
            sql(f"INSERT INTO {table} OVERRIDING SYSTEM VALUE SELECT * FROM {table} ORDER BY id LIMIT 1")
    # The next sync takes the general path on the same constraints.
    assert run_sync(offers_db, api, "run-2")["unchanged"] == 120
    assert sql(DEFINITIONS) == declared


def test_a_kept_audit_trail_beside_an_emptied_offers_table_keeps_its_indexes(fake_trackier, offers_db, sql) -> None:
    """offers emptied by hand, its trail kept: the first-sync path, but offer_audit's indexes stay put.

    Rebuilding them would sort the whole kept trail; only an empty trail is cheaper to index after.
    """
    api = trackier_settings(fake_trackier(Catalogue(4, 90, seed=8)), page_size=40)
    assert run_sync(offers_db, api, "run-1")["added"] == 90
    sql("DELETE FROM offers")
    declared, kept = sql(DEFINITIONS), sql(AUDIT_INDEXES)

    result = run_sync(offers_db, api, "run-2")

    assert (result["status"], result["added"]) == ("completed", 90)
    assert sql("SELECT metrics->>'merge_path' FROM sync_runs WHERE run_id = 'run-2'") == [("first_sync",)]
    assert sql(AUDIT_INDEXES) == kept, "the same index relations: not dropped and rebuilt"
    assert sql(DEFINITIONS) == declared
    assert sql("SELECT run_id, count(*) FROM offer_audit GROUP BY 1 ORDER BY 1") == [("run-1", 90), ("run-2", 90)]


@pytest.fixture
def writer_role(offers_db_url: str) -> Any:
    """A login role with the rights a locked-down deployment grants: data and staging, not ownership."""
    role = f"offer_sync_writer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(offers_db_url, autocommit=True) as admin:
        ensure_schema(admin)
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"')
        admin.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"')
        admin.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
    url = urlsplit(offers_db_url)
    yield url._replace(netloc=f"{role}@{url.hostname}:{url.port or 5432}").geturl()
    with psycopg.connect(offers_db_url, autocommit=True) as admin:
        admin.execute(f'DROP OWNED BY "{role}"')
        admin.execute(f'DROP ROLE "{role}"')


def test_a_role_that_does_not_own_offers_runs_the_first_sync_with_its_constraints(
    fake_trackier, writer_role, sql
) -> None:
    declared = sql(DEFINITIONS)
    api = trackier_settings(fake_trackier(Catalogue(4, 120, seed=6)), page_size=40)
    result = run_sync(DatabaseSettings(conninfo=writer_role), api, "run-1")
    assert (result["status"], result["added"]) == ("completed", 120)
    assert sql("SELECT count(*) FROM offers") == [(120,)]
    assert sql(DEFINITIONS) == declared
