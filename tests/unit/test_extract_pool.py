"""How many validation workers a task may start: never more than its container's CPU limit allows,
and with ``auto`` (the default) none while other work keeps a core busy.

The cgroup trees here are files in a temporary directory laid out as the kernel lays them out
(cgroup v2's ``cpu.max``, v1's ``cpu.cfs_quota_us``/``cpu.cfs_period_us``), with the
``/proc/self/cgroup`` that names the process's own cgroup.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from include.offer_sync import extract_pool
from include.offer_sync.errors import ConfigurationError
from include.offer_sync.extract_pool import busy_elsewhere, cgroup_cpu_limit, pool_size, usable_cores
from include.offer_sync.settings import TrackierSettings


def _tree(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "sys-fs-cgroup"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(exist_ok=True)
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text(proc)
    return proc_cgroup, root


@pytest.mark.parametrize(
    ("proc", "files", "limit"),
    [
        # v2, a pod limited to 1.5 CPUs above a container without a limit of its own: 2 (rounded up)
        (
            "0::/kubepods/pod1/ctr\n",
            {"kubepods/pod1/cpu.max": "150000 100000\n", "kubepods/pod1/ctr/cpu.max": "max 100000\n"},
            2,
        ),
        # v2, the tightest of the chain wins
        ("0::/a/b\n", {"a/cpu.max": "100000 100000\n", "a/b/cpu.max": "400000 100000\n"}, 1),
        # v2 inside a cgroup namespace (the container's own cgroup is the mount's root)
        ("0::/\n", {"cpu.max": "250000 100000\n"}, 3),
        # v2 on a hybrid host, mounted at /sys/fs/cgroup/unified
        ("0::/svc\n", {"unified/svc/cpu.max": "50000 100000\n"}, 1),
        # v1 with the cpu and cpuacct controllers mounted together
        (
            "4:cpu,cpuacct:/docker/abc\n2:memory:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            2,
        ),
        # no quota anywhere: v1's -1, v2's max
        ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ("0::/x\n", {"x/cpu.max": "max 100000\n"}, None),
        # unreadable or malformed files count as no quota, never as an error
        ("0::/x\n", {"x/cpu.max": "lots\n"}, None),
        ("0::/x\n", {}, None),
        ("not a cgroup line\n", {}, None),
    ],
)
def test_the_cpu_limit_is_read_from_the_process_cgroup_and_its_parents(tmp_path, proc, files, limit) -> None:
    proc_cgroup, root = _tree(tmp_path, proc, files)
    assert cgroup_cpu_limit(proc_cgroup, root) == limit


def test_a_container_limited_to_one_cpu_on_a_big_machine_gets_no_workers(tmp_path, monkeypatch) -> None:
    """sched_getaffinity shows every core of the node; the quota says one: the task validates alone."""
    proc_cgroup, root = _tree(tmp_path, "0::/pod\n", {"pod/cpu.max": "100000 100000\n"})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))
    assert usable_cores(proc_cgroup, root) == 1
    monkeypatch.setattr(extract_pool, "usable_cores", lambda: usable_cores(proc_cgroup, root))
    assert pool_size(8, None, 1, "UTF8") == 0
    # Three CPUs allowed: at most three workers, whatever was asked for.
    (root / "pod" / "cpu.max").write_text("300000 100000\n")
    assert pool_size(8, None, 1, "UTF8") == 3


def test_without_a_quota_the_affinity_decides(tmp_path, monkeypatch) -> None:
    proc_cgroup, root = _tree(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert usable_cores(proc_cgroup, root) == 4


def _run_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, running: int) -> None:
    """A ``/proc/stat`` whose ``procs_running`` says ``running`` (this task included)."""
    stat = tmp_path / "stat"
    stat.write_text(f"cpu  1 2 3 4\nintr 5\nprocs_running {running}\nprocs_blocked 0\n")
    monkeypatch.setattr(extract_pool, "PROC_STAT", stat)


def test_auto_starts_workers_only_while_no_other_work_keeps_a_core_busy(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(extract_pool, "usable_cores", lambda: 2)
    _run_queue(tmp_path, monkeypatch, running=1)  # the task alone: airflow dags test, an idle worker slot
    assert pool_size("auto", 250_000, 20_000, "UTF8") == 2
    _run_queue(tmp_path, monkeypatch, running=3)  # two sibling extract tasks busy (LocalExecutor)
    assert pool_size("auto", 250_000, 20_000, "UTF8") == 0
    _run_queue(tmp_path, monkeypatch, running=2)  # one
    assert pool_size("auto", 250_000, 20_000, "UTF8") == 0
    assert pool_size(2, 250_000, 20_000, "UTF8") == 2, "a number is obeyed whatever the load"
    _run_queue(tmp_path, monkeypatch, running=1)
    monkeypatch.setattr(extract_pool, "usable_cores", lambda: 32)
    assert pool_size("auto", 250_000, 20_000, "UTF8") == extract_pool.MAX_AUTO_VALIDATE_PROCESSES
    assert pool_size("auto", 19_999, 20_000, "UTF8") == 0, "a small shard stays in the task process"


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_busy_elsewhere_counts_processes_that_keep_cores_busy() -> None:
    """The real run queue: two processes spinning are two cores busy besides this one."""
    spinners = [multiprocessing.get_context("fork").Process(target=_spin, args=(5.0,)) for _ in range(2)]
    for spinner in spinners:
        spinner.start()
    try:
        time.sleep(0.2)
        assert busy_elsewhere() >= 1.5
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.join()


class _RunQueueSequence:
    """A ``/proc/stat`` whose ``procs_running`` is the next value of ``running`` at each read."""

    def __init__(self, running: list[int]) -> None:
        self.values = iter(running)

    def open(self, mode: str) -> io.BytesIO:
        return io.BytesIO(f"cpu  1 2 3 4\nprocs_running {next(self.values)}\nprocs_blocked 0\n".encode())


def test_a_moment_of_other_work_as_the_shard_starts_does_not_cost_it_its_workers(monkeypatch) -> None:
    """The median of the samples: a burst in a few of them is ignored (the mean read 1.20 once at a 1M
    shard's start and left it without workers), work that holds a core through most of them counts."""
    monkeypatch.setattr(extract_pool, "usable_cores", lambda: 2)
    burst = [1] * 12 + [5] * 8  # this task alone, except four other threads in 8 of 20 samples
    monkeypatch.setattr(extract_pool, "PROC_STAT", _RunQueueSequence(burst))
    assert busy_elsewhere(samples=20, interval_s=0) == 0.0
    monkeypatch.setattr(extract_pool, "PROC_STAT", _RunQueueSequence(burst))
    assert pool_size("auto", 250_000, 20_000, "UTF8") == 2
    sibling = [2] * 14 + [1] * 6  # a sibling extract task, off the core while it waits on a page
    monkeypatch.setattr(extract_pool, "PROC_STAT", _RunQueueSequence(sibling))
    assert busy_elsewhere(samples=20, interval_s=0) == 1.0
    monkeypatch.setattr(extract_pool, "PROC_STAT", _RunQueueSequence(sibling))
    assert pool_size("auto", 250_000, 20_000, "UTF8") == 0


def test_busy_elsewhere_without_a_run_queue_to_read_is_zero(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(extract_pool, "PROC_STAT", tmp_path / "missing")
    assert busy_elsewhere(samples=2, interval_s=0) == 0.0


@pytest.mark.parametrize(("value", "stored"), [("auto", "auto"), (0, 0), (2, 2), ("3", 3), (16, 16)], ids=str)
def test_validate_processes_is_auto_or_a_count(value, stored) -> None:
    settings = TrackierSettings(base_url="https://api.example", api_key=SecretStr("k"), validate_processes=value)
    assert settings.validate_processes == stored


@pytest.mark.parametrize("value", ["many", 17, -1, 2.0, True, None], ids=str)
def test_a_validate_processes_that_is_neither_is_refused_by_name(value) -> None:
    with pytest.raises(ConfigurationError, match=r"validate_processes must be 'auto' or 0\.\.16"):
        TrackierSettings(base_url="https://api.example", api_key=SecretStr("k"), validate_processes=value)


def test_a_small_shard_or_a_non_utf8_connection_reads_no_system_file(monkeypatch) -> None:
    """With auto the default, every shard asks: the cheap answers must not cost cgroup and /proc reads."""

    def unexpected(*args: object, **kwargs: object) -> None:
        raise AssertionError("read the cores or the run queue for a shard that gets no workers anyway")

    monkeypatch.setattr(extract_pool, "usable_cores", unexpected)
    monkeypatch.setattr(extract_pool, "busy_elsewhere", unexpected)
    assert pool_size("auto", 2_000, 20_000, "UTF8") == 0
    assert pool_size("auto", 250_000, 20_000, "LATIN1") == 0
    assert pool_size(0, 250_000, 20_000, "UTF8") == 0
