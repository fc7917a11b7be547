"""Event types: what happened, in a form every part of authabuse shares.

Three kinds of event flow from the sources (log parsers, policy servers, API calls) into
the detector:

* :class:`AuthAttempt`: a client tried to authenticate (SMTP AUTH, IMAP/POP3 login).
* :class:`Submission`: an authenticated client handed over one message.
* :class:`Delivery`: the outcome of delivering one recipient of a queued message.

Events are frozen, slotted, keyword-only dataclasses. Their times are timezone-aware and
their IP addresses are :mod:`ipaddress` objects, validated once when the event is built:
pass :func:`parse_ip`'s result (a string is parsed too, for untyped callers); an
IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) becomes the IPv4 address, and an IPv6
zone id (``fe80::1%eth0``) is dropped.

Each event serializes to one JSON object and back, losslessly:

>>> from datetime import datetime, timezone
>>> e = AuthAttempt(time=datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc),
...                 ip="::ffff:198.51.100.7", account="alice@example.jp", succeeded=False,
...                 mechanism="LOGIN", service="smtp")
>>> e.ip
IPv4Address('198.51.100.7')
>>> print(e.to_json())  # doctest: +NORMALIZE_WHITESPACE
{"type": "auth", "time": "2024-05-01T10:00:00+00:00", "account": "alice@example.jp",
 "ip": "198.51.100.7", "succeeded": false, "mechanism": "LOGIN", "service": "smtp"}
>>> event_from_json(e.to_json()) == e
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, ClassVar, TypeAlias

from authabuse.errors import InvalidEventError

__all__ = [
    "AuthAttempt",
    "Delivery",
    "Event",
    "IPAddress",
    "Submission",
    "event_from_dict",
    "event_from_json",
    "parse_ip",
]

IPAddress: TypeAlias = IPv4Address | IPv6Address
"""An IPv4 or IPv6 address object from :mod:`ipaddress`."""

_MAX_ACCOUNT = 1024  # longest account name kept verbatim; longer is rejected as hostile

# Event times must lie in [_EARLIEST, _LATEST): the detector counts seconds since the
# Unix epoch (0 means "never"), and the parsers and windows add hours and days to a time,
# which datetime cannot do a day before its year 9999 ends.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)


@lru_cache(maxsize=65536)
def parse_ip(text: str) -> IPAddress:
    """Parse an address as found in logs and protocols, normalized for counting.

    Accepts optional surrounding brackets, Sendmail's ``IPv6:`` prefix and an IPv6 zone
    id (dropped); an IPv4-mapped IPv6 address becomes IPv4. Raises
    :class:`~authabuse.errors.InvalidEventError` (a :class:`ValueError`) otherwise.

    >>> parse_ip("::ffff:203.0.113.9")
    IPv4Address('203.0.113.9')
    >>> parse_ip("[IPv6:2001:DB8::1]")
    IPv6Address('2001:db8::1')
    >>> parse_ip("fe80::1%eth0")
    IPv6Address('fe80::1')
    >>> parse_ip("unknown")
    Traceback (most recent call last):
    ...
    authabuse.errors.InvalidEventError: not an IP address: 'unknown'
    """
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    if s[:5].lower() == "ipv6:":
        s = s[5:]
    if "%" in s:
        s = s.split("%", 1)[0]
    try:
        addr = ip_address(s)
    except ValueError:
        raise InvalidEventError(f"not an IP address: {text[:80]!r}") from None
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _check_ip(value: object) -> IPAddress:
    if isinstance(value, IPv4Address):
        return value
    if isinstance(value, IPv6Address):
        return value.ipv4_mapped if value.ipv4_mapped is not None else value
    if isinstance(value, str):
        return parse_ip(value)
    raise InvalidEventError(f"ip must be an IP address or string, not {type(value).__name__}")


def _check_time(value: object) -> None:
    if not isinstance(value, datetime):
        raise InvalidEventError(f"time must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEventError(f"time must be timezone-aware, got naive {value.isoformat()}")
    if not _EARLIEST <= value < _LATEST:
        raise InvalidEventError(f"time {value.isoformat()} is outside 1970-01-01..9999-12-29")


def _check_account(value: object, *, required: bool) -> None:
    if value is None:
        if required:
            raise InvalidEventError("account is required")
        return
    if not isinstance(value, str):
        raise InvalidEventError(f"account must be a string, not {type(value).__name__}")
    if len(value) > _MAX_ACCOUNT:
        raise InvalidEventError(f"account name longer than {_MAX_ACCOUNT} characters")
    if not value.strip():
        # every empty login would otherwise count as one account ("no account" is None)
        raise InvalidEventError("account name is empty (None means no account)")


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEventError(f"{name} must be an integer, not {type(value).__name__}")
    if value < minimum:
        raise InvalidEventError(f"{name} must be >= {minimum}, got {value}")


def _dump(obj: Mapping[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """Drop ``None`` values except those named in ``keep``; stringify time and ip."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if value is None and key not in keep:
            continue
        if isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, IPv4Address | IPv6Address):
            out[key] = str(value)
        elif isinstance(value, tuple):
            out[key] = list(value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthAttempt:
    """A client tried to authenticate; ``succeeded`` tells how it went.

    ``account`` is ``None`` when the log does not name the user (Postfix before 3.9
    logs failures without ``sasl_username``). ``attempts`` counts the attempts this one
    event stands for: Dovecot logs ``auth failed, 3 attempts`` on one line.

    >>> from datetime import datetime, timezone
    >>> a = AuthAttempt(time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    ...                 ip="2001:db8::5", account="bob", succeeded=True, service="imap")
    >>> a.to_dict()["type"], a.succeeded
    ('auth', True)
    """

    type: ClassVar[str] = "auth"

    time: datetime
    ip: IPAddress
    succeeded: bool
    account: str | None = None
    attempts: int = 1
    mechanism: str | None = None
    service: str | None = None
    server: str | None = None
    session: str | None = None

    def __post_init__(self) -> None:
        _check_time(self.time)
        object.__setattr__(self, "ip", _check_ip(self.ip))
        if not isinstance(self.succeeded, bool):
            raise InvalidEventError("succeeded must be a bool")
        _check_account(self.account, required=False)
        _check_count("attempts", self.attempts, minimum=1)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping (``type``, ``time`` in RFC 3339, ``ip`` as text).

        ``account`` and ``succeeded`` are always present; other unset fields are left out.
        """
        return _dump(
            {
                "type": self.type,
                "time": self.time,
                "account": self.account,
                "ip": self.ip,
                "succeeded": self.succeeded,
                "attempts": self.attempts if self.attempts != 1 else None,
                "mechanism": self.mechanism,
                "service": self.service,
                "server": self.server,
                "session": self.session,
            },
            keep=("account",),
        )

    def to_json(self) -> str:
        """Serialize to one line of JSON (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    """An authenticated client submitted one message.

    ``recipient_count`` is the number of envelope recipients when known (Postfix
    ``nrcpt``, Sendmail ``nrcpts``); ``recipients`` holds those addresses the source
    showed, possibly fewer.

    >>> from datetime import datetime, timezone
    >>> s = Submission(time=datetime(2024, 1, 2, tzinfo=timezone.utc), ip="192.0.2.4",
    ...                account="carol@example.jp", queue_id="4F2A31C0D2",
    ...                sender="carol@example.jp", recipient_count=2,
    ...                recipients=("x@example.com", "y@example.net"), size=1834)
    >>> s.recipient_domains()
    ('example.com', 'example.net')
    """

    type: ClassVar[str] = "submission"

    time: datetime
    ip: IPAddress
    account: str | None = None
    server: str | None = None
    queue_id: str | None = None
    sender: str | None = None
    recipient_count: int | None = None
    recipients: tuple[str, ...] = field(default=())
    size: int | None = None

    def __post_init__(self) -> None:
        _check_time(self.time)
        object.__setattr__(self, "ip", _check_ip(self.ip))
        _check_account(self.account, required=False)
        _check_count("recipient_count", self.recipient_count, minimum=0)
        _check_count("size", self.size, minimum=0)
        rcpts: object = self.recipients  # untyped callers may pass a list
        if not isinstance(rcpts, tuple):
            if isinstance(rcpts, str | bytes) or not isinstance(rcpts, Iterable):
                raise InvalidEventError("recipients must be a sequence of addresses")
            rcpts = tuple(rcpts)
            object.__setattr__(self, "recipients", rcpts)
        if not all(isinstance(r, str) for r in rcpts):
            raise InvalidEventError("recipients must be strings")

    def recipient_domains(self) -> tuple[str, ...]:
        """Return the lower-cased domain of each recipient that has one, in order."""
        return tuple(r.rpartition("@")[2].lower().rstrip(">") for r in self.recipients if "@" in r)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping (``type``, ``time``, ``account``, ``ip``, ...)."""
        return _dump(
            {
                "type": self.type,
                "time": self.time,
                "account": self.account,
                "ip": self.ip,
                "server": self.server,
                "queue_id": self.queue_id,
                "sender": self.sender,
                "recipient_count": self.recipient_count,
                "recipients": self.recipients or None,
                "size": self.size,
            },
            keep=("account",),
        )

    def to_json(self) -> str:
        """Serialize to one line of JSON (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """The outcome of delivering one recipient of a queued message.

    >>> from datetime import datetime, timezone
    >>> d = Delivery(time=datetime(2024, 1, 2, tzinfo=timezone.utc), queue_id="4F2A31C0D2",
    ...              recipient="x@example.com", status="bounced", relay="none", dsn="5.1.1")
    >>> d.to_dict()["status"]
    'bounced'
    """

    type: ClassVar[str] = "delivery"

    time: datetime
    queue_id: str | None = None
    recipient: str | None = None
    status: str | None = None
    relay: str | None = None
    dsn: str | None = None
    server: str | None = None

    def __post_init__(self) -> None:
        _check_time(self.time)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping (``type``, ``time``, ``queue_id``, ...)."""
        return _dump(
            {
                "type": self.type,
                "time": self.time,
                "queue_id": self.queue_id,
                "recipient": self.recipient,
                "status": self.status,
                "relay": self.relay,
                "dsn": self.dsn,
                "server": self.server,
            },
            keep=(),
        )

    def to_json(self) -> str:
        """Serialize to one line of JSON (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


Event: TypeAlias = AuthAttempt | Submission | Delivery
"""Any of the event types."""

_TYPES: dict[str, type[AuthAttempt] | type[Submission] | type[Delivery]] = {
    "auth": AuthAttempt,
    "submission": Submission,
    "delivery": Delivery,
}
_STR_FIELDS = frozenset(
    {"account", "mechanism", "service", "server", "session", "queue_id", "sender",
     "recipient", "status", "relay", "dsn"}
)  # fmt: skip


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event from the mapping :meth:`AuthAttempt.to_dict` (etc.) produced.

    Unknown keys are ignored (newer writers may add fields); wrong or missing values raise
    :class:`~authabuse.errors.InvalidEventError`.

    >>> event_from_dict({"type": "delivery", "time": "2024-01-02T00:00:00Z",
    ...                  "queue_id": "Q1", "status": "sent"}).status
    'sent'
    >>> event_from_dict({"type": "login"})
    Traceback (most recent call last):
    ...
    authabuse.errors.InvalidEventError: unknown event type 'login'
    """
    if not isinstance(data, Mapping):
        raise InvalidEventError("an event must be a JSON object")
    kind = data.get("type")
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidEventError(f"unknown event type {kind!r}")
    names = {f for f in cls.__dataclass_fields__ if f != "type"}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            continue
        if key in _STR_FIELDS and value is not None:
            _check_text(key, value)
        kwargs[key] = value
    raw_time = kwargs.get("time")
    if not isinstance(raw_time, str):
        raise InvalidEventError("time must be an RFC 3339 string")
    try:
        kwargs["time"] = datetime.fromisoformat(raw_time)
    except ValueError:
        raise InvalidEventError(f"time is not RFC 3339: {raw_time[:40]!r}") from None
    if "recipients" in kwargs:
        rcpts = kwargs["recipients"]
        if not isinstance(rcpts, list):
            raise InvalidEventError("recipients must be a list")
        kwargs["recipients"] = tuple(_check_text("recipients", r, strict=False) for r in rcpts)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise InvalidEventError(f"{kind} event: {exc}") from None


def _check_text(key: str, value: object, *, strict: bool = True) -> object:
    """Return a JSON string field's ``value``; refuse a non-string or a lone surrogate.

    A non-string is refused only when ``strict``. JSON's escape of a lone surrogate gives
    a ``str`` that could never be written out again as UTF-8 (``parse`` output, a report).
    """
    if not isinstance(value, str):
        if strict:
            raise InvalidEventError(f"{key} must be a string")
        return value  # the event's own check says what is wrong with it
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEventError(f"{key} holds a lone surrogate (not valid Unicode)") from None
    return value


def event_from_json(text: str | bytes) -> Event:
    """Rebuild an event from one line of JSON (see :func:`event_from_dict`).

    >>> event_from_json('{"type": "auth", "time": "2024-01-02T03:04:05+09:00", '
    ...                 '"account": "a", "ip": "192.0.2.1", "succeeded": true}').time.isoformat()
    '2024-01-02T03:04:05+09:00'
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidEventError(f"not valid JSON: {exc}") from None
    return event_from_dict(data)
