"""Self-contained HTML reports of flagged accounts, with the figures of the source report.

A report is built in two steps: a scan names the flagged accounts (the ``scan --json``
objects), then a :class:`ReportBuilder` reads the same events again and keeps, for the
flagged accounts only, what the figures and drill-downs need (hourly volume, countries,
networks, per-source-IP counts). Memory therefore grows with the flagged accounts and
their source addresses, not with the log.

The HTML has no external resource at all: figures are embedded PNG ``data:`` URIs drawn
with matplotlib (the ``plot`` extra); without matplotlib the report still renders its
tables and says which extra adds the figures.

>>> from datetime import datetime, timezone
>>> from authabuse import Submission, parse_ip
>>> finding = {"account": "alice@example.jp", "level": "abuse", "score": 9.0,
...            "flagged_at": "2024-05-01T10:05:00+00:00",
...            "reasons": [{"rule": "many-countries", "score": 9.0, "detail": "31 countries"}],
...            "distinct_ips": 2, "countries": {"PL": 2}, "messages": 2,
...            "first_seen": "2024-05-01T10:00:00+00:00",
...            "last_seen": "2024-05-01T10:06:00+00:00"}
>>> builder = ReportBuilder([finding], figures=False)
>>> for minute in (0, 6):
...     builder.add(Submission(time=datetime(2024, 5, 1, 10, minute, tzinfo=timezone.utc),
...                            ip=parse_ip("192.0.2.7"), account="alice@example.jp"))
>>> html = builder.html()
>>> "alice@example.jp" in html and "<table" in html
True
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from authabuse.errors import MissingExtraError
from authabuse.events import AuthAttempt, Event, IPAddress, Submission

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from authabuse.geo import GeoResolver

__all__ = ["ReportBuilder", "sanitize_text"]

_HOUR = 3600
_DAY = 86400
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_MAX_DRILLDOWNS = 100
_TOP_ROWS = 15
_MAX_FIGURE_ACCOUNTS = 10


def sanitize_text(text: object, limit: int = 200) -> str:
    r"""Make untrusted text (account names, reasons) safe to print or embed.

    Control characters (including bidirectional overrides) become ``?`` and the text is
    cut to ``limit`` characters with an ellipsis. HTML escaping is a separate step.

    >>> sanitize_text("evil\x1b[31m\u202euser")
    'evil?[31m?user'
    >>> sanitize_text("x" * 10, limit=4)
    'xxx…'
    """
    s = _CONTROL.sub("?", str(text))
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def _esc(text: object, limit: int = 200) -> str:
    return html.escape(sanitize_text(text, limit), quote=True)


@dataclass(slots=True)
class _Activity:
    """What the report keeps per flagged account."""

    messages_by_hour: Counter[int] = field(default_factory=Counter)
    auth_failures_by_hour: Counter[int] = field(default_factory=Counter)
    countries_by_day: defaultdict[int, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    countries: Counter[str] = field(default_factory=Counter)
    networks: Counter[tuple[int | None, str]] = field(default_factory=Counter)
    ip_messages: Counter[IPAddress] = field(default_factory=Counter)
    ip_attempts: Counter[IPAddress] = field(default_factory=Counter)
    ip_first: dict[IPAddress, float] = field(default_factory=dict)
    ip_last: dict[IPAddress, float] = field(default_factory=dict)
    ip_country: dict[IPAddress, str] = field(default_factory=dict)
    recipients: int = 0

    def source_counts(self) -> Counter[IPAddress]:
        """Messages per IP, or attempts per IP for accounts that only logged in."""
        return self.ip_messages if self.ip_messages else self.ip_attempts


class ReportBuilder:
    """Collect the activity of flagged accounts and render the HTML report.

    ``findings`` are the objects ``authabuse scan --json`` prints (one per flagged
    account). Feed every event of the scanned logs to :meth:`add` in log order, then call
    :meth:`html` or :meth:`write`. ``geo`` places source addresses (any
    :class:`~authabuse.geo.GeoResolver`);
    ``figures=None`` draws figures when matplotlib is installed, ``False`` never,
    ``True`` requires it.

    >>> ReportBuilder([], figures=False).html().count("No account reached")
    1
    """

    def __init__(
        self,
        findings: Sequence[Mapping[str, Any]],
        *,
        geo: GeoResolver | None = None,
        figures: bool | None = None,
        title: str = "authabuse report",
        sources: Sequence[str] = (),
    ) -> None:
        self._findings = sorted(
            findings, key=lambda f: (-float(f.get("score", 0.0)), str(f.get("account", "")))
        )
        self._activity: dict[str, _Activity] = {
            str(f["account"]): _Activity() for f in self._findings if "account" in f
        }
        self._geo = geo
        self._title = title
        self._sources = list(sources)
        self._events_seen = 0
        self._events_kept = 0
        if figures is None:
            try:
                import matplotlib  # noqa: F401  # probing whether the plot extra is present
            except ImportError:
                figures = False
            else:
                figures = True
        elif figures:
            _import_figure()
        self._figures = figures
        self._geo_cache: dict[IPAddress, tuple[str, int | None, str]] = {}

    @property
    def accounts(self) -> frozenset[str]:
        """The accounts this report follows.

        >>> sorted(ReportBuilder([{"account": "b"}, {"account": "a"}],
        ...                      figures=False).accounts)
        ['a', 'b']
        """
        return frozenset(self._activity)

    def _place(self, ip: IPAddress) -> tuple[str, int | None, str]:
        hit = self._geo_cache.get(ip)
        if hit is not None:
            return hit
        country, asn, org = "??", None, ""
        if self._geo is not None:
            loc = self._geo.resolve(ip)
            if loc is not None:
                country = loc.country or "--"
                asn = loc.asn
                org = loc.org or ""
        if len(self._geo_cache) < 1_000_000:
            self._geo_cache[ip] = (country, asn, org)
        return country, asn, org

    def add(self, event: Event) -> None:
        """Account for one event (ignored unless it belongs to a flagged account).

        >>> from datetime import datetime, timezone
        >>> from authabuse import AuthAttempt, parse_ip
        >>> b = ReportBuilder([{"account": "u"}], figures=False)
        >>> b.add(AuthAttempt(time=datetime(2024, 1, 1, tzinfo=timezone.utc),
        ...                   ip=parse_ip("192.0.2.1"), account="u", succeeded=False))
        >>> b.events_kept
        1
        """
        self._events_seen += 1
        if isinstance(event, Submission):
            count = 1
        elif isinstance(event, AuthAttempt):
            count = event.attempts
        else:
            return
        if event.account is None:
            return
        act = self._activity.get(event.account)
        if act is None:
            return
        self._events_kept += 1
        t = event.time.timestamp()
        hour = int(t // _HOUR) * _HOUR
        ip = event.ip
        country, asn, org = self._place(ip)
        if isinstance(event, Submission):
            act.messages_by_hour[hour] += 1
            act.ip_messages[ip] += 1
            act.recipients += event.recipient_count or len(event.recipients)
        elif not event.succeeded:
            act.auth_failures_by_hour[hour] += count
        act.ip_attempts[ip] += count
        act.countries_by_day[int(t // _DAY) * _DAY][country] += count
        act.countries[country] += count
        act.networks[(asn, org)] += count
        act.ip_first.setdefault(ip, t)
        act.ip_last[ip] = t
        act.ip_country[ip] = country

    def add_all(self, events: Iterable[Event]) -> None:
        """Call :meth:`add` for each event.

        >>> b = ReportBuilder([], figures=False); b.add_all([]); b.events_seen
        0
        """
        for event in events:
            self.add(event)

    @property
    def events_seen(self) -> int:
        """How many events were fed to :meth:`add`.

        >>> ReportBuilder([], figures=False).events_seen
        0
        """
        return self._events_seen

    @property
    def events_kept(self) -> int:
        """How many of them belonged to a flagged account.

        >>> ReportBuilder([], figures=False).events_kept
        0
        """
        return self._events_kept

    # ------------------------------------------------------------------ rendering

    def html(self) -> str:
        """Render the whole report as one self-contained HTML document.

        >>> "<!DOCTYPE html>" in ReportBuilder([], figures=False).html()
        True
        """
        parts = [_HEAD.format(title=_esc(self._title))]
        parts.append(f"<h1>{_esc(self._title)}</h1>")
        parts.append(self._overview())
        if not self._figures:
            parts.append(
                '<p class="note" id="no-figures">Figures need the <code>plot</code> extra: '
                "<code>pip install 'authabuse[plot]'</code>. The tables below are complete.</p>"
            )
        parts.append(self._section_per_day())
        parts.append(self._section_countries())
        parts.append(self._section_distinct_ips())
        parts.append(self._section_per_ip())
        parts.append(self._section_table())
        parts.append(self._section_drilldowns())
        parts.append(_FOOT)
        return "\n".join(p for p in parts if p)

    def write(self, path: str | Path) -> Path:
        """Write :meth:`html` to ``path`` (UTF-8) and return the path.

        >>> import tempfile, os
        >>> out = ReportBuilder([], figures=False).write(
        ...     os.path.join(tempfile.mkdtemp(), "r.html"))
        >>> out.stat().st_size > 0
        True
        """
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(self.html(), encoding="utf-8")
        tmp.replace(p)
        return p

    def _overview(self) -> str:
        levels = Counter(str(f.get("level", "?")) for f in self._findings)
        src = ", ".join(_esc(s, 120) for s in self._sources) or "events fed by the caller"
        if not self._findings:
            return (
                f"<p>Input: {src}. {self._events_seen:,} events read. "
                "No account reached the reported level.</p>"
            )
        return (
            f"<p>Input: {src}. {self._events_seen:,} events read; "
            f"<strong>{len(self._findings)}</strong> accounts flagged "
            f"({levels.get('abuse', 0)} abuse, {levels.get('suspicious', 0)} suspicious).</p>"
        )

    def _figure(self, fig: Figure | None, alt: str, fig_id: str) -> str:
        if fig is None:
            return ""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        return (
            f'<figure id="{fig_id}"><img class="fig" alt="{_esc(alt)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{_esc(alt)}</figcaption></figure>'
        )

    def _flag_days(self) -> dict[str, Counter[str]]:
        per_day: dict[str, Counter[str]] = defaultdict(Counter)
        for f in self._findings:
            when = _parse_time(f.get("flagged_at"))
            if when is not None:
                per_day[when.astimezone(UTC).date().isoformat()][str(f.get("level"))] += 1
        return dict(sorted(per_day.items()))

    def _section_per_day(self) -> str:
        per_day = self._flag_days()
        rows = "".join(
            f"<tr><td>{day}</td><td>{c.get('abuse', 0)}</td><td>{c.get('suspicious', 0)}</td></tr>"
            for day, c in per_day.items()
        )
        fig = ""
        if self._figures and per_day:
            figure_cls = _import_figure()
            figure = figure_cls(figsize=(8, 3))
            ax = figure.subplots()
            days = list(per_day)
            abuse = [per_day[d].get("abuse", 0) for d in days]
            susp = [per_day[d].get("suspicious", 0) for d in days]
            ax.bar(days, abuse, color="#c0392b", label="abuse")
            ax.bar(days, susp, bottom=abuse, color="#f39c12", label="suspicious")
            ax.set_ylabel("accounts flagged")
            ax.legend(loc="upper left")
            ax.tick_params(axis="x", labelrotation=45)
            fig = self._figure(figure, "Flagged accounts per day (UTC)", "fig-per-day")
        return (
            '<section id="per-day"><h2>Flagged accounts per day</h2>'
            f"{fig}<table><thead><tr><th>day (UTC)</th><th>abuse</th><th>suspicious</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></section>"
        )

    def _section_countries(self) -> str:
        by_day: dict[int, Counter[str]] = defaultdict(Counter)
        total: Counter[str] = Counter()
        for act in self._activity.values():
            for day, day_counts in act.countries_by_day.items():
                by_day[day].update(day_counts)
            total.update(act.countries)
        if not total:
            return ""
        top = [c for c, _ in total.most_common(8)]
        rows = "".join(
            f"<tr><td>{_esc(c)}</td><td>{n:,}</td><td>{100 * n / total.total():.1f}%</td></tr>"
            for c, n in total.most_common(_TOP_ROWS)
        )
        fig = ""
        if self._figures:
            figure_cls = _import_figure()
            days = sorted(by_day)
            labels = [datetime.fromtimestamp(d, UTC).date().isoformat() for d in days]
            series = [[by_day[d][c] / max(1, by_day[d].total()) for d in days] for c in top]
            other = [1 - sum(by_day[d][c] for c in top) / max(1, by_day[d].total()) for d in days]
            figure = figure_cls(figsize=(8, 3.5))
            ax = figure.subplots()
            x = list(range(len(days)))
            bottom = [0.0] * len(days)
            for label, values in zip([*top, "other"], [*series, other], strict=True):
                ax.bar(x, values, bottom=bottom, label=label, width=0.9)
                bottom = [b + v for b, v in zip(bottom, values, strict=True)]
            ax.set_xticks(x, labels, rotation=45)
            ax.set_ylim(0, 1)
            ax.set_ylabel("share of attempts")
            ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
            fig = self._figure(
                figure, "Source-country shares per day, flagged accounts", "fig-countries"
            )
        return (
            '<section id="countries"><h2>Source countries of flagged accounts</h2>'
            f"{fig}<table><thead><tr><th>country</th><th>attempts</th><th>share</th></tr>"
            f"</thead><tbody>{rows}</tbody></table></section>"
        )

    def _section_distinct_ips(self) -> str:
        ranked = sorted(self._activity.items(), key=lambda kv: (-len(kv[1].ip_first), kv[0]))[
            :_MAX_FIGURE_ACCOUNTS
        ]
        ranked = [(a, act) for a, act in ranked if act.ip_first]
        if not ranked:
            return ""
        fig = ""
        if self._figures:
            figure_cls = _import_figure()
            figure = figure_cls(figsize=(8, 3.5))
            ax = figure.subplots()
            for account, act in ranked:
                firsts = sorted(act.ip_first.values())
                xs = [datetime.fromtimestamp(t, UTC) for t in firsts]
                ax.step(xs, range(1, len(xs) + 1), where="post", label=sanitize_text(account, 40))
            ax.set_ylabel("distinct source IPs (cumulative)")
            if max(len(act.ip_first) for _, act in ranked) > 100:
                ax.set_yscale("log")
            ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
            figure.autofmt_xdate()
            fig = self._figure(
                figure, "Distinct source IPs per flagged account over time", "fig-distinct-ips"
            )
        rows = "".join(
            f'<tr><td><a href="#{_anchor(a)}">{_esc(a, 80)}</a></td>'
            f"<td>{len(act.ip_first):,}</td><td>{len(act.countries):,}</td></tr>"
            for a, act in ranked
        )
        return (
            '<section id="distinct-ips"><h2>Distinct source IPs per flagged account</h2>'
            f"{fig}<table><thead><tr><th>account</th><th>distinct IPs</th><th>countries</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></section>"
        )

    def _section_per_ip(self) -> str:
        candidates = [(a, act.source_counts()) for a, act in self._activity.items()]
        candidates = [(a, c) for a, c in candidates if c]
        if not candidates:
            return ""
        burst = max(candidates, key=lambda ac: (max(ac[1].values()), ac[0]))
        sprinkle = max(candidates, key=lambda ac: (len(ac[1]) / max(ac[1].values()), ac[0]))
        picks = [("burst", burst)]
        if sprinkle[0] != burst[0]:
            picks.append(("sprinkle", sprinkle))
        blocks = []
        for kind, (account, counts) in picks:
            values = sorted(counts.values(), reverse=True)
            summary = (
                f"{_esc(account, 80)}: {len(values):,} source IPs, "
                f"{sum(values):,} attempts, at most {values[0]:,} from one IP, "
                f"median {values[len(values) // 2]:,} per IP"
            )
            fig = ""
            if self._figures:
                figure_cls = _import_figure()
                figure = figure_cls(figsize=(8, 3))
                ax = figure.subplots()
                ax.bar(range(len(values)), values, width=1.0, color="#2c3e50")
                ax.set_xlabel("source IPs, most active first")
                ax.set_ylabel("send attempts")
                if values[0] > 50 * max(1, values[-1]):
                    ax.set_yscale("log")
                fig = self._figure(
                    figure,
                    f"Send attempts per source IP ({kind} pattern): {sanitize_text(account, 60)}",
                    f"fig-per-ip-{kind}",
                )
            blocks.append(f'<div class="per-ip" id="per-ip-{kind}"><p>{summary}</p>{fig}</div>')
        return (
            '<section id="per-ip"><h2>Send attempts per source IP</h2>'
            "<p>Burst: few IPs sending thousands each. Sprinkle: many IPs, a few each.</p>"
            + "".join(blocks)
            + "</section>"
        )

    def _section_table(self) -> str:
        if not self._findings:
            return ""
        rows = []
        for f in self._findings:
            account = str(f.get("account", ""))
            # rule names and scores here; the evidence is in the account's drill-down
            reasons = ", ".join(
                f"{_esc(r.get('rule', ''), 60)} (+{_num(r.get('score'))})"
                for r in f.get("reasons", [])
                if isinstance(r, Mapping)
            )
            countries = f.get("countries") or {}
            top_c = ", ".join(
                f"{_esc(c, 8)} {n}"
                for c, n in sorted(countries.items(), key=lambda kv: -_int(kv[1]))[:6]
            )
            level = _esc(f.get("level", ""), 20)
            rows.append(
                f'<tr class="level-{level}"><td><a href="#{_anchor(account)}">'
                f"{_esc(account, 80)}</a></td><td>{level}</td><td>{_num(f.get('score'))}</td>"
                f"<td>{reasons}</td><td>{top_c}</td><td>{_int(f.get('distinct_ips')):,}</td>"
                f"<td>{_int(f.get('messages')):,}</td>"
                f"<td>{_esc(f.get('first_seen', ''), 40)}</td>"
                f"<td>{_esc(f.get('last_seen', ''), 40)}</td></tr>"
            )
        return (
            '<section id="accounts"><h2>Flagged accounts</h2><div class="scroll"><table>'
            "<thead><tr><th>account</th><th>level</th><th>score</th><th>reasons</th>"
            "<th>countries</th><th>distinct IPs</th><th>messages</th><th>first seen</th>"
            f"<th>last seen</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
            "</section>"
        )

    def _section_drilldowns(self) -> str:
        blocks = []
        for f in self._findings[:_MAX_DRILLDOWNS]:
            account = str(f.get("account", ""))
            act = self._activity.get(account)
            if act is None:
                continue
            blocks.append(self._drilldown(account, f, act))
        if not blocks:
            return ""
        more = len(self._findings) - _MAX_DRILLDOWNS
        tail = f"<p>{more} more accounts are listed in the table only.</p>" if more > 0 else ""
        return '<section id="drilldowns"><h2>Accounts in detail</h2>' + "".join(blocks) + tail

    def _drilldown(self, account: str, f: Mapping[str, Any], act: _Activity) -> str:
        fig = ""
        if self._figures and (act.messages_by_hour or act.auth_failures_by_hour):
            figure_cls = _import_figure()
            figure = figure_cls(figsize=(8, 2.4))
            ax = figure.subplots()
            hours = sorted(set(act.messages_by_hour) | set(act.auth_failures_by_hour))
            xs = [datetime.fromtimestamp(h, UTC) for h in hours]
            ax.bar(xs, [act.messages_by_hour[h] for h in hours], width=1 / 24, label="messages")
            if act.auth_failures_by_hour:
                ax.bar(
                    xs,
                    [act.auth_failures_by_hour[h] for h in hours],
                    width=1 / 24,
                    bottom=[act.messages_by_hour[h] for h in hours],
                    label="auth failures",
                    color="#e67e22",
                )
            ax.set_ylabel("per hour")
            ax.legend(loc="upper left", fontsize="small")
            figure.autofmt_xdate()
            fig = self._figure(
                figure, f"Timeline of {sanitize_text(account, 60)}", f"fig-{_anchor(account)}"
            )
        countries = "".join(
            f"<tr><td>{_esc(c, 8)}</td><td>{n:,}</td></tr>"
            for c, n in act.countries.most_common(_TOP_ROWS)
        )
        networks = "".join(
            f"<tr><td>{'AS' + str(asn) if asn is not None else '?'}</td>"
            f"<td>{_esc(org, 60)}</td><td>{n:,}</td></tr>"
            for (asn, org), n in act.networks.most_common(_TOP_ROWS)
        )
        counts = act.source_counts()
        top_ips = "".join(
            f"<tr><td>{ip}</td><td>{_esc(act.ip_country.get(ip, '??'), 8)}</td><td>{n:,}</td>"
            f"<td>{_fmt_ts(act.ip_first[ip])}</td><td>{_fmt_ts(act.ip_last[ip])}</td></tr>"
            for ip, n in counts.most_common(_TOP_ROWS)
        )
        reasons = "".join(
            f"<li><strong>{_esc(r.get('rule', ''), 60)}</strong> (+{_num(r.get('score'))}): "
            f"{_esc(r.get('detail', ''), 500)}</li>"
            for r in f.get("reasons", [])
            if isinstance(r, Mapping)
        )
        return (
            f'<article class="drill" id="{_anchor(account)}"><h3>{_esc(account, 120)} '
            f'<span class="badge level-{_esc(f.get("level", ""), 20)}">'
            f"{_esc(f.get('level', ''), 20)} {_num(f.get('score'))}</span></h3>"
            f"<ul>{reasons}</ul>{fig}"
            f'<div class="grid"><table><caption>countries</caption><tbody>{countries}'
            f"</tbody></table><table><caption>networks</caption><tbody>{networks}</tbody>"
            f"</table></div><table><caption>top source IPs ({len(counts):,} in all)</caption>"
            "<thead><tr><th>IP</th><th>country</th><th>attempts</th><th>first</th><th>last</th>"
            f'</tr></thead><tbody>{top_ips}</tbody></table><p><a href="#accounts">back to the '
            "table</a></p></article>"
        )


def _import_figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError.for_extra("plot", "Report figures") from None
    return Figure


def _anchor(account: str) -> str:
    return (
        "acct-"
        + "".join(ch if ch.isalnum() else "-" for ch in account[:60])
        + (f"-{_hash_text(account) % 100000:05d}")
    )


def _hash_text(text: str) -> int:
    """Return a small stable hash for anchors (not Python's randomized ``hash``)."""
    h = 2166136261
    for ch in text.encode("utf-8", "surrogatepass"):
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


def _num(value: object) -> str:
    try:
        x = float(value)  # type: ignore[arg-type]  # untrusted JSON value, checked below
    except (TypeError, ValueError):
        return "?"
    if not math.isfinite(x):
        return "?"
    return f"{x:g}"


def _int(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return 0


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _fmt_ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 1em;
       max-width: 1100px; color: #222; }}
h1 {{ font-size: 1.6em; }} h2 {{ border-bottom: 1px solid #ccc; margin-top: 2em; }}
table {{ border-collapse: collapse; margin: .5em 0; font-size: .9em; }}
th, td {{ border: 1px solid #ddd; padding: .25em .5em; text-align: left;
          vertical-align: top; overflow-wrap: anywhere; }}
th {{ background: #f4f4f4; }}
caption {{ font-weight: bold; text-align: left; }}
img.fig {{ max-width: 100%; height: auto; }}
figure {{ margin: 1em 0; }} figcaption {{ color: #555; font-size: .9em; }}
.scroll {{ overflow-x: auto; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.note {{ background: #fff6d5; padding: .5em; border-left: 4px solid #e0b000; }}
.badge {{ font-size: .7em; padding: .1em .4em; border-radius: .3em; background: #eee; }}
.level-abuse .badge, .badge.level-abuse {{ background: #c0392b; color: #fff; }}
.badge.level-suspicious {{ background: #f39c12; color: #fff; }}
tr.level-abuse td:nth-child(2) {{ color: #c0392b; font-weight: bold; }}
article.drill {{ border-top: 1px dashed #bbb; padding-top: .5em; }}
</style></head><body>"""

_FOOT = """<footer><p>Generated by authabuse. Geolocation by the databases configured for the
scan; the embedded default data is <a href="https://db-ip.com">IP Geolocation by DB-IP</a>
(CC BY 4.0) with ASN data from ip-location-db.</p></footer>
</body></html>"""
