from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import escape as html_escape
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from authabuse import AuthAttempt, Delivery, Submission, parse_ip
from authabuse.geo import ChainResolver, GeoResolver, RangeTable
from authabuse.report import ReportBuilder, sanitize_text

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
COUNTRIES = ["PL", "IN", "AR", "ZA", "RO", "BG", "UA", "BR", "VN", "TR"]


def _events() -> Iterator[Any]:
    # burst: 3 IPs, 600 mails each, ~3 per second
    for i in range(1800):
        yield Submission(
            time=T0 + timedelta(seconds=i / 3),
            ip=IPv4Address(f"212.77.98.{i % 3 + 1}"),
            account="burst@example.jp",
            recipient_count=1,
        )
    # sprinkle: 500 IPs, 2 mails each, across 10 "countries"
    for i in range(1000):
        yield Submission(
            time=T0 + timedelta(hours=20, seconds=37 * i),
            ip=IPv4Address(0x0B000000 + (i % 500) * 256 + 7),
            account="sprinkle@example.jp",
            recipient_count=3,
        )
    # an ordinary account the report must not follow
    yield Submission(time=T0, ip=parse_ip("192.0.2.1"), account="normal@example.jp")
    yield AuthAttempt(
        time=T0 + timedelta(days=1),
        ip=parse_ip("192.0.2.99"),
        account="burst@example.jp",
        succeeded=False,
        attempts=4,
    )
    yield Delivery(time=T0, queue_id="Q", status="sent")


def _geo() -> GeoResolver:
    """Real range tables: 11.x.y.0/24 spread over COUNTRIES, 212.77.98.0/24 in PL."""
    blocks = [(f"11.{k >> 8}.{k & 255}.0", f"11.{k >> 8}.{k & 255}.255", k) for k in range(500)]
    countries = RangeTable.from_rows(
        [(a, b, COUNTRIES[k % len(COUNTRIES)]) for a, b, k in blocks]
        + [("212.77.98.0", "212.77.98.255", "PL")]
    )
    asns = RangeTable.from_rows(
        [(a, b, 64500 + k % 7, f"Net {64500 + k % 7}") for a, b, k in blocks]
        + [("212.77.98.0", "212.77.98.255", 12827, "Wirtualna Polska Media S.A.")]
    )
    return ChainResolver([countries, asns])


FINDINGS: list[dict[str, Any]] = [
    {
        "account": "burst@example.jp",
        "level": "abuse",
        "score": 12.5,
        "flagged_at": "2024-05-01T08:00:05+00:00",
        "reasons": [
            {"rule": "ip-burst", "score": 8, "detail": "212.77.98.1 sent 20 mails in 10 s"}
        ],
        "distinct_ips": 4,
        "countries": {"PL": 1800},
        "messages": 1800,
        "first_seen": "2024-05-01T08:00:00+00:00",
        "last_seen": "2024-05-02T08:00:00+00:00",
    },
    {
        "account": "sprinkle@example.jp",
        "level": "suspicious",
        "score": 6,
        "flagged_at": "2024-05-02T04:10:00+00:00",
        "reasons": [{"rule": "many-countries", "score": 6, "detail": "10 countries"}],
        "distinct_ips": 500,
        "countries": {"PL": 100, "IN": 100},
        "messages": 1000,
        "first_seen": "2024-05-02T04:00:00+00:00",
        "last_seen": "2024-05-02T14:16:00+00:00",
    },
    {
        "account": "evil\x1b[2J<script>alert(1)</script>\u202e@example.jp",
        "level": "abuse",
        "score": 7,
        "flagged_at": "not a time",
        "reasons": [{"rule": "<b>x</b>"}],
        "distinct_ips": "many",
        "countries": {"<i>": "NaN"},
        "messages": None,
    },
]


