"""The store-backed Detector on an asyncio loop (``authabuse._store_loop``, issue 6).

A policy server runs the detector's Redis I/O on its event loop: many events are in
flight at once. These tests drive a real redis-server and check what must hold: an
account's events see each other's writes exactly as when run one by one; a Redis
failure with events in flight (connection lost, or Redis hanging) loses none of them:
they are replayed on the local fallback in order; the link comes back by itself; and
a Postfix connection's answers leave in its requests' order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from authabuse._store_loop import LoopRunner, Pending
from authabuse.counters import MemoryStore
from authabuse.detector import Detector
from authabuse.events import Submission, parse_ip
from authabuse.servers import DovecotPolicyServer, PostfixAnswers, PostfixPolicyServer

redis = pytest.importorskip("redis", reason="the 'redis' extra is not installed")
pytest.importorskip("hiredis", reason="the loop path needs hiredis (extra 'redis')")
from authabuse.redis_store import RedisStore  # noqa: E402 - after the extra check

if TYPE_CHECKING:
    from conftest import RedisProcess  # tests/servers/conftest.py (fixtures, not importable)

TWO_DAYS = 2 * 86_400
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def _burst(account: str, n: int, seed: int, day: int = 0) -> list[Submission]:
    """An account's day at home, then a burst from addresses all over the world."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    home = parse_ip("81.2.69.160")
    t0 = T0 + timedelta(days=3 * day)  # detectors keep time order: bursts one after another
    events = [
        Submission(
            time=t0 + timedelta(minutes=30 * i),
            ip=home,
            account=account,
            recipients=(f"r{i}@example.org",),
            recipient_count=1,
        )
        for i in range(6)
    ]
    start = t0 + timedelta(hours=30)
    for i in range(n):
        ip = f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.9"
        rcpts = tuple(f"v{i}.{k}@dest{rng.randrange(40)}.example" for k in range(5))
        events.append(
            Submission(
                time=start + timedelta(seconds=20 * i),
                ip=parse_ip(ip),
                account=account,
                recipients=rcpts,
                recipient_count=len(rcpts),
            )
        )
    return events


def _sig(v: Any) -> tuple[Any, ...]:
    return (v.account, int(v.level), round(v.score, 9), tuple(f.rule for f in v.findings))


async def _settled(items: list[Any], timeout: float = 20.0) -> list[Any]:
    """Wait until every Pending in ``items`` is settled; return the results."""
    end = time.monotonic() + timeout
    while not all(not isinstance(x, Pending) or x.done() for x in items):
        assert time.monotonic() < end, "events still in flight"
        await asyncio.sleep(0.002)
    return [x.result() if isinstance(x, Pending) else x for x in items]


def _linked(store: RedisStore) -> bool:
    """Whether the store is back on Redis through its loop connection."""
    return not store.degraded and store._link is not None


def _submit_all(runner: LoopRunner, events: list[Submission]) -> list[Any]:
    """A check then a process per message, all submitted before any answer is read."""
    out: list[Any] = []
    for e in events:
        out.append(runner.check(e))
        out.append(runner.process(e))
    return out


def _blocking(det: Detector, events: list[Submission]) -> list[Any]:
    out: list[Any] = []
    for e in events:
        out.append(det.check(e))
        out.append(det.process(e))
    return out


def test_an_accounts_events_in_flight_together_see_each_others_writes(
    redis_process: Callable[..., RedisProcess],
) -> None:
    server = redis_process()
    accounts = [f"user{i}@example.jp" for i in range(3)]
    bursts = [_burst(a, 30, seed=i, day=i) for i, a in enumerate(accounts)]

    one_by_one = Detector(store=RedisStore(server.url, prefix="s:", retention=TWO_DAYS))
    expected = [[_sig(v) for v in _blocking(one_by_one, b)] for b in bursts]
    # the burst does change the verdicts as it goes (else ordering would not show)
    assert len({s[1] for s in expected[0]}) > 1

    async def main() -> list[list[Any]]:
        store = RedisStore(server.url, prefix="l:", retention=TWO_DAYS, socket_timeout=5)
        det = Detector(store=store)
        runner = await LoopRunner.bind(det)
        assert runner is not None
        got = []
        for b in bursts:  # one account at a time: nothing else shares its keys
            items = _submit_all(runner, b)
            assert runner.in_flight == len(items)  # all of them waiting together
            assert all(isinstance(x, Pending) for x in items)
            got.append([_sig(v) for v in await _settled(items)])
        assert runner.in_flight == 0
        assert not store.degraded
        assert store.status["errors"] == 0
        await runner.close()
        return got

    assert asyncio.run(main()) == expected


