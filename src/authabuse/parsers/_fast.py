"""Trusted event constructors for the parsers' hot path (private).

The events' constructors validate every field (aware time, IP parsed, counts, account
length), which costs about a microsecond per event. The parsers build their events from
values that already satisfy those rules by construction: times from
:class:`~authabuse.parsers._timestamps.SyslogClock` (always aware), addresses from
:func:`~authabuse.events.parse_ip` (normalized), counts from digit-only regex groups,
account names checked against the same length limit here. So they fill the slots
directly, which is about twice as fast. ``tests/test_parsers.py`` checks that every event
built here equals the same event built through the public constructor.

If a field is added to an event class, importing this module fails loudly until the
constructors here are updated.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from datetime import datetime
from typing import Any

from authabuse.errors import InvalidEventError
from authabuse.events import AuthAttempt, Delivery, IPAddress, Submission

__all__ = ["MAX_ACCOUNT", "check_account", "new_auth", "new_delivery", "new_submission"]

MAX_ACCOUNT = 1024  # same limit as authabuse.events (longer names are refused as hostile)

_new = object.__new__


def _setters(cls: type, names: tuple[str, ...]) -> tuple[Any, ...]:
    have = {f.name for f in fields(cls)}
    if have != set(names):
        raise RuntimeError(  # pragma: no cover - only when events.py changes
            f"authabuse.parsers._fast is out of date for {cls.__name__}: "
            f"fields {sorted(have)} != {sorted(names)}"
        )
    for f in fields(cls):
        if f.default is MISSING and f.default_factory is MISSING and f.name not in names:
            raise RuntimeError(f"no value for required field {f.name}")  # pragma: no cover
    return tuple(cls.__dict__[name].__set__ for name in names)


_AUTH = _setters(
    AuthAttempt,
    (
        "time",
        "ip",
        "succeeded",
        "account",
        "attempts",
        "mechanism",
        "service",
        "server",
        "session",
    ),
)
_DELIVERY = _setters(
    Delivery, ("time", "queue_id", "recipient", "status", "relay", "dsn", "server")
)
_SUBMISSION = _setters(
    Submission,
    (
        "time",
        "ip",
        "account",
        "server",
        "queue_id",
        "sender",
        "recipient_count",
        "recipients",
        "size",
    ),
)


def check_account(account: str | None) -> str | None:
    """Return ``account`` unchanged, or raise :class:`LineError` if it is hostile-long."""
    if account is not None and len(account) > MAX_ACCOUNT:
        raise InvalidEventError(f"account name longer than {MAX_ACCOUNT} characters")
    return account


def new_auth(
    time: datetime,
    ip: IPAddress,
    succeeded: bool,
    account: str | None = None,
    attempts: int = 1,
    mechanism: str | None = None,
    service: str | None = None,
    server: str | None = None,
    session: str | None = None,
) -> AuthAttempt:
    """Build an :class:`AuthAttempt` from trusted values (same signature as the class)."""
    if account is not None and len(account) > MAX_ACCOUNT:
        raise InvalidEventError(f"account name longer than {MAX_ACCOUNT} characters")
    obj: AuthAttempt = _new(AuthAttempt)
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = _AUTH
    s0(obj, time)
    s1(obj, ip)
    s2(obj, succeeded)
    s3(obj, account)
    s4(obj, attempts)
    s5(obj, mechanism)
    s6(obj, service)
    s7(obj, server)
    s8(obj, session)
    return obj


def new_delivery(
    time: datetime,
    queue_id: str | None = None,
    recipient: str | None = None,
    status: str | None = None,
    relay: str | None = None,
    dsn: str | None = None,
    server: str | None = None,
) -> Delivery:
    """Build a :class:`Delivery` from trusted values (same signature as the class)."""
    obj: Delivery = _new(Delivery)
    s0, s1, s2, s3, s4, s5, s6 = _DELIVERY
    s0(obj, time)
    s1(obj, queue_id)
    s2(obj, recipient)
    s3(obj, status)
    s4(obj, relay)
    s5(obj, dsn)
    s6(obj, server)
    return obj


def new_submission(
    time: datetime,
    ip: IPAddress,
    account: str | None,
    server: str | None,
    queue_id: str | None,
    sender: str | None,
    recipient_count: int | None,
    recipients: tuple[str, ...],
    size: int | None,
) -> Submission:
    """Build a :class:`Submission` from trusted values (same signature as the class)."""
    if account is not None and len(account) > MAX_ACCOUNT:
        raise InvalidEventError(f"account name longer than {MAX_ACCOUNT} characters")
    obj: Submission = _new(Submission)
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = _SUBMISSION
    s0(obj, time)
    s1(obj, ip)
    s2(obj, account)
    s3(obj, server)
    s4(obj, queue_id)
    s5(obj, sender)
    s6(obj, recipient_count)
    s7(obj, recipients)
    s8(obj, size)
    return obj
