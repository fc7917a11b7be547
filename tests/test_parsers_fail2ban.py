"""Acceptance over fail2ban's annotated fixtures (GPL: read in place from ../shared).

fail2ban's ``raw/<filter>`` files annotate each line with ``# failJSON: {...}``: whether
fail2ban matches it and, if so, the expected host (and sometimes user). fail2ban's
filters also match lines that are not about authentication (relay rejects, HELO checks,
TLS scanners). The lines authabuse must turn into a failed
:class:`~authabuse.events.AuthAttempt` are the *authentication-failure lines* among the
matched ones, selected by what the line itself says (``_AUTH_FAILURE`` below, applied
without looking at our parser):

* a server verdict that credentials were checked and rejected: Postfix ``SASL <mech>
  authentication failed``, Dovecot ``auth failed``/``Password mismatch``/``unknown
  user``/``pam_authenticate() failed``/``authentication failure``/``invalid
  credentials``, Exim ``authenticator failed``, Sendmail ``AUTH failure``;
* a counted failure without a verdict line: Postfix ``disconnect ... auth=S/T`` with
  ``S < T``, Sendmail ``possible SMTP attack: command=AUTH, count=N``;
* the other servers: Courier ``LOGIN FAILED`` and a ``535`` SMTP reply, Cyrus and sieve
  ``badlogin:``, UW-IMAP ``Login failed``/``excessive login failures``/``disabled``/
  ``override of user=``, Roundcube ``Login failed for``/``FAILED login``/``Failed login``, perdition
  ``status="failed``, solid-pop3d's refusals, Domino ``authentication failure using``/
  ``Authentication failed for user``, Kerio ``Failed SMTP login``, Oracle ``Bad password``.

Not selected: rejects, pipelining, ``AUTH command used when not advertised`` (no
credentials were checked), ``no auth attempts``, ``disallowed plaintext auth``, TLS
failures, perdition's ``Fatal Error reading authentication information`` (the client
left mid-exchange), Courier's and Kerio's recipient/relay rejects, qmail's RBL lines (no
authentication at all in that fixture). The test reports every selected line that gave
no matching event, with why.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from authabuse.events import AuthAttempt, parse_ip
from authabuse.parsers import LogParser

RAW = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus" / "fail2ban" / "raw"

_AUTH_FAILURE = {
    "postfix": re.compile(r"SASL \S+ authentication failed|disconnect from .* auth=0/[1-9]"),
    "dovecot": re.compile(
        r"auth failed|Password mismatch|unknown user|pam_authenticate\(\) failed"
        r"|authentication failure|invalid credentials"
    ),
    "exim": re.compile(r"authenticator failed"),
    "sendmail-auth": re.compile(r"AUTH failure|possible SMTP attack: command=AUTH"),
    # the other servers (parsers/_others.py)
    "courier-auth": re.compile(r"LOGIN FAILED"),
    "courier-smtp": re.compile(r'msg="535 '),
    "cyrus-imap": re.compile(r"badlogin: "),
    "sieve": re.compile(r"badlogin: "),
    "uwimap-auth": re.compile(
        r"Login failed user=|Login excessive login failures|Login disabled user=|override of user="
    ),
    "roundcube-auth": re.compile(r"Login failed for|FAILED login for|Failed login for"),
    "perdition": re.compile(r'status="failed'),
    "domino-smtp": re.compile(r"authentication failure using|Authentication failed for user"),
    "kerio": re.compile(r"Failed SMTP login"),
    "oracleims": re.compile(r'mi="Bad password"'),
    "solid-pop3d": re.compile(
        r"authentication failed|root login not allowed|can't find APOP secret"
    ),
}


def _cases(name: str) -> list[tuple[int, str, dict[str, object]]]:
    """(line number, line, expectation) for each line fail2ban matches."""
    out = []
    expect: dict[str, object] | None = None
    for no, line in enumerate((RAW / name).read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip("#").lstrip().startswith("failJSON:"):
            expect = json.loads(line.split("failJSON:", 1)[1])
            continue
        if not line.strip() or line.startswith("#"):
            continue
        if expect is not None and expect.get("match"):
            out.append((no, line, expect))
        expect = None
    return out


@pytest.mark.skipif(not RAW.is_dir(), reason="../shared/corpus/fail2ban (GPL) is not present")
@pytest.mark.parametrize("name", list(_AUTH_FAILURE))
def test_auth_failure_lines_become_failed_attempts(name: str) -> None:
    selected = [c for c in _cases(name) if _AUTH_FAILURE[name].search(c[1])]
    assert selected, "the selection found no authentication-failure line"
    misses = []
    for no, line, expect in selected:
        parser = LogParser(year=2005, tz="UTC", source=name)
        events = parser.feed(line, no) + parser.flush()
        attempts = [e for e in events if isinstance(e, AuthAttempt) and not e.succeeded]
        want_ip = parse_ip(str(expect["host"]))
        want_user = expect.get("user")
        good = [
            e for e in attempts if e.ip == want_ip and (want_user is None or e.account == want_user)
        ]
        if not good:
            if not attempts:
                why = "no failed attempt: " + (
                    next(iter(parser.stats.examples.values()))[0][2]
                    if parser.stats.examples
                    else "line judged irrelevant"
                )
            else:
                got = ", ".join(f"{e.ip} {e.account!r}" for e in attempts)
                why = f"wrong values: got {got}, want {want_ip} {want_user!r}"
            misses.append(f"{name}:{no}: {why}\n    {line}")
    hit = len(selected) - len(misses)
    report = f"{hit}/{len(selected)} authentication-failure lines parsed\n" + "\n".join(misses)
    print(report)
    assert hit >= 0.95 * len(selected), report
