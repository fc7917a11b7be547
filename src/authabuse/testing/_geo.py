"""Conformance kit for GeoResolver implementations."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv6Address, ip_address

from authabuse.events import IPAddress

__all__ = ["check_geo_resolver"]

# Special-use addresses: a resolver must never place them in a country.
SPECIAL_PROBES = (
    "0.1.2.3",
    "10.1.2.3",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "169.254.10.20",
    "172.16.5.4",
    "192.0.2.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.200",
    "224.0.0.251",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456:789a::1",
    "2001:db8::1",
    "3fff::1",
    "ff02::1",
)

# Public addresses real databases know (a resolver may still answer None).
PUBLIC_PROBES = (
    "8.8.8.8",
    "1.1.1.1",
    "81.2.69.142",
    "89.160.20.112",
    "202.232.2.1",
    "212.77.98.9",
    "216.160.83.56",
    "2001:200::1",
    "2001:4860:4860::8888",
    "2a02:cf40::1",
)


def _fail(prop: str, ip: object, detail: str) -> AssertionError:
    return AssertionError(f"check_geo_resolver: {prop} violated for {ip}: {detail}")


def _check_location(loc: object, ip: IPAddress) -> None:  # one branch per field
    from authabuse.geo import Location

    if loc is None:
        return
    if not isinstance(loc, Location):
        raise _fail("resolve returns Location | None", ip, f"got {type(loc).__name__}")
    if loc.country is not None and not (
        isinstance(loc.country, str)
        and len(loc.country) == 2
        and loc.country.isascii()
        and loc.country.isalpha()
        and loc.country.isupper()
    ):
        raise _fail("country is ISO 3166-1 alpha-2 (upper case)", ip, repr(loc.country))
    if loc.asn is not None and not (
        isinstance(loc.asn, int) and not isinstance(loc.asn, bool) and 0 < loc.asn < 1 << 32
    ):
        raise _fail("asn is an int in 1..2**32-1", ip, repr(loc.asn))
    if loc.org is not None and not isinstance(loc.org, str):
        raise _fail("org is str or None", ip, repr(loc.org))
    if not isinstance(loc.routable, bool):
        raise _fail("routable is a bool", ip, repr(loc.routable))
    if not loc.routable and (loc.country is not None or loc.asn is not None):
        raise _fail("a not-routable Location has no country or ASN", ip, repr(loc))
    if loc.network is not None and (loc.network.version != ip.version or ip not in loc.network):
        raise _fail("network contains the address", ip, str(loc.network))
    for name, low, high in (("latitude", -90.0, 90.0), ("longitude", -180.0, 180.0)):
        value = getattr(loc, name)
        if value is not None and not (isinstance(value, float) and low <= value <= high):
            raise _fail(f"{name} is a float in [{low}, {high}]", ip, repr(value))
    if loc.accuracy_km is not None and not (
        isinstance(loc.accuracy_km, float) and loc.accuracy_km >= 0
    ):
        raise _fail("accuracy_km is a non-negative float", ip, repr(loc.accuracy_km))
    if loc.source is not None and not isinstance(loc.source, str):
        raise _fail("source is str or None", ip, repr(loc.source))


def _same(a: object, b: object) -> bool:
    from authabuse.geo import Location

    if isinstance(a, Location) and isinstance(b, Location):
        return (a.country, a.asn, a.org, a.routable) == (b.country, b.asn, b.org, b.routable)
    return a is None and b is None


def _probes(seed: int, count: int) -> list[IPAddress]:
    rng = random.Random(seed)  # noqa: S311  # reproducible probes, not cryptography
    out: list[IPAddress] = [ip_address(s) for s in (*SPECIAL_PROBES, *PUBLIC_PROBES)]
    for _ in range(count):
        out.append(IPv4Address(rng.getrandbits(32)))
        out.append(IPv6Address((0x2000 + rng.getrandbits(13) << 112) | rng.getrandbits(112)))
    return out


def check_geo_resolver(  # noqa: PLR0912, PLR0915  # one block per property checked
    resolver: object,
    *,
    expected: Mapping[str, str | None] | None = None,
    extra: Iterable[str] = (),
    strict_special: bool = False,
    random_probes: int = 300,
    seed: int = 1,
) -> None:
    """Check that ``resolver`` honours the :class:`~authabuse.geo.GeoResolver` contract.

    Probes special-use addresses (never placed in a country; with ``strict_special``
    they must answer ``routable=False``), well-known public addresses, ``extra``
    addresses and ``random_probes`` random IPv4 and IPv6 addresses; checks field types,
    that ``network`` contains the address and that its first and last addresses get
    the same answer, that answers are deterministic and identical from several
    threads, that IPv4-mapped IPv6 and text input give the IPv4 answer, that
    ``resolve_with_network`` (when present) agrees, and that ``expected`` countries
    match. Raises :class:`AssertionError` naming the first violated property.

    >>> from authabuse.geo import RangeTable
    >>> table = RangeTable.from_rows([("8.8.8.0", "8.8.8.255", "US")])
    >>> check_geo_resolver(table, expected={"8.8.8.8": "US"}, strict_special=True)
    """
    resolve = getattr(resolver, "resolve", None)
    if not callable(resolve):
        raise AssertionError("check_geo_resolver: resolver has no callable resolve(ip)")
    probes = _probes(seed, random_probes) + [ip_address(s) for s in extra]
    answers: dict[IPAddress, object] = {}
    for ip in probes:
        try:
            loc = resolve(ip)
        except Exception as exc:  # the property under test is "never raises"
            raise _fail("resolve never raises for an address", ip, repr(exc)) from exc
        _check_location(loc, ip)
        answers[ip] = loc
        again = resolve(ip)
        if again != loc:
            raise _fail("answers are deterministic", ip, f"{loc!r} then {again!r}")
    for text in SPECIAL_PROBES:
        ip = ip_address(text)
        loc = answers[ip]
        if loc is None:
            if strict_special:
                raise _fail("special-use addresses answer routable=False", ip, "got None")
            continue
        if getattr(loc, "routable", True) or getattr(loc, "country", None) is not None:
            raise _fail("special-use addresses are not placed in a country", ip, repr(loc))
    for ip, loc in answers.items():
        net = getattr(loc, "network", None)
        if net is None or net.num_addresses == 1:
            continue
        for edge in (net.network_address, net.broadcast_address):
            other = resolve(edge)
            if not _same(loc, other):
                raise _fail(
                    "every address of the network gets the same answer",
                    ip,
                    f"{net} but {edge} -> {other!r}",
                )
    for ip in probes:
        if isinstance(ip, IPv4Address):
            mapped = IPv6Address(0xFFFF00000000 | int(ip))
            if not _same(resolve(mapped), answers[ip]):
                raise _fail("IPv4-mapped IPv6 resolves like the IPv4 address", mapped, "differs")
            if not _same(resolve(str(ip)), answers[ip]):
                raise _fail("text input resolves like the address object", ip, "differs")
    with_net = getattr(resolver, "resolve_with_network", None)
    if callable(with_net):
        for ip in probes:
            loc, net = with_net(ip)
            if ip not in net or not _same(loc, answers[ip]):
                raise _fail("resolve_with_network agrees with resolve", ip, f"{loc!r} {net}")
    errors: list[str] = []

    def worker() -> None:
        try:
            for ip in probes:
                if not _same(resolve(ip), answers[ip]):
                    errors.append(f"{ip} differs under threads")
                    return
        except Exception as exc:  # reported below as a thread-safety failure
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise AssertionError(f"check_geo_resolver: thread safety violated: {errors[0]}")
    for text, country in (expected or {}).items():
        loc = resolve(ip_address(text))
        got = getattr(loc, "country", None)
        if got != country:
            raise AssertionError(
                f"check_geo_resolver: expected {text} -> {country}, got {got} ({loc!r})"
            )
