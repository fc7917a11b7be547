"""``authabuse simulate``: write labelled simulated submission traffic to a directory."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand to ``subparsers``."""
    from authabuse.simulate._model import MIXES

    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="write a simulated Postfix or Exim log with labelled credential abuse",
        description=(
            "Write a simulated ISP submission service to DIR: a Postfix log (maillog) or "
            "an Exim main log (mainlog) of the same traffic, the geo tables of the "
            "addresses it uses (geo-country.csv, geo-asn.csv) and the ground truth "
            "(truth.json). The same arguments always give the same files."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--accounts", type=int, default=2000, help="customer accounts (default 2000)")
    p.add_argument("--days", type=float, default=4.0, help="simulated days (default 4)")
    p.add_argument(
        "--mix",
        default="default",
        choices=sorted(MIXES),
        help="persona and abuse mix (default: default)",
    )
    p.add_argument("--start", default="2026-03-02", help="first day, YYYY-MM-DD")
    p.add_argument("--tz", default="+09:00", help="UTC offset of the log's clock (default +09:00)")
    p.add_argument(
        "--log-format",
        choices=("postfix", "exim"),
        default="postfix",
        help="postfix (default: maillog) or exim (mainlog, Exim 4's own stamps)",
    )
    p.add_argument(
        "--timestamps",
        choices=("rfc3339", "bsd"),
        default=None,
        help="Postfix stamps: rfc3339 (default; needs no --year/--tz to read) or classic "
        "syslog (bsd)",
    )
    p.add_argument(
        "--jsonl", action="store_true", help="also write events.jsonl (the log's events)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from authabuse.simulate import simulate

    r = simulate(
        args.out,
        seed=args.seed,
        accounts=args.accounts,
        days=args.days,
        mix=args.mix,
        start=args.start,
        tz=args.tz,
        stamp=args.timestamps,
        jsonl=args.jsonl,
        log_format=args.log_format,
    )
    print(
        f"{r.out_dir}: {r.lines} log lines, {r.messages} messages ({r.abusive_messages} "
        f"abusive) from {r.accounts} accounts ({r.abused} abused) in {r.seconds:.1f} s",
        file=sys.stderr,
    )
    return 0
