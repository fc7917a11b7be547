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

Sessions (per ``(server, smtpd pid)``, ended by ``disconnect from``):
the first ``client=`` line of a session with a SASL user also yields one successful
:class:`~authabuse.events.AuthAttempt` (Postfix logs the login only there, and since 3.10
on ``reject`` lines, which count too: a botnet whose mail is refused still logged in); each
``SASL <mech> authentication failed`` warning yields a failed one; and the
``disconnect from ... auth=S/T`` statistics yield the failed AUTH commands that no warning
reported (a client that dropped the connection in the middle of AUTH), so that no
failure is counted twice. ``Connection lost to authentication server`` is the local
SASL service failing, not the client: it yields nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from authabuse.errors import InvalidEventError
from authabuse.events import Event

from ._common import Context, LineError, Pending, ip_or_bad
from ._fast import MAX_ACCOUNT, new_auth, new_delivery

__all__ = ["PostfixParser"]

_CLIENT = re.compile(
    r"client=[^\[]*\[([^\]]*)\](?::[0-9]+)?"
    r"(?:, sasl_method=([^,]*))?(?:, sasl_username=([^,]*))?"
)
_CLIENT_MATCH = _CLIENT.match
_SASL_FAIL = re.compile(
    r"warning: [^\[]*\[([^\]]*)\](?::[0-9]+)?: SASL ([^ ]+) authentication failed:? ?(.*)"
)
_QMGR_FROM = re.compile(r"from=<(.*?)>, size=([0-9]+), nrcpt=([0-9]+)")
_DISCONNECT = re.compile(r"disconnect from [^\[]*\[([^\]]*)\]")
# Postfix >= 3.10 appends the SASL login to reject lines ("if available")
_REJECT = re.compile(
    r"([0-9A-Za-z]+): (?:reject|reject_warning|milter-reject|discard|filter)[^:]*?: "
    r"\S+ from [^\[]*\[([^\]]*)\].*?[ ,]sasl_method=([^ ,]*),? sasl_username=([^ ,]*)"
)
_NOT_ATTACKS = ("Connection lost to authentication server",)


