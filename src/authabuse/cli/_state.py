"""``authabuse state``: look at what the detector knows about accounts; mark alerts benign.

::

    authabuse state show   (--state FILE | --store URL | --control PATH) [--flagged]
                           [--json] [ACCOUNT ...]
    authabuse state benign (--state FILE | --store URL | --control PATH) [--json] ACCOUNT...

Where the state is:

* ``--state FILE``: a file written by ``authabuse scan|watch|serve --state``. ``benign``
  saves it again (atomically). Not the file of a running ``watch`` or ``serve``: it
  overwrites the file at its next snapshot; ask it through its ``--control`` socket.
* ``--store redis://...`` (with ``--store-prefix`` as the servers use): the state the
  servers share; a change is live at once for every server on that Redis.
* ``--control PATH``: the control socket of a running ``serve`` or ``watch``
  (``--control PATH``): the change is live at once, and in its next snapshot.

``show`` prints one line per account (``--json``: one object, as
:meth:`AccountInfo.to_dict() <authabuse.AccountInfo.to_dict>`); ``--flagged`` adds every
account flagged in its current long window. ``benign`` runs :meth:`Detector.mark_benign
<authabuse.Detector.mark_benign>`: the account's current networks, countries and volume
join its baseline and its flag is cleared. An account the detector keeps nothing about
is reported as unknown and left alone: there is nothing to learn.

Exit status: 0 when every account named was found (and, for ``benign``, marked), 1
when some were unknown, 2 on a usage error or a state that cannot be read or written.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any

from authabuse.cli._input import seconds

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``state`` subcommand (``state show``, ``state benign``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "state",
        help="show what the detector knows about accounts; mark alerts benign",
        description="Read or change a detector's state: a --state file, a shared Redis "
        "store, or a running serve/watch through its --control socket.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    show = verbs.add_parser(
        "show",
        help="print accounts' level, baseline and learned peaks",
        description="Print, per account, its level (and when it was flagged), first and "
        "last seen, usual countries and networks, networks on probation, main addresses, "
        "learned daily peaks, and whether it is kept quiet (packed).",
    )
    show.add_argument("accounts", nargs="*", metavar="ACCOUNT")
    show.add_argument(
        "--flagged", action="store_true", help="every account flagged in its current long window"
    )
    benign = verbs.add_parser(
        "benign",
        help="accept accounts' current activity as normal (their baseline learns it)",
        description="Mark accounts benign: their current networks, countries and volume "
        "join their baseline and their flag is cleared, so a confirmed false alarm does "
        "not come back.",
    )
    benign.add_argument("accounts", nargs="+", metavar="ACCOUNT")
    for sub in (show, benign):
        where = sub.add_mutually_exclusive_group(required=True)
        where.add_argument("--state", metavar="FILE", help="a detector state file")
        where.add_argument(
            "--store",
            metavar="redis://HOST:PORT/DB",
            help="the Redis the servers share (redis://, rediss://, unix:///path.sock?db=N)",
        )
        where.add_argument(
            "--control", metavar="PATH", help="the control socket of a running serve or watch"
        )
        sub.add_argument(
            "--store-prefix",
            default="authabuse:",
            metavar="PREFIX",
            help="Redis key prefix, as the servers use (default authabuse:)",
        )
        sub.add_argument(
            "--store-timeout",
            type=seconds(zero=False),
            default=5.0,
            metavar="SECONDS",
            help="bound on each Redis call or control answer (default 5)",
        )
        sub.add_argument(
            "--rules",
            metavar="FILE",
            help="the rules the state was written with (checked against its windows)",
        )
        sub.add_argument("--json", action="store_true", help="one JSON object per account")
        sub.set_defaults(func=_run)


class _Local:
    """Commands answered in this process, on a detector loaded from a file or a store."""

    def __init__(self, args: argparse.Namespace) -> None:
        from authabuse.cli._control import Control
        from authabuse.detector import Detector, DetectorConfig
        from authabuse.errors import ConfigurationError
        from authabuse.rules import load_rules

        rules = load_rules(args.rules) if args.rules else None
        self.store: Any = None
        self.path = None
        self.changed = False
        if args.state:
            from authabuse.cli._input import check_writable

            if args.verb == "benign":
                self.path = check_writable(args.state, "state file")
            if not _exists(args.state):
                raise ConfigurationError(f"no state file {args.state}")
            # No geo data: reading and marking never place an address.
            detector = Detector.load(args.state, rules=rules, geo=None)
        else:
            if not args.store.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigurationError(f"--store must be a redis:// URL, not {args.store!r}")
            from authabuse.redis_store import RedisStore

            # As `authabuse serve` builds it: two long windows of history.
            self.store = RedisStore(
                args.store,
                prefix=args.store_prefix,
                retention=2 * DetectorConfig().long_window,
                socket_timeout=args.store_timeout,
            )
            try:
                self.store._r.ping()
            except self.store._errors() as exc:
                self.store.close()
                raise ConfigurationError(f"cannot reach Redis at {args.store}: {exc}") from None
            detector = Detector(rules=rules, geo=None, store=self.store)
        self.detector = detector
        self.control = Control(detector)

    def ask(self, command: str) -> dict[str, Any]:
        from authabuse.errors import ConfigurationError

        store = self.store
        errors = 0 if store is None else store.status["errors"]
        try:
            answer: dict[str, Any] = self.control.run(command)  # names as given, even non-UTF-8
        except Exception as exc:
            if store is not None and isinstance(exc, store._errors()):
                raise ConfigurationError(f"Redis failed: {exc}") from None
            raise
        if store is not None and store.status["errors"] > errors:
            # The store answered from its local fallback: nothing said is Redis's.
            raise ConfigurationError(
                "Redis failed during the command (see the log above): its answer is not "
                "the shared state; nothing more was done"
            )
        if command.startswith("benign ") and answer.get("ok"):
            self.changed = True
        return answer

    def close(self) -> None:
        from authabuse.errors import ConfigurationError

        if self.path is not None and self.changed:
            try:
                self.detector.save(self.path)  # atomic: temporary file, fsync, rename
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot write state file {self.path}: {exc.strerror or exc}"
                ) from None
        if self.store is not None:
            self.store.close()


class _Remote:
    """Commands sent to a running ``serve`` or ``watch`` through its control socket."""

    def __init__(self, args: argparse.Namespace) -> None:
        from authabuse.errors import ConfigurationError

        self.path = args.control
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(args.store_timeout)
        try:
            self.sock.connect(args.control)
        except OSError as exc:
            self.sock.close()
            raise ConfigurationError(
                f"cannot connect to control socket {args.control}: {exc.strerror or exc} "
                "(is `authabuse serve|watch --control` running?)"
            ) from None
        self.reader = self.sock.makefile("rb")

    def ask(self, command: str) -> dict[str, Any]:
        from authabuse.cli._control import MAX_LINE
        from authabuse.errors import ConfigurationError

        data = command.encode("utf-8", "surrogateescape")  # (the server refuses non-UTF-8)
        if len(data) > MAX_LINE:
            return {"ok": False, "error": f"command too long (max {MAX_LINE} bytes)"}
        try:
            self.sock.sendall(data + b"\n")
            line = self.reader.readline(1 << 26)
        except OSError as exc:
            raise ConfigurationError(
                f"control socket {self.path}: {exc.strerror or exc or 'timed out'}"
            ) from None
        if not line.endswith(b"\n"):
            raise ConfigurationError(f"control socket {self.path} closed without an answer")
        try:
            answer = json.loads(line)
        except ValueError:
            raise ConfigurationError(f"control socket {self.path} answered garbage") from None
        if not isinstance(answer, dict):
            raise ConfigurationError(f"control socket {self.path} answered garbage")
        return answer

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def _exists(path: str) -> bool:
    from pathlib import Path

    return Path(path).exists()


def _run(args: argparse.Namespace) -> int:
    from authabuse.errors import ConfigurationError

    bad = [a for a in args.accounts if not a.strip() or "\n" in a or "\r" in a]
    if bad:
        raise ConfigurationError(f"not an account name: {bad[0]!r}")
    backend: Any = _Remote(args) if args.control else _Local(args)
    try:
        code = _show(args, backend) if args.verb == "show" else _benign(args, backend)
    finally:
        backend.close()
    return code


def _show(args: argparse.Namespace, backend: Any) -> int:
    from authabuse.errors import ConfigurationError

    out = sys.stdout
    missing = 0
    shown: set[str] = set()
    infos: list[tuple[str, dict[str, Any] | None]] = []
    for account in args.accounts:
        answer = backend.ask(f"show {account}")
        if not answer.get("ok"):
            raise ConfigurationError(str(answer.get("error", "refused")))
        infos.append((account, answer.get("info")))
        shown.add(account)
    truncated = False
    if args.flagged:
        answer = backend.ask("flagged")
        if not answer.get("ok"):
            raise ConfigurationError(str(answer.get("error", "refused")))
        truncated = bool(answer.get("truncated"))
        infos += [(i["account"], i) for i in answer["accounts"] if i["account"] not in shown]
    for account, info in infos:
        if info is None:
            missing += 1
        out.write(_show_line(account, info, as_json=args.json) + "\n")
    if truncated:
        print("state: more accounts are flagged than listed", file=sys.stderr)
    if args.flagged and not infos and not args.json:
        out.write("no account is flagged\n")
    return 1 if missing else 0


def _benign(args: argparse.Namespace, backend: Any) -> int:
    out = sys.stdout
    failed = 0
    for account in args.accounts:
        answer = backend.ask(f"benign {account}")
        if not answer.get("ok"):
            failed += 1
        out.write(_benign_line(account, answer, as_json=args.json) + "\n")
        out.flush()
    if args.state:
        _note_snapshots(args.state)
    return 1 if failed else 0


def _note_snapshots(path: str) -> None:
    print(
        f"state: note: a running `authabuse watch|serve --state {path}` overwrites this file "
        "at its next snapshot; change its state through its --control socket instead",
        file=sys.stderr,
    )


def _show_line(account: str, info: dict[str, Any] | None, *, as_json: bool) -> str:
    from authabuse.cli._scan import sanitize

    if as_json:
        if info is None:
            return json.dumps({"account": account, "known": False})
        return json.dumps({**info, "known": True})
    name = sanitize(account)
    if info is None:
        return f"{name}: unknown (the detector keeps nothing about it)"
    level = str(info["level"])
    if info.get("flagged_at"):
        level += f" since {info['flagged_at']}"
    parts = [
        f"{name}: {level}",
        f"seen {info['first_seen']} .. {info['last_seen']}",
        f"countries {_list(info['countries'])}",
        f"networks {_list(info['networks'])}",
    ]
    if info.get("learning"):
        parts.append(f"learning {_list(info['learning'])}")
    parts.append(f"addresses {_list(info['known_addresses'])}")
    parts.append(f"peaks {info['peak_mails']} mails, {info['peak_ips']} addresses a day")
    if info.get("quiet"):
        parts.append("quiet")
    return "; ".join(parts)


def _benign_line(account: str, answer: dict[str, Any], *, as_json: bool) -> str:
    from authabuse.cli._scan import sanitize

    if as_json:
        return json.dumps({"account": account, **answer})
    name = sanitize(account)
    if not answer.get("ok"):
        return f"{name}: not marked: {sanitize(str(answer.get('error', 'refused')), 400)}"
    before, after = answer["before"], answer.get("after") or answer["before"]
    was = str(before["level"])
    if before.get("flagged_at"):
        was += f" since {before['flagged_at']}"
    learned = list(after["networks"] + after["countries"])
    new = [k for k in learned if k not in before["networks"] + before["countries"]]
    return (
        f"{name}: marked benign (was {was}); baseline {len(after['networks'])} networks, "
        f"{len(after['countries'])} countries"
        + (f" (learned {_list(new)})" if new else " (nothing new to learn)")
        + f"; peaks {after['peak_mails']} mails, {after['peak_ips']} addresses a day"
    )


def _list(items: list[Any], limit: int = 8) -> str:
    from authabuse.cli._scan import sanitize

    if not items:
        return "-"
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ",".join(sanitize(str(i), 60) for i in items[:limit]) + more
