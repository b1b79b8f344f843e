"""Where the CPU goes, from ``/proc`` (Linux): per-process CPU time, peak RSS, machine load.

For benchmarks whose workload spans several processes (worker pool processes, beat,
the FCM stub, PostgreSQL backends, Redis) on a small machine, where "is it the code
or the machine?" needs an answer. ``CpuSampler`` polls every process's CPU time in a
background thread and sums the increase per category (a caller-supplied
``classify(pid, ppid, cmdline)``); a process that exits between two polls loses at
most one interval of accounting. ``machine_cpu()`` reads the whole machine's busy and
total time, so the sum of the categories can be checked against it.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")

Classify = Callable[[int, int, str], str]


def _stat(pid: int) -> tuple[int, float] | None:
    """(ppid, CPU seconds: user + system) of a process, or None if it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def cmdline(pid: int) -> str:
    try:
        return (
            (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        )
    except OSError:
        return ""


def pids() -> list[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def children(parent: int) -> list[int]:
    """Direct children of ``parent`` (e.g. a Celery prefork pool)."""
    found = []
    for pid in pids():
        stat = _stat(pid)
        if stat is not None and stat[0] == parent:
            found.append(pid)
    return found


def peak_rss_mib(pid: int) -> float | None:
    """``VmHWM`` (peak resident set size) of a live process, MiB."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores together."""
    values = [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user … steal (guest time is already inside user)
    return (total - idle) / TICK, total / TICK


class CpuSampler:
    """Sum each category's CPU seconds between ``start()`` and ``stop()``.

    Processes alive at ``start()`` count from their CPU time then; processes born later
    count from zero. ``classify`` is called once per new pid.
    """

    def __init__(self, classify: Classify, *, interval: float = 0.5) -> None:
        self.classify = classify
        self.interval = interval
        self._baseline: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._category: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._machine_start = (0.0, 0.0)
        self.machine = (0.0, 0.0)  # (busy, total) seconds during the sampling

    def _poll(self, *, first: bool = False) -> None:
        for pid in pids():
            stat = _stat(pid)
            if stat is None:
                continue
            ppid, seconds = stat
            if pid not in self._category:
                self._category[pid] = self.classify(pid, ppid, cmdline(pid))
                self._baseline[pid] = seconds if first else 0.0
            self._last[pid] = seconds

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def start(self) -> CpuSampler:
        self._machine_start = machine_cpu()
        self._poll(first=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """Stop sampling; CPU seconds per category, largest first."""
        self._stop.set()
        self._thread.join()
        self._poll()
        busy, total = machine_cpu()
        self.machine = (busy - self._machine_start[0], total - self._machine_start[1])
        sums: dict[str, float] = defaultdict(float)
        for pid, category in self._category.items():
            sums[category] += max(0.0, self._last.get(pid, 0.0) - self._baseline.get(pid, 0.0))
        return dict(sorted(sums.items(), key=lambda item: -item[1]))
