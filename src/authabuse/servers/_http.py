"""A small, strict HTTP/1.1 server protocol for the Dovecot policy and ``/metrics``.

Only what the clients need: ``Content-Length`` bodies, keep-alive, bounded heads and
bodies. Anything else (chunked bodies, oversized or garbled requests) gets an error
status and the connection is closed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authabuse._store_loop import Pending
from authabuse.servers._base import Connection, ServerBase

__all__ = ["HttpRequest", "HttpResponse", "serve_metrics"]

_MAX_HEAD = 8192
_MAX_HEADERS = 64
_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed", 411: "Length Required", 413: "Content Too Large",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 505: "HTTP Version Not Supported",
}  # fmt: skip


@dataclass(slots=True)
class HttpRequest:
    """One parsed request: method, target (path and query), lower-cased headers, body."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


@dataclass(slots=True)
class HttpResponse:
    """A response: status, body and its content type."""

    status: int
    body: bytes
    content_type: str = "application/json"


Handler = Callable[[HttpRequest], "HttpResponse | Pending"]


def _encode(resp: HttpResponse, keep_alive: bool) -> bytes:
    head = (
        f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Status')}\r\n"
        f"Content-Type: {resp.content_type}\r\n"
        f"Content-Length: {len(resp.body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode("ascii") + resp.body


class HttpConnection(Connection):
    """Protocol of one HTTP connection; ``handler`` answers each complete request.

    The handler returns the response, or a :class:`~authabuse._store_loop.Pending` one
    (a detector waiting for its store): responses still leave in the requests' order.
    """

    def __init__(self, server: ServerBase, handler: Handler, max_body: int) -> None:
        super().__init__(server)
        self.handler = handler
        self.max_body = max_body
        self._head: tuple[str, str, dict[str, str], bool] | None = None
        self._need = 0
        # Responses not written yet because an earlier one is still being decided:
        # encoded bytes, or (Pending response, keep-alive).
        self._queue: deque[Any] | None = None
        self._closing = False  # a "Connection: close" request is being answered

    def _fail(self, status: int, reason: str) -> None:
        if self.transport is not None:
            self.transport.write(
                _encode(HttpResponse(status, f"{reason}\n".encode(), "text/plain"), False)
            )
        self.close(reason)

    def data_received(self, data: bytes) -> None:  # noqa: PLR0911,PLR0912,PLR0915 - one state machine
        if self.transport is None or self._closing:
            return
        now = time.monotonic()
        self.last_activity = now
        buf = self.buf
        buf += data
        out: list[bytes] = []
        while True:
            if self._head is None:
                end, skip = _head_end(buf)
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        self._fail(431, "oversized")
                        return
                    break
                if end > _MAX_HEAD:
                    self._fail(431, "oversized")
                    return
                head = bytes(buf[:end])
                del buf[: end + skip]
                parsed = _parse_head(head)
                if isinstance(parsed, tuple) and len(parsed) == 2:
                    self._fail(*parsed)
                    return
                method, target, headers, keep = parsed
                if "transfer-encoding" in headers:
                    self._fail(501, "chunked")
                    return
                length_text = headers.get("content-length", "0").strip()
                if not length_text.isdigit() or len(length_text) > 12:
                    self._fail(400, "malformed")
                    return
                self._need = int(length_text)
                if self._need > self.max_body:
                    self._fail(413, "oversized")
                    return
                self._head = (method, target, headers, keep)
            if len(buf) < self._need:
                break
            method, target, headers, keep = self._head
            body = bytes(buf[: self._need])
            del buf[: self._need]
            self._head = None
            self._need = 0
            resp = self.handler(HttpRequest(method, target, headers, body, keep))
            if type(resp) is not HttpResponse or self._queue is not None:
                if self._queue is None:
                    self._queue = deque(out)
                    out.clear()
                self._queue.append((resp, keep))
                if isinstance(resp, Pending):
                    resp.add_done_callback(self._answered)
                if not keep:
                    self._closing = True
                    break
                continue
            out.append(_encode(resp, keep))
            if not keep:
                self.transport.write(b"".join(out))
                self.transport.close()
                return
        self.request_started = (self.request_started or now) if (buf or self._head) else None
        if self._queue is not None:
            self._write_ready()
        elif out:
            self.transport.write(b"".join(out))

    def _answered(self, _fut: Pending) -> None:
        self._write_ready()

    def _write_ready(self) -> None:
        """Write the responses at the head of the queue that are decided, in order."""
        queue = self._queue
        if queue is None or self.transport is None:
            return
        out: list[bytes] = []
        close = False
        while queue:
            head = queue[0]
            if type(head) is bytes:
                out.append(head)
                queue.popleft()
                continue
            resp, keep = head
            if type(resp) is not HttpResponse:
                if not resp.done():
                    break
                try:
                    resp = resp.result()
                except Exception:  # the handler's own failure: a 500, not a crash
                    resp = HttpResponse(500, b'{"error":"internal error"}')
            queue.popleft()
            out.append(_encode(resp, keep))
            if not keep:
                close = True
                break
        if not queue:
            self._queue = None
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()


def _head_end(buf: bytearray) -> tuple[int, int]:
    r"""Return where the request head ends and the length of the blank line after it.

    Lines end in CRLF; a bare LF is recognised as well (RFC 9112 section 2.2 allows it,
    and a client sending it waited for the request timeout before). ``(-1, 0)`` when the
    head is not complete yet.

    >>> _head_end(bytearray(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"))
    (23, 4)
    >>> _head_end(bytearray(b"GET / HTTP/1.1\nHost: x\n\nbody"))
    (22, 2)
    >>> _head_end(bytearray(b"GET / HTTP/1.1\r\nHost: x\r\n"))
    (-1, 0)
    """
    best, skip = buf.find(b"\r\n\r\n"), 4
    for blank in (b"\n\n", b"\n\r\n"):  # rare: one search each, only up to a CRLF end
        at = buf.find(blank, 0, best + 3 if best >= 0 else len(buf))
        if at >= 0:  # before ``best``: the bound keeps a CRLF end's own "\n\r\n" out
            best, skip = at, len(blank)
    return (best, skip) if best >= 0 else (-1, 0)


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str], bool] | tuple[int, str]:
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return (400, "binary")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith("/"):
        return (400, "malformed")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        return (505, "malformed")
    if len(lines) - 1 > _MAX_HEADERS:
        return (431, "oversized")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        key = name.lower()
        if (
            not sep
            or not name
            or name != name.strip()
            or any(c < " " for c in line)
            or (key == "content-length" and key in headers)  # which one frames the body?
        ):
            return (400, "malformed")
        headers[key] = value.strip()
    conn = headers.get("connection", "").lower()
    keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
    return method, target, headers, keep


