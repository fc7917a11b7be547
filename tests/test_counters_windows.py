"""Windowed distinct counts, windowed counts and rates against exact models."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authabuse import ConfigurationError, CorruptDataError, IncompatibleError
from authabuse.counters import (
    HyperLogLogAdapter,
    RateTracker,
    WindowedCounts,
    WindowedDistinct,
)

ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "ask"]),
        st.integers(0, 40),  # time in slices of 10 s, possibly out of order
        st.floats(0, 9.99),
        st.lists(st.integers(0, 30), max_size=4),
        st.integers(1, 8),  # window in slices
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_windowed_distinct_matches_an_exact_model(script: list) -> None:  # type: ignore[type-arg]
    w = WindowedDistinct(slice_seconds=10, slices=6)
    model: dict[int, set[int]] = {}
    newest: int | None = None
    for op, sl, frac, members, nwin in script:
        at = sl * 10 + frac
        if op == "add":
            if newest is not None and sl <= newest - 6:
                continue  # dropped as too late: checked separately
            w.update(members, at=at)
            newest = sl if newest is None else max(newest, sl)
            model.setdefault(sl, set()).update(members)
            for old in [k for k in model if k <= newest - 6]:
                del model[old]
        else:
            n = min(nwin, 6)
            want = set().union(*(v for k, v in model.items() if sl - n < k <= sl))
            # exact tier: at most 31 distinct members per union here
            assert w.estimate(at=at, window=n * 10) == len(want)


def test_late_members_are_dropped_and_counted() -> None:
    w = WindowedDistinct(slice_seconds=60, slices=10)
    w.update([1, 2], at=6000.0)
    w.update([3, 4, 5], at=0.0)
    assert w.dropped == 3
    assert w.estimate(at=6000.0) == 2


def test_merge_slice_by_slice_and_serialization() -> None:
    a = WindowedDistinct(slice_seconds=3600, slices=24)
    b = WindowedDistinct(slice_seconds=3600, slices=24)
    a.update(range(0, 1000), at=0.0)
    b.update(range(500, 1500), at=1800.0)  # same slice as a's
    b.update(range(5000, 5100), at=7200.0)
    a.merge(b)
    assert abs(a.estimate(at=7200.0, window=3 * 3600) - 1600) < 40
    assert abs(a.estimate(at=7200.0, window=3600) - 100) < 3
    back = WindowedDistinct.from_bytes(a.to_bytes())
    assert back == a
    assert back.estimate(at=7200.0, window=7200) == a.estimate(at=7200.0, window=7200)
    with pytest.raises(IncompatibleError):
        a.merge(WindowedDistinct(slice_seconds=60, slices=24))
    with pytest.raises(IncompatibleError):
        a.merge(WindowedDistinct(slice_seconds=3600, slices=24, precision=12))
    raw = a.to_bytes()
    for cut in (0, 5, len(raw) // 2, len(raw) - 1):
        with pytest.raises(CorruptDataError):
            WindowedDistinct.from_bytes(raw[:cut])


def test_cached_window_follows_new_members_and_new_slices() -> None:
    w = WindowedDistinct(slice_seconds=10, slices=100)
    for t in range(300):
        w.add(t % 60, at=float(t))  # stays in the exact tier
        if t % 7 == 0:
            assert w.estimate(at=float(t), window=200) == min(t + 1, 60)
    assert w.estimate(at=299.0, window=50) == 50  # slices 25..29 hold times 250..299


def test_window_validation() -> None:
    w = WindowedDistinct(slice_seconds=60, slices=10)
    with pytest.raises(ConfigurationError):
        w.estimate(at=0.0, window=601)
    with pytest.raises(ConfigurationError):
        w.estimate(at=0.0, window=-1)
    with pytest.raises(ValueError, match="finite"):
        w.add(1, at=math.inf)
    with pytest.raises(TypeError):
        w.update("abc", at=0.0)
    with pytest.raises(ConfigurationError):
        WindowedDistinct(slice_seconds=0)
    with pytest.raises(ConfigurationError):
        WindowedDistinct(slices=0)


def test_windowed_distinct_with_the_adapter() -> None:
    w = WindowedDistinct(slice_seconds=60, slices=5, sketch=HyperLogLogAdapter)
    w.update(range(1000), at=0.0)
    w.update(range(500, 1500), at=60.0)
    assert abs(w.estimate(at=60.0) - 1500) < 60


def test_windowed_counts() -> None:
    c = WindowedCounts(slice_seconds=60, slices=3)
    c.incr("JP", at=0.0)
    c.incr("JP", 4, at=61.0)
    c.incr("BR", at=130.0)
    assert c.counts(at=130.0) == {"JP": 5, "BR": 1}
    assert c.counts(at=130.0, window=60) == {"BR": 1}
    assert c.total(at=130.0, window=120) == 5
    c.incr("US", at=200.0)  # slice 3: slice 0 leaves
    assert c.counts(at=200.0) == {"JP": 4, "BR": 1, "US": 1}
    c.incr("XX", at=0.0)
    assert c.dropped == 1
    d = WindowedCounts(slice_seconds=60, slices=3)
    d.incr("JP", 10, at=180.0)
    c.merge(d)
    assert c.counts(at=200.0) == {"JP": 14, "BR": 1, "US": 1}
    with pytest.raises(IncompatibleError):
        c.merge(WindowedCounts(slice_seconds=30, slices=3))
    with pytest.raises(TypeError):
        c.incr("JP", 1.5, at=0.0)  # type: ignore[arg-type]  # the error is the point


def test_rate_tracker_steady_burst_late_and_bounded() -> None:
    r = RateTracker(half_life=30, max_keys=2)
    for i in range(3000):
        r.hit("a", at=i * 0.1)  # 10/s
    assert r.rate("a", at=299.9) == pytest.approx(10, rel=0.02)
    assert r.rate("a", at=329.9) == pytest.approx(5, rel=0.02)
    assert r.rate("a", at=200.0) == pytest.approx(r.rate("a", at=299.9))  # never grows back
    before = r.rate("a", at=299.9)
    r.hit("a", at=269.9)  # a late event counts, weighted by its age
    assert r.rate("a", at=299.9) == pytest.approx(before + math.log(2) / 30 / 2)
    r.hit("b", at=300.0)
    r.hit("c", at=300.0)
    assert len(r) == 2
    assert r.evicted == 1
    assert r.rate("a", at=300.0) == 0.0
    r.forget("b")
    assert len(r) == 1
    assert r.memory_usage() > 0
    with pytest.raises(ConfigurationError):
        RateTracker(half_life=0)
