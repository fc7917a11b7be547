"""Counters that describe one parsing run: what was read, kept, skipped and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ParseStats"]

_EXAMPLES = 5  # line numbers kept per kind of problem (memory stays bounded)


@dataclass
class ParseStats:
    """What a parser saw: lines read, events by type, and every kind of skipped line.

    ``irrelevant`` lines are well-formed lines that carry nothing authabuse uses (a
    ``connect from`` line, another program's line); ``unrecognized`` lines match no known
    log format at all; ``malformed`` lines look like a line we use but cannot be parsed
    (truncated, an invalid IP: those are also counted in ``invalid_ip``); ``too_long`` lines
    exceeded the length cap and were skipped unread; ``non_utf8`` lines held bytes that are
    not UTF-8 (parsed anyway, the bad bytes replaced by U+FFFD). ``expired_joins`` counts
    submissions emitted because their queue id waited too long for the rest of its lines
    (or the bound on pending joins was reached); ``unfinished_joins`` those emitted at the
    end of input before their queue id completed; ``read_errors`` inputs that could not be
    read to their end (a truncated or corrupt ``.gz``: the lines before it were used, and
    reading goes on with the next input). For each kind of problem the first few
    ``(source, line number, reason)`` are kept in ``examples``.

    >>> s = ParseStats()
    >>> s.lines, s.malformed
    (0, 0)
    >>> s.note("malformed", "mail.log", 7, "truncated client= field")
    >>> s.malformed, s.examples["malformed"]
    (1, [('mail.log', 7, 'truncated client= field')])
    """

    lines: int = 0
    events: Counter[str] = field(default_factory=Counter)
    used: int = 0
    irrelevant: int = 0
    unrecognized: int = 0
    malformed: int = 0
    invalid_ip: int = 0
    too_long: int = 0
    non_utf8: int = 0
    expired_joins: int = 0
    unfinished_joins: int = 0
    read_errors: int = 0
    examples: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)

    def note(self, kind: str, source: str, lineno: int, reason: str) -> None:
        """Count one problem line of ``kind`` and keep its place if among the first few."""
        setattr(self, kind, getattr(self, kind) + 1)
        seen = self.examples.setdefault(kind, [])
        if len(seen) < _EXAMPLES:
            seen.append((source, lineno, reason[:200]))

    def to_dict(self) -> dict[str, Any]:
        """Return the counters as a JSON-ready mapping.

        >>> ParseStats(lines=3, irrelevant=3).to_dict()["irrelevant"]
        3
        """
        return {
            "lines": self.lines,
            "events": dict(sorted(self.events.items())),
            "used": self.used,
            "irrelevant": self.irrelevant,
            "unrecognized": self.unrecognized,
            "malformed": self.malformed,
            "invalid_ip": self.invalid_ip,
            "too_long": self.too_long,
            "non_utf8": self.non_utf8,
            "expired_joins": self.expired_joins,
            "unfinished_joins": self.unfinished_joins,
            "read_errors": self.read_errors,
            "examples": {k: [list(e) for e in v] for k, v in sorted(self.examples.items())},
        }

    def summary(self) -> str:
        """Return a short human-readable report, one fact per line (for stderr).

        >>> print(ParseStats(lines=2, irrelevant=2).summary())
        lines read: 2
        events: none
        irrelevant lines skipped: 2
        """
        out = [f"lines read: {self.lines}"]
        if self.events:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.events.items()))
            out.append(f"events: {sum(self.events.values())} ({kinds})")
        else:
            out.append("events: none")
        out.append(f"irrelevant lines skipped: {self.irrelevant}")
        for kind, label in (
            ("unrecognized", "lines in no known format"),
            ("malformed", "malformed lines"),
            ("invalid_ip", "  of which invalid IP addresses"),
            ("too_long", "over-long lines skipped"),
            ("non_utf8", "lines with non-UTF-8 bytes (replaced)"),
            ("expired_joins", "submissions emitted on join expiry"),
            ("unfinished_joins", "submissions incomplete at end of input"),
            ("read_errors", "inputs cut short by a read error (e.g. a truncated .gz)"),
        ):
            count = getattr(self, kind)
            if not count:
                continue
            line = f"{label}: {count}"
            seen = self.examples.get(kind)
            if seen:
                places = ", ".join(f"{src}:{no}" for src, no, _ in seen)
                more = ", ..." if count > len(seen) else ""
                line += f" (first at {places}{more}; {seen[0][2]})"
            out.append(line)
        return "\n".join(out)
