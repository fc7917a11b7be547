"""The log parsers on real lines: exact events, joins, time stamps, every corpus line."""

from __future__ import annotations

import dataclasses
import gzip
import io
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from authabuse.errors import ConfigurationError, ParseError
from authabuse.events import (
    AuthAttempt,
    Delivery,
    Event,
    Submission,
    event_from_dict,
    event_from_json,
    parse_ip,
)
from authabuse.parsers import FORMATS, LogParser, ParseStats, iter_events, parse_line
from authabuse.parsers._common import LineError, ip_or_bad

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
EXAMPLE = ROOT / "examples" / "postfix-submission.log"
CORPUS = ROOT / ".." / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present")


def parse(source: str | Path | bytes, **kw: object) -> tuple[list[Event], ParseStats]:
    stats = ParseStats()
    kw.setdefault("year", 2024)
    kw.setdefault("tz", "UTC")
    item = io.BytesIO(source) if isinstance(source, bytes) else source
    events = list(iter_events([item], stats=stats, **kw))  # type: ignore[arg-type]
    return events, stats


def of(events: list[Event], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


def auths(events: list[Event]) -> list[AuthAttempt]:
    out = [e for e in events if isinstance(e, AuthAttempt)]
    assert len(out) == len(events)
    return out


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# -- Postfix ---------------------------------------------------------------------------


def test_real_postfix_37_submissions_exact() -> None:
    events, stats = parse(EXAMPLE, year=2026)
    subs = of(events, Submission)
    assert [(s.queue_id, str(s.ip), s.size, s.recipients) for s in subs] == [
        ("C72E720C3B6", "127.0.0.5", 403, ("carol@example.net", "bob@example.org")),
        ("6BEE320C3B8", "127.0.0.21", 423, ("bob@example.org",)),
        ("0B5B020C017", "127.0.0.43", 420, ("bob@example.org",)),
        ("BB8DC20C036", "127.0.0.45", 420, ("bob@example.org",)),
    ]
    first = subs[0]
    assert first == Submission(
        time=utc(2026, 11, 28, 5, 34, 59),
        ip=ip_address("127.0.0.5"),
        account="alice@e2e.test",
        server="mx",
        queue_id="C72E720C3B6",
        sender="alice@e2e.test",
        recipient_count=2,
        recipients=("carol@example.net", "bob@example.org"),
        size=403,
    )
    assert all(s.account == "alice@e2e.test" and s.sender == "alice@e2e.test" for s in subs)
    deliveries = of(events, Delivery)
    assert len(deliveries) == 5
    assert deliveries[0] == Delivery(
        time=utc(2026, 11, 28, 5, 34, 59),
        queue_id="C72E720C3B6",
        recipient="carol@example.net",
        status="sent",
        relay="none",
        dsn="2.0.0",
        server="mx",
    )
    auths = of(events, AuthAttempt)
    ok = [(str(a.ip), a.account, a.mechanism) for a in auths if a.succeeded]
    assert ok == [
        ("127.0.0.5", "alice@e2e.test", "PLAIN"),
        ("127.0.0.21", "alice@e2e.test", "LOGIN"),
        ("127.0.0.43", "alice@e2e.test", "PLAIN"),
        ("127.0.0.45", "alice@e2e.test", "PLAIN"),
    ]
    failed = [(str(a.ip), a.account, a.attempts) for a in auths if not a.succeeded]
    # one per SASL warning; the "auth=0/1" disconnect lines must not count them again
    assert failed == [
        ("127.0.0.7", "eve@e2e.test", 1),
        ("127.0.0.23", "alice@e2e.test", 1),
        ("127.0.0.45", "alice@e2e.test", 1),
        ("127.0.0.45", "alice@e2e.test", 1),
        ("127.0.0.45", "alice@e2e.test", 1),
    ]
    assert all(a.service == "submission" and a.server == "mx" for a in auths)
    assert stats.lines == 66
    assert stats.malformed == stats.unrecognized == stats.expired_joins == 0
    assert stats.unfinished_joins == 0
    assert stats.events == {"auth": 9, "delivery": 5, "submission": 4}


def test_digineo_ipv6_submission_flow_exact() -> None:
    events, stats = parse(DATA / "digineo-postfix.log", year=2021)
    subs = {s.queue_id: s for s in of(events, Submission)}
    assert subs["838FC8A5F"] == Submission(
        time=utc(2021, 9, 23, 15, 57, 40),
        ip=ip_address("fe80::1:2:3:4"),
        account="out@example.org",
        server="mail",
        queue_id="838FC8A5F",
        sender="out@example.org",
        recipient_count=1,
        recipients=("someone@example.com",),
        size=939,
    )
    d = next(e for e in of(events, Delivery) if e.queue_id == "838FC8A5F")
    assert (d.recipient, d.status, d.dsn) == ("someone@example.com", "sent", "2.0.0")
    assert d.relay == "gmail-smtp-in.l.google.com[173.194.76.27]:25"
    login = next(a for a in of(events, AuthAttempt) if a.session == "838FC8A5F")
    assert (login.succeeded, login.account, login.service) == (
        True,
        "out@example.org",
        "submission",
    )
    # EB4B2C19E2 (kumina's line, Oct 30) never completes in this file. The file's next
    # stamp is Feb 11, months back: a new year began (2022), so the join expired.
    assert subs["EB4B2C19E2"].account == "user@domain"
    assert subs["EB4B2C19E2"].recipient_count is None
    assert (stats.expired_joins, stats.unfinished_joins) == (1, 0)
    # the Cyrus "SASL authentication failure" lines carry no client: not events, not errors
    assert stats.malformed == 0


def test_qmgr_repeats_from_line_on_retry_counted_once() -> None:
    log = (
        b"Nov  3 10:00:00 mx postfix/submission/smtpd[7]: 0F5383D: client=unknown[192.0.2.9],"
        b" sasl_method=LOGIN, sasl_username=bob\n"
        b"Nov  3 10:00:00 mx postfix/qmgr[5]: 0F5383D: from=<bob@example.jp>, size=500, nrcpt=2"
        b" (queue active)\n"
        b"Nov  3 10:00:01 mx postfix/smtp[8]: 0F5383D: to=<a@example.com>, relay=none, delay=1,"
        b" delays=0/0/1/0, dsn=4.4.1, status=deferred (connect to example.com: timed out)\n"
        b"Nov  3 10:30:00 mx postfix/qmgr[5]: 0F5383D: from=<bob@example.jp>, size=500, nrcpt=2"
        b" (queue active)\n"
        b"Nov  3 10:30:01 mx postfix/smtp[8]: 0F5383D: to=<a@example.com>, relay=mx.example.com"
        b"[192.0.2.25]:25, delay=1801, delays=0/1800/1/0, dsn=2.0.0, status=sent (250 OK)\n"
        b"Nov  3 10:30:02 mx postfix/smtp[9]: 0F5383D: to=<b@example.net>, orig_to=<b@alias>, "
        b"relay=mx.example.net[192.0.2.26]:25, delay=1802, delays=0/1800/1/1, dsn=5.1.1, "
        b"status=bounced (user unknown)\n"
        b"Nov  3 10:30:02 mx postfix/qmgr[5]: 0F5383D: removed\n"
    )
    events, _ = parse(log)
    (sub,) = of(events, Submission)
    assert sub.recipient_count == 2
    assert sub.recipients == ("a@example.com", "b@example.net")
    assert [d.status for d in of(events, Delivery)] == ["deferred", "sent", "bounced"]
    # emitted when the last expected recipient had its first outcome, not at "removed"
    assert [e.type for e in events][-2:] == ["delivery", "submission"]


def test_program_names_services_instances_and_ports() -> None:
    lines = [
        "Mar 11 23:27:54 server postfix-smo/submission/smtpd[22427]: 44JCRG5tYPzCqt2: "
        "client=a.example[192.0.2.109]:4711, sasl_method=PLAIN, sasl_username=u1",
        "Mar 11 23:27:54 server postfix/10025/smtpd[1]: 90284DE204C8: client=localhost"
        "[127.0.0.1], sasl_method=PLAIN, sasl_username=u2",
        "Mar 11 23:27:54 server postfix-in/smtpd[2]: AB12: client=unknown[2001:db8::7],"
        " sasl_method=CRAM-MD5, sasl_username=u3",
    ]
    events, stats = parse("\n".join(lines).encode())
    auths = of(events, AuthAttempt)
    assert [(a.account, a.service, str(a.ip), a.mechanism) for a in auths] == [
        ("u1", "submission", "192.0.2.109", "PLAIN"),
        ("u2", "10025", "127.0.0.1", "PLAIN"),
        ("u3", "smtp", "2001:db8::7", "CRAM-MD5"),
    ]
    assert stats.unfinished_joins == 3


def test_sasl_failures_with_and_without_username() -> None:
    old = parse_line(
        "Sep  6 00:44:57 trianon postfix/submission/smtpd[11538]: warning: unknown"
        "[82.221.106.233]: SASL login authentication failed: UGFzc3dvcmQ6",
        year=2024,
        tz="UTC",
    )
    new = parse_line(
        "Nov  4 09:11:01 mail postfix/smtpd[1234]: warning: unknown[192.0.2.152]:55729: SASL"
        " LOGIN authentication failed: (reason unavailable), sasl_username=admin",
        year=2024,
        tz="UTC",
    )
    outage = parse_line(
        "Feb  3 08:29:28 mail postfix/smtpd[21022]: warning: unknown[1.1.1.1]: SASL LOGIN "
        "authentication failed: Connection lost to authentication server",
        year=2024,
        tz="UTC",
    )
    assert isinstance(old, AuthAttempt)
    assert isinstance(new, AuthAttempt)
    assert (old.account, old.mechanism, old.succeeded) == (None, "LOGIN", False)
    assert (new.account, str(new.ip)) == ("admin", "192.0.2.152")
    assert outage is None  # our SASL backend failed, not the client


def test_disconnect_counts_only_unreported_failures() -> None:
    log = (
        b"Feb 18 09:48:04 xxx postfix/smtpd[50903]: warning: unknown[192.0.2.23]: SASL LOGIN "
        b"authentication failed: authentication failure\n"
        b"Feb 18 09:48:04 xxx postfix/smtpd[50903]: disconnect from unknown[192.0.2.23] ehlo=1 "
        b"auth=0/3 rset=1 commands=2/5\n"
    )
    events, _ = parse(log)
    assert [(e.attempts, e.account) for e in of(events, AuthAttempt)] == [(1, None), (2, None)]


# -- Dovecot ---------------------------------------------------------------------------


def test_modoboa_dovecot_logins() -> None:
    text = (DATA / "modoboa-mail-mixed.log").read_text(encoding="utf-8")
    events, stats = parse(text.replace("%(day)s", "Nov 16").encode(), year=2017)
    logins = of(events, AuthAttempt)
    assert len(logins) == 38 == text.count(" Login: user=<")
    assert all(a.succeeded for a in logins)
    assert {a.service for a in logins} <= {"imap", "pop3", "managesieve"}
    assert logins[0].time.date().isoformat() == "2017-11-16"
    assert stats.malformed == 0
    assert stats.unrecognized == 0


def test_dovecot_failures_attempts_and_24_forms() -> None:
    lines = [
        "Jun 13 16:30:54 platypus dovecot: imap-login: Disconnected (auth failed, 2 attempts):"
        " user=<username.bob>, method=PLAIN, rip=49.176.98.87, lip=113.212.99.194, TLS",
        "Jun 12 19:07:29 hostname dovecot[241]: imap-login: Login aborted: Connection closed "
        "(auth failed, 3 attempts in 16 secs) (auth_failed): user=<test>, method=PLAIN, "
        "rip=192.0.2.241, lip=203.0.113.104, TLS, session=<9ZHq02g3J8S60fan>",
        "Jun 11 13:57:17 main dovecot: auth: sql(admin@example.ru,192.168.144.226,"
        "<6rXunFtu493AqJDi>): Password mismatch",
        "Jun 15 11:28:21 hostname dovecot: auth-worker(5787): conn unix:auth-worker "
        "(pid=27359,uid=97): auth-worker<55>: pam(webapps,192.0.2.7): unknown user",
        "Jun 13 20:48:11 platypus dovecot: pop3-login: Disconnected (no auth attempts): "
        "rip=121.44.24.254, lip=113.212.99.194, TLS: Disconnected",
        "Dec 19 06:21:06 ny dovecot: imap-login: Login: user=<alice>, method=PLAIN, "
        "rip=::ffff:198.51.100.4, lip=::ffff:203.0.113.1, mpid=7, TLS",
    ]
    events, stats = parse("\n".join(lines).encode())
    got = [(str(a.ip), a.account, a.attempts, a.succeeded, a.session) for a in auths(events)]
    assert got == [
        ("49.176.98.87", "username.bob", 2, False, None),
        ("192.0.2.241", "test", 3, False, "9ZHq02g3J8S60fan"),
        ("192.168.144.226", "admin@example.ru", 1, False, "6rXunFtu493AqJDi"),
        ("192.0.2.7", "webapps", 1, False, None),
        ("198.51.100.4", "alice", 1, True, None),
    ]
    assert stats.irrelevant == 1


def test_dovecot_logged_password_is_never_kept_or_printed() -> None:
    secret = "XxxxXXxx123"  # noqa: S105  # the password fail2ban's fixture shows Dovecot logging
    line = (
        "Aug 30 00:10:57 auth(info@example.com,192.0.2.110,sasl:login)<CvN+E95Uf4e7eEnj>: "
        f"Info: sql: Password mismatch (given password: {secret})"
    )
    events, _ = parse(line.encode())
    (event,) = auths(events)
    assert (event.account, str(event.ip), event.mechanism) == (
        "info@example.com",
        "192.0.2.110",
        "LOGIN",
    )
    assert secret not in event.to_json()
    # strict mode on a broken variant of the line: the error must not carry it either
    broken = line.replace("192.0.2.110", "192.0.2.999")
    with pytest.raises(ParseError) as info:
        LogParser(strict=True, year=2024, tz="UTC").feed(broken, 1)
    assert secret not in str(info.value)
    assert secret not in info.value.line
    stats = ParseStats()
    list(iter_events([io.BytesIO(broken.encode())], stats=stats, year=2024, tz="UTC"))
    assert secret not in stats.summary()
    assert secret not in str(stats.to_dict())


# -- Exim ------------------------------------------------------------------------------


def test_exim_authenticated_arrival_and_failures() -> None:
    log = (
        b"1999-03-02 09:44:33 10HmbC-000000005vi-0000 <= userx@cus.cam.ac.uk H=(test.host) "
        b"[10.0.0.1] U=CALLER P=esmtpa A=login:userx S=1234 for userx11@test.ex\n"
        b"1999-03-02 09:44:33 10HmbC-000000005vi-0000 => userx11@test.ex R=r T=smtp "
        b'H=127.0.0.1 [127.0.0.1] A=plain:relayuser C="250 OK"\n'
        b"1999-03-02 09:44:34 10HmbC-000000005vi-0000 Completed\n"
        b"2024-03-21 19:26:06 dovecot_login authenticator failed for (User) "
        b"[194.169.175.1]:21298 I=[22.33.44.55]:465 Ci=30416: 535 Incorrect authentication "
        b"data (set_id=uaf589@example.com)\n"
        b"2013-01-04 17:03:46 login authenticator failed for rrcs.example ([192.168.2.33]) "
        b"[24.106.174.74]: 535 Incorrect authentication data (set_id=brian)\n"
        b"2023-05-30 06:10:13.345 login authenticator failed for millis.example.org "
        b"[192.0.2.12]:5432: 535 Incorrect authentication data (set_id=user)\n"
    )
    events, stats = parse(log)
    auths = of(events, AuthAttempt)
    assert [(str(a.ip), a.account, a.succeeded) for a in auths] == [
        ("10.0.0.1", "userx", True),  # A= on the => line is not a login
        ("194.169.175.1", "uaf589@example.com", False),
        ("24.106.174.74", "brian", False),  # the last [...] is the peer, not the HELO literal
        ("192.0.2.12", "user", False),
    ]
    assert auths[-1].time == utc(2023, 5, 30, 6, 10, 13) + timedelta(milliseconds=345)
    (sub,) = of(events, Submission)
    assert (sub.account, sub.sender, sub.size, sub.recipients) == (
        "userx",
        "userx@cus.cam.ac.uk",
        1234,
        ("userx11@test.ex",),
    )
    assert stats.malformed == 0


@needs_corpus
def test_exim_delivery_relay_is_the_host_not_the_error_after_it() -> None:
    # Exim's test suite: a deferral whose H= is followed by the error text and no other
    # field (the relay once ran on to the end of the line)
    lines = (CORPUS / "exim-testsuite" / "exim-auth.log").read_bytes().splitlines()
    (line,) = [x for x in lines if b" == userx@domain.com R=try T=smtp_try defer (-18)" in x]
    assert line.endswith(b"H=127.0.0.1 [127.0.0.1]: Remote host closed connection in "
                         b"response to AUTH LOGIN")  # fmt: skip
    ((delivery,), stats) = parse(line)
    assert isinstance(delivery, Delivery)
    assert (delivery.status, delivery.relay) == ("deferred", "127.0.0.1 [127.0.0.1]")
    assert stats.used == 1
    # a bounce: H= then X= and CV= fields, the colon after the last one
    (bounce,), _ = parse(
        b"2026-03-02 07:06:57 [187022] 1vwowC-000mZR-Mw ** m00309@outlook.jp R=dnslookup "
        b"T=remote_smtp H=outlook-jp.olc.protection.outlook.com [52.101.68.5] "
        b"X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes: SMTP error from remote mail server "
        b"after RCPT TO:<m00309@outlook.jp>: 550 5.1.1 <m00309@outlook.jp>: User unknown"
    )
    assert isinstance(bounce, Delivery)
    assert bounce.relay == "outlook-jp.olc.protection.outlook.com [52.101.68.5]"
    assert bounce.status == "bounced"
    # with +outgoing_port, and a host without an address (a local transport)
    (a, b), _ = parse(
        b"1999-03-02 09:44:33 10HmaX-000000005vi-0000 => x@y R=client_r1 T=t1 "
        b'H=127.0.0.1 [127.0.0.1]:1225 X=TLS1.3 CV=yes A=ext_ccert_cn C="250 OK"\n'
        b"1999-03-02 09:44:33 10HmaX-000000005vi-0000 => x@ten-1.test.ex R=r1 T=dev_null "
        b"H=ten-1.test.ex\n"
    )
    assert isinstance(a, Delivery)
    assert isinstance(b, Delivery)
    assert (a.relay, b.relay) == ("127.0.0.1 [127.0.0.1]:1225", "ten-1.test.ex")


def test_exim_arrival_with_its_recipients_is_a_submission_at_once() -> None:
    # +received_recipients: "for r1 r2" ends the arrival; a deferred recipient must not
    # hold the submission back until "Completed" (minutes or hours later)
    log = (
        b"2026-03-02 09:00:01 [4242] 1vwowA-000mZR-Ha <= a@example.jp H=(User) "
        b"[192.0.2.7]:40000 P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no "
        b"A=dovecot_login:a@example.jp S=2000 id=x@example.jp for b@example.com c@example.org\n"
        b"2026-03-02 09:00:02 [4243] 1vwowA-000mZR-Ha == b@example.com R=dnslookup "
        b"T=remote_smtp defer (-44) H=mx.example.com [203.0.113.25]: SMTP error from remote "
        b"mail server after MAIL FROM:<a@example.jp> SIZE=2000: 421 4.7.0 Try again later\n"
    )
    events, stats = parse(log)
    sub = of(events, Submission)
    assert len(sub) == 1  # no Completed line yet
    assert sub[0].recipients == ("b@example.com", "c@example.org")
    assert sub[0].recipient_count == 2
    assert [type(e).__name__ for e in events] == ["AuthAttempt", "Submission", "Delivery"]
    assert stats.unfinished_joins == 0


def test_exim_counts_one_login_per_receiving_process() -> None:
    # Exim logs A= on every message a connection sends; with the pid on the line
    # (+pid, or syslog's exim[pid]) the later ones of one process are not new logins
    arrival = (
        "2026-03-02 09:00:0{s} {pid}1vwowA-000mZ{n}-Ha <= a@example.jp H=(x) "
        "[{ip}]:40000 P=esmtpsa A=dovecot_plain:{user} S=200 for b@example.com\n"
    )
    lines = [
        arrival.format(s=1, pid="[4242] ", n="R", ip="192.0.2.7", user="a@example.jp"),
        arrival.format(s=2, pid="[4242] ", n="S", ip="192.0.2.7", user="a@example.jp"),
        arrival.format(s=3, pid="[4243] ", n="T", ip="192.0.2.7", user="a@example.jp"),
        arrival.format(s=4, pid="[4242] ", n="U", ip="192.0.2.8", user="a@example.jp"),
        arrival.format(s=5, pid="[4242] ", n="V", ip="192.0.2.8", user="c@example.jp"),
        arrival.format(s=6, pid="", n="W", ip="192.0.2.9", user="d@example.jp"),
        arrival.format(s=7, pid="", n="X", ip="192.0.2.9", user="d@example.jp"),
        "Mar  2 09:00:08 msa exim[77]: " + arrival.format(s=8, pid="", n="Y", ip="192.0.2.9",
                                                           user="d@example.jp"),
        "Mar  2 09:00:09 msa exim[77]: " + arrival.format(s=9, pid="", n="Z", ip="192.0.2.9",
                                                           user="d@example.jp"),
    ]  # fmt: skip
    events, stats = parse("".join(lines).encode())
    logins = [(a.time.second, str(a.ip), a.account) for a in of(events, AuthAttempt)]
    assert logins == [
        (1, "192.0.2.7", "a@example.jp"),  # the second message of [4242] is no login
        (3, "192.0.2.7", "a@example.jp"),  # another process: another connection
        (4, "192.0.2.8", "a@example.jp"),  # the pid reused by a new connection
        (5, "192.0.2.8", "c@example.jp"),
        (6, "192.0.2.9", "d@example.jp"),  # no pid: every arrival is a login
        (7, "192.0.2.9", "d@example.jp"),
        (8, "192.0.2.9", "d@example.jp"),  # syslog's exim[77]
    ]
    assert len(of(events, Submission)) == 9
    assert stats.malformed == 0


def test_crowdsec_exim_syslog_and_native() -> None:
    events, stats = parse(DATA / "crowdsec-exim.log")
    assert len(of(events, AuthAttempt)) == 16
    assert stats.malformed == stats.unrecognized == 0


# -- Sendmail --------------------------------------------------------------------------


def test_sendmail_auth_joined_to_next_message_of_same_pid() -> None:
    # Lines written from Sendmail's format strings (srvrsmtp.c), see corpus FORMATS.md s.4.
    log = (
        b"Dec  6 14:06:32 mx sm-mta[9738]: AUTH=server, relay=client.example.net "
        b"[192.0.2.4] (may be forged), authid=augie, mech=PLAIN, bits=0\n"
        b"Dec  6 14:06:33 mx sm-mta[9738]: qB6E6WqC009738: from=<augie@example.net>, "
        b"size=1391, class=0, nrcpts=2, msgid=<1@example.net>, proto=ESMTP, daemon=MTA, "
        b"relay=client.example.net [192.0.2.4] (may be forged)\n"
        b"Dec  6 14:06:34 mx sm-mta[9740]: qB6E6WqC009738: to=<a@example.com>,<b@example.org>, "
        b"delay=00:00:01, xdelay=00:00:01, mailer=esmtp, pri=121391, relay=mx.example.com. "
        b"[192.0.2.25], dsn=2.0.0, stat=Sent (ok)\n"
        b"Feb 25 04:02:28 relay1 sendmail[16665]: 06I02CNi016765: AUTH failure (LOGIN): "
        b"authentication failure (-13) SASL(-13): authentication failure: checkpass failed, "
        b"user=criminal, relay=[192.0.2.100], relay=[192.0.2.4] (may be forged)\n"
    )
    events, stats = parse(log)
    auths = of(events, AuthAttempt)
    assert [(str(a.ip), a.account, a.succeeded) for a in auths] == [
        ("192.0.2.4", "augie", True),
        ("192.0.2.4", "criminal", False),
    ]
    (sub,) = of(events, Submission)
    assert (sub.account, str(sub.ip), sub.recipient_count, sub.recipients, sub.size) == (
        "augie",
        "192.0.2.4",
        2,
        ("a@example.com", "b@example.org"),
        1391,
    )
    assert [d.recipient for d in of(events, Delivery)] == ["a@example.com", "b@example.org"]
    assert stats.malformed == 0


# -- JSON lines ------------------------------------------------------------------------


def test_jsonl_round_trip_of_parsed_events() -> None:
    events, _ = parse(EXAMPLE, year=2026)
    jsonl = "".join(e.to_json() + "\n" for e in events).encode()
    again, stats = parse(jsonl)
    assert again == events
    forced, _ = parse(jsonl, format="jsonl")
    assert forced == events
    assert stats.events == {"auth": 9, "delivery": 5, "submission": 4}


# -- time stamps -----------------------------------------------------------------------


def test_year_rollover_and_zones() -> None:
    log = (
        b"Dec 31 23:59:59 mx postfix/smtpd[1]: warning: a[192.0.2.1]: SASL LOGIN authentication"
        b" failed: x\n"
        b"Jan  1 00:00:01 mx postfix/smtpd[1]: warning: a[192.0.2.1]: SASL LOGIN authentication"
        b" failed: x\n"
    )
    events, _ = parse(log, year=2024, tz="Asia/Tokyo")
    assert [e.time.isoformat() for e in events] == [
        "2024-12-31T23:59:59+09:00",
        "2025-01-01T00:00:01+09:00",
    ]
    events, _ = parse(log, year=2024, tz="-05:00")
    assert events[0].time.utcoffset() == timedelta(hours=-5)


@pytest.mark.parametrize("fmt", ["auto", "postfix"])
def test_a_stamp_seen_again_a_year_later_is_next_years(fmt: str) -> None:
    """A sparse log: the same stamp text months apart is not answered from a cache."""
    line = (
        "{} mx postfix/submission/smtpd[7]: 4F1A2B3C: client=a[192.0.2.{}], "
        "sasl_method=PLAIN, sasl_username=u{}@example.jp\n"
    )
    stamps = ["Jan  5 10:00:00", "Apr  1 00:00:00", "Aug  1 00:00:00", "Jan  5 10:00:00"]
    log = "".join(line.format(s, i, i) for i, s in enumerate(stamps)).encode()
    events, _ = parse(log, year=2024, tz="UTC", format=fmt)
    assert [e.time.date().isoformat() for e in of(events, AuthAttempt)] == [
        "2024-01-05",
        "2024-04-01",
        "2024-08-01",
        "2025-01-05",
    ]


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2024-08-26T01:33:38.572449+00:00", "2024-08-26T01:33:38.572449+00:00"),
        ("2022-04-14T00:36:03.150Z", "2022-04-14T00:36:03.150000+00:00"),
        ("2022-04-14T09:36:03+09:00", "2022-04-14T09:36:03+09:00"),
        ("Jun 04 22:24:28", "2024-06-04T22:24:28+00:00"),
        ("Aug 4 16:47:52", "2024-08-04T16:47:52+00:00"),
    ],
)
def test_time_stamp_shapes(stamp: str, expected: str) -> None:
    line = f"{stamp} mx postfix/smtpd[1]: warning: a[192.0.2.1]: SASL LOGIN authentication failed:"
    event = parse_line(line, year=2024, tz="UTC")
    assert event is not None
    assert event.time.isoformat() == expected


