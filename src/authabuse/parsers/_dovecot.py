"""Dovecot: login-process successes and failures, auth-process verdicts (private).

* ``imap-login: Login: user=<u>, method=M, rip=IP, ...``: a successful login.
* ``...-login: <why> (auth failed, N attempts[ in S secs])...: user=<u>, method=M, rip=IP``
  (Dovecot 2.4 adds ``Login aborted: ... (auth_failed)``): one failed event standing for
  ``N`` attempts. ``(proxy dest auth failed)``: one failed attempt at the backend.
* Auth process: ``auth: passwd-file(user,ip[,<session>]): unknown user`` (also under
  ``auth-worker(pid):``, 2.3's ``conn unix:auth-worker (...): auth-worker<N>:``) and 2.4's
  ``auth(user,ip,sasl:mech)<session>: Info: sql: Password mismatch``; and the PAM module's
  ``pam_unix(dovecot:auth): authentication failure; ... rhost=IP [user=U]``. These
  are failed attempts of the passdb. When the login process later sums up the same
  session (same ``session=<id>``) as ``auth failed, N attempts``, only the attempts the
  auth process did not already report are counted. Postfix using Dovecot for SASL
  reports the same failure again in its own log, with no common key: see the parsers
  section of ``docs/design.md``.

Lines without any authentication attempt (``no auth attempts``, ``tried to use disallowed
plaintext auth``, TLS handshake failures) are irrelevant. Dovecot may log the password a
client tried (``auth_verbose_passwords``): it is never read into an event.
"""

from __future__ import annotations

import re
from datetime import datetime

from authabuse.events import Event

from ._common import Context, LineError, ip_or_bad
from ._fast import new_auth

__all__ = ["DovecotParser"]

_LEVEL_NAMES = frozenset({"Info", "Warning", "Error", "Debug", "Fatal", "Panic"})
_LEVELS = ("Info: ", "Warning: ", "Error: ", "Debug: ", "Fatal: ", "Panic: ")
_ATTEMPTS = re.compile(r"\(auth failed, ([0-9]+) attempts?")
_USER = re.compile(r"\buser=<([^>]*)>")
_METHOD = re.compile(r"\bmethod=([^,\s]+)")
_RIP = re.compile(r"\brip=([^,\s]+)")
_SESSION = re.compile(r"\bsession=<([^>]*)>")
# passdb driver line: driver(user,ip[,<session>]): result ; the user may contain commas
_DRIVER = re.compile(
    r"(?:^|: )([a-z][a-z0-9_-]*)\((.*),([0-9A-Fa-f.:]+)(?:,(<[^>]*>|[^,()]*))?\): (.*)"
)
_AUTH24 = re.compile(r"auth\((.*),([0-9A-Fa-f.:]+),sasl:([^)]*)\)(?:<([^>]*)>)?$")
_PAM_RHOST = re.compile(r"\srhost=(\S+)")
_PAM_USER = re.compile(r"\suser=(\S+)")
_PAM_RUSER = re.compile(r"\sruser=(\S*)")
_FAIL_WORDS = (
    "unknown user",
    "Password mismatch",
    "password mismatch",
    "pam_authenticate() failed",
    "invalid credentials",
    "Authentication failure",
    "authentication failure",
)
_SERVICES = {
    "imap-login": "imap",
    "pop3-login": "pop3",
    "submission-login": "submission",
    "managesieve-login": "managesieve",
    "lmtp": "lmtp",
}


def _strip_level(text: str) -> str:
    for level in _LEVELS:
        if text.startswith(level):
            return text[len(level) :]
    return text


class DovecotParser:
    """Turns Dovecot lines into events (see the module docstring)."""

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
        proc = prog
        rest = _strip_level(msg)
        # syslog form: "dovecot: imap-login: ..." (sometimes "dovecot: dovecot: auth: ...")
        while proc.startswith("dovecot") or proc in _LEVEL_NAMES:
            if rest.startswith("pam_unix("):
                break
            colon = rest.find(": ")
            if colon <= 0 or " " in rest[:colon]:
                break
            proc, rest = rest[:colon], _strip_level(rest[colon + 2 :])
        if rest.startswith("pam_unix(dovecot"):
            return self._pam(when, host, rest, out)
        if proc.endswith("-login"):
            return self._login(when, host, proc, rest, out)
        if proc.startswith("auth"):
            return self._auth(when, host, proc, rest, out)
        return False

    def _login(
        self, when: datetime, host: str | None, proc: str, rest: str, out: list[Event]
    ) -> bool:
        service = _SERVICES.get(proc, proc[:-6])
        if rest.startswith("Login: "):
            succeeded, attempts = True, 1
        else:
            i = rest.find("auth failed")
            if i < 0:
                return False
            m = _ATTEMPTS.search(rest, i - 1)
            attempts = int(m.group(1)) if m else 1
            if attempts <= 0:
                return False
            succeeded = False
        rip = _RIP.search(rest)
        if rip is None:
            raise LineError("login line without rip=")
        user = _USER.search(rest)
        method = _METHOD.search(rest)
        session = _SESSION.search(rest)
        if not succeeded and session is not None:
            # the auth process may already have reported some of these attempts
            attempts -= self.ctx.auth_failures.pop(session.group(1), 0)
            if attempts <= 0:
                return True
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(rip.group(1)),
                succeeded=succeeded,
                account=(user.group(1) or None) if user else None,
                attempts=attempts,
                mechanism=method.group(1) if method else None,
                service=service,
                server=host,
                session=session.group(1) if session else None,
            )
        )
        return True

    def _auth(
        self, when: datetime, host: str | None, proc: str, rest: str, out: list[Event]
    ) -> bool:
        m24 = _AUTH24.match(proc)
        if m24 is not None:  # Dovecot 2.4: auth(user,ip,sasl:mech)<session>: Info: driver: ...
            if not rest.startswith(_FAIL_WORDS) and not any(w in rest for w in _FAIL_WORDS):
                return False
            user, ip_text, mech, session = m24.groups()
        else:
            if not any(w in rest for w in _FAIL_WORDS):
                return False
            m = _DRIVER.search(rest)
            if m is None:
                return False
            result = m.group(5)
            if not any(w in result for w in _FAIL_WORDS):
                return False
            user, ip_text, session = m.group(2), m.group(3), m.group(4)
            mech = None
            if session is not None:
                session = session.strip("<>") or None
        if not ip_text:
            raise LineError("auth line without a remote address")
        if session:
            seen = self.ctx.auth_failures
            seen[session] = seen.get(session, 0) + 1
            if len(seen) > self.ctx.max_sessions:
                del seen[next(iter(seen))]
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(ip_text),
                succeeded=False,
                account=user or None,
                mechanism=mech.upper() if mech else None,
                server=host,
                session=session,
            )
        )
        return True

    def _pam(self, when: datetime, host: str | None, rest: str, out: list[Event]) -> bool:
        if "authentication failure" not in rest:
            return False
        rhost = _PAM_RHOST.search(rest)
        if rhost is None:
            return False  # local login, no remote address
        user = _PAM_USER.search(rest) or _PAM_RUSER.search(rest)
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(rhost.group(1)),
                succeeded=False,
                account=(user.group(1) or None) if user else None,
                server=host,
            )
        )
        return True
