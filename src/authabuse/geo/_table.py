"""RangeTable: a compact, sorted range table loaded from CSV or from authabuse's binary form.

Memory layout, per address family: the table partitions the whole address space into
consecutive entries. ``starts`` holds each entry's first address (``array('I')`` for
IPv4; for IPv6 two ``array('Q')``, the high and the low 64 bits, the low one dropped
when every boundary is /64-aligned), ``vals`` the index of the entry's value (0 = no
data). A first-level index on the top 16 bits narrows each binary search to a few
entries. Adjacent rows with the same value are merged.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import socket
import struct
import sys
import threading
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, Literal, cast

from authabuse.errors import ConfigurationError, GeoDataError
from authabuse.events import IPAddress
from authabuse.geo._base import BaseResolver, Fields
from authabuse.geo._special import special_entry

__all__ = ["RangeTable"]

_BITS = {4: 32, 6: 128}
_MAX = {4: (1 << 32) - 1, 6: (1 << 128) - 1}
_M64 = (1 << 64) - 1
_INDEX_BITS = 16
_MAGIC = b"AUTHABUSE-GEO\x00"
_FORMAT_VERSION = 1
_MAX_ERRORS_SHOWN = 10
_MAX_ORG = 512
_NO_COUNTRY = frozenset({"", "ZZ", "--", "XX"})

Kind = Literal["country", "asn"]
Value = str | tuple[int, str | None]


class _Family:
    """The partition of one address family: starts, value indexes and the first-level index.

    ``keys`` holds the starts (IPv4) or their high 64 bits (IPv6); ``lo`` the low 64 bits
    of IPv6 starts, or ``None`` when all are zero.
    """

    __slots__ = ("bits", "count", "index", "keys", "lo", "shift", "vals", "version")

    def __init__(
        self,
        version: int,
        keys: array[int],
        lo: array[int] | None,
        vals: array[int],
        index: array[int] | None = None,
    ) -> None:
        self.version = version
        self.bits = _BITS[version]
        self.keys = keys
        self.lo = lo if version == 6 else None
        self.vals = vals
        self.count = len(vals)
        self.shift = (32 if version == 4 else 64) - _INDEX_BITS
        self.index = index if index is not None else self._build_index()

    @classmethod
    def from_starts(cls, version: int, starts: Sequence[int], vals: Sequence[int]) -> _Family:
        code = _val_code(max(vals, default=0))
        if version == 4:
            return cls(4, array("I", starts), None, array(code, vals))
        lo_list = [s & _M64 for s in starts]
        lo = array("Q", lo_list) if any(lo_list) else None
        return cls(6, array("Q", [s >> 64 for s in starts]), lo, array(code, vals))

    def _build_index(self) -> array[int]:
        keys = self.keys
        index = array("I", bytes(4 * ((1 << _INDEX_BITS) + 1)))
        for p in range(1 << _INDEX_BITS):
            index[p] = bisect_right(keys, p << self.shift) - 1
        index[1 << _INDEX_BITS] = self.count - 1
        return index

    def find(self, n: int) -> int:
        """Return the index of the entry holding integer address ``n``."""
        keys = self.keys
        index = self.index
        if self.version == 4:
            p = n >> 16
            return bisect_right(keys, n, index[p], index[p + 1] + 1) - 1
        h = n >> 64
        p = h >> 48
        i = bisect_right(keys, h, index[p], index[p + 1] + 1) - 1
        lo = self.lo
        if lo is not None and keys[i] == h:
            j = bisect_left(keys, h, 0, i + 1)
            k = bisect_right(lo, n & _M64, j, i + 1) - 1
            i = k if k >= j else j - 1
        return i

    def start(self, i: int) -> int:
        if self.version == 4:
            return self.keys[i]
        return (self.keys[i] << 64) | (self.lo[i] if self.lo is not None else 0)

    def last(self, i: int) -> int:
        return self.start(i + 1) - 1 if i + 1 < self.count else _MAX[self.version]

    def iter_entries(self) -> Iterator[tuple[int, int, int]]:
        """Yield ``(first, last, value_index)`` for every entry, gaps included."""
        firsts: Iterable[int]
        if self.version == 4:
            firsts = self.keys
        elif self.lo is None:
            firsts = (h << 64 for h in self.keys)
        else:
            firsts = ((h << 64) | low for h, low in zip(self.keys, self.lo, strict=True))
        prev_first = -1
        prev_val = 0
        for first, val in zip(firsts, self.vals, strict=True):
            if prev_first >= 0:
                yield prev_first, first - 1, prev_val
            prev_first, prev_val = first, val
        if prev_first >= 0:
            yield prev_first, _MAX[self.version], prev_val

    def arrays(self) -> list[tuple[str, array[int]]]:
        out = [("keys", self.keys)]
        if self.lo is not None:
            out.append(("lo", self.lo))
        out.append(("vals", self.vals))
        out.append(("index", self.index))
        return out

    def nbytes(self) -> int:
        return sum(a.itemsize * len(a) for _, a in self.arrays())


def _val_code(max_value: int) -> str:
    if max_value < 1 << 8:
        return "B"
    if max_value < 1 << 16:
        return "H"
    return "I"


class _Values:
    """Per-value data: country codes, or ASN numbers with organisations in one UTF-8 blob.

    Index 0 is "no data". An ASN table keeps no Python object per value: ``asns`` is an
    ``array('I')``, organisation ``i`` is ``blob[offs[i]:offs[i + 1]]`` decoded on use.
    A country table has ``codes`` and empty ASN arrays.
    """

    __slots__ = ("asns", "blob", "codes", "count", "is_country", "offs")

    def __init__(
        self,
        codes: list[str | None] | None = None,
        asns: array[int] | None = None,
        offs: array[int] | None = None,
        blob: bytes = b"",
    ) -> None:
        self.is_country = codes is not None
        self.codes: list[str | None] = codes if codes is not None else []
        self.asns: array[int] = asns if asns is not None else array("I")
        self.offs: array[int] = offs if offs is not None else array("I", [0])
        self.blob = blob
        self.count = len(self.codes) if self.is_country else len(self.asns)

    @classmethod
    def from_list(cls, kind: Kind, values: list[Value | None]) -> _Values:
        if kind == "country":
            return cls(codes=[v if isinstance(v, str) else None for v in values])
        asns = array("I", [0])
        offs = array("I", [0, 0])
        parts: list[bytes] = []
        pos = 0
        for v in values[1:]:
            asn, org = v if isinstance(v, tuple) else (0, None)
            asns.append(asn)
            data = (org or "").encode()
            parts.append(data)
            pos += len(data)
            offs.append(pos)
        return cls(asns=asns, offs=offs, blob=b"".join(parts))

    def key(self, vi: int) -> str | int:
        if self.is_country:
            return self.codes[vi] or ""
        return self.asns[vi]

    def org(self, vi: int) -> str | None:
        data = self.blob[self.offs[vi] : self.offs[vi + 1]]
        return data.decode() if data else None

    def nbytes(self) -> int:
        if self.is_country:
            return sys.getsizeof(self.codes) + sum(sys.getsizeof(c) for c in set(self.codes))
        return len(self.blob) + 4 * (len(self.asns) + len(self.offs))


class RangeTable(BaseResolver):
    """An IP range table (country or ASN) held in compact arrays: a :class:`GeoResolver`.

    Build one from the CSV files operators download (:meth:`from_csv`: DB-IP Lite and
    ip-location-db ``ip_range_start,ip_range_end,country_code`` or
    ``ip_range_start,ip_range_end,asn,org``, IPv4 and IPv6, addresses as text or as
    integers in the ``-num`` variants), from rows (:meth:`from_rows`) or from the binary
    form written by :meth:`save` (:meth:`load`). Lookups are binary searches over sorted
    arrays; a table is immutable once built, hence safe from any number of threads.

    Rows may come in any order (they are sorted). Where rows overlap, the narrower
    range wins, as in a longest-prefix match (the count is in ``info()``); with
    ``overlaps="error"`` an overlap instead fails the load with a
    :class:`~authabuse.errors.GeoDataError` naming both lines. Adjacent rows with the
    same value are merged. Country
    ``ZZ``, ``XX``, ``--`` or empty, and ASN 0, mean "no data".

    >>> table = RangeTable.from_rows([
    ...     ("1.0.0.0", "1.0.0.255", "AU"),
    ...     ("2001:200::", "2001:200:ffff:ffff:ffff:ffff:ffff:ffff", "JP"),
    ... ], source="example")
    >>> loc = table.resolve("1.0.0.7")
    >>> loc.country, loc.network, loc.source
    ('AU', IPv4Network('1.0.0.0/24'), 'example')
    >>> table.resolve("2001:200::1").country
    'JP'
    >>> table.resolve("1.0.1.1") is None
    True
    >>> table.resolve("10.1.2.3").routable   # special-use: private
    False
    >>> table.lookup_int(0x01000007)          # the fast path for integer addresses
    'AU'
    """

    __slots__ = (
        "_answers",
        "_families",
        "_lock",
        "_values",
        "build_date",
        "kind",
        "meta",
        "source",
    )

    def __init__(
        self,
        families: dict[int, _Family],
        values: _Values,
        *,
        kind: Kind,
        source: str,
        build_date: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self._families = families
        self._values = values
        self.kind: Kind = kind
        self.source = source
        self.build_date = build_date
        self.meta: dict[str, Any] = dict(meta or {})
        self._lock = threading.Lock()
        # One shared answer tuple per value, built on first use.
        self._answers: list[Fields | None] = [None] * values.count

    # ------------------------------------------------------------------ lookups

    def _fields(self, n: int, version: int) -> tuple[Fields | None, int]:
        fam = self._families[version]
        if version == 4:  # the hot path, inlined: find(), start() and the block size
            keys = fam.keys
            index = fam.index
            p = n >> 16
            i = bisect_right(keys, n, index[p], index[p + 1] + 1) - 1
            first = keys[i]
            k = 32 if first == 0 else (n ^ (first - 1)).bit_length() - 1
            if i + 1 < fam.count:
                k2 = (n ^ keys[i + 1]).bit_length() - 1
                if k2 < k:  # noqa: PLR1730  # an if is cheaper than min() on the hot path
                    k = k2
            bits = 32
        else:
            i = fam.find(n)
            first = fam.start(i)
            bits = 128
            k = bits if first == 0 else (n ^ (first - 1)).bit_length() - 1
            if i + 1 < fam.count:
                k = min(k, (n ^ fam.start(i + 1)).bit_length() - 1)
        vi = fam.vals[i]
        # Largest CIDR block holding n inside the entry [first, next start - 1]: 2**k.
        if vi == 0:
            return None, bits - k
        fields = self._answers[vi]
        if fields is None:
            values = self._values
            if values.is_country:
                fields = (values.codes[vi], None, None, None, None, None, self.source)
            else:
                fields = (None, values.asns[vi], values.org(vi), None, None, None, self.source)
            self._answers[vi] = fields
        return fields, bits - k

    def lookup_int(self, n: int, version: int = 4) -> str | int | None:
        """Return the raw value for integer address ``n``: country code or ASN, else ``None``.

        The fastest path: no special-use check, no :class:`Location` built.

        >>> t = RangeTable.from_rows([(16777216, 16777471, 13335, "Cloudflare, Inc.")])
        >>> t.lookup_int(16777217)
        13335
        """
        fam = self._families[version]
        vi = fam.vals[fam.find(n)]
        if not vi:
            return None
        return self._values.key(vi)

    # ------------------------------------------------------------------ enumeration

    def ranges(
        self, version: int | None = None
    ) -> Iterator[tuple[IPAddress, IPAddress, str | int]]:
        """Yield ``(first_ip, last_ip, country_or_asn)`` for every range with data, in order.

        Ranges are maximal (adjacent rows with the same value are merged); IPv4 comes
        before IPv6 unless ``version`` selects one family.

        >>> t = RangeTable.from_rows([("1.0.0.0", "1.0.0.255", "AU"),
        ...                           ("1.0.1.0", "1.0.1.255", "AU")])
        >>> list(t.ranges())
        [(IPv4Address('1.0.0.0'), IPv4Address('1.0.1.255'), 'AU')]
        """
        for v in (4, 6) if version is None else (version,):
            make = IPv4Address if v == 4 else IPv6Address
            for first, last, vi in self._families[v].iter_entries():
                if vi:
                    yield make(first), make(last), self._value_key(vi)

    def int_ranges(self, version: int) -> Iterator[tuple[int, int, str | int]]:
        """Yield ``(first, last, country_or_asn)`` as integers, for bulk consumers.

        >>> t = RangeTable.from_rows([("1.0.0.0", "1.0.0.255", "AU")])
        >>> list(t.int_ranges(4))
        [(16777216, 16777471, 'AU')]
        """
        for first, last, vi in self._families[version].iter_entries():
            if vi:
                yield first, last, self._value_key(vi)

    def _value_key(self, vi: int) -> str | int:
        return self._values.key(vi)

    def org_of(self, asn: int) -> str | None:
        """Return the organisation name this (ASN) table gives for ``asn``, if any.

        >>> RangeTable.from_rows([(16777216, 16777471, 13335, "Cloudflare, Inc.")]).org_of(13335)
        'Cloudflare, Inc.'
        """
        values = self._values
        if values.is_country:
            return None
        try:
            vi = values.asns.index(asn, 1)
        except ValueError:
            return None
        return values.org(vi)

    def __len__(self) -> int:
        """Return the number of ranges with data (both families)."""
        return sum(sum(1 for v in fam.vals if v) for fam in self._families.values())

    def __repr__(self) -> str:
        counts = ", ".join(f"IPv{v}: {f.count} entries" for v, f in self._families.items())
        return f"<RangeTable {self.kind} {self.source!r} ({counts})>"

    def memory_usage(self) -> int:
        """Approximate bytes held by the arrays and values of this table.

        >>> RangeTable.from_rows([("1.0.0.0", "1.0.0.255", "AU")]).memory_usage() > 0
        True
        """
        return sum(f.nbytes() for f in self._families.values()) + self._values.nbytes()

    def info(self) -> dict[str, Any]:
        """Describe the table: kind, source, build date, entry counts and extra metadata.

        >>> RangeTable.from_rows([("1.0.0.0", "1.0.0.255", "AU")], source="x").info()["kind"]
        'country'
        """
        return {
            "kind": self.kind,
            "source": self.source,
            "build_date": self.build_date,
            "entries": {f"ipv{v}": f.count for v, f in self._families.items()},
            **self.meta,
        }

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Sequence[Any]],
        *,
        source: str = "rows",
        build_date: str | None = None,
        version: int | None = None,
        overlaps: str = "narrowest",
        meta: dict[str, Any] | None = None,
    ) -> RangeTable:
        """Build a table from rows ``(first, last, country)`` or ``(first, last, asn, org)``.

        ``first``/``last`` are address objects, text, or integers (IPv4 unless
        ``version=6`` or a value needs 128 bits). Rows covering special-use addresses are
        kept as given (``lookup_int`` and ``ranges`` show them) but :meth:`resolve`
        answers "not routable" there.

        >>> RangeTable.from_rows([("8.8.8.0", "8.8.8.255", 15169, "Google LLC")]).kind
        'asn'
        """
        parser = _RowParser(source, overlaps)
        parser.start_file()
        for lineno, row in enumerate(rows, 1):
            parser.add(lineno, [str(x) if not isinstance(x, str) else x for x in row])
        parser.finish_file(version)
        return parser.build(source=source, build_date=build_date, meta=meta)

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        source: str | None = None,
        build_date: str | None = None,
        version: int | None = None,
        meta: dict[str, Any] | None = None,
        overlaps: str = "narrowest",
    ) -> RangeTable:
        r"""Load a CSV range table (``.csv`` or ``.csv.gz``), failing cleanly on bad rows.

        Accepted rows: ``start,end,country_code`` or ``start,end,asn,org`` (the DB-IP Lite
        and ip-location-db formats); a header line, blank lines and ``#`` comments are
        skipped. Integer (``-num``) files are IPv4 unless the file name says ``ipv6``, any
        value needs more than 32 bits, or ``version=6``. Several files (e.g. the
        ``-ipv4`` and ``-ipv6`` halves) may be given as a list to build one table. Any
        malformed row makes the whole load fail with
        :class:`~authabuse.errors.GeoDataError` listing line numbers: a half-loaded table
        is never returned.

        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "c.csv").write_text("1.0.0.0,1.0.0.255,AU\n")
        >>> RangeTable.from_csv(d / "c.csv").resolve("1.0.0.1").country
        'AU'
        >>> _ = (d / "bad.csv").write_text("1.0.0.0,1.0.0.255,AU\n1.0.1.0,oops,AU\n")
        >>> RangeTable.from_csv(d / "bad.csv")
        Traceback (most recent call last):
        ...
        authabuse.errors.GeoDataError: 1 malformed row in ...bad.csv; nothing loaded:
        ...bad.csv:2: invalid end address 'oops'
        """
        paths = [Path(path)] if isinstance(path, str | os.PathLike) else [Path(p) for p in path]
        if not paths:
            raise GeoDataError("no CSV file given")
        name = source or "+".join(p.name for p in paths)
        parser = _RowParser(name, overlaps)
        for p in paths:
            hint = version
            if hint is None:
                low = p.name.lower()
                hint = 6 if "ipv6" in low else 4 if "ipv4" in low else None
            parser.source = str(p)
            parser.start_file()
            _read_csv_file(p, parser)
            parser.finish_file(hint)
        parser.source = name
        return parser.build(source=name, build_date=build_date, meta=meta)

    # ------------------------------------------------------------------ binary form

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the table in authabuse's binary form (what the embedded data uses).

        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.bin"
        >>> RangeTable.from_rows([("1.0.0.0", "1.0.0.255", "AU")]).save(f)
        >>> RangeTable.load(f).resolve("1.0.0.9").country
        'AU'
        """
        fams: dict[str, Any] = {}
        blobs: list[bytes] = []
        for v, fam in sorted(self._families.items()):
            spec = []
            for name, arr in fam.arrays():
                data = arr.tobytes() if sys.byteorder == "little" else _swapped(arr)
                spec.append([name, arr.typecode, len(arr)])
                blobs.append(data)
            fams[str(v)] = spec
        vals = self._values
        values: dict[str, Any]
        if vals.is_country:
            values = {"codes": vals.codes}
        else:
            values = {"asns": len(vals.asns), "blob": len(vals.blob)}
            for arr in (vals.asns, vals.offs):
                blobs.append(arr.tobytes() if sys.byteorder == "little" else _swapped(arr))
            blobs.append(vals.blob)
        header = {
            "format": _FORMAT_VERSION,
            "kind": self.kind,
            "source": self.source,
            "build_date": self.build_date,
            "meta": self.meta,
            "families": fams,
            "values": values,
        }
        head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
        tmp = Path(f"{os.fspath(path)}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(_MAGIC + struct.pack("<I", len(head)) + head)
            for blob in blobs:
                fh.write(blob)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, verify: bool = True) -> RangeTable:
        """Load a table written by :meth:`save`; ``verify`` checks it is sorted and complete.

        Arrays are read straight from the file (no intermediate copy of the whole file).
        Raises :class:`~authabuse.errors.GeoDataError` for anything else (wrong magic,
        truncated file, unsorted starts, trailing bytes).
        """
        try:
            with open(path, "rb") as fh:
                return cls._read(fh, str(path), verify)
        except OSError as exc:
            raise GeoDataError(f"cannot read geo table {path}: {exc.strerror or exc}") from None

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "<bytes>", verify: bool = True) -> RangeTable:
        """Decode the binary form (see :meth:`save`).

        >>> RangeTable.from_bytes(b"nonsense")
        Traceback (most recent call last):
        ...
        authabuse.errors.GeoDataError: <bytes>: not an authabuse geo table (bad magic)
        """
        return cls._read(io.BytesIO(data), name, verify)

    @classmethod
    def _read(cls, fh: IO[bytes], name: str, verify: bool) -> RangeTable:  # noqa: PLR0912, PLR0915  # one check per field of the format
        head = fh.read(len(_MAGIC) + 4)
        if len(head) < len(_MAGIC) + 4 or not head.startswith(_MAGIC):
            raise GeoDataError(f"{name}: not an authabuse geo table (bad magic)")
        (hlen,) = struct.unpack_from("<I", head, len(_MAGIC))

        def read_array(code: str, count: int) -> array[int]:
            arr = array(code)
            try:
                arr.fromfile(fh, count)
            except EOFError:
                raise GeoDataError(f"{name}: truncated table") from None
            if sys.byteorder != "little":
                arr.byteswap()
            return arr

        try:
            raw_header = fh.read(hlen)
            if len(raw_header) != hlen:
                raise GeoDataError(f"{name}: truncated table header")
            header = json.loads(raw_header)
            if header["format"] != _FORMAT_VERSION:
                raise GeoDataError(f"{name}: unsupported table format {header['format']}")
            kind = header["kind"]
            if kind not in ("country", "asn"):
                raise GeoDataError(f"{name}: unknown table kind {kind!r}")
            families: dict[int, _Family] = {}
            for vtext, spec in header["families"].items():
                arrays = {aname: read_array(code, int(count)) for aname, code, count in spec}
                v = int(vtext)
                if v not in (4, 6):
                    raise GeoDataError(f"{name}: unknown address family {vtext!r}")
                families[v] = _Family(
                    v, arrays["keys"], arrays.get("lo"), arrays["vals"], arrays["index"]
                )
            if set(families) != {4, 6}:
                raise GeoDataError(f"{name}: both address families are required")
            vhead = header["values"]
            if "codes" in vhead:
                codes = vhead["codes"]
                if not all(c is None or (isinstance(c, str) and len(c) == 2) for c in codes):
                    raise GeoDataError(f"{name}: bad country codes")
                values = _Values(codes=codes)
            else:
                count, blen = int(vhead["asns"]), int(vhead["blob"])
                asns = read_array("I", count)
                offs = read_array("I", count + 1)
                blob = fh.read(blen)
                if len(blob) != blen:
                    raise GeoDataError(f"{name}: truncated table")
                values = _Values(asns=asns, offs=offs, blob=blob)
                if verify and (offs[-1] != blen or any(a > b for a, b in pairwise(offs))):
                    raise GeoDataError(f"{name}: bad organisation offsets")
            if verify:
                for fam in families.values():
                    _verify_family(fam, values.count, name)
        except GeoDataError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise GeoDataError(f"{name}: corrupt geo table ({exc!r})") from None
        if fh.read(1):
            raise GeoDataError(f"{name}: trailing bytes after the table")
        return cls(
            families,
            values,
            kind=kind,
            source=str(header["source"]),
            build_date=header.get("build_date"),
            meta=header.get("meta") or {},
        )


