"""What the log writers share: the truth, recipients' mail exchangers, the line heap.

The heap puts a session's future lines (deliveries, retries, bounces) in time order.

A writer is handed sessions in start order; each session's lines are pushed with their
time and wait in a heap until no later session can come before them (every line of a
session is at or after its start), then they are formatted and written in time order.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TextIO

from authabuse.events import Event
from authabuse.simulate._model import Mail, Session

# Recipient domains' mail exchangers (name, address) as a sending MTA would log them.
MX: dict[str, tuple[str, str]] = {
    "gmail.com": ("gmail-smtp-in.l.google.com", "142.250.157.27"),
    "yahoo.com": ("mta7.am0.yahoodns.net", "98.136.96.77"),
    "yahoo.co.jp": ("mx1.mail.yahoo.co.jp", "182.22.12.117"),
    "hotmail.com": ("hotmail-com.olc.protection.outlook.com", "52.101.8.44"),
    "hotmail.co.jp": ("hotmail-co-jp.olc.protection.outlook.com", "52.101.68.18"),
    "outlook.com": ("outlook-com.olc.protection.outlook.com", "52.101.11.3"),
    "outlook.jp": ("outlook-jp.olc.protection.outlook.com", "52.101.68.5"),
    "icloud.com": ("mx01.mail.icloud.com", "17.57.154.33"),
    "docomo.ne.jp": ("mfsmax.docomo.ne.jp", "203.138.181.240"),
    "ezweb.ne.jp": ("lsean.ezweb.ne.jp", "111.107.136.71"),
    "au.com": ("lsean.ezweb.ne.jp", "111.107.136.71"),
    "softbank.ne.jp": ("mx.softbank.ne.jp", "126.240.66.7"),
    "i.softbank.jp": ("mx.i.softbank.jp", "126.240.66.11"),
    "aol.com": ("mx-aol.mail.gm0.yahoodns.net", "67.195.204.72"),
    "mail.ru": ("mxs.mail.ru", "217.69.139.150"),
    "yandex.ru": ("mx.yandex.ru", "77.88.21.249"),
    "qq.com": ("mx3.qq.com", "183.47.101.192"),
    "163.com": ("163mx01.mxmail.netease.com", "220.181.97.145"),
    "web.de": ("mx-ha03.web.de", "212.227.17.8"),
    "gmx.de": ("mx00.emig.gmx.net", "212.227.15.9"),
    "wp.pl": ("mx.wp.pl", "212.77.101.1"),
    "o2.pl": ("mx.o2.pl", "193.17.41.99"),
    "rediffmail.com": ("mx.rediffmail.rediff.akadns.net", "119.252.147.10"),
    "libero.it": ("smtp-in.libero.it", "213.209.1.129"),
    "orange.fr": ("smtp-in.orange.fr", "80.12.242.83"),
    "comcast.net": ("mx1a1.comcast.net", "96.114.157.80"),
}


class Truth:
    """Per-account facts gathered while rendering: abusive queue ids and counts."""

    def __init__(self) -> None:
        self.abusive_ids: dict[str, list[str]] = {}
        self.first_abusive_mail: dict[str, float] = {}
        self.messages: dict[str, int] = {}
        self.lines = 0
        self.submissions = 0
        self.abusive_submissions = 0
        self.auth_failures = 0
        self.auth_failures_named = 0
        self.deliveries = 0
        self.sessions = 0
        self.notifications = 0


class LogWriter:
    """The part of a log writer that does not depend on the format.

    Subclasses format one line in ``_line(t, host, text)`` and render sessions in
    ``session``; ``precise`` says whether the stamps show microseconds (else the times
    the events and the truth give are whole seconds, as the log shows them).
    """

    precise = True
    rng: random.Random

    def __init__(
        self,
        out: TextIO,
        *,
        tz_offset: float,
        isp_domain: str,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.out = out
        self.tz = timezone(timedelta(seconds=tz_offset))
        self.tz_offset = tz_offset
        self.isp_domain = isp_domain
        self.on_event = on_event
        self.truth = Truth()
        self._heap: list[tuple[float, int, str, str]] = []
        self._seq = 0
        self._buffer: list[str] = []

    def _line(self, t: float, host: str, text: str) -> str:
        """Return one log line (with its newline) for ``text`` logged at ``t`` on ``host``."""
        raise NotImplementedError

    def session(self, s: Session) -> None:
        """Render one session (sessions must come in start-time order)."""
        raise NotImplementedError

    def _push(self, t: float, host: str, text: str) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, host, text))

    def _flush(self, until: float) -> None:
        heap, buf, line = self._heap, self._buffer, self._line
        while heap and heap[0][0] < until:
            t, _, host, text = heapq.heappop(heap)
            buf.append(line(t, host, text))
        if len(buf) > 4096:
            self.out.write("".join(buf))
            self.truth.lines += len(buf)
            buf.clear()

    def close(self) -> None:
        """Write every pending line."""
        self._flush(float("inf"))
        self.out.write("".join(self._buffer))
        self.truth.lines += len(self._buffer)
        self._buffer.clear()

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _dt(self, t: float) -> datetime:
        """Return ``t`` as the log shows it (microseconds truncated, or whole seconds)."""
        sec = int(t // 1)
        usec = min(999999, int((t - sec) * 1e6)) if self.precise else 0
        return datetime.fromtimestamp(sec, self.tz).replace(microsecond=usec)

    def iso(self, t: float) -> str:
        """RFC 3339 text of ``t`` exactly as the log shows it."""
        return self._dt(t).isoformat()

    def _message_id(self, t: float, s: Session, mail: Mail) -> str:
        """Return the value of the message's ``Message-ID:`` header (spam: random junk)."""
        rng = self.rng
        domain = s.account.rpartition("@")[2] or self.isp_domain
        if mail.abusive:
            k = rng.randint(10, 24)
            junk = f"{rng.getrandbits(4 * k):0{k}x}"
            return f"{junk}@{rng.choice(('mail', 'smtp', 'mx', 'www'))}.{domain}"
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(t))
        return f"{stamp}.{rng.getrandbits(48):012x}@{domain}"
