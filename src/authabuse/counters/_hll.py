"""HyperLogLog distinct counter: exact while small, then sparse, then dense.

See :class:`HyperLogLog`. The layout and the estimator are described in
``docs/design.md`` ("Counters"); the binary format in :meth:`HyperLogLog.to_bytes`.
"""

from __future__ import annotations

import sys
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from itertools import islice, pairwise
from math import inf, log, sqrt
from typing import Any, Final

from authabuse.counters._hash import (
    HASH_ID,
    OLD_HASH_IDS,
    Member,
    hash64,
)
from authabuse.errors import ConfigurationError, CorruptDataError, IncompatibleError

__all__ = ["DEFAULT_PRECISION", "EXACT_LIMIT", "HyperLogLog"]

DEFAULT_PRECISION: Final = 14
"""Default precision: 2**14 registers, 0.81 % standard error, 12 KB serialized when dense."""

EXACT_LIMIT: Final = 64
"""A sketch holds up to this many distinct member hashes exactly before using registers."""

MIN_PRECISION: Final = 4
MAX_PRECISION: Final = 18

MAGIC: Final = b"AH"
FORMAT_VERSION: Final = 1
ENC_EXACT: Final = 0
ENC_SPARSE: Final = 1
ENC_DENSE: Final = 2
_ENCODING_NAMES: Final = {ENC_EXACT: "exact", ENC_SPARSE: "sparse", ENC_DENSE: "dense"}
_HEADER: Final = 6
_TRAILER: Final = 4

_M64: Final = (1 << 64) - 1
_ALPHA_INF: Final = 1.0 / (2.0 * log(2.0))
_LITTLE: Final = sys.byteorder == "little"

# array type codes: 8-byte hashes (exact tier) and 4-byte packed idx<<6|rho (sparse tier)
_EXACT_CODE: Final = "Q"
_SPARSE_CODE: Final = "I" if array("I").itemsize == 4 else "L"
if array(_SPARSE_CODE).itemsize != 4 or array(_EXACT_CODE).itemsize != 8:  # pragma: no cover
    raise ImportError("authabuse.counters needs 4- and 8-byte array type codes")


def _sigma(x: float) -> float:
    """Ertl's sigma(x) = x + sum_k x**(2**k) * 2**(k-1) (zero-register correction)."""
    if x == 1.0:
        return inf
    y = 1.0
    z = x
    while True:
        x *= x
        z_old = z
        z += x * y
        y += y
        if z == z_old:
            return z


def _tau(x: float) -> float:
    """Ertl's tau(x) (saturated-register correction)."""
    if x in {0.0, 1.0}:
        return 0.0
    y = 1.0
    z = 1.0 - x
    while True:
        x = sqrt(x)
        z_old = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == z_old:
            return z / 3.0


class _Params:
    """Per-precision constants and caches, shared by every sketch of that precision."""

    __slots__ = ("dense_high", "m", "p", "q", "sigma_terms", "sparse_limit", "weights")

    def __init__(self, p: int) -> None:
        self.p = p
        self.m = 1 << p
        self.q = 64 - p
        # weight of a register of value r in the harmonic sum, scaled by 2**q (exact int)
        self.weights = (0, *(1 << (self.q - r) for r in range(1, self.q + 1)), 0)
        # m * sigma(c0 / m) memoised per zero-register count c0 (filled lazily)
        self.sigma_terms: list[float | None] = [None] * (self.m + 1)
        # sparse tier (4 bytes per nonzero register) while it is smaller than dense (m bytes)
        self.sparse_limit = self.m // 4
        self.dense_high = int.from_bytes(b"\x80" * self.m, "little")

    def sigma_term(self, c0: int) -> float:
        v = self.sigma_terms[c0]
        if v is None:
            v = self.sigma_terms[c0] = self.m * _sigma(c0 / self.m)
        return v

    def estimate(self, c0: int, w: int, sat: int) -> int:
        m = self.m
        if c0 == m:
            return 0
        z = self.sigma_term(c0) + w / (1 << self.q)
        if sat:
            z += m * _tau(1.0 - sat / m) / (1 << self.q)
        return int(_ALPHA_INF * m * m / z + 0.5)


