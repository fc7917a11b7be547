"""Range tables, special-use blocks, chains and caches on real and hand-made rows."""

from __future__ import annotations

import gzip
import threading
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authabuse import GeoDataError, InvalidEventError, Location
from authabuse.errors import ConfigurationError
from authabuse.geo import (
    CachedResolver,
    ChainResolver,
    GeoResolver,
    RangeTable,
    open_resolver,
    resolver_from_paths,
    special_blocks,
)
from authabuse.testing import check_geo_resolver

# Real rows from the ip-location-db / DB-IP Lite CSV files.
COUNTRY_CSV = """\
1.0.0.0,1.0.0.255,AU
1.0.1.0,1.0.3.255,CN
1.0.4.0,1.0.7.255,AU
8.8.8.0,8.8.8.255,US
202.232.0.0,202.232.255.255,JP
212.77.96.0,212.77.111.255,PL
2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP
2a02:cf40::,2a02:cf47:ffff:ffff:ffff:ffff:ffff:ffff,NO
"""
ASN_CSV = """\
1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc."
1.0.4.0,1.0.7.255,38803,Gtelecom Pty Ltd
8.8.8.0,8.8.8.255,15169,Google LLC
2001:200::,2001:200:1b9:ffff:ffff:ffff:ffff:ffff,2500,WIDE Project
"""
ASN_NUM_CSV = """\
16777216,16777471,13335,"Cloudflare, Inc."
16778240,16779263,38803,Gtelecom Pty Ltd
134744064,134744319,15169,Google LLC
"""
ASN_V6_NUM_CSV = """\
42540528726795050063891204319802818560,42540528727329395276160870415022948351,2500,WIDE Project
"""


GOOGLE = IPv4Address("8.8.8.8")


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_country_csv_ipv4_and_ipv6(tmp_path: Path) -> None:
    table = RangeTable.from_csv(write(tmp_path, "dbip-country-lite.csv", COUNTRY_CSV))
    assert table.kind == "country"
    loc = table.resolve(ip_address("1.0.2.7"))
    assert loc == Location(country="CN", network=ip_network("1.0.2.0/23"), source=table.source)
    assert table.resolve("2001:200:1234::1").country == "JP"  # type: ignore[union-attr]
    assert table.resolve("2a02:cf47::9").country == "NO"  # type: ignore[union-attr]
    assert table.resolve("1.0.8.1") is None
    assert isinstance(table, GeoResolver)


def test_asn_csv_with_quoted_org_and_num_variants_agree(tmp_path: Path) -> None:
    text = RangeTable.from_csv(write(tmp_path, "asn-ipv4.csv", ASN_CSV))
    num = RangeTable.from_csv(
        [
            write(tmp_path, "asn-ipv4-num.csv", ASN_NUM_CSV),
            write(tmp_path, "asn-ipv6-num.csv", ASN_V6_NUM_CSV),
        ]
    )
    assert list(text.int_ranges(4)) == list(num.int_ranges(4))
    assert list(text.int_ranges(6)) == list(num.int_ranges(6))
    loc = num.resolve("1.0.0.1")
    assert loc is not None
    assert (loc.asn, loc.org, loc.country) == (13335, "Cloudflare, Inc.", None)
    assert num.org_of(15169) == "Google LLC"
    assert num.lookup_int(int(IPv6Address("2001:200::5")), 6) == 2500


def test_num_file_without_family_in_name_is_ipv6_when_values_need_it(tmp_path: Path) -> None:
    table = RangeTable.from_csv(write(tmp_path, "asn.csv", ASN_V6_NUM_CSV))
    assert table.resolve("2001:200::1").asn == 2500  # type: ignore[union-attr]
    assert table.resolve("0.0.0.1").routable is False  # type: ignore[union-attr]