def test_redis_lost_with_events_in_flight_replays_them_locally_in_order(
    redis_process: Callable[..., RedisProcess],
) -> None:
    server = redis_process()
    events = _burst("alice@example.jp", 25, seed=7)
    # What the local fallback alone must give: the same events on an empty memory store.
    alone = Detector(store=MemoryStore(retention=TWO_DAYS, slice_seconds=3600))
    expected = [_sig(v) for v in _blocking(alone, events)]

    async def main() -> None:
        store = RedisStore(server.url, retention=TWO_DAYS, socket_timeout=5, retry_interval=0.3)
        det = Detector(store=store)
        runner = await LoopRunner.bind(det)
        assert runner is not None
        items = _submit_all(runner, events)
        assert runner.in_flight == len(items)
        server.kill()  # before the loop has written anything of the burst
        got = [_sig(v) for v in await _settled(items)]
        assert got == expected
        assert store.degraded
        assert store.status["fallbacks"] == 1
        # Redis returns (empty): the link comes back in the background, traffic or not.
        server.start()
        end = time.monotonic() + 10
        while not _linked(store):
            assert time.monotonic() < end, "did not reconnect"
            await asyncio.sleep(0.05)
        later = events[-1]
        v = runner.process(
            Submission(time=later.time + timedelta(seconds=5), ip=later.ip, account=later.account)
        )
        assert isinstance(v, Pending)  # through Redis again
        await _settled([v])
        client = redis.Redis.from_url(server.url)
        assert client.exists("authabuse:{alice@example.jp}:rec:r:0")
        client.close()
        await runner.close()

    asyncio.run(main())


def test_posted_writes_unacknowledged_when_redis_dies_are_kept_locally(
    redis_process: Callable[..., RedisProcess],
) -> None:
    server = redis_process()
    key, at = ("dave@example.jp", "S"), 1_777_777_200.0

    async def main() -> None:
        store = RedisStore(server.url, socket_timeout=5, retry_interval=60)
        assert await store.bind_loop()
        store.post([("incr", key, "m", 2, at), ("add_distinct", key, [1, 2, 3], at)])
        server.kill()  # the writes are buffered, not acknowledged
        got: list[Any] = []
        assert store.submit([("counts", key, at, 3600)], lambda _arg, r: got.append(r)) is None
        end = time.monotonic() + 5
        while not got:
            assert time.monotonic() < end
            await asyncio.sleep(0.01)
        assert got == [[{"m": 2}]]  # answered by the fallback, which has the writes
        assert store.degraded
        assert store.count_distinct(key, at=at, window=3600) == 3
        await store.unbind_loop()

    asyncio.run(main())


def test_redis_hanging_times_out_and_falls_back(
    redis_process: Callable[..., RedisProcess],
) -> None:
    server = redis_process()
    assert server.proc is not None
    events = _burst("bob@example.jp", 5, seed=3)

    async def main() -> None:
        store = RedisStore(server.url, retention=TWO_DAYS, socket_timeout=0.3, retry_interval=30)
        runner = await LoopRunner.bind(Detector(store=store))
        assert runner is not None
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # Redis alive but not answering
        try:
            started = time.monotonic()
            items = _submit_all(runner, events)
            results = await _settled(items, timeout=5)
            waited = time.monotonic() - started
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert len(results) == 2 * len(events)
        assert 0.25 < waited < 3.0  # the socket timeout, not forever
        assert store.degraded
        assert store.status["fallbacks"] == 1
        await runner.close()

    asyncio.run(main())


