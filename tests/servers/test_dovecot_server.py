"""The Dovecot auth-policy HTTP server over real sockets: protocol and failure modes."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from authabuse.errors import ConfigurationError
from authabuse.events import AuthAttempt
from authabuse.servers import DovecotAnswers, DovecotPolicyServer, Limits


def body(login: str, remote: str = "192.0.2.20", **extra: Any) -> dict[str, Any]:
    # Dovecot 2.3's default auth_policy_request_attributes, as it sends them.
    data: dict[str, Any] = {
        "device_id": "",
        "login": login,
        "protocol": "imap",
        "pwhash": "058d",
        "remote": remote,
        "session_id": "s1",
        "tls": False,
    }
    data.update(extra)
    return data


def post(
    conn: http.client.HTTPConnection, command: str, data: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    conn.request(
        "POST",
        f"/?command={command}",
        body=raw,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    resp = conn.getresponse()
    payload = resp.read()
    return resp.status, json.loads(payload) if payload.startswith(b"{") else payload


_OPEN: list[http.client.HTTPConnection] = []


def _client(host: str, port: int, timeout: float = 5) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    _OPEN.append(conn)
    return conn


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def dovecot(server_thread: Any, decider: Any) -> tuple[DovecotPolicyServer, tuple[str, int]]:
    srv = DovecotPolicyServer(decider, answers=DovecotAnswers(suspicious=2), server_name="imap1")
    return srv, server_thread.start(srv)


def test_allow_and_report_flow(dovecot: Any, decider: Any) -> None:
    srv, (host, port) = dovecot
    conn = _client(host, port, timeout=5)  # one kept-alive connection
    statuses = []
    for n in range(1, 5):
        ip = f"203.0.113.{n}"
        statuses.append(post(conn, "allow", body("alice@example.jp", ip))[1])
        statuses.append(post(conn, "allow", body("alice@example.jp", ip))[1])  # after passdb
        assert post(
            conn, "report", body("alice@example.jp", ip, success=True, policy_reject=False)
        ) == (200, {"status": 0})
    conn.close()
    assert statuses == [
        {"status": 0},
        {"status": 0},  # first IP
        {"status": 2},
        {"status": 2},  # second IP: suspicious -> tarpit 2 s
        {"status": -1, "msg": "authentication refused by policy"},
        {"status": -1, "msg": "authentication refused by policy"},
        {"status": -1, "msg": "authentication refused by policy"},
        {"status": -1, "msg": "authentication refused by policy"},
    ]
    assert len(decider.recorded) == 4  # only reports record
    first = decider.recorded[0]
    assert isinstance(first, AuthAttempt)
    assert (first.account, str(first.ip), first.succeeded) == (
        "alice@example.jp",
        "203.0.113.1",
        True,
    )
    assert (first.service, first.session, first.server) == ("imap", "s1", "imap1")
    text = srv.metrics.render()
    assert 'authabuse_requests_total{server="dovecot",command="allow"} 8' in text
    assert 'authabuse_decisions_total{server="dovecot",level="abuse",action="reject"} 4' in text
    assert 'level="suspicious",action="tarpit"} 2' in text


def test_failed_login_report_is_recorded_as_failure(dovecot: Any, decider: Any) -> None:
    _, (host, port) = dovecot
    conn = _client(host, port, timeout=5)
    post(conn, "report", body("bob", success=False, policy_reject=False))
    post(conn, "report", body("bob", remote="192.0.2.21"))  # no success field: a failure
    assert [e.succeeded for e in decider.recorded] == [False, False]


def test_empty_login_is_accepted_without_state(dovecot: Any, decider: Any) -> None:
    _, (host, port) = dovecot
    conn = _client(host, port, timeout=5)
    assert post(conn, "allow", body("")) == (200, {"status": 0})
    assert post(conn, "report", body("")) == (200, {"status": 0})
    assert decider.recorded == []
    assert decider.checked == 0


@pytest.mark.parametrize(
    ("setting", "header"),
    [
        ("Authorization: Basic dXNlcjpwYXNz", ("Authorization", "Basic dXNlcjpwYXNz")),
        ("s3cret", ("X-API-Key", "s3cret")),
    ],
)
def test_api_key_header(
    server_thread: Any, decider: Any, setting: str, header: tuple[str, str]
) -> None:
    srv = DovecotPolicyServer(decider, api_header=setting)
    host, port = server_thread.start(srv)
    conn = _client(host, port, timeout=5)
    assert post(conn, "allow", body("alice"))[0] == 401
    assert post(conn, "allow", body("alice"), {header[0]: "wrong"})[0] == 401
    assert post(conn, "allow", body("alice"), {header[0]: header[1]}) == (200, {"status": 0})
    assert decider.checked == 1


def test_bad_requests_get_http_errors(dovecot: Any, net: Any) -> None:
    srv, (host, port) = dovecot
    conn = _client(host, port, timeout=5)
    assert post(conn, "allow", b"{not json")[0] == 400
    assert post(conn, "allow", b"[1, 2]")[0] == 400
    assert post(conn, "frobnicate", body("a"))[0] == 400
    assert post(conn, "allow", body("a", remote="999.1.1.1")) == (200, {"status": 0})
    assert post(conn, "allow", body("a")) == (200, {"status": 0})  # same connection serves on
    conn.request("PUT", "/")
    assert conn.getresponse().status == 405
    conn.close()
    assert srv.metrics.get("authabuse_protocol_errors_total", (("reason", "malformed-json"),)) == 2
    assert srv.metrics.get("authabuse_protocol_errors_total", (("reason", "invalid-value"),)) == 1


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "binary"),  # TLS hello
        (b"HELLO\r\n\r\n", 400, "malformed"),
        (b"POST /?command=allow HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413, "oversized"),
        (b"POST /?command=allow HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501, "chunked"),
        (b"POST /?command=allow HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431, "oversized"),
        (b"GET / HTTP/1.1\r\n" + b"X: " + b"a" * 20000, 431, "oversized"),
        (b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "malformed"),
        # two lengths: which one frames the body? (waited for 30 bytes until the timeout)
        (
            b"POST /?command=allow HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\n{}",
            400,
            "malformed",
        ),
    ],
)
def test_garbled_requests_close_the_connection(
    dovecot: Any, net: Any, payload: bytes, status: int, reason: str
) -> None:
    srv, addr = dovecot
    with socket.create_connection(addr) as bad:
        bad.sendall(payload)
        reply = net.recv_until(bad, b"\r\n\r\n")
        assert reply.startswith(f"HTTP/1.1 {status} ".encode())
        assert b"Connection: close" in reply
        assert net.is_closed(bad)
    assert srv.metrics.get("authabuse_protocol_errors_total", (("reason", reason),)) == 1
    conn = _client(*addr)
    assert post(conn, "allow", body("alice")) == (200, {"status": 0})


@pytest.mark.parametrize(
    ("sep", "end"), [(b"\n", b"\n\n"), (b"\r\n", b"\r\n\n"), (b"\n", b"\n\r\n")]
)
def test_bare_lf_requests_are_answered(
    server_thread: Any, decider: Any, net: Any, sep: bytes, end: bytes
) -> None:
    # A head ending in bare LFs (RFC 9112 2.2 lets a server accept them) waited for the
    # request timeout and was then dropped; now it is read like a CRLF one, body and all,
    # and the connection serves the next request.
    srv = DovecotPolicyServer(decider, limits=Limits(request_timeout=30))
    addr = server_thread.start(srv)
    with socket.create_connection(addr) as c:
        started = time.monotonic()
        for login in ("alice", "bob"):  # kept alive: the body was taken whole
            payload = json.dumps(body(login)).encode()
            head = [b"POST /?command=allow HTTP/1.1", b"Content-Length: %d" % len(payload)]
            c.sendall(sep.join(head) + end + payload)
            reply = net.recv_until(c, b"}")
            assert reply.startswith(b"HTTP/1.1 200 "), reply
            assert reply.endswith(b'{"status":0}') or reply.endswith(b'{"status": 0}'), reply
        assert time.monotonic() - started < 10  # not the 30 s request timeout
    assert decider.checked == 2
    assert srv.metrics.get("authabuse_protocol_errors_total", (("reason", "malformed"),)) == 0


def test_slow_client_and_connection_limit(server_thread: Any, decider: Any, net: Any) -> None:
    srv = DovecotPolicyServer(decider, limits=Limits(max_connections=2, request_timeout=0.3))
    addr = server_thread.start(srv)
    with socket.create_connection(addr) as slow:
        slow.sendall(b"POST /?command=allow HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        assert net.is_closed(slow)
        with socket.create_connection(addr) as a, socket.create_connection(addr) as b:
            assert net.wait_for(lambda: len(srv._connections) == 2)
            with socket.create_connection(addr) as c:
                assert net.is_closed(c)
            for s in (a, b):
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert net.recv_until(s, b"ok\n").endswith(b"ok\n")
    assert srv.metrics.get("authabuse_connections_refused_total") == 1
    assert srv.metrics.get("authabuse_protocol_errors_total", (("reason", "request-timeout"),)) == 1


@pytest.mark.parametrize(
    ("answers", "status"), [(DovecotAnswers(), 0), (DovecotAnswers.fail_closed(), -1)]
)
def test_internal_error_fail_open_or_closed(
    server_thread: Any,
    decider: Any,
    caplog: pytest.LogCaptureFixture,
    answers: DovecotAnswers,
    status: int,
) -> None:
    srv = DovecotPolicyServer(decider, answers=answers)
    host, port = server_thread.start(srv)
    conn = _client(host, port, timeout=5)
    with caplog.at_level(logging.WARNING, logger="authabuse.servers"):
        code, reply = post(conn, "allow", body("boom@example.jp"))
    assert code == 200
    assert reply["status"] == status
    assert "decision failed" in caplog.text
    assert "decider exploded" in caplog.text
    assert post(conn, "allow", body("alice")) == (200, {"status": 0})
    assert srv.metrics.get("authabuse_internal_errors_total") == 1


def test_metrics_and_health_on_the_same_port(dovecot: Any) -> None:
    _, (host, port) = dovecot
    conn = _client(host, port, timeout=5)
    post(conn, "allow", body("alice"))
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    assert resp.status == 200
    assert 'authabuse_request_duration_seconds_count{server="dovecot"} 1' in text
    conn.request("GET", "/nope")
    assert conn.getresponse().status == 404


def test_answers_are_validated() -> None:
    with pytest.raises(ConfigurationError):
        DovecotAnswers(suspicious=10_000)
    with pytest.raises(ConfigurationError):
        DovecotAnswers(message="two\nlines")
    with pytest.raises(ConfigurationError):
        DovecotPolicyServer(object(), api_header="Bad:\nvalue")  # type: ignore[arg-type]


def test_allow_verdict_reused_within_one_login(dovecot: Any, decider: Any) -> None:
    srv, addr = dovecot
    conn = _client(*addr)
    post(conn, "allow", body("alice", "192.0.2.30"))  # before the passdb
    post(conn, "allow", body("alice", "192.0.2.30"))  # after it: same question
    assert decider.checked == 1
    assert srv.metrics.get("authabuse_verdicts_reused_total") == 1
    post(conn, "report", body("alice", "192.0.2.30", success=True))
    post(conn, "allow", body("alice", "192.0.2.30"))  # the next login is judged afresh
    post(conn, "allow", body("alice", "192.0.2.31"))  # and so is another address
    assert decider.checked == 3
