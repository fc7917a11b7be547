"""The Postfix policy delegation server over real sockets: protocol and failure modes."""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authabuse.errors import ConfigurationError
from authabuse.events import Submission
from authabuse.servers import Limits, PostfixAnswers, PostfixPolicyServer, parse_listen

REJECT = "REJECT 5.7.1 account blocked for abuse"


def request(
    state: str,
    *,
    user: str = "alice@example.jp",
    ip: str = "192.0.2.10",
    instance: str = "1a2b.5f0c.1",
    rcpt: str = "bob@example.org",
    count: int = 0,
    size: int = 0,
    queue_id: str = "",
) -> bytes:
    # The attribute set Postfix 3.7 sends (see SMTPD_POLICY_README), in its order.
    lines = [
        "request=smtpd_access_policy",
        f"protocol_state={state}",
        "protocol_name=ESMTP",
        "client_address=" + ip,
        "client_name=unknown",
        "client_port=51234",
        "reverse_client_name=unknown",
        "server_address=127.0.0.1",
        "server_port=10587",
        "helo_name=client.example",
        "sender=" + user,
        "recipient=" + rcpt,
        f"recipient_count={count}",
        "queue_id=" + queue_id,
        "instance=" + instance,
        f"size={size}",
        "etrn_domain=",
        "stress=",
        "sasl_method=PLAIN" if user else "sasl_method=",
        "sasl_username=" + user,
        "sasl_sender=",
        "ccert_subject=",
        "ccert_issuer=",
        "ccert_fingerprint=",
        "ccert_pubkey_fingerprint=",
        "encryption_protocol=",
        "encryption_cipher=",
        "encryption_keysize=0",
        "policy_context=",
        "compatibility_level=3.6",
        "mail_version=3.7.11",
    ]
    return ("\n".join(lines) + "\n\n").encode()


def ask(sock: socket.socket, payload: bytes, net: Any) -> bytes:
    sock.sendall(payload)
    return bytes(net.recv_until(sock, b"\n\n"))


@pytest.fixture
def policy(server_thread: Any, decider: Any) -> tuple[PostfixPolicyServer, tuple[str, int]]:
    srv = PostfixPolicyServer(decider, answers=PostfixAnswers(abuse=REJECT), server_name="mx1")
    addr = server_thread.start(srv)
    return srv, addr


def test_message_flow_records_once_at_end_of_message(policy: Any, decider: Any, net: Any) -> None:
    srv, addr = policy
    with socket.create_connection(addr) as s:
        for rcpt in ("a@example.org", "b@example.net", "c@example.com"):
            assert ask(s, request("RCPT", rcpt=rcpt), net) == b"action=DUNNO\n\n"
        assert ask(s, request("DATA", rcpt=""), net) == b"action=DUNNO\n\n"
        assert decider.recorded == []  # RCPT and DATA only check
        assert decider.checked == 1  # the first RCPT's verdict holds for the message
        reply = ask(s, request("END-OF-MESSAGE", rcpt="", count=3, size=1834, queue_id="4F2A"), net)
        assert reply == b"action=DUNNO\n\n"
        # The same end-of-data hook asked twice for one message records it once.
        ask(s, request("END-OF-MESSAGE", rcpt="", count=3, size=1834, queue_id="4F2A"), net)
    assert len(decider.recorded) == 1
    sub = decider.recorded[0]
    assert isinstance(sub, Submission)
    assert sub.account == "alice@example.jp"
    assert str(sub.ip) == "192.0.2.10"
    assert sub.recipient_count == 3  # the real count, not RCPT time's 0
    assert sub.recipients == ("a@example.org", "b@example.net", "c@example.com")
    assert sub.size == 1834
    assert sub.queue_id == "4F2A"
    assert sub.server == "mx1"
    assert sub.sender == "alice@example.jp"
    assert abs(sub.time.timestamp() - time.time()) < 5  # read from the clock at arrival
    assert sub.time.tzinfo is not None
    text = srv.metrics.render()
    assert 'authabuse_requests_total{server="postfix",state="RCPT"} 3' in text
    assert 'authabuse_requests_total{server="postfix",state="END-OF-MESSAGE"} 2' in text


