"""``authabuse evaluate``: measure detection on simulated traffic next to naive baselines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _rate(text: str) -> tuple[int, float]:
    count, _, seconds = text.partition("/")
    try:
        return int(count), float(seconds or 60)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MESSAGES/SECONDS, not {text!r}") from None


def _limits(text: str) -> tuple[int, int]:
    countries, _, ips = text.partition("/")
    try:
        return int(countries), int(ips)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COUNTRIES/IPS, not {text!r}") from None


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` subcommand to ``subparsers``."""
    from authabuse.simulate._model import MIXES

    p: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate",
        help="score the detector and naive baselines on simulated traffic",
        description=(
            "Scan simulated traffic (written by 'authabuse simulate') with the detector and "
            "two naive baselines in one pass, and print recall per abuse pattern, false "
            "positives per persona and abusive mails sent before each abused account was "
            "flagged. With --seeds, DIR is a work directory: one simulation per seed and "
            "mix is written under it (or reused when already there) and the figures are "
            "summed over all of them."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="a simulation directory, or a work directory")
    p.add_argument("--rules", metavar="FILE", help="detector rules (TOML) instead of defaults")
    p.add_argument("--seeds", type=int, nargs="+", metavar="N", help="simulate these seeds")
    p.add_argument(
        "--mix", nargs="+", default=["default"], choices=sorted(MIXES), help="with --seeds"
    )
    p.add_argument("--accounts", type=int, default=2000, help="with --seeds (default 2000)")
    p.add_argument("--days", type=float, default=4.0, help="with --seeds (default 4)")
    p.add_argument(
        "--log-format",
        choices=("postfix", "exim"),
        default="postfix",
        help="with --seeds: the log the simulations write (default postfix)",
    )
    p.add_argument(
        "--level",
        choices=("abuse", "suspicious"),
        default="abuse",
        help="detector level that counts as flagged (default abuse)",
    )
    p.add_argument(
        "--rate-limit",
        type=_rate,
        default=(30, 60.0),
        metavar="MSGS/SECONDS",
        help="per-IP baseline: flag above MSGS messages per SECONDS (default 30/60)",
    )
    p.add_argument(
        "--geo-limits",
        type=_limits,
        default=(5, 20),
        metavar="COUNTRIES/IPS",
        help="postfwd baseline: flag above COUNTRIES or IPS per account in 24 h (default 5/20)",
    )
    p.add_argument(
        "--geo",
        action="append",
        metavar="PATH",
        help="geo table or .mmdb instead of the simulation's own tables (repeatable)",
    )
    p.add_argument("--no-detector", action="store_true", help="measure the baselines only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from authabuse.errors import ConfigurationError, CorruptDataError
    from authabuse.evaluate import evaluate
    from authabuse.simulate import GroundTruth, is_current, simulate

    root = Path(args.dir)
    dirs: list[Path] = []
    if args.seeds:
        for mix in args.mix:
            for seed in args.seeds:
                d = root / f"{mix}-seed{seed}-{args.accounts}x{args.days:g}d"
                if args.log_format != "postfix":  # Postfix runs keep their old names
                    d = d.with_name(f"{d.name}-{args.log_format}")
                params = {
                    "seed": seed,
                    "accounts": args.accounts,
                    "days": args.days,
                    "mix": mix,
                    "log_format": args.log_format,
                }
                try:
                    fresh = is_current(GroundTruth.load(d), **params)
                except (ConfigurationError, CorruptDataError):  # absent or broken: write it
                    fresh = False
                if not fresh:
                    print(f"simulating {d} ...", file=sys.stderr)
                    simulate(d, **params)
                dirs.append(d)
    else:
        dirs.append(root)
    ev = evaluate(
        dirs,
        rules=args.rules,
        detector=not args.no_detector,
        level=args.level,
        rate_limit=args.rate_limit,
        geo_limits=args.geo_limits,
        geo=args.geo,
    )
    if args.json:
        print(json.dumps(ev.to_dict(), indent=1))
    else:
        runs = ", ".join(f"{r['mix']} seed {r['seed']}" for r in ev.runs)
        total = sum(r["accounts"] for r in ev.runs)
        abused = sum(r["abused"] for r in ev.runs)
        print(f"{len(ev.runs)} run(s) ({runs}): {total} accounts, {abused} abused; "
              f"flagged = level {ev.level}")  # fmt: skip
        print(ev.table())
    return 0
