"""``authabuse serve`` as operators run it: a separate process, real sockets, signals."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import RedisProcess  # tests/servers/conftest.py (fixtures, not importable)

# Public ranges placed by our own CSV tables (the table is authoritative for them).
COUNTRIES = ["JP", "BR", "NG", "VN", "US", "RU", "IN"]
REJECT = "REJECT 5.7.1 account blocked"


@pytest.fixture
def geo_files(tmp_path: Path) -> list[str]:
    country = tmp_path / "country.csv"
    asn = tmp_path / "asn.csv"
    country.write_text(
        "".join(f"11.{i}.0.0,11.{i}.255.255,{cc}\n" for i, cc in enumerate(COUNTRIES))
    )
    asn.write_text(
        "".join(
            f"11.{i}.0.0,11.{i}.255.255,{64500 + i},Example Net {i}\n"
            for i in range(len(COUNTRIES))
        )
    )
    return ["--geo", str(country), "--geo", str(asn)]


class Served:
    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "authabuse", "serve", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._queue: queue.Queue[str | None] = queue.Queue()
        try:
            self.addr = self._wait_for(r"listening on (\S+)")
            self.metrics = self._wait_for(r"metrics on (\S+)") if "--metrics" in args else None
        except BaseException:
            self.proc.kill()  # never leave a server behind
            self.proc.communicate(timeout=30)
            raise

    def _wait_for(self, pattern: str) -> tuple[str, int]:
        assert self.proc.stderr is not None
        end = time.monotonic() + 60
        while time.monotonic() < end:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("server exited:\n" + "".join(self.lines))
            self.lines.append(line)
            m = re.search(pattern, line)
            if m and m.group(1).startswith("unix:"):
                return m.group(1), -1
            if m:
                host, _, port = m.group(1).rpartition(":")
                return host, int(port)
        raise RuntimeError("server did not start")

    def wait_log(self, pattern: str) -> str:
        """Read the server's log until a line matches ``pattern``; return that line.

        A thread reads the log from here on, so a line that never comes fails the test
        after 60 s instead of blocking it.
        """
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_log, daemon=True)
            self._reader.start()
        end = time.monotonic() + 60
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                msg = f"no log line matched {pattern!r}:\n" + "".join(self.lines)
                raise RuntimeError(msg) from None
            if line is None:
                raise RuntimeError("server exited:\n" + "".join(self.lines))
            if re.search(pattern, line):
                return line

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        if self._reader is not None:  # the thread reads the log to its end
            self.proc.wait(timeout=60)
            self._reader.join(timeout=60)
            assert self.proc.stderr is not None
            self.proc.stderr.close()
            return self.proc.returncode, "".join(self.lines)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, "".join(self.lines) + err


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate(timeout=30)


def test_postfix_server_state_survives_kill_9(
    tmp_path: Path, geo_files: list[str], served: list[Served], net: Any
) -> None:
    state = tmp_path / "state.authabuse"
    args = [
        "postfix",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--abuse-action",
        REJECT,
        "--state",
        str(state),
        "--snapshot-interval",
        "0.3",
        *geo_files,
    ]
    first = Served(args)
    served.append(first)
    with socket.create_connection(first.addr) as s:
        for n in range(3):
            assert net.policy_message(s, "alice@example.jp", "11.0.0.5", n) == ["DUNNO", "DUNNO"]
        # The stolen password in use from new networks in ever more countries.
        actions = [
            net.policy_message(s, "mallory@example.jp", f"11.{i}.0.9", 10 + i) for i in range(1, 6)
        ]
    assert actions[:3] == [["DUNNO", "DUNNO"]] * 3
    assert actions[3:] == [[REJECT, REJECT]] * 2
    assert first.metrics is not None
    scraper = http.client.HTTPConnection(*first.metrics, timeout=10)
    scraper.request("GET", "/metrics")
    text = scraper.getresponse().read().decode()
    scraper.close()
    assert 'authabuse_decisions_total{server="postfix",level="abuse",action="REJECT"} 4' in text
    assert re.search(r'authabuse_detector_accounts\{server="postfix"\} 2\b', text)
    # Wait for a snapshot that holds mallory's last message, then kill -9.
    time.sleep(1.0)
    assert state.exists()
    first.proc.kill()
    first.proc.communicate(timeout=30)
    second = Served(args)
    served.append(second)
    assert any("state loaded" in line for line in second.lines)
    with socket.create_connection(second.addr) as s:
        assert net.policy_message(s, "mallory@example.jp", "11.6.0.9", 20) == [REJECT, REJECT]
        assert net.policy_message(s, "alice@example.jp", "11.0.0.5", 21) == ["DUNNO", "DUNNO"]
    code, log = second.stop()
    assert code == 0
    assert "state saved" in log


def _children(pid: int) -> list[str]:
    """States (R, S, Z, ...) of the child processes of ``pid``."""
    states = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            states.append(fields[0])
    return states


def test_dovecot_server_with_api_key_file(tmp_path: Path, served: list[Served]) -> None:
    key = tmp_path / "api-header"
    key.write_text("X-API-Key: s3cret\n")
    key.chmod(0o600)
    state = tmp_path / "dovecot.state"
    srv = Served(
        [
            "dovecot",
            "--listen",
            "127.0.0.1:0",
            "--api-header-file",
            str(key),
            "--state",
            str(state),
            "--snapshot-interval",
            "0.1",
        ]
    )
    served.append(srv)
    conn = http.client.HTTPConnection(*srv.addr, timeout=10)
    body = json.dumps({"login": "alice@example.jp", "remote": "198.51.100.7", "protocol": "imap"})
    conn.request("POST", "/?command=allow", body=body, headers={"X-API-Key": "s3cret"})
    resp = conn.getresponse()
    assert (resp.status, json.loads(resp.read())) == (200, {"status": 0})
    conn.request("POST", "/?command=allow", body=body)
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 401
    conn.request("GET", "/health")
    assert conn.getresponse().read() == b"ok\n"
    conn.close()
    # Snapshots are written by forked children, which are reaped: at most the one in
    # flight is around, and the state file appears.
    time.sleep(1.0)
    assert state.exists()
    assert _children(srv.proc.pid).count("Z") <= 1
    code, _ = srv.stop(signal.SIGINT)
    assert code == 0


def test_bad_options_exit_2() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "authabuse",
            "serve",
            "postfix",
            "--listen",
            "127.0.0.1:0",
            "--abuse-action",
            "FROB now",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "does not start with a Postfix access(5) action" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "authabuse", "serve", "dovecot", "--listen", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "HOST:PORT" in out.stderr


def test_unix_socket_listener(tmp_path: Path, served: list[Served], net: Any) -> None:
    path = tmp_path / "policy.sock"
    srv = Served(["postfix", "--listen", f"unix:{path}"])
    served.append(srv)
    assert oct(os.stat(path).st_mode & 0o777) == "0o666"
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        assert net.policy_message(s, "alice@example.jp", "198.51.100.7", 1) == ["DUNNO", "DUNNO"]
    code, _ = srv.stop()
    assert code == 0


def _scrape(addr: tuple[str, int]) -> str:
    scraper = http.client.HTTPConnection(*addr, timeout=10)
    scraper.request("GET", "/metrics")
    text = scraper.getresponse().read().decode()
    scraper.close()
    return text


def test_postfix_servers_share_state_in_redis_and_survive_kill_9(
    geo_files: list[str],
    served: list[Served],
    redis_process: Callable[..., RedisProcess],
    net: Any,
) -> None:
    """Two servers on one real redis-server; kill -9 of one; it restarts from Redis."""
    pytest.importorskip("redis", reason="the 'redis' extra is not installed")
    redis_server = redis_process()
    args = [
        "postfix",
        "--listen",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--abuse-action",
        REJECT,
        "--store",
        redis_server.url,
        "--store-timeout",
        "5",
        *geo_files,
    ]
    first, second = Served(args), Served(args)
    served += [first, second]
    assert any("shared in Redis" in line for line in first.lines)
    with (
        socket.create_connection(first.addr) as s1,
        socket.create_connection(second.addr) as s2,
    ):
        for n in range(3):
            assert net.policy_message(s1, "alice@example.jp", "11.0.0.5", n) == ["DUNNO", "DUNNO"]
        # The stolen password in use from ever more countries, through both servers in
        # turn: each server sees the other's messages.
        actions = [
            net.policy_message(s1 if i % 2 else s2, "mallory@example.jp", f"11.{i}.0.9", 10 + i)
            for i in range(1, 6)
        ]
    assert actions[:3] == [["DUNNO", "DUNNO"]] * 3
    assert actions[3:] == [[REJECT, REJECT]] * 2  # as on one server (see the snapshot test)
    assert first.metrics is not None
    text = _scrape(first.metrics)
    assert re.search(r'authabuse_store_degraded\{server="postfix"\} 0\b', text)
    assert re.search(r'authabuse_store_memory_bytes\{server="postfix"\} [1-9]', text)
    assert "authabuse_detector_accounts" not in text  # Redis keeps them, not this process
    first.proc.kill()  # kill -9: nothing saved by the process itself
    first.proc.communicate(timeout=30)
    third = Served(args)
    served.append(third)
    with socket.create_connection(third.addr) as s:
        assert net.policy_message(s, "mallory@example.jp", "11.6.0.9", 20) == [REJECT, REJECT]
        assert net.policy_message(s, "alice@example.jp", "11.0.0.5", 21) == ["DUNNO", "DUNNO"]
    for srv in (second, third):
        code, _ = srv.stop()
        assert code == 0


def test_postfix_server_keeps_answering_while_redis_is_down(
    geo_files: list[str],
    served: list[Served],
    redis_process: Callable[..., RedisProcess],
    net: Any,
) -> None:
    pytest.importorskip("redis", reason="the 'redis' extra is not installed")
    redis_server = redis_process()
    srv = Served(
        [
            "postfix",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--store",
            redis_server.url,
            "--store-timeout",
            "5",
            *geo_files,
        ]
    )
    served.append(srv)
    assert srv.metrics is not None
    with socket.create_connection(srv.addr) as s:
        assert net.policy_message(s, "alice@example.jp", "11.0.0.5", 1) == ["DUNNO", "DUNNO"]
        redis_server.kill()
        assert net.policy_message(s, "alice@example.jp", "11.0.0.5", 2) == ["DUNNO", "DUNNO"]
        text = _scrape(srv.metrics)
        assert re.search(r'authabuse_store_degraded\{server="postfix"\} 1\b', text)
        assert re.search(r'authabuse_store_fallbacks\{server="postfix"\} 1\b', text)
        redis_server.start()
        time.sleep(5.5)  # the store retries every 5 s ...
        deadline = time.monotonic() + 60  # ... on a busy machine, give it a few tries
        n = 3
        while True:
            assert net.policy_message(s, "alice@example.jp", "11.0.0.5", n) == ["DUNNO", "DUNNO"]
            text = _scrape(srv.metrics)
            if re.search(r'authabuse_store_degraded\{server="postfix"\} 0\b', text):
                break
            assert time.monotonic() < deadline, text
            n += 1
            time.sleep(1.0)
    code, log = srv.stop()
    assert code == 0
    assert "unreachable" in log
    assert "reachable again" in log


def test_dovecot_server_on_redis(
    served: list[Served], redis_process: Callable[..., RedisProcess]
) -> None:
    redis = pytest.importorskip("redis", reason="the 'redis' extra is not installed")
    redis_server = redis_process()
    args = ["dovecot", "--listen", "127.0.0.1:0", "--store", redis_server.url]
    args += ["--store-timeout", "5"]
    srv = Served(args)
    served.append(srv)
    conn = http.client.HTTPConnection(*srv.addr, timeout=10)
    for command in ("allow", "report"):
        body: dict[str, object] = {
            "login": "alice@example.jp",
            "remote": "198.51.100.7",
            "protocol": "imap",
        }
        if command == "report":
            body |= {"success": True, "policy_reject": False}
        conn.request("POST", f"/?command={command}", body=json.dumps(body))
        resp = conn.getresponse()
        assert (resp.status, json.loads(resp.read())) == (200, {"status": 0})
    conn.close()
    code, _ = srv.stop()
    assert code == 0
    r = redis.Redis.from_url(redis_server.url)
    try:
        assert r.exists("authabuse:{alice@example.jp}:rec:r:0")  # the report was recorded
    finally:
        r.close()


def test_state_file_and_redis_store_exclude_each_other(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "authabuse",
            "serve",
            "postfix",
            "--listen",
            "127.0.0.1:0",
            "--store",
            "redis://127.0.0.1:1/0",
            "--state",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "exclude each other" in out.stderr


def test_sighup_reloads_rules_and_keeps_what_the_server_learned(
    tmp_path: Path, geo_files: list[str], served: list[Served], net: Any
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "never"\nwhen = "ips_1h > 1000"\nscore = 100\n')
    args = ["postfix", "--listen", "127.0.0.1:0", "--abuse-action", REJECT]
    server = Served([*args, "--rules", str(rules), *geo_files])
    served.append(server)
    with socket.create_connection(server.addr) as s:
        for n in range(3):
            assert (
                net.policy_message(s, "mallory@example.jp", f"11.1.0.{n + 1}", n) == ["DUNNO"] * 2
            )
        rules.write_text('[[rule]]\nname = "three-ips"\nwhen = "ips_1h >= 3"\nscore = 100\n')
        server.proc.send_signal(signal.SIGHUP)
        server.wait_log(r"reloaded 1 rules from \S+, geo data from \S+")
        # the three addresses seen before count: the fourth is judged abuse at once
        assert net.policy_message(s, "mallory@example.jp", "11.1.0.4", 4) == [REJECT, REJECT]
        assert net.policy_message(s, "alice@example.jp", "11.0.0.4", 5) == ["DUNNO"] * 2
        # a broken file is refused with its line; the running rules stay
        rules.write_text('[[rule]]\nname = "x"\nwhen = "ips_1h >>> 3"\nscore = 1\n')
        server.proc.send_signal(signal.SIGHUP)
        server.wait_log(r"reload refused, the running rules and geo data stay: .*rules.toml:\d+")
        assert net.policy_message(s, "mallory@example.jp", "11.1.0.5", 6) == [REJECT, REJECT]
        # geo data that cannot be read is refused the same way
        rules.write_text('[[rule]]\nname = "three-ips"\nwhen = "ips_1h >= 3"\nscore = 100\n')
        Path(geo_files[3]).write_text("not,a,table\n")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_log(r"reload refused, the running rules and geo data stay: .*asn.csv")
        assert net.policy_message(s, "alice@example.jp", "11.0.0.4", 7) == ["DUNNO"] * 2
    code, log = server.stop()
    assert code == 0
    assert "Traceback" not in log
