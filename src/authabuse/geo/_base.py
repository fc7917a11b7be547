"""The machinery every authabuse resolver shares: special-use blocks, tunnels, networks."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

from authabuse.events import IPAddress
from authabuse.geo._special import (
    NAT64,
    SIX_TO_FOUR,
    SPECIAL,
    SpecialBlock,
    clamp_prefix,
    special_entry,
)
from authabuse.geo._types import Location, Network, address_of, block_prefix, make_network

__all__ = ["BaseResolver"]

_M32 = 0xFFFFFFFF
_BITS = {4: 32, 6: 128}


class BaseResolver:
    """Base of authabuse's resolvers: subclasses implement ``_lookup(n, version)``.

    ``_lookup`` answers for an ordinary (not special-use) integer address and returns
    ``(location_or_None, prefix_length)``, the prefix being that of the network the
    answer holds for. This class adds special-use answers, tunnel decoding (6to4,
    Teredo, NAT64) and the public ``resolve``/``resolve_with_network``.
    """

    __slots__ = ()

    #: Name of the database, used as ``Location.source``.
    source: str = "?"

    def _lookup(self, n: int, version: int) -> tuple[Location | None, int]:
        raise NotImplementedError

    def _resolve_int(self, n: int, version: int) -> tuple[Location | None, int]:
        block = special_entry(n, version)
        if block is not None:
            return self._special(n, version, block)
        loc, prefix = self._lookup(n, version)
        wider = clamp_prefix(n, version, prefix)
        if wider != prefix:
            prefix = wider
            if loc is not None:
                loc = dataclasses.replace(loc, network=make_network(n, prefix, version))
        return loc, prefix

    def _special(self, n: int, version: int, block: SpecialBlock) -> tuple[Location | None, int]:
        if block.kind == SPECIAL:
            prefix = block_prefix(n, block.first, block.last, _BITS[version])
            net = make_network(n, prefix, version)
            return Location(
                routable=False, network=net, source=f"special-use: {block.name}"
            ), prefix
        if block.kind == SIX_TO_FOUR:  # 2002:AABB:CCDD::/48 carries IPv4 AA.BB.CC.DD
            loc, p4 = self._resolve_int((n >> 80) & _M32, 4)
            prefix = 16 + p4
        elif block.kind == NAT64:  # 64:ff9b::a.b.c.d
            loc, p4 = self._resolve_int(n & _M32, 4)
            prefix = 96 + p4
        else:  # Teredo: the client's IPv4 address is the low 32 bits, inverted (RFC 4380)
            loc, _ = self._resolve_int(~n & _M32, 4)
            prefix = 128
        if loc is None:
            return None, prefix
        return dataclasses.replace(loc, network=make_network(n, prefix, 6)), prefix

    def resolve(self, ip: IPAddress | str) -> Location | None:
        """Return where ``ip`` is, or ``None`` when the database knows nothing about it.

        Text is accepted too (parsed by :func:`authabuse.parse_ip`); a string that is not
        an address raises :class:`~authabuse.errors.InvalidEventError`.
        """
        if ip.__class__ is IPv4Address:
            return self._resolve_int(int(ip), 4)[0]
        addr = address_of(ip)
        return self._resolve_int(int(addr), addr.version)[0]

    def resolve_with_network(self, ip: IPAddress | str) -> tuple[Location | None, Network]:
        """Return ``(answer, network)``: the network holds the same answer, misses included."""
        addr = address_of(ip)
        n, version = int(addr), addr.version
        loc, prefix = self._resolve_int(n, version)
        if loc is not None and loc.network is not None:
            return loc, loc.network
        return loc, make_network(n, prefix, version)
