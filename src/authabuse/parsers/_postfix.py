"""Postfix: smtpd SASL logins and failures, the queue-id join, deliveries (private).

Join rule (per ``(server, queue id)``): smtpd's ``QID: client=host[ip], sasl_method=M,
sasl_username=U`` starts a pending submission; qmgr's first ``QID: from=<s>, size=N,
nrcpt=N`` fills sender, size and recipient count (qmgr repeats that line on every retry:
only the first counts); each ``QID: to=<r>, relay=..., dsn=..., status=...`` is a
:class:`~authabuse.events.Delivery` and adds ``r`` to the recipients. The submission is
emitted as soon as every one of the ``nrcpt`` recipients had a first outcome, or at
``QID: removed``, or when the join expires. Messages without ``sasl_username`` (inbound
mail, content-filter re-injection) are not submissions; their deliveries are still
reported.

Sessions (per ``(server, smtpd pid)``, reset on ``connect from`` and ``disconnect from``):
the first ``client=`` line of a session with a SASL user also yields one successful
:class:`~authabuse.events.AuthAttempt` (Postfix logs the login only there); each
``SASL <mech> authentication failed`` warning yields a failed one; and the
``disconnect from ... auth=S/T`` statistics yield the failed AUTH commands that no warning
reported (a client that dropped the connection in the middle of AUTH), so that no
failure is counted twice. ``Connection lost to authentication server`` is the local
SASL service failing, not the client: it yields nothing.
"""

from __future__ import annotations

import re
from datetime import datetime

from authabuse.events import AuthAttempt, Delivery, Event

from ._common import Context, LineError, Pending, ip_or_bad

__all__ = ["PostfixParser"]

_CLIENT = re.compile(
    r"client=[^\[]*\[([^\]]*)\](?::[0-9]+)?"
    r"(?:, sasl_method=([^,]*))?(?:, sasl_username=([^,]*))?"
)
_SASL_FAIL = re.compile(
    r"warning: [^\[]*\[([^\]]*)\](?::[0-9]+)?: SASL ([^ ]+) authentication failed:? ?(.*)"
)
_QMGR_FROM = re.compile(r"from=<(.*?)>, size=([0-9]+), nrcpt=([0-9]+)")
_TO = re.compile(r"to=<([^>]*)>,(?: orig_to=<[^>]*>,)? relay=([^,]*),.*? dsn=([^,]*), status=(\S+)")
_AUTH_STATS = re.compile(r" auth=([0-9]+)/([0-9]+)")
_DISCONNECT = re.compile(r"disconnect from [^\[]*\[([^\]]*)\]")
_QID_OK = re.compile(r"[0-9A-Za-z]+")
_NOT_ATTACKS = ("Connection lost to authentication server",)


