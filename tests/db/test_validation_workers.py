"""Validation workers (``extract_pool.py``): the same staged rows as the task process, or nothing.

The pool is forced on for these small catalogues (``POOL_MIN_RECORDS`` patched to 0, two
processes); each test asserts that the workers really ran (``processes``), so a machine where the
pool cannot start fails here instead of passing without testing it.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import struct
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

from devtools.fake_trackier import Catalogue
from devtools.inline import run_sync, stage_sync
from include.offer_sync import extract, extract_pool, page_staging, tasks
from include.offer_sync.load.staging import StagingTables, staging_columns
from include.offer_sync.trackier.fingerprint import KnownFingerprints
from tests.helpers import trackier_settings

Sql = Callable[..., list[tuple[Any, ...]]]


def _staged_rows(sql: Sql, run_id: str, entity: str) -> list[tuple[Any, ...]]:
    """Every staging column of a run's ``entity`` table, in row order."""
    columns = ", ".join(staging_columns(entity))
    return sql(f'SELECT {columns} FROM "{StagingTables.for_run(run_id).table_for(entity)}" ORDER BY seq')


@pytest.fixture
def pool_for_every_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "POOL_MIN_RECORDS", 0)


def _hostile_catalogue() -> tuple[Catalogue, dict[str, str]]:
    """900 campaigns with odd text, three that cannot be stored, ten that fail validation."""
    catalogue = Catalogue(500, 900, seed=5)
    ids = catalogue.campaign_ids()
    catalogue.set_campaign(ids[41], categories=["tab\there", 'quote"back\\slash', "new\nline"], geo=["D\tE"])
    for i in range(100, 110):
        catalogue.set_campaign(ids[i], payouts=[{"payout": -5, "currency": "USD"}])
    unstorable = {str(ids[3]): "control_chars", str(ids[5]): "nul_description", str(ids[7]): "lone_surrogate_title"}
    return catalogue, unstorable


def test_the_workers_stage_byte_for_byte_the_rows_the_task_process_stages(
    fake_trackier, offers_db, sql, pool_for_every_shard
) -> None:
    catalogue, unstorable = _hostile_catalogue()
    server = fake_trackier(catalogue, invalid_ids=list(unstorable), invalid_kind=unstorable)

    inline = stage_sync(offers_db, trackier_settings(server, page_size=100, validate_processes=0), "run-inline")
    pooled = stage_sync(offers_db, trackier_settings(server, page_size=100, validate_processes=2), "run-pooled")

    assert {s["processes"] for s in inline["summaries"]} == {0}
    assert {s["processes"] for s in pooled["summaries"]} == {2}, "the workers ran for every shard"
    for entity in ("advertisers", "campaigns"):
        rows = _staged_rows(sql, "run-pooled", entity)
        assert rows == _staged_rows(sql, "run-inline", entity)
        assert len(rows) == (500 if entity == "advertisers" else 900)
    counted = ("pages", "records", "valid", "carried", "rejected", "last_page", "failed_pages", "anomalies")
    assert [{k: s[k] for k in counted} for s in pooled["summaries"]] == [
        {k: s[k] for k in counted} for s in inline["summaries"]
    ]
    assert sum(s["rejected"] for s in pooled["summaries"]) == 13
    assert all(s["worker_peak_rss_mb"] > 0 for s in pooled["summaries"])


def test_a_resync_through_the_workers_carries_the_unchanged_and_merges_the_changed(
    fake_trackier, offers_db, sql, pool_for_every_shard
) -> None:
    catalogue = Catalogue(40, 1200, seed=11)
    server = fake_trackier(catalogue)
    api = trackier_settings(server, page_size=100, validate_processes=2)
    first = run_sync(offers_db, api, "run-1")
    assert (first["added"], first["unchanged"]) == (1200, 0)
    ids = catalogue.campaign_ids()
    for i in range(0, 1200, 10):
        catalogue.set_campaign(ids[i], title=f"Renamed {i}")

    staged = stage_sync(offers_db, api, "run-2")
    campaigns = [s for s in staged["summaries"] if s["entity"] == "campaigns"]
    assert {s["processes"] for s in campaigns} == {2}
    assert sum(s["carried"] for s in campaigns) == 1080
    second = run_sync(offers_db, api, "run-3")  # run-2 was only staged: run-3 merges the renames
    assert (second["added"], second["updated"], second["unchanged"]) == (0, 120, 1080)
    shards = second["metrics"]["shards"]
    assert second["metrics"]["shards_with_workers"] == shards["advertisers"] + shards["campaigns"], "reported"
    titles = dict(sql("SELECT trackier_id, title FROM offers WHERE title LIKE 'Renamed %'"))
    assert len(titles) == 120


