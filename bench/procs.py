"""Processes the benchmark starts and watches: the fake Trackier server, and memory/CPU sampling.

Memory is read from ``/proc`` rather than trusted from the systems themselves: every 0.2 s the
sampler sums ``VmRSS`` over a process and all its descendants and keeps the root's ``VmHWM``
(the kernel's own high-water mark, so a spike between two samples is not missed for the root).
Each sample is timestamped, so the Airflow run's memory can be attributed to the task instance
that was running at the time (``airflow dags test`` runs every task inside its own process).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

from devtools.airflow_run import REPO_ROOT
from devtools.fake_trackier import process_command

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from 3 (state) on; the name may hold spaces


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in seconds."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _status_kib(pid: int, keys: tuple[str, ...], file: str = "status") -> dict[str, int]:
    """``Key: N kB`` lines of ``/proc/<pid>/<file>`` (``status``, ``smaps_rollup``) in kB; {} when gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/{file}", encoding="ascii", errors="replace") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name in keys:
                    out[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    children = children if children is not None else _children_map()
    out, stack = [], list(children.get(pid, []))
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(children.get(child, []))
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pss_kib(pid: int) -> int:
    """``Pss`` of ``/proc/<pid>/smaps_rollup`` in kB (0 when the process is gone or unreadable)."""
    return _status_kib(pid, ("Pss",), "smaps_rollup").get("Pss", 0)


@dataclass
class Sample:
    t: float  # time.time()
    tree_rss_mb: float
    root_hwm_mb: float
    #: The tree's summed PSS: pages shared by several processes (a fork's copy-on-write pages, the
    #: validation workers' with their task process) counted once in all, not once per process.
    tree_pss_mb: float = 0.0


@dataclass
class MemorySampler:
    """Samples a process tree every ``interval`` s in a thread, from start() to stop().

    ``root`` is a pid, or a predicate on a command line: the first descendant of this process that
    matches becomes the root (how we find the ``airflow dags test`` process that ``run_dag_test``
    starts without telling us its pid).
    """

    root: int | Callable[[list[str]], bool]
    interval: float = 0.2
    samples: list[Sample] = field(default_factory=list)
    root_pid: int | None = None
    root_cpu_s: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> MemorySampler:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        return self

    def _find_root(self) -> int | None:
        if isinstance(self.root, int):
            return self.root
        children = _children_map()
        for pid in descendants(os.getpid(), children):
            if self.root(_cmdline(pid)):
                return pid
        return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.root_pid is None:
                self.root_pid = self._find_root()
            if self.root_pid is not None:
                self._sample(self.root_pid)
            self._stop.wait(self.interval)

    def _sample(self, pid: int) -> None:
        root = _status_kib(pid, ("VmRSS", "VmHWM"))
        if not root:
            return
        cpu = cpu_seconds(pid)
        if cpu is not None:
            self.root_cpu_s = cpu
        total = root.get("VmRSS", 0)
        pss = _pss_kib(pid)
        for child in descendants(pid):
            total += _status_kib(child, ("VmRSS",)).get("VmRSS", 0)
            pss += _pss_kib(child)
        self.samples.append(Sample(time.time(), total / 1024, root.get("VmHWM", 0) / 1024, pss / 1024))

    @property
    def peak_mb(self) -> float | None:
        """The largest of the tree's summed RSS and the root's own high-water mark."""
        if not self.samples:
            return None
        return round(max(max(s.tree_rss_mb for s in self.samples), self.samples[-1].root_hwm_mb), 1)

    @property
    def peak_pss_mb(self) -> float | None:
        """The largest sampled PSS of the whole tree (shared pages counted once)."""
        return round(max(s.tree_pss_mb for s in self.samples), 1) if self.samples else None

    @property
    def root_hwm_mb(self) -> float | None:
        """The root process's own high-water mark (``VmHWM``) at the last sample."""
        return round(self.samples[-1].root_hwm_mb, 1) if self.samples else None

    def peak_between(self, start: float, end: float) -> float | None:
        """Largest sampled tree RSS within ``[start, end]`` (epoch seconds), e.g. one task instance."""
        inside = [s.tree_rss_mb for s in self.samples if start - self.interval <= s.t <= end + self.interval]
        return round(max(inside), 1) if inside else None


@contextmanager
def sampling(root: int | Callable[[list[str]], bool]) -> Iterator[MemorySampler]:
    sampler = MemorySampler(root).start()
    try:
        yield sampler
    finally:
        sampler.stop()


def is_airflow_dags_test(cmd: list[str]) -> bool:
    return "dags" in cmd and "test" in cmd and any("airflow" in part for part in cmd[:2])


class FakeServer:
    """The fake Trackier API as its own process (as in the demo), with its control endpoints."""

    def __init__(self, workdir: Path, advertisers: int, campaigns: int, seed: int, api_key: str) -> None:
        self.port_file = workdir / f"fake-trackier-{os.getpid()}-{time.monotonic_ns()}.port"
        self.cmd = process_command(
            self.port_file, advertisers=advertisers, campaigns=campaigns, seed=seed, api_key=api_key
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> FakeServer:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.proc = subprocess.Popen(self.cmd, cwd=REPO_ROOT, env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self.port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake Trackier server did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port_file.read_text().strip()}"
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.port_file.unlink(missing_ok=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid) or 0.0

    def control(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = Request(  # noqa: S310 - our loopback fake server
            f"{self.url}/_fake/{path}",
            data=data,
            method="GET" if data is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urlopen(request, timeout=60) as response:  # noqa: S310 - our loopback fake server
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self.control("stats")

    def reset_stats(self) -> None:
        self.control("reset_stats", {})

    def mutate(self, op: str, **args: Any) -> dict[str, Any]:
        return self.control("mutate", {"op": op, **args})

    def prerender(self) -> int:
        """Have the server render every record once (kept until its next mutation); returns how many.

        Called before each measured sync, outside the measured time: a real Trackier renders its
        pages on its own machines, not on the two cores the systems measured here share
        (``Catalogue.prerender``)."""
        return int(self.control("prerender", {})["records"])
