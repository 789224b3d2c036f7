"""The dependency files: a lean runtime requirements.txt, requirements-dev.txt, and requirements.lock.

What the image installs (requirements.txt + requirements.lock, see the Dockerfile) must be enough to
run every DAG, the plugin and the package, must not carry development tools, and must pin every
transitive dependency to what these tests ran with. ``make install`` must still install everything
the tests need.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from packaging.utils import canonicalize_name

from scripts.lock_requirements import LOCK, closure, parse_requirements, read_lock

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements.txt"
REQUIREMENTS_DEV = ROOT / "requirements-dev.txt"
#: Distribution name -> the top-level module it provides, for the development-only packages.
DEV_ONLY_MODULES = {
    "pgserver": "pgserver",
    "playwright": "playwright",
    "hypothesis": "hypothesis",
    "ruff": "ruff",
    "apache-airflow-client": "airflow_client",
    "pytest-timeout": "pytest_timeout",
}


def dev_requirements() -> set[str]:
    return {canonicalize_name(r.name) for r in parse_requirements(REQUIREMENTS_DEV)}


def runtime_requirements() -> set[str]:
    return {canonicalize_name(r.name) for r in parse_requirements(REQUIREMENTS)}


def test_requirements_txt_carries_no_development_tool() -> None:
    runtime = runtime_requirements()
    assert not runtime & set(DEV_ONLY_MODULES), f"dev-only in requirements.txt: {runtime & set(DEV_ONLY_MODULES)}"
    # ... nor pulls one in through a dependency (the image would install it all the same).
    assert not set(read_lock()) & set(DEV_ONLY_MODULES)
    assert set(DEV_ONLY_MODULES) <= dev_requirements(), "every dev-only package is installed by requirements-dev.txt"
    assert {"pytest", "pytest-mock"} <= runtime, "tests can run inside the image (as Astro projects do)"


def test_dev_requirements_include_the_runtime_ones() -> None:
    lines = [line.strip() for line in REQUIREMENTS_DEV.read_text().splitlines()]
    assert "-r requirements.txt" in lines
    assert not dev_requirements() & runtime_requirements(), "a package is pinned in both files"


def test_lock_pins_every_package_requirements_txt_pulls_in_at_the_tested_version() -> None:
    # The closure of requirements.txt in THIS environment (where the tests run) is exactly the lock:
    # nothing transitive floats, and the image gets the versions these tests exercised.
    expected = closure(parse_requirements())
    locked = read_lock()
    missing = sorted(set(expected) - set(locked))
    differs = {
        name: (locked[name], version)
        for name, version in expected.items()
        if name in locked and locked[name] != version
    }
    extra = sorted(set(locked) - set(expected))
    stale = f"requirements.lock is stale (run `make lock`): missing {missing}, locked vs installed {differs}, "
    assert not missing, stale
    assert not differs, stale
    assert not extra, f"{stale}no longer needed {extra}"
    for requirement in parse_requirements():
        pins = [s.version for s in requirement.specifier if s.operator == "=="]
        assert pins, f"{requirement} is not pinned with =="
        assert locked[canonicalize_name(requirement.name)] == pins[0], requirement


def test_lock_check_detects_a_stale_lock(tmp_path: Path, monkeypatch) -> None:
    import scripts.lock_requirements as lock

    stale = tmp_path / "requirements.lock"
    stale.write_text(LOCK.read_text().replace("\norjson==", "\norjson==0.0.1+"))
    monkeypatch.setattr(lock, "LOCK", stale)
    assert lock.main(["--check"]) == 1
    monkeypatch.setattr(lock, "LOCK", LOCK)
    assert lock.main(["--check"]) == 0


def test_makefile_installs_both_files_constrained_by_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    stamp_rule = re.search(r"^\$\(STAMP\):(?P<deps>.*)$", makefile, re.MULTILINE)
    assert stamp_rule, "no $(STAMP) rule"
    assert set(stamp_rule.group("deps").split()) >= {"requirements.txt", "requirements-dev.txt", "requirements.lock"}
    dry = subprocess.run(
        ["make", "-n", "-B", "install", "VENV=/nonexistent-venv"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    installs = [line for line in dry.splitlines() if " pip install " in line and "-r " in line]
    assert len(installs) == 1, dry
    tokens = installs[0].split()
    assert {"requirements.txt", "requirements-dev.txt"} <= {tokens[i + 1] for i, t in enumerate(tokens) if t == "-r"}
    assert tokens[tokens.index("-c") + 1] == "requirements.lock"


def _module_level_imports(path: Path) -> set[str]:
    """Top-level module names imported when ``path`` is imported (not those inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        nodes = [node]
        if isinstance(node, ast.If | ast.Try):
            nodes = list(ast.walk(node))
        for child in nodes:
            if isinstance(child, ast.Import):
                names |= {alias.name.split(".")[0] for alias in child.names}
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                names.add(child.module.split(".")[0])
    return names


def test_package_code_imports_no_development_tool_at_module_level() -> None:
    offenders = {}
    for folder in ("dags", "plugins", "include"):
        for path in (ROOT / folder).rglob("*.py"):
            bad = _module_level_imports(path) & set(DEV_ONLY_MODULES.values())
            if bad:
                offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, offenders


def test_everything_the_image_runs_imports_without_the_development_tools(tmp_path: Path) -> None:
    # Import every module of the package, the plugin and the DAG files with the dev-only packages made
    # unimportable, as in an image built from requirements.txt alone.
    blocked = sorted(DEV_ONLY_MODULES.values())
    code = textwrap.dedent(f"""
        import importlib, importlib.abc, pkgutil, runpy, sys
        from pathlib import Path

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"{{name}} is a development-only package")
                return None

        sys.meta_path.insert(0, Block())
        import include.offer_sync as package
        for info in pkgutil.walk_packages(package.__path__, "include.offer_sync."):
            if not info.name.endswith(".__main__"):
                importlib.import_module(info.name)
        for folder in ("plugins", "dags"):
            for path in sorted(Path(folder).glob("*.py")):
                runpy.run_path(str(path))
        import pgserver  # the block itself works
    """)
    env = {
        "PYTHONPATH": str(ROOT),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert "pgserver is a development-only package" in result.stderr, result.stderr[-3000:]
    assert "Traceback" in result.stderr
    # The only import error is the deliberate one at the very end.
    tail = result.stderr.strip().splitlines()
    assert tail[-1] == "ImportError: pgserver is a development-only package", result.stderr[-3000:]
    assert result.stderr.count("development-only package") == 1, result.stderr[-3000:]
