r"""The whole-block fast path for Postfix logs (private).

:func:`feed_block` parses a decoded block of lines with one compiled pattern run by
``re.finditer``: the pattern recognizes the syslog envelope of Postfix lines and, for the
frequent line shapes, the fields the handlers would cut out with ``str.find`` (a delivery's
recipient, relay, dsn and status; qmgr's sender, size and recipient count; smtpd's
``client=`` login, SASL failures and ``disconnect`` statistics; ``removed``), all in C.
Python then does only what needs state: the joins, the sessions and the events. It is
the same machine as the line path (:meth:`LogParser.feed_lines`), not a second parser:
every line is handled in exactly one of four ways, and the results (events, their order,
statistics, line numbers of problems) are those of the line path:

* a line the skip rule drops (its message starts with ``connect from `` or
  ``QUEUEID: message-id=``, see ``_core._SKIP_LINE``): its own alternatives of the
  pattern, nothing done in Python but ``continue``;
* a *frequent shape* (listed above): handled inline here, with the same steps in the same
  order as the handler in ``_postfix.py`` would take (so a bad address raises the same
  error after the same state changes);
* any other Postfix line (``postfix*/daemon[pid]: message``): the envelope comes from the
  pattern, the message goes to the very handler the line path would call;
* a line of another program or shape (Dovecot, Exim, TAI64N stamps, a line without
  envelope): it goes to :meth:`LogParser.feed_lines` itself, consecutive ones as one batch.

Fields are stricter than the handlers' (ASCII queue ids, host and program names, at most
18 digits in a size): a line outside them takes the generic route, which is the handler
itself. The classes that exclude a few characters (``[^,\n]``) are written as ranges
(:func:`_but`), which ``sre`` tests about three times faster.

Every line is exactly one match (the last alternative takes any line), so lines are
counted as matches, and line numbers only when a problem is reported (from the previous
reported place, so a block is scanned once at most). The caller guarantees what
:meth:`LogParser.feed_lines` needs (valid UTF-8, no line of ``max_line`` bytes or more)
and also that the block holds no carriage return and ends with a newline; strict mode
uses the line path.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, cast

from authabuse.errors import InvalidEventError
from authabuse.events import AuthAttempt, Delivery, Event, Submission

from ._common import LineError, Pending, ip_or_bad
from ._fast import MAX_ACCOUNT, AuthTwin, DeliveryTwin, new_auth
from ._postfix import _NOT_ATTACKS, auth_failures

if TYPE_CHECKING:
    from ._core import LogParser

__all__ = ["feed_block"]

_N = r"[0-9A-Za-z._-]"  # host, program and daemon names (stricter than the envelope's)
_ID = r"[0-9A-Za-z]++"  # queue ids (the same class as the skip rule's, see _core._SKIP_LINE)
_IP = r"[0-9A-Fa-f:.]++"  # what may stand between the brackets of a client address


def _but(excluded: str) -> str:
    r"""Write the class of every character except ``excluded`` as ranges.

    ``sre`` tests a negated class such as ``[^,\n]`` literal by literal (about 3.5 ns a
    character); the same set as ranges compiles to one bitmap test (about 1 ns).

    >>> _but(",\n") == "[\\x00-\\x09\\x0b-\\x2b\\x2d-\\U0010ffff]"
    True
    """
    parts = []
    lo = 0
    for code in sorted(map(ord, excluded)):  # ASCII characters
        if code > lo:
            parts.append(f"\\x{lo:02x}-\\x{code - 1:02x}" if code - 1 > lo else f"\\x{lo:02x}")
        lo = code + 1
    parts.append(f"\\x{lo:02x}-\\U0010ffff")
    return "[" + "".join(parts) + "]"


_NO_COMMA = _but(",\n")  # [^,\n]
_NO_GT = _but(">\n")  # [^>\n]
_NO_SPACE = _but(" \n")  # [^ \n]

# _core._STAMP's BSD form: "Nov 14 22:13:20" (see _STAMP)
_BSD_STAMP = re.compile(r"[A-Z][a-z]{2} [ 0-9]?[0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}").fullmatch
# _core._STAMP's BSD and RFC 3339 forms as one group (TAI64N: the line path). A BSD stamp is
# any 15 characters from a capital letter here (a class per character costs 0.03 us a
# line); the first time a text is seen, _BSD_STAMP checks it, and a line whose stamp is
# not one goes to the line path (_NotFastError).
_STAMP = (
    r"([A-Z].{14}"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?) ++"
)
# postfix, service and instance names, then the daemon; svc: the last directory (service).
# The program name is the text between the host and the pid (no group: it is rarely used).
_PROGRAM = (
    rf"(?:postfix{_N}*+/(?:(?P<svc>{_N}++)/)*+"
    rf"(?:(?P<dsm>smtpd)|(?P<dqm>qmgr)|{_N}++))"
)

_PATTERN = (
    rf"(?:{_STAMP}({_N}++) {_PROGRAM}\[(?P<pid>[0-9]++)\]: (?:"
    rf"(?P<qid>{_ID}): (?:"
    r"message-id=.*+(?P<skip1>)"  # the skip rule, second half
    r"|(?(dsm)"  # smtpd: client= with a SASL login
    rf"client={_N}*+\[(?P<cip>{_IP})\](?::[0-9]++)?, "
    rf"sasl_method=(?P<cmech>[0-9A-Za-z_-]*+), sasl_username=(?P<cuser>{_NO_COMMA}++)"
    r"|(?(dqm)(?:"  # qmgr: from= (the first one counts), removed
    rf"from=<(?P<sender>{_NO_GT}*+)>, size=(?P<size>[0-9]{{1,18}}+), "
    r"nrcpt=(?P<nrcpt>[0-9]{1,18}+)(?![0-9]).*+"
    r"|removed(?P<rm>))"
    rf"|to=<(?P<rcpt>{_NO_GT}*+)>, relay=(?P<relay>{_NO_COMMA}*+), "  # delivery agents
    rf"delay={_NO_COMMA}*+, delays={_NO_COMMA}*+, dsn=(?P<dsn>{_NO_COMMA}*+), "
    rf"status=(?P<status>{_NO_SPACE}*+).*+)))"
    r"|connect from .*+(?P<skip2>)"  # the skip rule, first half
    r"|(?(dsm)(?:"  # smtpd without a queue id
    rf"warning: {_N}*+\[(?P<fip>{_IP})\](?::[0-9]++)?: "
    rf"SASL (?P<fmech>{_NO_SPACE}++) authentication failed:? ?(?P<freason>.*+)"
    # the common disconnect: counters before "auth=" (none is auth=), then auth=S/T or auth=S
    rf"|disconnect from {_N}*+\[(?P<dsip>{_IP})\](?: (?!auth=)[a-z]++=[0-9/]++)*+ auth="
    r"(?:(?P<dok>[0-9]{1,9}+)/(?P<dtotal>[0-9]{1,9}+)|[0-9]{1,9}+(?P<dall>))(?=[ \n]).*+"
    rf"|disconnect from {_N}*+\[(?P<dip>{_IP})\](?P<drest>.*+))"
    r"|(?!))"
    r"|(?P<gen>.*+))"  # any other Postfix line: its handler
    r"|(?P<other>.*+))\n"  # anything else: the line path
)
_FINDITER = re.compile(_PATTERN).finditer
_G = re.compile(_PATTERN).groupindex
(
    _SVC, _PID, _QID, _SKIP1, _CIP, _CMECH, _CUSER, _SENDER, _SIZE, _NRCPT, _RM,
    _RCPT, _RELAY, _DSN, _STATUS, _SKIP2, _FIP, _FMECH, _FREASON, _DSIP, _DOK, _DTOTAL,
    _DALL, _DIP, _DREST, _GEN, _OTHER,
) = (
    _G[name] for name in (
        "svc", "pid", "qid", "skip1", "cip", "cmech", "cuser", "sender", "size",
        "nrcpt", "rm", "rcpt", "relay", "dsn", "status", "skip2", "fip", "fmech", "freason",
        "dsip", "dok", "dtotal", "dall", "dip", "drest", "gen", "other",
    )
)  # fmt: skip
_TOO_LONG = f"account name longer than {MAX_ACCOUNT} characters"
_AUTH, _SUBMISSION, _DELIVERY = AuthAttempt.type, Submission.type, Delivery.type


class _NotFastError(Exception):
    """The line in hand goes to the line path (its stamp is not one, see _STAMP)."""


def _read_stamp(parser: LogParser, text: str, out: list[Event]) -> datetime:
    """Read a stamp the clock's cache does not have (a BSD one is checked first)."""
    if text[0] <= "9":
        return parser._iso_stamp(text, out)
    if _BSD_STAMP(text) is None:
        raise _NotFastError
    return parser._bsd_stamp(text, out)


