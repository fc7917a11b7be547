"""The command line against the bad input a careful operator meets in the first hours.

Each test runs the real command (``authabuse.cli.main`` or a real process) on real files:
the shipped sample log, rules files, state files and logs with hostile content. No
Python traceback may reach the user: a one-line error and exit status 2, or a counted
skip.
"""

from __future__ import annotations

from pathlib import Path

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
