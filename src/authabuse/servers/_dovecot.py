"""Dovecot auth-policy HTTP server (``auth_policy_server_url``).

Dovecot POSTs a JSON object (the ``auth_policy_request_attributes``: login, pwhash,
remote, device_id, protocol, session_id, and on reports success and policy_reject) to
``URL?command=allow`` before the passdb lookup and again after a success, and to
``URL?command=report`` when the authentication finished. It reads ``status`` (and
``msg``) from the JSON answer: -1 rejects, 0 accepts, N > 0 delays N seconds.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from authabuse._store_loop import Pending
from authabuse.errors import ConfigurationError, InvalidEventError
from authabuse.events import AuthAttempt, parse_ip
from authabuse.servers._base import (
    Connection,
    Limits,
    ListenAddress,
    ServerBase,
    StoreLoopMixin,
    for_log,
)
from authabuse.servers._decision import Decider, DovecotAnswers, level_name
from authabuse.servers._http import HttpConnection, HttpRequest, HttpResponse, serve_metrics
from authabuse.servers._metrics import Metrics

__all__ = ["DovecotPolicyServer", "parse_api_header"]

log = logging.getLogger("authabuse.servers")

_OK = b'{"status":0}'


def parse_api_header(setting: str) -> tuple[str, str]:
    """Split a Dovecot ``auth_policy_server_api_header`` value into (header, value).

    Dovecot sends ``Name: value`` as that header, and a bare value as ``X-API-Key``.

    >>> parse_api_header("Authorization: Basic dXNlcjpwYXNz")
    ('authorization', 'Basic dXNlcjpwYXNz')
    >>> parse_api_header("s3cret")
    ('x-api-key', 's3cret')
    """
    name, sep, value = setting.partition(":")
    if not sep:
        name, value = "X-API-Key", setting
    name, value = name.strip().lower(), value.strip()
    if not name or not value or any(c < " " for c in setting):
        raise ConfigurationError("api header must be 'Name: value' or a bare key, one line")
    return name, value


class DovecotPolicyServer(StoreLoopMixin, ServerBase):
    """Answer Dovecot's auth-policy requests with the detector's verdicts.

    ``command=allow`` is judged with :meth:`Decider.check` as if the login succeeded from
    ``remote`` (the question asked is "may this account log in from here?"), and nothing
    is recorded; Dovecot asks twice per successful login (before and after the passdb),
    so an allow verdict is reused for the same login and address for
    ``allow_reuse_seconds`` (2 s; 0 disables) until the login's report arrives;
    ``command=report`` records the finished authentication (success or
    failure) with :meth:`Decider.process`. An empty ``login`` is accepted without state.
    With ``api_header`` set (Dovecot's ``auth_policy_server_api_header`` syntax), requests
    without that exact header get HTTP 401. ``GET /metrics`` and ``GET /health`` are
    served on the same port.

    >>> class Blocklist:
    ...     def check(self, e): return "abuse" if e.account == "eve" else "ok"
    ...     process = check
    >>> srv = DovecotPolicyServer(Blocklist())
    >>> srv.policy("allow", {"login": "eve", "remote": "192.0.2.9", "protocol": "imap"})
    {'status': -1, 'msg': 'authentication refused by policy'}
    >>> srv.policy("allow", {"login": "alice", "remote": "192.0.2.9", "protocol": "imap"})
    {'status': 0}
    """

    name = "dovecot"

    def __init__(
        self,
        decider: Decider,
        *,
        answers: DovecotAnswers | None = None,
        limits: Limits | None = None,
        metrics: Metrics | None = None,
        api_header: str | None = None,
        server_name: str | None = None,
        max_body: int = 65536,
        allow_reuse_seconds: float = 2.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(limits=limits or Limits(idle_timeout=120.0), metrics=metrics)
        self.decider = decider
        self.answers = answers or DovecotAnswers()
        self.api = parse_api_header(api_header) if api_header else None
        self.server_name = server_name if server_name is not None else socket.gethostname()
        self.max_body = max_body
        self._clock = clock or self.now
        self._metrics_handler = serve_metrics(self)
        self.allow_reuse_seconds = allow_reuse_seconds
        self._recent: dict[tuple[str, str], tuple[float, str]] = {}
        self._plain_calls()  # on the loop once start() binds a store-backed Detector

    def protocol(self) -> Connection:
        """Return a protocol instance for one Dovecot (or scraper) connection."""
        return HttpConnection(self, self.handle, self.max_body)

    def handle(self, req: HttpRequest) -> HttpResponse | Pending:  # noqa: PLR0911 - one per refusal
        """Answer one HTTP request (policy POSTs, ``/metrics`` and ``/health`` GETs)."""
        if req.method == "GET":
            return self._metrics_handler(req)
        if req.method != "POST":
            return HttpResponse(405, b'{"error":"POST or GET only"}')
        started = time.perf_counter()
        if self.api is not None:
            got = req.headers.get(self.api[0], "")
            if not hmac.compare_digest(got.encode(), self.api[1].encode()):
                self.metrics.inc("authabuse_protocol_errors_total", (("reason", "api-key"),))
                return HttpResponse(401, b'{"error":"missing or wrong API key"}')
        _, _, query = req.target.partition("?")
        commands = parse_qs(query).get("command", [])
        command = commands[-1] if commands else ""
        if command not in ("allow", "report"):
            self.metrics.inc("authabuse_protocol_errors_total", (("reason", "command"),))
            return HttpResponse(400, b'{"error":"command must be allow or report"}')
        try:
            data = json.loads(req.body)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            self.metrics.inc("authabuse_protocol_errors_total", (("reason", "malformed-json"),))
            return HttpResponse(400, b'{"error":"body must be a JSON object"}')
        reply = self.policy(command, data)
        if isinstance(reply, Pending):  # the detector waits for its store
            out = Pending()

            def done(fut: Pending) -> None:
                out.set_result(self._response(fut.result(), started))

            reply.add_done_callback(done)
            return out
        return self._response(reply, started)

    def _response(self, reply: dict[str, Any], started: float) -> HttpResponse:
        body = _OK if reply == {"status": 0} else json.dumps(reply).encode()
        self.metrics.observe(time.perf_counter() - started)
        return HttpResponse(200, body)

    def policy(self, command: str, data: dict[str, Any]) -> dict[str, Any] | Pending:
        """Return the JSON answer to one ``allow`` or ``report`` request (already decoded).

        On a store-backed detector bound to the loop (:meth:`start`), the answer may be
        a :class:`~authabuse._store_loop.Pending` one while the store answers.
        """
        self.metrics.inc("authabuse_requests_total", (("command", command),))
        login = data.get("login")
        if not isinstance(login, str) or not login:
            return self._answer(command, data, login, 0, "anonymous")
        try:
            level = self._decide(command, login, data)
        except Exception as exc:  # fail open/closed, never crash
            return self._failed(command, data, login, exc)
        if isinstance(level, Pending):
            out = Pending()

            def done(fut: Pending) -> None:
                try:
                    reply = self._judged(command, data, login, level_name(fut.result()))
                except Exception as exc:  # fail open/closed, never crash
                    reply = self._failed(command, data, login, exc)
                out.set_result(reply)

            level.add_done_callback(done)
            return out
        return self._judged(command, data, login, level)

    def _judged(self, command: str, data: dict[str, Any], login: str, level: str) -> dict[str, Any]:
        status = self.answers.for_level(level) if command == "allow" else 0
        return self._answer(command, data, login, status, level)

    def _failed(
        self, command: str, data: dict[str, Any], login: str, exc: Exception
    ) -> dict[str, Any]:
        if isinstance(exc, InvalidEventError):
            self.metrics.inc("authabuse_protocol_errors_total", (("reason", "invalid-value"),))
            self.log_limited(f"invalid request value: {exc}", peer="")
            return self._answer(command, data, login, self.answers.fail, "invalid")
        self.metrics.inc("authabuse_internal_errors_total")
        self.log_limited("decision failed, answering the fail status", peer="", exc=exc)
        return self._answer(command, data, login, self.answers.fail, "error")

    def _answer(
        self, command: str, data: dict[str, Any], login: Any, status: int, level: str
    ) -> dict[str, Any]:
        action = "reject" if status < 0 else ("tarpit" if status > 0 else "accept")
        self.metrics.inc("authabuse_decisions_total", (("level", level), ("action", action)))
        if status < 0:
            if level == "abuse":
                log.warning(
                    "dovecot: abuse: login=%s remote=%s rejected",
                    for_log(login),
                    for_log(data.get("remote"), 64),
                )
            return {"status": status, "msg": self.answers.message}
        return {"status": status}

    def _decide(self, command: str, login: str, data: dict[str, Any]) -> str | Pending:
        remote = data.get("remote")
        remote_text = remote if isinstance(remote, str) else ""
        cache_key = (login, remote_text)
        now = time.monotonic()
        if command == "allow" and self.allow_reuse_seconds > 0:
            hit = self._recent.get(cache_key)
            if hit is not None and hit[0] > now:
                self.metrics.inc("authabuse_verdicts_reused_total")
                return hit[1]
        ip = parse_ip(remote_text)
        service = data.get("protocol")
        session = data.get("session_id")
        event = AuthAttempt(
            time=self._clock(),
            ip=ip,
            account=login,
            succeeded=command == "allow" or data.get("success") is True,
            service=service if isinstance(service, str) and service else None,
            session=session if isinstance(session, str) and session else None,
            server=self.server_name,
        )
        if command == "allow":
            verdict = self._check(event)
            if isinstance(verdict, Pending):
                if self.allow_reuse_seconds > 0:

                    def remember(fut: Pending) -> None:
                        if fut.exception() is None:
                            self._remember(cache_key, now, level_name(fut.result()))

                    verdict.add_done_callback(remember)
                return verdict
            level = level_name(verdict)
            if self.allow_reuse_seconds > 0:
                self._remember(cache_key, now, level)
            return level
        self._recent.pop(cache_key, None)  # the login finished: judge the next one afresh
        verdict = self._process(event)
        return verdict if isinstance(verdict, Pending) else level_name(verdict)

    def _remember(self, cache_key: tuple[str, str], now: float, level: str) -> None:
        if len(self._recent) >= 100_000:
            self._recent.clear()
        self._recent[cache_key] = (now + self.allow_reuse_seconds, level)

    async def start(self, listen: ListenAddress | str) -> list[tuple[Any, ...] | str]:
        """Start listening (see :meth:`ServerBase.start`), the store on this loop first.

        A store-backed :class:`~authabuse.detector.Detector` on a Redis store then runs
        its Redis I/O on this loop (as :class:`PostfixPolicyServer` does): while one
        request waits for Redis the server reads and decides others, and a
        connection's answers still leave in order.
        """
        await self._bind_store()
        return await super().start(listen)

    async def stop(self) -> None:
        """Stop listening, close connections, let the store finish what is in flight."""
        await super().stop()
        await self._unbind_store()
