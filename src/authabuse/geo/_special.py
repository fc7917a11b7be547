"""Special-use address blocks (IANA special-purpose registries) and tunnel prefixes.

Every authabuse resolver consults this table before its database, so a private,
CGNAT, loopback, link-local, documentation, ULA, multicast or reserved address gets a
clear "not routable" :class:`~authabuse.geo.Location` whatever the database says, and
an address inside a tunnel prefix that embeds a public IPv4 address (6to4
``2002::/16``, Teredo ``2001::/32``, NAT64 ``64:ff9b::/96``) is placed by that IPv4
address.

Sources: IANA IPv4 and IPv6 Special-Purpose Address Registries (entries whose
"Globally Reachable" is False or N/A), the IPv4 multicast and reserved blocks, and the
IANA IPv6 Address Space registry (everything outside ``2000::/3`` is reserved by the
IETF, multicast, link-local or ULA).
"""

from __future__ import annotations

from bisect import bisect_right
from ipaddress import ip_network
from typing import NamedTuple

__all__ = ["SpecialBlock", "special_blocks", "special_entry"]

# Kinds of entries: "special" is not routable, "public" is an exception inside a special
# block (globally reachable), the tunnel kinds embed an IPv4 address.
SPECIAL = "special"
PUBLIC = "public"
SIX_TO_FOUR = "6to4"
TEREDO = "teredo"
NAT64 = "nat64"

# (network, name, kind) painted in order: later entries override earlier ones.
_V4_PAINT: tuple[tuple[str, str, str], ...] = (
    ("0.0.0.0/8", "This network (RFC 791)", SPECIAL),
    ("10.0.0.0/8", "Private-Use (RFC 1918)", SPECIAL),
    ("100.64.0.0/10", "Shared Address Space, CGNAT (RFC 6598)", SPECIAL),
    ("127.0.0.0/8", "Loopback (RFC 1122)", SPECIAL),
    ("169.254.0.0/16", "Link-Local (RFC 3927)", SPECIAL),
    ("172.16.0.0/12", "Private-Use (RFC 1918)", SPECIAL),
    ("192.0.0.0/24", "IETF Protocol Assignments (RFC 6890)", SPECIAL),
    ("192.0.0.9/32", "", PUBLIC),  # Port Control Protocol anycast
    ("192.0.0.10/32", "", PUBLIC),  # TURN anycast
    ("192.0.2.0/24", "Documentation, TEST-NET-1 (RFC 5737)", SPECIAL),
    ("192.88.99.0/24", "Deprecated 6to4 Relay Anycast (RFC 7526)", SPECIAL),
    ("192.168.0.0/16", "Private-Use (RFC 1918)", SPECIAL),
    ("198.18.0.0/15", "Benchmarking (RFC 2544)", SPECIAL),
    ("198.51.100.0/24", "Documentation, TEST-NET-2 (RFC 5737)", SPECIAL),
    ("203.0.113.0/24", "Documentation, TEST-NET-3 (RFC 5737)", SPECIAL),
    ("224.0.0.0/4", "Multicast (RFC 5771)", SPECIAL),
    ("240.0.0.0/4", "Reserved (RFC 1112)", SPECIAL),
    ("255.255.255.255/32", "Limited Broadcast (RFC 919)", SPECIAL),
)

_V6_PAINT: tuple[tuple[str, str, str], ...] = (
    # Outside 2000::/3 nothing is allocated to networks (IANA IPv6 Address Space).
    ("::/0", "Reserved by IETF (RFC 4291)", SPECIAL),
    ("2000::/3", "", PUBLIC),
    ("::/128", "Unspecified Address (RFC 4291)", SPECIAL),
    ("::1/128", "Loopback Address (RFC 4291)", SPECIAL),
    ("::ffff:0:0/96", "IPv4-mapped Address (RFC 4291)", SPECIAL),
    ("64:ff9b::/96", "", NAT64),
    ("64:ff9b:1::/48", "IPv4-IPv6 Translation, local use (RFC 8215)", SPECIAL),
    ("100::/64", "Discard-Only Address Block (RFC 6666)", SPECIAL),
    ("2001::/23", "IETF Protocol Assignments (RFC 2928)", SPECIAL),
    ("2001::/32", "", TEREDO),
    ("2001:1::1/128", "", PUBLIC),  # Port Control Protocol anycast
    ("2001:1::2/128", "", PUBLIC),  # TURN anycast
    ("2001:1::3/128", "", PUBLIC),  # DNS-SD Service Registration Protocol anycast
    ("2001:2::/48", "Benchmarking (RFC 5180)", SPECIAL),
    ("2001:3::/32", "", PUBLIC),  # AMT
    ("2001:4:112::/48", "", PUBLIC),  # AS112-v6
    ("2001:20::/28", "", PUBLIC),  # ORCHIDv2
    ("2001:30::/28", "", PUBLIC),  # Drone Remote ID
    ("2001:db8::/32", "Documentation (RFC 3849)", SPECIAL),
    ("2002::/16", "", SIX_TO_FOUR),
    ("3fff::/20", "Documentation (RFC 9637)", SPECIAL),
    ("fc00::/7", "Unique-Local (RFC 4193)", SPECIAL),
    ("fe80::/10", "Link-Local Unicast (RFC 4291)", SPECIAL),
    ("ff00::/8", "Multicast (RFC 4291)", SPECIAL),
)


