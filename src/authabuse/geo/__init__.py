"""Geo resolvers: place an address (country, ASN, AS organisation, network).

Everything here implements the :class:`GeoResolver` protocol ``resolve(ip) ->
Location | None``: :class:`RangeTable` (CSV range tables, compact arrays),
:class:`MMDBResolver` (MaxMind-format ``.mmdb`` through the ``geoip2`` extra),
:class:`ChainResolver` (merge fields from several databases) and
:class:`CachedResolver` (per-network cache, misses included). :func:`default_resolver`
needs no download: it uses the DB-IP Lite country and ip-location-db ASN tables
shipped inside the package (CC BY 4.0, see NOTICE).

>>> from authabuse.geo import default_resolver
>>> loc = default_resolver().resolve("212.77.98.9")
>>> loc.country
'PL'
>>> default_resolver().resolve("100.64.1.2").routable   # CGNAT: special-use
False
"""

from __future__ import annotations

from authabuse.geo._compose import CachedResolver, ChainResolver
from authabuse.geo._embedded import (
    default_resolver,
    embedded_table,
    open_resolver,
    resolver_from_paths,
)
from authabuse.geo._mmdb import MMDBResolver
from authabuse.geo._sample import AddressSampler, GeoBlock
from authabuse.geo._special import SpecialBlock, special_blocks
from authabuse.geo._table import RangeTable
from authabuse.geo._types import GeoResolver, Location, Network, NetworkResolver

__all__ = [
    "AddressSampler",
    "CachedResolver",
    "ChainResolver",
    "GeoBlock",
    "GeoResolver",
    "Location",
    "MMDBResolver",
    "Network",
    "NetworkResolver",
    "RangeTable",
    "SpecialBlock",
    "default_resolver",
    "embedded_table",
    "open_resolver",
    "resolver_from_paths",
    "special_blocks",
]
