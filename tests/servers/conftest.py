"""Fixtures for the policy-server and shared-state tests.

A real decision object and servers in a thread: the servers run in their own event loop
in a background thread and the tests talk to them over real sockets with blocking
clients, as Postfix and Dovecot do. A real redis-server on loopback, started and
stopped by the tests (:class:`RedisProcess`, fixtures ``redis_process`` and
``redis_process_type``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
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


def policy_message(
    sock: socket.socket, user: str, ip: str, n: int, recipient: str = "bob@example.org"
) -> list[str]:
    """One message through a Postfix policy service: RCPT, END-OF-MESSAGE; the actions."""
    out = []
    for state, extra in (
        ("RCPT", "recipient_count=0\nsize=0"),
        ("END-OF-MESSAGE", f"recipient_count=1\nsize=900\nqueue_id=Q{n}"),
    ):
        sock.sendall(
            (
                f"request=smtpd_access_policy\nprotocol_state={state}\n"
                f"client_address={ip}\nsasl_username={user}\nsender={user}\n"
                f"recipient={recipient}\ninstance={ip}.{n}\n{extra}\n\n"
            ).encode()
        )
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = sock.recv(4096)
            assert chunk, "server closed the connection"
            data += chunk
        out.append(data.decode().removeprefix("action=").strip())
    return out


class Net:
    """Socket helpers handed to tests (test modules cannot import conftest)."""

    recv_until = staticmethod(recv_until)
    policy_message = staticmethod(policy_message)
    is_closed = staticmethod(is_closed)
    wait_for = staticmethod(wait_for)
    DistinctIPDecider = DistinctIPDecider
    ServerThread = ServerThread


@pytest.fixture(scope="session")
def net() -> type[Net]:
    return Net


# ------------------------------------------------------------------ redis-server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A real redis-server on 127.0.0.1, started and stopped by the tests."""

    def __init__(self, *extra: str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            if os.environ.get("AUTHABUSE_REQUIRE_INTEGRATION") == "1":
                pytest.fail("redis-server is required in CI (apt package redis-server)")
            pytest.skip("needs redis-server (apt package redis-server)")
        self.exe = exe
        self.extra = extra
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="authabuse-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        for _attempt in range(3):
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self.dir,
                    *self.extra,
                    # A cluster node's bus listens on port + 10000 unless told: above
                    # 55535 (or taken) the node would not start. Give it a free port.
                    *(
                        ("--cluster-port", str(_free_port()))
                        if "--cluster-enabled" in self.extra
                        else ()
                    ),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            end = time.monotonic() + 30
            while time.monotonic() < end and self.proc.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):  # up (maybe locked)
                            return
                except OSError:
                    time.sleep(0.02)
            self.kill()
            self.port = _free_port()  # the port was taken meanwhile: try another
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_process_type() -> type[RedisProcess]:
    """The class itself, for module-scoped fixtures (tests cannot import a conftest)."""
    return RedisProcess


@pytest.fixture
def redis_process() -> Iterator[Callable[..., RedisProcess]]:
    """Start real redis-servers (extra command-line arguments allowed); all stopped after."""
    started: list[RedisProcess] = []

    def start(*extra: str) -> RedisProcess:
        server = RedisProcess(*extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