def feed_block(parser: LogParser, text: str, count: int, out: list[Event]) -> int:
    """Parse the lines of ``text`` (numbered from ``count + 1``); return how many there were.

    Appends the events to ``out`` and updates ``parser.stats`` exactly as
    :meth:`LogParser.feed_lines` does for the same lines (see the module docstring).
    """
    stats = parser.stats
    ctx = parser._ctx
    route = parser._postfix.route
    bsd_get = parser._bsd_cache.get
    stamp = _read_stamp
    pending = ctx.pending
    pending_get = pending.get
    authed = ctx.authed
    failed = ctx.failed
    max_sessions = ctx.max_sessions
    max_pending = ctx.max_pending
    max_rcpts = ctx.max_rcpts
    append = out.append
    new_object = object.__new__
    delivery_twin = DeliveryTwin
    auth_twin = AuthTwin
    status_k, skip1_k, skip2_k, cuser_k = _STATUS, _SKIP1, _SKIP2, _CUSER
    nrcpt_k, rm_k, dall_k, dtotal_k, other_k = _NRCPT, _RM, _DALL, _DTOTAL, _OTHER

    start = len(out)
    fed = 0  # events appended by the line path (which counts its own)
    n_auth = n_delivery = 0  # events appended here, by type (the rest are submissions)
    lines = used = problems = n_other = 0
    other: list[str] = []  # consecutive lines for the line path
    other_no = 0  # number of the line before other[0]
    at, at_no = 0, count  # a line start and the number of lines before it (lazy numbering)
    # the time of the last line with a stamp (ctx.now is set from it); None only before
    # the first stamp, and every branch that reads it reads its own stamp first (last)
    when = cast(datetime, ctx.now)
    last = None  # the stamp text ``when`` was read from (consecutive lines repeat it)
    it = _FINDITER(text)
    while True:
        try:
            for m in it:
                lines += 1  # each line is one match (cheaper than counting newlines)
                k: int = m.lastindex  # type: ignore[assignment]  # a group always matches
                if other and k != other_k:  # the line path takes the batch before this line
                    n_other += len(other)
                    ctx.now = when
                    before = len(out)
                    parser.feed_lines(other, other_no, out, has_cr=False)
                    fed += len(out) - before
                    when = ctx.now
                    last = None
                    other.clear()
                if k == status_k:  # a delivery: postfix._agent, inlined
                    st, host, qid, rcpt, relay, dsn, status = m.group(
                        1, 2, _QID, _RCPT, _RELAY, _DSN, _STATUS
                    )
                    if st != last:
                        when = bsd_get(st) or stamp(parser, st, out)  # unchanged if it raises
                        last = st
                    # _fast.new_delivery, inlined (see _fast.py: same slots, then the class)
                    delivery = new_object(delivery_twin)
                    delivery.time = when
                    delivery.queue_id = qid
                    delivery.recipient = rcpt
                    delivery.status = status
                    delivery.relay = relay
                    delivery.dsn = dsn
                    delivery.server = host
                    delivery.__class__ = Delivery  # type: ignore[assignment]  # same layout
                    append(delivery)  # type: ignore[arg-type]  # a Delivery now
                    n_delivery += 1
                    key = (host, qid)
                    msg = pending_get(key)
                    if msg is not None:
                        rcpts = msg.recipients
                        if rcpt not in rcpts and len(rcpts) < max_rcpts:
                            rcpts.append(rcpt)
                        nrcpt = msg.recipient_count
                        if nrcpt is not None and len(rcpts) >= nrcpt:
                            del pending[key]
                            # Pending.event, inlined (the count is known here)
                            msg.recipients = tuple(rcpts)  # type: ignore[assignment]  # final
                            msg.__class__ = Submission  # type: ignore[assignment]  # same layout
                            append(msg)  # type: ignore[arg-type]  # a Submission now
                    used += 1
                elif k == skip1_k or k == skip2_k:  # noqa: PLR1714, SIM109  # no tuple built
                    continue
                elif k == cuser_k:  # smtpd client= with a SASL login: postfix._smtpd
                    st, host, svc, pid, qid, ip_text, mechanism, account = m.group(
                        1, 2, _SVC, _PID, _QID, _CIP, _CMECH, _CUSER
                    )
                    if st != last:
                        when = bsd_get(st) or stamp(parser, st, out)  # unchanged if it raises
                        last = st
                    ip = ip_or_bad(ip_text)
                    if len(account) > MAX_ACCOUNT:
                        raise InvalidEventError(_TOO_LONG)
                    key = (host, pid)
                    if authed.get(key) != account:
                        authed[key] = account
                        if len(authed) > max_sessions:
                            del authed[next(iter(authed))]
                        login = new_object(auth_twin)  # _fast.new_auth, inlined
                        login.time = when
                        login.ip = ip
                        login.succeeded = True
                        login.account = account
                        login.attempts = 1
                        login.mechanism = mechanism
                        login.service = svc or "smtp"
                        login.server = host
                        login.session = qid
                        login.__class__ = AuthAttempt  # type: ignore[assignment]  # same layout
                        append(login)  # type: ignore[arg-type]  # an AuthAttempt now
                        n_auth += 1
                    msg = new_object(Pending)  # Pending(...), inlined (account checked above)
                    msg.time = when
                    msg.ip = ip
                    msg.account = account
                    msg.server = host
                    msg.queue_id = qid
                    msg.sender = None
                    msg.recipient_count = None
                    msg.recipients = []
                    msg.size = None
                    key = (host, qid)
                    if key in pending or len(pending) >= max_pending:
                        ctx.add_pending(key, msg, out)
                    else:
                        pending[key] = msg
                    used += 1
                elif k == nrcpt_k:  # qmgr from=: postfix._qmgr
                    st, host, qid = m.group(1, 2, _QID)
                    if st != last:
                        when = bsd_get(st) or stamp(parser, st, out)  # unchanged if it raises
                        last = st
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
                    st, host, qid = m.group(1, 2, _QID)
                    if st != last:
                        when = bsd_get(st) or stamp(parser, st, out)  # unchanged if it raises
                        last = st
                    msg = pending.pop((host, qid), None)
                    if msg is not None:
                        append(msg.event())
                        used += 1
                elif k == dall_k:  # smtpd disconnect with auth=S: every AUTH succeeded
                    st, host, pid = m.group(1, 2, _PID)
                    if st != last:
                        when = bsd_get(st) or stamp(parser, st, out)  # unchanged if it raises
                        last = st
                    key = (host, pid)
                    authed.pop(key, None)
                    failed.pop(key, 0)
                elif k == dtotal_k:  # smtpd disconnect with auth=S/T: postfix._disconnect
                    st, host, svc, pid, ok, total = m.group(1, 2, _SVC, _PID, _DOK, _DTOTAL)
                    if st != last:
                        when = bsd_get(st) or stamp(parser, st, out)  # unchanged if it raises
                        last = st
                    key = (host, pid)
                    authed.pop(key, None)
                    n = int(total) - int(ok) - failed.pop(key, 0)
                    if n > 0:
                        ip = ip_or_bad(m[_DSIP])
                        append(new_auth(when, ip, False, None, n, None, svc or "smtp", host))
                        n_auth += 1
                    used += 1
                elif k == _FREASON:  # SASL authentication failed: postfix._smtpd
                    st, host, svc, pid, reason = m.group(1, 2, _SVC, _PID, _FREASON)
                    if st != last:
                        when = bsd_get(st) or stamp(parser, st, out)  # unchanged if it raises
                        last = st
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
                        service = svc or "smtp"
                        append(new_auth(when, ip, False, account, 1, mechanism, service, host))
                        n_auth += 1
                    used += 1
                elif k == other_k:
                    if not other:
                        s = m.start()
                        at_no += text.count("\n", at, s)
                        at = s
                        other_no = at_no
                    other.append(m[k])
                elif k == _DREST:  # any other smtpd disconnect: postfix._disconnect
                    st, host, svc, pid, rest = m.group(1, 2, _SVC, _PID, _DREST)
                    if st != last:
                        when = bsd_get(st) or stamp(parser, st, out)  # unchanged if it raises
                        last = st
                    key = (host, pid)
                    authed.pop(key, None)
                    logged = failed.pop(key, 0)
                    shown = auth_failures(rest)
                    if shown is not None:
                        n = shown - logged
                        if n > 0:
                            ip = ip_or_bad(m[_DIP])
                            append(new_auth(when, ip, False, None, n, None, svc or "smtp", host))
                            n_auth += 1
                        used += 1
                else:  # any other Postfix line (k == _GEN): the handler the line path would call
                    st, host, pid, msg_text = m.group(1, 2, _PID, _GEN)
                    prog = text[m.end(2) + 1 : m.start(_PID) - 1]
                    if st != last:
                        when = bsd_get(st) or stamp(parser, st, out)  # unchanged if it raises
                        last = st
                    before = len(out)
                    try:
                        if route(prog)(when, host, prog, pid, msg_text, out):
                            used += 1
                    finally:  # count what the handler appended, even if it then raised
                        for i in range(before, len(out)):
                            kind = out[i].type
                            if kind == _AUTH:
                                n_auth += 1
                            elif kind == _DELIVERY:
                                n_delivery += 1
            break
        except _NotFastError:  # a stamp the line path does not read as one: let it say what
            if not other:
                s = m.start()
                at_no += text.count("\n", at, s)
                at = s
                other_no = at_no
            other.append(m[0][:-1])
        except (LineError, InvalidEventError) as exc:
            s = m.start()
            at_no += text.count("\n", at, s)
            at = s
            problems += 1
            parser._line_problem(exc, at_no + 1, m[0][:-1])
    ctx.now = when
    if other:
        n_other += len(other)
        before = len(out)
        parser.feed_lines(other, other_no, out, has_cr=False)
        fed += len(out) - before
    fast = lines - n_other
    stats.lines += fast
    stats.used += used
    stats.irrelevant += fast - used - problems
    events = stats.events
    if n_auth:
        events[_AUTH] += n_auth
    if n_delivery:
        events[_DELIVERY] += n_delivery
    n_submission = len(out) - start - fed - n_auth - n_delivery
    if n_submission:
        events[_SUBMISSION] += n_submission
    return lines
