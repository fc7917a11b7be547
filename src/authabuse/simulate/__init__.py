"""Labelled ISP submission traffic, modelled on the report, for testing and evaluation.

:func:`simulate` writes one simulated mail service into a directory:

* ``maillog``: a Postfix log (``postfix/submission/smtpd``, ``cleanup``, ``qmgr``,
  ``smtp``, ``bounce``) in time order, as two submission servers would write it; or,
  with ``log_format="exim"``, ``mainlog``: the same traffic as an Exim 4 main log
  (``<=`` arrivals with ``A=``, ``=>``/``->``/``**``/``==`` deliveries, ``Completed``,
  ``authenticator failed``; see :mod:`authabuse.simulate._exim`);
* ``geo-country.csv`` and ``geo-asn.csv``: the geo tables of every address block the
  simulator drew a client address from (``ip_range_start,ip_range_end,country_code`` and
  ``ip_range_start,ip_range_end,asn,org``);
* ``truth.json``: the ground truth (see :class:`GroundTruth`): each account's persona,
  and for abused accounts the abuse pattern, when it started and which queue ids carried
  abusive mail.

Legitimate personas (``PERSONAS``): ``low_volume`` (most accounts: a mail every day or
two from a home line), ``home``, ``mobile`` (carrier-grade NAT, a new shared address about
every hour), ``ipv6`` (privacy addresses: a new address daily or per connection),
``office`` (a dozen NAT addresses shared by a customer domain's staff), ``traveller``
(a trip abroad through one to three countries), ``vpn`` (commercial VPN exits in many
countries, shared with other VPN users), ``abroad`` (a customer living in another
country) and ``bulk`` (a newsletter sender: thousands of mails at several per second,
every day).

Abuse patterns (``PATTERNS``): ``sprinkle`` (hundreds to thousands of bots in 30+
countries, PL and IN on top, each sending a few mails, never back to back), ``burst``
(one to four addresses sending one to four mails per second for about an hour),
``slow`` (a few bots a day, a few mails each, for days), ``domestic`` (a botnet of
infected PCs in the customers' own country), ``domain_wave`` (several accounts of one
office domain abused at once by the same bots) and ``ip_reuse`` (bots that already
abused one account log in to another). Half of the takeovers are preceded by failed
logins (password guessing), and password guessing against random user names runs in
the background.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     result = simulate(d, seed=7, accounts=200, days=2)
...     truth = GroundTruth.load(d)
>>> result.lines > 1000, len(truth.accounts)
(True, 200)
>>> sorted({a.abuse.pattern for a in truth.accounts.values() if a.abuse})
['burst', 'domain_wave', 'domestic', 'ip_reuse', 'slow', 'sprinkle']
"""

from __future__ import annotations

import csv
import heapq
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from authabuse.errors import ConfigurationError, CorruptDataError
from authabuse.events import Event
from authabuse.simulate._exim import EximWriter
from authabuse.simulate._model import MIXES, PATTERNS, PERSONAS, Session, World
from authabuse.simulate._postfix import PostfixWriter
from authabuse.simulate._space import AddressSpace
from authabuse.simulate._writer import LogWriter

__all__ = [
    "LOG_FORMATS",
    "MIXES",
    "PATTERNS",
    "PERSONAS",
    "AbuseTruth",
    "AccountTruth",
    "GroundTruth",
    "SimulationResult",
    "is_current",
    "simulate",
]