def test_every_recipient_judged_when_asked(server_thread: Any, decider: Any, net: Any) -> None:
    srv = PostfixPolicyServer(decider, verdict_per_message=False)
    addr = server_thread.start(srv)
    with socket.create_connection(addr) as s:
        for rcpt in ("a@example.org", "b@example.net", "c@example.com"):
            assert ask(s, request("RCPT", rcpt=rcpt), net) == b"action=DUNNO\n\n"
        ask(s, request("DATA", rcpt=""), net)
    assert decider.checked == 4
    assert srv.metrics.get("authabuse_verdicts_reused_total") == 0


def test_abuse_action_once_the_account_crosses_the_line(policy: Any, net: Any) -> None:
    srv, addr = policy
    replies = []
    with socket.create_connection(addr) as s:
        for n in range(1, 6):
            ip, inst = f"198.51.100.{n}", f"inst{n}"
            replies.append(ask(s, request("RCPT", ip=ip, instance=inst), net))
            replies.append(ask(s, request("END-OF-MESSAGE", ip=ip, instance=inst, count=1), net))
    dunno, reject, hold = b"action=DUNNO\n\n", f"action={REJECT}\n\n".encode(), None
    assert hold is None
    # IPs 1, 2 fine (2 is "suspicious": DUNNO by default); the third IP is abuse at RCPT.
    assert replies[:4] == [dunno] * 4
    assert replies[4:] == [reject] * 6
    text = srv.metrics.render()
    assert 'authabuse_decisions_total{server="postfix",level="abuse",action="REJECT"} 6' in text
    assert 'level="suspicious",action="DUNNO"} 2' in text


def test_a_repeated_instance_does_not_mix_accounts(policy: Any, decider: Any, net: Any) -> None:
    # Postfix's instance is unique per message; a client repeating one for another
    # account had that account's message taken for a second end-of-data hook of the
    # first (judged, never recorded) and could be answered with the first's verdict.
    _, addr = policy
    with socket.create_connection(addr) as s:
        for user in ("alice@example.jp", "bob@example.jp"):
            ask(s, request("RCPT", user=user, instance="same"), net)
            ask(s, request("END-OF-MESSAGE", user=user, instance="same", count=1), net)
    accounts = [e.account for e in decider.recorded if isinstance(e, Submission)]
    assert accounts == ["alice@example.jp", "bob@example.jp"]


def test_unauthenticated_requests_get_dunno_without_state(
    policy: Any, decider: Any, net: Any
) -> None:
    _, addr = policy
    with socket.create_connection(addr) as s:
        for state in ("CONNECT", "RCPT", "DATA", "END-OF-MESSAGE"):
            assert ask(s, request(state, user=""), net) == b"action=DUNNO\n\n"
    assert decider.recorded == []
    assert decider.checked == 0


def test_pipelined_requests_in_one_write_and_crlf(policy: Any, net: Any) -> None:
    _, addr = policy
    with socket.create_connection(addr) as s:
        s.sendall(request("RCPT") + request("RCPT", rcpt="x@example.com") + request("DATA"))
        data = b""
        while data.count(b"\n\n") < 3:
            data += s.recv(4096)
        assert data == b"action=DUNNO\n\n" * 3
        s.sendall(request("RCPT").replace(b"\n", b"\r\n"))
        assert net.recv_until(s, b"\n\n") == b"action=DUNNO\n\n"


def test_malformed_request_closes_only_that_connection(policy: Any, net: Any) -> None:
    srv, addr = policy
    with socket.create_connection(addr) as good, socket.create_connection(addr) as bad:
        assert ask(good, request("RCPT"), net) == b"action=DUNNO\n\n"
        bad.sendall(b"GET / HTTP/1.0\nHost: x\n\n")
        assert net.is_closed(bad)
        assert ask(good, request("RCPT"), net) == b"action=DUNNO\n\n"
    assert srv.metrics.get("authabuse_protocol_errors_total", (("reason", "malformed"),)) == 1


def test_binary_request_closes_the_connection(policy: Any, net: Any) -> None:
    srv, addr = policy
    with socket.create_connection(addr) as bad:
        bad.sendall(b"request=smtpd_access_policy\nsasl_username=a\x00b\n\n")
        assert net.is_closed(bad)
    with socket.create_connection(addr) as good:
        assert ask(good, request("RCPT"), net) == b"action=DUNNO\n\n"
    assert srv.metrics.get("authabuse_protocol_errors_total", (("reason", "binary"),)) == 1


