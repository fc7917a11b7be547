"""The stable 64-bit member hash shared by every sketch (hash id 3).

Sketches from different machines only merge if they hash members identically, so the
hash is fixed here, independent of the platform, the Python version and
``PYTHONHASHSEED``:

* an ``int`` member ``0 <= x < 2**64`` (an IPv4 address as ``int(ip)``, any counter) is
  mixed by :func:`mix64`, a multiply-xorshift-multiply mixer; all arithmetic is modulo
  2**64::

      z = x ^ (x >> 32)
      z = z * 0xBF58476D1CE4E5B9 + 0x9E3779B97F4A7C15
      z = z ^ (z >> 29)
      h = z * 0x94D049BB133111EB

  Every step is a bijection of 64-bit words, so distinct members below 2**64 never
  collide. The constants are SplitMix64's (Steele, Lea and Flood 2014). For an IPv4
  address (``x < 2**32``) the first step is the identity, so the whole hash is two
  multiplications, one addition, one xorshift and two reductions: ``add()`` computes it
  inline. (Hash id 1, used before, was the full SplitMix64 finalizer: three xorshifts,
  two multiplications; the register index and value only read the top ~40 bits, which
  its final xorshift never changes, and the cheaper mixer meets the same accuracy on
  random, sequential, strided and /24-block IPv4 and on high-bit-only integers.)
* a larger ``int`` (an IPv6 address) is cut into 64-bit limbs, least significant first:
  ``h = mix64(limb0)``, then ``h = mix64(h ^ limb)`` for each further limb;
* ``bytes`` (and ``bytearray``/``memoryview``) are hashed with BLAKE2b, 8-byte digest, no
  key, read as a little-endian integer; a ``str`` is hashed as its UTF-8 bytes;
* an :class:`ipaddress.IPv4Address`/``IPv6Address`` is hashed as ``int(address)``.

Negative integers and other types raise :class:`TypeError`/:class:`ValueError`.

>>> hex(hash64(0)), hex(hash64(1))
('0x7d8bdf20ca2c04ca', '0x30a03ae6288df77e')
>>> hash64(b"198.51.100.7") == hash64("198.51.100.7")
True
"""

from __future__ import annotations

from hashlib import blake2b
from ipaddress import IPv4Address, IPv6Address

__all__ = ["HASH_ID", "Member", "hash64", "mix64"]

HASH_ID = 3
"""Identifier of this hash in the binary format; sketches with another id never merge.

Id 1 was SplitMix64 for integers (authabuse before the faster mixer); id 2 marks the
``hyperloglog`` package's sketches (SHA-1), see ``HyperLogLogAdapter``.
"""

OLD_HASH_IDS = {1: "SplitMix64 integers, written by an earlier authabuse release"}
"""Hash ids this release recognises but cannot merge with, for clearer errors."""

Member = bytes | bytearray | memoryview | str | int | IPv4Address | IPv6Address
"""What a sketch accepts as a member."""

_M64 = (1 << 64) - 1
K0 = 0x9E3779B97F4A7C15
K1 = 0xBF58476D1CE4E5B9
K2 = 0x94D049BB133111EB
SHIFT = 29


def mix64(x: int) -> int:
    """Return the hash of an int ``0 <= x < 2**64`` (the module docstring gives the steps).

    >>> hex(mix64(1))
    '0x30a03ae6288df77e'
    >>> mix64(2**64 - 1) != mix64(2**32 - 1)
    True
    """
    z = x ^ (x >> 32)
    z = (z * K1 + K0) & _M64
    return ((z ^ (z >> SHIFT)) * K2) & _M64


def hash64(member: Member) -> int:
    """Return the stable 64-bit hash of one sketch member (see the module docstring).

    >>> hash64(2**64) == mix64(mix64(0) ^ 1)
    True
    >>> hash64(-1)
    Traceback (most recent call last):
    ...
    ValueError: negative integers cannot be sketch members: -1
    """
    if type(member) is int:
        if 0 <= member <= _M64:
            z = member ^ (member >> 32)
            z = (z * K1 + K0) & _M64
            return ((z ^ (z >> SHIFT)) * K2) & _M64
        if 0 < member >> 64 <= _M64:  # an IPv6 address: two limbs, inlined
            z = member & _M64
            z ^= z >> 32
            z = (z * K1 + K0) & _M64
            z = (((z ^ (z >> SHIFT)) * K2) & _M64) ^ (member >> 64)
            z ^= z >> 32
            z = (z * K1 + K0) & _M64
            return ((z ^ (z >> SHIFT)) * K2) & _M64
        return _hash_big(member)
    if isinstance(member, bytes | bytearray | memoryview):
        return int.from_bytes(blake2b(member, digest_size=8).digest(), "little")
    if isinstance(member, str):
        return int.from_bytes(blake2b(member.encode(), digest_size=8).digest(), "little")
    if isinstance(member, int | IPv4Address | IPv6Address):  # bool, IntEnum, addresses
        return hash64(int(member))
    raise TypeError(
        f"sketch members are bytes, str, int or IP addresses, not {type(member).__name__}"
    )


def _hash_big(member: int) -> int:
    if member < 0:
        raise ValueError(f"negative integers cannot be sketch members: {member}")
    h = mix64(member & _M64)
    member >>= 64
    while member:
        h = mix64(h ^ (member & _M64))
        member >>= 64
    return h
