"""The ``authabuse`` command line.

Each subcommand lives in its own module ``authabuse.cli._<name>`` exposing
``register(subparsers)``; the module imports what it needs lazily, inside its handler,
so ``authabuse --help`` stays fast.

>>> main(["--version"])  # doctest: +ELLIPSIS
authabuse ...
0
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from authabuse.errors import AuthAbuseError

__all__ = ["main"]

# Subcommand modules, in the order `--help` lists them.
_COMMANDS: tuple[str, ...] = (
    "demo",
    "parse",
    "scan",
    "watch",
    "report",
    "simulate",
    "evaluate",
    "geo",
    "serve",
    "state",
)


def _build_parser() -> argparse.ArgumentParser:
    from authabuse import __version__

    parser = argparse.ArgumentParser(
        prog="authabuse",
        description="Detect abused SMTP AUTH credentials in mail logs and in the mail path.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        module = importlib.import_module(f"authabuse.cli._{name}")
        module.register(sub)
    parser.set_defaults(_version=__version__)
    return parser


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911 - a return per exit status
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Exit codes: 0 success, 1 findings or failure reported by the command, 2 usage or
    configuration error, or a file, socket or stream the system refused (one line on
    stderr, never a traceback), 130 interrupted.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"authabuse {args._version}")
        return 0
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = func(args)
    except AuthAbuseError as exc:
        print(f"authabuse {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("authabuse: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error, and stay quiet on exit.
        sys.stderr.close()
        return 0
    except OSError as exc:
        # The system refused something no option check could foresee (a full disk under
        # stdout, a port already taken): one line, and 2, never 1 (scan's "flagged").
        print(f"authabuse {args.command}: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    return code


def _os_error(exc: OSError) -> str:
    """``OSError`` as one line: what failed, on which file, and why."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None and exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {reason}"
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return reason
