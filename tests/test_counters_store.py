"""CounterStore protocol, MemoryStore bounds, windows and rates."""

from __future__ import annotations

import pytest

from authabuse import ConfigurationError, CounterStore, MemoryStore
from authabuse.counters._store import redis_key
from authabuse.testing import check_counter_store, check_sketch

T0 = 1_714_557_600.0


@pytest.mark.parametrize(
    ("slice_seconds", "retention"), [(60, 3600), (3600, 86_400), (300, 900), (0.5, 10)]
)
def test_memory_store_passes_conformance_kit(slice_seconds: float, retention: float) -> None:
    check_counter_store(lambda: MemoryStore(slice_seconds=slice_seconds, retention=retention))


def test_kit_catches_a_broken_store() -> None:
    class Forgetful(MemoryStore):
        def forget(self, key: tuple[str | int, ...]) -> None:
            pass

    with pytest.raises(AssertionError, match="forget"):
        check_counter_store(Forgetful)

    class NoWindow(MemoryStore):
        def count_distinct(self, key: tuple[str | int, ...], *, at: float, window: float) -> int:
            return super().count_distinct(key, at=at, window=self.retention)

    with pytest.raises(AssertionError, match="slice"):
        check_counter_store(NoWindow)


def test_sketch_kit_passes() -> None:
    from authabuse import HyperLogLog

    check_sketch(HyperLogLog)
    check_sketch(lambda: HyperLogLog(10))


def test_lru_bound_and_stats() -> None:
    store = MemoryStore(max_keys=3)
    for i in range(5):
        store.add_distinct(("acct", i), [i], at=T0 + i)
    assert len(store) == 3
    assert list(store.keys()) == [("acct", 2), ("acct", 3), ("acct", 4)]
    assert store.stats["evicted_lru"] == 2
    # reading refreshes recency
    assert store.count_distinct(("acct", 2), at=T0 + 5, window=3600) == 1
    store.incr(("acct", 9), "x", at=T0 + 6)
    assert ("acct", 2) in store
    assert ("acct", 3) not in store


def test_idle_ttl_in_event_time() -> None:
    store = MemoryStore(idle_ttl=600, slice_seconds=60, retention=3600)
    store.add_distinct(("quiet",), [1], at=T0)
    store.add_distinct(("busy",), [1], at=T0)
    store.add_distinct(("busy",), [2], at=T0 + 590)
    assert len(store) == 2
    store.add_distinct(("busy",), [3], at=T0 + 601)
    assert ("quiet",) not in store
    assert store.stats["evicted_idle"] == 1
    assert store.count_distinct(("busy",), at=T0 + 601, window=3600) == 3


def test_late_writes_beyond_retention_are_counted_not_lost_silently() -> None:
    store = MemoryStore(slice_seconds=60, retention=600)
    store.add_distinct(("k",), [1], at=T0 + 10_000)
    store.add_distinct(("k",), [2, 3], at=T0)
    store.incr(("k",), "f", at=T0)
    assert store.stats["dropped_late"] == 3
    assert store.count_distinct(("k",), at=T0 + 10_000, window=600) == 1


def test_memory_usage_tracks_content() -> None:
    store = MemoryStore()
    empty = store.memory_usage()
    for i in range(1000):
        store.add_distinct((f"user{i}@example.jp", "ip"), [i, i + 1], at=T0)
    small = store.memory_usage()
    assert small > empty
    assert small / 1000 < 1500  # a quiet key costs about a kilobyte
    store.add_distinct(("abused", "ip"), range(50_000), at=T0)
    assert store.memory_usage() - small > 16_000  # one dense sketch (+ its window cache)


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        MemoryStore(max_keys=0)
    with pytest.raises(ConfigurationError):
        MemoryStore(slice_seconds=0)
    with pytest.raises(ConfigurationError):
        MemoryStore(slice_seconds=3600, retention=60)
    with pytest.raises(ConfigurationError):
        MemoryStore(precision=20)
    store = MemoryStore()
    with pytest.raises(ConfigurationError):
        store.count_distinct(("k",), at=T0, window=0)
    with pytest.raises(ValueError, match="finite"):
        store.add_distinct(("k",), [1], at=float("nan"))
    with pytest.raises(TypeError):
        store.incr(("k",), 5, at=T0)  # type: ignore[arg-type]  # the error is the point


def test_protocol_is_runtime_checkable() -> None:
    assert isinstance(MemoryStore(), CounterStore)
    assert not isinstance(object(), CounterStore)


def test_redis_key_mapping_is_injective_and_tagged() -> None:
    keys = [
        ("a", "b:c"),
        ("a:b", "c"),
        ("a", "b", "c"),
        (1, "x"),
        ("1", "x"),
        ("#1", "x"),
        ("{a}", "x"),
        ("a}", "x"),
        ("a\\", ":x"),
    ]
    encoded = [redis_key("aa:", k, "d", 7) for k in keys]
    assert len(set(encoded)) == len(keys)
    for k, e in zip(keys, encoded, strict=True):
        tag = e[e.index("{") + 1 : e.index("}")]
        assert tag  # Redis hashes only the first {...}; it must be non-empty
        assert redis_key("aa:", (k[0], "other"), "c", 9).startswith(e[: e.index("}") + 1])


def test_missing_extras_raise_missing_extra_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import numpy as np

    from authabuse import HyperLogLog, MissingExtraError
    from authabuse.counters import HyperLogLogAdapter, update_array

    arr = np.arange(10, dtype=np.uint64)
    monkeypatch.setitem(sys.modules, "numpy", None)  # makes `import numpy` fail
    monkeypatch.setitem(sys.modules, "hyperloglog", None)
    with pytest.raises(MissingExtraError, match=r"authabuse\[numpy\]"):
        update_array(HyperLogLog(), arr)
    with pytest.raises(MissingExtraError, match=r"authabuse\[hyperloglog\]"):
        HyperLogLogAdapter()


def test_adapter_store_passes_the_kit_and_refuses_mixing() -> None:
    from authabuse import HyperLogLog, IncompatibleError
    from authabuse.counters import HyperLogLogAdapter

    check_counter_store(
        lambda: MemoryStore(sketch=HyperLogLogAdapter, slice_seconds=60, retention=600)
    )
    check_sketch(HyperLogLogAdapter)
    a = HyperLogLogAdapter()
    a.update(range(10_000))
    with pytest.raises(IncompatibleError):
        a.merge(HyperLogLog())  # type: ignore[arg-type]  # the error is the point
    with pytest.raises(IncompatibleError):
        HyperLogLog.from_bytes(a.to_bytes())  # hash id 2 is not ours
    assert HyperLogLogAdapter.from_bytes(a.to_bytes()) == a
    assert a.precision == 14