def _swapped(arr: array[int]) -> bytes:
    copy = array(arr.typecode, arr)
    copy.byteswap()
    return copy.tobytes()


def _verify_family(fam: _Family, nvalues: int, name: str) -> None:
    keys = fam.keys
    if len(keys) != fam.count or fam.count == 0:
        raise GeoDataError(f"{name}: IPv{fam.version} arrays disagree in length")
    if fam.lo is not None and len(fam.lo) != fam.count:
        raise GeoDataError(f"{name}: IPv{fam.version} arrays disagree in length")
    if len(fam.index) != (1 << _INDEX_BITS) + 1:
        raise GeoDataError(f"{name}: bad IPv{fam.version} index")
    if fam.start(0) != 0:
        raise GeoDataError(f"{name}: IPv{fam.version} table does not start at 0")
    if fam.lo is None:
        ok = all(a < b for a, b in pairwise(keys))
    else:
        ok = all(
            (a, c) < (b, d) for (a, b), (c, d) in zip(pairwise(keys), pairwise(fam.lo), strict=True)
        )
    if not ok:
        raise GeoDataError(f"{name}: IPv{fam.version} starts are not strictly increasing")
    if max(fam.vals) >= nvalues:
        raise GeoDataError(f"{name}: IPv{fam.version} value index out of range")
    expected = fam._build_index() if fam.count < 4096 else None
    if expected is not None and expected != fam.index:
        raise GeoDataError(f"{name}: IPv{fam.version} index does not match the starts")


