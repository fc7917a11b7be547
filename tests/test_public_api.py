"""Freeze the public API: a change to ``authabuse.__all__`` must be deliberate."""

from __future__ import annotations

import authabuse

EXPECTED = [
    "AccountInfo",
    "Allowlist",
    "AuthAbuseError",
    "AuthAttempt",
    "Condition",
    "ConfigurationError",
    "CorruptDataError",
    "CounterStore",
    "Delivery",
    "Detector",
    "DetectorConfig",
    "DetectorStats",
    "Event",
    "F",
    "Finding",
    "GeoDataError",
    "GeoResolver",
    "HyperLogLog",
    "IPAddress",
    "IncompatibleError",
    "InvalidEventError",
    "Level",
    "Location",
    "LogParser",
    "MemoryStore",
    "MissingExtraError",
    "ParseError",
    "ParseStats",
    "Policy",
    "RedisStore",
    "Rule",
    "RuleSet",
    "Submission",
    "Verdict",
    "__version__",
    "default_rules",
    "event_from_dict",
    "event_from_json",
    "iter_events",
    "load_rules",
    "parse_condition",
    "parse_ip",
    "parse_line",
]


def test_all_is_frozen_and_sorted() -> None:
    assert authabuse.__all__ == EXPECTED
    assert sorted(authabuse.__all__) == authabuse.__all__


def test_every_public_name_exists_and_is_documented() -> None:
    for name in authabuse.__all__:
        obj = getattr(authabuse, name)
        if name in {"__version__", "Event", "IPAddress"}:
            continue
        doc = getattr(obj, "__doc__", None) or ""
        assert doc.strip(), f"{name} has no docstring"
        assert ">>>" in doc, f"{name}'s docstring has no example"


def test_errors_inherit_builtins() -> None:
    assert issubclass(authabuse.ConfigurationError, ValueError)
    assert issubclass(authabuse.ParseError, ValueError)
    assert issubclass(authabuse.MissingExtraError, ImportError)
    for name in authabuse.__all__:
        obj = getattr(authabuse, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, authabuse.AuthAbuseError)
