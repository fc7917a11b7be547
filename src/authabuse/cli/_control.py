r"""The control socket of ``authabuse serve`` and ``authabuse watch`` (``--control PATH``).

A file-backed server or watcher holds its detector state in memory and overwrites its
``--state`` file at the next snapshot: an operator cannot edit the file under it. The
control socket lets ``authabuse state ... --control PATH`` (or ``socat``, ``nc -U``)
ask the running process instead. It is a Unix stream socket, created with mode 0600 (the
process's user alone may connect), removed at exit. The protocol is one UTF-8 line per
command, one line of JSON per answer; a connection may send several commands:

=====================  ==========================================================
command                answer
=====================  ==========================================================
``show ACCOUNT``       ``{"ok": true, "account": A, "info": {...}}`` (``info`` is
                       :meth:`AccountInfo.to_dict() <authabuse.AccountInfo.to_dict>`,
                       ``null`` when the detector keeps nothing about ``A``)
``benign ACCOUNT``     ``{"ok": true, "account": A, "before": {...}, "after": {...}}``
                       (:meth:`Detector.mark_benign
                       <authabuse.Detector.mark_benign>`); an unknown account:
                       ``{"ok": false, "account": A, "error": ...}``, nothing done
``flagged``            ``{"ok": true, "accounts": [{...}, ...], "truncated": false}``
                       (at most 10,000 accounts, most recently active last)
``ping``               ``{"ok": true, "pid": N, "accounts": N}``
=====================  ==========================================================

Anything else gets ``{"ok": false, "error": ...}``. A line longer than 4096 bytes is
answered with an error and the connection closed; so is a connection idle for 30 s or a
client beyond the 16th at once. Nothing a client sends stops the process.

>>> from authabuse.detector import Detector
>>> control = Control(Detector(geo=None))
>>> control.answer(b"show nobody@example.jp")
b'{"ok": true, "account": "nobody@example.jp", "info": null}\n'
>>> control.answer(b"reboot")
b'{"ok": false, "error": "unknown command \'reboot\' (show, benign, flagged, ping)"}\n'
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import select
import socket
import stat
import time
from pathlib import Path
from typing import Any

__all__ = ["Control", "ControlServer", "flagged_infos", "serve_control"]

log = logging.getLogger("authabuse.control")

MAX_LINE = 4096
MAX_CLIENTS = 16
IDLE_TIMEOUT = 30.0
MAX_FLAGGED = 10_000
_TOO_LONG = f'{{"ok": false, "error": "line too long (max {MAX_LINE} bytes)"}}\n'.encode()


def flagged_infos(detector: Any, limit: int = MAX_FLAGGED) -> tuple[list[Any], bool]:
    """Return the :class:`~authabuse.AccountInfo` of flagged accounts (at most ``limit``).

    The second value says whether more were flagged than returned. The compact
    detector's accounts are skipped on their flag alone (a quiet, packed one has none):
    200,000 accounts took 30 ms (packed) to 55 ms (live) here.
    """
    from authabuse.rules import Level

    accts = getattr(detector, "_accts", None) if detector._store is None else None
    out: list[Any] = []
    for name in list(detector.accounts()):
        if accts is not None:  # the compact detector: its flag read in place, for speed
            kept = accts.get(name)
            if kept is None or isinstance(kept, bytes) or not kept.flag:
                continue
        info = detector.account_info(name)
        if info is not None and info.level > Level.OK:
            if len(out) >= limit:
                return out, True
            out.append(info)
    return out, False


class Control:
    """Answer control commands on one detector (the protocol; no I/O)."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.commands = 0
        self.errors = 0

    def answer(self, line: bytes) -> bytes:
        """Return the one-line JSON answer to one command line (its newline stripped)."""
        try:
            reply = self._answer(line)
        except Exception as exc:  # a detector or store failure: answered, never fatal
            log.exception("control command failed")
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        if not reply.get("ok"):
            self.errors += 1
        return json.dumps(reply).encode("utf-8") + b"\n"

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.commands += 1
            return {"ok": False, "error": "the command is not UTF-8"}
        return self.run(text)

    def run(self, text: str) -> dict[str, Any]:  # noqa: PLR0911 - a return per command
        """Run one command given as text (in this process: ``authabuse state --state``).

        Detector and store errors propagate (:meth:`answer` turns them into an answer).
        """
        self.commands += 1
        text = text.rstrip("\r\n")
        cmd, _, arg = text.strip(" \t").partition(" ")
        arg = arg.strip(" \t")
        if cmd in ("show", "benign") and not arg:
            return {"ok": False, "error": f"usage: {cmd} ACCOUNT"}
        det = self.detector
        if cmd == "show":
            info = det.account_info(arg)
            return {"ok": True, "account": arg, "info": None if info is None else info.to_dict()}
        if cmd == "benign":
            before = det.account_info(arg)
            if before is None:
                return {
                    "ok": False,
                    "account": arg,
                    "error": "unknown account (the detector keeps nothing about it): "
                    "nothing to learn, nothing done",
                }
            det.mark_benign(arg)
            after = det.account_info(arg)
            log.info("control: %r marked benign (was %s)", arg, before.level)
            return {
                "ok": True,
                "account": arg,
                "before": before.to_dict(),
                "after": None if after is None else after.to_dict(),
            }
        if cmd == "flagged" and not arg:
            infos, truncated = flagged_infos(det)
            return {"ok": True, "accounts": [i.to_dict() for i in infos], "truncated": truncated}
        if cmd == "ping" and not arg:
            accounts = len(det) if det._store is None else None
            return {"ok": True, "pid": os.getpid(), "accounts": accounts}
        shown = text if len(text) <= 40 else text[:40] + "..."
        return {"ok": False, "error": f"unknown command {shown!r} (show, benign, flagged, ping)"}