# ---------------------------------------------------------------------- row parsing


def _read_csv_file(p: Path, parser: _RowParser) -> None:
    try:
        raw: IO[bytes] = (
            cast(IO[bytes], gzip.open(p, "rb"))  # noqa: SIM115  # closed by the with below
            if p.name.endswith(".gz")
            else open(p, "rb")  # noqa: SIM115  # closed by the with below
        )
    except OSError as exc:
        raise GeoDataError(f"cannot open geo table {p}: {exc.strerror or exc}") from None
    lineno = 0

    def lines() -> Iterator[str]:
        nonlocal lineno
        for raw_line in raw:
            lineno += 1
            data = (
                raw_line[3:] if lineno == 1 and raw_line.startswith(b"\xef\xbb\xbf") else raw_line
            )
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError:
                parser.error(lineno, "not valid UTF-8")
                yield "\n"

    with raw:
        try:
            reader = csv.reader(lines())
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    parser.error(lineno, f"malformed CSV: {exc}")
                    break
                parser.add(reader.line_num, row)
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise GeoDataError(f"cannot read geo table {p}: {exc}") from None


def _parse_text_address(text: str) -> tuple[int, int] | None:
    """Parse a textual address strictly; return ``(int, version)`` or ``None``."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big"), 4
    except OSError:
        pass
    if ":" in text:
        if "%" in text:
            return None  # zone ids make no sense in a range table
        try:
            return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big"), 6
        except OSError:
            try:
                addr = ip_address(text)
            except ValueError:
                return None
            return int(addr), addr.version
    return None


class _RowParser:
    """Collects rows, validates them, reports errors with line numbers, builds the table."""

    def __init__(self, source: str, overlaps: str = "narrowest") -> None:
        if overlaps not in ("narrowest", "error"):
            raise ConfigurationError(f"overlaps must be 'narrowest' or 'error', not {overlaps!r}")
        self.overlaps = overlaps
        self.source = source
        self.errors: list[str] = []
        self.error_count = 0
        self.kind: Kind | None = None
        self.kind_line = 0
        # (first, last, value_index, lineno) per family; ints rows kept apart until the
        # family of integer addresses is known.
        self.rows: dict[int | None, list[tuple[int, int, int, int, int]]] = {
            4: [],
            6: [],
            None: [],
        }
        self.files: list[str] = []
        self.values: list[Value | None] = [None]
        self.value_ids: dict[Value, int] = {}
        self.seen_data_row = False

    def start_file(self) -> None:
        self.seen_data_row = False
        self.files.append(self.source)

    def finish_file(self, version: int | None) -> None:
        """Give this file's integer-address rows their family."""
        untyped = self.rows[None]
        if not untyped:
            return
        if version is None:
            version = 6 if any(row[1] > _MAX[4] for row in untyped) else 4
        elif version == 4:
            for _, b, _, lineno, _ in untyped:
                if b > _MAX[4]:
                    self.error(lineno, f"integer address {b} out of the IPv4 range")
        self.rows[version].extend(untyped)
        self.rows[None] = []

    def error(self, lineno: int, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < _MAX_ERRORS_SHOWN:
            self.errors.append(f"{self.source}:{lineno}: {reason}")

    def _address(self, text: str, what: str, lineno: int) -> tuple[int, int | None] | None:
        text = text.strip()
        if text.isdigit():
            n = int(text)
            if n > _MAX[6]:
                self.error(lineno, f"{what} address {text[:40]!r} is out of range")
                return None
            return n, None
        parsed = _parse_text_address(text)
        if parsed is None:
            self.error(lineno, f"invalid {what} address {text[:60]!r}")
            return None
        return parsed

    def add(self, lineno: int, row: list[str]) -> None:  # noqa: PLR0911, PLR0912  # one early return per validation
        if not row or (len(row) == 1 and not row[0].strip()):
            return
        if row[0].lstrip().startswith("#"):
            return
        if not self.seen_data_row and _looks_like_header(row):
            self.seen_data_row = True
            return
        self.seen_data_row = True
        if len(row) == 3:
            kind: Kind = "country"
        elif len(row) == 4:
            kind = "asn"
        else:
            self.error(
                lineno,
                f"expected 3 fields (start,end,country) or 4 (start,end,asn,org), got {len(row)}",
            )
            return
        if self.kind is None:
            self.kind, self.kind_line = kind, lineno
        elif kind != self.kind:
            self.error(lineno, f"{kind} row in a {self.kind} table (line {self.kind_line})")
            return
        first = self._address(row[0], "start", lineno)
        last = self._address(row[1], "end", lineno)
        if first is None or last is None:
            return
        (a, va), (b, vb) = first, last
        if va is not None and vb is not None and va != vb:
            self.error(lineno, "start and end are of different address families")
            return
        version = va if va is not None else vb
        if version == 4 and max(a, b) > _MAX[4]:
            self.error(lineno, "integer address out of the IPv4 range in an IPv4 row")
            return
        if a > b:
            self.error(
                lineno, f"start {row[0].strip()[:60]!r} is after end {row[1].strip()[:60]!r}"
            )
            return
        value = self._value(kind, row, lineno)
        if value is False:
            return
        vi = 0
        if value is not None:
            vi = self.value_ids.get(value, 0)
            if not vi:
                vi = len(self.values)
                self.values.append(value)
                self.value_ids[value] = vi
        self.rows[version].append((a, b, vi, lineno, len(self.files) - 1))

    def _value(  # noqa: PLR0911  # one early return per validation
        self, kind: Kind, row: list[str], lineno: int
    ) -> Value | Literal[False] | None:
        if kind == "country":
            code = row[2].strip().upper()
            if code in _NO_COUNTRY:
                return None
            if len(code) != 2 or not code.isascii() or not code.isalpha():
                self.error(lineno, f"invalid country code {row[2].strip()[:20]!r}")
                return False
            return code
        text = row[2].strip()
        if text[:2].upper() == "AS":
            text = text[2:]
        if not text.isdigit() or not text.isascii() or int(text) > 0xFFFFFFFF:
            self.error(lineno, f"invalid ASN {row[2].strip()[:20]!r}")
            return False
        asn = int(text)
        if asn == 0:
            return None
        org = row[3].strip()
        if len(org) > _MAX_ORG:
            self.error(lineno, f"organisation name longer than {_MAX_ORG} characters")
            return False
        return asn, (org or None)

    def build(
        self, *, source: str, build_date: str | None, meta: dict[str, Any] | None = None
    ) -> RangeTable:
        if self.error_count:
            more = self.error_count - len(self.errors)
            tail = f"\n... and {more} more" if more > 0 else ""
            noun = "row" if self.error_count == 1 else "rows"
            raise GeoDataError(
                f"{self.error_count} malformed {noun} in {self.source}; nothing loaded:\n"
                + "\n".join(self.errors)
                + tail
            )
        if self.kind is None:
            raise GeoDataError(f"{self.source}: no data rows")
        families: dict[int, _Family] = {}
        overlaps = 0
        for v in (4, 6):
            rows = self.rows[v]
            rows.sort()
            rows, resolved = _resolve_overlaps(rows, v, self.files, self.overlaps)
            overlaps += resolved
            starts, vals = _partition(rows, v, self.files)
            families[v] = _Family.from_starts(v, starts, vals)
        meta = dict(meta or {})
        if overlaps:
            meta["overlaps_resolved"] = overlaps
        return RangeTable(
            families,
            _Values.from_list(self.kind, self.values),
            kind=self.kind,
            source=source,
            build_date=build_date,
            meta=meta,
        )


def _looks_like_header(row: list[str]) -> bool:
    """Tell a header: its first field is a word naming a column, like ``ip_range_start``."""
    return re.fullmatch(r"[a-z][a-z_ -]*", row[0].strip().lower()) is not None


def _resolve_overlaps(
    rows: list[tuple[int, int, int, int, int]], version: int, files: list[str], policy: str
) -> tuple[list[tuple[int, int, int, int, int]], int]:
    """Make sorted rows disjoint: where rows overlap the narrower wins (or raise)."""
    out: list[tuple[int, int, int, int, int]] = []
    cluster: list[tuple[int, int, int, int, int]] = []
    cluster_end = -1
    resolved = 0

    def flush() -> None:
        nonlocal resolved
        if len(cluster) == 1:
            out.append(cluster[0])
            return
        if policy == "error":
            a, b = cluster[0], cluster[1]
            raise GeoDataError(
                f"{files[b[4]]}:{b[3]}: range overlaps the range at {files[a[4]]}:{a[3]} "
                f"(IPv{version}); overlapping rows are rejected, nothing loaded"
            )
        resolved += len(cluster) - 1
        # Paint widest first, so narrower rows (and, for equal widths, later lines) win.
        order = sorted(cluster, key=lambda r: (-(r[1] - r[0]), r[4], r[3]))
        segments: list[tuple[int, int, int, int, int]] = []
        for row in order:
            first, last = row[0], row[1]
            kept: list[tuple[int, int, int, int, int]] = []
            for seg in segments:
                if seg[1] < first or seg[0] > last:
                    kept.append(seg)
                    continue
                if seg[0] < first:
                    kept.append((seg[0], first - 1, *seg[2:]))
                if seg[1] > last:
                    kept.append((last + 1, seg[1], *seg[2:]))
            kept.append(row)
            segments = kept
        out.extend(sorted(segments))

    for row in rows:
        if cluster and row[0] > cluster_end:
            flush()
            cluster = []
        cluster.append(row)
        cluster_end = max(cluster_end, row[1])
    if cluster:
        flush()
    return out, resolved


def _partition(
    rows: list[tuple[int, int, int, int, int]], version: int, files: list[str]
) -> tuple[list[int], list[int]]:
    """Turn sorted rows into a partition of the address space: starts and value indexes."""
    starts: list[int] = []
    vals: list[int] = []
    end = -1  # last address covered so far
    for first, last, vi, lineno, fi in rows:
        if first <= end:  # _resolve_overlaps ran first: cannot happen
            raise GeoDataError(f"{files[fi]}:{lineno}: overlapping range (IPv{version})")
        if first > end + 1 and (not vals or vals[-1] != 0):
            starts.append(end + 1)
            vals.append(0)
        if not (vals and vals[-1] == vi and first == end + 1):
            starts.append(first)
            vals.append(vi)
        end = last
    if end < _MAX[version] and (not vals or vals[-1] != 0):
        starts.append(end + 1)
        vals.append(0)
    # Merging "no data" rows with gaps can leave equal neighbours: coalesce once more.
    out_s: list[int] = []
    out_v: list[int] = []
    for s, v in zip(starts, vals, strict=True):
        if out_v and out_v[-1] == v:
            continue
        out_s.append(s)
        out_v.append(v)
    return out_s, out_v


def _address_text(n: int, version: int) -> str:
    return str(IPv4Address(n) if version == 4 else IPv6Address(n))


def special_overlap(table: RangeTable, version: int) -> list[tuple[str, str, str | int]]:
    """Ranges with data that start inside a special-use block (diagnostics for tools)."""
    out = []
    for first, last, value in table.int_ranges(version):
        if special_entry(first, version) is not None:
            out.append((_address_text(first, version), _address_text(last, version), value))
    return out
