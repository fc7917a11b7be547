"""Composable, explainable detection rules.

A :class:`Condition` tests the features the detector computes for one event (how many
countries an account was seen from in the last hour, whether the source network is one
the account usually uses, ...). Conditions combine with ``&``, ``|`` and ``~`` into new
conditions (the operands are never modified) and print back as the expression that
built them. A :class:`Rule` gives a condition a name and a score; a :class:`Policy` maps
the summed score of the rules that fired to a :class:`Level` and an action.

Features are named ``<what>_<window>``; the windows are the detector's short and long
window (``1h`` and ``24h`` by default). :data:`F` builds feature references:

>>> from authabuse.rules import F, Rule
>>> spread = (F.countries_1h >= 4) & (F.new_asns_1h >= 3) & ~F.network_usual
>>> spread
(F.countries_1h >= 4) & (F.new_asns_1h >= 3) & ~F.network_usual
>>> print(spread)
(countries_1h >= 4) & (new_asns_1h >= 3) & ~network_usual
>>> sorted(spread.reads)
['countries_1h', 'network_usual', 'new_asns_1h']
>>> spread.evaluate({"countries_1h": 7, "new_asns_1h": 5, "network_usual": False})
True
>>> Rule("geo-spread", when=spread, score=60)
Rule('geo-spread', when=(F.countries_1h >= 4) & (F.new_asns_1h >= 3) & ~F.network_usual, score=60)

The printed form is also the syntax of the ``when`` key in a rules file
(:func:`load_rules`), parsed without ``eval``:

>>> parse_condition(str(spread)) == spread
True
"""

from __future__ import annotations

import enum
import math
import operator
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from pathlib import Path
from typing import Any, ClassVar

from authabuse.errors import ConfigurationError

__all__ = [
    "Allowlist",
    "Condition",
    "F",
    "Feature",
    "Finding",
    "Level",
    "Policy",
    "Rule",
    "RuleSet",
    "Verdict",
    "default_rules",
    "feature_names",
    "load_rules",
    "parse_condition",
]


# --------------------------------------------------------------------------- features

# Per-window features: name stem -> (kind, description). The full name is
# ``<stem>_<window label>``, e.g. ``ips_1h``.
WINDOW_FEATURES: dict[str, str] = {
    "mails": "messages submitted by the account",
    "ips": "distinct source addresses of the account (IPv6 counted by /64)",
    "countries": "distinct source countries of the account",
    "asns": "distinct source networks (ASN; the /16 or /32 prefix where no ASN is known)",
    "new_countries": "distinct countries not in the account's learned baseline",
    "new_asns": "distinct networks not in the account's learned baseline",
    "new_share": "share of the account's messages sent from networks new to it (0..1)",
    "ips_per_mail": "distinct source addresses divided by messages (sprinkle: close to 1)",
    "rcpts_per_mail": "recipients per message (spam: several; a person's mail: one or two)",
    "ips_over_peak": "distinct source addresses divided by the account's learned daily peak",
    "ip_mails": "messages from this event's source address for this account",
    "ip_rate": "messages per second from this event's address over its run in the window",
    "rcpt_domains": "distinct recipient domains of the account",
    "rcpts": "recipients addressed by the account",
    "new_rcpts": "recipients the account had not mailed before (first-time recipients)",
    "new_rcpt_share": "share of the recipient addresses that were first-time recipients (0..1)",
    "unusual_new_rcpts": "first-time recipients of messages sent from networks the account "
    "does not use",
    "unusual_new_rcpt_share": "share of first-time recipients among the recipient addresses "
    "of messages sent from networks the account does not use (0..1)",
    "auth_failures": "failed authentications naming the account",
    "ip_auth_failures": "failed authentications from this event's address (any account)",
    "ip_accounts": "distinct accounts seen from this event's source address",
    "domain_flagged": "other accounts of the same mail domain flagged suspicious or worse",
}

# Features that do not depend on a window.
PLAIN_FEATURES: dict[str, str] = {
    "history_days": "days since the account was first seen (baseline maturity)",
    "usual_networks": "networks and countries in the account's learned baseline",
    "known_rcpts": "recipients the account remembers having mailed (its learned contacts)",
    "peak_ips_day": "learned peak of distinct addresses per day for the account",
    "peak_mails_day": "learned peak of messages per day for the account",
    "domain_accounts": "distinct accounts seen in the account's mail domain",
    "usual_countries": "countries in the account's baseline (roamers and VPN users: several)",
    "hours_since_usual": "hours since the account last used a usual network (1e6: never)",
    "recent_new_countries": "countries new to the account (learning probation) in the last 7 days",
}

# Boolean features: usable directly as conditions.
FLAG_FEATURES: dict[str, str] = {
    "network_usual": "the source network (ASN or prefix) is in the account's baseline",
    "country_usual": "the source country is in the account's baseline",
    "ip_usual": "the source address was used by the account before",
    "ip_in_abuse": "the source address took part in an abuse detected earlier",
    "country_unknown": "the geo data cannot place the source address",
    "is_submission": "the event is a submitted message (not an authentication)",
    "auth_failed": "the event is a failed authentication",
    "baseline_ready": "the account has a learned baseline (at least one finished day)",
    "country_common": "the source country carries at least 5% of all accounts' traffic",
    "network_popular": "the source network is in the baselines of several accounts (VPN, CGNAT)",
}

_WINDOW_LABEL = re.compile(r"^(?P<stem>[a-z_]+?)_(?P<label>\d+[smhd])$")


