"""HyperLogLog: set-like behaviour, tiers, hashing, serialization, errors."""

# ruff: noqa: S311, S301 - seeded test data; pickle of our own objects is under test

from __future__ import annotations

import pickle
import random
from ipaddress import IPv4Address, IPv6Address

import pytest

from authabuse import CorruptDataError, HyperLogLog, IncompatibleError
from authabuse.counters import EXACT_LIMIT, hash64
from authabuse.counters._hash import mix64
from authabuse.errors import ConfigurationError


def test_hash_is_stable_reference_values() -> None:
    # Reference values pinned forever: changing them breaks merging with stored sketches.
    assert hash64(0) == 0x7D8BDF20CA2C04CA
    assert hash64(1) == 0x30A03AE6288DF77E
    assert hash64(2**32 - 1) == 0x48177FA0D02B463D
    assert hash64(2**32) == 0xBFC73EFE9A5A5CE6
    assert hash64(2**64 - 1) == 0x0CA94FFBC2677E32
    assert hash64(b"") == int.from_bytes(
        __import__("hashlib").blake2b(b"", digest_size=8).digest(), "little"
    )
    assert hash64("198.51.100.7") == hash64(b"198.51.100.7")
    assert hash64(IPv4Address("198.51.100.7")) == hash64(int(IPv4Address("198.51.100.7")))
    v6 = IPv6Address("2001:db8::1")
    assert hash64(v6) == mix64(mix64(int(v6) & (2**64 - 1)) ^ (int(v6) >> 64))
    assert hash64(2**64 - 1) != hash64(2**64)


def test_hash_follows_its_documented_steps() -> None:
    # hash id 3 as docs/design.md and _hash.py state it, written out independently
    def reference(x: int) -> int:
        z = x ^ (x >> 32)
        z = (z * 0xBF58476D1CE4E5B9 + 0x9E3779B97F4A7C15) % 2**64
        z ^= z >> 29
        return (z * 0x94D049BB133111EB) % 2**64

    rng = random.Random(3)
    edges = [0, 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**63, 2**64 - 1]
    for x in edges + [rng.getrandbits(k) for k in (8, 32, 33, 64) for _ in range(200)]:
        assert hash64(x) == mix64(x) == reference(x), x
        # add()'s inlined fast path (x < 2**32) and its fallback store the same hash
        h = HyperLogLog()
        h.add(x)
        assert h.to_bytes()[6:14] == reference(x).to_bytes(8, "little"), x


def test_sketches_of_the_old_hash_are_refused_clearly() -> None:
    # a sketch written before hash id 3 (SplitMix64, id 1): same format, other hash
    old = bytes.fromhex("4148010e0100") + (0xE220A8397B1DCDAF).to_bytes(8, "little")
    with pytest.raises(IncompatibleError, match=r"hash id 1 \(SplitMix64.*rebuild"):
        HyperLogLog.from_bytes(_with_crc(old))


def test_hash_rejects_bad_members() -> None:
    with pytest.raises(ValueError, match="negative"):
        hash64(-5)
    with pytest.raises(TypeError, match="not float"):
        hash64(1.5)  # type: ignore[arg-type]  # the error is the point
    h = HyperLogLog()
    with pytest.raises(TypeError):
        h.add(None)  # type: ignore[arg-type]  # the error is the point
    assert h.estimate() == 0


@pytest.mark.parametrize("precision", [3, 19, 14.0, "14"])
def test_precision_is_validated(precision: object) -> None:
    with pytest.raises(ConfigurationError):
        HyperLogLog(precision)  # type: ignore[arg-type]  # the error is the point


def test_exact_below_limit_then_registers() -> None:
    h = HyperLogLog()
    for n in range(1, EXACT_LIMIT + 1):
        h.add(n * 7919)
        h.add(n * 7919)  # repeats change nothing
        assert h.estimate() == n
    assert h.encoding == "exact"
    h.add(10**9)
    assert h.encoding == "sparse"
    # registers now: a register collision among 65 hashes (12 % likely) may hide one
    assert EXACT_LIMIT <= h.estimate() <= EXACT_LIMIT + 1
    h.update(range(20_000))
    assert h.encoding == "dense"


@pytest.mark.parametrize("precision", range(4, 19))
def test_every_precision_round_trips_and_estimates(precision: int) -> None:
    rng = random.Random(precision)
    h = HyperLogLog(precision)
    members = [rng.getrandbits(32) for _ in range(3000)]
    for i, m in enumerate(members):
        h.add(m)
        if i in {0, 50, 500, 2999}:
            back = HyperLogLog.from_bytes(h.to_bytes())
            assert back == h
            assert back.estimate() == h.estimate()
    n = len(set(members))
    assert abs(h.estimate() - n) <= 5 * h.relative_error * n + 1


def test_set_like_api() -> None:
    a, b = HyperLogLog(), HyperLogLog()
    a.update([b"x", "y", 3, IPv4Address("192.0.2.1")])
    b.update(["y", 4])
    assert (a | b).estimate() == 5
    assert a.union(b) == b.union(a)
    c = a.copy()
    c |= b
    assert c == a | b
    assert c != a
    assert a.estimate() == 4  # | does not mutate
    assert not HyperLogLog()
    assert a
    assert not hasattr(a, "__len__")
    with pytest.raises(TypeError):
        hash(a)
    assert pickle.loads(pickle.dumps(a)) == a
    a.clear()
    assert a.estimate() == 0
    assert "encoding=exact" in repr(a)