_PARAMS: Final = {p: _Params(p) for p in range(MIN_PRECISION, MAX_PRECISION + 1)}
# Per precision, shared by every sketch: (q, 2**q - 1, limits) for q = 64 - p, where
# limits[r] = 2**(q - r) for 0 <= r <= q and limits[q + 1] = 0. With w = h & (2**q - 1),
# the register value of hash h is rho = q + 1 - w.bit_length(), and rho > r exactly when
# w < limits[r]: add() compares without computing rho (only a register raise needs it).
_KEYS: Final = {
    p: (64 - p, (1 << (64 - p)) - 1, (*(1 << (64 - p - r) for r in range(65 - p)), 0))
    for p in _PARAMS
}


class HyperLogLog:
    """A distinct counter with the manners of a ``set``: add members, ask how many.

    Members are ``bytes``, ``str`` (hashed as UTF-8), non-negative ``int`` (the fast
    path: pass IP addresses as ``int(ip)``, IPv6 included) or :mod:`ipaddress` objects.
    ``estimate()`` answers in constant time; it is exact while at most
    :data:`EXACT_LIMIT` (64) distinct members were added, and otherwise within about
    ``1.04 / sqrt(2**precision)`` (0.81 % at the default precision 14).

    Storage grows with the content and is always a function of it alone (so equal
    contents compare equal and serialize identically): *exact* (the sorted 64-bit
    hashes, 8 bytes each), then *sparse* (the nonzero registers, 4 bytes each, while
    fewer than ``m/4``), then *dense* (one byte per register, ``m = 2**precision``).

    Precision (4..18) trades memory for accuracy; 14 is the default because its error
    (0.81 %) is far below any threshold a rule would use, a dense sketch costs 16 KB in
    memory and 12 KB serialized, and it is the precision Redis uses for PFADD, so counts
    from the Redis store and from memory are equally accurate.

    There is no ``len()``: a length must be exact, an estimate is not. Like ``set``
    under free-threading, a sketch shared between threads needs a lock around writes.

    >>> from authabuse import parse_ip
    >>> hll = HyperLogLog()
    >>> hll.add(int(parse_ip("198.51.100.7")))
    >>> hll.update([b"a", b"b", "a"])
    >>> hll.estimate()
    3
    >>> other = HyperLogLog.from_bytes(hll.to_bytes())
    >>> other == hll, len(hll.to_bytes())
    (True, 34)
    >>> big = HyperLogLog()
    >>> big.update(range(100_000))
    >>> abs(big.estimate() - 100_000) < 2_500
    True
    >>> (big | hll).estimate() >= big.estimate()
    True
    """

    __slots__ = ("_c0", "_data", "_k", "_p", "_sat", "_w")

    _p: int
    _k: tuple[int, int, tuple[int, ...]]  # (q, 2**q - 1, limits): see _KEYS
    _data: array[int] | bytearray
    _c0: int  # number of zero registers (register tiers; 0 in the exact tier)
    _w: int  # sum of 2**(q - r) over registers 0 < r <= q
    _sat: int  # number of saturated registers (r == q + 1)

    def __init__(self, precision: int = DEFAULT_PRECISION) -> None:
        if type(precision) is not int or not MIN_PRECISION <= precision <= MAX_PRECISION:
            raise ConfigurationError(
                f"precision must be an integer from {MIN_PRECISION} to {MAX_PRECISION}, "
                f"not {precision!r}"
            )
        self._p = precision
        self._k = _KEYS[precision]
        self._data = array(_EXACT_CODE)
        self._c0 = 0  # unused in the exact tier (0 is a shared small int: no memory)
        self._w = 0
        self._sat = 0

    # -- properties ---------------------------------------------------------------------

    @property
    def precision(self) -> int:
        """The precision p: the sketch uses ``2**p`` registers once past the exact tier."""
        return self._p

    @property
    def encoding(self) -> str:
        """The current storage tier: ``"exact"``, ``"sparse"`` or ``"dense"``."""
        data = self._data
        if isinstance(data, bytearray):
            return "dense"
        return "exact" if data.typecode == _EXACT_CODE else "sparse"

    @property
    def hash_id(self) -> int:
        """Identifier of the member hash (see :mod:`authabuse.counters._hash`)."""
        return HASH_ID

    @property
    def relative_error(self) -> float:
        """The standard error of estimates once past the exact tier, ``1.04/sqrt(2**p)``."""
        return 1.04 / sqrt(1 << self._p)

    # -- adding -------------------------------------------------------------------------

    def add(self, member: Member) -> None:
        """Add one member (``bytes``, ``str``, non-negative ``int`` or IP address object)."""
        # Hash id 3 inlined for ints below 2**32 (IPv4), where its first xorshift is the
        # identity (see _hash.py); everything else goes through hash64.
        if type(member) is int and -1 < member < 0x100000000:
            z = (member * 0xBF58476D1CE4E5B9 + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
            z = ((z ^ (z >> 29)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        else:
            z = hash64(member)
        data = self._data
        if type(data) is bytearray:  # dense: the common tier of a busy sketch
            q, mask, limits = self._k
            idx = z >> q
            z &= mask
            old = data[idx]
            if z < limits[old]:  # the register rises (rho > old), inlined: no call
                data[idx] = rho = q + 1 - z.bit_length()
                weights = _PARAMS[self._p].weights
                self._w += weights[rho] - weights[old]
                if not old:
                    self._c0 -= 1
                if rho > q:
                    self._sat += 1
        elif data.typecode == "Q":  # type: ignore[union-attr]  # exact (_EXACT_CODE): an array
            pos = bisect_left(data, z)
            if pos == len(data) or data[pos] != z:
                if len(data) < EXACT_LIMIT:
                    data.insert(pos, z)
                else:
                    self._leave_exact((*data, z))
        else:
            self._add_sparse(z)

    def _add_sparse(self, h: int) -> None:
        data = self._data
        q, mask, limits = self._k
        idx = h >> q
        h &= mask
        key = idx << 6
        pos = bisect_left(data, key)
        if pos < len(data) and data[pos] >> 6 == idx:
            old = data[pos] & 63
            if h >= limits[old]:  # a repeat or a lower value: nothing to do
                return
            rho = q + 1 - h.bit_length()
            data[pos] = key | rho
        else:
            old = 0
            rho = q + 1 - h.bit_length()
            data.insert(pos, key | rho)
            self._c0 -= 1
        params = _PARAMS[self._p]
        weights = params.weights
        self._w += weights[rho] - weights[old]
        if rho > q:
            self._sat += 1
        if len(data) > params.sparse_limit:
            self._set_registers(self._dense_registers())

    def update(self, members: Iterable[Member]) -> None:
        """Add every member of ``members`` (like ``set.update``).

        A numpy integer array takes the vectorised path of the ``numpy`` extra, with a
        bit-identical result.
        """
        if type(members).__name__ == "ndarray":
            from authabuse.counters._numpy import update_array

            update_array(self, members)  # type: ignore[arg-type]  # an ndarray here
            return
        if isinstance(members, list | tuple):
            if len(members) < 8:  # a few members: plain adds are cheapest
                for member in members:
                    self.add(member)
                return
            if len(members) >= 512:
                members = _dedupe_if_repetitive(members)
        it = iter(members)
        while not isinstance(self._data, bytearray):
            chunk = list(islice(it, 4096))
            if not chunk:
                return
            self._absorb(chunk)
        self._update_dense(it)

    def _absorb(self, members: list[Member]) -> None:
        """Add a chunk of members to the exact or sparse tier in one pass."""
        hashes = []
        for member in members:
            if type(member) is int and -1 < member < 0x100000000:
                z = (member * 0xBF58476D1CE4E5B9 + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
                hashes.append(((z ^ (z >> 29)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF)
            else:
                hashes.append(hash64(member))
        data = self._data
        if isinstance(data, bytearray):  # pragma: no cover - callers check the tier
            self._update_dense(members)
            return
        if data.typecode == _EXACT_CODE:
            merged = set(data)
            merged.update(hashes)
            if len(merged) <= EXACT_LIMIT:
                self._data = array(_EXACT_CODE, sorted(merged))
            else:
                self._leave_exact(merged)
            return
        q, mask, _ = self._k
        q1 = q + 1
        regs = {e >> 6: e & 63 for e in data}
        get = regs.get
        for z in hashes:
            idx = z >> q
            rho = q1 - (z & mask).bit_length()
            if rho > get(idx, 0):
                regs[idx] = rho
        self._set_registers_from_map(regs)

    def _update_dense(self, members: Iterable[Member]) -> None:
        data = self._data
        if not isinstance(data, bytearray):  # pragma: no cover - internal misuse
            raise TypeError("dense tier expected")
        q, mask, limits = self._k
        q1 = q + 1
        weights = _PARAMS[self._p].weights
        w = self._w
        c0 = self._c0
        sat = self._sat
        try:
            for member in members:
                if type(member) is int and -1 < member < 0x100000000:
                    z = (member * 0xBF58476D1CE4E5B9 + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
                    z = ((z ^ (z >> 29)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
                else:
                    z = hash64(member)
                idx = z >> q
                z &= mask
                old = data[idx]
                if z < limits[old]:
                    rho = q1 - z.bit_length()
                    data[idx] = rho
                    w += weights[rho] - weights[old]
                    if not old:
                        c0 -= 1
                    if rho == q1:
                        sat += 1
        finally:
            self._w = w
            self._c0 = c0
            self._sat = sat

    # -- tiers --------------------------------------------------------------------------

    def _leave_exact(self, hashes: Iterable[int]) -> None:
        """Move from the exact tier to registers holding ``hashes``."""
        q = 64 - self._p
        lowmask = (1 << q) - 1
        regs: dict[int, int] = {}
        for h in hashes:
            idx = h >> q
            rho = q + 1 - (h & lowmask).bit_length()
            if rho > regs.get(idx, 0):
                regs[idx] = rho
        self._set_registers_from_map(regs)

    def _set_registers_from_map(self, regs: dict[int, int]) -> None:
        params = _PARAMS[self._p]
        if len(regs) > params.sparse_limit:
            dense = bytearray(params.m)
            for idx, rho in regs.items():
                dense[idx] = rho
            self._set_registers(dense)
            return
        self._data = array(_SPARSE_CODE, sorted((idx << 6) | rho for idx, rho in regs.items()))
        weights = params.weights
        self._w = sum(weights[r] for r in regs.values())
        self._c0 = params.m - len(regs)
        self._sat = sum(1 for r in regs.values() if r > params.q)

    def _set_registers(self, dense: bytearray) -> None:
        """Adopt ``dense`` registers, choosing the canonical tier for their content."""
        params = _PARAMS[self._p]
        q = params.q
        counts = [dense.count(r) for r in range(q + 2)]
        zeros = counts[0]
        nonzero = params.m - zeros
        if nonzero == 0:
            self._data = array(_EXACT_CODE)
            self._c0, self._w, self._sat = 0, 0, 0
            return
        self._w = sum(c << (q - r) for r, c in enumerate(counts) if 0 < r <= q)
        self._c0 = zeros
        self._sat = counts[q + 1]
        if nonzero > params.sparse_limit:
            self._data = dense
        else:
            self._data = array(_SPARSE_CODE, [(i << 6) | r for i, r in enumerate(dense) if r])

    def _dense_registers(self) -> bytearray:
        """Return the registers as a fresh bytearray (register tiers only)."""
        data = self._data
        if isinstance(data, bytearray):
            return bytearray(data)
        dense = bytearray(1 << self._p)
        for e in data:
            dense[e >> 6] = e & 63
        return dense

    # -- reading ------------------------------------------------------------------------

    def estimate(self) -> int:
        """Return the number of distinct members added, exact while small (constant time).

        >>> h = HyperLogLog(); h.update([1, 2, 3, 2]); h.estimate()
        3
        """
        data = self._data
        if not isinstance(data, bytearray) and data.typecode == _EXACT_CODE:
            return len(data)
        return _PARAMS[self._p].estimate(self._c0, self._w, self._sat)

    def __bool__(self) -> bool:
        data = self._data
        return isinstance(data, bytearray) or bool(data)

    def registers(self) -> bytes:
        r"""Return the ``2**p`` register values (one byte each), computed in the exact tier.

        >>> HyperLogLog(4).registers()
        b'\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
        """
        data = self._data
        if not isinstance(data, bytearray) and data.typecode == _EXACT_CODE:
            if not data:
                return bytes(1 << self._p)
            tmp = HyperLogLog(self._p)
            tmp._leave_exact(data)
            return bytes(tmp._dense_registers())
        return bytes(self._dense_registers())

    def memory_usage(self) -> int:
        """Bytes this sketch holds: the object and its storage (shared tables excluded).

        >>> HyperLogLog().memory_usage() < 200
        True
        """
        size = sys.getsizeof(self) + sys.getsizeof(self._data)
        for v in (self._w, self._c0):
            if not -5 <= v <= 256:  # small ints are shared, not held
                size += sys.getsizeof(v)
        return size

    def __sizeof__(self) -> int:
        return object.__sizeof__(self)

    # -- combining ----------------------------------------------------------------------

    def copy(self) -> HyperLogLog:
        """Return a shallow copy (like ``set.copy``): independent storage, same content."""
        new = HyperLogLog.__new__(type(self))
        new._p = self._p
        new._k = self._k
        data = self._data
        new._data = bytearray(data) if isinstance(data, bytearray) else array(data.typecode, data)
        new._c0, new._w, new._sat = self._c0, self._w, self._sat
        return new

    def _check_compatible(self, other: object) -> HyperLogLog:
        if not isinstance(other, HyperLogLog):
            raise TypeError(f"cannot merge a HyperLogLog with {type(other).__name__}")
        if other._p != self._p:
            raise IncompatibleError(f"cannot merge sketches of precision {self._p} and {other._p}")
        return other

    def merge(self, *others: HyperLogLog) -> None:  # noqa: PLR0912 - one branch per tier pair
        """Merge ``others`` into this sketch in place (``|=`` for several at once)."""
        sketches = [self._check_compatible(o) for o in others]
        if not sketches:
            return
        exact: list[int] = []
        maps: list[HyperLogLog] = []
        dense: list[bytearray] = []
        for s in [self, *sketches]:
            data = s._data
            if isinstance(data, bytearray):
                dense.append(data)
            elif data.typecode == _EXACT_CODE:
                exact.extend(data)
            else:
                maps.append(s)
        if not dense and not maps:
            hashes = sorted(set(exact))
            if len(hashes) <= EXACT_LIMIT:
                self._data = array(_EXACT_CODE, hashes)
                return
            self._leave_exact(hashes)
            return
        params = _PARAMS[self._p]
        if dense:
            acc = int.from_bytes(dense[0], "little")
            high = params.dense_high
            for d in dense[1:]:
                y = int.from_bytes(d, "little")
                sel = ((((acc | high) - y) & high) >> 7) * 0xFF
                acc = (acc & sel) | (y & ~sel)
            regs = bytearray(acc.to_bytes(params.m, "little"))
        else:
            regs = bytearray(params.m)
        for s in maps:
            for e in s._data:
                idx = e >> 6
                regs[idx] = max(regs[idx], e & 63)
        if exact:
            q = params.q
            lowmask = (1 << q) - 1
            for h in exact:
                idx = h >> q
                rho = q + 1 - (h & lowmask).bit_length()
                regs[idx] = max(regs[idx], rho)
        self._set_registers(regs)

    def union(self, *others: HyperLogLog) -> HyperLogLog:
        """Return a new sketch counting the members of this sketch and all ``others``.

        >>> a = HyperLogLog(); a.update([1, 2]); b = HyperLogLog(); b.update([2, 3])
        >>> a.union(b).estimate(), (a | b) == b.union(a)
        (3, True)
        """
        new = self.copy()
        new.merge(*others)
        return new

    def __or__(self, other: HyperLogLog) -> HyperLogLog:
        if not isinstance(other, HyperLogLog):
            return NotImplemented
        return self.union(other)

    def __ior__(self, other: HyperLogLog) -> HyperLogLog:
        if not isinstance(other, HyperLogLog):
            return NotImplemented
        self.merge(other)
        return self

    def clear(self) -> None:
        """Remove every member."""
        self.__init__(self._p)  # type: ignore[misc]  # re-initialising in place is intended

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HyperLogLog):
            return NotImplemented
        a, b = self._data, other._data
        if self._p != other._p or type(a) is not type(b):
            return False
        if isinstance(a, bytearray) or isinstance(b, bytearray):
            return a == b
        return a.typecode == b.typecode and a == b

    __hash__ = None  # type: ignore[assignment]  # mutable, like set

    def __repr__(self) -> str:
        return (
            f"<HyperLogLog precision={self._p} encoding={self.encoding} estimate={self.estimate()}>"
        )

    # -- serialization ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Serialize: a 6-byte header, the payload, then a CRC-32 of all before it.

        Header: magic ``b"AH"``, format version (1), precision, hash id (3), encoding
        (0 exact: sorted 8-byte little-endian hashes; 1 sparse: 3-byte little-endian
        ``index << 6 | value`` per nonzero register, by index; 2 dense: registers packed
        6 bits each, big-endian bit order, ``3 * 2**p / 4`` bytes). The CRC-32 (zlib,
        little-endian) covers header and payload.

        >>> HyperLogLog(12).to_bytes().hex()
        '4148010c030020a6ce87'
        """
        data = self._data
        if isinstance(data, bytearray):
            enc, payload = ENC_DENSE, _pack6(data)
        elif data.typecode == _EXACT_CODE:
            enc, payload = ENC_EXACT, _native_to_le(data)
        else:
            enc = ENC_SPARSE
            raw = _native_to_le(data)
            out = bytearray(3 * len(data))
            out[0::3] = raw[0::4]
            out[1::3] = raw[1::4]
            out[2::3] = raw[2::4]
            payload = bytes(out)
        head = MAGIC + bytes((FORMAT_VERSION, self._p, HASH_ID, enc)) + payload
        return head + zlib.crc32(head).to_bytes(4, "little")

    @classmethod
    def from_bytes(  # noqa: PLR0912, PLR0915 - one validation per format rule
        cls, data: bytes | bytearray | memoryview
    ) -> HyperLogLog:
        r"""Rebuild a sketch from :meth:`to_bytes` output.

        Raises :class:`~authabuse.errors.CorruptDataError` for truncated or corrupt
        bytes and :class:`~authabuse.errors.IncompatibleError` for a format version or
        hash this release does not know.

        >>> HyperLogLog.from_bytes(b"AH\x01")
        Traceback (most recent call last):
        ...
        authabuse.errors.CorruptDataError: HyperLogLog bytes truncated: 3 bytes
        """
        buf = bytes(data)
        if len(buf) < _HEADER + _TRAILER:
            raise CorruptDataError(f"HyperLogLog bytes truncated: {len(buf)} bytes")
        if buf[:2] != MAGIC:
            raise CorruptDataError(f"not a HyperLogLog (magic {buf[:2]!r}, expected {MAGIC!r})")
        version, p, hash_id, enc = buf[2], buf[3], buf[4], buf[5]
        if version != FORMAT_VERSION:
            raise IncompatibleError(
                f"HyperLogLog format version {version} is not supported (this release "
                f"reads version {FORMAT_VERSION})"
            )
        if zlib.crc32(buf[:-_TRAILER]) != int.from_bytes(buf[-_TRAILER:], "little"):
            raise CorruptDataError("HyperLogLog bytes corrupt or truncated (CRC mismatch)")
        if hash_id != HASH_ID:
            known = f" ({OLD_HASH_IDS[hash_id]})" if hash_id in OLD_HASH_IDS else ""
            raise IncompatibleError(
                f"HyperLogLog uses hash id {hash_id}{known}; this release uses hash id "
                f"{HASH_ID} and cannot read or merge it: rebuild the counts from the events"
            )
        if not MIN_PRECISION <= p <= MAX_PRECISION:
            raise CorruptDataError(f"HyperLogLog precision {p} out of range")
        payload = buf[_HEADER:-_TRAILER]
        params = _PARAMS[p]
        sketch = cls(p)
        if enc == ENC_EXACT:
            if len(payload) % 8 or len(payload) // 8 > EXACT_LIMIT:
                raise CorruptDataError(f"bad exact HyperLogLog payload of {len(payload)} bytes")
            hashes = _le_to_native(_EXACT_CODE, payload)
            if any(a >= b for a, b in pairwise(hashes)):
                raise CorruptDataError("exact HyperLogLog hashes are not sorted and unique")
            sketch._data = hashes
        elif enc == ENC_SPARSE:
            if len(payload) % 3 or len(payload) // 3 > params.m:
                raise CorruptDataError(f"bad sparse HyperLogLog payload of {len(payload)} bytes")
            n = len(payload) // 3
            raw = bytearray(4 * n)
            raw[0::4] = payload[0::3]
            raw[1::4] = payload[1::3]
            raw[2::4] = payload[2::3]
            entries = _le_to_native(_SPARSE_CODE, bytes(raw))
            regs: dict[int, int] = {}
            last = -1
            for e in entries:
                idx, rho = e >> 6, e & 63
                if idx <= last or idx >= params.m or not 0 < rho <= params.q + 1:
                    raise CorruptDataError("sparse HyperLogLog entries out of order or range")
                regs[idx] = rho
                last = idx
            if not regs:
                raise CorruptDataError("sparse HyperLogLog without registers")
            sketch._set_registers_from_map(regs)
        elif enc == ENC_DENSE:
            if len(payload) != 3 * params.m // 4:
                raise CorruptDataError(
                    f"dense HyperLogLog of precision {p} needs {3 * params.m // 4} bytes, "
                    f"got {len(payload)}"
                )
            dense = _unpack6(payload)
            if max(dense) > params.q + 1:
                raise CorruptDataError("dense HyperLogLog register value out of range")
            sketch._set_registers(dense)
        else:
            raise CorruptDataError(f"unknown HyperLogLog encoding {enc}")
        return sketch

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self).from_bytes, (self.to_bytes(),))


_DEDUPE_SAFE = (int, bytes, str, IPv4Address, IPv6Address)


def _dedupe_if_repetitive(members: list[Any] | tuple[Any, ...]) -> Iterable[Any]:
    """Drop repeats with a C-level set when a sample shows many (the result is the same).

    Only for member types whose equal values are the same member: a float equal to an int
    (``1.0`` beside ``1``) would vanish into the set instead of being refused, so any
    other type keeps every member for the per-member path to judge.
    """
    try:
        if len(set(members[:256])) > 192:
            return members
        if not all(issubclass(t, _DEDUPE_SAFE) for t in set(map(type, members))):
            return members
        return set(members)
    except TypeError:  # unhashable members (bytearray): keep them all
        return members


def _native_to_le(arr: array[int]) -> bytes:
    if _LITTLE:
        return arr.tobytes()
    swapped = array(arr.typecode, arr)  # pragma: no cover - big-endian hosts
    swapped.byteswap()  # pragma: no cover
    return swapped.tobytes()  # pragma: no cover


def _le_to_native(code: str, raw: bytes) -> array[int]:
    arr = array(code)
    arr.frombytes(raw)
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        arr.byteswap()
    return arr


def _table(f: Any) -> bytes:
    return bytes(f(v) & 0xFF for v in range(256))


_SHL2 = _table(lambda v: v << 2)
_SHR4 = _table(lambda v: v >> 4)
_LO4SHL4 = _table(lambda v: (v & 15) << 4)
_SHR2 = _table(lambda v: v >> 2)
_LO2SHL6 = _table(lambda v: (v & 3) << 6)
_LO2SHL4 = _table(lambda v: (v & 3) << 4)
_LO4SHL2 = _table(lambda v: (v & 15) << 2)
_SHR6 = _table(lambda v: v >> 6)
_LO6 = _table(lambda v: v & 63)


def _or(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") | int.from_bytes(b, "little")).to_bytes(len(a), "little")


def _pack6(regs: bytearray) -> bytes:
    """Pack registers (< 64) 4 to 3 bytes: r0<<18 | r1<<12 | r2<<6 | r3, big-endian."""
    r0, r1, r2, r3 = (bytes(regs[i::4]) for i in range(4))
    out = bytearray(3 * len(r0))
    out[0::3] = _or(r0.translate(_SHL2), r1.translate(_SHR4))
    out[1::3] = _or(r1.translate(_LO4SHL4), r2.translate(_SHR2))
    out[2::3] = _or(r2.translate(_LO2SHL6), r3)
    return bytes(out)


def _unpack6(payload: bytes) -> bytearray:
    b0, b1, b2 = payload[0::3], payload[1::3], payload[2::3]
    regs = bytearray(4 * len(b0))
    regs[0::4] = b0.translate(_SHR2)
    regs[1::4] = _or(b0.translate(_LO2SHL4), b1.translate(_SHR4))
    regs[2::4] = _or(b1.translate(_LO4SHL2), b2.translate(_SHR6))
    regs[3::4] = b2.translate(_LO6)
    return regs
