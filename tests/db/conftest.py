"""Fixtures for the database tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from include.offer_sync import extract, extract_pool


@pytest.fixture(params=["in-the-task-process", "in-validation-workers"])
def either_staging_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test twice: pages staged by the task process, then by validation workers.

    The workers take a page's bytes and judge, parse and stage them themselves (``extract_pool.py``):
    every odd API shape and failure a test feeds the sync must come out the same that way. The second
    run forces them on for every numbered-page shard (``validate_processes: auto`` with two idle cores,
    no minimum size) and fails if one of those shards staged without them.
    """
    if request.param == "in-the-task-process":
        monkeypatch.setattr(extract_pool, "usable_cores", lambda: 1)  # auto: no workers, whatever the machine
        yield request.param
        return
    monkeypatch.setattr(extract, "POOL_MIN_RECORDS", 0)
    monkeypatch.setattr(extract_pool, "usable_cores", lambda: 2)
    monkeypatch.setattr(extract_pool, "busy_elsewhere", lambda *args, **kwargs: 0.0)
    shards: list[tuple[str, int, int]] = []
    real = extract.extract_shard

    def spy(*args: Any, **kwargs: Any) -> extract.ShardSummary:
        summary = real(*args, **kwargs)
        shards.append((args[3]["style"], summary.pages, summary.processes))
        return summary

    monkeypatch.setattr(extract, "extract_shard", spy)
    yield request.param
    numbered = [(pages, processes) for style, pages, processes in shards if style != "cursor" and pages]
    assert all(processes >= 2 for _, processes in numbered), f"a numbered-page shard staged without workers: {numbered}"
