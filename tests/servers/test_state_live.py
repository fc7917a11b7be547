"""``--control`` of a running ``authabuse serve postfix`` and ``authabuse watch``.

Real processes: a state file written by ``authabuse scan --state`` over a Postfix log,
a policy server answering real policy requests on loopback (or a watcher following a
real log file), its control socket, and ``authabuse state ... --control`` talking to
it. An account marked benign while the process runs is not flagged again for the same
pattern; one that was not marked still is; the state saved at shutdown keeps it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import RedisProcess  # tests/servers/conftest.py (fixtures, not importable)

COUNTRIES = ["JP", "BR", "NG", "VN", "US", "RU", "IN"]
REJECT = "REJECT 5.7.1 account blocked"
DEFER = "DEFER_IF_PERMIT 4.7.1 account under review"
ALICE, BOB = "alice@example.jp", "bob@example.jp"


@pytest.fixture
def geo(tmp_path: Path) -> list[str]:
    """11.i.0.0/16 in a country (COUNTRIES[i]) and an ASN (64500 + i) of its own."""
    country = tmp_path / "country.csv"
    asn = tmp_path / "asn.csv"
    country.write_text(
        "".join(f"11.{i}.0.0,11.{i}.255.255,{cc}\n" for i, cc in enumerate(COUNTRIES))
    )
    asn.write_text(
        "".join(f"11.{i}.0.0,11.{i}.255.255,{64500 + i},Net {i}\n" for i in range(len(COUNTRIES)))
    )
    return ["--geo", str(country), "--geo", str(asn)]


def postfix_lines(t: datetime, n: int, ip: str, user: str) -> list[str]:
    """One submitted message as Postfix logs it (smtpd, qmgr, smtp, qmgr removed)."""

    def ts(dt: datetime) -> str:
        return dt.isoformat(timespec="microseconds")

    q = f"{0xA0000 + n:X}"
    return [
        f"{ts(t)} mx1 postfix/submission/smtpd[100]: {q}: client=unknown[{ip}], "
        f"sasl_method=PLAIN, sasl_username={user}",
        f"{ts(t + timedelta(seconds=0.1))} mx1 postfix/qmgr[200]: {q}: from=<{user}>, "
        "size=900, nrcpt=1 (queue active)",
        f"{ts(t + timedelta(seconds=0.5))} mx1 postfix/smtp[300]: {q}: "
        f"to=<friend{n % 3}@example.org>, relay=mx.example.org[192.0.2.25]:25, delay=0.5, "
        "delays=0.1/0/0.2/0.2, dsn=2.0.0, status=sent (250 OK)",
        f"{ts(t + timedelta(seconds=0.6))} mx1 postfix/qmgr[200]: {q}: removed",
    ]


def home_days(start: datetime, days: int) -> list[str]:
    """``days`` days of both accounts at home (11.0/16, JP), three messages a day."""
    out: list[str] = []
    n = 0
    for day in range(days):
        for h in (8, 12, 19):
            for user in (ALICE, BOB):
                n += 1
                ip = f"11.0.{day}.{h % 2 + 5}"
                out += postfix_lines(start + timedelta(days=day, hours=h), n, ip, user)
    return out


def trip_ip(user: str, i: int) -> str:
    """The i-th foreign address of the stolen password's use (each account its own)."""
    return f"11.{i}.0.{ {ALICE: 9, BOB: 10}.get(user, 11) }"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authabuse", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Proc:
    """A running ``authabuse`` command whose stderr and stdout are read by threads."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "authabuse", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.err: list[str] = []
        self.out: queue.Queue[str | None] = queue.Queue()
        self._errq: queue.Queue[str | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._errq), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: Any, q: queue.Queue[str | None]) -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    def wait_err(self, pattern: str) -> re.Match[str]:
        end = time.monotonic() + 60
        while True:
            try:
                line = self._errq.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} in:\n" + "".join(self.err)) from None
            if line is None:
                raise AssertionError("exited:\n" + "".join(self.err))
            self.err.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    def next_out(self, timeout: float = 60) -> str:
        line = self.out.get(timeout=timeout)
        assert line is not None, "exited:\n" + "".join(self.err)
        return line

    def close(self) -> None:
        for t in self._threads:
            t.join(timeout=60)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.close()
        while True:
            try:
                line = self._errq.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.err.append(line)
        return code, "".join(self.err)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(timeout=30)
        p.close()


def policy_message(net: Any, sock: socket.socket, user: str, ip: str, n: int) -> list[str]:
    """One message through the policy service (``Net.policy_message``), to a friend."""
    actions: list[str] = net.policy_message(sock, user, ip, n, f"friend{n % 3}@example.org")
    return actions


def ask(path: Path, *lines: bytes) -> list[dict[str, Any]]:
    """Send raw command lines on one connection; return the decoded answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(b"".join(line + b"\n" for line in lines))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def hostile(path: Path) -> None:
    """What a confused or hostile local client may send; the process must answer on."""
    # a line far beyond the bound: an error, then the connection is closed
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        with contextlib.suppress(OSError):  # the server may close before reading it all
            s.sendall(b"show " + b"x" * 60_000)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    assert json.loads(data.splitlines()[0]) == {
        "ok": False,
        "error": "line too long (max 4096 bytes)",
    }
    # binary, NULs, an unknown command, an empty line, a command without its argument
    answers = ask(path, b"\xff\xfe\x00\x01garbage", b"rm -rf /", b"", b"benign", b"show \x00")
    assert [a["ok"] for a in answers] == [False, False, False, False, True]
    assert answers[0]["error"] == "the command is not UTF-8"
    assert answers[1]["error"].startswith("unknown command 'rm -rf /'")
    assert answers[3]["error"] == "usage: benign ACCOUNT"
    assert answers[4]["info"] is None
    # abrupt closes: mid-command, and before saying anything
    for payload in (b"benign ali", b""):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        s.sendall(payload)
        s.close()
    # more clients at once than served: the extra ones are told and closed
    crowd = []
    told = 0
    for _ in range(20):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(str(path))
        except (BlockingIOError, ConnectionRefusedError):  # the backlog is full: refused
            told += 1
            c.close()
            continue
        crowd.append(c)
    time.sleep(0.5)
    for c in crowd:
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            told += b"too many control clients" in c.recv(4096)
        c.close()
    assert told >= 4  # (20 - 16)
    # still answering
    pong = ask(path, b"ping")
    assert pong[0]["ok"] is True


