"""The ${readsocket} request in docs/exim.md, as Exim sends it, against the real service."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "exim.md"


def _templates() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"\{(request=smtpd_access_policy.*?\\n\\n)\}", text, re.S)
    assert len(found) == 2, "docs/exim.md must hold the RCPT and the DATA request"
    # Exim: a backslash at the end of a line joins it with the next (leading space kept
    # out), and \n in the expansion is a newline.
    return [re.sub(r"\\\n\s*", "", t).replace("\\n", "\n") for t in found]


def _expand(template: str, values: dict[str, str]) -> str:
    out = template
    for name in sorted(values, key=len, reverse=True):
        out = out.replace("$" + name, values[name])
    assert "$" not in out, out
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "authabuse", "serve", "postfix", "--listen", f"127.0.0.1:{port}",
         "--abuse-action", "REJECT 5.7.1 account suspended"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "service did not start"
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()


def _readsocket(port: int, request: str) -> str:
    # Exim's readsocket: connect, write the request, shut down the write side, read to EOF.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request.encode())
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode().strip()


def test_exim_readsocket_request_gets_dunno_then_the_abuse_action(service: int) -> None:
    rcpt, data = _templates()
    assert "protocol_state=RCPT" in rcpt
    assert "protocol_state=END-OF-MESSAGE" in data
    base = {
        "sender_host_authenticated": "dovecot_plain",
        "authenticated_id": "hanako@example.jp",
        "sender_address": "hanako@example.jp",
        "local_part": "friend",
        "domain": "example.net",
        "recipients_count": "3",
        "message_size": "2048",
    }

    def message(values: dict[str, str], n: int) -> tuple[str, str]:
        """What the two ACLs ask for one message: the RCPT answer and the DATA answer."""
        values = {**values, "message_exim_id": f"1tAbCd-000{n:03d}-XY"}
        return _readsocket(service, _expand(rcpt, values)), _readsocket(
            service, _expand(data, values)
        )

    first = message({**base, "sender_host_address": "202.232.2.1"}, 0)
    assert first == ("action=DUNNO", "action=DUNNO")
    # a botnet: the same account from many networks in many countries within minutes
    bots = ["212.77.98.9", "181.30.1.1", "103.21.244.1", "41.0.0.1", "14.139.1.1",
            "5.2.2.2", "85.1.1.1", "200.1.1.1", "91.1.1.1", "177.1.1.1"]  # fmt: skip
    answers = [message({**base, "sender_host_address": ip}, n) for n, ip in enumerate(bots, 1)]
    assert answers[-1] == ("action=REJECT 5.7.1 account suspended",) * 2, answers
    # another account is not affected
    other = {**base, "authenticated_id": "taro@example.jp", "sender_host_address": "202.232.2.1"}
    assert message(other, 99) == ("action=DUNNO", "action=DUNNO")
