"""DAG validity: every DAG file imports cleanly and the sync DAG has the shape operators rely on.

Parsing is done the way the dag-processor does it (a DagBag over ``dags/``), in a subprocess with a
throw-away AIRFLOW_HOME so that the test never touches a developer's own Airflow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.airflow_run import REPO_ROOT, parse_only_env

PROBE = r"""
import json, sys, time
t = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("trackier_offer_sync")
out = {"errors": {k: str(v)[:500] for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dags)}
if dag is not None:
    out.update(
        schedule=str(dag.schedule), catchup=dag.catchup, max_active_runs=dag.max_active_runs,
        tags=sorted(dag.tags), owner=dag.owner, doc_md=bool(dag.doc_md), params=sorted(dag.params.keys()),
        fileloc=dag.fileloc, deadline=repr(getattr(dag, "deadline", None)),
        param_defaults={k: dag.params[k] for k in dag.params.keys()},
        tasks={t.task_id: {"retries": t.retries, "pool": t.pool,
                           "mapped": "MappedOperator" in t.__class__.__name__,
                           "map_index_template": getattr(t, "map_index_template", None),
                           "max_active_tis_per_dagrun": getattr(t, "max_active_tis_per_dagrun", None),
                           "retry_policy": type(getattr(t, "retry_policy", None)).__name__}
               for t in dag.tasks},
    )
heavy = ("include.offer_sync.trackier.http", "include.offer_sync.tasks", "include.offer_sync.trackier.models",
         "psycopg")
out["heavy_modules_at_parse"] = [m for m in heavy if m in sys.modules]
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("parse_home")
    env = parse_only_env(home)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO_ROOT / "dags")], env=env, capture_output=True, text=True, timeout=300
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(line[len("RESULT") :])


def test_every_dag_file_imports_without_errors(parsed: dict) -> None:
    assert parsed["errors"] == {}
    assert "trackier_offer_sync" in parsed["dag_ids"]


def test_file_name_is_the_dag_id(parsed: dict) -> None:
    for dag_file in (REPO_ROOT / "dags").glob("*.py"):
        assert dag_file.stem in parsed["dag_ids"], f"{dag_file.name} defines no DAG called {dag_file.stem}"


def test_schedule_and_run_policy(parsed: dict) -> None:
    assert parsed["schedule"] == "@daily"
    assert parsed["catchup"] is False
    assert parsed["max_active_runs"] == 1
    assert parsed["owner"] == "data-platform"
    assert {"trackier", "offers"} <= set(parsed["tags"])
    assert parsed["doc_md"]
    assert Path(parsed["fileloc"]).name == "trackier_offer_sync.py"


def test_params_for_the_trigger_form(parsed: dict) -> None:
    assert {"dry_run", "page_size", "pagination", "max_error_rate", "deactivate_missing"} <= set(parsed["params"])


def test_tasks_have_retries_docs_and_labels(parsed: dict) -> None:
    tasks = parsed["tasks"]
    assert set(tasks) >= {
        "start_sync",
        "plan_advertisers",
        "plan_campaigns",
        "extract_advertisers",
        "extract_campaigns",
        "check_sweep",
        "merge_catalogue",
        "publish_result",
    }
    for task_id, task in tasks.items():
        assert task["retries"] >= 1, task_id
        assert task["retry_policy"] == "ExceptionRetryPolicy", task_id
    for task_id in ("extract_advertisers", "extract_campaigns"):
        assert tasks[task_id]["mapped"], f"{task_id} must be dynamically mapped"
        assert tasks[task_id]["map_index_template"] == "{{ shard_label }}"


def test_every_task_function_has_a_docstring() -> None:
    import ast

    for dag_file in (REPO_ROOT / "dags").glob("*.py"):
        tree = ast.parse(dag_file.read_text())
        for node in ast.walk(tree):
            decorated = isinstance(node, ast.FunctionDef) and any(
                ast.unparse(d.func if isinstance(d, ast.Call) else d).split(".")[0] == "task"
                for d in node.decorator_list
            )
            if decorated:
                assert ast.get_docstring(node), f"{dag_file.name}: task {node.name} has no docstring"


def test_parsing_does_no_expensive_imports(parsed: dict) -> None:
    assert parsed["heavy_modules_at_parse"] == []


def test_dag_file_does_no_io_at_module_level() -> None:
    source = (REPO_ROOT / "dags" / "trackier_offer_sync.py").read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    # The exceptions: the schedule is a parse-time setting, read by a module of stdlib + croniter; the
    # names and defaults come from constants, which is standard library only.
    allowed = {
        "from include.offer_sync.schedule import schedule_from_env",
        "from include.offer_sync.constants import (",
    }
    imports = [line for line in top_level if "include.offer_sync" in line and line not in allowed]
    assert not imports, "package imports belong in tasks"


def test_limits_and_defaults_are_the_constants(parsed: dict) -> None:
    """The DAG takes its concurrency cap and its Trigger-form defaults from ``constants``, the one home
    the in-process runner, the alert rules and the task bodies read too (no copy to drift)."""
    from include.offer_sync import constants

    for task_id in constants.EXTRACT_TASKS:
        assert parsed["tasks"][task_id]["max_active_tis_per_dagrun"] == constants.API_TASKS_PER_ENTITY
    assert set(constants.PLAN_TASKS) | set(constants.EXTRACT_TASKS) <= set(parsed["tasks"])
    defaults = parsed["param_defaults"]
    assert defaults["max_error_rate"] == constants.DEFAULT_MAX_ERROR_RATE
    assert defaults["max_deactivate_rate"] == constants.DEFAULT_MAX_DEACTIVATE_RATE
    assert defaults["pages_per_shard"] == constants.DEFAULT_PAGES_PER_SHARD
    assert defaults["max_shards"] == constants.DEFAULT_MAX_SHARDS
