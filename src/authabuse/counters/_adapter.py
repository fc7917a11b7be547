"""Adapter for the ``hyperloglog`` extra: its sketches behind authabuse's sketch protocol."""

from __future__ import annotations

import math
import sys
import zlib
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final, Protocol, runtime_checkable

from authabuse.counters._hash import Member
from authabuse.counters._hll import (
    _HEADER,
    _TRAILER,
    DEFAULT_PRECISION,
    ENC_DENSE,
    FORMAT_VERSION,
    MAGIC,
    MAX_PRECISION,
    MIN_PRECISION,
    _pack6,
    _unpack6,
)
from authabuse.errors import (
    ConfigurationError,
    CorruptDataError,
    IncompatibleError,
    MissingExtraError,
)

__all__ = ["PACKAGE_HASH_ID", "HyperLogLogAdapter", "Sketch"]

PACKAGE_HASH_ID: Final = 2
"""Hash id written for the ``hyperloglog`` package's sketches (SHA-1 of msgpack)."""


@runtime_checkable
class Sketch(Protocol):
    """What :class:`~authabuse.counters.WindowedDistinct` and the stores need of a sketch.

    :class:`~authabuse.counters.HyperLogLog` and :class:`HyperLogLogAdapter` implement it.

    >>> from authabuse.counters import HyperLogLog
    >>> isinstance(HyperLogLog(), Sketch)
    True
    """

    @property
    def precision(self) -> int:
        """Registers are ``2**precision``."""

    def add(self, member: Member) -> None:
        """Add one member."""

    def update(self, members: Iterable[Member]) -> None:
        """Add members."""

    def estimate(self) -> int:
        """Return the distinct members added."""

    def merge(self, *others: Any) -> None:
        """Merge sketches of the same kind into this one."""

    def union(self, *others: Any) -> Any:
        """Return a new sketch holding this one's and ``others``' members."""

    def copy(self) -> Any:
        """Return an independent copy."""

    def memory_usage(self) -> int:
        """Return the bytes held."""

    def to_bytes(self) -> bytes:
        """Serialize."""


def _package() -> Any:
    try:
        import hyperloglog
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise MissingExtraError.for_extra("hyperloglog", "hyperloglog package sketches") from exc
    return hyperloglog


def _error_rate(precision: int) -> float:
    # the package picks p = ceil(log2((1.04 / error_rate) ** 2)); aim just inside p
    return 1.04 / math.sqrt(2.0**precision) * (1 + 1e-9)


