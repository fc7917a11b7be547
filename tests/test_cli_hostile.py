"""The command line against the bad input a careful operator meets in the first hours.

Each test runs the real command (``authabuse.cli.main`` or a real process) on real files:
the shipped sample log, rules files, state files and logs with hostile content. No
Python traceback may reach the user: a one-line error and exit status 2, or a counted
skip.
"""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from authabuse.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "postfix-submission.log"


def _rules(tmp_path: Path, when: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(
        f'[policy]\nsuspicious = 50\n\n[[rule]]\nname = "deep"\nwhen = "{when}"\nscore = 1\n'
    )
    return path


@pytest.mark.parametrize(
    "when",
    [
        "(" * 300 + "ips_1h >= 3" + ")" * 300,
        "not " * 2000 + "network_usual",
        "~" * 5000 + "network_usual",
    ],
    ids=["parentheses", "not-words", "tildes"],
)
def test_deeply_nested_rule_is_a_clear_error_with_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], when: str
) -> None:
    rules = _rules(tmp_path, when)
    assert main(["scan", "--rules", str(rules), str(EXAMPLE)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{rules}:6: rule 'deep': parentheses or negations nested deeper than 64" in err
    assert len(err.splitlines()) == 1


def test_reasonable_nesting_still_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = _rules(tmp_path, "(" * 60 + "ips_1h >= 3 and not network_usual" + ")" * 60)
    assert main(["scan", "--rules", str(rules), "--year", "2026", str(EXAMPLE)]) == 0
    assert "scan: 66 lines" in capsys.readouterr().err


_AUTH = (
    "{stamp} mx postfix/smtpd[1]: {qid}: client=a.example[198.51.100.7], "
    "sasl_method=PLAIN, sasl_username=bob\n"
)


@pytest.mark.parametrize(
    ("stamps", "options"),
    [
        (["9999-12-31T23:59:59+00:00"], []),  # overflowed the joins' clock
        (["0001-01-01T00:00:00+01:00"], []),  # overflowed going back an hour
        (["Dec 31 23:59:59", "Jan  1 00:00:01"], ["--year", "9999"]),  # rolls over to 10000
        # before the epoch in UTC, twice the same stamp (the clock's cache must not let
        # the second one through)
        (
            ["Jan  1 00:00:00", "Jan  1 00:00:00", "Jan  1 00:00:01"],
            ["--year", "1970", "--tz", "+09:00"],
        ),
    ],
    ids=["year-9999", "year-1", "rollover-9999", "before-epoch"],
)
def test_time_stamps_out_of_range_are_counted_malformed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stamps: list[str], options: list[str]
) -> None:
    log = tmp_path / "maillog"
    log.write_text("".join(_AUTH.format(stamp=s, qid=f"4104E3{i}") for i, s in enumerate(stamps)))
    for command in ("parse", "scan"):
        assert main([command, *options, str(log)]) == 0
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if command == "parse":
            assert f"malformed lines: {len(stamps)} (first at {log}:1" in err
            assert "is outside 1970-01-01..9999-12-29" in err
        else:
            assert f"{len(stamps)} malformed lines" in err


def test_valid_lines_around_an_out_of_range_stamp_are_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "maillog"
    bad = _AUTH.format(stamp="9999-12-31T23:59:59+00:00", qid="4104E3A")
    lines = EXAMPLE.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:30]) + bad + "".join(lines[30:]))
    assert main(["parse", "--year", "2026", str(log)]) == 0
    err = capsys.readouterr().err
    assert "events: 18 (auth 9, delivery 5, submission 4)" in err
    assert f"malformed lines: 1 (first at {log}:31" in err


