"""History, Run detail and Offer lookup of the Offer Sync page, at the data layer (``ui/explore.py``).

Against a real PostgreSQL that went through four syncs of the fake Trackier (``tests/ui_history.py``:
added, changed, removed offers, a rejected record, a failed run). What is protected: every list is a
keyset page that covers each row exactly once, filters take ``%`` and ``_`` literally, the CSV
streams every reject with formula cells neutralised, the thresholds are the alert rules' own, and
the pages read their indexes instead of sorting a whole run.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devtools.fake_trackier import Catalogue, FakeTrackier
from include.offer_sync.load.schema import ensure_schema
from include.offer_sync.settings import DatabaseSettings
from include.offer_sync.ui import explore
from include.offer_sync.ui.data import offers_connection
from tests.ui_history import FORMULA_ID, RENAMED_TITLE, XSS, History, build_history

API_KEY = "test-key-explore"
ENV = {"OFFER_SYNC_MAX_DURATION_S": "2", "OFFER_SYNC_MAX_ERROR_RATE": "0.002"}


@pytest.fixture(scope="module")
def synced(pg_admin_url: str) -> Iterator[tuple[str, History]]:
    """One database that went through the four syncs of ``build_history`` (read-only for the tests)."""
    name = f"offer_sync_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
    fake = FakeTrackier(Catalogue(8, 400, seed=11), api_key=API_KEY)
    try:
        yield url, build_history(fake, url, API_KEY, ENV)
    finally:
        fake.stop()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def conn(synced: tuple[str, History]) -> Iterator[psycopg.Connection[Any]]:
    with offers_connection(DatabaseSettings(conninfo=synced[0])) as c:
        yield c


def _run_row(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    row = explore.run_row(conn, run_id)
    assert row is not None
    return row


# --- history ------------------------------------------------------------------------------------


def test_history_is_the_last_runs_oldest_first_with_the_failed_run_measured(
    conn: psycopg.Connection[Any], synced: tuple[str, History]
) -> None:
    history = synced[1]
    h = explore.run_history(conn, 30, ENV)
    assert [r["run_id"] for r in h["runs"]] == history.run_ids
    assert [r["status"] for r in h["runs"]] == ["completed", "completed_with_errors", "completed_with_errors", "failed"]
    assert h["runs"][0]["added"] == 400
    failed = h["runs"][-1]
    # The failed run never merged: its columns are empty, the chart reads what its result measured.
    assert conn.execute("SELECT error_rate FROM sync_runs WHERE run_id = %s", (failed["run_id"],)).fetchone() == (None,)
    assert failed["error_rate"] == pytest.approx(history.results[-1]["error_rate"])
    assert failed["error_rate"] > 0.05
    assert (failed["added"], failed["deactivated"]) == (0, 0)  # nothing was written
    assert [r["run_id"] for r in explore.run_history(conn, 2, ENV)["runs"]] == history.run_ids[-2:]


def test_chart_thresholds_are_the_alert_rules_thresholds() -> None:
    from include.offer_sync.alerts.rules import Thresholds

    assert explore.chart_thresholds(ENV) == {"max_duration_s": 2.0, "max_error_rate": 0.002, "error": None}
    defaults = Thresholds()
    assert explore.chart_thresholds({}) == {
        "max_duration_s": defaults.max_duration_s,
        "max_error_rate": defaults.max_error_rate,
        "error": None,
    }
    broken = explore.chart_thresholds({"OFFER_SYNC_MAX_DURATION_S": "ten minutes"})
    assert broken["max_duration_s"] is None
    assert "OFFER_SYNC_MAX_DURATION_S" in str(broken["error"])


# --- one run ------------------------------------------------------------------------------------


def test_run_detail_has_phases_shards_alerts_and_reject_reasons(
    conn: psycopg.Connection[Any], synced: tuple[str, History]
) -> None:
    history = synced[1]
    d = explore.run_detail(conn, history.run_ids[1])
    assert d is not None
    row = conn.execute(
        "SELECT added, updated, deactivated, rejected, metrics FROM sync_runs WHERE run_id = %s", (history.run_ids[1],)
    ).fetchone()
    assert row is not None
    assert (d["run"]["added"], d["run"]["updated"], d["run"]["deactivated"], d["run"]["rejected"]) == row[:4]
    assert [p["key"] for p in d["phases"]] == ["extract", "validate", "stage", "check", "merge"]
    assert [p["seconds"] for p in d["phases"]] == [row[4]["phases_s"][p["key"]] for p in d["phases"]]
    extract_tasks = [t["task"] for t in row[4]["tasks"] if t["task"].startswith(("advertisers", "campaigns"))]
    assert [s["label"] for s in d["shards"]] == extract_tasks
    assert d["page_errors"] == []
    assert [a["rule"] for a in d["alerts"]] == ["error_rate"]  # 1 reject in ~400 is over 0.2%
    assert d["reject_reasons"] == [{"reason": "currency: String should have at most 16 characters", "count": 1}]


def test_failed_run_detail_shows_its_failed_page_and_alerts(
    conn: psycopg.Connection[Any], synced: tuple[str, History]
) -> None:
    d = explore.run_detail(conn, synced[1].failed_run_id)
    assert d is not None
    assert d["run"]["status"] == "failed"
    assert "circuit breaker" in d["run"]["error"]
    assert [(e["entity"], e["page"], e["kind"]) for e in d["page_errors"]] == [("campaigns", 2, "failed_page")]
    assert d["page_errors_total"] == 1
    assert {a["rule"] for a in d["alerts"]} == {"run_failed", "error_rate"}
    assert d["phases"] == []  # it failed before its metrics were recorded
    assert explore.run_detail(conn, "no-such-run") is None


def test_changes_are_paged_by_kind_and_cover_the_runs_counts(
    conn: psycopg.Connection[Any], synced: tuple[str, History]
) -> None:
    history = synced[1]
    run2 = _run_row(conn, history.run_ids[1])
    seen: list[dict[str, Any]] = []
    after = 0
    while True:
        page = explore.run_changes(conn, history.run_ids[1], "updated", after=after, limit=7)
        assert len(page["items"]) <= 7
        seen += page["items"]
        if page["next"] is None:
            break
        after = page["next"]
    assert len(seen) == run2["updated"] > 7
    assert len({c["id"] for c in seen}) == len(seen)
    assert [c["id"] for c in seen] == sorted(c["id"] for c in seen)
    xss = next(c for c in seen if c["trackier_id"] == history.xss_offer)
    assert xss["changes"]["title"]["new"] == XSS
    assert xss["title"] == XSS
    gone = explore.run_changes(conn, history.run_ids[1], "deactivated", limit=50)["items"]
    assert {c["trackier_id"] for c in gone} >= set(history.removed_in_run2)
    assert all(c["is_active"] is False for c in gone)
    added = explore.run_changes(conn, history.run_ids[1], "inserted", limit=50)["items"]
    assert len(added) == run2["added"]
    with pytest.raises(ValueError, match="action must be one of"):
        explore.run_changes(conn, history.run_ids[1], "deleted", limit=5)  # type: ignore[arg-type]


def test_rejects_page_and_csv_of_a_run(conn: psycopg.Connection[Any], synced: tuple[str, History]) -> None:
    history = synced[1]
    page = explore.run_rejects(conn, history.run_ids[1], limit=10)
    assert [r["record_key"] for r in page["items"]] == [FORMULA_ID]
    assert page["next"] is None
    assert explore.run_rejects(conn, history.run_ids[1], reason="currency: String", limit=10)["items"]
    assert explore.run_rejects(conn, history.run_ids[1], reason="title:", limit=10)["items"] == []
    rows = list(csv.reader(io.StringIO("".join(explore.iter_rejects_csv(conn, history.run_ids[1])))))
    assert rows[0] == list(explore.CSV_COLUMNS)
    assert len(rows) == 2
    record = dict(zip(rows[0], rows[1], strict=True))
    assert record["record_key"] == "'" + FORMULA_ID  # a spreadsheet shows it, never runs it
    assert record["run_id"] == history.run_ids[1]
    assert XSS in record["reason"]


# --- offers -------------------------------------------------------------------------------------


def test_offer_search_finds_exact_ids_first_and_titles_with_literal_wildcards(
    conn: psycopg.Connection[Any], synced: tuple[str, History]
) -> None:
    history = synced[1]
    by_id = explore.search_offers(conn, history.removed_in_run2[0])
    assert by_id[0]["trackier_id"] == history.removed_in_run2[0]
    assert by_id[0]["exact"] is True
    hash_id = conn.execute("SELECT hash_id FROM offers WHERE trackier_id = %s", (history.xss_offer,)).fetchone()[0]  # type: ignore[index]
    assert [o["trackier_id"] for o in explore.search_offers(conn, hash_id)][:1] == [history.xss_offer]
    # % and _ are characters to find, not wildcards: only the one title that has them matches.
    for needle in ("0% off_", "%", "_", "100% OFF_WEEKEND"):
        found = explore.search_offers(conn, needle)
        assert [o["title"] for o in found] == [RENAMED_TITLE], needle
    assert explore.search_offers(conn, "x%y") == []
    assert len(explore.search_offers(conn, "a", limit=5)) == 5  # limited in SQL
    assert explore.search_offers(conn, "   ") == []
    markup = explore.search_offers(conn, "<img")
    assert [o["title"] for o in markup] == [XSS]


def test_offer_lookup_names_the_run_that_deactivated_it(
    conn: psycopg.Connection[Any], synced: tuple[str, History]
) -> None:
    history = synced[1]
    found = explore.offer_lookup(conn, history.removed_in_run2[0])
    assert found is not None
    offer = found["offer"]
    assert offer["is_active"] is False
    assert offer["deactivated_by"] == history.run_ids[1]
    assert offer["deactivation_run_status"] == "completed_with_errors"
    trail = found["audit"]["items"]
    assert [(a["action"], a["run_id"]) for a in trail] == [
        ("deactivated", history.run_ids[1]),
        ("inserted", history.run_ids[0]),
    ]
    assert trail[0]["changes"] == {"is_active": {"old": True, "new": False}}
    # Newest first, one row per page: the cursor walks back to the insert.
    first = explore.offer_audit(conn, int(offer["id"]), limit=1)
    assert [a["action"] for a in first["items"]] == ["deactivated"]
    second = explore.offer_audit(conn, int(offer["id"]), before=first["next"], limit=1)
    assert [a["action"] for a in second["items"]] == ["inserted"]
    assert second["next"] is None
    active = explore.offer_lookup(conn, history.xss_offer)
    assert active is not None
    assert active["offer"]["is_active"] is True
    assert active["offer"]["deactivated_by"] is None
    assert explore.offer_lookup(conn, "no-such-offer") is None


# --- pagination at scale, CSV safety ------------------------------------------------------------


@pytest.fixture
def rejects_db(offers_db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An empty catalogue schema with 130 rejects of one run (reasons with LIKE wildcards)."""
    with psycopg.connect(offers_db_url, autocommit=True) as setup:
        ensure_schema(setup)
        setup.execute(
            "INSERT INTO sync_rejects (run_id, entity, record_key, reason, raw, shard, page) "
            "SELECT 'r1', 'campaigns', CASE i % 5 WHEN 0 THEN '=1+' || i WHEN 1 THEN '+' || i WHEN 2 THEN '-' || i "
            "WHEN 3 THEN '@' || i ELSE i::text END, "
            "CASE WHEN i % 10 = 0 THEN 'payout: 100% of revenue (got ' || i || ')' "
            "WHEN i % 10 = 1 THEN 'title: bad_name (got ' || i || ')' ELSE 'currency: unknown (got ' || i || ')' END, "
            "repeat('x', 500), 0, i FROM generate_series(1, 130) AS i"
        )
        setup.execute(
            "INSERT INTO sync_rejects (run_id, entity, record_key, reason) VALUES ('r2', 'campaigns', 'o', 'other run')"
        )
    with offers_connection(DatabaseSettings(conninfo=offers_db_url)) as c:
        yield c


