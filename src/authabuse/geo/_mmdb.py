"""MMDBResolver: MaxMind-format databases (Country, City, ASN, flat country_code), geoip2 extra."""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from authabuse.errors import GeoDataError, MissingExtraError
from authabuse.geo._base import BaseResolver, Fields

log = logging.getLogger("authabuse.geo")

__all__ = ["MMDBResolver"]

# database_type words that mean "this database places addresses" (case-insensitive).
_USEFUL_TYPES = ("country", "city", "asn", "isp", "enterprise", "location", "as-")


class _Opened:
    """One open reader and what we learned from its metadata."""

    __slots__ = ("build_date", "database_type", "get", "ip_version", "reader", "stat")

    def __init__(self, reader: Any, stat: os.stat_result) -> None:
        meta = reader.metadata()
        self.reader = reader
        self.get = reader.get_with_prefix_len
        self.database_type: str = str(meta.database_type)
        self.ip_version: int = int(meta.ip_version)
        self.build_date = datetime.fromtimestamp(int(meta.build_epoch), UTC).strftime("%Y-%m-%d")
        self.stat = stat


def _country_of(rec: dict[str, Any]) -> str | None:
    for key in ("country", "registered_country"):
        sub = rec.get(key)
        if isinstance(sub, dict):
            code = sub.get("iso_code")
            if isinstance(code, str) and len(code) == 2 and code.isalpha():
                return code.upper()
        elif key == "country" and isinstance(sub, str) and len(sub) == 2 and sub.isalpha():
            return sub.upper()
    code = rec.get("country_code")
    if isinstance(code, str) and len(code) == 2 and code.isalpha() and code.upper() != "ZZ":
        return code.upper()
    return None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class MMDBResolver(BaseResolver):
    """A MaxMind DB file (``.mmdb``) as a :class:`GeoResolver`; needs the ``geoip2`` extra.

    Reads GeoIP2/GeoLite2 Country, City, ASN and ISP databases and the flat
    ``country_code`` databases of DB-IP Lite and ip-location-db, through the
    ``maxminddb`` reader (its C extension when installed). One reader stays open;
    :meth:`reload` (or :meth:`reload_if_changed`) opens the file again and swaps the
    reader in atomically, so lookups running in other threads finish on the old reader
    and none fails. Replace the file by renaming a new one over it (atomic), not by
    rewriting it in place.

    >>> import pathlib
    >>> test = pathlib.Path("tests/data/maxmind/GeoLite2-City-Test.mmdb")
    >>> db = MMDBResolver(test)                       # doctest: +SKIP
    >>> db.resolve("81.2.69.142").country             # doctest: +SKIP
    'GB'
    """

    __slots__ = ("_current", "_lock", "corrupt_lookups", "path", "source")

    def __init__(self, path: str | os.PathLike[str], *, source: str | None = None) -> None:
        self.path = Path(path)
        self.source = source or self.path.name
        self.corrupt_lookups = 0  # lookups the database's corrupt tree or data refused
        self._lock = threading.Lock()
        self._current = self._open()

    def _open(self) -> _Opened:
        try:
            import maxminddb
        except ImportError:
            raise MissingExtraError.for_extra("geoip2", "MMDB databases") from None
        try:
            stat = self.path.stat()
            reader = maxminddb.open_database(str(self.path), maxminddb.MODE_AUTO)
        except FileNotFoundError:
            raise GeoDataError(f"{self.path}: no such MMDB file") from None
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoDataError(f"{self.path}: not a valid MMDB database ({exc})") from None
        try:
            opened = _Opened(reader, stat)
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:
            reader.close()
            raise GeoDataError(f"{self.path}: corrupt MMDB metadata ({exc})") from None
        kind = opened.database_type.lower()
        if not any(word in kind for word in _USEFUL_TYPES):
            reader.close()
            raise GeoDataError(
                f"{self.path}: database type {opened.database_type!r} has no country or ASN "
                "data (expected a Country, City, ASN or ISP database)"
            )
        return opened

    @property
    def database_type(self) -> str:
        """The ``database_type`` from the file's metadata (e.g. ``GeoLite2-City``)."""
        return self._current.database_type

    @property
    def build_date(self) -> str:
        """The file's build date (``YYYY-MM-DD``, from its metadata ``build_epoch``)."""
        return self._current.build_date

    def reload(self) -> None:
        """Open the file again and swap the new reader in; the old one closes when unused.

        Raises :class:`~authabuse.errors.GeoDataError` (and keeps serving from the old
        reader) when the new file is not a valid database.
        """
        new = self._open()
        with self._lock:
            self._current = new

    def reload_if_changed(self) -> bool:
        """Reload when the file on disk changed (inode, size or mtime); return whether it did."""
        try:
            st = self.path.stat()
        except OSError:
            return False
        old = self._current.stat
        if (st.st_ino, st.st_size, st.st_mtime_ns) == (old.st_ino, old.st_size, old.st_mtime_ns):
            return False
        self.reload()
        return True

    def _fields(self, n: int, version: int) -> tuple[Fields | None, int]:
        cur = self._current
        if version == 6 and cur.ip_version == 4:
            return None, 0  # an IPv4-only database knows nothing about IPv6
        addr = IPv4Address(n) if version == 4 else IPv6Address(n)
        try:
            rec, prefix = cur.get(addr)
        except (ValueError, TypeError, OSError, RuntimeError) as exc:
            # maxminddb raises InvalidDatabaseError (a RuntimeError) on a corrupt search
            # tree or data section; the broad ValueError covers lookups it refuses.
            self._corrupt(exc)
            return None, 128 if version == 6 else 32
        if not isinstance(rec, dict):
            return None, prefix
        country = _country_of(rec)
        asn = rec.get("autonomous_system_number")
        asn = asn if isinstance(asn, int) and not isinstance(asn, bool) and asn > 0 else None
        org = rec.get("autonomous_system_organization") if asn is not None else None
        org = org if isinstance(org, str) else None
        lat = lon = acc = None
        where = rec.get("location")
        if isinstance(where, dict):
            lat, lon = _float(where.get("latitude")), _float(where.get("longitude"))
            acc = _float(where.get("accuracy_radius"))
        elif "latitude" in rec:
            lat, lon = _float(rec.get("latitude")), _float(rec.get("longitude"))
        if country is None and asn is None and lat is None:
            return None, prefix
        return (country, asn, org, lat, lon, acc, self.source), prefix

    def _corrupt(self, exc: Exception) -> None:
        """Count a lookup the database refused; say so once (it opened, but is damaged)."""
        self.corrupt_lookups += 1
        if self.corrupt_lookups == 1:
            log.warning(
                "%s: corrupt MMDB database (%s): the addresses it cannot look up are left "
                "unplaced; replace the file",
                self.path,
                exc,
            )

    def info(self) -> dict[str, Any]:
        """Describe the database: path, type, build date, IP version.

        >>> MMDBResolver.info.__doc__ is not None
        True
        """
        cur = self._current
        return {
            "kind": "mmdb",
            "source": self.source,
            "path": str(self.path),
            "database_type": cur.database_type,
            "build_date": cur.build_date,
            "ip_version": cur.ip_version,
        }

    def close(self) -> None:
        """Close the reader; later lookups fail. Only for orderly shutdown.

        >>> MMDBResolver.close.__doc__ is not None
        True
        """
        self._current.reader.close()

    def __repr__(self) -> str:
        return f"MMDBResolver({str(self.path)!r})"
