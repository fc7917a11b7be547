"""`authabuse scan` end to end: real logs, simulated incidents, the JSON contract, state."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from authabuse.cli import main
from authabuse.cli._scan import sanitize
from authabuse.simulate import GroundTruth, simulate

SHARED = Path(__file__).parents[1] / ".." / "shared"
EXAMPLE = Path(__file__).parents[1] / "examples" / "postfix-submission.log"
REAL = SHARED / "corpus" / "real-postfix-3.7" / "maillog.log"
KEYS = {
    "account", "level", "score", "flagged_at", "reasons", "distinct_ips", "countries",
    "messages", "first_seen", "last_seen",
}  # fmt: skip


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sim")
    simulate(d, seed=4, accounts=250, days=2.5)
    return d


def scan_json(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[dict[str, object]], str]:
    code = main(["scan", "--json", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def geo_args(d: Path) -> list[str]:
    return ["--geo", str(d / "geo-country.csv"), "--geo", str(d / "geo-asn.csv")]


def test_real_postfix_logs_scan_clean(capsys: pytest.CaptureFixture[str]) -> None:
    logs = [str(EXAMPLE)]
    if REAL.exists():
        logs.append(str(REAL))
    code, records, err = scan_json(capsys, "--year", "2026", "--tz", "UTC", *logs)
    assert code == 0
    assert records == []
    footer = err.splitlines()[-1]
    assert re.match(r"scan: \d+ lines, \d+ events \(\d+ judged\), 2 accounts, 0 reported", footer)


def test_simulated_incidents_are_reported_with_the_contract(
    sim: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = GroundTruth.load(sim)
    code, records, err = scan_json(
        capsys, *geo_args(sim), "--min-level", "abuse", str(sim / "maillog")
    )
    assert code == 1
    assert "reported" in err
    by_account = {r["account"]: r for r in records}
    abused = {a.name for a in truth.abused() if a.abuse and a.abuse.messages >= 20}
    caught = abused & set(by_account)
    assert len(caught) >= len(abused) * 0.8, (sorted(abused - caught), len(abused))
    for r in records:
        assert set(r) == KEYS
        assert r["level"] == "abuse"
        assert isinstance(r["score"], float)
        assert r["score"] >= 100
        flagged = datetime.fromisoformat(str(r["flagged_at"]))
        first = datetime.fromisoformat(str(r["first_seen"]))
        last = datetime.fromisoformat(str(r["last_seen"]))
        assert first <= flagged <= last
        reasons = r["reasons"]
        assert isinstance(reasons, list)
        assert reasons
        assert all(set(x) == {"rule", "score", "detail"} for x in reasons)
        assert isinstance(r["countries"], dict)
        assert isinstance(r["distinct_ips"], int)
        assert isinstance(r["messages"], int)
    big = [r for r in records if r["account"] in caught]
    sprinkle = [
        r for r in big
        if truth.accounts[str(r["account"])].abuse.pattern == "sprinkle"  # type: ignore[union-attr]
    ]  # fmt: skip
    for r in sprinkle:
        countries = r["countries"]
        assert isinstance(countries, dict)
        assert len(countries) >= 10


def test_table_output_and_min_level(sim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scan", *geo_args(sim), str(sim / "maillog")])
    out, _ = capsys.readouterr()
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["LEVEL", "SCORE", "FLAGGED"]
    assert any(line.startswith("abuse") for line in lines)
    assert any(line.strip().startswith("countries:") for line in lines)
    _, suspicious, _ = scan_json(capsys, *geo_args(sim), str(sim / "maillog"))
    _, abuse, _ = scan_json(capsys, *geo_args(sim), "--min-level", "abuse", str(sim / "maillog"))
    assert {r["account"] for r in abuse} <= {r["account"] for r in suspicious}


def test_state_continues_across_log_rotation(
    sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (sim / "maillog").read_bytes().splitlines(keepends=True)
    cut = len(lines) // 2
    while b"postfix/qmgr" in lines[cut] or b"postfix/cleanup" in lines[cut]:
        cut += 1
    (tmp_path / "maillog.1").write_bytes(b"".join(lines[:cut]))
    (tmp_path / "maillog").write_bytes(b"".join(lines[cut:]))
    state = tmp_path / "state"
    _, whole, _ = scan_json(capsys, *geo_args(sim), "--min-level", "abuse", str(sim / "maillog"))
    _, first, _ = scan_json(
        capsys,
        *geo_args(sim),
        "--min-level",
        "abuse",
        "--state",
        str(state),
        str(tmp_path / "maillog.1"),
    )
    assert state.exists()
    _, second, _ = scan_json(
        capsys,
        *geo_args(sim),
        "--min-level",
        "abuse",
        "--state",
        str(state),
        str(tmp_path / "maillog"),
    )
    flagged_whole = {str(r["account"]): r["flagged_at"] for r in whole}
    flagged_parts = {str(r["account"]): r["flagged_at"] for r in first}
    for r in second:
        flagged_parts.setdefault(str(r["account"]), r["flagged_at"])
    # the same accounts, flagged at the same moments (a join cut by the rotation may
    # shift one message, never the set of accounts)
    assert set(flagged_parts) == set(flagged_whole)
    same = sum(flagged_parts[a] == flagged_whole[a] for a in flagged_whole)
    assert same >= len(flagged_whole) - 1


def test_bad_rules_and_state_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "x"\nwhen = "ips_1h >="\nscore = 1\n', encoding="utf-8")
    assert main(["scan", "--rules", str(rules), str(EXAMPLE)]) == 2
    err = capsys.readouterr().err
    assert "rules.toml:3: rule 'x': expected a number" in err
    state = tmp_path / "state"
    state.write_bytes(b'{"magic": "authabuse-detector-state", "version": 0}\nxx')
    assert main(["scan", "--state", str(state), str(EXAMPLE)]) == 2
    assert "version 0" in capsys.readouterr().err


def test_hostile_account_names_are_sanitized(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = "ev\x1b[31mil\u202e@example.jp"
    lines = []
    for i in range(40):
        lines.append(
            json.dumps(
                {
                    "type": "submission",
                    "time": f"2026-03-02T10:00:{i:02d}.{i:02d}+00:00",
                    "account": evil,
                    "ip": "203.0.113.9",
                    "recipient_count": 1,
                }
            )
        )
    log = tmp_path / "events.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = main(["scan", "--format", "jsonl", str(log)])
    out = capsys.readouterr().out
    assert code == 1
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "ev\\x1b[31mil\\u202e@example.jp" in out
    code = main(["scan", "--json", "--format", "jsonl", str(log)])
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert json.loads(out)["account"] == evil


def test_sanitize() -> None:
    assert sanitize("plain@example.jp") == "plain@example.jp"
    assert sanitize("a\\b") == "a\\\\b"
    assert sanitize("x" * 250) == "x" * 200 + "...(+50 chars)"
    assert sanitize("日本@example.jp") == "日本@example.jp"