def test_header_comments_blank_lines_bom_and_gzip(tmp_path: Path) -> None:
    text = "\ufeffip_range_start,ip_range_end,country_code\n# comment\n\n" + COUNTRY_CSV
    path = tmp_path / "c.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    table = RangeTable.from_csv(path)
    assert table.resolve("8.8.8.8").country == "US"  # type: ignore[union-attr]


def test_unsorted_rows_are_sorted_and_adjacent_equal_rows_merged() -> None:
    rows = [l.split(",") for l in reversed(COUNTRY_CSV.splitlines())]  # noqa: E741
    table = RangeTable.from_rows(rows)
    first = next(table.ranges(4))
    assert first == (IPv4Address("1.0.0.0"), IPv4Address("1.0.0.255"), "AU")
    merged = RangeTable.from_rows([("1.0.0.0", "1.0.0.255", "AU"), ("1.0.1.0", "1.0.1.255", "AU")])
    assert list(merged.ranges()) == [(IPv4Address("1.0.0.0"), IPv4Address("1.0.1.255"), "AU")]
    assert merged.resolve("1.0.1.9").network == ip_network("1.0.0.0/23")  # type: ignore[union-attr]


def test_overlaps_narrowest_wins_by_default_and_error_policy_rejects(tmp_path: Path) -> None:
    # The real overlap in ip-location-db asn-ipv4.csv (lines 399115-399116).
    text = (
        "214.95.0.0,215.0.255.255,749,United States Department of Defense (DoD)\n"
        "215.0.0.0,215.1.3.255,721,DoD Network Information Center\n"
    )
    path = write(tmp_path, "asn-ipv4.csv", text)
    table = RangeTable.from_csv(path)
    assert table.info()["overlaps_resolved"] == 1
    assert table.lookup_int(int(IPv4Address("215.0.0.1"))) == 721
    assert table.lookup_int(int(IPv4Address("214.255.0.1"))) == 749
    assert table.lookup_int(int(IPv4Address("215.1.3.255"))) == 721
    with pytest.raises(GeoDataError, match=r"asn-ipv4.csv:2: range overlaps the range at .*:1"):
        RangeTable.from_csv(path, overlaps="error")
    with pytest.raises(ConfigurationError):
        RangeTable.from_csv(path, overlaps="first")


def test_nested_overlap_paints_narrowest() -> None:
    table = RangeTable.from_rows(
        [
            ("8.0.0.0", "8.255.255.255", "US"),
            ("8.8.0.0", "8.8.255.255", "CA"),
            ("8.8.8.0", "8.8.8.255", "MX"),
        ]
    )
    assert [
        table.lookup_int(int(IPv4Address(a))) for a in ("8.1.0.0", "8.8.1.1", "8.8.8.8", "8.9.0.0")
    ] == [
        "US",
        "CA",
        "MX",
        "US",
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1.0.0.0,1.0.0.255", "expected 3 fields"),
        ("1.0.0.0,1.0.0.255,AU,x,y", "expected 3 fields"),
        ("1.0.0.300,1.0.0.255,AU", "invalid start address '1.0.0.300'"),
        ("1.0.0.0,not-an-ip,AU", "invalid end address 'not-an-ip'"),
        ("1.0.0.255,1.0.0.0,AU", "is after end"),
        ("1.0.0.0,2001:db8::,AU", "different address families"),
        ("1.0.0.0,1.0.0.255,Australia", "invalid country code 'Australia'"),
        ("1.0.0.0,1.0.0.255,A1", "invalid country code 'A1'"),
        ("fe80::1%eth0,fe80::2,AU", "invalid start address 'fe80::1%eth0'"),
        ("1.0.0.0,99999999999999999999999999999999999999999,AU", "out of range"),
    ],
)
def test_malformed_rows_fail_the_whole_load_with_line_numbers(
    tmp_path: Path, line: str, message: str
) -> None:
    path = write(tmp_path, "bad.csv", COUNTRY_CSV + line + "\n" + "9.9.9.0,9.9.9.255,CH\n")
    lineno = len(COUNTRY_CSV.splitlines()) + 1
    with pytest.raises(GeoDataError) as err:
        RangeTable.from_csv(path)
    assert f"bad.csv:{lineno}: " in str(err.value)
    assert message in str(err.value)
    assert "nothing loaded" in str(err.value)