class PostfixParser:
    """Turns the message part of Postfix lines into events (see the module docstring)."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def route(self, prog: str) -> Callable[..., bool]:
        """Return the method that handles lines of program ``prog`` (by its daemon)."""
        daemon = prog[prog.rfind("/") + 1 :]
        if daemon == "smtpd":
            return self._smtpd
        if daemon == "qmgr":
            return self._qmgr
        return self._agent

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
        return self.route(prog)(when, host, prog, pid, msg, out)

    def _agent(
        self,
        when: datetime,
        host: str | None,
        prog: str,
        pid: str | None,
        msg: str,
        out: list[Event],
    ) -> bool:
        """Delivery agents (smtp, lmtp, local, virtual, pipe, error, discard, ...)."""
        # _delivery, inlined: this is the most frequent line of a busy server's log
        colon = msg.find(": to=<")
        if colon <= 0:
            return False
        end = msg.find(">,", colon + 6)
        relay_at = msg.find(" relay=", end)
        dsn_at = msg.find(", dsn=", relay_at)
        status_at = msg.find(", status=", dsn_at)
        if end < 0 or relay_at < 0 or dsn_at < 0 or status_at < 0:
            raise LineError("delivery line without relay=, dsn= or status=")
        status_end = msg.find(" ", status_at + 9)
        qid = msg[:colon]
        rcpt = msg[colon + 6 : end]
        out.append(
            new_delivery(
                when,
                qid,
                rcpt,
                msg[status_at + 9 : status_end] if status_end > 0 else msg[status_at + 9 :],
                msg[relay_at + 7 : msg.find(",", relay_at)],
                msg[dsn_at + 6 : status_at],
                host,
            )
        )
        ctx = self.ctx
        pending = ctx.pending.get((host, qid))
        if pending is not None:  # Pending.add_rcpt, inlined
            rcpts = pending.recipients
            if rcpt not in rcpts and len(rcpts) < ctx.max_rcpts:
                rcpts.append(rcpt)
            if pending.recipient_count is not None and len(rcpts) >= pending.recipient_count:
                del ctx.pending[(host, qid)]
                out.append(pending.event())
        return True

    def _qmgr(
        self,
        when: datetime,
        host: str | None,
        prog: str,
        pid: str | None,
        msg: str,
        out: list[Event],
    ) -> bool:
        colon = msg.find(": ")
        if colon <= 0:
            return False
        at = colon + 2
        if msg.startswith("removed", at):  # (a stray trailing quote seen in the wild)
            done = self.ctx.pending.pop((host, msg[:colon]), None)
            if done is None:
                return False
            out.append(done.event())
            return True
        if msg.startswith("from=<", at):
            key = (host, msg[:colon])
            pending = self.ctx.pending.get(key)
            if pending is None:
                return False
            if pending.recipient_count is None:  # only qmgr's first from= line counts
                m = _QMGR_FROM.match(msg, at)
                if m is None:
                    raise LineError("qmgr from= line without size= and nrcpt=")
                sender, size, nrcpt = m.groups()
                if len(size) > 18 or len(nrcpt) > 18:
                    raise LineError("size= or nrcpt= out of range")
                pending.sender = sender
                pending.size = int(size)
                pending.recipient_count = int(nrcpt)
                if len(pending.recipients) >= pending.recipient_count:
                    self._complete(key, out)
            return True
        if msg.startswith("to=<", at):  # qmgr itself logs some outcomes (expired, ...)
            return self._delivery(when, host, msg[:colon], msg[at:], out)
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
        # to=<r>,[ orig_to=<o>,] relay=R, delay=..., delays=..., dsn=D, status=S (...)
        end = rest.find(">,", 4)
        relay_at = rest.find(" relay=", end)
        dsn_at = rest.find(", dsn=", relay_at)
        status_at = rest.find(", status=", dsn_at)
        if end < 0 or relay_at < 0 or dsn_at < 0 or status_at < 0:
            raise LineError("delivery line without relay=, dsn= or status=")
        relay_end = rest.find(",", relay_at)
        status_end = rest.find(" ", status_at + 9)
        rcpt = rest[4:end]
        relay = rest[relay_at + 7 : relay_end]
        dsn = rest[dsn_at + 6 : status_at]
        status = rest[status_at + 9 : status_end] if status_end > 0 else rest[status_at + 9 :]
        out.append(new_delivery(when, qid, rcpt, status, relay, dsn, host))
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
        if msg.startswith("disconnect from "):
            return self._disconnect(when, host, prog, pid, msg, out)
        i = msg.find(": client=")
        if i > 0:
            qid = msg[:i]
            m = _CLIENT_MATCH(msg, i + 2)
            if m is None:
                raise LineError("client= field without host[address]")
            ip_text, mechanism, account = m.groups()
            if not account:  # no (or an empty) sasl_username=: not an authenticated submission
                return False
            ip = ip_or_bad(ip_text)
            if not qid.isalnum():
                raise LineError(f"bad queue id {qid[:40]!r}")
            if len(account) > MAX_ACCOUNT:  # refused before it enters any join state
                raise InvalidEventError(f"account name longer than {MAX_ACCOUNT} characters")
            key = (host, pid or "")
            authed = ctx.authed
            if authed.get(key) != account:
                authed[key] = account
                if len(authed) > ctx.max_sessions:
                    del authed[next(iter(authed))]
                service = _SERVICES.get(prog) or _service(prog)
                out.append(new_auth(when, ip, True, account, 1, mechanism, service, host, qid))
            pending = ctx.pending
            key = (host, qid)
            if key in pending or len(pending) >= ctx.max_pending:
                ctx.add_pending(key, Pending(when, ip, account, host, qid), out)
            else:  # Context.add_pending's common case, inlined
                pending[key] = Pending(when, ip, account, host, qid)
            return True
        if msg.startswith("warning: ") and "authentication failed" in msg:
            m = _SASL_FAIL.match(msg)
            if m is None:
                return False  # e.g. Cyrus' "SASL authentication failure" without a client
            reason = m.group(3)
            key = (host, pid or "")
            failed = ctx.failed
            failed[key] = failed.get(key, 0) + 1
            if len(failed) > ctx.max_sessions:
                del failed[next(iter(failed))]
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
                new_auth(
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
        if " sasl_username=" in msg and "reject" in msg:
            return self._rejected_login(when, host, prog, pid, msg, out)
        return False

    def _rejected_login(
        self,
        when: datetime,
        host: str | None,
        prog: str,
        pid: str | None,
        msg: str,
        out: list[Event],
    ) -> bool:
        """Postfix >= 3.10 ``reject: ... sasl_method=M sasl_username=U``: a login."""
        m = _REJECT.match(msg)
        if m is None:
            return False
        qid, ip_text, mechanism, account = m.groups()
        if not account or account == "(unavailable)":
            return False
        key = (host, pid or "")
        authed = self.ctx.authed
        if authed.get(key) == account:
            return True  # this session's login was already reported
        authed[key] = account
        if len(authed) > self.ctx.max_sessions:
            del authed[next(iter(authed))]
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(ip_text),
                succeeded=True,
                account=account,
                mechanism=mechanism,
                service=_service(prog),
                server=host,
                session=None if qid == "NOQUEUE" else qid,
            )
        )
        return True

    def _disconnect(
        self,
        when: datetime,
        host: str | None,
        prog: str,
        pid: str | None,
        msg: str,
        out: list[Event],
    ) -> bool:
        key = (host, pid or "")
        ctx = self.ctx
        ctx.authed.pop(key, None)
        logged = ctx.failed.pop(key, 0)
        failed = auth_failures(msg)
        if failed is None:
            return False
        failed -= logged
        if failed <= 0:
            return True
        m = _DISCONNECT.match(msg)
        if m is None:
            raise LineError("disconnect line without host[address]")
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(m.group(1)),
                succeeded=False,
                attempts=failed,
                service=_service(prog),
                server=host,
            )
        )
        return True


def auth_failures(msg: str) -> int | None:
    """Count the failed AUTH commands of a ``disconnect`` line's ``auth=S/T`` (``None``: none).

    ``auth=1`` (no slash: every AUTH succeeded) and a line without ``auth=`` give ``None``.

    >>> auth_failures("disconnect from x[192.0.2.1] ehlo=1 auth=0/3 commands=1/4")
    3
    >>> auth_failures("disconnect from x[192.0.2.1] ehlo=1 auth=1 quit=1") is None
    True
    """
    i = msg.find(" auth=")
    if i < 0:
        return None
    j = msg.find(" ", i + 6)
    value = msg[i + 6 : j] if j > 0 else msg[i + 6 :]
    slash = value.find("/")
    if slash < 0:
        return None  # auth=1: every AUTH succeeded
    ok, total = value[:slash], value[slash + 1 :]
    if not (ok.isdecimal() and total.isdecimal() and len(value) < 40):
        raise LineError(f"bad auth= statistics {value[:20]!r}")
    return int(total) - int(ok)


_SERVICES: dict[str, str] = {}


def _service(prog: str) -> str:
    """``postfix/submission/smtpd`` -> ``submission``; ``postfix/smtpd`` -> ``smtp``."""
    service = _SERVICES.get(prog)
    if service is None:
        parts = prog.split("/")
        service = parts[-2] if len(parts) > 2 else "smtp"
        if len(_SERVICES) < 1024:
            _SERVICES[prog] = service
    return service
