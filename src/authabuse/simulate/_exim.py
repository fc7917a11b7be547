"""Render simulated sessions as an Exim 4 main log (``mainlog``), in time order.

The simulated submission server is one Exim 4 host that authenticates through Dovecot
(authenticators ``dovecot_plain`` and ``dovecot_login``, ``server_set_id`` the user
name), sends everything through TLS and runs with

    log_selector = +incoming_port +pid +received_recipients

on top of Exim's default selectors (``tls_cipher``, ``tls_certificate_verified``,
``msg_id``, ``smtp_confirmation``, ``lost_incoming_connection``, ...). What it writes,
in the shapes real Exim writes them (``../shared/corpus/FORMATS.md`` section 3):

* each failed AUTH: ``dovecot_login authenticator failed for (helo) [ip]:port: 535
  Incorrect authentication data (set_id=user)``;
* each accepted message: ``<msgid> <= sender H=name (helo) [ip]:port P=esmtpsa X=...
  CV=no A=dovecot_plain:user S=size id=message-id for rcpt ...``;
* its delivery by a child process: ``=>`` (first address of a connection), ``->``
  (further addresses delivered over the same connection), ``**`` (bounced), ``==``
  (deferred, delivered or bounced by a later queue run), with ``R=``, ``T=``, ``H=``,
  ``X=``, ``CV=`` and ``C=``; a bounce message (``<= <> R=<msgid> U=Debian-exim P=local``)
  with its own delivery; ``Completed`` once every address is done;
* a client that vanished after a failed AUTH: ``unexpected disconnection while reading
  SMTP command from ... D=2s``.

Exim logs no connection or login of a session that sends nothing (``smtp_connection``
and ``smtp_no_mail`` are off by default), so neither does the simulation. Stamps are
Exim's default, local time to the second with no zone (``2026-03-02 09:00:01``): the
zone is in ``truth.json``. Message ids are the classic ``1wHn5c-0004Zq-Ab`` form:
base 62 of the second, the receiving process's pid and the 500-microsecond tick.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO

from authabuse.events import AuthAttempt, Delivery, Event, Submission
from authabuse.simulate._model import Mail, Session
from authabuse.simulate._writer import MX, LogWriter

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PID_MAX = 4194304  # Linux's pid_max on 64-bit systems
_TLS_IN = (
    "TLS1.3:TLS_AES_256_GCM_SHA384:256",
    "TLS1.3:TLS_AES_256_GCM_SHA384:256",
    "TLS1.3:TLS_AES_128_GCM_SHA256:128",
    "TLS1.3:TLS_CHACHA20_POLY1305_SHA256:256",
    "TLS1.2:ECDHE-RSA-AES256-GCM-SHA384:256",
)
_TLS_OUT = "TLS1.3:TLS_AES_256_GCM_SHA384:256"
_MUA_HELOS = ("smtpclient.apple", "localhost", "[127.0.0.1]")
_BOT_HELOS = ("User", "localhost", "ylmf-pc", "USER-PC", "WIN-{}", "{}", "[{ip}]")


def base62(value: int, width: int) -> str:
    """Exim's base 62 digits of ``value``, ``width`` of them (most significant first).

    >>> base62(0, 2), base62(61, 2), base62(62, 2)
    ('00', '0z', '10')
    """
    out = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        out.append(_B62[digit])
    return "".join(reversed(out))


class EximWriter(LogWriter):
    """Turn sessions into Exim main-log lines (see the module docstring)."""

    precise = False

    def __init__(
        self,
        out: TextIO,
        *,
        seed: int,
        tz_offset: float,
        isp_domain: str,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        super().__init__(out, tz_offset=tz_offset, isp_domain=isp_domain, on_event=on_event)
        self.rng = random.Random(f"authabuse-simulate:{seed}:render-exim")
        self.hostname = f"msa1.{isp_domain}"
        self._pid = self.rng.randint(20000, 400000)
        self._sec = -1
        self._sec_text = ""
        self._mbox = f"H=mbox.{isp_domain} [10.20.0.25]"

    # -- output ---------------------------------------------------------------------

    def _line(self, t: float, host: str, text: str) -> str:
        sec = int(t // 1)
        if sec != self._sec:
            self._sec = sec
            local = datetime.fromtimestamp(sec, UTC) + timedelta(seconds=self.tz_offset)
            self._sec_text = local.strftime("%Y-%m-%d %H:%M:%S")
        return f"{self._sec_text} {text}\n"

    # -- ids ------------------------------------------------------------------------

    def _fork(self) -> int:
        """Return the pid of a new process (Linux hands them out in increasing order)."""
        self._pid += self.rng.randint(1, 6)
        if self._pid >= _PID_MAX:
            self._pid = 300 + self._pid % _PID_MAX
        return self._pid

    @staticmethod
    def _tick(t: float) -> int:
        """Exim's message-id clock: 500-microsecond ticks."""
        return int(t * 2000)

    @staticmethod
    def _id(tick: int, pid: int) -> str:
        sec, frac = divmod(tick, 2000)
        return f"{base62(sec, 6)}-{base62(pid, 6)}-{base62(frac, 2)}"

    def _helo(self, s: Session) -> str:
        """Return what the client said in EHLO: a mail program's habit, or a bot's pick."""
        if s.host.startswith("mail."):  # a bulk sender's own mail server
            return s.host
        if s.abusive or not s.success:
            return self._bot_helo(s)
        h = zlib.crc32(s.account.encode("utf-8", "surrogatepass"))
        kind = h % 8
        if kind < 3:  # Thunderbird: the computer's own address
            return f"[192.168.{(h >> 4) % 3}.{2 + (h >> 8) % 200}]"
        if kind < 6:  # Outlook: the computer's name
            return "DESKTOP-" + base62(h >> 3, 7).upper()
        return _MUA_HELOS[(h >> 5) % len(_MUA_HELOS)]

    def _bot_helo(self, s: Session) -> str:
        rng = self.rng
        pick = rng.choice(_BOT_HELOS)
        if pick == "[{ip}]":
            return f"[{s.ip}]" if s.ip.version == 4 else "User"
        if "{}" in pick:
            letters = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))
            return pick.format(letters.upper() if pick.startswith("WIN") else letters)
        return pick

    # -- rendering ------------------------------------------------------------------

    def session(self, s: Session) -> None:
        """Render one session (sessions must come in start-time order)."""
        self._flush(s.start)
        rng, truth = self.rng, self.truth
        truth.sessions += 1
        pid = self._fork()
        helo = self._helo(s)
        port = rng.randint(32768, 60999)  # Linux's ephemeral range (most clients)
        if s.host == "unknown":
            spec = f"({helo}) [{s.ip}]:{port}"
        elif helo == s.host:
            spec = f"{s.host} [{s.ip}]:{port}"
        else:
            spec = f"{s.host} ({helo}) [{s.ip}]:{port}"
        auth = "dovecot_login" if s.mechanism == "LOGIN" else "dovecot_plain"
        t = s.start + 0.3
        for _ in range(s.failures):
            self._push(t, "", f"[{pid}] {auth} authenticator failed for {spec}: 535 Incorrect "
                       f"authentication data (set_id={s.account})")  # fmt: skip
            truth.auth_failures += 1
            truth.auth_failures_named += 1
            if self.on_event is not None:
                self._emit(
                    AuthAttempt(
                        time=self._dt(t), ip=s.ip, succeeded=False, account=s.account,
                        mechanism=auth, service="smtp",
                    )
                )  # fmt: skip
            t += 1.5
        if not s.success:
            if s.lost:
                end = s.end()
                self._push(end, "", f"[{pid}] unexpected disconnection while reading SMTP "
                           f"command from {spec} D={int(end - s.start)}s")  # fmt: skip
            return
        tls = rng.choice(_TLS_IN)
        head = f"H={spec} P=esmtpsa X={tls} CV=no A={auth}:{s.account}"
        last = -1
        for mail in s.mails:
            # the id is taken when the DATA command starts; one per tick and process
            tick = max(self._tick(mail.time - 0.05 - mail.size / 4e6), last + 1)
            last = tick
            self._mail(pid, self._id(tick, pid), head, s, mail)

    def _mail(self, pid: int, msgid: str, head: str, s: Session, mail: Mail) -> None:
        rng, truth = self.rng, self.truth
        t = mail.time
        sender = mail.sender or s.account
        rcpts = " ".join(mail.recipients)
        self._push(t, "", f"[{pid}] {msgid} <= {sender} {head} S={mail.size} "
                   f"id={self._message_id(t, s, mail)} for {rcpts}")  # fmt: skip
        truth.submissions += 1
        if mail.abusive:
            truth.abusive_submissions += 1
            truth.abusive_ids.setdefault(s.account, []).append(msgid)
            truth.first_abusive_mail.setdefault(s.account, t)
        truth.messages[s.account] = truth.messages.get(s.account, 0) + 1
        if self.on_event is not None:
            self._emit(
                Submission(
                    time=self._dt(t), ip=s.ip, account=s.account, queue_id=msgid,
                    sender=sender, recipient_count=len(mail.recipients),
                    recipients=mail.recipients, size=mail.size,
                )
            )  # fmt: skip
        # Exim forks a delivery process as soon as the message is accepted; deferred
        # addresses are tried again by a later queue run's delivery process.
        dpid = self._fork()
        start = t + rng.uniform(0.01, 0.1)
        end, end_pid = start, dpid
        bounced = False
        retries: list[tuple[float, int, bool]] = []
        connections: dict[str, tuple[float, bool]] = {}  # domain -> (time, delivered one)
        for rcpt in mail.recipients:
            domain = rcpt.rpartition("@")[2]
            td, sent_before = connections.get(domain) or (start + rng.uniform(0.1, 2.5), False)
            r = rng.random()
            if mail.abusive:
                final = "sent" if r < 0.55 else "bounced" if r < 0.8 else "deferred"
            else:
                final = "sent" if r < 0.975 else "bounced" if r < 0.99 else "deferred"
            if final == "deferred":
                self._delivery(dpid, msgid, td, rcpt, final, sender, mail, more=False)
                td2, pid2 = td + rng.uniform(300, 2400), self._fork()
                final = "sent" if rng.random() < 0.6 else "bounced"
                b = self._delivery(pid2, msgid, td2, rcpt, final, sender, mail, more=False)
                retries.append((td2, pid2, b))
            else:
                bounced |= self._delivery(dpid, msgid, td, rcpt, final, sender, mail, sent_before)
            end = max(end, td)
            connections[domain] = (td, sent_before or final == "sent")
        if bounced and sender:
            end = self._bounce(dpid, msgid, end, sender)
        for td2, pid2, b in retries:
            done = self._bounce(pid2, msgid, td2, sender) if b and sender else td2
            if done > end:
                end, end_pid = done, pid2
        self._push(end + 0.001, "", f"[{end_pid}] {msgid} Completed")

    def _delivery(  # noqa: PLR0917  # private helper: the fields of one log line
        self, pid: int, msgid: str, td: float, rcpt: str, final: str, sender: str,
        mail: Mail, more: bool,
    ) -> bool:  # fmt: skip
        """Log one address's delivery attempt; return whether it bounced."""
        rng = self.rng
        domain = rcpt.rpartition("@")[2]
        if domain == self.isp_domain:
            route, relay, tls = "R=mailstore T=remote_smtp", f"mbox.{domain} [10.20.0.25]", ""
        else:
            mx, mx_ip = MX.get(domain, (f"mx.{domain}", "203.0.113.25"))
            route, relay, tls = "R=dnslookup T=remote_smtp", f"{mx} [{mx_ip}]", f" X={_TLS_OUT}"
        if final == "sent":
            flag = "->" if more else "=>"
            if tls:
                reply = f"250 2.0.0 OK {int(td)} {rng.getrandbits(40):010x} - mta"
                text = f'{flag} {rcpt} {route} H={relay}{tls} CV=yes C="{reply}"'
            else:  # the provider's own mailbox servers (Postfix)
                reply = f"250 2.0.0 Ok: queued as {rng.getrandbits(44):011X}"
                text = f'{flag} {rcpt} {route} H={relay} C="{reply}"'
        elif final == "deferred":
            text = (f"== {rcpt} {route} defer (-44) H={relay}{tls}{' CV=yes' if tls else ''}: "
                    f"SMTP error from remote mail server after MAIL FROM:<{sender}> "
                    f"SIZE={mail.size}: 421 4.7.0 Try again later, closing "
                    "connection.")  # fmt: skip
        else:
            if mail.abusive and rng.random() < 0.4:
                reply = "end of data: 550 5.7.1 Message rejected as spam"
            else:
                reply = (f"RCPT TO:<{rcpt}>: 550 5.1.1 <{rcpt}>: Recipient address "
                         "rejected: User unknown")  # fmt: skip
            text = (f"** {rcpt} {route} H={relay}{tls}{' CV=yes' if tls else ''}: SMTP error "
                    f"from remote mail server after {reply}")  # fmt: skip
        self._push(td, "", f"[{pid}] {msgid} {text}")
        self.truth.deliveries += 1
        if self.on_event is not None:
            self._emit(
                Delivery(time=self._dt(td), queue_id=msgid, recipient=rcpt, status=final,
                         relay=relay)
            )  # fmt: skip
        return final == "bounced"

    def _bounce(self, pid: int, msgid: str, t: float, sender: str) -> float:
        """Log the bounce message the delivery process writes to the sender; return its time."""
        rng = self.rng
        t1 = t + rng.uniform(0.01, 0.2)
        bid = self._id(self._tick(t1), pid)
        self._push(t1, "", f"[{pid}] {bid} <= <> R={msgid} U=Debian-exim P=local "
                   f"S={rng.randint(3000, 9000)}")  # fmt: skip
        bpid = self._fork()
        t2 = t1 + rng.uniform(0.05, 0.5)
        relay = f"mbox.{self.isp_domain} [10.20.0.25]"
        self._push(t2, "", f'[{bpid}] {bid} => {sender} R=mailstore T=remote_smtp H={relay} '
                   f'C="250 2.0.0 Ok: queued as {rng.getrandbits(44):011X}"')  # fmt: skip
        self._push(t2 + 0.001, "", f"[{bpid}] {bid} Completed")
        self.truth.deliveries += 1
        self.truth.notifications += 1
        if self.on_event is not None:
            self._emit(
                Delivery(time=self._dt(t2), queue_id=bid, recipient=sender, status="sent",
                         relay=relay)
            )  # fmt: skip
        return t1
