"""What a policy server asks of the detection side, and how levels become answers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from authabuse.errors import ConfigurationError
from authabuse.events import AuthAttempt, Submission

__all__ = [
    "Decider",
    "DovecotAnswers",
    "PostfixAnswers",
    "level_name",
]


@runtime_checkable
class Decider(Protocol):
    """The decision side of a policy server: :class:`authabuse.Detector` fits it.

    ``check(event)`` judges an event without changing state (asked at RCPT time and by
    Dovecot before authentication); ``process(event)`` judges it and records it (once per
    message at END-OF-MESSAGE, once per authentication on Dovecot's report). Both return
    a verdict whose ``level`` is ``"ok"``, ``"suspicious"`` or ``"abuse"`` (a string or an
    enum whose ``value``/``name`` is one of those).

    >>> class Never:
    ...     def check(self, event): return type("V", (), {"level": "ok"})()
    ...     def process(self, event): return self.check(event)
    >>> isinstance(Never(), Decider)
    True
    """

    def check(self, event: Submission | AuthAttempt, /) -> Any:
        """Judge ``event`` without recording it; return a verdict with ``level``."""

    def process(self, event: Submission | AuthAttempt, /) -> Any:
        """Judge ``event`` and record it; return a verdict with ``level``."""


_LEVEL_CACHE: dict[object, str] = {}


def level_name(verdict: Any) -> str:
    """Lower-case level name of a verdict (or of a level, or a plain string).

    >>> level_name("ABUSE")
    'abuse'
    >>> import enum
    >>> class L(enum.Enum):
    ...     OK = 0
    >>> level_name(L.OK)
    'ok'
    """
    level = getattr(verdict, "level", verdict)
    try:
        return _LEVEL_CACHE[level]
    except (KeyError, TypeError):
        pass
    value = getattr(level, "value", None)
    if isinstance(level, str):
        name = level
    elif isinstance(value, str):
        name = value
    else:
        name = str(getattr(level, "name", level))
    name = name.lower()
    try:
        if len(_LEVEL_CACHE) < 64:
            _LEVEL_CACHE[level] = name
    except TypeError:  # an unhashable level object: just don't cache it
        pass
    return name


_POSTFIX_VERBS = frozenset(
    {"OK", "DUNNO", "REJECT", "DEFER", "DEFER_IF_REJECT", "DEFER_IF_PERMIT", "HOLD",
     "DISCARD", "WARN", "INFO", "PREPEND", "FILTER", "REDIRECT", "BCC", "PASS"}
)  # fmt: skip
_CODE = re.compile(r"^[45]\d\d$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")


def _check_postfix_action(name: str, action: str) -> str:
    action = action.strip()
    if not action or not _PRINTABLE.match(action) or len(action) > 500:
        raise ConfigurationError(
            f"{name} action must be one line of printable ASCII (at most 500 characters): "
            f"{action[:60]!r}"
        )
    verb = action.split(" ", 1)[0]
    if verb.upper() not in _POSTFIX_VERBS and not _CODE.match(verb):
        raise ConfigurationError(
            f"{name} action {action!r} does not start with a Postfix access(5) action "
            f"(DUNNO, HOLD, DEFER_IF_PERMIT, REJECT, 4NN/5NN, WARN, ...)"
        )
    return action


@dataclass(frozen=True)
class PostfixAnswers:
    """Postfix ``action=`` answers per verdict level, plus the answer on internal error.

    ``fail`` is what an internal error answers: ``DUNNO`` (fail open, the default) lets
    Postfix continue with its other restrictions; :meth:`fail_closed` gives a temporary
    ``DEFER_IF_PERMIT`` so a broken detector delays mail instead of waving it through.

    >>> a = PostfixAnswers(abuse="REJECT 5.7.1 account blocked")
    >>> a.for_level("abuse"), a.for_level("ok"), a.for_level("unheard-of")
    ('REJECT 5.7.1 account blocked', 'DUNNO', 'DUNNO')
    >>> PostfixAnswers(abuse="FROB now")
    Traceback (most recent call last):
    ...
    authabuse.errors.ConfigurationError: abuse action 'FROB now' does not start with ...
    """

    ok: str = "DUNNO"
    suspicious: str = "DUNNO"
    abuse: str = "HOLD authabuse: account held for abuse review"
    fail: str = "DUNNO"
    _by_level: Mapping[str, str] = field(init=False, repr=False, compare=False)

    FAIL_CLOSED = "DEFER_IF_PERMIT 4.3.0 policy service unavailable, try again later"

    def __post_init__(self) -> None:
        for name in ("ok", "suspicious", "abuse", "fail"):
            object.__setattr__(self, name, _check_postfix_action(name, getattr(self, name)))
        object.__setattr__(
            self, "_by_level", {"ok": self.ok, "suspicious": self.suspicious, "abuse": self.abuse}
        )

    @classmethod
    def fail_closed(cls, **levels: str) -> PostfixAnswers:
        """Answers that defer mail (4xx) when the policy service fails internally.

        >>> PostfixAnswers.fail_closed().fail
        'DEFER_IF_PERMIT 4.3.0 policy service unavailable, try again later'
        """
        return cls(fail=cls.FAIL_CLOSED, **levels)

    def for_level(self, level: str) -> str:
        """Return the action for ``level``; an unknown level gets the ``ok`` action."""
        return self._by_level.get(level, self.ok)


@dataclass(frozen=True)
class DovecotAnswers:
    """Dovecot auth-policy ``status`` per verdict level: -1 reject, 0 accept, N tarpit.

    ``message`` goes with a rejection (Dovecot passes it to the client and its log).
    ``fail`` is the status on internal error: 0 (fail open) unless fail-closed (-1).

    >>> a = DovecotAnswers(suspicious=3)
    >>> a.for_level("suspicious"), a.for_level("abuse"), a.for_level("ok")
    (3, -1, 0)
    >>> DovecotAnswers(abuse=-2)
    Traceback (most recent call last):
    ...
    authabuse.errors.ConfigurationError: abuse status must be -1 (reject), 0 (accept) or ...
    """

    ok: int = 0
    suspicious: int = 0
    abuse: int = -1
    fail: int = 0
    message: str = "authentication refused by policy"
    _by_level: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("ok", "suspicious", "abuse", "fail"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= 300:
                raise ConfigurationError(
                    f"{name} status must be -1 (reject), 0 (accept) or 1..300 (tarpit "
                    f"seconds), not {value!r}"
                )
        if not _PRINTABLE.match(self.message) or len(self.message) > 200:
            raise ConfigurationError("message must be one line of printable ASCII (<= 200)")
        object.__setattr__(
            self, "_by_level", {"ok": self.ok, "suspicious": self.suspicious, "abuse": self.abuse}
        )

    @classmethod
    def fail_closed(cls, **kwargs: Any) -> DovecotAnswers:
        """Answers that reject logins while the policy service fails internally.

        >>> DovecotAnswers.fail_closed().fail
        -1
        """
        return cls(fail=-1, **kwargs)

    def for_level(self, level: str) -> int:
        """Return the status for ``level``; an unknown level gets the ``ok`` status."""
        return self._by_level.get(level, self.ok)