class SpecialBlock(NamedTuple):
    """One flat segment of the special-use partition (``first``..``last`` inclusive).

    >>> block = special_blocks(4)[1]
    >>> block.name, block.first == 10 << 24, block.last == (11 << 24) - 1
    ('Private-Use (RFC 1918)', True, True)
    """

    first: int
    last: int
    name: str
    kind: str


def _flatten(paint: tuple[tuple[str, str, str], ...], bits: int) -> list[SpecialBlock]:
    """Paint the blocks in order and return the non-public segments, sorted, merged."""
    segments: list[tuple[int, int, str, str]] = [(0, (1 << bits) - 1, "", PUBLIC)]
    for text, name, kind in paint:
        net = ip_network(text)
        lo, hi = int(net.network_address), int(net.broadcast_address)
        out: list[tuple[int, int, str, str]] = []
        for first, last, n, k in segments:
            if last < lo or first > hi:
                out.append((first, last, n, k))
                continue
            if first < lo:
                out.append((first, lo - 1, n, k))
            if last > hi:
                out.append((hi + 1, last, n, k))
        out.append((lo, hi, name, kind))
        segments = sorted(out)
    merged: list[SpecialBlock] = []
    for first, last, name, kind in segments:
        if kind == PUBLIC:
            continue
        if merged and merged[-1].last + 1 == first and merged[-1][2:] == (name, kind):
            merged[-1] = merged[-1]._replace(last=last)
        else:
            merged.append(SpecialBlock(first, last, name, kind))
    return merged


_BLOCKS: dict[int, list[SpecialBlock]] = {4: _flatten(_V4_PAINT, 32), 6: _flatten(_V6_PAINT, 128)}
_FIRSTS: dict[int, list[int]] = {v: [b.first for b in blocks] for v, blocks in _BLOCKS.items()}
# Fast rejection: does any special block touch this /8 (IPv4) or /16 (IPv6)?
_SHIFT = {4: 24, 6: 112}
_TOUCH: dict[int, bytearray] = {4: bytearray(256), 6: bytearray(65536)}
for _v, _blocks in _BLOCKS.items():
    for _b in _blocks:
        for _top in range(_b.first >> _SHIFT[_v], (_b.last >> _SHIFT[_v]) + 1):
            _TOUCH[_v][_top] = 1
_TOUCH4 = _TOUCH[4]
_TOUCH6 = _TOUCH[6]
_FIRSTS4, _FIRSTS6 = _FIRSTS[4], _FIRSTS[6]
_BLOCKS4, _BLOCKS6 = _BLOCKS[4], _BLOCKS[6]


def special_entry(n: int, version: int) -> SpecialBlock | None:
    """Return the special-use or tunnel segment holding integer address ``n``, if any.

    >>> special_entry(0x0A000001, 4).name
    'Private-Use (RFC 1918)'
    >>> special_entry(0x08080808, 4) is None
    True
    """
    if version == 4:
        if not _TOUCH4[n >> 24]:
            return None
        i = bisect_right(_FIRSTS4, n) - 1
        if i >= 0 and n <= _BLOCKS4[i].last:
            return _BLOCKS4[i]
        return None
    if not _TOUCH6[n >> 112]:
        return None
    i = bisect_right(_FIRSTS6, n) - 1
    if i >= 0 and n <= _BLOCKS6[i].last:
        return _BLOCKS6[i]
    return None


def special_blocks(version: int) -> list[SpecialBlock]:
    """Return the flat, sorted special-use and tunnel segments of an address family.

    >>> [b.name for b in special_blocks(4)][:2]
    ['This network (RFC 791)', 'Private-Use (RFC 1918)']
    """
    return list(_BLOCKS[version])


def clamp_prefix(n: int, version: int, prefix: int) -> int:
    """Lengthen ``prefix`` so that the block around ordinary address ``n`` holds no special block.

    A database's answer (or its "no data") for a wide block must not be cached for the
    special-use addresses inside it.

    >>> clamp_prefix(0x0B000001, 4, 4)   # 11.0.0.1 in 0.0.0.0/4 would cover 10.0.0.0/8
    8
    """
    if version == 4:
        if prefix >= 8 and not _TOUCH4[n >> 24]:
            return prefix
        firsts, blocks, bits = _FIRSTS4, _BLOCKS4, 32
    else:
        if prefix >= 16 and not _TOUCH6[n >> 112]:
            return prefix
        firsts, blocks, bits = _FIRSTS6, _BLOCKS6, 128
    i = bisect_right(firsts, n) - 1
    seg_first = blocks[i].last + 1 if i >= 0 else 0
    seg_last = blocks[i + 1].first - 1 if i + 1 < len(blocks) else (1 << bits) - 1
    k = bits if seg_first == 0 else (n ^ (seg_first - 1)).bit_length() - 1
    if seg_last + 1 < 1 << bits:
        k = min(k, (n ^ (seg_last + 1)).bit_length() - 1)
    return max(prefix, bits - k)
