#!/usr/bin/env python3
"""Regenerate src/authabuse/data/simulate-ranges.csv from the embedded geo tables.

The simulator draws client addresses from *blocks*: address ranges that one ASN
announces inside one country, each given a role (``residential``, ``mobile``,
``business``, ``hosting``). This script selects them from the embedded tables of
:mod:`authabuse.geo` (DB-IP Country Lite for the country, ip-location-db for the ASN;
both CC BY 4.0), so every simulated address is placed by the embedded data exactly
where the simulator meant it to be (``tests/test_simulate.py`` checks it):

* ASN ranges are split where the country table changes country inside them, so every
  block has one ASN and one country;
* Japan: the mobile carriers' ranges (NTT DOCOMO, KDDI, SoftBank, Rakuten Mobile) as
  ``mobile``; IIJ, OCN and ARTERIA as ``business``; the big consumer ISPs as
  ``residential``; Japanese data centres as ``hosting``; IPv6 ranges of the consumer
  ISPs as ``residential``;
* every other country the simulator uses: its six largest non-hosting ASNs as
  ``residential`` and the known hosting/cloud ASNs present there as ``hosting``;
* at most four ranges per (country, ASN, role), the largest.

Usage (from the repository root): ``python tools/build_simulate_ranges.py``. The output
is deterministic.
"""

from __future__ import annotations

import bisect
import csv
import sys
from collections import defaultdict
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from authabuse.geo import embedded_table
from authabuse.simulate._model import (
    ABROAD_COUNTRIES,
    BOTNET_COUNTRIES,
    TRIP_COUNTRIES,
    VPN_COUNTRIES,
)

OUT = Path(__file__).resolve().parents[1] / "src" / "authabuse" / "data" / "simulate-ranges.csv"

JP_MOBILE = {9605: "NTT DOCOMO", 2516: "KDDI", 17676: "SoftBank", 138384: "Rakuten Mobile"}
JP_BUSINESS = {2497, 4713, 17506}
JP_RESIDENTIAL = {4713, 2527, 2518, 17676, 2516, 9824, 17511, 4685, 18126, 10013}
HOSTING = {
    16509, 14618, 14061, 24940, 16276, 9009, 60068, 212238, 63949, 20473, 51167, 60781,
    16265, 28753, 9371, 7684, 7506, 4694, 45102, 132203, 396982, 15169, 8075, 8100,
    197540, 200019, 62240, 46606, 36352, 55286, 398101, 133752, 35916, 49981, 12876,
    135377, 207990, 136787, 202425, 47583, 34665, 53667, 44477, 50673,
}  # fmt: skip
PER_KEY = 4
RESIDENTIAL_ASNS = 6


def main() -> int:  # noqa: PLR0912, PLR0915  # one selection rule per role, top to bottom
    """Select the blocks and write the CSV; return the exit code."""
    country = embedded_table("country")
    asn = embedded_table("asn")
    wanted = (
        set(BOTNET_COUNTRIES) | set(ABROAD_COUNTRIES) | set(TRIP_COUNTRIES) | set(VPN_COUNTRIES)
    )
    # (cc, version, asn) -> list of (size, first, last)
    ranges: dict[tuple[str, int, int], list[tuple[int, int, int]]] = defaultdict(list)
    for version in (4, 6):
        # Split every ASN range where the country changes inside it.
        cranges = list(country.int_ranges(version))
        starts = [r[0] for r in cranges]
        for first, last, value in asn.int_ranges(version):
            if not isinstance(value, int):
                continue
            i = max(0, bisect.bisect_right(starts, first) - 1)
            while i < len(cranges) and cranges[i][0] <= last:
                c_first, c_last, cc = cranges[i]
                i += 1
                a, b = max(first, c_first), min(last, c_last)
                if a > b or not isinstance(cc, str) or cc not in wanted:
                    continue
                if version == 6 and cc != "JP":
                    continue
                ranges[(cc, version, value)].append((b - a + 1, a, b))
    size: dict[tuple[str, int, int], int] = {k: sum(r[0] for r in v) for k, v in ranges.items()}
    rows: list[tuple[int, int, int, str, int, str, str]] = []

    def take(cc: str, version: int, number: int, role: str) -> None:
        for _, first, last in sorted(ranges[(cc, version, number)], key=lambda r: (-r[0], r[1]))[
            :PER_KEY
        ]:
            org = asn.org_of(number) or f"AS{number}"
            rows.append((version, first, last, cc, number, org, role))

    for cc in sorted(wanted):
        keys = sorted((k for k in size if k[0] == cc and k[1] == 4), key=lambda k: (-size[k], k[2]))
        if cc == "JP":
            for k in keys:
                if k[2] in JP_MOBILE:
                    take(cc, 4, k[2], "mobile")
                if k[2] in JP_BUSINESS:
                    take(cc, 4, k[2], "business")
                if k[2] in JP_RESIDENTIAL and k[2] not in JP_MOBILE:
                    take(cc, 4, k[2], "residential")
                if k[2] in HOSTING or k[2] in {9371, 7506, 4694}:
                    take(cc, 4, k[2], "hosting")
            for k in sorted(
                (k for k in size if k[0] == "JP" and k[1] == 6 and k[2] in JP_RESIDENTIAL),
                key=lambda k: (-size[k], k[2]),
            ):
                take(cc, 6, k[2], "residential")
            continue
        residential = [k for k in keys if k[2] not in HOSTING][:RESIDENTIAL_ASNS]
        for k in residential:
            take(cc, 4, k[2], "residential")
        for k in [k for k in keys if k[2] in HOSTING][:4]:
            take(cc, 4, k[2], "hosting")
    rows.sort()
    missing = sorted(
        cc for cc in wanted if not any(r[3] == cc and r[6] == "residential" for r in rows)
    )
    if missing:
        print(f"no residential block for {missing}", file=sys.stderr)
        return 1
    with open(OUT, "w", encoding="utf-8", newline="") as fh:
        fh.write(
            "# Address blocks for authabuse.simulate, selected by tools/build_simulate_ranges.py\n"
            f"# from the embedded geo tables: country {country.source} (DB-IP Lite, CC BY 4.0,\n"
            f"# IP Geolocation by DB-IP, https://db-ip.com), ASN {asn.source} (ip-location-db,\n"
            "# CC BY 4.0). Roles are the simulator's reading of the ASNs (see the tool).\n"
        )
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(("ip_range_start", "ip_range_end", "country_code", "asn", "org", "role"))
        for version, first, last, cc, number, org, role in rows:
            cls = IPv4Address if version == 4 else IPv6Address
            w.writerow((cls(first), cls(last), cc, number, org, role))
    roles: defaultdict[str, int] = defaultdict(int)
    for r in rows:
        roles[r[6]] += 1
    print(f"{OUT}: {len(rows)} blocks, {dict(roles)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
