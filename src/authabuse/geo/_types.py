"""Location, the GeoResolver protocol and the integer helpers every resolver shares."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Protocol, TypeAlias, runtime_checkable

from authabuse.events import IPAddress, parse_ip

__all__ = [
    "GeoResolver",
    "Location",
    "Network",
    "NetworkResolver",
    "address_of",
    "block_prefix",
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


def make_network(n: int, prefix: int, version: int) -> Network:
    """Build the network of length ``prefix`` containing integer address ``n``.

    >>> make_network(0x08080808, 24, 4)
    IPv4Network('8.8.8.0/24')
    """
    if version == 4:
        host = 32 - prefix
        return IPv4Network(((n >> host) << host, prefix))
    host = 128 - prefix
    return IPv6Network(((n >> host) << host, prefix))