def test_tai64n_stamp() -> None:
    event = parse_line(
        "@400000004c91b044077a9e94 imap-login: Info: Aborted login (auth failed, 1 attempts): "
        "user=<martin@example.de>, method=CRAM-MD5, rip=80.187.101.33, lip=80.254.129.240, TLS"
    )
    assert event is not None
    assert event.time == datetime(2010, 9, 16, 5, 50, 50, 125476, tzinfo=UTC)


def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        LogParser("qmail")
    with pytest.raises(ConfigurationError):
        LogParser(tz="Mars/Olympus_Mons")
    with pytest.raises(ConfigurationError):
        LogParser(year=12)
    assert set(FORMATS) == {"auto", "postfix", "dovecot", "exim", "sendmail", "jsonl"}


# -- every real line -------------------------------------------------------------------


def _corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in {".md", ".tsv"})


@needs_corpus
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_corpus_line_parses_without_exception(fmt: str) -> None:
    files = _corpus_files()
    assert len(files) > 80
    for path in files:
        data = path.read_bytes()
        if b"%(day)s" in data:
            data = data.replace(b"%(day)s", b"Nov 16")
        parser = LogParser(fmt, year=2024, tz="UTC", source=path.name)
        events: list[Event] = []
        for no, line in enumerate(data.splitlines(keepends=True), 1):
            events += parser.feed(line, no)
        events += parser.flush()
        stats = parser.stats
        assert stats.lines == len(data.splitlines())
        assert (
            stats.used + stats.irrelevant + stats.malformed + stats.unrecognized == stats.lines
        ), path
        for event in events:  # every event is valid and survives its JSON round trip
            assert event_from_json(event.to_json()) == event