def test_serve_postfix_control_marks_benign_live(
    tmp_path: Path, geo: list[str], procs: list[Proc], net: Any
) -> None:
    # Two days at home, written by Postfix and read by `authabuse scan --state`.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    log = tmp_path / "maillog"
    log.write_text("\n".join(home_days(today - timedelta(days=2), 2)) + "\n")
    state = tmp_path / "state"
    scanned = run("scan", *geo, "--state", str(state), str(log))
    assert scanned.returncode == 0, scanned.stderr  # nothing flagged at home
    control = tmp_path / "ctl"
    server = Proc(
        [
            "serve", "postfix", "--listen", "127.0.0.1:0", "--state", str(state),
            "--snapshot-interval", "0", "--control", str(control),
            "--abuse-action", REJECT, "--suspicious-action", DEFER, *geo,
        ]
    )  # fmt: skip
    procs.append(server)
    server.wait_err(r"control socket at")
    host, _, port = server.wait_err(r"listening on (\S+)").group(1).rpartition(":")
    assert stat.S_IMODE(os.stat(control).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(control).st_mode)
    # A second server on the same control socket is refused; the first stays.
    again = run("serve", "postfix", "--listen", "127.0.0.1:0", "--control", str(control))
    assert again.returncode == 2
    assert "is live: another process already listens on it" in again.stderr

    with socket.create_connection((host, int(port))) as s:
        for user in (ALICE, BOB):
            assert policy_message(net, s, user, "11.0.2.5", 1) == ["DUNNO", "DUNNO"]
        # Both passwords used from five new countries within minutes: flagged.
        trips = {
            user: [policy_message(net, s, user, trip_ip(user, i), 10 + i) for i in range(1, 6)]
            for user in (ALICE, BOB)
        }
        for user in (ALICE, BOB):
            assert trips[user][-1] in ([REJECT, REJECT], [DEFER, DEFER]), trips[user]
        shown = run("state", "show", "--control", str(control), "--flagged", "--json")
        assert shown.returncode == 0, shown.stderr
        flagged = {
            json.loads(line)["account"]: json.loads(line)
            for line in shown.stdout.split("\n")
            if line
        }
        assert set(flagged) == {ALICE, BOB}
        assert flagged[ALICE]["networks"] == ["AS64500"]
        # The operator confirms Alice's trip: marked benign in the running server.
        marked = run("state", "benign", "--control", str(control), ALICE)
        assert marked.returncode == 0, marked.stderr
        assert marked.stdout.startswith(f"{ALICE}: marked benign (was ")
        assert "learned AS64501,AS64502,AS64503,AS64504,AS64505" in marked.stdout
        assert marked.stderr == ""  # no snapshot warning: the change is in the server
        # The same pattern again: Alice passes, Bob (not marked) is still held.
        for i in (5, 3):
            assert policy_message(net, s, ALICE, trip_ip(ALICE, i), 20 + i) == ["DUNNO", "DUNNO"]
            assert policy_message(net, s, BOB, trip_ip(BOB, i), 30 + i) in (
                [REJECT, REJECT],
                [DEFER, DEFER],
            )
        now = run("state", "show", "--control", str(control), "--json", ALICE, BOB)
        infos = [json.loads(line) for line in now.stdout.splitlines()]
        assert [i["level"] for i in infos] == ["ok", flagged[BOB]["level"]]
        hostile(control)
        # the policy service answers on after all that
        assert policy_message(net, s, ALICE, "11.0.2.5", 40) == ["DUNNO", "DUNNO"]

    code, err = server.stop()
    assert code == 0, err
    assert "state saved" in err
    assert not control.exists()  # removed at exit
    # The state saved at shutdown holds it.
    after = run("state", "show", "--state", str(state), "--json", ALICE, BOB)
    alice, bob = (json.loads(line) for line in after.stdout.splitlines())
    assert alice["level"] == "ok"
    assert {"AS64501", "AS64502", "AS64503", "AS64504", "AS64505"} <= set(alice["networks"])
    assert bob["level"] != "ok"
    assert bob["networks"] == ["AS64500"]