def test_many_bad_rows_are_counted_and_the_first_ten_shown(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.csv", "".join(f"x{i},1.0.0.0,AU\n" for i in range(25)))
    with pytest.raises(GeoDataError, match=r"25 malformed rows .*\n(.*\n){10}\.\.\. and 15 more"):
        RangeTable.from_csv(path)


def test_bad_asn_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "asn.csv", ASN_CSV + "9.9.9.0,9.9.9.255,ASX,Quad9\n")
    with pytest.raises(GeoDataError, match=r"asn.csv:5: invalid ASN 'ASX'"):
        RangeTable.from_csv(path)
    mixed = write(tmp_path, "mixed.csv", ASN_CSV + "9.9.9.0,9.9.9.255,CH\n")
    with pytest.raises(GeoDataError, match=r"mixed.csv:5: country row in a asn table"):
        RangeTable.from_csv(mixed)
    long_org = write(tmp_path, "long.csv", "9.9.9.0,9.9.9.255,19281," + "x" * 600 + "\n")
    with pytest.raises(GeoDataError, match="longer than 512"):
        RangeTable.from_csv(long_org)


def test_as_prefix_zero_asn_and_unknown_country_mean_no_data(tmp_path: Path) -> None:
    table = RangeTable.from_csv(
        write(tmp_path, "a.csv", "9.9.9.0,9.9.9.255,AS19281,Quad9\n9.9.10.0,9.9.10.255,0,\n")
    )
    assert table.lookup_int(int(IPv4Address("9.9.9.9"))) == 19281
    assert table.resolve("9.9.10.1") is None
    zz = RangeTable.from_csv(
        write(tmp_path, "c.csv", "9.9.9.0,9.9.9.255,ZZ\n9.9.10.0,9.9.10.255,ch\n")
    )
    assert zz.resolve("9.9.9.9") is None
    assert zz.resolve("9.9.10.9").country == "CH"  # type: ignore[union-attr]


def test_non_utf8_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(GeoDataError, match=r"bin.csv:2: not valid UTF-8"):
        RangeTable.from_csv(write(tmp_path, "bin.csv", b"1.0.0.0,1.0.0.255,AU\n\xff\xfe,\x00\n"))
    with pytest.raises(GeoDataError, match="no data rows"):
        RangeTable.from_csv(write(tmp_path, "empty.csv", ""))
    with pytest.raises(GeoDataError, match="cannot open"):
        RangeTable.from_csv(tmp_path / "missing.csv")
    with pytest.raises(GeoDataError, match="cannot read"):
        RangeTable.from_csv(write(tmp_path, "x.csv.gz", b"not gzip at all"))


def test_binary_round_trip_and_corruption(tmp_path: Path) -> None:
    table = RangeTable.from_csv(
        [write(tmp_path, "asn-ipv4.csv", ASN_CSV)], source="asn", build_date="2026-06-17"
    )
    path = tmp_path / "t.bin"
    table.save(path)
    again = RangeTable.load(path)
    assert list(again.int_ranges(4)) == list(table.int_ranges(4))
    assert list(again.int_ranges(6)) == list(table.int_ranges(6))
    assert again.resolve("1.0.0.1") == table.resolve("1.0.0.1")
    assert again.info()["build_date"] == "2026-06-17"
    data = path.read_bytes()
    with pytest.raises(GeoDataError, match="truncated"):
        RangeTable.from_bytes(data[:-10])
    with pytest.raises(GeoDataError, match="trailing bytes"):
        RangeTable.from_bytes(data + b"\0")
    with pytest.raises(GeoDataError, match="bad magic"):
        RangeTable.from_bytes(b"MMDB" + data)
    with pytest.raises(GeoDataError, match=r"corrupt geo table|truncated"):
        RangeTable.from_bytes(data[:40])
    # Swap two starts: verification notices the table is no longer sorted.
    magic_len = len(b"AUTHABUSE-GEO\x00")
    hlen = int.from_bytes(data[magic_len : magic_len + 4], "little")
    body = magic_len + 4 + hlen
    bad = bytearray(data)
    bad[body + 4 : body + 8], bad[body + 8 : body + 12] = (
        data[body + 8 : body + 12],
        data[body + 4 : body + 8],
    )
    with pytest.raises(GeoDataError, match="not strictly increasing"):
        RangeTable.from_bytes(bytes(bad))