def test_equal_content_gives_equal_sketches_in_any_order() -> None:
    rng = random.Random(7)
    members = [rng.getrandbits(40) for _ in range(6000)]
    a, b = HyperLogLog(), HyperLogLog()
    a.update(members)
    b.update(reversed(members))
    assert a == b
    assert a.to_bytes() == b.to_bytes()
    # built from merges of parts, in any grouping
    parts = [HyperLogLog() for _ in range(5)]
    for i, m in enumerate(members):
        parts[i % 5].add(m)
    merged = parts[0].union(*parts[1:])
    assert merged == a
    chained = HyperLogLog()
    for p in parts:
        chained |= p
    assert chained == a


def test_incompatible_merges_raise() -> None:
    with pytest.raises(IncompatibleError, match="precision 14 and 12"):
        HyperLogLog(14) | HyperLogLog(12)
    with pytest.raises(TypeError):
        HyperLogLog().merge({1, 2})  # type: ignore[arg-type]  # the error is the point
    assert HyperLogLog().__or__(3) is NotImplemented  # type: ignore[operator]  # ditto


def test_small_sketch_is_small() -> None:
    h = HyperLogLog()
    h.update([3325256711, 3325256712, 3325256713])
    assert len(h.to_bytes()) <= 40
    assert h.memory_usage() <= 200
    d = HyperLogLog()
    d.update(range(100_000))
    assert len(d.to_bytes()) == 6 + 3 * 2**14 // 4 + 4
    assert d.memory_usage() <= 16_896


def _sketches() -> list[HyperLogLog]:
    out = []
    for n in (0, 3, EXACT_LIMIT, 500, 50_000):
        h = HyperLogLog(12)
        h.update(range(n))
        out.append(h)
    return out


@pytest.mark.parametrize("sketch", _sketches(), ids=lambda s: s.encoding)
def test_corrupt_and_truncated_bytes_raise(sketch: HyperLogLog) -> None:
    raw = sketch.to_bytes()
    for cut in {0, 1, 5, 9, len(raw) // 2, len(raw) - 1}:
        with pytest.raises(CorruptDataError):
            HyperLogLog.from_bytes(raw[:cut])
    rng = random.Random(1)
    for _ in range(20):
        pos = rng.randrange(len(raw))
        bad = bytearray(raw)
        bad[pos] ^= 1 << rng.randrange(8)
        with pytest.raises((CorruptDataError, IncompatibleError)):
            HyperLogLog.from_bytes(bytes(bad))
    with pytest.raises(CorruptDataError, match="magic"):
        HyperLogLog.from_bytes(b"XX" + raw[2:])


def _with_crc(body: bytes) -> bytes:
    import zlib

    return body + zlib.crc32(body).to_bytes(4, "little")


def test_unknown_version_hash_and_encoding() -> None:
    raw = HyperLogLog().to_bytes()[:-4]
    with pytest.raises(IncompatibleError, match="version 2"):
        HyperLogLog.from_bytes(_with_crc(raw[:2] + b"\x02" + raw[3:]))
    with pytest.raises(IncompatibleError, match="hash id 9"):
        HyperLogLog.from_bytes(_with_crc(raw[:4] + b"\x09" + raw[5:]))
    with pytest.raises(CorruptDataError, match="encoding 7"):
        HyperLogLog.from_bytes(_with_crc(raw[:5] + b"\x07" + raw[6:]))
    with pytest.raises(CorruptDataError, match="precision 30"):
        HyperLogLog.from_bytes(_with_crc(raw[:3] + b"\x1e" + raw[4:]))
    # valid CRC but register value above 64 - p + 1
    dense = bytearray(HyperLogLog(4).to_bytes()[:-4])
    dense[5] = 2
    with pytest.raises(CorruptDataError):
        HyperLogLog.from_bytes(_with_crc(bytes(dense) + b"\xff" * 12))
    # valid CRC, unsorted exact hashes
    body = raw[:5] + b"\x00" + (2).to_bytes(8, "little") + (1).to_bytes(8, "little")
    with pytest.raises(CorruptDataError, match="sorted"):
        HyperLogLog.from_bytes(_with_crc(body))


def test_ipv6_ints_and_huge_ints() -> None:
    h = HyperLogLog()
    base = int(IPv6Address("2001:db8::"))
    h.update(base + i for i in range(1000))
    assert abs(h.estimate() - 1000) <= 30  # 5 sigma at n=1000, p=14
    before = h.estimate()
    h.add(2**300)
    assert before <= h.estimate() <= before + 2


@pytest.mark.parametrize("intruder", [1.0, 2.5, complex(1, 0)])
def test_a_non_member_type_in_a_repetitive_batch_is_refused_not_dropped(intruder: object) -> None:
    # 1.0 == 1 in a set: the bulk path must not let it vanish among 600 repeats of 1
    batch: list[object] = [1] * 600 + [intruder]
    with pytest.raises(TypeError):
        HyperLogLog().update(batch)  # type: ignore[arg-type]  # the wrong type is the point


def test_a_repetitive_batch_of_members_is_still_exact() -> None:
    h = HyperLogLog()
    h.update([1, b"x", "x", "y", True] * 300)
    assert h.estimate() == 3  # True is the int 1, "x" is hashed as its UTF-8 bytes b"x"
