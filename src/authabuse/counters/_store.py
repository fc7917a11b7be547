"""The counter-store protocol and its bounded in-memory implementation."""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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

__all__ = ["CounterStore", "Key", "MemoryStore", "Op", "apply_op", "check_key", "run_batch"]

Key: TypeAlias = tuple[str | int, ...]
"""A counter key: a non-empty tuple of ``str``/``int``, the subject first.

``key[0]`` is the subject the counter is about (an account, an IP as int, a domain);
the rest names the metric, e.g. ``("alice@example.jp", "ip")``,
``("alice@example.jp", "country")``, ``(3325256711, "accounts")``. A store may co-locate
all keys sharing ``key[0]`` (the Redis store uses it as the Redis Cluster hash tag).
"""


Op: TypeAlias = tuple[Any, ...]
"""One store operation for :func:`run_batch`: the method's name, then its arguments.

========================================================  =====================
operation                                                  result
========================================================  =====================
``("add_distinct", key, members, at)``                     ``None``
``("incr", key, field, amount, at)``                       ``None``
``("count_distinct", key, at, window)``                    ``int``
``("count_distinct", key, at, window, times)``             ``int`` (a hint, below)
``("counts", key, at, window)``                            ``dict[str, int]``
``("put_record", key, fields, at, ttl, keep, remove)``     ``None`` (record stores)
``("get_record", key)``                                    ``dict[str, str]``
========================================================  =====================

``times`` in a ``count_distinct`` is a hint: the window's members were all added at
those times (its other slices hold nothing), so a store that reads slice by slice may
read only theirs. Stores may ignore it (the answer is the same); the Redis store
honours it.
"""


def apply_op(store: Any, op: Op) -> Any:
    """Run one :data:`Op` on ``store`` with its plain methods; return the result.

    >>> store = MemoryStore()
    >>> apply_op(store, ("incr", ("alice@example.jp", "n"), "mails", 2, 1_714_557_600.0))
    >>> apply_op(store, ("counts", ("alice@example.jp", "n"), 1_714_557_600.0, 3600))
    {'mails': 2}
    """
    name = op[0]
    if name == "add_distinct":
        store.add_distinct(op[1], op[2], at=op[3])
        return None
    if name == "incr":
        store.incr(op[1], op[2], op[3], at=op[4])
        return None
    if name == "count_distinct":
        return store.count_distinct(op[1], at=op[2], window=op[3])
    if name == "counts":
        return store.counts(op[1], at=op[2], window=op[3])
    if name == "put_record":
        store.put_record(op[1], op[2], at=op[3], ttl=op[4], keep_existing=op[5], remove=op[6])
        return None
    if name == "get_record":
        return store.get_record(op[1])
    raise ValueError(f"unknown store operation {name!r}")


def run_batch(store: Any, ops: Sequence[Op]) -> list[Any]:
    """Run ``ops`` in order and return their results, in one round trip where possible.

    A store with a ``batch(ops)`` method (``MemoryStore``, the Redis store: one pipeline)
    runs them itself; any other :class:`CounterStore` gets them one call at a time, so a
    third-party store needs nothing beyond the protocol. Every read sees the writes that
    come before it in ``ops``.

    >>> store = MemoryStore()
    >>> key, at = ("alice@example.jp", "ip"), 1_714_557_600.0
    >>> run_batch(store, [("add_distinct", key, [1, 2], at), ("count_distinct", key, at, 60)])
    [None, 2]
    """
    batch = getattr(store, "batch", None)
    if batch is not None:
        return list(batch(ops))
    return [apply_op(store, op) for op in ops]


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

    Optional extensions (the conformance kit checks them when present; the detector
    works without them):

    * ``batch(ops)`` runs a list of :data:`Op` and returns their results, reads seeing
      the writes before them (Redis: one pipelined round trip). :func:`run_batch` falls
      back to one call per operation. ``send(ops)`` runs writes whose results nobody
      needs, possibly without waiting for them; any later call on the store sees them.
    * **Records**: ``put_record(key, fields, *, at, ttl, keep_existing=False,
      remove=())`` sets text fields of a small non-windowed record (``keep_existing``:
      only fields not set yet; ``remove``: field names to delete), which expires ``ttl``
      seconds after its last write; ``get_record(key)`` returns its fields (``{}`` when
      absent). The detector keeps learned baselines and flags there, with a retention of
      their own (weeks) instead of the windows' (days). Redis: a hash, ``HSET`` /
      ``HSETNX`` / ``HDEL`` + ``EXPIRE``, ``HGETALL``.

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