class _Doc(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        self.tags.append((tag, d))
        if d.get("id"):
            self.ids.add(str(d["id"]))


def _build(figures: bool) -> tuple[ReportBuilder, str, _Doc]:
    b = ReportBuilder(FINDINGS, geo=_geo(), figures=figures, sources=["mail.log"])
    b.add_all(_events())
    text = b.html()
    doc = _Doc()
    doc.feed(text)
    return b, text, doc


def test_report_follows_only_flagged_accounts() -> None:
    b, _, _ = _build(figures=False)
    assert b.events_seen == 1800 + 1000 + 3
    assert b.events_kept == 1800 + 1000 + 1


def test_tables_render_without_figures() -> None:
    _, text, doc = _build(figures=False)
    assert {"per-day", "countries", "distinct-ips", "per-ip", "accounts", "drilldowns"} <= doc.ids
    assert "no-figures" in doc.ids
    assert not [t for t, _ in doc.tags if t == "img"]
    # flagged per day: one abuse on 05-01, one suspicious on 05-02; bad flagged_at skipped
    assert "<td>2024-05-01</td><td>1</td><td>0</td>" in text
    assert "<td>2024-05-02</td><td>0</td><td>1</td>" in text
    # sprinkle shows its 10 countries, burst its three IPs with 600 each
    assert "500 source IPs" in text
    # sources were placed by the real range tables: the burst's PL network, ten countries
    assert "<td>AS12827</td><td>Wirtualna Polska Media S.A.</td>" in text
    for cc in COUNTRIES:
        assert f"<td>{cc}</td>" in text
    assert "at most 600 from one IP" in text
    assert "3 source IPs" in text or "4 source IPs" in text


def test_hostile_input_is_escaped() -> None:
    _, text, doc = _build(figures=False)
    assert "<script>" not in text
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert "&lt;script&gt;" in text
    assert not [t for t, _ in doc.tags if t in {"script", "b", "i", "iframe"}]


def test_nothing_external() -> None:
    _, text, doc = _build(figures=False)
    for tag, attrs in doc.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is None:
                continue
            if tag == "a" and value == "https://db-ip.com":
                continue  # the attribution link DB-IP's licence asks for; never fetched
            assert value.startswith(("#", "data:")), (tag, key, value)
    assert "default-src 'none'" in text


def test_sanitize_text() -> None:
    assert sanitize_text("a\nb\x00c") == "a?b?c"
    assert len(sanitize_text("é" * 1000, limit=50)) == 50


def test_figures_with_matplotlib() -> None:
    pytest.importorskip("matplotlib")
    _, _text, doc = _build(figures=True)
    imgs = [a for t, a in doc.tags if t == "img"]
    ids = {a.get("id") for t, a in doc.tags if t == "figure"}
    assert {
        "fig-per-day",
        "fig-countries",
        "fig-distinct-ips",
        "fig-per-ip-burst",
        "fig-per-ip-sprinkle",
    } <= ids
    assert len(imgs) == 5 + 2  # five report figures, a timeline per account with mail
    for a in imgs:
        assert str(a["src"]).startswith("data:image/png;base64,")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("AUTHABUSE_REQUIRE_INTEGRATION"),
    reason="Debian chromium is not installed (.ci/run installs it)",
)


def _chromium(page: Path, tmp: Path, *extra: str) -> tuple[str, set[str]]:
    """Load ``page`` in headless Chromium; return the DOM and the URLs the page requested.

    Chromium itself makes background requests (time, updates) at idle priority; the
    page's own resource loads carry a real priority. The control test below proves that
    this tells them apart on the installed version.
    """
    assert CHROMIUM is not None, "chromium is required in CI"
    netlog = tmp / f"net-{page.stem}.json"
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / ('profile-' + page.stem)}",
        f"--log-net-log={netlog}",
        "--window-size=1280,2400",
        *extra,
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    requested = set()
    for m in re.finditer(r"\{[^{}]*\"url\"[^{}]*\}", netlog.read_text(errors="replace")):
        entry = json.loads(m.group(0))
        if entry.get("priority") not in (None, "IDLE", "THROTTLED"):
            requested.add(str(entry["url"]))
    return dom, requested