def test_rejects_pages_cover_every_reject_once_and_filters_take_wildcards_literally(
    rejects_db: psycopg.Connection[Any],
) -> None:
    ids: list[int] = []
    after = 0
    while True:
        page = explore.run_rejects(rejects_db, "r1", after=after, limit=50)
        ids += [r["id"] for r in page["items"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert len(ids) == len(set(ids)) == 130
    assert ids == sorted(ids)
    first = explore.run_rejects(rejects_db, "r1", limit=50)["items"][0]
    assert len(first["raw"]) == explore.RAW_CHARS  # cut for the page
    percent = explore.run_rejects(rejects_db, "r1", reason="100%", limit=200)["items"]
    assert len(percent) == 13
    assert all("100%" in r["reason"] for r in percent)
    assert explore.run_rejects(rejects_db, "r1", reason="%", limit=200)["items"] == percent
    underscore = explore.run_rejects(rejects_db, "r1", reason="_", limit=200)["items"]
    assert len(underscore) == 13
    assert all("_" in r["reason"] for r in underscore)
    reasons = explore._rows(rejects_db, "ui_run_reject_reasons", {"run_id": "r1", "limit": 20})
    groups = {g["reason"]: g["count"] for g in reasons}
    assert groups == {"currency: unknown": 104, "payout: 100% of revenue": 13, "title: bad_name": 13}


def test_rejects_csv_streams_every_row_in_batches_with_formulas_neutralised(
    rejects_db: psycopg.Connection[Any],
) -> None:
    chunks = list(explore.iter_rejects_csv(rejects_db, "r1", batch=40))
    assert len(chunks) == 4  # 40 + 40 + 40 + 10 rows: one keyset batch per chunk
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert len(rows) == 130
    assert {r["run_id"] for r in rows} == {"r1"}
    assert all(len(r["raw"]) == 500 for r in rows)  # the download has the whole raw record
    keys = [r["record_key"] for r in rows]
    assert all(k[0] not in "=+-@" for k in keys)
    assert {"'=1+5", "'+1", "'-2", "'@3", "4"} <= set(keys)
    filtered = list(csv.DictReader(io.StringIO("".join(explore.iter_rejects_csv(rejects_db, "r1", reason="100%")))))
    assert len(filtered) == 13


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        ("", ""),
        (None, ""),
        (7, 7),
    ],
)
def test_csv_cell_prefixes_what_a_spreadsheet_would_run(value: Any, cell: Any) -> None:
    assert explore.csv_cell(value) == cell