class _Record:
    __slots__ = ("fields", "last", "ttl")

    def __init__(self, at: float, ttl: float) -> None:
        self.fields: dict[str, str] = {}
        self.last = at
        self.ttl = ttl


def _check_record_args(fields: Mapping[str, str], ttl: float, remove: Iterable[str]) -> None:
    for k, v in fields.items():
        if type(k) is not str or type(v) is not str:
            raise TypeError(f"record fields map str to str, not {k!r}: {v!r}")
    if not all(type(k) is str for k in remove):
        raise TypeError("remove takes field names (str)")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
        raise ConfigurationError(f"ttl must be positive seconds, not {ttl!r}")


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
        self._records: OrderedDict[Key, _Record] = OrderedDict()
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
        records = self._records
        while len(records) > self.max_keys:
            records.popitem(last=False)
            self.stats["evicted_lru"] += 1
        while records:
            first = next(iter(records))
            rec = records[first]
            if rec.last + rec.ttl >= self._now:
                break
            del records[first]
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

    def put_record(
        self,
        key: Key,
        fields: Mapping[str, str],
        *,
        at: float,
        ttl: float,
        keep_existing: bool = False,
        remove: Iterable[str] = (),
    ) -> None:
        """Set text ``fields`` of ``key``'s record; it expires ``ttl`` s after this write.

        ``keep_existing`` sets only the fields not set yet; ``remove`` deletes fields.

        >>> store = MemoryStore()
        >>> store.put_record(("alice@example.jp", "rec"), {"first": "1"}, at=5.0, ttl=60)
        >>> store.put_record(("alice@example.jp", "rec"), {"first": "9", "x": "2"}, at=6.0,
        ...                  ttl=60, keep_existing=True)
        >>> store.get_record(("alice@example.jp", "rec"))
        {'first': '1', 'x': '2'}
        """
        remove = tuple(remove)
        _check_record_args(fields, ttl, remove)
        at = _check_time(at)
        rec = self._records.get(key)
        if rec is not None and rec.last + rec.ttl < self._now:
            rec = None  # expired
        if rec is None:
            check_key(key)
            rec = self._records[key] = _Record(at, float(ttl))
        else:
            self._records.move_to_end(key)
            rec.last = max(rec.last, at)
            rec.ttl = float(ttl)
        target = rec.fields
        if keep_existing:
            for k, v in fields.items():
                target.setdefault(k, v)
        else:
            target.update(fields)
        for k in remove:
            target.pop(k, None)
        self._now = max(self._now, at)
        self._evict()

    def get_record(self, key: Key) -> dict[str, str]:
        """Return the fields of ``key``'s record (``{}`` when absent or expired)."""
        rec = self._records.get(key)
        if rec is None:
            return {}
        if rec.last + rec.ttl < self._now:
            del self._records[key]
            return {}
        self._records.move_to_end(key)
        return dict(rec.fields)

    def batch(self, ops: Sequence[Op]) -> list[Any]:
        """Run the :data:`Op` list in order (in memory, there is no round trip to save)."""
        return [apply_op(self, op) for op in ops]

    def send(self, ops: Sequence[Op]) -> None:
        """Run write operations whose results are not needed (here: at once)."""
        for op in ops:
            apply_op(self, op)

    def forget(self, key: Key) -> None:
        """Remove everything held for ``key``."""
        self._keys.pop(key, None)
        self._records.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys) + sum(1 for k in self._records if k not in self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys or key in self._records

    def keys(self) -> Iterator[Key]:
        """Iterate over the keys held, least recently used first (then record-only keys)."""
        return iter(list(self._keys) + [k for k in self._records if k not in self._keys])

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
        for key, rec in self._records.items():
            size += sys.getsizeof(key) + sys.getsizeof(rec) + sys.getsizeof(rec.fields) + 100
            size += sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in rec.fields.items())
        return size
