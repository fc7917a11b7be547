"""Logs as journalctl prints them and as syslog sends them over the network.

Real tools make the input: a journal file is written by ``systemd-journal-remote`` from
the real Postfix and Dovecot lines of ``examples/`` and printed by ``journalctl`` in each
of its output modes; RFC 5424 and RFC 3164 datagrams are sent by util-linux's ``logger``
to a socket of the test. Every mode must give the events of the original file, at the
instants the journal holds (to the second where a mode prints no fraction).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from authabuse import AuthAttempt, LogParser
from authabuse.events import Event

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "postfix-submission.log"
DATA = Path(__file__).resolve().parent / "data"
JOURNALCTL = shutil.which("journalctl")
REMOTE = next(
    (
        p
        for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
        if os.access(p, os.X_OK)
    ),
    None,
)
LOGGER = shutil.which("logger")

_SYSLOG = re.compile(
    r"[A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8} (\S+) ([^\s\[:]+)(?:\[([0-9]+)\])?: (.*)"
)
# 2025-03-02 10:00:00 UTC; the entries are 1.000123 s apart, so every mode's rounding shows
BASE_US = 1_740_909_600_000_000
STEP_US = 1_000_123


def _original(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if _SYSLOG.match(line)]


def _without_time(events: list[Event]) -> list[dict[str, Any]]:
    out = []
    for e in events:
        d = e.to_dict()
        del d["time"]
        out.append(d)
    return out


def _parse(text: str, **kw: Any) -> tuple[list[Event], LogParser]:
    parser = LogParser(**kw)
    events: list[Event] = []
    parser.feed_block(text, 0, events)
    events.extend(parser.flush())
    return events, parser


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    if JOURNALCTL is None or REMOTE is None:
        pytest.skip(
            "journalctl and systemd-journal-remote are needed (apt: systemd-journal-remote)"
        )
    work = tmp_path_factory.mktemp("journal")
    lines = _original(EXAMPLE) + _original(DATA / "crowdsec-dovecot.log")
    export = []
    for i, line in enumerate(lines):
        m = _SYSLOG.match(line)
        assert m is not None
        host, ident, pid, msg = m.groups()
        fields = {
            "__CURSOR": f"s=0;i={i}",
            "__REALTIME_TIMESTAMP": str(BASE_US + i * STEP_US),
            "__MONOTONIC_TIMESTAMP": str(1_000_000 + i),
            "_BOOT_ID": "0123456789abcdef0123456789abcdef",
            "_HOSTNAME": host,
            "SYSLOG_IDENTIFIER": ident,
            "PRIORITY": "6",
            "MESSAGE": msg,
        }
        if pid:
            fields["_PID"] = pid
        export.append("".join(f"{k}={v}\n" for k, v in fields.items()))
    (work / "export.txt").write_text("\n".join(export) + "\n")
    subprocess.run(
        [REMOTE, f"--output={work / 'mail.journal'}", str(work / "export.txt")],
        check=True,
        capture_output=True,
    )
    return work / "mail.journal", lines


def _journalctl(path: Path, mode: str) -> str:
    assert JOURNALCTL is not None
    env = {**os.environ, "TZ": "Asia/Tokyo", "LC_ALL": "C"}
    cmd = [JOURNALCTL, f"--file={path}", "-o", mode, "--no-pager", "--no-hostname"]
    if mode in ("json", "short-monotonic"):
        cmd.remove("--no-hostname")
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return out


@pytest.mark.parametrize(
    "mode",
    [
        "short",
        "short-precise",
        "short-iso",
        "short-iso-precise",
        "short-full",
        "short-unix",
        "json",
    ],
)
def test_every_journalctl_mode_gives_the_original_events_at_the_journals_instants(
    journal: tuple[Path, list[str]], mode: str
) -> None:
    path, lines = journal
    expected, _ = _parse("\n".join(lines) + "\n", year=2025, tz="UTC")
    # --no-hostname is what a single-host user often passes; the host is then missing
    # from the text modes, so the comparison leaves it out for them
    printed = _journalctl(path, mode)
    assert printed.count("\n") == len(lines)
    events, parser = _parse(printed, year=2025, tz="Asia/Tokyo")
    assert parser.stats.malformed == parser.stats.unrecognized == 0, parser.stats.to_dict()
    assert len(events) == len(expected) > 20
    got = _without_time(events)
    want = _without_time(expected)
    if mode != "json":
        for d in got + want:
            d.pop("server", None)
    assert got == want
    # every event happened at one of the journal's instants (to the second without a fraction)
    instants = [
        datetime.fromtimestamp(0, UTC) + timedelta(microseconds=BASE_US + i * STEP_US)
        for i in range(len(lines))
    ]
    precise = mode in ("short-precise", "short-iso-precise", "short-unix", "json")
    allowed = {t if precise else t.replace(microsecond=0) for t in instants}
    assert all(e.time in allowed for e in events)
    assert all(e.time.utcoffset() is not None for e in events)
    # and in the original's order of lines: times never go backwards between logins
    logins = [e.time for e in events if e.type == "auth"]
    assert logins == sorted(logins)


def test_a_named_log_format_still_reads_journal_json(journal: tuple[Path, list[str]]) -> None:
    path, lines = journal
    printed = _journalctl(path, "json")
    assert json.loads(printed.splitlines()[0])["SYSLOG_IDENTIFIER"].startswith("postfix")
    postfix, parser = _parse(printed, format="postfix", year=2025, tz="UTC")
    # --format postfix reads every entry as Postfix, as it reads the original lines
    original, _ = _parse("\n".join(lines) + "\n", format="postfix", year=2025, tz="UTC")
    assert _without_time(postfix) == _without_time(original)
    assert len(postfix) > 10
    assert parser.stats.malformed == 0
    assert parser.stats.lines == len(lines)
    # and JSON that is neither an event nor a journal entry is not a Postfix line
    _, other = _parse('{"type": "auth"}\n{not json\n', format="postfix", tz="UTC")
    assert (other.stats.irrelevant, other.stats.malformed) == (2, 0)


def test_short_monotonic_is_refused_with_the_reason(journal: tuple[Path, list[str]]) -> None:
    path, lines = journal
    printed = _journalctl(path, "short-monotonic")
    events, parser = _parse(printed, year=2025, tz="UTC")
    assert events == []
    assert parser.stats.malformed == len(lines)
    reason = parser.stats.examples["malformed"][0][2]
    assert "short-monotonic" in reason
    assert "short-iso-precise" in reason


def test_short_full_zone_names_must_be_the_tz_zones(journal: tuple[Path, list[str]]) -> None:
    path, lines = journal
    printed = _journalctl(path, "short-full")
    assert " JST " in printed.splitlines()[0]
    events, parser = _parse(printed, year=2025, tz="Europe/Berlin")
    assert events == []
    assert parser.stats.malformed == len(lines)
    assert "'JST' is not the --tz zone's (CET" in parser.stats.examples["malformed"][0][2]
    # UTC needs no --tz; a CET/CEST name settles the hour a DST change repeats
    utc = printed.replace(" JST ", " UTC ")
    assert _parse(utc, tz="Europe/Berlin")[0]
    fold = (
        "Sun 2025-10-26 02:30:00 {} mx dovecot[7]: imap-login: Login: user=<a>, "
        "method=PLAIN, rip=192.0.2.1, lip=192.0.2.2\n"
    )
    summer, _ = _parse(fold.format("CEST"), tz="Europe/Berlin")
    winter, _ = _parse(fold.format("CET"), tz="Europe/Berlin")
    assert summer[0].time.astimezone(UTC).hour == 0
    assert winter[0].time.astimezone(UTC).hour == 1


def _logger_datagrams(*args: list[str]) -> list[str]:
    assert LOGGER is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        port = sock.getsockname()[1]
        got = []
        for extra in args:
            subprocess.run(
                [LOGGER, "--server", "127.0.0.1", "--port", str(port), "--udp", *extra],
                check=True,
            )
            got.append(sock.recvfrom(65535)[0].decode())
        return got


@pytest.mark.skipif(LOGGER is None, reason="util-linux logger is needed")
def test_network_syslog_from_logger_rfc5424_and_rfc3164() -> None:
    lines = _original(EXAMPLE)
    sent = []
    for line in lines:
        m = _SYSLOG.match(line)
        assert m is not None
        _host, ident, pid, msg = m.groups()
        for fmt in ("--rfc5424", "--rfc3164"):
            sent.append([fmt, "--tag", ident, *([f"--id={pid}"] if pid else []), "--", msg])
    got = _logger_datagrams(*sent)
    assert got[0].startswith("<13>1 ")
    assert "[timeQuality " in got[0]
    assert re.match(r"<13>[A-Z][a-z]{2} ", got[1])
    expected, _ = _parse("\n".join(lines) + "\n", year=2025, tz="UTC")
    for fmt_lines in (got[0::2], got[1::2]):
        events, parser = _parse("\n".join(fmt_lines) + "\n", tz="UTC")
        assert parser.stats.malformed == parser.stats.unrecognized == 0
        got_d, want_d = _without_time(events), _without_time(expected)
        for d in got_d + want_d:
            d.pop("server", None)
        assert got_d == want_d


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("<13>1 - mx postfix/smtpd 1 - - A1: client=u[192.0.2.1], sasl_method=PLAIN, "
         "sasl_username=a", "without a usable time stamp"),
        ("<13>1 2025-13-45T99:00:00Z mx postfix/smtpd 1 - - A1: client=u[192.0.2.1], "
         "sasl_method=PLAIN, sasl_username=a", "bad time stamp"),
        ("999999999999.5 mx dovecot[1]: imap-login: Login: user=<a>, method=PLAIN, "
         "rip=192.0.2.1, lip=192.0.2.2", "out of range"),
        ("Sat 2025-11-29 10:00:00 +2500 mx dovecot[1]: imap-login: Login: user=<a>, "
         "method=PLAIN, rip=192.0.2.1, lip=192.0.2.2", "bad UTC offset"),
        ('{"__REALTIME_TIMESTAMP": "x", "SYSLOG_IDENTIFIER": "dovecot", "MESSAGE": "m"}',
         "bad __REALTIME_TIMESTAMP"),
        ('{"__REALTIME_TIMESTAMP": "1", "SYSLOG_IDENTIFIER": "dovecot", "MESSAGE": {"a": 1}}',
         "without a readable MESSAGE"),
    ],
)  # fmt: skip
def test_bad_stamps_in_the_other_envelopes_are_counted_with_their_reason(
    line: str, reason: str
) -> None:
    text = line + "\nNov 28 05:34:59 mx postfix/qmgr[1]: C1: removed\n"
    events, parser = _parse(text, year=2025, tz="UTC")
    assert events == []
    assert parser.stats.malformed == 1
    assert parser.stats.lines == 2
    assert reason in parser.stats.examples["malformed"][0][2]


def test_journal_json_binary_message_and_unknown_programs() -> None:
    msg = (
        "imap-login: Login: user=<b\u00e9@example.org>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.2"
    )
    entry = {
        "__REALTIME_TIMESTAMP": "1740909600000000",
        "SYSLOG_IDENTIFIER": "dovecot",
        "MESSAGE": list(msg.encode("latin-1")),  # journalctl's form of a non-UTF-8 message
        "_HOSTNAME": "mx",
    }
    other = {**entry, "SYSLOG_IDENTIFIER": "cron", "MESSAGE": "(root) CMD (true)"}
    text = json.dumps(entry) + "\n" + json.dumps(other) + "\n"
    events, parser = _parse(text, tz="UTC")
    assert [(e.account, str(e.ip), e.server) for e in events if isinstance(e, AuthAttempt)] == [
        ("b\ufffd@example.org", "192.0.2.7", "mx")
    ]
    assert events[0].time == datetime(2025, 3, 2, 10, 0, tzinfo=UTC)
    assert parser.stats.irrelevant == 1
    assert parser.stats.used == 1
    assert parser.stats.non_utf8 == 1


def test_line_by_line_reading_equals_block_reading(journal: tuple[Path, list[str]]) -> None:
    """The block reader hands these lines to the line path: both must agree exactly."""
    path, _ = journal
    texts = [_journalctl(path, mode) for mode in ("short-precise", "short-full", "short-unix")]
    texts.append(_journalctl(path, "json"))
    texts.append("".join(f"<30>{line}\n" for line in _original(EXAMPLE)))
    texts.append(
        "<13>1 2025-03-02T10:00:00.5+09:00 mx postfix/submission/smtpd 7 - "
        '[x@1 a="b\\"]c"][y@2] A1: client=u[192.0.2.1], sasl_method=PLAIN, sasl_username=z\n'
        "<13>1 2025-03-02T10:00:01Z - dovecot - - - \ufeffimap-login: Login: user=<q>, "
        "method=PLAIN, rip=192.0.2.9, lip=192.0.2.2\n<13>1 2025-03-02T10:00:02Z mx - - - - x\n"
        "<999>Nov 28 05:34:59 mx postfix/qmgr[1]: C1: removed\n[    1.000000] mx dovecot[1]: x\n"
    )
    for text in texts:
        block, fast = _parse(text, year=2025, tz="Asia/Tokyo")
        slow = LogParser(year=2025, tz="Asia/Tokyo")
        lines: list[Event] = []
        for no, line in enumerate(text.splitlines(keepends=True), 1):
            lines.extend(slow.feed(line, no))
        lines.extend(slow.flush())
        assert block == lines
        assert fast.stats.to_dict() == slow.stats.to_dict()
    # the hand-made RFC 5424 lines: escaped "]" and '"' in structured data, a BOM, no host
    rfc, parser = _parse(texts[-1], tz="UTC")
    assert [(e.type, e.account, e.server) for e in rfc if isinstance(e, AuthAttempt)] == [
        ("auth", "z", "mx"),
        ("auth", "q", None),
    ]
    assert rfc[0].time == datetime(2025, 3, 2, 1, 0, 0, 500000, tzinfo=UTC)
    # no program name, an unknown priority, and time since boot
    assert parser.stats.irrelevant >= 1
    assert parser.stats.unrecognized + parser.stats.malformed == 2


def test_scan_of_a_journal_flags_what_the_scan_of_the_syslog_file_flags(
    tmp_path: Path,
) -> None:
    """A simulated service's log, put in a real journal and read back with -o json."""
    if JOURNALCTL is None or REMOTE is None:
        pytest.skip(
            "journalctl and systemd-journal-remote are needed (apt: systemd-journal-remote)"
        )
    from authabuse.simulate import simulate

    simulate(tmp_path, seed=3, accounts=300, days=2, mix="default")
    envelope = re.compile(r"(\S+) (\S+) ([^\s\[:]+)(?:\[([0-9]+)\])?: (.*)")
    with (tmp_path / "maillog").open() as src, (tmp_path / "export.txt").open("w") as dst:
        for i, line in enumerate(src):
            m = envelope.match(line.rstrip("\n"))
            assert m is not None
            stamp, host, ident, pid, msg = m.groups()
            t = datetime.fromisoformat(stamp)
            micros = int(t.timestamp()) * 1_000_000 + t.microsecond
            dst.write(
                f"__CURSOR=s=0;i={i}\n__REALTIME_TIMESTAMP={micros}\n"
                f"__MONOTONIC_TIMESTAMP={i + 1}\n_BOOT_ID={'0' * 32}\n_HOSTNAME={host}\n"
                f"SYSLOG_IDENTIFIER={ident}\n"
                + (f"_PID={pid}\n" if pid else "")
                + f"MESSAGE={msg}\n\n"
            )
    subprocess.run(
        [REMOTE, f"--output={tmp_path / 'mail.journal'}", str(tmp_path / "export.txt")],
        check=True,
        capture_output=True,
    )
    (tmp_path / "export.txt").unlink()
    (tmp_path / "journal.json").write_text(_journalctl(tmp_path / "mail.journal", "json"))

    def scan(log: str) -> dict[str, dict[str, Any]]:
        geo = ["--geo", str(tmp_path / "geo-country.csv"), "--geo", str(tmp_path / "geo-asn.csv")]
        cmd = [sys.executable, "-m", "authabuse", "scan", "--json", *geo, str(tmp_path / log)]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        assert done.returncode == 1, done.stderr  # 1: some account was reported
        found = {}
        for line in done.stdout.splitlines():
            d = json.loads(line)
            for k in ("flagged_at", "first_seen", "last_seen"):  # the same instants
                d[k] = datetime.fromisoformat(d[k]).timestamp()
            found[d["account"]] = d
        return found

    from_journal = scan("journal.json")
    assert len(from_journal) >= 5
    assert from_journal == scan("maillog")
