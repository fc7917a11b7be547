"""``authabuse watch``: follow live logs and alert the moment an account is flagged.

::

    authabuse watch [--format F] [--geo PATH]... [--year N] [--tz ZONE] [--rules FILE]
                    [--state FILE] [--snapshot-interval SECONDS] [--from-start]
                    [--min-level suspicious|abuse] [--realert SECONDS] [--json] LOG...

Each file is followed like ``tail -F`` (across rotation and truncation); ``-`` reads
standard input (``journalctl -f -o json | authabuse watch -``). An alert is written (and
flushed) when an account first reaches ``--min-level``, when it rises to a higher level,
and again when it is still flagged ``--realert`` seconds of log time after its last
alert. With ``--json`` each alert is one object::

    {"account", "level", "score", "time", "ip", "country",
     "reasons": [{"rule", "score", "detail"}], "log"}

``--control PATH`` opens a Unix socket (mode 0600) through which ``authabuse state
show|benign --control PATH`` reads and changes the running state (answered between two
lines, and while idle at least every ``--interval``): editing the ``--state`` file of a
running watch is lost at its next snapshot.

SIGTERM and SIGINT stop it (judging the messages still waiting for their queue id to
finish, then saving ``--state`` and the files' positions beside it, so a restart
continues at the next unread line); SIGHUP re-reads ``--rules`` and ``--geo``.
Exit status 0 after a signal or the end of standard input, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import signal
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, TextIO

from authabuse.cli._input import add_detection_arguments, add_input_arguments, seconds

__all__ = ["register"]

log = logging.getLogger("authabuse.watch")

_MAX_ALERTED = 200_000  # accounts whose last alert is remembered (oldest forgotten first)


def register(subparsers: Any) -> None:
    """Add the ``watch`` subcommand to the ``authabuse`` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "watch",
        help="follow live logs and alert as accounts are flagged",
        description=(
            "Follow mail logs as they grow (like tail -F, across rotation) and write an "
            "alert the moment an account reaches --min-level, with the rules that fired."
        ),
    )
    add_input_arguments(parser)
    add_detection_arguments(parser)
    parser.add_argument(
        "--state",
        metavar="FILE",
        help="detector state: loaded if the file exists, saved periodically and at exit, "
        "with each file's position (FILE.pos) so a restart goes on at the next line",
    )
    parser.add_argument(
        "--snapshot-interval",
        type=seconds(zero=True),
        default=300.0,
        metavar="SECONDS",
        help="save --state this often (default 300; 0: only at exit)",
    )
    parser.add_argument(
        "--from-start",
        action="store_true",
        help="read what the files already hold first (default: only what is appended, "
        "unless --state knows where it stopped)",
    )
    parser.add_argument(
        "--realert",
        type=seconds(zero=True),
        default=86400.0,
        metavar="SECONDS",
        help="alert again for an account still flagged this long (log time) after its "
        "last alert (default 86400)",
    )
    parser.add_argument(
        "--interval",
        type=seconds(zero=False),
        default=1.0,
        metavar="SECONDS",
        help="how often idle files are polled (default 1)",
    )
    parser.add_argument(
        "--control",
        metavar="PATH",
        help="Unix socket (mode 0600) on which `authabuse state show|benign --control PATH` "
        "reads and changes the running state (answered between lines and while idle)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per alert")
    parser.set_defaults(func=_run)


class _Alerts:
    """Decide which verdicts are alerts, and write them."""

    def __init__(self, out: TextIO, *, min_level: Any, realert: float, as_json: bool) -> None:
        self.out = out
        self.min_level = min_level
        self.realert = realert
        self.as_json = as_json
        self.last: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.sent = 0

    def consider(self, verdict: Any, source: str) -> None:
        if verdict.level < self.min_level or verdict.account is None:
            return
        account = verdict.account
        t = verdict.time.timestamp()
        last = self.last.get(account)
        if last is not None and verdict.level <= last[0] and t - last[1] < self.realert:
            return
        self.last[account] = (int(verdict.level), t)
        self.last.move_to_end(account)
        if len(self.last) > _MAX_ALERTED:
            self.last.popitem(last=False)
        self.sent += 1
        self.out.write(self._render(verdict, source) + "\n")
        self.out.flush()

    def _render(self, v: Any, source: str) -> str:
        from authabuse.cli._scan import sanitize

        reasons = [
            {"rule": f.rule, "score": float(f.score), "detail": f.detail} for f in v.findings
        ]
        if self.as_json:
            return json.dumps(
                {
                    "account": sanitize(v.account),
                    "level": str(v.level),
                    "score": float(v.score),
                    "time": v.time.isoformat(),
                    "ip": v.ip,
                    "country": v.country,
                    "reasons": [{**r, "detail": sanitize(r["detail"], 400)} for r in reasons],
                    "log": source,
                }
            )
        head = (
            f"{v.time.isoformat()} {str(v.level).upper()} {sanitize(v.account)} "
            f"score {v.score:g} from {v.ip or '-'} ({v.country or '??'})"
        )
        return "\n".join(
            [
                head,
                *(
                    f"    {r['rule']} (+{r['score']:g}): {sanitize(r['detail'], 400)}"
                    for r in reasons
                ),
            ]
        )


