"""The README and docs/ link only to files that exist inside the repository.

A reader of a clone (or of the repository on a forge) has nothing outside it: a relative link that
climbs out of the repository, or to a file that is not there, is a dead end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def relative_links(doc: Path) -> list[str]:
    targets = [m.group("target") for m in _LINK.finditer(doc.read_text(encoding="utf-8"))]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_stay_inside_the_repository_and_exist(doc: Path) -> None:
    for target in relative_links(doc):
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name} links outside the repository: {target}"
        assert path.exists(), f"{doc.name} links a missing file: {target}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_path_outside_the_repository_is_named(doc: Path) -> None:
    # Not only links: a path such as ../shared/x.md in the text sends the reader nowhere either.
    assert not re.search(r"(?<![\w.])\.\./[\w-]+/", doc.read_text(encoding="utf-8").replace("](../", "]("))


def test_the_checker_sees_an_outside_link(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("see [the API](../shared/TRACKIER_API.md) and [top](#top) and [web](https://example.com)")
    assert relative_links(doc) == ["../shared/TRACKIER_API.md"]
