"""Policy servers against hostile clients, over real loopback sockets."""

from __future__ import annotations

import http.client
import json
import logging
import socket
from typing import Any

import pytest

from authabuse.servers import DovecotPolicyServer, PostfixAnswers, PostfixPolicyServer

EVIL = "evil@example.jp\n2026-11-28 10:00:00 WARNING forged: all clear\x1b[2J\u202e"


def _ask(host: str, port: int, command: str, login: str, remote: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        fields = {"login": login, "remote": remote, "protocol": "imap", "success": True}
        body = json.dumps(fields)
        conn.request("POST", f"/?command={command}", body, {"Content-Type": "application/json"})
        reply = conn.getresponse()
        assert reply.status == 200
        answer: dict[str, Any] = json.loads(reply.read())
        return answer
    finally:
        conn.close()


def test_dovecot_abuse_log_line_cannot_be_forged_by_the_login(
    server_thread: Any, decider: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The login reaches Dovecot's policy check before authentication: the client
    # chose it. It was logged raw, so a newline forged a log line.
    host, port = server_thread.start(DovecotPolicyServer(decider))
    with caplog.at_level(logging.WARNING, logger="authabuse.servers"):
        for i in range(1, 4):  # three logins recorded from three addresses ...
            _ask(host, port, "report", EVIL, f"192.0.2.{i}")
        answer = _ask(host, port, "allow", EVIL, "192.0.2.4")  # ... a fourth is abuse
    assert answer["status"] == -1
    lines = [r.getMessage() for r in caplog.records if "abuse" in r.getMessage()]
    assert lines
    for line in lines:
        assert "\n" not in line
        assert "\x1b" not in line
        assert "\u202e" not in line
        assert "login='evil@example.jp\\n2026-11-28 10:00:00 WARNING forged" in line


def test_postfix_abuse_log_line_cannot_be_forged(
    server_thread: Any, decider: Any, net: Any, caplog: pytest.LogCaptureFixture
) -> None:
    srv = PostfixPolicyServer(decider, answers=PostfixAnswers(abuse="REJECT blocked"))
    host, port = server_thread.start(srv)
    # Control bytes close the connection (binary), but UTF-8 may carry a line separator
    # and a bidi override that some log viewers honour.
    account = "bob\u2028WARNING forged\u202e@example.jp"
    with (
        caplog.at_level(logging.WARNING, logger="authabuse.servers"),
        socket.create_connection((host, port), timeout=5) as sock,
    ):
        for i in range(1, 5):
            sock.sendall(
                (
                    "request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\n"
                    f"client_address=192.0.2.{i}\nsasl_username={account}\n"
                    f"instance=i{i}\nrecipient_count=1\nsize=10\n\n"
                ).encode()
            )
            reply = net.recv_until(sock, b"\n\n")
    assert reply == b"action=REJECT blocked\n\n"
    lines = [r.getMessage() for r in caplog.records if "abuse" in r.getMessage()]
    assert lines
    for line in lines:
        assert "\u2028" not in line
        assert "\u202e" not in line
        assert "account='bob\\u2028WARNING forged\\u202e@example.jp'" in line