def _stdin_lines(stop: Any, interval: float, max_line: int, on_too_long: Any) -> Any:
    """Yield ``("-", n, line)`` from standard input as lines arrive, until EOF or ``stop()``.

    Lines are cut as a followed file's are (an over-long one is reported and dropped as it
    streams in); ``None`` is yielded after each idle wait.
    """
    from authabuse.parsers._follow import _Tail

    fd = sys.stdin.buffer.fileno()
    tail = _Tail("-")
    while not stop():
        ready, _, _ = select.select([fd], [], [], interval)
        if not ready:
            yield None  # idle: lets the caller save snapshots
            continue
        data = os.read(fd, 1 << 16)
        if not data:
            break
        yield from tail.cut(data, max_line, on_too_long)
    if tail.partial and not stop():  # a last line without its newline
        yield "-", tail.lineno + 1, bytes(tail.partial)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    parsers, max_line = _parsers(args)
    detector, state, positions = _detector(args)
    follower = _follower(args, parsers, positions, max_line)
    control = None
    if args.control:
        from authabuse.cli._control import ControlServer

        try:
            control = ControlServer(detector, args.control)
        except BaseException:
            if follower is not None:
                follower.close()
            raise
        print(f"authabuse watch: control socket at {args.control}", file=sys.stderr, flush=True)
    try:
        return _watch(args, parsers, max_line, detector, state, follower, control)
    finally:
        if control is not None:
            control.close()


def _watch(  # noqa: PLR0917 - the pieces _run built, in order
    args: argparse.Namespace,
    parsers: dict[str, Any],
    max_line: int,
    detector: Any,
    state: Path | None,
    follower: Any,
    control: Any,
) -> int:
    from authabuse.cli._scan import _discard_stdout
    from authabuse.cli._serve import _reload
    from authabuse.rules import Level

    alerts = _Alerts(
        sys.stdout, min_level=Level.parse(args.min_level), realert=args.realert, as_json=args.json
    )
    stopping: list[int] = []
    reloads: list[int] = []  # SIGHUP: reloaded between two lines, not inside one
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGHUP, lambda signum, _frame: reloads.append(signum))
    if follower is not None:  # where reading starts is fixed before saying so
        follower.start()
    print(f"authabuse watch: following {', '.join(args.logs)}", file=sys.stderr, flush=True)
    process = detector.process
    snapshots = state is not None and args.snapshot_interval > 0
    next_snapshot = time.monotonic() + args.snapshot_interval
    next_control = 0.0

    def housekeeping() -> None:
        """Between two lines, or while none comes: a reload asked for, a snapshot due."""
        nonlocal next_snapshot, next_control
        if reloads:
            reloads.clear()
            _reload(detector, args)
        if control is not None:
            now = time.monotonic()
            if now >= next_control:  # a select() per line would cost, 20 a second do not
                control.poll()
                next_control = now + 0.05
        if snapshots and time.monotonic() >= next_snapshot:
            _save(detector, state, follower)  # type: ignore[arg-type]  # set when snapshots
            next_snapshot = time.monotonic() + args.snapshot_interval

    stop = lambda: bool(stopping)  # noqa: E731 - read by the loops below
    if follower is not None:
        lines: Any = follower.follow(interval=args.interval, stop=stop, on_idle=housekeeping)
    else:
        lines = _stdin_lines(stop, args.interval, max_line, lambda _p, n: parsers["-"].too_long(n))
    try:
        for item in lines:
            if item is not None:  # standard input gives None when idle
                path, lineno, line = item
                for event in parsers[path].feed(line, lineno):
                    alerts.consider(process(event), path)
            housekeeping()
    except BrokenPipeError:
        # The reader of the alerts went away (`| head -1`, a consumer that died): stop as
        # on SIGTERM, and still save the state below (it was lost with a silent exit 0).
        _discard_stdout()
        print("authabuse watch: standard output closed, stopping", file=sys.stderr)
    # Messages still waiting for their queue id to finish are judged with what was read
    # (the saved positions are past their lines: a restart would never see them again).
    for path, parser in parsers.items():
        for event in parser.flush():
            alerts.consider(process(event), path)
    if state is not None:
        _save(detector, state, follower)
    if follower is not None:
        follower.close()
    print(_footer(parsers, detector, alerts.sent), file=sys.stderr)
    return 0


