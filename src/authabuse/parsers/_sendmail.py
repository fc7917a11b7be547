"""Sendmail: AUTH=server logins joined to their message, AUTH failures (private).

* ``AUTH=server, relay=name [ip], authid=U, mech=M, bits=N`` (no queue id) is a successful
  login; the next ``QID: from=<s>, size=N, class=C, nrcpts=N, ..., relay=name [ip]`` of
  the same process (and the same peer address, within the join timeout) is that
  client's message: a pending submission. Its ``QID: to=<a>,<b>,..., stat=...`` lines
  are deliveries (one per address) and the submission is emitted once ``nrcpts``
  recipients had an outcome (Sendmail logs no ``removed``), or when the join expires.
* ``QID: AUTH failure (MECH): reason, user=U, relay=name [ip]`` is a failed attempt
  (``relay=`` may be repeated: the last one is the peer); ``QID: name [ip]: possible SMTP
  attack: command=AUTH, count=N`` stands for ``N`` failed AUTH commands.
"""

from __future__ import annotations

import re
from datetime import datetime

from authabuse.events import Event

from ._common import Context, LineError, Pending, ip_or_bad, last_bracketed
from ._fast import new_auth, new_delivery

__all__ = ["SendmailParser"]

_AUTH_OK = re.compile(r"AUTH=server, relay=(.*?), authid=(.*?), mech=([^,]*)")
_AUTH_FAIL = re.compile(r"AUTH failure \(([^)]*)\): (.*)")
_ATTACK = re.compile(r"(.*?): possible SMTP attack: command=AUTH, count=([0-9]+)")
_FROM = re.compile(r"from=(<[^>]*>|\S*?), size=([0-9]+),.*? nrcpts=([0-9]+)")
_TO = re.compile(r"to=(.*?), (?:.*?, )?stat=(.*)")
_RELAY_FIELD = re.compile(r"relay=([^,]*(?:\[[^\]]*\][^,]*)?)")
_DSN = re.compile(r", dsn=([0-9.]+)")
_QID = re.compile(r"[0-9A-Za-z]{8,20}")


def _relay_ip(relay: str) -> str | None:
    """``name [ip] (may be forged)`` -> ``ip``; ``None`` when there is no ``[...]``."""
    return last_bracketed(relay, "relay=")


class SendmailParser:
    """Turns Sendmail lines into events (see the module docstring)."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def handle(
        self,
        when: datetime,
        host: str | None,
        prog: str,
        pid: str | None,
        msg: str,
        out: list[Event],
    ) -> bool:
        """Parse one line; append events to ``out``; return False if it was irrelevant."""
        ctx = self.ctx
        if msg.startswith("AUTH=server,"):
            m = _AUTH_OK.match(msg)
            if m is None:
                raise LineError("AUTH=server line without relay=, authid= or mech=")
            ip_text = _relay_ip(m.group(1))
            if ip_text is None:
                raise LineError("AUTH=server line without a [peer address]")
            ip = ip_or_bad(ip_text)
            account = m.group(2) or None
            out.append(
                new_auth(
                    time=when,
                    ip=ip,
                    succeeded=True,
                    account=account,
                    mechanism=m.group(3),
                    service="smtp",
                    server=host,
                )
            )
            state = ctx.session((host, pid or ""))
            state.account, state.ip, state.time = account, ip, when
            return True
        colon = msg.find(": ")
        if colon <= 0:
            return False
        qid, rest = msg[:colon], msg[colon + 2 :]
        if rest.startswith("AUTH failure ("):
            return self._failure(when, host, rest, out)
        if "possible SMTP attack: command=AUTH" in rest:
            m = _ATTACK.match(rest)
            if m is None:
                return False
            ip_text = _relay_ip(m.group(1))
            if ip_text is None:
                raise LineError("AUTH attack line without a [peer address]")
            out.append(
                new_auth(
                    time=when,
                    ip=ip_or_bad(ip_text),
                    succeeded=False,
                    attempts=max(1, int(m.group(2))),
                    service="smtp",
                    server=host,
                )
            )
            return True
        if _QID.fullmatch(qid) is None:
            return False
        if rest.startswith("from="):
            return self._from(when, host, pid, qid, rest, out)
        if rest.startswith("to="):
            return self._to(when, host, qid, rest, out)
        return False

    def _failure(self, when: datetime, host: str | None, rest: str, out: list[Event]) -> bool:
        m = _AUTH_FAIL.match(rest)
        if m is None:
            raise LineError("AUTH failure line without a mechanism")
        detail = m.group(2)
        relays = _RELAY_FIELD.findall(detail)
        if not relays:
            raise LineError("AUTH failure line without relay=")
        ip_text = _relay_ip(relays[-1])
        if ip_text is None:
            raise LineError("AUTH failure line without a [peer address]")
        user = None
        i = detail.rfind(", user=")
        if i >= 0:
            user = detail[i + 7 :].split(",", 1)[0] or None
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(ip_text),
                succeeded=False,
                account=user,
                mechanism=m.group(1).upper(),
                service="smtp",
                server=host,
            )
        )
        return True

    def _from(
        self,
        when: datetime,
        host: str | None,
        pid: str | None,
        qid: str,
        rest: str,
        out: list[Event],
    ) -> bool:
        ctx = self.ctx
        state = ctx.sessions.get((host, pid or ""))
        if state is None or state.ip is None or state.time is None:
            return False  # not an authenticated session
        if when - state.time > ctx.join_timeout:
            return False
        relays = _RELAY_FIELD.findall(rest)
        if relays:
            ip_text = _relay_ip(relays[-1])
            if ip_text is not None and ip_or_bad(ip_text) != state.ip:
                return False  # the process now serves another client
        m = _FROM.match(rest)
        if m is None:
            raise LineError("from= line without size= or nrcpts=")
        key = (host, qid)
        if key in ctx.pending:
            return True  # sendmail repeats from= when the queue runner retries
        msg = Pending(state.time, state.ip, state.account, host, qid)
        msg.sender = m.group(1).strip("<>")
        msg.size = int(m.group(2))
        msg.recipient_count = int(m.group(3))
        ctx.add_pending(key, msg, out)
        return True

    def _to(self, when: datetime, host: str | None, qid: str, rest: str, out: list[Event]) -> bool:
        m = _TO.match(rest)
        if m is None:
            raise LineError("to= line without stat=")
        stat = m.group(2)
        word = stat.split(None, 1)[0].rstrip(":").lower() if stat else ""
        status = word if word in ("sent", "deferred") else "bounced"
        relays = _RELAY_FIELD.findall(rest)
        relay = relays[-1].strip() if relays else None
        dsn = _DSN.search(rest)
        key = (host, qid)
        pending = self.ctx.pending.get(key)
        complete = False
        for addr in m.group(1).split(","):
            rcpt = addr.strip().strip("<>")
            if not rcpt:
                continue
            out.append(
                new_delivery(
                    time=when,
                    queue_id=qid,
                    recipient=rcpt,
                    status=status,
                    relay=relay,
                    dsn=dsn.group(1) if dsn else None,
                    server=host,
                )
            )
            if pending is not None:
                complete = pending.add_rcpt(rcpt, self.ctx.max_rcpts) or complete
        if complete and pending is not None:
            del self.ctx.pending[key]
            out.append(pending.event())
        return True
