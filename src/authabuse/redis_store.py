"""A :class:`~authabuse.counters.CounterStore` on Redis, shared by many mail servers.

Native Redis types, one hash slot per subject (``key[0]``, the account) so every
command touches a single slot and the store works on Redis Cluster:

* distinct members: one HyperLogLog per key and slice, ``PFADD`` + ``EXPIRE``;
  ``PFCOUNT`` over the window's slice keys returns the union count in one command;
* counted fields: one hash per key and slice, ``HINCRBY`` + ``EXPIRE``; ``HGETALL`` per
  slice, summed here;
* a small set per key listing its slices (``SADD`` + ``EXPIRE``), so ``forget`` and
  ``len`` work without scanning all data keys;
* records (the detector's learned baselines and flags): one hash per key, ``HSET`` /
  ``HSETNX`` / ``HDEL`` + ``EXPIRE`` with the record's own time to live, ``HGETALL``.

:meth:`RedisStore.batch` sends a whole list of operations (see
:func:`authabuse.counters.run_batch`) as one pipeline: one round trip for everything a
detector reads or writes about one event, each key's ``EXPIRE`` and slice index sent once.

Key names come from :func:`authabuse.counters._store.redis_key`
(``<prefix>{<subject>}:<rest>:<kind>:<slice>``). Each write is one pipelined round trip.

Expiry is wall-clock (Redis has no other clock): a slice key lives ``retention`` plus
one slice after its last write, which is what a live server needs. Replaying old logs
into Redis keeps their slices for that long after the replay.

When Redis cannot be reached the store falls back to a local
:class:`~authabuse.counters.MemoryStore` with the same slicing, logs it once, counts it
(:attr:`RedisStore.status`), and tries Redis again every ``retry_interval`` seconds;
once Redis answers it is used again. What was counted locally during the outage stays
local (it is not copied into Redis).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from authabuse.counters import Key, MemoryStore
from authabuse.counters._store import Op, _check_record_args, check_key, redis_key
from authabuse.counters._window import window_slices
from authabuse.errors import ConfigurationError, MissingExtraError

__all__ = ["RedisStore"]

try:
    import hiredis as _hiredis
except ImportError:  # optional: without it batches go through the client's pipeline
    _hiredis = None  # type: ignore[assignment]  # the optional module is absent

log = logging.getLogger("authabuse.redis")

# The "pair" read (see RedisStore.batch): two bucket hashes of one key, summarised in
# Redis. Fields other than "n:<network>" come back whole (the current bucket's, then the
# previous one's); the networks are summed over both buckets and only their number, the
# ``top`` busiest (count descending, then network ascending, as the detector's evidence
# orders them) and the probed network's sum and current-bucket count come back: a
# window's reading costs the same however many networks an abuse spread it over.
_PAIR_LUA = """
local probe, top = ARGV[1], tonumber(ARGV[2])
local sums, nets, out, probe_cur = {}, {}, {}, 0
for i = 1, 2 do
  local flat, rest = redis.call('HGETALL', KEYS[i]), {}
  for j = 1, #flat, 2 do
    local f = flat[j]
    if string.byte(f, 1) == 110 and string.byte(f, 2) == 58 then
      local v = tonumber(flat[j + 1])
      local s = sums[f]
      if s == nil then
        nets[#nets + 1] = f
        sums[f] = v
      else
        sums[f] = s + v
      end
      if i == 1 and f == probe then probe_cur = v end
    else
      rest[#rest + 1] = f
      rest[#rest + 1] = flat[j + 1]
    end
  end
  out[i] = rest
end
local best, keys = {}, {}
for _, f in ipairs(nets) do
  local s, k = sums[f], tonumber(string.sub(f, 3))
  local n = #best
  if n < top or s > sums[best[n]] or (s == sums[best[n]] and k < keys[best[n]]) then
    local pos = n + 1
    while pos > 1 do
      local o = best[pos - 1]
      if sums[o] > s or (sums[o] == s and keys[o] < k) then break end
      best[pos] = o
      pos = pos - 1
    end
    best[pos] = f
    keys[f] = k
    if #best > top then
      keys[best[#best]] = nil
      best[#best] = nil
    end
  end
end
local flat = {}
for _, f in ipairs(best) do
  flat[#flat + 1] = f
  flat[#flat + 1] = sums[f]
end
local probe_sum = sums[probe]
if probe_sum ~= nil and keys[probe] == nil then
  flat[#flat + 1] = probe
  flat[#flat + 1] = probe_sum
end
out[3] = #nets
out[4] = probe_cur
out[5] = flat
return out
"""
# The "incr_fields" write: several counted fields of one slice in one call, and the
# slice's time to live when ARGV[1] is not 0.
_INCR_LUA = """
for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
local ttl = tonumber(ARGV[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 0
"""
_SCRIPTS = (_PAIR_LUA, _INCR_LUA)
# Redis names scripts by their SHA-1
_PAIR_SHA, _INCR_SHA = (hashlib.sha1(b.encode()).hexdigest() for b in _SCRIPTS)  # noqa: S324
_LOADS: list[tuple[Any, ...]] = [("SCRIPT", "LOAD", body) for body in _SCRIPTS]
_EXTENDED = frozenset({"pair", "incr_fields"})


class _Pair:
    """The result of a ``("pair", key, at, prev_at, probe, top)`` read (:meth:`RedisStore.batch`).

    ``cur`` and ``prev`` are the two buckets' counted fields other than ``n:<network>``;
    ``nets`` maps ``n:<network>`` to its count summed over both buckets: the ``top``
    busiest (count descending, then network ascending) and the ``probe``, or all of them
    where Redis cannot summarise (``complete``); ``n_nets`` is how many networks the two
    buckets hold; ``probe_cur`` the probe's count in the current bucket.

    >>> p = _Pair({"m": 2}, {}, {"n:64500": 2}, 1, 2, complete=True)
    >>> p.n_nets, p.probe_cur, p.complete
    (1, 2, True)
    """

    __slots__ = ("complete", "cur", "n_nets", "nets", "prev", "probe_cur")

    def __init__(
        self,
        cur: dict[str, int],
        prev: dict[str, int],
        nets: dict[str, int],
        n_nets: int,
        probe_cur: int,
        *,
        complete: bool,
    ) -> None:
        self.cur, self.prev, self.nets, self.n_nets = cur, prev, nets, n_nets
        self.probe_cur, self.complete = probe_cur, complete


def _pair_from_hashes(cur: dict[str, int], prev: dict[str, int], probe: str) -> _Pair:
    """Summarise two buckets read whole (every network kept)."""
    nets: dict[str, int] = {}
    rest: list[dict[str, int]] = [{}, {}]
    for part, other in ((cur, rest[0]), (prev, rest[1])):
        for f, v in part.items():
            if f[:2] == "n:":
                nets[f] = nets.get(f, 0) + v
            else:
                other[f] = v
    return _Pair(rest[0], rest[1], nets, len(nets), cur.get(probe, 0), complete=True)


def _pair_from_reply(reply: Any) -> _Pair:
    """Build the summary from the script's reply (fields and counts as text or integers)."""
    cur_flat, prev_flat, n_nets, probe_cur, top = reply
    cur = {f: n for f, v in zip(cur_flat[::2], cur_flat[1::2], strict=True) if (n := int(v))}
    prev = {f: n for f, v in zip(prev_flat[::2], prev_flat[1::2], strict=True) if (n := int(v))}
    nets = {f: int(v) for f, v in zip(top[::2], top[1::2], strict=True)}
    return _Pair(cur, prev, nets, int(n_nets), int(probe_cur), complete=False)


def _member(m: object) -> bytes:
    """Encode a member injectively: ints (and IP addresses) apart from bytes/str."""
    if isinstance(m, bool):
        raise TypeError("a member cannot be a bool")
    if isinstance(m, int):
        if m < 0:
            raise ValueError("int members must be non-negative")
        return b"i%d" % m
    if isinstance(m, IPv4Address | IPv6Address):
        return b"i%d" % int(m)
    if isinstance(m, str):
        return b"b" + m.encode("utf-8", "surrogatepass")
    if isinstance(m, bytes | bytearray | memoryview):
        return b"b" + bytes(m)
    raise TypeError(f"members are bytes, str, non-negative int or IP addresses, not {m!r}")


def _decode_part(text: str) -> str | int:
    if text.startswith("#"):
        return int(text[1:])
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            i += 1
            c = text[i]
        out.append(c)
        i += 1
    return "".join(out)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


class RedisStore:
    """The :class:`~authabuse.counters.CounterStore` protocol on a real Redis (extra ``redis``).

    ``url`` is a ``redis://`` / ``rediss://`` / ``unix://`` URL, or pass a ready
    ``client`` (e.g. a ``redis.cluster.RedisCluster``). ``prefix`` namespaces the keys.
    ``slice_seconds`` and ``retention`` must be the same on every server sharing the
    data. ``socket_timeout`` bounds each Redis call: a policy server must answer
    quickly even when Redis hangs.

    >>> store = RedisStore("redis://127.0.0.1:1/0", retry_interval=60)  # nobody there
    >>> store.add_distinct(("alice@example.jp", "ip"), [3325256711], at=1_714_557_600.0)
    >>> store.count_distinct(("alice@example.jp", "ip"), at=1_714_557_600.0, window=3600)
    1
    >>> store.status["degraded"], store.status["fallbacks"]
    (True, 1)
    """

    extended_ops = _EXTENDED
    """Operations :meth:`batch` runs besides the :data:`~authabuse.counters.Op` kinds."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "authabuse:",
        slice_seconds: float = 3600.0,
        retention: float = 86_400.0,
        client: Any = None,
        socket_timeout: float = 0.25,
        retry_interval: float = 5.0,
        fallback_max_keys: int = 1_000_000,
    ) -> None:
        for name, value in (("socket_timeout", socket_timeout), ("retry_interval", retry_interval)):
            if not isinstance(value, int | float) or not (0 < value < math.inf):  # NaN too
                raise ConfigurationError(
                    f"{name} must be a positive number of seconds, not {value!r}"
                )
        if client is None:
            try:
                import redis
            except ImportError as exc:
                raise MissingExtraError.for_extra("redis", "Redis counter stores") from exc
            try:
                client = redis.Redis.from_url(
                    url,
                    socket_timeout=socket_timeout,
                    socket_connect_timeout=socket_timeout,
                    health_check_interval=0,
                )
            except ValueError as exc:
                raise ConfigurationError(f"bad Redis URL {url!r}: {exc}") from None
        if not isinstance(slice_seconds, int | float) or not slice_seconds > 0:
            raise ConfigurationError(f"slice_seconds must be positive, not {slice_seconds!r}")
        if not isinstance(retention, int | float) or not retention >= slice_seconds:
            raise ConfigurationError("retention must be at least one slice")
        self._r = client
        self.url = url
        self.prefix = prefix
        self._slice = float(slice_seconds)
        self._nslices = window_slices(retention, self._slice)
        self._retention = self._nslices * self._slice
        self._ttl = math.ceil(self._retention + self._slice)
        self.retry_interval = retry_interval
        self._local = MemoryStore(
            max_keys=fallback_max_keys, slice_seconds=self._slice, retention=self._retention
        )
        self._degraded = False
        self._retry_at = 0.0
        self.status: dict[str, Any] = {"degraded": False, "fallbacks": 0, "errors": 0}
        # (slice index key, slice) -> monotonic time until which it needs no SADD again
        self._indexed: dict[tuple[str, int], float] = {}
        # slice key -> monotonic time until which it needs no EXPIRE again (see _encode)
        self._expiring: dict[str, float] = {}
        self._index_refresh = min(60.0, self._slice / 4)
        self._raw = False  # plain redis.Redis and hiredis: batches sent raw (see _send)
        try:
            import redis

            self._raw = type(client) is redis.Redis and _hiredis is not None
        except ImportError:  # a foreign client object: its own pipeline
            pass
        self._scripted = True  # extended operations run as scripts (unless Redis refuses)
        self._bases: dict[Key, str] = {}  # key -> its Redis name without ":kind:slice"
        self._nwin: dict[float, int] = {}  # window (s) -> slices it covers
        self._tls = threading.local()  # this thread's raw connection and unread replies
        self._socket_timeout = socket_timeout
        self._link: _LoopLink | None = None  # the connection on an asyncio loop (bind_loop)
        self._tls_context: ssl.SSLContext | None = None  # rediss:// on the loop
        self._bound: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        # While the loop link hands replies to their waiters (dispatching), and what to
        # call after it has then written what they submitted (see LoopRunner).
        self.dispatching = False
        self.after_dispatch: Callable[[], None] | None = None

    # ---------------------------------------------------------------- protocol properties

    @property
    def slice_seconds(self) -> float:
        """Width of the epoch-aligned time slices, in seconds."""
        return self._slice

    @property
    def retention(self) -> float:
        """Seconds of history kept per key (a whole number of slices)."""
        return self._retention

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and the local fallback answers."""
        return self._degraded

    # ---------------------------------------------------------------- failure handling

    def _redis_ok(self) -> bool:
        if not self._degraded:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            return False
        try:
            self._r.ping()
        except Exception:  # any client failure means "still down"
            self._retry_at = now + self.retry_interval
            return False
        self._degraded = False
        self.status["degraded"] = False
        log.warning("Redis at %s is reachable again: shared counters in use", self.url)
        return True

    def _failed(self, exc: BaseException) -> None:
        self.status["errors"] += 1
        self._indexed.clear()  # Redis may come back empty: index every slice again
        self._expiring.clear()
        if not self._degraded:
            self._degraded = True
            self.status["degraded"] = True
            self.status["fallbacks"] += 1
            log.warning(
                "Redis at %s unreachable (%s): counting in local memory until it returns",
                self.url,
                exc,
            )
        self._retry_at = time.monotonic() + self.retry_interval

    def _errors(self) -> tuple[type[BaseException], ...]:
        try:
            import redis
        except ImportError:  # a foreign client object: treat OSError as unreachable
            return (OSError,)
        return (redis.RedisError, OSError)

    # ---------------------------------------------------------------- keys

    def _slices(self, at: float, window: float) -> range:
        n = window_slices(window, self._slice)
        if n > self._nslices:
            raise ConfigurationError(
                f"window {window!r} s exceeds the store's retention of {self._retention:g} s"
            )
        last = math.floor(at / self._slice)
        return range(last - n + 1, last + 1)

    def _index_key(self, key: Key) -> str:
        return self._base(key) + ":m:0"

    def _base(self, key: Key) -> str:
        """:func:`redis_key` without its ``:kind:slice`` tail, remembered per key.

        One entry per key (not per key, kind and slice), so the memo covers a large
        working set; only keys that :func:`check_key` accepted enter it, so a hit needs
        no check. A miss costs one :func:`redis_key`.
        """
        bases = self._bases
        try:
            return bases[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable key: let check_key refuse it
            pass
        check_key(key)
        base = redis_key(self.prefix, key, "", 0)[:-3]  # drop the "::0" tail
        if len(bases) >= 200_000:
            bases.clear()
        bases[key] = base
        return base

    def _name(self, key: Key, kind: str, slice_no: int) -> str:
        """:func:`redis_key` of one slice (see :meth:`_base`)."""
        return f"{self._base(key)}:{kind}:{slice_no}"

    def _window_range(self, at: float, window: float) -> tuple[int, int]:
        """First and last slice a window covers (validated; slice counts memoised)."""
        last = math.floor(self._check_time(at) / self._slice)
        try:
            n = self._nwin[window]
        except (KeyError, TypeError):
            n = len(self._slices(at, window))  # validates the window
            if len(self._nwin) < 1024:
                self._nwin[window] = n
        return last - n + 1, last

    def _window_names(self, key: Key, kind: str, at: float, window: float) -> list[str]:
        """Names of the slice keys a window covers."""
        first, last = self._window_range(at, window)
        base = self._base(key)
        if first == last:
            return [f"{base}:{kind}:{last}"]
        return [f"{base}:{kind}:{i}" for i in range(first, last + 1)]

    def _hinted_names(
        self, key: Key, at: float, window: float, times: Sequence[float]
    ) -> list[str]:
        """Names of the slices of ``times`` (all inside the window ending at ``at``)."""
        first, last = self._window_range(at, window)
        base = self._base(key)
        nums = sorted({math.floor(self._check_time(t) / self._slice) for t in times})
        if not nums or nums[0] < first or nums[-1] > last:
            raise ValueError(f"times {times!r} are not inside the window ending at {at!r}")
        return [f"{base}:d:{i}" for i in nums]

    @staticmethod
    def _check_time(at: float) -> float:
        if type(at) is float and at - at == 0.0:  # finite (inf - inf and nan are nan)
            return at
        if type(at) is int:
            return float(at)
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise ValueError(f"at must be a finite POSIX time in seconds, not {at!r}")
        return float(at)

    # ---------------------------------------------------------------- protocol

    def add_distinct(self, key: Key, members: Iterable[Any], *, at: float) -> None:
        """Add ``members`` to ``key``'s distinct set in the slice of time ``at``."""
        if isinstance(members, str | bytes | bytearray):
            raise TypeError("members must be an iterable of members, e.g. [member]")
        self.batch([("add_distinct", key, list(members), at)])

    def count_distinct(self, key: Key, *, at: float, window: float) -> int:
        """Distinct members of ``key`` over the ``window`` seconds ending at ``at``."""
        result: int = self.batch([("count_distinct", key, at, window)])[0]
        return result

    def incr(self, key: Key, field: str, amount: int = 1, *, at: float) -> None:
        """Add ``amount`` to ``key``'s counted ``field`` in the slice of time ``at``."""
        self.batch([("incr", key, field, amount, at)])

    def counts(self, key: Key, *, at: float, window: float) -> dict[str, int]:
        """``key``'s counted fields summed over the ``window`` seconds ending at ``at``."""
        result: dict[str, int] = self.batch([("counts", key, at, window)])[0]
        return result

    # ---------------------------------------------------------------- records

    def put_record(
        self,
        key: Key,
        fields: Mapping[str, str],
        *,
        at: float,
        ttl: float,
        keep_existing: bool = False,
        remove: Iterable[str] = (),
    ) -> None:
        """Set text ``fields`` of ``key``'s record (a hash); it expires ``ttl`` s later.

        ``keep_existing`` sets only fields not set yet (``HSETNX``); ``remove`` deletes
        fields (``HDEL``). The time to live is wall-clock, refreshed by every write.
        """
        self.batch([("put_record", key, fields, at, ttl, keep_existing, tuple(remove))])

    def get_record(self, key: Key) -> dict[str, str]:
        """Return the fields of ``key``'s record (``{}`` when absent or expired)."""
        result: dict[str, str] = self.batch([("get_record", key)])[0]
        return result

    # ---------------------------------------------------------------- batches

    def batch(self, ops: Sequence[Op]) -> list[Any]:
        """Run a list of :data:`~authabuse.counters.Op` in one pipelined round trip.

        Results come back in order; each read sees the writes listed before it. On a
        Redis failure the whole list runs on the local fallback (see the module text).

        Besides the :data:`~authabuse.counters.Op` kinds, ``("pair", key, at, prev_at,
        probe, top)`` reads the counted fields of two slices (a window's current and
        previous bucket) as a summary whose size does not grow with the networks they
        hold: fields other than ``n:<network>`` whole, and of the ``n:`` fields their
        number, the ``top`` busiest and the ``probe`` (summed over both slices). It runs
        as one script in Redis (loaded on each connection, and again after
        ``NOSCRIPT``); on the local fallback and on clients without a raw connection
        (Redis Cluster) both slices are read whole and summarised here.

        >>> store = RedisStore("redis://127.0.0.1:1/0", retry_interval=60)  # nobody there
        >>> key, at = ("alice@example.jp", "ip"), 1_714_557_600.0
        >>> store.batch([("add_distinct", key, [1], at), ("count_distinct", key, at, 60)])
        [None, 1]
        """
        ops = list(ops)
        plan = [self._plan(op) for op in ops]  # validates everything before any write
        if not ops:
            return []
        if self._redis_ok():
            try:
                return self._run_plan(plan, wait=True)
            except self._errors() as exc:
                self._failed(exc)
        return _local_batch(self._local, ops)

    def send(self, ops: Sequence[Op]) -> None:
        """Run write operations without waiting for Redis to acknowledge them.

        The commands are written to this thread's connection and their replies read
        with the next batch's (so a later read on this store sees them, in order); a
        write Redis refuses is counted in :attr:`status` and logged then. A detector
        sends each event's counts this way: one round trip per recorded event, not two.

        >>> store = RedisStore("redis://127.0.0.1:1/0", retry_interval=60)  # nobody there
        >>> store.send([("incr", ("alice@example.jp", "n"), "mails", 1, 1_714_557_600.0)])
        >>> store.counts(("alice@example.jp", "n"), at=1_714_557_600.0, window=60)
        {'mails': 1}
        """
        ops = list(ops)
        plan = [self._plan(op) for op in ops]
        if not ops:
            return
        if self._redis_ok():
            try:
                self._run_plan(plan, wait=False)
                return
            except self._errors() as exc:
                self._failed(exc)
        _local_batch(self._local, ops)

    def _counted_slice(self, key: Key, at: Any) -> tuple[str, int]:
        """Return the base name and slice number that a count of ``key`` at ``at`` goes to."""
        if type(at) is not int and (type(at) is not float or at - at != 0.0):
            at = self._check_time(at)
        base = self._bases.get(key) if type(key) is tuple else None
        if base is None:
            base = self._base(key)
        return base, math.floor(at / self._slice)

    def _plan(self, op: Op) -> tuple[str, Any]:  # noqa: PLR0911, PLR0912 - one return per kind
        name = op[0]
        if name == "counts":  # the most frequent: one slice of a bucket, read whole
            key, at, window = op[1], op[2], op[3]
            t = type(at)
            if window == self._slice and (t is int or (t is float and at - at == 0.0)):
                base = self._bases.get(key) if type(key) is tuple else None
                if base is None:
                    base = self._base(key)
                return name, [f"{base}:c:{math.floor(at / window)}"]
            return name, self._window_names(key, "c", at, window)
        if name == "get_record":
            key = op[1]
            base = self._bases.get(key) if type(key) is tuple else None
            if base is None:
                check_key(key)
                base = self._base(key)
            return name, base + ":r:0"
        if name == "add_distinct":
            key, members, at = op[1], op[2], op[3]
            check_key(key)
            if isinstance(members, str | bytes | bytearray):
                raise TypeError("members must be an iterable of members, e.g. [member]")
            encoded = [_member(m) for m in members]
            slice_no = math.floor(self._check_time(at) / self._slice)
            base = self._base(key)
            return name, (base + ":m:0", f"{base}:d:{slice_no}", slice_no, encoded)
        if name == "incr":
            key, field, amount, at = op[1], op[2], op[3], op[4]
            if type(field) is not str:
                raise TypeError(f"counted fields are str, not {type(field).__name__}")
            if type(amount) is not int:
                raise TypeError("amount must be an int")
            base, slice_no = self._counted_slice(key, at)
            return name, (base + ":m:0", f"{base}:c:{slice_no}", slice_no, field, amount)
        if name == "count_distinct":
            key, at, window = op[1], op[2], op[3]
            if len(op) > 4:  # only the slices of these times
                return name, self._hinted_names(key, at, window, op[4])
            return name, self._window_names(key, "d", at, window)
        if name == "incr_fields":  # several "incr" of one key and slice
            key, fields, at = op[1], op[2], op[3]
            if type(fields) is not dict or not all(
                type(f) is str and type(n) is int for f, n in fields.items()
            ):
                raise TypeError("incr_fields takes a dict of str fields to int amounts")
            base, slice_no = self._counted_slice(key, at)
            return name, (base + ":m:0", f"{base}:c:{slice_no}", slice_no, fields)
        if name == "pair":  # two buckets of counted fields, summarised (see _PAIR_LUA)
            key, at, prev_at, probe, top = op[1], op[2], op[3], op[4], op[5]
            if type(probe) is not str or type(top) is not int or top < 1:
                raise TypeError("a pair reads a str probe and an int top >= 1")
            base = self._base(key)
            cur = math.floor(self._check_time(at) / self._slice)
            prev = math.floor(self._check_time(prev_at) / self._slice)
            return name, (f"{base}:c:{cur}", f"{base}:c:{prev}", probe, top)
        if name == "put_record":
            key, fields, at, ttl, keep, remove = op[1], op[2], op[3], op[4], op[5], tuple(op[6])
            check_key(key)
            _check_record_args(fields, ttl, remove)
            self._check_time(at)
            return name, (self._name(key, "r", 0), dict(fields), ttl, keep, remove)
        raise ValueError(f"unknown store operation {name!r}")

    def _run_plan(self, plan: list[tuple[str, Any]], *, wait: bool) -> list[Any]:
        commands, shape = self._encode(plan)
        if not wait:
            self._send(commands, wait=False)
            return []
        return self._decode(shape, self._send(commands, wait=True))

    def _encode(  # noqa: PLR0912, PLR0915 - one flat loop per operation kind, for speed
        self, plan: list[tuple[str, Any]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]]]:
        """Return the Redis commands of a plan and its shape (operation, replies it takes)."""
        commands: list[tuple[Any, ...]] = []
        cmd = commands.append
        shape: list[tuple[str, int]] = []  # (operation, replies it takes)
        expire: dict[str, int] = {}
        index: dict[str, set[int]] = {}
        ttl = self._ttl
        # A slice key's EXPIRE is sent at its first write and then at most once per
        # refresh interval (not with every write): its time to live (retention plus a
        # slice) only needs to start after the slice's last writes, within that slack.
        now = time.monotonic()
        expiring = self._expiring
        slice_exp: set[str] = set()
        scripted_exp: set[str] = set()  # given their EXPIRE by the script
        for name, arg in plan:
            if name == "add_distinct":
                ikey, dkey, slice_no, encoded = arg
                if not encoded:
                    shape.append((name, 0))
                    continue
                cmd(("PFADD", dkey, *encoded))
                if expiring.get(dkey, 0.0) <= now:
                    slice_exp.add(dkey)
                index.setdefault(ikey, set()).add(slice_no)
                shape.append((name, 1))
            elif name == "incr":
                ikey, ckey, slice_no, field, amount = arg
                cmd(("HINCRBY", ckey, field, amount))
                if expiring.get(ckey, 0.0) <= now:
                    slice_exp.add(ckey)
                index.setdefault(ikey, set()).add(slice_no)
                shape.append((name, 1))
            elif name == "incr_fields":
                ikey, ckey, slice_no, fields = arg
                if not fields:
                    shape.append((name, 0))
                    continue
                due = expiring.get(ckey, 0.0) <= now
                if self._raw and self._scripted:
                    flat = [x for kv in fields.items() for x in kv]
                    cmd(("EVALSHA", _INCR_SHA, 1, ckey, ttl if due else 0, *flat))
                    if due:
                        scripted_exp.add(ckey)
                    shape.append((name, 1))
                else:
                    for f, amount in fields.items():
                        cmd(("HINCRBY", ckey, f, amount))
                    if due:
                        slice_exp.add(ckey)
                    shape.append((name, len(fields)))
                index.setdefault(ikey, set()).add(slice_no)
            elif name == "count_distinct":
                cmd(("PFCOUNT", *arg))
                shape.append((name, 1))
            elif name == "counts":
                for k in arg:
                    cmd(("HGETALL", k))
                shape.append((name, len(arg)))
            elif name == "pair":
                cur, prev, probe, top = arg
                if self._raw and self._scripted:
                    cmd(("EVALSHA", _PAIR_SHA, 2, cur, prev, probe, top))
                    shape.append((name, 1))
                else:  # a client's pipeline: read both whole, summarise here
                    cmd(("HGETALL", cur))
                    cmd(("HGETALL", prev))
                    shape.append(("pair:" + probe, 2))
            elif name == "put_record":
                rkey, fields, rttl, keep, remove = arg
                n = 0
                if fields and not keep:
                    cmd(("HSET", rkey, *[x for kv in fields.items() for x in kv]))
                    n += 1
                elif fields:
                    for k, v in fields.items():
                        cmd(("HSETNX", rkey, k, v))
                        n += 1
                if remove:
                    cmd(("HDEL", rkey, *remove))
                    n += 1
                expire[rkey] = max(expire.get(rkey, 0), math.ceil(rttl))
                shape.append((name, n))
            else:  # get_record
                cmd(("HGETALL", arg))
                shape.append((name, 1))
        if slice_exp or scripted_exp:
            if len(expiring) > 200_000:
                expiring.clear()
            until = now + self._index_refresh
            for k in scripted_exp:
                expiring[k] = until
            for k in slice_exp - scripted_exp:
                expiring[k] = until
                cmd(("EXPIRE", k, ttl))
        indexed = self._indexed
        for ikey, slices in index.items():
            # A slice index needs refreshing only now and then too: it only helps
            # forget() and keys() find the data keys.
            fresh = [i for i in slices if indexed.get((ikey, i), -math.inf) > now]
            if len(fresh) == len(slices):
                continue
            if len(indexed) > 200_000:
                indexed.clear()
            for i in slices:
                indexed[ikey, i] = now + self._index_refresh
            cmd(("SADD", ikey, *sorted(slices)))
            expire[ikey] = ttl
        for k, seconds in expire.items():
            cmd(("EXPIRE", k, seconds))
        return commands, shape

    def _decode(  # noqa: PLR0912 - one flat loop per operation kind, for speed
        self, shape: list[tuple[str, int]], replies: list[Any]
    ) -> list[Any]:
        """Return the operations' results from their commands' replies."""
        out: list[Any] = []
        pos = 0
        raw = self._raw
        for name, n in shape:
            if n == 1 and raw:  # the frequent case: one reply, decoded to text by hiredis
                h = replies[pos]
                pos += 1
                if name == "counts":  # a map (RESP3: the loop link) or a flat list
                    if type(h) is dict:
                        out.append({f: n for f, v in h.items() if (n := int(v))})
                    else:
                        out.append({f: n for f, v in _pairs(h) if (n := int(v))})
                elif name == "count_distinct":
                    out.append(int(h))
                elif name == "pair":
                    out.append(_pair_from_reply(h))
                elif name == "get_record":
                    out.append(h if type(h) is dict else dict(_pairs(h)))
                else:
                    out.append(None)
                continue
            part = replies[pos : pos + n]
            pos += n
            if name == "count_distinct":
                out.append(int(part[0]))
            elif name == "counts":
                total: dict[str, int] = {}
                for h in part:
                    for f, v in _pairs(h):
                        fname = _text(f)
                        total[fname] = total.get(fname, 0) + int(v)
                out.append({f: v for f, v in total.items() if v})
            elif name[:5] == "pair:":
                cur, prev = ({_text(f): int(v) for f, v in _pairs(h)} for h in part)
                out.append(_pair_from_hashes(cur, prev, name[5:]))
            elif name == "get_record":
                h = part[0]
                if self._raw:  # decoded to text by hiredis: a map (RESP3) or a flat list
                    out.append(h if type(h) is dict else dict(_pairs(h)))
                else:
                    out.append({_text(f): _text(v) for f, v in _pairs(h)})
            else:
                out.append(None)
        return out

    def _send(self, commands: list[tuple[Any, ...]], *, wait: bool) -> list[Any]:
        """Run ``commands`` in one round trip; return their replies in order.

        With a plain ``redis.Redis`` client and hiredis, the commands are encoded by
        hiredis into one write on this thread's connection (taken from the client's
        pool and kept), and the replies are parsed by a hiredis reader as they arrive:
        a Python call per batch, not per command. ``wait=False`` (see :meth:`send`)
        writes the commands and leaves their replies to be read with the next batch's.
        Otherwise (Redis Cluster, another client object, no hiredis) the client's own
        non-transactional pipeline runs them, and always waits.
        """
        if not self._raw:
            pipe = self._r.pipeline(transaction=False)
            for c in commands:
                pipe.execute_command(*c)
            return list(pipe.execute())
        tls = self._tls
        conn = getattr(tls, "conn", None)
        try:
            if conn is None:
                conn = tls.conn = self._r.connection_pool.get_connection()
                tls.unread = []
            sock = conn._sock
            if sock is None:
                conn.connect()
                sock = conn._sock
            pack = _hiredis.pack_command
            data = b"".join([pack(c) for c in commands])
            unread: list[tuple[Any, ...]] = tls.unread  # commands whose replies are unread
            if getattr(tls, "scripted", None) is not sock:  # a new connection: load the scripts
                data = b"".join([pack(c) for c in _LOADS]) + data
                unread += _LOADS
                tls.scripted = sock
            sock.sendall(data)
            if not wait:
                unread += commands
                return []
            skip = len(unread)
            replies = _read_replies(sock, skip + len(commands))
            if any(type(r) is _hiredis.ReplyError and str(r)[:8] == "NOSCRIPT" for r in replies):
                replies = self._rescript(sock, [*unread, *commands], replies)
            unread.clear()
        except BaseException:
            self._drop_connection()  # the reply stream may be out of step: start afresh
            raise
        late = [r for r in replies[:skip] if isinstance(r, _hiredis.ReplyError)]
        if late:
            self.status["errors"] += len(late)
            log.warning("Redis refused %d sent write(s): %s", len(late), late[0])
        replies = replies[skip:]
        for reply in replies:
            if isinstance(reply, _hiredis.ReplyError):
                import redis

                raise redis.ResponseError(str(reply))
        return replies

    @staticmethod
    def _rescript(sock: Any, commands: list[tuple[Any, ...]], replies: list[Any]) -> list[Any]:
        """Redis lost the scripts (``SCRIPT FLUSH``, a restart behind a proxy): load them again.

        The script calls that got ``NOSCRIPT`` run again (Redis ran none of their
        commands); the other commands ran and stand.
        """
        again = [i for i, r in enumerate(replies) if _noscript(r)]
        pack = _hiredis.pack_command
        out = [pack(c) for c in _LOADS] + [pack(commands[i]) for i in again]
        sock.sendall(b"".join(out))
        fresh = _read_replies(sock, len(out))[len(_LOADS) :]
        replies = list(replies)
        for i, r in zip(again, fresh, strict=True):
            replies[i] = r
        log.warning("Redis had lost the authabuse scripts: loaded them again")
        return replies

    def _drop_connection(self) -> None:
        conn = getattr(self._tls, "conn", None)
        self._tls.conn = None
        self._tls.unread = []
        self._tls.scripted = None
        if conn is not None:
            conn.disconnect()
            self._r.connection_pool.release(conn)

    # ---------------------------------------------------------------- on an asyncio loop

    async def bind_loop(self) -> bool:
        """Give this store a connection on the running asyncio loop (for a policy server).

        Afterwards :meth:`submit` and :meth:`post` write their commands on it without
        blocking: what every callback of one loop iteration submits goes out in one
        write, and the replies are parsed as they arrive. It connects as the client's
        URL says: TCP or a Unix socket, TLS (``rediss://``, with the client's
        certificate and verification settings), ``AUTH`` (with a user name too) and
        ``SELECT``. Returns ``False`` (nothing bound; use the blocking calls) for
        clients this does not cover: Redis Cluster, TLS with OCSP checks, a client
        object of another kind, or no hiredis. Redis being down is not a reason: the
        store falls back to local state and reconnects in the background.

        >>> import asyncio
        >>> async def demo():
        ...     store = RedisStore("redis://127.0.0.1:1/0", retry_interval=60)
        ...     bound = await store.bind_loop()
        ...     got = []
        ...     now = store.submit([("count_distinct", ("a", "ip"), 1e9, 60)], got.append)
        ...     await store.unbind_loop()
        ...     return bound, now, store.degraded
        >>> asyncio.run(demo())  # nobody there: answered at once, by the local fallback
        (True, [0], True)
        """
        if not self._raw or self._bound is not None:
            return self._bound is not None
        import redis

        pool = self._r.connection_pool
        if issubclass(pool.connection_class, redis.SSLConnection):
            self._tls_context = _tls_context(pool)
            if self._tls_context is None:
                return False
        self._bound = asyncio.get_running_loop()
        await self._connect_link()
        return True

    async def unbind_loop(self) -> None:
        """Wait (at most ``socket_timeout``) for what is in flight, then close the link."""
        link, self._link = self._link, None
        task, self._connecting = self._connecting, None
        self._bound = None
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        if task is not None:
            task.cancel()
        if link is not None:
            await link.drain(self._socket_timeout)
            link.close()

    async def _connect_link(self) -> None:  # noqa: PLR0912 - one handshake, its failures
        """Open the loop connection (authenticate, select the database, PING)."""
        loop = asyncio.get_running_loop()
        kw = self._r.connection_pool.connection_kwargs
        hello: list[tuple[Any, ...]] = []
        if kw.get("password"):
            user = kw.get("username")
            hello.append(("AUTH", user, kw["password"]) if user else ("AUTH", kw["password"]))
        if kw.get("db"):
            hello.append(("SELECT", kw["db"]))
        # RESP3 where Redis has it (6+): hiredis then builds HGETALL's dicts in C.
        hello.append(("HELLO", 3))
        hello += _LOADS
        hello.append(("PING",))
        link = _LoopLink(self, loop)
        try:
            async with asyncio.timeout(self._socket_timeout):
                if kw.get("path"):
                    await loop.create_unix_connection(lambda: link, kw["path"])
                elif self._tls_context is not None:
                    host = kw.get("host", "localhost")
                    await loop.create_connection(
                        lambda: link,
                        host,
                        kw.get("port", 6379),
                        ssl=self._tls_context,
                        server_hostname=host,
                    )
                else:
                    await loop.create_connection(
                        lambda: link, kw.get("host", "localhost"), kw.get("port", 6379)
                    )
                replies = await link.request(hello)
            if isinstance(replies, BaseException):
                raise ConnectionError(f"Redis failed: {replies}")
            for command, reply in zip(hello, replies, strict=True):
                if not isinstance(reply, _hiredis.ReplyError) or command[0] == "HELLO":
                    continue
                if command[0] == "SCRIPT":  # scripting denied: pairs read whole buckets
                    if self._scripted:
                        log.warning(
                            "Redis refused the authabuse scripts (%s): plain commands instead",
                            reply,
                        )
                    self._scripted = False
                    continue
                raise ConnectionError(f"Redis refused {reply}")
        except (OSError, TimeoutError, ConnectionError) as exc:
            if not link.dead:  # (a link that failed has said so itself)
                link.close()
                self._failed(exc)
            self._schedule_retry()
            return
        if self._bound is not loop:  # unbound meanwhile
            link.close()
            return
        self._link = link
        if self._degraded:
            self._degraded = False
            self.status["degraded"] = False
            log.warning("Redis at %s is reachable again: shared counters in use", self.url)

    def _link_lost(self, link: _LoopLink, exc: BaseException) -> None:
        if self._link is link:
            self._link = None
        self._failed(exc)
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        """Reconnect in the background once ``retry_interval`` has passed, traffic or not."""
        loop = self._bound
        if loop is None:
            return
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        delay = max(0.0, self._retry_at - time.monotonic()) + 0.001
        self._retry_timer = loop.call_later(delay, self._reconnect_soon)

    def _reconnect_soon(self) -> None:
        loop = self._bound
        if loop is None or (self._connecting is not None and not self._connecting.done()):
            return
        if time.monotonic() < self._retry_at:
            return
        self._retry_at = time.monotonic() + self.retry_interval
        self._connecting = loop.create_task(self._connect_link())

    def submit(
        self, ops: Sequence[Op], done: Callable[[Any, Any], None], arg: Any = None
    ) -> list[Any] | None:
        """Run ``ops`` like :meth:`batch`, without blocking the loop (see :meth:`bind_loop`).

        Returns the results at once when they are known at once (the store is not bound
        to a loop, or Redis is down and the local fallback answers); otherwise returns
        ``None`` and later calls ``done(arg, results)``. If Redis fails meanwhile, the
        operations run on the local fallback and ``done`` gets those results. Commands
        of one store reach Redis in the order they were submitted or posted.
        """
        link = self._link
        if link is None:
            if self._bound is not None:
                return self._run_locally(ops)
            return self.batch(ops)
        ops = list(ops)
        plan = [self._plan(op) for op in ops]
        if not ops:
            return []
        commands, shape = self._encode(plan)
        link.push(ops, commands, shape, done, arg)
        return None

    def _run_locally(self, ops: Sequence[Op]) -> list[Any]:
        """Bound to a loop with Redis down: validate as :meth:`batch` would, run locally."""
        self._reconnect_soon()
        ops = list(ops)
        for op in ops:
            self._plan(op)
        return _local_batch(self._local, ops)

    def post(self, ops: Sequence[Op]) -> None:
        """:meth:`send` without blocking the loop: written with this loop iteration's batch.

        If Redis fails before it acknowledges them, the writes are replayed on the local
        fallback.
        """
        link = self._link
        if link is None:
            if self._bound is not None:
                self._run_locally(ops)
                return
            self.send(ops)
            return
        ops = list(ops)
        plan = [self._plan(op) for op in ops]
        if ops:
            commands, _ = self._encode(plan)
            link.push(ops, commands, None, None, None)

    def forget(self, key: Key) -> None:
        """Remove everything held for ``key`` (in Redis and in the local fallback)."""
        check_key(key)
        self._local.forget(key)
        if self._redis_ok():
            try:
                ikey = self._index_key(key)
                slices = [int(s) for s in self._r.smembers(ikey)]
                names = [redis_key(self.prefix, key, k, i) for i in slices for k in ("d", "c")]
                pipe = self._r.pipeline(transaction=False)
                for name in (*names, ikey, redis_key(self.prefix, key, "r", 0)):
                    pipe.delete(name)
                pipe.execute()
            except self._errors() as exc:
                self._failed(exc)

    def keys(self) -> Iterator[Key]:
        """Iterate over the keys held in Redis (a ``SCAN``: for administration)."""
        if not self._redis_ok():
            yield from self._local.keys()
            return
        plen = len(self.prefix)
        seen: set[Key] = set()
        for kind in ("m", "r"):
            pattern = _glob_escape(self.prefix) + f"*:{kind}:0"
            for raw in self._r.scan_iter(match=pattern, count=1000):
                name = _text(raw)
                body = name[plen:-4]  # "{subject}:rest" without ":m:0" / ":r:0"
                close = _find_unescaped(body, "}")
                subject = _decode_part(body[1:close])
                rest = body[close + 2 :]
                parts = [_decode_part(p) for p in _split_unescaped(rest, ":")] if rest else []
                key = (subject, *parts)
                if key not in seen:
                    seen.add(key)
                    yield key

    def __len__(self) -> int:
        if not self._redis_ok():
            return len(self._local)
        return sum(1 for _ in self.keys())

    def memory_usage(self) -> int:
        """Bytes in use: Redis's ``used_memory`` plus the local fallback's bytes."""
        local = self._local.memory_usage()
        if self._redis_ok():
            try:
                return int(self._r.info("memory")["used_memory"]) + local
            except self._errors() as exc:
                self._failed(exc)
        return local

    def close(self) -> None:
        """Read what :meth:`send` left unread, then close the connection pool."""
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        self._bound = None
        if getattr(self._tls, "unread", None):
            try:
                self._send([("PING",)], wait=True)
            except self._errors() as exc:
                self._failed(exc)
        self._drop_connection()
        close = getattr(self._r, "close", None)
        if close is not None:
            close()


_SETTLE_EVERY = 0.0005  # seconds of dispatching between writes of decided answers


class _Waiter:
    """Replies expected on the loop link for one submitted or posted list of operations."""

    __slots__ = ("arg", "commands", "done", "n", "ops", "replies", "sent", "shape")

    def __init__(  # noqa: PLR0917 - built in two places, positionally, per batch
        self,
        ops: list[Op],
        commands: list[tuple[Any, ...]],
        shape: list[tuple[str, int]] | None,
        done: Callable[[Any, Any], None] | None,
        arg: Any,
        sent: float,
    ) -> None:
        self.ops, self.commands, self.shape, self.done, self.arg = ops, commands, shape, done, arg
        self.n = len(commands)
        self.replies: list[Any] = []
        self.sent = sent


class _LoopLink(asyncio.Protocol):
    """A :class:`RedisStore`'s connection on an asyncio loop: nothing here blocks.

    Commands are packed by hiredis and appended to an output buffer written once per
    loop iteration (``call_soon``); replies are parsed by a hiredis reader as they
    arrive and handed, in order, to the waiter that sent them. A waiter that has had no
    answer within the store's ``socket_timeout``, a lost connection or an error reply
    to a read fails the link: every waiter's operations (reads and unacknowledged
    writes alike) then run on the local fallback, in the order they were sent, and the
    store is degraded until a background reconnection succeeds.
    """

    def __init__(self, store: RedisStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reader = _hiredis.Reader(encoding="utf-8", errors="surrogateescape")
        self.waiting: deque[_Waiter] = deque()
        self.out: list[bytes] = []
        self.unsent: list[_Waiter] = []  # waiters whose commands are in ``out``
        self.flush_soon = False
        self.timer: asyncio.TimerHandle | None = None
        self.dead = False
        self.idle: asyncio.Future[None] | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport
        if self.out and not self.flush_soon:
            self.flush_soon = True
            self.loop.call_soon(self._flush)

    def data_received(self, data: bytes) -> None:
        store = self.store
        store.dispatching = True
        try:
            self._dispatch(data)
        finally:
            store.dispatching = False
        self._flush()  # what the resumed events submitted and posted, in one write
        if store.after_dispatch is not None:
            store.after_dispatch()

    def _dispatch(self, data: bytes) -> None:
        reader = self.reader
        waiting = self.waiting
        store = self.store
        # Replies that arrive together resume many events; their answers wait until
        # their writes are written (after_dispatch). So that the first answers do not
        # wait for the last events' work, what is decided is written and answered
        # every _SETTLE_EVERY seconds of dispatching.
        settle_at = time.perf_counter() + _SETTLE_EVERY
        try:
            reader.feed(data)
            reply = reader.gets()
            while reply is not False:
                w = waiting[0]
                w.replies.append(reply)
                if len(w.replies) == w.n:
                    if w.ops and any(_noscript(r) for r in w.replies):
                        waiting.popleft()
                        self._rescript(w)
                        reply = reader.gets()
                        continue
                    if w.shape is not None and any(
                        isinstance(r, _hiredis.ReplyError) for r in w.replies
                    ):
                        import redis

                        bad = next(r for r in w.replies if isinstance(r, _hiredis.ReplyError))
                        self.fail(redis.ResponseError(str(bad)))
                        return
                    waiting.popleft()
                    self._complete(w)
                    if store.after_dispatch is not None and time.perf_counter() > settle_at:
                        self._flush()
                        store.after_dispatch()
                        settle_at = time.perf_counter() + _SETTLE_EVERY
                reply = reader.gets()
        except _hiredis.ProtocolError as exc:
            self.fail(ConnectionError(f"bad reply from Redis: {exc}"))
            return
        except IndexError:  # a reply nobody waits for: the stream is out of step
            self.fail(ConnectionError("unexpected reply from Redis"))
            return
        if not waiting:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if self.idle is not None and not self.idle.done():
                self.idle.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.dead:
            self.fail(exc or ConnectionError("Redis closed the connection"))

    # -- used by the store

    def push(
        self,
        ops: list[Op],
        commands: list[tuple[Any, ...]],
        shape: list[tuple[str, int]] | None,
        done: Callable[[Any, Any], None] | None,
        arg: Any,
    ) -> None:
        self._enqueue(_Waiter(ops, commands, shape, done, arg, time.monotonic()))
        if self.timer is None:
            self.timer = self.loop.call_later(self.store._socket_timeout, self._check_timeout)

    async def request(self, commands: list[tuple[Any, ...]]) -> Any:
        """Send ``commands``; return their raw replies, or the exception that failed the link."""
        fut: asyncio.Future[Any] = self.loop.create_future()

        def done(_arg: Any, replies: Any) -> None:
            if not fut.done():
                fut.set_result(replies)

        w = _Waiter([], commands, None, done, None, time.monotonic())
        self.waiting.append(w)
        self.unsent.append(w)
        self.out += [_hiredis.pack_command(c) for c in commands]
        if self.transport is not None:
            self._flush()
        return await fut

    async def drain(self, timeout: float) -> None:
        """Wait until every waiter has its replies (or ``timeout`` seconds)."""
        if self.dead or not self.waiting:
            return
        self.idle = self.loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await self.idle
        except TimeoutError:
            self.fail(TimeoutError("Redis did not answer before the server stopped"))

    def close(self) -> None:
        self.dead = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    def fail(self, exc: BaseException) -> None:
        """Give up the connection; run everything still unanswered on the local fallback."""
        if self.dead:
            return
        self.close()
        store = self.store
        store._link_lost(self, exc)
        pending = list(self.waiting)
        self.waiting.clear()
        self.out.clear()
        self.unsent.clear()
        local = store._local
        for w in pending:
            if w.shape is None and w.done is None:  # posted writes: replayed locally
                _local_batch(local, w.ops)
                continue
            try:
                result: Any = _local_batch(local, w.ops) if w.shape is not None else exc
            except Exception as err:  # handed to the waiter, which decides
                result = err
            if w.done is not None:
                w.done(w.arg, result)
        if self.idle is not None and not self.idle.done():
            self.idle.set_result(None)

    # -- internals

    def _complete(self, w: _Waiter) -> None:
        if w.shape is None:
            if w.done is not None:  # a handshake
                w.done(w.arg, w.replies)
                return
            late = [r for r in w.replies if isinstance(r, _hiredis.ReplyError)]
            if late:
                self.store.status["errors"] += len(late)
                log.warning("Redis refused %d sent write(s): %s", len(late), late[0])
            return
        assert w.done is not None  # noqa: S101 - a read always has a callback
        try:
            result: Any = self.store._decode(w.shape, w.replies)
        except Exception as exc:  # handed to the waiter, which decides
            result = exc
        w.done(w.arg, result)

    def _rescript(self, w: _Waiter) -> None:
        """Redis lost the scripts: load them, run ``w``'s script calls again, then finish it.

        Redis ran none of the commands of a call that got ``NOSCRIPT``, so running it
        again is safe (writes included); it runs after what was sent meanwhile.
        """
        again = [i for i, r in enumerate(w.replies) if _noscript(r)]
        commands = [*_LOADS, *(w.commands[i] for i in again)]
        log.warning("Redis had lost the authabuse scripts: loading them again")

        def rerun(_arg: Any, replies: Any) -> None:
            if isinstance(replies, BaseException):  # the link failed meanwhile
                if w.shape is None:
                    _local_batch(self.store._local, w.ops)
                elif w.done is not None:
                    try:
                        w.done(w.arg, _local_batch(self.store._local, w.ops))
                    except Exception:  # the waiter's own failure: logged, not spread
                        log.exception("a store waiter failed")
                return
            for i, r in zip(again, replies[len(_LOADS) :], strict=True):
                w.replies[i] = r
            if w.shape is not None and any(isinstance(r, _hiredis.ReplyError) for r in w.replies):
                import redis

                bad = next(r for r in w.replies if isinstance(r, _hiredis.ReplyError))
                self.fail(redis.ResponseError(str(bad)))
                return
            self._complete(w)

        self._enqueue(_Waiter([], commands, None, rerun, None, time.monotonic()))

    def _enqueue(self, w: _Waiter) -> None:
        """Queue ``w``'s commands for the next flush, its replies for ``w``, in order."""
        self.waiting.append(w)
        self.unsent.append(w)
        pack = _hiredis.pack_command
        self.out += [pack(c) for c in w.commands]
        if not self.flush_soon:
            self.flush_soon = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_soon = False
        if self.transport is None or not self.out:
            return
        data = b"".join(self.out)
        self.out.clear()
        self.transport.write(data)
        # A waiter's time starts when its commands are written, not when they were
        # queued: a loop busy for a while (a first event loading its geo data) is not
        # Redis failing to answer.
        now = time.monotonic()
        for w in self.unsent:
            w.sent = now
        self.unsent.clear()

    def _check_timeout(self) -> None:
        self.timer = None
        if not self.waiting or self.dead:
            return
        timeout = self.store._socket_timeout
        age = time.monotonic() - self.waiting[0].sent
        if age >= timeout:
            self.fail(TimeoutError(f"no answer from Redis in {timeout:g} s"))
        else:
            self.timer = self.loop.call_later(timeout - age, self._check_timeout)


def _tls_context(pool: Any) -> ssl.SSLContext | None:
    """Return a ``rediss://`` client's TLS settings as an SSLContext for the loop connection.

    Built as the client builds its own (certificate, key, CAs, verification, host name
    check, minimum version, ciphers); ``None`` where the client asks for what asyncio
    cannot do (OCSP checks), so the store keeps the blocking path.
    """
    conn = pool.connection_class(**pool.connection_kwargs)  # not connected: its settings
    if getattr(conn, "ssl_validate_ocsp", False) or getattr(
        conn, "ssl_validate_ocsp_stapled", False
    ):
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = bool(conn.check_hostname) and conn.cert_reqs != ssl.CERT_NONE
    ctx.verify_mode = conn.cert_reqs
    if conn.certfile or conn.keyfile:
        ctx.load_cert_chain(
            certfile=conn.certfile,
            keyfile=conn.keyfile,
            password=getattr(conn, "certificate_password", None),
        )
    ca_path, ca_data = getattr(conn, "ca_path", None), getattr(conn, "ca_data", None)
    if conn.ca_certs or ca_path or ca_data:
        ctx.load_verify_locations(cafile=conn.ca_certs, capath=ca_path, cadata=ca_data)
    if getattr(conn, "ssl_min_version", None) is not None:
        ctx.minimum_version = conn.ssl_min_version
    if getattr(conn, "ssl_ciphers", None):
        ctx.set_ciphers(conn.ssl_ciphers)
    return ctx


def _noscript(reply: Any) -> bool:
    return type(reply) is _hiredis.ReplyError and str(reply)[:8] == "NOSCRIPT"


def _local_batch(local: MemoryStore, ops: Sequence[Op]) -> list[Any]:
    """Run ``ops`` on the local fallback; a ``pair`` is its two slices read whole."""
    if not any(op[0] in _EXTENDED for op in ops):
        return local.batch(ops)
    flat: list[Op] = []
    where: list[tuple[int, str | None]] = []
    one = local.slice_seconds
    for op in ops:
        if op[0] == "pair":
            where.append((len(flat), op[4]))
            flat += [("counts", op[1], op[2], one), ("counts", op[1], op[3], one)]
        elif op[0] == "incr_fields":
            where.append((-1, None))
            flat += [("incr", op[1], f, n, op[3]) for f, n in op[2].items()]
        else:
            where.append((len(flat), None))
            flat.append(op)
    res = local.batch(flat)
    return [
        None if i < 0 else res[i] if probe is None else _pair_from_hashes(res[i], res[i + 1], probe)
        for i, probe in where
    ]


def _read_replies(sock: Any, want: int) -> list[Any]:
    """Read and parse ``want`` replies from a connected socket (hiredis)."""
    # Replies decoded to text in C; undecodable bytes kept as surrogates (as keys were).
    reader = _hiredis.Reader(encoding="utf-8", errors="surrogateescape")
    replies: list[Any] = []
    while len(replies) < want:
        chunk = sock.recv(1 << 18)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        reader.feed(chunk)
        reply = reader.gets()
        while reply is not False:
            replies.append(reply)
            reply = reader.gets()
    return replies


def _pairs(reply: Any) -> Iterator[tuple[Any, Any]]:
    """Field/value pairs of an ``HGETALL`` reply: a dict (pipeline) or a flat list (raw)."""
    if isinstance(reply, dict):
        return iter(reply.items())
    return zip(reply[::2], reply[1::2], strict=True)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _find_unescaped(text: str, char: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == char:
            return i
        i += 1
    raise ValueError(f"no {char!r} in {text!r}")