def serve_metrics(server: ServerBase) -> Handler:
    r"""Return a handler answering ``GET /metrics`` (Prometheus text) and ``GET /health``.

    Mount it on any :class:`~authabuse.servers.ServerBase`'s HTTP listener, e.g. next to a
    Postfix policy server that has no HTTP side of its own (``serve postfix --metrics``).

    >>> from authabuse.servers import PostfixPolicyServer
    >>> class Ok:
    ...     def check(self, e): return "ok"
    ...     def process(self, e): return "ok"
    >>> srv = PostfixPolicyServer(Ok())
    >>> _ = srv.answer(b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
    ...                b"sasl_username=a@example.jp\nclient_address=192.0.2.1")
    >>> handle = serve_metrics(srv)
    >>> get = lambda path: handle(HttpRequest("GET", path, {}, b"", True))
    >>> get("/health").status, get("/nope").status
    (200, 404)
    >>> b"# TYPE" in get("/metrics").body
    True
    """

    def handle(req: HttpRequest) -> HttpResponse:
        path = req.target.split("?", 1)[0]
        if req.method != "GET":
            return HttpResponse(405, b"GET only\n", "text/plain")
        if path == "/metrics":
            return HttpResponse(
                200, server.metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8"
            )
        if path == "/health":
            return HttpResponse(200, b"ok\n", "text/plain")
        return HttpResponse(404, b"not found\n", "text/plain")

    return handle
