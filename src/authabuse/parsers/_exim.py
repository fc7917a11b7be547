"""Exim main log (native or syslog-wrapped): authenticated arrivals, failures (private).

* ``<msgid> <= sender H=name (helo) [ip]:port ... P=esmtpa A=authenticator:id S=size``:
  a successful login (the authenticator's ``server_set_id`` is the account) and a pending
  submission. Only the last ``[...]`` of ``H=`` is the peer (the HELO may hold a literal).
  Exim logs ``A=`` on every message of a connection; where the line gives the receiving
  process's pid (``+pid``'s ``[pid]``, syslog's ``exim[pid]``), the second and later
  messages of a process from the same peer and login are not logins again.
  ``A=`` on ``=>`` lines is Exim logging in to a smarthost as a client: not our user.
* ``=>``, ``->`` (delivered), ``**`` (bounced), ``==`` (deferred): deliveries, which
  also give the submission its recipients; ``Completed`` emits the submission. With
  ``log_selector = +received_recipients`` the arrival ends ``for r1 r2 ...``: the
  submission is complete there and is emitted at once (a deferred recipient would
  otherwise hold it back until ``Completed``, minutes or hours later).
* ``<authenticator> authenticator failed for <H-spec>: 535 ... (set_id=user)``: a failed
  attempt. ``435 Unable to authenticate at present`` is a local outage: no event.
"""

from __future__ import annotations

import re
from datetime import datetime

from authabuse.events import Event

from ._common import Context, LineError, Pending, ip_or_bad, last_bracketed
from ._fast import new_auth, new_delivery

__all__ = ["EXIM_STAMP", "EximParser"]

EXIM_STAMP = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?(?: [+-][0-9]{4})?) "
)
_PID = re.compile(r"\[([0-9]+)\] ")
_MSGID = re.compile(r"([0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}) (<=|=>|->|\*\*|==) ")
_FAILED = re.compile(r"(\S+) authenticator failed for (.*?): ([45][0-9][0-9])\b")
_SET_ID = re.compile(r"\(set_id=([^)]*)\)")
_H_FIELD = re.compile(r" H=(.*?)(?= [A-Za-z][A-Za-z0-9]*=|$)")
_A_FIELD = re.compile(r" A=(\S+)")
_S_FIELD = re.compile(r" S=([0-9]+)")
# a delivery's host: "name [ip]" or "[ip]", ":port" with +outgoing_port; what follows a
# failed one (": SMTP error from remote mail server ...") is not part of it
_RELAY = re.compile(r"[^\[\s]*\s?\[[^\]]*\](?::[0-9]+)?")
_STATUS = {"=>": "sent", "->": "sent", "**": "bounced", "==": "deferred"}


def _peer(spec: str) -> str | None:
    """Return the address in the last ``[...]`` of an ``H=`` spec (``None`` if absent)."""
    for stop in (" I=", " U="):
        cut = spec.find(stop)
        if cut >= 0:
            spec = spec[:cut]
    return last_bracketed(spec, "H=")


