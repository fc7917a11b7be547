"""Measure detection on simulated traffic, next to naive baselines, in one pass.

:func:`evaluate` reads one or more directories written by
:func:`authabuse.simulate.simulate`, parses each ``maillog`` with authabuse's own
parsers (as ``authabuse scan`` does), feeds every event in log order to each method
(the :class:`~authabuse.detector.Detector` when it is available, and the naive
baselines of :mod:`authabuse.evaluate._baselines`), and scores what they flagged
against ``truth.json``:

* **recall per abuse pattern**: abused accounts flagged at or after the abuse began;
* **false positives per persona**: accounts never abused that were flagged at all,
  and the same per 10,000 legitimate accounts; abused accounts flagged before their
  abuse began are counted apart (``flagged_before_abuse``);
* **abusive mails before the flag**: per abused account, the abusive messages the log
  shows before the event that flagged it (the message that raised the flag is not
  counted: a policy service would have refused it); an account never flagged counts
  with all its abusive messages. Median and 90th percentile (nearest rank).

>>> import tempfile
>>> from authabuse.simulate import simulate
>>> with tempfile.TemporaryDirectory() as d:
...     _ = simulate(d, seed=2, accounts=150, days=2)
...     ev = evaluate([d], detector=False)
>>> sorted(ev.methods)
['postfwd-geo', 'rate-limit']
>>> r = ev.methods["postfwd-geo"]
>>> r.recall_of("burst")[1] >= 1, 0 <= r.fp_per_10k
(True, True)
"""

from __future__ import annotations

import bisect
import csv
import importlib
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Protocol

from authabuse.errors import ConfigurationError
from authabuse.evaluate._baselines import Flag, GeoSpreadBaseline, RateLimitBaseline
from authabuse.events import Event, IPAddress, Submission
from authabuse.simulate import PATTERNS, PERSONAS, GroundTruth

__all__ = [
    "Evaluation",
    "GeoSpreadBaseline",
    "Method",
    "MethodResult",
    "RateLimitBaseline",
    "evaluate",
    "percentile",
]

LEVELS = {"suspicious": 1, "abuse": 2}


