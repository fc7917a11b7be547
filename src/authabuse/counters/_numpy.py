"""Vectorised batch operations for the ``numpy`` extra, bit-identical to the pure path.

:func:`hash_array` is the same hash as :func:`~authabuse.counters.hash64` (id 3) for
integers below 2**64, computed with numpy's wrapping ``uint64`` arithmetic; :func:`update_array`
and :func:`union_all` produce exactly the sketch (same tier, same bytes) the pure
``add``/``merge`` would. The tests check both claims on random and adversarial inputs.

>>> import numpy as np
>>> from authabuse.counters import HyperLogLog, hash64
>>> int(hash_array(np.array([0, 1], dtype=np.uint64))[1]) == hash64(1)
True
>>> a = HyperLogLog(); update_array(a, np.arange(50_000, dtype=np.uint64))
>>> b = HyperLogLog(); b.update(range(50_000))
>>> a == b
True
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from authabuse.counters._hash import K0, K1, K2, SHIFT
from authabuse.counters._hll import _EXACT_CODE, _PARAMS, EXACT_LIMIT, HyperLogLog
from authabuse.errors import MissingExtraError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["hash_array", "union_all", "update_array"]


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - the numpy extra is installed in tests
        raise MissingExtraError.for_extra("numpy", "Batch sketch operations") from exc
    return numpy


def hash_array(values: npt.ArrayLike) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Hash an array of non-negative integers below 2**64 (as :func:`hash64` would).

    Raises :class:`TypeError` for a non-integer array and :class:`ValueError` for
    negative values.

    >>> import numpy as np
    >>> from authabuse.counters._hash import hash64
    >>> int(hash_array(np.array([1, 2], dtype=np.uint32))[0]) == hash64(1)
    True
    """
    np = _numpy()
    a = np.asarray(values)
    if a.dtype.kind not in "iu":
        if a.dtype == object:
            raise TypeError("object arrays are hashed by the pure path: use sketch.update(list)")
        raise TypeError(f"hash_array needs an integer array, not dtype {a.dtype}")
    if a.dtype.kind == "i" and a.size and int(a.min()) < 0:
        raise ValueError("negative integers cannot be sketch members")
    z = a.astype(np.uint64).ravel()
    z = (z ^ (z >> np.uint64(32))) * np.uint64(K1) + np.uint64(K0)
    z ^= z >> np.uint64(SHIFT)
    z *= np.uint64(K2)
    return z  # type: ignore[no-any-return]  # numpy is untyped here (imported lazily)


def _index_rho(np: Any, hashes: Any, p: int) -> tuple[Any, Any]:
    q = 64 - p
    idx = (hashes >> np.uint64(q)).astype(np.intp)
    w = hashes & np.uint64((1 << q) - 1)
    if q <= 53:  # w < 2**53 converts to a double exactly: frexp's exponent is bit_length(w)
        bl = np.frexp(w.astype(np.float64))[1]
    else:  # split in halves below 2**32 so that no conversion rounds up a power of two
        hi = (w >> np.uint64(32)).astype(np.float64)
        lo = (w & np.uint64(0xFFFFFFFF)).astype(np.float64)
        bl = np.where(hi > 0, np.frexp(hi)[1] + 32, np.frexp(lo)[1])
    rho = (q + 1 - bl).astype(np.uint8)
    return idx, rho


def update_array(sketch: HyperLogLog, values: npt.ArrayLike) -> None:
    """Add every integer of ``values`` to ``sketch``, vectorised.

    Same result as ``sketch.update(int(v) for v in values)``, bit for bit.

    >>> import numpy as np
    >>> from authabuse.counters import HyperLogLog
    >>> a, b = HyperLogLog(), HyperLogLog()
    >>> update_array(a, np.arange(5000, dtype=np.uint64))
    >>> b.update(range(5000))
    >>> a == b, 4900 < a.estimate() < 5100
    (True, True)
    """
    np = _numpy()
    hashes = hash_array(values)
    if hashes.size == 0:
        return
    data = sketch._data
    p = sketch._p
    exact = False
    if not isinstance(data, bytearray) and data.typecode == _EXACT_CODE:
        exact = True
        hashes = np.concatenate((np.array(data.tolist(), dtype=np.uint64), hashes))
        regs = bytearray(_PARAMS[p].m)
    else:
        regs = sketch._dense_registers()
    idx, rho = _index_rho(np, hashes, p)
    view = np.frombuffer(regs, dtype=np.uint8)
    np.maximum.at(view, idx, rho)
    if exact and np.count_nonzero(view) <= EXACT_LIMIT:
        # few registers set: there may be at most EXACT_LIMIT distinct hashes, in which
        # case the pure path stays exact; count them exactly (sort, drop repeats)
        ordered = np.sort(hashes)
        distinct = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
        if distinct.size <= EXACT_LIMIT:
            sketch._data = array(_EXACT_CODE, distinct.tolist())
            return
    sketch._set_registers(regs)


def union_all(sketches: Sequence[HyperLogLog]) -> HyperLogLog:
    """Return the union of many sketches, merging dense registers in one numpy reduction.

    Same result as ``sketches[0].union(*sketches[1:])``, bit for bit.

    >>> a = HyperLogLog(); a.update(range(10_000)); b = HyperLogLog(); b.update([1, -0])
    >>> union_all([a, b]) == a.union(b)
    True
    """
    np = _numpy()
    if not sketches:
        raise ValueError("union_all needs at least one sketch")
    first = sketches[0]
    for s in sketches[1:]:
        first._check_compatible(s)
    dense = [s._data for s in sketches if isinstance(s._data, bytearray)]
    others = [s for s in sketches if not isinstance(s._data, bytearray)]
    if len(dense) < 2:
        return first.union(*sketches[1:])
    m = _PARAMS[first._p].m
    stack = np.frombuffer(b"".join(dense), dtype=np.uint8).reshape(len(dense), m)
    acc = HyperLogLog(first._p)
    acc._set_registers(bytearray(stack.max(axis=0).tobytes()))
    if others:
        acc.merge(*others)
    return acc
