"""The line-by-line parser: envelope, format detection, dispatch, counting (private)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice
from typing import Any

from authabuse.errors import ConfigurationError, InvalidEventError, ParseError
from authabuse.events import _EARLIEST, _LATEST, Event, event_from_dict

from ._bulk import feed_block
from ._common import Context, Handler, LineError, redact
from ._dovecot import DovecotParser
from ._exim import EXIM_STAMP, EximParser
from ._others import PREFIXES as _OTHER_PREFIXES
from ._others import PROGRAMS as _OTHER_PROGRAMS
from ._others import OtherServersParser
from ._postfix import PostfixParser
from ._sendmail import SendmailParser
from ._stats import ParseStats
from ._timestamps import SyslogClock, parse_tz

__all__ = ["DEFAULT_MAX_LINE", "FORMATS", "LogParser", "parse_line"]

FORMATS = ("auto", "postfix", "dovecot", "exim", "sendmail", "jsonl")
"""The names ``format=`` (and ``--format``) accepts."""

_BULK_FORMATS = ("auto", "postfix")  # formats the whole-block Postfix path serves

DEFAULT_MAX_LINE = 32768
"""Longest line (in bytes) that is parsed; longer lines are counted and skipped."""

# Dovecot 1.x log_path lines put the level where syslog puts the program
_LEVELS = frozenset({"Info", "Warning", "Error", "Fatal", "Panic", "Debug"})

# timestamp (BSD syslog | RFC 3339 / ISO | TAI64N), optional host, program[pid]: message
_STAMP = (
    r"(?:([A-Z][a-z]{2} [ 0-9]?[0-9] [0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"|([0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?)"
    r"|@([0-9a-f]{24}))"
)
_ENVELOPE = re.compile(_STAMP + r" +(?:([^\s:\[]+) )?([^\s:\[]+)(?:\[([0-9]+)\])?: ([^\r\n]*)")
# Dovecot 2.4 without syslog: "auth(user,ip,sasl:mech)<session>: Info: ..." (':' in the name)
_ENVELOPE_AUTH = re.compile(_STAMP + r" +(?:([^\s:\[]+) )?(auth\(.*?\)(?:<[^>]*>)?): ([^\r\n]*)")
_ENVELOPE_MATCH = _ENVELOPE.match
# The same for lines known to hold no "\r" (and no "\n"): "(.*)" scans faster than a class
_ENVELOPE_LF_MATCH = re.compile(_ENVELOPE.pattern.replace(r"([^\r\n]*)", "(.*)")).match
# The skip rule: the two most frequent lines of a mail log never matter (a message that
# starts with "connect from " or "QUEUEID: message-id="). Only lines holding one of
# _SKIP_TEXTS can match, so that substring test runs first. The envelope is _ENVELOPE's
# (one way to read a line: its names hold no space, ':' or '['), so _SKIP_LINE matches
# exactly when _ENVELOPE does and its message starts with one of the two; text elsewhere
# in a line (an account or address an attacker chose) does not hide the line.
_SKIP_LINE = re.compile(
    _STAMP + r" +(?:[^\s:\[]+ )?[^\s:\[]+(?:\[[0-9]+\])?: "
    r"(?:connect from |[0-9A-Za-z]+: message-id=)"
).match
_SKIP_TEXTS = (": connect from ", ": message-id=")
# Envelopes read only off the hot path, for lines _ENVELOPE does not match: a leading
# syslog priority "<PRI>" (syslog as it travels over the network), RFC 5424
# ("1 STAMP HOST APP PROCID MSGID SD MSG"), and journalctl's other short modes:
# short-precise ("Nov 28 15:02:34.123456"), short-full ("Sat 2026-11-28 15:02:34 CET")
# and short-unix ("1764342154.123456"), each followed by "host program[pid]: message".
_PRI = re.compile(r"<(?:1[0-8][0-9]|19[01]|[1-9]?[0-9])>")  # facility * 8 + severity, 0-191
_SD_ELEMENT = r'\[(?:[^\]"\\]|\\.|"(?:[^"\\]|\\.)*")*\]'
_RFC5424 = re.compile(
    rf"1 (\S+) (\S+) (\S+) (\S+) \S+ (?:-|(?:{_SD_ELEMENT})+)(?: \ufeff?(.*))?$", re.S
)
_ISO_ONLY = re.compile(  # an RFC 3339 stamp, as _STAMP reads it
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
_HOST_PROG_MSG = r" +(?:([^\s:\[]+) )?([^\s:\[]+)(?:\[([0-9]+)\])?: (.*)"
_SHORT_PRECISE = re.compile(
    r"([A-Z][a-z]{2} [ 0-9]?[0-9] [0-9]{2}:[0-9]{2}:[0-9]{2})\.([0-9]{1,9})" + _HOST_PROG_MSG,
    re.S,
)
_SHORT_FULL = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
    r"([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?) "
    r"([A-Za-z][A-Za-z0-9/_+-]*|[+-][0-9]{4})" + _HOST_PROG_MSG,
    re.S,
)
_SHORT_UNIX = re.compile(r"([0-9]{1,12})\.([0-9]{1,9})" + _HOST_PROG_MSG, re.S)
_MONOTONIC = re.compile(r"\[ *[0-9]+\.[0-9]{6}\] ")
_UTC_NAMES = frozenset({"UTC", "GMT", "UT", "Z", "Etc/UTC"})
# "host exim[pid]: 2021-07-17 23:20:49 ..." (journal export without a leading stamp)
_HOST_PROG = re.compile(r"([^\s:\[]+) (exim[^\s\[:]*)(?:\[([0-9]+)\])?: (.*)", re.S)


class LogParser:
    """Streaming parser: feed it log lines, get events; joins are bounded in memory.

    ``format`` is one of :data:`FORMATS`: ``"auto"`` recognizes each line by its program
    name (Postfix, Dovecot, Exim, Sendmail; OpenSMTPD, Courier, Cyrus, ...: see
    ``docs/parsers.md``) or shape (a JSON object, an Exim main-log stamp); a named
    format sends every line to that parser. ``year`` and ``tz`` place year-less and
    zone-less stamps (defaults: the year that does not put the first line
    in the future, and the machine's local zone; see ``docs/parsers.md``). ``source``
    names the input in statistics and errors. With ``strict=True`` a malformed, over-long
    or unrecognizable line raises :class:`~authabuse.errors.ParseError` instead of being
    counted. Lines longer than ``max_line`` bytes are skipped and counted. Submissions
    wait for their queue id to complete at most ``join_timeout`` seconds of log time and
    at most ``max_pending`` of them wait at once; beyond that they are emitted as they
    are and counted in ``stats.expired_joins``.

    >>> p = LogParser(year=2024, tz="UTC", source="maillog")
    >>> events = p.feed(b"Nov  4 09:11:01 mail postfix/smtpd[1234]: warning: "
    ...                 b"unknown[192.0.2.152]: SASL LOGIN authentication failed: "
    ...                 b"(reason unavailable), sasl_username=admin", 1)
    >>> print(events[0].to_json())  # doctest: +NORMALIZE_WHITESPACE
    {"type": "auth", "time": "2024-11-04T09:11:01+00:00", "account": "admin",
     "ip": "192.0.2.152", "succeeded": false, "mechanism": "LOGIN", "service": "smtp",
     "server": "mail"}
    >>> p.feed("Nov  4 09:11:02 mail postfix/smtpd[1234]: connect from x[192.0.2.1]", 2)
    []
    >>> p.stats.lines, p.stats.irrelevant
    (2, 1)
    """

    __slots__ = (
        "_bsd_cache",
        "_ctx",
        "_dovecot",
        "_exim",
        "_forced",
        "_iso_second",
        "_others",
        "_postfix",
        "_routes",
        "_sendmail",
        "clock",
        "format",
        "max_line",
        "source",
        "stats",
        "strict",
    )

    def __init__(
        self,
        format: str = "auto",
        *,
        year: int | None = None,
        tz: str | None = None,
        source: str = "<input>",
        strict: bool = False,
        max_line: int = DEFAULT_MAX_LINE,
        join_timeout: float = 3600.0,
        max_pending: int = 100_000,
        max_sessions: int = 100_000,
        stats: ParseStats | None = None,
    ) -> None:
        if format not in FORMATS:
            raise ConfigurationError(
                f"unknown log format {format!r} (choose from {', '.join(FORMATS)})"
            )
        if year is not None and not 1970 <= year <= 9999:
            raise ConfigurationError(f"year {year} out of range 1970..9999")
        if max_line < 80:
            raise ConfigurationError("max_line must be at least 80 bytes")
        if join_timeout <= 0 or max_pending < 1 or max_sessions < 1:
            raise ConfigurationError("join_timeout, max_pending and max_sessions must be > 0")
        self.format = format
        self.source = source
        self.strict = strict
        self.max_line = max_line
        self.stats = stats if stats is not None else ParseStats()
        self.clock = SyslogClock(year=year, tz=parse_tz(tz))
        self._ctx = Context(
            join_timeout=join_timeout,
            max_pending=max_pending,
            max_sessions=max_sessions,
            clock=self.clock,
        )
        self._postfix = PostfixParser(self._ctx)
        self._dovecot = DovecotParser(self._ctx)
        self._exim = EximParser(self._ctx)
        self._sendmail = SendmailParser(self._ctx)
        self._others = OtherServersParser(self._ctx)
        forced: dict[str, Handler] = {
            "postfix": self._postfix,
            "dovecot": self._dovecot,
            "exim": self._exim,
            "sendmail": self._sendmail,
        }
        self._forced = forced.get(format)
        self._routes: dict[str, Callable[..., bool] | None]
        self._routes = {}
        self._bsd_cache = self.clock.bsd_cache
        self._iso_second = ""  # "YYYY-MM-DDTHH:MM:SS" of the last RFC 3339 stamp parsed

    # -- public API -------------------------------------------------------------------

    def feed(self, line: bytes | str, lineno: int = 0) -> list[Event]:
        """Parse one line (with or without its newline); return the events it completed.

        Usually zero or one event; a line can also complete a pending submission or
        push an old one out of the bounded join. ``lineno`` is used in statistics and
        errors only.
        """
        out: list[Event] = []
        self.feed_into(line, lineno, out)
        return out

    def flush(self) -> list[Event]:
        """End of input: emit every submission still waiting for its queue id to finish."""
        out: list[Event] = []
        self._ctx.expire(out)
        self.stats.expired_joins = self._ctx.expired
        n = self._ctx.flush(out)
        self.stats.unfinished_joins += n
        self._count_events(out, 0)
        return out

    def too_long(self, lineno: int) -> None:
        """Record that line ``lineno`` exceeded ``max_line`` and was skipped unread."""
        self.stats.lines += 1
        self._problem("too_long", lineno, f"line longer than {self.max_line} bytes", "")

    # -- the hot path -----------------------------------------------------------------

    def feed_into(self, line: bytes | str, lineno: int, out: list[Event]) -> None:
        """Like :meth:`feed`, appending the events to ``out`` (no list per line)."""
        stats = self.stats
        stats.lines += 1
        if line.__class__ is bytes:
            if len(line) > self.max_line:
                self._problem("too_long", lineno, f"line longer than {self.max_line} bytes", "")
                return
            try:
                text = line.decode()
            except UnicodeDecodeError:
                text = line.decode(errors="replace")
                stats.non_utf8 += 1
        else:
            text = str(line)
            if len(text) > self.max_line:
                self._problem("too_long", lineno, f"line longer than {self.max_line} chars", "")
                return
        # the skip rule (see _SKIP_LINE): dropped before any other work
        if (_SKIP_TEXTS[0] in text or _SKIP_TEXTS[1] in text) and _SKIP_LINE(text):
            stats.irrelevant += 1
            return
        start = len(out)
        try:
            m = _ENVELOPE_MATCH(text)
            if m is not None:
                bsd, iso, tai, host, prog, pid, msg = m.groups()
                handler = self._routes.get(prog)
                if handler is None:
                    if prog in self._routes:
                        stats.irrelevant += 1
                        return
                    handler = self._route(prog)
                    if handler is None:
                        stats.irrelevant += 1
                        return
                if bsd is not None:
                    when = self._bsd_cache.get(bsd)
                    if when is None:
                        when = self._stamp(bsd, None, None, out)
                else:
                    when = self._stamp(None, iso, tai, out)
                self._ctx.now = when
                used = handler(when, host, prog, pid, msg, out)
            else:
                used = self._other(text, out)
            if used:
                stats.used += 1
            else:
                stats.irrelevant += 1
        except LineError as exc:
            text = text.rstrip("\r\n")
            if exc.invalid_ip:
                stats.invalid_ip += 1
            self._problem("malformed", lineno, exc.reason, text)
        except InvalidEventError as exc:  # hostile values the event refuses (huge account)
            self._problem("malformed", lineno, str(exc), text.rstrip("\r\n"))
        except _UnrecognizedError:
            text = text.rstrip("\r\n")
            if text.strip():
                self._problem("unrecognized", lineno, "no known log format", text)
            else:
                stats.irrelevant += 1
        n = len(out) - start
        if n:
            if n == 1:
                stats.events[out[start].type] += 1
            else:
                self._count_events(out, start)

    def feed_block(self, text: str, count: int, out: list[Event]) -> int:
        """Parse a block of decoded lines numbered ``count + 1``, ...; return how many.

        ``text`` ends with a newline (or is empty), decoded from valid UTF-8, and none of
        its lines is ``max_line`` bytes or longer. Results and statistics are exactly
        those of feeding the lines one by one. Postfix logs (format ``auto`` or
        ``postfix``, not strict) take the whole-block fast path of ``_bulk.py``; anything
        else goes through :meth:`feed_lines`.
        """
        if self.format in _BULK_FORMATS and not self.strict and "\r" not in text:
            return feed_block(self, text, count, out)
        lines = text.split("\n")
        lines.pop()  # the block ends with a newline
        self.feed_lines(lines, count, out, has_cr="\r" in text)
        return len(lines)

    def feed_lines(
        self, lines: list[str], count: int, out: list[Event], *, has_cr: bool = True
    ) -> None:
        """Parse decoded lines numbered ``count + 1``, ``count + 2``, ...; append their events.

        The batch form of :meth:`feed_into` that :func:`iter_events` uses: the lines carry
        no newline, hold no U+FFFD from decoding and none is ``max_line`` or longer (the
        reader sends every other line through :meth:`feed_into`). Results and statistics
        are exactly those of feeding the lines one by one; the statistics are brought up
        to date when the batch ends (or raises). ``has_cr=False`` promises that no line
        holds a carriage return (a faster envelope pattern is then used).
        """
        stats = self.stats
        base = stats.lines
        start = len(out)
        used = irrelevant = done = 0
        routes = self._routes
        bsd_cache = self._bsd_cache
        ctx = self._ctx
        match = _ENVELOPE_MATCH if has_cr else _ENVELOPE_LF_MATCH
        append_problem = self._line_problem
        connect, message_id = _SKIP_TEXTS
        skip_line = _SKIP_LINE
        try:
            for done, line in enumerate(lines, 1):  # done is read in finally
                if (connect in line or message_id in line) and skip_line(line):
                    irrelevant += 1  # the skip rule (see _SKIP_LINE)
                    continue
                try:
                    m = match(line)
                    if m is not None:
                        bsd, iso, tai, host, prog, pid, msg = m.groups()
                        handler = routes.get(prog)
                        if handler is None and (
                            prog in routes or (handler := self._route(prog)) is None
                        ):
                            irrelevant += 1
                            continue
                        when = bsd_cache.get(bsd)  # bsd is None: no entry, parsed below
                        if when is None:
                            when = self._stamp(bsd, iso, tai, out)
                        ctx.now = when
                        if handler(when, host, prog, pid, msg, out):
                            used += 1
                        else:
                            irrelevant += 1
                    elif self._other(line, out):
                        used += 1
                    else:
                        irrelevant += 1
                except (LineError, InvalidEventError, _UnrecognizedError) as exc:
                    if append_problem(exc, count + done, line):
                        irrelevant += 1
        finally:
            stats.lines = base + done
            stats.used += used
            stats.irrelevant += irrelevant
            if len(out) > start:
                self._count_events(out, start)

    def _line_problem(self, exc: Exception, lineno: int, text: str) -> bool:
        """Count (or raise in strict mode) the problem ``exc`` of one line; True: blank."""
        text = text.rstrip("\r\n")
        if isinstance(exc, LineError):
            if exc.invalid_ip:
                self.stats.invalid_ip += 1
            self._problem("malformed", lineno, exc.reason, text)
        elif isinstance(exc, InvalidEventError):
            self._problem("malformed", lineno, str(exc), text)
        elif text.strip():
            self._problem("unrecognized", lineno, "no known log format", text)
        else:
            return True
        return False

    def _stamp(
        self, bsd: str | None, iso: str | None, tai: str | None, out: list[Event]
    ) -> datetime:
        """Parse a stamp the cache did not have; expire old joins when time moved on.

        Expiry is looked at for every new BSD stamp (each is parsed once: later ones come
        from the cache), and for RFC 3339 stamps once per second of text: comparing two
        datetimes with distinct zone objects (each parse makes its own) costs 0.3 us, as
        much as parsing the stamp.
        """
        try:
            if bsd is not None:
                when = self.clock.bsd(bsd)
            elif iso is not None:
                when = self.clock.iso(iso)
                second = iso[:19]
                if second == self._iso_second:
                    self._ctx.now = when
                    return when
                self._moved_to(when, out)
                self._iso_second = second  # only once the second passed the range check
                return when
            else:
                when = self.clock.tai64n(tai or "")
        except ValueError:
            raise LineError(f"bad time stamp {(bsd or iso or tai)!r}") from None
        return self._moved_to(when, out)

    def _bsd_stamp(self, text: str, out: list[Event]) -> datetime:
        """:meth:`_stamp` for a BSD stamp (the fast path's cache misses come here)."""
        try:
            when = self.clock.bsd(text)
        except ValueError:
            raise LineError(f"bad time stamp {text!r}") from None
        return self._moved_to(when, out)

    def _iso_stamp(self, text: str, out: list[Event]) -> datetime:
        """:meth:`_stamp` for an RFC 3339 stamp (the fast path's RFC 3339 lines come here)."""
        try:
            when = self.clock.iso(text)
        except ValueError:
            raise LineError(f"bad time stamp {text!r}") from None
        second = text[:19]
        if second == self._iso_second:
            self._ctx.now = when
            return when
        self._moved_to(when, out)
        self._iso_second = second  # only once the second passed the range check
        return when

    def _moved_to(self, when: datetime, out: list[Event]) -> datetime:
        """Set the joins' clock to ``when``, expiring old joins when it passed a check."""
        if not _EARLIEST <= when < _LATEST:  # once per new second of log time
            raise LineError(f"time stamp {when.isoformat()} is outside 1970-01-01..9999-12-29")
        ctx = self._ctx
        check = ctx.check_at
        if check is None or when >= check:
            ctx.tick(when, out)
            self.stats.expired_joins = ctx.expired
        else:  # Context.tick's common case
            ctx.now = when
        return when

    def _other(self, text: str, out: list[Event]) -> bool:
        """Lines without a syslog envelope: JSON, Exim's main log, journal exports."""
        text = text.rstrip("\r\n")
        a = _ENVELOPE_AUTH.match(text)
        if a is not None and self._forced in (None, self._dovecot):
            bsd, iso, tai, host, prog, msg = a.groups()
            when = self._stamp(bsd, iso, tai, out)
            return self._dovecot.handle(when, host, prog, None, msg, out)
        first = text[:1]
        if first == "{":
            return self._json(text, out)
        if self.format == "jsonl":
            raise LineError("not a JSON object")
        if first == "<":
            p = _PRI.match(text)
            if p is not None:
                return self._prioritized(text[p.end() :], out)
        if first.isdigit() and self._forced in (None, self._exim):
            e = EXIM_STAMP.match(text)
            if e is not None and not text.startswith(" ", e.end()):  # "   ": Domino's
                when = self._stamp(None, e.group(1), None, out)
                return self._exim.handle(when, None, "exim", None, text[e.end() :], out)
        used = self._journal(text, out)
        if used is not None:
            return used
        h = _HOST_PROG.match(text)
        if h is not None and self._forced in (None, self._exim):
            rest = h.group(4)
            e = EXIM_STAMP.match(rest)
            if e is None:
                raise LineError("exim line without a time stamp")
            # The handler reads Exim's own stamp from the message itself.
            when = self._ctx.now or datetime.fromtimestamp(0, self.clock.tz)
            return self._exim.handle(when, h.group(1), h.group(2), h.group(3), rest, out)
        if self._forced is None:  # Roundcube, nginx mail, Zimbra, Domino, Kerio, Oracle
            used = self._others.unframed(text, out, self._moved_to)
            if used is not None:
                return used
        raise _UnrecognizedError

    def _prioritized(self, text: str, out: list[Event]) -> bool:
        """Read a line after its ``<PRI>``: RFC 5424, or any envelope the parser reads."""
        r = _RFC5424.match(text)
        if r is not None:
            stamp, host, app, procid, msg = r.groups()
            if app == "-":
                return False  # no program name: nothing says which parser it is for
            handler = self._handler(app)
            if handler is None:
                return False
            if stamp == "-" or _ISO_ONLY.match(stamp) is None:
                raise LineError(f"RFC 5424 line without a usable time stamp: {stamp[:40]!r}")
            when = self._stamp(None, stamp, None, out)
            pid = procid if procid.isdigit() and procid.isascii() else None
            return handler(when, None if host == "-" else host, app, pid, msg or "", out)
        m = _ENVELOPE_MATCH(text)
        if m is not None:
            bsd, iso, tai, host, prog, pid, msg = m.groups()
            handler = self._handler(prog)
            if handler is None:
                return False
            return handler(self._stamp(bsd, iso, tai, out), host, prog, pid, msg, out)
        if text.startswith("{"):
            raise _UnrecognizedError
        return self._other(text, out)

    def _journal(self, text: str, out: list[Event]) -> bool | None:
        """Read journalctl's short-precise, short-full and short-unix lines; None: not one."""
        first = text[:1]
        if first.isdigit():
            m = _SHORT_UNIX.match(text)
        elif "A" <= first <= "Z":
            m = _SHORT_PRECISE.match(text) or _SHORT_FULL.match(text)
        else:
            if first == "[" and _MONOTONIC.match(text):
                raise LineError(
                    "time since boot (journalctl -o short-monotonic) places no line in "
                    "time: use -o short-iso-precise or -o json"
                )
            return None
        if m is None:
            return None
        stamp, extra, host, prog, pid, msg = m.groups()  # extra: fraction or zone
        handler = self._handler(prog)
        if handler is None:  # a program no parser reads: its stamp does not matter
            return False
        if m.re is _SHORT_UNIX:  # seconds since 1970, fraction
            when = _epoch(int(stamp), _micros(extra), f"time stamp out of range: {stamp}")
        elif m.re is _SHORT_PRECISE:  # syslog stamp, fraction
            try:
                when = self.clock.bsd(stamp)
            except ValueError:
                raise LineError(f"bad time stamp {stamp!r}") from None
            when += timedelta(microseconds=_micros(extra))
        else:  # local time, zone name or offset
            when = self._zoned(stamp, extra)
        self._moved_to(when, out)
        return handler(when, host, prog, pid, msg, out)

    def _zoned(self, local: str, zone: str) -> datetime:
        """Place ``local`` wall time in ``zone``: UTC, an offset, or the --tz zone's name."""
        try:
            naive = datetime.fromisoformat(local)
        except ValueError:
            raise LineError(f"bad time stamp {local!r}") from None
        if zone in _UTC_NAMES:
            return naive.replace(tzinfo=UTC)
        if zone[0] in "+-":
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            if minutes >= 24 * 60:
                raise LineError(f"bad UTC offset {zone!r}")
            sign = -1 if zone[0] == "-" else 1
            return naive.replace(tzinfo=timezone(timedelta(minutes=sign * minutes)))
        # A zone abbreviation (CET, JST, EDT) names no zone on its own: it must be the one
        # --tz gives at that time; at a DST change it also says which of two times it is.
        tz = self.clock.tz
        names = []
        for fold in (0, 1):
            value = naive.replace(tzinfo=tz, fold=fold)
            name = value.tzname()
            if name == zone:
                return value.astimezone(UTC).astimezone(tz)  # a real instant
            names.append(name)
        raise LineError(
            f"time zone {zone!r} is not the --tz zone's ({names[0]} at {local}): "
            "give the zone the log was written in with --tz"
        )

    def _handler(self, prog: str) -> Callable[..., bool] | None:
        """Return the handler for lines of ``prog`` (cached like the line path's routes)."""
        handler = self._routes.get(prog)
        if handler is None and prog not in self._routes:
            handler = self._route(prog)
        return handler

    def _json(self, text: str, out: list[Event]) -> bool:
        forced = self._forced
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            if forced is not None:
                return False  # a log format was named: not one of its lines
            raise LineError(f"JSON event: not valid JSON: {exc}") from None
        if isinstance(data, dict) and "__REALTIME_TIMESTAMP" in data:
            return self._journal_json(data, out)  # journalctl -o json
        if forced is not None:
            return False
        try:
            event = event_from_dict(data)
        except InvalidEventError as exc:
            raise LineError(f"JSON event: {exc}") from None
        out.append(event)
        return True

    def _journal_json(self, entry: dict[str, Any], out: list[Event]) -> bool:
        """One entry of ``journalctl -o json``: its message, read like a syslog line's."""
        prog = _journal_text(entry.get("SYSLOG_IDENTIFIER")) or _journal_text(entry.get("_COMM"))
        if not prog:
            return False
        handler = self._handler(prog)
        if handler is None:
            return False
        stamp = entry["__REALTIME_TIMESTAMP"]
        if not (isinstance(stamp, str) and stamp.isdigit() and stamp.isascii() and len(stamp) < 19):
            raise LineError(f"journal entry with a bad __REALTIME_TIMESTAMP: {str(stamp)[:40]!r}")
        seconds, micros = divmod(int(stamp), 1_000_000)
        when = _epoch(
            seconds, micros, f"journal entry's __REALTIME_TIMESTAMP out of range: {stamp}"
        )
        raw = entry.get("MESSAGE")
        msg = _journal_text(raw)
        if isinstance(raw, list) and msg is not None and "\ufffd" in msg:
            self.stats.non_utf8 += 1  # journalctl gives a message that is not UTF-8 as bytes
        if msg is None:
            raise LineError("journal entry without a readable MESSAGE")
        pid = _journal_text(entry.get("SYSLOG_PID")) or _journal_text(entry.get("_PID"))
        if pid is not None and not (pid.isdigit() and pid.isascii()):
            pid = None
        self._moved_to(when, out)
        return handler(when, _journal_text(entry.get("_HOSTNAME")), prog, pid, msg, out)

    def _route(self, prog: str) -> Callable[..., bool] | None:
        handler: Callable[..., bool] | None
        forced = self._forced
        if self.format == "jsonl":
            raise LineError("not a JSON object")
        if forced is self._postfix or (
            forced is None and prog.startswith("postfix") and "/" in prog
        ):
            handler = self._postfix.route(prog)
        elif forced is not None:
            handler = forced.handle
        elif prog.startswith(("dovecot", "auth")) or prog.endswith("-login") or prog in _LEVELS:
            handler = self._dovecot.handle
        elif prog.startswith("exim"):
            handler = self._exim.handle
        elif prog in ("sendmail", "sm-mta") or prog.startswith("sm-"):
            handler = self._sendmail.handle
        elif prog in _OTHER_PROGRAMS or prog.startswith(_OTHER_PREFIXES):
            handler = self._others.handle  # OpenSMTPD, Courier, Cyrus, UW-IMAP, ...
        else:
            handler = None
        if "(" not in prog:  # Dovecot 2.4 puts user and address in the name: do not cache
            if len(self._routes) >= 1024:
                self._routes.clear()
            self._routes[prog] = handler
        return handler

    def _count_events(self, out: list[Event], start: int) -> None:
        events = self.stats.events
        if len(out) - start < 8:
            for i in range(start, len(out)):
                events[out[i].type] += 1
            return
        for cls, n in Counter(map(type, islice(out, start, None))).items():
            events[cls.type] += n  # type: ignore[attr-defined]  # every event class has one

    def _problem(self, kind: str, lineno: int, reason: str, text: str) -> None:
        if self.strict:
            raise ParseError(reason, source=self.source, lineno=lineno, line=redact(text)[:500])
        self.stats.note(kind, self.source, lineno, reason)


def _micros(fraction: str) -> int:
    """Return the microseconds of a stamp's decimal fraction of a second (digits only)."""
    return int(fraction[:6].ljust(6, "0"))


def _epoch(seconds: int, micros: int, problem: str) -> datetime:
    """Return seconds and microseconds since 1970 as a UTC time; ``problem`` if out of range."""
    try:
        return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=micros)
    except (OverflowError, OSError, ValueError):
        raise LineError(problem) from None


def _journal_text(value: object) -> str | None:
    """Return a journal field as text: a string, or the byte array journalctl gives for binary."""
    if isinstance(value, str):
        if not value.isascii():  # JSON may carry lone surrogates ("\ud800"): not Unicode
            value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value.replace("\n", " ").replace("\r", " ")
    if (
        isinstance(value, list)
        and len(value) <= DEFAULT_MAX_LINE
        and all(type(b) is int and 0 <= b < 256 for b in value)
    ):
        text = bytes(value).decode(errors="replace")
        return text.replace("\n", " ").replace("\r", " ")
    return None


class _UnrecognizedError(Exception):
    """No known log format matches the line."""


def parse_line(
    line: bytes | str,
    format: str = "auto",
    *,
    year: int | None = None,
    tz: str | None = None,
    strict: bool = False,
) -> Event | None:
    """Parse one line on its own: its event, or ``None`` if it carries none.

    Joins need more than one line, so a Postfix ``client=`` line gives its login but no
    submission here: use :class:`LogParser` or :func:`iter_events` for whole logs. A
    malformed line is ``None`` too, or a :class:`~authabuse.errors.ParseError` when
    ``strict`` is true.

    >>> parse_line("2024-03-21 19:26:06 dovecot_login authenticator failed for (User) "
    ...            "[194.169.175.1]:21298 I=[22.33.44.55]:465 Ci=30416: 535 Incorrect "
    ...            "authentication data (set_id=uaf589@example.com)", tz="UTC").account
    'uaf589@example.com'
    >>> parse_line("Nov 28 05:34:59 mx postfix/qmgr[32564]: C72E720C3B6: removed") is None
    True
    """
    parser = LogParser(format, year=year, tz=tz, strict=strict, source="<line>")
    events = parser.feed(line, 1)
    return events[0] if events else None
