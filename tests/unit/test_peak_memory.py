"""Peak task memory is the task process's own high-water mark, not one inherited from its parent.

A task process is started by something big (a scheduler, a Celery worker, a test runner). Linux
carries ``ru_maxrss`` across fork and exec, so measuring with it reported the parent's peak; the
sync measures ``VmHWM``, which exec resets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAT_MB = 600


def _last_json_line(code: str) -> dict:
    """Run ``code`` in a fresh interpreter with only the repository on the path; its last line, parsed."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True, env=env, timeout=120
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_child_of_a_fat_parent_reports_its_own_peak_not_the_parents() -> None:
    # A parent that touches FAT_MB of memory, then starts a child that measures itself.
    child = (
        "import json, resource; from include.offer_sync.extract import peak_rss_mb; "
        "print(json.dumps({'ours': peak_rss_mb(), "
        "'ru_maxrss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    parent = textwrap.dedent(f"""
        import subprocess, sys
        ballast = bytearray({FAT_MB} * 1024 * 1024)
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1
        out = subprocess.run([sys.executable, "-c", {child!r}], check=True, capture_output=True, text=True)
        print(out.stdout.strip().splitlines()[-1])
    """)
    child = _last_json_line(parent)
    # The premise: the inherited counter really does show the parent's peak on this kernel.
    assert child["ru_maxrss"] >= FAT_MB
    # The child itself imported the package (pydantic, psycopg ...), nowhere near the parent's size.
    assert 5 < child["ours"] < FAT_MB / 2, child


def test_peak_grows_with_what_the_process_itself_touches() -> None:
    code = textwrap.dedent("""
        import json
        from include.offer_sync.extract import peak_rss_mb
        before = peak_rss_mb()
        block = bytearray(200 * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        del block
        print(json.dumps({"before": before, "after": peak_rss_mb()}))
    """)
    peaks = _last_json_line(code)
    # A high-water mark: the freed block still counts.
    assert peaks["after"] - peaks["before"] >= 150, peaks


# The extract task's allocator setting (``extract._steady_allocator``): without it glibc raises its
# mapping threshold to the size of any mapped block freed, and the next page buffers land in heaps
# that fragment (under ``airflow dags test`` the process's peak crept past 300 MB at 1M).
_MAPPED_AFTER_A_BIG_FREE = """
import ctypes, json
from include.offer_sync import extract

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if {steady}:
    extract._steady_allocator()
known = bytearray(8 * 1024 * 1024)  # a shard's known fingerprints at 1M, freed at its end
del known
before = libc.mallinfo2().hblkhd
page = bytearray(700 * 1024)  # the next shard's page
print(json.dumps({{"mapped": libc.mallinfo2().hblkhd - before}}))
"""


@pytest.mark.parametrize("steady", [True, False], ids=["with-the-setting", "glibc-default"])
def test_a_page_buffer_after_a_freed_big_one_gets_its_own_mapping_in_an_extract_task(steady: bool) -> None:
    mapped = _last_json_line(_MAPPED_AFTER_A_BIG_FREE.format(steady=steady))["mapped"]
    if steady:
        assert mapped >= 700 * 1024  # its own mapping: unmapped, back to the system, when freed
    else:
        assert mapped == 0  # the premise: glibc alone puts it in the heap once the 8 MB went back
