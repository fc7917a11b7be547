"""Run the command line: ``python -m authabuse ...`` is the same as ``authabuse ...``."""

from __future__ import annotations

from authabuse.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
