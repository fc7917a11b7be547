"""Postfix SMTP access policy delegation server (asyncio, standard library).

Protocol (Postfix SMTPD_POLICY_README): the client sends ``name=value`` lines, a blank
line ends the request; the server answers ``action=...`` followed by a blank line. One
connection carries many requests, one at a time.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from authabuse._store_loop import Pending
from authabuse.errors import InvalidEventError
from authabuse.events import Submission, parse_ip
from authabuse.servers._base import (
    Connection,
    Limits,
    ListenAddress,
    ServerBase,
    StoreLoopMixin,
    for_log,
)
from authabuse.servers._decision import Decider, PostfixAnswers, level_name
from authabuse.servers._metrics import Metrics

__all__ = ["PostfixPolicyServer"]

log = logging.getLogger("authabuse.servers")

_BINARY = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_STATES = frozenset(
    {"CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"}
)
_MAX_RCPTS_KEPT = 1000  # Postfix's default smtpd_recipient_limit


class _Pending:
    """Recipients seen so far for one message (one Postfix ``instance``)."""

    __slots__ = ("account", "level", "recipients", "seen", "started")

    def __init__(self, account: str, started: float) -> None:
        self.account = account
        self.recipients: list[str] = []
        self.seen = 0
        self.started = started
        self.level: str | None = None  # the verdict of the message's first RCPT


class _PostfixConnection(Connection):
    server: PostfixPolicyServer
    # Answers not written yet because an earlier one is still being decided (bytes, or
    # the Future of bytes): a connection's answers go out in its requests' order.
    queue: deque[Any] | None = None

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        now = time.monotonic()
        self.last_activity = now
        buf = self.buf
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        buf += data
        server = self.server
        replies: list[Any] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            raw = bytes(buf[start:end])
            start = end + 2
            if len(raw) > server.limits.max_request_bytes:
                self.close("oversized")
                return
            reply = server.answer(raw, self)
            if reply is None:  # protocol error: connection already closed
                return
            replies.append(reply)
        if start:
            del buf[:start]
        if len(buf) > server.limits.max_request_bytes:
            self.close("oversized")
            return
        self.request_started = (self.request_started or now) if buf else None
        if replies and self.transport is not None:
            self._write(replies)

    def _write(self, replies: list[Any]) -> None:
        """Write the answers (bytes, or Futures of bytes) in order, as they are decided."""
        assert self.transport is not None  # noqa: S101 - the caller checked
        if self.queue is None and all(type(r) is bytes for r in replies):
            self.transport.write(b"".join(replies))
            return
        if self.queue is None:
            self.queue = deque()
        for r in replies:
            self.queue.append(r)
            if type(r) is not bytes:
                r.add_done_callback(self._answered)
        self._write_ready()

    def _answered(self, fut: Pending) -> None:
        self._write_ready()

    def _write_ready(self) -> None:
        """Write the answers at the head of the queue that are decided."""
        queue = self.queue
        if queue is None:
            return
        out: list[bytes] = []
        while queue:
            head = queue[0]
            if type(head) is bytes:
                out.append(head)
            elif head.done():
                out.append(head.result())
            else:
                break
            queue.popleft()
        if not queue:
            self.queue = None
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def eof_received(self) -> bool | None:
        if self.buf.strip():
            self.server.metrics.inc("authabuse_protocol_errors_total", (("reason", "truncated"),))
        return None


class PostfixPolicyServer(StoreLoopMixin, ServerBase):
    r"""Answer Postfix policy delegation requests with the detector's verdicts.

    Unauthenticated requests (empty ``sasl_username``) are answered ``DUNNO`` without
    touching state. For an authenticated client, the ``RCPT`` and ``DATA`` requests are
    judged with :meth:`Decider.check` (nothing recorded); ``END-OF-MESSAGE``, where Postfix
    sends the real ``recipient_count`` and ``size``, records the message once with
    :meth:`Decider.process`. Messages are told apart by Postfix's ``instance`` attribute.
    The answer is the :class:`PostfixAnswers` action for the verdict's level.

    With ``verdict_per_message`` (the default) the first RCPT of a message is judged and
    its verdict answers the message's further RCPT and DATA requests (Postfix asks once
    per recipient; the account and client do not change within a message, and the whole
    recipient list is judged again at END-OF-MESSAGE). ``False`` judges every request.

    A store-backed :class:`~authabuse.detector.Detector` on a Redis store runs on the
    server's event loop (:class:`authabuse._store_loop.LoopRunner`, bound by
    :meth:`start`): while one request waits for Redis the server reads and decides
    others, and a connection's answers still go out in order. ``answer`` then returns
    the :class:`~authabuse._store_loop.Pending` reply for such a request.

    ``answer(raw)`` is the whole protocol step, so it can be exercised without sockets:

    >>> class Limit:
    ...     '''abuse once an account submitted more than one message'''
    ...     def __init__(self): self.sent = {}
    ...     def level(self, e): return "abuse" if self.sent.get(e.account, 0) > 1 else "ok"
    ...     def check(self, e): return self.level(e)
    ...     def process(self, e):
    ...         self.sent[e.account] = self.sent.get(e.account, 0) + 1
    ...         return self.level(e)
    >>> srv = PostfixPolicyServer(Limit(), answers=PostfixAnswers(abuse="REJECT 5.7.1 abuse"))
    >>> def req(state, n):
    ...     return (f"request=smtpd_access_policy\nprotocol_state={state}\n"
    ...             f"sasl_username=a@example.jp\nclient_address=192.0.2.{n}\n"
    ...             f"instance=i{n}\nrecipient=x@example.com\nrecipient_count=1").encode()
    >>> [srv.answer(req(s, n)) for n in (1, 2, 3) for s in ("RCPT", "END-OF-MESSAGE")]
    ... # doctest: +NORMALIZE_WHITESPACE
    [b'action=DUNNO\n\n', b'action=DUNNO\n\n', b'action=DUNNO\n\n',
     b'action=REJECT 5.7.1 abuse\n\n', b'action=REJECT 5.7.1 abuse\n\n',
     b'action=REJECT 5.7.1 abuse\n\n']
    >>> srv.answer(b"request=smtpd_access_policy\nprotocol_state=RCPT\nsasl_username=")
    b'action=DUNNO\n\n'
    """

    name = "postfix"

    def __init__(
        self,
        decider: Decider,
        *,
        answers: PostfixAnswers | None = None,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
        server_name: str | None = None,
        max_pending: int = 100_000,
        pending_ttl: float = 3600.0,
        verdict_per_message: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(limits=limits or Limits(), metrics=metrics)
        self.decider = decider
        self.verdict_per_message = verdict_per_message
        self.answers = answers or PostfixAnswers()
        self.server_name = server_name if server_name is not None else socket.gethostname()
        self.max_pending = max_pending
        self.pending_ttl = pending_ttl
        self._clock = clock or self.now
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._recorded: OrderedDict[str, None] = OrderedDict()
        self._encoded: dict[str, bytes] = {}
        self._logged_abuse: dict[str, float] = {}
        self._plain_calls()  # on the loop once start() binds a store-backed Detector
        self.metrics.gauge(
            "authabuse_pending_messages",
            "Messages seen at RCPT whose END-OF-MESSAGE has not arrived yet",
            lambda: float(len(self._pending)),
        )

    def protocol(self) -> Connection:
        """Return a protocol instance for one Postfix connection."""
        return _PostfixConnection(self)

    async def start(self, listen: ListenAddress | str) -> list[tuple[Any, ...] | str]:
        """Start listening (see :meth:`ServerBase.start`), the store on this loop first."""
        await self._bind_store()
        return await super().start(listen)

    async def stop(self) -> None:
        """Stop listening, close connections, let the store finish what is in flight."""
        await super().stop()
        await self._unbind_store()

    def _reply(self, action: str) -> bytes:
        out = self._encoded.get(action)
        if out is None:
            out = b"action=" + action.encode("ascii") + b"\n\n"
            if len(self._encoded) < 64:
                self._encoded[action] = out
        return out

    def answer(self, raw: bytes, conn: Connection | None = None) -> bytes | Pending | None:
        """Answer one request (its lines without the final blank line).

        Returns the reply bytes, or ``None`` after closing ``conn`` because the request
        was not a policy request at all (binary data, lines without ``=``), or the
        :class:`~authabuse._store_loop.Pending` reply while the detector waits for its store.
        """
        started = time.perf_counter()
        metrics = self.metrics
        if _BINARY.search(raw):
            self._protocol_error(conn, "binary")
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            metrics.inc("authabuse_protocol_errors_total", (("reason", "non-utf8"),))
            text = raw.decode("utf-8", "replace")
        try:  # every line must be name=value; dict() refuses a line without "="
            attrs: dict[str, str] = dict(line.split("=", 1) for line in text.split("\n"))
        except ValueError:
            attrs = {"": ""}
        if "" in attrs:  # a line without "=" or with an empty name
            self._protocol_error(conn, "malformed")
            return None
        state = attrs.get("protocol_state", "").upper()
        metrics.inc(
            "authabuse_requests_total", (("state", state if state in _STATES else "OTHER"),)
        )
        account = attrs.get("sasl_username", "")
        if not account:
            action, level = "DUNNO", "unauthenticated"
        else:
            try:
                decided = self._decide(state, account, attrs)
                if isinstance(decided, Pending):  # a verdict to come: answered later
                    return self._answer_later(decided, account, attrs, started)
                level = decided
                action = self.answers.for_level(level)
            except InvalidEventError as exc:
                metrics.inc("authabuse_protocol_errors_total", (("reason", "invalid-value"),))
                self.log_limited(f"invalid request value: {exc}", peer=_peer(conn))
                action, level = self.answers.fail, "invalid"
            except Exception as exc:  # fail open/closed, never crash
                metrics.inc("authabuse_internal_errors_total")
                self.log_limited("decision failed, answering the fail action", peer="", exc=exc)
                action, level = self.answers.fail, "error"
        metrics.inc(
            "authabuse_decisions_total", (("level", level), ("action", action.split(" ", 1)[0]))
        )
        if level == "abuse":
            self._log_abuse(account, attrs.get("client_address", ""), action)
        reply = self._reply(action)
        metrics.observe(time.perf_counter() - started)
        return reply

    def _answer_later(
        self, verdict: Pending, account: str, attrs: dict[str, str], started: float
    ) -> Pending:
        """Return the Future of the reply to a request whose verdict is a Future."""
        out = Pending()

        def done(fut: Pending) -> None:
            metrics = self.metrics
            try:
                level = level_name(fut.result())
                action = self.answers.for_level(level)
            except Exception as exc:  # fail open/closed, never crash
                metrics.inc("authabuse_internal_errors_total")
                self.log_limited("decision failed, answering the fail action", peer="", exc=exc)
                action, level = self.answers.fail, "error"
            metrics.inc(
                "authabuse_decisions_total",
                (("level", level), ("action", action.split(" ", 1)[0])),
            )
            if level == "abuse":
                self._log_abuse(account, attrs.get("client_address", ""), action)
            metrics.observe(time.perf_counter() - started)
            out.set_result(self._reply(action))

        verdict.add_done_callback(done)
        return out

    def _protocol_error(self, conn: Connection | None, reason: str) -> None:
        if conn is not None:
            conn.close(reason)
        else:
            self.metrics.inc("authabuse_protocol_errors_total", (("reason", reason),))

    def _decide(self, state: str, account: str, attrs: dict[str, str]) -> str | Pending:
        ip = parse_ip(attrs.get("client_address", ""))
        # One message of one account: Postfix's instance is unique per message, but a
        # client that repeats it must not get another account's verdict reused.
        key = f"{attrs.get('instance') or attrs.get('client_address')}|{account}"
        now = self._clock()
        sender = attrs.get("sender") or None
        queue_id = attrs.get("queue_id") or None
        rcpt = attrs.get("recipient", "")
        pending = self._pending.get(key)
        if state == "END-OF-MESSAGE":
            if pending is not None:
                del self._pending[key]
            recipients = tuple(pending.recipients) if pending else ((rcpt,) if rcpt else ())
            event = Submission(
                time=now,
                ip=ip,
                account=account,
                server=self.server_name,
                queue_id=queue_id,
                sender=sender,
                recipient_count=_int_attr(attrs, "recipient_count"),
                recipients=recipients,
                size=_int_attr(attrs, "size"),
            )
            if key in self._recorded:  # a second end-of-data hook for the same message
                return _level_or_future(self._check(event))
            self._recorded[key] = None
            if len(self._recorded) > 10_000:
                self._recorded.popitem(last=False)
            return _level_or_future(self._process(event))
        if state == "RCPT":
            if pending is None or pending.account != account:
                pending = self._new_pending(key, account)
            else:
                self._pending.move_to_end(key)
            pending.seen += 1
            if rcpt and len(pending.recipients) < _MAX_RCPTS_KEPT:
                pending.recipients.append(rcpt)
        if self.verdict_per_message and pending is not None and pending.level is not None:
            self.metrics.inc("authabuse_verdicts_reused_total")
            return pending.level
        recipients = tuple(pending.recipients) if pending else ((rcpt,) if rcpt else ())
        event = Submission(
            time=now,
            ip=ip,
            account=account,
            server=self.server_name,
            queue_id=queue_id,
            sender=sender,
            recipients=recipients,
        )
        verdict = self._check(event)
        if isinstance(verdict, Pending):
            if pending is not None:
                judged = pending

                def remember(fut: Pending) -> None:
                    if fut.exception() is None:
                        judged.level = level_name(fut.result())

                verdict.add_done_callback(remember)
            return verdict
        level = level_name(verdict)
        if pending is not None:
            pending.level = level
        return level

    def _new_pending(self, key: str, account: str) -> _Pending:
        now = time.monotonic()
        pending = _Pending(account, now)
        self._pending[key] = pending
        while self._pending:
            oldest_key, oldest = next(iter(self._pending.items()))
            if len(self._pending) <= self.max_pending and now - oldest.started <= self.pending_ttl:
                break
            del self._pending[oldest_key]
            self.metrics.inc("authabuse_pending_expired_total")
        return pending

    def _log_abuse(self, account: str, client: str, action: str) -> None:
        now = time.monotonic()
        if now - self._logged_abuse.get(account, -1e9) < 60.0:
            return
        if len(self._logged_abuse) > 10_000:
            self._logged_abuse.clear()
        self._logged_abuse[account] = now
        log.warning(
            "postfix: abuse: account=%s client=%s action=%s",
            for_log(account),
            for_log(client, 64),
            action,
        )


def _level_or_future(verdict: Any) -> str | Pending:
    return verdict if isinstance(verdict, Pending) else level_name(verdict)


def _int_attr(attrs: dict[str, str], name: str) -> int | None:
    value = attrs.get(name, "")
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise InvalidEventError(f"{name} is not a non-negative integer: {value[:30]!r}")
    return int(value)


def _peer(conn: Connection | None) -> str:
    return conn.peer() if conn is not None else ""
