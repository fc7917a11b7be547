"""The embedded default data (DB-IP Lite country + ip-location-db ASN) and path-based opening."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from authabuse.errors import GeoDataError
from authabuse.geo._compose import CachedResolver, ChainResolver
from authabuse.geo._table import _MAGIC, RangeTable
from authabuse.geo._types import GeoResolver

__all__ = ["default_resolver", "embedded_table", "open_resolver", "resolver_from_paths"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
_FILES = {"country": "geo-country.bin", "asn": "geo-asn.bin"}
_lock = threading.Lock()


@functools.cache
def embedded_table(kind: str = "country") -> RangeTable:
    """Return the embedded ``"country"`` or ``"asn"`` table, loaded once on first use.

    Country: DB-IP IP-to-Country Lite; ASN: ip-location-db ``asn`` (RouteViews, RIR
    and DB-IP data). Both CC BY 4.0; see the NOTICE file. ``build_date`` says how
    fresh the data is.

    >>> t = embedded_table("country")
    >>> t.lookup_int(0x08080808)
    'US'
    >>> t.build_date
    '2026-06-01'
    """
    if kind not in _FILES:
        raise GeoDataError(f"unknown embedded table {kind!r} (expected 'country' or 'asn')")
    path = DATA_DIR / _FILES[kind]
    if not path.exists():
        raise GeoDataError(f"embedded geo data missing: {path} (broken installation)")
    with _lock:
        return RangeTable.load(path, verify=False)


@functools.cache
def default_resolver() -> CachedResolver:
    """Return the shared default resolver: embedded country + ASN tables behind a cache.

    Loaded lazily on the first call and shared afterwards (it is thread-safe).

    >>> loc = default_resolver().resolve("8.8.8.8")
    >>> loc.country, loc.asn
    ('US', 15169)
    >>> default_resolver() is default_resolver()
    True
    """
    return CachedResolver(ChainResolver([embedded_table("country"), embedded_table("asn")]))


def _is_mmdb(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 128 * 1024))
            return b"\xab\xcd\xefMaxMind.com" in fh.read()
    except OSError:
        return False


def open_resolver(path: str | os.PathLike[str]) -> GeoResolver:
    r"""Open a geo database file: ``.mmdb`` (MaxMind format), CSV range table, or saved table.

    The kind is told apart by extension (``.mmdb``; ``.csv``/``.csv.gz``) and, failing
    that, by content (the MMDB metadata marker, authabuse's table magic, else CSV).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "asn.csv"
    >>> _ = p.write_text("8.8.8.0,8.8.8.255,15169,Google LLC\n")
    >>> open_resolver(p).resolve("8.8.8.8").asn
    15169
    """
    p = Path(path)
    name = p.name.lower()
    if not p.exists():
        raise GeoDataError(f"{p}: no such geo database")
    if name.endswith(".mmdb"):
        from authabuse.geo._mmdb import MMDBResolver

        return MMDBResolver(p)
    if name.endswith((".csv", ".csv.gz")):
        return RangeTable.from_csv(p)
    try:
        with open(p, "rb") as fh:
            head = fh.read(len(_MAGIC))
    except OSError as exc:
        raise GeoDataError(f"cannot read {p}: {exc.strerror or exc}") from None
    if head == _MAGIC:
        return RangeTable.load(p)
    if _is_mmdb(p):
        from authabuse.geo._mmdb import MMDBResolver

        return MMDBResolver(p)
    return RangeTable.from_csv(p)


def resolver_from_paths(paths: Sequence[str | os.PathLike[str]] | None) -> GeoResolver:
    """Build the resolver for a repeatable ``--geo PATH`` option.

    No paths: the embedded default. One path: that database. Several: a
    :class:`ChainResolver` in the given order (e.g. a country database, then an ASN
    database). Always behind a :class:`CachedResolver`.

    >>> resolver_from_paths([]) is default_resolver()
    True
    """
    if not paths:
        return default_resolver()
    members = [open_resolver(p) for p in paths]
    inner = members[0] if len(members) == 1 else ChainResolver(members)
    return CachedResolver(inner)