def _footer(parsers: dict[str, Any], detector: Any, sent: int) -> str:
    stats = [p.stats for p in parsers.values()]
    skipped = sum(s.malformed + s.unrecognized + s.too_long for s in stats)
    return (
        f"watch: {sum(s.lines for s in stats)} lines, "
        f"{sum(sum(s.events.values()) for s in stats)} events "
        f"({detector.stats.events} judged), {sent} alerts; "
        f"{skipped} line{'' if skipped == 1 else 's'} skipped as "
        "malformed, unrecognized or too long"
    )


def _parsers(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Check the logs named; return a parser per log, and the longest line read."""
    from authabuse.errors import ConfigurationError
    from authabuse.parsers import DEFAULT_MAX_LINE, LogParser

    if "-" in args.logs and len(args.logs) > 1:
        raise ConfigurationError("watch reads standard input ('-') on its own, not with files")
    if len(set(args.logs)) != len(args.logs):
        raise ConfigurationError("a log is named twice")
    done = [p for p in args.logs if p.endswith(".gz")]
    if done:
        raise ConfigurationError(
            f"{done[0]}: a compressed log does not grow; read it with "
            "'authabuse scan --state FILE' first, then watch the live log with the same --state"
        )
    max_line = args.max_line if args.max_line is not None else DEFAULT_MAX_LINE
    parsers = {
        path: LogParser(args.format, year=args.year, tz=args.tz, max_line=max_line, source=path)
        for path in args.logs
    }
    return parsers, max_line


def _follower(
    args: argparse.Namespace,
    parsers: dict[str, Any],
    positions: dict[str, tuple[int, int]],
    max_line: int,
) -> Any:
    """Return the follower of the files (None when standard input is read)."""
    if args.logs == ["-"]:
        return None
    from authabuse.parsers import Follower

    return Follower(
        args.logs,
        from_start=args.from_start,
        positions=positions,
        max_line=max_line,
        on_too_long=lambda path, lineno: parsers[path].too_long(lineno),
    )


def _detector(args: argparse.Namespace) -> tuple[Any, Path | None, dict[str, tuple[int, int]]]:
    """Build (or load from ``--state``) the detector; the files' saved positions."""
    from authabuse.cli._input import check_writable
    from authabuse.detector import Detector
    from authabuse.geo import resolver_from_paths
    from authabuse.rules import load_rules

    rules = load_rules(args.rules) if args.rules else None
    geo = resolver_from_paths(args.geo)
    state = check_writable(args.state, "state file") if args.state else None
    if state is not None and state.exists():
        detector = Detector.load(state, rules=rules, geo=geo)
        pos = Path(f"{state}.pos")
        return detector, state, _read_positions(pos) if pos.exists() else {}
    return Detector(rules=rules, geo=geo), state, {}


def _save(detector: Any, state: Path, follower: Any) -> None:
    """Save the state, then the files' positions it goes with (``FILE.pos``)."""
    from authabuse.errors import ConfigurationError

    try:
        detector.save(state)
        if follower is not None:
            positions_file = Path(f"{state}.pos")
            tmp = positions_file.with_name(positions_file.name + ".tmp")
            tmp.write_text(json.dumps({p: list(v) for p, v in follower.positions().items()}))
            os.replace(tmp, positions_file)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write state file {state}: {exc.strerror or exc}"
        ) from None


def _read_positions(path: Path) -> dict[str, tuple[int, int]]:
    """Read FILE.pos; a damaged one is ignored (files then start at their end) and logged."""
    try:
        data = json.loads(path.read_text())
        return {str(p): (int(v[0]), int(v[1])) for p, v in data.items()}
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        log.warning("ignoring unreadable positions file %s: %s", path, exc)
        return {}
