"""The numpy extra is bit-identical to the pure path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authabuse import HyperLogLog
from authabuse.counters import EXACT_LIMIT, hash64, hash_array, union_all, update_array

EDGES = [0, 1, 2**32 - 1, 2**32, 0x61C8864680B583EA, 0x61C8864680B583EB, 2**63, 2**64 - 1]


def test_hash_array_equals_hash64_on_edges_and_random() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [np.array(EDGES, dtype=np.uint64), rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64)]
    )
    assert hash_array(values).tolist() == [hash64(int(v)) for v in values]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32, np.int64, np.uint64])
def test_all_integer_dtypes(dtype: type) -> None:
    values: np.ndarray = np.arange(0, 100, dtype=dtype)
    assert hash_array(values).tolist() == [hash64(i) for i in range(100)]


def test_bad_arrays_raise() -> None:
    with pytest.raises(ValueError, match="negative"):
        hash_array(np.array([1, -1]))
    with pytest.raises(TypeError, match="float"):
        hash_array(np.array([1.0]))
    with pytest.raises(TypeError, match="object"):
        hash_array(np.array([2**70], dtype=object))
    with pytest.raises(ValueError, match="at least one"):
        union_all([])


@pytest.mark.parametrize("start", [0, 3, EXACT_LIMIT, 300, 5000, 50_000])
@pytest.mark.parametrize("batch", [1, 10, EXACT_LIMIT, 1000, 100_000])
def test_update_array_matches_pure_from_every_tier(start: int, batch: int) -> None:
    rng = np.random.default_rng(start * 7 + batch)
    first = rng.integers(0, 2**64 - 1, start, dtype=np.uint64)
    second = np.concatenate([rng.integers(0, 2**32, batch, dtype=np.uint64), first[:5]])
    pure, fast = HyperLogLog(), HyperLogLog()
    pure.update(first.tolist())
    update_array(fast, first)
    assert fast == pure
    pure.update(second.tolist())
    fast.update(second)  # an ndarray passed to update() takes the numpy path
    assert fast == pure
    assert fast.to_bytes() == pure.to_bytes()
    assert fast.estimate() == pure.estimate()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), max_size=300),
    st.lists(st.integers(0, 2**64 - 1), max_size=300),
    st.sampled_from([4, 8, 10, 14]),
)
def test_update_array_property(a: list[int], b: list[int], p: int) -> None:
    pure, fast = HyperLogLog(p), HyperLogLog(p)
    pure.update(a)
    pure.update(b)
    update_array(fast, np.array(a, dtype=np.uint64))
    update_array(fast, np.array(b, dtype=np.uint64))
    assert fast == pure


def test_union_all_matches_union() -> None:
    rng = np.random.default_rng(11)
    sketches = []
    for i in range(30):
        h = HyperLogLog()
        n = [0, 5, 200, 3000, 40_000][i % 5]
        update_array(h, rng.integers(0, 2**32, n, dtype=np.uint64))
        sketches.append(h)
    assert union_all(sketches) == sketches[0].union(*sketches[1:])
    assert union_all(sketches[:1]) == sketches[0]
    dense = [s for s in sketches if s.encoding == "dense"]
    assert union_all(dense) == dense[0].union(*dense[1:])


def test_repetitive_batches_stay_exact_like_the_pure_path() -> None:
    values = np.tile(np.arange(5, dtype=np.uint64), 1000)
    pure, fast = HyperLogLog(), HyperLogLog()
    pure.update(values.tolist())
    update_array(fast, values)
    assert fast.encoding == pure.encoding == "exact"
    assert fast == pure
    more = np.tile(np.arange(0, 70, dtype=np.uint64), 300)  # 70 distinct in all
    pure.update(more.tolist())
    update_array(fast, more)
    assert fast == pure
    assert fast.encoding == "sparse"
