"""``bench.report`` rewrites BENCHMARKS.md from results.json and keeps the part written by hand.

The end-to-end case (a real ``bench.run`` keeping a hand-written part) is in
``tests/airflow/test_bench_smoke.py``; here, the file that would lose that part.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.report import HAND_WRITTEN_BEGIN, HAND_WRITTEN_END, kept_by_hand, write_markdown

EMPTY_RESULTS: dict = {"machine": {}, "sizes": {}}


def test_a_part_written_by_hand_that_never_ends_stops_the_rewrite_and_loses_nothing(tmp_path: Path) -> None:
    markdown = tmp_path / "BENCHMARKS.md"
    before = f"# Old\n\n{HAND_WRITTEN_BEGIN}\n## A round\nits only copy\n"
    markdown.write_text(before)

    with pytest.raises(ValueError, match="never ends"):
        write_markdown(EMPTY_RESULTS, markdown, tmp_path / "chart.png", "no chart")

    assert markdown.read_text() == before


def test_a_file_without_a_part_written_by_hand_is_written_whole(tmp_path: Path) -> None:
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# Old, all generated\n")
    write_markdown(EMPTY_RESULTS, markdown, tmp_path / "chart.png", "no chart")

    text = markdown.read_text()
    assert "# Old, all generated" not in text
    assert HAND_WRITTEN_BEGIN not in text
    assert "## Chart" in text


def test_the_part_written_by_hand_is_read_with_its_markers(tmp_path: Path) -> None:
    markdown = tmp_path / "BENCHMARKS.md"
    part = f"{HAND_WRITTEN_BEGIN}\nline one\n\nline three\n{HAND_WRITTEN_END}"
    markdown.write_text(f"generated\n{part}\ngenerated again\n")

    assert kept_by_hand(markdown) == [*part.split("\n"), ""]
    assert kept_by_hand(tmp_path / "missing.md") == []


def test_a_rewrite_keeps_the_part_written_by_hand_after_the_chart(tmp_path: Path) -> None:
    markdown = tmp_path / "BENCHMARKS.md"
    part = f"{HAND_WRITTEN_BEGIN}\n## Round eight\n| a | b |\n|---|---|\n| 1 | 2 |\n{HAND_WRITTEN_END}"
    markdown.write_text(f"# Old\n\n## Summary\nstale\n\n{part}\n\n## Old tail\n")

    write_markdown(EMPTY_RESULTS, markdown, tmp_path / "chart.png", "no chart")
    write_markdown(EMPTY_RESULTS, markdown, tmp_path / "chart.png", "no chart")  # twice: still one copy

    text = markdown.read_text()
    assert text.count(part) == 1
    assert text.index("## Chart") < text.index(part) < text.index("## How each figure is measured")
    assert "stale" not in text
    assert "## Old tail" not in text