def test_records_no_json_writer_accepts_travel_to_the_workers_and_are_staged_the_same(
    fake_trackier, offers_db, sql, pool_for_every_shard
) -> None:
    catalogue = Catalogue(10, 600, seed=3)
    ids = catalogue.campaign_ids()
    server = fake_trackier(catalogue, invalid_ids=[str(ids[250])], invalid_kind={str(ids[250]): "lone_surrogate_title"})
    stage_sync(offers_db, trackier_settings(server, page_size=100, validate_processes=0), "run-a")
    pooled = stage_sync(offers_db, trackier_settings(server, page_size=100, validate_processes=2), "run-b")

    assert _staged_rows(sql, "run-b", "campaigns") == _staged_rows(sql, "run-a", "campaigns")
    rejected = sql(
        f"SELECT page, seq, reject_reason FROM \"{StagingTables.for_run('run-b').campaigns}\" WHERE status = 'rejected'"
    )
    assert len(rejected) == 1
    assert rejected[0][2].startswith("title: contains a lone surrogate")
    assert [s["processes"] for s in pooled["summaries"] if s["entity"] == "campaigns"] == [2]


class _Boom(Exception):
    pass


def _failing_stager(number: int | None, records: list[Any], fingerprints: Any, writer: Any) -> Any:
    if number == 3:
        raise _Boom(f"page {number}: a bug in validation")
    return page_staging.validate_campaigns(number, records, fingerprints, writer)


def _dying_stager(number: int | None, records: list[Any], fingerprints: Any, writer: Any) -> Any:
    if number == 3:
        os._exit(9)  # what the kernel's OOM killer does to a worker, as far as the task can tell
    return page_staging.validate_campaigns(number, records, fingerprints, writer)


def _start_sending_rows_and_stop() -> None:
    """Write what a worker's ``Connection.send_bytes`` writes first for 1 MiB of rows: the length, then a part.

    The write end is the one this worker's own ``_process_worker`` sends its results through.
    """
    frame = sys._getframe()
    while frame.f_code.co_name != "_process_worker":
        frame = frame.f_back
    os.write(frame.f_locals["result_queue"]._writer.fileno(), struct.pack("!i", 1 << 20) + bytes(1000))


def _dying_mid_send_stager(number: int | None, records: list[Any], fingerprints: Any, writer: Any) -> Any:
    if number == 3:
        _start_sending_rows_and_stop()
        os._exit(9)  # the OOM killer does not wait for the end of a message
    return page_staging.validate_campaigns(number, records, fingerprints, writer)


@pytest.mark.parametrize(
    ("stager", "error"),
    [(_failing_stager, _Boom), (_dying_stager, BrokenProcessPool), (_dying_mid_send_stager, BrokenProcessPool)],
    ids=["worker-raises", "worker-dies", "worker-dies-part-way-through-sending-its-rows"],
)
def test_a_worker_that_fails_or_dies_fails_its_shard_with_nothing_staged_and_no_worker_left(
    stager, error, fake_trackier, offers_db, sql, pool_for_every_shard, monkeypatch
) -> None:
    server = fake_trackier(Catalogue(10, 800, seed=2))
    api = trackier_settings(server, page_size=100, validate_processes=2)
    run = tasks.start_sync(offers_db, run_id="run-fail", dag_id="trackier_offer_sync", params={})
    shards = tasks.plan_entity(api, "campaigns")
    # The stager is replaced before the fork, so the workers run it (the task process never does).
    monkeypatch.setitem(page_staging.VALIDATE, "campaigns", stager)

    with pytest.raises(error):
        tasks.extract_shard(offers_db, api, run, shards[0])

    table = StagingTables.for_run("run-fail").campaigns
    assert sql(f'SELECT count(*) FROM "{table}"') == [(0,)]
    assert multiprocessing.active_children() == [], "every worker is gone"


