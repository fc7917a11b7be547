"""authabuse: detect abused SMTP AUTH credentials, from logs and in the mail path.

Criminals steal mail customers' passwords and let botnets send spam through the
provider's own submission servers. authabuse turns server logs and policy requests into
events, places their source addresses, counts per account what a botnet cannot hide
(distinct IPs, networks, countries, volume, destinations) and scores it with
explainable rules.

>>> import authabuse
>>> authabuse.parse_ip("::ffff:192.0.2.1")
IPv4Address('192.0.2.1')
"""

from __future__ import annotations

from authabuse.counters import CounterStore, HyperLogLog, MemoryStore
from authabuse.detector import AccountInfo, Detector, DetectorConfig, DetectorStats
from authabuse.errors import (
    AuthAbuseError,
    ConfigurationError,
    CorruptDataError,
    GeoDataError,
    IncompatibleError,
    InvalidEventError,
    MissingExtraError,
    ParseError,
)
from authabuse.events import (
    AuthAttempt,
    Delivery,
    Event,
    IPAddress,
    Submission,
    event_from_dict,
    event_from_json,
    parse_ip,
)
from authabuse.geo import GeoResolver, Location
from authabuse.parsers import LogParser, ParseStats, iter_events, parse_line
from authabuse.redis_store import RedisStore
from authabuse.rules import (
    Allowlist,
    Condition,
    F,
    Finding,
    Level,
    Policy,
    Rule,
    RuleSet,
    Verdict,
    default_rules,
    load_rules,
    parse_condition,
)

__version__ = "0.1.0.dev0"

__all__ = [
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
