"""State and helpers shared by the per-format parsers (private)."""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from socket import AF_INET, AF_INET6, inet_pton
from typing import Protocol

from authabuse.errors import InvalidEventError
from authabuse.events import Event, IPAddress, Submission, parse_ip

from ._fast import MAX_ACCOUNT
from ._timestamps import SyslogClock

__all__ = [
    "Context",
    "Handler",
    "LineError",
    "Pending",
    "Session",
    "ip_or_bad",
    "redact",
]

# Dovecot's auth_verbose_passwords puts the tried password into the log; never keep it.
_PASSWORD = re.compile(r"\((?:SHA1 of )?given password: [^)]*\)|given password: .*$", re.I)


def redact(line: str) -> str:
    """Remove a password Dovecot may have logged (``(given password: ...)``) from ``line``.

    >>> redact("sql: Password mismatch (given password: hunter2) tail")
    'sql: Password mismatch (given password: <redacted>) tail'
    """
    return _PASSWORD.sub("(given password: <redacted>)", line)


class LineError(Exception):
    """A line of a known shape that cannot be parsed; ``reason`` says why (private)."""

    def __init__(self, reason: str, *, invalid_ip: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.invalid_ip = invalid_ip


_CHECK_EVERY = timedelta(seconds=1)  # log time between two looks for expired joins

_new = object.__new__
_from_bytes = int.from_bytes  # big-endian by default

_IP_CACHE: dict[str, IPAddress] = {}  # addresses inet_pton does not read (see ip_or_bad)
_IP_CACHE_MAX = 4096


def last_bracketed(text: str, field: str) -> str | None:
    """Return what the last ``[...]`` of ``text`` holds; ``None`` when there is none.

    Exim's ``H=`` and Sendmail's ``relay=`` put the peer address last, after names a
    client chose (``H=(helo) [ip]``, ``relay=name [ip] (may be forged)``); an opening
    bracket never closed is a truncated line.

    >>> last_bracketed("mx.example (helo [1.2.3.4]) [192.0.2.7]:2525", "H=")
    '192.0.2.7'
    >>> last_bracketed("[192.0.2.", "relay=")
    Traceback (most recent call last):
    ...
    authabuse.parsers._common.LineError: truncated [address] in relay=
    """
    start = text.rfind("[")
    if start < 0:
        return None
    end = text.find("]", start)
    if end < 0:
        raise LineError(f"truncated [address] in {field}")
    return text[start + 1 : end]


def ip_or_bad(text: str) -> IPAddress:
    """Parse an address like :func:`~authabuse.events.parse_ip`, fast, or raise :class:`LineError`.

    Plain dotted quads and IPv6 addresses go through the C library's ``inet_pton``
    (about five times faster than :mod:`ipaddress`'s parser), and the integer it gives
    fills the address object's slots directly, skipping the constructors' checks
    (``inet_pton`` made them): about 0.25 us an address. That is about what a cache
    lookup plus an insertion costs on the miss a botnet's addresses mostly are, and
    cached address objects live long enough to wake the garbage collector (it then
    walks them all, again and again), so these are not cached. Anything else
    (brackets, Sendmail's ``IPv6:``, zone ids) is left to ``parse_ip`` (about 2 us),
    whose answers are cached. The result is the same object type and value either way.

    >>> ip_or_bad("::ffff:192.0.2.1"), ip_or_bad("[IPv6:2001:DB8::1]")
    (IPv4Address('192.0.2.1'), IPv6Address('2001:db8::1'))
    >>> ip_or_bad("2001:db8::ffff:1"), ip_or_bad("10.0.0.1")
    (IPv6Address('2001:db8::ffff:1'), IPv4Address('10.0.0.1'))
    """
    ip: IPAddress
    try:
        if ":" in text:
            value = _from_bytes(inet_pton(AF_INET6, text))
            if value >> 32 == 0xFFFF:  # IPv4-mapped: the IPv4 address it carries
                ip = _new(IPv4Address)
                ip._ip = value & 0xFFFFFFFF  # type: ignore[attr-defined]  # its slot
            else:
                ip = _new(IPv6Address)
                ip._ip = value  # type: ignore[attr-defined]  # its slots
                ip._scope_id = None  # type: ignore[attr-defined]
        else:
            ip = _new(IPv4Address)
            ip._ip = _from_bytes(inet_pton(AF_INET, text))  # type: ignore[attr-defined]  # its slot
    except (OSError, ValueError):
        cached = _IP_CACHE.get(text)
        if cached is not None:
            return cached
        try:
            ip = parse_ip(text)
        except InvalidEventError:
            raise LineError(f"invalid IP address {text[:60]!r}", invalid_ip=True) from None
        if len(_IP_CACHE) >= _IP_CACHE_MAX:
            _IP_CACHE.clear()
        _IP_CACHE[text] = ip
    return ip


class Handler(Protocol):
    """What every per-format parser provides."""

    def handle(
        self,
        when: datetime,
        host: str | None,
        prog: str,
        pid: str | None,
        msg: str,
        out: list[Event],
    ) -> bool:
        """Parse one line; append events to ``out``; return False if it was irrelevant."""


class Pending:
    """A message whose submission event waits for the rest of its log lines.

    It has the slots of :class:`~authabuse.events.Submission`, in the same order (the
    same memory layout), and :meth:`event` turns it into that submission in place (see
    ``_fast.py``): one object per message instead of two. While it waits,
    ``recipients`` is a list and ``recipient_count`` the count the log announced (Postfix
    ``nrcpt``, Sendmail ``nrcpts``), ``None`` until then. An account name longer than
    the events allow is refused here, before it enters any join.
    """

    __slots__ = (  # noqa: RUF023  # the order is Submission's memory layout
        "time",
        "ip",
        "account",
        "server",
        "queue_id",
        "sender",
        "recipient_count",
        "recipients",
        "size",
    )

    def __init__(
        self,
        time: datetime,
        ip: IPAddress,
        account: str | None,
        server: str | None,
        queue_id: str,
    ) -> None:
        if account is not None and len(account) > MAX_ACCOUNT:
            raise InvalidEventError(f"account name longer than {MAX_ACCOUNT} characters")
        self.time = time
        self.ip = ip
        self.account = account
        self.server = server
        self.queue_id = queue_id
        self.sender: str | None = None
        self.recipient_count: int | None = None
        self.recipients: list[str] = []
        self.size: int | None = None

    def add_rcpt(self, rcpt: str, limit: int) -> bool:
        """Record one recipient; return True when every expected recipient was seen."""
        rcpts = self.recipients
        if rcpt not in rcpts and len(rcpts) < limit:
            rcpts.append(rcpt)
        return self.recipient_count is not None and len(rcpts) >= self.recipient_count

    def event(self) -> Submission:
        """Become the submission event, with what is known now (call it once, when done)."""
        rcpts = self.recipients
        if self.recipient_count is None:
            self.recipient_count = len(rcpts) or None
        self.recipients = tuple(rcpts)  # type: ignore[assignment]  # final: the event's tuple
        self.__class__ = Submission  # type: ignore[assignment]  # same layout
        return self  # type: ignore[return-value]  # it is a Submission now


if tuple(f.name for f in fields(Submission)) != Pending.__slots__:  # pragma: no cover
    raise RuntimeError("authabuse.parsers._common.Pending no longer mirrors Submission")


class Session:
    """A Sendmail process's last successful login, waiting for its message."""

    __slots__ = ("account", "ip", "time")

    def __init__(self) -> None:
        self.account: str | None = None
        self.ip: IPAddress | None = None
        self.time: datetime | None = None


class Context:
    """Join state for one parser: pending messages and SMTP sessions, both bounded.

    ``pending`` maps ``(server, queue id)`` to a :class:`Pending` message; entries older
    than ``join_timeout`` (log time) or beyond ``max_pending`` are emitted as they are and
    counted as expired. Per-process session state, each table bounded by ``max_sessions``
    (oldest dropped): ``sessions`` (Sendmail logins by ``(server, pid)``), ``authed`` and
    ``failed`` (Postfix smtpd: the account whose login was reported, the failures
    reported), ``auth_failures`` (Dovecot: failures the auth process reported, by session
    id).
    """

    __slots__ = (
        "auth_failures",
        "authed",
        "check_at",
        "clock",
        "expired",
        "failed",
        "join_timeout",
        "max_pending",
        "max_rcpts",
        "max_sessions",
        "now",
        "pending",
        "sessions",
    )

    def __init__(
        self,
        *,
        join_timeout: float,
        max_pending: int,
        max_sessions: int,
        clock: SyslogClock,
        max_rcpts: int = 1000,
    ) -> None:
        self.join_timeout = timedelta(seconds=join_timeout)
        self.max_pending = max_pending
        self.max_sessions = max_sessions
        self.max_rcpts = max_rcpts
        self.pending: dict[tuple[str | None, str], Pending] = {}
        self.sessions: dict[tuple[str | None, str], Session] = {}
        # Postfix smtpd sessions: the account whose login was reported, failures reported
        self.authed: dict[tuple[str | None, str], str] = {}
        self.failed: dict[tuple[str | None, str], int] = {}
        # Dovecot: failures its auth process reported, per session id
        self.auth_failures: dict[str, int] = {}
        self.now: datetime | None = None
        self.check_at: datetime | None = None  # next log time at which joins are expired
        self.expired = 0
        self.clock = clock

    def tick(self, when: datetime, out: list[Event]) -> None:
        """Log time is now ``when`` (a freshly parsed stamp): expire joins once per second.

        Called for every stamp the clock parses (a stamp found in the clock's cache was
        already seen, so it cannot be later than the next check point): the check depends
        on log time only, never on how the input was cut into lines or blocks.
        """
        self.now = when
        check = self.check_at
        if check is None or when >= check:
            first = self.expire(out)
            # Nothing can expire before the oldest waiting message reaches the timeout
            # (looking for it costs more than it seems: a dict whose front entries were
            # deleted is walked from its start).
            soonest = when + _CHECK_EVERY
            if first is not None and first + self.join_timeout > soonest:
                soonest = first + self.join_timeout
            self.check_at = soonest

    def add_pending(self, key: tuple[str | None, str], msg: Pending, out: list[Event]) -> None:
        """Start waiting for ``msg``; emit (as expired) anything beyond the bounds."""
        pending = self.pending
        old = pending.pop(key, None)
        if old is not None:  # queue id reused before completion: emit what we had
            self.expired += 1
            out.append(old.event())
        pending[key] = msg
        if len(pending) > self.max_pending:
            oldest = next(iter(pending))
            self.expired += 1
            out.append(pending.pop(oldest).event())

    def session(self, key: tuple[str | None, str]) -> Session:
        """Return the state of session ``key``, creating it (bounded, oldest dropped)."""
        sessions = self.sessions
        state = sessions.get(key)
        if state is None:
            state = Session()
            sessions[key] = state
            if len(sessions) > self.max_sessions:
                del sessions[next(iter(sessions))]
        return state

    def expire(self, out: list[Event]) -> datetime | None:
        """Emit messages that waited longer than ``join_timeout`` behind the newest line.

        Messages are looked at in arrival order, up to the first one still in time;
        returns that one's time (``None`` if none waits).
        """
        now = self.now
        pending = self.pending
        if now is None or not pending:
            return None
        cutoff = now - self.join_timeout
        while pending:
            key = next(iter(pending))
            msg = pending[key]
            if msg.time >= cutoff:
                return msg.time
            del pending[key]
            self.expired += 1
            out.append(msg.event())
        return None

    def flush(self, out: list[Event]) -> int:
        """Emit every message still waiting; return how many there were."""
        n = len(self.pending)
        out.extend(msg.event() for msg in self.pending.values())
        self.pending.clear()
        self.sessions.clear()
        self.authed.clear()
        self.failed.clear()
        self.auth_failures.clear()
        return n
