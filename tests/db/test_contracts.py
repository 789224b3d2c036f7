"""Every dict a real in-process sync hands from task to task has exactly the keys its TypedDict in
``include/offer_sync/contracts.py`` declares: the contracts are checked against the code, not assumed."""

from __future__ import annotations

from typing import Any

from devtools.fake_trackier import Catalogue
from devtools.inline import DEFAULT_PARAMS
from include.offer_sync import contracts, tasks
from tests.helpers import trackier_settings


def _keys_match(typed: Any, value: dict[str, Any]) -> tuple[set[str], set[str]]:
    missing = set(typed.__required_keys__) - set(value)
    extra = set(value) - set(typed.__required_keys__) - set(typed.__optional_keys__)
    return missing, extra


def test_each_task_returns_the_dict_its_contract_declares(fake_trackier, offers_db) -> None:
    server = fake_trackier(Catalogue(5, 120, seed=3))
    api = trackier_settings(server, page_size=50)
    seen: list[tuple[str, Any, dict[str, Any]]] = []
    for run_id in ("run-1", "run-2"):  # the second run updates nothing: unchanged counts, same shapes
        run = tasks.start_sync(offers_db, run_id=run_id, dag_id="d", params=dict(DEFAULT_PARAMS))
        shards = [*tasks.plan_entity(api, "advertisers"), *tasks.plan_entity(api, "campaigns")]
        summaries = [tasks.extract_shard(offers_db, api, run, shard) for shard in shards]
        sweep = tasks.check_sweep(offers_db, run, summaries, 0.05)
        merged = tasks.merge_catalogue(offers_db, run, sweep, deactivate_missing=True, dry_run=False)
        result = tasks.publish_result(offers_db, run, summaries, sweep, merged)
        seen += [
            ("RunHandle", contracts.RunHandle, run),
            ("Sweep", contracts.Sweep, sweep),
            ("MergeCounts", contracts.MergeCounts, merged),
            ("SyncResult", contracts.SyncResult, result),
            ("RunMetrics", contracts.RunMetrics, result["metrics"]),
        ]
        seen += [("Shard", contracts.Shard, s) for s in shards]
        seen += [("ShardSummary", contracts.ShardSummary, s) for s in summaries]
    # check_sweep cleared after the merge: the recorded form, also a Sweep
    seen.append(("Sweep (recorded)", contracts.Sweep, tasks.check_sweep(offers_db, run, summaries, 0.05)))

    problems = {name: _keys_match(typed, value) for name, typed, value in seen if any(_keys_match(typed, value))}
    assert problems == {}, problems
    assert (result["added"], result["unchanged"]) == (0, 120)