class PostfixParser:
    """Turns the message part of Postfix lines into events (see the module docstring)."""

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
        daemon = prog[prog.rfind("/") + 1 :]
        if daemon == "smtpd":
            return self._smtpd(when, host, prog, pid, msg, out)
        colon = msg.find(": ")
        if colon <= 0:
            return False
        rest = msg[colon + 2 :]
        if rest.startswith("to=<"):
            return self._delivery(when, host, msg[:colon], rest, out)
        if daemon == "qmgr":
            if rest.startswith("from=<"):
                msg_ = self.ctx.pending.get((host, msg[:colon]))
                if msg_ is None:
                    return False
                if not msg_.done:
                    m = _QMGR_FROM.match(rest)
                    if m is None:
                        raise LineError("qmgr from= line without size= and nrcpt=")
                    msg_.done = True
                    msg_.sender = m.group(1)
                    msg_.size = int(m.group(2))
                    msg_.nrcpt = int(m.group(3))
                    if len(msg_.rcpts) >= msg_.nrcpt:
                        self._complete((host, msg[:colon]), out)
                return True
            if rest == "removed":
                return self._complete((host, msg[:colon]), out)
        return False

    def _complete(self, key: tuple[str | None, str], out: list[Event]) -> bool:
        msg = self.ctx.pending.pop(key, None)
        if msg is None:
            return False
        out.append(msg.event())
        return True

    def _delivery(
        self, when: datetime, host: str | None, qid: str, rest: str, out: list[Event]
    ) -> bool:
        m = _TO.match(rest)
        if m is None:
            raise LineError("delivery line without relay=, dsn= or status=")
        rcpt = m.group(1)
        out.append(
            Delivery(
                time=when,
                queue_id=qid,
                recipient=rcpt,
                status=m.group(4),
                relay=m.group(2),
                dsn=m.group(3),
                server=host,
            )
        )
        key = (host, qid)
        pending = self.ctx.pending.get(key)
        if pending is not None and pending.add_rcpt(rcpt, self.ctx.max_rcpts):
            self._complete(key, out)
        return True

    def _smtpd(
        self,
        when: datetime,
        host: str | None,
        prog: str,
        pid: str | None,
        msg: str,
        out: list[Event],
    ) -> bool:
        ctx = self.ctx
        if msg.startswith("connect from "):
            ctx.sessions.pop((host, pid or ""), None)
            return False
        if msg.startswith("disconnect from "):
            return self._disconnect(when, host, prog, pid, msg, out)
        i = msg.find(": client=")
        if i > 0:
            qid = msg[:i]
            m = _CLIENT.match(msg, i + 2)
            if m is None:
                raise LineError("client= field without host[address]")
            account = m.group(3)
            if account is None:
                return False  # not an authenticated submission
            ip = ip_or_bad(m.group(1))
            if _QID_OK.fullmatch(qid) is None:
                raise LineError(f"bad queue id {qid[:40]!r}")
            service = _service(prog)
            state = ctx.session((host, pid or ""))
            if state.account != account:
                state.account = account
                out.append(
                    AuthAttempt(
                        time=when,
                        ip=ip,
                        succeeded=True,
                        account=account,
                        mechanism=m.group(2),
                        service=service,
                        server=host,
                        session=qid,
                    )
                )
            ctx.add_pending((host, qid), Pending(when, ip, account, host, qid), out)
            return True
        if msg.startswith("warning: ") and "authentication failed" in msg:
            m = _SASL_FAIL.match(msg)
            if m is None:
                return False  # e.g. Cyrus' "SASL authentication failure" without a client
            reason = m.group(3)
            state = ctx.session((host, pid or ""))
            state.failed += 1
            if reason.startswith(_NOT_ATTACKS):
                return True
            ip = ip_or_bad(m.group(1))
            account = None
            j = reason.rfind(", sasl_username=")
            if j >= 0:
                account = reason[j + 16 :] or None
                if account == "(unavailable)":
                    account = None
            out.append(
                AuthAttempt(
                    time=when,
                    ip=ip,
                    succeeded=False,
                    account=account,
                    mechanism=m.group(2).upper(),
                    service=_service(prog),
                    server=host,
                )
            )
            return True
        return False

    def _disconnect(
        self,
        when: datetime,
        host: str | None,
        prog: str,
        pid: str | None,
        msg: str,
        out: list[Event],
    ) -> bool:
        state = self.ctx.sessions.pop((host, pid or ""), None)
        if " auth=" not in msg:
            return False
        stats = _AUTH_STATS.search(msg)
        if stats is None:
            return False  # auth=1: every AUTH succeeded
        failed = int(stats.group(2)) - int(stats.group(1))
        if state is not None:
            failed -= state.failed
        if failed <= 0:
            return True
        m = _DISCONNECT.match(msg)
        if m is None:
            raise LineError("disconnect line without host[address]")
        out.append(
            AuthAttempt(
                time=when,
                ip=ip_or_bad(m.group(1)),
                succeeded=False,
                attempts=failed,
                service=_service(prog),
                server=host,
            )
        )
        return True


def _service(prog: str) -> str:
    """``postfix/submission/smtpd`` -> ``submission``; ``postfix/smtpd`` -> ``smtp``."""
    parts = prog.split("/")
    return parts[-2] if len(parts) > 2 else "smtp"