TRUTH_FORMAT = "authabuse-simulate/1"
GENERATOR = 3  # bumped whenever the same arguments start giving different traffic
LOG_NAME = "maillog"
LOG_NAMES = {"postfix": LOG_NAME, "exim": "mainlog"}
LOG_FORMATS = tuple(LOG_NAMES)  # what simulate(log_format=...) writes
STAMPS = {"postfix": ("rfc3339", "bsd"), "exim": ("exim",)}  # first: the default
TRUTH_NAME = "truth.json"
GEO_COUNTRY_NAME = "geo-country.csv"
GEO_ASN_NAME = "geo-asn.csv"
EVENTS_NAME = "events.jsonl"
DEFAULT_START = "2026-03-02"  # a Monday


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What :func:`simulate` wrote and how long it took.

    >>> SimulationResult(out_dir=Path("x"), lines=10, accounts=5, abused=1,
    ...                  abusive_messages=3, messages=9, seconds=0.1).lines
    10
    """

    out_dir: Path
    lines: int
    accounts: int
    abused: int
    abusive_messages: int
    messages: int
    seconds: float
    cpu_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class AbuseTruth:
    """How one account was abused.

    ``start`` is when the abuse began (the first abusive login or message);
    ``first_mail`` the first abusive message (``None`` if the log ended before);
    ``queue_ids`` the queue ids of the abusive messages (Exim: message ids), in log
    order.

    >>> a = AbuseTruth(pattern="burst", campaign=3, start=0.0, first_mail=1.0, end=9.0,
    ...                queue_ids=("A1B2C3D4E5F",), ips=2, countries={"PL": 2})
    >>> a.messages
    1
    """

    pattern: str
    campaign: int
    start: float
    first_mail: float | None
    end: float
    queue_ids: tuple[str, ...]
    ips: int
    countries: dict[str, int]

    @property
    def messages(self) -> int:
        """Number of abusive messages."""
        return len(self.queue_ids)


@dataclass(frozen=True, slots=True)
class AccountTruth:
    """One account of a simulation: its legitimate persona and, if abused, how.

    >>> AccountTruth(name="a@example.jp", persona="mobile", domain="example.jp",
    ...              messages=4, abuse=None).abused
    False
    """

    name: str
    persona: str
    domain: str
    messages: int
    abuse: AbuseTruth | None

    @property
    def abused(self) -> bool:
        """Whether the account's credentials were abused in the simulation."""
        return self.abuse is not None


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """The labels of one simulation (``truth.json``), as :func:`simulate` wrote them.

    ``meta`` holds the rest of the file: seed, mix, period, log format, time stamp style
    and the counts of what the log holds (``meta["log"]``: lines, submissions, auth
    failures, deliveries...). :meth:`abusive_queue_ids` is the set of queue ids of abusive mail.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = simulate(d, seed=1, accounts=100, days=1)
    ...     truth = GroundTruth.load(d)
    >>> truth.meta["seed"], len(truth.abused()) > 0
    (1, True)
    """

    accounts: dict[str, AccountTruth]
    meta: dict[str, Any] = field(default_factory=dict)

    def abused(self) -> list[AccountTruth]:
        """Return the abused accounts, by name."""
        return [a for _, a in sorted(self.accounts.items()) if a.abuse is not None]

    def legitimate(self) -> list[AccountTruth]:
        """Return the accounts never abused, by name."""
        return [a for _, a in sorted(self.accounts.items()) if a.abuse is None]

    def abusive_queue_ids(self) -> set[str]:
        """Queue ids of every abusive message."""
        return {q for a in self.accounts.values() if a.abuse for q in a.abuse.queue_ids}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> GroundTruth:
        """Read ``truth.json`` (``path`` is the file or the simulation's directory)."""
        p = Path(path)
        if p.is_dir():
            p = p / TRUTH_NAME
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(
                f"{p}: no ground truth here (run authabuse simulate)"
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptDataError(f"{p}: not a ground-truth file: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != TRUTH_FORMAT:
            raise CorruptDataError(f"{p}: not a {TRUTH_FORMAT} ground-truth file")
        accounts = {}
        try:
            for name, rec in data.pop("accounts").items():
                ab = rec.get("abuse")
                abuse = None
                if ab is not None:
                    abuse = AbuseTruth(
                        pattern=ab["pattern"],
                        campaign=ab["campaign"],
                        start=_parse_time(ab["start"]),
                        first_mail=_parse_time(ab["first_mail"]) if ab["first_mail"] else None,
                        end=_parse_time(ab["end"]),
                        queue_ids=tuple(ab["queue_ids"]),
                        ips=ab["ips"],
                        countries=dict(ab["countries"]),
                    )
                accounts[name] = AccountTruth(
                    name=name,
                    persona=rec["persona"],
                    domain=rec["domain"],
                    messages=rec["messages"],
                    abuse=abuse,
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptDataError(f"{p}: malformed ground truth: {exc!r}") from None
        return cls(accounts=accounts, meta=data)


def is_current(
    truth: GroundTruth,
    *,
    seed: int,
    accounts: int,
    days: float,
    mix: str,
    log_format: str = "postfix",
) -> bool:
    """Whether ``truth`` comes from this generator version with these arguments.

    Work directories reuse a simulation only when it would be written identically
    (with default time stamps; a truth without ``log_format`` is a Postfix one).

    >>> t = GroundTruth(accounts={}, meta={"generator": GENERATOR, "seed": 1,
    ...                 "accounts_total": 10, "days": 1, "mix": "default"})
    >>> is_current(t, seed=1, accounts=10, days=1, mix="default")
    True
    >>> is_current(t, seed=2, accounts=10, days=1, mix="default")
    False
    >>> is_current(t, seed=1, accounts=10, days=1, mix="default", log_format="exim")
    False
    """
    m = truth.meta
    return (
        m.get("generator") == GENERATOR
        and m.get("seed") == seed
        and m.get("accounts_total") == accounts
        and m.get("days") == days
        and m.get("mix") == mix
        and m.get("log_format", "postfix") == log_format
        and m.get("timestamps") in (None, STAMPS.get(log_format, ("",))[0])
    )


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _parse_tz(tz: str) -> float:
    """``+09:00`` / ``-05:00`` / ``UTC`` -> offset in seconds."""
    if tz.upper() in ("UTC", "Z"):
        return 0.0
    sign = -1 if tz.startswith("-") else 1
    body = tz.lstrip("+-")
    try:
        hours, _, minutes = body.partition(":")
        value = int(hours) * 3600 + int(minutes or 0) * 60
    except ValueError:
        raise ConfigurationError(f"time zone must be like +09:00 or UTC, not {tz!r}") from None
    if value > 14 * 3600:
        raise ConfigurationError(f"time zone offset out of range: {tz!r}")
    return float(sign * value)


def _sessions(world: World) -> Iterator[Session]:
    streams = [world.account_sessions(a) for a in world.accounts]
    streams.append(world.background_sessions())
    return heapq.merge(*streams, key=lambda s: s.start)


def simulate(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    accounts: int = 2000,
    days: float = 4.0,
    mix: str = "default",
    start: str = DEFAULT_START,
    tz: str = "+09:00",
    stamp: str | None = None,
    jsonl: bool = False,
    log_format: str = "postfix",
) -> SimulationResult:
    """Write a simulated mail service's log, geo tables and ground truth to ``out_dir``.

    ``accounts`` customers over ``days`` days from local midnight of ``start``
    (``YYYY-MM-DD``) in the UTC offset ``tz``; the persona and abuse shares come from
    ``mix`` (a key of ``MIXES``). The same arguments always give byte-identical files.
    ``log_format`` is ``"postfix"`` (``maillog``) or ``"exim"`` (``mainlog``, an Exim 4
    main log of the same sessions, messages and recipients). Postfix stamps are
    ``stamp="rfc3339"`` (the default) or ``"bsd"``, classic syslog stamps; Exim writes
    its own (``"exim"``: local time, no zone). Where the stamps lack the year or zone,
    ``truth.json`` holds what a reader needs. ``jsonl=True`` also writes
    ``events.jsonl``: the events a perfect reader of the log would produce.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     r = simulate(d, seed=3, accounts=50, days=1, mix="business")
    ...     sorted(p.name for p in r.out_dir.iterdir())
    ['geo-asn.csv', 'geo-country.csv', 'maillog', 'truth.json']
    >>> with tempfile.TemporaryDirectory() as d:
    ...     r = simulate(d, seed=3, accounts=50, days=1, log_format="exim")
    ...     sorted(p.name for p in r.out_dir.iterdir())
    ['geo-asn.csv', 'geo-country.csv', 'mainlog', 'truth.json']
    """
    began = time.perf_counter()
    began_cpu = time.process_time()
    stamp = _check_stamp(log_format, stamp)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigurationError("seed must be an integer")
    offset = _parse_tz(tz)
    try:
        day = datetime.strptime(start, "%Y-%m-%d")
    except ValueError:
        raise ConfigurationError(f"start must be YYYY-MM-DD, not {start!r}") from None
    zone = timezone(timedelta(seconds=offset))
    t0 = day.replace(tzinfo=zone).timestamp()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    space = AddressSpace.default()
    world = World(seed=seed, accounts=accounts, days=days, mix=mix, start=t0, space=space)

    events_file = None
    on_event = None
    if jsonl:
        events_file = open(out / EVENTS_NAME, "w", encoding="utf-8")  # noqa: SIM115  # closed below

        def on_event(event: Event, fh: TextIO = events_file) -> None:
            fh.write(event.to_json() + "\n")

    # Write to a temporary name and rename, so a half-written log is never mistaken for
    # a finished simulation.
    log_name = LOG_NAMES[log_format]
    fd, tmp = tempfile.mkstemp(prefix=f".{log_name}.", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            writer = _writer(fh, log_format, seed, offset, stamp, world.isp_domain, on_event)
            for session in _sessions(world):
                writer.session(session)
            writer.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out / log_name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if events_file is not None:
            events_file.close()
    _write_geo(out, space)
    truth = writer.truth
    doc = _truth_document(
        world, writer, seed=seed, days=days, mix=mix, tz=tz, stamp=stamp, log_format=log_format
    )
    (out / TRUTH_NAME).write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", "utf-8")
    abused = sum(1 for a in world.accounts if a.abuse is not None)
    return SimulationResult(
        out_dir=out,
        lines=truth.lines,
        accounts=len(world.accounts),
        abused=abused,
        abusive_messages=truth.abusive_submissions,
        messages=truth.submissions,
        seconds=time.perf_counter() - began,
        cpu_seconds=time.process_time() - began_cpu,
    )


def _check_stamp(log_format: str, stamp: str | None) -> str:
    """Return the stamp style to write (``None``: the format's default) or refuse it."""
    if log_format not in LOG_NAMES:
        raise ConfigurationError(
            f"log_format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}"
        )
    stamps = STAMPS[log_format]
    if stamp is None:
        return stamps[0]
    if stamp not in stamps:
        raise ConfigurationError(
            f"{log_format} logs take stamp {' or '.join(map(repr, stamps))}, not {stamp!r}"
        )
    return stamp


def _writer(  # noqa: PLR0917  # private: one call
    fh: TextIO,
    log_format: str,
    seed: int,
    offset: float,
    stamp: str,
    isp_domain: str,
    on_event: Callable[[Event], None] | None,
) -> LogWriter:
    if log_format == "exim":
        return EximWriter(fh, seed=seed, tz_offset=offset, isp_domain=isp_domain, on_event=on_event)
    return PostfixWriter(
        fh, seed=seed, tz_offset=offset, stamp=stamp, isp_domain=isp_domain, on_event=on_event
    )


def _write_geo(out: Path, space: AddressSpace) -> None:
    blocks = space.used_blocks()
    with open(out / GEO_COUNTRY_NAME, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("ip_range_start", "ip_range_end", "country_code"))
        w.writerows(space.iter_country_rows(blocks))
    with open(out / GEO_ASN_NAME, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("ip_range_start", "ip_range_end", "asn", "org"))
        w.writerows(space.iter_asn_rows(blocks))


def _truth_document(
    world: World,
    writer: LogWriter,
    *,
    seed: int,
    days: float,
    mix: str,
    tz: str,
    stamp: str,
    log_format: str,
) -> dict[str, Any]:
    truth = writer.truth
    zone = writer.tz

    iso = writer.iso

    accounts: dict[str, Any] = {}
    for acc in world.accounts:
        abuse = None
        if acc.abuse is not None:
            ab = acc.abuse
            ips = {s.ip for s in ab.sessions if s.mails}
            countries: Counter[str] = Counter()
            for ip in ips:
                loc = world.space.locate(ip)
                countries[loc[0] if loc else "??"] += 1
            abuse = {
                "pattern": ab.pattern,
                "campaign": ab.campaign,
                "start": iso(min([ab.start, *(s.start for s in ab.sessions if s.mails)])),
                "first_mail": (
                    iso(truth.first_abusive_mail[acc.name])
                    if acc.name in truth.first_abusive_mail
                    else None
                ),
                "end": iso(max(ab.end, ab.start)),
                "messages": len(truth.abusive_ids.get(acc.name, ())),
                "ips": len(ips),
                # most first, ties by code: not by the set's order, which follows
                # str hashes (IPv4Address hashes its hex text) and so the process
                "countries": dict(sorted(countries.items(), key=lambda kv: (-kv[1], kv[0]))),
                "queue_ids": truth.abusive_ids.get(acc.name, []),
            }
        accounts[acc.name] = {
            "persona": acc.persona,
            "domain": acc.domain,
            "messages": truth.messages.get(acc.name, 0),
            "abuse": abuse,
        }
    campaigns = [
        {
            "id": c.id,
            "pattern": c.pattern,
            "start": iso(c.start),
            "accounts": [a.name for a in c.accounts],
            "ips": len(set(c.ips)),
        }
        for c in world.campaigns
    ]
    local_start = datetime.fromtimestamp(world.start, zone)
    return {
        "format": TRUTH_FORMAT,
        "generator": GENERATOR,
        "seed": seed,
        "mix": mix,
        "accounts_total": len(world.accounts),
        "days": days,
        "start": iso(world.start),
        "end": iso(world.end),
        "log_format": log_format,
        "timestamps": stamp,
        "year": local_start.year,
        "tz": tz,
        "geo_source": world.space.source,
        "files": {
            "log": LOG_NAMES[log_format],
            "geo_country": GEO_COUNTRY_NAME,
            "geo_asn": GEO_ASN_NAME,
        },
        "log": {
            "lines": truth.lines,
            "sessions": truth.sessions,
            "submissions": truth.submissions,
            "abusive_submissions": truth.abusive_submissions,
            "auth_failures": truth.auth_failures,
            "auth_failures_named": truth.auth_failures_named,
            "deliveries": truth.deliveries,
            "bounce_notifications": truth.notifications,
        },
        "campaigns": campaigns,
        "accounts": accounts,
    }
