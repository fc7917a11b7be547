"""`authabuse parse` as a user runs it: a real process, real files, stdin, gzip."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from authabuse.cli import main
from authabuse.events import AuthAttempt, Submission, event_from_json

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "postfix-submission.log"


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "authabuse", "parse", *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=60,
    )


def test_readme_first_command_output() -> None:
    run = cli(str(EXAMPLE), "--year", "2026", "--tz", "UTC")
    assert run.returncode == 0, run.stderr
    events = [event_from_json(line) for line in run.stdout.decode().splitlines()]
    assert [type(e).__name__ for e in events].count("Submission") == 4
    assert sum(isinstance(e, AuthAttempt) and not e.succeeded for e in events) == 5
    first = next(e for e in events if isinstance(e, Submission))
    assert (first.account, str(first.ip), first.recipient_count) == (
        "alice@e2e.test",
        "127.0.0.5",
        2,
    )
    err = run.stderr.decode()
    assert "lines read: 66" in err
    assert "events: 18 (auth 9, delivery 5, submission 4)" in err
    assert "irrelevant lines skipped: 43" in err


def test_stdin_and_gzip_give_the_same_events(tmp_path: Path) -> None:
    gz = tmp_path / "maillog.1.gz"
    gz.write_bytes(gzip.compress(EXAMPLE.read_bytes()))
    plain = cli(str(EXAMPLE), "--year", "2026", "--tz", "UTC").stdout
    assert cli("-", "--year", "2026", "--tz", "UTC", stdin=EXAMPLE.read_bytes()).stdout == plain
    assert cli(str(gz), "--year", "2026", "--tz", "UTC").stdout == plain


def test_summary_reports_malformed_lines_with_numbers(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    lines = EXAMPLE.read_bytes().splitlines(keepends=True)
    lines[17] = lines[17].replace(b"[127.0.0.7]", b"[xxxx]")
    lines.insert(3, b"\xff\xfe not a log line at all\n")
    log.write_bytes(b"".join(lines))
    run = cli(str(log), "--year", "2026", "--tz", "UTC")
    assert run.returncode == 0
    err = run.stderr.decode()
    assert f"malformed lines: 1 (first at {log}:19; invalid IP address 'xxxx')" in err
    assert f"lines in no known format: 1 (first at {log}:4" in err
    assert "of which invalid IP addresses: 1" in err
    assert "lines with non-UTF-8 bytes (replaced): 1" in err
    strict = cli(str(log), "--year", "2026", "--tz", "UTC", "--strict")
    assert strict.returncode == 2
    assert f"{log}:4: no known log format" in strict.stderr.decode()


def test_bad_options_exit_2_before_any_output() -> None:
    run = cli(str(EXAMPLE), "--tz", "Nowhere/Atlantis")
    assert run.returncode == 2
    assert run.stdout == b""
    assert b"unknown time zone" in run.stderr
    missing = cli("/nonexistent/maillog")
    assert missing.returncode == 2
    assert b"cannot read /nonexistent/maillog" in missing.stderr


def test_forced_format_and_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["parse", "--format", "dovecot", "--quiet", "--tz", "UTC", str(EXAMPLE)])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == ""
    assert err == ""
