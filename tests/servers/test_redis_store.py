"""RedisStore on a real redis-server (Debian package redis-server) on loopback."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authabuse.counters import MemoryStore
from authabuse.testing import check_counter_store

redis = pytest.importorskip("redis", reason="the 'redis' extra is not installed")
from authabuse.redis_store import RedisStore  # noqa: E402 - after the extra check

if TYPE_CHECKING:
    from conftest import RedisProcess  # tests/servers/conftest.py (fixtures, not importable)

T0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z, a slice start for 60 s slices


@pytest.fixture(scope="module")
def redis_server(redis_process_type: type[RedisProcess]) -> Iterator[RedisProcess]:
    server = redis_process_type()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def make_store(redis_server: RedisProcess) -> Iterator[Callable[..., RedisStore]]:
    made: list[RedisStore] = []

    def make(**kwargs: Any) -> RedisStore:
        kwargs.setdefault("slice_seconds", 60)
        kwargs.setdefault("retention", 3600)
        kwargs.setdefault("prefix", f"t{uuid.uuid4().hex[:8]}:")
        store = RedisStore(kwargs.pop("url", redis_server.url), **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def test_conformance_kit(make_store: Callable[..., RedisStore]) -> None:
    check_counter_store(make_store)


def test_native_redis_types_and_layout(
    make_store: Callable[..., RedisStore], redis_server: RedisProcess
) -> None:
    store = make_store(prefix="lay:")
    store.add_distinct(("alice@example.jp", "ip"), [3325256711, 3325256712], at=T0)
    store.incr(("alice@example.jp", "country"), "JP", 3, at=T0 + 61)
    r = redis.Redis.from_url(redis_server.url)
    slice0 = int(T0 // 60)
    dkey = f"lay:{{alice@example.jp}}:ip:d:{slice0}"
    ckey = f"lay:{{alice@example.jp}}:country:c:{slice0 + 1}"
    assert r.type(dkey) == b"string"
    assert r.pfcount(dkey) == 2  # a real Redis HyperLogLog
    assert r.hgetall(ckey) == {b"JP": b"3"}
    assert 0 < r.ttl(dkey) <= 3600 + 60
    assert 0 < r.ttl(ckey) <= 3600 + 60
    # One hash slot per account: every key of alice's is in the same Redis Cluster slot.
    from redis.crc import key_slot

    names = list(r.scan_iter(match="lay:*"))
    assert len(names) == 4  # two data keys, two slice indexes
    assert len({key_slot(k) for k in names}) == 1
    assert sorted(store.keys()) == [("alice@example.jp", "country"), ("alice@example.jp", "ip")]
    r.close()


def test_count_distinct_hint_reads_only_the_named_slices(
    make_store: Callable[..., RedisStore], redis_server: RedisProcess
) -> None:
    # The store-backed detector writes a long bucket at its start time only: a window of
    # two buckets is 2 written slices out of 25. The hint names them; the answer is the
    # one over the whole window, and Redis is asked for those two keys alone.
    store = make_store(slice_seconds=3600, retention=2 * 86_400)
    key, day = ("alice@example.jp", "Li"), 86_400.0
    start = (T0 // day) * day
    store.add_distinct(key, [1, 2, 3], at=start - day)
    store.add_distinct(key, [3, 4], at=start)
    span = 25 * 3600.0
    whole = ("count_distinct", key, start, span)
    hinted = ("count_distinct", key, start, span, (start - day, start))
    r = redis.Redis.from_url(redis_server.url)
    before = r.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    r.config_set("slowlog-log-slower-than", 0)  # log every command with its arguments
    try:
        r.slowlog_reset()
        assert store.batch([whole, hinted]) == [4, 4]
        asked = [
            len(e["command"].split()) - 1
            for e in r.slowlog_get(128)
            if e["command"].startswith(b"PFCOUNT")
        ]
    finally:
        r.config_set("slowlog-log-slower-than", before)
        r.close()
    assert sorted(asked) == [2, 25]  # keys read: the hinted slices, the whole window
    assert MemoryStore(slice_seconds=3600, retention=2 * 86_400).batch([hinted]) == [0]
    with pytest.raises(ValueError, match="not inside the window"):
        store.batch([("count_distinct", key, start, 3600.0, (start - day, start))])
    # Redis down: the local fallback answers the same operation (ignoring the hint).
    down = make_store(url="redis://127.0.0.1:1/0", slice_seconds=3600, retention=2 * 86_400)
    down.add_distinct(key, [1, 2, 3], at=start - day)
    down.add_distinct(key, [3, 4], at=start)
    assert down.batch([hinted, whole]) == [4, 4]
    assert down.status["degraded"]


def test_keys_round_trip_awkward_elements(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()
    keys = [("a:b{c}\\d", "x:y", 7), (3325256711, "accounts"), ("#5", "ip"), ("solo",)]
    for k in keys:
        store.incr(k, "n", at=T0)
    assert sorted(store.keys(), key=repr) == sorted(keys, key=repr)
    assert len(store) == 4


ops = st.lists(
    st.tuples(
        st.sampled_from(["alice@example.jp", "bob@example.jp"]),
        st.sampled_from(["ip", "net"]),
        st.lists(st.integers(0, 40), min_size=1, max_size=5),
        st.sampled_from(["JP", "BR", "US"]),
        st.integers(0, 200),  # seconds after T0, across four 60 s slices
    ),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops)
def test_same_events_same_answers_as_memory_store(
    make_store: Callable[..., RedisStore], ops: list[Any]
) -> None:
    rs, ms = make_store(), MemoryStore(slice_seconds=60, retention=3600)
    for account, kind, members, country, dt in ops:
        for store in (rs, ms):
            store.add_distinct((account, kind), members, at=T0 + dt)
            store.incr((account, "country"), country, at=T0 + dt)
    for account in ("alice@example.jp", "bob@example.jp", "nobody@example.jp"):
        for at in (T0, T0 + 100, T0 + 250):
            for window in (60, 120, 600):
                for kind in ("ip", "net"):
                    assert rs.count_distinct((account, kind), at=at, window=window) == (
                        ms.count_distinct((account, kind), at=at, window=window)
                    )
                assert rs.counts((account, "country"), at=at, window=window) == ms.counts(
                    (account, "country"), at=at, window=window
                )


def test_state_survives_the_process(make_store: Callable[..., RedisStore]) -> None:
    first = make_store(prefix="restart:")
    first.add_distinct(("carol", "ip"), range(10), at=T0)
    first.incr(("carol", "country"), "NG", at=T0)
    first.close()  # the server dies; a new one connects to the same Redis
    second = make_store(prefix="restart:")
    assert second.count_distinct(("carol", "ip"), at=T0 + 30, window=600) == 10
    assert second.counts(("carol", "country"), at=T0 + 30, window=600) == {"NG": 1}


def test_redis_down_falls_back_then_reconnects(
    caplog: pytest.LogCaptureFixture, redis_process: Callable[..., RedisProcess]
) -> None:
    server = redis_process()
    try:
        store = RedisStore(server.url, slice_seconds=60, retention=3600, retry_interval=0.2)
        store.add_distinct(("dave", "ip"), [1, 2], at=T0)
        assert store.count_distinct(("dave", "ip"), at=T0, window=60) == 2
        server.kill()
        with caplog.at_level(logging.WARNING, logger="authabuse.redis"):
            store.add_distinct(("dave", "ip"), [3], at=T0)  # no exception: local state
            assert store.degraded
            assert store.count_distinct(("dave", "ip"), at=T0, window=60) == 1
            assert store.counts(("dave", "country"), at=T0, window=60) == {}
            store.incr(("dave", "country"), "JP", at=T0)
            assert store.counts(("dave", "country"), at=T0, window=60) == {"JP": 1}
        assert "unreachable" in caplog.text
        assert store.status["fallbacks"] == 1
        assert store.status["errors"] >= 1
        assert store.memory_usage() > 0
        server.start()  # same port, empty data (no persistence configured)
        time.sleep(0.3)
        with caplog.at_level(logging.WARNING, logger="authabuse.redis"):
            store.add_distinct(("dave", "ip"), [9], at=T0)
        assert store.status["degraded"] is False
        assert "reachable again" in caplog.text
        assert store.count_distinct(("dave", "ip"), at=T0, window=60) == 1  # Redis again
        store.close()
    finally:
        server.close()


def test_redis_cluster_single_node(redis_process: Callable[..., RedisProcess]) -> None:
    """A real (one-node) Redis Cluster: multi-key PFCOUNT works thanks to the hash tag."""
    server = redis_process("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
    try:
        admin = redis.Redis(port=server.port)
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        end = time.monotonic() + 10
        while admin.cluster("info")["cluster_state"] != "ok":
            assert time.monotonic() < end, "cluster did not become ok"
            time.sleep(0.05)
        admin.close()
        from redis.cluster import RedisCluster

        client = RedisCluster(host="127.0.0.1", port=server.port)
        store = RedisStore(slice_seconds=60, retention=3600, client=client)
        for n in range(5):
            store.add_distinct(("erin@example.jp", "ip"), [n], at=T0 + 60 * n)
            store.incr(("erin@example.jp", "country"), "FR", at=T0 + 60 * n)
        assert store.count_distinct(("erin@example.jp", "ip"), at=T0 + 240, window=300) == 5
        assert store.counts(("erin@example.jp", "country"), at=T0 + 240, window=300) == {"FR": 5}
        store.forget(("erin@example.jp", "ip"))
        assert store.count_distinct(("erin@example.jp", "ip"), at=T0 + 240, window=300) == 0
        assert not store.degraded
        # A pair read on a cluster client: both buckets read whole, summarised here.
        key = ("erin@example.jp", "S")
        store.batch([("incr_fields", key, {"n:7": 2, "m": 1}, T0)])
        [pair] = store.batch([("pair", key, T0, T0 - 60, "n:7", 6)])
        assert (pair.complete, pair.cur, pair.nets, pair.probe_cur) == (
            True,
            {"m": 1},
            {"n:7": 2},
            2,
        )
        # The loop path does not cover a cluster client: servers keep the blocking calls.
        import asyncio

        from authabuse._store_loop import LoopRunner
        from authabuse.detector import Detector

        big = RedisStore(retention=2 * 86_400, client=client, prefix="det:")
        det = Detector(store=big)
        assert asyncio.run(big.bind_loop()) is False
        assert asyncio.run(LoopRunner.bind(det)) is None
        ref = Detector(store=MemoryStore(retention=2 * 86_400))
        from datetime import UTC, datetime, timedelta

        from authabuse.events import Submission, parse_ip

        t0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
        for i in range(30):
            e = Submission(
                time=t0 + timedelta(minutes=i),
                ip=parse_ip(f"{20 + i}.{i}.1.9"),
                account="erin@example.jp",
                recipients=(f"r{i}@example.org",),
                recipient_count=1,
            )
            got, want = det.process(e), ref.process(e)
            assert (got.level, got.score) == (want.level, want.score)
        assert want.level > 0  # the burst was judged, on the cluster as in memory
        assert not big.degraded
        client.close()
    finally:
        server.close()


# The store's own operations for the store-backed detector: "pair" (a window's two
# buckets summarised by a script in Redis) and "incr_fields" (a bucket's counts at once).

_nets = st.integers(min_value=-(65537 + 2**32), max_value=2**32)
_bucket = st.dictionaries(
    st.one_of(
        _nets.map(lambda n: f"n:{n}"),
        st.sampled_from(["m", "u", "r", "nn", "nw", "c:JP", "c:FR", "C:FR", "n", "nx:1"]),
    ),
    st.integers(min_value=1, max_value=4),  # few distinct counts: many ties
    max_size=40,
)


def _expected_pair(
    cur: dict[str, int], prev: dict[str, int], probe: str, top: int
) -> tuple[Any, ...]:
    """The summary in plain Python: networks summed, the busiest, count then net order."""
    nets: dict[str, int] = {}
    for part in (cur, prev):
        for f, v in part.items():
            if f.startswith("n:"):
                nets[f] = nets.get(f, 0) + v
    best = sorted(nets.items(), key=lambda kv: (-kv[1], int(kv[0][2:])))[:top]
    shown = dict(best)
    if probe in nets:
        shown[probe] = nets[probe]
    rest = [{f: v for f, v in part.items() if not f.startswith("n:")} for part in (cur, prev)]
    return rest[0], rest[1], shown, len(nets), cur.get(probe, 0)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cur=_bucket,
    prev=_bucket,
    probe=_nets,
    top=st.integers(min_value=1, max_value=8),
    held=st.booleans(),
)
def test_pair_reads_summarise_two_buckets_in_redis(
    make_store: Callable[..., RedisStore],
    cur: dict[str, int],
    prev: dict[str, int],
    probe: int,
    top: int,
    held: bool,
) -> None:
    """The script's summary is the plain one, ties and negative networks included."""
    if held:  # often probe a network the buckets hold
        probe = int(next((f[2:] for f in cur if f.startswith("n:")), probe))
    store, key = make_store(), ("alice@example.jp", "S")
    store.batch([("incr_fields", key, prev, T0 - 60), ("incr_fields", key, cur, T0)])
    want = _expected_pair(cur, prev, f"n:{probe}", top)
    [got] = store.batch([("pair", key, T0, T0 - 60, f"n:{probe}", top)])
    assert not got.complete
    assert (got.cur, got.prev, got.nets, got.n_nets, got.probe_cur) == want
    # on the local fallback (and a pipeline client) the buckets are read whole
    local = MemoryStore(slice_seconds=60, retention=3600)
    for at, part in ((T0 - 60, prev), (T0, cur)):
        for f, v in part.items():
            local.incr(key, f, v, at=at)
    from authabuse.redis_store import _local_batch

    [whole] = _local_batch(local, [("pair", key, T0, T0 - 60, f"n:{probe}", top)])
    assert whole.complete
    assert (whole.cur, whole.prev, whole.n_nets, whole.probe_cur) == want[:2] + want[3:]
    assert all(whole.nets[f] == v for f, v in want[2].items())


