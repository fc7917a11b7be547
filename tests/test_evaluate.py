"""The evaluation harness: baselines on hand-checkable cases, scoring, CLI."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from authabuse.cli import main
from authabuse.errors import ConfigurationError
from authabuse.evaluate import (
    GeoSpreadBaseline,
    MethodResult,
    RateLimitBaseline,
    evaluate,
    percentile,
)
from authabuse.events import AuthAttempt, Delivery, Event, Submission, parse_ip
from authabuse.simulate import GroundTruth, simulate

T0 = datetime(2026, 3, 2, tzinfo=UTC)
_CLIENT = re.compile(
    r"^(\S+) \S+ \S+: [0-9A-F]+: client=[^\[]*\[([^\]]+)\], .*sasl_username=(\S+)$"
)


def sub(seconds: float, ip: str, account: str = "a@example.jp") -> Submission:
    return Submission(time=T0 + timedelta(seconds=seconds), ip=parse_ip(ip), account=account)


def test_rate_limit_counts_per_address_across_accounts() -> None:
    b = RateLimitBaseline(limit=3, window=10)
    got = [
        b.process(sub(0, "192.0.2.1", "x")),
        b.process(sub(1, "192.0.2.1", "y")),
        b.process(sub(2, "192.0.2.2", "z")),  # another address: its own count
        b.process(sub(3, "192.0.2.1", "x")),
        b.process(sub(4, "192.0.2.1", "y")),  # fourth in 10 s from .1: over the limit
        b.process(sub(14.5, "192.0.2.1", "x")),  # 0..4 have left the window
    ]
    assert got == [None, None, None, None, ("y", 2), None]
    assert b.process(AuthAttempt(time=T0, ip=parse_ip("192.0.2.1"), succeeded=False)) is None
    with pytest.raises(ConfigurationError):
        RateLimitBaseline(limit=0)


def test_rate_limit_window_edge_is_exclusive() -> None:
    b = RateLimitBaseline(limit=1, window=10)
    assert b.process(sub(0, "2001:db8::1")) is None
    assert b.process(sub(10, "2001:db8::1")) is None  # exactly one window later
    assert b.process(sub(11, "2001:db8::1")) == ("a@example.jp", 2)
    assert b.process(sub(11, "2001:db8::2")) is None  # IPv6 counted per address


def test_geo_spread_counts_ips_and_countries_in_24h() -> None:
    where = {"192.0.2.1": "PL", "192.0.2.2": "PL", "192.0.2.3": "IN", "192.0.2.4": None}
    b = GeoSpreadBaseline(
        country=lambda ip: where.get(str(ip)), max_countries=1, max_ips=3, window=86400
    )
    assert b.process(sub(0, "192.0.2.1")) is None
    assert b.process(sub(10, "192.0.2.2")) is None  # 2 IPs, 1 country
    assert b.process(sub(20, "192.0.2.4")) is None  # unknown country: an IP, not a country
    assert b.process(sub(30, "192.0.2.3")) == ("a@example.jp", 2)  # 2 countries, 4 IPs
    # A day later everything but the newest has expired.
    assert b.process(sub(86400 + 25, "192.0.2.3")) is None
    # Another account has its own counts.
    assert b.process(sub(86400 + 26, "192.0.2.1", "b")) is None
    assert b.process(Delivery(time=T0, queue_id="Q")) is None


def test_percentile_nearest_rank() -> None:
    assert percentile([5, 1, 3], 50) == 3
    assert percentile([1, 2], 50) == 1
    assert percentile(list(range(1, 101)), 90) == 90
    assert percentile([4], 90) == 4


def test_method_result_merges_runs() -> None:
    a, b = MethodResult("m"), MethodResult("m")
    a.recall["burst"] = [1, 1]
    b.recall["burst"] = [0, 1]
    b.false_positives["home"] = [2, 10000]
    a.mails_before, b.mails_before = [0, 4], [10]
    a.merge(b)
    assert a.recall_of("burst") == (1, 2)
    assert a.fp_per_10k == 2.0
    assert a.median_mails == 4
    assert a.p90_mails == 10


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evalsim")
    simulate(out, seed=4, accounts=300, days=2.5)
    return out


class _Always:
    """Flags every account at its first submission."""

    name = "always"

    def process(self, event: Event) -> tuple[str, int] | None:
        if isinstance(event, Submission) and event.account:
            return event.account, 2
        return None


class _Never:
    name = "never"

    def process(self, event: Event) -> tuple[str, int] | None:
        return None


def test_scoring_of_trivial_methods(sim: Path) -> None:
    truth = GroundTruth.load(sim)
    ev = evaluate(
        [sim],
        detector=False,
        extra={"always": lambda _geo: _Always(), "never": lambda _geo: _Never()},
    )
    always, never = ev.methods["always"], ev.methods["never"]
    sending = [(a, a.abuse) for a in truth.abused() if a.abuse and a.abuse.messages]
    assert always.recall_total == 1.0
    # Flagged at the first abusive event at the latest: before any abusive mail went out.
    assert always.mails_before == [0] * len(sending)
    legit_senders = [a for a in truth.legitimate() if a.messages > 0]
    assert always.fp_total == len(legit_senders)
    # Those who sent their own mail before the abuse began were flagged early too.
    first: dict[str, float] = {}
    with open(sim / "maillog", encoding="utf-8") as fh:
        for line in fh:
            m = _CLIENT.match(line.rstrip("\n"))
            if m is not None and m[3] not in first:
                first[m[3]] = datetime.fromisoformat(m[1]).timestamp()
    assert always.flagged_before_abuse == sum(1 for a, ab in sending if first[a.name] < ab.start)
    assert never.recall_total == 0.0
    assert never.fp_total == 0
    assert sorted(never.mails_before) == sorted(ab.messages for _, ab in sending)
    assert never.abusive_mails_before_flag == never.abusive_mails == sum(never.mails_before)
    assert len(ev.runs) == 1
    assert ev.runs[0]["events"] > 0


def test_postfwd_baseline_agrees_with_a_brute_force_count(sim: Path) -> None:
    """Recompute "more than 20 IPs in 24 h" per account from the raw log, naively."""
    seen: dict[str, list[tuple[float, str]]] = defaultdict(list)
    first: dict[str, float] = {}
    with open(sim / "maillog", encoding="utf-8") as fh:
        for line in fh:
            m = _CLIENT.match(line.rstrip("\n"))
            if m is None:
                continue
            t = datetime.fromisoformat(m[1]).timestamp()
            user = m[3]
            repeat = bool(seen[user]) and seen[user][-1][1] == m[2]
            seen[user].append((t, m[2]))
            if user not in first and not repeat:  # a repeated address adds nothing
                window = {ip for s, ip in seen[user] if s > t - 86400}
                if len(window) > 20:
                    first[user] = t
    truth = GroundTruth.load(sim)
    ev = evaluate([sim], detector=False, geo_limits=(10_000, 20))
    geo = ev.methods["postfwd-geo"]
    expected_fp = sorted(a.name for a in truth.legitimate() if a.name in first)
    assert sorted(geo.fp_accounts) == expected_fp
    expected_missed = sorted(
        a.name
        for a in truth.abused()
        if a.abuse and a.abuse.messages and (a.name not in first or first[a.name] < a.abuse.start)
    )
    assert sorted(geo.missed) == expected_missed


def test_evaluate_rejects_bad_options(sim: Path) -> None:
    with pytest.raises(ConfigurationError, match="level"):
        evaluate([sim], level="high")
    with pytest.raises(ConfigurationError, match="nothing"):
        evaluate([])


def test_cli_table_and_json(sim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(sim), "--no-detector"]) == 0
    out = capsys.readouterr().out
    assert "recall sprinkle" in out
    assert "FP per 10,000 legitimate" in out
    assert main(["evaluate", str(sim), "--no-detector", "--json", "--rate-limit", "10/60"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert set(data["methods"]) == {"rate-limit", "postfwd-geo"}
    rl = data["methods"]["rate-limit"]
    assert rl["name"] == "per-IP rate limit (>10 msgs/60 s)"
    assert set(rl["recall"]) <= {"sprinkle", "burst", "slow", "domestic", "domain_wave", "ip_reuse"}
    assert main(["evaluate", str(sim / "nothing-here"), "--no-detector"]) == 2
    assert "no ground truth" in capsys.readouterr().err


def test_cli_seeds_simulate_into_a_work_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["evaluate", str(tmp_path), "--seeds", "1", "2", "--accounts", "80", "--days", "1",
            "--no-detector", "--json"]  # fmt: skip
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["seed"] for r in data["runs"]] == [1, 2]
    assert len(list(tmp_path.iterdir())) == 2
    assert main(args) == 0  # reuses the simulations
    assert "simulating" not in capsys.readouterr().err


def test_cli_reports_a_missing_log_or_a_broken_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulate(tmp_path / "s", seed=3, accounts=20, days=0.25)
    (tmp_path / "s" / "maillog").unlink()
    assert main(["evaluate", str(tmp_path / "s"), "--no-detector"]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "truth.json").write_text('{"format": "authabuse-simulate/1", "accounts": 5}')
    assert main(["evaluate", str(tmp_path / "t"), "--no-detector"]) == 2
    assert "malformed ground truth" in capsys.readouterr().err
