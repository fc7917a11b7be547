"""``Detector(store=...)``: the detector's state in a shared store (issue 6).

A simulated provider's log (``authabuse.simulate``, parsed by the Postfix parser) is fed
to the compact detector, to a detector on a ``MemoryStore``, and to two detectors
sharing one real redis-server as two submission servers would (each event goes to one
of them, in turn). The two Redis-backed servers must give the verdicts one server on the
memory store gives: same level for every event, same rules and score except where a
distinct count beyond the exact range differs by the sketch error (Redis's HyperLogLog
is not ours); and they must catch the abused accounts the compact detector catches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from authabuse.counters import CounterStore, MemoryStore
from authabuse.detector import Detector
from authabuse.errors import ConfigurationError
from authabuse.events import AuthAttempt, Event, Submission, parse_ip
from authabuse.geo import resolver_from_paths
from authabuse.parsers import iter_events
from authabuse.rules import Level
from authabuse.simulate import GroundTruth, simulate
from authabuse.testing import check_counter_store

redis = pytest.importorskip("redis", reason="the 'redis' extra is not installed")
from authabuse.redis_store import RedisStore  # noqa: E402 - after the extra check

if TYPE_CHECKING:
    from conftest import RedisProcess  # tests/servers/conftest.py (fixtures, not importable)

TWO_DAYS = 2 * 86_400


@dataclass
class Stream:
    events: list[Event]
    truth: GroundTruth
    geo: Any


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Stream:
    out = tmp_path_factory.mktemp("sim")
    simulate(out, seed=1, accounts=60, days=0.5)
    truth = GroundTruth.load(out / "truth.json")
    geo = resolver_from_paths([str(out / "geo-country.csv"), str(out / "geo-asn.csv")])
    events = list(iter_events([str(out / "maillog")], format="postfix"))
    return Stream(events, truth, geo)


def _signature(v: Any) -> tuple[Any, ...]:
    return (v.account, int(v.level), v.score, tuple(f.rule for f in v.findings))


def _first_flags(verdicts: list[Any], level: Level) -> dict[str, int]:
    """Account -> index of the event at which it first reached ``level``."""
    out: dict[str, int] = {}
    for i, v in enumerate(verdicts):
        if v.level >= level and v.account is not None and v.account not in out:
            out[v.account] = i
    return out


@pytest.fixture(scope="module")
def runs(stream: Stream, redis_process_type: type[RedisProcess]) -> Iterator[dict[str, list[Any]]]:
    """Verdicts of every event: compact, memory store, two servers on one Redis."""
    server = redis_process_type()
    try:
        compact = Detector(geo=stream.geo)
        memory = Detector(geo=stream.geo, store=MemoryStore(retention=TWO_DAYS))
        shared = [
            Detector(
                geo=stream.geo, store=RedisStore(server.url, retention=TWO_DAYS, socket_timeout=10)
            )
            for _ in range(2)
        ]
        out: dict[str, list[Any]] = {"compact": [], "memory": [], "two": []}
        for i, e in enumerate(stream.events):
            out["compact"].append(compact.process(e))
            out["memory"].append(memory.process(e))
            server_ = shared[i % 2]
            out["two"].append(server_.process(e))  # round robin, like a load balancer
            # A recorded event's writes go out without waiting for Redis; the other
            # server's next read, on its own connection, may reach Redis first (under
            # load it did: one failure short). One round trip on this connection
            # returns after them, so the next event sees them as one server would.
            server_._store.store.get_record(("~barrier",))
        for d in shared:
            assert not d._store.store.degraded
            d._store.store.close()
        yield out
    finally:
        server.close()


_SKETCHED = ("ips_", "rcpt_domains_", "domain_accounts")


def test_two_redis_servers_give_one_memory_servers_verdicts(
    runs: dict[str, list[Any]], stream: Stream
) -> None:
    """Every other event went to the other server: the verdicts are those of one server."""
    memory, two = runs["memory"], runs["two"]
    assert len(memory) > 30_000
    assert sum(1 for v in memory if v.level >= Level.ABUSE) > 500
    assert [v.level for v in two] == [v.level for v in memory]
    differ = 0
    for vm, vr in zip(memory, two, strict=True):
        fm, fr = dict(vm.features or {}), dict(vr.features or {})
        changed = {k for k in fm.keys() | fr.keys() if fm.get(k) != fr.get(k)}
        if not changed:  # same features: the same verdict, explained the same way
            assert _signature(vm) == _signature(vr)
            assert [f.detail for f in vm.findings] == [f.detail for f in vr.findings]
            continue
        differ += _signature(vm) != _signature(vr)
        for k in changed:  # only distinct counts past the exact range, within the error
            assert k.startswith(_SKETCHED), (k, fm.get(k), fr.get(k))
            if isinstance(fm[k], int):
                assert fm[k] > 40, (k, fm[k], fr[k])
                assert abs(fm[k] - fr[k]) <= 0.03 * fm[k], (k, fm[k], fr[k])
    assert differ <= 0.001 * len(memory)
    # The sprinkle accounts' messages were split between the servers, and each was
    # caught as early as on one server (not after twice as many messages).
    sprinkle = [a.name for a in stream.truth.abused() if a.abuse and a.abuse.pattern == "sprinkle"]
    assert sprinkle
    first_two = _first_flags(two, Level.ABUSE)
    first_one = _first_flags(memory, Level.ABUSE)
    for name in sprinkle:
        assert first_two[name] == first_one[name]


def test_store_backed_detector_catches_what_the_compact_one_catches(
    runs: dict[str, list[Any]], stream: Stream
) -> None:
    abused = {a.name: a.abuse.pattern for a in stream.truth.abused() if a.abuse}
    legit = {a for a in stream.truth.accounts if a not in abused}
    compact = _first_flags(runs["compact"], Level.ABUSE)
    store = _first_flags(runs["memory"], Level.ABUSE)
    caught_compact = {a for a in abused if a in compact}
    caught_store = {a for a in abused if a in store}
    patterns = {abused[a] for a in caught_store}
    print(
        f"abused {len(abused)}: compact caught {len(caught_compact)}, store {len(caught_store)}; "
        f"legitimate flagged: compact {len(legit & set(compact))}, store {len(legit & set(store))}"
    )
    assert caught_store == caught_compact
    print(sorted(patterns), sorted(caught_store))
    assert {"sprinkle", "domain_wave"} <= patterns
    assert len(legit & set(store)) <= len(legit & set(compact)) + 1
    # ... and about as early: within a few events of the compact detector.
    for a in caught_store:
        assert abs(store[a] - compact[a]) <= 50, a
    verdicts = {
        key: sum(1 for v in runs[key] if v.level >= Level.ABUSE) for key in ("compact", "memory")
    }
    assert abs(verdicts["memory"] - verdicts["compact"]) <= 0.01 * verdicts["compact"]


# ----------------------------------------------------------------- small, exact cases

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _sub(dt: float, ip: str, account: str = "mallory@example.jp") -> Submission:
    return Submission(
        time=T0 + timedelta(seconds=dt),
        ip=parse_ip(ip),
        account=account,
        recipient_count=1,
        recipients=("bob@example.org",),
    )


class _Countries:
    """Places 11.i.0.0/16 in a country of its own, with an ASN of its own."""

    cc = ("JP", "BR", "NG", "VN", "US", "RU", "IN", "PL")

    def resolve(self, ip: Any) -> Any:
        from authabuse.geo import Location

        i = int(ip) >> 16 & 255
        if int(ip) >> 24 != 11 or i >= len(self.cc):
            return None
        return Location(country=self.cc[i], asn=64500 + i)


def _abuse_over_two(det_a: Detector, det_b: Detector) -> list[Any]:
    """One home message, then the password used from new countries, alternating servers."""
    out = [det_a.process(_sub(0, "11.0.0.5"))]
    for i in range(1, 7):
        det = det_a if i % 2 else det_b
        out.append(det.process(_sub(60 * i, f"11.{i}.0.9")))
    return out


def test_two_servers_catch_an_abuse_split_between_them(
    redis_process: Callable[..., RedisProcess],
) -> None:
    server = redis_process()
    geo = _Countries()

    def det() -> Detector:
        return Detector(
            geo=geo, store=RedisStore(server.url, retention=TWO_DAYS, socket_timeout=10)
        )

    split = _abuse_over_two(det(), det())
    one = Detector(geo=geo, store=MemoryStore(retention=TWO_DAYS))
    alone = _abuse_over_two(one, one)
    assert [_signature(v) for v in split] == [_signature(v) for v in alone]
    assert split[-1].level == Level.ABUSE
    # Separate servers without a shared store each see half and stay quiet longer.
    apart = _abuse_over_two(Detector(geo=geo), Detector(geo=geo))
    assert (
        _first_flags(apart, Level.ABUSE).get("mallory@example.jp", 99)
        > _first_flags(split, Level.ABUSE)["mallory@example.jp"]
    )
    # check() on a third server sees it all too, and is pure.
    third = det()
    before = third.check(_sub(500, "11.7.0.9"))
    assert before.level == Level.ABUSE
    assert _signature(third.check(_sub(500, "11.7.0.9"))) == _signature(before)


def test_check_equals_process_and_writes_nothing() -> None:
    store = MemoryStore(retention=TWO_DAYS)
    det = Detector(geo=_Countries(), store=store)
    for i in range(1, 5):
        e = _sub(60 * i, f"11.{i}.0.9")
        checked = det.check(e)
        n = len(store)
        assert det.check(e).score == checked.score
        assert len(store) == n
        assert _signature(det.process(e)) == _signature(checked)


def test_redis_killed_mid_stream_falls_back_and_reconnects(
    stream: Stream, redis_process: Callable[..., RedisProcess], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_process()
    store = RedisStore(server.url, retention=TWO_DAYS, retry_interval=0.2, socket_timeout=10)
    det = Detector(geo=stream.geo, store=store)
    events = stream.events[:6000]
    for e in events[:2000]:
        det.process(e)
    keys_before = len(store)
    assert keys_before > 10
    server.kill()
    with caplog.at_level(logging.WARNING, logger="authabuse.redis"):
        for e in events[2000:4000]:
            det.process(e)
            det.check(e)
    assert store.degraded
    assert store.status["fallbacks"] == 1
    assert "unreachable" in caplog.text
    assert det.memory_usage()["store_bytes"] > 0  # the local fallback's bytes
    server.start()  # the same port, empty (no persistence configured)
    time.sleep(0.3)
    with caplog.at_level(logging.WARNING, logger="authabuse.redis"):
        for e in events[4000:]:
            det.process(e)
    assert store.status == {"degraded": False, "fallbacks": 1, "errors": store.status["errors"]}
    assert "reachable again" in caplog.text
    assert len(store) > 10  # written to Redis again (it came back empty)
    assert store.status["fallbacks"] == 1


# ----------------------------------------------------------------- configuration


class _PlainStore:
    """A third-party store with the protocol only: no batch, no records."""

    def __init__(self) -> None:
        self._m = MemoryStore(retention=TWO_DAYS)
        self.calls = 0

    @property
    def slice_seconds(self) -> float:
        return self._m.slice_seconds

    @property
    def retention(self) -> float:
        return self._m.retention

    def add_distinct(self, key: Any, members: Any, *, at: float) -> None:
        self.calls += 1
        self._m.add_distinct(key, members, at=at)

    def count_distinct(self, key: Any, *, at: float, window: float) -> int:
        self.calls += 1
        return self._m.count_distinct(key, at=at, window=window)

    def incr(self, key: Any, field: str, amount: int = 1, *, at: float) -> None:
        self.calls += 1
        self._m.incr(key, field, amount, at=at)

    def counts(self, key: Any, *, at: float, window: float) -> dict[str, int]:
        self.calls += 1
        return self._m.counts(key, at=at, window=window)

    def forget(self, key: Any) -> None:
        self._m.forget(key)

    def memory_usage(self) -> int:
        return self._m.memory_usage()

    def __len__(self) -> int:
        return len(self._m)


def test_a_protocol_only_store_works(caplog: pytest.LogCaptureFixture) -> None:
    check_counter_store(_PlainStore)
    plain = _PlainStore()
    assert isinstance(plain, CounterStore)
    with caplog.at_level(logging.WARNING, logger="authabuse.detector"):
        det = Detector(geo=_Countries(), store=plain)
    assert "kept in this process" in caplog.text
    ref = Detector(geo=_Countries(), store=MemoryStore(retention=TWO_DAYS))
    got = [_signature(det.process(_sub(60 * i, f"11.{i}.0.9"))) for i in range(7)]
    want = [_signature(ref.process(_sub(60 * i, f"11.{i}.0.9"))) for i in range(7)]
    assert got == want
    assert plain.calls > 0


def test_store_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="two long windows"):
        Detector(geo=None, store=MemoryStore(retention=86_400))
    with pytest.raises(ConfigurationError, match="short window"):
        Detector(geo=None, store=MemoryStore(slice_seconds=7200, retention=TWO_DAYS))
    with pytest.raises(ConfigurationError, match="CounterStore"):
        Detector(geo=None, store=object())
    det = Detector(geo=None, store=MemoryStore(retention=TWO_DAYS))
    with pytest.raises(ConfigurationError, match="nothing to save"):
        det.save(tmp_path / "state")
    assert not (tmp_path / "state").exists()


def test_mark_benign_learns_into_the_shared_baseline() -> None:
    store = MemoryStore(retention=TWO_DAYS)
    a = Detector(geo=_Countries(), store=store)
    compact = Detector(geo=_Countries())
    for det in (a, compact):
        for i in range(1, 7):
            v = det.process(_sub(60 * i, f"11.{i}.0.9", "traveller@example.jp"))
        assert v.level == Level.ABUSE
        det.mark_benign("traveller@example.jp")
    b = Detector(geo=_Countries(), store=store)  # another server sees the new baseline
    again = b.process(_sub(600, "11.6.0.9", "traveller@example.jp"))
    assert again.features["network_usual"]
    # The networks are usual now, and what the window counted as new no longer is
    # (as in the compact detector, whose verdict this is): not alerted again.
    assert _signature(again) == _signature(
        compact.process(_sub(600, "11.6.0.9", "traveller@example.jp"))
    )
    assert again.level == Level.OK
    assert again.features["new_countries_1h"] == 0
    assert list(b.accounts()) == ["traveller@example.jp"]
    assert len(b) == 1
    a.mark_benign("nobody@example.jp")  # unknown: nothing to learn, no error


def test_failed_logins_and_accountless_events_are_counted() -> None:
    store = MemoryStore(retention=TWO_DAYS)
    det = Detector(geo=_Countries(), store=store)
    for i in range(12):
        fail = AuthAttempt(
            time=T0 + timedelta(seconds=i),
            ip=parse_ip("11.3.0.1"),
            succeeded=False,
            account="carol@example.jp",
        )
        v = det.process(fail)
    assert v.features["auth_failures_1h"] == 12
    assert v.features["ip_auth_failures_24h"] == 12
    nobody = AuthAttempt(time=T0, ip=parse_ip("11.3.0.1"), succeeded=False)
    assert det.process(nobody).level == Level.OK
    assert det.stats.no_account == 1
    checked = det.check(_sub(30, "11.3.0.1", "carol@example.jp"))
    assert checked.features["ip_auth_failures_24h"] == 13  # the account-less one too


def test_first_abuse_marks_the_abuse_so_far_like_the_compact_detector() -> None:
    compact = Detector(geo=_Countries())
    store = Detector(geo=_Countries(), store=MemoryStore(retention=TWO_DAYS))
    for det in (compact, store):
        for day in (2, 1):  # a baseline: two days at home (11.0/16, JP)
            for h in range(3):
                det.process(_sub(-86_400 * day + 3600 * h, "11.0.0.5"))
        for i in range(1, 7):
            v = det.process(_sub(60 * i, f"11.{i}.0.9"))
        assert v.level == Level.ABUSE
    marked = []
    for i in range(7):
        probe = _sub(700, f"11.{i}.0.9", "other@example.jp")
        got = store.check(probe).features["ip_in_abuse"]
        assert got == compact.check(probe).features["ip_in_abuse"], i
        marked.append(got)
    print("marked", marked)
    assert not marked[0]  # the owner's own network never
    assert sum(marked) >= 2  # this event's address and earlier ones of the abuse


def test_a_burst_without_a_baseline_marks_its_address_like_the_compact_detector() -> None:
    # No baseline, the home country: only the address a rule about its own sending
    # flagged is marked (the store reads the same verdict and marks the same address).
    from authabuse.rules import load_rules

    rules = load_rules(
        "r.toml",
        text='[[rule]]\nname = "volume"\nwhen = "not network_usual and ip_mails_1h >= 5"\n'
        "score = 100\n",
    )
    compact = Detector(geo=_Countries(), rules=rules)
    store = Detector(geo=_Countries(), rules=rules, store=MemoryStore(retention=TWO_DAYS))
    for det in (compact, store):
        for i in range(5):
            v = det.process(_sub(i, "11.0.0.7"))
        assert v.level == Level.ABUSE
        assert not v.features["baseline_ready"]
    probe = _sub(300, "11.0.0.7", "other@example.jp")
    assert store.check(probe).features["ip_in_abuse"]
    assert compact.check(probe).features["ip_in_abuse"]


def test_features_no_rule_reads_are_not_kept_but_say_so() -> None:
    from authabuse.rules import load_rules

    det = Detector(geo=_Countries(), store=MemoryStore(retention=TWO_DAYS))
    v = det.process(_sub(0, "11.1.0.9"))
    with pytest.raises(ConfigurationError, match="no rule reads it"):
        v.features["rcpt_domains_1h"]
    rules = load_rules(
        "r.toml",
        text='[[rule]]\nname = "fanout"\nwhen = "rcpt_domains_1h >= 3"\nscore = 60\n',
    )
    det = Detector(geo=_Countries(), rules=rules, store=MemoryStore(retention=TWO_DAYS))
    ref = Detector(geo=_Countries(), rules=rules)
    for i, dom in enumerate(("a.example", "b.example", "a.example", "c.example")):
        e = Submission(
            time=T0 + timedelta(seconds=i),
            ip=parse_ip("11.1.0.9"),
            account="mallory@example.jp",
            recipient_count=1,
            recipients=(f"x@{dom}",),
        )
        got, want = det.process(e), ref.process(e)
        assert got.features["rcpt_domains_1h"] == want.features["rcpt_domains_1h"]
        assert _signature(got) == _signature(want)
    assert got.level == Level.SUSPICIOUS


def test_first_time_recipients_are_shared_like_the_compact_detectors() -> None:
    """A rule on first-time recipients: the store keeps them and agrees with compact."""
    from authabuse.rules import load_rules

    rules = load_rules(
        "r.toml",
        text='[[rule]]\nname = "strangers"\n'
        'when = "new_rcpts_24h >= 6 & new_rcpt_share_1h >= 0.8 & known_rcpts >= 2"\n'
        "score = 100\n",
    )
    store = MemoryStore(retention=TWO_DAYS)
    two = [Detector(geo=_Countries(), rules=rules, store=store) for _ in range(2)]
    ref = Detector(geo=_Countries(), rules=rules)
    names = (
        "new_rcpts_1h",
        "new_rcpts_24h",
        "new_rcpt_share_1h",
        "new_rcpt_share_24h",
        "unusual_new_rcpts_1h",
        "unusual_new_rcpts_24h",
        "unusual_new_rcpt_share_24h",
    )
    events: list[tuple[int, str, tuple[str, ...]]] = []
    for i, who in enumerate(("mum", "ken", "Mum", "aya", "ken")):  # the owner, at home
        events.append((60 * i, "11.0.0.5", (f"{who}@example.org",)))
    for i in range(4):  # the password used from Brazil: strangers, three a message
        spam = tuple(f"s{i}{k}@example.com" for k in range(3))
        events.append((3600 * 26 + 60 * i, "11.1.0.9", spam))
    verdicts = []
    for n, (dt, ip, rcpts) in enumerate(events):
        e = Submission(
            time=T0 + timedelta(seconds=dt),
            ip=parse_ip(ip),
            account="mallory@example.jp",
            recipient_count=len(rcpts),
            recipients=rcpts,
        )
        got, want = two[n % 2].process(e), ref.process(e)
        for name in (*names, "known_rcpts"):
            assert got.features[name] == want.features[name], (n, name)
        assert _signature(got) == _signature(want)
        assert [f.detail for f in got.findings] == [f.detail for f in want.findings]
        verdicts.append(got)
    assert verdicts[4].features["known_rcpts"] == 3  # mum, ken, aya: case does not matter
    assert [v.level for v in verdicts[5:]] == [Level.OK, Level.ABUSE, Level.ABUSE, Level.ABUSE]
    # the owner's first day is not counted (the memory was learning); the first spam
    # message, not flagged, taught its three strangers
    assert verdicts[6].features["new_rcpts_24h"] == 6
    assert "recipients 6 of 6 first-time in 1h (6 remembered)" in verdicts[6].findings[0].detail
    # without a rule reading them, the store keeps no recipients and says so
    other = load_rules(
        "o.toml", text='[[rule]]\nname = "many"\nwhen = "ips_1h >= 50"\nscore = 60\n'
    )
    plain = Detector(geo=_Countries(), rules=other, store=MemoryStore(retention=TWO_DAYS))
    v = plain.process(_sub(0, "11.0.0.5"))
    with pytest.raises(ConfigurationError, match="no rule reads it"):
        v.features["new_rcpts_1h"]