def test_a_connections_answers_leave_in_its_requests_order(
    redis_process: Callable[..., RedisProcess], net: Any
) -> None:
    server = redis_process()
    store = RedisStore(server.url, retention=TWO_DAYS, socket_timeout=5)
    det = Detector(store=store)
    # ok answers WARN, unauthenticated ones DUNNO: the order of the answers shows.
    srv = PostfixPolicyServer(det, answers=PostfixAnswers(ok="WARN level ok"))
    st = net.ServerThread()
    try:
        addr = st.start(srv)
        assert srv._runner is not None  # the store runs on the server's loop

        def req(state: str, user: str, n: int) -> bytes:
            return (
                f"request=smtpd_access_policy\nprotocol_state={state}\n"
                f"client_address=198.51.100.{n}\nsasl_username={user}\ninstance=i{n}\n"
                f"recipient=x{n}@example.org\nrecipient_count=1\nsize=900\n\n"
            ).encode()

        payload = b"".join(
            [
                req("RCPT", "carol@example.jp", 1),  # waits for Redis
                req("RCPT", "", 2),  # answered at once
                req("END-OF-MESSAGE", "carol@example.jp", 1),  # waits for the RCPT's check? no
                req("RCPT", "", 3),
            ]
        )
        with socket.create_connection(addr) as s:
            s.sendall(payload)
            s.settimeout(10)
            data = b""
            while data.count(b"\n\n") < 4:
                chunk = s.recv(65536)
                assert chunk, "server closed the connection"
                data += chunk
        answers = [a for a in data.decode().split("\n\n") if a]
        assert answers == [
            "action=WARN level ok",
            "action=DUNNO",
            "action=WARN level ok",
            "action=DUNNO",
        ]
    finally:
        st.close()
    assert not store.degraded
    assert det.stats.submissions == 1


def test_scripts_lost_by_redis_are_loaded_again_on_the_loop(
    redis_process: Callable[..., RedisProcess], caplog: pytest.LogCaptureFixture
) -> None:
    """``SCRIPT FLUSH`` under a bound store: the calls that got NOSCRIPT run again.

    Nothing falls back to local state and no write is lost: Redis ran none of the
    commands of a script call it refused.
    """
    server = redis_process()
    key = ("dave@example.jp", "S")
    at = 1_714_557_600.0

    async def main() -> tuple[Any, dict[str, Any]]:
        store = RedisStore(server.url, retention=TWO_DAYS, socket_timeout=5)
        assert await store.bind_loop()
        admin = redis.Redis(port=int(server.url.rsplit(":", 1)[1].split("/")[0]))
        admin.script_flush()
        store.post([("incr_fields", key, {"n:64500": 2, "m": 1}, at)])
        got: list[Any] = []
        assert (
            store.submit([("pair", key, at, at - 3600, "n:64500", 6)], lambda _a, r: got.append(r))
            is None
        )
        end = time.monotonic() + 10
        while not got:
            assert time.monotonic() < end
            await asyncio.sleep(0.005)
        admin.close()
        await store.unbind_loop()
        return got[0], dict(store.status)

    with caplog.at_level(logging.WARNING, logger="authabuse.redis"):
        [pair], status = asyncio.run(main())
    assert caplog.text.count("lost the authabuse scripts") == 2  # the write and the read
    assert (pair.cur, pair.nets, pair.probe_cur) == ({"m": 1}, {"n:64500": 2}, 2)
    assert status == {"degraded": False, "fallbacks": 0, "errors": 0}


