r"""The whole-block fast path for Postfix logs (private).

:func:`feed_block` parses a decoded block of lines with one compiled pattern run by
``re.finditer``: the pattern recognizes the syslog envelope of Postfix lines and, for the
frequent line shapes, the fields the handlers would cut out with ``str.find`` (a delivery's
recipient, relay, dsn and status; qmgr's sender, size and recipient count; smtpd's
``client=`` login and SASL failures; ``removed``), all in C. Python then does only what
needs state: the joins, the sessions and the events. It is the same machine as the line
path (:meth:`LogParser.feed_lines`), not a second parser: every line is handled in exactly
one of three ways, and the results (events, their order, statistics, line numbers of
problems) are those of the line path:

* a *frequent shape* (listed above): handled inline here, with the same steps in the same
  order as the handler in ``_postfix.py`` would take (so a bad address raises the same
  error after the same state changes);
* any other Postfix line (``postfix*/daemon[pid]: message``): the envelope comes from the
  pattern, the message goes to the very handler the line path would call;
* a line of another program or shape (Dovecot, Exim, a line without envelope): it goes
  to :meth:`LogParser.feed_lines` itself, consecutive ones as one batch.

The line path drops a line holding ``]: connect from `` or ``: message-id=`` before any
other work; here those lines match their own alternatives (nothing is done for them), and
the fields of the frequent shapes cannot hold either text (the pattern refuses ``:``
followed by `` message-id=`` or `` connect from``), so such a line never takes a frequent
shape; a generic Postfix line is tested in Python. Fields are stricter than the handlers'
(ASCII queue ids, host names and addresses, no ``:`` in an account): a line outside them
takes the generic route, which is the handler itself.

Every line is exactly one match (the last alternative takes any line), so line numbers
are counted only when a problem is reported (from the previous reported place, so a block
is scanned once at most). The caller guarantees what :meth:`LogParser.feed_lines` needs
(valid UTF-8, no line of ``max_line`` bytes or more) and also that the block holds no
carriage return and ends with a newline; strict mode uses the line path.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from authabuse.errors import InvalidEventError
from authabuse.events import Event

from ._common import _IP_CACHE as _IPS  # the cache ip_or_bad fills
from ._common import LineError, Pending, ip_or_bad
from ._fast import MAX_ACCOUNT, new_auth, new_delivery
from ._postfix import _NOT_ATTACKS, _SERVICES, _service, auth_failures

if TYPE_CHECKING:
    from ._core import LogParser

__all__ = ["feed_block"]

_N = r"[0-9A-Za-z._-]"  # host, program and daemon names (stricter than the envelope's)
_ID = r"[0-9A-Za-z]++"  # queue ids
_IP = r"[0-9A-Fa-f:.]++"  # what may stand between the brackets of a client address
_NOT_SKIP = r":(?! message-id=| connect from )"  # a ':' that starts neither skip text


def _safe(excluded: str = "") -> str:
    """Text without a newline, ``excluded`` characters or a skip text (see the docstring)."""
    return rf"(?:[^:{excluded}\n]++|{_NOT_SKIP})*+"


_STAMP = (  # _core._STAMP without TAI64N (rare: those lines take the line path)
    r"(?:([A-Z][a-z]{2} [ 0-9]?[0-9] [0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"|([0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?)) ++"
)
_PROGRAM = rf"postfix{_N}*+/(?:{_N}++/)*+"  # postfix, service and instance names, then a '/'
_SKIP = r"connect from .*+"

_PATTERN = (
    rf"(?:{_STAMP}({_N}++) "
    rf"(?P<prog>{_PROGRAM}(?:(?P<dsm>smtpd)|(?P<dqm>qmgr)|{_N}++))\[(?P<pid>[0-9]++)\]: "
    r"(?(dsm)(?:"  # smtpd
    rf"(?P<sq>{_ID}): (?:"
    rf"client={_N}*+\[(?P<cip>{_IP})\](?::[0-9]++)?, "
    r"sasl_method=(?P<cmech>[0-9A-Za-z_-]*+), sasl_username=(?P<cuser>[^,:\n]++)"
    r"|message-id=.*+(?P<skip1>))"
    rf"|warning: {_N}*+\[(?P<fip>{_IP})\](?::[0-9]++)?: "
    r"SASL (?P<fmech>[^ :\n]++) authentication failed:? ?(?P<freason>[^:\n]*+)"
    # the common disconnect: counters before "auth=" (none is auth=), then auth=S/T or auth=S
    rf"|disconnect from {_N}*+\[(?P<dsip>{_IP})\](?: (?!auth=)[a-z]++=[0-9/]++)*+ auth="
    r"(?:(?P<dok>[0-9]{1,9}+)/(?P<dtotal>[0-9]{1,9}+)|[0-9]{1,9}+(?P<dall>))(?=[ \n])"
    + _safe()
    + rf"|disconnect from {_N}*+\[(?P<dip>{_IP})\](?P<drest>{_safe()})"
    rf"|{_SKIP}(?P<skip2>)"
    r"|(?P<sgen>.*+))"
    r"|(?(dqm)(?:"  # qmgr
    rf"(?P<qq>{_ID}): (?:"
    rf"from=<(?P<sender>{_safe('>')})>, size=(?P<size>[0-9]{{1,18}}+), "
    rf"nrcpt=(?P<nrcpt>[0-9]{{1,18}}+)(?![0-9]){_safe()}"
    r"|removed(?P<rm>)"
    r"|message-id=.*+(?P<skip3>))"
    rf"|{_SKIP}(?P<skip4>)"
    r"|(?P<qgen>.*+))"
    r"|(?:"  # delivery agents and every other daemon
    rf"(?P<aq>{_ID}): (?:"
    rf"to=<(?P<rcpt>{_safe('>')})>, relay=(?P<relay>{_safe(',')}), "
    r"delay=[^:,\n]*+, delays=[^:,\n]*+, dsn=(?P<dsn>[^:,\n]*+), "
    rf"status=(?P<status>[^ \n]*+){_safe()}"
    r"|message-id=.*+(?P<skip5>))"
    rf"|{_SKIP}(?P<skip6>)"
    r"|(?P<agen>.*+))))"
    # anything else: the line path
    r"|(?P<other>.*+))\n"
)
_FINDITER = re.compile(_PATTERN).finditer
_G = re.compile(_PATTERN).groupindex
_SKIPS = frozenset(_G[f"skip{i}"] for i in range(1, 7))
_HOST = 3
_DIP, _DSIP, _DOK, _DTOTAL, _DALL = (_G[n] for n in ("dip", "dsip", "dok", "dtotal", "dall"))
(
    _PROG, _PID, _SQ, _CIP, _CMECH, _CUSER, _FIP, _FMECH, _FREASON, _DREST, _SGEN,
    _QQ, _SENDER, _SIZE, _NRCPT, _RM, _QGEN,
    _AQ, _RCPT, _RELAY, _DSN, _STATUS, _AGEN, _OTHER,
) = (
    _G[name] for name in (
        "prog", "pid", "sq", "cip", "cmech", "cuser", "fip", "fmech", "freason", "drest",
        "sgen", "qq", "sender", "size", "nrcpt", "rm", "qgen",
        "aq", "rcpt", "relay", "dsn", "status", "agen", "other",
    )
)  # fmt: skip
_TOO_LONG = f"account name longer than {MAX_ACCOUNT} characters"
_SKIP_START = ("connect from ", "message-id=")


def feed_block(parser: LogParser, text: str, count: int, out: list[Event]) -> int:
    """Parse the lines of ``text`` (numbered from ``count + 1``); return how many there were.

    Appends the events to ``out`` and updates ``parser.stats`` exactly as
    :meth:`LogParser.feed_lines` does for the same lines (see the module docstring).
    """
    stats = parser.stats
    ctx = parser._ctx
    postfix = parser._postfix
    bsd_get = parser._bsd_cache.get
    stamp = parser._stamp
    pending = ctx.pending
    pending_get = pending.get
    authed = ctx.authed
    failed = ctx.failed
    max_sessions = ctx.max_sessions
    max_pending = ctx.max_pending
    max_rcpts = ctx.max_rcpts
    ip_get = _IPS.get
    services_get = _SERVICES.get
    append = out.append
    skips = _SKIPS
    status_k, cuser_k, nrcpt_k, rm_k, other_k = _STATUS, _CUSER, _NRCPT, _RM, _OTHER

    start = len(out)  # events from here on are counted here (the line path counts its own)
    used = problems = n_other = 0
    other: list[str] = []  # consecutive lines for the line path
    other_no = 0  # number of the line before other[0]
    at, at_no = 0, count  # a line start and the number of lines before it (lazy numbering)
    when = ctx.now  # the time of the last line with a stamp (ctx.now is set from it)
    it = _FINDITER(text)
    while True:
        try:
            for m in it:
                k: int = m.lastindex  # type: ignore[assignment]  # a group always matches
                if other and k != other_k:  # the line path takes the batch before this line
                    n_other += len(other)
                    parser._count_events(out, start)
                    ctx.now = when
                    parser.feed_lines(other, other_no, out, has_cr=False)
                    when = ctx.now
                    other.clear()
                    start = len(out)
                if k == status_k:  # a delivery: postfix._agent, inlined
                    bsd, host, qid, rcpt, relay, dsn, status = m.group(
                        1, 3, _AQ, _RCPT, _RELAY, _DSN, _STATUS
                    )
                    when = bsd_get(bsd) or stamp(bsd, m[2], None, out)  # unset if it raises
                    append(new_delivery(when, qid, rcpt, status, relay, dsn, host))
                    key = (host, qid)
                    msg = pending_get(key)
                    if msg is not None:
                        rcpts = msg.recipients
                        if rcpt not in rcpts and len(rcpts) < max_rcpts:
                            rcpts.append(rcpt)
                        nrcpt = msg.recipient_count
                        if nrcpt is not None and len(rcpts) >= nrcpt:
                            del pending[key]
                            append(msg.event())
                    used += 1
                elif k in skips:
                    continue
                elif k == cuser_k:  # smtpd client= with a SASL login: postfix._smtpd
                    bsd, host, prog, pid, qid, ip_text, mechanism, account = m.group(
                        1, 3, _PROG, _PID, _SQ, _CIP, _CMECH, _CUSER
                    )
                    when = bsd_get(bsd) or stamp(bsd, m[2], None, out)  # unset if it raises
                    ip = ip_get(ip_text)
                    if ip is None:
                        ip = ip_or_bad(ip_text)
                    if len(account) > MAX_ACCOUNT:
                        raise InvalidEventError(_TOO_LONG)
                    key = (host, pid)
                    if authed.get(key) != account:
                        authed[key] = account
                        if len(authed) > max_sessions:
                            del authed[next(iter(authed))]
                        service = services_get(prog) or _service(prog)
                        append(new_auth(when, ip, True, account, 1, mechanism, service, host, qid))
                    key = (host, qid)
                    if key in pending or len(pending) >= max_pending:
                        ctx.add_pending(key, Pending(when, ip, account, host, qid), out)
                    else:
                        pending[key] = Pending(when, ip, account, host, qid)
                    used += 1
                elif k == nrcpt_k:  # qmgr from=: postfix._qmgr
                    bsd, host, qid = m.group(1, 3, _QQ)
                    when = bsd_get(bsd) or stamp(bsd, m[2], None, out)  # unset if it raises
                    key = (host, qid)
                    msg = pending_get(key)
                    if msg is not None:
                        if msg.recipient_count is None:
                            msg.sender, size, announced = m.group(_SENDER, _SIZE, _NRCPT)
                            msg.size = int(size)
                            want = msg.recipient_count = int(announced)
                            if len(msg.recipients) >= want:
                                del pending[key]
                                append(msg.event())
                        used += 1
                elif k == rm_k:  # qmgr removed
                    bsd, host, qid = m.group(1, 3, _QQ)
                    when = bsd_get(bsd) or stamp(bsd, m[2], None, out)  # unset if it raises
                    msg = pending.pop((host, qid), None)
                    if msg is not None:
                        append(msg.event())
                        used += 1
                elif k == _DTOTAL:  # smtpd disconnect with auth=S/T: postfix._disconnect
                    bsd, host, prog, pid, ok, total = m.group(1, 3, _PROG, _PID, _DOK, _DTOTAL)
                    when = bsd_get(bsd) or stamp(bsd, m[2], None, out)  # unset if it raises
                    key = (host, pid)
                    authed.pop(key, None)
                    n = int(total) - int(ok) - failed.pop(key, 0)
                    if n > 0:
                        ip = ip_or_bad(m[_DSIP])
                        append(new_auth(when, ip, False, None, n, None, _service(prog), host))
                    used += 1
                elif k == _DALL:  # smtpd disconnect with auth=S: every AUTH succeeded
                    bsd, host, pid = m.group(1, 3, _PID)
                    when = bsd_get(bsd) or stamp(bsd, m[2], None, out)  # unset if it raises
                    key = (host, pid)
                    authed.pop(key, None)
                    failed.pop(key, 0)
                elif k == _DREST:  # any other smtpd disconnect: postfix._disconnect
                    bsd, host, prog, pid, rest = m.group(1, 3, _PROG, _PID, _DREST)
                    when = bsd_get(bsd) or stamp(bsd, m[2], None, out)  # unset if it raises
                    key = (host, pid)
                    authed.pop(key, None)
                    logged = failed.pop(key, 0)
                    shown = auth_failures(rest)
                    if shown is not None:
                        n = shown - logged
                        if n > 0:
                            ip = ip_or_bad(m[_DIP])
                            append(new_auth(when, ip, False, None, n, None, _service(prog), host))
                        used += 1
                elif k == other_k:
                    if not other:
                        s = m.start()
                        at_no += text.count("\n", at, s)
                        at = s
                        other_no = at_no
                    other.append(m[k])
                elif k == _FREASON:  # SASL authentication failed: postfix._smtpd
                    bsd, host, prog, pid, reason = m.group(1, 3, _PROG, _PID, _FREASON)
                    when = bsd_get(bsd) or stamp(bsd, m[2], None, out)  # unset if it raises
                    key = (host, pid)
                    failed[key] = failed.get(key, 0) + 1
                    if len(failed) > max_sessions:
                        del failed[next(iter(failed))]
                    if not reason.startswith(_NOT_ATTACKS):
                        ip = ip_or_bad(m[_FIP])
                        account = None
                        j = reason.rfind(", sasl_username=")
                        if j >= 0:
                            account = reason[j + 16 :] or None
                            if account == "(unavailable)":
                                account = None
                        mechanism = m[_FMECH].upper()
                        service = _service(prog)
                        append(new_auth(when, ip, False, account, 1, mechanism, service, host))
                    used += 1
                else:  # any other Postfix line: the handler the line path would call
                    if k == _SGEN:
                        handler = postfix._smtpd
                    elif k == _QGEN:
                        handler = postfix._qmgr
                    else:
                        handler = postfix._agent
                    msg_text = m[k]
                    if (
                        msg_text.startswith(_SKIP_START)
                        or "]: connect from " in msg_text
                        or ": message-id=" in msg_text
                    ):
                        continue
                    bsd = m[1]
                    when = bsd_get(bsd) or stamp(bsd, m[2], None, out)  # unset if it raises
                    if handler(when, m[_HOST], m[_PROG], m[_PID], msg_text, out):
                        used += 1
            break
        except (LineError, InvalidEventError) as exc:
            s = m.start()
            at_no += text.count("\n", at, s)
            at = s
            problems += 1
            parser._line_problem(exc, at_no + 1, m[0][:-1])
    ctx.now = when
    if other:
        n_other += len(other)
        parser._count_events(out, start)
        parser.feed_lines(other, other_no, out, has_cr=False)
        start = len(out)
    lines = text.count("\n")
    fast = lines - n_other
    stats.lines += fast
    stats.used += used
    stats.irrelevant += fast - used - problems
    parser._count_events(out, start)
    return lines
