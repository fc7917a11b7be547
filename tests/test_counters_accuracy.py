"""Accuracy of HyperLogLog at precision 14, as issue 3 states it (deterministic seeds).

Trials stream 1,000,000 distinct IPv4 addresses (random, and sequential from a random
start) into a sketch through the numpy batch path, which is bit-identical to the pure
path (tests/test_counters_numpy.py), reading the estimate at each tested cardinality.
"""

from __future__ import annotations

import numpy as np
import pytest

from authabuse import HyperLogLog
from authabuse.counters import EXACT_LIMIT, update_array

CARDINALITIES = [100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
                 200_000, 500_000, 1_000_000]  # fmt: skip
TRIALS = 40
BOUND = 1.04 / 2**7  # 1.04 / sqrt(2**14) = 0.8125 %


def _stream(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "sequential":
        start = int(rng.integers(0, 2**32 - n))
        return np.arange(start, start + n, dtype=np.uint64)
    # n distinct addresses drawn uniformly, in random order: every prefix is a uniform
    # random set of its size
    drawn = np.sort(rng.integers(0, 2**32, n + n // 500 + 100, dtype=np.uint64))
    distinct = drawn[np.concatenate(([True], drawn[1:] != drawn[:-1]))]
    assert distinct.size >= n
    return rng.permutation(distinct)[:n]


@pytest.fixture(scope="module", params=["random", "sequential"])
def errors(request: pytest.FixtureRequest) -> tuple[str, np.ndarray]:
    kind = str(request.param)
    rng = np.random.default_rng(20240501 if kind == "random" else 20240502)
    out = np.empty((TRIALS, len(CARDINALITIES)))
    for t in range(TRIALS):
        ips = _stream(kind, rng, CARDINALITIES[-1])
        h = HyperLogLog(14)
        done = 0
        for j, n in enumerate(CARDINALITIES):
            update_array(h, ips[done:n])
            done = n
            out[t, j] = h.estimate() / n - 1.0
    return kind, out


def test_mean_absolute_error_within_bound(errors: tuple[str, np.ndarray]) -> None:
    kind, err = errors
    mare = np.abs(err).mean(axis=0)
    bad = {n: f"{e:.3%}" for n, e in zip(CARDINALITIES, mare, strict=True) if e > BOUND}
    assert not bad, f"{kind}: mean |relative error| above {BOUND:.3%} at {bad}"


def test_no_bias_bump(errors: tuple[str, np.ndarray]) -> None:
    kind, err = errors
    mean = err.mean(axis=0)
    bad = {n: f"{e:+.3%}" for n, e in zip(CARDINALITIES, mean, strict=True) if abs(e) > 0.005}
    assert not bad, f"{kind}: mean signed error beyond +-0.5 % at {bad}"


@pytest.mark.parametrize("kind", ["random", "sequential"])
def test_exact_below_exact_limit(kind: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        ips = _stream(kind, rng, EXACT_LIMIT).tolist()
        h = HyperLogLog(14)
        for i, ip in enumerate(ips, 1):
            h.add(ip)
            h.add(ips[0])
            assert h.estimate() == i