class EximParser:
    """Turns Exim main-log lines into events (see the module docstring)."""

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
        if msg[:1] == "[":
            m = _PID.match(msg)
            if m is not None:
                pid = m.group(1)
                msg = msg[m.end() :]
        if msg[:2] in ("19", "20"):  # syslog-wrapped: Exim's own (more precise) stamp
            m = EXIM_STAMP.match(msg)
            if m is not None:
                try:
                    when = self.ctx.clock.iso(m.group(1))
                except ValueError:
                    raise LineError(f"bad Exim time stamp {m.group(1)!r}") from None
                msg = msg[m.end() :]
                if msg[:1] == "[":
                    p = _PID.match(msg)
                    if p is not None:
                        pid = p.group(1)
                        msg = msg[p.end() :]
        if "authenticator failed" in msg:
            return self._failed(when, host, msg, out)
        m = _MSGID.match(msg)
        if m is None:
            parts = msg.split(" ", 2)
            if len(parts) >= 2 and parts[1] == "Completed":
                return self._complete((host, parts[0]), out)
            return False
        msgid, flag = m.group(1), m.group(2)
        rest = msg[m.end() :]
        if flag == "<=":
            return self._arrival(when, host, pid, msgid, rest, out)
        rcpt = rest.split(" ", 1)[0].rstrip(":").strip("<>")
        h = _H_FIELD.search(rest)
        relay = None
        if h is not None:
            relay = h.group(1)
            r = _RELAY.match(relay)
            if r is not None:
                relay = r.group()
        out.append(
            new_delivery(
                time=when,
                queue_id=msgid,
                recipient=rcpt,
                status=_STATUS[flag],
                relay=relay,
                server=host,
            )
        )
        key = (host, msgid)
        pending = self.ctx.pending.get(key)
        if pending is not None:
            pending.add_rcpt(rcpt, self.ctx.max_rcpts)  # complete only at "Completed"
        return True

    def _complete(self, key: tuple[str | None, str], out: list[Event]) -> bool:
        msg = self.ctx.pending.pop(key, None)
        if msg is None:
            return False
        out.append(msg.event())
        return True

    def _arrival(
        self,
        when: datetime,
        host: str | None,
        pid: str | None,
        msgid: str,
        rest: str,
        out: list[Event],
    ) -> bool:
        a = _A_FIELD.search(rest)
        if a is None:
            return False  # not authenticated
        h = _H_FIELD.search(rest)
        peer = _peer(h.group(1)) if h else None
        if peer is None:
            return False  # local submission (P=local-esmtpa): no network peer
        ip = ip_or_bad(peer)
        parts = a.group(1).split(":", 2)
        authenticator = parts[0]
        account = parts[1] if len(parts) > 1 and parts[1] else None
        sender = rest.split(" ", 1)[0]
        if self._new_login(host, pid, f"{peer} {a.group(1)}"):
            out.append(
                new_auth(
                    time=when,
                    ip=ip,
                    succeeded=True,
                    account=account,
                    mechanism=authenticator,
                    service="smtp",
                    server=host,
                    session=msgid,
                )
            )
        msg = Pending(when, ip, account, host, msgid)
        msg.sender = "" if sender == "<>" else sender
        size = _S_FIELD.search(rest)
        if size is not None:
            msg.size = int(size.group(1))
        i = rest.rfind(" for ")
        if i >= 0:
            rcpts = rest[i + 5 :].split()
            if rcpts and all("@" in r for r in rcpts):
                # +received_recipients: the line says everything; the message is a
                # submission now, in arrival order, not once its deliveries are done
                for r in rcpts:
                    msg.add_rcpt(r, self.ctx.max_rcpts)
                out.append(msg.event())
                return True
        self.ctx.add_pending((host, msgid), msg, out)
        return True

    def _new_login(self, host: str | None, pid: str | None, login: str) -> bool:
        """Whether an arrival's ``A=`` is a new login, not another message of one.

        Exim serves each SMTP connection in a process of its own and logs ``A=`` on every
        message it accepts there. With the pid known (``log_selector = +pid``, or syslog's
        ``exim[pid]``), further messages of the process from the same peer and login are
        the same session: one login, as Postfix reports it. Without a pid every arrival
        counts as a login.
        """
        if pid is None:
            return True
        key = (host, "exim[" + pid)  # apart from Postfix smtpd's (host, pid) keys
        authed = self.ctx.authed
        if authed.get(key) == login:
            return False
        authed[key] = login
        if len(authed) > self.ctx.max_sessions:
            del authed[next(iter(authed))]
        return True

    def _failed(self, when: datetime, host: str | None, msg: str, out: list[Event]) -> bool:
        m = _FAILED.search(msg)
        if m is None:
            raise LineError("authenticator failure without an SMTP reply code")
        if m.group(3).startswith("4"):
            return True  # 435 Unable to authenticate at present: our outage, not an attack
        peer = _peer(m.group(2))
        if peer is None:
            raise LineError("authenticator failure without a [peer address]")
        set_id = _SET_ID.search(msg, m.end())
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(peer),
                succeeded=False,
                account=(set_id.group(1) or None) if set_id else None,
                mechanism=m.group(1),
                service="smtp",
                server=host,
            )
        )
        return True
