"""The folder tree is the architecture: the product never leans on the development harness, and
every file a docstring, a comment or a document names is in the repository.

- ``include/``, ``dags/`` and ``plugins/`` (what the image ships) import nothing from ``devtools/``
  (the fake Trackier, the demo, the Airflow runners), ``tests/`` or ``bench/``;
- the package imports with ``devtools`` impossible to import, as it is in the image;
- a path such as ``include/offer_sync/load/merge.py`` or ``docs/trackier-api.md`` names a real file,
  and a bare ``merge_offers.sql`` or ``ratelimit.py`` names a file somewhere in the tree.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("include", "dags", "plugins")
HARNESS = ("devtools", "tests", "bench")


def _tracked(*patterns: str) -> list[Path]:
    command = ["git", "ls-files", "-co", "--exclude-standard", *patterns]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / line for line in out.stdout.splitlines() if (ROOT / line).is_file()]


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_shipped_code_imports_nothing_from_the_harness() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in _tracked(*(f"{d}/*.py" for d in SHIPPED))
        for line, module in _imported_modules(path)
        if module.split(".")[0] in HARNESS
    ]
    assert offenders == []


def test_every_package_module_imports_without_devtools() -> None:
    probe = textwrap.dedent(
        """
        import importlib, pkgutil, sys

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("devtools", "tests", "bench"):
                    raise ImportError(f"{name} is not shipped")

        sys.meta_path.insert(0, Refuse())
        import include.offer_sync as pkg
        names = [m.name for m in pkgutil.walk_packages(pkg.__path__, "include.offer_sync.")]
        for name in names:
            importlib.import_module(name)
        print(len(names))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) >= 25  # every module, not an empty walk


PATH_REF = re.compile(
    r"(?<![\w/.-])((?:include|dags|plugins|devtools|tests|docs|bench|scripts|deploy)/[\w./-]*\w)(?![\w\\])"
)
#: made at run time (bench output, the peers' virtualenv) or not a path (``kubectl ... deploy/<name>``)
NOT_FILES = ("bench/out", "bench/.venv-peers", "deploy/airflow-")
#: BENCHMARKS.md records history (the files measured then); this file holds examples of the patterns
NOT_CHECKED = {"BENCHMARKS.md", "test_layout.py"}
BARE_REF = re.compile(r"``([\w-]+\.(?:py|sql|md))``")


def _references(text: str) -> tuple[set[str], set[str]]:
    paths = {m.rstrip(".") for m in PATH_REF.findall(text) if not m.startswith(NOT_FILES)}
    return paths, set(BARE_REF.findall(text))


@pytest.mark.parametrize(
    "path",
    [p for p in _tracked("*.py", "*.md", "*.sql", "Makefile", "Dockerfile", "*.yaml") if p.name not in NOT_CHECKED],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_file_named_in_the_tree_exists(path: Path) -> None:
    tracked = [str(p.relative_to(ROOT)) for p in _tracked()]
    names = {Path(p).name for p in tracked}
    paths, bare = _references(path.read_text(errors="replace"))
    # a path, a folder, or a prefix that a pattern matches (``dags/trackier`` in bench/profile.py)
    missing = sorted(p for p in paths if not any(t.startswith(p.split("#")[0]) for t in tracked))
    missing += sorted(b for b in bare if b not in names)
    assert missing == [], f"{path.relative_to(ROOT)} names {missing}"
