"""Timestamps as mail servers write them, turned into timezone-aware datetimes.

Four shapes are understood:

* RFC 3339 / ISO 8601 as rsyslog's high-precision template writes it
  (``2024-08-26T01:33:38.572449+00:00``, ``2022-04-14T00:36:03.150Z``); a stamp without an
  offset is read in the configured zone.
* Traditional BSD syslog (``Nov  3 10:15:32``, ``Aug 4 16:47:52``, ``Jun 04 22:24:28``):
  no year and no zone. :class:`SyslogClock` supplies both, and moves to the next year when
  the months wrap (December followed by January).
* Exim's own stamp, also used by Dovecot's ``log_path`` (``2014-01-12 02:07:48``,
  ``2023-05-30 06:10:13.345``, optionally followed by a ``+0100`` offset).
* TAI64N labels written by daemontools' multilog (``@400000004c91b044077a9e94``).

>>> from datetime import timezone
>>> clock = SyslogClock(year=2024, tz=timezone.utc)
>>> clock.bsd("Dec 31 23:59:59").isoformat()
'2024-12-31T23:59:59+00:00'
>>> clock.bsd("Jan  1 00:00:01").isoformat()
'2025-01-01T00:00:01+00:00'
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path

from authabuse.errors import ConfigurationError
from authabuse.events import _EARLIEST, _LATEST

__all__ = ["SyslogClock", "parse_tz"]

_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}
_TAI64_EPOCH = (1 << 62) + 10  # daemontools' tai64nlocal convention (TAI - UTC = 10 s)
_CACHE_MAX = 4096  # distinct stamps remembered; logs repeat one stamp many times
_SECONDS = {f"{n:02d}": timedelta(seconds=n) for n in range(60)}  # "ss" of a stamp
_FRACTION = (".", ",")  # what starts the fraction of a second of an RFC 3339 stamp


def parse_tz(text: str | None) -> tzinfo:
    """Return the time zone named by ``--tz``: an IANA name, ``UTC``, ``local`` or ``+09:00``.

    ``None`` (or ``local``) is the machine's local zone: ``$TZ`` when set, else
    ``/etc/localtime``, else UTC. Raises :class:`~authabuse.errors.ConfigurationError` for a
    name that is not known.

    >>> parse_tz("+09:00")
    datetime.timezone(datetime.timedelta(seconds=32400))
    >>> parse_tz("UTC")
    datetime.timezone.utc
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if text is None or text == "local":
        env = os.environ.get("TZ")
        if env:
            try:
                return ZoneInfo(env.lstrip(":"))
            except (ZoneInfoNotFoundError, ValueError):
                pass
        localtime = Path("/etc/localtime")
        if localtime.exists():
            try:
                with localtime.open("rb") as fh:
                    return ZoneInfo.from_file(fh, key="localtime")
            except (OSError, ValueError):
                pass
        return UTC
    if text.upper() in {"UTC", "Z", "GMT"}:
        return UTC
    if text[:1] in "+-" and len(text) in (5, 6):
        digits = text[1:].replace(":", "")
        if len(digits) == 4 and digits.isdigit():
            minutes = int(digits[:2]) * 60 + int(digits[2:])
            if minutes < 24 * 60:
                sign = -1 if text[0] == "-" else 1
                return timezone(timedelta(minutes=sign * minutes))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {text!r} (use an IANA name such as Asia/Tokyo, UTC, or +09:00)"
        ) from None


def default_year(month: int, day: int, now: datetime | None = None) -> int:
    """Guess the year a year-less syslog stamp belongs to, seen from ``now``.

    The current year, unless that puts the stamp more than a day in the future (a log
    from last December read in January): then the year before.

    >>> default_year(12, 31, now=datetime(2025, 1, 2, tzinfo=UTC))
    2024
    >>> default_year(1, 1, now=datetime(2025, 1, 2, tzinfo=UTC))
    2025
    """
    now = now or datetime.now(UTC)
    year = now.year
    try:
        candidate = datetime(year, month, day, tzinfo=UTC)
    except ValueError:  # 29 Feb in a non-leap year
        return year - 1
    if candidate - now > timedelta(days=1):
        return year - 1
    return year


