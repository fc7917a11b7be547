"""Conformance kits for counter stores and distinct-count sketches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authabuse.counters._store import CounterStore
from authabuse.errors import ConfigurationError

__all__ = ["check_counter_store", "check_sketch"]

_T0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z, a slice boundary for any width dividing 1 h


def _fail(what: str) -> AssertionError:
    return AssertionError(f"counter store violates the contract: {what}")


def check_counter_store(factory: Callable[[], CounterStore]) -> None:
    """Check that the stores made by ``factory`` honour the :class:`CounterStore` contract.

    ``factory()`` must return a new, empty store each time (its slice width and
    retention are read from the store; retention must cover at least 3 slices). Raises
    :class:`AssertionError` naming the first violated rule. The optional extensions are
    checked when the store has them: ``batch(ops)`` must answer exactly what the same
    calls made one at a time answer, writes made with ``send(ops)`` must be seen by the
    next read, and records (``put_record``/``get_record``) must
    keep, merge, remove and forget fields as the protocol says.

    >>> from authabuse.counters import MemoryStore
    >>> check_counter_store(lambda: MemoryStore(slice_seconds=60, retention=3600))
    """
    store = factory()
    if not isinstance(store, CounterStore):
        raise _fail("does not implement the CounterStore protocol")
    s = float(store.slice_seconds)
    r = float(store.retention)
    if not (s > 0 and r >= 3 * s):
        raise _fail(f"needs slice_seconds > 0 and retention >= 3 slices, got {s}, {r}")
    t0 = (_T0 // s) * s  # start of a slice
    _check_empty(store, t0, s)
    _check_distinct(store, t0, s)
    _check_counts(store, t0, s)
    _check_admin(store, t0, s)
    _check_retention(factory(), t0, s, r)
    _check_keys(factory(), t0)
    _check_accuracy(factory(), s)
    if hasattr(store, "batch"):
        _check_batch(factory(), factory(), t0, s)
    if hasattr(store, "put_record"):
        _check_records(factory(), t0)


def _check_empty(store: CounterStore, t0: float, s: float) -> None:
    key = ("alice@example.jp", "ip")
    if store.count_distinct(key, at=t0, window=s) != 0:
        raise _fail("an unknown key must count 0 distinct members")
    if store.counts(key, at=t0, window=s) != {}:
        raise _fail("an unknown key must have no counts")
    if len(store) != 0:
        raise _fail("reading must not create keys")


def _check_distinct(store: CounterStore, t0: float, s: float) -> None:
    key = ("alice@example.jp", "ip")
    store.add_distinct(key, [3325256711, 3325256711, b"\x01", "x"], at=t0)
    store.add_distinct(key, [3325256711], at=t0 + s / 2)
    if (n := store.count_distinct(key, at=t0 + s / 2, window=s)) != 3:
        raise _fail(f"3 distinct members in one slice counted as {n}")
    big_v6 = 0x20010DB8 << 96 | 1
    store.add_distinct(key, [big_v6], at=t0 + s)
    if (n := store.count_distinct(key, at=t0 + s, window=2 * s)) != 4:
        raise _fail(f"union over two slices (IPv6 int included) counted {n}, expected 4")
    if (n := store.count_distinct(key, at=t0 + s, window=s)) != 1:
        raise _fail(f"a one-slice window must hold only the current slice, counted {n}")
    if (n := store.count_distinct(key, at=t0 + s, window=s * 1.5)) != 4:
        raise _fail(f"a window is rounded up to whole slices, counted {n}, expected 4")
    if (n := store.count_distinct(key, at=t0 + 3 * s, window=2 * s)) != 0:
        raise _fail(f"a window after the last event must be empty, counted {n}")
    other = (3325256711, "accounts")
    store.add_distinct(other, ["alice@example.jp", "bob@example.jp"], at=t0)
    store.add_distinct(("3325256711", "accounts"), ["carol@example.jp"], at=t0)
    if store.count_distinct(other, at=t0, window=s) != 2:
        raise _fail("keys with int elements must be kept apart from keys with text elements")
    if store.count_distinct(key, at=t0 + s, window=2 * s) != 4:
        raise _fail("adding to one key changed another")


def _check_counts(store: CounterStore, t0: float, s: float) -> None:
    ckey = ("alice@example.jp", "country")
    store.incr(ckey, "JP", at=t0)
    store.incr(ckey, "JP", 2, at=t0 + s)
    store.incr(ckey, "BR", at=t0 + s)
    if (c := store.counts(ckey, at=t0 + s, window=2 * s)) != {"JP": 3, "BR": 1}:
        raise _fail(f"counts over two slices were {c}")
    if (c := store.counts(ckey, at=t0 + s, window=s)) != {"JP": 2, "BR": 1}:
        raise _fail(f"counts over the current slice were {c}")
    if (c := store.counts(ckey, at=t0 + 3 * s, window=s)) != {}:
        raise _fail(f"a window after the last event must be empty, got {c}")
    if store.count_distinct(ckey, at=t0 + s, window=s) != 0:
        raise _fail("counted fields and distinct members of one key must be independent")


def _check_admin(store: CounterStore, t0: float, s: float) -> None:
    key = ("alice@example.jp", "ip")
    if len(store) < 4:
        raise _fail(f"len() must count the keys held (4 written), got {len(store)}")
    used = store.memory_usage()
    if not isinstance(used, int) or used <= 0:
        raise _fail(f"memory_usage() must be a positive int, got {used!r}")
    store.forget(key)
    if store.count_distinct(key, at=t0 + s, window=2 * s) != 0:
        raise _fail("forget() must remove the key's members")
    if key in getattr(store, "keys", lambda: [])():
        raise _fail("forget() must remove the key")
    store.forget(("never", "seen"))


def _check_retention(store: CounterStore, t0: float, s: float, r: float) -> None:
    key = ("alice@example.jp", "ip")
    store.add_distinct(key, [1, 2], at=t0)
    late = t0 + r + 2 * s
    store.add_distinct(key, [1], at=late)
    if (n := store.count_distinct(key, at=late, window=r)) != 1:
        raise _fail(f"slices older than the retention still counted ({n})")
    try:
        store.count_distinct(key, at=late, window=r + 2 * s)
    except ConfigurationError:
        pass
    else:
        raise _fail("a window longer than the retention must raise ConfigurationError")


def _check_keys(store: CounterStore, t0: float) -> None:
    for bad in ("alice:ip", (), ("a", 1.5), ["alice", "ip"]):
        try:
            store.add_distinct(bad, [1], at=t0)  # type: ignore[arg-type]  # the point
        except TypeError:
            continue
        raise _fail(f"key {bad!r} must be refused with TypeError")
    try:
        store.add_distinct(("k",), "not an iterable of members", at=t0)
    except TypeError:
        pass
    else:
        raise _fail("a bare str passed as members must raise TypeError")


def _check_accuracy(store: CounterStore, s: float) -> None:
    future = 4_102_444_800.0  # 2100-01-01: time comes from events, not the clock
    store.add_distinct(("big", "ip"), range(20_000), at=future)
    n = store.count_distinct(("big", "ip"), at=future, window=s)
    if abs(n - 20_000) > 20_000 * 0.05:
        raise _fail(f"20000 distinct members estimated as {n} (more than 5 % off)")


def _batch_ops(t0: float, s: float) -> list[tuple[Any, ...]]:
    a, b = ("alice@example.jp", "ip"), ("alice@example.jp", "n")
    ops: list[tuple[Any, ...]] = [
        ("count_distinct", a, t0, s),
        ("add_distinct", a, [1, 2, 3], t0),
        ("add_distinct", a, [], t0),
        ("add_distinct", a, [3, 4], t0 + s),
        ("incr", b, "mails", 2, t0),
        ("incr", b, "c:JP", 1, t0 + s),
        ("count_distinct", a, t0 + s, 2 * s),
        ("count_distinct", a, t0 + s, s),
        ("counts", b, t0 + s, 2 * s),
        ("counts", b, t0, s),
        ("counts", ("nobody",), t0, s),
    ]
    return ops


def _check_batch(store: Any, twin: Any, t0: float, s: float) -> None:
    from authabuse.counters import apply_op

    ops = _batch_ops(t0, s)
    got = store.batch(ops)
    want = [apply_op(twin, op) for op in ops]
    if list(got) != want:
        raise _fail(f"batch(ops) answered {got!r}; the same calls one by one {want!r}")
    if got[6] != 4 or got[8] != {"mails": 2, "c:JP": 1}:
        raise _fail(f"batch reads must see the writes before them, got {got!r}")
    if store.batch([]) != []:
        raise _fail("an empty batch must answer []")
    send = getattr(store, "send", None)
    if send is not None:
        key = ("carol@example.jp", "n")
        send([("incr", key, "mails", 1, t0), ("add_distinct", key, [7], t0)])
        send([])
        if store.counts(key, at=t0, window=s) != {"mails": 1}:
            raise _fail("writes made with send(ops) must be seen by the next read")
        if store.count_distinct(key, at=t0, window=s) != 1:
            raise _fail("distinct members added with send(ops) must be seen by the next read")


def _check_records(store: Any, t0: float) -> None:
    key = ("alice@example.jp", "rec")
    if store.get_record(key) != {}:
        raise _fail("an unknown record must read as {}")
    store.put_record(key, {"first": "10", "usual": "JP n64500"}, at=t0, ttl=86_400)
    store.put_record(key, {"first": "99", "flag": "2"}, at=t0 + 1, ttl=86_400, keep_existing=True)
    if (r := store.get_record(key)) != {"first": "10", "usual": "JP n64500", "flag": "2"}:
        raise _fail(f"keep_existing must add only new fields, record is {r!r}")
    store.put_record(key, {"usual": "BR"}, at=t0 + 2, ttl=86_400, remove=["flag"])
    if (r := store.get_record(key)) != {"first": "10", "usual": "BR"}:
        raise _fail(f"a record update must overwrite and remove fields, record is {r!r}")
    if store.get_record(("alice@example.jp", "other")) != {}:
        raise _fail("records of different keys must be independent")
    for bad in ({"n": 1}, {1: "x"}):
        try:
            store.put_record(key, bad, at=t0, ttl=60)
        except TypeError:
            continue
        raise _fail(f"record fields must be str -> str; {bad!r} must raise TypeError")
    store.forget(key)
    if store.get_record(key) != {}:
        raise _fail("forget() must remove the key's record")


def check_sketch(factory: Callable[[], Any]) -> None:
    """Check a ``set``-like distinct-count sketch (``add``, ``update``, ``estimate``, ``|``).

    >>> from authabuse import HyperLogLog
    >>> check_sketch(HyperLogLog)
    """
    a, b = factory(), factory()
    if a.estimate() != 0:
        raise AssertionError("a new sketch must estimate 0")
    a.update(range(1000))
    b.update(range(500, 1500))
    for x in range(10):
        a.add(x)
    u = a | b
    for name, got, want in (("a", a, 1000), ("b", b, 1000), ("a|b", u, 1500)):
        est = got.estimate()
        if abs(est - want) > want * 0.1:
            raise AssertionError(f"sketch {name} estimated {est}, expected about {want}")
    if a.estimate() > u.estimate() + 15:
        raise AssertionError("a union must not count fewer than its parts")
    c = a.copy()
    c |= b
    if c.estimate() != u.estimate():
        raise AssertionError("|= and | disagree")
    if hasattr(type(a), "from_bytes"):
        back = type(a).from_bytes(a.to_bytes())
        if back.estimate() != a.estimate():
            raise AssertionError("a byte round trip changed the estimate")