def test_watch_control_marks_benign_live(tmp_path: Path, geo: list[str], procs: list[Proc]) -> None:
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    trip = t0 + timedelta(days=2, hours=21)
    lines = home_days(t0, 3)
    n = 100
    for i in range(1, 6):
        for user in (ALICE, BOB):
            n += 1
            lines += postfix_lines(trip + timedelta(minutes=2 * i), n, trip_ip(user, i), user)
    log = tmp_path / "maillog"
    log.write_text("\n".join(lines) + "\n")
    state = tmp_path / "state"
    control = tmp_path / "ctl"
    # a stale socket left by a killed watcher is replaced
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(control))
    stale.close()
    watcher = Proc(
        [
            "watch", "--format", "postfix", "--from-start", "--json", "--realert", "0",
            "--interval", "0.1", "--state", str(state), "--control", str(control),
            *geo, str(log),
        ]
    )  # fmt: skip
    procs.append(watcher)
    watcher.wait_err(r"following")
    alerted: set[str] = set()
    while alerted != {ALICE, BOB}:
        alerted.add(json.loads(watcher.next_out())["account"])
    assert stat.S_IMODE(os.stat(control).st_mode) == 0o600
    marked = run("state", "benign", "--control", str(control), "--json", ALICE)
    assert marked.returncode == 0, marked.stderr
    answer = json.loads(marked.stdout)
    assert answer["ok"] is True
    assert answer["before"]["level"] in ("suspicious", "abuse")
    assert answer["after"]["level"] == "ok"
    # The same pattern again, Alice's message first: only Bob's is alerted.
    later = trip + timedelta(minutes=15)
    with log.open("a") as fh:
        fh.write("\n".join(postfix_lines(later, 200, trip_ip(ALICE, 5), ALICE)) + "\n")
        fh.write(
            "\n".join(postfix_lines(later + timedelta(seconds=30), 201, trip_ip(BOB, 5), BOB))
            + "\n"
        )
    seen = []
    while True:  # alerts of the trip's last messages may still be in the pipe
        alert = json.loads(watcher.next_out())
        seen.append(alert)
        if alert["account"] == BOB and alert["time"].startswith("2024-05-03T21:15:30"):
            break
    assert [a for a in seen if a["account"] == ALICE and a["time"] >= "2024-05-03T21:15"] == []
    shown = run("state", "show", "--control", str(control), ALICE)
    assert shown.returncode == 0
    assert shown.stdout.startswith(f"{ALICE}: ok; ")
    hostile(control)
    code, err = watcher.stop()
    assert code == 0, err
    assert not control.exists()
    saved = run("state", "show", "--state", str(state), "--json", ALICE, BOB)
    alice, bob = (json.loads(line) for line in saved.stdout.splitlines())
    assert alice["level"] == "ok"
    assert "AS64505" in alice["networks"]
    assert bob["level"] in ("suspicious", "abuse")


