"""The counter-store protocol and its bounded in-memory implementation."""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeAlias, runtime_checkable

from authabuse.counters._hash import Member
from authabuse.counters._hll import DEFAULT_PRECISION, HyperLogLog
from authabuse.counters._window import (
    WindowedCounts,
    WindowedDistinct,
    _check_time,
    _slices_for,
    window_slices,
)
from authabuse.errors import ConfigurationError

__all__ = ["CounterStore", "Key", "MemoryStore", "check_key"]

Key: TypeAlias = tuple[str | int, ...]
"""A counter key: a non-empty tuple of ``str``/``int``, the subject first.

``key[0]`` is the subject the counter is about (an account, an IP as int, a domain);
the rest names the metric, e.g. ``("alice@example.jp", "ip")``,
``("alice@example.jp", "country")``, ``(3325256711, "accounts")``. A store may co-locate
all keys sharing ``key[0]`` (the Redis store uses it as the Redis Cluster hash tag).
"""


def check_key(key: object) -> Key:
    """Validate a counter key (non-empty tuple of str/int, no bool); return it.

    >>> check_key(("alice@example.jp", "ip"))
    ('alice@example.jp', 'ip')
    >>> check_key("alice:ip")
    Traceback (most recent call last):
    ...
    TypeError: counter keys are non-empty tuples of str/int, not 'alice:ip'
    """
    if type(key) is not tuple or not key or not all(type(k) is str or type(k) is int for k in key):
        raise TypeError(f"counter keys are non-empty tuples of str/int, not {key!r}")
    return key


@runtime_checkable
class CounterStore(Protocol):
    """Where the detector keeps its per-key counters: distinct members and counted fields.

    Contract (every implementation, in memory or shared, must honour it; the conformance
    kit :func:`authabuse.testing.check_counter_store` checks it):

    * **Keys** are :data:`Key` tuples (``key[0]`` the subject), never concatenated
      strings. Distinct members and counted fields of one key are independent.
    * **Time** ``at`` is the event's POSIX time in seconds (float), never the clock.
      Time is cut into epoch-aligned slices of :attr:`slice_seconds`: slice
      ``i = floor(at / slice_seconds)``. A store keeps at least the slices within
      :attr:`retention` seconds of the newest event it has seen for the key; writes to
      older slices may be dropped.
    * **Windows**: a query at ``at`` over ``window`` seconds covers the
      ``ceil(window / slice_seconds)`` slices ending with slice ``floor(at / s)``
      (the current slice is partial). ``window`` must not exceed :attr:`retention`
      (:class:`~authabuse.errors.ConfigurationError`).
    * ``add_distinct(key, members, *, at)`` adds members (bytes, str, non-negative int:
      an IP as ``int(ip)``) to the slice of ``at``; ``count_distinct(key, *, at, window)``
      returns the distinct members over the window (the union of its slices), exact for
      small counts, within the sketch error (0.81 % at precision 14) beyond.
    * ``incr(key, field, amount=1, *, at)`` adds to a counted field in the slice of
      ``at``; ``counts(key, *, at, window)`` returns each field's sum over the window
      (fields with no count are absent).
    * ``forget(key)`` removes everything held for the key; ``len(store)`` is the number
      of keys held; ``memory_usage()`` the bytes held (exact or best estimate).
    * An unknown key reads as empty (``0``, ``{}``), never an error.

    Redis mapping (native, used by the Redis store): slice key
    ``<prefix>{<key[0]>}:<key[1:]>:d:<i>`` for distinct members (``PFADD``, then
    ``EXPIRE`` retention + one slice), ``PFCOUNT`` over the window's slice keys (all in
    one hash slot thanks to the ``{key[0]}`` hash tag, so it works on Redis Cluster);
    ``<prefix>{<key[0]>}:<key[1:]>:c:<i>`` hashes for counted fields (``HINCRBY`` +
    ``EXPIRE``, ``HGETALL`` per slice summed client-side). See :func:`redis_key`.

    >>> isinstance(MemoryStore(), CounterStore)
    True
    """

    @property
    def slice_seconds(self) -> float:
        """Width of the epoch-aligned time slices, in seconds."""

    @property
    def retention(self) -> float:
        """Seconds of history kept per key (the longest window that can be asked)."""

    def add_distinct(self, key: Key, members: Iterable[Member], *, at: float) -> None:
        """Add ``members`` to ``key``'s distinct set in the slice of time ``at``."""

    def count_distinct(self, key: Key, *, at: float, window: float) -> int:
        """Distinct members of ``key`` over the ``window`` seconds ending at ``at``."""

    def incr(self, key: Key, field: str, amount: int = 1, *, at: float) -> None:
        """Add ``amount`` to ``key``'s counted ``field`` in the slice of time ``at``."""

    def counts(self, key: Key, *, at: float, window: float) -> dict[str, int]:
        """``key``'s counted fields summed over the ``window`` seconds ending at ``at``."""

    def forget(self, key: Key) -> None:
        """Remove everything held for ``key``."""

    def memory_usage(self) -> int:
        """Bytes held by the store."""

    def __len__(self) -> int:
        """Return the number of keys held."""


