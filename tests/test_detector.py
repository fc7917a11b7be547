"""The detector on scenarios built from events: personas, abuse patterns, state, bounds."""

# ruff: noqa: S311 - seeded, reproducible scenario generators, not crypto

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authabuse.detector import STATE_VERSION, Detector, DetectorConfig, _unpack, _Win
from authabuse.errors import ConfigurationError, CorruptDataError, IncompatibleError
from authabuse.events import AuthAttempt, Delivery, Event, Submission, parse_ip
from authabuse.rules import Allowlist, Condition, F, Level, Rule, RuleSet, default_rules

T0 = datetime(2024, 5, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Place:
    country: str | None
    asn: int | None
    network: object = None
    org: str | None = None
    routable: bool = True


class BlockGeo:
    """A geo table for scenarios: the /16 of an address decides country and ASN.

    ``10.x`` and ``2001:db8:x`` blocks are domestic (JP); bot blocks spread over the world.
    """

    BOT_COUNTRIES = ("PL", "IN", "PL", "IN", "PL", "IN", "AR", "ZA", "RO", "BG", "UA", "BR",
                     "VN", "TR", "MX", "ID", "EG", "CZ", "HU", "RS", "CO", "PE", "TH", "PH",
                     "MA", "DZ", "KE", "NG", "PK", "BD", "CL", "IR", "GE", "AM", "KZ")  # fmt: skip

    def resolve(self, ip: IPv4Address | IPv6Address) -> Place | None:  # noqa: PLR0911 - one per block
        if ip.version == 6:
            return Place("JP", 2500 + ((int(ip) >> 80) & 0xFF))
        v = int(ip)
        a, b = v >> 24, (v >> 16) & 0xFF
        if a == 10:
            return Place("JP", 2500 + b)  # domestic ISPs
        if a == 100:
            return Place("JP", 9605)  # a mobile carrier's CGNAT pool
        if a == 185:
            return Place(["NL", "DE", "SE", "US", "GB"][b % 5], 9009)  # one VPN provider
        if a == 11:
            return Place("FR", 3215 + b % 3)  # France
        if a == 192:
            return None
        return Place(
            self.BOT_COUNTRIES[(a * 7 + b) % len(self.BOT_COUNTRIES)], 40000 + (v >> 16) % 5000
        )


def sub(
    t: datetime, ip: str | IPv4Address | IPv6Address, account: str, rcpt: str = "x@example.org"
) -> Submission:
    return Submission(
        time=t, ip=ip_address(str(ip)), account=account, recipient_count=1, recipients=(rcpt,)
    )


def bot_ip(rnd: random.Random) -> IPv4Address:
    while True:
        a = rnd.choice(
            [
                31,
                37,
                41,
                46,
                59,
                78,
                89,
                103,
                110,
                117,
                122,
                151,
                176,
                177,
                181,
                186,
                190,
                197,
                200,
                212,
            ]
        )
        v = (a << 24) | rnd.randrange(1 << 24)
        return IPv4Address(v)


def days_of(start: datetime, days: int, per_day: int, rnd: random.Random) -> Iterator[datetime]:
    for d in range(days):
        for t in sorted(rnd.uniform(7 * 3600, 23 * 3600) for _ in range(per_day)):
            yield start + timedelta(days=d, seconds=t)


def persona(kind: str, account: str, rnd: random.Random, days: int = 6) -> list[Event]:  # noqa: PLR0912 - one branch per persona
    """Legitimate traffic of one kind of customer."""
    out: list[Event] = []
    home = IPv4Address((10 << 24) | (rnd.randrange(256) << 16) | rnd.randrange(1 << 16))
    if kind == "home":
        out += [sub(t, home, account) for t in days_of(T0, days, 4, rnd)]
    elif kind == "mobile":  # CGNAT: a new address every hour
        for t in days_of(T0, days, 8, rnd):
            out.append(
                sub(
                    t,
                    IPv4Address((100 << 24) | (64 << 16) | (int(t.timestamp()) // 3600) % 65536),
                    account,
                )
            )
    elif kind == "ipv6":  # privacy addresses: random interface id, same /64
        prefix = (0x20010DB8 << 96) | (rnd.randrange(256) << 80) | (rnd.randrange(1 << 16) << 64)
        out += [
            sub(t, IPv6Address(prefix | rnd.getrandbits(64)), account)
            for t in days_of(T0, days, 6, rnd)
        ]
    elif kind == "office":  # a dozen addresses of the office's ISP
        ips = [IPv4Address(int(home) + i) for i in range(12)]
        out += [sub(t, rnd.choice(ips), account) for t in days_of(T0, days, 30, rnd)]
    elif kind == "traveller":  # home, then three days in France (hotel + roaming)
        for i, t in enumerate(days_of(T0, days, 6, rnd)):
            if t < T0 + timedelta(days=3):
                out.append(sub(t, home, account))
            else:
                ip = IPv4Address((11 << 24) | ((i % 2) << 16) | rnd.randrange(1 << 16))
                out.append(sub(t, ip, account))
    elif kind == "vpn":  # one provider, exits in five countries
        out += [
            sub(
                t,
                IPv4Address((185 << 24) | (rnd.randrange(5) << 16) | rnd.randrange(1 << 16)),
                account,
            )
            for t in days_of(T0, days, 6, rnd)
        ]
    elif kind == "abroad":  # a customer living in Brazil
        ip = IPv4Address((177 << 24) | (5 << 16) | rnd.randrange(1 << 16))
        out += [sub(t, ip, account) for t in days_of(T0, days, 5, rnd)]
    elif kind == "bulk":  # a newsletter sender: thousands a day, from one address
        for d in range(days):
            base = T0 + timedelta(days=d, hours=9)
            out += [
                sub(base + timedelta(seconds=0.3 * i), home, account, f"r{i}@d{i % 400}.example")
                for i in range(2000)
            ]
    else:  # pragma: no cover - test programming error
        raise AssertionError(kind)
    return out


def sprinkle(account: str, start: datetime, rnd: random.Random, mails: int = 300) -> list[Event]:
    """Pattern B: each of hundreds of bot addresses sends a mail or two, world-wide."""
    return [
        sub(start + timedelta(seconds=12 * i + rnd.random()), bot_ip(rnd), account)
        for i in range(mails)
    ]


def burst(account: str, start: datetime, rnd: random.Random, mails: int = 600) -> list[Event]:
    """Pattern A: one bot address sends several mails per second for a while."""
    ip = bot_ip(rnd)
    return [sub(start + timedelta(seconds=0.3 * i), ip, account) for i in range(mails)]


def run(det: Detector, events: list[Event]) -> dict[str, tuple[int, int | None]]:
    """Process events in time order; per account: (mails seen, index of first flag)."""
    seen: dict[str, int] = {}
    first: dict[str, int | None] = {}
    for e in sorted(events, key=lambda e: e.time):
        v = det.process(e)
        acct = getattr(e, "account", None)
        if acct is None:
            continue
        seen[acct] = seen.get(acct, 0) + 1
        first.setdefault(acct, None)
        if v.level >= Level.SUSPICIOUS and first[acct] is None:
            first[acct] = seen[acct]
    return {a: (seen[a], first[a]) for a in seen}


PERSONAS = ["home", "mobile", "ipv6", "office", "traveller", "vpn", "abroad", "bulk"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_legitimate_personas_are_not_flagged_and_abuse_is(seed: int) -> None:
    rnd = random.Random(seed)
    events: list[Event] = []
    for kind in PERSONAS:
        for i in range(3):
            events += persona(kind, f"{kind}{i}@example.jp", rnd)
    abuse_start = T0 + timedelta(days=4, hours=rnd.randrange(24))
    victims = {}
    for i in range(3):
        home = persona("home", f"victim-s{i}@example.jp", rnd)
        victims[f"victim-s{i}@example.jp"] = [e for e in home if e.time < abuse_start]
        events += victims[f"victim-s{i}@example.jp"] + sprinkle(
            f"victim-s{i}@example.jp", abuse_start, rnd
        )
        home = persona("home", f"victim-b{i}@example.jp", rnd)
        victims[f"victim-b{i}@example.jp"] = [e for e in home if e.time < abuse_start]
        events += victims[f"victim-b{i}@example.jp"] + burst(
            f"victim-b{i}@example.jp", abuse_start, rnd
        )
    result = run(Detector(geo=BlockGeo()), events)
    for kind in PERSONAS:
        for i in range(3):
            assert result[f"{kind}{i}@example.jp"][1] is None, f"{kind} flagged"
    for account, before in victims.items():
        _seen, flagged = result[account]
        assert flagged is not None, f"{account} not flagged"
        assert flagged - len(before) <= 5, f"{account}: {flagged - len(before)} abusive mails"


def test_verdict_explains_itself() -> None:
    rnd = random.Random(7)
    det = Detector(geo=BlockGeo())
    for e in persona("home", "a@example.jp", rnd, days=3):
        det.process(e)
    verdicts = [
        det.process(e) for e in sprinkle("a@example.jp", T0 + timedelta(days=3, hours=12), rnd, 8)
    ]
    v = next(v for v in verdicts if v.flagged)
    assert v.level == Level.ABUSE
    assert v.action == "block"
    f = next(f for f in v.findings if f.rule == "sprinkle")
    assert "new_countries_1h=" in f.detail
    assert "(limit >= 3)" in f.detail
    assert "usually AS" in f.detail
    assert "JP" in f.detail
    ev = f.evidence
    assert ev["features"]["new_asns_1h"]["limit"] == 4
    assert ev["features"]["network_usual"] is False
    assert sum(n for _, n in ev["countries"]) >= 4
    assert "JP" in ev["usual"]
    assert v.explain().startswith("a@example.jp: abuse (score")


def test_check_is_pure_and_agrees_with_process() -> None:
    rnd = random.Random(11)
    events = persona("office", "o@example.jp", rnd, days=2) + sprinkle(
        "o@example.jp", T0 + timedelta(days=1, hours=20), rnd, 40
    )
    events.sort(key=lambda e: e.time)
    det = Detector(geo=BlockGeo())
    for e in events:
        before = det._dump()
        checked = det.check(e)
        assert det._dump() == before
        processed = det.process(e)
        assert (checked.level, checked.score) == (processed.level, processed.score)
        # Feature values and limits agree exactly; the countries/networks lists of a
        # flooded window (> 64 messages) are refreshed by process() every 10 % only.
        assert [(f.rule, f.evidence["features"]) for f in checked.findings] == [
            (f.rule, f.evidence["features"]) for f in processed.findings
        ]


event_times = st.lists(
    st.tuples(
        st.integers(0, 5 * 86400),
        st.integers(0, 40),
        st.integers(0, 3),
        st.sampled_from(["s", "ok", "fail"]),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_times)
def test_check_agrees_with_process_on_random_streams(
    items: list[tuple[int, int, int, str]],
) -> None:
    det = Detector(geo=BlockGeo(), config=DetectorConfig(exact_limit=8))
    for sec, ipn, acct, kind in sorted(items):
        t = T0 + timedelta(seconds=sec)
        ip = IPv4Address((37 << 24) | (ipn << 16) | 5) if ipn % 3 else IPv4Address((10 << 24) | ipn)
        account = f"u{acct}@example.jp"
        e: Event
        if kind == "s":
            e = sub(t, ip, account)
        else:
            e = AuthAttempt(time=t, ip=ip, account=account, succeeded=kind == "ok")
        checked = det.check(e)
        processed = det.process(e)
        assert (checked.level, checked.score) == (processed.level, processed.score)
        assert [f.detail for f in checked.findings] == [f.detail for f in processed.findings]


def test_cross_account_signals() -> None:
    rnd = random.Random(5)
    det = Detector(geo=BlockGeo())
    history = [
        e
        for acct in ("a@corp.example", "b@corp.example", "c@corp.example", "z@other.example")
        for e in persona("home", acct, rnd, days=3)
    ]
    for e in sorted(history, key=lambda e: e.time):
        det.process(e)
    assert det.stats.too_late == 0
    t = T0 + timedelta(days=3, hours=10)
    # a sprinkle on a: flagged; its addresses are then known abuse addresses
    bots = [bot_ip(rnd) for _ in range(30)]
    for i, ip in enumerate(bots):
        det.process(sub(t + timedelta(seconds=10 * i), ip, "a@corp.example"))
    t2 = t + timedelta(minutes=10)
    v = det.process(sub(t2, bots[-1], "z@other.example"))
    assert "known-abuse-ip" in [f.rule for f in v.findings]
    assert v.features["ip_in_abuse"]
    assert v.features["ip_accounts_24h"] == 2
    # the same domain: a second account with two new networks is caught by the wave
    det.process(sub(t2, bot_ip(rnd), "b@corp.example"))
    v = det.process(sub(t2 + timedelta(seconds=5), bot_ip(rnd), "b@corp.example"))
    assert "domain-wave" in [f.rule for f in v.findings]
    assert v.features["domain_flagged_1h"] == 1
    wave = next(f for f in v.findings if f.rule == "domain-wave")
    assert wave.evidence["domain_flagged"] == ["a@corp.example"]


def test_allowlists_and_mark_benign() -> None:
    rnd = random.Random(9)
    rules = RuleSet(
        default_rules().rules,
        default_rules().policy,
        Allowlist(accounts=["vip@example.jp"], networks=["31.0.0.0/8"], asns=[40001]),
    )
    det = Detector(geo=BlockGeo(), rules=rules)
    t = T0 + timedelta(hours=10)
    evs = sprinkle("vip@example.jp", t, rnd, 50)
    assert all(det.process(e).level == Level.OK for e in evs)
    v = det.process(sub(t, "31.1.2.3", "x@example.jp"))
    assert v.level == Level.OK
    assert det.stats.allowlisted == 51
    # mark_benign: a flagged traveller's new networks become usual
    det2 = Detector(geo=BlockGeo())
    for e in persona("home", "t@example.jp", rnd, days=2):
        det2.process(e)
    t = T0 + timedelta(days=2, hours=10)
    trip = [IPv4Address((a << 24) | 0x10203) for a in (31, 37, 41, 46, 59, 78)]
    flagged = [
        det2.process(sub(t + timedelta(minutes=i), ip, "t@example.jp")).level
        for i, ip in enumerate(trip)
    ]
    assert max(flagged) >= Level.SUSPICIOUS
    det2.mark_benign("t@example.jp")
    again = [
        det2.process(sub(t + timedelta(minutes=30 + i), ip, "t@example.jp"))
        for i, ip in enumerate(trip)
    ]
    assert all(v.level == Level.OK for v in again), [v.explain() for v in again]


def test_events_out_of_order_are_counted_and_bounded() -> None:
    det = Detector(geo=BlockGeo(), config=DetectorConfig(reorder_tolerance=600))
    det.process(sub(T0 + timedelta(hours=2), "10.0.0.1", "a@example.jp"))
    det.process(sub(T0 + timedelta(hours=2, minutes=-5), "10.0.0.1", "a@example.jp"))
    det.process(sub(T0, "10.0.0.1", "a@example.jp"))
    det.process(Delivery(time=T0, queue_id="Q"))
    det.process(
        AuthAttempt(time=T0 + timedelta(hours=2), ip=ip_address("10.0.0.9"), succeeded=False)
    )
    s = det.stats
    assert (s.events, s.reordered, s.too_late, s.ignored, s.no_account) == (3, 1, 1, 1, 1)


def test_memory_is_bounded_and_idle_accounts_expire() -> None:
    det = Detector(geo=BlockGeo(), config=DetectorConfig(max_accounts=1000, idle_ttl=3 * 86400))
    for i in range(5000):
        det.process(sub(T0 + timedelta(seconds=i), IPv4Address((10 << 24) + i), f"u{i}@example.jp"))
    assert len(det) <= 1000
    assert det.stats.evicted_accounts >= 4000
    det.process(sub(T0 + timedelta(days=5), "10.9.9.9", "late@example.jp"))
    det.process(sub(T0 + timedelta(days=5, hours=1), "10.9.9.9", "late@example.jp"))
    assert len(det) == 1
    assert det.stats.expired_accounts >= 1
    usage = det.memory_usage()
    assert usage["accounts"] == 1
    assert usage["bytes"] > 0


def test_a_quiet_account_costs_at_most_400_bytes() -> None:
    """Measured with tracemalloc: 4,000 accounts that sent mail and went quiet.

    Each message has eleven recipients, so every account's recipient memory is full
    (32 of 33 remembered): the worst case. Garbage is collected before each reading, so
    what is measured is what the detector keeps.
    """
    rnd = random.Random(3)
    det = Detector(geo=BlockGeo())
    names = [f"customer{i:06d}@example.ne.jp" for i in range(4_000)]
    det.process(sub(T0, "10.0.0.1", "warmup@example.jp"))
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for day in range(3):
        times = sorted((rnd.randrange(80_000), name) for name in names)
        for sec, name in times:
            ip = IPv4Address((10 << 24) | (hash(name) & 0xFFFFFF))
            rcpts = [f"c{day}-{k}@example.org" for k in range(11)]
            det.process(mail(T0 + timedelta(days=day, seconds=sec), str(ip), name, *rcpts))
    assert det.stats.too_late == 0
    # two days later every account is quiet: its windows are folded into its baseline
    det.process(sub(T0 + timedelta(days=5, hours=1), "10.0.0.1", "warmup@example.jp"))
    det._geo_cache.clear()
    del times
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    per_account = used / len(names)
    assert per_account <= 400, per_account
    print(f"quiet account: {per_account:.0f} bytes")
    packed = [a for a in det._accts.values() if isinstance(a, bytes)]
    assert len(packed) >= 4_000
    assert all(_unpack(a).rknown is not None and len(_unpack(a).rknown or ()) == 32 for a in packed)


def test_state_round_trip_continues_identically(tmp_path: Path) -> None:
    rnd = random.Random(21)
    events = persona("mobile", "m@example.jp", rnd, 3) + persona("home", "h@example.jp", rnd, 3)
    events += sprinkle("h@example.jp", T0 + timedelta(days=2, hours=20), rnd, 100)
    events.sort(key=lambda e: e.time)
    half = len(events) // 2
    one = Detector(geo=BlockGeo(), config=DetectorConfig(exact_limit=16))
    whole = [one.process(e) for e in events]
    two = Detector(geo=BlockGeo(), config=DetectorConfig(exact_limit=16))
    first = [two.process(e) for e in events[:half]]
    path = tmp_path / "state"
    two.save(path)
    assert not [p for p in tmp_path.iterdir() if p.name != "state"]  # no temporary left
    three = Detector.load(path, geo=BlockGeo())
    second = [three.process(e) for e in events[half:]]
    assert [(v.level, v.score) for v in whole] == [(v.level, v.score) for v in first + second]
    assert three.stats == one.stats
    assert any(v.level == Level.ABUSE for v in second)


def test_corrupt_and_foreign_state_files_are_refused(tmp_path: Path) -> None:
    det = Detector(geo=None)
    det.process(sub(T0, "10.0.0.1", "a@example.jp"))
    path = tmp_path / "state"
    det.save(path)
    raw = path.read_bytes()
    (tmp_path / "flip").write_bytes(raw[:-10] + bytes([raw[-10] ^ 1]) + raw[-9:])
    with pytest.raises(CorruptDataError, match="checksum"):
        Detector.load(tmp_path / "flip", geo=None)
    (tmp_path / "cut").write_bytes(raw[:-5])
    with pytest.raises(CorruptDataError, match="truncated"):
        Detector.load(tmp_path / "cut", geo=None)
    version = f'"version": {STATE_VERSION}'.encode()
    (tmp_path / "other").write_bytes(raw.replace(version, b'"version": 99', 1))
    with pytest.raises(IncompatibleError, match="version 99"):
        Detector.load(tmp_path / "other", geo=None)
    (tmp_path / "junk").write_bytes(b"hello world\n")
    with pytest.raises(CorruptDataError, match="not an authabuse detector state"):
        Detector.load(tmp_path / "junk", geo=None)
    with pytest.raises(IncompatibleError, match="windows"):
        Detector.load(path, geo=None, config=DetectorConfig(short_window=1800))
    with pytest.raises(CorruptDataError, match="cannot read"):
        Detector.load(tmp_path / "absent", geo=None)


def test_state_with_sketches_of_an_older_hash_is_incompatible(tmp_path: Path) -> None:
    """A state file whose sketches use a retired hash says so, not 'malformed'."""
    import base64
    import gzip
    import hashlib
    import json
    import zlib

    det = Detector(geo=None, config=DetectorConfig(exact_limit=16))
    for i in range(40):  # beyond exact_limit: the account's IPs become a sketch
        det.process(sub(T0 + timedelta(seconds=i), f"198.51.100.{i}", "a@example.jp"))
    path = tmp_path / "state"
    det.save(path)
    head, body = path.read_bytes().split(b"\n", 1)
    text = gzip.decompress(body).decode()
    sketches = _hll_blobs(text)
    assert sketches, "the state should hold at least one sketch"
    for blob in sketches:
        raw = bytearray(base64.b64decode(blob))
        raw[4] = 1  # hash id 1 (SplitMix64), retired by hash id 3
        raw[-4:] = zlib.crc32(bytes(raw[:-4])).to_bytes(4, "little")
        text = text.replace(blob, base64.b64encode(bytes(raw)).decode())
    new_body = gzip.compress(text.encode())
    header = json.loads(head)
    header.update(sha256=hashlib.sha256(new_body).hexdigest(), length=len(new_body))
    path.write_bytes(json.dumps(header).encode() + b"\n" + new_body)
    with pytest.raises(IncompatibleError, match=r"state: .*hash id 1"):
        Detector.load(path, geo=None)


def _hll_blobs(text: str) -> list[str]:
    import re

    return re.findall(r'"hll":"([A-Za-z0-9+/=]+)"', text)


def test_rules_must_match_the_windows() -> None:
    with pytest.raises(ConfigurationError, match="windows are 1h and 24h"):
        Detector(geo=None, rules=RuleSet((Rule("x", when=F.ips_2h >= 3, score=1),)))
    det = Detector(geo=None, config=DetectorConfig(short_window=1800, long_window=43200))
    assert {r.name for r in det.rules.rules} >= {"sprinkle", "burst"}
    many_ips = next(r for r in det.rules.rules if r.name == "many-ips")
    assert "ips_30m >= 20" in str(many_ips.when)


def test_hostile_and_unplaceable_inputs() -> None:
    det = Detector(geo=BlockGeo())
    evil = "\x1b[2J\u202e" + "x" * 1000
    for i in range(10):
        v = det.process(sub(T0 + timedelta(seconds=i), f"192.0.2.{i}", evil))
        assert v.level == Level.OK
    assert det.stats.geo_unknown >= 1
    v = det.process(sub(T0 + timedelta(seconds=20), "192.0.2.200", "a@example.jp"))
    assert v.country is None
    assert v.level == Level.OK


def test_explanation_marks_conditions_that_did_not_hold() -> None:
    """A rule fired by one side of an ``|``: the other side reads ``not``, not ``limit``."""
    rules = RuleSet((Rule("either", when=(F.ips_1h >= 100) | (F.mails_1h >= 2), score=100),))
    det = Detector(geo=None, rules=rules)
    det.process(sub(T0, "192.0.2.1", "a@example.jp"))
    v = det.process(sub(T0 + timedelta(seconds=5), "192.0.2.1", "a@example.jp"))
    (finding,) = v.findings
    assert "ips_1h=1 (not >= 100)" in finding.detail
    assert "mails_1h=2 (limit >= 2)" in finding.detail


# ------------------------------------------------------------- first-time recipients


def mail(t: datetime, ip: str, account: str, *rcpts: str) -> Submission:
    return Submission(
        time=t, ip=ip_address(ip), account=account, recipient_count=len(rcpts), recipients=rcpts
    )


def test_first_time_recipients_are_learned_and_counted() -> None:
    det = Detector(geo=BlockGeo())
    a = "hana@example.jp"
    day1 = T0 + timedelta(hours=9)
    for i, who in enumerate(("mum@example.org", "ken@example.net", "mum@example.org")):
        det.process(mail(day1 + timedelta(minutes=10 * i), "10.1.0.5", a, who))
    day2 = T0 + timedelta(days=1, hours=9)
    # A usual contact (written differently) and a new one: one first-time of two.
    e = mail(day2, "10.1.0.5", a, "<Mum@Example.ORG>", "aya@example.com")
    names = ("new_rcpts_1h", "new_rcpts_24h", "new_rcpt_share_1h", "known_rcpts")
    view = det.check(e).features
    assert view is not None
    checked = {n: view[n] for n in names}  # features are computed when read: read them now
    v = det.process(e)
    assert v.features is not None
    for name in names:
        assert checked[name] == v.features[name], name
    assert v.features["known_rcpts"] == 2  # mum and ken, before this message
    assert v.features["new_rcpts_1h"] == 1
    assert v.features["new_rcpt_share_1h"] == 0.5
    # the first day's recipients are not counted: the memory was still learning them
    assert v.features["new_rcpts_24h"] == 1
    assert v.features["new_rcpt_share_24h"] == 0.5
    # the second message to aya is no longer first-time
    v = det.process(mail(day2 + timedelta(minutes=5), "10.1.0.5", a, "aya@example.com"))
    assert v.features is not None
    assert (v.features["new_rcpts_1h"], v.features["known_rcpts"]) == (1, 3)
    assert v.features["new_rcpt_share_1h"] == pytest.approx(1 / 3)
    # a message without known recipient addresses counts in neither
    bare = Submission(time=day2 + timedelta(minutes=6), ip=ip_address("10.1.0.5"), account=a)
    v = det.process(bare)
    assert v.features is not None
    assert v.features["new_rcpt_share_1h"] == pytest.approx(1 / 3)


def test_recipient_memory_is_bounded_and_forgets_the_least_recently_mailed() -> None:
    det = Detector(geo=BlockGeo(), config=DetectorConfig(rcpt_memory=8))
    a = "ken@example.jp"
    t = T0 + timedelta(hours=9)
    for i in range(20):
        det.process(mail(t + timedelta(minutes=i), "10.1.0.5", a, f"c{i}@example.org"))
    day2 = t + timedelta(days=1)  # recipients count from the account's second day on
    det.process(mail(day2, "10.1.0.5", a, "c12@example.org"))
    probe = det.check(mail(day2 + timedelta(minutes=1), "10.1.0.5", a, "c19@example.org"))
    assert probe.features is not None
    assert probe.features["known_rcpts"] == 8
    old = det.check(mail(day2 + timedelta(minutes=1), "10.1.0.5", a, "c0@example.org"))
    assert old.features is not None
    # c19 (recent) is remembered; c0 (mailed first, never again) was forgotten
    assert probe.features["new_rcpts_1h"] == old.features["new_rcpts_1h"] - 1
    with pytest.raises(ConfigurationError, match="rcpt_memory"):
        DetectorConfig(rcpt_memory=256)


def test_an_abuse_does_not_teach_its_recipients() -> None:
    """Once flagged, the spam's addresses are not remembered: the owner's contacts stay."""
    rnd = random.Random(5)
    det = Detector(geo=BlockGeo())
    a = "yui@example.jp"
    contacts = [f"friend{i}@example.org" for i in range(6)]
    t = T0 + timedelta(hours=9)
    for i in range(12):
        det.process(mail(t + timedelta(minutes=40 * i), "10.1.0.5", a, contacts[i % 6]))
    t = T0 + timedelta(days=1, hours=10)
    flagged = False
    for i in range(200):
        spam = [f"{rnd.getrandbits(40):x}@example.com" for _ in range(3)]
        v = det.process(mail(t + timedelta(seconds=20 * i), str(bot_ip(rnd)), a, *spam))
        flagged = flagged or v.level >= Level.ABUSE
    assert flagged
    v = det.process(mail(t + timedelta(hours=1, minutes=10), "10.1.0.5", a, contacts[0]))
    assert v.features is not None
    assert v.features["new_rcpts_1h"] > 100  # the spam's, counted as first-time
    # the memory holds the owner's six contacts and the few spam messages before the flag
    assert 6 <= v.features["known_rcpts"] < 32
    acct = det._accts[a]
    assert not isinstance(acct, bytes)
    assert acct.rknown is not None
    from authabuse.detector import _rcpt_key

    assert {_rcpt_key(c) for c in contacts} <= set(acct.rknown)


def test_recipient_evidence_is_explained() -> None:
    rules = RuleSet(
        (
            Rule(
                "strangers",
                when=(F.new_rcpts_1h >= 3) & (F.new_rcpt_share_1h >= 0.9) & (F.known_rcpts >= 1),
                score=60,
            ),
        )
    )
    det = Detector(geo=BlockGeo(), rules=rules)
    a = "mio@example.jp"
    det.process(mail(T0, "10.1.0.5", a, "mum@example.org"))
    later = T0 + timedelta(days=1, hours=2)
    v = det.process(mail(later, "10.1.0.5", a, "x1@a.example", "x2@b.example"))
    assert v.level == Level.OK
    v = det.process(mail(later + timedelta(minutes=1), "10.1.0.5", a, "x3@c.example"))
    assert v.level == Level.SUSPICIOUS
    detail = v.findings[0].detail
    assert "new_rcpts_1h=3 (limit >= 3)" in detail
    assert "recipients 3 of 3 first-time in 1h (3 remembered)" in detail
    assert v.findings[0].evidence["recipients"]["new"] == 3


def _owner_history(account: str, contacts: list[str], rnd: random.Random) -> list[Submission]:
    """Three days of mail from home to the owner's contacts (a dozen remembered)."""
    return [mail(t, "10.7.0.9", account, rnd.choice(contacts)) for t in days_of(T0, 3, 6, rnd)]


def test_a_short_late_abuse_is_caught_by_its_strangers_and_a_trip_is_not() -> None:
    """One bot, three messages to harvested addresses: no geography rule can see it."""
    rnd = random.Random(11)
    contacts = [f"friend{i}@example.org" for i in range(14)]
    det = Detector(geo=BlockGeo())
    # the provider's other customers make Japan the common country
    names = [f"customer{k}@example.jp" for k in range(40)]
    history = [e for a in (*names, "abused@example.jp", "tripper@example.jp")
               for e in _owner_history(a, contacts, rnd)]  # fmt: skip
    for e in sorted(history, key=lambda e: e.time):
        det.process(e)
    assert det.stats.too_late == 0
    day4 = T0 + timedelta(days=3, hours=10)
    bot = str(bot_ip(rnd))
    levels = []
    for i in range(3):
        spam = [f"{rnd.getrandbits(40):x}@example.com" for _ in range(6)]
        v = det.process(mail(day4 + timedelta(minutes=7 * i), bot, "abused@example.jp", *spam))
        levels.append(v.level)
    assert levels == [Level.OK, Level.OK, Level.ABUSE]
    assert [f.rule for f in v.findings] == ["strangers-abroad"]
    assert "recipients 18 of 18 first-time from unusual networks in 1h" in v.findings[0].detail
    # The owner abroad (France, a hotel network) writes to the same contacts: not flagged,
    # even with a few new addresses among them.
    for i in range(8):
        rcpts = [rnd.choice(contacts), rnd.choice(contacts)]
        if i % 3 == 0:
            rcpts.append(f"guide{i}@example.fr")
        v = det.process(
            mail(day4 + timedelta(minutes=5 * i), "11.4.0.7", "tripper@example.jp", *rcpts)
        )
        assert v.level == Level.OK, v.findings


def _provider(
    rnd: random.Random, more: list[Submission] | None = None
) -> tuple[Detector, list[str]]:
    """A detector that has seen three days of 40 customers at home (Japan is common)."""
    det = Detector(geo=BlockGeo())
    names = [f"customer{k}@example.jp" for k in range(40)]
    history = [e for a in names for e in _owner_history(a, ["x@example.org"], rnd)]
    for e in sorted(history + (more or []), key=lambda e: e.time):
        det.process(e)
    return det, names


def test_a_burst_on_an_accounts_first_day_is_caught_when_its_mail_came_from_elsewhere() -> None:
    """No baseline yet: a domestic server's burst is judged by what the day showed.

    A new customer's own bulk sender (one network all day) keeps the benefit of the
    doubt; an account that mailed from its office all morning and then bursts from a
    server elsewhere does not.
    """
    rnd = random.Random(3)
    det, _ = _provider(rnd)
    day = T0 + timedelta(days=3)
    office, news = "staff@example.co.jp", "news@shop.example.jp"
    for i in range(4):  # the morning at the office
        det.process(mail(day + timedelta(hours=9, minutes=20 * i), "10.9.0.4", office, "a@b.jp"))
    levels = {office: Level.OK, news: Level.OK}
    t = day + timedelta(hours=12)
    for i in range(120):  # two servers in one domestic hosting network, 2 a second each
        at = t + timedelta(seconds=i / 2)
        v = det.process(mail(at, "10.44.0.7", office, f"{rnd.getrandbits(40):x}@example.com"))
        levels[office] = max(levels[office], v.level)
        v = det.process(mail(at, "10.45.0.8", news, f"m{i:05d}@example.net"))
        levels[news] = max(levels[news], v.level)
    assert levels == {office: Level.ABUSE, news: Level.OK}


def test_a_burst_address_in_the_home_country_is_marked_without_a_baseline() -> None:
    """The address whose own sending (a burst) flagged an account is the abuse's.

    Without a baseline the detector cannot tell the owner's addresses from the abuse's,
    so in the home country it marks none, except this one: the same rented server then
    used on an established customer's account is a detected abuse's address.
    """
    det, names = _provider(random.Random(3))
    day = T0 + timedelta(days=3)
    office, server = "staff@example.co.jp", "10.44.0.7"
    for i in range(4):  # the morning at the office: no baseline yet
        det.process(mail(day + timedelta(hours=9, minutes=20 * i), "10.9.0.4", office, "a@b.jp"))
    t = day + timedelta(hours=12)
    flagged = None
    for i in range(60):
        v = det.process(mail(t + timedelta(seconds=i / 2), server, office, f"s{i}@example.com"))
        flagged = flagged or (v if v.level == Level.ABUSE else None)
    assert flagged is not None
    assert [f.rule for f in flagged.findings] == ["burst"]
    assert not flagged.features["baseline_ready"]
    assert not flagged.features["ip_in_abuse"]  # marked by this flag, not before
    later = t + timedelta(hours=3)
    v = det.process(mail(later, server, names[0], "someone@example.net"))
    assert v.features["ip_in_abuse"]
    assert "known-abuse-ip" in [f.rule for f in v.findings]
    assert v.level == Level.ABUSE
    # the office's own address, which sent no burst, stays unmarked
    assert not det.check(mail(later, "10.9.0.4", names[1], "a@b.jp")).features["ip_in_abuse"]


def test_a_burst_in_a_usual_cloud_network_from_another_country_is_caught() -> None:
    """Networks are ASNs: one cloud ASN can hold a VPN user's exits and a bot's server."""
    rnd = random.Random(8)
    user = "vpn-user@example.jp"  # exits in NL and DE of one provider (ASN 9009)
    vpn = [
        mail(t, f"185.{i % 2}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}", user, "a@b.jp")
        for i, t in enumerate(days_of(T0, 3, 6, rnd))
    ]
    det, _ = _provider(rnd, vpn)
    t = T0 + timedelta(days=3, hours=12)
    usual = det.check(mail(t, "185.0.9.9", user, "a@b.jp")).features
    assert usual["network_usual"]
    assert usual["country_usual"]
    levels = []
    for i in range(20):  # a server of the same provider in the US, two mails a second
        v = det.process(mail(t + timedelta(seconds=i / 2), "185.3.0.7", user, f"s{i}@x.com"))
        levels.append(v.level)
    assert v.features["network_usual"]
    assert not v.features["country_usual"]
    assert Level.ABUSE in levels
    assert "burst" in [f.rule for f in v.findings]


@pytest.mark.parametrize(("about_address", "marked"), [(True, True), (False, False)])
def test_only_a_rule_about_the_address_marks_it_without_a_baseline(
    about_address: bool, marked: bool
) -> None:
    # The same flag on the same traffic; only what the rule says decides the marking.
    volume = F.ip_mails_1h >= 5 if about_address else F.mails_1h >= 5
    rules = RuleSet((Rule("volume", when=~F.network_usual & volume, score=100),))
    det = Detector(geo=BlockGeo(), rules=rules)
    t = T0 + timedelta(hours=9)
    for i in range(5):
        v = det.process(mail(t + timedelta(seconds=i), "10.44.0.7", "new@example.jp", "a@b.jp"))
    assert v.level == Level.ABUSE
    probe = mail(t + timedelta(minutes=5), "10.44.0.7", "other@example.jp", "a@b.jp")
    assert det.check(probe).features["ip_in_abuse"] is marked


def test_first_time_recipients_from_unusual_networks_are_counted_apart() -> None:
    """The owner's mail to contacts from home does not dilute an intruder's strangers."""
    det = Detector(geo=BlockGeo())
    a = "hana@example.jp"
    contacts = [f"c{i}@example.org" for i in range(5)]
    for d in range(2):
        for i, who in enumerate(contacts):
            det.process(mail(T0 + timedelta(days=d, hours=9, minutes=10 * i), "10.1.0.5", a, who))
    t = T0 + timedelta(days=2, hours=9)
    for i, who in enumerate(contacts * 2):  # at home, to contacts: 10 addresses
        det.process(mail(t + timedelta(minutes=i), "10.1.0.5", a, who))
    spam = [f"s{i}@example.com" for i in range(4)]
    v = det.process(mail(t + timedelta(minutes=20), "31.7.0.9", a, *spam))  # a bot abroad
    assert v.features["new_rcpts_1h"] == 4
    assert v.features["new_rcpt_share_1h"] == pytest.approx(4 / 14)
    assert v.features["unusual_new_rcpts_1h"] == 4
    assert v.features["unusual_new_rcpt_share_1h"] == 1.0
    # the owner's mail from home adds nothing to the unusual-network counts
    v = det.process(mail(t + timedelta(minutes=21), "10.1.0.5", a, "new-friend@example.org"))
    assert (v.features["unusual_new_rcpts_1h"], v.features["new_rcpts_1h"]) == (4, 5)
    assert v.features["unusual_new_rcpt_share_1h"] == 1.0


def test_unusual_network_counts_survive_a_state_round_trip(tmp_path: Path) -> None:
    det = Detector(geo=BlockGeo())
    a = "hana@example.jp"
    for d in range(2):
        det.process(mail(T0 + timedelta(days=d, hours=9), "10.1.0.5", a, "mum@example.org"))
    det.process(mail(T0 + timedelta(days=2, hours=9), "31.7.0.9", a, "x@example.com"))
    det.save(tmp_path / "state")
    again = Detector.load(tmp_path / "state", geo=BlockGeo())
    probe = mail(T0 + timedelta(days=2, hours=9, minutes=1), "31.7.0.9", a, "y@example.com")
    names = ("unusual_new_rcpts_1h", "unusual_new_rcpt_share_24h")
    assert [again.check(probe).features[n] for n in names] == [2, 1.0]
    assert [det.check(probe).features[n] for n in names] == [2, 1.0]
    # a window as a state written before these counts holds it: read as none yet
    acct = det._accts[a]
    assert not isinstance(acct, bytes)
    window = acct.sc
    assert window is not None
    old = _Win.load(window.dump()[:14])
    assert (old.uaddr, old.unew, old.raddr, old.rnew) == (0, 0, window.raddr, window.rnew)


# The detector compiles its rules into a plan (shared first parts tested once, costly
# parts of an ``&`` last, features fetched up front): it must fire exactly the rules
# that evaluating each rule's condition on the event's features fires.
_PLAN_FLAGS = ["network_usual", "ip_usual", "country_common", "is_submission", "baseline_ready"]
_PLAN_NUMBERS = [
    "ips_1h",
    "countries_1h",
    "new_asns_1h",
    "ip_mails_1h",
    "mails_24h",
    "new_countries_24h",
    "auth_failures_1h",
    "ip_accounts_24h",
    "domain_accounts",
    "recent_new_countries",
    "usual_countries",
]
_atoms = st.one_of(
    st.sampled_from(_PLAN_FLAGS).map(lambda n: getattr(F, n)),
    st.sampled_from(_PLAN_FLAGS).map(lambda n: ~getattr(F, n)),
    st.builds(
        lambda n, op, x: {">=": getattr(F, n) >= x, "<": getattr(F, n) < x}[op],
        st.sampled_from(_PLAN_NUMBERS),
        st.sampled_from([">=", "<"]),
        st.integers(0, 4),
    ),
)
_conditions = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.builds(lambda a, b: a & b, inner, inner),
        st.builds(lambda a, b: a | b, inner, inner),
        inner.map(lambda c: ~c),
    ),
    max_leaves=5,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.booleans(), _conditions), min_size=1, max_size=8),
    st.sampled_from([~F.network_usual, F.is_submission, F.countries_1h >= 1]),
    event_times,
)
def test_compiled_rules_fire_as_the_rules_one_by_one(
    conds: list[tuple[bool, Condition]], guard: Condition, items: list[tuple[int, int, int, str]]
) -> None:
    rules = tuple(
        Rule(f"r{i}", when=(guard & c) if shared else c, score=10)
        for i, (shared, c) in enumerate(conds)
    )
    det = Detector(geo=BlockGeo(), rules=RuleSet(rules), config=DetectorConfig(exact_limit=8))
    fail_rules = [r for r in rules if r.when.reads & {"auth_failures_1h"}]
    for sec, ipn, acct, kind in sorted(items):
        t = T0 + timedelta(seconds=sec)
        ip = IPv4Address((37 << 24) | (ipn << 16) | 5) if ipn % 3 else IPv4Address((10 << 24) | ipn)
        e: Event
        if kind == "s":
            e = sub(t, ip, f"u{acct}@example.jp")
        else:
            e = AuthAttempt(time=t, ip=ip, account=f"u{acct}@example.jp", succeeded=kind == "ok")
        v = det.process(e)
        judged = fail_rules if kind == "fail" else rules
        # features the plan did not compute are computed now, on the same state
        expected = [r.name for r in judged if r.when.evaluate(v.features)]
        assert [f.rule for f in v.findings] == expected
        assert v.score == 10.0 * len(expected)


def test_verdicts_are_built_as_the_dataclass_builds_them() -> None:
    from dataclasses import fields

    from authabuse.detector import _new_verdict
    from authabuse.rules import Finding, Verdict

    args = ("a@example.jp", Level.ABUSE, 130.0, (Finding("burst", 100.0, "x"),), T0)
    more = ("192.0.2.1", "block", "PL", {"ips_1h": 3})
    made = _new_verdict(*args, *more)
    built = Verdict(*args, *more)
    assert type(made) is Verdict
    for f in fields(Verdict):
        assert getattr(made, f.name) == getattr(built, f.name), f.name
    assert made == built
    with pytest.raises(AttributeError):
        made.level = Level.OK  # type: ignore[misc]  # frozen, as the dataclass


def test_flag_features_are_bools() -> None:
    # The compiled rules test a flag as ``value != False`` (see detector._simple).
    from authabuse.rules import FLAG_FEATURES

    rnd = random.Random(3)
    events = persona("office", "o@example.jp", rnd, days=2) + sprinkle(
        "o@example.jp", T0 + timedelta(days=1, hours=20), rnd, 20
    )
    events.append(AuthAttempt(time=T0 + timedelta(days=2), ip=bot_ip(rnd), account="o@example.jp",
                              succeeded=False))  # fmt: skip
    det = Detector(geo=BlockGeo())
    for e in sorted(events, key=lambda e: e.time):
        for v in (det.check(e), det.process(e)):
            for name in FLAG_FEATURES:
                assert type(v.features[name]) is bool, name


def test_recipient_domains_are_kept_only_when_a_rule_reads_them() -> None:
    rcpts = ("a@one.example", "b@two.example", "c@two.example")
    e = Submission(time=T0, ip=IPv4Address("10.1.0.5"), account="a@example.jp",
                   recipient_count=3, recipients=rcpts)  # fmt: skip
    v = Detector(geo=BlockGeo()).process(e)
    with pytest.raises(ConfigurationError, match="rcpt_domains_1h is not kept"):
        v.features["rcpt_domains_1h"]  # the lookup is the test
    rules = RuleSet((Rule("many-domains", when=F.rcpt_domains_1h >= 2, score=10),))
    det = Detector(geo=BlockGeo(), rules=rules)
    assert det.check(e).features["rcpt_domains_1h"] == 2
    v = det.process(e)
    assert v.features["rcpt_domains_24h"] == 2
    assert [f.rule for f in v.findings] == ["many-domains"]


def test_a_feature_tested_twice_is_explained_once_with_both_limits() -> None:
    from authabuse.rules import load_rules

    rules = load_rules(
        "twice.toml",
        text='[[rule]]\nname = "t"\nwhen = "ips_1h >= 50 or ips_1h >= 2"\nscore = 100\n',
    )
    det = Detector(rules=rules, geo=None)
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    v = None
    for i in range(3):
        v = det.process(
            Submission(time=t0 + timedelta(minutes=i), ip=parse_ip(f"192.0.2.{i + 1}"),
                       account="a@example.jp")
        )  # fmt: skip
    assert v is not None
    (finding,) = v.findings
    assert "ips_1h=3 (not >= 50; limit >= 2)" in finding.detail
    assert finding.detail.count("ips_1h=") == 1
    limits = finding.evidence["features"]["ips_1h"]
    assert (limits["op"], limits["limit"], limits["also"]) == (">=", 50, [{"op": ">=", "limit": 2}])
