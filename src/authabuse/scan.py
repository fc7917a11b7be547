"""Run a detector over a stream of events and summarise each account, as ``scan`` reports.

:class:`Scan` is what ``authabuse scan``, ``authabuse report`` and ``authabuse demo``
share: it feeds each event to :meth:`Detector.process <authabuse.detector.Detector.process>`
in order and keeps, per account, the first and last time seen, messages, distinct
source addresses (IPv6 by /64), countries, the level reached and when, and the
highest-scoring verdict. :meth:`Scan.findings` gives the objects ``scan --json`` prints.

>>> from datetime import datetime, timedelta, timezone
>>> from authabuse import Detector, Submission, parse_ip
>>> scan = Scan(Detector())
>>> t0 = datetime(2026, 3, 2, 19, 0, tzinfo=timezone.utc)
>>> bots = ["212.77.98.9", "181.30.1.1", "103.21.244.1", "41.0.0.1", "14.139.1.1"]
>>> scan.feed(Submission(time=t0 + timedelta(minutes=i), ip=parse_ip(ip),
...                      account="hanako@example.jp") for i, ip in enumerate(bots))
>>> [f["account"] for f in scan.findings()]
['hanako@example.jp']
>>> f = scan.findings("abuse")[0]
>>> f["level"], f["messages"], f["distinct_ips"]
('abuse', 5, 5)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from authabuse.detector import _d_add, _d_len, _member
from authabuse.events import Event, Submission
from authabuse.rules import Level

if TYPE_CHECKING:
    from authabuse.detector import Detector
    from authabuse.rules import Verdict

__all__ = ["AccountSummary", "Scan"]

_PROGRESS_EVERY = 0x4000


class AccountSummary:
    """What a scan reports about one account (kept for every account seen).

    >>> from datetime import datetime, timezone
    >>> s = AccountSummary(datetime(2026, 3, 2, tzinfo=timezone.utc))
    >>> s.messages, s.distinct_ips, s.level, s.countries()
    (0, 0, <Level.OK: 0>, [])
    """

    __slots__ = (
        "_auth_ccs",
        "_ccs",
        "_ips",
        "first",
        "flagged_at",
        "last",
        "level",
        "messages",
        "verdict",
    )

    def __init__(self, t: datetime) -> None:
        self.first = t
        self.last = t
        self.messages = 0
        self._ips: Any = None  # the detector's compact distinct container
        self._ccs: dict[str, int] | None = None  # country -> messages
        self._auth_ccs: dict[str, int] | None = None  # country -> logins (no messages seen)
        self.level = Level.OK
        self.flagged_at: datetime | None = None
        self.verdict: Verdict | None = None  # the highest-scoring flagged verdict

    def add(self, event: Event, verdict: Verdict) -> None:
        """Account for one event and the verdict the detector gave it."""
        t = event.time
        if t > self.last:
            self.last = t
        elif t < self.first:
            self.first = t
        is_message = isinstance(event, Submission)
        if is_message or getattr(event, "succeeded", False):
            self._ips = _d_add(self._ips, _member(event.ip), 64, 12)  # type: ignore[union-attr]  # auth or submission here
            cc = verdict.country
            if is_message:
                self.messages += 1
            if cc:
                if is_message:
                    ccs = self._ccs = self._ccs or {}
                else:
                    ccs = self._auth_ccs = self._auth_ccs or {}
                ccs[cc] = ccs.get(cc, 0) + 1
        level = verdict.level
        if level:
            if level > self.level:
                self.level = Level(level)
                self.flagged_at = t
            if self.verdict is None or verdict.score > self.verdict.score:
                self.verdict = verdict

    @property
    def distinct_ips(self) -> int:
        """Distinct source addresses of messages and logins (IPv6 counted by /64)."""
        return _d_len(self._ips)

    def countries(self) -> list[tuple[str, int]]:
        """Countries by messages (by logins for an account that sent none), most first."""
        ccs = self._ccs if self.messages else self._auth_ccs
        return sorted((ccs or {}).items(), key=lambda kv: (-kv[1], kv[0]))

    def to_dict(self, account: str) -> dict[str, Any]:
        """Return the ``scan --json`` object of this account (it must have been flagged)."""
        v = self.verdict
        if v is None or self.flagged_at is None:
            raise ValueError(f"{account!r} was never flagged")
        return {
            "account": account,
            "level": str(self.level),
            "score": float(v.score),
            "flagged_at": self.flagged_at.isoformat(),
            "reasons": [f.to_dict() for f in v.findings],
            "distinct_ips": self.distinct_ips,
            "countries": dict(self.countries()),
            "messages": self.messages,
            "first_seen": self.first.isoformat(),
            "last_seen": self.last.isoformat(),
        }


class Scan:
    """Feed events to a detector in order and summarise every account (see the module).

    ``progress`` (for :meth:`feed`) is called with the number of events processed so far,
    every 16,384 events and once at the end.

    >>> from authabuse import Detector
    >>> scan = Scan(Detector(geo=None)); scan.feed([]); scan.findings()
    []
    """

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.summaries: dict[str, AccountSummary] = {}
        self.events = 0

    def feed(
        self, events: Iterable[Event], *, progress: Callable[[int], None] | None = None
    ) -> None:
        """Process ``events`` in order with the detector, updating the summaries."""
        summaries = self.summaries
        process = self.detector.process
        n = self.events
        for event in events:
            verdict = process(event)
            account = verdict.account
            if account is None:
                continue
            s = summaries.get(account)
            if s is None:
                s = summaries[account] = AccountSummary(event.time)
            s.add(event, verdict)
            n += 1
            if progress is not None and not n % _PROGRESS_EVERY:
                progress(n)
        self.events = n
        if progress is not None:
            progress(n)

    def flagged(
        self, min_level: Level | str = Level.SUSPICIOUS
    ) -> list[tuple[str, AccountSummary]]:
        """Return the accounts that reached ``min_level``, in the order they were flagged."""
        floor = Level.parse(min_level) if isinstance(min_level, str) else min_level
        hits = [(a, s) for a, s in self.summaries.items() if s.level >= floor]
        hits.sort(key=lambda item: (item[1].flagged_at or item[1].first, item[0]))
        return hits

    def findings(self, min_level: Level | str = Level.SUSPICIOUS) -> list[dict[str, Any]]:
        """Return the ``scan --json`` objects of the accounts that reached ``min_level``."""
        return [s.to_dict(a) for a, s in self.flagged(min_level)]
