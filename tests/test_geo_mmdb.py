"""MMDB databases: MaxMind's test databases answer as their JSON sources say; bad files fail."""

from __future__ import annotations

import json
import os
import shutil
import threading
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from authabuse import GeoDataError
from authabuse.geo import ChainResolver, MMDBResolver, open_resolver, resolver_from_paths
from authabuse.geo._special import special_entry
from authabuse.testing import check_geo_resolver

pytest.importorskip("maxminddb", reason="the geoip2 extra is not installed")

DATA = Path(__file__).parent / "data" / "maxmind"
DBIP = (
    Path(__file__).parents[1]
    / ".."
    / "shared"
    / "geo-data"
    / "dbip-country-lite-2026-06"
    / "dbip-country.mmdb"
)


def _expected(path: Path) -> list[tuple[Any, dict[str, Any]]]:
    out = []
    for entry in json.loads(path.read_text(encoding="utf-8")):
        for net, rec in entry.items():
            out.append((ip_network(net, strict=False), rec))
    return out


def _longest_match(entries: list[tuple[Any, dict[str, Any]]], ip: Any) -> dict[str, Any] | None:
    best = None
    for net, rec in entries:
        if (
            net.version == ip.version
            and ip in net
            and (best is None or net.prefixlen > best[0].prefixlen)
        ):
            best = (net, rec)
    return None if best is None else best[1]


def _country(rec: dict[str, Any]) -> str | None:
    for key in ("country", "registered_country"):
        code = rec.get(key, {}).get("iso_code")
        if code:
            return str(code)
    return None


@pytest.mark.parametrize(
    "name",
    ["GeoLite2-Country-Test", "GeoIP2-Country-Test", "GeoLite2-City-Test", "GeoIP2-City-Test"],
)
def test_country_and_city_databases_answer_as_their_sources_say(name: str) -> None:
    db = MMDBResolver(DATA / f"{name}.mmdb")
    entries = _expected(DATA / f"{name}.json")
    checked = special = 0
    for net, _ in entries:
        for ip in (net.network_address, net.broadcast_address):
            if ip.version == 6 and ip.ipv4_mapped is not None:
                continue
            loc = db.resolve(ip)
            if special_entry(int(ip), ip.version) is not None:
                special += 1
                assert loc is not None
                assert not loc.routable
                continue
            rec = _longest_match(entries, ip)
            assert rec is not None
            want = _country(rec)
            if want is None and "location" not in rec:
                assert loc is None or loc.country is None, (ip, loc)
                continue
            assert loc is not None, ip
            assert loc.country == want, (ip, loc, rec)
            assert loc.source == f"{name}.mmdb"
            if "location" in rec and "latitude" in rec["location"]:
                assert loc.latitude == pytest.approx(rec["location"]["latitude"])
                assert loc.longitude == pytest.approx(rec["location"]["longitude"])
                if "accuracy_radius" in rec["location"]:
                    assert loc.accuracy_km == rec["location"]["accuracy_radius"]
            checked += 1
    assert checked > 100
    assert special < checked / 10


def test_asn_database_answers_as_its_source_says() -> None:
    db = MMDBResolver(DATA / "GeoLite2-ASN-Test.mmdb")
    entries = _expected(DATA / "GeoLite2-ASN-Test.json")
    checked = 0
    for net, _ in entries:
        ip = net.network_address
        if special_entry(int(ip), ip.version) is not None:
            continue
        want = _longest_match(entries, ip)
        assert want is not None
        loc = db.resolve(ip)
        assert loc is not None
        assert (loc.asn, loc.org) == (
            want["autonomous_system_number"],
            want.get("autonomous_system_organization"),
        )
        assert loc.country is None
        checked += 1
    assert checked > 500


def test_issue_examples_and_chain_of_country_plus_asn() -> None:
    country = MMDBResolver(DATA / "GeoLite2-Country-Test.mmdb")
    asn = MMDBResolver(DATA / "GeoLite2-ASN-Test.mmdb")
    chain = ChainResolver([country, asn])
    assert country.resolve("81.2.69.142").country == "GB"  # type: ignore[union-attr]
    se = chain.resolve("89.160.20.112")
    assert se is not None
    assert (se.country, se.asn, se.org) == ("SE", 29518, "Bredband2 AB")
    assert se.source == "GeoLite2-Country-Test.mmdb+GeoLite2-ASN-Test.mmdb"
    us = chain.resolve("216.160.83.56")
    assert us is not None
    assert (us.country, us.asn) == ("US", 209)
    assert se.network is not None
    assert ip_address("89.160.20.112") in se.network
    city = MMDBResolver(DATA / "GeoIP2-City-Test.mmdb").resolve("81.2.69.142")
    assert city is not None
    assert city.latitude is not None
    assert city.longitude is not None
    for db in (country, asn, chain):
        check_geo_resolver(
            db, strict_special=True, extra=["81.2.69.142", "89.160.20.112", "216.160.83.56"]
        )
    # The same through the --geo option.
    via_paths = resolver_from_paths(
        [str(DATA / "GeoLite2-Country-Test.mmdb"), str(DATA / "GeoLite2-ASN-Test.mmdb")]
    )
    assert via_paths.resolve(IPv4Address("89.160.20.112")) == se