@needs_chromium
def test_chromium_request_check_sees_an_external_load(tmp_path: Path) -> None:
    page = tmp_path / "control.html"
    page.write_text("<html><body><img src='http://198.51.100.1/x.png'>x</body></html>")
    _, requested = _chromium(page, tmp_path)
    assert "http://198.51.100.1/x.png" in requested


@needs_chromium
def test_renders_in_headless_chromium_without_network(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    b, _, _ = _build(figures=True)
    report = b.write(tmp_path / "report.html")
    dom, requested = _chromium(report, tmp_path)
    assert 'id="fig-per-ip-burst"' in dom
    assert 'id="accounts"' in dom
    external = {u for u in requested if not u.startswith(("file:", "data:"))}
    assert not external, external
    shot = tmp_path / "shot.png"
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'shot-profile'}",
            "--window-size=1280,2400",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from matplotlib.image import imread

    pixels = imread(str(shot))
    # the per-day figure's abuse bars are #c0392b: they must be painted on screen
    red = (
        (abs(pixels[..., 0] - 0xC0 / 255) < 0.03)
        & (abs(pixels[..., 1] - 0x39 / 255) < 0.03)
        & (abs(pixels[..., 2] - 0x2B / 255) < 0.03)
    )
    assert int(red.sum()) > 500, "figures did not render"


def test_report_cli_agrees_with_scan_on_a_simulated_log(tmp_path: Path) -> None:
    from authabuse.cli import main
    from authabuse.simulate import simulate

    sim = simulate(tmp_path / "sim", seed=5, accounts=150, days=1, mix="business")
    log = str(sim.out_dir / "maillog")
    geo = ["--geo", str(sim.out_dir / "geo-country.csv"), "--geo", str(sim.out_dir / "geo-asn.csv")]
    scan_out = subprocess.run(
        [
            sys.executable,
            "-m",
            "authabuse",
            "scan",
            "--json",
            *geo,
            "--report",
            str(tmp_path / "scan.html"),
            log,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert scan_out.returncode in (0, 1), scan_out.stderr
    scanned = {json.loads(line)["account"] for line in scan_out.stdout.splitlines()}
    assert scanned, "the simulation holds abuse the scan must report"
    out = tmp_path / "r.html"
    code = main(["report", *geo, "--out", str(out), log])
    assert code == (1 if scanned else 0)
    text = out.read_text(encoding="utf-8")
    doc = _Doc()
    doc.feed(text)
    table_accounts = {
        str(a["href"]) for t, a in doc.tags if t == "a" and str(a.get("href")).startswith("#acct-")
    }
    # every account scan flagged has a row (and a drill-down) in the report, and no other
    assert len(table_accounts) == len(scanned)
    for account in scanned:
        assert html_escape(account) in text
    # `scan --report` writes the same accounts as `authabuse report`
    scan_doc = _Doc()
    scan_doc.feed((tmp_path / "scan.html").read_text(encoding="utf-8"))
    scan_report_accounts = {
        str(a["href"])
        for t, a in scan_doc.tags
        if t == "a" and str(a.get("href")).startswith("#acct-")
    }
    assert scan_report_accounts == table_accounts


def test_report_cli_reads_stdin_twice(tmp_path: Path) -> None:
    log = Path(__file__).resolve().parents[1] / "examples" / "postfix-submission.log"
    out = tmp_path / "stdin.html"
    proc = subprocess.run(
        [sys.executable, "-m", "authabuse", "report", "--no-figures", "--out", str(out), "-"],
        input=log.read_bytes(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"66 lines" in proc.stderr
    assert "No account reached" in out.read_text(encoding="utf-8")
    assert "mail.log" not in out.read_text(encoding="utf-8")


def test_report_cli_bad_options_are_usage_errors(tmp_path: Path) -> None:
    from authabuse.cli import main

    assert main(["report", "--tz", "Mars/Olympus", "--out", str(tmp_path / "x.html"), "x.log"]) == 2
    assert not (tmp_path / "x.html").exists()
