"""Union laws and lossless serialization, as properties (hypothesis)."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from authabuse import CorruptDataError, HyperLogLog, IncompatibleError

members = st.one_of(st.integers(0, 2**128 - 1), st.binary(max_size=20), st.text(max_size=10))


@st.composite
def sketches(draw: st.DrawFn) -> HyperLogLog:
    h = HyperLogLog(draw(st.just(8)))
    h.update(draw(st.lists(members, max_size=120)))
    # sometimes a big range so that dense sketches are covered too
    if draw(st.booleans()):
        start = draw(st.integers(0, 2**40))
        h.update(range(start, start + draw(st.sampled_from([50, 300, 2000]))))
    return h


@settings(max_examples=80, deadline=None)
@given(sketches(), sketches(), sketches())
def test_union_commutative_associative_idempotent(
    a: HyperLogLog, b: HyperLogLog, c: HyperLogLog
) -> None:
    assert a | b == b | a
    assert (a | b) | c == a | (b | c)
    assert a.union(b, c) == c.union(a, b)
    assert a | a == a
    assert (a | b) | b == a | b
    merged = a.copy()
    merged |= b
    assert merged == a | b


@settings(max_examples=120, deadline=None)
@given(sketches())
def test_bytes_round_trip_is_lossless(a: HyperLogLog) -> None:
    raw = a.to_bytes()
    back = HyperLogLog.from_bytes(raw)
    assert back == a
    assert back.to_bytes() == raw
    assert back.estimate() == a.estimate()
    assert back.encoding == a.encoding
    # the copy keeps working like the original
    back.add(b"new member")
    a.add(b"new member")
    assert back == a


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    with contextlib.suppress(CorruptDataError, IncompatibleError):
        HyperLogLog.from_bytes(raw)


@settings(max_examples=60, deadline=None)
@given(sketches(), st.integers(0, 10_000), st.integers(0, 255))
def test_any_single_byte_change_is_caught(a: HyperLogLog, pos: int, flip: int) -> None:
    raw = bytearray(a.to_bytes())
    pos %= len(raw)
    raw[pos] ^= flip or 1
    try:
        back = HyperLogLog.from_bytes(bytes(raw))
    except (CorruptDataError, IncompatibleError):
        return
    raise AssertionError(f"corruption at byte {pos} went unnoticed: {back!r}")


@settings(max_examples=60, deadline=None)
@given(st.lists(members, max_size=200))
def test_order_of_adds_does_not_matter(items: list[int | bytes | str]) -> None:
    a, b = HyperLogLog(10), HyperLogLog(10)
    a.update(items)
    for m in reversed(items):
        b.add(m)
    assert a == b
    assert a.estimate() == b.estimate()


ints_around_the_fast_path = st.one_of(
    st.integers(0, 2**32 - 1),  # add()'s inlined hash
    st.integers(2**32 - 3, 2**32 + 3),  # its edge
    st.integers(2**32, 2**64 - 1),  # hash64's first limb
)


@settings(max_examples=80, deadline=None)
@given(st.lists(ints_around_the_fast_path, max_size=400), st.sampled_from([4, 6, 8]))
def test_one_by_one_adds_equal_update_in_every_tier(items: list[int], p: int) -> None:
    # add() inlines the hash and the register raise; update() and hash64 do not
    a, b = HyperLogLog(p), HyperLogLog(p)
    for m in items:
        a.add(m)
    b.update(items)
    assert a == b
    assert a.to_bytes() == b.to_bytes()
    assert a.estimate() == b.estimate()