class SyslogClock:
    """Turns stamps into aware datetimes, remembering the year across year-less lines.

    ``year`` is the year of the first year-less line (``None``: guessed by
    :func:`default_year` from today's date). Each time the month goes backwards by more
    than six (December to January), the year advances. ``tz`` is the zone of stamps that
    carry no offset (BSD syslog, Exim, RFC 3339 without offset).

    >>> from datetime import timezone
    >>> c = SyslogClock(year=2017, tz=timezone.utc)
    >>> c.iso("2014-01-12 02:07:48").isoformat()
    '2014-01-12T02:07:48+00:00'
    >>> c.iso("2024-08-26T01:33:38.572449+00:00").isoformat()
    '2024-08-26T01:33:38.572449+00:00'
    >>> c.tai64n("400000004c91b044077a9e94").isoformat()
    '2010-09-16T05:50:50.125476+00:00'
    """

    __slots__ = ("_fixed", "_iso_cache", "_last_month", "_minutes", "bsd_cache", "tz", "year")

    def __init__(self, *, year: int | None = None, tz: tzinfo | None = None) -> None:
        self.year = year
        self.tz: tzinfo = tz if tz is not None else UTC
        self._fixed = isinstance(self.tz, timezone)  # no DST: no folding needed
        self._last_month = 0
        self.bsd_cache: dict[str, datetime] = {}
        self._iso_cache: dict[str, datetime] = {}
        # "Mmm dd hh:mm" -> that minute's wall time, before folding (running month only)
        self._minutes: dict[str, datetime] = {}

    def bsd(self, stamp: str) -> datetime:
        """Parse ``Mmm dd hh:mm:ss`` (day space-, zero- or un-padded); ``ValueError`` if bad.

        A stamp already parsed, or of a minute already parsed (a log moves on one second
        at a time), is answered from a cache, after the same year check as any other stamp.
        """
        # Both caches hold stamps of the running month only (they are emptied when it
        # changes), so a hit needs no year check; the parsers' fast paths read bsd_cache.
        cached = self.bsd_cache.get(stamp)
        if cached is not None:
            return cached
        base = self._minutes.get(stamp[:-3])
        if base is not None and stamp[-3] == ":":
            second = _SECONDS.get(stamp[-2:])
            if second is not None:
                value = base + second
                if not self._fixed:
                    value = _normalize(value)
                if not _EARLIEST <= value < _LATEST:
                    return value  # never cached: the parser refuses it each time
                if len(self.bsd_cache) >= _CACHE_MAX:
                    self.bsd_cache.clear()
                self.bsd_cache[stamp] = value
                return value
        month = _MONTHS.get(stamp[:3])
        if month is None:
            raise ValueError(f"unknown month in {stamp!r}")
        rest = stamp[4:].split()
        if len(rest) != 2:
            raise ValueError(f"bad syslog stamp {stamp!r}")
        day = int(rest[0])
        hh, mm, ss = rest[1].split(":")
        if self.year is None:
            self.year = default_year(month, day)
        elif self._last_month and month < self._last_month - 6:
            self.year += 1  # December -> January: a new year began
            self.bsd_cache.clear()
            self._minutes.clear()
        elif self._last_month and month > self._last_month + 6:
            # A line from the previous December after January's (merged files): step back
            # for this line only, keeping the running year.
            value = datetime(self.year - 1, month, day, int(hh), int(mm), int(ss), tzinfo=self.tz)
            return _normalize(value)
        if month != self._last_month:
            self._last_month = month
            self.bsd_cache.clear()
            self._minutes.clear()
        wall = datetime(self.year, month, day, int(hh), int(mm), int(ss), tzinfo=self.tz)
        value = _normalize(wall)
        if not _EARLIEST <= value < _LATEST:
            return value  # never cached: the parser refuses it each time
        if len(self.bsd_cache) >= _CACHE_MAX:
            self.bsd_cache.clear()
        self.bsd_cache[stamp] = value
        second = _SECONDS.get(ss)
        if second is not None and len(rest[1]) == 8 and stamp[-3] == ":":  # "hh:mm:ss"
            if len(self._minutes) >= _CACHE_MAX:
                self._minutes.clear()
            self._minutes[stamp[:-3]] = wall - second  # stamp[:-3]: the minute
        return value

    def iso(self, stamp: str) -> datetime:
        """Parse RFC 3339 or Exim's ``YYYY-MM-DD HH:MM:SS[.fff][ +zzzz]``; ``ValueError`` if bad."""
        # A stamp with a fraction of a second is seldom seen twice: not worth caching.
        cache = stamp[19:20] not in _FRACTION
        if cache:
            cached = self._iso_cache.get(stamp)
            if cached is not None:
                return cached
        try:  # RFC 3339 as rsyslog writes it is read as is (C, about 0.1 us)
            value = datetime.fromisoformat(stamp)
        except ValueError:  # "Z" before Python 3.11's reader, Exim's " +0100"
            text = stamp
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            value = datetime.fromisoformat(text.replace(" +", "+").replace(" -", "-"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.tz)
        if not isinstance(value.tzinfo, timezone):
            value = _normalize(value)
        if cache:
            if len(self._iso_cache) >= _CACHE_MAX:
                self._iso_cache.clear()
            self._iso_cache[stamp] = value
        return value

    def tai64n(self, label: str) -> datetime:
        """Parse a 24-hex-digit TAI64N label (without the ``@``); ``ValueError`` if bad."""
        if len(label) != 24:
            raise ValueError(f"bad TAI64N label {label!r}")
        seconds = int(label[:16], 16) - _TAI64_EPOCH
        nanos = int(label[16:], 16)
        if not 0 <= seconds < 1 << 40 or nanos >= 1_000_000_000:
            raise ValueError(f"TAI64N label out of range {label!r}")
        return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)


def _normalize(value: datetime) -> datetime:
    """Fold a nonexistent or ambiguous local time (DST change) onto a real instant."""
    tz = value.tzinfo
    if tz is None or isinstance(tz, timezone):
        return value
    # ZoneInfo: round-trip through UTC so a time in a DST gap gets a definite offset.
    return value.astimezone(UTC).astimezone(tz)
