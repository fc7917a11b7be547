"""``authabuse parse``: turn logs into events, one JSON object per line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from authabuse.cli._input import add_input_arguments

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``parse`` subcommand to the ``authabuse`` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "parse",
        help="turn mail-server logs into events (JSON lines)",
        description=(
            "Read Postfix, Dovecot, Exim, Sendmail or JSON-lines logs and write one JSON "
            "event per line to standard output; a summary of what was read, used and "
            "skipped goes to standard error."
        ),
    )
    add_input_arguments(parser)
    parser.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first malformed or unrecognized line (exit status 2)",
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="do not print the summary on stderr"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from authabuse.cli._input import events_from_args
    from authabuse.parsers import ParseStats

    stats = ParseStats()
    write = sys.stdout.write
    events = events_from_args(args, stats)  # bad options fail here, before any output
    try:
        for event in events:
            write(event.to_json())
            write("\n")
        sys.stdout.flush()
    finally:
        if not args.quiet:
            print(stats.summary(), file=sys.stderr)
    return 0
