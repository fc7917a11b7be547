from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_simulates_scans_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "authabuse", "demo", "--out", str(out), "--accounts", "150",
         "--days", "1", "--seed", "3", "--no-figures"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "maillog").stat().st_size > 0
    report = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="accounts"' in report or "No account reached" in report
    m = re.search(
        r"the simulation abused (\d+) accounts; (\d+) of them reached 'abuse'", proc.stdout
    )
    assert m, proc.stdout[-2000:]
    abused, caught = int(m.group(1)), int(m.group(2))
    assert abused > 0
    assert 0 <= caught <= abused
    # every account the table printed is in the report
    printed = re.findall(
        r"^(?:abuse|suspicious)\s+\S+\s+\S+\s+\d+\s+\d+\s+(\S+)$", proc.stdout, re.M
    )
    assert len(printed) >= caught
    for account in printed:
        assert account in report


def test_demo_rejects_zero_accounts(tmp_path: Path) -> None:
    from authabuse.cli import main

    assert main(["demo", "--out", str(tmp_path / "d"), "--accounts", "0", "--days", "1"]) == 2