def window_label(seconds: float) -> str:
    """Return the label of a window length used in feature names (``3600`` -> ``"1h"``).

    >>> window_label(3600), window_label(86400), window_label(1800), window_label(90)
    ('1h', '24h', '30m', '90s')
    """
    s = int(seconds)
    if s <= 0 or s != seconds:
        raise ConfigurationError(f"a window must be a positive whole number of seconds: {seconds}")
    if s % 3600 == 0:
        return f"{s // 3600}h"
    if s % 60 == 0:
        return f"{s // 60}m"
    return f"{s}s"


def split_feature(name: str) -> tuple[str, str | None]:
    """Split a feature name into (stem, window label or None); raise for unknown names.

    >>> split_feature("ips_24h"), split_feature("ip_usual")
    (('ips', '24h'), ('ip_usual', None))
    """
    if name in FLAG_FEATURES or name in PLAIN_FEATURES:
        return name, None
    m = _WINDOW_LABEL.match(name)
    if m and m.group("stem") in WINDOW_FEATURES:
        return m.group("stem"), m.group("label")
    raise ConfigurationError(f"unknown feature {name!r} (known: {', '.join(feature_names())})")


def feature_names(windows: Sequence[str] = ("1h", "24h")) -> list[str]:
    """List every feature name a rule may read, for the given window labels.

    >>> names = feature_names()
    >>> "countries_1h" in names and "ip_in_abuse" in names
    True
    """
    out = [f"{stem}_{w}" for stem in WINDOW_FEATURES for w in windows]
    return sorted([*out, *PLAIN_FEATURES, *FLAG_FEATURES])


def describe_feature(name: str) -> str:
    """Return the one-line description of a feature.

    >>> describe_feature("ips_1h")
    'distinct source addresses of the account (IPv6 counted by /64) (window 1h)'
    """
    stem, label = split_feature(name)
    if label is None:
        return FLAG_FEATURES.get(stem) or PLAIN_FEATURES[stem]
    return f"{WINDOW_FEATURES[stem]} (window {label})"


# ------------------------------------------------------------------------- conditions

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


class Condition:
    """A test over one event's features; combine with ``&``, ``|`` and ``~``.

    Conditions are immutable: ``a & b`` builds a new condition and leaves ``a`` and ``b``
    as they were. :attr:`reads` names the features the condition needs, so the detector
    computes (and records) exactly those.

    >>> c = (F.ips_1h >= 20) | F.ip_in_abuse
    >>> c.evaluate({"ips_1h": 3, "ip_in_abuse": True}), sorted(c.reads)
    (True, ['ip_in_abuse', 'ips_1h'])
    >>> ~c
    ~((F.ips_1h >= 20) | F.ip_in_abuse)
    """

    __slots__ = ()
    _prec: ClassVar[int] = 9  # binding strength for printing: | 1, & 2, ~ 3, compare 0

    @property
    def reads(self) -> frozenset[str]:
        """The names of the features this condition reads."""
        raise NotImplementedError

    def evaluate(self, features: Mapping[str, Any]) -> bool:
        """Return whether the condition holds for ``features`` (name -> value)."""
        raise NotImplementedError

    def atoms(self) -> Iterable[Condition]:
        """Yield the comparisons and flags this condition is made of, in order."""
        yield self

    def _render(self, style: str) -> str:
        raise NotImplementedError

    def _wrap(self, style: str, prec: int) -> str:
        text = self._render(style)
        return f"({text})" if self._prec < prec else text

    def __repr__(self) -> str:
        return self._render("py")

    def __str__(self) -> str:
        return self._render("rule")

    def __and__(self, other: object) -> Condition:
        if not isinstance(other, Condition):
            return _not_condition(other, "&")
        left = self.parts if isinstance(self, All) else (self,)
        right = other.parts if isinstance(other, All) else (other,)
        return All(left + right)

    def __or__(self, other: object) -> Condition:
        if not isinstance(other, Condition):
            return _not_condition(other, "|")
        left = self.parts if isinstance(self, AnyOf) else (self,)
        right = other.parts if isinstance(other, AnyOf) else (other,)
        return AnyOf(left + right)

    def __invert__(self) -> Condition:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "a Condition has no truth value: combine conditions with &, |, ~ "
            "(not 'and', 'or', 'not'), and write comparisons in parentheses"
        )


def _not_condition(other: object, op: str) -> Condition:
    hint = ""
    if isinstance(other, Feature):
        hint = f" (compare it first, e.g. ({other!r} >= 1))"
    raise TypeError(f"cannot combine a Condition with {type(other).__name__} by {op}{hint}")


@dataclass(frozen=True, slots=True, repr=False)
class Compare(Condition):
    """``feature <op> value``: built by comparing a :class:`Feature` with a number.

    >>> Compare("ips_1h", ">=", 20).evaluate({"ips_1h": 25})
    True
    """

    feature: str
    op: str
    value: float

    _prec: ClassVar[int] = 0

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ConfigurationError(f"unknown comparison {self.op!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise ConfigurationError(
                f"{self.feature} is compared with a number, not {self.value!r}"
            )
        if not math.isfinite(self.value):
            raise ConfigurationError(f"{self.feature} is compared with a non-finite number")
        if self.feature in FLAG_FEATURES:
            raise ConfigurationError(
                f"{self.feature!r} is a yes/no feature: use it as a condition "
                f"('{self.feature}' or 'not {self.feature}'), not compared with a number"
            )
        split_feature(self.feature)

    @property
    def reads(self) -> frozenset[str]:
        """The one feature this comparison reads."""
        return frozenset((self.feature,))

    def evaluate(self, features: Mapping[str, Any]) -> bool:
        """Compare the feature's value with the limit."""
        return _OPS[self.op](features[self.feature], self.value)

    def _render(self, style: str) -> str:
        prefix = "F." if style == "py" else ""
        value = int(self.value) if float(self.value).is_integer() else self.value
        return f"{prefix}{self.feature} {self.op} {value!r}"


