"""The embedded default data: spot checks, build dates, agreement with the DB-IP mmdb."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from authabuse.geo import AddressSampler, default_resolver, embedded_table
from authabuse.geo._special import special_entry
from authabuse.testing import check_geo_resolver

DBIP = (
    Path(__file__).parents[1]
    / ".."
    / "shared"
    / "geo-data"
    / "dbip-country-lite-2026-06"
    / "dbip-country.mmdb"
)
DATA = Path(__file__).parents[1] / "src" / "authabuse" / "data"


@pytest.mark.parametrize(
    ("ip", "country", "asn"),
    [
        ("8.8.8.8", "US", 15169),
        ("202.232.2.1", "JP", 2497),
        ("212.77.98.9", "PL", 12827),
        ("2001:200::1", "JP", 2500),
        ("::ffff:212.77.98.9", "PL", 12827),
    ],
)
def test_spot_checks(ip: str, country: str, asn: int) -> None:
    loc = default_resolver().resolve(ip)
    assert loc is not None
    assert (loc.country, loc.asn) == (country, asn)
    assert loc.source == "dbip-country-lite-2026-06+ip-location-db-asn-2026-06-17"


def test_build_dates_sources_and_licences_are_visible() -> None:
    country, asn = embedded_table("country"), embedded_table("asn")
    assert (country.build_date, asn.build_date) == ("2026-06-01", "2026-06-17")
    for table in (country, asn):
        info = table.info()
        assert "CC BY 4.0" in info["license"]
        assert "DB-IP" in info["attribution"]
        assert len(info["upstream_sha256"]) == 64
    assert embedded_table("country") is country  # loaded once
    assert country.memory_usage() + asn.memory_usage() < 40_000_000
    assert (DATA / "NOTICE-geo-data.md").exists()


def test_embedded_resolvers_pass_the_conformance_kit() -> None:
    for resolver in (default_resolver(), embedded_table("country"), embedded_table("asn")):
        check_geo_resolver(
            resolver,
            strict_special=True,
            random_probes=500,
            expected={"8.8.8.8": "US"} if resolver is not embedded_table("asn") else None,
        )


def _random_public(rng: random.Random, version: int) -> int:
    while True:
        n = rng.getrandbits(32) if version == 4 else (1 << 125) | rng.getrandbits(125)  # 2000::/3
        if special_entry(n, version) is None:
            return n


@pytest.mark.skipif(not DBIP.exists(), reason="../shared/geo-data (DB-IP mmdb) not present")
def test_embedded_country_table_agrees_with_the_dbip_mmdb() -> None:
    maxminddb = pytest.importorskip("maxminddb", reason="the geoip2 extra is not installed")
    reader = maxminddb.open_database(str(DBIP))
    table = embedded_table("country")
    rng = random.Random(20260601)  # noqa: S311  # reproducible probes
    fam6 = table._families[6]
    probes: list[IPv4Address | IPv6Address] = [
        IPv4Address(_random_public(rng, 4)) for _ in range(100_000)
    ]
    # IPv6: half uniform over 2000::/3 (mostly unallocated), half inside the table's
    # entries (allocated space, and boundaries).
    probes += [IPv6Address(_random_public(rng, 6)) for _ in range(50_000)]
    while len(probes) < 200_000:
        i = rng.randrange(fam6.count - 1)
        first, last = fam6.start(i), fam6.last(i)
        n = rng.choice((first, last, rng.randint(first, last)))
        if special_entry(n, 6) is None:
            probes.append(IPv6Address(n))
    located = 0
    differences = []
    for ip in probes:
        rec = reader.get(ip)
        want = rec.get("country_code") if rec else None
        loc = table.resolve(ip)
        got = loc.country if loc is not None else None
        located += got is not None
        if got != want:
            differences.append((str(ip), want, got))
    reader.close()
    assert differences == []
    assert located > 150_000  # the comparison is not vacuous


def test_sampler_places_addresses_where_asked() -> None:
    sampler = AddressSampler()
    rng = random.Random(5)  # noqa: S311  # reproducible probes
    for country in ("PL", "IN", "AR", "ZA", "JP"):
        for version in (4, 6):
            for ip in sampler.sample(rng, country=country, version=version, count=50):
                loc = default_resolver().resolve(ip)
                assert loc is not None
                assert loc.routable
                assert loc.country == country
    asn, _, _ = sampler.top_asns("PL", limit=1)[0]
    for ip in sampler.sample(rng, country="PL", asn=asn, count=50):
        loc = default_resolver().resolve(ip)
        assert loc is not None
        assert (loc.country, loc.asn) == ("PL", asn)
    blocks = sampler.blocks(asn=15169)
    assert blocks
    assert all(special_entry(b.first, 4) is None for b in blocks)
