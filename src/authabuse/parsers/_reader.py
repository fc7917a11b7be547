"""Reading log inputs: files, ``-`` for stdin, rotated ``.gz``; lines of bounded length."""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from itertools import chain
from typing import BinaryIO

from authabuse.errors import ConfigurationError, CorruptDataError, ParseError
from authabuse.events import Event

from ._core import DEFAULT_MAX_LINE, LogParser
from ._stats import ParseStats

__all__ = ["iter_events", "iter_lines", "open_log"]

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 65536
_READ = 1 << 18  # bytes asked for per read; read1 returns what is there (pipes stay live)
_PIECE = 1 << 15  # characters of a block parsed before its events are handed out


def open_log(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a log for reading bytes: ``-`` is stdin; gzip is recognized by its magic bytes.

    Raises :class:`~authabuse.errors.ConfigurationError` naming the file when it cannot
    be opened.

    >>> open_log("/nonexistent/maillog")
    Traceback (most recent call last):
    ...
    authabuse.errors.ConfigurationError: cannot read /nonexistent/maillog: No such file or directory
    """
    if os.fspath(path) == "-":
        return sys.stdin.buffer
    try:
        fh: BinaryIO = open(path, "rb")  # noqa: SIM115  # returned to the caller, who closes it
        magic = fh.peek(2)[:2] if hasattr(fh, "peek") else b""
    except OSError as exc:
        raise ConfigurationError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    if magic == _GZIP_MAGIC:
        fh.close()
        try:
            return gzip.open(path, "rb")  # type: ignore[return-value]  # a binary file object
        except OSError as exc:
            raise ConfigurationError(f"cannot read {os.fspath(path)}: {exc}") from None
    return fh


def iter_lines(fh: BinaryIO, max_line: int = DEFAULT_MAX_LINE) -> Iterator[bytes | None]:
    r"""Yield each line of ``fh`` as bytes, or ``None`` for a line longer than ``max_line``.

    Memory stays bounded by ``max_line`` whatever the input: an over-long line is read
    in chunks and thrown away.

    >>> import io
    >>> list(iter_lines(io.BytesIO(b"a\n" + b"x" * 100 + b"\nb"), max_line=10))
    [b'a\n', None, b'b']
    """
    readline = fh.readline
    limit = max_line + 1
    while True:
        line = readline(limit)
        if not line:
            return
        if len(line) > max_line and not line.endswith(b"\n"):
            while True:  # skip the rest of the over-long line
                chunk = readline(_CHUNK)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield None
            continue
        yield line


def iter_events(
    inputs: Iterable[str | os.PathLike[str] | BinaryIO] | str | os.PathLike[str] | BinaryIO,
    *,
    format: str = "auto",
    year: int | None = None,
    tz: str | None = None,
    strict: bool = False,
    stats: ParseStats | None = None,
    max_line: int = DEFAULT_MAX_LINE,
    join_timeout: float = 3600.0,
    max_pending: int = 100_000,
) -> Iterator[Event]:
    r"""Stream the events of one or more logs, in order, with bounded memory.

    ``inputs`` are paths (``-`` is stdin, gzip files are read transparently) or binary
    file objects (or just one of them); one parser reads them in turn, so a join that
    spans a log rotation still completes. Pass a :class:`ParseStats` as ``stats`` to learn
    what was skipped; the other options are those of :class:`LogParser`.

    >>> import io
    >>> log = io.BytesIO(
    ...     b"Sep 23 15:57:40 mail postfix/submission/smtpd[36]: 838FC8A5F: "
    ...     b"client=unknown[fe80::1:2:3:4], sasl_method=PLAIN, sasl_username=out@example.org\n"
    ...     b"Sep 23 15:57:41 mail postfix/qmgr[24]: 838FC8A5F: from=<out@example.org>, "
    ...     b"size=939, nrcpt=1 (queue active)\n"
    ...     b"Sep 23 15:57:42 mail postfix/smtp[30]: 838FC8A5F: to=<someone@example.com>, "
    ...     b"relay=mx.example.com[192.0.2.25]:25, delay=1.6, delays=0.78/0/0.3/0.52, "
    ...     b"dsn=2.0.0, status=sent (250 2.0.0 OK)\n")
    >>> [e.type for e in iter_events([log], year=2021, tz="UTC")]
    ['auth', 'delivery', 'submission']
    """
    # The events come in lists (one per block of lines) that chain's C loop hands out:
    # a generator resumed for every event would cost more than the list iteration.
    return chain.from_iterable(
        _batches(inputs, format, year, tz, strict, stats, max_line, join_timeout, max_pending)
    )


def _batches(
    inputs: Iterable[str | os.PathLike[str] | BinaryIO] | str | os.PathLike[str] | BinaryIO,
    format: str,
    year: int | None,
    tz: str | None,
    strict: bool,
    stats: ParseStats | None,
    max_line: int,
    join_timeout: float,
    max_pending: int,
) -> Iterator[list[Event]]:
    """:func:`iter_events`'s work: lists of events, in order (each one handed out once)."""
    if isinstance(inputs, str | os.PathLike) or hasattr(inputs, "readline"):
        inputs = [inputs]  # type: ignore[list-item]  # one path or one file object
    parser = LogParser(
        format,
        year=year,
        tz=tz,
        strict=strict,
        max_line=max_line,
        join_timeout=join_timeout,
        max_pending=max_pending,
        stats=stats,
    )
    for item in inputs:
        with ExitStack() as stack:
            if isinstance(item, str | os.PathLike):
                name = os.fspath(item)
                fh = open_log(item)
                if name != "-":
                    stack.enter_context(fh)
                parser.source = "<stdin>" if name == "-" else name
            else:
                fh = item
                parser.source = str(getattr(item, "name", "<input>"))
            yield from _parse_file(parser, fh, max_line, strict)
    yield parser.flush()


def _lines_shorter_than(block: bytes, limit: int) -> bool:
    r"""Whether every line of ``block`` (which ends with a newline) is under ``limit`` bytes.

    Hops from newline to newline ``limit`` bytes at a time (``rfind`` in C), so a block is
    scanned about once, without cutting it into lines.

    >>> _lines_shorter_than(b"ab\nc\n" * 40, 3), _lines_shorter_than(b"ab\nabc\n" * 40, 3)
    (True, False)
    """
    n = len(block)
    rfind = block.rfind
    at = 0
    while at < n:
        cut = rfind(b"\n", at, at + limit)
        if cut < 0:
            return False
        at = cut + 1
    return True


def _parse_file(
    parser: LogParser, fh: BinaryIO, max_line: int, strict: bool
) -> Iterator[list[Event]]:
    """Feed every line of ``fh`` to ``parser``; yield the events in order, in lists.

    Reads blocks of up to 256 KiB and cuts them into lines in bulk (a per-line
    ``readline`` costs more than the regex that follows it). A block that decodes as
    UTF-8 and has no line of ``max_line`` bytes or more goes to
    :meth:`LogParser.feed_block` in pieces of about 32 KiB (so that a few hundred events
    at most wait in a list: more would stay alive long enough to wake the garbage
    collector, which then walks them); any other block goes line by line through
    :meth:`LogParser.feed_into`, which counts and replaces bad bytes and over-long lines
    exactly as before. The partial line at the end of a block waits for the next one;
    memory stays bounded by the block size plus ``max_line`` (the rest of an over-long
    line is read and dropped). Each list yielded is a new one.
    """
    read = getattr(fh, "read1", None) or fh.read
    out: list[Event] = []
    feed_block = parser.feed_block
    feed_into = parser.feed_into
    lineno = 0
    carry = b""
    skipping = False  # inside an over-long line: drop bytes until its newline
    while True:
        try:
            block = read(_READ)
        except (OSError, EOFError) as exc:  # truncated or corrupt .gz
            if strict:
                raise CorruptDataError(f"{parser.source}: {exc}") from None
            parser.stats.note("read_errors", parser.source, lineno + 1, str(exc))
            break
        if not block:
            break
        if skipping:
            cut = block.find(b"\n")
            if cut < 0:
                continue
            lineno += 1
            parser.too_long(lineno)
            skipping = False
            block = block[cut + 1 :]
        elif carry:
            block = carry + block
        cut = block.rfind(b"\n") + 1
        if cut < len(block):
            carry = block[cut:]
            if len(carry) > max_line:  # no newline within max_line bytes: over-long
                carry = b""
                skipping = True
            block = block[:cut]
        else:
            carry = b""
        if not block:
            continue
        text: str | None
        try:
            text = block.decode()
        except UnicodeDecodeError:
            text = None
        try:
            if text is not None and _lines_shorter_than(block, max_line):
                size = len(text)
                at = 0
                while at < size:
                    end = text.find("\n", at + _PIECE) + 1 or size
                    lineno += feed_block(text[at:end] if at or end < size else text, lineno, out)
                    at = end
                    if out:
                        yield out
                        out = []
                continue
            for raw in block.split(b"\n")[:-1]:
                lineno += 1
                if len(raw) >= max_line:
                    parser.too_long(lineno)
                else:
                    feed_into(raw, lineno, out)
        except ParseError:  # strict mode: the events before the bad line still count
            if out:
                yield out
            raise
        if out:
            yield out
            out = []
    if skipping:
        lineno += 1
        parser.too_long(lineno)
    elif carry:
        lineno += 1
        feed_into(carry, lineno, out)
        if out:
            yield out
