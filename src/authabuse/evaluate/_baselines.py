"""The naive detectors the report says are not enough, measured beside ours.

* :class:`RateLimitBaseline`: a per-client-IP message rate limit, as Postfix's
  ``smtpd_client_message_rate_limit`` (anvil) enforces it: more than ``limit`` messages
  from one address within ``window`` seconds, whichever accounts they use. The account
  whose message crossed the limit is the one flagged. Pattern B (a few mails per bot)
  passes under it by design; legitimate bulk senders trip it.
* :class:`GeoSpreadBaseline`: the rule of the postfwd anti-geoip-spam plugin: an
  account that authenticated from more than ``max_countries`` countries or more than
  ``max_ips`` addresses within ``window`` seconds (24 h). Pattern A (one address) passes
  under it by design; phones, IPv6 privacy addresses and VPN users trip it.

Both see only :class:`~authabuse.events.Submission` events (what a policy service sees
at RCPT time); both are exact sliding windows, so small cases can be checked by hand.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from authabuse.errors import ConfigurationError
from authabuse.events import Event, IPAddress, Submission

__all__ = ["Flag", "GeoSpreadBaseline", "RateLimitBaseline"]

Flag = tuple[str, int]
"""``(account, level)`` a method reports for one event (level 2 = abuse)."""

ABUSE = 2


@dataclass(slots=True)
class RateLimitBaseline:
    """Per-IP message rate limit: more than ``limit`` messages in ``window`` seconds.

    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2026, 3, 2, tzinfo=timezone.utc)
    >>> b = RateLimitBaseline(limit=2, window=60)
    >>> sub = lambda s, acc: Submission(time=t0 + timedelta(seconds=s), ip="192.0.2.1",
    ...                                 account=acc)
    >>> [b.process(sub(s, a)) for s, a in [(0, "x"), (10, "y"), (20, "y"), (90, "x")]]
    [None, None, ('y', 2), None]
    """

    limit: int = 30
    window: float = 60.0
    name: str = "per-IP rate limit"
    _times: dict[IPAddress, deque[float]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= 0:
            raise ConfigurationError("rate limit needs limit >= 1 and window > 0")
        self.name = f"per-IP rate limit (>{self.limit} msgs/{self.window:g} s)"

    def process(self, event: Event) -> Flag | None:
        """Count one message; return the account flagged when its address is over the limit."""
        if not isinstance(event, Submission) or event.account is None:
            return None
        t = event.time.timestamp()
        q = self._times.get(event.ip)
        if q is None:
            q = self._times[event.ip] = deque()
        q.append(t)
        while q and q[0] <= t - self.window:
            q.popleft()
        if len(q) > self.limit:
            return event.account, ABUSE
        return None


@dataclass(slots=True)
class _Spread:
    seen: deque[tuple[float, IPAddress, str | None]] = field(default_factory=deque)
    ips: dict[IPAddress, int] = field(default_factory=dict)
    countries: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class GeoSpreadBaseline:
    """Per account: more than ``max_countries`` countries or ``max_ips`` addresses in 24 h.

    ``country`` maps an address to its country code (or ``None`` when unknown; unknown
    addresses count as addresses but not as countries).

    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2026, 3, 2, tzinfo=timezone.utc)
    >>> where = {"192.0.2.1": "PL", "192.0.2.2": "IN", "192.0.2.3": "AR"}
    >>> b = GeoSpreadBaseline(max_countries=2, max_ips=20,
    ...                       country=lambda ip: where.get(str(ip)))
    >>> [b.process(Submission(time=t0 + timedelta(hours=h), ip=ip, account="a"))
    ...  for h, ip in [(0, "192.0.2.1"), (1, "192.0.2.2"), (2, "192.0.2.3"),
    ...                (27, "192.0.2.1")]]
    [None, None, ('a', 2), None]
    """

    country: Callable[[IPAddress], str | None]
    max_countries: int = 5
    max_ips: int = 20
    window: float = 86400.0
    name: str = "postfwd geo plugin"
    _state: dict[str, _Spread] = field(default_factory=dict, repr=False)
    _cache: dict[IPAddress, str | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.max_countries < 0 or self.max_ips < 0 or self.window <= 0:
            raise ConfigurationError("geo spread limits must be >= 0 and the window > 0")
        self.name = (
            f"postfwd geo (>{self.max_countries} countries or >{self.max_ips} IPs/"
            f"{self.window / 3600:g} h)"
        )

    def _country(self, ip: IPAddress) -> str | None:
        try:
            return self._cache[ip]
        except KeyError:
            cc = self._cache[ip] = self.country(ip)
            if len(self._cache) > 1_000_000:
                self._cache.clear()
            return cc

    def process(self, event: Event) -> Flag | None:
        """Count one message's address and country for its account; flag over the limits."""
        if not isinstance(event, Submission) or event.account is None:
            return None
        t = event.time.timestamp()
        st = self._state.get(event.account)
        if st is None:
            st = self._state[event.account] = _Spread()
        cc = self._country(event.ip)
        st.seen.append((t, event.ip, cc))
        st.ips[event.ip] = st.ips.get(event.ip, 0) + 1
        if cc is not None:
            st.countries[cc] = st.countries.get(cc, 0) + 1
        while st.seen and st.seen[0][0] <= t - self.window:
            _, old_ip, old_cc = st.seen.popleft()
            n = st.ips[old_ip] - 1
            if n:
                st.ips[old_ip] = n
            else:
                del st.ips[old_ip]
            if old_cc is not None:
                n = st.countries[old_cc] - 1
                if n:
                    st.countries[old_cc] = n
                else:
                    del st.countries[old_cc]
        if len(st.countries) > self.max_countries or len(st.ips) > self.max_ips:
            return event.account, ABUSE
        return None
