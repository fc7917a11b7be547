"""``authabuse scan``: run the detector over logs, report the accounts it flags.

Contract (other tools script against it)::

    authabuse scan [--format auto|postfix|dovecot|exim|sendmail|jsonl] [--geo PATH]...
                   [--year N] [--tz ZONE] [--rules FILE] [--state FILE]
                   [--min-level suspicious|abuse] [--json] LOG...

With ``--json``, one JSON object per account that reached at least ``--min-level``::

    {"account", "level", "score", "flagged_at", "reasons": [{"rule", "score", "detail"}],
     "distinct_ips", "countries": {"PL": 120, ...}, "messages", "first_seen", "last_seen"}

Exit status: 0 when no account reached ``--min-level``, 1 when some did, 2 on a usage,
configuration or state-file error, 130 when interrupted (Ctrl-C): the findings of the
input read so far are still written, and the state file is left as it was. Findings go
to stdout after the whole input is read, so ``tail -F mail.log | authabuse scan -``
reports when stopped with Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import unicodedata
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, TextIO

from authabuse.cli._input import add_detection_arguments, add_input_arguments

if TYPE_CHECKING:
    from authabuse.scan import AccountSummary

__all__ = ["read_errors_note", "register", "sanitize"]

_MAX_NAME = 200


def register(subparsers: Any) -> None:
    """Add the ``scan`` subcommand to the ``authabuse`` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "scan",
        help="detect abused accounts in mail-server logs",
        description=(
            "Run the detector over logs in log order, as a live detector would see them, "
            "and report every account that reached at least --min-level, with the rules "
            "that fired and their evidence."
        ),
    )
    add_input_arguments(parser)
    add_detection_arguments(parser)
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="detector state: loaded if the file exists, saved after the scan "
        "(continue across log rotation)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per account")
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="also write a self-contained HTML report of the reported accounts "
        "(as `authabuse report`; figures need the 'plot' extra)",
    )
    parser.set_defaults(func=_run)


def sanitize(text: str, limit: int = _MAX_NAME) -> str:
    r"""Make an untrusted string safe to print on a terminal, one line, bounded.

    Control, format (bidi overrides) and other invisible characters become ``\\xNN`` /
    ``\\uNNNN`` escapes; backslashes are doubled; text beyond ``limit`` characters is cut
    and the cut is said.

    >>> sanitize("evil\x1b[31m\u202euser")
    'evil\\x1b[31m\\u202euser'
    >>> sanitize("a" * 300, limit=10)
    'aaaaaaaaaa...(+290 chars)'
    """
    out: list[str] = []
    for ch in text[:limit]:
        cat = unicodedata.category(ch)
        if ch == "\\":
            out.append("\\\\")
        elif cat[0] in "CZ" and ch != " ":
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    if len(text) > limit:
        out.append(f"...(+{len(text) - limit} chars)")
    return "".join(out)


def _run(args: argparse.Namespace) -> int:
    from authabuse.cli._input import check_writable, events_from_args
    from authabuse.cli._report import replayable_logs, write_report
    from authabuse.detector import Detector
    from authabuse.errors import ConfigurationError
    from authabuse.geo import resolver_from_paths
    from authabuse.parsers import ParseStats
    from authabuse.rules import load_rules
    from authabuse.scan import Scan

    rules = load_rules(args.rules) if args.rules else None
    geo = resolver_from_paths(args.geo)  # no --geo: the embedded default data
    # Written after the scan: refuse now what could not be written then.
    state = check_writable(args.state, "state file") if args.state else None
    if args.report:
        check_writable(args.report, "report")
    if state is not None and state.exists():
        detector = Detector.load(state, rules=rules, geo=geo)
    else:
        detector = Detector(rules=rules, geo=geo)
    stats = ParseStats()
    with replayable_logs(list(args.logs)) if args.report else nullcontext(args.logs) as logs:
        args.logs = logs
        progress = _Progress(sys.stderr, stats) if sys.stderr.isatty() else None
        scan = Scan(detector)
        interrupted = False
        try:
            scan.feed(events_from_args(args, stats), progress=progress)
        except KeyboardInterrupt:
            # Ctrl-C, e.g. to end `tail -F mail.log | authabuse scan -`: report what was
            # found so far, leave the state file as it was, and exit 130.
            interrupted = True
        if progress is not None:
            progress.done()
        flagged = scan.flagged(args.min_level)
        records = [s.to_dict(account) for account, s in flagged]
        _write_findings(args, flagged, records)
        if interrupted:
            print(_footer(stats, detector, len(scan.summaries), len(flagged)), file=sys.stderr)
            note = "scan: interrupted: the findings cover the input read so far"
            note += "; the state file was left as it was" if state else ""
            note += "; no report written" if args.report else ""
            print(note, file=sys.stderr)
            return 130
        if state is not None:  # after the findings are out: a failed save cannot lose them
            try:
                detector.save(state)
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot write state file {state}: {exc.strerror or exc}"
                ) from None
        if args.report:
            write_report(args, records, geo, args.report)
    print(_footer(stats, detector, len(scan.summaries), len(flagged)), file=sys.stderr)
    return 1 if flagged else 0


