"""Location, the GeoResolver protocol and the integer helpers every resolver shares."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Protocol, TypeAlias, runtime_checkable

from authabuse.events import IPAddress, parse_ip

__all__ = [
    "GeoResolver",
    "Location",
    "Network",
    "NetworkResolver",
    "address_of",
    "block_prefix",
    "fast_location",
    "make_network",
]

Network: TypeAlias = IPv4Network | IPv6Network
"""An IPv4 or IPv6 network object from :mod:`ipaddress`."""

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Location:
    """Where an address is: country, autonomous system, and the network the answer holds for.

    ``country`` is an ISO 3166-1 alpha-2 code (upper case) or ``None``; ``asn`` and
    ``org`` name the autonomous system announcing the address; ``network`` is the
    largest network around the address for which this same answer holds (so callers
    may cache per network). ``routable`` is ``False`` for special-use addresses
    (private, CGNAT, loopback, link-local, documentation, ULA, multicast, ...): such a
    Location has no country and ``source`` names the special-use block.
    ``latitude``/``longitude``/``accuracy_km`` are filled only by databases that have
    them (MMDB City). ``source`` names the database that answered.

    >>> from ipaddress import ip_network
    >>> loc = Location(country="JP", asn=2500, org="WIDE Project",
    ...                network=ip_network("2001:200::/37"), source="example")
    >>> loc.country, loc.asn, loc.routable
    ('JP', 2500, True)
    >>> Location(routable=False, source="special-use: Private-Use").country is None
    True
    """

    country: str | None = None
    asn: int | None = None
    org: str | None = None
    network: Network | None = None
    routable: bool = True
    latitude: float | None = None
    longitude: float | None = None
    accuracy_km: float | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Return the location as a JSON-ready dict (network as text, ``None`` kept).

        >>> Location(country="PL", source="t").to_dict()["country"]
        'PL'
        """
        return {
            "country": self.country,
            "asn": self.asn,
            "org": self.org,
            "network": None if self.network is None else str(self.network),
            "routable": self.routable,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "accuracy_km": self.accuracy_km,
            "source": self.source,
        }


@runtime_checkable
class GeoResolver(Protocol):
    """Anything that places an address: ``resolve(ip) -> Location | None``.

    Contract (checked by :func:`authabuse.testing.check_geo_resolver`): ``resolve``
    never raises for an address it knows nothing about (it returns ``None``), may be
    called from several threads at once, and returns a :class:`Location` whose
    ``network`` (when set) contains the address. Special-use addresses give a Location
    with ``routable=False`` and no country.

    >>> from authabuse.geo import RangeTable
    >>> table = RangeTable.from_rows([("202.232.0.0", "202.232.255.255", "JP")])
    >>> isinstance(table, GeoResolver)
    True
    """

    def resolve(self, ip: IPAddress) -> Location | None:
        """Return where ``ip`` is, or ``None`` when nothing is known about it."""
        ...


@runtime_checkable
class NetworkResolver(GeoResolver, Protocol):
    """A resolver that can also say for which network a *negative* answer holds.

    ``resolve_with_network(ip)`` returns ``(location_or_None, network)``; the network
    contains ``ip`` and every address in it gets the same answer. Caches use it to hold
    misses per network instead of per address. All authabuse resolvers implement it.

    >>> from authabuse.geo import RangeTable
    >>> t = RangeTable.from_rows([("8.8.8.0", "8.8.8.127", "US")])
    >>> t.resolve_with_network(parse_ip("8.8.8.200"))
    (None, IPv4Network('8.8.8.128/25'))
    """

    def resolve_with_network(self, ip: IPAddress) -> tuple[Location | None, Network]:
        """Return the answer for ``ip`` and the network it holds for."""
        ...


def address_of(ip: object) -> IPAddress:
    """Normalize what callers pass to ``resolve``: an address object or text.

    Text goes through :func:`authabuse.parse_ip` (brackets, zone ids, IPv4-mapped IPv6
    folded to IPv4); anything else that is not an address raises
    :class:`~authabuse.errors.InvalidEventError` (a :class:`ValueError`).

    >>> address_of("::ffff:8.8.8.8")
    IPv4Address('8.8.8.8')
    """
    if isinstance(ip, IPv4Address):
        return ip
    if isinstance(ip, IPv6Address):
        mapped = ip.ipv4_mapped
        return mapped if mapped is not None else ip
    if isinstance(ip, str):
        return parse_ip(ip)
    from authabuse.errors import InvalidEventError

    raise InvalidEventError(f"not an IP address: {type(ip).__name__} {str(ip)[:80]!r}")