def redis_key(prefix: str, key: Key, kind: str, slice_no: int) -> str:
    r"""Return the Redis key of one slice of a counter (the mapping in :class:`CounterStore`).

    Elements are escaped so the encoding is injective: ``\\`` ``:`` ``{`` ``}`` are
    backslash-escaped, ints are written ``#<decimal>``; ``key[0]`` becomes the hash tag.

    >>> redis_key("aa:", ("alice@example.jp", "ip"), "d", 476266)
    'aa:{alice@example.jp}:ip:d:476266'
    >>> redis_key("aa:", (3325256711, "acc:ts"), "c", 5)
    'aa:{#3325256711}:acc\\:ts:c:5'
    """

    def enc(k: str | int) -> str:
        if isinstance(k, int):
            return f"#{k}"
        s = k.replace("\\", "\\\\").replace(":", "\\:").replace("{", "\\{").replace("}", "\\}")
        return "\\#" + s[1:] if s.startswith("#") else s

    check_key(key)
    rest = ":".join(enc(k) for k in key[1:])
    middle = f":{rest}" if rest else ""
    return f"{prefix}{{{enc(key[0])}}}{middle}:{kind}:{slice_no}"


class _Entry:
    __slots__ = ("counts", "distinct", "last")

    def __init__(self, at: float) -> None:
        self.distinct: WindowedDistinct | None = None
        self.counts: WindowedCounts | None = None
        self.last = at


