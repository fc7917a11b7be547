"""The block reader (``iter_events``) against the plain line-by-line parser.

``iter_events`` reads blocks and parses whole batches of lines (``LogParser.feed_lines``)
for speed. Whatever the block boundaries, it must give exactly what feeding the same
lines one at a time gives (``iter_lines`` + ``LogParser.feed``): the same events in the
same order and the same statistics, line numbers of problems included.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from authabuse.events import Event
from authabuse.parsers import LogParser, ParseStats, iter_events, iter_lines

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
EXAMPLE = ROOT / "examples" / "postfix-submission.log"
CORPUS = ROOT / ".." / "shared" / "corpus"
REAL = EXAMPLE.read_bytes().splitlines(keepends=True)


class Trickle(io.BytesIO):
    """A binary file whose ``read1`` returns small pieces of random sizes (like a pipe)."""

    def __init__(self, data: bytes, seed: int, most: int) -> None:
        super().__init__(data)
        self._rng = random.Random(seed)  # noqa: S311  # block sizes, not secrets
        self._most = most

    def read1(self, size: int | None = -1) -> bytes:
        return super().read1(self._rng.randint(1, self._most))


def one_by_one(data: bytes, **kw: object) -> tuple[list[Event], dict[str, object]]:
    max_line = int(kw.get("max_line", 32768))  # type: ignore[call-overload]
    parser = LogParser(**kw)  # type: ignore[arg-type]
    parser.source = "<input>"
    events: list[Event] = []
    for no, line in enumerate(iter_lines(io.BytesIO(data), max_line), 1):
        if line is None:
            parser.too_long(no)
        else:
            events += parser.feed(line, no)
    events += parser.flush()
    return events, parser.stats.to_dict()


def by_blocks(fh: io.BytesIO, **kw: object) -> tuple[list[Event], dict[str, object]]:
    stats = ParseStats()
    events = list(iter_events(fh, stats=stats, **kw))  # type: ignore[arg-type]
    return events, stats.to_dict()


def check_same(data: bytes, seed: int = 0, most: int = 4096, **kw: object) -> None:
    kw.setdefault("year", 2026)
    kw.setdefault("tz", "UTC")
    expected = one_by_one(data, **kw)
    assert by_blocks(io.BytesIO(data), **kw) == expected
    assert by_blocks(Trickle(data, seed, most), **kw) == expected


def test_real_log_in_blocks_of_every_size() -> None:
    data = b"".join(REAL)
    events, stats = one_by_one(data, year=2026, tz="UTC")
    assert len(events) == 18
    assert stats["malformed"] == 0
    for most in (1, 7, 80, 333, 5000):
        check_same(data, seed=most, most=most)


def test_crlf_lines_blank_lines_and_a_last_line_without_newline() -> None:
    crlf = b"".join(line.replace(b"\n", b"\r\n") for line in REAL[:20])
    check_same(crlf + b"\n\n \n" + b"".join(REAL[20:]).rstrip(b"\n"))
    check_same(b"".join(REAL[:5]) + b"x\rmid-line carriage return\n" + REAL[17])


def test_over_long_lines_at_every_boundary() -> None:
    fail = REAL[17]
    limit = len(fail) + 5
    for extra in range(-2, 3):  # around the cap, with and without the newline
        long = fail[:-1] + b"A" * (5 + extra) + b"\n"
        data = fail + long + fail + long.rstrip(b"\n")
        for most in (3, 64, 10_000):
            check_same(data, most=most, max_line=max(80, limit))
    check_same(fail + b"B" * 100_000 + b"\n" + fail, most=700, max_line=1000)


def test_non_utf8_multibyte_and_problem_lines() -> None:
    fail = REAL[17]
    bad = fail.replace(b"eve@e2e.test", b"\xff\xfe\xc3(@e2e.test")
    utf8 = fail.replace(b"eve@e2e.test", "j\u00f6rg@b\u00fccher.test".encode())
    truncated = REAL[6][: REAL[6].index(b"127.0.0.") + 8] + b"\n"
    apache = b'192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326\n'
    data = b"".join([fail, bad, utf8, truncated, apache, *REAL, bad, utf8 * 3])
    for most in (5, 50, 500, 50_000):
        check_same(data, most=most)
    check_same(data, most=50, max_line=len(utf8) - 1)  # multibyte line at the byte cap


def test_strict_mode_yields_the_events_before_the_bad_line() -> None:
    from authabuse.errors import ParseError

    truncated = REAL[6][: REAL[6].index(b"127.0.0.") + 8] + b"\n"
    got: list[Event] = []
    with pytest.raises(ParseError) as info:
        got.extend(iter_events(io.BytesIO(REAL[17] * 3 + truncated), strict=True, tz="UTC"))
    assert len(got) == 3
    assert info.value.lineno == 4


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present")
def test_every_corpus_file_in_blocks() -> None:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in {".md", ".tsv"})
    assert len(files) > 80
    for path in files:
        data = path.read_bytes().replace(b"%(day)s", b"Nov 16")
        check_same(data, seed=len(data), most=997)


_PIECES = [*REAL, b"\n", b"\r\n", b"\xff\xfe\n", b"A" * 300 + b"\n", "\u00e9t\u00e9\n".encode()]


@given(
    st.lists(st.sampled_from(_PIECES), max_size=60),
    st.integers(min_value=1, max_value=600),
    st.integers(min_value=80, max_value=400),
    st.integers(min_value=0, max_value=2**16),
)
@settings(max_examples=150, deadline=None)
def test_any_mixture_in_any_blocks(pieces: list[bytes], most: int, cap: int, seed: int) -> None:
    check_same(b"".join(pieces), seed=seed, most=most, max_line=cap, max_pending=5)


# -- the whole-block Postfix fast path (_bulk.py) against the line path ------------------

_E = "Nov 28 05:34:{s:02d} mx postfix/"
_TRICKY = [
    line.replace("{s:02d}", f"{i % 60:02d}")
    for i, line in enumerate(
        [
            _E + "submission/smtpd[100]: connect from unknown[192.0.2.5]",
            _E + "submission/smtpd[100]: A1B2: client=unknown[192.0.2.5], sasl_method=PLAIN, "
            "sasl_username=alice@example.org",
            _E + "cleanup[101]: A1B2: message-id=<x@example.org>",
            _E + "qmgr[200]: A1B2: from=<alice@example.org>, size=1234, nrcpt=2 (queue active)",
            _E + "smtp[300]: A1B2: to=<r1@example.com>, relay=mx.example.com[198.51.100.7]:25, "
            "delay=0.3, delays=0.1/0/0.1/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)",
            _E + "smtp[301]: A1B2: to=<r2@example.net>, relay=none, delay=9, delays=9/0/0/0, "
            "dsn=4.4.1, status=deferred (connect to mx.example.net[192.0.2.9]:25: timed out)",
            _E + "qmgr[200]: A1B2: removed",
            _E + "submission/smtpd[100]: disconnect from unknown[192.0.2.5] ehlo=1 auth=1 quit=1",
            _E + "submission/smtpd[102]: C3D4: client=h.example[2001:db8::1]:587, "
            "sasl_method=LOGIN, sasl_username=dave",
            _E + "submission/smtpd[102]: C3D4: client=unknown[300.1.2.3], sasl_method=PLAIN, "
            "sasl_username=bob",
            _E + "submission/smtpd[102]: C3D4: client=unknown[192.0.2.6], sasl_method=PLAIN, "
            "sasl_username=" + "a" * 1100,
            _E + "submission/smtpd[102]: C3D4: client=unknown[192.0.2.6], sasl_method=PLAIN, "
            "sasl_username=carol, orig_client=x",
            _E + "submission/smtpd[102]: C3D4: client=unknown[192.0.2.6], sasl_method=PLAIN, "
            "sasl_username=x]: connect from y",
            _E + "submission/smtpd[102]: C3D4: client=unknown[192.0.2.6], sasl_method=PLAIN, "
            "sasl_username=x: message-id=y",
            _E + "smtpd[103]: E5F6: client=mail.example.com[198.51.100.1]",
            _E + "qmgr[200]: C3D4: from=<dave@example.org>, size=12345678901234567890, nrcpt=1",
            _E + "qmgr[200]: C3D4: from=<a: message-id=b>, size=10, nrcpt=1 (queue active)",
            _E + "qmgr[200]: C3D4: from=<dave@example.org>, size=10, nrcpt=1 (queue active)",
            _E + "qmgr[200]: C3D4: removed'",
            _E + "qmgr[200]: C3D4: to=<>, relay=none, delay=1, delays=1/0/0/0, dsn=4.4.7, "
            "status=expired, returned to sender",
            _E + "lmtp[302]: C3D4: to=<d@example.org>, orig_to=<o@example.org>, relay=l[/x], "
            "delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (ok)",
            _E + "smtp[303]: C3D4: to=<e@example.org>, relay=r[192.0.2.1]:25, conn_use=2, "
            "delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (ok)",
            _E + "smtp[303]: C3D4: to=<f@example.org>, relay=r, delay=1, delays=1, dsn=2.0.0, "
            "status=sent (250 ok: message-id=<q@x>)",
            _E + "smtp[303]: C3D4: to=<g@example.org>, relay=r, delay=1, delays=1, dsn=2.0.0, "
            "status=sent",
            _E + "smtpd[104]: warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: "
            "UGFzc3dvcmQ6",
            _E + "smtpd[104]: warning: unknown[192.0.2.7]: SASL PLAIN authentication failed: "
            "generic failure, sasl_username=eve@example.org",
            _E + "smtpd[104]: warning: unknown[192.0.2.7]: SASL PLAIN authentication failed: "
            "Connection lost to authentication server",
            _E + "smtpd[104]: warning: unknown[192.0.2.300]: SASL LOGIN authentication failed: x",
            _E + "smtpd[104]: warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: a: b",
            _E + "smtpd[104]: disconnect from unknown[192.0.2.7] ehlo=1 auth=0/3 commands=1/4",
            _E + "smtpd[105]: disconnect from unknown[192.0.2.8] ehlo=1 auth=\u00b2/3 quit=1",
            _E + "smtpd[105]: disconnect from unknown[999.0.2.8] ehlo=1 auth=1/3 quit=1",
            _E + "smtpd[106]: NOQUEUE: reject: RCPT from unknown[192.0.2.9]: 554 5.7.1 <x@y>: "
            "Relay access denied; from=<a@b> to=<x@y> proto=ESMTP helo=<h> "
            "sasl_method=PLAIN sasl_username=frank",
            _E + "anvil[77]: statistics: max connection rate 3/60s for (submission:192.0.2.5)",
            _E + "qmgr: A9: removed",
            "2026-11-28T05:35:01.123456+09:00 mx postfix/smtp[7]: A1B2: to=<r3@x>, relay=none, "
            "delay=1, delays=1, dsn=5.0.0, status=bounced (x)",
            "@400000004c91b044077a9e94 mx postfix/qmgr[200]: A1B2: removed",
            "Nov 28 05:35:02 mx dovecot: imap-login: Login: user=<u@example.org>, "
            "method=PLAIN, rip=192.0.2.10, lip=192.0.2.1",
            "2022-06-29 16:04:05 dovecot_login authenticator failed for ([1.2.3.5]) "
            "[1.2.3.4]:55379: 535 Incorrect authentication data (set_id=info@test.com)",
            "Feb 30 05:35:02 mx postfix/qmgr[200]: A1B2: removed",
            "Nov 28 05:35:0x mx postfix/qmgr[200]: A1B2: removed",  # 15 characters, no stamp
            "Nov 4 05:35:02  mx postfix/smtp[7]: A1B2: to=<r4@x>, relay=none, delay=1, "
            "delays=1, dsn=5.0.0, status=bounced (x)",  # a 14-character stamp, two spaces
            "Nov 28 05:35:03 mx postfix/cleanup[9]: Q1: reject: header Subject: x from h[1.2.3.4]",
            "",
            "just some text",
            _E + "smtpd[104]: warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: x",
            _E + "smtpd[104]: disconnect from unknown[192.0.2.7] ehlo=1 auth=0/2 rset=1 quit=1 "
            "commands=3/4",
            _E + "smtpd[107]: disconnect from unknown[192.0.2.11] ehlo=1 xauth=1 auth=2/2 quit=1",
            _E + "smtpd[107]: disconnect from unknown[192.0.2.11] ehlo=1 auth=0/2x quit=1",
            _E + "smtpd[107]: disconnect from unknown[192.0.2.11] auth=0/4",
            "2026-11-28T05:34:40.000001+00:00 mx postfix/smtpd[9]: Q9: client=x[192.0.2.9], "
            "sasl_method=PLAIN, sasl_username=zed",
            "2026-11-28T05:34:41.5+00:00 mx postfix/qmgr[2]: Q9: from=<z@x>, size=1, nrcpt=3",
            "2026-11-28T05:34:41.9Z mx postfix/smtp[3]: Q9: to=<a@x>, relay=none, delay=1, "
            "delays=1, dsn=2.0.0, status=sent (ok)",
            "2026-11-28T14:34:49.2+09:00 mx postfix/smtp[3]: Q9: to=<b@x>, relay=none, delay=1, "
            "delays=1, dsn=2.0.0, status=sent (ok)",
            "2026-11-28 05:34:50 mx postfix/smtp[3]: Q9: to=<c@x>, relay=none, delay=1, "
            "delays=1, dsn=2.0.0, status=sent (ok)",
        ]
    )
]


def _block_vs_lines(text: str, **kw: object) -> None:
    """feed_block (fast path) and feed_lines (line path) give the same events and stats."""
    kw.setdefault("year", 2026)
    kw.setdefault("tz", "UTC")
    fast, slow = LogParser(**kw), LogParser(**kw)  # type: ignore[arg-type]
    got: list[Event] = []
    expected: list[Event] = []
    assert fast.feed_block(text, 0, got) == text.count("\n")
    lines = text.split("\n")
    lines.pop()
    slow.feed_lines(lines, 0, expected, has_cr=False)
    got += fast.flush()
    expected += slow.flush()
    assert got == expected
    assert fast.stats.to_dict() == slow.stats.to_dict()


def test_block_fast_path_equals_line_path_on_tricky_lines() -> None:
    text = "\n".join(_TRICKY) + "\n"
    _block_vs_lines(text)
    _block_vs_lines(text, format="postfix")
    fast = LogParser(year=2026, tz="UTC")
    events: list[Event] = []
    fast.feed_block(text, 0, events)
    stats = fast.stats
    # the tricky lines are really counted as problems, with their own line numbers: bad
    # client address, 1100-character account, 20-digit size, bad SASL client address,
    # "auth=\u00b2/3" (first five kept), then 999.0.2.8, "Feb 30" and "auth=0/2x"; a
    # 15-character stamp that is none, and "just some text"
    assert (stats.malformed, stats.invalid_ip, stats.unrecognized) == (8, 3, 2)
    assert [no for _, no, _ in stats.examples["malformed"]] == [10, 11, 16, 28, 31]
    assert [no for _, no, _ in stats.examples["unrecognized"]] == [41, 45]
    check_same(text.encode() * 3, most=900)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present")
def test_block_fast_path_equals_line_path_on_every_corpus_file() -> None:
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in {".md", ".tsv"})
    postfix_lines = 0
    for path in [EXAMPLE, *files]:
        data = path.read_bytes().replace(b"%(day)s", b"Nov 16")
        try:
            text = data.decode()
        except UnicodeDecodeError:
            continue
        if not text.endswith("\n"):
            text += "\n"
        text = text.replace("\r", "")
        _block_vs_lines(text)
        postfix_lines += text.count(" postfix")
    assert postfix_lines > 1000


def test_block_fast_path_takes_postfix_lines_without_the_line_path() -> None:
    text = b"".join(REAL).decode()
    parser = LogParser(year=2026, tz="UTC")
    parser.feed_block(text, 0, [])
    assert parser.stats.lines == text.count("\n")
    assert not parser._routes  # no line reached the line path's program routing
    line_path = LogParser(year=2026, tz="UTC", strict=True)  # strict: the line path
    line_path.feed_block(text, 0, [])
    assert line_path._routes


@given(
    st.lists(st.sampled_from(_TRICKY + [line.decode().rstrip("\n") for line in REAL]), max_size=80),
    st.integers(min_value=1, max_value=5),
)
@example(  # a bad stamp after a cached one: the clock keeps the last good time
    [_TRICKY[7], _TRICKY[1], _TRICKY[7], "Feb 30 05:35:02 mx postfix/qmgr[200]: A1B2: removed"], 1
)
@settings(max_examples=200, deadline=None)
def test_block_fast_path_equals_line_path_on_any_mixture(lines: list[str], pending: int) -> None:
    _block_vs_lines("".join(line + "\n" for line in lines), max_pending=pending, join_timeout=5)
