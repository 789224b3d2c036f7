"""``OFFER_SYNC_SCHEDULE`` sets when the DAG runs on its own; a bad value fails the parse, clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.airflow_run import REPO_ROOT, parse_only_env
from include.offer_sync.errors import ConfigurationError
from include.offer_sync.schedule import PRESETS, parse_schedule
from tests.airflow.test_dag_integrity import PROBE


@pytest.mark.parametrize(
    ("value", "schedule"),
    [
        (None, "@daily"),
        ("", "@daily"),
        ("@hourly", "@hourly"),
        ("  30 2 * * *  ", "30 2 * * *"),
        ("0 3 * * 1-5", "0 3 * * 1-5"),
        ("*/15 * * * *", "*/15 * * * *"),
        ("none", None),
        ("None", None),
    ],
)
def test_accepted_schedules(value: str | None, schedule: str | None) -> None:
    assert parse_schedule(value) == schedule


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("@nightly", "not a schedule preset"),
        ("@once", "not a schedule preset"),
        ("61 2 * * *", "not a valid cron expression"),
        ("30 2 * *", "has 4 field(s)"),
        ("0 30 2 * * *", "has 6 field(s)"),
        ("daily", "has 1 field(s)"),
    ],
)
def test_bad_schedules_are_refused_with_what_to_write(value: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=r"OFFER_SYNC_SCHEDULE") as error:
        parse_schedule(value)
    assert says in str(error.value)
    assert "30 2 * * *" in str(error.value) or "@daily" in str(error.value)


def test_presets_are_airflows() -> None:
    from airflow.utils.dates import cron_presets

    assert set(cron_presets) == PRESETS


def parse_dag(tmp_path: Path, schedule: str) -> dict:
    env = parse_only_env(tmp_path, {"OFFER_SYNC_SCHEDULE": schedule})
    probe = PROBE.replace("str(v)[:500]", "str(v)[-1000:]")  # the end of the traceback holds the message
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(REPO_ROOT / "dags")], env=env, capture_output=True, text=True, timeout=300
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(line[len("RESULT") :])


def test_the_dag_takes_its_schedule_from_the_environment(tmp_path: Path) -> None:
    parsed = parse_dag(tmp_path, "30 2 * * *")
    assert parsed["errors"] == {}
    assert parsed["schedule"] == "30 2 * * *"


def test_an_invalid_schedule_is_an_import_error_naming_the_variable(tmp_path: Path) -> None:
    parsed = parse_dag(tmp_path, "30 25 * * *")
    assert "trackier_offer_sync" not in parsed["dag_ids"]
    (error,) = [e for f, e in parsed["errors"].items() if f.endswith("trackier_offer_sync.py")]
    assert "OFFER_SYNC_SCHEDULE='30 25 * * *' is not a valid cron expression" in error