def test_pages_read_the_indexes_instead_of_sorting_a_run(rejects_db: psycopg.Connection[Any]) -> None:
    from include.offer_sync.db import load_sql

    rejects_db.execute("SET enable_seqscan = off")  # a tiny table: ask for the plan a big one gets
    params: dict[str, Any] = {"run_id": "r1", "after": 0, "limit": 51, "raw_chars": 240, "pattern": None}
    plan = "\n".join(r[0] for r in rejects_db.execute("EXPLAIN " + load_sql("ui_run_rejects"), params))  # type: ignore[arg-type]
    assert "sync_rejects_run_id_idx" in plan
    assert "Sort" not in plan
    params = {"run_id": "r1", "action": "updated", "after": 0, "limit": 51}
    plan = "\n".join(r[0] for r in rejects_db.execute("EXPLAIN " + load_sql("ui_run_changes"), params))  # type: ignore[arg-type]
    assert "offer_audit_run_action_idx" in plan
    assert "Sort" not in plan


# --- helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("abc", "%abc%"),
        ("100%", "%100\\%%"),
        ("a_b", "%a\\_b%"),
        ("c:\\dir", "%c:\\\\dir%"),
    ],
)
def test_like_pattern_escapes_wildcards(text: str, pattern: str) -> None:
    assert explore.like_pattern(text) == pattern


@pytest.mark.parametrize(
    ("scope", "roots"),
    [
        ({"root_path": "/offer-sync"}, ("/offer-sync", "")),
        ({"root_path": "/airflow/offer-sync", "app_root_path": "/airflow"}, ("/airflow/offer-sync", "/airflow")),
        ({"root_path": "/a/b/offer-sync/"}, ("/a/b/offer-sync", "/a/b")),
        ({"root_path": "/elsewhere", "app_root_path": "/x/"}, ("/elsewhere", "/x")),
    ],
)
def test_page_roots_follow_the_sub_path(scope: dict[str, Any], roots: tuple[str, str]) -> None:
    from include.offer_sync.ui.app import page_roots

    assert page_roots(scope) == roots
