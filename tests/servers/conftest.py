"""Fixtures for the policy-server tests: a real decision object and servers in a thread.

The servers run in their own event loop in a background thread and the tests talk to
them over real sockets with blocking clients, as Postfix and Dovecot do.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from authabuse.events import AuthAttempt, Submission
from authabuse.servers._base import ServerBase


@dataclass
class Verdict:
    account: str | None
    level: str
    score: float


class DistinctIPDecider:
    """A small real decider: an account seen from more than ``limit`` IPs is abuse.

    ``check`` counts the event's IP as if recorded (pure); ``process`` records it.
    Accounts starting with ``boom`` raise, to exercise the fail-open path.
    """

    def __init__(self, limit: int = 2) -> None:
        self.limit = limit
        self.ips: dict[str, set[str]] = {}
        self.recorded: list[Submission | AuthAttempt] = []
        self.checked = 0

    def _verdict(self, event: Submission | AuthAttempt, ips: set[str]) -> Verdict:
        account = event.account or ""
        if account.startswith("boom"):
            raise RuntimeError("decider exploded")
        n = len(ips)
        level = "abuse" if n > self.limit else ("suspicious" if n == self.limit else "ok")
        return Verdict(account, level, float(n))

    def check(self, event: Submission | AuthAttempt) -> Verdict:
        self.checked += 1
        ips = self.ips.get(event.account or "", set()) | {str(event.ip)}
        return self._verdict(event, ips)

    def process(self, event: Submission | AuthAttempt) -> Verdict:
        self.recorded.append(event)
        ips = self.ips.setdefault(event.account or "", set())
        ips.add(str(event.ip))
        return self._verdict(event, ips)


class ServerThread:
    """Run a server's event loop in a thread; ``call`` runs a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[ServerBase] = []

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, server: ServerBase, listen: str = "127.0.0.1:0") -> tuple[str, int] | str:
        bound = self.call(server.start(listen))
        self.servers.append(server)
        addr = bound[0]
        return addr if isinstance(addr, str) else (addr[0], addr[1])

    def close(self) -> None:
        for server in self.servers:
            self.call(server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def server_thread() -> Iterator[ServerThread]:
    st = ServerThread()
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def decider() -> DistinctIPDecider:
    return DistinctIPDecider(limit=2)


def recv_until(sock: socket.socket, terminator: bytes, timeout: float = 5.0) -> bytes:
    """Read until ``terminator`` or EOF; return what was read."""
    sock.settimeout(timeout)
    data = b""
    while terminator not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def is_closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closed (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


class Net:
    """Socket helpers handed to tests (test modules cannot import conftest)."""

    recv_until = staticmethod(recv_until)
    is_closed = staticmethod(is_closed)
    wait_for = staticmethod(wait_for)
    DistinctIPDecider = DistinctIPDecider
    ServerThread = ServerThread


@pytest.fixture(scope="session")
def net() -> type[Net]:
    return Net
