"""Trusted event constructors for the parsers' hot path (private).

The events' constructors validate every field (aware time, IP parsed, counts, account
length), which costs about three microseconds per event. The parsers build their events
from values that already satisfy those rules by construction: times from
:class:`~authabuse.parsers._timestamps.SyslogClock` (always aware), addresses from
:func:`~authabuse.events.parse_ip` or ``ip_or_bad`` (normalized), counts from digit-only
regex groups, account names checked against the same length limit here. So they fill
the slots directly.

How: each event class has a private *twin* with exactly the same ``__slots__`` (same
names, same order, so the same memory layout) but no frozen ``__setattr__``. The twin's
``__init__`` stores the fields with plain attribute stores, then turns the object into
the real event class by ``__class__`` assignment, which CPython allows between classes
of identical layout and checks at run time (it raises ``TypeError`` otherwise). The
result *is* an instance of the event class (``type(e) is Delivery``), equal to the same
event built through the public constructor (``tests/test_parsers.py`` checks this on
every event of the real corpus). That is about three times faster than calling each
slot descriptor's ``__set__``, and eight times faster than the validating constructor.

If a field is added to an event class, importing this module fails loudly until the
twins here are updated. ``_bulk.py`` builds its deliveries and logins (and ``Pending``
messages) inline the same way, without the call (``DeliveryTwin``, ``AuthTwin``): update
it with the twins; the tests comparing the fast path with the line path then show a slot
left unset.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from datetime import datetime
from typing import TYPE_CHECKING

from authabuse.errors import InvalidEventError
from authabuse.events import AuthAttempt, Delivery, IPAddress, Submission

__all__ = [
    "MAX_ACCOUNT",
    "AuthTwin",
    "DeliveryTwin",
    "check_account",
    "new_auth",
    "new_delivery",
    "new_submission",
]

MAX_ACCOUNT = 1024  # same limit as authabuse.events (longer names are refused as hostile)


def _check_twin(cls: type, twin: type) -> None:
    """Fail at import if ``twin`` no longer mirrors ``cls`` field for field."""
    names = tuple(f.name for f in fields(cls))
    if cls.__slots__ != names or twin.__slots__ != names:  # type: ignore[attr-defined]
        raise RuntimeError(  # pragma: no cover - only when events.py changes
            f"authabuse.parsers._fast is out of date for {cls.__name__}: "
            f"slots {cls.__slots__} != {twin.__slots__}"  # type: ignore[attr-defined]
        )
    for f in fields(cls):
        if f.default is MISSING and f.default_factory is MISSING and f.name not in names:
            raise RuntimeError(f"no value for required field {f.name}")  # pragma: no cover


class _AuthTwin:
    __slots__ = (  # noqa: RUF023  # the order is the event's memory layout
        "time",
        "ip",
        "succeeded",
        "account",
        "attempts",
        "mechanism",
        "service",
        "server",
        "session",
    )

    def __init__(
        self,
        time: datetime,
        ip: IPAddress,
        succeeded: bool,
        account: str | None = None,
        attempts: int = 1,
        mechanism: str | None = None,
        service: str | None = None,
        server: str | None = None,
        session: str | None = None,
    ) -> None:
        if account is not None and len(account) > MAX_ACCOUNT:
            raise InvalidEventError(f"account name longer than {MAX_ACCOUNT} characters")
        self.time = time
        self.ip = ip
        self.succeeded = succeeded
        self.account = account
        self.attempts = attempts
        self.mechanism = mechanism
        self.service = service
        self.server = server
        self.session = session
        # same layout, see the module docstring
        self.__class__ = AuthAttempt  # type: ignore[assignment]  # noqa: PLE0237


class _DeliveryTwin:
    __slots__ = (  # noqa: RUF023  # the order is the event's memory layout
        "time",
        "queue_id",
        "recipient",
        "status",
        "relay",
        "dsn",
        "server",
    )

    def __init__(
        self,
        time: datetime,
        queue_id: str | None = None,
        recipient: str | None = None,
        status: str | None = None,
        relay: str | None = None,
        dsn: str | None = None,
        server: str | None = None,
    ) -> None:
        self.time = time
        self.queue_id = queue_id
        self.recipient = recipient
        self.status = status
        self.relay = relay
        self.dsn = dsn
        self.server = server
        # same layout, see the module docstring
        self.__class__ = Delivery  # type: ignore[assignment]  # noqa: PLE0237


class _SubmissionTwin:
    __slots__ = (  # noqa: RUF023  # the order is the event's memory layout
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
        queue_id: str | None,
        sender: str | None,
        recipient_count: int | None,
        recipients: tuple[str, ...],
        size: int | None,
    ) -> None:
        if account is not None and len(account) > MAX_ACCOUNT:
            raise InvalidEventError(f"account name longer than {MAX_ACCOUNT} characters")
        self.time = time
        self.ip = ip
        self.account = account
        self.server = server
        self.queue_id = queue_id
        self.sender = sender
        self.recipient_count = recipient_count
        self.recipients = recipients
        self.size = size
        # same layout, see the module docstring
        self.__class__ = Submission  # type: ignore[assignment]  # noqa: PLE0237


_check_twin(AuthAttempt, _AuthTwin)
_check_twin(Delivery, _DeliveryTwin)
DeliveryTwin = _DeliveryTwin  # for _bulk.py's inlined constructors
AuthTwin = _AuthTwin
_check_twin(Submission, _SubmissionTwin)


def check_account(account: str | None) -> str | None:
    """Return ``account`` unchanged, or raise :class:`InvalidEventError` if hostile-long."""
    if account is not None and len(account) > MAX_ACCOUNT:
        raise InvalidEventError(f"account name longer than {MAX_ACCOUNT} characters")
    return account


if TYPE_CHECKING:

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

else:
    new_auth = _AuthTwin  # the twin's constructor returns the real event class
    new_delivery = _DeliveryTwin
    new_submission = _SubmissionTwin
