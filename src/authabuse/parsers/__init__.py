r"""Log parsers: Postfix, Dovecot, Exim, Sendmail, other servers and JSON lines into events.

The other servers are OpenSMTPD, Courier, Cyrus, UW-IMAP, Roundcube, the nginx mail
proxy, Zimbra, Domino, Exchange and a few more (their authentication lines).

Input is read as bytes in blocks of bounded size and cut into lines (an over-long line is
counted and dropped as it streams in), so memory stays bounded on unbounded input; the
format is recognized line by line (or forced). Messages are joined by queue id into
:class:`~authabuse.events.Submission` events with bounded, expiring state. Nothing that
cannot be parsed stops the stream: it is counted in :class:`ParseStats` (or raised as
:class:`~authabuse.errors.ParseError` in strict mode).

>>> import io
>>> from authabuse.parsers import iter_events, ParseStats
>>> stats = ParseStats()
>>> log = io.BytesIO(b"2022-06-29 16:04:05 dovecot_login authenticator failed for "
...                  b"([1.2.3.5]) [1.2.3.4]:55379: 535 Incorrect authentication data "
...                  b"(set_id=info@test.com)\n")
>>> [(e.account, str(e.ip), e.succeeded) for e in iter_events([log], tz="UTC", stats=stats)]
[('info@test.com', '1.2.3.4', False)]
>>> stats.lines, stats.used
(1, 1)
"""

from __future__ import annotations

from ._core import DEFAULT_MAX_LINE, FORMATS, LogParser, parse_line
from ._follow import Follower
from ._reader import iter_events, iter_lines, open_log
from ._stats import ParseStats
from ._timestamps import parse_tz

__all__ = [
    "DEFAULT_MAX_LINE",
    "FORMATS",
    "Follower",
    "LogParser",
    "ParseStats",
    "iter_events",
    "iter_lines",
    "open_log",
    "parse_line",
    "parse_tz",
]