SPECIAL = {
    "10.1.2.3": "Private-Use",
    "100.64.0.1": "CGNAT",
    "100.127.255.255": "CGNAT",
    "127.0.0.1": "Loopback",
    "169.254.1.1": "Link-Local",
    "172.31.255.255": "Private-Use",
    "192.168.0.1": "Private-Use",
    "192.0.2.1": "Documentation",
    "198.51.100.1": "Documentation",
    "203.0.113.1": "Documentation",
    "224.0.0.1": "Multicast",
    "255.255.255.255": "Limited Broadcast",
    "240.1.2.3": "Reserved",
    "::1": "Loopback",
    "::": "Unspecified",
    "fe80::1": "Link-Local",
    "fd00::1": "Unique-Local",
    "2001:db8::1": "Documentation",
    "3fff::1": "Documentation",
    "ff02::1": "Multicast",
    "64:ff9b:1::1": "local use",
}


@pytest.mark.parametrize(("ip", "what"), sorted(SPECIAL.items()))
def test_special_use_addresses_are_not_routable(ip: str, what: str) -> None:
    # A table that claims everything is Japan: special-use blocks still win.
    table = RangeTable.from_rows(
        [
            ("0.0.0.0", "255.255.255.255", "JP"),  # noqa: S104  # a range, not a bind address
            ("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "JP"),
        ]
    )
    loc = table.resolve(ip_address(ip))
    assert loc is not None
    assert loc.routable is False
    assert loc.country is None
    assert loc.source is not None
    assert what in loc.source
    assert loc.network is not None
    assert ip_address(ip) in loc.network


def test_special_use_exceptions_and_neighbours_are_public() -> None:
    table = RangeTable.from_rows(
        [
            ("0.0.0.0", "255.255.255.255", "JP"),  # noqa: S104  # a range, not a bind address
            ("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "JP"),
        ]
    )
    for ip in (
        "192.0.0.9",
        "100.63.255.255",
        "100.128.0.0",
        "172.32.0.0",
        "2001:4:112::1",
        "2001:3::1",
    ):
        loc = table.resolve(ip_address(ip))
        assert loc is not None
        assert loc.routable, ip
        assert loc.network is not None
        for block in special_blocks(loc.network.version):
            assert block.last < int(loc.network.network_address) or block.first > int(
                loc.network.broadcast_address
            ), f"{loc.network} overlaps {block}"


def test_tunnels_ipv4_mapped_and_zone_ids() -> None:
    t = RangeTable.from_rows(l.split(",") for l in COUNTRY_CSV.splitlines())  # noqa: E741
    assert t.resolve("::ffff:8.8.8.8") == t.resolve("8.8.8.8")
    assert t.resolve(IPv6Address("::ffff:8.8.8.8")) == t.resolve(IPv4Address("8.8.8.8"))
    six_to_four = t.resolve("2002:808:808::1")
    assert six_to_four is not None
    assert six_to_four.country == "US"
    assert six_to_four.network == ip_network("2002:808:800::/40")
    nat64 = t.resolve("64:ff9b::8.8.8.8")
    assert nat64 is not None
    assert nat64.country == "US"
    assert nat64.network == ip_network("64:ff9b::808:800/120")
    # Teredo: client 8.8.8.8 is stored inverted in the low 32 bits.
    teredo = t.resolve("2001:0:4136:e378:8000:63bf:f7f7:f7f7")
    assert teredo is not None
    assert teredo.country == "US"
    assert t.resolve("2002:a00:1::1").routable is False  # type: ignore[union-attr]
    assert t.resolve("fe80::1%eth0").routable is False  # type: ignore[union-attr]
    assert t.resolve(IPv6Address("fe80::1%eth0")).routable is False  # type: ignore[union-attr]
    assert t.resolve("[2001:200::1]").country == "JP"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["not-an-ip", "", "1.2.3", "999.1.1.1", "1.2.3.4/24", "::g"])
def test_non_ip_strings_raise_a_clear_error(bad: str) -> None:
    t = RangeTable.from_rows([("8.8.8.0", "8.8.8.255", "US")])
    with pytest.raises(InvalidEventError, match="not an IP address"):
        t.resolve(bad)
    with pytest.raises(InvalidEventError):
        t.resolve(12345)  # type: ignore[arg-type]  # the wrong type is the point


def test_chain_merges_country_and_asn(tmp_path: Path) -> None:
    countries = RangeTable.from_csv(write(tmp_path, "c.csv", COUNTRY_CSV), source="cc")
    asns = RangeTable.from_csv(write(tmp_path, "a.csv", ASN_CSV), source="as")
    chain = ChainResolver([countries, asns])
    loc = chain.resolve("1.0.5.1")
    assert loc is not None
    assert (loc.country, loc.asn, loc.org, loc.source) == ("AU", 38803, "Gtelecom Pty Ltd", "cc+as")
    # Country only: network is the intersection with the ASN table's gap.
    loc = chain.resolve("1.0.2.1")
    assert loc is not None
    assert (loc.country, loc.asn, loc.source) == ("CN", None, "cc")
    assert loc.network == ip_network("1.0.2.0/23")
    assert chain.resolve("9.9.9.9") is None
    assert chain.resolve("10.0.0.1").routable is False  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError):
        ChainResolver([])
    check_geo_resolver(chain, strict_special=True, extra=["1.0.5.1", "1.0.2.1", "2001:200:1::1"])