@dataclass(frozen=True, slots=True, repr=False)
class Flag(Condition):
    """A boolean feature used as a condition (``F.ip_in_abuse``).

    >>> Flag("ip_usual").evaluate({"ip_usual": False})
    False
    """

    feature: str

    def __post_init__(self) -> None:
        if self.feature not in FLAG_FEATURES:
            raise ConfigurationError(
                f"{self.feature!r} is not a yes/no feature; compare it with a number"
            )

    @property
    def reads(self) -> frozenset[str]:
        """The one feature this flag reads."""
        return frozenset((self.feature,))

    def evaluate(self, features: Mapping[str, Any]) -> bool:
        """Return the feature's truth value."""
        return bool(features[self.feature])

    def _render(self, style: str) -> str:
        return f"F.{self.feature}" if style == "py" else self.feature


@dataclass(frozen=True, slots=True, repr=False)
class All(Condition):
    """All parts hold (built by ``&``).

    >>> All((Flag("ip_usual"), Flag("country_usual")))
    F.ip_usual & F.country_usual
    """

    parts: tuple[Condition, ...]

    _prec: ClassVar[int] = 2

    @property
    def reads(self) -> frozenset[str]:
        """The union of what the parts read."""
        return frozenset().union(*(p.reads for p in self.parts))

    def evaluate(self, features: Mapping[str, Any]) -> bool:
        """Evaluate the parts left to right, stopping at the first that fails."""
        return all(p.evaluate(features) for p in self.parts)

    def atoms(self) -> Iterable[Condition]:
        """Yield the atoms of every part."""
        for p in self.parts:
            yield from p.atoms()

    def _render(self, style: str) -> str:
        return " & ".join(_operand(p, style, self._prec) for p in self.parts)


@dataclass(frozen=True, slots=True, repr=False)
class AnyOf(Condition):
    """At least one part holds (built by ``|``).

    >>> AnyOf((Flag("ip_in_abuse"), Compare("ips_1h", ">", 50)))
    F.ip_in_abuse | (F.ips_1h > 50)
    """

    parts: tuple[Condition, ...]

    _prec: ClassVar[int] = 1

    @property
    def reads(self) -> frozenset[str]:
        """The union of what the parts read."""
        return frozenset().union(*(p.reads for p in self.parts))

    def evaluate(self, features: Mapping[str, Any]) -> bool:
        """Evaluate the parts left to right, stopping at the first that holds."""
        return any(p.evaluate(features) for p in self.parts)

    def atoms(self) -> Iterable[Condition]:
        """Yield the atoms of every part."""
        for p in self.parts:
            yield from p.atoms()

    def _render(self, style: str) -> str:
        return " | ".join(_operand(p, style, self._prec) for p in self.parts)


@dataclass(frozen=True, slots=True, repr=False)
class Not(Condition):
    """The part does not hold (built by ``~``).

    >>> Not(Flag("ip_usual")).evaluate({"ip_usual": False})
    True
    """

    part: Condition

    _prec: ClassVar[int] = 3

    @property
    def reads(self) -> frozenset[str]:
        """What the negated part reads."""
        return self.part.reads

    def evaluate(self, features: Mapping[str, Any]) -> bool:
        """Negate the part."""
        return not self.part.evaluate(features)

    def atoms(self) -> Iterable[Condition]:
        """Yield the atoms of the negated part."""
        return self.part.atoms()

    def _render(self, style: str) -> str:
        inner = self.part._render(style)
        if isinstance(self.part, Flag):
            return f"~{inner}"
        return f"~({inner})"


def _operand(part: Condition, style: str, prec: int) -> str:
    text = part._render(style)
    if part._prec <= prec and not isinstance(part, Flag):
        return f"({text})"
    return text


class Feature:
    """A reference to a numeric feature; compare it with a number to get a condition.

    >>> F.ips_1h >= 20
    F.ips_1h >= 20
    >>> (F.new_share_24h > 0.5).evaluate({"new_share_24h": 0.9})
    True
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        split_feature(name)
        self.name = name

    def __repr__(self) -> str:
        return f"F.{self.name}"

    def __ge__(self, other: float) -> Condition:
        return Compare(self.name, ">=", other)

    def __gt__(self, other: float) -> Condition:
        return Compare(self.name, ">", other)

    def __le__(self, other: float) -> Condition:
        return Compare(self.name, "<=", other)

    def __lt__(self, other: float) -> Condition:
        return Compare(self.name, "<", other)

    def equals(self, other: float) -> Condition:
        """``feature == value`` (``==`` itself keeps its usual meaning on features)."""
        return Compare(self.name, "==", other)

    def __and__(self, other: object) -> Condition:
        raise TypeError(f"compare {self!r} with a number before combining it, e.g. ({self!r} >= 1)")

    __or__ = __and__
    __rand__ = __and__
    __ror__ = __and__

    def __invert__(self) -> Condition:
        raise TypeError(f"{self!r} is a number, not a yes/no feature; compare it first")


class _FeatureNamespace:
    """Build feature references by attribute: ``F.ips_1h``, ``F.ip_in_abuse``.

    >>> F.countries_24h
    F.countries_24h
    >>> F.no_such_thing
    Traceback (most recent call last):
    ...
    AttributeError: unknown feature 'no_such_thing' ...
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            split_feature(name)
        except ConfigurationError as exc:
            raise AttributeError(str(exc)) from None
        if name in FLAG_FEATURES:
            return Flag(name)
        return Feature(name)

    def __dir__(self) -> list[str]:
        return feature_names()

    def __repr__(self) -> str:
        return "F"


F: Any = _FeatureNamespace()
"""Feature references: ``F.<feature>`` (see :func:`feature_names`)."""


