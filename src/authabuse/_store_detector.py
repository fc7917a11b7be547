"""The detector's state in a :class:`~authabuse.counters.CounterStore`, shared by servers.

``Detector(store=...)`` keeps everything several mail servers must share in the store,
so that each server's verdicts count what every other one has seen: per-account
windowed counts, the learned baseline, cross-account memory and the account's flag. The
rules and feature functions are the compact detector's own: for each event this module
reads the store (one batch), *materialises* the window view those functions read (the
same ``_Acct``/``_Win``/``_IPRec`` objects, holding only what this event needs), lets the
detector judge it, then writes the event's counts (a second batch).

Windows. The compact detector's windows are epoch-aligned buckets of the window length:
a feature over the short window covers the current and the previous short bucket. Here
every bucket is one store slice: a bucket's counters are written at the bucket's start
time (``bucket * window``), so reading a window is two slices, whatever the store's
slice width (it must not exceed the short window). The store must keep two long windows
(``retention >= 2 * long_window``). Counters of a bucket never move, so two servers'
writes to one bucket simply add up.

Key layout (``key[0]`` is the subject, the Redis Cluster hash tag):

=========================  =========  ==============================================
key                        kind       what
=========================  =========  ==============================================
``(acct, "S")``            counts     per short bucket: ``m`` mails, ``u`` mails from
                                      unusual networks, ``r`` recipients, ``ra``
                                      recipient addresses and ``rn`` those new to
                                      the account (``ua``/``un``: the same for mail
                                      from unusual networks), ``f`` failed
                                      logins, ``c:CC`` / ``n:NET`` events per country
                                      and network, ``nn``/``nw`` and ``cn``/``cw`` new
                                      networks and countries (first seen in the bucket
                                      alone / in the window ending with it)
``(acct, "L")``            counts     the same per long bucket
``(acct, "Si"|"Li")``      distinct   source addresses (IPv6 by /64) per bucket
``(acct, "Sd"|"Ld")``      distinct   recipient domains per bucket
``(acct, "ip", member)``   counts     one address's events ``e``/``E`` (short/long
                                      bucket) and mails ``n`` (short bucket)
``(acct, "it", member)``   record     that address's first and last mail per short bucket
``(acct, "Sm")``           counts     mails per address per short bucket (for
                                      ``mark_benign``'s usual addresses)
``(acct, "rec")``          record     first/last seen, last usual event, the learned
                                      baseline (usual networks and countries, usual
                                      addresses, peaks), the bucket last learned, the flag,
                                      ``rk``: the recipients it mailed (fingerprints)
``(member, "ipx")``        counts     per long bucket: accounts served (``a:ACCT``),
                                      failed logins (``f``)
``(member, "rec")``        record     ``abuse``: until when the address is marked
``(domain, "accts")``      distinct   accounts of the mail domain, per long bucket
``(domain, "flagged")``    record     flagged accounts of the domain and when
``("~cc", "c", CC)``       counts     events per country, all accounts (per long bucket)
``("~cc", "t")``           counts     events with a country, all accounts
``("~net", NET)``          distinct   accounts whose baseline holds the network, per long
                                      bucket of learning
=========================  =========  ==============================================

Differences from the compact detector, all deliberate: the global country shares decay
by halving once per long window over the last two buckets (the compact one halves its
running totals); a network is "popular" when at least three accounts learned it within
the store's retention (the compact one decays its counter by a quarter per long
window); accounts of a mail domain are counted over the store's retention. Per-bucket
networks and per-address runs are not capped (the compact detector caps them at 4096
per window to bound its memory; the store bounds memory with its own retention). In a
``check`` (not ``process``), a message's recipient domains count as new to the window
(the store cannot test membership of a domain without adding it).

Per recorded event, one batch of reads (with the writes that depend on nothing read in
front of them) and one batch of writes, sent without waiting where the store allows it
(``send``: the Redis store reads its replies with the next batch's); per check, one
batch of reads. With the Redis store each batch is one pipelined write: a recorded event
costs one round trip.
"""

from __future__ import annotations

import logging
import math
import sys
from array import array
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from authabuse.counters._store import Op, run_batch
from authabuse.detector import (
    _POPULAR,
    _RCPT_STEMS,
    _V6_MARK,
    _Acct,
    _busiest,
    _Ctx,
    _IPRec,
    _learned,
    _merged_usual,
    _not_kept,
    _prefix_net,
    _rcpt_learned,
    _rcpt_new,
    _rcpt_teaches,
    _rcpt_warm,
    _share_common,
    _share_home,
    _shared,
    _Win,
)
from authabuse.errors import ConfigurationError
from authabuse.rules import Level, Verdict, split_feature

if TYPE_CHECKING:
    from authabuse.detector import Detector

__all__ = ["StoreState"]

log = logging.getLogger("authabuse.detector")

_SUB, _AUTH_OK, _AUTH_FAIL = 0, 1, 2
_T = TypeVar("_T")


class _Post:
    """A step's writes whose results nobody reads: sent without waiting where possible."""

    __slots__ = ("ops",)

    def __init__(self, ops: list[Op]) -> None:
        self.ops = ops


# An event's store I/O as a generator: it yields a list of operations (a batch whose
# results it is sent back) or a _Post (writes, sent back None), and returns its result.
# StoreState._drive runs it on the store in this thread; authabuse._store_loop runs it
# on an asyncio loop without blocking (the detector's logic is written once).
_Steps: TypeAlias = Generator[Any, Any, _T]
_DOMAIN_FLAGGED_CAP = 1024
# Networks a verdict's evidence lists per window (``_View.geo_summary``'s top six): a
# store that summarises a window's buckets (RedisStore's "pair" reads) returns these
# and the event's own network, not every network the window holds.
_TOP_NETS = 6
_MARK_CAP = 512  # addresses of one abuse marked at its first verdict, at most
# A window bucket's counts of what was new to the account (``mark_benign`` takes them back)
_NOVELTY = ("nn", "nw", "cn", "cw", "u", "ua", "un", "rn")


class _Count:
    """A distinct set known only by its size (and whether one member is in it).

    It stands in for the compact detector's exact sets and sketches, so the feature
    functions' ``copy()``/``add()``/``estimate()`` calls work unchanged: adding the
    known member, or anything when ``frozen`` (the event is already counted), leaves
    the size alone; any other member adds one.
    """

    __slots__ = ("frozen", "member", "n")

    def __init__(self, n: int, member: Any = None, *, frozen: bool = False) -> None:
        self.n = n
        self.member = member
        self.frozen = frozen

    def copy(self) -> _Count:
        return _Count(self.n, self.member, frozen=self.frozen)

    def add(self, member: Any) -> None:
        if self.frozen or (self.member is not None and member == self.member):
            return
        self.n += 1
        self.member = member

    def estimate(self) -> int:
        return self.n


