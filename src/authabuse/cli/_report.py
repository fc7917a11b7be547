"""``authabuse report``: scan logs and write a self-contained HTML report.

::

    authabuse report [--format F] [--geo PATH]... [--year N] [--tz ZONE] [--rules FILE]
                     [--min-level suspicious|abuse] [--no-figures] --out report.html LOG...

The logs are read twice: once through the detector (as ``scan`` does), once to collect
the activity of the flagged accounts for the figures. Standard input (``-``) is spooled
to a temporary file so it can be read twice.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from authabuse.cli._input import add_detection_arguments, add_input_arguments

__all__ = ["register", "replayable_logs", "write_report"]


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand to the ``authabuse`` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="scan logs and write a self-contained HTML report with figures",
        description=(
            "Scan logs like `authabuse scan` and write one HTML file (figures embedded, "
            "nothing fetched from the network): flagged accounts per day, source-country "
            "shares, distinct source IPs per account, per-IP send attempts, and a table "
            "of flagged accounts with a drill-down for each. Figures need the 'plot' extra."
        ),
    )
    add_input_arguments(parser)
    add_detection_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="HTML file to write")
    parser.add_argument(
        "--no-figures", action="store_true", help="tables only, even if matplotlib is installed"
    )
    parser.set_defaults(func=_run)


@contextmanager
def replayable_logs(logs: list[str]) -> Iterator[list[str]]:
    """Yield log paths that can be read twice (standard input spooled to a file)."""
    if "-" not in logs:
        yield logs
        return
    with tempfile.TemporaryDirectory(prefix="authabuse-report-") as tmp:
        spooled = Path(tmp) / "stdin.log"
        with spooled.open("wb") as fh:
            shutil.copyfileobj(sys.stdin.buffer, fh, 1 << 20)
        yield [str(spooled) if p == "-" else p for p in logs]


def write_report(
    args: argparse.Namespace, findings: list[dict[str, Any]], geo: Any, out: str | Path
) -> Path:
    """Read the logs named by ``args`` again and write the report of ``findings`` to ``out``."""
    from authabuse.cli._input import events_from_args
    from authabuse.parsers import ParseStats
    from authabuse.report import ReportBuilder

    figures = False if getattr(args, "no_figures", False) else None
    builder = ReportBuilder(findings, geo=geo, figures=figures, sources=list(args.logs))
    builder.add_all(events_from_args(args, ParseStats()))
    return builder.write(out)


def _run(args: argparse.Namespace) -> int:
    from authabuse.cli._input import check_writable, events_from_args
    from authabuse.cli._scan import read_errors_note
    from authabuse.detector import Detector
    from authabuse.geo import resolver_from_paths
    from authabuse.parsers import ParseStats
    from authabuse.rules import load_rules
    from authabuse.scan import Scan

    rules = load_rules(args.rules) if args.rules else None
    geo = resolver_from_paths(args.geo)  # no --geo: the embedded default data
    check_writable(args.out, "report")  # written after the scan: refuse it now
    with replayable_logs(list(args.logs)) as logs:
        args.logs = logs
        scan = Scan(Detector(rules=rules, geo=geo))
        stats = ParseStats()
        scan.feed(events_from_args(args, stats))
        findings = scan.findings(args.min_level)
        path = write_report(args, findings, geo, args.out)
    cut = read_errors_note(stats)
    print(
        f"report: {stats.lines} lines, {len(scan.summaries)} accounts, "
        f"{len(findings)} flagged; wrote {path}" + (f"; {cut}" if cut else ""),
        file=sys.stderr,
    )
    return 1 if findings else 0