def test_incr_fields_counts_like_incr_and_sets_the_slice_expiry(
    make_store: Callable[..., RedisStore], redis_server: RedisProcess
) -> None:
    store = make_store(prefix="inc:")
    key = ("bob@example.jp", "S")
    store.batch([("incr_fields", key, {"m": 1, "c:JP": 2}, T0), ("incr", key, "m", 3, T0)])
    store.batch([("incr_fields", key, {}, T0), ("incr_fields", key, {"m": 1}, T0 + 1)])
    assert store.counts(key, at=T0, window=60) == {"m": 5, "c:JP": 2}
    admin = redis.Redis(port=redis_server.port)
    name = next(iter(admin.scan_iter(match="inc:*:c:*")))
    assert 0 < admin.ttl(name) <= 3600 + 60
    assert admin.hgetall(name) == {b"m": b"5", b"c:JP": b"2"}
    with pytest.raises(TypeError):
        store.batch([("incr_fields", key, {"m": "1"}, T0)])
    with pytest.raises(TypeError):
        store.batch([("pair", key, T0, T0 - 60, "n:1", 0)])
    admin.close()


def test_scripts_flushed_from_redis_are_loaded_again(
    make_store: Callable[..., RedisStore], redis_server: RedisProcess
) -> None:
    """``SCRIPT FLUSH`` (or a Redis that lost them): the next calls load them again."""
    store = make_store(prefix="flush:")
    key = ("carol@example.jp", "S")
    store.batch([("incr_fields", key, {"n:64500": 2, "m": 1}, T0)])
    admin = redis.Redis(port=redis_server.port)
    admin.script_flush()
    # a write sent without waiting, then a read: both needed the scripts
    store.send([("incr_fields", key, {"n:64500": 1, "m": 1}, T0)])
    admin.script_flush()
    [pair] = store.batch([("pair", key, T0, T0 - 60, "n:64500", 6)])
    assert pair.cur == {"m": 2}
    assert pair.nets == {"n:64500": 3}
    assert not store.degraded
    assert store.status["errors"] == 0
    admin.close()
