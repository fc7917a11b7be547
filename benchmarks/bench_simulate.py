"""The simulator's log writers side by side: Postfix and Exim 4 on the same seed.

One world (same seed, accounts, days) is rendered by each writer several times,
alternating, in one process; each run's CPU time is measured with ``time.process_time``
(two noisy shared cores: CPU time, medians, ratios within the run). The model's own
cost (drawing the sessions, no writer) is measured the same way and subtracted, so the
writers are compared on what they alone cost. Each log is then read back with
``authabuse.parsers.iter_events`` once, for the reading speed of either format.

    python benchmarks/bench_simulate.py [--accounts 1000] [--days 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from authabuse.parsers import ParseStats, iter_events
from authabuse.simulate import DEFAULT_START, GroundTruth, _sessions, simulate
from authabuse.simulate._model import World
from authabuse.simulate._space import AddressSpace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, update_results  # benchmarks are scripts


def _model_cpu(seed: int, accounts: int, days: float) -> float:
    """CPU seconds to draw every session of the world, in start order, writing nothing."""
    t0 = datetime.strptime(DEFAULT_START, "%Y-%m-%d").replace(tzinfo=timezone(timedelta(hours=9)))
    began = time.process_time()
    world = World(
        seed=seed,
        accounts=accounts,
        days=days,
        mix="default",
        start=t0.timestamp(),
        space=AddressSpace.default(),
    )
    for _ in _sessions(world):
        pass
    return time.process_time() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = ap.parse_args()
    cpu: dict[str, list[float]] = {"postfix": [], "exim": []}
    model: list[float] = []
    lines: dict[str, int] = {}
    messages = 0
    read: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            model.append(_model_cpu(args.seed, args.accounts, args.days))
            for fmt, runs in cpu.items():
                r = simulate(
                    Path(tmp) / fmt, seed=args.seed, accounts=args.accounts, days=args.days,
                    log_format=fmt,
                )  # fmt: skip
                runs.append(r.cpu_seconds)
                lines[fmt] = r.lines
                messages = r.messages
                print(f"{fmt}: {r.lines} lines, {r.cpu_seconds:.2f} s CPU", file=sys.stderr)
        for fmt in cpu:
            d = Path(tmp) / fmt
            meta = GroundTruth.load(d).meta
            stats = ParseStats()
            began = time.process_time()
            n = sum(
                1
                for _ in iter_events(
                    [str(d / meta["files"]["log"])], format=fmt, tz=meta["tz"], stats=stats
                )
            )
            read[fmt] = (time.process_time() - began, n)
            assert stats.malformed == stats.unrecognized == 0
    m = statistics.median(model)
    rows = []
    for fmt, runs in cpu.items():
        total = statistics.median(runs)
        own = max(total - m, 1e-9)
        read_cpu, events = read[fmt]
        rows.append(
            f"| {fmt} | {lines[fmt]:,} | {total:.2f} | {own:.2f} | "
            f"{lines[fmt] / total:,.0f} | {lines[fmt] / own:,.0f} | {1e6 * own / messages:.0f} | "
            f"{lines[fmt] / read_cpu:,.0f} ({events:,} events) |"
        )
    md = "\n".join(
        [
            "## bench_simulate: the Postfix and Exim log writers",
            "",
            f"`python benchmarks/bench_simulate.py --accounts {args.accounts} --days "
            f"{args.days:g} --repeat {args.repeat}` (seed {args.seed}, mix default). "
            f"{machine_line()}",
            "",
            "One world, rendered by each writer (alternating runs, median CPU seconds). "
            f"{messages:,} messages. Drawing the sessions alone (the model, no writer) "
            f"takes {m:.2f} s CPU; "
            "*writer only* subtracts it. Both logs carry the same sessions, messages and "
            "recipients; Exim writes fewer lines per message (`<=`, `=>`, `Completed` "
            "against Postfix's `client=`, `cleanup`, `qmgr`, `smtp`, `removed`, plus "
            "connect and disconnect). *Read back*: `iter_events` on the log written, once; "
            "Postfix logs take the whole-block fast path (`parsers/_bulk.py`), Exim's the "
            "line-by-line parser.",
            "",
            "| log | lines | CPU s | writer only, CPU s | lines / CPU s | "
            "lines / writer CPU s | writer CPU µs / message | read back: lines / CPU s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print(md)
    if not args.no_write:
        update_results("bench_simulate", md)


if __name__ == "__main__":
    main()
