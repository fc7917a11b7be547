"""The detector: per-account features, learned baselines, cross-account signals, verdicts.

:class:`Detector` turns events into :class:`~authabuse.rules.Verdict` objects. For each
account it keeps, over a short and a long window (1 h and 24 h by default), the distinct
source addresses (IPv6 counted by /64), countries and networks (ASN, or the /16 resp.
/32 prefix where the geo data knows no ASN), messages, recipients and failed logins;
and a learned baseline: the networks and countries the account usually uses, its peak
daily volume and distinct addresses. Across accounts it keeps which accounts each source
address served, which addresses took part in a detected abuse, and which accounts of
each mail domain were flagged.

Time comes from the events only, so replaying a log gives the same verdicts every time.

>>> from datetime import datetime, timedelta, timezone
>>> from authabuse.events import Submission
>>> det = Detector(geo=None)
>>> t0 = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
>>> v = det.process(Submission(time=t0, ip="192.0.2.10", account="alice@example.jp",
...                            recipient_count=1, recipients=("bob@example.org",)))
>>> v.level, v.score
(<Level.OK: 0>, 0.0)
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import heapq
import json
import math
import operator
import os
import struct
import sys
import tempfile
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from socket import inet_ntoa
from typing import Any, Protocol

from authabuse.counters import HyperLogLog
from authabuse.errors import ConfigurationError, CorruptDataError, IncompatibleError
from authabuse.events import AuthAttempt, Delivery, Event, Submission
from authabuse.rules import (
    _OPS,
    All,
    Compare,
    Finding,
    Level,
    Rule,
    RuleSet,
    Verdict,
    default_rules,
    split_feature,
    window_label,
)

__all__ = ["AccountInfo", "Detector", "DetectorConfig", "DetectorStats"]

STATE_MAGIC = "authabuse-detector-state"
STATE_VERSION = 3  # 2: accounts keep keys on learning probation; 3: recipients it mailed


class _Resolver(Protocol):
    def resolve(self, ip: IPv4Address | IPv6Address) -> Any: ...


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Tunable limits of a :class:`Detector` (windows, memory bounds, tolerances).

    * ``short_window`` / ``long_window``: seconds; features are named after them
      (``ips_1h``, ``ips_24h``). A window is epoch-aligned and covers the current and the
      previous slice of its length, i.e. between one and two window lengths of history.
    * ``max_accounts``: accounts kept; the least recently active is dropped beyond it.
    * ``idle_ttl``: an account idle this long (event time) is forgotten.
    * ``max_ips``: source addresses kept for the cross-account signals.
    * ``reorder_tolerance``: events up to this many seconds older than the newest one
      seen are processed normally (and counted); older ones are counted and skipped.
    * ``baseline_size``: networks and countries an account's baseline holds.
    * ``exact_limit``: distinct sets are exact up to this size, then HyperLogLog sketches
      of ``precision``.
    * ``abuse_ip_ttl``: how long an address of a detected abuse stays marked.
    * ``rcpt_memory``: recipients an account remembers having mailed (16-bit
      fingerprints, most recently mailed first; 0 remembers none): what tells a
      first-time recipient from a usual one.

    >>> DetectorConfig(short_window=1800).labels
    ('30m', '24h')
    """

    short_window: int = 3600
    long_window: int = 86400
    max_accounts: int = 1_000_000
    idle_ttl: float = 35 * 86400.0
    max_ips: int = 1_000_000
    reorder_tolerance: float = 3600.0
    baseline_size: int = 12
    exact_limit: int = 64
    precision: int = 12
    abuse_ip_ttl: float = 7 * 86400.0
    rcpt_memory: int = 32

    def __post_init__(self) -> None:
        for name in ("short_window", "long_window", "max_accounts", "max_ips", "exact_limit"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigurationError(f"{name} must be a positive integer, got {v!r}")
        if self.short_window >= self.long_window:
            raise ConfigurationError("short_window must be shorter than long_window")
        for name in ("idle_ttl", "reorder_tolerance", "abuse_ip_ttl"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ConfigurationError(f"{name} must be a non-negative number, got {v!r}")
        if not 1 <= self.baseline_size <= 255:
            raise ConfigurationError("baseline_size must be 1..255")
        if not 4 <= self.precision <= 18:
            raise ConfigurationError("precision must be 4..18")
        if (
            isinstance(self.rcpt_memory, bool)
            or not isinstance(self.rcpt_memory, int)
            or not 0 <= self.rcpt_memory <= 255
        ):
            raise ConfigurationError(f"rcpt_memory must be 0..255, got {self.rcpt_memory!r}")

    @property
    def labels(self) -> tuple[str, str]:
        """The feature-name labels of the short and long window."""
        return window_label(self.short_window), window_label(self.long_window)


@dataclass(slots=True)
class DetectorStats:
    """Counts of what the detector did with its input (all event-driven).

    >>> DetectorStats().events
    0
    """

    events: int = 0
    submissions: int = 0
    auth_ok: int = 0
    auth_failed: int = 0
    ignored: int = 0
    no_account: int = 0
    allowlisted: int = 0
    reordered: int = 0
    too_late: int = 0
    geo_unknown: int = 0
    evicted_accounts: int = 0
    expired_accounts: int = 0
    evicted_ips: int = 0
    flagged_accounts: int = 0

    def to_dict(self) -> dict[str, int]:
        """Return the counts as a plain mapping."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What a :class:`Detector` knows about one account: for operators reviewing an alert.

    Returned by :meth:`Detector.account_info` (``authabuse state show`` prints it).

    * ``level`` / ``flagged_at``: the highest level the account reached in its current
      long window and when it first got flagged there (``Level.OK`` / ``None`` when not
      flagged; a new long window, or :meth:`Detector.mark_benign`, clears it).
    * ``first_seen`` / ``last_seen``: its first and latest event (the detector's memory:
      an account forgotten when idle starts again).
    * ``countries`` / ``networks``: its learned baseline, most recently used first;
      networks are ``AS64500`` where the geo data knew the ASN, else the address prefix
      (``198.51.0.0/16``, ``2001:db8::/32``). ``learning``: the networks and countries on
      probation (seen on a finished day, usual once they come back on a later one).
    * ``known_addresses``: its main source addresses (IPv6 by /64), at most four.
    * ``peak_mails`` / ``peak_ips``: its learned daily peaks (decaying 10 % a day).
    * ``quiet``: the account has nothing in its windows and is kept packed (the compact
      detector's quiet state, at most 400 bytes); always false with a store.

    >>> from datetime import datetime, timezone
    >>> from authabuse.events import Submission
    >>> det = Detector(geo=None)
    >>> t = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
    >>> _ = det.process(Submission(time=t, ip="192.0.2.10", account="alice@example.jp"))
    >>> info = det.account_info("alice@example.jp")
    >>> info.level, info.first_seen.isoformat(), info.quiet
    (<Level.OK: 0>, '2024-05-01T09:00:00+00:00', False)
    >>> info.to_dict()["known_addresses"]
    []
    """

    account: str
    level: Level
    flagged_at: datetime | None
    first_seen: datetime
    last_seen: datetime
    countries: tuple[str, ...]
    networks: tuple[str, ...]
    learning: tuple[str, ...]
    known_addresses: tuple[str, ...]
    peak_mails: int
    peak_ips: int
    quiet: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-ready values (times in RFC 3339, the level by name)."""
        return {
            "account": self.account,
            "level": str(self.level),
            "flagged_at": None if self.flagged_at is None else self.flagged_at.isoformat(),
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "countries": list(self.countries),
            "networks": list(self.networks),
            "learning": list(self.learning),
            "known_addresses": list(self.known_addresses),
            "peak_mails": self.peak_mails,
            "peak_ips": self.peak_ips,
            "quiet": self.quiet,
        }


# ----------------------------------------------------------------------- distinct sets
# A distinct set is stored as: None (empty), an int/str (one member), a set (exact), or
# a HyperLogLog sketch once it outgrows ``exact_limit``.


def _d_add(container: Any, member: Any, limit: int, precision: int) -> Any:
    if container is None:
        return member
    if isinstance(container, set):
        container.add(member)
        if len(container) > limit:
            sketch = HyperLogLog(precision)
            sketch.update(m if isinstance(m, int) else m.encode() for m in container)
            return sketch
        return container
    if isinstance(container, int | str):
        if container == member:
            return container
        return {container, member}
    container.add(member if isinstance(member, int) else member.encode())
    return container


def _d_len(container: Any) -> int:
    if container is None:
        return 0
    if isinstance(container, set):
        return len(container)
    if isinstance(container, int | str):
        return 1
    return int(container.estimate())


def _d_has(container: Any, member: Any) -> bool | None:
    """Membership: True/False when exact, None when the set is a sketch."""
    if container is None:
        return False
    if isinstance(container, set):
        return member in container
    if isinstance(container, int | str):
        return bool(container == member)
    return None


def _d_len_with(container: Any, member: Any) -> int:
    """Size after adding ``member``, without changing ``container``."""
    has = _d_has(container, member)
    if has is None:
        probe = container.copy()
        probe.add(member if isinstance(member, int) else member.encode())
        return int(probe.estimate())
    return _d_len(container) + (0 if has else 1)


def _d_members(container: Any) -> list[Any]:
    if container is None:
        return []
    if isinstance(container, set):
        return list(container)
    if isinstance(container, int | str):
        return [container]
    return []


def _d_dump(container: Any) -> Any:
    if container is None or isinstance(container, int | str):
        return container
    if isinstance(container, set):
        return {"set": sorted(container, key=str)}
    return {"hll": base64.b64encode(container.to_bytes()).decode("ascii")}


def _d_load(data: Any) -> Any:
    if data is None or isinstance(data, int | str):
        return data
    if "set" in data:
        return set(data["set"])
    return HyperLogLog.from_bytes(base64.b64decode(data["hll"]))


# ----------------------------------------------------------------------------- windows


class _Win:
    """Counts of one window slice pair for one account (see ``DetectorConfig``)."""

    __slots__ = (
        "ccs",
        "cfor",
        "cnew",
        "fails",
        "ipm",
        "ips",
        "mails",
        "nets",
        "nnew",
        "raddr",
        "rcpts",
        "rdoms",
        "rnew",
        "summary",
        "uaddr",
        "unew",
        "unusual",
    )

    def __init__(self) -> None:
        self.mails = 0
        self.ips: Any = None
        self.ccs: dict[str, int] | None = None  # country -> events
        self.nets: dict[int, int] | None = None  # network key -> events
        self.nnew = 0  # networks not usual when first seen here
        self.cnew = 0  # countries not usual when first seen here
        self.cfor: set[str] | None = None  # ... those countries (reached from unusual networks)
        self.unusual = 0  # messages from networks not usual at the time
        self.ipm: dict[int, list[float]] | None = None  # ip -> [messages, first, last]
        self.rcpts = 0
        self.rdoms: Any = None
        self.raddr = 0  # recipient addresses known (a message may name none)
        self.rnew = 0  # ... of them the account had not mailed before (when sent)
        self.uaddr = 0  # recipient addresses of messages from networks not usual then
        self.unew = 0  # ... of them first-time recipients
        self.fails = 0
        self.summary: tuple[int, dict[str, Any]] | None = None  # (mails then, top lists)

    def dump(self) -> list[Any]:
        return [
            self.mails,
            _d_dump(self.ips),
            self.ccs,
            None if self.nets is None else [[k, v] for k, v in self.nets.items()],
            self.nnew,
            self.cnew,
            self.unusual,
            None if self.ipm is None else [[k, *v] for k, v in self.ipm.items()],
            self.rcpts,
            _d_dump(self.rdoms),
            self.fails,
            None if self.cfor is None else sorted(self.cfor),
            self.raddr,
            self.rnew,
            self.uaddr,
            self.unew,
        ]

    @classmethod
    def load(cls, data: list[Any]) -> _Win:
        w = cls()
        (mails, ips, ccs, nets, w.nnew, w.cnew, w.unusual, ipm, w.rcpts, rdoms, w.fails, cfor) = (
            data[:12]
        )
        w.raddr, w.rnew = int(data[12]), int(data[13])
        if len(data) > 15:  # (a state saved before 0.x kept no unusual-network counts)
            w.uaddr, w.unew = int(data[14]), int(data[15])
        w.cfor = None if cfor is None else {str(c) for c in cfor}
        w.mails = mails
        w.ips = _d_load(ips)
        w.ccs = ccs
        w.nets = None if nets is None else {int(k): int(v) for k, v in nets}
        w.ipm = None if ipm is None else {int(r[0]): [r[1], r[2], r[3]] for r in ipm}
        w.rdoms = _d_load(rdoms)
        return w


_POPULAR = 3  # accounts that learned a network before it counts as shared infrastructure
_COMMON_MIN = 200  # events before the global country shares mean anything
_NET_CAP = 4096  # networks/IPs kept with counts per window; beyond, only the sketch counts
_IPM_CAP = 4096


def _share_common(n: int, total: int, pure: bool = False) -> bool:
    """Whether a country with ``n`` of ``total`` events counts as common (5 % share).

    ``pure``: the event being judged is not recorded yet and is counted in here.
    Until ``_COMMON_MIN`` events were seen, every country counts as common: an account
    without a baseline then gets the benefit of the doubt.
    """
    if pure:
        n += 1
        total += 1
    return total < _COMMON_MIN or n * 20 >= total


def _share_home(n: int, total: int, pure: bool = False) -> bool:
    """Whether a country with ``n`` of ``total`` events is one of the provider's own.

    Unlike :func:`_share_common` it is false until the shares mean anything: it decides
    what is *not* counted as a new country, and must not hide them on a cold start.
    """
    if pure:
        n += 1
        total += 1
    return total >= _COMMON_MIN and n * 20 >= total


class _Acct:
    """Everything the detector remembers about one account (kept compact)."""

    __slots__ = (
        "counted",
        "first",
        "flag",
        "flag_t",
        "known_ips",
        "last",
        "last_usual",
        "lb",
        "lc",
        "ln",
        "peak_ips",
        "peak_mails",
        "rknown",
        "sb",
        "sc",
        "sn",
        "trial",
        "usual",
    )

    def __init__(self, t: float) -> None:
        self.first = int(t)
        self.last = t
        self.last_usual = -math.inf  # last event from a usual network
        self.usual: tuple[Any, ...] = ()  # network keys (int) and countries (str), MRU first
        self.known_ips: tuple[int, ...] = ()
        # Learning probation: networks and countries seen on a finished day but not (yet)
        # usual, each with the last long-window bucket it was seen in, MRU first.
        self.trial: tuple[tuple[Any, int], ...] = ()
        self.peak_mails = 0
        self.peak_ips = 0
        # Recipients the account mailed (16-bit fingerprints), most recently mailed first.
        self.rknown: array[int] | None = None
        self.flag = 0  # Level value reached in the current long window
        self.flag_t = 0.0
        # short window: bucket index, window covering (b-1, b), window covering b only
        self.sb = -1
        self.sc: _Win | None = None
        self.sn: _Win | None = None
        self.lb = -1
        self.lc: _Win | None = None
        self.ln: _Win | None = None
        self.counted = False  # counted among its mail domain's accounts (this object)


_TRIAL_DAYS = 7  # long-window buckets a key stays on probation
_TRIAL_MAX = 16  # keys kept on probation per account
_TRIAL_TOP = 8  # busiest new keys of each kind a finished day puts on probation


def _busiest(w: _Win, size: int) -> list[Any]:
    """Return the window's busiest networks, then its busiest countries (``size`` each)."""
    seen: list[Any] = []
    for table in (w.nets, w.ccs):
        if not table:
            continue
        if len(table) > size:
            # the size-th largest count, found on the bare counts (C); only keys at or
            # above it are ranked with the tie-break (a botnet's window holds thousands)
            floor = heapq.nlargest(size, table.values())[-1]
            items = [(k, n) for k, n in table.items() if n >= floor]
        else:
            items = list(table.items())
        items.sort(key=_by_count)
        seen.extend(k for k, _ in items[:size])
    return seen


def _by_count(kv: tuple[Any, int]) -> tuple[int, str]:
    return -kv[1], str(kv[0])


def _merged_usual(usual: tuple[Any, ...], seen: list[Any], size: int) -> tuple[Any, ...]:
    """Return ``usual`` with ``seen`` moved to the front (at most ``size`` of each kind)."""
    if not seen:
        return usual
    nets = [k for k in seen if isinstance(k, int)] + [
        k for k in usual if isinstance(k, int) and k not in seen
    ]
    ccs = [k for k in seen if isinstance(k, str)] + [
        k for k in usual if isinstance(k, str) and k not in seen
    ]
    merged = nets[:size] + ccs[:size]
    order = seen + list(usual)
    merged.sort(key=order.index)
    return tuple(merged)


def _learned(  # noqa: PLR0917 - private helper, called in two places the same way
    usual: tuple[Any, ...],
    trial: tuple[tuple[Any, int], ...],
    w: _Win,
    size: int,
    day: int,
    clean: bool,
) -> tuple[tuple[Any, ...], tuple[tuple[Any, int], ...]]:
    """Return ``(usual, trial)`` after the finished long slice ``w`` (bucket ``day``).

    An account without a baseline learns its first clean day whole. After that, a
    network or country the baseline does not hold goes on probation first, and joins the
    baseline when it comes back on a later clean day within ``_TRIAL_DAYS``: a traveller's
    hotel or a new VPN exit is learned on its second day, while a botnet's addresses,
    new every day, never teach the baseline. A flagged day (``clean`` false) teaches
    nothing, but its new keys still go on probation, so they keep counting as recent.
    """
    if not usual:
        return (_merged_usual(usual, _busiest(w, size), size) if clean else usual), trial
    since = day - _TRIAL_DAYS
    on_trial = {k: d for k, d in trial if d >= since}
    keep: list[Any] = []
    pending: list[Any] = []
    for k in _busiest(w, size):
        if k in usual:
            if clean:
                keep.append(k)
        elif isinstance(k, str) and not (w.cfor and k in w.cfor):
            continue  # a country reached only through usual networks: not a new place
        elif clean and on_trial.get(k, day) < day:
            keep.append(k)
            del on_trial[k]
        elif len(pending) < 2 * _TRIAL_TOP:
            pending.append(k)
    fresh = tuple((k, day) for k in pending)
    rest = tuple((k, d) for k, d in on_trial.items() if k not in pending)
    return _merged_usual(usual, keep, size), (fresh + rest)[:_TRIAL_MAX]


# ------------------------------------------------------------------ packed accounts
# An account with nothing in its windows any more is kept as bytes: first seen (u32),
# last seen (f64), learned peaks (2 x u32), then its usual networks (i64), usual
# countries (ASCII, 3 bytes), known addresses (2 x u64 each), the keys on learning
# probation (bucket u32, kind u8: 0 network, 1 country, key i64) and the recipients it
# mailed (u16 fingerprints).

_PACK_HEAD = struct.Struct("<IddIIBBBBB")
_TRIAL = struct.Struct("<IBq")
_Q = struct.Struct("<q")
_QQ = struct.Struct("<QQ")


def _pack(acct: _Acct) -> bytes:
    nets = [k for k in acct.usual if isinstance(k, int)]
    ccs = [k for k in acct.usual if isinstance(k, str)]
    # usual keeps MRU order across kinds; remember it as a permutation-free merge:
    # networks and countries are each kept in their own MRU order.
    out = [
        _PACK_HEAD.pack(
            acct.first & 0xFFFFFFFF,
            acct.last,
            acct.last_usual,
            min(acct.peak_mails, 0xFFFFFFFF),
            min(acct.peak_ips, 0xFFFFFFFF),
            len(nets),
            len(ccs),
            len(acct.known_ips),
            len(acct.trial),
            0 if acct.rknown is None else len(acct.rknown),
        )
    ]
    out.extend(_Q.pack(k) for k in nets)
    out.extend(k.encode("ascii", "replace")[:3].ljust(3, b"\0") for k in ccs)
    out.extend(_QQ.pack(m >> 64, m & 0xFFFFFFFFFFFFFFFF) for m in acct.known_ips)
    for k, day in acct.trial:
        if isinstance(k, str):
            code = int.from_bytes(k.encode("ascii", "replace")[:3], "little")
            out.append(_TRIAL.pack(day & 0xFFFFFFFF, 1, code))
        else:
            out.append(_TRIAL.pack(day & 0xFFFFFFFF, 0, k))
    if acct.rknown:
        out.append(struct.pack(f"<{len(acct.rknown)}H", *acct.rknown))
    return b"".join(out)


def _unpack(data: bytes) -> _Acct:
    (first, last, last_usual, peak_mails, peak_ips, n_nets, n_ccs, n_ips, n_trial, n_rk) = (
        _PACK_HEAD.unpack_from(data)
    )
    acct = _Acct(last)
    acct.first = first
    acct.last_usual = last_usual
    off = _PACK_HEAD.size
    nets = [_Q.unpack_from(data, off + 8 * i)[0] for i in range(n_nets)]
    off += 8 * n_nets
    ccs = [
        sys.intern(data[off + 3 * i : off + 3 * i + 3].rstrip(b"\0").decode("ascii"))
        for i in range(n_ccs)
    ]
    off += 3 * n_ccs
    ips = []
    for i in range(n_ips):
        hi, lo = _QQ.unpack_from(data, off + 16 * i)
        ips.append((hi << 64) | lo)
    off += 16 * n_ips
    trial: list[tuple[Any, int]] = []
    for i in range(n_trial):
        day, kind, key = _TRIAL.unpack_from(data, off + _TRIAL.size * i)
        if kind:
            cc = key.to_bytes(3, "little").rstrip(b"\0").decode("ascii")
            trial.append((sys.intern(cc), day))
        else:
            trial.append((key, day))
    off += _TRIAL.size * n_trial
    if n_rk:
        acct.rknown = array("H", struct.unpack_from(f"<{n_rk}H", data, off))
    acct.trial = tuple(trial)
    acct.usual = tuple(nets + ccs)
    acct.known_ips = tuple(ips)
    acct.peak_mails = peak_mails
    acct.peak_ips = peak_ips
    return acct


def _packed_last(data: bytes) -> float:
    return float(_PACK_HEAD.unpack_from(data)[1])


def _shared(rec: _IPRec) -> bool:
    """Tell whether an address served three accounts or more lately (VPN exit, NAT).

    Such an address is not marked as a detected abuse's, so one false alarm cannot spread.
    """
    return _union_size(rec.accts, rec.prev, None) >= 3


class _IPRec:
    """Cross-account memory of one source address."""

    __slots__ = ("abuse_until", "accts", "b", "fails", "prev")

    def __init__(self) -> None:
        self.b = -1
        self.accts: Any = None  # distinct accounts in bucket b
        self.prev: Any = None  # ... in bucket b-1
        self.fails = 0  # failed logins in the short bucket
        self.abuse_until = 0.0


@dataclass(slots=True)
class _Ctx:
    """One event, resolved: what every feature needs."""

    t: float
    time: datetime
    account: str | None
    ip: IPv4Address | IPv6Address
    member: int
    cc: str | None
    net: int
    kind: int  # 0 submission, 1 auth ok, 2 auth failed
    rcpts: int
    rdoms: tuple[str, ...]
    rfps: tuple[int, ...]  # the recipients' fingerprints (``_rcpt_key``), each once
    sb: int
    lb: int


_SUB, _AUTH_OK, _AUTH_FAIL = 0, 1, 2
_V6_MARK = 1 << 64


_RCPT_STEMS = frozenset(
    {"new_rcpts", "new_rcpt_share", "unusual_new_rcpts", "unusual_new_rcpt_share", "known_rcpts"}
)
_FAILURE_FEATURES = frozenset(
    {"auth_failed"}
    | {f"{stem}_{w}" for stem in ("auth_failures", "ip_auth_failures") for w in ("1h", "24h")}
)


def _rcpt_key(address: str) -> int:
    """Return the 16-bit fingerprint a recipient address is remembered by.

    Case and angle brackets do not matter. CRC-32 folded to 16 bits: the same on every
    process and server (a store shares it); two of an account's 32 remembered
    recipients collide with a new address 32 times in 65,536.
    """
    h = zlib.crc32(address.strip().strip("<>").lower().encode("utf-8", "surrogatepass"))
    return (h ^ (h >> 16)) & 0xFFFF


def _rcpt_keys(recipients: tuple[str, ...]) -> tuple[int, ...]:
    if not recipients:
        return ()
    if len(recipients) == 1:
        return (_rcpt_key(recipients[0]),)
    keys: dict[int, None] = {}  # each once, in order (_rcpt_key inlined: spam names many)
    for r in recipients:
        if r:
            h = zlib.crc32(r.strip().strip("<>").lower().encode("utf-8", "surrogatepass"))
            keys[(h ^ (h >> 16)) & 0xFFFF] = None
    return tuple(keys)


def _rcpt_new(known: array[int] | None, fps: tuple[int, ...]) -> int:
    """Count the fingerprints ``fps`` that are not in ``known``."""
    if not fps:
        return 0
    if not known:
        return len(fps)
    return sum(1 for k in fps if k not in known)


def _rcpt_learned(known: array[int] | None, fps: tuple[int, ...], size: int) -> array[int] | None:
    """Return ``known`` with ``fps`` moved to the front, at most ``size`` long (MRU)."""
    if not fps or size <= 0:
        return known
    if len(fps) == 1 and known and len(known) <= size and known.count(fps[0]) <= 1:
        # one recipient (the usual message), a memory without repeats: array operations
        fp = fps[0]
        if known[0] == fp:
            return known  # already the most recent: nothing moves
        out = array("H", fps)
        if fp in known:
            i = known.index(fp)
            out += known[:i]
            out += known[i + 1 :]
        else:
            out += known[: size - 1]
        return out
    out = array("H", fps[:size])
    if known:
        out.extend(k for k in known if k not in fps)
        del out[size:]
    return out


def _rcpt_warm(acct: _Acct | None, ctx: _Ctx, long_window: float) -> bool:
    """Whether the account's recipients are counted: after a long window of history.

    Before, the memory is still learning the owner's contacts and every one of them
    would count as first-time (a new customer, or every customer when a detector starts).
    """
    return acct is not None and ctx.t - acct.first >= long_window


def _rcpt_teaches(acct: _Acct, ctx: _Ctx) -> bool:
    """Whether a message (judged OK) teaches the account its recipients.

    Any message does, except on a day the account was flagged: an abuse's recipients,
    harvested addresses that never recur, would push the owner's contacts out of the
    bounded memory. (Learning only from usual networks was tried: the memory of a VPN
    user or a new customer then stays nearly empty for days, and the owner's own
    contacts look first-time.)
    """
    return acct.flag == 0


def _domain(account: str) -> str | None:
    """Return the mail domain of an account name (lower case), if it has one."""
    if "@" not in account:
        return None
    return account.rpartition("@")[2].lower() or None


def _compile(cond: Any) -> Callable[[Mapping[str, Any]], Any]:  # noqa: PLR0911, PLR0912 - one closure per case
    """Turn a condition into nested closures whose result has the condition's truth value.

    A comparison or flag alone is one closure with its operator inlined; a run of up to
    six of them inside an ``&`` or ``|`` is one closure of C calls (``_unrolled``); other
    parts are closures joined without a per-call generator or method lookup.
    """
    from authabuse.rules import All, AnyOf, Flag, Not

    if type(cond) is Compare:
        name, limit, op = cond.feature, cond.value, cond.op
        if op == ">=":
            return lambda v: v[name] >= limit
        if op == ">":
            return lambda v: v[name] > limit
        if op == "<=":
            return lambda v: v[name] <= limit
        if op == "<":
            return lambda v: v[name] < limit
        if op == "==":
            return lambda v: v[name] == limit
        return lambda v: v[name] != limit
    if type(cond) is Flag:
        flag = cond.feature
        return lambda v: v[flag]
    if type(cond) is Not:
        if type(cond.part) is Flag:
            flag = cond.part.feature
            return lambda v: not v[flag]
        inner = _compile(cond.part)
        return lambda v: not inner(v)
    if type(cond) is All or type(cond) is AnyOf:
        conj = type(cond) is All
        # runs of simple atoms become one unrolled closure each
        segments: list[Callable[[Mapping[str, Any]], Any]] = []
        run: list[tuple[_Atom, Any]] = []

        def flush() -> None:
            if len(run) == 1:
                segments.append(_compile(run[0][1]))
            elif run:
                segments.append(_unrolled([atom for atom, _ in run], conj))
            run.clear()

        for p in cond.parts:
            atom = _simple(p)
            if atom is None:
                flush()
                segments.append(_compile(p))
            else:
                if len(run) == 6:
                    flush()
                run.append((atom, p))
        flush()
        parts = tuple(segments)
        if len(parts) == 1:
            return parts[0]
        if type(cond) is All:
            if len(parts) == 2:
                a, b = parts
                return lambda v: a(v) and b(v)
            if len(parts) == 3:
                a, b, c = parts
                return lambda v: a(v) and b(v) and c(v)

            def all_of(v: Mapping[str, Any]) -> bool:
                for p in parts:  # noqa: SIM110 - a plain loop: no generator per call
                    if not p(v):
                        return False
                return True

            return all_of
        if len(parts) == 2:
            a, b = parts
            return lambda v: a(v) or b(v)

        def any_of(v: Mapping[str, Any]) -> bool:
            for p in parts:  # noqa: SIM110 - a plain loop: no generator per call
                if p(v):
                    return True
            return False

        return any_of
    return cond.evaluate  # type: ignore[no-any-return]  # a user-defined Condition subclass


_Atom = tuple[str, Callable[[Any, Any], Any], Any]


def _simple(cond: Any) -> _Atom | None:
    """Return ``(feature, operator, operand)`` for a comparison, a flag or ``~flag``.

    A flag is ``value != False`` and ``~flag`` is ``value == False``: exactly its truth
    value, as every flag feature is a ``bool`` (a test checks it on event streams).
    """
    from authabuse.rules import Flag, Not

    if type(cond) is Compare:
        return cond.feature, _OPS[cond.op], cond.value
    if type(cond) is Flag:
        return cond.feature, operator.ne, False
    if type(cond) is Not and type(cond.part) is Flag:
        return cond.part.feature, operator.eq, False
    return None


def _unrolled(atoms: list[_Atom], conj: bool) -> Callable[[Mapping[str, Any]], Any]:  # noqa: PLR0911 - one closure per size
    """Return one closure testing 2 to 6 simple atoms joined by ``&`` (or ``|``).

    The comparisons are C calls (``operator.ge``...) in one expression: no Python call
    per atom, no loop.
    """
    a = atoms + [atoms[-1]] * (6 - len(atoms))
    (n1, o1, l1), (n2, o2, l2), (n3, o3, l3), (n4, o4, l4), (n5, o5, l5), (n6, o6, l6) = a
    k = len(atoms)
    if conj:
        if k == 2:
            return lambda v: o1(v[n1], l1) and o2(v[n2], l2)
        if k == 3:
            return lambda v: o1(v[n1], l1) and o2(v[n2], l2) and o3(v[n3], l3)
        if k == 4:
            return lambda v: o1(v[n1], l1) and o2(v[n2], l2) and o3(v[n3], l3) and o4(v[n4], l4)
        if k == 5:
            return lambda v: (
                o1(v[n1], l1)
                and o2(v[n2], l2)
                and o3(v[n3], l3)
                and o4(v[n4], l4)
                and o5(v[n5], l5)
            )
        return lambda v: (
            o1(v[n1], l1)
            and o2(v[n2], l2)
            and o3(v[n3], l3)
            and o4(v[n4], l4)
            and o5(v[n5], l5)
            and o6(v[n6], l6)
        )
    if k == 2:
        return lambda v: o1(v[n1], l1) or o2(v[n2], l2)
    if k == 3:
        return lambda v: o1(v[n1], l1) or o2(v[n2], l2) or o3(v[n3], l3)
    return lambda v: any(o(v[n], x) for n, o, x in atoms)


_GUARDS_MAX = 6  # shared first conditions a plan tests up front (a table of 2**6 rule lists)
# Features whose computation walks a table or builds a set: a rule's ``&`` tests them last.
# (``domain_accounts`` is not one: the count is kept; ``domain-wave`` then stops at a large
# domain before walking its up to 1,024 flagged accounts for ``domain_flagged``.)
_COSTLY = frozenset({"domain_flagged", "recent_new_countries", "rcpt_domains"})

_Test = Callable[[Mapping[str, Any]], Any]
# what explaining a rule needs: atoms, their features, short window?, wants the address's
# accounts, the domain's flagged accounts, recipient counts
_Meta = tuple[tuple[Any, ...], tuple[str, ...], bool, bool, bool, str]
_Fetch = tuple[tuple[str, Callable[[Any], Any]], ...]


class _Plan:
    """One node of a compiled rule list (see :func:`_plan`)."""

    __slots__ = ("fetch", "guards", "rules", "table")

    def __init__(
        self,
        fetch: _Fetch,
        guards: tuple[_Test, ...],
        table: list[_Plan],
        rules: tuple[tuple[Any, _Test | None], ...],
    ) -> None:
        self.fetch = fetch  # features read for sure once the event reaches this node
        self.guards = guards  # shared first conditions of the rules left (none: a leaf)
        self.table = table  # guard bits -> the node for the rules left
        self.rules = rules  # at a leaf: the rules left, in order, with what is left to test


_PLAN_NODES = 4096  # nodes of one plan, at most (then the rules are tested one by one)


def _plan(rules: Iterable[Any], features: Mapping[str, Callable[[Any], Any]]) -> _Plan:
    """Compile a rule list into a tree of :class:`_Plan` nodes: evaluated as the rules.

    * Within a rule's ``&``, parts reading a costly feature (``_COSTLY``) go last.
    * A condition that starts several of the rules still to test (the default set
      starts 15 of its 17 rules with ``~network_usual``; after it, three go on with
      ``~country_common``) is a *guard*: tested once per event, not once per rule. The
      guards' results, as bits, pick the next node, which holds the rules that can
      still fire, each without the guard it passed; their shared first conditions are
      the next node's guards, down to a leaf: the rules left, in their order, each with
      what is left of its condition (``None``: nothing).
    * Features an event reaching a node reads for sure (the guards', or at a leaf the
      first one of every rule's test) are computed up front in one loop, not on a
      first lookup each.

    None of this changes a verdict: features are pure functions of the event and the
    state (computed once per event and kept), so ``a & b`` holds exactly when ``b & a``
    does, and a shared first part tested once gives each rule the value it would have
    computed itself. Only conditions built from the rules module's own classes are
    shared or reordered (a user-defined ``Condition`` subclass may not be pure).
    """
    from authabuse.rules import All, AnyOf, Flag, Not

    def pure(c: Any) -> bool:
        if type(c) is Compare or type(c) is Flag:
            return True
        if type(c) is Not:
            return pure(c.part)
        if type(c) is All or type(c) is AnyOf:
            return all(pure(p) for p in c.parts)
        return False

    def costly(c: Any) -> bool:
        return any(split_feature(n)[0] in _COSTLY for n in c.reads)

    def ordered(parts: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(parts) < 2 or not all(pure(p) for p in parts):
            return parts
        return tuple(p for p in parts if not costly(p)) + tuple(p for p in parts if costly(p))

    def first_read(c: Any) -> str | None:
        """Return the feature a condition reads first, whatever the values."""
        if type(c) is Compare or type(c) is Flag:
            return c.feature
        if type(c) is Not:
            return first_read(c.part)
        if type(c) is All or type(c) is AnyOf:
            return first_read(c.parts[0])
        return None

    def fetch(conds: Iterable[Any], done: set[str]) -> _Fetch:
        out: list[tuple[str, Callable[[Any], Any]]] = []
        for c in conds:
            name = first_read(c)
            fn = features.get(name) if name is not None else None
            if name is not None and fn is not None and name not in done:
                done.add(name)
                out.append((name, fn))
        return tuple(out)

    nodes = [0]

    def build(entries: list[tuple[Any, tuple[Any, ...]]], done: set[str]) -> _Plan:
        nodes[0] += 1
        uses: dict[Any, int] = {}
        for _, parts in entries:
            if parts and pure(parts[0]):
                uses[parts[0]] = uses.get(parts[0], 0) + 1
        guards = [c for c, n in uses.items() if n >= 2][:_GUARDS_MAX]
        if not guards or nodes[0] + (1 << len(guards)) > _PLAN_NODES:
            tests = [
                (r, None if not parts else parts[0] if len(parts) == 1 else All(parts))
                for r, parts in entries
            ]
            first = fetch((c for _, c in tests if c is not None), done)
            return _Plan(
                first, (), [], tuple((r, None if c is None else _compile(c)) for r, c in tests)
            )
        first = fetch(guards, done)
        table = []
        for key in range(1 << len(guards)):
            live: list[tuple[Any, tuple[Any, ...]]] = []
            for r, parts in entries:
                if parts and parts[0] in guards:
                    if key >> guards.index(parts[0]) & 1:
                        live.append((r, parts[1:]))  # the guard held
                else:
                    live.append((r, parts))
            table.append(build(live, set(done)))
        return _Plan(first, tuple(_compile(g) for g in guards), table, ())

    top = [(r, ordered(r.when.parts if type(r.when) is All else (r.when,))) for r in rules]
    return build(top, set())


def _member(ip: IPv4Address | IPv6Address) -> int:
    """Return the counting identity of an address: IPv4 itself, IPv6 its /64 (tagged)."""
    if isinstance(ip, IPv4Address):
        return int(ip)
    return (int(ip) >> 64) | _V6_MARK


def _verdict_maker() -> Callable[..., Verdict]:
    """Return a function building a :class:`Verdict` from its fields, in their order.

    What the frozen dataclass's ``__init__`` does (each slot set through
    ``object.__setattr__``), with the slots' own setters: half the cost, and a verdict
    is built for every event. A test checks it builds what ``Verdict(...)`` builds.
    """
    names = tuple(f.name for f in fields(Verdict))
    if names != (
        "account", "level", "score", "findings", "time", "ip", "action", "country", "features"
    ):  # fmt: skip
        raise ImportError(f"authabuse.rules.Verdict has other fields than expected: {names}")
    new = object.__new__
    s_account, s_level, s_score, s_findings, s_time, s_ip, s_action, s_country, s_features = (
        Verdict.__dict__[n].__set__ for n in names
    )

    def make(  # noqa: PLR0917 - the verdict's fields, positionally, for speed
        account: str | None,
        level: Level,
        score: float,
        findings: tuple[Finding, ...],
        time: datetime,
        ip: str | None,
        action: str,
        country: str | None,
        features: Mapping[str, Any],
    ) -> Verdict:
        v = new(Verdict)
        s_account(v, account)
        s_level(v, level)
        s_score(v, score)
        s_findings(v, findings)
        s_time(v, time)
        s_ip(v, ip)
        s_action(v, action)
        s_country(v, country)
        s_features(v, features)
        return v

    return make


_new_verdict = _verdict_maker()


def _ip_text(ip: IPv4Address | IPv6Address, member: int) -> str:
    """Return ``str(ip)``; an IPv4 address (``member`` is its int) without ipaddress's code."""
    if member < 0x100000000:
        return inet_ntoa(member.to_bytes(4, "big"))
    return str(ip)


def _prefix_net(ip: IPv4Address | IPv6Address) -> int:
    """Network key where no ASN is known: -(1 + /16) for IPv4, -(65537 + /32) for IPv6."""
    if ip.version == 4:
        return -(1 + (int(ip) >> 16))
    return -(65537 + (int(ip) >> 96))


def _net_text(net: int) -> str:
    if net >= 0:
        return f"AS{net}"
    if net >= -65536:
        v = -net - 1
        return f"{v >> 8}.{v & 255}.0.0/16"
    v = -net - 65537
    return f"{v >> 16:x}:{v & 0xFFFF:x}::/32"


def _member_text(m: int) -> str:
    if m & _V6_MARK:
        return str(IPv6Address((m & (_V6_MARK - 1)) << 64)) + "/64"
    return str(IPv4Address(m))


def _key_text(k: Any) -> str:
    """Return a baseline key as text: a network (``AS64500``, a prefix) or a country."""
    return _net_text(k) if isinstance(k, int) else str(k)


def _account_info(name: str, acct: _Acct, flag: int, flag_t: float, *, quiet: bool) -> AccountInfo:
    """Build the :class:`AccountInfo` of ``acct`` (a live, unpacked or store-read record)."""
    from datetime import UTC

    def when(t: float) -> datetime:
        return datetime.fromtimestamp(t, tz=UTC)

    level = Level(max(0, min(flag, int(Level.ABUSE))))
    return AccountInfo(
        account=name,
        level=level,
        flagged_at=when(flag_t) if level > Level.OK and flag_t > 0 else None,
        first_seen=when(acct.first),
        last_seen=when(acct.last),
        countries=tuple(k for k in acct.usual if isinstance(k, str)),
        networks=tuple(_net_text(k) for k in acct.usual if isinstance(k, int)),
        learning=tuple(_key_text(k) for k, _ in acct.trial if k not in acct.usual),
        known_addresses=tuple(_member_text(m) for m in acct.known_ips),
        peak_mails=int(acct.peak_mails),
        peak_ips=int(acct.peak_ips),
        quiet=quiet,
    )


class Detector:
    """Score events per account with explainable rules; learn each account's normal.

    * ``rules``: a :class:`~authabuse.rules.RuleSet` (default :func:`default_rules`).
    * ``geo``: a :class:`~authabuse.geo.GeoResolver`; ``None`` places no address (no
      countries, networks from address prefixes). Default: the embedded data.
    * ``config``: a :class:`DetectorConfig`.

    :meth:`check` is pure; :meth:`record` updates state; :meth:`process` does both and
    returns the verdict.

    >>> from datetime import datetime, timezone
    >>> from authabuse.events import Submission
    >>> det = Detector(geo=None)
    >>> e = Submission(time=datetime(2024, 5, 1, tzinfo=timezone.utc), ip="192.0.2.1",
    ...                account="a@example.jp")
    >>> det.check(e).level, det.stats.events
    (<Level.OK: 0>, 0)
    >>> _ = det.process(e); det.stats.events
    1
    """

    def __init__(
        self,
        *,
        rules: RuleSet | None = None,
        geo: Any = "default",
        store: Any = None,
        config: DetectorConfig | None = None,
    ) -> None:
        self.config = config or DetectorConfig()
        short, long = self.config.labels
        self.rules = rules if rules is not None else default_rules(short, long)
        self._check_rules(self.rules)
        if isinstance(geo, str) and geo == "default":
            geo = _default_geo()
        self.geo = geo
        self.stats = DetectorStats()
        self.clock = -math.inf  # newest event time seen
        self._accts: dict[str, _Acct | bytes] = {}  # recency order; quiet ones packed
        self._ips: dict[int, _IPRec] = {}
        self._domains: dict[str, dict[str, float]] = {}  # domain -> account -> flagged at
        self._geo_cache: dict[int, tuple[str | None, int | None]] = {}
        self._benign: set[str] = set()
        self._domain_accts: dict[str, Any] = {}  # mail domain -> distinct accounts seen
        self._domain_sizes: dict[str, int] = {}  # ... their number (until one is added)
        self._cc_counts: dict[str, int] = {}  # all accounts' events per country (decayed)
        self._net_popularity: dict[int, int] = {}  # network -> accounts that learned it
        self._cc_total = 0
        self._cc_b = -1
        # Recipient domains cost a set per window and message: kept only when a rule
        # reads them (as the store-backed state does); fixed for the detector's life.
        self._rdoms = _reads_rdoms(self.rules)
        self._sw = self.config.short_window
        self._lw = self.config.long_window
        self._swept = -1
        self._store: Any = None
        self._install_rules(self.rules)
        if store is not None:  # shared state in a CounterStore (authabuse._store_detector)
            from authabuse._store_detector import StoreState

            self._store = StoreState(self, store)
            self._install_rules(self.rules)  # planned on the store's feature table

    def _check_rules(self, rules: RuleSet) -> None:
        if not isinstance(rules, RuleSet):
            raise ConfigurationError("rules must be a RuleSet (see authabuse.rules)")
        short, long = self.config.labels
        for rule in rules.rules:  # name the rule: a rules file may hold dozens
            for name in sorted(rule.when.reads):
                _stem, label = split_feature(name)
                if label is not None and label not in (short, long):
                    raise ConfigurationError(
                        f"rule {rule.name!r} reads {name!r} but the detector's windows are "
                        f"{short} and {long}"
                    )

    def _install_rules(self, rules: RuleSet) -> None:
        """Compile ``rules`` into this detector (everything derived from them, at once)."""
        features = self._feature_table()
        if not self._rdoms:
            for name in features:
                if name.startswith("rcpt_domains_"):
                    features[name] = _not_kept(name)
        compiled = [(r, _compile(r.when)) for r in rules.rules]
        # A failed login does not show who holds the password: only rules about failed
        # logins judge it.
        failing = [(r, c) for r, c in compiled if r.when.reads & _FAILURE_FEATURES]
        planned_on = features if self._store is None else self._store.features_for(features)
        plan = _plan(rules.rules, planned_on)
        fail_plan = _plan((r for r, _ in failing), planned_on)
        actions = {level: rules.policy.action(level) for level in Level}
        by_address = frozenset(r.name for r in rules.rules if _about_address(r))
        # nothing above changed the detector: a bad rule set leaves the old one working
        self._by_address = by_address
        self.rules = rules
        self._features = features
        self._rules = compiled
        self._fail_rules = failing
        self._meta: dict[int, _Meta] = {}
        self._plan, self._fail_plan = plan, fail_plan
        self._actions = actions
        self._ok_action = actions[Level.OK]
        self._allow = rules.allow if rules.allow else None  # (frozen)

    def reload(self, *, rules: RuleSet | None = None, geo: Any = None) -> None:
        """Swap in new ``rules`` and/or ``geo`` data, keeping every account's state.

        What the detector learned (baselines, windows, cross-account memory) stays; the
        next event is judged by the new rules and placed with the new data (places
        already looked up are looked up again). Rules that read something this detector
        does not keep (recipient domains, when the rules it started with did not read
        them) raise :class:`~authabuse.errors.ConfigurationError` and change nothing:
        start a new detector for them. ``authabuse serve`` calls this on ``SIGHUP``.

        >>> from authabuse.rules import load_rules
        >>> det = Detector(geo=None)
        >>> det.reload(rules=load_rules("new.toml", text='''
        ... [[rule]]
        ... name = "many-ips"
        ... when = "ips_1h > 3"
        ... score = 5
        ... '''))
        >>> [r.name for r in det.rules.rules]
        ['many-ips']
        """
        if rules is not None:
            self._check_rules(rules)
            if _reads_rdoms(rules) and not self._rdoms:
                raise ConfigurationError(
                    "the new rules read recipient domains (rcpt_domains_*), which this "
                    "detector does not keep: start a new detector with them"
                )
            if self._store is not None:
                self._store.check_rules(rules)
            self._install_rules(rules)
        if geo is not None:
            self.geo = None if geo is False else geo
            self._geo_cache.clear()

    # ------------------------------------------------------------------ public verbs

    def check(self, event: Event) -> Verdict:
        """Return the verdict ``event`` would get, without changing any state."""
        ctx = self._context(event)
        if ctx is None or ctx.account is None:
            return self._ok(event, ctx)
        if self._store is not None:
            return self._store.check(ctx)  # type: ignore[no-any-return]  # a Verdict
        acct = self._accts.get(ctx.account)
        if isinstance(acct, bytes):
            acct = _unpack(acct)
        return self._verdict(ctx, acct, pure=True)

    def record(self, event: Event) -> None:
        """Update the state with ``event`` (counters, baselines, cross-account memory)."""
        self._process(event, want_verdict=False)

    def process(self, event: Event) -> Verdict:
        """Record ``event`` and return its verdict (what a live detector does per event)."""
        if type(event) is Delivery:  # read to complete a message, never judged
            self.stats.ignored += 1
            return _new_verdict(
                None, Level.OK, 0.0, (), event.time, None, self._ok_action, None, {}
            )
        v = self._process(event, want_verdict=True)
        assert v is not None  # noqa: S101 - want_verdict=True always returns one
        return v

    def mark_benign(self, account: str) -> None:
        """Accept the account's current activity as normal: its baseline learns it.

        The networks and countries of the account's current windows join its usual
        ones, its learned peaks rise to the current volume, and its flag is cleared.
        What the windows counted as new (networks, countries, mail from unusual
        networks, first-time recipients) no longer counts as new, the addresses only
        this account used are no longer marked as a detected abuse's, and the account no
        longer counts among its domain's flagged accounts: its next events are judged
        as they would be had this activity been usual all along, not alerted again
        for what the operator accepted. (At most ``baseline_size`` networks and
        countries are learned: of activity spread wider, the rest stays new.)
        """
        if self._store is not None:
            self._store.mark_benign(account)
            return
        acct = self._accts.get(account)
        if acct is None:
            self._benign.add(account)
            return
        if isinstance(acct, bytes):
            acct = self._accts[account] = _unpack(acct)
        for w in (acct.lc, acct.sc):
            if w is not None:
                self._learn(acct, w, force=True)
                acct.peak_mails = max(acct.peak_mails, w.mails)
                acct.peak_ips = max(acct.peak_ips, _d_len(w.ips))
        ips = self._ips
        for w in (acct.sc, acct.sn):  # where an abuse's addresses were marked from
            for m in (w.ipm or ()) if w is not None else ():
                rec = ips.get(m)
                # an address this account alone used: only its (false) alert marked it
                if (
                    rec is not None
                    and rec.abuse_until
                    and (_union_size(rec.accts, rec.prev, account) == 1)
                ):
                    rec.abuse_until = 0.0
        for w in (acct.sc, acct.sn, acct.lc, acct.ln):
            if w is not None:  # accepted: no longer new (the baseline holds it now)
                w.nnew = w.cnew = w.unusual = w.uaddr = w.unew = w.rnew = 0
        acct.flag = 0
        acct.flag_t = 0.0
        dom = _domain(account)
        flagged = self._domains.get(dom) if dom else None
        if flagged is not None:
            flagged.pop(account, None)

    def account_info(self, account: str) -> AccountInfo | None:
        """Return what the detector knows about ``account``, or ``None`` if it keeps nothing.

        Reads the state without changing it: a quiet (packed) account is unpacked into a
        temporary copy, and stays packed. With a store, one read of the account's record.
        See :class:`AccountInfo`.

        >>> Detector(geo=None).account_info("nobody@example.jp") is None
        True
        """
        if self._store is not None:
            found = self._store.account_state(account)
            if found is None:
                return None
            acct, flag, flag_t = found
            return _account_info(account, acct, flag, flag_t, quiet=False)
        kept = self._accts.get(account)
        if kept is None:
            return None
        if isinstance(kept, bytes):
            return _account_info(account, _unpack(kept), 0, 0.0, quiet=True)
        return _account_info(account, kept, kept.flag, kept.flag_t, quiet=False)

    def memory_usage(self) -> dict[str, int]:
        """Estimate the bytes held, with the number of accounts and addresses kept.

        With a store, ``bytes`` is what this process holds (its geo cache), the store's
        own figure is ``store_bytes``, and ``accounts``/``ips`` are 0 (the store keeps
        them; counting them means walking the store, see :meth:`accounts`).
        """
        size = sys.getsizeof
        if self._store is not None:
            return {
                "bytes": size(self._geo_cache) + len(self._geo_cache) * 120,
                "store_bytes": int(self._store.store.memory_usage()),
                "accounts": 0,
                "ips": 0,
            }
        total = size(self._accts) + size(self._ips) + size(self._geo_cache)
        for name, a in self._accts.items():
            total += _acct_size(name, a) if isinstance(a, _Acct) else size(name) + 40 + size(a)
        for rec in self._ips.values():
            total += size(rec) + 32 + _dsize(rec.accts) + _dsize(rec.prev)
        total += len(self._geo_cache) * 120
        return {"bytes": total, "accounts": len(self._accts), "ips": len(self._ips)}

    def __len__(self) -> int:
        if self._store is not None:
            return sum(1 for _ in self._store.accounts())
        return len(self._accts)

    def accounts(self) -> Iterator[str]:
        """Iterate over the accounts currently kept.

        With a store: the accounts with a record in it (a walk over the store's keys,
        e.g. a Redis ``SCAN``: for administration, not per event).
        """
        if self._store is not None:
            return self._store.accounts()  # type: ignore[no-any-return]  # Iterator[str]
        return iter(self._accts)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole state to ``path`` atomically (versioned, checksummed).

        The file is a one-line JSON header (magic, version, SHA-256 and length of the
        body) followed by the gzip-compressed JSON body. It is written to a temporary
        file in the same directory, flushed to disk and renamed over ``path``, so a
        crash leaves either the old or the new state, never a torn one.

        A detector on a store has nothing of its own to save (the store holds the
        state; Redis persists it itself) and raises
        :class:`~authabuse.errors.ConfigurationError`.
        """
        if self._store is not None:
            raise ConfigurationError(
                "this detector keeps its state in a counter store; there is nothing to save "
                "(persist the store itself, e.g. Redis RDB/AOF)"
            )
        body = gzip.compress(
            json.dumps(self._dump(), separators=(",", ":")).encode("utf-8"), compresslevel=5
        )
        header = {
            "magic": STATE_MAGIC,
            "version": STATE_VERSION,
            "sha256": hashlib.sha256(body).hexdigest(),
            "length": len(body),
        }
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(header).encode("ascii") + b"\n")
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        rules: RuleSet | None = None,
        geo: Any = "default",
        config: DetectorConfig | None = None,
    ) -> Detector:
        """Restore a detector saved by :meth:`save`; refuse corrupt or foreign files.

        Raises :class:`~authabuse.errors.CorruptDataError` for a damaged or truncated
        file and :class:`~authabuse.errors.IncompatibleError` for a file written by
        another state version or with other windows than ``config``.
        """
        target = Path(path)
        try:
            raw = target.read_bytes()
        except OSError as exc:
            raise CorruptDataError(f"cannot read state file {target}: {exc.strerror}") from None
        head, sep, body = raw.partition(b"\n")
        try:
            header = json.loads(head)
            if not isinstance(header, dict) or header.get("magic") != STATE_MAGIC:
                raise ValueError
        except ValueError:
            raise CorruptDataError(f"{target} is not an authabuse detector state file") from None
        if header.get("version") != STATE_VERSION:
            raise IncompatibleError(
                f"{target} holds detector state version {header.get('version')!r}; this "
                f"authabuse reads version {STATE_VERSION} (start a fresh state)"
            )
        if not sep or len(body) != header.get("length"):
            raise CorruptDataError(
                f"{target} is truncated ({len(body)} of {header.get('length')} bytes)"
            )
        if hashlib.sha256(body).hexdigest() != header.get("sha256"):
            raise CorruptDataError(f"{target} is corrupt (checksum mismatch)")
        try:
            data = json.loads(gzip.decompress(body))
        except (OSError, EOFError, ValueError) as exc:
            raise CorruptDataError(f"{target} is corrupt: {exc}") from None
        try:
            saved = DetectorConfig(**data["config"])
        except (TypeError, KeyError, ConfigurationError) as exc:
            raise CorruptDataError(f"{target}: bad configuration in state: {exc}") from None
        if config is not None and (
            config.short_window != saved.short_window or config.long_window != saved.long_window
        ):
            raise IncompatibleError(
                f"{target} was written with windows {saved.labels}, not {config.labels}"
            )
        det = cls(rules=rules, geo=geo, config=config or saved)
        try:
            det._restore(data)
        except IncompatibleError as exc:  # e.g. a sketch written with an older hash
            raise IncompatibleError(f"{target}: {exc}") from None
        except (TypeError, KeyError, ValueError, IndexError, struct.error) as exc:
            raise CorruptDataError(f"{target}: malformed state: {exc!r}") from None
        return det

    def _dump(self) -> dict[str, Any]:
        accounts: list[Any] = []
        for name, acct in self._accts.items():
            if isinstance(acct, bytes):
                accounts.append([name, base64.b64encode(acct).decode("ascii")])
                continue
            wins = [acct.sc, acct.sn, acct.lc, acct.ln]
            accounts.append(
                [
                    name,
                    base64.b64encode(_pack(acct)).decode("ascii"),
                    acct.flag,
                    acct.flag_t,
                    acct.sb,
                    acct.lb,
                    [None if w is None else w.dump() for w in wins],
                ]
            )
        ips = [
            [k, r.b, _d_dump(r.accts), _d_dump(r.prev), r.fails, r.abuse_until]
            for k, r in self._ips.items()
        ]
        return {
            "config": asdict(self.config),
            "clock": self.clock if math.isfinite(self.clock) else None,
            "swept": self._swept,
            "stats": self.stats.to_dict(),
            "accounts": accounts,
            "ips": ips,
            "domains": self._domains,
            "domain_accounts": {d: _d_dump(c) for d, c in self._domain_accts.items()},
            "benign": sorted(self._benign),
            "countries": [self._cc_b, self._cc_counts],
            "popular": [[k, v] for k, v in self._net_popularity.items()],
        }

    def _restore(self, data: dict[str, Any]) -> None:
        clock = data["clock"]
        self.clock = -math.inf if clock is None else float(clock)
        self._swept = int(data["swept"])
        for key, value in data["stats"].items():
            if hasattr(self.stats, key):
                setattr(self.stats, key, int(value))
        for item in data["accounts"]:
            name = item[0]
            if not isinstance(name, str):
                raise TypeError("account name")
            packed = base64.b64decode(item[1], validate=True)
            if len(item) == 2:
                _unpack(packed)  # validate
                self._accts[name] = packed
                continue
            acct = _unpack(packed)
            acct.flag, acct.flag_t, acct.sb, acct.lb = (
                int(item[2]),
                float(item[3]),
                int(item[4]),
                int(item[5]),
            )
            acct.sc, acct.sn, acct.lc, acct.ln = (
                None if w is None else _Win.load(w) for w in item[6]
            )
            self._accts[name] = acct
        for k, b, accts, prev, fails, until in data["ips"]:
            rec = _IPRec()
            rec.b, rec.accts, rec.prev = int(b), _d_load(accts), _d_load(prev)
            rec.fails, rec.abuse_until = int(fails), float(until)
            self._ips[int(k)] = rec
        self._domains = {
            str(d): {str(a): float(t) for a, t in m.items()} for d, m in data["domains"].items()
        }
        self._benign = {str(a) for a in data["benign"]}
        self._domain_accts = {str(d): _d_load(c) for d, c in data["domain_accounts"].items()}
        self._domain_sizes.clear()
        cc_b, ccs = data["countries"]
        self._cc_b = int(cc_b)
        self._cc_counts = {str(k): int(v) for k, v in ccs.items()}
        self._cc_total = sum(self._cc_counts.values())
        self._net_popularity = {int(k): int(v) for k, v in data["popular"]}

    # -------------------------------------------------------------------- internals

    def _ok(self, event: Event, ctx: _Ctx | None) -> Verdict:
        if ctx is not None:
            return _new_verdict(
                ctx.account,
                Level.OK,
                0.0,
                (),
                ctx.time,
                _ip_text(ctx.ip, ctx.member),
                self._ok_action,
                ctx.cc,
                {},
            )
        if type(event) is Delivery:  # read to complete a message, never judged
            return _new_verdict(
                None, Level.OK, 0.0, (), event.time, None, self._ok_action, None, {}
            )
        account = getattr(event, "account", None)
        ip = getattr(event, "ip", None)
        return Verdict(
            account=account,
            level=Level.OK,
            score=0.0,
            findings=(),
            time=event.time,
            ip=None if ip is None else str(ip),
            action=self._ok_action,
            country=None,
        )

    def _process(  # noqa: PLR0911, PLR0912 - the gate both state backends share stays one function
        self, event: Event, *, want_verdict: bool
    ) -> Verdict | None:
        ctx = self._context(event)
        if ctx is None:
            return self._ok(event, None) if want_verdict else None
        st = self.stats
        t = ctx.t
        if t < self.clock:
            if t < self.clock - self.config.reorder_tolerance:
                st.too_late += 1
                return self._ok(event, ctx) if want_verdict else None
            st.reordered += 1
        else:
            if int(t // self._sw) != self._swept:
                self._sweep(t)
            self.clock = t
        st.events += 1
        if ctx.kind == _SUB:
            st.submissions += 1
        elif ctx.kind == _AUTH_OK:
            st.auth_ok += 1
        else:
            st.auth_failed += 1
        allow = self._allow
        if allow is not None and (
            (ctx.account is not None and ctx.account in allow.accounts)
            or allow.allows_ip(ctx.ip, ctx.net if ctx.net >= 0 else None)
        ):
            st.allowlisted += 1
            return self._ok(event, ctx) if want_verdict else None
        if self._store is not None:
            return self._store.process(ctx, event, want_verdict=want_verdict)  # type: ignore[no-any-return]  # a Verdict or None
        self._record_ip(ctx)
        self._record_country(ctx)
        if ctx.account is None:
            st.no_account += 1
            return self._ok(event, ctx) if want_verdict else None
        acct = self._record_account(ctx)
        if not want_verdict and not self._rules:
            self._learn_rcpts(acct, ctx)
            return None
        v = self._verdict(ctx, acct, pure=False)
        if v.level > Level.OK:
            self._flagged(ctx, acct, v)
        else:
            self._learn_rcpts(acct, ctx)
        return v if want_verdict else None

    def _learn_rcpts(self, acct: _Acct, ctx: _Ctx) -> None:
        """Remember the message's recipients if it came from the owner (``_rcpt_teaches``)."""
        if ctx.rfps and acct.flag == 0:  # _rcpt_teaches, inlined
            acct.rknown = _rcpt_learned(acct.rknown, ctx.rfps, self.config.rcpt_memory)

    def _context(self, event: Event) -> _Ctx | None:
        if isinstance(event, Submission):
            kind = _SUB
            rdoms = event.recipient_domains() if self._rdoms else ()
            recipients = event.recipients
            if len(recipients) == 1:  # the usual message: _rcpt_key inlined
                h = zlib.crc32(
                    recipients[0].strip().strip("<>").lower().encode("utf-8", "surrogatepass")
                )
                rfps: tuple[int, ...] = ((h ^ (h >> 16)) & 0xFFFF,)
            else:
                rfps = _rcpt_keys(recipients)
            rcpts = (
                event.recipient_count
                if event.recipient_count is not None
                else len(event.recipients)
            )
        elif isinstance(event, AuthAttempt):
            kind = _AUTH_OK if event.succeeded else _AUTH_FAIL
            rdoms = ()
            rfps = ()
            rcpts = 0
        else:
            self.stats.ignored += 1
            return None
        ip = event.ip
        member = int(ip) if isinstance(ip, IPv4Address) else (int(ip) >> 64) | _V6_MARK  # _member
        hit = self._geo_cache.get(member)
        cc, asn = hit if hit is not None else self._locate(ip, member)
        time = event.time
        t = time.timestamp()
        return _Ctx(
            t,
            time,
            event.account,
            ip,
            member,
            cc,
            asn if asn is not None else _prefix_net(ip),
            kind,
            rcpts,
            rdoms,
            rfps,
            int(t // self._sw),
            int(t // self._lw),
        )

    def _locate(self, ip: IPv4Address | IPv6Address, member: int) -> tuple[str | None, int | None]:
        """Place an address (cached by its counting identity: IPv4 itself, IPv6 its /64)."""
        key = member
        hit = self._geo_cache.get(key)
        if hit is not None:
            return hit
        cc: str | None = None
        asn: int | None = None
        if self.geo is not None:
            loc = self.geo.resolve(ip)
            if loc is not None:
                cc = loc.country
                asn = loc.asn
        if cc is None:
            self.stats.geo_unknown += 1
        if len(self._geo_cache) >= 262144:
            self._geo_cache.clear()
        hit = (sys.intern(cc) if cc else None, asn)
        self._geo_cache[key] = hit
        return hit

    # ------------------------------------------------------------------ recording

    def _record_ip(self, ctx: _Ctx) -> None:
        rec = self._ips.get(ctx.member)
        if rec is None:
            if len(self._ips) >= self.config.max_ips:
                self._evict_ips()
            rec = self._ips[ctx.member] = _IPRec()
        lb = ctx.lb
        if rec.b != lb and lb > rec.b:
            del self._ips[ctx.member]  # keep dict order = order of last bucket
            self._ips[ctx.member] = rec
            rec.prev = rec.accts if rec.b == lb - 1 else None
            rec.accts = None
            rec.b = lb
            rec.fails = 0
        if ctx.kind == _AUTH_FAIL:
            rec.fails += 1
        elif ctx.account is not None:
            accts = rec.accts
            if accts is None:
                rec.accts = ctx.account
            elif accts != ctx.account:  # (a set never equals a name)
                rec.accts = _d_add(accts, ctx.account, 16, 10)
            # the account's mail domain counts it in _record_account

    def _count_in_domain(self, name: str) -> None:
        """Count an account among its mail domain's accounts (``domain_accounts``)."""
        dom = _domain(name)
        if dom is not None:
            domains = self._domain_accts
            known = domains.get(dom)
            grown = _d_add(known, name, 64, 10)
            if grown is not known:
                domains[dom] = grown
            self._domain_sizes.pop(dom, None)

    def _record_country(self, ctx: _Ctx) -> None:
        if ctx.kind == _AUTH_FAIL or ctx.cc is None:
            return
        if ctx.lb > self._cc_b:
            if self._cc_b >= 0:  # halve the weights once per long window: a decayed share
                self._cc_counts = {k: v // 2 for k, v in self._cc_counts.items() if v > 1}
                self._cc_total = sum(self._cc_counts.values())
                pop = self._net_popularity
                self._net_popularity = {k: v - v // 4 for k, v in pop.items() if v > 1}
            self._cc_b = ctx.lb
        self._cc_counts[ctx.cc] = self._cc_counts.get(ctx.cc, 0) + 1
        self._cc_total += 1

    def _domain_size(self, account: str | None, pending: bool) -> int:
        dom = _domain(account) if account else None
        if dom is None:
            return 0
        known = self._domain_accts.get(dom)
        if pending:
            return _d_len_with(known, account)
        n = self._domain_sizes.get(dom)
        if n is None:  # (a sketch's estimate): kept until an account is added
            n = self._domain_sizes[dom] = _d_len(known)
        return n

    def _country_common(self, cc: str | None, pure: bool) -> bool:
        if cc is None:
            return False
        n, total = self._cc_counts.get(cc, 0), self._cc_total
        if pure:  # as _share_common
            n += 1
            total += 1
        return total < _COMMON_MIN or n * 20 >= total

    def _country_home(self, cc: str | None, pure: bool) -> bool:
        """Whether ``cc`` is one of the provider's own countries (see ``_share_home``)."""
        return cc is not None and _share_home(self._cc_counts.get(cc, 0), self._cc_total, pure)

    def _evict_ips(self) -> None:
        # Drop the oldest quarter (dicts keep insertion order; refreshed records move back).
        n = max(1, len(self._ips) // 4)
        for key in list(self._ips)[:n]:
            del self._ips[key]
        self.stats.evicted_ips += n

    def _record_account(self, ctx: _Ctx) -> _Acct:
        name = ctx.account
        assert name is not None  # noqa: S101 - callers check
        accts = self._accts
        found = accts.get(name)
        acct = _unpack(found) if isinstance(found, bytes) else found
        cfg = self.config
        if acct is not None and ctx.t - acct.last > cfg.idle_ttl:
            del accts[name]
            self.stats.expired_accounts += 1
            acct = None
        if acct is None:
            if len(accts) >= cfg.max_accounts:
                self._evict_accounts()
            acct = accts[name] = _Acct(ctx.t)
            if name in self._benign:
                self._benign.discard(name)
        elif ctx.t >= acct.last or found is not acct:
            # Keep dict order = recency order, for eviction of the least recently active.
            del accts[name]
            accts[name] = acct
        if ctx.t > acct.last:  # noqa: PLR1730 - a branch, not a call, per event
            acct.last = ctx.t
        self._roll(acct, ctx)
        usual = acct.usual
        net_usual = ctx.net in usual
        # A country reached through a usual network (a VPN provider's or a cloud's exits
        # in several countries) is not a new place for the account.
        # Nor is the provider's own country (common: the domestic rules judge it).
        cc_usual = (
            ctx.cc is None
            or ctx.cc in usual
            or net_usual
            or self._net_popularity.get(ctx.net, 0) >= _POPULAR
            or self._country_home(ctx.cc, False)
        )
        if net_usual and ctx.kind != _AUTH_FAIL and ctx.t > acct.last_usual:
            acct.last_usual = ctx.t
        rfps = ctx.rfps  # (_rcpt_warm inlined; without recipients rnew is not read)
        rnew = _rcpt_new(acct.rknown, rfps) if rfps and ctx.t - acct.first >= self._lw else -1
        self._add(acct, ctx, net_usual, cc_usual, rnew)
        if not acct.counted and ctx.kind != _AUTH_FAIL:
            # A domain's distinct set of accounts only grows (never trimmed; a sketch
            # when it outgrows its exact set keeps every member), and adding is
            # idempotent: an account object counts itself once, not per event.
            self._count_in_domain(name)
            acct.counted = True
        return acct

    def _sweep(self, t: float) -> None:
        """Pack accounts whose windows are all past; forget accounts idle too long.

        Runs when the event clock enters a new short window. Accounts are kept in order
        of last activity, so the walk stops at the first one still active.
        """
        self._swept = int(t // self._sw)
        lb = int(t // self._lw)
        idle = self.config.idle_ttl
        stale: list[str] = []
        expired: list[str] = []
        for name, acct in self._accts.items():
            if isinstance(acct, bytes):
                if t - _packed_last(acct) > idle:
                    expired.append(name)
                continue
            if acct.lb >= lb - 1 or t - acct.last < self.config.reorder_tolerance:
                break
            stale.append(name)
        for name in expired:
            del self._accts[name]
        self.stats.expired_accounts += len(expired)
        for name in stale:
            acct = self._accts[name]
            assert isinstance(acct, _Acct)  # noqa: S101 - collected above
            if t - acct.last > idle:
                del self._accts[name]
                self.stats.expired_accounts += 1
                continue
            if acct.ln is not None:
                self._learn(acct, acct.ln, clean=acct.flag == 0)
            if acct.ln is not None:
                acct.peak_mails = max(int(acct.peak_mails * 0.9), acct.ln.mails)
                acct.peak_ips = max(int(acct.peak_ips * 0.9), _d_len(acct.ln.ips))
            self._accts[name] = _pack(acct)
        self._sweep_ips(t, lb)

    def _sweep_ips(self, t: float, lb: int) -> None:
        """Forget addresses not seen in the last two long buckets (unless marked)."""
        ips = self._ips
        dead = []
        for key, rec in ips.items():  # oldest long bucket first: stop at the first kept
            if rec.b >= lb - 1:
                break
            if rec.abuse_until <= t:  # an address of a detected abuse stays until its TTL
                dead.append(key)
        for key in dead:
            del ips[key]

    def _evict_accounts(self) -> None:
        n = max(1, len(self._accts) // 100)
        for key in list(self._accts)[:n]:
            del self._accts[key]
        self.stats.evicted_accounts += n

    def _roll(self, acct: _Acct, ctx: _Ctx) -> None:
        """Move the account's windows to the event's buckets; learn from finished days."""
        if acct.lb != ctx.lb:
            if acct.lb >= 0 and ctx.lb > acct.lb:
                done = acct.ln  # the finished long bucket alone
                if done is not None:
                    self._learn(acct, done, clean=acct.flag == 0)
                    acct.peak_mails = max(int(acct.peak_mails * 0.9), done.mails)
                    acct.peak_ips = max(int(acct.peak_ips * 0.9), _d_len(done.ips))
                if ctx.lb == acct.lb + 1:
                    acct.lc, acct.ln = acct.ln, _Win()
                else:
                    acct.lc, acct.ln = _Win(), _Win()
                acct.flag = 0
                acct.lb = ctx.lb
            elif acct.lb < 0:
                acct.lc, acct.ln, acct.lb = _Win(), _Win(), ctx.lb
            # else: a reordered event from the previous day: counted in the current windows
        if acct.sb != ctx.sb:
            if acct.sb >= 0 and ctx.sb == acct.sb + 1:
                acct.sc, acct.sn = acct.sn, _Win()
                acct.sb = ctx.sb
            elif acct.sb < 0 or ctx.sb > acct.sb:
                acct.sc, acct.sn, acct.sb = _Win(), _Win(), ctx.sb
        if acct.sc is None or acct.sn is None or acct.lc is None or acct.ln is None:
            acct.sc = acct.sc or _Win()
            acct.sn = acct.sn or _Win()
            acct.lc = acct.lc or _Win()
            acct.ln = acct.ln or _Win()

    def _learn(self, acct: _Acct, w: _Win, *, clean: bool = True, force: bool = False) -> None:
        """Fold a finished day's networks, countries and main addresses into the baseline.

        ``clean`` is false for a day on which the account was flagged (nothing is learned,
        its new keys go on probation); ``force`` (an operator's ``mark_benign``) learns
        everything at once.
        """
        before, tried = acct.usual, acct.trial
        size = self.config.baseline_size
        if force:
            acct.usual = _merged_usual(before, _busiest(w, size), size)
        else:
            acct.usual, acct.trial = _learned(before, tried, w, size, acct.lb, clean)
        if not clean:
            return
        # A network counts towards popularity once per account, when the account starts
        # using it on a clean day (on probation or learned at once).
        popular = self._net_popularity
        known = set(before)
        known.update(k for k, _ in tried)
        for k in acct.usual:
            if isinstance(k, int) and k not in known:
                popular[k] = popular.get(k, 0) + 1
                known.add(k)
        for k, _ in acct.trial:
            if isinstance(k, int) and k not in known:
                popular[k] = popular.get(k, 0) + 1
        if w.ipm:
            top = [k for k, _ in sorted(w.ipm.items(), key=lambda kv: -kv[1][0])[:4]]
            acct.known_ips = tuple(top + [k for k in acct.known_ips if k not in top])[:4]
        elif isinstance(w.ips, int):
            acct.known_ips = tuple([w.ips] + [k for k in acct.known_ips if k != w.ips])[:4]

    def _add(  # noqa: PLR0912, PLR0915 - the per-event hot path stays one flat function, for speed
        self, acct: _Acct, ctx: _Ctx, net_usual: bool, cc_usual: bool, rnew: int
    ) -> None:
        """Count the event in the account's four windows (short and long, both slices)."""
        kind = ctx.kind
        wins: tuple[_Win, _Win, _Win, _Win] = (acct.sc, acct.sn, acct.lc, acct.ln)  # type: ignore[assignment]  # _roll created them
        if kind == _AUTH_FAIL:
            for w in wins:
                w.fails += 1
            return
        cfg = self.config
        limit = cfg.exact_limit
        m, net, cc = ctx.member, ctx.net, ctx.cc
        sub = kind == _SUB
        rdoms = ctx.rdoms
        raddr = len(ctx.rfps) if ctx.rfps and rnew >= 0 else 0
        for w in wins:
            # distinct addresses: a member, a small exact set, then a sketch (_d_add)
            ips = w.ips
            if ips is None:
                w.ips = m
            elif type(ips) is int:
                if ips != m:
                    w.ips = {ips, m}
            elif type(ips) is set and len(ips) < limit:
                ips.add(m)
            else:
                w.ips = _d_add(ips, m, limit, cfg.precision)
            nets = w.nets
            if nets is None:
                w.nets = {net: 1}
                if not net_usual:
                    w.nnew += 1
            else:
                n = nets.get(net)
                if n is None:
                    if len(nets) < _NET_CAP:
                        nets[net] = 1
                    if not net_usual:
                        w.nnew += 1
                else:
                    nets[net] = n + 1
            if cc is not None:
                ccs = w.ccs
                c = None if ccs is None else ccs.get(cc)
                if c is None:
                    if ccs is None:
                        w.ccs = {cc: 1}
                    else:
                        ccs[cc] = 1
                    if not cc_usual:
                        w.cnew += 1
                        if w.cfor is None:
                            w.cfor = {cc}
                        else:
                            w.cfor.add(cc)
                else:
                    ccs[cc] = c + 1  # type: ignore[index]  # c is not None: ccs is a dict
            if sub:
                w.mails += 1
                if not net_usual:
                    w.unusual += 1
                w.rcpts += ctx.rcpts
                for d in rdoms:
                    w.rdoms = _d_add(w.rdoms, d, limit, cfg.precision)
                if raddr:
                    w.raddr += raddr
                    w.rnew += rnew
                    if not net_usual:
                        w.uaddr += raddr
                        w.unew += rnew
        if not sub:
            return
        t = ctx.t
        for w in wins[:2]:  # the short windows keep per-address runs
            ipm = w.ipm
            if ipm is None:
                w.ipm = {m: [1, t, t]}
            else:
                rec = ipm.get(m)
                if rec is None:
                    if len(ipm) < _IPM_CAP:
                        ipm[m] = [1, t, t]
                else:
                    rec[0] += 1
                    if t > rec[2]:  # noqa: PLR1730 - a branch, not a call, per event
                        rec[2] = t

    def _flagged(self, ctx: _Ctx, acct: _Acct, v: Verdict) -> None:
        level = int(v.level)
        if acct.flag == 0:
            self.stats.flagged_accounts += 1
            acct.flag_t = ctx.t
        first_abuse = level >= Level.ABUSE > acct.flag
        acct.flag = max(acct.flag, level)
        marks = self._abuse_marks(ctx, acct, v, self._country_common)
        if marks:
            until = ctx.t + self.config.abuse_ip_ttl
            rec = self._ips.get(ctx.member)
            if rec is not None and not _shared(rec):
                rec.abuse_until = until
            if first_abuse and marks > 1:
                self._mark_abuse_ips(acct, until)
        account = ctx.account
        assert account is not None  # noqa: S101 - callers check
        dom = _domain(account)
        if dom:
            flagged = self._domains.setdefault(dom, {})
            flagged[account] = ctx.t
            if len(flagged) > 1024:
                oldest = min(flagged, key=flagged.__getitem__)
                del flagged[oldest]

    def _abuse_marks(
        self, ctx: _Ctx, acct: _Acct, v: Verdict, common: Callable[[str | None, bool], Any]
    ) -> int:
        """Say which addresses a flag marks as a detected abuse's (0, 1 or 2).

        Only addresses that sent this account's mail from networks it does not use are
        marked, never the owner's own: this event's (1), and when the account has just
        been found abusive, those of the abuse so far, the short window's (2). An account
        without a baseline cannot tell its owner's addresses from the abuse's: only
        addresses in foreign countries are marked then, and in the home country only
        this event's, when a rule about the address's own sending (``burst``) flagged it.
        ``common`` is the backend's ``_country_common``.
        """
        if int(v.level) < Level.ABUSE or ctx.net in acct.usual:
            return 0
        if acct.usual or not common(ctx.cc, False):
            return 2
        by_address = self._by_address
        return int(bool(by_address) and any(f.rule in by_address for f in v.findings))

    def _mark_abuse_ips(self, acct: _Acct, until: float) -> None:
        """Mark the abuse so far as a detected abuse's addresses.

        Those are the addresses that sent the account's mail in the short window from
        networks it does not use.
        """
        w = acct.sc
        if w is None or not w.ipm:
            return
        usual, known, ips, cache = acct.usual, acct.known_ips, self._ips, self._geo_cache
        for member in w.ipm:
            rec = ips.get(member)
            hit = cache.get(member)
            if rec is None or hit is None or member in known or _shared(rec):
                continue
            net = hit[1]
            if net is None:
                if member & _V6_MARK:
                    net = -(65537 + ((member & (_V6_MARK - 1)) >> 32))
                else:
                    net = -(1 + (member >> 16))
            if net not in usual and (usual or not self._country_common(hit[0], False)):
                rec.abuse_until = max(rec.abuse_until, until)

    # ------------------------------------------------------------------- features

    def _verdict(self, ctx: _Ctx, acct: _Acct | None, *, pure: bool, state: Any = None) -> Verdict:
        # ``state``: the store backend's per-event stand-in for this detector's tables
        view = _View(self if state is None else state, ctx, acct, pure)
        findings: list[Finding] = []
        score = 0.0
        node = self._fail_plan if ctx.kind == _AUTH_FAIL else self._plan
        while True:
            # (a feature another one computed on the way is computed again: same value)
            for name, fn in node.fetch:
                view[name] = fn(view)
            guards = node.guards
            if not guards:
                break
            if len(guards) == 1:
                node = node.table[1 if guards[0](view) else 0]
                continue
            key = 0
            bit = 1
            for guard in guards:
                if guard(view):
                    key |= bit
                bit <<= 1
            node = node.table[key]
        for rule, test in node.rules:
            if test is None or test(view):
                score += rule.score
                findings.append(self._finding(rule, view))
        if findings:
            level = self.rules.policy.level(score)
            return _new_verdict(
                ctx.account,
                level,
                float(score),
                tuple(findings),
                ctx.time,
                _ip_text(ctx.ip, ctx.member),
                self._actions[level],
                ctx.cc,
                view,
            )
        return _new_verdict(
            ctx.account,
            Level.OK,
            float(score),
            (),
            ctx.time,
            _ip_text(ctx.ip, ctx.member),
            self._ok_action,
            ctx.cc,
            view,
        )

    def _rule_meta(self, rule: Any) -> _Meta:
        """Return what explaining ``rule`` needs that does not change: computed once."""
        meta = self._meta.get(id(rule))
        if meta is None:
            reads = rule.when.reads
            windows = {split_feature(n)[1] for n in reads}
            short_label = self.config.labels[0]
            is_short = short_label in windows or (None in windows and len(windows) == 1)
            atoms = tuple(rule.when.atoms())
            meta = (
                atoms,
                tuple(dict.fromkeys(getattr(atom, "feature", "") for atom in atoms)),
                bool(is_short),
                any(n.startswith("ip_accounts") for n in reads),
                any(n.startswith("domain_flagged") for n in reads),
                _rcpt_scope({split_feature(n)[0] for n in reads}),
            )
            self._meta[id(rule)] = meta
        return meta

    def _finding(self, rule: Any, view: _View) -> Finding:
        meta = self._meta.get(id(rule)) or self._rule_meta(rule)
        # Everything the explanation needs that later events could change is fixed now:
        # the values of the features it shows (kept in the view, which never changes a
        # value once computed) and the context the view copies; the text is rendered
        # only if someone reads it.
        for name in meta[1]:
            view[name]  # computes and keeps the value
        context = view.context(meta[2], meta[3], meta[4], meta[5])
        return Finding(
            rule.name,
            float(rule.score),
            render=functools.partial(_render, rule, meta[0], view, context),
        )

    def _feature_table(self) -> dict[str, Callable[[_View], Any]]:
        short, long = self.config.labels
        table: dict[str, Callable[[_View], Any]] = {}
        for label, is_short in ((short, True), (long, False)):
            for stem, fn in _WINDOW_FNS.items():
                table[f"{stem}_{label}"] = _bind(fn, is_short)
        table.update(_PLAIN_FNS)
        return table


def _reads_rdoms(rules: RuleSet) -> bool:
    return any(split_feature(n)[0] == "rcpt_domains" for n in rules.reads)


def _rcpt_scope(stems: set[str]) -> str:
    """Say which recipient counts explain a rule reading ``stems``.

    ``"all"`` (the account's), ``"unusual"`` (mail from unusual networks only, when the
    rule reads only those) or ``""`` (none).

    >>> _rcpt_scope({"unusual_new_rcpts", "ips"}), _rcpt_scope({"new_rcpts", "known_rcpts"})
    ('unusual', 'all')
    """
    if not stems & _RCPT_STEMS:
        return ""
    if stems & {"new_rcpts", "new_rcpt_share"}:
        return "all"
    return "unusual" if stems & {"unusual_new_rcpts", "unusual_new_rcpt_share"} else "all"


def _not_kept(name: str, holder: str = "detector") -> Callable[[Any], Any]:
    """Return a feature function refusing ``name``: a feature the ``holder`` does not keep."""

    def refuse(view: Any) -> Any:
        raise ConfigurationError(
            f"{name} is not kept by this {holder}: no rule reads it (add a rule that does, "
            f"and the {holder} keeps it)"
        )

    return refuse


def _bind(fn: Callable[[bool, _View], Any], is_short: bool) -> Callable[[_View], Any]:
    return functools.partial(fn, is_short)  # no Python frame of its own


_NO_BASELINE: tuple[tuple[Any, ...], tuple[tuple[Any, int], ...]] = ((), ())


def _render(
    rule: Any, atoms: tuple[Any, ...], view: _View, context: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Render a finding's detail and evidence from what ``Detector._finding`` fixed."""
    parts: list[str] = []
    limits: dict[str, Any] = {}
    shown: dict[str, int] = {}  # feature -> its place in parts (a rule may test it twice)
    for atom in atoms:
        if isinstance(atom, Compare):
            value = view[atom.feature]
            # A condition that does not hold (the other side of an ``|``, or one under
            # ``~``) is shown as such, so no one reads it as a reason that was met.
            held = "limit" if atom.evaluate(view) else "not"
            test = f"{held} {atom.op} {_fmt(atom.value)}"
            at = shown.get(atom.feature)
            if at is not None:  # one feature, one value: its limits side by side
                parts[at] = f"{parts[at][:-1]}; {test})"
                limits[atom.feature].setdefault("also", []).append(
                    {"op": atom.op, "limit": atom.value}
                )
                continue
            shown[atom.feature] = len(parts)
            parts.append(f"{atom.feature}={_fmt(value)} ({test})")
            limits[atom.feature] = {"value": value, "op": atom.op, "limit": atom.value}
        else:
            name = getattr(atom, "feature", "")
            limits[name] = bool(view[name])
    ip, cc = view.ctx.ip, view.ctx.cc
    summary = view.geo_summary(context.pop("_short", True))
    usual = context.get("usual")
    if usual is not None:
        context["usual"] = " ".join(k if isinstance(k, str) else _net_text(k) for k in usual[:8])
    if "ip_accounts" in context:
        context["ip_accounts"] = sorted(context["ip_accounts"])[:10]
    if "domain_flagged" in context:
        context["domain_flagged"] = sorted(context["domain_flagged"])[:10]
    full = {**context, **summary}
    evidence: dict[str, Any] = {"features": limits, "ip": str(ip), **full}
    extra = []
    if "countries" in full:
        extra.append("countries " + ", ".join(f"{k} {v}" for k, v in full["countries"]))
    if "networks" in full:
        extra.append("networks " + ", ".join(f"{k} {v}" for k, v in full["networks"]))
    if "recipients" in full:
        r = full["recipients"]
        where = " from unusual networks" if r.get("from") == "unusual networks" else ""
        extra.append(
            f"recipients {r['new']} of {r['addresses']} first-time{where} in {r['window']} "
            f"({r['remembered']} remembered)"
        )
    extra.append(f"ip {ip}" + (f" ({cc})" if cc else ""))
    extra.append(f"usually {full.get('usual') or 'none learned yet'}")
    detail = "; ".join(parts + extra)
    if rule.describe:
        detail = f"{rule.describe}: {detail}"
    return detail, evidence


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


class _View(dict[str, Any]):
    """Feature values for one event, computed on first access."""

    __slots__ = (
        "acct",
        "ctx",
        "det",
        "geo",
        "learned",
        "pend",
        "pure",
        "raw",
        "rknown",
        "usual",
        "wl",
        "ws",
    )

    def __init__(self, det: Detector, ctx: _Ctx, acct: _Acct | None, pure: bool) -> None:
        # (an empty dict already: dict.__init__ without arguments does nothing)
        self.det = det
        self.ctx = ctx
        self.acct = acct
        self.pure = pure  # True: the event is not recorded yet, count it in
        self.pend = pure and ctx.kind != _AUTH_FAIL  # ... and it counts in the windows
        # filled by ``snapshot`` / ``geo_summary`` when a rule fires
        self.geo: dict[bool, dict[str, Any]] | None = None
        self.raw: dict[bool, tuple[dict[str, int], dict[int, int]] | None] | None = None
        # the windows as they are after this event is recorded (short, long)
        self.ws: _Win | None = None
        self.wl: _Win | None = None
        # the baseline as it is when the event is counted: (usual, trial), and usual
        self.learned: tuple[tuple[Any, ...], tuple[tuple[Any, int], ...]] = _NO_BASELINE
        self.usual: tuple[Any, ...] = ()
        if acct is None:
            self.rknown: array[int] | None = None
            return
        # the recipients remembered before this event (recording it replaces the array)
        self.rknown = acct.rknown
        sb, lb = ctx.sb, ctx.lb
        if acct.sb == sb:
            self.ws = acct.sc
        elif acct.sb == sb - 1:
            self.ws = acct.sn
        if acct.lb == lb:
            self.wl = acct.lc
        elif acct.lb == lb - 1:
            self.wl = acct.ln
        if pure and 0 <= acct.lb < lb and acct.ln is not None:
            # a day boundary in a pure check: learned here as the rollover will learn it
            size = det.config.baseline_size
            self.learned = _learned(acct.usual, acct.trial, acct.ln, size, acct.lb, acct.flag == 0)
        else:
            self.learned = (acct.usual, acct.trial)
        self.usual = self.learned[0]

    def __missing__(self, name: str) -> Any:
        fn = self.det._features.get(name)
        if fn is None:
            raise ConfigurationError(f"unknown feature {name!r}")
        value = self[name] = fn(self)
        return value

    def win(self, short: bool) -> _Win | None:
        """Return the short or long window as it is after this event is recorded."""
        return self.ws if short else self.wl

    def baseline(self) -> tuple[tuple[Any, ...], tuple[tuple[Any, int], ...]]:
        """Return the account's ``(usual, trial)`` as they are when this event is counted."""
        return self.learned

    def pending(self) -> bool:
        """Whether the event still has to be counted in (pure check)."""
        return self.pend

    def snapshot(self, is_short: bool) -> None:
        """Copy a window's countries and networks as they are now (once per verdict)."""
        raw = self.raw
        if raw is None:
            raw = self.raw = {}
        elif is_short in raw:
            return
        w = self.ws if is_short else self.wl
        if w is None and not self.pend:
            raw[is_short] = None
            return
        if w is not None and w.mails > 64 and not self.pure:
            # A flood: summarise at most once per 10 % growth, not per message.
            if self.geo is None:
                self.geo = {}
            cached = w.summary
            if cached is None or w.mails > cached[0] * 1.1:
                raw[is_short] = (dict(w.ccs or {}), dict(w.nets or {}))
                self.geo.pop(is_short, None)
                cached = w.summary = (w.mails, self.geo_summary(is_short))
            self.geo[is_short] = cached[1]
            return
        ccs = dict(w.ccs or {}) if w is not None else {}
        nets = dict(w.nets or {}) if w is not None else {}
        if self.pend:
            if self.ctx.cc:
                ccs[self.ctx.cc] = ccs.get(self.ctx.cc, 0) + 1
            nets[self.ctx.net] = nets.get(self.ctx.net, 0) + 1
        raw[is_short] = (ccs, nets)

    def geo_summary(self, is_short: bool) -> dict[str, Any]:
        """Top countries and networks of a window, from the snapshot."""
        geo = self.geo
        if geo is None:
            geo = self.geo = {}
        cached = geo.get(is_short)
        if cached is not None:
            return cached
        out: dict[str, Any] = {}
        raw = self.raw.get(is_short) if self.raw else None
        if raw is not None:
            ccs, nets = raw
            top = heapq.nsmallest(12, ccs.items(), key=lambda kv: (-kv[1], kv[0]))
            out["countries"] = top
            if len(ccs) > 12:
                rest = sum(ccs.values()) - sum(v for _, v in top)
                out["countries"].append((f"+{len(ccs) - 12} more", rest))
            tn = heapq.nsmallest(6, nets.items(), key=lambda kv: (-kv[1], kv[0]))
            out["networks"] = [(_net_text(k), v) for k, v in tn]
            out["window"] = self.det.config.labels[0 if is_short else 1]
        geo[is_short] = out
        return out

    def context(
        self, is_short: bool, wants_ip: bool, wants_domain: bool, wants_rcpt: str = ""
    ) -> dict[str, Any]:
        """Copy what a finding's explanation shows that later events change.

        Lists are copied unsorted and the usual networks kept as the (immutable) tuple:
        ``_render`` sorts, cuts and formats them if someone reads the explanation.
        """
        out: dict[str, Any] = {"_short": is_short}
        self.snapshot(is_short)
        usual = self.usual
        if usual:
            out["usual"] = usual
        if wants_ip:
            rec = self.det._ips.get(self.ctx.member)
            if rec is not None:
                out["ip_accounts"] = _d_members(rec.accts)
        if self.ctx.account and wants_domain:
            dom = self.ctx.account.rpartition("@")[2].lower()
            flagged = self.det._domains.get(dom, {})
            out["domain_flagged"] = [a for a in flagged if a != self.ctx.account]
        if wants_rcpt:
            unusual = wants_rcpt == "unusual"
            new, seen = _rcpt_counts(is_short, self, unusual=unusual)
            out["recipients"] = {
                "new": new,
                "addresses": seen,
                "remembered": len(self.rknown) if self.rknown else 0,
                "window": self.det.config.labels[0 if is_short else 1],
                "from": "unusual networks" if unusual else "all networks",
            }
        return out


# ----------------------------------------------------------------- feature functions


def _f_mails(s: bool, v: _View) -> int:
    w = v.ws if s else v.wl
    n = w.mails if w else 0
    return n + (1 if v.pure and v.ctx.kind == _SUB else 0)


def _f_ips(s: bool, v: _View) -> int:
    w = v.ws if s else v.wl
    if v.pend:
        return _d_len_with(w.ips if w else None, v.ctx.member)
    if w is None:
        return 0
    ips = w.ips
    return len(ips) if type(ips) is set else _d_len(ips)


def _f_countries(s: bool, v: _View) -> int:
    w = v.ws if s else v.wl
    n = len(w.ccs) if w and w.ccs else 0
    if v.pend and v.ctx.cc and not (w and w.ccs and v.ctx.cc in w.ccs):
        n += 1
    return n


def _net_count(w: _Win | None) -> int:
    if w is None or not w.nets:
        return 0
    return len(w.nets)


def _f_asns(s: bool, v: _View) -> int:
    w = v.ws if s else v.wl
    n = _net_count(w)
    if v.pend and not (w and w.nets and v.ctx.net in w.nets):
        n += 1
    return n


def _f_new_asns(s: bool, v: _View) -> int:
    w = v.ws if s else v.wl
    n = w.nnew if w else 0
    if v.pend and not (w and w.nets and v.ctx.net in w.nets) and not v["network_usual"]:
        n += 1
    return n


def _f_new_countries(s: bool, v: _View) -> int:
    w = v.ws if s else v.wl
    n = w.cnew if w else 0
    cc = v.ctx.cc
    if v.pend and cc and not (w and w.ccs and cc in w.ccs) and cc not in v.usual:
        n += 0 if v["network_usual"] or v["network_popular"] or _home(v) else 1
    return n


def _f_new_share(s: bool, v: _View) -> float:
    w = v.ws if s else v.wl
    mails = w.mails if w else 0
    unusual = w.unusual if w else 0
    if v.pure and v.ctx.kind == _SUB:
        mails += 1
        unusual += 0 if v["network_usual"] else 1
    return unusual / mails if mails else 0.0


def _f_ips_per_mail(s: bool, v: _View) -> float:
    mails = _f_mails(s, v)
    return _f_ips(s, v) / mails if mails else 0.0


def _ip_run(s: bool, v: _View) -> tuple[int, float, float]:
    w = v.ws  # per-address runs are kept for the short window only
    rec = w.ipm.get(v.ctx.member) if w and w.ipm else None
    n, first, last = (int(rec[0]), rec[1], rec[2]) if rec else (0, v.ctx.t, v.ctx.t)
    if v.pure and v.ctx.kind == _SUB:
        n += 1
        last = max(last, v.ctx.t)
    return n, first, last


def _f_ip_mails(s: bool, v: _View) -> int:
    w = v.ws  # per-address runs are kept for the short window only
    rec = w.ipm.get(v.ctx.member) if w and w.ipm else None
    n = int(rec[0]) if rec else 0
    return n + 1 if v.pure and v.ctx.kind == _SUB else n  # as _ip_run


def _f_ip_rate(s: bool, v: _View) -> float:
    n, first, last = _ip_run(s, v)
    if n < 2:
        return 0.0
    return (n - 1) / max(last - first, 1.0)


def _f_rcpt_domains(s: bool, v: _View) -> int:
    w = v.ws if s else v.wl
    container = w.rdoms if w else None
    if v.pure and v.ctx.kind == _SUB and v.ctx.rdoms:
        probe = (
            container.copy() if container is not None and hasattr(container, "copy") else container
        )
        for d in v.ctx.rdoms:
            probe = _d_add(probe, d, 1 << 30, 12)
        return _d_len(probe)
    return _d_len(container)


def _f_rcpts(s: bool, v: _View) -> int:
    w = v.ws if s else v.wl
    return (w.rcpts if w else 0) + (v.ctx.rcpts if v.pure and v.ctx.kind == _SUB else 0)


def _rcpt_counts(s: bool, v: _View, *, unusual: bool = False) -> tuple[int, int]:
    """Return the window's ``(new recipients, recipient addresses)``, this message's in.

    ``unusual``: only messages from networks the account does not use (``unew``,
    ``uaddr``).
    """
    w = v.ws if s else v.wl
    new, seen = ((w.unew, w.uaddr) if unusual else (w.rnew, w.raddr)) if w else (0, 0)
    ctx, lw = v.ctx, v.det.config.long_window
    pending = v.pure and ctx.kind == _SUB and ctx.rfps and _rcpt_warm(v.acct, ctx, lw)
    if pending and not (unusual and v["network_usual"]):
        new += _rcpt_new(v.rknown, ctx.rfps)
        seen += len(ctx.rfps)
    return new, seen


def _f_unusual_new_rcpts(s: bool, v: _View) -> int:
    return _rcpt_counts(s, v, unusual=True)[0]


def _f_unusual_new_rcpt_share(s: bool, v: _View) -> float:
    new, seen = _rcpt_counts(s, v, unusual=True)
    return new / seen if seen else 0.0


def _f_new_rcpts(s: bool, v: _View) -> int:
    return _rcpt_counts(s, v)[0]


def _f_new_rcpt_share(s: bool, v: _View) -> float:
    new, seen = _rcpt_counts(s, v)
    return new / seen if seen else 0.0


def _f_auth_failures(s: bool, v: _View) -> int:
    w = v.ws if s else v.wl
    return (w.fails if w else 0) + (1 if v.pure and v.ctx.kind == _AUTH_FAIL else 0)


def _f_ip_auth_failures(s: bool, v: _View) -> int:
    rec = v.det._ips.get(v.ctx.member)
    n = rec.fails if rec is not None and rec.b == v.ctx.lb else 0
    return n + (1 if v.pure and v.ctx.kind == _AUTH_FAIL else 0)


def _f_ip_accounts(s: bool, v: _View) -> int:
    rec = v.det._ips.get(v.ctx.member)
    account = v.ctx.account
    if rec is None:
        return 1 if account else 0
    cur = rec.accts if rec.b == v.ctx.lb else None
    prev = rec.prev if rec.b == v.ctx.lb else rec.accts if rec.b == v.ctx.lb - 1 else None
    return _union_size(cur, prev, account)


def _union_size(cur: Any, prev: Any, account: str | None) -> int:
    """Count the distinct accounts of two per-address account sets plus ``account``.

    An address usually serves one account: that case builds no set.
    """
    if (cur is None or isinstance(cur, str)) and (prev is None or isinstance(prev, str)):
        return (
            (cur is not None)
            + (prev is not None and prev != cur)
            + (account is not None and account not in (cur, prev))
        )
    members = set(_d_members(cur)) | set(_d_members(prev))
    if account:
        members.add(account)
    return len(members)


def _f_domain_flagged(s: bool, v: _View) -> int:
    account = v.ctx.account
    if not account or "@" not in account:
        return 0
    flagged = v.det._domains.get(account.rpartition("@")[2].lower())
    if not flagged:
        return 0
    window = v.det.config.short_window if s else v.det.config.long_window
    t = v.ctx.t
    n = 0
    for at in flagged.values():  # a plain loop: the consumer domain holds up to 1024
        if t - at <= window:
            n += 1
    own = flagged.get(account)
    if own is not None and t - own <= window:
        n -= 1  # the account itself
    return n


def _peak_ips(v: _View) -> int:
    """Return the learned daily peak of distinct addresses as this event would see it."""
    acct = v.acct
    if acct is None:
        return 0
    if v.pure and 0 <= acct.lb < v.ctx.lb and acct.ln is not None:
        return max(int(acct.peak_ips * 0.9), _d_len(acct.ln.ips))
    return acct.peak_ips


def _f_ips_over_peak(s: bool, v: _View) -> float:
    return _f_ips(s, v) / max(_peak_ips(v), 1)


def _f_rcpts_per_mail(s: bool, v: _View) -> float:
    mails = _f_mails(s, v)
    return _f_rcpts(s, v) / mails if mails else 0.0


_WINDOW_FNS: dict[str, Callable[[bool, _View], Any]] = {
    "rcpts_per_mail": _f_rcpts_per_mail,
    "ips_over_peak": _f_ips_over_peak,
    "mails": _f_mails,
    "ips": _f_ips,
    "countries": _f_countries,
    "asns": _f_asns,
    "new_countries": _f_new_countries,
    "new_asns": _f_new_asns,
    "new_share": _f_new_share,
    "ips_per_mail": _f_ips_per_mail,
    "ip_mails": _f_ip_mails,
    "ip_rate": _f_ip_rate,
    "rcpt_domains": _f_rcpt_domains,
    "rcpts": _f_rcpts,
    "new_rcpts": _f_new_rcpts,
    "new_rcpt_share": _f_new_rcpt_share,
    "unusual_new_rcpts": _f_unusual_new_rcpts,
    "unusual_new_rcpt_share": _f_unusual_new_rcpt_share,
    "auth_failures": _f_auth_failures,
    "ip_auth_failures": _f_ip_auth_failures,
    "ip_accounts": _f_ip_accounts,
    "domain_flagged": _f_domain_flagged,
}


_ADDRESS_STEMS = frozenset({"ip_mails", "ip_rate"})


def _about_address(rule: Rule) -> bool:
    """Say whether ``rule`` fires only on its address's own sending (as ``burst`` does).

    That is: its condition is a conjunction with a lower bound on ``ip_mails`` or
    ``ip_rate`` (the address sent several of the account's mails, fast).

    >>> from authabuse.rules import F
    >>> _about_address(Rule("b", when=(F.ip_mails_1h >= 5) & ~F.ip_usual, score=1))
    True
    >>> _about_address(Rule("b", when=(F.ip_mails_1h >= 5) | F.ip_in_abuse, score=1))
    False
    """
    when = rule.when
    parts = when.parts if isinstance(when, All) else (when,)
    return any(
        isinstance(p, Compare)
        and split_feature(p.feature)[0] in _ADDRESS_STEMS
        and p.op in (">", ">=")
        and p.value > 0
        for p in parts
    )


def _history_days(v: _View) -> float:
    if v.acct is None:
        return 0.0
    return max(0.0, (v.ctx.t - v.acct.first) / 86400.0)


def _hours_since_usual(v: _View) -> float:
    if v.pend and v["network_usual"]:
        return 0.0
    if v.acct is None or v.acct.last_usual == -math.inf:
        return 1e6
    return max(0.0, (v.ctx.t - v.acct.last_usual) / 3600.0)


def _home(v: _View) -> bool:
    return bool(v.det._country_home(v.ctx.cc, v.pure))


def _recent_new_countries(v: _View) -> int:
    """Countries new to the account over the last week (probation + long window)."""
    usual, trial = v.baseline()
    since = v.ctx.lb - _TRIAL_DAYS
    found = {k for k, d in trial if isinstance(k, str) and d >= since}
    w = v.wl
    if w is not None and w.cfor:
        found.update(w.cfor)
    cc = v.ctx.cc
    new_here = not (v["network_usual"] or v["network_popular"] or _home(v))
    if v.pend and cc and new_here:
        found.add(cc)
    found.difference_update(usual)
    return len(found)


_PLAIN_FNS: dict[str, Callable[[_View], Any]] = {
    "recent_new_countries": _recent_new_countries,
    "history_days": _history_days,
    "usual_networks": lambda v: len(v.usual),
    "known_rcpts": lambda v: len(v.rknown) if v.rknown else 0,
    "peak_ips_day": lambda v: v.acct.peak_ips if v.acct else 0,
    "peak_mails_day": lambda v: v.acct.peak_mails if v.acct else 0,
    "network_usual": lambda v: v.ctx.net in v.usual,
    "country_usual": lambda v: v.ctx.cc is not None and v.ctx.cc in v.usual,
    "ip_usual": lambda v: bool(v.acct and v.ctx.member in v.acct.known_ips),
    "ip_in_abuse": lambda v: bool(
        (rec := v.det._ips.get(v.ctx.member)) is not None and rec.abuse_until > v.ctx.t
    ),
    "country_unknown": lambda v: v.ctx.cc is None,
    "baseline_ready": lambda v: bool(v.usual),
    "network_popular": lambda v: v.det._net_popularity.get(v.ctx.net, 0) >= _POPULAR,
    "usual_countries": lambda v: sum(1 for k in v.usual if isinstance(k, str)),
    "hours_since_usual": _hours_since_usual,
    "domain_accounts": lambda v: v.det._domain_size(v.ctx.account, v.pend),
    "country_common": lambda v: v.det._country_common(v.ctx.cc, v.pure),
    "is_submission": lambda v: v.ctx.kind == _SUB,
    "auth_failed": lambda v: v.ctx.kind == _AUTH_FAIL,
}


def _dsize(c: Any) -> int:
    if c is None:
        return 0
    if isinstance(c, int | str):
        return 0 if isinstance(c, str) else sys.getsizeof(c)
    if isinstance(c, set):
        return sys.getsizeof(c) + sum(sys.getsizeof(m) for m in c if isinstance(m, int))
    return sys.getsizeof(c) + (1 << 12)


def _wsize(w: _Win | None) -> int:
    if w is None:
        return 0
    size = sys.getsizeof
    total = size(w) + _dsize(w.ips) + _dsize(w.rdoms)
    if w.ccs is not None:
        total += size(w.ccs)
    if w.nets is not None:
        total += size(w.nets) + 32 * len(w.nets)
    if w.ipm is not None:
        total += size(w.ipm) + 150 * len(w.ipm)
    return total


def _acct_size(name: str, a: _Acct) -> int:
    size = sys.getsizeof
    total = size(name) + 40 + size(a) + size(a.usual) + size(a.known_ips) + size(a.last)
    if a.rknown is not None:
        total += size(a.rknown)
    total += size(a.trial) + sum(size(e) for e in a.trial)
    total += sum(size(k) for k in a.usual if isinstance(k, int) and not -5 <= k <= 256)
    seen: set[int] = set()
    for w in (a.sc, a.sn, a.lc, a.ln):
        if w is not None and id(w) not in seen:
            seen.add(id(w))
            total += _wsize(w)
    return total


def _default_geo() -> Any:
    from authabuse.geo import default_resolver

    return default_resolver()
