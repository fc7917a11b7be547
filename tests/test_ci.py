"""The README's two commands and .ci/run must not drift apart."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```sh\n(.*?)```", text, re.S)
    assert match, "README.md must start with a ```sh block of two commands"
    return [line for line in match.group(1).splitlines() if line.strip()]


def test_readme_has_exactly_two_setup_commands_first() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.index("```sh") < 200, "the set-up commands come first"
    assert len(readme_commands()) == 2


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines()


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "authabuse", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("authabuse ")
