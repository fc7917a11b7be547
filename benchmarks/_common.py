"""Shared helpers for the benchmarks: timing medians and updating RESULTS.md.

Each benchmark owns one section of ``benchmarks/RESULTS.md`` between
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` and rewrites only that section, so
benchmarks can be rerun one at a time.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def median_time(
    func: Callable[[], object],
    *,
    repeat: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Run ``func`` ``repeat`` times and return the median time in seconds.

    Wall time by default; ``clock=time.process_time`` gives this process's CPU time.
    """
    times = []
    for _ in range(repeat):
        start = clock()
        func()
        times.append(clock() - start)
    return statistics.median(times)


def machine_line() -> str:
    """One line naming the machine and Python the figures were measured on."""
    return (
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on "
        f"{platform.machine()}, Python {platform.python_version()} "
        f"({platform.python_implementation()})."
    )


def update_results(name: str, markdown: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md with ``markdown``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if start in text and end in text:
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")
