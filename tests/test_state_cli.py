"""``authabuse state`` and ``Detector.account_info`` on real state files.

The state files are written by ``authabuse scan --state`` over a log written by
``authabuse simulate`` (a real Postfix log, with the geo tables it used).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authabuse import (
    AccountInfo,
    Detector,
    DetectorConfig,
    Level,
    Submission,
    iter_events,
    parse_ip,
)
from authabuse.cli import main
from authabuse.cli._control import Control, flagged_infos
from authabuse.detector import _unpack
from authabuse.geo import resolver_from_paths


@dataclass
class Sim:
    dir: Path
    state: Path
    geo: list[str]
    reported: dict[str, dict[str, Any]]
    events: list[Any]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authabuse", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Sim:
    d = tmp_path_factory.mktemp("sim")
    made = cli("simulate", "--out", str(d), "--accounts", "300", "--days", "3", "--seed", "1")
    assert made.returncode == 0, made.stderr
    geo = [str(d / "geo-country.csv"), str(d / "geo-asn.csv")]
    state = d / "state"
    scan = cli(
        "scan", "--geo", geo[0], "--geo", geo[1], "--state", str(state), "--json",
        str(d / "maillog"),
    )  # fmt: skip
    assert scan.returncode == 1, scan.stderr  # accounts were reported
    reported = {r["account"]: r for r in map(json.loads, scan.stdout.splitlines())}
    events = list(iter_events(d / "maillog", format="postfix"))
    return Sim(d, state, geo, reported, events)


def copy_state(sim: Sim, tmp_path: Path) -> Path:
    path = tmp_path / "state"
    shutil.copyfile(sim.state, path)
    return path


def test_show_flagged_lists_flagged_accounts_of_the_scan(sim: Sim) -> None:
    shown = cli("state", "show", "--state", str(sim.state), "--flagged", "--json")
    assert shown.returncode == 0, shown.stderr
    infos = [json.loads(line) for line in shown.stdout.splitlines()]
    # Accounts flagged in their current long window: the scan reported each of them.
    assert len(infos) >= 5
    for info in infos:
        assert info["account"] in sim.reported
        assert info["level"] in ("suspicious", "abuse")
        assert info["known"] is True
        assert datetime.fromisoformat(info["flagged_at"]) >= datetime.fromisoformat(
            info["first_seen"]
        )
        assert info["quiet"] is False
    # The same accounts through the library
    det = Detector.load(sim.state, geo=None)
    flagged, more = flagged_infos(det)
    assert not more
    assert [i.account for i in flagged] == [i["account"] for i in infos]
    assert [i.to_dict() | {"known": True} for i in flagged] == infos
    # readable lines: one per account
    text = cli("state", "show", "--state", str(sim.state), "--flagged")
    assert text.returncode == 0
    assert len(text.stdout.splitlines()) == len(infos)
    assert all(" since " in line and "; peaks " in line for line in text.stdout.splitlines())


def test_account_info_of_a_quiet_account_leaves_it_packed(sim: Sim, tmp_path: Path) -> None:
    det = Detector.load(sim.state, geo=None)
    quiet = [a for a in det.accounts() if isinstance(det._accts[a], bytes)]
    assert len(quiet) >= 10  # accounts whose last activity is past their windows
    for name in quiet:
        packed = det._accts[name]
        assert isinstance(packed, bytes)
        info = det.account_info(name)
        assert isinstance(info, AccountInfo)
        assert info.quiet
        assert info.level == Level.OK
        assert info.flagged_at is None
        assert det._accts[name] is packed  # not unpacked in place
        acct = _unpack(packed)
        assert len(info.countries) + len(info.networks) == len(acct.usual)
        assert info.peak_mails == acct.peak_mails
        assert info.first_seen == datetime.fromtimestamp(acct.first, UTC)
        assert info.last_seen == datetime.fromtimestamp(acct.last, UTC)
    before = sim.state.read_bytes()
    shown = cli("state", "show", "--state", str(sim.state), quiet[0])
    assert shown.returncode == 0
    assert shown.stdout.rstrip().endswith("; quiet")
    assert sim.state.read_bytes() == before  # show writes nothing


def test_benign_on_a_state_file_stops_the_alerts_of_the_same_pattern(
    sim: Sim, tmp_path: Path
) -> None:
    state = copy_state(sim, tmp_path)
    geo = resolver_from_paths(sim.geo)
    det = Detector.load(state, geo=geo)
    flagged = [i.account for i in flagged_infos(det)[0]]

    def levels(d: Detector, account: str) -> list[int]:
        """The verdicts the account's last 20 events would get now (check: pure)."""
        mine = [e for e in sim.events if getattr(e, "account", None) == account][-20:]
        return [int(d.check(e).level) for e in mine]

    before = {a: levels(det, a) for a in flagged}
    done = cli("state", "benign", "--state", str(state), *flagged)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(flagged)
    assert all(": marked benign (was " in line for line in lines)
    assert "overwrites this file at its next snapshot" in done.stderr
    after_det = Detector.load(state, geo=geo)
    calmed = 0
    for account in flagged:
        info = after_det.account_info(account)
        assert info is not None
        assert info.level == Level.OK
        assert info.flagged_at is None
        old = det.account_info(account)
        assert old is not None
        assert old.level > Level.OK
        assert set(old.networks) <= set(info.networks) or len(info.networks) == 12
        after = levels(after_det, account)
        # the pattern that was flagged is judged again: never worse, mostly accepted
        assert all(a <= b for a, b in zip(after, before[account], strict=True))
        calmed += max(before[account]) > 0 and max(after) == 0
    assert calmed >= 3
    # every other account is as it was
    for name in det.accounts():
        if name not in flagged:
            assert det.account_info(name) == after_det.account_info(name)