def _stuck_mid_send_stager(marker: Path, number: int | None, records: list[Any], fingerprints: Any, writer: Any) -> Any:
    _start_sending_rows_and_stop()
    marker.touch()
    time.sleep(600)  # a worker the task kills while it sends its page's rows


def _ignore_errors(call: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(BaseException):  # the pool is killed under it: what the test wants
        call(*args)


def test_killing_the_workers_while_one_is_sending_its_rows_ends_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shard fails (here: raises in the task process) while a worker is part way through its rows.

    The CI run of 3537e2b hung in ``test_a_worker_that_fails_or_dies...[worker-raises]`` this way: the
    pool's manager thread waited for the rest of the killed worker's message, and shutdown for it.
    """
    marker = tmp_path / "sending"
    monkeypatch.setitem(page_staging.VALIDATE, "campaigns", functools.partial(_stuck_mid_send_stager, marker))
    raised: list[BaseException] = []

    def a_shard_that_fails_while_a_worker_sends() -> None:
        try:
            with extract_pool.page_pool("campaigns", 0, 1, 2, 1, KnownFingerprints()) as pages:
                assert pages is not None
                body = b'{"campaigns": [{"id": 1}]}'
                # a fetch thread, blocked until its worker answers (here: until the pool breaks)
                threading.Thread(target=_ignore_errors, args=(pages.stage, 1, body), daemon=True).start()
                while not marker.exists():
                    time.sleep(0.01)
                time.sleep(0.3)  # the pool's manager thread is reading the worker's message by now
                raise _Boom("the shard failed")
        except BaseException as exc:  # handed to the test through `raised`
            raised.append(exc)

    shard = threading.Thread(target=a_shard_that_fails_while_a_worker_sends, daemon=True)
    shard.start()
    shard.join(timeout=60)

    assert not shard.is_alive(), "the pool never shut down: its manager thread waits for the rest of the rows"
    assert [type(exc) for exc in raised] == [_Boom]
    assert multiprocessing.active_children() == []


def test_workers_that_cannot_start_leave_the_task_to_stage_every_page_itself(
    fake_trackier, offers_db, sql, pool_for_every_shard, monkeypatch, caplog
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("daemonic processes are not allowed to have children")

    server = fake_trackier(Catalogue(10, 300, seed=4))
    api = trackier_settings(server, page_size=100, validate_processes=2)
    monkeypatch.setattr(extract_pool, "_init_worker", refuse)  # runs in each worker: none starts

    staged = stage_sync(offers_db, api, "run-no-workers")

    campaigns = [s for s in staged["summaries"] if s["entity"] == "campaigns"]
    assert [(s["processes"], s["valid"]) for s in campaigns] == [(0, 300)]
    assert "validation workers did not start" in caplog.text
    assert multiprocessing.active_children() == []


def test_workers_only_where_they_pay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_pool, "usable_cores", lambda: 2)
    assert extract_pool.pool_size(2, 125_000, 20_000, "utf-8") == 2
    assert extract_pool.pool_size(8, None, 20_000, "utf-8") == 2, "capped by the cores; no total: a stream"
    assert extract_pool.pool_size(2, 19_999, 20_000, "utf-8") == 0, "a small shard stays in the task process"
    assert extract_pool.pool_size(1, 125_000, 20_000, "utf-8") == 0
    assert extract_pool.pool_size(0, 125_000, 20_000, "utf-8") == 0
    assert extract_pool.pool_size(2, 125_000, 20_000, "latin1") == 0, "workers format UTF-8 only"
    monkeypatch.setattr(extract_pool, "usable_cores", lambda: 1)
    assert extract_pool.pool_size(2, 125_000, 20_000, "utf-8") == 0, "one core: nothing to gain"
