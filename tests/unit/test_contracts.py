"""The typed contracts (``include/offer_sync/contracts.py``) and the key lists derived from them stay
what operators were promised: the README's result contract, the lists the merge and the run record use."""

from __future__ import annotations

import json
import re
from pathlib import Path

from include.offer_sync import contracts
from include.offer_sync.load import runs

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_result_example() -> dict:
    section = README.read_text().split("### The result contract", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    return json.loads(block.replace("{...}", "{}").replace("[...]", "[]").replace(", ...}", "}"))


def test_the_readme_example_is_a_sync_result_and_shows_every_contract_key() -> None:
    example = _readme_result_example()
    declared = set(contracts.SyncResult.__annotations__)
    assert set(example) <= declared, set(example) - declared
    assert set(contracts.SyncResult.__required_keys__) <= set(example)
    assert set(contracts.RESULT_KEYS) <= set(example)


def test_the_operators_contract_is_the_first_release_keys_never_renamed() -> None:
    assert contracts.RESULT_KEYS == (
        "status",
        "added",
        "updated",
        "unchanged",
        "deactivated",
        "rejected",
        "campaigns_processed",
        "advertisers_processed",
        "brands_added",
        "brands_updated",
        "error_rate",
        "duration_s",
        "run_id",
    )


def test_the_merge_writes_the_run_columns_and_remembers_the_sweep_it_copies() -> None:
    # every sync_runs column the merge writes is a count of sync_result, plus the error rate
    assert set(contracts.RECORD_KEYS) == {*contracts.RunColumns.__annotations__, "error_rate"}
    assert set(contracts.RECORD_KEYS) - {"error_rate"} <= set(contracts.COUNT_KEYS)
    # what a merged run reads back as integers is a subset of what the merge copied from the sweep
    assert set(contracts.RECORDED_SWEEP_COUNTS) <= set(contracts.SWEEP_KEYS_IN_COUNTS)
    assert "problems" not in contracts.SWEEP_KEYS_IN_COUNTS


def test_build_result_fills_every_count_in_contract_order() -> None:
    result = runs.build_result("run-1", "completed", {"added": "3", "error_rate": None}, 1.23456)
    assert list(result)[3:] == [*contracts.COUNT_KEYS, "error_rate"]
    assert (result["added"], result["error_rate"], result["duration_s"]) == (3, 0.0, 1.235)
    assert set(contracts.RESULT_KEYS) <= set(result)