def test_benign_of_an_unknown_account_changes_nothing(sim: Sim, tmp_path: Path) -> None:
    state = copy_state(sim, tmp_path)
    before = state.read_bytes()
    done = cli("state", "benign", "--state", str(state), "nobody@example.jp", "evil\x1b[31m")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "nobody@example.jp: not marked: unknown account (the detector keeps nothing about "
        "it): nothing to learn, nothing done",
        "evil\\x1b[31m: not marked: unknown account (the detector keeps nothing about "
        "it): nothing to learn, nothing done",
    ]
    assert state.read_bytes() == before  # nothing changed: nothing saved
    shown = cli("state", "show", "--state", str(state), "--json", "nobody@example.jp")
    assert shown.returncode == 1
    assert json.loads(shown.stdout) == {"account": "nobody@example.jp", "known": False}


def test_bad_uses_exit_2_with_one_line(sim: Sim, tmp_path: Path) -> None:
    missing = cli("state", "show", "--state", str(tmp_path / "none"), "a@example.jp")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"authabuse state: error: no state file {tmp_path / 'none'}"
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\xff not a state\n")
    bad = cli("state", "benign", "--state", str(garbage), "a@example.jp")
    assert bad.returncode == 2
    assert "is not an authabuse detector state file" in bad.stderr
    assert garbage.read_bytes() == b"\x00\xff not a state\n"
    none = cli("state", "show", "a@example.jp")  # no --state, --store or --control
    assert none.returncode == 2
    both = cli("state", "show", "--state", str(sim.state), "--control", "/nonexistent")
    assert both.returncode == 2
    nobody = cli("state", "show", "--control", str(tmp_path / "no.sock"), "a@example.jp")
    assert nobody.returncode == 2
    assert "cannot connect to control socket" in nobody.stderr
    newline = cli("state", "show", "--state", str(sim.state), "a@b\nshow c@d")
    assert newline.returncode == 2
    assert "not an account name" in newline.stderr


def test_a_state_with_other_windows_loads_with_its_rules(tmp_path: Path) -> None:
    """A state saved with 30-minute windows, and rules naming them (`--rules`)."""
    det = Detector(geo=None, config=DetectorConfig(short_window=1800, long_window=43200))
    t0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    for i in range(6):
        det.process(
            Submission(
                time=t0 + timedelta(minutes=i),
                ip=parse_ip(f"{20 + i}.51.0.7"),
                account="a@example.jp",
            )
        )
    state = tmp_path / "state"
    det.save(state)
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "many"\nwhen = "ips_30m > 3"\nscore = 100\n')
    assert (
        main(["state", "show", "--state", str(state), "--rules", str(rules), "a@example.jp"]) == 0
    )
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[[rule]]\nname = "many"\nwhen = "ips_1h > 3"\nscore = 100\n')
    assert main(["state", "show", "--state", str(state), "--rules", str(wrong), "a@x.jp"]) == 2
    assert main(["state", "benign", "--state", str(state), "a@example.jp"]) == 0
    info = Detector.load(state, geo=None).account_info("a@example.jp")
    assert info is not None
    assert len(info.networks) == 6


def test_control_protocol_answers_every_line() -> None:
    det = Detector(geo=None)
    t = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    det.process(Submission(time=t, ip=parse_ip("192.0.2.1"), account="a@example.jp"))
    control = Control(det)
    answers = [
        json.loads(control.answer(line))
        for line in (
            b"show a@example.jp",
            b"show",
            b"benign",
            b"benign b@example.jp",
            b"\xff\xfe",
            b"",
            b"flagged now",
            b"ping",
            b"flagged",
            b"benign a@example.jp\r\n",
        )
    ]
    assert answers[0]["info"]["account"] == "a@example.jp"
    assert [a["ok"] for a in answers] == [True, False, False, False, False, False, False] + [
        True
    ] * 3
    assert answers[1]["error"] == "usage: show ACCOUNT"
    assert answers[4]["error"] == "the command is not UTF-8"
    assert answers[8] == {"ok": True, "accounts": [], "truncated": False}
    assert answers[9]["after"]["level"] == "ok"
    assert control.errors == 6


_DET = Detector(geo=None)
_DET.process(
    Submission(
        time=datetime(2024, 5, 1, 9, 0, tzinfo=UTC),
        ip=parse_ip("192.0.2.1"),
        account="a@example.jp",
    )
)
_CONTROL = Control(_DET)


@given(
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from([b"show ", b"benign ", b"flagged", b"ping", b""]).flatmap(
            lambda head: st.binary(max_size=100).map(lambda tail: head + tail)
        ),
    )
)
@settings(max_examples=300, deadline=None)
def test_every_control_line_gets_one_json_line(line: bytes) -> None:
    """Whatever a client sends: one line of JSON, a verdict on it, never an exception."""
    out = _CONTROL.answer(line.replace(b"\n", b" "))
    assert out.endswith(b"\n")
    assert out.count(b"\n") == 1
    answer = json.loads(out)
    assert isinstance(answer["ok"], bool)
    assert answer["ok"] or isinstance(answer["error"], str)
    info = _DET.account_info("a@example.jp")
    assert info is not None  # nothing a command does forgets an account


def test_account_names_that_are_not_utf8_are_reported_not_crashed_on(
    sim: Sim, tmp_path: Path
) -> None:
    state = copy_state(sim, tmp_path)
    done = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"authabuse", b"state", b"benign", b"--state",
         os.fsencode(state), b"ev\xffil@example.jp"],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout.startswith(b"ev\\udcffil@example.jp: not marked: unknown account")
    assert b"Traceback" not in done.stderr
