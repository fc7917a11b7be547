"""Counters, gauges and a latency histogram rendered in the Prometheus text format.

Deliberately tiny: the policy servers run one event loop in one thread, so the hot path
is a dict increment. Rendering happens on the rare ``GET /metrics``.
"""

from __future__ import annotations

import bisect
import logging
import os
import resource
import sys
from collections.abc import Callable, Iterable
from typing import ClassVar

__all__ = ["LATENCY_BUCKETS", "Metrics", "process_memory_bytes"]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
"""Upper bounds (seconds) of the request-latency histogram buckets."""

log = logging.getLogger("authabuse.servers")

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_memory_bytes() -> int:
    """Resident set size of this process in bytes (``/proc``; peak RSS elsewhere).

    >>> process_memory_bytes() > 0
    True
    """
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


class Metrics:
    """Metrics of one policy server, rendered by :meth:`render` for ``/metrics``.

    Counters are keyed by ``(name, labels)`` where labels is a tuple of ``(key, value)``
    pairs; gauges are callables read at render time; one histogram records request
    latency.

    >>> m = Metrics("postfix")
    >>> m.inc("authabuse_requests_total", (("state", "RCPT"),))
    >>> m.observe(0.0003)
    >>> text = m.render()
    >>> 'authabuse_requests_total{server="postfix",state="RCPT"} 1' in text
    True
    >>> 'authabuse_request_duration_seconds_bucket{server="postfix",le="0.0005"} 1' in text
    True
    """

    HELP: ClassVar[dict[str, tuple[str, str]]] = {
        "authabuse_requests_total": ("counter", "Policy requests answered, by protocol state"),
        "authabuse_decisions_total": ("counter", "Answers given, by verdict level and action"),
        "authabuse_protocol_errors_total": (
            "counter",
            "Requests or connections refused as malformed, oversized, binary or slow",
        ),
        "authabuse_internal_errors_total": (
            "counter",
            "Requests whose decision raised; answered with the fail action",
        ),
        "authabuse_connections_total": ("counter", "Connections accepted"),
        "authabuse_connections_refused_total": (
            "counter",
            "Connections closed at once because the connection limit was reached",
        ),
        "authabuse_store_fallback_total": (
            "counter",
            "Times the shared store became unreachable and local state took over",
        ),
    }

    def __init__(self, server: str) -> None:
        self.server = server
        self._base = (("server", server),)
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self._bounds = LATENCY_BUCKETS
        self._buckets = [0] * (len(self._bounds) + 1)
        self._lat_sum = 0.0
        self._lat_count = 0

    def inc(self, name: str, labels: tuple[tuple[str, str], ...] = (), amount: int = 1) -> None:
        """Add ``amount`` to the counter ``name`` with ``labels``."""
        key = (name, labels)
        self.counters[key] = self.counters.get(key, 0) + amount

    def get(self, name: str, labels: tuple[tuple[str, str], ...] = ()) -> int:
        """Return the current value of a counter (0 when never incremented)."""
        return self.counters.get((name, labels), 0)

    def total(self, name: str) -> int:
        """Sum of a counter over all its label sets."""
        return sum(v for (n, _), v in self.counters.items() if n == name)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge whose value ``read()`` returns at render time."""
        self.gauges[name] = (help_text, read)

    def observe(self, seconds: float) -> None:
        """Record one request latency."""
        self._buckets[bisect.bisect_left(self._bounds, seconds)] += 1
        self._lat_sum += seconds
        self._lat_count += 1

    def latency_quantile(self, q: float) -> float:
        """Upper bucket bound below which a fraction ``q`` of latencies fell (inf if above)."""
        if not self._lat_count:
            return 0.0
        target = q * self._lat_count
        seen = 0
        for bound, n in zip(self._bounds, self._buckets, strict=False):
            seen += n
            if seen >= target:
                return bound
        return float("inf")

    def render(self) -> str:
        """Render the whole registry in the Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []
        by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], int]]] = {}
        for (name, labels), value in sorted(self.counters.items()):
            by_name.setdefault(name, []).append((labels, value))
        for name in sorted(set(by_name) | {"authabuse_requests_total"}):
            kind, help_text = self.HELP.get(name, ("counter", name))
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in by_name.get(name, []):
                out.append(f"{name}{_labels(self._base + labels)} {value}")
        hist = "authabuse_request_duration_seconds"
        out.append(f"# HELP {hist} Time from a complete request to its answer")
        out.append(f"# TYPE {hist} histogram")
        cumulative = 0
        for bound, n in zip(self._bounds, self._buckets, strict=False):
            cumulative += n
            out.append(f"{hist}_bucket{_labels((*self._base, ('le', repr(bound))))} {cumulative}")
        out.append(f"{hist}_bucket{_labels((*self._base, ('le', '+Inf')))} {self._lat_count}")
        out.append(f"{hist}_sum{_labels(self._base)} {self._lat_sum!r}")
        out.append(f"{hist}_count{_labels(self._base)} {self._lat_count}")
        gauges = dict(self.gauges)
        gauges.setdefault(
            "authabuse_process_resident_memory_bytes",
            ("Resident memory of the server process", lambda: float(process_memory_bytes())),
        )
        for name in sorted(gauges):
            help_text, read = gauges[name]
            try:
                reading = float(read())
            except Exception:  # a broken gauge must not break /metrics
                log.exception("gauge %s failed", name)
                continue
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name}{_labels(self._base)} {_num(reading)}")
        return "\n".join(out) + "\n"