def test_invalid_utf8_is_counted_and_answered(policy: Any, decider: Any, net: Any) -> None:
    srv, addr = policy
    with socket.create_connection(addr) as s:
        payload = request("RCPT", user="caf\xe9@example.jp").replace(
            "café".encode(), b"caf\xe9"
        )  # Latin-1 bytes, not UTF-8
        assert ask(s, payload, net) == b"action=DUNNO\n\n"
    assert srv.metrics.get("authabuse_protocol_errors_total", (("reason", "non-utf8"),)) == 1
    assert decider.checked == 1


def test_oversized_request_closes_the_connection(
    server_thread: Any, decider: Any, net: Any
) -> None:
    srv = PostfixPolicyServer(decider, limits=Limits(max_request_bytes=4096))
    addr = server_thread.start(srv)
    with socket.create_connection(addr) as bad:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            bad.sendall(b"request=smtpd_access_policy\nhelo_name=" + b"x" * 100_000)
        assert net.is_closed(bad)
    with socket.create_connection(addr) as bad:  # a long request that does end
        bad.sendall(request("RCPT", rcpt="r" * 5000 + "@example.org"))
        assert net.is_closed(bad)
    with socket.create_connection(addr) as good:
        assert ask(good, request("RCPT"), net) == b"action=DUNNO\n\n"
    assert srv.metrics.get("authabuse_protocol_errors_total", (("reason", "oversized"),)) == 2


def test_slow_client_is_cut_off_idle_client_is_not(
    server_thread: Any, decider: Any, net: Any
) -> None:
    srv = PostfixPolicyServer(decider, limits=Limits(request_timeout=0.3, idle_timeout=30))
    addr = server_thread.start(srv)
    with socket.create_connection(addr) as slow, socket.create_connection(addr) as idle:
        assert ask(idle, request("RCPT"), net) == b"action=DUNNO\n\n"
        slow.sendall(request("RCPT")[:50])  # half a request, then silence
        assert net.is_closed(slow, timeout=5)
        time.sleep(0.5)  # idle between requests is fine
        assert ask(idle, request("RCPT"), net) == b"action=DUNNO\n\n"
    assert srv.metrics.get("authabuse_protocol_errors_total", (("reason", "request-timeout"),)) == 1


def test_idle_timeout_closes_quiet_connections(server_thread: Any, decider: Any, net: Any) -> None:
    srv = PostfixPolicyServer(decider, limits=Limits(request_timeout=0.2, idle_timeout=0.3))
    addr = server_thread.start(srv)
    with socket.create_connection(addr) as s:
        assert ask(s, request("RCPT"), net) == b"action=DUNNO\n\n"
        assert net.is_closed(s, timeout=5)


def test_connection_limit_closes_the_extra_connection(
    server_thread: Any, decider: Any, net: Any
) -> None:
    srv = PostfixPolicyServer(decider, limits=Limits(max_connections=2))
    addr = server_thread.start(srv)
    with socket.create_connection(addr) as a, socket.create_connection(addr) as b:
        assert ask(a, request("RCPT"), net) == b"action=DUNNO\n\n"
        assert ask(b, request("RCPT"), net) == b"action=DUNNO\n\n"
        with socket.create_connection(addr) as c:
            assert net.is_closed(c)
        assert ask(a, request("RCPT"), net) == b"action=DUNNO\n\n"
    assert srv.metrics.get("authabuse_connections_refused_total") == 1
    # Once the two are gone, new connections are served again.
    assert net.wait_for(lambda: len(srv._connections) == 0)
    with socket.create_connection(addr) as d:
        assert ask(d, request("RCPT"), net) == b"action=DUNNO\n\n"


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (PostfixAnswers(), b"action=DUNNO\n\n"),
        (
            PostfixAnswers.fail_closed(),
            b"action=DEFER_IF_PERMIT 4.3.0 policy service unavailable, try again later\n\n",
        ),
    ],
)
def test_internal_error_answers_the_fail_action_and_logs(
    server_thread: Any,
    decider: Any,
    net: Any,
    caplog: pytest.LogCaptureFixture,
    answers: PostfixAnswers,
    expected: bytes,
) -> None:
    srv = PostfixPolicyServer(decider, answers=answers)
    addr = server_thread.start(srv)
    with caplog.at_level(logging.WARNING, logger="authabuse.servers"):
        with socket.create_connection(addr) as s:
            assert ask(s, request("RCPT", user="boom@example.jp"), net) == expected
            assert ask(s, request("RCPT"), net) == b"action=DUNNO\n\n"  # still serving
        assert net.wait_for(lambda: "decision failed" in caplog.text)
    assert "RuntimeError: decider exploded" in caplog.text
    assert srv.metrics.get("authabuse_internal_errors_total") == 1