def _plain(member: Member) -> bytes | str | int:
    if isinstance(member, bytes | str):
        return member
    if isinstance(member, bytearray | memoryview):
        return bytes(member)
    if isinstance(member, IPv4Address | IPv6Address):
        member = int(member)
    if isinstance(member, int):
        if member < 0:
            raise ValueError(f"negative integers cannot be sketch members: {member}")
        # msgpack packs ints below 2**64; larger ones (IPv6) as their 16+ big-endian bytes
        return member if member < 1 << 64 else member.to_bytes((member.bit_length() + 7) // 8)
    raise TypeError(f"sketch members are bytes, str, int or IP addresses, not {type(member)}")


class HyperLogLogAdapter:
    """A ``hyperloglog.HyperLogLog`` (the ``hyperloglog`` extra) with authabuse's sketch API.

    Lets that package's sketches serve wherever authabuse takes a sketch (windows, the
    memory store via ``MemoryStore(sketch=HyperLogLogAdapter)``). Its hash (SHA-1 of
    the msgpack encoding) differs from :class:`~authabuse.counters.HyperLogLog`'s, so the
    two never merge (:class:`~authabuse.errors.IncompatibleError`); its bytes use
    authabuse's format with hash id 2.

    >>> a = HyperLogLogAdapter(); a.update([1, 2, b"x"]); a.estimate()
    3
    >>> HyperLogLogAdapter.from_bytes(a.to_bytes()) == a
    True
    """

    __slots__ = ("sketch",)

    def __init__(self, precision: int = DEFAULT_PRECISION, *, sketch: Any = None) -> None:
        if sketch is None:
            if type(precision) is not int or not MIN_PRECISION <= precision <= MAX_PRECISION:
                raise ConfigurationError(
                    f"precision must be an integer from {MIN_PRECISION} to {MAX_PRECISION}"
                )
            sketch = _package().HyperLogLog(_error_rate(precision))
        self.sketch = sketch

    @property
    def precision(self) -> int:
        """Registers are ``2**precision``."""
        return int(self.sketch.p)

    def add(self, member: Member) -> None:
        """Add one member."""
        self.sketch.add(_plain(member))

    def update(self, members: Iterable[Member]) -> None:
        """Add members (through the package's vectorised ``add_bulk``)."""
        batch = [_plain(m) for m in members]
        if batch:
            self.sketch.add_bulk(batch)

    def estimate(self) -> int:
        """Return the package's cardinality estimate, rounded."""
        return round(float(self.sketch.card()))

    def _check(self, other: object) -> HyperLogLogAdapter:
        if not isinstance(other, HyperLogLogAdapter):
            raise IncompatibleError(f"cannot merge a hyperloglog-package sketch with {other!r}")
        if other.sketch.m != self.sketch.m:
            raise IncompatibleError(
                f"cannot merge sketches of precision {self.precision} and {other.precision}"
            )
        return other

    def merge(self, *others: HyperLogLogAdapter) -> None:
        """Merge others into this sketch."""
        sketches = [self._check(o).sketch for o in others]
        if sketches:
            self.sketch.update(*sketches)

    def union(self, *others: HyperLogLogAdapter) -> HyperLogLogAdapter:
        """Return a new sketch with this one's and ``others``' members."""
        new = self.copy()
        new.merge(*others)
        return new

    def __or__(self, other: HyperLogLogAdapter) -> HyperLogLogAdapter:
        return self.union(other)

    def __ior__(self, other: HyperLogLogAdapter) -> HyperLogLogAdapter:
        self.merge(other)
        return self

    def copy(self) -> HyperLogLogAdapter:
        """Return an independent copy."""
        new = _package().HyperLogLog(_error_rate(self.precision))
        new.M = self.sketch.M.copy()
        return HyperLogLogAdapter(sketch=new)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HyperLogLogAdapter):
            return NotImplemented
        return bool(self.sketch == other.sketch)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def memory_usage(self) -> int:
        """Return the bytes held (wrapper, package object and its register array)."""
        return sys.getsizeof(self) + sys.getsizeof(self.sketch) + int(self.sketch.M.nbytes) + 112

    def to_bytes(self) -> bytes:
        """Serialize in authabuse's format (hash id 2, dense encoding)."""
        regs = bytearray(self.sketch.M.astype("uint8").tobytes())
        head = MAGIC + bytes((FORMAT_VERSION, self.precision, PACKAGE_HASH_ID, ENC_DENSE))
        body = head + _pack6(regs)
        return body + zlib.crc32(body).to_bytes(4, "little")

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> HyperLogLogAdapter:
        """Rebuild from :meth:`to_bytes` output."""
        buf = bytes(data)
        if len(buf) < _HEADER + _TRAILER or buf[:2] != MAGIC:
            raise CorruptDataError("not a serialized sketch (bad magic or truncated)")
        if zlib.crc32(buf[:-_TRAILER]) != int.from_bytes(buf[-_TRAILER:], "little"):
            raise CorruptDataError("sketch bytes corrupt or truncated (CRC mismatch)")
        version, p, hash_id, enc = buf[2:6]
        if version != FORMAT_VERSION or hash_id != PACKAGE_HASH_ID or enc != ENC_DENSE:
            raise IncompatibleError(
                f"not a hyperloglog-package sketch (version {version}, hash id {hash_id})"
            )
        if (
            not MIN_PRECISION <= p <= MAX_PRECISION
            or len(buf) != _HEADER + _TRAILER + 3 * (1 << p) // 4
        ):
            raise CorruptDataError("hyperloglog-package sketch of wrong size")
        new = cls(p)
        import numpy as np

        regs = _unpack6(buf[_HEADER:-_TRAILER])
        new.sketch.M = np.frombuffer(bytes(regs), dtype=np.uint8).astype(new.sketch.M.dtype)
        return new
