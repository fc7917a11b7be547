"""``authabuse scan``: run the detector over logs, report the accounts it flags.

Contract (other tools script against it)::

    authabuse scan [--format auto|postfix|dovecot|exim|sendmail|jsonl] [--geo PATH]...
                   [--year N] [--tz ZONE] [--rules FILE] [--state FILE]
                   [--min-level suspicious|abuse] [--json] LOG...

With ``--json``, one JSON object per account that reached at least ``--min-level``::

    {"account", "level", "score", "flagged_at", "reasons": [{"rule", "score", "detail"}],
     "distinct_ips", "countries": {"PL": 120, ...}, "messages", "first_seen", "last_seen"}

Exit status: 0 when no account reached ``--min-level``, 1 when some did, 2 on a usage,
configuration or state-file error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import unicodedata
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from authabuse.cli._input import add_detection_arguments, add_input_arguments

__all__ = ["register", "sanitize"]

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


class _Summary:
    """What the scan reports about one account (kept for every account seen)."""

    __slots__ = (
        "auth_ccs",
        "ccs",
        "first",
        "flagged_at",
        "ips",
        "last",
        "level",
        "messages",
        "verdict",
    )

    def __init__(self, t: datetime) -> None:
        self.first = t
        self.last = t
        self.messages = 0
        self.ips: Any = None
        self.ccs: dict[str, int] | None = None  # country -> messages
        self.auth_ccs: dict[str, int] | None = None  # country -> logins (no messages seen)
        self.level = 0
        self.flagged_at: datetime | None = None
        self.verdict: Any = None  # the highest-scoring verdict

    def add(self, event: Any, verdict: Any, is_message: bool, d_add: Any, member: Any) -> None:
        t = event.time
        if t > self.last:
            self.last = t
        elif t < self.first:
            self.first = t
        if is_message or event.succeeded:
            self.ips = d_add(self.ips, member(event.ip), 64, 12)
            cc = verdict.country
            if is_message:
                self.messages += 1
            if cc:
                if is_message:
                    ccs = self.ccs = self.ccs or {}
                else:
                    ccs = self.auth_ccs = self.auth_ccs or {}
                ccs[cc] = ccs.get(cc, 0) + 1
        level = verdict.level
        if level:
            if level > self.level:
                self.level = int(level)
                self.flagged_at = t
            if self.verdict is None or verdict.score > self.verdict.score:
                self.verdict = verdict

    def countries(self) -> list[tuple[str, int]]:
        """Countries by messages (by logins for an account that sent none), most first."""
        ccs = self.ccs if self.messages else self.auth_ccs
        return sorted((ccs or {}).items(), key=lambda kv: (-kv[1], kv[0]))


def _run(args: argparse.Namespace) -> int:
    from authabuse.cli._input import events_from_args
    from authabuse.cli._report import replayable_logs, write_report
    from authabuse.detector import Detector, _d_len
    from authabuse.parsers import ParseStats
    from authabuse.rules import Level, load_rules

    rules = load_rules(args.rules) if args.rules else None
    geo = _resolver(args.geo)
    min_level = Level.parse(args.min_level)
    state = Path(args.state) if args.state else None
    if state is not None and state.exists():
        detector = Detector.load(state, rules=rules, geo=geo)
    else:
        detector = Detector(rules=rules, geo=geo)
    stats = ParseStats()
    with replayable_logs(list(args.logs)) if args.report else nullcontext(args.logs) as logs:
        args.logs = logs
        events = events_from_args(args, stats)
        progress = _Progress(sys.stderr, stats) if sys.stderr.isatty() else None
        summaries = _scan(detector, events, progress)
        if state is not None:
            detector.save(state)
        flagged = [(a, s) for a, s in summaries.items() if s.level >= min_level]
        flagged.sort(key=lambda item: (item[1].flagged_at or item[1].first, item[0]))
        out = sys.stdout
        records = [_record(account, s, _d_len) for account, s in flagged]
        if args.json:
            for record in records:
                out.write(json.dumps(record) + "\n")
        else:
            _table(out, flagged, _d_len)
        out.flush()
        if args.report:
            write_report(args, records, geo, args.report)
    print(_footer(stats, detector, len(summaries), len(flagged)), file=sys.stderr)
    return 1 if flagged else 0


def _scan(detector: Any, events: Any, progress: _Progress | None) -> dict[str, _Summary]:
    """Feed every event to the detector; keep what the report needs per account."""
    from authabuse.detector import _d_add, _member
    from authabuse.events import Submission

    summaries: dict[str, _Summary] = {}
    process = detector.process
    n = 0
    for event in events:
        verdict = process(event)
        account = verdict.account
        if account is None:
            continue
        s = summaries.get(account)
        if s is None:
            s = summaries[account] = _Summary(event.time)
        s.add(event, verdict, isinstance(event, Submission), _d_add, _member)
        n += 1
        if progress is not None and not n & 0x3FFF:
            progress.tick()
    if progress is not None:
        progress.done()
    return summaries


def _resolver(paths: list[str]) -> Any:
    from authabuse.geo import resolver_from_paths

    return resolver_from_paths(paths)  # no paths: the embedded default data


def _record(account: str, s: _Summary, dlen: Any) -> dict[str, Any]:
    from authabuse.rules import Level

    v = s.verdict
    assert s.flagged_at is not None  # noqa: S101 - only flagged accounts are reported
    return {
        "account": account,
        "level": str(Level(s.level)),
        "score": float(v.score),
        "flagged_at": s.flagged_at.isoformat(),
        "reasons": [f.to_dict() for f in v.findings],
        "distinct_ips": dlen(s.ips),
        "countries": dict(s.countries()),
        "messages": s.messages,
        "first_seen": s.first.isoformat(),
        "last_seen": s.last.isoformat(),
    }


def _table(out: TextIO, flagged: list[tuple[str, _Summary]], dlen: Any) -> None:
    from authabuse.rules import Level

    if not flagged:
        out.write("no account reached the reporting level\n")
        return
    head = f"{'LEVEL':<10} {'SCORE':>5} {'FLAGGED AT':<25} {'IPS':>6} {'MSGS':>7} ACCOUNT"
    out.write(head + "\n")
    for account, s in flagged:
        v = s.verdict
        assert s.flagged_at is not None  # noqa: S101 - only flagged accounts are reported
        out.write(
            f"{Level(s.level)!s:<10} {v.score:>5g} {s.flagged_at.isoformat():<25} "
            f"{dlen(s.ips):>6} {s.messages:>7} {sanitize(account)}\n"
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
        f"{stats.lines} lines, {d.events} events, {accounts} accounts, {flagged} reported",
    ]
    skipped = {
        "malformed lines": stats.malformed,
        "unrecognized lines": stats.unrecognized,
        "too long lines": stats.too_long,
        "events out of order (kept)": d.reordered,
        "events too late (skipped)": d.too_late,
        "allowlisted events": d.allowlisted,
        "addresses the geo data cannot place": d.geo_unknown,
    }
    parts.extend(f"{v} {k}" for k, v in skipped.items() if v)
    return "scan: " + "; ".join(parts)


class _Progress:
    def __init__(self, stream: TextIO, stats: Any) -> None:
        self.stream = stream
        self.stats = stats
        self.start = time.monotonic()
        self.next = self.start + 1.0

    def tick(self) -> None:
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
