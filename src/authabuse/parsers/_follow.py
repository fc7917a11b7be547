"""Follow growing log files across rotation, like ``tail -F`` (``authabuse watch``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from ._core import DEFAULT_MAX_LINE

__all__ = ["Follower"]

_CHUNK = 1 << 18


@dataclass
class _Tail:
    path: str
    fh: BinaryIO | None = None
    inode: int = -1
    pos: int = 0  # offset of the first byte not yet handed out as a line
    partial: bytearray = field(default_factory=bytearray)
    skipping: bool = False  # inside a line longer than max_line: drop to its newline
    lineno: int = 0

    def cut(
        self,
        data: bytes,
        limit: int = DEFAULT_MAX_LINE,
        on_too_long: Callable[[str, int], None] | None = None,
    ) -> Iterator[tuple[str, int, bytes]]:
        """Yield the complete lines ``data`` ends; keep an unfinished one for later.

        A line longer than ``limit`` bytes is never held whole: ``on_too_long(path,
        lineno)`` is called and the rest of it is dropped as it arrives.
        """
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                rest = data[start:]
                if self.skipping:
                    self.pos += len(rest)
                elif len(self.partial) + len(rest) > limit:
                    self.lineno += 1
                    if on_too_long is not None:
                        on_too_long(self.path, self.lineno)
                    self.pos += len(self.partial) + len(rest)
                    self.partial.clear()
                    self.skipping = True
                else:
                    self.partial += rest
                return
            piece = data[start : nl + 1]
            start = nl + 1
            if self.skipping:  # the end of an over-long line
                self.pos += len(piece)
                self.skipping = False
                continue
            if self.partial:
                self.partial += piece
                line = bytes(self.partial)
                self.partial.clear()
            else:
                line = piece
            self.lineno += 1
            self.pos += len(line)
            if len(line) > limit + 1:
                if on_too_long is not None:
                    on_too_long(self.path, self.lineno)
                continue
            yield self.path, self.lineno, line


class Follower:
    r"""Hand out the complete lines appended to log files, across rotation and truncation.

    Each file is polled: new bytes are read in blocks and cut into lines (a last line
    without its newline waits for it); when the name points to a new file (``logrotate``
    moved the old one away, ``inode`` changed) the old file is read to its end first and
    the new one from its start; a file that shrank (``copytruncate``) is read again from
    its start. ``positions`` (path -> ``(inode, offset)``, e.g. saved beside a detector's
    state) resumes each file where it stopped if it is still the same file; otherwise a
    file starts at its end, or at its start with ``from_start``. Lines longer than
    ``max_line`` bytes are not kept whole in memory: ``on_too_long(path, lineno)`` is
    called and the line is skipped.

    >>> import tempfile, pathlib
    >>> log = pathlib.Path(tempfile.mkdtemp()) / "mail.log"
    >>> _ = log.write_bytes(b"old line\n")
    >>> f = Follower([str(log)])          # like tail -F: from the end
    >>> list(f.poll())
    []
    >>> with log.open("ab") as fh:
    ...     _ = fh.write(b"new line\npart")
    >>> [(n, line) for _, n, line in f.poll()]
    [(1, b'new line\n')]
    >>> f.positions()[str(log)][1]        # "part" waits for its newline
    18
    >>> f.close()
    """

    def __init__(
        self,
        paths: Sequence[str],
        *,
        from_start: bool = False,
        positions: dict[str, tuple[int, int]] | None = None,
        max_line: int = DEFAULT_MAX_LINE,
        on_too_long: Callable[[str, int], None] | None = None,
    ) -> None:
        self._tails = [_Tail(p) for p in paths]
        self._from_start = from_start
        self._resume = dict(positions or {})
        self._max_line = max_line
        self._on_too_long = on_too_long
        self._started = False

    def positions(self) -> dict[str, tuple[int, int]]:
        """Return each open file's ``(inode, offset of the next unread line)``."""
        return {t.path: (t.inode, t.pos) for t in self._tails if t.fh is not None}

    def close(self) -> None:
        """Close every file."""
        for t in self._tails:
            if t.fh is not None:
                t.fh.close()
                t.fh = None

    def start(self) -> None:
        r"""Open the files now, fixing where reading starts (else the first poll does).

        Lines written after ``start()`` are read even if the first poll comes later;
        without it, what a file held when the first poll opened it counts as "there
        before" (not read, like ``tail -F``). Calling it again does nothing.

        >>> import os, tempfile
        >>> d = tempfile.mkdtemp()
        >>> path = os.path.join(d, "mail.log")
        >>> with open(path, "wb") as fh: _ = fh.write(b"old\n")
        >>> f = Follower([path])
        >>> f.start()
        >>> with open(path, "ab") as fh: _ = fh.write(b"new\n")
        >>> [line for _, _, line in f.poll()]
        [b'new\n']
        >>> f.close()
        """
        if self._started:
            return
        self._started = True
        for t in self._tails:
            if t.fh is None:
                self._open(t, True)

    def poll(self) -> Iterator[tuple[str, int, bytes]]:
        """Yield ``(path, line number, line)`` for every complete line there is now."""
        first = not self._started
        self._started = True
        for t in self._tails:
            yield from self._poll_one(t, first)

    def follow(
        self,
        *,
        interval: float = 1.0,
        stop: Callable[[], bool] | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> Iterator[tuple[str, int, bytes]]:
        """Poll forever (every ``interval`` seconds when idle), or until ``stop()`` is true.

        ``on_idle()`` is called after each idle wait: a place for housekeeping (saving
        state, reloading configuration) while no line comes.
        """
        while stop is None or not stop():
            got = False
            for item in self.poll():
                got = True
                yield item
                if stop is not None and stop():
                    return
            if not got:
                time.sleep(interval)
                if on_idle is not None:
                    on_idle()

    # ---------------------------------------------------------------- internals

    def _open(self, t: _Tail, first: bool) -> bool:
        try:
            fh = open(t.path, "rb")  # noqa: SIM115 - kept open across polls, closed in close()
        except FileNotFoundError:
            return False
        st = os.fstat(fh.fileno())
        t.fh, t.inode = fh, st.st_ino
        t.partial.clear()
        t.skipping = False
        resume = self._resume.pop(t.path, None)
        if resume is not None and resume[0] == st.st_ino and resume[1] <= st.st_size:
            t.pos = resume[1]
        elif first and not self._from_start and resume is None:
            t.pos = st.st_size  # like tail -F: what was there before is not read
        else:
            t.pos = 0  # a file that appeared (or replaced the one we knew) is read whole
        fh.seek(t.pos)
        return True

    def _poll_one(self, t: _Tail, first: bool) -> Iterator[tuple[str, int, bytes]]:
        if t.fh is None and not self._open(t, first):
            return
        while True:
            assert t.fh is not None  # noqa: S101 - opened above
            data = t.fh.read(_CHUNK)
            if data:
                yield from t.cut(data, self._max_line, self._on_too_long)
                continue
            # at the end: has the name moved on to a new file, or was this one truncated?
            try:
                st = os.stat(t.path)
            except FileNotFoundError:
                return  # rotated away and not yet recreated: keep reading the old one
            if st.st_ino != t.inode:
                t.fh.close()
                t.fh = None
                if not self._open(t, False):
                    return
                continue
            if st.st_size < t.fh.tell():
                t.fh.seek(0)
                t.pos = 0
                t.partial.clear()
                t.skipping = False
                continue
            return