# -------------------------------------------------------------------- parsing (no eval)

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<op>>=|<=|==|!=|>|<|&&|\|\||[&|~()!])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))"
)


def parse_condition(text: str) -> Condition:
    """Parse a condition written as in a rules file, without ``eval``.

    The grammar: comparisons ``feature OP number`` (``>= > <= < == !=``), yes/no features
    by name, ``&``/``and``, ``|``/``or``, ``~``/``not`` and parentheses. ``F.`` before a
    name is allowed, so ``repr`` output parses too.

    >>> parse_condition("countries_1h >= 4 and not network_usual")
    (F.countries_1h >= 4) & ~F.network_usual
    >>> parse_condition("ips_1h >= ")
    Traceback (most recent call last):
    ...
    authabuse.errors.ConfigurationError: expected a number after '>=' at the end in 'ips_1h >= '
    """
    if not isinstance(text, str):
        raise ConfigurationError(f"a condition is a string, not {type(text).__name__}")
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ConfigurationError(
                f"unexpected {text[pos:].strip()[:1]!r} at column {pos + 1} in {text!r}"
            )
        kind = m.lastgroup or ""
        value = m.group(kind)
        col = m.start(kind) + 1
        if kind == "name":
            low = value.lower()
            if low in {"and", "or", "not"}:
                kind, value = "op", {"and": "&", "or": "|", "not": "~"}[low]
            elif value.startswith("F."):
                value = value[2:]
        if kind == "op":
            value = {"&&": "&", "||": "|", "!": "~"}.get(value, value)
        tokens.append((kind, value, col))
        pos = m.end()
    parser = _Parser(tokens, text)
    cond = parser.parse_or()
    if parser.i < len(tokens):
        _, value, col = tokens[parser.i]
        raise ConfigurationError(f"unexpected {value!r} at column {col} in {text!r}")
    return cond


# Parentheses and negations nested deeper than this are refused (a recursive descent
# parser would otherwise die of Python's recursion limit, with a traceback).
_MAX_NESTING = 64


