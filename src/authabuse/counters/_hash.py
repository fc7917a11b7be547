"""The stable 64-bit member hash shared by every sketch (hash id 1).

Sketches from different machines only merge if they hash members identically, so the
hash is fixed here, independent of the platform, the Python version and
``PYTHONHASHSEED``:

* an ``int`` member ``0 <= x < 2**64`` (an IPv4 address as ``int(ip)``, any counter) is
  mixed by SplitMix64's finalizer (Steele, Lea and Flood 2014, the generator behind
  ``java.util.SplittableRandom``): ``z = x + 0x9E3779B97F4A7C15``, then
  ``z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9``, ``z = (z ^ z >> 27) * 0x94D049BB133111EB``,
  ``z ^ z >> 31``, all modulo 2**64. It is a bijection, so distinct members below 2**64
  never collide, and it is designed for sequential inputs such as consecutive addresses;
* a larger ``int`` (an IPv6 address) is cut into 64-bit limbs, least significant first:
  ``h = mix(limb0)``, then ``h = mix(h ^ limb)`` for each further limb;
* ``bytes`` (and ``bytearray``/``memoryview``) are hashed with BLAKE2b, 8-byte digest, no
  key, read as a little-endian integer; a ``str`` is hashed as its UTF-8 bytes;
* an :class:`ipaddress.IPv4Address`/``IPv6Address`` is hashed as ``int(address)``.

Negative integers and other types raise :class:`TypeError`/:class:`ValueError`.

>>> hash64(0)
16294208416658607535
>>> hash64(b"198.51.100.7") == hash64("198.51.100.7")
True
"""

from __future__ import annotations

from hashlib import blake2b
from ipaddress import IPv4Address, IPv6Address

__all__ = ["HASH_ID", "Member", "hash64", "mix64"]

HASH_ID = 1
"""Identifier of this hash in the binary format; sketches with another id never merge."""

Member = bytes | bytearray | memoryview | str | int | IPv4Address | IPv6Address
"""What a sketch accepts as a member."""

_M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
C1 = 0xBF58476D1CE4E5B9
C2 = 0x94D049BB133111EB


def mix64(x: int) -> int:
    """SplitMix64's finalizer of ``x`` (``0 <= x < 2**64``): the hash of a small int.

    >>> hex(mix64(1))
    '0x910a2dec89025cc1'
    """
    z = (x + GOLDEN) & _M64
    z = ((z ^ (z >> 30)) * C1) & _M64
    z = ((z ^ (z >> 27)) * C2) & _M64
    return z ^ (z >> 31)


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
            z = (member + GOLDEN) & _M64
            z = ((z ^ (z >> 30)) * C1) & _M64
            z = ((z ^ (z >> 27)) * C2) & _M64
            return z ^ (z >> 31)
        if 0 < member >> 64 <= _M64:  # an IPv6 address: two limbs, inlined
            z = ((member & _M64) + GOLDEN) & _M64
            z = ((z ^ (z >> 30)) * C1) & _M64
            z = ((z ^ (z >> 27)) * C2) & _M64
            z = ((z ^ (z >> 31) ^ (member >> 64)) + GOLDEN) & _M64
            z = ((z ^ (z >> 30)) * C1) & _M64
            z = ((z ^ (z >> 27)) * C2) & _M64
            return z ^ (z >> 31)
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
