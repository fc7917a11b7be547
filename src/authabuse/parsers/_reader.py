"""Reading log inputs: files, ``-`` for stdin, rotated ``.gz``; lines of bounded length."""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from typing import BinaryIO

from authabuse.errors import ConfigurationError, CorruptDataError
from authabuse.events import Event

from ._core import DEFAULT_MAX_LINE, LogParser
from ._stats import ParseStats

__all__ = ["iter_events", "iter_lines", "open_log"]

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 65536


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
    out: list[Event] = []
    feed = parser.feed_into
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
            lineno = 0
            readline = fh.readline
            limit = max_line + 1
            while True:  # iter_lines, inlined: this loop runs once per log line
                try:
                    line = readline(limit)
                except (OSError, EOFError) as exc:  # truncated or corrupt .gz
                    if strict:
                        raise CorruptDataError(f"{parser.source}: {exc}") from None
                    parser.stats.note("read_errors", parser.source, lineno + 1, str(exc))
                    break
                if not line:
                    break
                lineno += 1
                if len(line) > max_line and line[-1:] != b"\n":
                    while True:  # skip the rest of the over-long line, in bounded chunks
                        chunk = readline(_CHUNK)
                        if not chunk or chunk[-1:] == b"\n":
                            break
                    parser.too_long(lineno)
                    continue
                feed(line, lineno, out)
                if out:
                    if len(out) == 1:
                        yield out.pop()
                    else:
                        yield from out
                        out.clear()
    yield from parser.flush()