@needs_corpus
def test_trusted_constructors_equal_the_validating_ones() -> None:
    events, _ = parse(CORPUS / "exim-testsuite" / "exim-auth.log")
    for name in ("fail2ban/dovecot.log", "fail2ban/postfix.log", "fail2ban/sendmail-auth.log"):
        events += parse(CORPUS / name)[0]
    events += parse(EXAMPLE)[0] + parse(DATA / "digineo-postfix.log")[0]
    assert len(events) > 300
    for event in events:
        names = [f.name for f in dataclasses.fields(event)]
        rebuilt = type(event)(**{name: getattr(event, name) for name in names})
        assert rebuilt == event
        assert type(event) in (AuthAttempt, Delivery, Submission)  # the class itself
        assert hash(rebuilt) == hash(event)
        assert event_from_dict(event.to_dict()) == event


# -- addresses -------------------------------------------------------------------------


@given(st.ip_addresses())
def test_fast_ip_parser_agrees_with_parse_ip(addr: object) -> None:
    text = str(addr)
    assert ip_or_bad(text) == parse_ip(text)
    assert ip_or_bad(text.upper()) == parse_ip(text.upper())


@given(st.text(alphabet="0123456789abcdefABCDEF:.%[]IPv6x ", max_size=45))
@settings(max_examples=300)
def test_fast_ip_parser_rejects_what_parse_ip_rejects(text: str) -> None:
    try:
        expected = parse_ip(text)
    except ValueError:
        with pytest.raises(LineError):
            ip_or_bad(text)
    else:
        assert ip_or_bad(text) == expected


