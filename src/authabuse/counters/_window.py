"""Windows and rates over event time: epoch-aligned slices, and EWMA rates.

Time is always the POSIX time of the event (seconds, float), never the clock, so a
replayed log gives the same answers. A slice of width ``s`` holds the events with
``floor(at / s) == i``; slices are aligned on the epoch, so two machines' slices line up
and merge slice by slice. "The last ``W`` seconds at time ``at``" means the
``ceil(W / s)`` slices ending with the one holding ``at`` (the current slice is partial).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final

from authabuse.counters._hash import Member
from authabuse.counters._hll import DEFAULT_PRECISION, EXACT_LIMIT, HyperLogLog
from authabuse.errors import ConfigurationError, CorruptDataError, IncompatibleError

__all__ = ["RateTracker", "WindowedCounts", "WindowedDistinct", "slice_index", "window_slices"]

_WMAGIC: Final = b"AW"
_WVERSION: Final = 1
_LN2: Final = math.log(2.0)


def _check_slicing(slice_seconds: float, slices: int) -> None:
    if not (isinstance(slice_seconds, int | float) and math.isfinite(slice_seconds)):
        raise ConfigurationError(f"slice_seconds must be a finite number, not {slice_seconds!r}")
    if slice_seconds <= 0:
        raise ConfigurationError(f"slice_seconds must be positive, not {slice_seconds!r}")
    if type(slices) is not int or slices < 1:
        raise ConfigurationError(f"slices must be a positive integer, not {slices!r}")


def _check_time(at: float) -> float:
    if not isinstance(at, int | float) or not math.isfinite(at):
        raise ValueError(f"event time must be finite POSIX seconds, not {at!r}")
    return float(at)


def slice_index(at: float, slice_seconds: float) -> int:
    """Return the epoch-aligned slice holding time ``at`` (``floor(at / slice_seconds)``).

    >>> slice_index(7199.9, 3600), slice_index(7200, 3600), slice_index(-1, 3600)
    (1, 2, -1)
    """
    return math.floor(_check_time(at) / slice_seconds)


def window_slices(window: float, slice_seconds: float) -> int:
    """How many slices answer "the last ``window`` seconds": ``ceil(window / slice)``.

    >>> window_slices(86_400, 3600), window_slices(1, 3600), window_slices(5400, 3600)
    (24, 1, 2)
    """
    if not isinstance(window, int | float) or not math.isfinite(window) or window <= 0:
        raise ConfigurationError(f"window must be a positive number of seconds, not {window!r}")
    return max(1, math.ceil(window / slice_seconds - 1e-9))


_SLICES_MEMO: dict[tuple[float, float], int] = {}


def _slices_for(window: float, slice_seconds: float) -> int:
    """:func:`window_slices`, memoised (a detector asks the same few windows forever)."""
    try:
        return _SLICES_MEMO[window, slice_seconds]
    except (KeyError, TypeError):
        n = window_slices(window, slice_seconds)
        if len(_SLICES_MEMO) < 1024:
            _SLICES_MEMO[window, slice_seconds] = n
        return n


class WindowedDistinct:
    """Distinct members over a sliding window: one :class:`HyperLogLog` per time slice.

    Keeps the ``slices`` most recent slices of ``slice_seconds`` each (default 24 x 1 h)
    and answers "how many distinct members in the last ``window`` seconds" by the union
    of the slices in the window. The union for each window asked is cached and kept up
    to date as members arrive, so repeated questions cost one :meth:`HyperLogLog.estimate`.
    Members older than the retained slices are dropped and counted in ``dropped``.
    ``sketch`` makes the per-slice sketches from a precision (default
    :class:`HyperLogLog`; e.g. :class:`~authabuse.counters.HyperLogLogAdapter`).

    >>> w = WindowedDistinct(slice_seconds=3600, slices=24)
    >>> w.update([1, 2, 3], at=0.0)
    >>> w.update([3, 4], at=3600.0)
    >>> w.estimate(at=3600.0, window=3600), w.estimate(at=3600.0, window=7200)
    (2, 4)
    >>> w.estimate(at=86_400.0)  # slice 0 has left the 24-hour window
    2
    """

    __slots__ = (
        "_cache",
        "_factory",
        "_newest",
        "_precision",
        "_slices",
        "dropped",
        "slice_seconds",
        "slices",
    )

    def __init__(
        self,
        *,
        slice_seconds: float = 3600.0,
        slices: int = 24,
        precision: int = DEFAULT_PRECISION,
        sketch: Callable[[int], Any] = HyperLogLog,
    ) -> None:
        _check_slicing(slice_seconds, slices)
        sketch(precision)  # validates the precision
        self._factory = sketch
        self.slice_seconds = float(slice_seconds)
        self.slices = slices
        self._precision = precision
        self._slices: dict[int, Any] = {}
        self._newest: int | None = None
        # unions of several slices that are costly to rebuild (not all exact), per window
        # length in slices: {n: (current slice, union sketch)}; None while there is none
        self._cache: dict[int, tuple[int, Any]] | None = None
        self.dropped = 0

    @property
    def precision(self) -> int:
        """Precision of the per-slice sketches."""
        return self._precision

    @property
    def retention(self) -> float:
        """Seconds of history kept: ``slices * slice_seconds``."""
        return self.slices * self.slice_seconds

    def _slice_for_write(self, at: float, count: int) -> Any:
        i = slice_index(at, self.slice_seconds)
        newest = self._newest
        if newest is None or i > newest:
            self._newest = newest = i
            self._expire(i)
        elif i <= newest - self.slices:
            self.dropped += count
            return None
        sk = self._slices.get(i)
        if sk is None:
            sk = self._slices[i] = self._factory(self._precision)
        return sk

    def _expire(self, newest: int) -> None:
        oldest = newest - self.slices + 1
        for i in [i for i in self._slices if i < oldest]:
            del self._slices[i]

    def add(self, member: Member, *, at: float) -> None:
        """Add one member seen at POSIX time ``at``."""
        self.update((member,), at=at)

    def update(self, members: Iterable[Member], *, at: float) -> None:
        """Add members seen at POSIX time ``at``."""
        if isinstance(members, str | bytes | bytearray):
            raise TypeError("members must be an iterable of members, e.g. [member]")
        batch = members if isinstance(members, list | tuple) else list(members)
        sk = self._slice_for_write(at, len(batch))
        if sk is None:
            return
        sk.update(batch)
        if self._cache:
            i = slice_index(at, self.slice_seconds)
            for n, (cur, union) in list(self._cache.items()):
                if cur - n < i <= cur:
                    union.update(batch)
                elif i > cur:
                    del self._cache[n]

    def sketch(self, *, at: float, window: float | None = None) -> Any:
        """Return a new sketch of the distinct members in the window ending at ``at``."""
        parts, _, _ = self._parts(at, window)
        if not parts:
            return self._factory(self._precision)
        return parts[0].union(*parts[1:])

    def _parts(self, at: float, window: float | None) -> tuple[list[Any], int, int]:
        n = self.slices if window is None else _slices_for(window, self.slice_seconds)
        if n > self.slices:
            raise ConfigurationError(
                f"window of {n} slices exceeds the {self.slices} slices kept ({self.retention:g} s)"
            )
        cur = slice_index(at, self.slice_seconds)
        lo = cur - n
        return [sk for i, sk in self._slices.items() if lo < i <= cur], n, cur

    def estimate(self, *, at: float, window: float | None = None) -> int:
        """Distinct members in the last ``window`` seconds (default: all kept) at ``at``."""
        parts, n, cur = self._parts(at, window)
        if len(parts) <= 1:
            return int(parts[0].estimate()) if parts else 0
        cache = self._cache
        if cache is not None:
            cached = cache.get(n)
            if cached is not None and cached[0] == cur:
                return int(cached[1].estimate())
        if all(type(p) is HyperLogLog and p.encoding == "exact" for p in parts):
            hashes: set[int] = set()
            for p in parts:
                hashes.update(p._data)
            if len(hashes) <= EXACT_LIMIT:
                return len(hashes)  # cheap to recount: not cached
        union = parts[0].union(*parts[1:])
        if cache is None:
            cache = self._cache = {}
        elif len(cache) >= 4:
            cache.pop(next(iter(cache)))
        cache[n] = (cur, union)
        return int(union.estimate())

    def expire(self, *, at: float) -> None:
        """Drop the slices that have left the retention at time ``at``."""
        i = slice_index(at, self.slice_seconds)
        if self._newest is None or i > self._newest:
            self._newest = i
        self._expire(self._newest)
        self._cache = None

    def merge(self, other: WindowedDistinct) -> None:
        """Merge another node's counter into this one, slice by slice.

        >>> a = WindowedDistinct(); b = WindowedDistinct()
        >>> a.update([1, 2], at=10.0); b.update([2, 3], at=20.0); b.update([9], at=4000.0)
        >>> a.merge(b); a.estimate(at=4000.0, window=7200)
        4
        """
        if (other.slice_seconds, other._precision, other._factory) != (
            self.slice_seconds,
            self._precision,
            self._factory,
        ):
            raise IncompatibleError(
                f"cannot merge windows of {other.slice_seconds:g} s/p{other._precision} into "
                f"{self.slice_seconds:g} s/p{self._precision}"
            )
        known = [n for n in (self._newest, other._newest) if n is not None]
        newest = max(known) if known else None
        for i, sk in other._slices.items():
            mine = self._slices.get(i)
            if mine is None:
                self._slices[i] = sk.copy()
            else:
                mine.merge(sk)
        self.dropped += other.dropped
        self._newest = newest
        if newest is not None:
            self._expire(newest)
        self._cache = None

    def slice_sketches(self) -> dict[int, Any]:
        """Return the kept slices as ``{slice index: sketch}`` (copies)."""
        return {i: sk.copy() for i, sk in sorted(self._slices.items())}

    def memory_usage(self) -> int:
        """Approximate bytes held (slices, caches and the dictionaries holding them)."""
        import sys

        size: int = sys.getsizeof(self) + sys.getsizeof(self._slices)
        size += sum(sk.memory_usage() for sk in self._slices.values())
        if self._cache is not None:
            size += sys.getsizeof(self._cache)
            size += sum(u.memory_usage() for _, u in self._cache.values())
        return size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WindowedDistinct):
            return NotImplemented
        return (
            self.slice_seconds == other.slice_seconds
            and self.slices == other.slices
            and self._precision == other._precision
            and self._slices == other._slices
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def to_bytes(self) -> bytes:
        """Serialize the kept slices.

        Layout: ``b"AW"``, version, slice width, slice count, then each slice's index and
        :meth:`HyperLogLog.to_bytes`, and a CRC-32 of all of it.

        >>> w = WindowedDistinct(); w.update([1], at=0.0)
        >>> WindowedDistinct.from_bytes(w.to_bytes()) == w
        True
        """
        parts = [
            _WMAGIC,
            struct.pack(
                "<BdIBI",
                _WVERSION,
                self.slice_seconds,
                self.slices,
                self._precision,
                len(self._slices),
            ),
        ]
        for i, sk in sorted(self._slices.items()):
            b = sk.to_bytes()
            parts.append(struct.pack("<qI", i, len(b)))
            parts.append(b)
        body = b"".join(parts)
        return body + zlib.crc32(body).to_bytes(4, "little")

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> WindowedDistinct:
        """Rebuild a windowed counter from :meth:`to_bytes` output."""
        buf = bytes(data)
        head = struct.calcsize("<BdIBI")
        if len(buf) < 2 + head + 4 or buf[:2] != _WMAGIC:
            raise CorruptDataError("not a WindowedDistinct (bad magic or truncated)")
        if zlib.crc32(buf[:-4]) != int.from_bytes(buf[-4:], "little"):
            raise CorruptDataError("WindowedDistinct bytes corrupt or truncated (CRC mismatch)")
        version, width, slices, precision, count = struct.unpack_from("<BdIBI", buf, 2)
        if version != _WVERSION:
            raise IncompatibleError(f"WindowedDistinct format version {version} not supported")
        try:
            w = cls(slice_seconds=width, slices=slices, precision=precision)
        except ConfigurationError as exc:
            raise CorruptDataError(f"WindowedDistinct header invalid: {exc}") from exc
        pos = 2 + head
        end = len(buf) - 4
        for _ in range(count):
            if pos + 12 > end:
                raise CorruptDataError("WindowedDistinct truncated")
            i, size = struct.unpack_from("<qI", buf, pos)
            pos += 12
            if pos + size > end:
                raise CorruptDataError("WindowedDistinct truncated")
            sk = HyperLogLog.from_bytes(buf[pos : pos + size])  # our sketches only
            if sk.precision != precision:
                raise CorruptDataError("WindowedDistinct slice of another precision")
            w._slices[i] = sk
            pos += size
        if pos != end:
            raise CorruptDataError("WindowedDistinct has trailing bytes")
        if w._slices:
            w._newest = max(w._slices)
        return w


class WindowedCounts:
    """Counted fields over a sliding window (events, or events per country, ...).

    >>> c = WindowedCounts(slice_seconds=60, slices=60)
    >>> c.incr("JP", at=0.0); c.incr("BR", 3, at=61.0)
    >>> c.counts(at=61.0, window=3600), c.total(at=61.0, window=60)
    ({'JP': 1, 'BR': 3}, 3)
    """

    __slots__ = ("_newest", "_slices", "dropped", "slice_seconds", "slices")

    def __init__(self, *, slice_seconds: float = 3600.0, slices: int = 24) -> None:
        _check_slicing(slice_seconds, slices)
        self.slice_seconds = float(slice_seconds)
        self.slices = slices
        self._slices: dict[int, dict[str, int]] = {}
        self._newest: int | None = None
        self.dropped = 0

    @property
    def retention(self) -> float:
        """Seconds of history kept: ``slices * slice_seconds``."""
        return self.slices * self.slice_seconds

    def incr(self, field: str, amount: int = 1, *, at: float) -> None:
        """Add ``amount`` to ``field`` in the slice holding ``at``."""
        if type(amount) is not int:
            raise TypeError(f"amount must be an int, not {type(amount).__name__}")
        i = slice_index(at, self.slice_seconds)
        newest = self._newest
        if newest is None or i > newest:
            self._newest = i
            oldest = i - self.slices + 1
            for old in [j for j in self._slices if j < oldest]:
                del self._slices[old]
        elif i <= newest - self.slices:
            self.dropped += amount
            return
        row = self._slices.get(i)
        if row is None:
            row = self._slices[i] = {}
        row[field] = row.get(field, 0) + amount

    def counts(self, *, at: float, window: float | None = None) -> dict[str, int]:
        """Each field's sum over the last ``window`` seconds (default: all kept)."""
        n = self.slices if window is None else window_slices(window, self.slice_seconds)
        if n > self.slices:
            raise ConfigurationError(f"window of {n} slices exceeds the {self.slices} kept")
        cur = slice_index(at, self.slice_seconds)
        out: dict[str, int] = {}
        for i in sorted(self._slices):
            if cur - n < i <= cur:
                for f, v in self._slices[i].items():
                    out[f] = out.get(f, 0) + v
        return out

    def total(self, *, at: float, window: float | None = None) -> int:
        """Return the sum of all fields over the window."""
        return sum(self.counts(at=at, window=window).values())

    def merge(self, other: WindowedCounts) -> None:
        """Add another node's counts, slice by slice."""
        if other.slice_seconds != self.slice_seconds:
            raise IncompatibleError("cannot merge windowed counts of different slice widths")
        for i, row in other._slices.items():
            mine = self._slices.setdefault(i, {})
            for f, v in row.items():
                mine[f] = mine.get(f, 0) + v
        if other._newest is not None and (self._newest is None or other._newest > self._newest):
            self._newest = other._newest
        if self._newest is not None:
            oldest = self._newest - self.slices + 1
            for old in [j for j in self._slices if j < oldest]:
                del self._slices[old]
        self.dropped += other.dropped

    def memory_usage(self) -> int:
        """Approximate bytes held."""
        import sys

        size = sys.getsizeof(self) + sys.getsizeof(self._slices)
        for row in self._slices.values():
            size += sys.getsizeof(row) + sum(sys.getsizeof(f) for f in row)
        return size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WindowedCounts):
            return NotImplemented
        return (self.slice_seconds, self.slices, self._slices) == (
            other.slice_seconds,
            other.slices,
            other._slices,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


class RateTracker:
    """Per-key event rates (events per second) as exponentially weighted moving averages.

    Each key's rate decays with a half-life of ``half_life`` seconds of event time: a
    steady stream of ``r`` events/s reads ``r`` after a few half-lives, and a burst of
    ``n`` events reads ``n * ln 2 / half_life`` right after it. Keys are bounded by
    ``max_keys`` (least recently updated evicted first).

    >>> rates = RateTracker(half_life=60)
    >>> for t in range(600):
    ...     _ = rates.hit("198.51.100.7", at=float(t))  # one mail per second
    >>> round(rates.rate("198.51.100.7", at=599.0), 2)
    1.0
    >>> round(rates.rate("198.51.100.7", at=659.0), 2)  # a minute of silence halves it
    0.5
    """

    __slots__ = ("_keys", "evicted", "half_life", "max_keys")

    def __init__(self, *, half_life: float = 60.0, max_keys: int = 1_000_000) -> None:
        if not isinstance(half_life, int | float) or not half_life > 0:
            raise ConfigurationError(f"half_life must be positive seconds, not {half_life!r}")
        if type(max_keys) is not int or max_keys < 1:
            raise ConfigurationError(f"max_keys must be a positive integer, not {max_keys!r}")
        self.half_life = float(half_life)
        self.max_keys = max_keys
        self._keys: OrderedDict[Hashable, list[float]] = OrderedDict()
        self.evicted = 0

    def hit(self, key: Hashable, amount: float = 1.0, *, at: float) -> float:
        """Record ``amount`` events for ``key`` at ``at``; return the updated rate."""
        at = _check_time(at)
        gain = amount * _LN2 / self.half_life
        state = self._keys.get(key)
        if state is None:
            self._keys[key] = state = [gain, at]
            if len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
                self.evicted += 1
            return gain
        self._keys.move_to_end(key)
        rate, last = state
        if at >= last:
            state[0] = rate * 2.0 ** ((last - at) / self.half_life) + gain
            state[1] = at
        else:  # a late event: weigh it as of its own time
            state[0] = rate + gain * 2.0 ** ((at - last) / self.half_life)
        return state[0] * (1.0 if at >= last else 2.0 ** ((at - last) / self.half_life))

    def rate(self, key: Hashable, *, at: float) -> float:
        """Return the rate of ``key`` (events/s) at time ``at``; 0.0 for an unknown key."""
        state = self._keys.get(key)
        if state is None:
            return 0.0
        rate, last = state
        return float(rate * 2.0 ** (min(0.0, last - _check_time(at)) / self.half_life))

    def forget(self, key: Hashable) -> None:
        """Drop ``key``."""
        self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)

    def memory_usage(self) -> int:
        """Approximate bytes held (per key: the state list and its two floats)."""
        import sys

        per_key = sys.getsizeof([0.0, 0.0]) + 2 * sys.getsizeof(0.0)
        return sys.getsizeof(self._keys) + len(self._keys) * (per_key + 104)
