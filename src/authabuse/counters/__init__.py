"""Distinct counters, windows and rates: the counting layer of the detector.

* :class:`HyperLogLog`: a ``set``-like distinct counter (exact, then sparse, then dense).
* :class:`WindowedDistinct`, :class:`WindowedCounts`, :class:`RateTracker`: distinct
  members and counts over epoch-aligned time slices, and EWMA rates, in event time.
* :func:`update_array`, :func:`union_all`, :func:`hash_array`: the ``numpy`` extra's
  vectorised paths (bit-identical to the pure ones); :class:`HyperLogLogAdapter`: the
  ``hyperloglog`` extra's sketches behind the same :class:`Sketch` protocol.
* :class:`CounterStore`: the protocol the detector reads and writes its per-key counters
  through (distinct members and counted fields over epoch-aligned time slices), and
  :class:`MemoryStore`, its bounded in-memory implementation.

>>> from authabuse.counters import HyperLogLog, MemoryStore
>>> store = MemoryStore()
>>> store.add_distinct(("alice@example.jp", "ip"), [3325256711], at=1_714_557_600.0)
>>> store.count_distinct(("alice@example.jp", "ip"), at=1_714_557_600.0, window=86_400)
1
"""

from __future__ import annotations

from authabuse.counters._adapter import HyperLogLogAdapter, Sketch
from authabuse.counters._hash import HASH_ID, hash64
from authabuse.counters._hll import DEFAULT_PRECISION, EXACT_LIMIT, HyperLogLog
from authabuse.counters._numpy import hash_array, union_all, update_array
from authabuse.counters._store import (
    CounterStore,
    Key,
    MemoryStore,
    Op,
    apply_op,
    check_key,
    redis_key,
    run_batch,
)
from authabuse.counters._window import (
    RateTracker,
    WindowedCounts,
    WindowedDistinct,
    slice_index,
    window_slices,
)

__all__ = [
    "DEFAULT_PRECISION",
    "EXACT_LIMIT",
    "HASH_ID",
    "CounterStore",
    "HyperLogLog",
    "HyperLogLogAdapter",
    "Key",
    "MemoryStore",
    "Op",
    "RateTracker",
    "Sketch",
    "WindowedCounts",
    "WindowedDistinct",
    "apply_op",
    "check_key",
    "hash64",
    "hash_array",
    "redis_key",
    "run_batch",
    "slice_index",
    "union_all",
    "update_array",
    "window_slices",
]