def test_a_json_event_before_the_epoch_is_refused_not_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The detector counts seconds since the epoch with 0 as "never": one login in 1969
    # used to be reported as abuse by known-abuse-ip.
    log = tmp_path / "events.jsonl"
    log.write_text(
        '{"type": "auth", "time": "1969-12-31T23:59:59+00:00", "account": "bob", '
        '"ip": "192.0.2.1", "succeeded": true}\n'
    )
    assert main(["scan", "--json", str(log)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "1 malformed lines" in captured.err


def test_events_refuse_times_the_detector_cannot_count() -> None:
    from datetime import UTC, datetime

    from authabuse.errors import InvalidEventError
    from authabuse.events import AuthAttempt, parse_ip

    for when in (datetime(1969, 12, 31, 23, 59, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)):
        with pytest.raises(InvalidEventError, match=r"outside 1970-01-01\.\.9999-12-29"):
            AuthAttempt(time=when, ip=parse_ip("192.0.2.1"), account="bob", succeeded=True)
    AuthAttempt(
        time=datetime(1970, 1, 1, tzinfo=UTC),
        ip=parse_ip("192.0.2.1"),
        account="bob",
        succeeded=True,
    )


# ---------------------------------------------------------------- files the system refuses


def _cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", "authabuse", *args],
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        timeout=120,
        **kwargs,
    )


def _one_line_error(run: subprocess.CompletedProcess[str], text: str) -> None:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, run.stderr
    assert text in errors[0], run.stderr


@pytest.mark.parametrize("where", ["missing-dir", "under-a-file"])
def test_scan_refuses_a_state_file_it_could_not_save_before_scanning(
    tmp_path: Path, where: str
) -> None:
    # The state is written after the scan: finding out then lost the whole scan (and
    # printed a traceback). Now the scan does not start.
    (tmp_path / "afile").write_text("")
    state = tmp_path / ("missing" if where == "missing-dir" else "afile") / "state"
    run = _cli("scan", "--state", str(state), str(EXAMPLE))
    _one_line_error(run, f"scan: error: cannot write state file {state}: ")
    assert run.stdout == ""
    assert "scan: 66 lines" not in run.stderr  # refused before reading a line


def test_scan_state_still_saved_and_reloaded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for _ in range(2):
        run = _cli("scan", "--year", "2026", "--state", str(state), str(EXAMPLE))
        assert run.returncode == 0, run.stderr
        assert state.read_bytes().startswith(b'{"magic": "authabuse-detector-state"')
    assert [p.name for p in tmp_path.iterdir()] == ["state"]  # no probe file left behind


def test_report_outputs_that_cannot_be_written_are_refused_first(tmp_path: Path) -> None:
    run = _cli("report", "--no-figures", "--out", str(tmp_path), str(EXAMPLE))
    _one_line_error(run, f"report: error: cannot write report {tmp_path}: it is a directory")
    out = tmp_path / "missing" / "r.html"
    run = _cli("report", "--no-figures", "--out", str(out), str(EXAMPLE))
    _one_line_error(run, f"report: error: cannot write report {out}: No such file or directory")
    run = _cli("scan", "--report", str(out), str(EXAMPLE))
    _one_line_error(run, f"scan: error: cannot write report {out}: No such file or directory")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_stdout_is_one_line_and_status_2() -> None:
    with open("/dev/full", "w") as full:
        run = _cli(
            "parse",
            "--year",
            "2026",
            str(EXAMPLE),
            stdout=full,
        )
    _one_line_error(run, "parse: error: No space left on device")


def test_scan_footer_reports_a_truncated_gz(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = gzip.compress(EXAMPLE.read_bytes())
    cut = tmp_path / "maillog.2.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert main(["scan", "--year", "2026", str(cut), str(EXAMPLE)]) == 0
    err = capsys.readouterr().err
    assert f"1 inputs cut short by a read error (first at {cut}:" in err
    assert "end-of-stream marker" in err
    assert main(["report", "--no-figures", "--out", str(tmp_path / "r.html"), str(cut)]) == 0
    assert "1 inputs cut short by a read error" in capsys.readouterr().err


def test_a_journal_entry_stamped_past_year_9999_is_malformed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = {
        "MESSAGE": "4104E3D: client=a.example[192.0.2.1], sasl_method=PLAIN, sasl_username=bob",
        "SYSLOG_IDENTIFIER": "postfix/smtpd",
        "_HOSTNAME": "mx",
    }
    log = tmp_path / "journal.json"
    log.write_text(
        json.dumps({"__REALTIME_TIMESTAMP": "999999999999999999", **entry})
        + "\n"
        + json.dumps({"__REALTIME_TIMESTAMP": "1764342154123456", **entry})
        + "\n"
    )
    assert main(["parse", str(log)]) == 0  # was: ValueError: year 33658 is out of range
    err = capsys.readouterr().err
    assert "events: 2 (auth 1, submission 1)" in err
    assert f"malformed lines: 1 (first at {log}:1; journal entry's __REALTIME_TIMESTAMP" in err


# ------------------------------------------------------------------ serve refusing at start


def test_serve_refuses_at_start_what_it_could_not_use(tmp_path: Path) -> None:
    state = tmp_path / "missing" / "postfix.state"
    run = _cli("serve", "postfix", "--listen", "127.0.0.1:0", "--state", str(state))
    _one_line_error(run, f"serve: error: cannot write state file {state}: No such file")
    header = tmp_path / "no-such-header"
    run = _cli("serve", "dovecot", "--listen", "127.0.0.1:0", "--api-header-file", str(header))
    _one_line_error(run, f"serve: error: cannot read --api-header-file {header}: No such file")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = _cli("serve", "postfix", "--listen", f"127.0.0.1:{port}")
    _one_line_error(run, f"serve: error: cannot listen on 127.0.0.1:{port}: ")
    sock = tmp_path / "missing" / "policy.sock"
    run = _cli("serve", "postfix", "--listen", f"unix:{sock}")
    _one_line_error(run, f"serve: error: cannot listen on unix:{sock}: No such file")


def test_serve_says_when_the_state_cannot_be_saved_at_shutdown(tmp_path: Path) -> None:
    where = tmp_path / "lib"
    where.mkdir()
    state = where / "postfix.state"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "authabuse",
            "serve",
            "postfix",
            "--listen",
            "127.0.0.1:0",
            "--state",
            str(state),
            "--snapshot-interval",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "listening on" in first, first
        shutil.rmtree(where)  # the directory went away while serving
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert f"cannot save state to {state}: No such file or directory" in err


# ------------------------------------------------------------------------ pipes and signals


def _burst_log(path: Path, accounts: int) -> Path:
    """Each account sends 40 messages in 40 s from its own address: the burst rule."""
    lines = []
    for i in range(40):
        for a in range(accounts):
            lines.append(
                json.dumps(
                    {
                        "type": "submission",
                        "time": f"2026-03-02T10:00:{i:02d}.{a % 100:02d}+00:00",
                        "account": f"user{a}@example.jp",
                        "ip": f"203.0.{a // 250}.{a % 250 + 1}",
                        "recipient_count": 1,
                    }
                )
            )
    path.write_text("\n".join(lines) + "\n")
    return path


def _head_1(*args: str, timeout: float) -> tuple[int, dict[str, Any], str]:
    """Run ``authabuse ARGS | head -1``: (exit code, the first JSON line, stderr)."""
    with subprocess.Popen(
        [sys.executable, "-m", "authabuse", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = json.loads(proc.stdout.readline())
        proc.stdout.close()
        err = proc.stderr.read()
        return proc.wait(timeout=timeout), first, err


def test_scan_into_a_closed_pipe_still_saves_state_and_says_found(tmp_path: Path) -> None:
    log = _burst_log(tmp_path / "events.jsonl", 400)  # ~400 findings: more than a pipe holds
    state = tmp_path / "state"
    code, first, err = _head_1("scan", "--json", "--state", str(state), str(log), timeout=120)
    assert code == 1, err  # accounts were flagged
    assert first["level"] in {"suspicious", "abuse"}
    assert "Traceback" not in err
    assert "400 reported" in err
    assert state.read_bytes().startswith(b'{"magic": "authabuse-detector-state"')


def _wait_idle(pid: int, timeout: float = 60.0) -> None:
    """Wait until the process stops using CPU (it has read all it was given)."""
    stat = Path(f"/proc/{pid}/stat")
    end = time.monotonic() + timeout
    last, still = -1, 0
    while time.monotonic() < end:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        used = int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
        still = still + 1 if used == last else 0
        if still >= 5:
            return
        last = used
        time.sleep(0.2)
    raise AssertionError("the scan never went idle")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_ctrl_c_on_a_live_scan_reports_what_it_found_and_keeps_the_state(
    tmp_path: Path,
) -> None:
    # `tail -F mail.log | authabuse scan -` never reaches the end of its input: Ctrl-C is
    # how it ends. It used to print nothing at all.
    state = tmp_path / "state"
    empty = tmp_path / "empty.log"
    empty.write_text("")
    assert main(["scan", "--state", str(state), str(empty)]) == 0
    before = state.read_bytes()
    log = _burst_log(tmp_path / "events.jsonl", 150).read_bytes()
    with subprocess.Popen(
        [sys.executable, "-m", "authabuse", "scan", "--json", "--state", str(state), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None
        proc.stdin.write(log)
        proc.stdin.flush()  # and the pipe stays open, as tail -F keeps it
        _wait_idle(proc.pid)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    findings = [json.loads(line) for line in out.decode().splitlines()]
    assert len(findings) == 150
    assert "Traceback" not in err.decode()
    assert "interrupted: the findings cover the input read so far" in err.decode()
    assert state.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.log", "events.jsonl", "state"]


# ------------------------------------------------------------------- output contracts


def test_a_json_lone_surrogate_is_refused_not_a_crash_when_written_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # JSON's "\ud800" escape gives a str that UTF-8 cannot encode: `parse` died writing
    # it (UnicodeEncodeError), and so did `report`.
    good = {"type": "auth", "time": "2026-03-02T10:00:00+00:00", "ip": "192.0.2.1"}
    log = tmp_path / "events.jsonl"
    log.write_text(
        json.dumps({**good, "account": "\ud800x@example.jp", "succeeded": True})
        + "\n"
        + json.dumps({**good, "account": "ok@example.jp", "succeeded": True})
        + "\n"
        + json.dumps(
            {**good, "type": "submission", "account": "ok@example.jp", "recipients": ["\udfff"]}
        )
        + "\n"
    )
    assert main(["parse", str(log)]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["account"] for line in captured.out.splitlines()] == ["ok@example.jp"]
    assert "malformed lines: 2" in captured.err
    assert "account holds a lone surrogate (not valid Unicode)" in captured.err
    report = tmp_path / "r.html"
    assert main(["report", "--no-figures", "--out", str(report), str(log)]) == 0
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_a_journal_message_with_a_lone_surrogate_keeps_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = {
        "__REALTIME_TIMESTAMP": "1764342154123456",
        "MESSAGE": "4104E3D: client=a.example[192.0.2.1], sasl_method=PLAIN, "
        "sasl_username=\ud800bob@example.jp",
        "SYSLOG_IDENTIFIER": "postfix/smtpd",
        "_HOSTNAME": "mx",
    }
    log = tmp_path / "journal.json"
    log.write_text(json.dumps(entry) + "\n")
    assert main(["parse", str(log)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["account"] == "\ufffd\ufffd\ufffdbob@example.jp"


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--interval", "-1", "above 0"),  # ValueError: sleep length must be non-negative
        ("--interval", "0", "above 0"),  # polled in a busy loop
        ("--interval", "nan", "above 0"),
        ("--snapshot-interval", "-5", "0 or more"),
        ("--realert", "inf", "0 or more"),
    ],
)
def test_watch_refuses_nonsense_intervals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, says: str
) -> None:
    log = tmp_path / "maillog"
    log.write_text("")
    with pytest.raises(SystemExit) as stop:
        main(["watch", f"{option}={value}", str(log)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be a number of seconds {says}, not '{value}'" in err


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        # NaN compared false with everything: the slow-client protection was silently off.
        ("--request-timeout", "nan", "above 0"),
        ("--idle-timeout", "nan", "above 0"),
        ("--idle-timeout", "-1", "above 0"),
        # Each Redis call bounded by NaN or -1 seconds: the server started, then every
        # Redis call raised ValueError (socket.settimeout), an internal error per request.
        ("--store-timeout", "nan", "above 0"),
        ("--store-timeout", "-1", "above 0"),
        ("--store-timeout", "0", "above 0"),
        ("--snapshot-interval", "inf", "0 or more"),
    ],
)
def test_serve_refuses_nonsense_timeouts(option: str, value: str, says: str) -> None:
    run = _cli("serve", "postfix", "--listen", "127.0.0.1:0", option, value)
    _one_line_error(run, f"argument {option}: must be a number of seconds {says}, not '{value}'")


@pytest.mark.parametrize("value", [float("nan"), -1.0, 0.0, float("inf")])
def test_redis_store_refuses_nonsense_timeouts(value: float) -> None:
    pytest.importorskip("redis", reason="the redis extra is not installed")
    from authabuse.errors import ConfigurationError
    from authabuse.redis_store import RedisStore

    with pytest.raises(ConfigurationError, match="socket_timeout must be a positive number"):
        RedisStore("redis://127.0.0.1:1/0", socket_timeout=value)
    with pytest.raises(ConfigurationError, match="retry_interval must be a positive number"):
        RedisStore("redis://127.0.0.1:1/0", retry_interval=value)


def test_an_empty_postfix_sasl_username_is_no_login(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Dovecot's user=<> and Postfix's other SASL lines already meant "no account"; the
    # client= line made an account named "" that every such message was counted in.
    log = tmp_path / "maillog"
    log.write_text(
        "Nov  3 10:15:32 mx postfix/smtpd[1]: 4104E3D: client=a.example[192.0.2.1], "
        "sasl_method=PLAIN, sasl_username=\n"
        "Nov  3 10:15:33 mx dovecot: imap-login: Login: user=<>, method=PLAIN, "
        "rip=192.0.2.1, lip=10.0.0.1\n"
    )
    assert main(["parse", "--year", "2026", str(log)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e.get("account") for e in events] == [None]


def test_rules_file_errors_say_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "site.toml"
    rule = '[[rule]]\nname = "{name}"\nwhen = "{when}"\nscore = 10\n\n'
    rules.write_text(
        "[defaults]\ninclude = true\n\n"
        + rule.format(name="fast", when="ips_1h >= 3")
        + rule.format(name="fast", when="ips_1h >= 4")
    )
    assert main(["scan", "--rules", str(rules), str(EXAMPLE)]) == 2
    err = capsys.readouterr().err
    assert f"{rules}:9: two rules are named 'fast' (the first at line 4)" in err
    rules.write_text(rule.format(name="two-hours", when="ips_2h >= 3"))
    assert main(["scan", "--rules", str(rules), str(EXAMPLE)]) == 2
    err = capsys.readouterr().err
    assert "rule 'two-hours' reads 'ips_2h' but the detector's windows are 1h and 24h" in err


def test_rotated_logs_newest_first_are_said_to_be_out_of_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = EXAMPLE.read_text().splitlines(keepends=True)
    older = tmp_path / "maillog.1.gz"
    older.write_bytes(gzip.compress("".join(lines).encode()))
    newer = tmp_path / "maillog"  # the same lines a day later
    newer.write_text("".join(line.replace("Nov 28", "Nov 29", 1) for line in lines))
    assert "Nov 28" in lines[0]
    assert main(["scan", "--year", "2026", str(newer), str(older)]) == 0  # newest first
    err = capsys.readouterr().err
    assert "events too late (skipped; name rotated logs oldest first)" in err
    assert main(["scan", "--year", "2026", str(older), str(newer)]) == 0
    assert "too late" not in capsys.readouterr().err


def test_a_corrupt_mmdb_that_still_opens_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("maxminddb", reason="the geoip2 extra reads .mmdb files")
    good = (ROOT / "tests" / "data" / "maxmind" / "GeoLite2-Country-Test.mmdb").read_bytes()
    meta = good.rfind(b"\xab\xcd\xefMaxMind.com")  # the metadata (kept: the file opens)
    damaged = tmp_path / "country.mmdb"
    damaged.write_bytes(bytes((i * 37 + 11) % 256 for i in range(meta)) + good[meta:])
    run = _cli("geo", "--geo", str(damaged), "81.2.69.160")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "81.2.69.160\tno data\n"
    # It used to answer "no data" for every address without a word.
    assert f"{damaged}: corrupt MMDB database (" in run.stderr
    assert "replace the file" in run.stderr
    assert run.stderr.count("corrupt MMDB") == 1


def test_watch_into_a_closed_pipe_saves_its_state(tmp_path: Path) -> None:
    log = _burst_log(tmp_path / "events.jsonl", 400)  # hundreds of alerts: more than a pipe holds
    state = tmp_path / "state"
    args = ["--from-start", "--json", "--interval", "0.1", "--state", str(state), str(log)]
    code, first, err = _head_1("watch", *args, timeout=60)
    assert code == 0, err
    assert first["level"] in {"suspicious", "abuse"}
    assert "Traceback" not in err
    assert "standard output closed, stopping" in err
    assert state.read_bytes().startswith(b'{"magic": "authabuse-detector-state"')