@pytest.mark.parametrize("name", ["GeoIP2-Connection-Type-Test", "GeoIP2-Anonymous-IP-Test"])
def test_wrong_database_types_are_refused(name: str) -> None:
    with pytest.raises(GeoDataError, match="has no country or ASN data"):
        MMDBResolver(DATA / f"{name}.mmdb")


def test_isp_database_gives_asn() -> None:
    loc = MMDBResolver(DATA / "GeoIP2-ISP-Test.mmdb").resolve("1.128.0.0")
    assert loc is not None
    assert loc.asn == 1221


def test_corrupt_and_non_mmdb_files_fail_cleanly(tmp_path: Path) -> None:
    good = (DATA / "GeoLite2-Country-Test.mmdb").read_bytes()
    cases = {
        "empty.mmdb": b"",
        "text.mmdb": b"1.0.0.0,1.0.0.255,AU\n" * 100,
        "truncated.mmdb": good[: len(good) // 2],
        "no-metadata.mmdb": good.replace(b"\xab\xcd\xefMaxMind.com", b"\x00" * 14),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(GeoDataError):
            MMDBResolver(path)
    with pytest.raises(GeoDataError, match="no such"):
        MMDBResolver(tmp_path / "missing.mmdb")
    # Metadata intact, search tree garbage: lookups answer None instead of raising.
    meta_at = good.rfind(b"\xab\xcd\xefMaxMind.com")
    garbage = bytes((b * 7 + 13) & 0xFF for b in good[:meta_at]) + good[meta_at:]
    path = tmp_path / "garbage-tree.mmdb"
    path.write_bytes(garbage)
    db = MMDBResolver(path)
    for ip in ("81.2.69.142", "2001:218::1", "8.8.8.8"):
        loc = db.resolve(ip)
        assert loc is None or loc.country is None or len(loc.country) == 2


def test_reload_swaps_the_reader_without_dropping_lookups(tmp_path: Path) -> None:
    path = tmp_path / "geo.mmdb"
    shutil.copy(DATA / "GeoLite2-Country-Test.mmdb", path)
    db = MMDBResolver(path)
    assert db.resolve("81.2.69.142").country == "GB"  # type: ignore[union-attr]
    assert db.reload_if_changed() is False
    errors: list[str] = []
    stop = threading.Event()

    def lookups() -> None:
        while not stop.is_set():
            try:
                loc = db.resolve("81.2.69.142")
                if loc is None or loc.country != "GB":
                    errors.append(repr(loc))
            except Exception as exc:  # any exception is the failure under test
                errors.append(repr(exc))

    threads = [threading.Thread(target=lookups) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            src = "GeoIP2-Country-Test" if i % 2 else "GeoLite2-Country-Test"
            tmp = tmp_path / "new.mmdb"
            shutil.copy(DATA / f"{src}.mmdb", tmp)
            os.replace(tmp, path)  # the atomic way to replace a database
            assert db.reload_if_changed() is True
            assert db.database_type == src.removesuffix("-Test")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    # A broken replacement is refused and the old reader keeps serving.
    (tmp_path / "bad.mmdb").write_bytes(b"garbage")
    os.replace(tmp_path / "bad.mmdb", path)
    with pytest.raises(GeoDataError):
        db.reload()
    assert db.resolve("81.2.69.142").country == "GB"  # type: ignore[union-attr]


def test_open_resolver_sniffs_mmdb_without_extension(tmp_path: Path) -> None:
    path = tmp_path / "geo.db"
    shutil.copy(DATA / "GeoLite2-Country-Test.mmdb", path)
    db = open_resolver(path)
    assert isinstance(db, MMDBResolver)
    assert db.info()["database_type"] == "GeoLite2-Country"


@pytest.mark.skipif(not DBIP.exists(), reason="../shared/geo-data (DB-IP mmdb) not present")
def test_dbip_flat_country_code_database() -> None:
    db = MMDBResolver(DBIP)
    assert db.info()["build_date"] == "2026-06-01"
    for ip, cc in (
        ("8.8.8.8", "US"),
        ("202.232.2.1", "JP"),
        ("212.77.98.9", "PL"),
        ("2001:200::1", "JP"),
    ):
        loc = db.resolve(ip)
        assert loc is not None
        assert loc.country == cc
    check_geo_resolver(db, strict_special=True)
