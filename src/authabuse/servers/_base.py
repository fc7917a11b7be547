"""Shared machinery of the policy servers: listening, limits, timeouts, error policy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from authabuse.errors import ConfigurationError
from authabuse.servers._metrics import Metrics

__all__ = ["Limits", "ListenAddress", "ServerBase", "for_log", "parse_listen"]

log = logging.getLogger("authabuse.servers")


@dataclass(frozen=True)
class ListenAddress:
    """Where a server listens: TCP ``host``/``port`` or a Unix socket ``path``.

    >>> parse_listen("127.0.0.1:10040")
    ListenAddress(host='127.0.0.1', port=10040, path=None)
    >>> parse_listen("[::1]:0").host
    '::1'
    >>> parse_listen("unix:/run/authabuse.sock").path
    '/run/authabuse.sock'
    """

    host: str | None = None
    port: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str, *, allow_unix: bool = True) -> ListenAddress:
    """Parse ``HOST:PORT``, ``[V6]:PORT`` or ``unix:PATH`` (see :class:`ListenAddress`).

    >>> parse_listen("127.0.0.1:10040").port, parse_listen("[::1]:10040").host
    (10040, '::1')
    >>> parse_listen("unix:/run/authabuse.sock").path
    '/run/authabuse.sock'
    >>> parse_listen("10040")
    Traceback (most recent call last):
    ...
    authabuse.errors.ConfigurationError: listen address must be HOST:PORT or unix:PATH, not '10040'
    """
    if text.startswith("unix:"):
        if not allow_unix:
            raise ConfigurationError(f"this listener needs HOST:PORT, not {text!r}")
        path = text[5:]
        if not path:
            raise ConfigurationError("unix: needs a socket path")
        return ListenAddress(path=path)
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigurationError(f"listen address must be HOST:PORT or unix:PATH, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigurationError(f"bad port in listen address {text!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"port out of range in listen address {text!r}")
    return ListenAddress(host=host, port=port)


@dataclass(frozen=True)
class Limits:
    """Resource limits that protect a server from broken or hostile clients.

    ``request_timeout`` bounds the time from a request's first byte to its last;
    ``idle_timeout`` bounds the silence between requests on a kept-alive connection
    (Postfix keeps policy connections for up to ``smtpd_policy_service_max_idle``, 300 s
    by default, so the Postfix server's default is a bit longer).

    >>> Limits(max_connections=10).max_connections
    10
    """

    max_connections: int = 1000
    max_request_bytes: int = 16384
    request_timeout: float = 10.0
    idle_timeout: float = 330.0

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_request_bytes < 256:
            raise ConfigurationError("max_connections >= 1 and max_request_bytes >= 256")
        if not (self.request_timeout > 0 and self.idle_timeout > 0):  # NaN too
            raise ConfigurationError("timeouts must be positive")


def for_log(value: object, limit: int = 200) -> str:
    r"""Quote a client-supplied value for a log line: escaped, one line, bounded.

    A login name comes from the client before it authenticates: a newline or a
    terminal escape in it must not forge log lines or repaint an operator's terminal.

    >>> print(for_log("bob\nWARNING forged line\x1b[2J"))
    'bob\nWARNING forged line\x1b[2J'
    >>> for_log("a" * 300, limit=5)
    "'aaaaa'...(+295 chars)"
    """
    if not isinstance(value, str):
        return repr(value)[:limit]
    more = f"...(+{len(value) - limit} chars)" if len(value) > limit else ""
    return repr(value[:limit]) + more


class Connection(asyncio.Protocol):
    """Base protocol: tracks activity for the timeout sweeper and the connection limit."""

    transport: asyncio.Transport | None = None

    def __init__(self, server: ServerBase) -> None:
        self.server = server
        self.buf = bytearray()
        self.last_activity = 0.0
        self.request_started: float | None = None  # monotonic time of a pending request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tr = cast(asyncio.Transport, transport)  # stream servers: Transport
        self.last_activity = time.monotonic()
        if not self.server._admit(self):
            tr.abort()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.transport = None

    def close(self, reason: str) -> None:
        """Close this connection because of ``reason`` (counted and logged)."""
        self.server.metrics.inc("authabuse_protocol_errors_total", (("reason", reason),))
        self.server.log_limited(f"closing connection: {reason}", peer=self.peer())
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self.server._connections.discard(self)

    def peer(self) -> str:
        """Return the peer's address as text (empty for Unix sockets)."""
        if self.transport is None:
            return ""
        peer = self.transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            return f"{peer[0]}:{peer[1]}"
        return str(peer or "")


class ServerBase:
    """An asyncio server with connection limits, timeouts, metrics and error policy."""

    name = "server"

    def __init__(self, *, limits: Limits, metrics: Metrics | None = None) -> None:
        self.limits = limits
        self.metrics = metrics if metrics is not None else Metrics(self.name)
        self._connections: set[Connection] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._last_log = 0.0
        self._suppressed = 0
        self.metrics.gauge(
            "authabuse_connections_open",
            "Connections currently open",
            lambda: float(len(self._connections)),
        )

    # -- pieces used by protocols ------------------------------------------------------

    def protocol(self) -> Connection:
        """Return a new protocol instance for one accepted connection."""
        raise NotImplementedError

    def _admit(self, conn: Connection) -> bool:
        if len(self._connections) >= self.limits.max_connections:
            self.metrics.inc("authabuse_connections_refused_total")
            self.log_limited("connection limit reached, closing new connection", peer="")
            return False
        self._connections.add(conn)
        self.metrics.inc("authabuse_connections_total")
        return True

    def log_limited(self, message: str, *, peer: str, exc: BaseException | None = None) -> None:
        """Log a warning, at most one per second (the rest are counted in metrics)."""
        now = time.monotonic()
        if now - self._last_log < 1.0:
            self._suppressed += 1
            return
        extra = f" ({self._suppressed} similar messages suppressed)" if self._suppressed else ""
        self._suppressed = 0
        self._last_log = now
        where = f" from {peer}" if peer else ""
        log.warning("%s: %s%s%s", self.name, message, where, extra, exc_info=exc)

    @staticmethod
    def now() -> datetime:
        """Return the arrival time of a request: the servers are where the clock is read."""
        return datetime.fromtimestamp(time.time(), UTC)

    # -- life cycle --------------------------------------------------------------------

    async def start(self, listen: ListenAddress | str) -> list[tuple[Any, ...] | str]:
        """Start listening; return the bound addresses (useful with port 0)."""
        addr = parse_listen(listen) if isinstance(listen, str) else listen
        loop = asyncio.get_running_loop()
        if addr.path is not None:
            _remove_stale_socket(addr.path)
            server = await loop.create_unix_server(self.protocol, addr.path, backlog=1024)
            os.chmod(addr.path, 0o666)  # noqa: S103 - Postfix (another user) must connect; put the socket in a protected directory
        else:
            server = await loop.create_server(
                self.protocol, addr.host, addr.port or 0, backlog=1024, reuse_address=True
            )
        self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())
        bound: list[tuple[Any, ...] | str] = []
        for sock in server.sockets:
            bound.append(sock.getsockname())
        return bound

    async def add_listener(self, listen: ListenAddress | str, factory: Callable[[], Any]) -> Any:
        """Listen on another TCP address with another protocol (e.g. ``/metrics``)."""
        addr = parse_listen(listen, allow_unix=False) if isinstance(listen, str) else listen
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, addr.host, addr.port or 0, reuse_address=True)
        self._servers.append(server)
        return server.sockets[0].getsockname()

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        for server in self._servers:
            server.close()
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.close()
        self._connections.clear()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep(self) -> None:
        interval = max(0.05, min(1.0, self.limits.request_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(self._connections):
                if conn.request_started is not None:
                    if now - conn.request_started > self.limits.request_timeout:
                        conn.close("request-timeout")
                elif now - conn.last_activity > self.limits.idle_timeout:
                    self.metrics.inc("authabuse_idle_closed_total")
                    if conn.transport is not None:
                        conn.transport.close()
                    self._connections.discard(conn)


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigurationError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a leftover from a killed server
    else:
        raise ConfigurationError(f"another server already listens on {path}")
    finally:
        probe.close()


class StoreLoopMixin:
    """A server's detector calls, on its event loop when the detector's store can be.

    ``self._check`` / ``self._process`` are the decider's ``check`` / ``process``, or,
    once :meth:`_bind_store` found a store-backed Detector on a Redis store, those of a
    :class:`~authabuse._store_loop.LoopRunner`: they then return a
    :class:`~authabuse._store_loop.Pending` verdict while Redis answers, and the loop
    serves other connections meanwhile.
    """

    decider: Any
    metrics: Metrics
    _runner: Any = None
    _check: Callable[[Any], Any]
    _process: Callable[[Any], Any]

    def _plain_calls(self) -> None:
        self._check, self._process = self.decider.check, self.decider.process

    async def _bind_store(self) -> None:
        if self._runner is not None:
            return
        from authabuse._store_loop import LoopRunner

        runner = await LoopRunner.bind(self.decider)
        if runner is None:
            return
        self._runner = runner
        self._check, self._process = runner.check, runner.process
        self.metrics.gauge(
            "authabuse_store_in_flight",
            "Events waiting for the shared store or for their account's earlier events",
            lambda: float(runner.in_flight),
        )

    async def _unbind_store(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            self._plain_calls()
            await runner.close()
