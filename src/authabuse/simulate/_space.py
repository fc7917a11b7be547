"""Where simulated clients come from: real public networks with their country and ASN.

An :class:`AddressSpace` holds *blocks* (a contiguous address range with one country and
one ASN) grouped by country and by role (residential, mobile carrier, business, hosting).
The simulator draws every client address from a block, so a geo table built from the
blocks it used places every address of the log exactly where the simulator meant it to
be. The blocks are selected from the embedded geo data of :mod:`authabuse.geo` (see
:meth:`AddressSpace.embedded`), so a scan with the embedded data agrees too.
"""

from __future__ import annotations

import bisect
import csv
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from ipaddress import IPv4Address, IPv6Address, ip_address

from authabuse.errors import GeoDataError
from authabuse.events import IPAddress

__all__ = ["AddressSpace", "Block"]

ROLES = ("residential", "mobile", "business", "hosting")


@dataclass(frozen=True, slots=True)
class Block:
    """A contiguous range of public addresses in one country, announced by one ASN.

    >>> b = Block(first=int(IPv4Address("83.0.0.0")), last=int(IPv4Address("83.0.0.255")),
    ...           version=4, country="PL", asn=4200000001, org="sim", role="residential")
    >>> b.size, b.address(5)
    (256, IPv4Address('83.0.0.5'))
    """

    first: int
    last: int
    version: int
    country: str
    asn: int
    org: str
    role: str

    @property
    def size(self) -> int:
        """Number of addresses in the block."""
        return self.last - self.first + 1

    def address(self, offset: int) -> IPAddress:
        """Return the address ``offset`` places after the block's first address."""
        value = self.first + offset % self.size
        return IPv4Address(value) if self.version == 4 else IPv6Address(value)

    def random_address(self, rng: random.Random) -> IPAddress:
        """Pick a usable address (not the first or last of an IPv4 /24)."""
        for _ in range(16):
            value = self.first + rng.randrange(self.size)
            if self.version == 6 or 0 < (value & 0xFF) < 255:
                break
        return IPv4Address(value) if self.version == 4 else IPv6Address(value)