def test_invalid_values_answer_the_fail_action(policy: Any, net: Any) -> None:
    srv, addr = policy
    with socket.create_connection(addr) as s:
        assert ask(s, request("RCPT", ip="not-an-ip"), net) == b"action=DUNNO\n\n"
        bad_count = request("END-OF-MESSAGE", count=0).replace(
            b"recipient_count=0", b"recipient_count=-4"
        )
        assert ask(s, bad_count, net) == b"action=DUNNO\n\n"
        assert ask(s, request("RCPT"), net) == b"action=DUNNO\n\n"
    assert srv.metrics.get("authabuse_protocol_errors_total", (("reason", "invalid-value"),)) == 2


def test_unix_socket_listener(server_thread: Any, decider: Any, net: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "policy.sock")
    srv = PostfixPolicyServer(decider)
    server_thread.start(srv, f"unix:{path}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        assert ask(s, request("RCPT"), net) == b"action=DUNNO\n\n"


def test_metrics_listener(server_thread: Any, decider: Any, net: Any) -> None:
    from authabuse.servers import serve_metrics
    from authabuse.servers._http import HttpConnection

    srv = PostfixPolicyServer(decider)
    addr = server_thread.start(srv)
    maddr = server_thread.call(
        srv.add_listener("127.0.0.1:0", lambda: HttpConnection(srv, serve_metrics(srv), 0))
    )
    with socket.create_connection(addr) as s:
        ask(s, request("RCPT"), net)
    scraper = http.client.HTTPConnection(maddr[0], maddr[1], timeout=5)
    scraper.request("GET", "/metrics")
    resp = scraper.getresponse()
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = resp.read().decode()
    assert 'authabuse_requests_total{server="postfix",state="RCPT"} 1' in text
    assert 'authabuse_request_duration_seconds_count{server="postfix"} 1' in text
    assert "authabuse_process_resident_memory_bytes" in text
    assert "authabuse_connections_open" in text
    for line in text.splitlines():  # every sample line is "name{labels} number"
        if not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            float(value)
            assert name_labels.startswith("authabuse_")
    scraper.request("GET", "/health")
    assert scraper.getresponse().read() == b"ok\n"
    scraper.close()


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        PostfixAnswers(abuse="REJECT bad\nline")
    with pytest.raises(ConfigurationError):
        parse_listen("localhost")
    with pytest.raises(ConfigurationError):
        parse_listen("127.0.0.1:99999")
    assert PostfixAnswers(abuse="550 5.7.1 no").abuse == "550 5.7.1 no"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.binary(max_size=400), text=st.text(max_size=200))
def test_arbitrary_input_never_crashes_the_protocol_step(junk: bytes, text: str, net: Any) -> None:
    srv = PostfixPolicyServer(net.DistinctIPDecider())
    for raw in (junk, text.encode("utf-8", "surrogatepass"), b"sasl_username=u\n" + junk):
        reply = srv.answer(raw)
        assert reply is None or (
            isinstance(reply, bytes) and reply.startswith(b"action=") and reply.endswith(b"\n\n")
        )
    assert srv.answer(request("RCPT")[:-2]) == b"action=DUNNO\n\n"


def test_garbage_streams_leave_the_server_serving(policy: Any, net: Any) -> None:
    import random

    _, addr = policy
    rng = random.Random(7)  # noqa: S311 - reproducible junk, not crypto
    for _ in range(20):
        with socket.create_connection(addr) as s:
            with contextlib.suppress(OSError):
                s.sendall(rng.randbytes(rng.randrange(1, 3000)) + b"\n\n")
            s.settimeout(5)
            with contextlib.suppress(OSError):
                s.recv(100)
    with socket.create_connection(addr) as good:
        assert ask(good, request("RCPT"), net) == b"action=DUNNO\n\n"