class _EventState:
    """What the feature functions read from ``view.det`` besides the account: one event's.

    The compact detector's cross-account tables, holding only this event's address,
    domain and network as read from the store.
    """

    __slots__ = (
        "_cc_common",
        "_dom_known",
        "_dom_n",
        "_domains",
        "_features",
        "_ips",
        "_net_popularity",
        "config",
    )

    def __init__(self, det: Detector) -> None:
        self.config = det.config
        self._features = det._store._features if det._store is not None else det._features
        self._ips: dict[int, _IPRec] = {}
        self._domains: dict[str, dict[str, float]] = {}
        self._net_popularity: dict[int, int] = {}
        self._dom_n = 0
        self._dom_known = False
        self._cc_common: tuple[int, int] = (0, 0)

    def _domain_size(self, account: str | None, pending: bool) -> int:
        if not account or "@" not in account:
            return 0
        return self._dom_n + (1 if pending and not self._dom_known else 0)

    def _country_common(self, cc: str | None, pure: bool) -> bool:
        return cc is not None and _share_common(*self._cc_common, pure)

    def _country_home(self, cc: str | None, pure: bool) -> bool:
        return cc is not None and _share_home(*self._cc_common, pure)


class _SWin(_Win):
    """A materialised window that also knows what its current bucket alone holds."""

    __slots__ = ("cur_ccs", "cur_nets")

    def __init__(self) -> None:
        super().__init__()
        self.cur_nets: set[int] = set()
        self.cur_ccs: set[str] = set()


class _NetCounts(dict[int, int]):
    """A window's networks with their events, as far as a verdict reads them.

    Holds the busiest networks (``_TOP_NETS``) and the event's own, with their counts;
    its length is the number of networks in the window (the ``asns_*`` features).
    """

    __slots__ = ("n",)

    def __init__(self, items: dict[int, int], n: int) -> None:
        super().__init__(items)
        self.n = n

    def __len__(self) -> int:
        return self.n


@dataclass(slots=True)
class _Read:
    """One event's reads, materialised."""

    acct: _Acct | None
    state: _EventState
    rec: dict[str, str]


def _trial_text(trial: tuple[tuple[Any, int], ...]) -> str:
    return " ".join(f"n{k}@{d}" if isinstance(k, int) else f"c{k}@{d}" for k, d in trial)


def _trial_parse(text: str) -> tuple[tuple[Any, int], ...]:
    out: list[tuple[Any, int]] = []
    for item in text.split():
        key, _, day = item.rpartition("@")
        out.append((int(key[1:]) if key[0] == "n" else sys.intern(key[1:]), int(day)))
    return tuple(out)


def _usual_text(usual: tuple[Any, ...]) -> str:
    return " ".join(f"n{k}" if isinstance(k, int) else f"c{k}" for k in usual)


def _baseline_of(rec: dict[str, str], now: float) -> _Acct:
    """Read an account record's first/last seen, baseline and peaks into an ``_Acct``.

    ``now`` stands in for a missing first or last seen (the event's time, or the
    record's own last).
    """
    acct = _Acct(now)
    acct.first = int(rec.get("first", int(now)))
    acct.last = float(rec.get("last", now))
    acct.last_usual = float(rec.get("lastu", "-inf"))
    acct.usual = _usual_parse(rec.get("usual", ""))
    acct.trial = _trial_parse(rec.get("trial", ""))
    kips = rec.get("kips", "")
    acct.known_ips = tuple(int(k) for k in kips.split(",")) if kips else ()
    acct.peak_mails = int(rec.get("pm", 0))
    acct.peak_ips = int(rec.get("pi", 0))
    return acct


def _usual_parse(text: str) -> tuple[Any, ...]:
    out: list[Any] = []
    for tok in text.split():
        out.append(int(tok[1:]) if tok[0] == "n" else sys.intern(tok[1:]))
    return tuple(out)


