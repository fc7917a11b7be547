"""``authabuse watch`` as an operator runs it: a process following files that grow."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from authabuse.parsers import Follower
from authabuse.simulate import simulate


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sim")
    simulate(d, seed=5, accounts=200, days=1, mix="default")
    return d


def _geo(sim: Path) -> list[str]:
    return ["--geo", str(sim / "geo-country.csv"), "--geo", str(sim / "geo-asn.csv")]


def _cli(*args: str, stdin: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authabuse", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_watch_on_standard_input_alerts_when_scan_flags(sim: Path) -> None:
    """Every account scan reports is alerted, at the event scan names, at that level."""
    with (sim / "maillog").open("rb") as log:
        watched = _cli("watch", "--json", *_geo(sim), "-", stdin=log)
    assert watched.returncode == 0, watched.stderr
    alerts = [json.loads(line) for line in watched.stdout.splitlines()]
    scanned = _cli("scan", "--json", *_geo(sim), str(sim / "maillog"))
    assert scanned.returncode == 1  # some account was reported
    reports = [json.loads(line) for line in scanned.stdout.splitlines()]
    assert len(reports) >= 5
    assert {a["account"] for a in alerts} == {r["account"] for r in reports}
    for r in reports:
        mine = [a for a in alerts if a["account"] == r["account"]]
        # alerted the moment it reached its final level, with the same evidence
        hit = [a for a in mine if a["level"] == r["level"] and a["time"] == r["flagged_at"]]
        assert len(hit) == 1, (r, mine)
        assert hit[0]["score"] >= min(x["score"] for x in r["reasons"])
        assert hit[0]["log"] == "-"
        assert all(set(a) == {"account", "level", "score", "time", "ip", "country",
                              "reasons", "log"} for a in mine)  # fmt: skip
    # levels only rise between alerts of one account (no repeats within --realert)
    for account in {a["account"] for a in alerts}:
        levels = [a["level"] for a in alerts if a["account"] == account]
        assert levels in (["suspicious"], ["abuse"], ["suspicious", "abuse"])
    assert re.search(r"watch: \d+ lines, \d+ events \(\d+ judged\), \d+ alerts", watched.stderr)


class Watch:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "authabuse", "watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        first = self.proc.stderr.readline()
        assert "following" in first, first

    def stop(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, out, err


def _lines_read(err: str) -> int:
    m = re.search(r"watch: (\d+) lines", err)
    assert m is not None, err
    return int(m.group(1))


def _wait_caught_up(pos: Path, log: Path, timeout: float = 60) -> None:
    """Wait until the saved positions say the whole current file was read."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            saved = json.loads(pos.read_text())
        except (OSError, ValueError):
            saved = {}
        st = log.stat()
        if saved.get(str(log)) == [st.st_ino, st.st_size]:
            return
        time.sleep(0.1)
    raise AssertionError(f"watch did not catch up with {log}: {pos.read_text()}")


@pytest.fixture
def watches() -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.communicate(timeout=30)


