"""A store-backed :class:`~authabuse.detector.Detector` on an asyncio loop (internal).

The store-backed detector (``authabuse._store_detector``) writes each event's store I/O
as a step generator: it yields a batch of operations and is sent their results back,
or yields writes nobody waits for. In a plain call the steps run in the calling thread,
blocking on each round trip. :class:`LoopRunner` runs the same steps on a policy
server's event loop with a store that can (:meth:`RedisStore.bind_loop
<authabuse.redis_store.RedisStore.bind_loop>`): a batch is submitted and the event
resumes when its replies arrive, so the loop serves other connections meanwhile, and
everything submitted within one loop iteration reaches Redis in one write.

Ordering. An account's events see each other's writes as in the blocking path, in
the order the server called the detector: an event waits while one of the account's
earlier *recording* events (``process``) is unfinished, so it reads what that one
wrote. A ``check`` writes nothing, so the account's later events need not wait for it:
checks run side by side, and a ``process`` may start while earlier checks are in
flight (their reads went to Redis first, on the same connection). Events of different
accounts interleave; they share only cross-account counts (an address's accounts, the
countries' shares, a domain's flagged accounts), which other servers on the same Redis
update concurrently anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from authabuse.events import AuthAttempt, Submission

__all__ = ["LoopRunner", "Pending"]

log = logging.getLogger("authabuse.servers")


class Pending:
    """A result to come, with the part of :class:`asyncio.Future`'s interface servers use.

    Unlike a Future, its callbacks run as soon as it is settled, not on a later loop
    iteration: an answer goes out in the same iteration as the Redis replies that
    decided it (each iteration is a system call plus everything else that is ready).

    >>> p = Pending()
    >>> p.add_done_callback(lambda q: print("got", q.result()))
    >>> p.done()
    False
    >>> p.set_result("ok")
    got ok
    """

    __slots__ = ("_callbacks", "_done", "_exc", "_result")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Pending], None]] = []
        self._done = False
        self._result: Any = None
        self._exc: BaseException | None = None

    def done(self) -> bool:
        """Return True once a result or an exception is set."""
        return self._done

    def result(self) -> Any:
        """Return the result, or raise the exception that was set."""
        if not self._done:
            raise asyncio.InvalidStateError("result is not set yet")
        if self._exc is not None:
            raise self._exc
        return self._result

    def exception(self) -> BaseException | None:
        """Return the exception that was set, or ``None``."""
        return self._exc

    def add_done_callback(self, fn: Callable[[Pending], None]) -> None:
        """Call ``fn(self)`` once settled (at once when already settled)."""
        if self._done:
            fn(self)
        else:
            self._callbacks.append(fn)

    def set_result(self, result: Any) -> None:
        """Settle with ``result`` and run the callbacks."""
        self._settle(result, None)

    def set_exception(self, exc: BaseException) -> None:
        """Settle with ``exc`` and run the callbacks."""
        self._settle(None, exc)

    def _settle(self, result: Any, exc: BaseException | None) -> None:
        if self._done:
            raise asyncio.InvalidStateError("already settled")
        self._done, self._result, self._exc = True, result, exc
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # one waiter's failure must not stop the others' answers
                log.exception("a callback of a pending verdict failed")


class _Job:
    """One event's step generator, waiting for its turn or for a batch's results."""

    __slots__ = ("account", "fut", "steps", "writes")

    def __init__(self, steps: Any, account: str | None, writes: bool) -> None:
        self.steps = steps
        self.account = account
        self.writes = writes
        self.fut: Pending | None = None


class _Account:
    """One account's events in progress: a writer, readers, and those waiting."""

    __slots__ = ("readers", "waiting", "writer")

    def __init__(self) -> None:
        self.writer = False  # a process() is unfinished
        self.readers = 0  # check()s unfinished
        self.waiting: deque[_Job] = deque()

    def admit(self, job: _Job) -> None:
        if job.writes:
            self.writer = True
        else:
            self.readers += 1


