"""Distinct counters against their Python peers, all at precision 14, one run.

Peers: datasketch.HyperLogLog, datasketch.HyperLogLogPlusPlus, the hyperloglog package,
and a plain set. Workload: random IPv4 addresses (seeded); authabuse gets them as ints
(its fast path, ``int(ip)``) and, in a second row, as 4 packed bytes like the peers.

    python benchmarks/bench_counters.py [--quick]

Writes the ``bench_counters`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import random
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import datasketch
import hyperloglog
import numpy as np

from _common import machine_line, median_time, update_results
from authabuse import HyperLogLog
from authabuse.counters import union_all, update_array
from authabuse.counters._hll import _KEYS

P = 14
PASSES = 5


def deep_size(obj: object) -> int:
    """Bytes of ``obj`` and everything it references that is not shared process-wide.

    Excluded: types, modules, functions (code), cached small ints, and authabuse's
    per-precision constant tuple (one per process, shared by every sketch).
    """
    shared = {id(v) for t in _KEYS.values() for v in (t, *t)}
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or id(o) in shared:
            continue
        seen.add(id(o))
        if isinstance(o, type | types.ModuleType | types.FunctionType | types.BuiltinFunctionType):
            continue
        if isinstance(o, int) and -5 <= o <= 256:
            continue
        total += sys.getsizeof(o)
        stack.extend(gc.get_referents(o))
    return total


@dataclass
class Impl:
    """One contender: how to make it, add one member, add many, estimate, serialize."""

    name: str
    make: Callable[[], Any]
    add: Callable[[Any], Callable[[Any], Any]]
    members: str  # "int" or "bytes"
    estimate: Callable[[Any], float]
    serialize: Callable[[Any], bytes]
    bulk: Callable[[Any, list[Any]], None] | None = None

    def fill(self, data: Iterable[Any]) -> Any:
        sk = self.make()
        if self.bulk is not None:
            self.bulk(sk, list(data))
        else:
            f = self.add(sk)
            for x in data:
                f(x)
        return sk


def impls() -> list[Impl]:
    err = 1.04 / 2 ** (P / 2) * (1 + 1e-9)
    return [
        Impl("authabuse.HyperLogLog (int)", lambda: HyperLogLog(P), lambda s: s.add, "int",
             lambda s: s.estimate(), lambda s: s.to_bytes(), lambda s, d: s.update(d)),
        Impl("authabuse.HyperLogLog (bytes)", lambda: HyperLogLog(P), lambda s: s.add, "bytes",
             lambda s: s.estimate(), lambda s: s.to_bytes(), lambda s, d: s.update(d)),
        Impl("datasketch.HyperLogLog", lambda: datasketch.HyperLogLog(p=P), lambda s: s.update,
             "bytes", lambda s: s.count(), pickle.dumps),
        Impl("datasketch.HyperLogLogPlusPlus", lambda: datasketch.HyperLogLogPlusPlus(p=P),
             lambda s: s.update, "bytes", lambda s: s.count(), pickle.dumps),
        Impl("hyperloglog.HyperLogLog", lambda: hyperloglog.HyperLogLog(err), lambda s: s.add,
             "bytes", lambda s: s.card(), pickle.dumps, lambda s, d: s.add_bulk(d)),
        Impl("set", set, lambda s: s.add, "int", len, pickle.dumps, lambda s, d: s.update(d)),
    ]  # fmt: skip


def cpu_median(func: Callable[[], object], repeat: int) -> float:
    """Median CPU seconds of this process over ``repeat`` runs of ``func``."""
    return median_time(func, repeat=repeat, clock=time.process_time)


def per_call(func: Callable[[], object], calls: int) -> float:
    """Median seconds per call of ``func`` over 5 batches of ``calls`` calls."""

    def batch() -> None:
        for _ in range(calls):
            func()

    return median_time(batch, repeat=5) / calls


def repeats_by_tier(
    ints: list[int], stream: list[int], rng: random.Random
) -> tuple[list[str], int]:
    """Where the repeat-heavy time goes: add() repeats per tier, and the sparse share.

    For a sketch in each tier, add() of members already in it against set.add of the
    same members into a set already holding them; then how many of the stream's adds
    find the sketch in the sparse tier.
    """
    tier_rows = []
    for size in (50, 2_000, 20_000):
        members = ints[:size]
        h = HyperLogLog(P)
        h.update(members)
        s_full = set(members)
        again = [members[rng.randrange(size)] for _ in range(50_000)]

        def rep_ours(f: Callable[[Any], None] = h.add, xs: list[int] = again) -> None:
            for x in xs:
                f(x)

        def rep_set(f: Callable[[Any], None] = s_full.add, xs: list[int] = again) -> None:
            for x in xs:
                f(x)

        t_h = cpu_median(rep_ours, repeat=3) / len(again) * 1e9
        t_s = cpu_median(rep_set, repeat=3) / len(again) * 1e9
        tier_rows.append(f"{h.encoding} ({size:,} members) {t_h:.0f} ns vs {t_s:.0f} ns")
    sparse_share = 0
    h = HyperLogLog(P)
    for x in stream:
        h.add(x)
        sparse_share += h.encoding == "sparse"
    return tier_rows, sparse_share


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller workload")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    n = 50_000 if args.quick else 200_000
    big = 200_000 if args.quick else 1_000_000
    rng = random.Random(20240501)
    ints = [rng.getrandbits(32) for _ in range(n)]
    big_ints = np.random.default_rng(7).integers(0, 2**32, big, dtype=np.uint64)
    true_big = len(np.unique(big_ints))
    # repeat-heavy stream: 10 % first sightings, 90 % repeats of an address already seen
    stream: list[int] = []
    seen: list[int] = []
    fresh = iter(ints)
    for _ in range(n):
        if not seen or rng.random() < 0.1:
            seen.append(next(fresh))
            stream.append(seen[-1])
        else:
            stream.append(seen[rng.randrange(len(seen))])
    as_bytes = {id(ints): [x.to_bytes(4, "big") for x in ints],
                id(stream): [x.to_bytes(4, "big") for x in stream]}  # fmt: skip
    big_list = big_ints.tolist()
    big_bytes = [x.to_bytes(4, "big") for x in big_list]
    true_n = len(set(ints))

    rows = []
    figures: dict[str, dict[str, float]] = {}
    contenders = impls()

    def conv(data: list[int], impl: Impl) -> list[Any]:
        return data if impl.members == "int" else as_bytes[id(data)]

    def interleaved(data: list[int]) -> dict[str, float]:
        """Seconds per add for each contender, adding ``data`` one member at a time.

        The data is cut in 20 chunks; chunk k goes into every contender's sketch before
        chunk k + 1 goes into any, so load swings on the shared machine hit all alike.
        Each contender's own sketch grows over the chunks exactly as in one long run.
        Chunks are timed in CPU time of this process (``time.process_time``), so the
        time the scheduler gives other engineers' jobs is not charged to a contender.
        """
        size = -(-len(data) // 20)
        spent = dict.fromkeys((i.name for i in contenders), 0.0)
        adders = {i.name: i.add(i.make()) for i in contenders}
        for k in range(0, len(data), size):
            for impl in contenders:
                chunk = conv(data, impl)[k : k + size]
                f = adders[impl.name]
                start = time.process_time()
                for x in chunk:
                    f(x)
                spent[impl.name] += time.process_time() - start
        return {name: t / len(data) for name, t in spent.items()}

    # one-by-one adds: PASSES interleaved passes, median per contender
    add_times: dict[str, list[float]] = {i.name: [] for i in contenders}
    rep_times: dict[str, list[float]] = {i.name: [] for i in contenders}
    for _ in range(PASSES):
        for name, t in interleaved(ints).items():
            add_times[name].append(t)
        for name, t in interleaved(stream).items():
            rep_times[name].append(t)

    for impl in contenders:
        print(f"... {impl.name}", file=sys.stderr)
        t_add = statistics.median(add_times[impl.name])
        t_rep = statistics.median(rep_times[impl.name])
        small = impl.make()
        for x in conv(ints, impl)[:3]:
            impl.add(small)(x)
        full = impl.fill(big_list if impl.members == "int" else big_bytes)
        mid = impl.fill(conv(ints, impl))
        est_small = per_call(lambda s=small, i=impl: i.estimate(s), 2000)  # type: ignore[misc]
        est_big = per_call(lambda s=full, i=impl: i.estimate(s), 200)  # type: ignore[misc]
        err_mid = impl.estimate(mid) / true_n - 1
        err_big = impl.estimate(full) / true_big - 1
        fig = {
            "add_ns": t_add * 1e9,
            "repeat_ns": t_rep * 1e9,
            "est_small_us": est_small * 1e6,
            "est_big_us": est_big * 1e6,
            "mem3": deep_size(small),
            "ser3": len(impl.serialize(small)),
            "mem_big": deep_size(full),
            "ser_big": len(impl.serialize(full)),
            "err_mid": err_mid,
            "err_big": err_big,
        }
        figures[impl.name] = fig
        rows.append(
            f"| {impl.name} | {1e9 / fig['add_ns'] / 1e6:.2f} M | {fig['repeat_ns']:.0f} ns | "
            f"{fig['est_small_us']:.2f} / {fig['est_big_us']:.2f} us | "
            f"{fig['mem3']:,} / {fig['ser3']:,} B | {fig['mem_big']:,} / {fig['ser_big']:,} B | "
            f"{err_mid:+.2%} / {err_big:+.2%} |"
        )

    ours = figures["authabuse.HyperLogLog (int)"]

    # our update() on the repeat-heavy stream, and set.update, for the bulk view
    def upd_ours() -> None:
        HyperLogLog(P).update(stream)

    def upd_set() -> None:
        s: set[int] = set()
        s.update(stream)

    t_upd_ours = cpu_median(upd_ours, repeat=3) / n * 1e9
    t_upd_set = cpu_median(upd_set, repeat=3) / n * 1e9

    tier_rows, sparse_share = repeats_by_tier(ints, stream, rng)
    # estimate at every size: the worst case over cardinalities
    worst_est = 0.0
    for size in (1, 64, 65, 1000, 4096, 5000, 50_000):
        h = HyperLogLog(P)
        h.update(range(size))
        worst_est = max(worst_est, per_call(h.estimate, 2000) * 1e6)
    worst_est = max(worst_est, ours["est_small_us"], ours["est_big_us"])

    # numpy batch path
    def batch() -> None:
        update_array(HyperLogLog(P), big_ints)

    t_batch = median_time(batch, repeat=5)
    dense = []
    nrng = np.random.default_rng(3)
    for _ in range(100):
        h = HyperLogLog(P)
        update_array(h, nrng.integers(0, 2**32, 50_000, dtype=np.uint64))
        dense.append(h)
    assert all(h.encoding == "dense" for h in dense)
    t_union_np = median_time(lambda: union_all(dense), repeat=7)
    t_union_py = median_time(lambda: dense[0].union(*dense[1:]), repeat=7)
    assert union_all(dense) == dense[0].union(*dense[1:])

    def pass_ratios(peer: str) -> str:
        ours_t = add_times["authabuse.HyperLogLog (int)"]
        return ", ".join(f"{p / o:.2f}x" for p, o in zip(add_times[peer], ours_t, strict=True))

    ds = figures["datasketch.HyperLogLog"]
    hp = figures["hyperloglog.HyperLogLog"]
    st = figures["set"]
    dense_one = deep_size(dense[0])
    checks = [
        ("single adds vs datasketch.HyperLogLog", ds["add_ns"] / ours["add_ns"], ">= 2.5x"),
        ("single adds vs hyperloglog package", hp["add_ns"] / ours["add_ns"], ">= 3x"),
        ("repeat-heavy add() vs set.add", ours["repeat_ns"] / st["repeat_ns"], "<= 3x"),
        ("repeat-heavy update() vs set.add loop", t_upd_ours / st["repeat_ns"], "<= 3x"),
        ("worst estimate() over sizes (us)", worst_est, "<= 2 us"),
        ("3-IP sketch in memory (B)", ours["mem3"], "<= 200 B"),
        ("3-IP sketch serialized (B)", ours["ser3"], "<= 40 B"),
        ("dense p14 in memory (B)", dense_one, "<= 16.5 KB (16,896 B)"),
        ("numpy batch (M members/s)", big / t_batch / 1e6, ">= 10 M/s"),
        ("union of 100 dense p14, numpy (ms)", t_union_np * 1e3, "< 5 ms"),
        ("union of 100 dense p14, pure (ms)", t_union_py * 1e3, "(no target)"),
    ]
    met = {
        0: checks[0][1] >= 2.5,
        1: checks[1][1] >= 3,
        2: checks[2][1] <= 3,
        3: checks[3][1] <= 3,
        4: checks[4][1] <= 2,
        5: checks[5][1] <= 200,
        6: checks[6][1] <= 40,
        7: checks[7][1] <= 16_896,
        8: checks[8][1] >= 10,
        9: checks[9][1] < 5,
    }
    lines = [
        "## Distinct counters (`python benchmarks/bench_counters.py`)",
        "",
        machine_line() + f" Load average {load_start:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at the end, on "
        f"{os.cpu_count()} cores (other engineers' jobs), so compare ratios, not absolutes.",
        f"Workload: {n:,} random IPv4 addresses (seeded) for adds; a repeat-heavy stream of "
        f"{n:,} adds (10 % first sightings, 90 % repeats); {big:,} random IPv4 for the "
        "large sketches (filled through each library's bulk API). Precision 14 everywhere. "
        "authabuse gets ints (`int(ip)`), peers 4 packed bytes; the `(bytes)` row gives "
        "authabuse the peers' bytes. Times are medians (adds, updates and repeats: CPU "
        f"time of this process; one-by-one adds over {PASSES} interleaved passes); memory "
        "is the deep size (types, code, cached small ints and authabuse's one-per-process "
        "constant tuples excluded); "
        "peers serialize with pickle, authabuse with `to_bytes()`.",
        "",
        "| implementation | single adds/s | repeat-heavy, per add | estimate() at 3 / at "
        f"{big:,} | 3 IPs: memory / serialized | {big:,}: memory / serialized | "
        f"error at {n:,} / {big:,} |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Bulk: authabuse `update(stream)` on the repeat-heavy stream {t_upd_ours:.0f} ns/member "
        f"(set.update {t_upd_set:.0f} ns). numpy `update_array` {big / t_batch / 1e6:.1f} M "
        f"members/s; union of 100 dense sketches: numpy `union_all` {t_union_np * 1e3:.2f} ms, "
        f"pure `union` {t_union_py * 1e3:.2f} ms.",
        "",
        "Repeats by tier, `add()` of a member already present vs `set.add` of the same "
        f"members (median of 50,000): {'; '.join(tier_rows)}. The repeat-heavy stream "
        f"runs {sparse_share / n:.0%} of its adds in the sparse tier (from about 4,600 to "
        "20,000 distinct it is dense). No cache or memo: every add() hashes its member.",
        "",
        "| target (issue 3) | measured | goal | met |",
        "|---|---|---|---|",
    ]
    for i, (what, value, goal) in enumerate(checks):
        verdict = "" if i not in met else ("yes" if met[i] else "**no**")
        shown = f"{value:.2f}x" if "vs" in what else f"{value:,.2f}"
        lines.append(f"| {what} | {shown} | {goal} | {verdict} |")
    lines += [
        "",
        f"Single-add ratio in each of the {PASSES} interleaved passes (the table takes the median "
        f"times): vs datasketch.HyperLogLog {pass_ratios('datasketch.HyperLogLog')}; "
        f"vs hyperloglog {pass_ratios('hyperloglog.HyperLogLog')}.",
    ]
    md = "\n".join(lines)
    print(md)
    update_results("bench_counters", md)


if __name__ == "__main__":
    main()