def _login_requests(seed: int) -> list[tuple[str, dict[str, Any]]]:
    """Dovecot's requests for an account's logins at home, then for a botnet's logins."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    out: list[tuple[str, dict[str, Any]]] = []

    def login(account: str, ip: str, ok: bool) -> None:
        data = {"login": account, "remote": ip, "protocol": "imap", "session_id": "s"}
        out.append(("allow", data))
        if ok:
            out.append(("allow", data))
        out.append(("report", {**data, "success": ok, "policy_reject": False}))

    for _ in range(6):
        login("mallory@example.jp", "81.2.69.160", True)
        login("quiet@example.jp", "81.2.69.161", True)
    for i in range(40):
        ip = f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.9"
        login("mallory@example.jp", ip, i % 3 != 0)
        login("quiet@example.jp", "81.2.69.161", True)
    return out


def _clock() -> Callable[[], datetime]:
    times = (
        T0 + timedelta(minutes=30 * i) if i < 36 else T0 + timedelta(hours=30, seconds=10 * i)
        for i in range(10_000)
    )
    return lambda: next(times)


def _http_statuses(addr: Any, requests: list[tuple[str, dict[str, Any]]]) -> list[int]:
    """Send every request at once on one connection; return the answers' statuses in order."""
    payload = b""
    for command, data in requests:
        body = json.dumps(data).encode()
        payload += (
            f"POST /?command={command} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    statuses: list[int] = []
    with socket.create_connection(addr) as s:
        s.sendall(payload)
        s.settimeout(20)
        buf = b""
        while len(statuses) < len(requests):
            chunk = s.recv(65536)
            assert chunk, "server closed the connection"
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(rest) < length:
                    break
                assert head.startswith(b"HTTP/1.1 200 ")
                statuses.append(json.loads(rest[:length])["status"])
                buf = rest[length:]
    return statuses


def test_dovecot_server_runs_its_redis_io_on_the_loop(
    redis_process: Callable[..., RedisProcess], net: Any
) -> None:
    """Dovecot's requests on a Redis store: on the loop, answered as one by one.

    All requests of one connection are in flight together (pipelined); the answers
    leave in order and are those a server on a memory store gives for the same logins
    one at a time; no blocking Redis call is made on the server's loop.
    """
    requests = _login_requests(seed=5)
    plain = DovecotPolicyServer(
        Detector(store=MemoryStore(retention=TWO_DAYS)), allow_reuse_seconds=0, clock=_clock()
    )
    expected = [plain.policy(c, d)["status"] for c, d in requests]  # type: ignore[index]  # a dict: nothing bound
    assert 0 in expected
    assert -1 in expected  # the botnet's logins are refused at some point

    server = redis_process()
    store = RedisStore(server.url, retention=TWO_DAYS, socket_timeout=5)
    srv = DovecotPolicyServer(Detector(store=store), allow_reuse_seconds=0, clock=_clock())
    st = net.ServerThread()
    try:
        addr = st.start(srv)
        assert srv._runner is not None  # the store runs on the server's loop
        got = _http_statuses(addr, requests)

        async def blocking_connection() -> Any:
            return getattr(store._tls, "conn", None)

        assert st.call(blocking_connection()) is None  # nothing went the blocking way
        # "Connection: close" while the answer waits for Redis: answered, then closed.
        body = json.dumps({"login": "late@example.jp", "remote": "81.2.69.162"}).encode()
        with socket.create_connection(addr) as s:
            s.sendall(
                b"POST /?command=allow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            s.settimeout(10)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")
        assert b"Connection: close" in data
        assert data.endswith(b'{"status":0}')
    finally:
        st.close()
    assert got == expected
    assert not store.degraded
    assert store.status["errors"] == 0


# The loop connection's handshake: as the client's URL says (Unix socket, AUTH with or
# without a user, SELECT, TLS), each against a real redis-server configured for it.

_AT = 1_714_557_600.0


async def _round_trip(store: RedisStore) -> tuple[bool, Any]:
    """Bind, write a count and read it back through the loop connection."""
    bound = await store.bind_loop()
    key = ("erin@example.jp", "S")
    store.post([("incr_fields", key, {"m": 2}, _AT)])
    got: list[Any] = []
    now = store.submit([("counts", key, _AT, 3600)], lambda _a, r: got.append(r))
    if now is not None:  # answered at once: the local fallback
        got.append(now)
    end = time.monotonic() + 10
    while not got:
        assert time.monotonic() < end
        await asyncio.sleep(0.005)
    linked = store._link is not None
    await store.unbind_loop()
    return bound and linked, got[0]


def test_loop_connection_over_a_unix_socket_with_password_and_database(
    redis_process: Callable[..., RedisProcess], tmp_path: Any
) -> None:
    path = str(tmp_path / "redis.sock")
    server = redis_process(
        "--unixsocket", path, "--unixsocketperm", "700", "--requirepass", "s3cret"
    )
    store = RedisStore(f"unix://:s3cret@{path}?db=3", retention=TWO_DAYS, socket_timeout=5)
    linked, result = asyncio.run(_round_trip(store))
    assert linked
    assert result == [{"m": 2}]
    assert not store.degraded
    admin = redis.Redis(unix_socket_path=path, password="s3cret", db=3)  # noqa: S106 - a test server's
    try:
        [name] = admin.keys("authabuse:{erin@example.jp}:S:c:*")  # in database 3
        assert admin.hgetall(name) == {b"m": b"2"}
        other_db = redis.Redis(unix_socket_path=path, password="s3cret", db=0)  # noqa: S106 - as above
        assert other_db.dbsize() == 0
        other_db.close()
    finally:
        admin.close()
    server.close()


def test_loop_connection_authenticates_an_acl_user_and_fails_over_on_refusal(
    redis_process: Callable[..., RedisProcess], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_process("--user", "mta", "on", ">pw1", "~*", "&*", "+@all")
    base = f"127.0.0.1:{server.port}/2"
    store = RedisStore(f"redis://mta:pw1@{base}", retention=TWO_DAYS, socket_timeout=5)
    linked, result = asyncio.run(_round_trip(store))
    assert linked
    assert result == [{"m": 2}]
    admin = redis.Redis(port=server.port, db=2, username="mta", password="pw1")  # noqa: S106 - a test server's
    assert admin.keys("authabuse:{erin@example.jp}:S:c:*")
    admin.close()
    # A wrong password: the handshake is refused, the store answers from local state.
    wrong = RedisStore(f"redis://mta:nope@{base}", retention=TWO_DAYS, retry_interval=60)
    with caplog.at_level(logging.WARNING, logger="authabuse.redis"):
        linked, result = asyncio.run(_round_trip(wrong))
    assert not linked
    assert result == [{"m": 2}]  # counted locally
    assert wrong.degraded
    assert "unreachable" in caplog.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cert(directory: Any, name: str) -> tuple[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1 (the openssl command)."""
    cert, key = str(directory / f"{name}.pem"), str(directory / f"{name}.key")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_loop_connection_speaks_tls_for_rediss_urls(
    redis_process: Callable[..., RedisProcess], tmp_path: Any
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = _cert(tmp_path, "server")
    other, _ = _cert(tmp_path, "other")
    tls_port = _free_port()
    server = redis_process(
        "--tls-port", str(tls_port), "--tls-cert-file", cert, "--tls-key-file", key,
        "--tls-ca-cert-file", cert, "--tls-auth-clients", "no",
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required&ssl_ca_certs="
    store = RedisStore(url + cert, retention=TWO_DAYS, socket_timeout=5)
    linked, result = asyncio.run(_round_trip(store))
    assert linked  # TLS on the loop, not the blocking path
    assert result == [{"m": 2}]
    assert not store.degraded
    assert store.count_distinct(("erin@example.jp", "x"), at=_AT, window=60) == 0  # blocking too
    plain = redis.Redis(port=server.port)
    assert plain.keys("authabuse:{erin@example.jp}:S:c:*")
    plain.close()
    # A server certificate the client does not trust: refused, local state answers.
    distrust = RedisStore(url + other, retention=TWO_DAYS, socket_timeout=5, retry_interval=60)
    linked, result = asyncio.run(_round_trip(distrust))
    assert not linked
    assert distrust.degraded