def test_gzip_and_several_files_in_one_stream(tmp_path: Path) -> None:
    raw = EXAMPLE.read_bytes()
    lines = raw.splitlines(keepends=True)
    first = tmp_path / "maillog.1.gz"
    first.write_bytes(gzip.compress(b"".join(lines[:10])))  # splits C72E720C3B6's join
    second = tmp_path / "maillog"
    second.write_bytes(b"".join(lines[10:]))
    stats = ParseStats()
    events = list(iter_events([first, second], year=2026, tz="UTC", stats=stats))
    assert events == parse(EXAMPLE, year=2026)[0]
    assert stats.lines == 66


def test_dovecot_session_failures_are_not_counted_twice() -> None:
    # fail2ban's Dovecot 2.4 pair (gh-4196): the auth process reports one mismatch, the
    # login process then sums up the same session as "3 attempts".
    log = (
        b"Aug 30 00:10:57 auth(info@example.com,192.0.2.110,sasl:login)<CvN+E95Uf4e7eEnj>: "
        b"Info: sql: Password mismatch (given password: XxxxXXxx123)\n"
        b"Aug 30 00:11:05 imap-login: Info: Login aborted: Connection closed (auth failed, 3 "
        b"attempts in 16 secs) (auth_failed): user=<info@example.com>, method=PLAIN, "
        b"rip=192.0.2.110, lip=0.0.0.0, TLS, session=<CvN+E95Uf4e7eEnj>\n"
    )
    events, _ = parse(log)
    assert [(a.attempts, a.service) for a in auths(events)] == [(1, None), (2, "imap")]
    assert sum(a.attempts for a in auths(events)) == 3