class StoreState:
    """The store-backed state of one :class:`~authabuse.detector.Detector` (internal).

    Built by ``Detector(store=...)``; the detector routes ``check``, ``process``,
    ``record`` and ``mark_benign`` here once an event has passed its common gate (time
    order, statistics, allowlists).
    """

    def __init__(self, det: Detector, store: Any) -> None:
        from authabuse.counters import CounterStore

        if not isinstance(store, CounterStore):
            raise ConfigurationError(
                f"store must implement the CounterStore protocol (see authabuse.counters), "
                f"not {type(store).__name__}"
            )
        cfg = det.config
        slice_s = float(store.slice_seconds)
        if slice_s > cfg.short_window:
            raise ConfigurationError(
                f"the store's slices ({slice_s:g} s) must not be longer than the detector's "
                f"short window ({cfg.short_window} s)"
            )
        if float(store.retention) < 2 * cfg.long_window:
            raise ConfigurationError(
                f"the store keeps {float(store.retention):g} s; the detector needs two long "
                f"windows ({2 * cfg.long_window} s): e.g. MemoryStore(retention="
                f"{2 * cfg.long_window}) or RedisStore(url, retention={2 * cfg.long_window})"
            )
        idle = getattr(store, "idle_ttl", None)
        if isinstance(idle, int | float) and idle < 2 * cfg.long_window:
            raise ConfigurationError(
                f"the store forgets keys idle for {idle:g} s; the detector needs "
                f"{2 * cfg.long_window} s"
            )
        self.det = det
        self.store = store
        self._slice = slice_s
        self._retention = float(store.retention)
        self._records: Any = store
        if not (hasattr(store, "put_record") and hasattr(store, "get_record")):
            from authabuse.counters import MemoryStore

            # A store without records: baselines and flags stay in this process.
            self._records = MemoryStore(
                slice_seconds=slice_s, retention=self._retention, max_keys=cfg.max_accounts
            )
            log.warning(
                "%s has no records (put_record/get_record): learned baselines and flags "
                "are kept in this process, not shared",
                type(store).__name__,
            )
        self._split = self._records is not store
        # A store that summarises a window's two buckets in one read ("pair") and takes
        # one slice's counted fields in one write ("incr_fields"): RedisStore
        extended: Any = () if self._split else getattr(store, "extended_ops", ())
        self._pairs = "pair" in extended
        self._grouping = "incr_fields" in extended
        self._runner: Any = None  # a LoopRunner while it runs this detector's events
        self._rec_ttl = float(cfg.idle_ttl) if cfg.idle_ttl > 0 else float(cfg.long_window)
        self.flagged_accounts = 0
        # Recipient domains cost two sketches per message: kept only when a rule reads them.
        self._rdoms = any(split_feature(n)[0] == "rcpt_domains" for n in det.rules.reads)
        # First-time recipients: the account's remembered recipients and two counts per
        # window, kept only when a rule reads them too.
        self._rk = any(split_feature(n)[0] in _RCPT_STEMS for n in det.rules.reads)
        self._features = self.features_for(det._features)

    def features_for(self, table: dict[str, Any]) -> dict[str, Any]:
        """Return the detector's feature ``table`` with what this state does not keep refused."""
        features = dict(table)
        for name in features:
            stem = split_feature(name)[0]
            if (stem == "rcpt_domains" and not self._rdoms) or (
                stem in _RCPT_STEMS and not self._rk
            ):
                features[name] = _not_kept(name, "store-backed detector")
        self._features = features
        return features

    def check_rules(self, rules: Any) -> None:
        """Refuse (ConfigurationError) rules reading what this state does not keep."""
        for name in rules.reads:
            stem = split_feature(name)[0]
            if (stem == "rcpt_domains" and not self._rdoms) or (
                stem in _RCPT_STEMS and not self._rk
            ):
                raise ConfigurationError(
                    f"the new rules read {name!r}, which this store-backed detector does "
                    "not keep: start a new detector with them"
                )

    # ------------------------------------------------------------------ batches

    def _run(self, ops: list[Op]) -> list[Any]:
        if not self._split:
            return run_batch(self.store, ops)
        # Records go to the local table, the rest to the store, results in order.
        rec_idx = [i for i, op in enumerate(ops) if op[0] in ("put_record", "get_record")]
        if not rec_idx:
            return run_batch(self.store, ops)
        out: list[Any] = [None] * len(ops)
        rec_set = set(rec_idx)
        rest = [i for i in range(len(ops)) if i not in rec_set]
        for i, r in zip(rest, run_batch(self.store, [ops[i] for i in rest]), strict=True):
            out[i] = r
        for i in rec_idx:
            out[i] = run_batch(self._records, [ops[i]])[0]
        return out

    def _drive(self, steps: _Steps[Any], account: str | None, *, writes: bool = True) -> Any:
        """Run an event's step generator and return its result.

        In this thread, each batch with :meth:`_run` and each :class:`_Post` with
        :meth:`_send`. While a loop runner is attached (``self._runner``, set by
        :class:`authabuse._store_loop.LoopRunner` around its calls), the runner takes the
        generator instead and may return a :class:`~authabuse._store_loop.Pending` result
        (``writes``: whether the steps write, which orders them after the account's
        earlier events; see that module).
        """
        runner = self._runner
        if runner is not None:
            return runner.start(steps, account, writes=writes)
        try:
            step = next(steps)
            while True:
                if type(step) is _Post:
                    self._send(step.ops)
                    step = steps.send(None)
                else:
                    step = steps.send(self._run(step))
        except StopIteration as stop:
            return stop.value

    def _send(self, ops: list[Op]) -> None:
        """Run writes whose results nobody reads: without waiting where the store can."""
        send = getattr(self.store, "send", None)
        if send is None or self._split:
            self._run(ops)
        else:
            send(ops)

    def _grouped(self, ops: list[Op]) -> list[Op]:
        """Return ``ops`` with each slice's ``incr`` of one key as one ``incr_fields``.

        For a store that takes them (``extended_ops``): a recorded message's dozen
        counts of one window bucket become one write. Writes commute, so the merged
        write takes the place of the key's first ``incr``.
        """
        if not self._grouping:
            return ops
        out: list[Op] = []
        merged: dict[tuple[Any, float], dict[str, int]] = {}
        for op in ops:
            if op[0] != "incr":
                out.append(op)
                continue
            where = (op[1], op[4])
            fields = merged.get(where)
            if fields is None:
                fields = merged[where] = {}
                out.append(("incr_fields", op[1], fields, op[4]))
            fields[op[2]] = fields.get(op[2], 0) + op[3]
        return out

    def _union(self, key: tuple[Any, ...], start: float, bucket: float) -> Op:
        """Count the distinct members of the buckets starting at ``start - bucket`` and ``start``.

        A ``count_distinct`` over the window that covers both buckets' slices, with the
        two bucket times as a hint (``op[4]``): nothing is written to the slices between
        them, so a store that reads slice by slice (Redis: one ``PFCOUNT`` over the
        named keys) may read those two alone; any other store ignores the hint.
        """
        return ("count_distinct", key, start, self._span(start, bucket), (start - bucket, start))

    def _span(self, start: float, bucket: float) -> float:
        """Window (s) that covers the slices of bucket starts ``start - bucket``..``start``."""
        s = self._slice
        n = math.floor(start / s) - math.floor((start - bucket) / s) + 1
        return n * s

    # ------------------------------------------------------------------ reading

    def _read_ops(self, ctx: _Ctx, *, pre: list[Op], recorded: bool) -> list[Op]:
        a = ctx.account
        assert a is not None  # noqa: S101 - callers check
        cfg = self.det.config
        sw, lw = cfg.short_window, cfg.long_window
        s_now, l_now = ctx.sb * sw, ctx.lb * lw
        s_prev, l_prev = s_now - sw, l_now - lw
        one = self._slice
        m = ctx.member
        ops = list(pre)
        if self._rdoms:
            ops += [
                self._union((a, "Sd"), s_now, sw),
                self._union((a, "Ld"), l_now, lw),
            ]
        if not recorded:  # is the address in the long window? (a check cannot add it)
            ops += [("counts", (a, "ip", m), l_now, one), ("counts", (a, "ip", m), l_prev, one)]
        ops.append(("get_record", (a, "rec")))
        if self._pairs:
            probe = f"n:{ctx.net}"
            ops += [
                ("pair", (a, "S"), s_now, s_prev, probe, _TOP_NETS),
                ("pair", (a, "L"), l_now, l_prev, probe, _TOP_NETS),
            ]
        else:
            ops += [
                ("counts", (a, "S"), s_now, one),
                ("counts", (a, "S"), s_prev, one),
                ("counts", (a, "L"), l_now, one),
                ("counts", (a, "L"), l_prev, one),
            ]
        ops += [
            self._union((a, "Si"), s_now, sw),
            self._union((a, "Li"), l_now, lw),
            ("counts", (a, "ip", m), s_now, one),
            ("counts", (a, "ip", m), s_prev, one),
            ("get_record", (a, "it", m)),
            ("counts", (m, "ipx"), l_now, one),
            ("counts", (m, "ipx"), l_prev, one),
            ("get_record", (m, "rec")),
            ("counts", ("~cc", "t"), l_now, one),
            ("counts", ("~cc", "t"), l_prev, one),
            self._union(("~net", ctx.net), l_now, lw),
        ]
        dom = _domain(a)
        if dom is not None:
            ops += [
                ("get_record", (dom, "flagged")),
                self._union((dom, "accts"), l_now, lw),
            ]
        if ctx.cc is not None:
            ops += [
                ("counts", ("~cc", "c", ctx.cc), l_now, one),
                ("counts", ("~cc", "c", ctx.cc), l_prev, one),
            ]
        return ops

    def _materialise(  # noqa: PLR0915 - one flat walk over the batch's results, in order
        self, ctx: _Ctx, res: list[Any], *, recorded: bool
    ) -> _Read:
        """Build the account and cross-account view of ``ctx`` from the read results.

        ``recorded``: the event's distinct members were added before the reads (a
        ``process``), so the distinct sizes already count it.
        """
        det = self.det
        it = iter(res)
        n_sd, n_ld = (next(it), next(it)) if self._rdoms else (0, 0)
        ip_l_cur: dict[str, int] = {}
        ip_l_prev: dict[str, int] = {}
        if not recorded:
            ip_l_cur, ip_l_prev = next(it), next(it)
        rec: dict[str, str] = next(it)
        if self._pairs:
            s_pair, l_pair = next(it), next(it)
            s_cur, s_prev, l_cur, l_prev = s_pair.cur, s_pair.prev, l_pair.cur, l_pair.prev
            held = bool(s_pair.n_nets or l_pair.n_nets)
        else:
            s_cur, s_prev, l_cur, l_prev = next(it), next(it), next(it), next(it)
            held = False
        n_si, n_li = next(it), next(it)
        ip_s_cur, ip_s_prev = next(it), next(it)
        ip_times: dict[str, str] = next(it)
        ipx_cur, ipx_prev = next(it), next(it)
        ip_rec: dict[str, str] = next(it)
        cct_cur, cct_prev = next(it), next(it)
        n_pop: int = next(it)
        dom = _domain(ctx.account or "")
        flagged: dict[str, str] = {}
        n_dom = 0
        if dom is not None:
            flagged, n_dom = next(it), next(it)
        cc_cur: dict[str, int] = {}
        cc_prev: dict[str, int] = {}
        if ctx.cc is not None:
            cc_cur, cc_prev = next(it), next(it)

        state = _EventState(det)
        # cross-account memory of this address
        iprec = _IPRec()
        iprec.b = ctx.lb
        iprec.accts = {f[2:] for f in ipx_cur if f.startswith("a:")} or None
        iprec.prev = {f[2:] for f in ipx_prev if f.startswith("a:")} or None
        iprec.fails = ipx_cur.get("f", 0)
        iprec.abuse_until = float(ip_rec.get("abuse", 0.0))
        state._ips[ctx.member] = iprec
        if dom is not None:
            state._domains[dom] = {a: float(t) for a, t in flagged.items()}
            state._dom_n = n_dom
            state._dom_known = recorded or bool(rec)
        state._net_popularity[ctx.net] = n_pop
        state._cc_common = (
            cc_cur.get("n", 0) + cc_prev.get("n", 0) // 2,
            cct_cur.get("n", 0) + cct_prev.get("n", 0) // 2,
        )

        read = _Read(None, state, rec)
        if not (rec or s_cur or s_prev or l_cur or l_prev or held):
            return read
        acct = self._account(ctx, rec)
        e_short = ip_s_cur.get("e", 0) + ip_s_prev.get("e", 0)
        e_long = ip_l_cur.get("E", 0) + ip_l_prev.get("E", 0)
        m = ctx.member
        acct.sb, acct.lb = ctx.sb, ctx.lb
        if self._pairs:
            acct.sc = _pair_window(s_pair, ctx.net)
            acct.lc = _pair_window(l_pair, ctx.net)
        else:
            acct.sc = _window(s_prev, s_cur)
            acct.lc = _window(l_prev, l_cur)
        acct.sc.ips = _Count(n_si, m if e_short else None, frozen=recorded)
        acct.sc.rdoms = _Count(n_sd, frozen=recorded)
        acct.lc.ips = _Count(n_li, m if e_long else None, frozen=recorded)
        acct.lc.rdoms = _Count(n_ld, frozen=recorded)
        sw = det.config.short_window
        n_run = ip_s_cur.get("n", 0) + ip_s_prev.get("n", 0)
        if n_run:
            firsts = [float(ip_times[f"f{b}"]) for b in (ctx.sb - 1, ctx.sb) if f"f{b}" in ip_times]
            lasts = [float(ip_times[f"l{b}"]) for b in (ctx.sb - 1, ctx.sb) if f"l{b}" in ip_times]
            first = min(firsts) if firsts else ctx.t - sw
            last = max(lasts) if lasts else ctx.t
            acct.sc.ipm = {m: [n_run, first, last]}
        read.acct = acct
        return read

    def _account(self, ctx: _Ctx, rec: dict[str, str]) -> _Acct:
        if not rec:
            return _Acct(ctx.t)
        acct = _baseline_of(rec, ctx.t)
        rk = rec.get("rk")
        if rk:
            acct.rknown = array("H", (int(k) for k in rk.split(",")))
        if int(rec.get("flagb", -1)) == ctx.lb:
            acct.flag = int(rec.get("flag", 0))
            acct.flag_t = float(rec.get("flagt", 0.0))
        return acct

    # ------------------------------------------------------------------ learning

    def _roll(self, ctx: _Ctx, acct: _Acct, read: _Read) -> _Steps[dict[str, str] | None]:
        """Learn from the account's finished long bucket, as the compact detector does.

        Returns the record fields that change (``None`` when no day boundary passed).
        A step generator (see :meth:`_drive`): an account idle for more than a long
        window reads its last bucket first.
        """
        rec = read.rec
        if not rec:
            return None
        done_lb = int(rec.get("lb", ctx.lb))
        if done_lb >= ctx.lb:
            return None
        # The finished bucket, read whole (once per account and long window)
        at = done_lb * self.det.config.long_window
        counts, n_ips = yield [
            ("counts", (ctx.account, "L"), at, self._slice),
            ("count_distinct", (ctx.account, "Li"), at, self._slice),
        ]
        flagged = int(rec.get("flagb", -1)) == done_lb and int(rec.get("flag", 0)) > 0
        # A flagged day teaches nothing but puts its new keys on probation.
        w = _window({}, counts)
        lip = rec.get("lip")
        single = lip is not None and int(rec.get("lipb", -1)) == done_lb and n_ips == 1
        w.ips = int(lip) if single and lip is not None else _Count(n_ips)
        popular_before = set(acct.usual) | {k for k, _ in acct.trial}
        self._learn(acct, w, day=done_lb, clean=not flagged)
        acct.peak_mails = max(int(acct.peak_mails * 0.9), counts.get("m", 0))
        acct.peak_ips = max(int(acct.peak_ips * 0.9), n_ips)
        acct.flag = 0
        acct.flag_t = 0.0
        return {
            "lb": str(ctx.lb),
            "usual": _usual_text(acct.usual),
            "kips": ",".join(str(k) for k in acct.known_ips),
            "pm": str(acct.peak_mails),
            "pi": str(acct.peak_ips),
            "trial": _trial_text(acct.trial),
            # networks the account started using on a clean day (popularity), not stored
            "_pop": ""
            if flagged
            else ",".join(
                str(k)
                for k in (*acct.usual, *(k for k, _ in acct.trial))
                if isinstance(k, int) and k not in popular_before
            ),
        }

    def _learn(
        self, acct: _Acct, w: _Win, *, day: int = 0, clean: bool = True, force: bool = False
    ) -> None:
        size = self.det.config.baseline_size
        if force:
            acct.usual = _merged_usual(acct.usual, _busiest(w, size), size)
        else:
            acct.usual, acct.trial = _learned(acct.usual, acct.trial, w, size, day, clean)
        if not clean:
            return
        if w.ipm:
            top = [k for k, _ in sorted(w.ipm.items(), key=lambda kv: -kv[1][0])[:4]]
            acct.known_ips = tuple(top + [k for k in acct.known_ips if k not in top])[:4]
        elif isinstance(w.ips, int):
            acct.known_ips = tuple([w.ips] + [k for k in acct.known_ips if k != w.ips])[:4]

    # ------------------------------------------------------------------ verbs

    def check(self, ctx: _Ctx) -> Verdict:
        """Return the verdict of ``ctx`` without writing anything."""
        return self._drive(self._check_steps(ctx), ctx.account, writes=False)  # type: ignore[no-any-return]  # a Verdict (or a Pending one, on a loop)

    def _check_steps(self, ctx: _Ctx) -> _Steps[Verdict]:
        ops = self._read_ops(ctx, pre=[], recorded=False)
        read = self._materialise(ctx, (yield ops), recorded=False)
        if read.acct is not None:
            yield from self._roll(ctx, read.acct, read)
        return self.det._verdict(ctx, read.acct, pure=True, state=read.state)

    def process(self, ctx: _Ctx, event: Any, *, want_verdict: bool) -> Verdict | None:
        """Record ``ctx`` in the store and return its verdict (``None`` unless wanted)."""
        det = self.det
        if ctx.account is None:
            det.stats.no_account += 1
            ok = det._ok(event, ctx) if want_verdict else None
            return self._drive(self._post_steps(self._grouped(self._ip_writes(ctx)), ok), None)  # type: ignore[no-any-return]  # as check
        return self._drive(self._process_steps(ctx, want_verdict), ctx.account)  # type: ignore[no-any-return]  # as check

    @staticmethod
    def _post_steps(ops: list[Op], result: Verdict | None) -> _Steps[Verdict | None]:
        yield _Post(ops)
        return result

    def _process_steps(self, ctx: _Ctx, want_verdict: bool) -> _Steps[Verdict | None]:
        det = self.det
        pre = self._distinct_writes(ctx)
        res = (yield self._read_ops(ctx, pre=pre, recorded=True))[len(pre) :]
        read = self._materialise(ctx, res, recorded=True)
        acct = read.acct
        if acct is None:
            acct = _Acct(ctx.t)
            acct.sb, acct.lb = ctx.sb, ctx.lb
        rolled = yield from self._roll(ctx, acct, read)
        verdict: Verdict | None = None
        if want_verdict or det._rules:
            verdict = det._verdict(ctx, read.acct and acct, pure=True, state=read.state)
        ops = self._ip_writes(ctx)
        # a country reached through a popular network, or a common one, is not new
        popular = read.state._net_popularity.get(ctx.net, 0) >= _POPULAR or (
            read.state._country_home(ctx.cc, True)
        )
        # the recipients are remembered unless the account is flagged today (as compact)
        learn = (
            self._rk
            and bool(ctx.rfps)
            and (verdict is None or verdict.level == Level.OK)
            and _rcpt_teaches(acct, ctx)
        )
        ops += self._account_writes(ctx, acct, read.rec, rolled, popular, learn=learn)
        if verdict is not None and verdict.level > Level.OK:
            ops += yield from self._flag_writes(ctx, acct, verdict, read.state)
        yield _Post(self._grouped(ops))
        return verdict if want_verdict else None

    def mark_benign(self, account: str) -> None:
        """Learn the account's current windows into its baseline and clear its flag."""
        rec = self._run([("get_record", (account, "rec"))])[0]
        if not rec:
            return
        det = self.det
        cfg = det.config
        t = float(rec.get("last", 0.0))
        sb, lb = int(t // cfg.short_window), int(t // cfg.long_window)
        s_now, l_now = sb * cfg.short_window, lb * cfg.long_window
        one = self._slice
        dom = _domain(account)
        s_cur, s_prev, l_cur, l_prev, n_si, n_li, ipm_cur, ipm_prev, dom_flagged = self._run(
            [
                ("counts", (account, "S"), s_now, one),
                ("counts", (account, "S"), s_now - cfg.short_window, one),
                ("counts", (account, "L"), l_now, one),
                ("counts", (account, "L"), l_now - cfg.long_window, one),
                self._union((account, "Si"), s_now, cfg.short_window),
                self._union((account, "Li"), l_now, cfg.long_window),
                ("counts", (account, "Sm"), s_now, one),
                ("counts", (account, "Sm"), s_now - cfg.short_window, one),
                ("get_record", (dom or "", "flagged")),
            ]
        )
        acct = _Acct(t)
        acct.usual = _usual_parse(rec.get("usual", ""))
        kips = rec.get("kips", "")
        acct.known_ips = tuple(int(k) for k in kips.split(",")) if kips else ()
        acct.peak_mails, acct.peak_ips = int(rec.get("pm", 0)), int(rec.get("pi", 0))
        lc = _window(l_prev, l_cur)
        lc.ips = _Count(n_li)
        sc = _window(s_prev, s_cur)
        sc.ips = _Count(n_si)
        ipm: dict[int, list[float]] = {}
        for part in (ipm_prev, ipm_cur):
            for k, v in part.items():
                row = ipm.setdefault(int(k), [0, 0.0, 0.0])
                row[0] += v
        sc.ipm = ipm or None
        for w in (lc, sc):
            self._learn(acct, w, force=True)
            acct.peak_mails = max(acct.peak_mails, w.mails)
            acct.peak_ips = max(acct.peak_ips, w.ips.estimate())
        fields = {
            "usual": _usual_text(acct.usual),
            "kips": ",".join(str(k) for k in acct.known_ips),
            "pm": str(acct.peak_mails),
            "pi": str(acct.peak_ips),
        }
        ops: list[Op] = [
            ("put_record", (account, "rec"), fields, t, self._rec_ttl, False, ("flag", "flagt"))
        ]
        ops += [
            ("add_distinct", ("~net", k), [account], l_now)
            for k in acct.usual
            if isinstance(k, int)
        ]
        # Accepted: what the windows counted as new no longer is (as the compact
        # detector zeroes its windows' counts): each bucket's count taken back.
        for key, at, counts in (
            ((account, "S"), s_now, s_cur),
            ((account, "S"), s_now - cfg.short_window, s_prev),
            ((account, "L"), l_now, l_cur),
            ((account, "L"), l_now - cfg.long_window, l_prev),
        ):
            ops += [
                ("incr", key, f, -int(counts[f]), at) for f in _NOVELTY if int(counts.get(f, 0)) > 0
            ]
        ops += self._unmark_steps(account, ipm, l_now, t)
        if dom is not None and account in dom_flagged:  # no longer one of its domain's flagged
            ops.append(("put_record", (dom, "flagged"), {}, t, cfg.long_window, False, (account,)))
        self._run(ops)

    def _unmark_steps(
        self, account: str, ipm: dict[int, list[float]], l_now: float, t: float
    ) -> list[Op]:
        """Return the writes unmarking the addresses only ``account`` used (``mark_benign``).

        Its (false) alert marked them as a detected abuse's; an address another account
        used keeps its mark. One batch of reads: each address's record and accounts.
        """
        cfg = self.det.config
        members = list(ipm)[:_MARK_CAP]
        one = self._slice
        reads: list[Op] = []
        for m in members:
            reads += [
                ("get_record", (m, "rec")),
                ("counts", (m, "ipx"), l_now, one),
                ("counts", (m, "ipx"), l_now - cfg.long_window, one),
            ]
        res = self._run(reads) if reads else []
        ops: list[Op] = []
        mine = "a:" + account
        for i, m in enumerate(members):
            rec, cur, prev = res[3 * i : 3 * i + 3]
            if not rec.get("abuse"):
                continue
            served = {f for part in (cur, prev) for f, n in part.items() if f[:2] == "a:" and n}
            if served <= {mine}:
                ops.append(
                    (
                        "put_record",
                        (m, "rec"),
                        {},
                        t,
                        cfg.abuse_ip_ttl + cfg.long_window,
                        False,
                        ("abuse",),
                    )
                )
        return ops

    def account_state(self, account: str) -> tuple[_Acct, int, float] | None:
        """Read the account's record: its baseline, and its flag with when it was flagged.

        ``None`` when the store holds no record of it. The flag counts when it was set
        in the long bucket of the account's latest event (as ``_account`` reads it for
        an event then). For :meth:`Detector.account_info`: one read, nothing written.
        """
        rec = self._run([("get_record", (account, "rec"))])[0]
        if not rec:
            return None
        last = float(rec.get("last", rec.get("first", 0)))
        acct = _baseline_of(rec, last)
        flag, flag_t = 0, 0.0
        if int(rec.get("flagb", -1)) >= int(last // self.det.config.long_window):
            flag, flag_t = int(rec.get("flag", 0)), float(rec.get("flagt", 0.0))
        return acct, flag, flag_t

    def accounts(self) -> Iterator[str]:
        """Accounts with a record in the store (walks the store's keys: administration)."""
        keys = getattr(self._records, "keys", None)
        if keys is None:
            return iter(())
        return (k[0] for k in keys() if len(k) == 2 and k[1] == "rec" and isinstance(k[0], str))

    # ------------------------------------------------------------------ writing

    def _distinct_writes(self, ctx: _Ctx) -> list[Op]:
        """Return the writes that do not depend on what is read (sent ahead of the reads)."""
        a = ctx.account
        assert a is not None  # noqa: S101 - callers check
        cfg = self.det.config
        s_now, l_now = ctx.sb * cfg.short_window, ctx.lb * cfg.long_window
        ops: list[Op] = []
        if ctx.kind != _AUTH_FAIL:
            ops += [
                ("add_distinct", (a, "Si"), [ctx.member], s_now),
                ("add_distinct", (a, "Li"), [ctx.member], l_now),
            ]
            dom = _domain(a)
            if dom is not None:
                ops.append(("add_distinct", (dom, "accts"), [a], l_now))
        if ctx.kind == _SUB and ctx.rdoms and self._rdoms:
            doms = list(ctx.rdoms)
            ops += [
                ("add_distinct", (a, "Sd"), doms, s_now),
                ("add_distinct", (a, "Ld"), doms, l_now),
            ]
        return ops

    def _ip_writes(self, ctx: _Ctx) -> list[Op]:
        """Return the address's and the country's cross-account count writes."""
        l_now = ctx.lb * self.det.config.long_window
        ops: list[Op] = []
        if ctx.kind == _AUTH_FAIL:
            ops.append(("incr", (ctx.member, "ipx"), "f", 1, l_now))
        else:
            if ctx.account is not None:
                ops.append(("incr", (ctx.member, "ipx"), "a:" + ctx.account, 1, l_now))
            if ctx.cc is not None:
                ops += [
                    ("incr", ("~cc", "c", ctx.cc), "n", 1, l_now),
                    ("incr", ("~cc", "t"), "n", 1, l_now),
                ]
        return ops

    def _account_writes(
        self,
        ctx: _Ctx,
        acct: _Acct,
        rec: dict[str, str],
        rolled: dict[str, str] | None,
        popular: bool = False,
        *,
        learn: bool = False,
    ) -> list[Op]:
        a = ctx.account
        assert a is not None  # noqa: S101 - callers check
        cfg = self.det.config
        sw, lw = cfg.short_window, cfg.long_window
        s_now, l_now = ctx.sb * sw, ctx.lb * lw
        t = ctx.t
        kind = ctx.kind
        net_usual = ctx.net in acct.usual
        # as Detector._record_account: a country reached through a usual or popular
        # network is not a new place
        cc_usual = ctx.cc is None or ctx.cc in acct.usual or net_usual or popular
        fields: dict[str, str] = dict(rolled or {})
        started = fields.pop("_pop", "")
        if not rec:
            fields["lb"] = str(ctx.lb)
        if t > float(rec.get("last", "-inf")):
            fields["last"] = repr(t)
        if net_usual and kind != _AUTH_FAIL and t > acct.last_usual:
            fields["lastu"] = repr(t)
        if kind != _AUTH_FAIL:
            fields["lip"] = str(ctx.member)
            fields["lipb"] = str(ctx.lb)
        ops: list[Op] = self._rcpt_writes(ctx, acct, fields, learn=learn, unusual=not net_usual)
        if not rec:
            first = {"first": str(int(t))}
            ops.append(("put_record", (a, "rec"), first, t, self._rec_ttl, True, ()))
        ops.append(("put_record", (a, "rec"), fields, t, self._rec_ttl, False, ()))
        if rolled is not None:
            ops += [
                ("add_distinct", ("~net", k), [a], l_now) for k in acct.usual if isinstance(k, int)
            ]
            ops += [("add_distinct", ("~net", int(k)), [a], l_now) for k in started.split(",") if k]
        for key, at, w in (((a, "S"), s_now, acct.sc), ((a, "L"), l_now, acct.lc)):
            ops += _window_writes(ctx, key, at, w, net_usual=net_usual, cc_usual=cc_usual)
        m = ctx.member
        if kind != _AUTH_FAIL:
            ops += [
                ("incr", (a, "ip", m), "e", 1, s_now),
                ("incr", (a, "ip", m), "E", 1, l_now),
            ]
        if kind == _SUB:
            sb = ctx.sb
            ops += [
                ("incr", (a, "ip", m), "n", 1, s_now),
                ("incr", (a, "Sm"), str(m), 1, s_now),
                ("put_record", (a, "it", m), {f"f{sb}": repr(t)}, t, 2 * sw, True, ()),
            ]
            run = acct.sc.ipm.get(m) if acct.sc is not None and acct.sc.ipm else None
            if run is None or t >= run[2]:
                ops.append(
                    (
                        "put_record",
                        (a, "it", m),
                        {f"l{sb}": repr(t)},
                        t,
                        2 * sw,
                        False,
                        (f"f{sb - 2}", f"l{sb - 2}"),
                    )
                )
        return ops

    def _rcpt_writes(
        self, ctx: _Ctx, acct: _Acct, fields: dict[str, str], *, learn: bool, unusual: bool
    ) -> list[Op]:
        """Return the recipient counts of the message; remember its recipients in ``fields``.

        ``ra``/``rn`` per window bucket: recipient addresses, those the account had not
        mailed before; ``ua``/``un`` the same for a message from a network the account
        does not use (``unusual``). ``learn``: the record's ``rk`` takes the recipients
        (MRU first).
        """
        if not (self._rk and ctx.rfps):
            return []
        a = ctx.account
        cfg = self.det.config
        if learn:
            known = _rcpt_learned(acct.rknown, ctx.rfps, cfg.rcpt_memory)
            fields["rk"] = ",".join(map(str, known or ()))
        if not _rcpt_warm(acct, ctx, cfg.long_window):
            return []
        rnew = _rcpt_new(acct.rknown, ctx.rfps)
        ops: list[Op] = []
        for key, at in (
            ((a, "S"), ctx.sb * cfg.short_window),
            ((a, "L"), ctx.lb * cfg.long_window),
        ):
            ops.append(("incr", key, "ra", len(ctx.rfps), at))
            if rnew:
                ops.append(("incr", key, "rn", rnew, at))
            if unusual:
                ops.append(("incr", key, "ua", len(ctx.rfps), at))
                if rnew:
                    ops.append(("incr", key, "un", rnew, at))
        return ops

    def _abuse_ips(self, ctx: _Ctx, acct: _Acct) -> _Steps[list[int]]:
        """Return the abuse's addresses so far, as ``Detector._mark_abuse_ips`` finds them.

        Those that sent the account's mail in the short window from networks it does not
        use, are not its known addresses and served fewer than three accounts; without a
        baseline, only those in countries not common here. Two extra reads, once per
        account and long window (at its first abuse verdict).
        """
        a = ctx.account
        assert a is not None  # noqa: S101 - callers check
        cfg = self.det.config
        sw, lw, one = cfg.short_window, cfg.long_window, self._slice
        s_now, l_now = ctx.sb * sw, ctx.lb * lw
        cur, prev = yield [
            ("counts", (a, "Sm"), s_now, one),
            ("counts", (a, "Sm"), s_now - sw, one),
        ]
        known = set(acct.known_ips)
        members = sorted({int(k) for k in (*cur, *prev)} - known - {ctx.member})[:_MARK_CAP]
        places = []
        for m in members:
            ip = _member_ip(m)
            cc, asn = self.det._locate(ip, m)
            net = asn if asn is not None else _prefix_net(ip)
            if net not in acct.usual:
                places.append((m, cc))
        if not places:
            return []
        reads: list[Op] = []
        for m, _ in places:
            reads += [("counts", (m, "ipx"), l_now, one), ("counts", (m, "ipx"), l_now - lw, one)]
        ccs = sorted({cc for _, cc in places if cc is not None}) if not acct.usual else []
        for cc in ccs:
            reads += [
                ("counts", ("~cc", "c", cc), l_now, one),
                ("counts", ("~cc", "c", cc), l_now - lw, one),
            ]
        if ccs:
            reads += [
                ("counts", ("~cc", "t"), l_now, one),
                ("counts", ("~cc", "t"), l_now - lw, one),
            ]
        res = yield reads
        common: dict[str, bool] = {}
        if ccs:
            total = res[-2].get("n", 0) + res[-1].get("n", 0) // 2
            base = 2 * len(places)
            for i, cc in enumerate(ccs):
                n = res[base + 2 * i].get("n", 0) + res[base + 2 * i + 1].get("n", 0) // 2
                common[cc] = _share_common(n, total)
        out = []
        for i, (m, cc) in enumerate(places):
            served = {f for f in (*res[2 * i], *res[2 * i + 1]) if f.startswith("a:")}
            if len(served) >= 3:
                continue
            if not acct.usual and cc is not None and common.get(cc, False):
                continue
            out.append(m)
        return out

    def _flag_writes(
        self, ctx: _Ctx, acct: _Acct, v: Verdict, state: _EventState
    ) -> _Steps[list[Op]]:
        """Return what ``_flagged`` changes: the account's flag, the address, the domain."""
        a = ctx.account
        assert a is not None  # noqa: S101 - callers check
        cfg = self.det.config
        level = int(v.level)
        t = ctx.t
        ops: list[Op] = []
        first_abuse = level >= Level.ABUSE > acct.flag
        if level > acct.flag:
            fields = {"flag": str(level), "flagb": str(ctx.lb)}
            if acct.flag == 0:
                fields["flagt"] = repr(t)
                self.flagged_accounts += 1
                self.det.stats.flagged_accounts += 1
            ops.append(("put_record", (a, "rec"), fields, t, self._rec_ttl, False, ()))
        iprec = state._ips.get(ctx.member)
        marks = self.det._abuse_marks(ctx, acct, v, state._country_common)
        if marks:
            until = t + cfg.abuse_ip_ttl
            marked = [] if iprec is not None and _shared(iprec) else [ctx.member]
            if first_abuse and marks > 1:  # the abuse so far: the short window's others
                marked += yield from self._abuse_ips(ctx, acct)
            ops += [
                (
                    "put_record",
                    (m, "rec"),
                    {"abuse": repr(until)},
                    t,
                    cfg.abuse_ip_ttl + cfg.long_window,
                    False,
                    (),
                )
                for m in marked
            ]
        dom = _domain(a)
        if dom is not None:
            known = state._domains.get(dom, {})
            remove: tuple[str, ...] = ()
            if a not in known and len(known) >= _DOMAIN_FLAGGED_CAP:
                remove = (min(known, key=known.__getitem__),)
            ops.append(
                ("put_record", (dom, "flagged"), {a: repr(t)}, t, cfg.long_window, False, remove)
            )
        return ops


def _member_ip(member: int) -> IPv4Address | IPv6Address:
    """Return an address standing for a counting identity (IPv6: the first of its /64)."""
    if member & _V6_MARK:
        return IPv6Address((member & (_V6_MARK - 1)) << 64)
    return IPv4Address(member)


def _window_writes(
    ctx: _Ctx, key: tuple[Any, ...], at: float, w: _Win | None, *, net_usual: bool, cc_usual: bool
) -> list[Op]:
    """Return the counts one event adds to one window bucket (``Detector._add``)."""
    kind = ctx.kind
    ops: list[Op] = []
    if kind == _AUTH_FAIL:
        ops.append(("incr", key, "f", 1, at))
        return ops
    ops.append(("incr", key, f"n:{ctx.net}", 1, at))
    if not net_usual:
        in_window = w is not None and w.nets is not None and ctx.net in w.nets
        in_bucket = isinstance(w, _SWin) and ctx.net in w.cur_nets
        if not in_window:
            ops.append(("incr", key, "nw", 1, at))
        if not in_bucket:
            ops.append(("incr", key, "nn", 1, at))
    cc = ctx.cc
    if cc is not None:
        ops.append(("incr", key, f"c:{cc}", 1, at))
        if not cc_usual:
            in_window = w is not None and w.ccs is not None and cc in w.ccs
            in_bucket = isinstance(w, _SWin) and cc in w.cur_ccs
            if not in_window:
                ops.append(("incr", key, "cw", 1, at))
            if not in_bucket:
                ops.append(("incr", key, "cn", 1, at))
            ops.append(("incr", key, f"C:{cc}", 1, at))  # the window's new countries
    if kind == _SUB:
        ops.append(("incr", key, "m", 1, at))
        if not net_usual:
            ops.append(("incr", key, "u", 1, at))
        if ctx.rcpts:
            ops.append(("incr", key, "r", ctx.rcpts, at))
    return ops


def _domain(account: str) -> str | None:
    if "@" not in account:
        return None
    return account.rpartition("@")[2].lower() or None


# A bucket's field name -> (kind, key): 1 "c:CC" (events per country), 2 "C:CC" (a new
# country of the window), 3 "n:NET" (events per network), 0 any other field. Parsed once
# per name: the same few thousand names come back on every event.
_FIELDS: dict[str, tuple[int, Any]] = {}


def _parse_field(f: str) -> tuple[int, Any]:
    out: tuple[int, Any] = (0, None)
    if f[1:2] == ":":
        if f[0] == "c":
            out = (1, sys.intern(f[2:]))
        elif f[0] == "C":
            out = (2, sys.intern(f[2:]))
        elif f[0] == "n":
            out = (3, int(f[2:]))
    if len(_FIELDS) >= 200_000:
        _FIELDS.clear()
    _FIELDS[f] = out
    return out


def _pair_window(pair: Any, net: int) -> _SWin:
    """Return the window of a store's ``pair`` read (see :func:`_window`).

    Only the busiest networks and the event's own come with counts (``_NetCounts``),
    unless the store read the buckets whole (``pair.complete``).
    """
    w = _window(pair.prev, pair.cur)
    nets: dict[int, int] = {}
    parsed = _FIELDS
    for f, v in pair.nets.items():
        try:
            k = parsed[f][1]
        except KeyError:
            k = _parse_field(f)[1]
        nets[k] = v
    if nets:
        w.nets = nets if pair.complete else _NetCounts(nets, pair.n_nets)
    if pair.probe_cur:
        w.cur_nets.add(net)
    return w


def _window(prev: dict[str, int], cur: dict[str, int]) -> _SWin:
    """Return a compact window of two buckets' counts (the window ending with ``cur``).

    New networks and countries of the window: those of the previous bucket (``nn``,
    ``cn``: new within that bucket) plus those first seen in the window during the
    current one (``nw``, ``cw``), which is what the compact detector's window counts.
    """
    w = _SWin()
    ccs: dict[str, int] = {}
    nets: dict[int, int] = {}
    parsed = _FIELDS
    for part, is_cur in ((prev, False), (cur, True)):
        for f, v in part.items():
            try:
                kind, k = parsed[f]
            except KeyError:
                kind, k = _parse_field(f)
            if kind == 1:  # c:CC
                ccs[k] = ccs.get(k, 0) + v
                if is_cur:
                    w.cur_ccs.add(k)
            elif kind == 3:  # n:NET
                nets[k] = nets.get(k, 0) + v
                if is_cur:
                    w.cur_nets.add(k)
            elif kind == 2:  # C:CC
                if w.cfor is None:
                    w.cfor = set()
                w.cfor.add(k)
    w.mails = prev.get("m", 0) + cur.get("m", 0)
    w.unusual = prev.get("u", 0) + cur.get("u", 0)
    w.rcpts = prev.get("r", 0) + cur.get("r", 0)
    w.fails = prev.get("f", 0) + cur.get("f", 0)
    w.raddr = prev.get("ra", 0) + cur.get("ra", 0)
    w.rnew = prev.get("rn", 0) + cur.get("rn", 0)
    w.uaddr = prev.get("ua", 0) + cur.get("ua", 0)
    w.unew = prev.get("un", 0) + cur.get("un", 0)
    w.nnew = prev.get("nn", 0) + cur.get("nw", 0)
    w.cnew = prev.get("cn", 0) + cur.get("cw", 0)
    w.ccs = ccs or None
    w.nets = nets or None
    return w