class _Parser:
    def __init__(self, tokens: list[tuple[str, str, int]], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.i = 0
        self.depth = 0

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_NESTING:
            raise self._fail(f"parentheses or negations nested deeper than {_MAX_NESTING}")

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _fail(self, what: str) -> ConfigurationError:
        tok = self._peek()
        where = f"column {tok[2]}" if tok else "the end"
        return ConfigurationError(f"{what} at {where} in {self.text!r}")

    def parse_or(self) -> Condition:
        cond = self.parse_and()
        while (tok := self._peek()) and tok[1] == "|":
            self.i += 1
            cond = cond | self.parse_and()
        return cond

    def parse_and(self) -> Condition:
        cond = self.parse_not()
        while (tok := self._peek()) and tok[1] == "&":
            self.i += 1
            cond = cond & self.parse_not()
        return cond

    def parse_not(self) -> Condition:
        tok = self._peek()
        if tok and tok[1] == "~":
            self._enter()
            self.i += 1
            cond = ~self.parse_not()
            self.depth -= 1
            return cond
        return self.parse_atom()

    def parse_atom(self) -> Condition:
        tok = self._peek()
        if tok is None:
            raise self._fail("expected a condition")
        kind, value, col = tok
        if value == "(":
            self._enter()
            self.i += 1
            cond = self.parse_or()
            end = self._peek()
            if end is None or end[1] != ")":
                raise self._fail("expected ')'")
            self.i += 1
            self.depth -= 1
            return cond
        if kind != "name":
            raise self._fail(f"expected a feature name, got {value!r}")
        self.i += 1
        try:
            split_feature(value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} at column {col} in {self.text!r}") from None
        op = self._peek()
        if op and op[0] == "op" and op[1] in _OPS:
            self.i += 1
            num = self._peek()
            if num is None or num[0] != "num":
                raise self._fail(f"expected a number after {op[1]!r}")
            self.i += 1
            number = float(num[1])
            return Compare(value, op[1], int(number) if number.is_integer() else number)
        if value not in FLAG_FEATURES:
            raise ConfigurationError(
                f"{value!r} is a number: compare it (e.g. {value} >= 1) "
                f"at column {col} in {self.text!r}"
            )
        return Flag(value)


# ------------------------------------------------------------------------ allowlist


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Accounts, networks and ASNs the detector never flags.

    Events from an allowlisted network or ASN (webmail front ends, the provider's own
    relays, a partner's bulk platform) are not counted at all, so they cannot make an
    address look shared by many accounts; an allowlisted account is never flagged.

    >>> a = Allowlist(accounts=["noc@example.jp"], networks=["192.0.2.0/24"], asns=[64500])
    >>> from ipaddress import ip_address
    >>> a.allows_ip(ip_address("192.0.2.77"), None), a.allows_ip(ip_address("10.0.0.1"), 64500)
    (True, True)
    >>> a.allows_ip(ip_address("198.51.100.1"), 64501)
    False
    """

    accounts: frozenset[str] = frozenset()
    networks: tuple[IPv4Network | IPv6Network, ...] = ()
    asns: frozenset[int] = frozenset()
    _index: dict[tuple[int, int], frozenset[int]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def __init__(
        self,
        *,
        accounts: Iterable[str] = (),
        networks: Iterable[str | IPv4Network | IPv6Network] = (),
        asns: Iterable[int | str] = (),
    ) -> None:
        accts = frozenset(accounts)
        if not all(isinstance(a, str) for a in accts):
            raise ConfigurationError("allowlisted accounts must be strings")
        nets: list[IPv4Network | IPv6Network] = []
        for n in networks:
            try:
                nets.append(
                    n if isinstance(n, IPv4Network | IPv6Network) else ip_network(n, strict=False)
                )
            except (ValueError, TypeError):
                raise ConfigurationError(f"not a network: {n!r}") from None
        numbers: set[int] = set()
        for a in asns:
            text = str(a).upper().removeprefix("AS")
            if not text.isdigit() or not 0 <= int(text) < 2**32:
                raise ConfigurationError(f"not an AS number: {a!r}")
            numbers.add(int(text))
        index: dict[tuple[int, int], set[int]] = {}
        for net in nets:
            bits = net.max_prefixlen
            index.setdefault((bits, net.prefixlen), set()).add(
                int(net.network_address) >> (bits - net.prefixlen)
            )
        object.__setattr__(self, "accounts", accts)
        object.__setattr__(self, "networks", tuple(nets))
        object.__setattr__(self, "asns", frozenset(numbers))
        object.__setattr__(self, "_index", {k: frozenset(v) for k, v in index.items()})

    def __bool__(self) -> bool:
        return bool(self.accounts or self.networks or self.asns)

    def allows_ip(self, ip: IPv4Address | IPv6Address, asn: int | None) -> bool:
        """Whether events from ``ip`` (placed in ``asn``) are exempt."""
        if asn is not None and asn in self.asns:
            return True
        if not self._index:
            return False
        bits = ip.max_prefixlen
        value = int(ip)
        for (family, plen), prefixes in self._index.items():
            if family == bits and value >> (bits - plen) in prefixes:
                return True
        return False


# ---------------------------------------------------------------- rules and policy


@dataclass(frozen=True, slots=True, repr=False)
class Rule:
    """A named condition and the score it adds to a verdict when it holds.

    ``describe`` is a short human sentence shown with the evidence.

    >>> r = Rule("burst", when=(F.ip_mails_1h >= 5) & (F.ip_rate_1h >= 0.5), score=100)
    >>> r.when.evaluate({"ip_mails_1h": 40, "ip_rate_1h": 3.2})
    True
    """

    name: str
    when: Condition
    score: float
    describe: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", self.name):
            raise ConfigurationError(
                f"rule name {self.name!r}: use 1-64 letters, digits, '_', '-', '.', ':'"
            )
        if not isinstance(self.when, Condition):
            raise ConfigurationError(f"rule {self.name}: 'when' must be a Condition")
        if isinstance(self.score, bool) or not isinstance(self.score, int | float):
            raise ConfigurationError(f"rule {self.name}: score must be a number")
        if not math.isfinite(self.score):
            raise ConfigurationError(f"rule {self.name}: score must be finite")

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, when={self.when!r}, score={self.score!r})"


class Level(enum.IntEnum):
    """How bad an account looks: ``ok`` < ``suspicious`` < ``abuse``.

    >>> Level.parse("abuse") > Level.SUSPICIOUS, str(Level.OK)
    (True, 'ok')
    """

    OK = 0
    SUSPICIOUS = 1
    ABUSE = 2

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Level:
        """Return the level named ``text`` (``ok``, ``suspicious``, ``abuse``)."""
        try:
            return cls[text.strip().upper()]
        except (KeyError, AttributeError):
            raise ConfigurationError(f"unknown level {text!r} (ok, suspicious, abuse)") from None


_DEFAULT_ACTIONS = {Level.OK: "accept", Level.SUSPICIOUS: "alert", Level.ABUSE: "block"}


@dataclass(frozen=True, slots=True)
class Policy:
    """Map a summed score to a level, and each level to an action.

    An account is ``suspicious`` from ``suspicious`` points and ``abuse`` from ``abuse``
    points. Actions are free-form words the integrations act on (defaults: ``accept``,
    ``alert``, ``block``).

    >>> p = Policy(suspicious=40, abuse=100)
    >>> p.level(55), p.action(p.level(120))
    (<Level.SUSPICIOUS: 1>, 'block')
    """

    suspicious: float = 50.0
    abuse: float = 100.0
    actions: Mapping[Any, str] = field(default_factory=lambda: dict(_DEFAULT_ACTIONS))

    def __post_init__(self) -> None:
        for name in ("suspicious", "abuse"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ConfigurationError(f"policy {name} must be a finite number")
        if not 0 < self.suspicious <= self.abuse:
            raise ConfigurationError("policy needs 0 < suspicious <= abuse")
        merged = dict(_DEFAULT_ACTIONS)
        for k, v in self.actions.items():
            merged[Level.parse(k) if isinstance(k, str) else Level(k)] = str(v)
        object.__setattr__(self, "actions", merged)

    def level(self, score: float) -> Level:
        """Return the level a summed score reaches."""
        if score >= self.abuse:
            return Level.ABUSE
        if score >= self.suspicious:
            return Level.SUSPICIOUS
        return Level.OK

    def action(self, level: Level) -> str:
        """Return the action configured for ``level``."""
        return self.actions[level]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules plus the policy that turns their summed score into a level.

    >>> rs = RuleSet((Rule("many-ips", when=F.ips_1h >= 30, score=60),), Policy())
    >>> sorted(rs.reads)
    ['ips_1h']
    """

    rules: tuple[Rule, ...]
    policy: Policy = field(default_factory=Policy)
    allow: Allowlist = field(default_factory=Allowlist)

    def __post_init__(self) -> None:
        rules = tuple(self.rules)
        object.__setattr__(self, "rules", rules)
        seen: set[str] = set()
        for r in rules:
            if not isinstance(r, Rule):
                raise ConfigurationError(f"not a Rule: {r!r}")
            if r.name in seen:
                raise ConfigurationError(f"two rules are named {r.name!r}")
            seen.add(r.name)

    @property
    def reads(self) -> frozenset[str]:
        """Every feature some rule reads."""
        return frozenset().union(*(r.when.reads for r in self.rules))

    def windows(self) -> set[str]:
        """Return the window labels the rules refer to."""
        return {lab for name in self.reads if (lab := split_feature(name)[1]) is not None}


# ------------------------------------------------------------------- verdicts


class Finding:
    """One rule that fired: its name, score, a readable detail and the evidence.

    ``evidence`` is JSON-ready: the values of the features the rule read, the limits
    they crossed, and context (countries with counts, networks, the usual location).
    The detector renders ``detail`` and ``evidence`` from a snapshot taken when the rule
    fired, on first access, so verdicts nobody reads cost nothing to explain.

    >>> f = Finding("burst", 100.0, "ip_mails_1h=40 >= 5", {"ip": "192.0.2.7"})
    >>> f.rule, f.detail, f.to_dict()["score"]
    ('burst', 'ip_mails_1h=40 >= 5', 100.0)
    """

    __slots__ = ("_detail", "_evidence", "_render", "rule", "score")

    def __init__(
        self,
        rule: str,
        score: float,
        detail: str = "",
        evidence: Mapping[str, Any] | None = None,
        *,
        render: Callable[[], tuple[str, Mapping[str, Any]]] | None = None,
    ) -> None:
        self.rule = rule
        self.score = score
        self._detail = detail
        self._evidence: Mapping[str, Any] = evidence if evidence is not None else {}
        self._render = render

    def _realize(self) -> None:
        if self._render is not None:
            self._detail, self._evidence = self._render()
            self._render = None

    @property
    def detail(self) -> str:
        """A readable one-line explanation with the numbers that crossed the limits."""
        self._realize()
        return self._detail

    @property
    def evidence(self) -> Mapping[str, Any]:
        """Feature values, limits, countries and networks with counts, usual location."""
        self._realize()
        return self._evidence

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Finding):
            return NotImplemented
        return (self.rule, self.score, self.detail, self.evidence) == (
            other.rule,
            other.score,
            other.detail,
            other.evidence,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking evidence: not hashable

    def __repr__(self) -> str:
        return f"Finding({self.rule!r}, {self.score!r}, {self.detail!r})"

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"rule", "score", "detail"}`` (the ``scan --json`` reason)."""
        return {"rule": self.rule, "score": float(self.score), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the detector concluded about one event's account.

    >>> from datetime import datetime, timezone
    >>> v = Verdict(account="a@example.jp", level=Level.OK, score=0.0, findings=(),
    ...             time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    >>> v.flagged, v.action
    (False, 'accept')
    """

    account: str | None
    level: Level
    score: float
    findings: tuple[Finding, ...]
    time: datetime
    ip: str | None = None
    action: str = "accept"
    country: str | None = None
    features: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def flagged(self) -> bool:
        """Whether the level is above ``ok``."""
        return self.level > Level.OK

    def explain(self) -> str:
        """Return a multi-line explanation: level, score and each finding's detail."""
        head = f"{self.account}: {self.level} (score {self.score:g})"
        return "\n".join([head, *(f"  {f.rule} (+{f.score:g}): {f.detail}" for f in self.findings)])

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping of the verdict."""
        return {
            "account": self.account,
            "level": str(self.level),
            "score": float(self.score),
            "action": self.action,
            "time": self.time.isoformat(),
            "ip": self.ip,
            "reasons": [f.to_dict() for f in self.findings],
        }


# ---------------------------------------------------------------- default rules


def default_rules(short: str = "1h", long: str = "24h") -> RuleSet:
    """Return the built-in rule set (see ``docs/rules.md`` for the reasoning).

    ``short`` and ``long`` are the labels of the detector's windows.

    >>> rs = default_rules()
    >>> [r.name for r in rs.rules][:3]
    ['sprinkle', 'foreign-hops', 'geo-spread']
    """
    s, lg = short, long

    def f(stem: str, w: str) -> Feature:
        return Feature(f"{stem}_{w}")

    # Conditions are evaluated left to right and stop at the first false one: the cheap
    # test that fails for almost every legitimate event (the owner's own network) first.
    unusual = ~F.network_usual
    # Not shared infrastructure: a network in the baselines of several customers, or an
    # address serving several accounts (VPN exits, carrier NAT, office NAT).
    private = ~F.network_popular & (f("ip_accounts", lg) <= 2)
    narrow = F.baseline_ready & (F.usual_countries <= 1)  # has a baseline; does not roam
    rules = (
        Rule(
            "sprinkle",
            when=unusual & (f("new_asns", s) >= 4) & (f("new_countries", s) >= 3),
            score=100,
            describe="many new networks in many new countries within the short window",
        ),
        Rule(
            "foreign-hops",
            when=unusual
            & ~F.country_common
            & (f("new_asns", s) >= 2)
            & (f("new_countries", s) >= 2)
            & narrow
            & private,
            score=60,
            describe="two new foreign networks in two new countries within the short window",
        ),
        Rule(
            "geo-spread",
            when=(f("countries", s) >= 5) & (f("new_countries", s) >= 3),
            score=60,
            describe="sources spread over many countries",
        ),
        Rule(
            "burst",
            # A new address in a country the account does not use counts as unusual even
            # in a usual network: a VPN user's exits and a bot can share one cloud ASN.
            when=(unusual | ~F.country_usual)
            & (f("ip_mails", s) >= 5)
            & (f("ip_rate", s) >= 0.5)
            & ~F.ip_usual
            & (
                F.baseline_ready
                | ~F.country_common
                | (F.domain_accounts >= 100)
                | (f("asns", lg) >= 2) & (f("ip_mails", s) >= 50)
            ),
            score=100,
            describe="one new address sending several messages per second",
        ),
        Rule(
            "many-ips",
            when=(f("ips", s) >= 20) & (f("ips_per_mail", s) >= 0.5) & (f("new_asns", s) >= 3),
            score=60,
            describe="messages from many addresses, few each",
        ),
        Rule(
            "domestic-spread",
            when=unusual
            & (f("ips", s) >= 4)
            & (f("new_asns", s) >= 3)
            & (f("ips_per_mail", s) >= 0.3)
            & F.country_common
            & F.baseline_ready
            & private,
            score=60,
            describe="several new networks of the usual country within the short window",
        ),
        Rule(
            "address-surge",
            when=unusual
            & ~F.ip_usual
            & F.baseline_ready
            & (f("ips", lg) >= 30)
            & (f("ips_per_mail", lg) >= 0.25)
            & (f("ips_over_peak", lg) >= 3),
            score=100,
            describe="far more addresses than the account uses in a day, a few messages each",
        ),
        Rule(
            "impossible-travel",
            when=unusual
            & F.is_submission
            & ~F.country_usual
            & ~F.country_common
            & narrow
            & (F.hours_since_usual <= 2)
            & private,
            score=30,
            describe="a new foreign network while the usual one is still in use",
        ),
        Rule(
            "slow-spread",
            when=unusual
            & ~F.country_common
            & ~F.country_usual
            & F.baseline_ready
            & (
                (F.recent_new_countries >= 5)
                | (F.recent_new_countries >= 3) & (f("rcpts_per_mail", lg) >= 3)
            )
            & private,
            score=100,
            describe="new foreign countries accumulating over days",
        ),
        Rule(
            "strangers-abroad",
            when=unusual
            & ~F.country_common
            & ~F.country_usual
            & ~F.ip_usual
            & F.baseline_ready
            & (f("unusual_new_rcpts", s) >= 15)
            & (f("unusual_new_rcpt_share", s) >= 0.9),
            score=100,
            describe="mail to many first-time recipients from a new foreign network",
        ),
        Rule(
            "roaming-spread",
            when=unusual & (f("new_asns", lg) >= 12) & (f("new_countries", lg) >= 6),
            score=100,
            describe="new networks accumulating fast even for an account that roams",
        ),
        Rule(
            "domestic-botnet",
            when=unusual
            & (f("new_asns", lg) >= 8)
            & (f("ips", lg) >= 12)
            & F.country_common
            & (f("countries", lg) <= 3),
            score=100,
            describe="many new networks inside the usual country",
        ),
        Rule(
            "shared-ip",
            when=unusual & (f("ip_accounts", lg) >= 3) & ~F.ip_usual & ~F.network_popular,
            score=30,
            describe="the address logs in to several accounts",
        ),
        Rule(
            "known-abuse-ip",
            when=unusual & F.ip_in_abuse & ~F.ip_usual & private,
            score=100,
            describe="the address took part in a detected abuse",
        ),
        Rule(
            "abuse-ip-strangers",
            when=unusual
            & F.ip_in_abuse
            & ~F.ip_usual
            & F.baseline_ready
            & (F.known_rcpts >= 10)
            & (f("unusual_new_rcpts", lg) >= 3)
            & (f("unusual_new_rcpt_share", lg) >= 0.8),
            score=100,
            describe="an address of a detected abuse mails first-time recipients",
        ),
        Rule(
            "domain-wave",
            when=unusual
            & (f("domain_flagged", s) >= 1)
            & (F.domain_accounts <= 50)
            & ~F.network_popular
            & (f("new_asns", s) >= 2),
            score=50,
            describe="another account of the same domain was flagged just now",
        ),
        Rule(
            "auth-failures",
            when=unusual & (f("auth_failures", s) >= 10),
            score=30,
            describe="many failed logins for the account",
        ),
    )
    return RuleSet(rules, Policy(suspicious=50, abuse=100))


# --------------------------------------------------------------------- TOML loader


def load_rules(path: str | Path, *, text: str | None = None) -> RuleSet:
    r"""Load a rule set from a TOML file (errors name the file and line).

    Format::

        [policy]
        suspicious = 50          # score from which an account is suspicious
        abuse = 100              # ... and abusive
        [policy.actions]         # optional
        abuse = "block"

        [[rule]]
        name = "geo-spread"
        when = "countries_1h >= 5 and new_countries_1h >= 3"
        score = 60
        describe = "sources spread over many countries"   # optional

        [defaults]
        include = true           # start from the built-in rules (same names replaced)

        [allow]                  # never flagged / not counted
        accounts = ["noc@example.jp"]
        networks = ["192.0.2.0/24", "2001:db8::/32"]
        asns = [64500]

    >>> rs = load_rules("x.toml", text='''
    ... [[rule]]
    ... name = "many-ips"
    ... when = "ips_1h >= 30 & ~network_usual"
    ... score = 70
    ... ''')
    >>> rs.rules[0]
    Rule('many-ips', when=(F.ips_1h >= 30) & ~F.network_usual, score=70)
    >>> load_rules("bad.toml", text='[[rule]]\nname = "x"\nwhen = "ips_1h >>"\nscore = 1\n')
    Traceback (most recent call last):
    ...
    authabuse.errors.ConfigurationError: bad.toml:3: rule 'x': expected a number after '>' ...
    """
    path = Path(path)
    if text is None:
        text = _read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None
    lines = text.splitlines()
    known_top = {"policy", "rule", "defaults", "allow"}
    for key in data:
        if key not in known_top:
            raise ConfigurationError(
                f"{path}:{_find_line(lines, key)}: unknown section {key!r} "
                f"(expected {', '.join(sorted(known_top))})"
            )
    policy = _load_policy(path, lines, data.get("policy", {}))
    include = False
    defaults = data.get("defaults", {})
    if defaults:
        if not isinstance(defaults, dict) or set(defaults) - {"include"}:
            raise ConfigurationError(
                f"{path}:{_find_line(lines, 'defaults')}: [defaults] takes only include"
            )
        include = defaults.get("include", False)
        if not isinstance(include, bool):
            raise ConfigurationError(
                f"{path}:{_find_line(lines, 'include')}: include must be true or false"
            )
    allow = _load_allow(path, lines, data.get("allow", {}))
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise ConfigurationError(f"{path}: 'rule' must be an array of tables: use [[rule]]")
    rules = _load_rule_tables(path, lines, raw_rules)
    if include:
        mine = {r.name for r in rules}
        rules = [r for r in default_rules().rules if r.name not in mine] + rules
    if not rules:
        raise ConfigurationError(
            f"{path}: no [[rule]] tables (set [defaults] include = true to use the built-in rules)"
        )
    try:
        return RuleSet(tuple(rules), policy, allow)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None


def _load_rule_tables(path: Path, lines: list[str], raw_rules: list[Any]) -> list[Rule]:
    """Load the ``[[rule]]`` tables; a second rule of the same name names both lines."""
    starts = [i + 1 for i, ln in enumerate(lines) if re.match(r"\s*\[\[\s*rule\s*\]\]", ln)]
    rules: list[Rule] = []
    first_at: dict[str, int] = {}
    for idx, item in enumerate(raw_rules):
        start = starts[idx] if idx < len(starts) else 1
        end = starts[idx + 1] if idx + 1 < len(starts) else len(lines) + 1
        rule = _load_rule(path, lines, item, start, end)
        if rule.name in first_at:
            raise ConfigurationError(
                f"{path}:{start}: two rules are named {rule.name!r} "
                f"(the first at line {first_at[rule.name]})"
            )
        first_at[rule.name] = start
        rules.append(rule)
    return rules


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read rules file {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigurationError(f"{path}:{line}: rules file is not UTF-8") from None


def _find_line(lines: list[str], key: str, start: int = 1, end: int | None = None) -> int:
    stop = len(lines) + 1 if end is None else end
    pat = re.compile(rf"^\s*(\[+\s*)?{re.escape(key)}\b")
    for n in range(start, stop):
        if pat.match(lines[n - 1]):
            return n
    return start


def _load_policy(path: Path, lines: list[str], raw: Any) -> Policy:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}:{_find_line(lines, 'policy')}: [policy] must be a table")
    allowed = {"suspicious", "abuse", "actions"}
    for key in raw:
        if key not in allowed:
            raise ConfigurationError(
                f"{path}:{_find_line(lines, key)}: unknown policy key {key!r} "
                f"(expected {', '.join(sorted(allowed))})"
            )
    kwargs: dict[str, Any] = {}
    for key in ("suspicious", "abuse"):
        if key in raw:
            kwargs[key] = raw[key]
    if "actions" in raw:
        acts = raw["actions"]
        if not isinstance(acts, dict) or not all(isinstance(v, str) for v in acts.values()):
            raise ConfigurationError(
                f"{path}:{_find_line(lines, 'actions')}: actions map levels to words"
            )
        try:
            kwargs["actions"] = {Level.parse(k): v for k, v in acts.items()}
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}:{_find_line(lines, 'actions')}: {exc}") from None
    try:
        return Policy(**kwargs)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}:{_find_line(lines, 'policy')}: {exc}") from None


def _load_rule(path: Path, lines: list[str], item: Any, start: int, end: int) -> Rule:
    if not isinstance(item, dict):
        raise ConfigurationError(f"{path}:{start}: a [[rule]] must be a table")
    allowed = {"name", "when", "score", "describe"}
    for key in item:
        if key not in allowed:
            raise ConfigurationError(
                f"{path}:{_find_line(lines, key, start, end)}: unknown rule key {key!r} "
                f"(expected {', '.join(sorted(allowed))})"
            )
    for key in ("name", "when", "score"):
        if key not in item:
            raise ConfigurationError(f"{path}:{start}: rule is missing {key!r}")
    name = item["name"]
    label = f"rule {name!r}" if isinstance(name, str) else "rule"
    if not isinstance(item["when"], str):
        line = _find_line(lines, "when", start, end)
        raise ConfigurationError(f"{path}:{line}: {label}: 'when' must be a string")
    try:
        when = parse_condition(item["when"])
    except ConfigurationError as exc:
        line = _find_line(lines, "when", start, end)
        raise ConfigurationError(f"{path}:{line}: {label}: {exc}") from None
    describe = item.get("describe", "")
    if not isinstance(describe, str):
        line = _find_line(lines, "describe", start, end)
        raise ConfigurationError(f"{path}:{line}: {label}: describe must be a string")
    try:
        return Rule(name, when=when, score=item["score"], describe=describe)
    except ConfigurationError as exc:
        key = "name" if "name" in str(exc) and "score" not in str(exc) else "score"
        line = _find_line(lines, key, start, end)
        raise ConfigurationError(f"{path}:{line}: {exc}") from None


def _load_allow(path: Path, lines: list[str], raw: Any) -> Allowlist:
    line = _find_line(lines, "allow")
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}:{line}: [allow] must be a table")
    for key, value in raw.items():
        if key not in {"accounts", "networks", "asns"}:
            raise ConfigurationError(
                f"{path}:{_find_line(lines, key, line)}: unknown allow key {key!r} "
                "(expected accounts, networks, asns)"
            )
        if not isinstance(value, list):
            raise ConfigurationError(f"{path}:{_find_line(lines, key, line)}: {key} must be a list")
    try:
        return Allowlist(
            accounts=raw.get("accounts", []),
            networks=raw.get("networks", []),
            asns=raw.get("asns", []),
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}:{line}: allow: {exc}") from None