def _bind(path: str) -> socket.socket:
    """Listen at ``path`` (mode 0600); refuse a live socket there, replace a stale one."""
    from authabuse.errors import ConfigurationError

    target = Path(path)
    try:
        st = target.lstat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ConfigurationError(f"cannot use control socket {path}: {exc.strerror}") from None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigurationError(f"control socket {path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            target.unlink()  # stale: its process is gone
            log.info("removed stale control socket %s", path)
        else:
            raise ConfigurationError(
                f"control socket {path} is live: another process already listens on it"
            )
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # created 0600: no window in which others could connect
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot create control socket {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(MAX_CLIENTS)
    sock.setblocking(False)
    return sock


def _unlink(path: str, ino: int) -> None:
    """Remove the socket file, unless another process has replaced it since."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == ino:
            os.unlink(path)


# --------------------------------------------------------------- asyncio (serve)


async def serve_control(detector: Any, path: str) -> Any:
    """Start the control socket on the running loop; return an object with ``close()``."""
    control = Control(detector)
    sock = _bind(path)
    ino = os.lstat(path).st_ino
    # A store-backed detector's commands wait for Redis (``flagged`` walks every key):
    # they run in a worker thread, on its own Redis connection, so the loop keeps
    # answering the mail server. The compact detector is not shared with threads: its
    # commands run on the loop (in memory, quick).
    threaded = getattr(detector, "_store", None) is not None

    async def answer(line: bytes) -> bytes:
        if threaded:
            return await asyncio.to_thread(control.answer, line)
        return control.answer(line)

    clients: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            clients.add(task)
        try:
            if len(clients) > MAX_CLIENTS:
                writer.write(b'{"ok": false, "error": "too many control clients"}\n')
                return
            while True:
                try:
                    line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_TIMEOUT)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():  # a last command without its newline
                        writer.write(await answer(exc.partial))
                    return
                except asyncio.LimitOverrunError:
                    writer.write(_TOO_LONG)
                    control.errors += 1
                    return
                except TimeoutError:
                    return
                writer.write(await answer(line))
                await writer.drain()
        except (ConnectionError, OSError):
            return  # the client went away: nothing to answer
        finally:
            if task is not None:
                clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(handle, sock=sock, limit=MAX_LINE)

    class _Handle:
        control_state = control

        async def close(self) -> None:
            server.close()
            for task in list(clients):
                task.cancel()
            with contextlib.suppress(Exception):
                await server.wait_closed()
            _unlink(path, ino)

    return _Handle()


# --------------------------------------------------------------- polled (watch)


class _Client:
    __slots__ = ("buf", "out", "seen", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.out = bytearray()
        self.seen = time.monotonic()


class ControlServer:
    """The control socket for a single-threaded loop that polls it (``authabuse watch``).

    :meth:`poll` accepts, reads and answers whatever is ready without blocking; the
    watcher calls it between log lines and while idle. :meth:`fileno` lets the idle
    wait include the socket.
    """

    def __init__(self, detector: Any, path: str) -> None:
        self.path = path
        self.control = Control(detector)
        self.sock = _bind(path)
        self._ino = os.lstat(path).st_ino
        self.clients: dict[int, _Client] = {}

    def fileno(self) -> int:
        """Return the listening socket's descriptor (for ``select``)."""
        return self.sock.fileno()

    def poll(self) -> None:
        """Serve what is ready now (never blocks)."""
        fds = [self.sock, *(c.sock for c in self.clients.values())]
        ready, writable, _ = select.select(
            fds, [c.sock for c in self.clients.values() if c.out], [], 0
        )
        for s in ready:
            if s is self.sock:
                self._accept()
            else:
                self._read(self.clients[s.fileno()])
        for s in writable:
            client = self.clients.get(s.fileno())
            if client is not None:
                self._flush(client)
        now = time.monotonic()
        for client in list(self.clients.values()):
            if now - client.seen > IDLE_TIMEOUT:
                self._drop(client)

    def _accept(self) -> None:
        for _ in range(4 * MAX_CLIENTS):  # what waits in the backlog, not forever
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            conn.setblocking(False)
            if len(self.clients) >= MAX_CLIENTS:
                with contextlib.suppress(OSError):
                    conn.send(b'{"ok": false, "error": "too many control clients"}\n')
                conn.close()
                continue
            self.clients[conn.fileno()] = _Client(conn)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        client.seen = time.monotonic()
        if not data:  # closed: answer a last command sent without its newline
            if client.buf.strip():
                client.out += self.control.answer(bytes(client.buf))
                client.buf.clear()
                self._flush(client, closing=True)
            self._drop(client)
            return
        client.buf += data
        while (nl := client.buf.find(b"\n")) >= 0:
            line = bytes(client.buf[:nl])
            del client.buf[: nl + 1]
            if len(line) > MAX_LINE:
                self._too_long(client)
                return
            client.out += self.control.answer(line)
        if len(client.buf) > MAX_LINE:
            self._too_long(client)
            return
        self._flush(client)

    def _too_long(self, client: _Client) -> None:
        client.out += _TOO_LONG
        self.control.errors += 1
        self._flush(client, closing=True)
        self._drop(client)

    def _flush(self, client: _Client, *, closing: bool = False) -> None:
        while client.out:
            try:
                n = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                if not closing:
                    return
                # closing: give a slow reader a moment, then give up on it
                select.select([], [client.sock], [], 0.5)
                try:
                    n = client.sock.send(client.out)
                except OSError:
                    return
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    log.debug("control client write failed: %s", exc)
                client.out.clear()
                self._drop(client)
                return
            del client.out[:n]
        if len(client.out) > 1 << 24:  # a client that never reads its answers
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        for fd, c in list(self.clients.items()):
            if c is client:
                del self.clients[fd]
        with contextlib.suppress(OSError):
            client.sock.close()

    def close(self) -> None:
        """Close every connection and the socket; remove its file."""
        for client in list(self.clients.values()):
            self._drop(client)
        self.sock.close()
        _unlink(self.path, self._ino)
