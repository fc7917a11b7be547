"""Render simulated sessions as a Postfix log, in time order.

Each session becomes the lines a Postfix submission server (``smtpd`` behind the
``submission``/``smtps`` services, then ``cleanup``, ``qmgr``, ``smtp`` and ``bounce``)
writes for it. A session's lines reach into the future (deliveries, retries of deferred
mail, bounces), so lines wait in a heap and are written once no later session can come
before them: the caller hands sessions over in start order and every line of a session
is at or after its start.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO

from authabuse.events import AuthAttempt, Delivery, Event, Submission
from authabuse.simulate._model import Mail, Session
from authabuse.simulate._writer import MX, LogWriter

_HOSTS = ("msa1", "msa2")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class PostfixWriter(LogWriter):
    """Turn sessions into Postfix log lines (see the module docstring).

    ``stamp`` is ``"rfc3339"`` (rsyslog's high-precision format, microseconds and UTC
    offset: no year or zone needed to read it back) or ``"bsd"`` (classic syslog
    ``Mar  2 09:00:01``: readers need the year and the zone, recorded in the truth).
    ``msa1`` logs failed AUTH with the user name (Postfix >= 3.9 with Dovecot SASL),
    ``msa2`` without (older Postfix with Cyrus SASL), as a mixed fleet would.
    """

    def __init__(
        self,
        out: TextIO,
        *,
        seed: int,
        tz_offset: float,
        stamp: str = "rfc3339",
        isp_domain: str,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        super().__init__(out, tz_offset=tz_offset, isp_domain=isp_domain, on_event=on_event)
        self.rng = random.Random(f"authabuse-simulate:{seed}:render")
        self.stamp = stamp
        self.precise = stamp != "bsd"
        self._qcount = 0
        self._sec = -1
        self._sec_text = ""
        self._offset_text = self._format_offset(tz_offset)
        rng = self.rng
        # Per host: free smtpd pids (reused by later sessions, as Postfix does), busy
        # pids with their end time, and the long-running daemons' pids.
        self._free: dict[str, list[int]] = {h: [] for h in _HOSTS}
        self._busy: dict[str, list[tuple[float, int]]] = {h: [] for h in _HOSTS}
        self._next_pid = {h: rng.randint(10000, 30000) for h in _HOSTS}
        self._qmgr = {h: rng.randint(900, 2000) for h in _HOSTS}
        self._cleanup = {h: [rng.randint(2000, 9000) for _ in range(4)] for h in _HOSTS}
        self._smtp = {h: [rng.randint(2000, 9000) for _ in range(12)] for h in _HOSTS}
        self._bounce = {h: rng.randint(2000, 9000) for h in _HOSTS}

    @staticmethod
    def _format_offset(offset: float) -> str:
        minutes = round(offset / 60)
        sign = "+" if minutes >= 0 else "-"
        return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    # -- output ---------------------------------------------------------------------

    def _stamp(self, t: float) -> str:
        sec = int(t // 1)
        if sec != self._sec:
            self._sec = sec
            local = datetime.fromtimestamp(sec, UTC) + timedelta(seconds=self.tz_offset)
            if self.stamp == "bsd":
                self._sec_text = (
                    f"{_MONTHS[local.month - 1]} {local.day:2d} {local.hour:02d}:"
                    f"{local.minute:02d}:{local.second:02d}"
                )
            else:
                self._sec_text = local.strftime("%Y-%m-%dT%H:%M:%S")
        if self.stamp == "bsd":
            return self._sec_text
        usec = min(999999, int((t - sec) * 1e6))
        return f"{self._sec_text}.{usec:06d}{self._offset_text}"

    def _line(self, t: float, host: str, text: str) -> str:
        return f"{self._stamp(t)} {host} {text}\n"

    # -- ids ------------------------------------------------------------------------

    def _queue_id(self, t: float) -> str:
        # Postfix's short ids: microseconds in 5 hex digits, then the queue file's inode
        # number; a scrambled counter keeps them unique over the whole simulation.
        self._qcount += 1
        usec = int((t % 1) * 1e6) & 0xFFFFF
        inode = (self._qcount * 0x9E3779B1) % 0xFFFFFF
        return f"{usec:05X}{inode:06X}"

    def _pid(self, host: str, start: float, end: float) -> int:
        busy, free = self._busy[host], self._free[host]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free and self.rng.random() < 0.9:
            pid = heapq.heappop(free)
        else:
            self._next_pid[host] += self.rng.randint(1, 40)
            pid = self._next_pid[host]
        heapq.heappush(busy, (end + 1.0, pid))
        return pid

    # -- rendering ------------------------------------------------------------------

    def session(self, s: Session) -> None:
        """Render one session (sessions must come in start-time order)."""
        self._flush(s.start)
        rng, truth = self.rng, self.truth
        truth.sessions += 1
        host = _HOSTS[0] if rng.random() < 0.5 else _HOSTS[1]
        end = s.end()
        pid = self._pid(host, s.start, end)
        prog = f"postfix/{s.service}/smtpd[{pid}]: "
        client = f"{s.host}[{s.ip}]"
        self._push(s.start, host, f"{prog}connect from {client}")
        t = s.start + 0.3
        named = host == _HOSTS[0]
        for _ in range(s.failures):
            if named:
                reason = f"(reason unavailable), sasl_username={s.account}"
            else:
                reason = "UGFzc3dvcmQ6" if s.mechanism == "LOGIN" else "authentication failure"
            self._push(
                t,
                host,
                f"{prog}warning: {client}: SASL {s.mechanism} authentication failed: {reason}",
            )
            truth.auth_failures += 1
            truth.auth_failures_named += named
            if self.on_event is not None:
                self._emit(
                    AuthAttempt(
                        time=self._dt(t), ip=s.ip, succeeded=False,
                        account=s.account if named else None, mechanism=s.mechanism,
                        service="smtp", server=host,
                    )
                )  # fmt: skip
            t += 1.5
        starttls = "" if s.service == "smtps" else "ehlo=2 starttls=1 "
        ehlo_cmds = 1 if s.service == "smtps" else 3
        if not s.success:
            if s.lost:
                self._push(end, host, f"{prog}lost connection after AUTH from {client}")
                stats = f"ehlo=1 auth=0/{s.failures} commands=1/{1 + s.failures}"
            else:
                stats = f"ehlo=1 auth=0/{s.failures} quit=1 commands=2/{2 + s.failures}"
            self._push(end, host, f"{prog}disconnect from {client} {stats}")
            return
        rcpts = 0
        for mail in s.mails:
            rcpts += len(mail.recipients)
            self._mail(host, prog, client, s, mail)
        auth = "auth=1" if not s.failures else f"auth=1/{1 + s.failures}"
        n = len(s.mails)
        ok = ehlo_cmds + 1 + 3 * n + 1
        total = ok + s.failures
        cmds = f"commands={ok}" if not s.failures else f"commands={ok}/{total}"
        mails = f" mail={n} rcpt={rcpts} data={n}" if n else ""
        self._push(end, host, f"{prog}disconnect from {client} {starttls or 'ehlo=1 '}{auth}"
                   f"{mails} quit=1 {cmds}".replace("  ", " "))  # fmt: skip

    def _mail(self, host: str, prog: str, client: str, s: Session, mail: Mail) -> None:
        rng, truth = self.rng, self.truth
        t = mail.time
        qid = self._queue_id(t)
        sender = mail.sender or s.account
        self._push(
            t,
            host,
            f"{prog}{qid}: client={client}, sasl_method={s.mechanism}, sasl_username={s.account}",
        )
        truth.submissions += 1
        if mail.abusive:
            truth.abusive_submissions += 1
            truth.abusive_ids.setdefault(s.account, []).append(qid)
            truth.first_abusive_mail.setdefault(s.account, t)
        truth.messages[s.account] = truth.messages.get(s.account, 0) + 1
        if self.on_event is not None:
            self._emit(
                Submission(
                    time=self._dt(t), ip=s.ip, account=s.account, server=host, queue_id=qid,
                    sender=sender, recipient_count=len(mail.recipients),
                    recipients=mail.recipients, size=mail.size,
                )
            )  # fmt: skip
        tc = t + rng.uniform(0.02, 0.3)
        self._push(tc, host, f"postfix/cleanup[{rng.choice(self._cleanup[host])}]: {qid}: "
                   f"message-id=<{self._message_id(t, s, mail)}>")  # fmt: skip
        tq = tc + 0.05 + mail.size / 4e6
        qmgr = f"postfix/qmgr[{self._qmgr[host]}]: {qid}: "
        self._push(
            tq, host, f"{qmgr}from=<{sender}>, size={mail.size}, nrcpt={len(mail.recipients)}"
            " (queue active)"
        )  # fmt: skip
        last = tq
        bounced = False
        for rcpt in mail.recipients:
            done, b = self._deliver(host, qid, t, tq, rcpt, mail.abusive)
            last = max(last, done)
            bounced |= b
        if bounced and sender:
            last = self._notify(host, qid, last, sender)
        self._push(last + 0.001, host, f"{qmgr}removed")

    def _deliver(  # noqa: PLR0917  # private helper, called in one way
        self, host: str, qid: str, t0: float, tq: float, rcpt: str, abusive: bool
    ) -> tuple[float, bool]:
        """Log the delivery of one recipient; return (time of final outcome, bounced)."""
        rng = self.rng
        domain = rcpt.rpartition("@")[2]
        mx, mx_ip = MX.get(domain, (f"mx.{domain}", "203.0.113.25"))
        if domain == self.isp_domain:
            mx, mx_ip = (f"mbox.{domain}", "10.20.0.25")
        r = rng.random()
        if abusive:
            final = "sent" if r < 0.55 else "bounced" if r < 0.8 else "deferred"
        else:
            final = "sent" if r < 0.975 else "bounced" if r < 0.99 else "deferred"
        td = tq + rng.uniform(0.1, 2.5)
        smtp = f"postfix/smtp[{rng.choice(self._smtp[host])}]: {qid}: to=<{rcpt}>, "
        relay = f"relay={mx}[{mx_ip}]:25"
        if final == "deferred":
            self._delivery_line(host, smtp, relay, t0, tq, td, "4.7.0", "deferred",
                                f"host {mx}[{mx_ip}] said: 421 4.7.0 Try again later, "
                                "closing connection. (in reply to MAIL FROM command)", qid,
                                rcpt)  # fmt: skip
            td += rng.uniform(300, 2400)
            final = "sent" if rng.random() < 0.6 else "bounced"
        if final == "sent":
            self._delivery_line(host, smtp, relay, t0, tq, td, "2.0.0", "sent",
                                f"250 2.0.0 OK {int(td)} {rng.getrandbits(40):010x} - mta",
                                qid, rcpt)  # fmt: skip
            return td, False
        if abusive and rng.random() < 0.4:
            dsn, text = (
                "5.7.1",
                "550 5.7.1 Message rejected as spam (in reply to end of DATA command)",
            )
        else:
            dsn, text = "5.1.1", f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown " \
                "(in reply to RCPT TO command)"  # fmt: skip
        self._delivery_line(host, smtp, relay, t0, tq, td, dsn, "bounced",
                            f"host {mx}[{mx_ip}] said: {text}", qid, rcpt)  # fmt: skip
        return td, True

    def _delivery_line(  # noqa: PLR0917  # private helper: the fields of one log line
        self, host: str, smtp: str, relay: str, t0: float, tq: float, td: float, dsn: str,
        status: str, text: str, qid: str, rcpt: str,
    ) -> None:  # fmt: skip
        delay = td - t0
        a = tq - t0
        c = (td - tq) * 0.4
        d = (td - tq) * 0.6
        self._push(td, host, f"{smtp}{relay}, delay={delay:.2g}, delays={a:.2g}/0/{c:.2g}/"
                   f"{d:.2g}, dsn={dsn}, status={status} ({text})")  # fmt: skip
        self.truth.deliveries += 1
        if self.on_event is not None:
            self._emit(
                Delivery(time=self._dt(td), queue_id=qid, recipient=rcpt, status=status,
                         relay=relay[6:], dsn=dsn, server=host)
            )  # fmt: skip

    def _notify(self, host: str, qid: str, t: float, sender: str) -> float:
        """Log the bounce message Postfix sends back to the sender; return its time."""
        rng = self.rng
        t1 = t + rng.uniform(0.01, 0.2)
        nid = self._queue_id(t1)
        self._push(t1, host, f"postfix/bounce[{self._bounce[host]}]: {qid}: sender non-delivery "
                   f"notification: {nid}")  # fmt: skip
        self._push(t1 + 0.001, host, f"postfix/cleanup[{rng.choice(self._cleanup[host])}]: "
                   f"{nid}: message-id=<{time.strftime('%Y%m%d%H%M%S', time.gmtime(t1))}."
                   f"{rng.getrandbits(32):08X}@{host}.{self.isp_domain}>")  # fmt: skip
        qmgr = f"postfix/qmgr[{self._qmgr[host]}]: {nid}: "
        self._push(t1 + 0.002, host, f"{qmgr}from=<>, size={rng.randint(3000, 9000)}, nrcpt=1 "
                   "(queue active)")  # fmt: skip
        t2 = t1 + rng.uniform(0.05, 0.5)
        smtp = f"postfix/smtp[{rng.choice(self._smtp[host])}]: {nid}: to=<{sender}>, "
        self._delivery_line(host, smtp, f"relay=mbox.{self.isp_domain}[10.20.0.25]:25", t1,
                            t1 + 0.002, t2, "2.0.0", "sent", "250 2.0.0 Ok: queued", nid,
                            sender)  # fmt: skip
        self._push(t2 + 0.001, host, f"{qmgr}removed")
        self.truth.notifications += 1
        return t1
