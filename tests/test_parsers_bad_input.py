"""Bad input: counted with its line number, never a crash, never a lost event around it."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authabuse.errors import CorruptDataError, ParseError
from authabuse.events import AuthAttempt, Event, Submission
from authabuse.parsers import LogParser, ParseStats, iter_events

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "postfix-submission.log"
LINES = EXAMPLE.read_bytes().splitlines(keepends=True)
# line 18 of the real log: a SASL failure; line 7: a successful client= line
FAIL = LINES[17]
CLIENT = LINES[6]


def run(data: bytes, **kw: object) -> tuple[list[Event], ParseStats]:
    stats = ParseStats()
    kw.setdefault("year", 2026)
    kw.setdefault("tz", "UTC")
    events = list(iter_events([io.BytesIO(data)], stats=stats, **kw))  # type: ignore[arg-type]
    return events, stats


def test_non_utf8_bytes_are_replaced_and_neighbours_kept() -> None:
    bad = FAIL.replace(b"eve@e2e.test", b"\xff\xfe\xc3(@e2e.test")
    events, stats = run(FAIL + bad + FAIL)
    accounts = [e.account for e in events if isinstance(e, AuthAttempt)]
    assert accounts == ["eve@e2e.test", "\ufffd\ufffd\ufffd(@e2e.test", "eve@e2e.test"]
    assert stats.non_utf8 == 1
    assert stats.malformed == 0


def test_truncated_line_is_malformed_with_its_number() -> None:
    truncated = CLIENT[: CLIENT.index(b"127.0.0.") + 8]  # "...client=unknown[127.0.0."
    events, stats = run(FAIL + truncated + b"\n" + FAIL)
    assert len(events) == 2
    assert stats.malformed == 1
    assert stats.examples["malformed"][0][1] == 2
    assert "<input>:2" in stats.summary() or ":2" in stats.summary()


def test_over_long_line_is_capped_counted_and_skipped() -> None:
    huge = b"Nov 28 05:35:00 mx postfix/smtpd[1]: " + b"A" * 5_000_000 + b"\n"
    events, stats = run(FAIL + huge + FAIL, max_line=4096)
    assert len(events) == 2
    assert stats.too_long == 1
    assert stats.examples["too_long"][0][1] == 2
    assert stats.lines == 3


def test_huge_line_without_newline_at_end_of_input() -> None:
    events, stats = run(FAIL + b"x" * 100_000, max_line=1000)
    assert len(events) == 1
    assert stats.too_long == 1


def test_invalid_ip_is_counted_and_reported() -> None:
    bad = FAIL.replace(b"[127.0.0.7]", b"[xxxx]")
    events, stats = run(FAIL + bad + FAIL)
    assert len(events) == 2
    assert (stats.malformed, stats.invalid_ip) == (1, 1)
    assert "invalid IP address 'xxxx'" in stats.examples["malformed"][0][2]


def test_unknown_format_lines_are_counted() -> None:
    apache = b'192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326\n'
    events, stats = run(apache + FAIL + apache)
    assert len(events) == 1
    assert stats.unrecognized == 2
    assert [e[1] for e in stats.examples["unrecognized"]] == [1, 3]


def test_hostile_account_name_is_refused_as_malformed() -> None:
    hostile = CLIENT.replace(b"alice@e2e.test", b"a" * 5000)
    events, stats = run(hostile + FAIL)
    assert [type(e) for e in events] == [AuthAttempt]
    assert stats.malformed == 1


def test_strict_mode_raises_parse_error_with_place_and_line() -> None:
    parser = LogParser(strict=True, year=2026, tz="UTC", source="maillog")
    assert parser.feed(FAIL, 1)
    with pytest.raises(ParseError) as info:
        parser.feed(FAIL.replace(b"[127.0.0.7]", b"[999.1.1.1]"), 2)
    err = info.value
    assert (err.source, err.lineno) == ("maillog", 2)
    assert "999.1.1.1" in err.line
    assert str(err).startswith("maillog:2: invalid IP address")
    with pytest.raises(ParseError):
        parser.feed(b"garbage that is no log line", 3)


def test_irrelevant_line_gives_no_event_in_strict_mode_too() -> None:
    parser = LogParser(strict=True, year=2026, tz="UTC")
    assert parser.feed(LINES[0], 1) == []
    assert parser.stats.irrelevant == 1


def test_truncated_gzip_keeps_the_lines_before(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(LINES))
    cut = tmp_path / "maillog.1.gz"
    cut.write_bytes(data[: len(data) // 2])
    good = tmp_path / "maillog"
    good.write_bytes(FAIL)
    stats = ParseStats()
    events = list(iter_events([cut, good], year=2026, tz="UTC", stats=stats))
    assert stats.read_errors == 1
    assert any(isinstance(e, AuthAttempt) and e.account == "eve@e2e.test" for e in events)
    with pytest.raises(CorruptDataError):
        list(iter_events([cut], year=2026, tz="UTC", strict=True))


def test_pending_joins_are_bounded_and_expire() -> None:
    client = (
        "Nov 28 05:{m:02d}:00 mx postfix/submission/smtpd[1]: Q{n}: client=unknown[192.0.2.{h}],"
        " sasl_method=PLAIN, sasl_username=u{n}\n"
    )
    data = "".join(client.format(m=n % 60, n=n, h=n % 250 + 1) for n in range(50)).encode()
    events, stats = run(data, max_pending=10)
    assert sum(isinstance(e, Submission) for e in events) == 50  # none lost
    assert stats.expired_joins == 40
    assert stats.unfinished_joins == 10
    later = b"Nov 28 05:49:30 mx postfix/qmgr[2]: Q49: removed\n"
    events, stats = run(data + later, join_timeout=60)
    assert sum(isinstance(e, Submission) for e in events) == 50
    # Q49 completes at "removed"; the others waited longer than 60 s of log time
    assert (stats.expired_joins, stats.unfinished_joins) == (49, 0)
    # expiry follows log time, not line counts: a join older than the timeout goes out
    # when a later stamp is read, before that line's own events
    late = b"Nov 28 07:00:00 mx postfix/qmgr[2]: Q49: removed\n"
    events, stats = run(data + late, join_timeout=60)
    assert (stats.expired_joins, stats.unfinished_joins, stats.irrelevant) == (50, 0, 1)


@given(st.lists(st.binary(max_size=300), max_size=30))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_never_raise_outside_strict_mode(chunks: list[bytes]) -> None:
    data = b"\n".join(chunks)
    parser = LogParser(year=2024, tz="UTC", max_line=200)
    for no, line in enumerate(data.split(b"\n"), 1):
        parser.feed(line, no)
    parser.flush()


@given(st.integers(min_value=0, max_value=len(FAIL) - 1), st.binary(max_size=8))
@settings(max_examples=200, deadline=None)
def test_mangled_real_lines_never_raise(cut: int, junk: bytes) -> None:
    for line in (FAIL, CLIENT, LINES[8], LINES[10]):
        mangled = line[:cut] + junk + line[cut + len(junk) :]
        LogParser(year=2024, tz="UTC").feed(mangled, 1)


def test_text_an_attacker_chose_does_not_hide_a_line() -> None:
    """The two skipped kinds of line are recognized by their place, not by any substring.

    A botnet picks the account names it tries: one holding ``]: connect from `` or
    ``: message-id=`` is still a counted failure (and a delivery whose remote reply
    says ``message-id=`` still a delivery), on the fast path, the line path and in strict
    mode. The real ``connect from`` and ``message-id=`` lines stay irrelevant.
    """
    hidden = [
        FAIL.replace(b"eve@e2e.test", b"x]: connect from y"),
        FAIL.replace(b"eve@e2e.test", b"x: message-id=<y>"),
        b"Nov 28 05:35:01 mx postfix/smtp[9]: 4A1B2: to=<r@example.com>, relay=mx[192.0.2.9]"
        b":25, delay=1, delays=1/0/0/0, dsn=2.0.0, status=sent (250 ok: message-id=<q@x>)\n",
    ]
    skipped = [
        b"Nov 28 05:35:02 mx postfix/smtpd[9]: connect from unknown[192.0.2.9]\n",
        b"Nov 28 05:35:02 mx postfix/cleanup[9]: 4A1B2: message-id=<q@x>\n",
    ]
    data = b"".join(hidden + skipped)
    for kw in ({}, {"format": "postfix"}, {"strict": True}):
        events, stats = run(data, **kw)
        assert [e.type for e in events] == ["auth", "auth", "delivery"]
        assert [getattr(e, "account", None) for e in events[:2]] == [
            "x]: connect from y",
            "x: message-id=<y>",
        ]
        assert (stats.used, stats.irrelevant, stats.lines) == (3, 2, 5)
    parser = LogParser(year=2026, tz="UTC")
    one_by_one = [e for line in hidden + skipped for e in parser.feed(line)]
    assert [e.type for e in one_by_one] == ["auth", "auth", "delivery"]
    assert (parser.stats.used, parser.stats.irrelevant) == (3, 2)