class LoopRunner:
    """Runs a store-backed Detector's ``check``/``process`` on the running asyncio loop.

    ``check(event)`` and ``process(event)`` return the verdict when it is known at once
    (the detector answers without the store, or the store answers from local state),
    otherwise a :class:`Pending` verdict. Build with :meth:`bind`.

    Verdicts decided by replies that arrived together are settled after the store has
    written the writes those events posted (``store.after_dispatch``): an answer never
    leaves before the counts of the event it answers are on their way to Redis, so a
    server killed right after answering has not lost them.
    """

    def __init__(self, detector: Any, state: Any, store: Any) -> None:
        self.det = detector
        self.state = state
        self.store = store
        self._busy: dict[str, _Account] = {}
        self._unfinished = 0
        self._ready: deque[_Job] = deque()  # accounts' next events, to start now
        self._starting = False
        self._settle: list[tuple[Pending, Any]] = []
        store.after_dispatch = self._settle_all

    @classmethod
    async def bind(cls, decider: Any) -> LoopRunner | None:
        """Return a runner for ``decider``, or ``None`` when its calls must stay blocking.

        Only a store-backed :class:`~authabuse.detector.Detector` whose store can bind
        to the loop (a :class:`~authabuse.redis_store.RedisStore` on a plain client)
        gets one.
        """
        from authabuse.detector import Detector

        state = getattr(decider, "_store", None) if isinstance(decider, Detector) else None
        if state is None or state._split or not hasattr(state.store, "bind_loop"):
            return None
        if not await state.store.bind_loop():
            return None
        return cls(decider, state, state.store)

    async def close(self) -> None:
        """Let the store finish what is in flight and release its loop connection."""
        await self.store.unbind_loop()
        self.store.after_dispatch = None

    def check(self, event: Submission | AuthAttempt) -> Any:
        """:meth:`Detector.check <authabuse.detector.Detector.check>`, maybe a Future."""
        return self._through_loop(self.det.check, event)

    def process(self, event: Submission | AuthAttempt) -> Any:
        """:meth:`Detector.process <authabuse.detector.Detector.process>`, maybe a Future."""
        return self._through_loop(self.det.process, event)

    def _through_loop(
        self, call: Callable[[Submission | AuthAttempt], Any], event: Submission | AuthAttempt
    ) -> Any:
        """Run a detector call with this runner driving its store steps on the loop."""
        state = self.state
        state._runner = self
        try:
            return call(event)
        finally:
            state._runner = None

    @property
    def in_flight(self) -> int:
        """Events started and not finished yet (waiting for Redis or for their account)."""
        return self._unfinished

    # -- called by StoreState._drive

    def start(self, steps: Any, account: str | None, *, writes: bool = True) -> Any:
        """Run an event's steps now, or once the account's earlier writer has finished.

        ``writes``: the event records (``process``); ``False`` for a ``check``.
        """
        job = _Job(steps, account, writes)
        self._unfinished += 1
        if account is not None:
            acct = self._busy.get(account)
            if acct is None:
                acct = self._busy[account] = _Account()
            elif acct.writer or acct.waiting:
                job.fut = Pending()
                acct.waiting.append(job)
                return job.fut
            acct.admit(job)
        outcome = self._advance(job, None)
        if outcome is not _PENDING:
            if isinstance(outcome, _Raised):
                raise outcome.exc
            return outcome
        job.fut = Pending()
        return job.fut

    # -- internals

    def _advance(self, job: _Job, value: Any) -> Any:
        """Run ``job`` until it waits for Redis (``_PENDING``) or ends (its outcome)."""
        steps = job.steps
        post = self.store.post
        submit = self.store.submit
        try:
            while True:
                failed = isinstance(value, BaseException)
                step = steps.throw(value) if failed else steps.send(value)
                if type(step) is list:
                    value = submit(step, self._resume, job)
                    if value is None:
                        return _PENDING
                else:  # a _Post: writes nobody waits for
                    post(step.ops)
                    value = None
        except StopIteration as stop:
            outcome: Any = stop.value
        except Exception as exc:  # the server answers its fail action
            steps.close()
            outcome = _Raised(exc)
        self._finish(job, outcome)
        return outcome

    def _resume(self, job: _Job, results: Any) -> None:
        self._advance(job, results)

    def _finish(self, job: _Job, outcome: Any) -> None:
        self._unfinished -= 1
        fut = job.fut
        if fut is not None:
            if self.store.dispatching:  # settled once the replies' writes are sent
                self._settle.append((fut, outcome))
            else:
                _settle(fut, outcome)
        account = job.account
        if account is None:
            return
        acct = self._busy[account]
        if job.writes:
            acct.writer = False
        else:
            acct.readers -= 1
        waiting = acct.waiting
        # The account's next events start now, so their reads go out with this
        # iteration's batch: checks while no writer runs, up to and including the next
        # writer (through a loop, not recursion: a long queue answered locally would
        # otherwise nest one call per event).
        while waiting and not acct.writer:
            nxt = waiting.popleft()
            acct.admit(nxt)
            self._ready.append(nxt)
        if not (acct.writer or acct.readers or waiting):
            del self._busy[account]
        if self._starting or not self._ready:
            return
        self._starting = True
        try:
            while self._ready:
                self._advance(self._ready.popleft(), None)
        finally:
            self._starting = False

    def _settle_all(self) -> None:
        settle, self._settle = self._settle, []
        for fut, outcome in settle:
            _settle(fut, outcome)


def _settle(fut: Pending, outcome: Any) -> None:
    if isinstance(outcome, _Raised):
        fut.set_exception(outcome.exc)
    else:
        fut.set_result(outcome)


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_PENDING = object()