def _write_findings(
    args: argparse.Namespace,
    flagged: list[tuple[str, AccountSummary]],
    records: list[dict[str, Any]],
) -> None:
    """Write the findings to stdout: JSON lines with ``--json``, else the table."""
    out = sys.stdout
    try:
        if args.json:
            for record in records:
                out.write(json.dumps(record) + "\n")
        else:
            _table(out, flagged)
        out.flush()
    except BrokenPipeError:
        # The reader went away (`| head -1`): the rest of the findings have nowhere to
        # go, but the state is still saved and the exit status still says 1.
        _discard_stdout()


def _discard_stdout() -> None:
    """Point standard output at the null device (its reader closed the pipe)."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


def _table(out: TextIO, flagged: list[tuple[str, AccountSummary]]) -> None:
    from authabuse.rules import Level

    if not flagged:
        out.write("no account reached the reporting level\n")
        return
    head = f"{'LEVEL':<10} {'SCORE':>5} {'FLAGGED AT':<25} {'IPS':>6} {'MSGS':>7} ACCOUNT"
    out.write(head + "\n")
    for account, s in flagged:
        v = s.verdict
        assert v is not None  # noqa: S101 - only flagged accounts are reported
        assert s.flagged_at is not None  # noqa: S101 - only flagged accounts are reported
        out.write(
            f"{Level(s.level)!s:<10} {v.score:>5g} {s.flagged_at.isoformat():<25} "
            f"{s.distinct_ips:>6} {s.messages:>7} {sanitize(account)}\n"
        )
        top = s.countries()
        if top:
            more = f" (+{len(top) - 10} more)" if len(top) > 10 else ""
            out.write("    countries: " + ", ".join(f"{k} {c}" for k, c in top[:10]) + more + "\n")
        for f in v.findings:
            out.write(f"    {f.rule} (+{f.score:g}): {sanitize(f.detail, 400)}\n")


def _footer(stats: Any, detector: Any, accounts: int, flagged: int) -> str:
    d = detector.stats
    parts = [
        f"{stats.lines} lines, {sum(stats.events.values())} events ({d.events} judged), "
        f"{accounts} account{'' if accounts == 1 else 's'}, {flagged} reported",
    ]
    skipped = {
        "malformed lines": stats.malformed,
        "unrecognized lines": stats.unrecognized,
        "too long lines": stats.too_long,
        "events out of order (kept)": d.reordered,
        "events too late (skipped; name rotated logs oldest first)": d.too_late,
        "allowlisted events": d.allowlisted,
        "addresses the geo data cannot place": d.geo_unknown,
    }
    parts.extend(f"{v} {k}" for k, v in skipped.items() if v)
    cut = read_errors_note(stats)
    if cut:
        parts.append(cut)
    return "scan: " + "; ".join(parts)


def read_errors_note(stats: Any) -> str:
    """Say how many inputs a read error cut short (a truncated ``.gz``), and the first."""
    if not stats.read_errors:
        return ""
    source, lineno, reason = stats.examples["read_errors"][0]
    return (
        f"{stats.read_errors} inputs cut short by a read error "
        f"(first at {source}:{lineno}: {reason})"
    )


class _Progress:
    def __init__(self, stream: TextIO, stats: Any) -> None:
        self.stream = stream
        self.stats = stats
        self.start = time.monotonic()
        self.next = self.start + 1.0

    def __call__(self, events: int) -> None:
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + 1.0
        rate = self.stats.lines / max(now - self.start, 1e-9)
        self.stream.write(f"\rscan: {self.stats.lines:,} lines ({rate:,.0f}/s)")
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()