def test_iter_events_accepts_one_path_or_one_file() -> None:
    expected = parse(EXAMPLE, year=2026)[0]
    assert list(iter_events(EXAMPLE, year=2026, tz="UTC")) == expected
    assert list(iter_events(str(EXAMPLE), year=2026, tz="UTC")) == expected
    with EXAMPLE.open("rb") as fh:
        assert list(iter_events(fh, year=2026, tz="UTC")) == expected


def test_dovecot_1x_log_path_lines_with_level_first() -> None:
    # wazuh's Dovecot 1.x samples (GPL, written here from their shape): level, then process
    lines = (
        b"Mar 13 15:25:07 Info: auth(default): passwd-file(user@example.com,::ffff:1.2.3.4):"
        b" unknown user\n"
        b"Jun 23 15:04:05 Info: imap-login: Login: user=<username>, method=PLAIN, "
        b"rip=1.2.3.4, lip=1.2.3.5\n"
    )
    events, stats = parse(lines)
    got = [(a.account, str(a.ip), a.succeeded, a.service) for a in auths(events)]
    assert got == [
        ("user@example.com", "1.2.3.4", False, None),
        ("username", "1.2.3.4", True, "imap"),
    ]
    assert stats.used == 2


def test_postfix_310_reject_lines_carry_the_login() -> None:
    # Postfix >= 3.10 appends " sasl_method=M sasl_username=U" to reject lines (smtpd_check.c)
    log = (
        b"Nov 28 05:35:00 mx postfix/submission/smtpd[7]: NOQUEUE: reject: RCPT from unknown"
        b"[198.51.100.22]: 554 5.7.1 <bob@example.org>: Recipient address rejected: abuse "
        b"detected; from=<mallory@e2e.test> to=<bob@example.org> proto=ESMTP helo=<c> "
        b"sasl_method=PLAIN sasl_username=mallory@e2e.test\n"
        b"Nov 28 05:35:00 mx postfix/submission/smtpd[7]: NOQUEUE: reject: RCPT from unknown"
        b"[198.51.100.22]: 554 5.7.1 <eve@example.org>: Recipient address rejected: abuse "
        b"detected; from=<mallory@e2e.test> to=<eve@example.org> proto=ESMTP helo=<c> "
        b"sasl_method=PLAIN sasl_username=mallory@e2e.test\n"
        b"Nov 28 05:35:01 mx postfix/submission/smtpd[7]: disconnect from unknown"
        b"[198.51.100.22] ehlo=1 auth=1 mail=1 rcpt=0/2 quit=1 commands=4/6\n"
    )
    events, stats = parse(log)
    got = [(a.account, str(a.ip), a.succeeded, a.mechanism, a.session) for a in auths(events)]
    assert got == [("mallory@e2e.test", "198.51.100.22", True, "PLAIN", None)]  # once
    assert stats.malformed == 0


