"""ChainResolver (merge fields from several databases) and CachedResolver (per-network cache)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Any

from authabuse.events import IPAddress
from authabuse.geo._base import BaseResolver, Fields
from authabuse.geo._types import GeoResolver, Location, Network, address_of, make_network

__all__ = ["CachedResolver", "ChainResolver"]

_BITS = {4: 32, 6: 128}


def _member_lookup(member: GeoResolver, n: int, version: int) -> tuple[Location | None, int]:
    """Ask one member about an ordinary address; third-party members get an address object."""
    if isinstance(member, BaseResolver):
        return member._lookup(n, version)
    addr: IPAddress = IPv4Address(n) if version == 4 else _v6(n)
    with_net = getattr(member, "resolve_with_network", None)
    if with_net is not None:
        loc, net = with_net(addr)
        return loc, net.prefixlen
    loc = member.resolve(addr)
    if loc is not None and loc.network is not None and int(addr) in _range_of(loc.network):
        return loc, loc.network.prefixlen
    return loc, _BITS[version]  # nothing said about the network: the answer holds for the host


def _v6(n: int) -> IPAddress:
    from ipaddress import IPv6Address

    return IPv6Address(n)


def _range_of(net: Network) -> range:
    return range(int(net.network_address), int(net.broadcast_address) + 1)


class ChainResolver(BaseResolver):
    """Ask several resolvers in order and merge their fields into one Location.

    The first member with a country gives the country, the first with an ASN gives ASN
    and organisation, the first with coordinates gives them; ``source`` lists the
    members that contributed (joined by ``+``), and ``network`` is the intersection of
    the networks the consulted members' answers hold for, so the merged answer can be
    cached per network too. Typical use: a country database plus an ASN database.

    >>> from authabuse.geo import RangeTable
    >>> countries = RangeTable.from_rows([("8.8.8.0", "8.8.8.255", "US")], source="cc")
    >>> asns = RangeTable.from_rows([("8.8.0.0", "8.8.255.255", 15169, "Google LLC")],
    ...                             source="as")
    >>> loc = ChainResolver([countries, asns]).resolve("8.8.8.8")
    >>> loc.country, loc.asn, loc.org, str(loc.network), loc.source
    ('US', 15169, 'Google LLC', '8.8.8.0/24', 'cc+as')
    """

    __slots__ = ("members", "source")

    def __init__(self, resolvers: Iterable[GeoResolver], *, source: str | None = None) -> None:
        self.members: tuple[GeoResolver, ...] = tuple(resolvers)
        if not self.members:
            from authabuse.errors import ConfigurationError

            raise ConfigurationError("ChainResolver needs at least one resolver")
        self.source = source or "+".join(getattr(m, "source", "?") for m in self.members)

    def _fields(self, n: int, version: int) -> tuple[Fields | None, int]:
        prefix = 0
        country = asn = org = lat = lon = acc = None
        sources: list[str] = []
        for member in self.members:
            if isinstance(member, BaseResolver):
                fields, p = member._fields(n, version)
            else:
                loc, p = _member_lookup(member, n, version)
                fields = (
                    None
                    if loc is None or not loc.routable
                    else (
                        loc.country,
                        loc.asn,
                        loc.org,
                        loc.latitude,
                        loc.longitude,
                        loc.accuracy_km,
                        loc.source,
                    )
                )
            prefix = max(prefix, p)
            if fields is None:
                continue
            used = False
            if country is None and fields[0] is not None:
                country, used = fields[0], True
            if asn is None and fields[1] is not None:
                asn, org, used = fields[1], fields[2], True
            if lat is None and fields[3] is not None:
                lat, lon, acc, used = fields[3], fields[4], fields[5], True
            if used and fields[6]:
                sources.append(fields[6])
            if country is not None and asn is not None and lat is not None:
                break
        if not sources:
            return None, prefix
        source = sources[0] if len(sources) == 1 else "+".join(sources)
        return (country, asn, org, lat, lon, acc, source), prefix

    def info(self) -> list[dict[str, Any]]:
        """Describe the members (their ``info()`` when they have one).

        >>> from authabuse.geo import RangeTable
        >>> t = RangeTable.from_rows([("8.8.8.0", "8.8.8.255", "US")], source="cc")
        >>> ChainResolver([t]).info()[0]["source"]
        'cc'
        """
        out: list[dict[str, Any]] = []
        for m in self.members:
            info = getattr(m, "info", None)
            got = info() if callable(info) else {"source": getattr(m, "source", repr(m))}
            out.extend(got if isinstance(got, list) else [got])
        return out

    def __repr__(self) -> str:
        return f"ChainResolver({list(self.members)!r})"


_MISSING = object()
# IPv4Address keeps its integer in the slot _ip (since Python 3.3); reading it skips a
# Python-level __int__ call on the cache's hot path. Checked here, not assumed.
_HAS_IP = getattr(IPv4Address(0x01020304), "_ip", None) == 0x01020304


class CachedResolver:
    """Cache another resolver's answers per network, negative answers included.

    Answers are stored under the network they hold for (from the inner resolver's
    ``resolve_with_network``, or the answer's ``network``); an address seen before is
    answered from a per-address map in front of it. Both maps are bounded
    (``max_networks``, ``max_addresses``); when full, the oldest quarter of the
    networks (insertion order) is dropped and the address map is cleared. Safe from
    several threads.

    >>> from authabuse.geo import RangeTable
    >>> inner = RangeTable.from_rows([("8.8.8.0", "8.8.8.255", "US")])
    >>> cache = CachedResolver(inner)
    >>> cache.resolve("8.8.8.8").country
    'US'
    >>> cache.resolve("8.8.8.9").country    # same /24: answered from the cache
    'US'
    >>> cache.resolve("9.9.9.9") is None, cache.resolve("9.9.9.10") is None
    (True, True)
    >>> cache.stats()["inner_lookups"]
    2
    """

    def __init__(
        self, inner: GeoResolver, *, max_networks: int = 200_000, max_addresses: int = 100_000
    ) -> None:
        if max_networks < 1 or max_addresses < 1:
            from authabuse.errors import ConfigurationError

            raise ConfigurationError("cache sizes must be at least 1")
        self.inner = inner
        self.source: str = getattr(inner, "source", "?")
        self.max_networks = max_networks
        self.max_addresses = max_addresses
        self._lock = threading.Lock()
        self._addr: dict[int, Location | None] = {}  # IPv4 as int, IPv6 as int | 1 << 128
        self._nets: dict[int, Location | None] = {}  # (network int << 8 | prefix), per family
        self._prefixes: dict[int, tuple[int, ...]] = {4: (), 6: ()}
        self._inner_int = inner._resolve_int if isinstance(inner, BaseResolver) else None
        self.inner_lookups = 0
        self.network_hits = 0
        # The hit path as a closure over the address map's get(): no attribute or global
        # lookups per call. It shadows the resolve() method, which documents it and
        # serves subclasses; the map is only ever cleared in place, never replaced.
        get = self._addr.get
        slow = self._resolve_miss
        missing = _MISSING
        v4 = IPv4Address
        if _HAS_IP:

            def resolve(ip: IPAddress | str) -> Location | None:
                if ip.__class__ is v4:
                    hit = get(ip._ip, missing)  # type: ignore[attr-defined]  # IPv4Address slot
                    if hit is not missing:
                        return hit  # type: ignore[return-value]  # missing excluded above
                return slow(ip)

            self.__dict__["resolve"] = resolve

    def resolve(self, ip: IPAddress | str) -> Location | None:
        """Return the (possibly cached) answer for ``ip``; see :class:`GeoResolver`."""
        return self._resolve_miss(ip)

    def _resolve_miss(self, ip: IPAddress | str) -> Location | None:
        if ip.__class__ is IPv4Address:
            n = ip._ip if _HAS_IP else int(ip)  # type: ignore[attr-defined]  # checked at import
            hit = self._addr.get(n, _MISSING)
            if hit is not _MISSING:
                return hit  # type: ignore[return-value]  # _MISSING excluded above
            return self._slow(n, n, 4)
        addr = address_of(ip)
        n = int(addr)
        version = addr.version
        key = n if version == 4 else n | (1 << 128)
        hit = self._addr.get(key, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]  # _MISSING excluded above
        return self._slow(key, n, version)

    def resolve_with_network(self, ip: IPAddress | str) -> tuple[Location | None, Network]:
        """Return ``(answer, network)`` like the inner resolver (network of a miss included)."""
        addr = address_of(ip)
        n, version = int(addr), addr.version
        loc = self.resolve(addr)
        if loc is not None and loc.network is not None:
            return loc, loc.network
        bits = _BITS[version]
        for p in self._prefixes[version]:
            k = ((n >> (bits - p)) << 8 | p) << 1 | (version == 6)
            if k in self._nets:
                return loc, make_network(n, p, version)
        return loc, make_network(n, bits, version)

    def _slow(self, key: int, n: int, version: int) -> Location | None:
        bits = _BITS[version]
        nets = self._nets
        six = version == 6
        for p in self._prefixes[version]:
            got = nets.get(((n >> (bits - p)) << 8 | p) << 1 | six, _MISSING)
            if got is not _MISSING:
                self.network_hits += 1
                self._remember(key, got)  # type: ignore[arg-type]  # _MISSING excluded above
                return got  # type: ignore[return-value]  # _MISSING excluded above
        self.inner_lookups += 1
        if self._inner_int is not None:
            loc, prefix = self._inner_int(n, version)
        else:
            addr: IPAddress = IPv4Address(n) if version == 4 else _v6(n)
            with_net = getattr(self.inner, "resolve_with_network", None)
            if with_net is not None:
                loc, net = with_net(addr)
                prefix = net.prefixlen
            else:
                loc = self.inner.resolve(addr)
                prefix = (
                    loc.network.prefixlen
                    if loc is not None and loc.network is not None and n in _range_of(loc.network)
                    else bits
                )
        with self._lock:
            if len(nets) >= self.max_networks:
                for old in list(nets)[: max(1, self.max_networks // 4)]:
                    del nets[old]
            nets[((n >> (bits - prefix)) << 8 | prefix) << 1 | six] = loc
            if prefix not in self._prefixes[version]:
                self._prefixes[version] = tuple(sorted((*self._prefixes[version], prefix)))
        self._remember(key, loc)
        return loc

    def _remember(self, key: int, loc: Location | None) -> None:
        if len(self._addr) >= self.max_addresses:
            with self._lock:
                if len(self._addr) >= self.max_addresses:
                    self._addr.clear()  # in place: the fast path holds its get()
        self._addr[key] = loc

    def clear(self) -> None:
        """Forget every cached answer (e.g. after the inner database was reloaded).

        >>> from authabuse.geo import RangeTable
        >>> c = CachedResolver(RangeTable.from_rows([("8.8.8.0", "8.8.8.255", "US")]))
        >>> c.clear()
        """
        with self._lock:
            self._addr.clear()
            self._nets = {}
            self._prefixes = {4: (), 6: ()}

    def stats(self) -> dict[str, int]:
        """Return cache counters: cached networks/addresses, inner lookups, network hits.

        >>> from authabuse.geo import RangeTable
        >>> CachedResolver(RangeTable.from_rows([("8.8.8.0", "8.8.8.255", "US")])).stats()
        {'networks': 0, 'addresses': 0, 'inner_lookups': 0, 'network_hits': 0}
        """
        return {
            "networks": len(self._nets),
            "addresses": len(self._addr),
            "inner_lookups": self.inner_lookups,
            "network_hits": self.network_hits,
        }

    def info(self) -> Any:
        """Describe the inner resolver (its ``info()`` when it has one).

        >>> from authabuse.geo import RangeTable
        >>> CachedResolver(RangeTable.from_rows([("8.8.8.0", "8.8.8.255", "US")],
        ...                                     source="cc")).info()["source"]
        'cc'
        """
        info = getattr(self.inner, "info", None)
        return info() if callable(info) else {"source": self.source}

    def __repr__(self) -> str:
        return f"CachedResolver({self.inner!r})"