@dataclass(slots=True)
class AddressSpace:
    """Blocks of real public addresses by country and role, and what the log used.

    Build one with :meth:`default` (blocks chosen from the embedded geo data) or
    :meth:`from_rows`. :meth:`pick_block` chooses a block of a country (weighted by size
    so big networks carry more clients, as in the real Internet); every block handed out
    is remembered so :meth:`used_blocks` can write the geo table of one simulation.

    >>> space = AddressSpace.embedded()
    >>> rng = random.Random(1)
    >>> block = space.pick_block(rng, "PL")
    >>> block.country, block.version
    ('PL', 4)
    >>> space.locate(block.random_address(rng))[0]
    'PL'
    """

    blocks: list[Block]
    source: str
    _by_country: dict[tuple[str, int, str | None], list[Block]] = field(default_factory=dict)
    _cumulative: dict[tuple[str, int, str | None], list[int]] = field(default_factory=dict)
    _starts: list[int] = field(default_factory=list)
    _sorted: list[Block] = field(default_factory=list)
    _used: dict[tuple[int, int], Block] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.blocks:
            raise GeoDataError("an address space needs at least one block")
        groups: dict[tuple[str, int, str | None], list[Block]] = {}
        for b in self.blocks:
            groups.setdefault((b.country, b.version, None), []).append(b)
            groups.setdefault((b.country, b.version, b.role), []).append(b)
        self._by_country = groups
        for key, blocks in groups.items():
            total, cum = 0, []
            for b in blocks:
                total += b.size
                cum.append(total)
            self._cumulative[key] = cum
        # Address lookup (both families in one list: v6 ints are larger only by
        # coincidence, so keep them apart with the version in the sort key).
        self._sorted = sorted(self.blocks, key=lambda b: (b.version, b.first))
        self._starts = [(b.version << 128) | b.first for b in self._sorted]

    # -- construction ---------------------------------------------------------------

    @classmethod
    def embedded(cls) -> AddressSpace:
        """Load the shipped blocks, chosen from the embedded geo data of :mod:`authabuse.geo`.

        ``data/simulate-ranges.csv`` (``tools/build_simulate_ranges.py`` derives it from
        the embedded DB-IP country and ip-location-db ASN tables): real networks with
        their real ASN and organisation, so a scan with the embedded data places every
        simulated address as the simulator meant.

        >>> space = AddressSpace.embedded()
        >>> space.countries() >= {"PL", "IN", "JP", "AR", "ZA"}
        True
        >>> {b.role for b in space.role_blocks("JP", "mobile")}
        {'mobile'}
        """
        text = resources.files("authabuse").joinpath("data/simulate-ranges.csv")
        lines = [ln for ln in text.read_text(encoding="utf-8").splitlines() if ln[:1] != "#"]
        rows = []
        for rec in csv.DictReader(lines):
            rows.append(
                (
                    rec["ip_range_start"],
                    rec["ip_range_end"],
                    rec["country_code"],
                    int(rec["asn"]),
                    rec["org"],
                    rec["role"],
                )
            )
        space = cls.from_rows(rows)
        space.source = "embedded"
        return space

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str, int, str, str]]) -> AddressSpace:
        """Build from ``(first, last, country, asn, org, role)`` rows (addresses as text).

        >>> s = AddressSpace.from_rows([("192.0.2.0", "192.0.2.255", "JP", 64500, "x",
        ...                              "hosting")])
        >>> s.locate(IPv4Address("192.0.2.7"))
        ('JP', 64500, 'x')
        """
        blocks = []
        for first, last, cc, asn, org, role in rows:
            a, b = ip_address(first), ip_address(last)
            if a.version != b.version or int(b) < int(a):
                raise GeoDataError(f"bad range {first}-{last}")
            if role not in ROLES:
                raise GeoDataError(f"unknown role {role!r}")
            blocks.append(Block(int(a), int(b), a.version, cc, asn, org, role))
        return cls(blocks=blocks, source="rows")

    @classmethod
    def default(cls) -> AddressSpace:
        """Return the address space the simulator uses by default (:meth:`embedded`)."""
        return cls.embedded()

    # -- queries --------------------------------------------------------------------

    def countries(self) -> set[str]:
        """Countries with at least one block."""
        return {b.country for b in self.blocks}

    def has(self, country: str, *, version: int = 4, role: str | None = None) -> bool:
        """Whether a block of ``country`` (and ``role``) exists in this IP version."""
        return (country, version, role) in self._by_country

    def pick_block(
        self, rng: random.Random, country: str, *, version: int = 4, role: str | None = None
    ) -> Block:
        """Pick a block of ``country`` (of ``role`` when it has such blocks), by size."""
        key = (country, version, role)
        if key not in self._by_country:
            key = (country, version, None)
        if key not in self._by_country:
            key = (country, 4, None)
        if key not in self._by_country:
            raise GeoDataError(f"no address block for country {country!r}")
        blocks, cum = self._by_country[key], self._cumulative[key]
        # Weighted by sqrt-ish of the size would favour small networks; real client
        # populations follow address counts closely enough.
        i = bisect.bisect_right(cum, rng.randrange(cum[-1]))
        block = blocks[i]
        self._used[(block.version, block.first)] = block
        return block

    def role_blocks(self, country: str, role: str, *, version: int = 4) -> list[Block]:
        """All blocks of ``country`` with ``role`` (empty when there are none)."""
        return list(self._by_country.get((country, version, role), ()))

    def mark_used(self, block: Block) -> None:
        """Remember ``block`` as used (for blocks taken from :meth:`role_blocks`)."""
        self._used[(block.version, block.first)] = block

    def locate(self, ip: IPAddress) -> tuple[str, int, str] | None:
        """Return ``(country, asn, org)`` of the block holding ``ip``, else ``None``."""
        key = (ip.version << 128) | int(ip)
        i = bisect.bisect_right(self._starts, key) - 1
        if i < 0:
            return None
        b = self._sorted[i]
        if b.version != ip.version or int(ip) > b.last:
            return None
        return b.country, b.asn, b.org

    def used_blocks(self) -> list[Block]:
        """Blocks handed out so far, sorted by family and address."""
        return sorted(self._used.values(), key=lambda b: (b.version, b.first))

    def iter_country_rows(self, blocks: Iterable[Block]) -> Iterator[tuple[str, str, str]]:
        """``ip_range_start,ip_range_end,country_code`` rows for ``blocks``."""
        for b in blocks:
            yield str(b.address(0)), str(b.address(b.size - 1)), b.country

    def iter_asn_rows(self, blocks: Iterable[Block]) -> Iterator[tuple[str, str, str, str]]:
        """``ip_range_start,ip_range_end,asn,org`` rows for ``blocks``."""
        for b in blocks:
            yield str(b.address(0)), str(b.address(b.size - 1)), str(b.asn), b.org
