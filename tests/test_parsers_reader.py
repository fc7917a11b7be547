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
from hypothesis import given, settings
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
