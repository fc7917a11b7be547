"""Input options shared by every subcommand that reads logs (parse, scan, report, ...).

>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_input_arguments(p)
>>> args = p.parse_args(["--format", "postfix", "--year", "2024", "--tz", "UTC", "maillog"])
>>> (args.logs, args.format, args.year, args.tz)
(['maillog'], 'postfix', 2024, 'UTC')
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from authabuse.events import Event
    from authabuse.parsers import ParseStats

__all__ = [
    "add_detection_arguments",
    "add_input_arguments",
    "check_writable",
    "events_from_args",
    "seconds",
]

_FORMATS = ("auto", "postfix", "dovecot", "exim", "sendmail", "jsonl")


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``LOG...``, ``--format``, ``--year``, ``--tz`` and ``--max-line`` to ``parser``."""
    parser.add_argument(
        "logs",
        nargs="+",
        metavar="LOG",
        help="log file to read ('-' for standard input; .gz files are decompressed)",
    )
    parser.add_argument(
        "--format",
        choices=_FORMATS,
        default="auto",
        help="log format (default: auto, recognized line by line)",
    )
    parser.add_argument(
        "--year",
        type=int,
        default=None,
        help="year of the first year-less syslog stamp (default: the latest year that "
        "does not put it in the future); later lines roll over at 31 Dec",
    )
    parser.add_argument(
        "--tz",
        default=None,
        metavar="ZONE",
        help="zone of stamps without an offset: IANA name, UTC or +09:00 (a negative "
        "offset as --tz=-05:00; default: this machine's local zone)",
    )
    parser.add_argument(
        "--max-line",
        type=int,
        default=None,
        metavar="BYTES",
        help="skip (and count) lines longer than this (default: 32768)",
    )


def add_detection_arguments(parser: argparse.ArgumentParser, *, min_level: bool = True) -> None:
    """Add ``--geo PATH`` (repeatable), ``--rules FILE`` and ``--min-level`` to ``parser``.

    The options every subcommand that runs the detector takes (scan, report, serve):

    >>> p = argparse.ArgumentParser()
    >>> add_detection_arguments(p)
    >>> a = p.parse_args(["--geo", "c.mmdb", "--geo", "asn.csv", "--min-level", "abuse"])
    >>> (a.geo, a.rules, a.min_level)
    (['c.mmdb', 'asn.csv'], None, 'abuse')
    """
    parser.add_argument(
        "--geo",
        action="append",
        default=[],
        metavar="PATH",
        help="geo data: an .mmdb file or a CSV range table (country or ASN); repeatable "
        "(default: the embedded data)",
    )
    parser.add_argument("--rules", metavar="FILE", help="rules file (TOML; see docs/rules.md)")
    if min_level:
        parser.add_argument(
            "--min-level",
            choices=("suspicious", "abuse"),
            default="suspicious",
            help="report accounts from this level up (default: suspicious)",
        )


def events_from_args(args: argparse.Namespace, stats: ParseStats) -> Iterator[Event]:
    """Stream the events of the logs named by the options :func:`add_input_arguments` added.

    Options are validated before the first line is read: a bad ``--tz`` or ``--year``
    raises :class:`~authabuse.errors.ConfigurationError`, and so does a file that
    cannot be opened (when its turn comes).
    """
    from authabuse.parsers import DEFAULT_MAX_LINE, LogParser, iter_events

    max_line = args.max_line if args.max_line is not None else DEFAULT_MAX_LINE
    # Validate now, so a usage error is reported before any output.
    LogParser(args.format, year=args.year, tz=args.tz, max_line=max_line)
    return iter_events(
        args.logs,
        format=args.format,
        year=args.year,
        tz=args.tz,
        stats=stats,
        max_line=max_line,
        strict=bool(getattr(args, "strict", False)),
    )


def check_writable(path: str | os.PathLike[str], what: str) -> Path:
    """Refuse, before any work, an output file that could not be written at the end.

    A state file or report is written after the scan (or, for a server, at shutdown):
    finding out only then that its directory is missing or read-only loses the work.
    This creates and removes a temporary file beside ``path``, as the atomic write
    will; a problem raises :class:`~authabuse.errors.ConfigurationError`.

    >>> check_writable("/nonexistent-dir/state", "state file")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    authabuse.errors.ConfigurationError: cannot write state file /nonexistent-dir/state: No such ...
    """
    from authabuse.errors import ConfigurationError

    target = Path(path)
    if target.is_dir():
        raise ConfigurationError(f"cannot write {what} {target}: it is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {what} {target}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(tmp)
    return target


def seconds(*, zero: bool) -> Any:
    """Return an argparse type: finite seconds, above 0 (or at least 0 if ``zero``).

    >>> seconds(zero=False)("0.5")
    0.5
    >>> seconds(zero=False)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be a number of seconds above 0, not '0'
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            floor = "0 or more" if zero else "above 0"
            raise argparse.ArgumentTypeError(f"must be a number of seconds {floor}, not {text!r}")
        return value

    return parse
