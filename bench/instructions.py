"""Instructions per campaign staged, step by step, counted by callgrind: ``python -m bench.instructions``.

Seconds on these shared 2-core machines move by 20 % between two runs of the same code, as much as
most levers left in page staging (BENCHMARKS.md, "Issue 14, fifth round"). Instructions do not:
``valgrind --tool=callgrind`` counts the same total for the same code and input whatever else the
machine does. So a lever on the per-record path is compared here, by step, before the benchmark
proper measures it in seconds.

Pages of fake campaigns (``devtools.fake_trackier``'s catalogue, as the server renders them) are
written once; then, for each step, one child under callgrind runs every step up to it over those
pages, and an empty child (imports only) is subtracted. A step's cost is its total minus the step
before it's:

    parse        orjson.loads of each page
    fingerprint  trackier.fingerprint.campaign_fingerprint of every record
    validate     trackier.models.validate_positions (the whole-page adapter)
    row          trackier.models.campaign_row of every valid record
    copy         load.staging.ShardWriter into a CopyTextBuffer (psycopg's COPY text formatter)

``--against DIR`` counts another checkout of this repository the same way (``git worktree add
/tmp/base HEAD~1``), beside this one:

    python -m bench.instructions --pages 10 --against /tmp/base

About two minutes for 10 pages (callgrind runs ~50x slower; two children at a time).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = ("parse", "fingerprint", "validate", "row", "copy")
_COLLECTED = re.compile(r"Collected : (\d+)")


def _child(root: str, step: str, pages_file: str) -> None:
    """Run the steps up to ``step`` over the pages (under callgrind; ``empty``: imports only)."""
    sys.path.insert(0, root)
    import orjson

    from include.offer_sync.extract import _calm_garbage_collector
    from include.offer_sync.load.staging import CopyTextBuffer, ShardWriter
    from include.offer_sync.trackier.fingerprint import campaign_fingerprint
    from include.offer_sync.trackier.models import Campaign, campaign_row, validate_positions

    pages = [] if step == "empty" else Path(pages_file).read_bytes().splitlines()
    upto = STEPS.index(step) if step in STEPS else -1
    _calm_garbage_collector()  # the extract task's own collector settings, whatever they are in ``root``
    for page in pages:
        records = orjson.loads(page)
        if upto < 1:
            continue
        fingerprints = [campaign_fingerprint(r) for r in records]
        if upto < 2:
            continue
        valid, _rejects = validate_positions(Campaign, records)
        if upto < 3:
            continue
        rows = [campaign_row(c, fingerprints[i] or "") for i, c in valid]
        if upto < 4:
            continue
        writer = ShardWriter(CopyTextBuffer(), "campaigns", 0)
        for row in rows:
            writer.write_valid(1, row)


def _count(root: Path, step: str, pages_file: Path) -> int:
    """Instructions of one child under callgrind (its profile is thrown away)."""
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        step,
        "--root",
        str(root),
        "--pages-file",
        str(pages_file),
    ]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode or not found:
        raise RuntimeError(f"callgrind of step {step} in {root} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def _write_pages(pages: int, page_size: int, seed: int) -> Path:
    import orjson

    from devtools.fake_trackier.catalogue import Catalogue

    catalogue = Catalogue(max(1, pages * page_size // 50), pages * page_size, seed=seed)
    rendered = [
        orjson.dumps(catalogue.campaigns(list(range(start, start + page_size))))
        for start in range(0, pages * page_size, page_size)
    ]
    fd, name = tempfile.mkstemp(prefix="bench-instructions-", suffix=".jsonl")
    with os.fdopen(fd, "wb") as out:
        out.write(b"\n".join(rendered))  # orjson writes no raw newline: one page per line
    return Path(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10, help="pages of fake campaigns (default 10)")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--against", type=Path, help="another checkout to count beside this one")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--pages-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.root, args.child, args.pages_file)
        return 0

    roots = [REPO_ROOT] + ([args.against.resolve()] if args.against else [])
    records = args.pages * args.page_size
    pages_file = _write_pages(args.pages, args.page_size, args.seed)
    try:
        jobs = [(root, step) for root in roots for step in ("empty", *STEPS)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            totals = dict(zip(jobs, pool.map(lambda job: _count(job[0], job[1], pages_file), jobs), strict=True))
    finally:
        pages_file.unlink()

    print(f"instructions per campaign ({records:,} fake campaigns, {args.pages} pages; callgrind)")
    print(f"{'step':<12}" + "".join(f"{root.name + ' ' + _commit(root):>28}" for root in roots))
    for i, step in enumerate(STEPS):
        before = "empty" if i == 0 else STEPS[i - 1]
        cells = [(totals[(root, step)] - totals[(root, before)]) / records / 1000 for root in roots]
        print(f"{step:<12}" + "".join(f"{cell:>27.1f}k" for cell in cells))
    wholes = [(totals[(root, STEPS[-1])] - totals[(root, "empty")]) / records / 1000 for root in roots]
    line = f"{'all':<12}" + "".join(f"{whole:>27.1f}k" for whole in wholes)
    if len(wholes) == 2:
        line += f"   ({(wholes[0] / wholes[1] - 1) * 100:+.1f} % against {roots[1].name})"
    print(line)
    return 0


def _commit(root: Path) -> str:
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "include"], capture_output=True, text=True)
    return (done.stdout.strip() or "?") + ("+" if dirty.stdout.strip() else "")


if __name__ == "__main__":
    sys.exit(main())
