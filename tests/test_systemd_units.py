"""The systemd units in examples/systemd: valid for systemd, hardened, and runnable.

``systemd-analyze verify`` checks each unit as systemd would load it (with the
``authabuse`` this test runs in place of ``/usr/local/bin/authabuse``), ``systemd-analyze
security --offline`` scores its sandboxing, and the ``ExecStart`` command line is parsed
by authabuse's own command line, so an option renamed in the code fails here.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from authabuse.cli import _build_parser

UNITS = sorted((Path(__file__).resolve().parents[1] / "examples" / "systemd").glob("*.service"))
ANALYZE = shutil.which("systemd-analyze")
AUTHABUSE = Path(sys.executable).with_name("authabuse")


def test_there_is_a_unit_per_long_running_command() -> None:
    assert [u.name for u in UNITS] == [
        "authabuse-dovecot.service",
        "authabuse-postfix.service",
        "authabuse-watch.service",
    ]


def _exec_start(unit: Path) -> list[str]:
    text = unit.read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_exec_start_is_a_valid_authabuse_command_line(unit: Path) -> None:
    argv = _exec_start(unit)
    assert argv[0] == "/usr/local/bin/authabuse"
    args = _build_parser().parse_args(
        [a.replace("${CREDENTIALS_DIRECTORY}", "/run/credentials/x") for a in argv[1:]]
    )
    assert args.func is not None
    assert args.state.startswith("/var/lib/authabuse/")  # StateDirectory=authabuse
    # the control socket in the unit's own runtime directory (`authabuse state --control`)
    name = unit.name.removesuffix(".service")
    assert args.control == f"/run/{name}/control"
    assert f"RuntimeDirectory={name}\n" in unit.read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit.read_text()


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is needed (apt: systemd)")
@pytest.mark.skipif(not AUTHABUSE.exists(), reason="the authabuse console script is not installed")
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_accepts_the_unit_and_rates_its_sandbox(unit: Path, tmp_path: Path) -> None:
    assert ANALYZE is not None
    local = tmp_path / unit.name
    local.write_text(unit.read_text().replace("/usr/local/bin/authabuse", str(AUTHABUSE)))
    verify = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(local)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == ""
    security = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(local)],
        capture_output=True,
        text=True,
        check=False,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout + security.stderr)
    assert m is not None, security.stdout + security.stderr
    assert float(m.group(1)) <= 2.0  # systemd's "OK" band starts at 2.0 and below is safer