def test_watch_follows_rotation_truncation_and_resumes_from_its_state(
    sim: Path, tmp_path: Path, watches: list[Watch]
) -> None:
    lines = (sim / "maillog").read_bytes().splitlines(keepends=True)
    log = tmp_path / "mail.log"
    state = tmp_path / "state"
    pos = tmp_path / "state.pos"
    log.write_bytes(b"".join(lines[:1000]))  # there before: not read (like tail -F)
    args = ["--json", *_geo(sim), "--state", str(state), "--snapshot-interval", "0.2"]
    args += ["--interval", "0.05", str(log)]
    w = Watch(*args)
    watches.append(w)
    with log.open("ab") as fh:  # appended in pieces, a line cut in two among them
        for i in range(1000, 20000, 1000):
            fh.write(b"".join(lines[i : i + 999]) + lines[i + 999][:10])
            fh.flush()
            fh.write(lines[i + 999][10:])
        fh.write(b"".join(lines[20000:30000]))
    _wait_caught_up(pos, log)
    # logrotate: the file moves away with a last line written after the move
    log.rename(tmp_path / "mail.log.1")
    with (tmp_path / "mail.log.1").open("ab") as fh:
        fh.write(lines[30000])
    log.write_bytes(b"".join(lines[30001:40000]))
    _wait_caught_up(pos, log)
    # copytruncate: the same file emptied and written from its start again
    with log.open("r+b") as fh:
        fh.truncate(0)
    time.sleep(0.3)
    over = b"x" * 40000 + b"\n"  # an over-long line is counted, not kept
    log.write_bytes(over + b"".join(lines[40000:45000]))
    _wait_caught_up(pos, log)
    code, out, err = w.stop()
    assert code == 0, err
    assert "Traceback" not in err
    assert _lines_read(err) == 44000 + 1  # every line appended, none twice; the long one
    assert "1 line skipped" in err
    alerts = [json.loads(line) for line in out.splitlines()]
    assert alerts
    assert {a["log"] for a in alerts} == {str(log)}
    # a restart goes on at the next unread line: what was written meanwhile is read once
    with log.open("ab") as fh:
        fh.write(b"".join(lines[45000:50000]))
    w2 = Watch(*args)
    watches.append(w2)
    _wait_caught_up(pos, log)
    code, _, err2 = w2.stop()
    assert code == 0, err2
    assert _lines_read(err2) == 5000
    assert state.exists()


def test_follower_start_fixes_where_reading_starts(tmp_path: Path) -> None:
    # watch announced "following" before its first poll opened the files: lines written
    # in between (a loaded machine, a slow start) were taken as "there before" and lost.
    log = tmp_path / "a.log"
    log.write_bytes(b"before\n")
    late = Follower([str(log)])  # opened by its first poll
    early = Follower([str(log)])
    early.start()
    with log.open("ab") as fh:
        fh.write(b"after\n")
    assert [line for _, _, line in early.poll()] == [b"after\n"]
    assert [line for _, _, line in late.poll()] == []  # what start() is for
    early.start()  # again: nothing moves
    assert list(early.poll()) == []
    early.close()
    late.close()