class MemoryStore:
    """The default :class:`CounterStore`: bounded, in memory, one process.

    Bounds: at most ``max_keys`` keys (the least recently used is evicted), and a key
    untouched for ``idle_ttl`` seconds of event time (default: the retention) is evicted.
    ``sketch`` makes the distinct-count sketches from the precision (default
    :class:`~authabuse.counters.HyperLogLog`, or e.g.
    :class:`~authabuse.counters.HyperLogLogAdapter` for the ``hyperloglog`` package).
    ``memory_usage()`` reports the bytes held (a walk over all keys: call it for
    monitoring, not per event); ``stats`` counts evictions and dropped late writes.
    Each key keeps one sketch per slice it was written in (a quiet key written once an
    hour for a day holds 24 small exact sketches, about 4 KB); one process, no locking:
    share it between threads only behind a lock.

    >>> store = MemoryStore(slice_seconds=3600, retention=86_400, max_keys=100_000)
    >>> key = ("alice@example.jp", "ip")
    >>> store.add_distinct(key, [3325256711, 3325256712], at=1_714_557_600.0)
    >>> store.add_distinct(key, [3325256711], at=1_714_561_200.0)
    >>> store.count_distinct(key, at=1_714_561_200.0, window=7200)
    2
    >>> store.incr(("alice@example.jp", "country"), "JP", at=1_714_557_600.0)
    >>> store.counts(("alice@example.jp", "country"), at=1_714_561_200.0, window=86_400)
    {'JP': 1}
    >>> len(store), store.memory_usage() < 10_000
    (2, True)
    """

    def __init__(
        self,
        *,
        max_keys: int = 1_000_000,
        idle_ttl: float | None = None,
        slice_seconds: float = 3600.0,
        retention: float = 86_400.0,
        precision: int = DEFAULT_PRECISION,
        sketch: Callable[[int], Any] = HyperLogLog,
    ) -> None:
        if type(max_keys) is not int or max_keys < 1:
            raise ConfigurationError(f"max_keys must be a positive integer, not {max_keys!r}")
        if not isinstance(slice_seconds, int | float) or not slice_seconds > 0:
            raise ConfigurationError(f"slice_seconds must be positive, not {slice_seconds!r}")
        if not isinstance(retention, int | float) or not retention >= slice_seconds:
            raise ConfigurationError(
                f"retention must be at least one slice ({slice_seconds} s), not {retention!r}"
            )
        if idle_ttl is not None and (not isinstance(idle_ttl, int | float) or idle_ttl <= 0):
            raise ConfigurationError(f"idle_ttl must be positive seconds, not {idle_ttl!r}")
        self._slice = float(slice_seconds)
        self._nslices = window_slices(retention, self._slice)
        self._retention = self._nslices * self._slice
        self.max_keys = max_keys
        self.idle_ttl = float(idle_ttl) if idle_ttl is not None else self._retention
        self.precision = precision
        self._sketch = sketch
        sketch(precision)  # validates the precision
        self._keys: OrderedDict[Key, _Entry] = OrderedDict()
        self._now = -math.inf
        self.stats = {"evicted_lru": 0, "evicted_idle": 0, "dropped_late": 0}

    @property
    def slice_seconds(self) -> float:
        """Width of the epoch-aligned time slices, in seconds."""
        return self._slice

    @property
    def retention(self) -> float:
        """Seconds of history kept per key (a whole number of slices)."""
        return self._retention

    def _entry_for_write(self, key: Key, at: float, count: int) -> _Entry | None:
        at = _check_time(at)
        entry = self._keys.get(key)
        if entry is None:
            check_key(key)
            entry = self._keys[key] = _Entry(at)
        else:
            self._keys.move_to_end(key)
            if at > entry.last:
                entry.last = at
            elif at // self._slice <= entry.last // self._slice - self._nslices:
                self.stats["dropped_late"] += count  # older than anything kept for the key
                return None
        self._now = max(self._now, at)
        self._evict()
        return entry

    def _evict(self) -> None:
        keys = self._keys
        while len(keys) > self.max_keys:
            keys.popitem(last=False)
            self.stats["evicted_lru"] += 1
        horizon = self._now - self.idle_ttl
        while keys:
            first = next(iter(keys))
            if keys[first].last >= horizon:
                break
            del keys[first]
            self.stats["evicted_idle"] += 1

    def add_distinct(self, key: Key, members: Iterable[Member], *, at: float) -> None:
        """Add ``members`` to ``key``'s distinct set in the slice of time ``at``."""
        if isinstance(members, str | bytes | bytearray):
            raise TypeError("members must be an iterable of members, e.g. [member]")
        if not isinstance(members, list | tuple):
            members = list(members)
        entry = self._entry_for_write(key, at, len(members))
        if entry is None:
            return
        d = entry.distinct
        if d is None:
            d = entry.distinct = WindowedDistinct(
                slice_seconds=self._slice,
                slices=self._nslices,
                precision=self.precision,
                sketch=self._sketch,
            )
        before = d.dropped
        d.update(members, at=at)
        self.stats["dropped_late"] += d.dropped - before

    def count_distinct(self, key: Key, *, at: float, window: float) -> int:
        """Distinct members of ``key`` over the ``window`` seconds ending at ``at``."""
        self._check_window(window)
        entry = self._keys.get(key)
        if entry is None or entry.distinct is None:
            return 0
        self._keys.move_to_end(key)
        return entry.distinct.estimate(at=at, window=window)

    def incr(self, key: Key, field: str, amount: int = 1, *, at: float) -> None:
        """Add ``amount`` to ``key``'s counted ``field`` in the slice of time ``at``."""
        if type(field) is not str:
            raise TypeError(f"counted fields are str, not {type(field).__name__}")
        entry = self._entry_for_write(key, at, 1)
        if entry is None:
            return
        c = entry.counts
        if c is None:
            c = entry.counts = WindowedCounts(slice_seconds=self._slice, slices=self._nslices)
        before = c.dropped
        c.incr(field, amount, at=at)
        if c.dropped != before:
            self.stats["dropped_late"] += 1

    def counts(self, key: Key, *, at: float, window: float) -> dict[str, int]:
        """``key``'s counted fields summed over the ``window`` seconds ending at ``at``."""
        self._check_window(window)
        entry = self._keys.get(key)
        if entry is None or entry.counts is None:
            return {}
        self._keys.move_to_end(key)
        return entry.counts.counts(at=at, window=window)

    def _check_window(self, window: float) -> None:
        if _slices_for(window, self._slice) > self._nslices:
            raise ConfigurationError(
                f"window {window!r} s exceeds the store's retention of {self._retention:g} s"
            )

    def forget(self, key: Key) -> None:
        """Remove everything held for ``key``."""
        self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def keys(self) -> Iterator[Key]:
        """Iterate over the keys held, least recently used first."""
        return iter(list(self._keys))

    def memory_usage(self) -> int:
        """Bytes held: the key index, the keys and every key's slices."""
        size = sys.getsizeof(self._keys) + len(self._keys) * 100  # OrderedDict links
        for key, entry in self._keys.items():
            size += sys.getsizeof(key) + sum(sys.getsizeof(k) for k in key)
            size += sys.getsizeof(entry)
            if entry.distinct is not None:
                size += entry.distinct.memory_usage()
            if entry.counts is not None:
                size += entry.counts.memory_usage()
        return size
