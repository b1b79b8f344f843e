"""Benchmark harness: measure a workload and a baseline in the same run, report ratios.

Timings on shared machines drift; a ratio to a baseline measured seconds earlier on
the same machine (PostgreSQL ``COPY`` of the same file, a plain ``count(*)``, a
hello-world view) does not drift nearly as much. Benchmarks are pytest tests marked
``benchmark`` (excluded from ``make test``; ``make bench`` runs them) that call
:func:`record` and assert the issue's targets.

Results are appended as JSON lines to ``var/bench/results.jsonl`` and printed; copy
the numbers into BENCHMARKS.md with the command that produced them.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_DEFAULT_RESULTS = Path(__file__).resolve().parents[2] / "var" / "bench"
RESULTS = Path(os.environ.get("NOTIFYHUB_BENCH_RESULTS", _DEFAULT_RESULTS))


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def time_it(fn: Callable[[], Any], *, repeat: int = 1, warmup: int = 0) -> Timing:
    """Run ``fn`` ``warmup`` times unmeasured, then ``repeat`` times measured."""
    for _ in range(warmup):
        fn()
    timing = Timing()
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        timing.seconds.append(time.perf_counter() - started)
    return timing


@contextmanager
def stopwatch() -> Iterator[Timing]:
    timing = Timing()
    started = time.perf_counter()
    try:
        yield timing
    finally:
        timing.seconds.append(time.perf_counter() - started)


def peak_rss_mib(*, children: bool = False) -> float:
    """Peak resident set size of this process (or of its waited-for children), MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


@dataclass
class BenchResult:
    name: str
    metrics: dict[str, float]
    baseline: dict[str, float]
    notes: str = ""
    machine: str = field(default_factory=lambda: f"{platform.node()} {os.cpu_count()} cpu")
    at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def record(
    name: str, *, metrics: dict[str, float], baseline: dict[str, float], notes: str = ""
) -> BenchResult:
    """Print and append one result (JSON line) for BENCHMARKS.md."""
    result = BenchResult(name=name, metrics=metrics, baseline=baseline, notes=notes)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "results.jsonl").open("a") as fh:
        fh.write(json.dumps(asdict(result)) + "\n")
    width = max(len(k) for k in [*metrics, *baseline]) if metrics or baseline else 10
    print(f"\n== {name} ==")
    for label, values in (("result", metrics), ("baseline", baseline)):
        for key, value in values.items():
            print(f"  {label:8} {key:<{width}} {value:,.3f}")
    if notes:
        print(f"  notes: {notes}")
    return result
