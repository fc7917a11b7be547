"""Enumerate and sample public address blocks by country and ASN (for simulations and tests)."""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from itertools import accumulate
from typing import NamedTuple

from authabuse.errors import ConfigurationError
from authabuse.events import IPAddress
from authabuse.geo._special import special_blocks, special_entry
from authabuse.geo._table import RangeTable

__all__ = ["AddressSampler", "GeoBlock"]


class GeoBlock(NamedTuple):
    """A contiguous range of public addresses with one country and one ASN (either may be None).

    >>> b = GeoBlock(first=134744064, last=134744319, version=4, country="US", asn=15169,
    ...              org="Google LLC")
    >>> b.size, b.address(8)
    (256, IPv4Address('8.8.8.8'))
    """

    first: int
    last: int
    version: int
    country: str | None
    asn: int | None
    org: str | None

    @property
    def size(self) -> int:
        """Number of addresses in the block."""
        return self.last - self.first + 1

    def address(self, offset: int) -> IPAddress:
        """Return the address ``offset`` places after the first (modulo the size)."""
        n = self.first + offset % self.size
        return IPv4Address(n) if self.version == 4 else IPv6Address(n)


class AddressSampler:
    """Pick public addresses that a country table and an ASN table place where you ask.

    Built on the embedded tables by default. :meth:`blocks` lists the blocks of a
    country and/or ASN (the intersection of both tables' ranges, special-use space
    left out); :meth:`sample` draws addresses uniformly over those blocks with your
    ``random.Random``, so simulations are reproducible; :meth:`top_asns` says which
    networks hold most of a country's addresses.

    >>> import random
    >>> sampler = AddressSampler()
    >>> rng = random.Random(7)
    >>> ips = sampler.sample(rng, country="PL", count=3)
    >>> [sampler.country_table.lookup_int(int(ip)) for ip in ips]
    ['PL', 'PL', 'PL']
    >>> ip = sampler.sample(rng, country="JP", asn=2497)[0]
    >>> loc = sampler.resolver.resolve(ip)
    >>> loc.country, loc.asn
    ('JP', 2497)
    """

    def __init__(
        self, country_table: RangeTable | None = None, asn_table: RangeTable | None = None
    ) -> None:
        from authabuse.geo._compose import ChainResolver
        from authabuse.geo._embedded import embedded_table

        self.country_table = country_table or embedded_table("country")
        self.asn_table = asn_table or embedded_table("asn")
        if self.country_table.kind != "country" or self.asn_table.kind != "asn":
            raise ConfigurationError("AddressSampler needs a country table and an ASN table")
        self.resolver = ChainResolver([self.country_table, self.asn_table])
        self._cache: dict[tuple[str | None, int | None, int], tuple[list[GeoBlock], list[int]]] = {}

    def blocks(
        self, *, country: str | None = None, asn: int | None = None, version: int = 4
    ) -> list[GeoBlock]:
        """Return the public blocks placed in ``country`` and/or announced by ``asn``.

        >>> bs = AddressSampler().blocks(asn=15169)
        >>> {b.asn for b in bs}, all(b.version == 4 for b in bs)
        ({15169}, True)
        """
        return list(self._blocks(country, asn, version)[0])

    def _blocks(
        self, country: str | None, asn: int | None, version: int
    ) -> tuple[list[GeoBlock], list[int]]:
        if country is None and asn is None:
            raise ConfigurationError("give a country, an ASN or both")
        if version not in (4, 6):
            raise ConfigurationError(f"version must be 4 or 6, not {version!r}")
        key = (country.upper() if country else None, asn, version)
        got = self._cache.get(key)
        if got is None:
            blocks = list(self._walk(key[0], asn, version))
            got = (blocks, list(accumulate(b.size for b in blocks)))
            if len(self._cache) > 512:
                self._cache.clear()
            self._cache[key] = got
        return got

    def _walk(self, country: str | None, asn: int | None, version: int) -> Iterator[GeoBlock]:
        # Walk the ranges of the selective table, split them at the other table's entries.
        want: str | int | None = country if country is not None else asn
        outer, inner = (
            (self.country_table, self.asn_table)
            if country is not None
            else (self.asn_table, self.country_table)
        )
        ofam = outer._families[version]
        ifam = inner._families[version]
        ivals = inner._values
        for first, last, vi in ofam.iter_entries():
            if not vi or outer._values.key(vi) != want:
                continue
            i = ifam.find(first)
            start = first
            while start <= last:
                end = min(last, ifam.last(i))
                ivi = ifam.vals[i]
                c: str | None
                a: int | None
                if country is not None:
                    c = country
                    a = ivals.asns[ivi] if ivi else None
                    org = ivals.org(ivi) if ivi else None
                else:
                    c = ivals.codes[ivi] if ivi else None
                    a = asn
                    org = outer._values.org(vi)
                if (asn is None or a == asn) and (country is None or c == country):
                    yield from _public(start, end, version, country=c, asn=a, org=org)
                start = end + 1
                i += 1

    def sample(
        self,
        rng: random.Random,
        *,
        country: str | None = None,
        asn: int | None = None,
        version: int = 4,
        count: int = 1,
    ) -> list[IPAddress]:
        """Draw ``count`` addresses uniformly over the matching blocks.

        Raises :class:`~authabuse.errors.ConfigurationError` when nothing matches.

        >>> import random
        >>> [str(ip) for ip in AddressSampler().sample(random.Random(1), asn=15169, count=2)]
        ['...', '...']
        """
        blocks, cumulative = self._blocks(country, asn, version)
        if not blocks:
            raise ConfigurationError(
                f"no public IPv{version} addresses for country={country!r} asn={asn!r}"
            )
        total = cumulative[-1]
        out: list[IPAddress] = []
        for _ in range(count):
            pick = rng.randrange(total)
            i = bisect_right(cumulative, pick)
            before = cumulative[i - 1] if i else 0
            out.append(blocks[i].address(pick - before))
        return out

    def top_asns(
        self, country: str, *, version: int = 4, limit: int = 20
    ) -> list[tuple[int, str | None, int]]:
        """Return ``(asn, org, addresses)`` of the networks holding most of a country.

        >>> AddressSampler().top_asns("JP", limit=1)[0][0] > 0
        True
        """
        sizes: dict[int, int] = {}
        orgs: dict[int, str | None] = {}
        for b in self._blocks(country, None, version)[0]:
            if b.asn is not None:
                sizes[b.asn] = sizes.get(b.asn, 0) + b.size
                orgs[b.asn] = b.org
        ranked = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        return [(a, orgs[a], n) for a, n in ranked]


def _public(
    first: int, last: int, version: int, *, country: str | None, asn: int | None, org: str | None
) -> Iterator[GeoBlock]:
    """Split ``[first, last]`` around special-use blocks and yield the public pieces."""
    firsts = _FIRSTS[version]
    n = first
    while n <= last:
        block = special_entry(n, version)
        if block is not None:
            n = block.last + 1
            continue
        i = bisect_right(firsts, n)
        stop = last if i == len(firsts) else min(last, firsts[i] - 1)
        yield GeoBlock(n, stop, version, country, asn, org)
        n = stop + 1


_FIRSTS = {v: [b.first for b in special_blocks(v)] for v in (4, 6)}