_CLOCK_STAMPS = st.builds(
    lambda month, day, hh, mm, ss, pad: (
        f"{month} {day:{pad}} {hh:02d}:{mm:02d}:{ss:02d}"
        if pad
        else f"{month} {day} {hh:02d}:{mm:02d}:{ss:02d}"
    ),
    st.sampled_from(["Jan", "Mar", "Jun", "Oct", "Dec"]),
    st.sampled_from([1, 30]),  # 30 March 2025, 02:30: in Berlin's DST gap
    st.sampled_from([2, 23]),
    st.just(30),  # few distinct minutes: the minute cache is hit often
    st.integers(0, 59),
    st.sampled_from(["2d", "02d", ""]),
)


@given(st.lists(_CLOCK_STAMPS, max_size=60), st.sampled_from(["UTC", "Europe/Berlin"]))
@example(["Mar 30 02:30:05", "Mar 30 02:30:07"], "Europe/Berlin")  # a minute in the DST gap
@example(  # the months move on by more than six: a new year, even for a minute seen before
    ["Jan  1 02:30:00", "Mar  1 02:30:00", "Jun  1 02:30:00", "Oct  1 02:30:00", "Jan  1 02:30:09"],
    "UTC",
)
@example(  # a stamp seen before, after the months moved on: a new year, and the month runs
    ["Jan  5 10:00:00", "Apr  1 00:00:00", "Aug  1 00:00:00", "Jan  5 10:00:00"],
    "UTC",
)
@settings(max_examples=300, deadline=None)
def test_clock_caches_give_what_parsing_each_stamp_afresh_gives(
    stamps: list[str], zone: str
) -> None:
    """The clock's caches change no answer and no year (rollover, step back, DST).

    ``fresh`` forgets its minutes and stamps before every stamp: each is parsed afresh.
    A cached stamp seen again after the months moved on by more than six is a new year's.
    """
    from zoneinfo import ZoneInfo

    from authabuse.parsers._timestamps import SyslogClock

    tz = UTC if zone == "UTC" else ZoneInfo(zone)
    cached, fresh = SyslogClock(year=2025, tz=tz), SyslogClock(year=2025, tz=tz)
    for stamp in stamps:
        fresh._minutes.clear()
        fresh.bsd_cache.clear()
        try:
            expected: datetime | str = fresh.bsd(stamp)
        except ValueError as exc:
            expected = str(exc)
        try:
            got: datetime | str = cached.bsd(stamp)
        except ValueError as exc:
            got = str(exc)
        assert got == expected, stamp
        if isinstance(got, datetime) and isinstance(expected, datetime):
            assert got.utcoffset() == expected.utcoffset()
        assert (cached.year, cached._last_month) == (fresh.year, fresh._last_month)