def test_follower_unit_rotation_without_recreation_and_missing_files(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    f = Follower([str(log), str(tmp_path / "b.log")], from_start=True)
    assert list(f.poll()) == []  # neither exists yet
    log.write_bytes(b"1\n2\n")
    assert [line for _, _, line in f.poll()] == [b"1\n", b"2\n"]
    log.rename(tmp_path / "a.log.1")  # moved away, nothing new at the name yet
    with (tmp_path / "a.log.1").open("ab") as fh:
        fh.write(b"3\n")
    assert [line for _, _, line in f.poll()] == [b"3\n"]
    log.write_bytes(b"4\n")
    (tmp_path / "b.log").write_bytes(b"b1\n")
    assert [(Path(p).name, n, line) for p, n, line in f.poll()] == [
        ("a.log", 4, b"4\n"),
        ("b.log", 1, b"b1\n"),
    ]
    # resuming from saved positions: the same file goes on, another one starts over
    saved = f.positions()
    f.close()
    with log.open("ab") as fh:
        fh.write(b"5\n")
    g = Follower([str(log)], positions=saved)
    assert [line for _, _, line in g.poll()] == [b"5\n"]
    g.close()
    os.unlink(log)
    log.write_bytes(b"new\n")
    h = Follower([str(log)], positions={str(log): (saved[str(log)][0] + 999, 2)})
    assert [line for _, _, line in h.poll()] == [b"new\n"]  # not the same file: from start
    h.close()


def test_watch_refuses_bad_usage(tmp_path: Path) -> None:
    both = _cli("watch", "-", str(tmp_path / "x.log"))
    assert both.returncode == 2
    assert "standard input" in both.stderr
    assert "Traceback" not in both.stderr
    twice = _cli("watch", str(tmp_path / "x.log"), str(tmp_path / "x.log"))
    assert twice.returncode == 2
    assert "named twice" in twice.stderr
    gz = _cli("watch", str(tmp_path / "mail.log.1.gz"))
    assert gz.returncode == 2
    assert "a compressed log does not grow" in gz.stderr


def test_follower_follow_until_stopped(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_bytes(b"a\nb\n")
    seen: list[bytes] = []
    f = Follower([str(log)], from_start=True)
    for _, _, line in f.follow(interval=0.01, stop=lambda: len(seen) >= 2):
        seen.append(line)
    f.close()
    assert seen == [b"a\n", b"b\n"]


def test_watch_reloads_its_rules_on_sighup(sim: Path, tmp_path: Path, watches: list[Watch]) -> None:
    lines = (sim / "maillog").read_bytes().splitlines(keepends=True)
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "never"\nwhen = "ips_1h > 100000"\nscore = 100\n')
    state = tmp_path / "state"
    args = ["--json", *_geo(sim), "--rules", str(rules), "--state", str(state)]
    w = Watch(*args, "--snapshot-interval", "0.2", "--interval", "0.05", str(log))
    watches.append(w)
    log.write_bytes(b"".join(lines[:20000]))
    _wait_caught_up(tmp_path / "state.pos", log)
    rules.write_text('[[rule]]\nname = "three-ips"\nwhen = "ips_1h >= 3"\nscore = 100\n')
    w.proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)  # picked up at the next idle poll (0.05 s)
    with log.open("ab") as fh:
        fh.write(b"".join(lines[20000:40000]))
    _wait_caught_up(tmp_path / "state.pos", log)
    code, out, err = w.stop()
    assert code == 0, err
    assert "reloaded 1 rules from" in err
    alerts = [json.loads(line) for line in out.splitlines()]
    assert alerts  # the new rule fires on the lines read after the reload only
    first_after = datetime.fromisoformat(lines[20000].split(b" ", 1)[0].decode())
    assert all(datetime.fromisoformat(a["time"]) >= first_after for a in alerts)
    assert {r["rule"] for a in alerts for r in a["reasons"]} == {"three-ips"}


def test_watch_judges_open_messages_when_it_stops(tmp_path: Path, watches: list[Watch]) -> None:
    """A message whose queue id is still open at SIGTERM is judged, not lost."""
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "any-message"\nwhen = "is_submission"\nscore = 100\n')
    log = tmp_path / "mail.log"
    log.write_bytes(
        b"2026-03-02T10:00:00+09:00 mx postfix/submission/smtpd[7]: 4A1B2C3D4E: "
        b"client=unknown[192.0.2.7], sasl_method=PLAIN, sasl_username=alice@example.jp\n"
        b"2026-03-02T10:00:01+09:00 mx postfix/qmgr[8]: 4A1B2C3D4E: "
        b"from=<alice@example.jp>, size=900, nrcpt=1 (queue active)\n"
    )
    state = tmp_path / "state"
    w = Watch("--json", "--rules", str(rules), "--state", str(state), "--from-start",
              "--snapshot-interval", "0.1", "--interval", "0.05", str(log))  # fmt: skip
    watches.append(w)
    _wait_caught_up(tmp_path / "state.pos", log)
    code, out, err = w.stop()
    assert code == 0, err
    alerts = [json.loads(line) for line in out.splitlines()]
    assert [(a["account"], a["reasons"][0]["rule"]) for a in alerts] == [
        ("alice@example.jp", "any-message")
    ]


def test_watch_drops_an_over_long_line_on_standard_input_as_it_streams(sim: Path) -> None:
    """A 64 MB line without end on standard input is counted and dropped, never held whole."""
    lines = (sim / "maillog").read_bytes().splitlines(keepends=True)
    data = b"x" * (64 << 20) + b"\n" + b"".join(lines[:2000])
    # an intermediate interpreter whose only child is watch reports that child's peak RSS
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdin=sys.stdin, stderr=subprocess.PIPE)\n"
        "sys.stderr.buffer.write(done.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(done.returncode)\n"
    )
    cmd = [sys.executable, "-m", "authabuse", "watch", "--max-line", "1000", *_geo(sim), "-"]
    done = subprocess.run(
        [sys.executable, "-c", measure, *cmd],
        input=data,
        capture_output=True,
        check=False,
        timeout=300,
    )
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert _lines_read(err) == 2001
    assert "1 line skipped" in err
    peak_kib = int(done.stdout.split()[-1])
    assert peak_kib < 100 << 10  # holding the 64 MiB line took 163 MiB; streamed, about 50