class ThirdParty:
    """A plug-in that knows one address and nothing about networks."""

    def resolve(self, ip: object) -> Location | None:
        if ip == IPv4Address("1.0.0.1"):
            return Location(country="AU", source="plugin")
        return None


def test_chain_and_cache_with_a_third_party_member(tmp_path: Path) -> None:
    asns = RangeTable.from_csv(write(tmp_path, "a.csv", ASN_CSV), source="as")
    chain = ChainResolver([ThirdParty(), asns])
    loc = chain.resolve("1.0.0.1")
    assert loc is not None
    assert (loc.country, loc.asn, loc.network) == ("AU", 13335, ip_network("1.0.0.1/32"))
    cache = CachedResolver(ThirdParty())
    assert cache.resolve("1.0.0.1").country == "AU"  # type: ignore[union-attr]
    assert cache.resolve("1.0.0.2") is None
    assert cache.stats()["networks"] == 2
    check_geo_resolver(cache)


def test_cache_holds_networks_and_negative_answers(tmp_path: Path) -> None:
    inner = RangeTable.from_csv(write(tmp_path, "c.csv", COUNTRY_CSV))
    cache = CachedResolver(inner)
    assert cache.resolve("8.8.8.8").country == "US"  # type: ignore[union-attr]
    assert cache.resolve("8.8.8.200").country == "US"  # type: ignore[union-attr]
    assert cache.resolve("9.9.9.9") is None
    assert cache.resolve("9.9.9.10") is None
    assert cache.resolve("9.9.9.9") is None
    stats = cache.stats()
    assert stats["inner_lookups"] == 2
    assert stats["network_hits"] == 2
    loc, net = cache.resolve_with_network(ip_address("9.9.9.9"))
    assert loc is None
    assert ip_address("9.9.9.9") in net
    cache.clear()
    assert cache.stats()["networks"] == 0


