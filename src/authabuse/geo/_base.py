"""The machinery every authabuse resolver shares: special-use blocks, tunnels, networks."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from typing import TypeAlias

from authabuse.events import IPAddress
from authabuse.geo._special import (
    _TOUCH4,
    NAT64,
    SIX_TO_FOUR,
    SPECIAL,
    SpecialBlock,
    clamp_prefix,
    special_entry,
)
from authabuse.geo._types import (
    Location,
    Network,
    address_of,
    block_prefix,
    fast_location,
    make_network,
)

__all__ = ["BaseResolver", "Fields"]

_M32 = 0xFFFFFFFF
# IPv4Address keeps its integer in the slot _ip (since Python 3.3); reading it skips a
# Python-level __int__ call on the hot path. Checked here, not assumed.
_HAS_IP = getattr(IPv4Address(0x01020304), "_ip", None) == 0x01020304
_BITS = {4: 32, 6: 128}

Fields: TypeAlias = tuple[
    str | None, int | None, str | None, float | None, float | None, float | None, str | None
]
"""An answer before it becomes a Location: country, asn, org, lat, lon, accuracy, source."""


def location_from(fields: Fields, net: Network) -> Location:
    """Build the Location for ``fields`` holding for ``net``."""
    country, asn, org, lat, lon, acc, source = fields
    if lat is None and lon is None and acc is None:
        return fast_location(country, asn, org, net, source)
    return Location(
        country=country,
        asn=asn,
        org=org,
        network=net,
        latitude=lat,
        longitude=lon,
        accuracy_km=acc,
        source=source,
    )


class BaseResolver:
    """Base of authabuse's resolvers: subclasses implement ``_fields(n, version)``.

    ``_fields`` answers for an ordinary (not special-use) integer address and returns
    ``(fields_or_None, prefix_length)``, the prefix being that of the network the
    answer holds for; no Location or network object is built until the answer is
    final (a chain merges several members' fields into one). This class adds
    special-use answers, tunnel decoding (6to4, Teredo, NAT64), keeps networks clear
    of special-use blocks, and provides the public ``resolve``/``resolve_with_network``.
    """

    __slots__ = ()

    #: Name of the database, used as ``Location.source``.
    source: str = "?"

    def _fields(self, n: int, version: int) -> tuple[Fields | None, int]:
        raise NotImplementedError

    def _lookup(self, n: int, version: int) -> tuple[Location | None, int]:
        """Answer for an ordinary address as a Location (no special-use handling)."""
        fields, prefix = self._fields(n, version)
        if fields is None:
            return None, prefix
        return location_from(fields, make_network(n, prefix, version)), prefix

    def _resolve_int(self, n: int, version: int) -> tuple[Location | None, int]:
        block = special_entry(n, version)
        if block is not None:
            return self._special(n, version, block)
        fields, prefix = self._fields(n, version)
        prefix = clamp_prefix(n, version, prefix)
        if fields is None:
            return None, prefix
        return location_from(fields, make_network(n, prefix, version)), prefix

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
            n = ip._ip if _HAS_IP else int(ip)  # type: ignore[attr-defined]  # checked at import
            if not _TOUCH4[n >> 24]:  # no special-use block in this /8: the common case
                fields, prefix = self._fields(n, 4)
                if prefix >= 8:
                    if fields is None:
                        return None
                    return location_from(fields, make_network(n, prefix, 4))
            return self._resolve_int(n, 4)[0]
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