class Method(Protocol):
    """Anything that turns events into flags: ``process(event) -> (account, level)``.

    Pass a factory of your own method to :func:`evaluate` (``extra=``) to score it next
    to the detector and the baselines:

    >>> class EveryFifthMail:
    ...     name = "every 5th mail"
    ...     def __init__(self): self.mails = {}
    ...     def process(self, event):
    ...         if event.type != "submission":
    ...             return None
    ...         n = self.mails[event.account] = self.mails.get(event.account, 0) + 1
    ...         return (event.account, LEVELS["abuse"]) if n == 5 else None
    >>> from authabuse.simulate import simulate
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = simulate(d, seed=2, accounts=60, days=1)
    ...     ev = evaluate([d], detector=False, extra={"fifth": lambda geo: EveryFifthMail()})
    >>> sorted(ev.methods)
    ['fifth', 'postfwd-geo', 'rate-limit']
    """

    name: str

    def process(self, event: Event) -> Flag | None:
        """Take one event; return ``(account, level)`` when it flags an account."""


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the ``q``-th percentile (0-100) by the nearest rank; ``None`` when empty.

    >>> percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90), percentile([7], 50)
    (9, 7)
    >>> percentile([], 50) is None
    True
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class MethodResult:
    """What one method achieved over one or more simulated runs.

    ``recall`` maps a pattern to ``[detected, total]``; ``false_positives`` a persona to
    ``[flagged, total]`` (legitimate accounts only); ``mails_before`` holds, per abused
    account, the abusive messages sent before it was flagged (all of them if never);
    ``delays`` the seconds from the first abusive message to the flag (detected only).

    >>> r = MethodResult("x")
    >>> r.recall["burst"] = [1, 2]; r.false_positives["home"] = [1, 5000]
    >>> r.recall_total, r.fp_per_10k
    (0.5, 2.0)
    """

    name: str
    recall: dict[str, list[int]] = field(default_factory=dict)
    false_positives: dict[str, list[int]] = field(default_factory=dict)
    mails_before: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    fp_accounts: list[str] = field(default_factory=list)
    flagged_before_abuse: int = 0
    abusive_mails: int = 0
    abusive_mails_before_flag: int = 0
    seconds: float = 0.0

    def recall_of(self, pattern: str) -> tuple[int, int]:
        """Return ``(detected, total)`` for one abuse pattern."""
        d, t = self.recall.get(pattern, [0, 0])
        return d, t

    @property
    def recall_total(self) -> float:
        """Share of abused accounts detected, all patterns together."""
        d = sum(v[0] for v in self.recall.values())
        t = sum(v[1] for v in self.recall.values())
        return d / t if t else 1.0

    @property
    def legitimate(self) -> int:
        """Legitimate accounts seen."""
        return sum(v[1] for v in self.false_positives.values())

    @property
    def fp_total(self) -> int:
        """Legitimate accounts flagged."""
        return sum(v[0] for v in self.false_positives.values())

    @property
    def fp_per_10k(self) -> float:
        """False positives per 10,000 legitimate accounts."""
        n = self.legitimate
        return 10000 * self.fp_total / n if n else 0.0

    @property
    def median_mails(self) -> float | None:
        """Median abusive messages sent before the flag (misses count all theirs)."""
        return percentile(self.mails_before, 50)

    @property
    def p90_mails(self) -> float | None:
        """90th percentile of the same."""
        return percentile(self.mails_before, 90)

    def merge(self, other: MethodResult) -> None:
        """Add another run's figures to these."""
        for src, dst in (
            (other.recall, self.recall),
            (other.false_positives, self.false_positives),
        ):
            for k, (a, b) in src.items():
                cur = dst.setdefault(k, [0, 0])
                cur[0] += a
                cur[1] += b
        self.mails_before += other.mails_before
        self.delays += other.delays
        self.missed += other.missed
        self.fp_accounts += other.fp_accounts
        self.flagged_before_abuse += other.flagged_before_abuse
        self.abusive_mails += other.abusive_mails
        self.abusive_mails_before_flag += other.abusive_mails_before_flag
        self.seconds += other.seconds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (see :meth:`Evaluation.to_dict`)."""
        return {
            "name": self.name,
            "recall": {p: {"detected": d, "total": t} for p, (d, t) in sorted(self.recall.items())},
            "recall_total": self.recall_total,
            "false_positives": {
                p: {"flagged": f, "total": t} for p, (f, t) in sorted(self.false_positives.items())
            },
            "false_positives_total": self.fp_total,
            "legitimate_accounts": self.legitimate,
            "fp_per_10k": self.fp_per_10k,
            "flagged_before_abuse": self.flagged_before_abuse,
            "mails_before_flag": {
                "median": self.median_mails,
                "p90": self.p90_mails,
                "max": max(self.mails_before, default=None),
                "accounts": len(self.mails_before),
            },
            "abusive_mails": self.abusive_mails,
            "abusive_mails_before_flag": self.abusive_mails_before_flag,
            "delay_seconds": {
                "median": percentile(self.delays, 50),
                "p90": percentile(self.delays, 90),
            },
            "missed": sorted(self.missed),
            "false_positive_accounts": sorted(self.fp_accounts),
            "seconds": round(self.seconds, 3),
        }


@dataclass(slots=True)
class Evaluation:
    """The figures of every method over the evaluated runs (:func:`evaluate`).

    ``runs`` describes each simulation (directory, seed, mix, accounts, days, events);
    ``methods`` maps a method key (``detector``, ``rate-limit``, ``postfwd-geo``) to its
    :class:`MethodResult`; ``notes`` says what could not be measured and why.

    >>> Evaluation(level="abuse").table().splitlines()[0]
    'method ...'
    """

    level: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    methods: dict[str, MethodResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (what ``authabuse evaluate --json`` prints)."""
        return {
            "level": self.level,
            "runs": self.runs,
            "methods": {k: m.to_dict() for k, m in self.methods.items()},
            "notes": self.notes,
        }

    def table(self) -> str:
        """Render a readable report: one row per figure, one column per method."""
        keys = list(self.methods)
        names = [self.methods[k].name for k in keys]
        rows: list[tuple[str, list[str]]] = []

        def fmt_ratio(d: int, t: int) -> str:
            return f"{d}/{t} ({100 * d / t:.0f}%)" if t else "-"

        patterns = [p for p in PATTERNS if any(p in self.methods[k].recall for k in keys)]
        for p in patterns:
            rows.append((f"recall {p}", [fmt_ratio(*self.methods[k].recall_of(p)) for k in keys]))
        rows.append(
            (
                "recall (all patterns)",
                [f"{100 * self.methods[k].recall_total:.1f}%" for k in keys],
            )
        )
        personas = [p for p in PERSONAS if any(p in self.methods[k].false_positives for k in keys)]
        for p in personas:
            rows.append(
                (
                    f"FP {p}",
                    ["{}/{}".format(*self.methods[k].false_positives.get(p, [0, 0])) for k in keys],
                )
            )
        rows.append(
            ("FP per 10,000 legitimate", [f"{self.methods[k].fp_per_10k:.1f}" for k in keys])
        )
        rows.append(
            ("flagged before abuse", [str(self.methods[k].flagged_before_abuse) for k in keys])
        )

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:g}"

        rows.append(("abusive mails before flag, median", [num(self.methods[k].median_mails) for k in keys]))  # fmt: skip  # noqa: E501
        rows.append(("abusive mails before flag, p90", [num(self.methods[k].p90_mails) for k in keys]))  # fmt: skip  # noqa: E501
        rows.append(
            (
                "abusive mails let through",
                [
                    f"{m.abusive_mails_before_flag}/{m.abusive_mails}"
                    for m in (self.methods[k] for k in keys)
                ],
            )
        )
        rows.append(
            (
                "delay to flag, median",
                [_duration(percentile(self.methods[k].delays, 50)) for k in keys],
            )
        )
        width0 = max([len("method"), *(len(r[0]) for r in rows)])
        widths = [max([len(n), *(len(r[1][i]) for r in rows)]) for i, n in enumerate(names)]
        out = [
            "method".ljust(width0)
            + "  "
            + "  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True))
        ]
        for label, cells in rows:
            out.append(
                label.ljust(width0)
                + "  "
                + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
            )
        for note in self.notes:
            out.append(f"note: {note}")
        return "\n".join(out)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class _CountryTable:
    """Country of an address from a ``ip_range_start,ip_range_end,country_code`` CSV."""

    def __init__(self, path: Path) -> None:
        rows = []
        with open(path, encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                a, b = ip_address(rec["ip_range_start"]), ip_address(rec["ip_range_end"])
                rows.append(
                    ((a.version << 128) | int(a), (b.version << 128) | int(b), rec["country_code"])
                )
        rows.sort()
        self._rows = rows
        self._starts = [r[0] for r in rows]

    def country(self, ip: IPAddress) -> str | None:
        key = (ip.version << 128) | int(ip)
        i = bisect.bisect_right(self._starts, key) - 1
        if i >= 0 and key <= self._rows[i][1]:
            return self._rows[i][2]
        return None


def _geo(
    directory: Path, geo: Sequence[str] | None
) -> tuple[Any, Callable[[IPAddress], str | None]]:
    """Open the resolver for the detector and a country function for the baselines."""
    paths = (
        list(geo) if geo else [str(directory / "geo-country.csv"), str(directory / "geo-asn.csv")]
    )
    try:
        geo_mod = importlib.import_module("authabuse.geo")
    except ImportError:
        geo_mod = None
    if geo_mod is not None:
        resolver = geo_mod.resolver_from_paths(paths)

        def country(ip: IPAddress) -> str | None:
            loc = resolver.resolve(ip)
            return None if loc is None else loc.country

        return resolver, country
    table = _CountryTable(Path(paths[0]))
    return None, table.country


class _DetectorMethod:
    """Adapter: :class:`authabuse.detector.Detector` as a :class:`Method`."""

    def __init__(self, rules: str | None, resolver: Any) -> None:
        det_mod = importlib.import_module("authabuse.detector")
        kwargs: dict[str, Any] = {"geo": resolver}
        if rules is not None:
            rules_mod = importlib.import_module("authabuse.rules")
            kwargs["rules"] = rules_mod.load_rules(rules)
        self.detector = det_mod.Detector(**kwargs)
        self.name = "authabuse" + (f" ({Path(rules).name})" if rules else "")

    def process(self, event: Event) -> Flag | None:
        v = self.detector.process(event)
        level = int(v.level)
        if level and v.account is not None:
            return v.account, level
        return None


def _events(directory: Path, truth: GroundTruth) -> Iterable[Event]:
    from authabuse.parsers import ParseStats, iter_events

    meta = truth.meta
    log_format = meta.get("log_format", "postfix")
    # Stamps without a year (BSD syslog) or a zone (BSD, Exim's own): the truth has them.
    year = meta.get("year") if meta.get("timestamps") == "bsd" else None
    tz = meta.get("tz") if meta.get("timestamps") in ("bsd", "exim") else None
    stats = ParseStats()
    return iter_events(
        [str(directory / meta["files"]["log"])], format=log_format, year=year, tz=tz, stats=stats
    )


def _evaluate_run(
    directory: Path,
    truth: GroundTruth,
    *,
    methods: dict[str, Method],
    threshold: int,
) -> tuple[dict[str, MethodResult], dict[str, Any]]:
    abusive = {q: a.name for a in truth.abused() if a.abuse for q in a.abuse.queue_ids}
    start = {a.name: a.abuse.start for a in truth.abused() if a.abuse}
    sent: Counter[str] = Counter()  # abusive submissions seen so far, per account
    first_flag: dict[str, dict[str, tuple[float, int]]] = {k: {} for k in methods}
    after: dict[str, dict[str, tuple[float, int]]] = {k: {} for k in methods}
    spent = dict.fromkeys(methods, 0.0)
    events = 0
    clock = time.perf_counter
    for event in _events(directory, truth):
        events += 1
        t = event.time.timestamp()
        for key, method in methods.items():
            t0 = clock()
            flag = method.process(event)
            spent[key] += clock() - t0
            if flag is None or flag[1] < threshold:
                continue
            account = flag[0]
            ff = first_flag[key]
            if account not in ff:
                ff[account] = (t, sent[account])
            s = start.get(account)
            if s is not None and t >= s and account not in after[key]:
                after[key][account] = (t, sent[account])
        if isinstance(event, Submission) and event.queue_id in abusive:
            sent[abusive[event.queue_id]] += 1
    results = {
        key: _score(
            MethodResult(method.name, seconds=spent[key]), truth, first_flag[key], after[key]
        )
        for key, method in methods.items()
    }
    run = {
        "directory": str(directory),
        "seed": truth.meta.get("seed"),
        "mix": truth.meta.get("mix"),
        "accounts": len(truth.accounts),
        "abused": len(truth.abused()),
        "days": truth.meta.get("days"),
        "events": events,
        "log_lines": truth.meta.get("log", {}).get("lines"),
    }
    return results, run


def _score(
    r: MethodResult,
    truth: GroundTruth,
    first_flag: dict[str, tuple[float, int]],
    after: dict[str, tuple[float, int]],
) -> MethodResult:
    """Fill ``r`` from one method's flags: first flag overall, and first at/after abuse."""
    for acc in truth.accounts.values():
        if acc.abuse is None:
            cur = r.false_positives.setdefault(acc.persona, [0, 0])
            cur[1] += 1
            if acc.name in first_flag:
                cur[0] += 1
                r.fp_accounts.append(acc.name)
            continue
        total = acc.abuse.messages
        if total == 0:
            continue  # the log ended before this abuse sent anything
        cur = r.recall.setdefault(acc.abuse.pattern, [0, 0])
        cur[1] += 1
        r.abusive_mails += total
        before = first_flag.get(acc.name)
        if before is not None and before[0] < acc.abuse.start:
            r.flagged_before_abuse += 1
        hit = after.get(acc.name)
        if hit is None:
            r.missed.append(acc.name)
            r.mails_before.append(total)
            r.abusive_mails_before_flag += total
            continue
        cur[0] += 1
        r.mails_before.append(hit[1])
        r.abusive_mails_before_flag += hit[1]
        if acc.abuse.first_mail is not None:
            r.delays.append(max(0.0, hit[0] - acc.abuse.first_mail))
    return r


def evaluate(
    directories: Sequence[str | os.PathLike[str]],
    *,
    rules: str | None = None,
    detector: bool = True,
    level: str = "abuse",
    rate_limit: tuple[int, float] = (30, 60.0),
    geo_limits: tuple[int, int] = (5, 20),
    geo: Sequence[str] | None = None,
    extra: dict[str, Callable[[Any], Method]] | None = None,
) -> Evaluation:
    """Scan each simulated directory with every method and score them (module docstring).

    ``level`` is the level that counts as flagged (``"abuse"`` or ``"suspicious"``;
    the baselines only know one level, which counts as abuse). ``rate_limit`` is
    ``(messages, seconds)`` per client address; ``geo_limits`` is ``(countries, IPs)``
    per account in 24 h. ``geo`` overrides the geo tables (default: the simulation's
    own). ``rules`` is a rules file for the detector; ``detector=False`` measures the
    baselines only. ``extra`` adds methods: key -> factory taking the geo resolver.

    >>> from authabuse.simulate import simulate
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = simulate(d, seed=4, accounts=80, days=1)
    ...     ev = evaluate([d])
    >>> sorted(ev.methods)
    ['detector', 'postfwd-geo', 'rate-limit']
    >>> 0.0 <= ev.methods["detector"].recall_total <= 1.0
    True
    """
    if level not in LEVELS:
        raise ConfigurationError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    if not directories:
        raise ConfigurationError("nothing to evaluate: no simulation directories")
    ev = Evaluation(level=level)
    for d in directories:
        directory = Path(d)
        truth = GroundTruth.load(directory)
        resolver, country = _geo(directory, geo)
        methods: dict[str, Method] = {}
        if detector:
            methods["detector"] = _DetectorMethod(rules, resolver)
        methods["rate-limit"] = RateLimitBaseline(limit=rate_limit[0], window=rate_limit[1])
        methods["postfwd-geo"] = GeoSpreadBaseline(
            country=country, max_countries=geo_limits[0], max_ips=geo_limits[1]
        )
        for key, factory in (extra or {}).items():
            methods[key] = factory(resolver)
        results, run = _evaluate_run(directory, truth, methods=methods, threshold=LEVELS[level])
        ev.runs.append(run)
        for key, r in results.items():
            if key in ev.methods:
                ev.methods[key].merge(r)
            else:
                ev.methods[key] = r
    return ev
