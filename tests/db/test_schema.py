"""``load.schema.ensure_schema`` directly: a new database gets every table, an installed one costs a
single statement, and two first runs racing on a new database both succeed (the advisory lock)."""

from __future__ import annotations

import threading

from include.offer_sync import db as dbmod
from include.offer_sync.load.schema import SCHEMA_VERSION, ensure_schema

TABLES = {
    "brands",
    "offers",
    "offer_audit",
    "brand_audit",
    "sync_runs",
    "sync_rejects",
    "sync_page_errors",
    "sync_alerts",
    "offer_sync_schema",
}


def _tables(sql) -> set[str]:
    return {name for (name,) in sql("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def test_a_new_database_gets_every_table_and_the_current_version(offers_db, sql) -> None:
    assert _tables(sql) == set()
    with dbmod.connect(offers_db) as conn:
        assert ensure_schema(conn) is True
    assert _tables(sql) >= TABLES
    assert sql("SELECT max(version) FROM offer_sync_schema") == [(SCHEMA_VERSION,)]


def test_an_installed_schema_costs_one_statement_and_creates_nothing(offers_db, sql) -> None:
    with dbmod.connect(offers_db) as conn:
        ensure_schema(conn)
    before = sql("SELECT count(*) FROM offer_sync_schema")
    with dbmod.connect(offers_db) as conn:
        start = dbmod.STATEMENTS.count
        assert ensure_schema(conn) is False
        assert dbmod.STATEMENTS.count - start == 1
    assert sql("SELECT count(*) FROM offer_sync_schema") == before


def test_two_first_runs_racing_on_a_new_database_both_succeed(offers_db, sql) -> None:
    errors: list[BaseException] = []
    created: list[bool] = []
    start = threading.Barrier(2)

    def first_run() -> None:
        try:
            with dbmod.connect(offers_db) as conn:
                start.wait(10)
                created.append(ensure_schema(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(created) == 2
    assert True in created
    assert _tables(sql) >= TABLES