def test_cache_is_bounded_and_agrees_with_its_inner_resolver(tmp_path: Path) -> None:
    inner = RangeTable.from_csv(write(tmp_path, "c.csv", COUNTRY_CSV))
    cache = CachedResolver(inner, max_networks=8, max_addresses=5)
    import random

    rng = random.Random(4)  # noqa: S311  # reproducible test data
    for _ in range(3000):
        ip = IPv4Address(
            rng.choice([0x01000000, 0x08080800, 0xCAE80000, 0x09000000]) + rng.getrandbits(10)
        )
        assert cache.resolve(ip) == inner.resolve(ip)
        stats = cache.stats()
        assert stats["networks"] <= 8
        assert stats["addresses"] <= 5
    with pytest.raises(ConfigurationError):
        CachedResolver(inner, max_networks=0)


def test_cache_from_many_threads(tmp_path: Path) -> None:
    inner = RangeTable.from_csv(write(tmp_path, "c.csv", COUNTRY_CSV))
    cache = CachedResolver(inner, max_networks=4, max_addresses=3)
    ips = [IPv4Address(0x01000000 + i * 97) for i in range(400)] + [
        IPv4Address(0x08080800 + i) for i in range(256)
    ]
    want = [inner.resolve(ip) for ip in ips]
    errors: list[str] = []

    def work() -> None:
        for _ in range(5):
            for ip, w in zip(ips, want, strict=True):
                if cache.resolve(ip) != w:
                    errors.append(str(ip))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_open_resolver_tells_formats_apart(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "country.csv", COUNTRY_CSV)
    assert open_resolver(csv_path).resolve(GOOGLE).country == "US"  # type: ignore[union-attr]
    table = RangeTable.from_csv(csv_path)
    table.save(tmp_path / "country.table")
    assert isinstance(open_resolver(tmp_path / "country.table"), RangeTable)
    write(tmp_path, "country.txt", COUNTRY_CSV)
    assert open_resolver(tmp_path / "country.txt").resolve(GOOGLE).country == "US"  # type: ignore[union-attr]
    with pytest.raises(GeoDataError, match="no such"):
        open_resolver(tmp_path / "missing.mmdb")
    chained = resolver_from_paths([csv_path, write(tmp_path, "asn.csv", ASN_CSV)])
    loc = chained.resolve(GOOGLE)
    assert loc is not None
    assert (loc.country, loc.asn) == ("US", 15169)


# ----------------------------------------------------------------- properties

_v4 = st.integers(min_value=0, max_value=(1 << 32) - 1)


@st.composite
def _rows(draw: st.DrawFn) -> list[tuple[int, int, str]]:
    points = sorted(set(draw(st.lists(_v4, min_size=2, max_size=40))))
    rows = []
    for a, b in zip(points[::2], points[1::2], strict=False):
        if draw(st.booleans()):
            rows.append((a, b, draw(st.sampled_from(["AU", "JP", "PL", "IN"]))))
    return rows


@settings(max_examples=150, deadline=None)
@given(rows=_rows(), probes=st.lists(_v4, min_size=1, max_size=30))
def test_lookups_match_brute_force(rows: list[tuple[int, int, str]], probes: list[int]) -> None:
    if not rows:
        return
    table = RangeTable.from_rows([(str(a), str(b), c) for a, b, c in rows], version=4)
    for n in probes + [a for a, _, _ in rows] + [b for _, b, _ in rows]:
        want = next((c for a, b, c in rows if a <= n <= b), None)
        assert table.lookup_int(n) == want
        loc, net = table.resolve_with_network(IPv4Address(n))
        assert IPv4Address(n) in net
        if loc is not None and loc.routable:
            assert loc.country == want
        # Every address of the network gets the same raw answer.
        first, last = int(net.network_address), int(net.broadcast_address)
        if loc is None or loc.routable:
            assert table.lookup_int(first) == table.lookup_int(last) == table.lookup_int(n)