def block_prefix(n: int, first: int, last: int, bits: int) -> int:
    """Return the prefix length of the largest CIDR block holding ``n`` inside ``[first, last]``.

    >>> block_prefix(5, 4, 7, 32)  # 0.0.0.4/30
    30
    >>> block_prefix(10, 0, (1 << 32) - 1, 32)
    0
    """
    k = bits if first == 0 else (n ^ (first - 1)).bit_length() - 1
    if last + 1 < (1 << bits):
        k2 = (n ^ (last + 1)).bit_length() - 1
        k = min(k, k2)
    return bits - k


def _public_network(n: int, prefix: int, version: int) -> Network:
    if version == 4:
        host = 32 - prefix
        return IPv4Network(((n >> host) << host, prefix))
    host = 128 - prefix
    return IPv6Network(((n >> host) << host, prefix))


# Building an ip_network re-parses and re-validates what a lookup has just computed,
# and costs more than the lookup itself. The fast path fills the same attributes the
# public constructor sets (network_address, netmask, _prefixlen), from precomputed
# netmasks; /31, /32, /127 and /128 (which also override hosts()) take the public
# constructor. _fast_path_works() compares both on sample networks at import and
# switches the fast path off if this Python's ipaddress differs.
_new = object.__new__
_MASKS4: list[IPv4Address] = [IPv4Network((0, p)).netmask for p in range(33)]
_MASKS6: list[IPv6Address] = [IPv6Network((0, p)).netmask for p in range(129)]


def _fast_network(n: int, prefix: int, version: int) -> Network:
    net: Any
    addr: Any
    mask: IPv4Address | IPv6Address
    if version == 4:
        if prefix >= 31:
            return _public_network(n, prefix, 4)
        host = 32 - prefix
        addr = _new(IPv4Address)
        net = _new(IPv4Network)
        mask = _MASKS4[prefix]
    else:
        if prefix >= 127:
            return _public_network(n, prefix, 6)
        host = 128 - prefix
        addr = _new(IPv6Address)
        addr._scope_id = None
        net = _new(IPv6Network)
        mask = _MASKS6[prefix]
    addr._ip = (n >> host) << host
    attrs = net.__dict__
    attrs["network_address"] = addr
    attrs["netmask"] = mask
    attrs["_prefixlen"] = prefix
    return net  # type: ignore[no-any-return]  # built as the public constructor would


def _fast_path_works() -> bool:
    samples = [(0x08080808, 24, 4), (0x0A000001, 8, 4), (0, 0, 4), (0xC0A80101, 30, 4)]
    samples += [(0x20010DB8 << 96 | 5, 32, 6), (1 << 127, 1, 6), (0x2A02 << 112, 64, 6)]
    try:
        for n, p, v in samples:
            a, b = _fast_network(n, p, v), _public_network(n, p, v)
            if (a, hash(a), str(a), repr(a), a.num_addresses, a.broadcast_address) != (
                b,
                hash(b),
                str(b),
                repr(b),
                b.num_addresses,
                b.broadcast_address,
            ):
                return False
            if list(a.subnets())[:1] != list(b.subnets())[:1] or a.supernet() != b.supernet():
                return False
            if b.network_address not in a or b.broadcast_address not in a:
                return False
    except Exception:  # any surprise from a different ipaddress: use the public path
        return False
    return True


_make = _fast_network if _fast_path_works() else _public_network


def make_network(n: int, prefix: int, version: int) -> Network:
    """Build the network of length ``prefix`` containing integer address ``n``.

    >>> make_network(0x08080808, 24, 4)
    IPv4Network('8.8.8.0/24')
    >>> from ipaddress import ip_network
    >>> make_network(0x08080808, 24, 4) == ip_network("8.8.8.0/24")
    True
    """
    return _make(n, prefix, version)


_SETTERS = tuple(Location.__dict__[name].__set__ for name in Location.__dataclass_fields__)


def fast_location(
    country: str | None,
    asn: int | None,
    org: str | None,
    network: Network | None,
    source: str | None,
) -> Location:
    """Build a routable Location without coordinates, bypassing the frozen ``__setattr__``.

    Equal to ``Location(country=..., asn=..., org=..., network=..., source=...)``, in
    about half the time (the lookup hot path builds one per answer).

    >>> fast_location("PL", None, None, None, "t") == Location(country="PL", source="t")
    True
    """
    loc = _new(Location)
    s_country, s_asn, s_org, s_net, s_routable, s_lat, s_lon, s_acc, s_source = _SETTERS
    s_country(loc, country)
    s_asn(loc, asn)
    s_org(loc, org)
    s_net(loc, network)
    s_routable(loc, True)
    s_lat(loc, None)
    s_lon(loc, None)
    s_acc(loc, None)
    s_source(loc, source)
    return loc
