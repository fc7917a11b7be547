"""Detector.reload: new rules and geo data on a running detector, its learning kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from authabuse import Detector
from authabuse.counters import MemoryStore
from authabuse.errors import ConfigurationError
from authabuse.events import Submission, parse_ip
from authabuse.geo import RangeTable
from authabuse.rules import load_rules

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NEVER = load_rules(
    "never.toml", text='[[rule]]\nname = "never"\nwhen = "ips_1h > 1000"\nscore = 100\n'
)
THREE = load_rules(
    "three.toml", text='[[rule]]\nname = "three-ips"\nwhen = "ips_1h >= 3"\nscore = 100\n'
)
DOMAINS = load_rules(
    "domains.toml",
    text='[[rule]]\nname = "domains"\nwhen = "rcpt_domains_1h >= 5"\nscore = 100\n',
)


def _geo(tmp_path: Path, name: str, cc: str) -> RangeTable:
    path = tmp_path / f"{name}.csv"
    path.write_text(f"11.0.0.0,11.255.255.255,{cc}\n")
    return RangeTable.from_csv(path)


def _mail(det: Detector, account: str, ip: str, minutes: int) -> Any:
    return det.process(
        Submission(
            time=T0 + timedelta(minutes=minutes),
            ip=parse_ip(ip),
            account=account,
            recipients=(f"r{minutes}@example.org",),
        )
    )


@pytest.mark.parametrize("backend", ["compact", "store"])
def test_reload_swaps_rules_and_keeps_what_was_learned(tmp_path: Path, backend: str) -> None:
    kw: dict[str, Any] = {"rules": NEVER, "geo": _geo(tmp_path, "a", "JP")}
    if backend == "store":
        kw["store"] = MemoryStore(retention=2 * 86400)
    det = Detector(**kw)
    for i in range(3):
        assert _mail(det, "mallory@example.jp", f"11.0.0.{i + 1}", i).level.name == "OK"
    det.reload(rules=THREE)
    assert [r.name for r in det.rules.rules] == ["three-ips"]
    # the three addresses seen before the reload still count: the fourth message is abuse
    v = _mail(det, "mallory@example.jp", "11.0.0.4", 4)
    assert v.level.name == "ABUSE"
    assert [f.rule for f in v.findings] == ["three-ips"]
    assert _mail(det, "alice@example.jp", "11.0.0.9", 5).level.name == "OK"
    # rules reading what the detector does not keep are refused, and change nothing
    with pytest.raises(ConfigurationError, match="rcpt_domains"):
        det.reload(rules=DOMAINS)
    assert [r.name for r in det.rules.rules] == ["three-ips"]
    if backend == "store":  # the store keeps recipient memory only for rules that read it
        rcpts = load_rules(
            "r.toml", text='[[rule]]\nname = "r"\nwhen = "new_rcpts_1h >= 5"\nscore = 1\n'
        )
        with pytest.raises(ConfigurationError, match="new_rcpts_1h"):
            det.reload(rules=rcpts)
    assert _mail(det, "mallory@example.jp", "11.0.0.5", 6).level.name == "ABUSE"


def test_reload_of_geo_data_places_addresses_again(tmp_path: Path) -> None:
    det = Detector(rules=NEVER, geo=_geo(tmp_path, "a", "JP"))
    assert _mail(det, "alice@example.jp", "11.0.0.1", 0).country == "JP"
    det.reload(geo=_geo(tmp_path, "b", "BR"))
    # the same address, looked up again in the new data (not from the old lookup's cache)
    assert _mail(det, "alice@example.jp", "11.0.0.1", 1).country == "BR"
    det.reload(geo=False)  # no geo data at all
    assert _mail(det, "alice@example.jp", "11.0.0.1", 2).country is None


def test_a_rule_set_with_bad_windows_is_refused_before_anything_changes(tmp_path: Path) -> None:
    det = Detector(rules=THREE, geo=None)
    bad = load_rules("bad.toml", text='[[rule]]\nname = "w"\nwhen = "ips_6h >= 3"\nscore = 1\n')
    with pytest.raises(ConfigurationError, match="windows are 1h and 24h"):
        det.reload(rules=bad)
    assert [r.name for r in det.rules.rules] == ["three-ips"]