def test_serve_on_redis_control_and_store_mark_benign_live(
    tmp_path: Path,
    geo: list[str],
    procs: list[Proc],
    redis_process: Callable[..., RedisProcess],
    net: Any,
) -> None:
    """With --store redis://, the control socket and `state --store` both act at once."""
    pytest.importorskip("redis", reason="the 'redis' extra is not installed")
    redis_server = redis_process()
    control = tmp_path / "ctl"
    server = Proc(
        [
            "serve", "postfix", "--listen", "127.0.0.1:0", "--store", redis_server.url,
            "--store-timeout", "5", "--control", str(control), "--abuse-action", REJECT,
            "--suspicious-action", DEFER, *geo,
        ]
    )  # fmt: skip
    procs.append(server)
    server.wait_err(r"control socket at")
    host, _, port = server.wait_err(r"listening on (\S+)").group(1).rpartition(":")
    users = (ALICE, BOB, "carol@example.jp")
    with socket.create_connection((host, int(port))) as s:
        for user in users:  # the password used from ever more countries at once
            actions = [policy_message(net, s, user, trip_ip(user, i), 10 + i) for i in range(1, 6)]
            assert actions[-1] in ([REJECT, REJECT], [DEFER, DEFER]), actions
        through_socket = run("state", "benign", "--control", str(control), ALICE)
        assert through_socket.returncode == 0, through_socket.stderr
        # the shared state directly: live as well, for every server on that Redis
        through_redis = run("state", "benign", "--store", redis_server.url, BOB)
        assert through_redis.returncode == 0, through_redis.stderr
        assert through_redis.stdout.startswith(f"{BOB}: marked benign (was ")
        for user in (ALICE, BOB):
            assert policy_message(net, s, user, trip_ip(user, 5), 20) == ["DUNNO", "DUNNO"]
        carol = policy_message(net, s, "carol@example.jp", trip_ip("carol@example.jp", 5), 21)
        assert carol in ([REJECT, REJECT], [DEFER, DEFER])
        shown = run("state", "show", "--control", str(control), "--flagged", "--json")
        assert [json.loads(x)["account"] for x in shown.stdout.splitlines()] == ["carol@example.jp"]
        hostile(control)
    code, err = server.stop()
    assert code == 0, err
    assert not control.exists()
