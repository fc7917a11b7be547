"""``authabuse demo``: simulate ISP traffic with abuse, scan it, print and report the findings.

Nothing to download: the simulator writes a real-format Postfix log whose source
addresses the embedded geo data places, the scan uses that embedded data, and the
result is printed and written as an HTML report. Because the traffic is simulated, the
demo also says how the findings compare with the truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand to the ``authabuse`` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="simulate a few days of ISP traffic with abuse, scan it and write a report",
        description=(
            "Simulate a mail provider's submission service for a few days (legitimate "
            "customers and stolen credentials abused by botnets), scan the log with the "
            "embedded geo data, print the flagged accounts and write an HTML report."
        ),
    )
    parser.add_argument(
        "--out",
        default="authabuse-demo",
        metavar="DIR",
        help="directory for the simulated log and the report (default: ./authabuse-demo)",
    )
    parser.add_argument("--seed", type=int, default=7, help="simulation seed (default 7)")
    parser.add_argument("--accounts", type=int, default=800, help="customer accounts (default 800)")
    parser.add_argument("--days", type=float, default=3.0, help="simulated days (default 3)")
    parser.add_argument(
        "--no-figures", action="store_true", help="tables only, even if matplotlib is installed"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from authabuse.cli._report import write_report
    from authabuse.cli._scan import _table
    from authabuse.detector import Detector
    from authabuse.geo import default_resolver
    from authabuse.parsers import iter_events
    from authabuse.rules import Level
    from authabuse.scan import Scan
    from authabuse.simulate import GroundTruth, simulate

    out = Path(args.out)
    err = sys.stderr
    print(
        f"demo: simulating {args.accounts} accounts over {args.days:g} days into {out}/ ...",
        file=err,
    )
    sim = simulate(out, seed=args.seed, accounts=args.accounts, days=args.days)
    log = sim.out_dir / "maillog"
    print(
        f"demo: {sim.lines:,} log lines, {sim.messages:,} messages "
        f"({sim.abusive_messages:,} abusive) from {sim.accounts} accounts; scanning ...",
        file=err,
    )
    geo = default_resolver()
    scan = Scan(Detector(geo=geo))
    scan.feed(iter_events(str(log)))
    flagged = scan.flagged(Level.SUSPICIOUS)
    _table(sys.stdout, flagged)
    findings = [s.to_dict(a) for a, s in flagged]
    report_args = argparse.Namespace(
        logs=[str(log)], format="auto", year=None, tz=None, max_line=None,
        no_figures=args.no_figures,
    )  # fmt: skip
    path = write_report(report_args, findings, geo, out / "report.html")

    truth = GroundTruth.load(sim.out_dir)
    abused = {a.name for a in truth.abused()}
    at_abuse = {a for a, s in flagged if s.level >= Level.ABUSE}
    at_suspicious = {a for a, _ in flagged}
    legit = len(truth.accounts) - len(abused)
    print(
        f"\ndemo: the simulation abused {len(abused)} accounts; "
        f"{len(abused & at_abuse)} of them reached 'abuse' "
        f"and {len(abused & at_suspicious)} at least 'suspicious'.\n"
        f"demo: of {legit} legitimate accounts, {len(at_abuse - abused)} reached 'abuse' "
        f"and {len(at_suspicious - abused)} 'suspicious'.\n"
        f"demo: report written to {path} (open it in a browser)."
    )
    return 0
