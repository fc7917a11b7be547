"""The other servers' parsers (OpenSMTPD, Courier, Cyrus, UW-IMAP, Roundcube, ...) on real lines.

Real lines come from ``tests/data`` (permissive sources, see its PROVENANCE.md) and, for
GPL sources, from ``../shared/corpus`` in place (skipped when absent). Lines marked
"from the format string" are written from the server's own logging code where the corpus
holds no real line of that kind (OpenSMTPD's logins and messages): OpenSMTPD
``smtp_session.c`` (``"%016"PRIx64" smtp authentication user=%s result=ok"``, ``"... smtp
message msgid=%08x size=%zu nrcpt=%zu proto=%s"``, ``"... smtp envelope evpid=%016"PRIx64"
from=<%s> to=<%s>"``, and the 6.0 ``event=`` and 5.x ``smtp-in:`` forms).
"""

from __future__ import annotations

import base64
import random
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authabuse.events import AuthAttempt, Event, Submission, event_from_json
from authabuse.parsers import LogParser, ParseStats

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CORPUS = ROOT / ".." / "shared" / "corpus"


def run(text: str | bytes, **kw: object) -> tuple[list[Event], ParseStats]:
    kw.setdefault("year", 2024)
    kw.setdefault("tz", "UTC")
    parser = LogParser(**kw)  # type: ignore[arg-type]
    data = text.encode() if isinstance(text, str) else text
    events: list[Event] = []
    for no, line in enumerate(data.splitlines(), 1):
        events += parser.feed(line, no)
    events += parser.flush()
    for event in events:
        assert event_from_json(event.to_json()) == event
    return events, parser.stats


def auths(events: list[Event]) -> list[AuthAttempt]:
    out = [e for e in events if isinstance(e, AuthAttempt)]
    assert len(out) == len(events)
    return out


def fails(events: list[Event]) -> list[tuple[str, str | None]]:
    return [
        (str(e.ip), e.account) for e in events if isinstance(e, AuthAttempt) and not e.succeeded
    ]


# -- OpenSMTPD ---------------------------------------------------------------------------

SMTPD = "Jul  6 06:01:40 mx smtpd[75295]: "


def smtpd(*messages: str) -> str:
    return "".join(SMTPD + m + "\n" for m in messages)


def test_opensmtpd_login_and_submission_joined_by_session() -> None:
    # from the format strings of OpenSMTPD 6.4+ (smtp_session.c)
    log = smtpd(
        "5df87c903d709659 smtp connected address=198.51.100.7 host=<unknown>",
        "5df87c903d709659 smtp tls ciphers=TLSv1.3:TLS_AES_256_GCM_SHA384:256",
        "5df87c903d709659 smtp authentication user=alice@example.org result=ok",
        "5df87c903d709659 smtp message msgid=c405e39a size=303 nrcpt=2 proto=ESMTP",
        "5df87c903d709659 smtp envelope evpid=c405e39ad6bbc64f from=<alice@example.org> "
        "to=<bob@example.com>",
        "5df87c903d709659 smtp envelope evpid=c405e39a11111111 from=<alice@example.org> "
        "to=<carol@example.net>",
        "5df87c903d709659 smtp disconnected reason=quit",
    )
    events, stats = run(log)
    login, sub = events
    assert isinstance(login, AuthAttempt)
    assert login.succeeded
    assert (str(login.ip), login.account, login.service) == (
        "198.51.100.7",
        "alice@example.org",
        "smtp",
    )
    assert login.session == "5df87c903d709659"
    assert isinstance(sub, Submission)
    assert (sub.account, str(sub.ip), sub.queue_id, sub.sender, sub.size) == (
        "alice@example.org",
        "198.51.100.7",
        "c405e39a",
        "alice@example.org",
        303,
    )
    assert (sub.recipient_count, sub.recipients) == (2, ("bob@example.com", "carol@example.net"))
    assert (stats.malformed, stats.unrecognized, stats.expired_joins) == (0, 0, 0)


def test_opensmtpd_failure_and_its_535_reply_count_once() -> None:
    log = smtpd(
        "c1a89cb774083905 smtp connected address=185.234.219.64 host=<unknown>",
        "c1a89cb774083905 smtp authentication user=admin result=permfail",
        'c1a89cb774083905 smtp failed-command command="AUTH PLAIN (...)" '
        'result="535 Authentication failed"',
        "c1a89cb774083905 smtp authentication user=test result=permfail",
        'c1a89cb774083905 smtp failed-command command="AUTH PLAIN (...)" '
        'result="535 Authentication failed"',
        # a 535 whose authentication line is not there is counted on its own
        'c1a89cb774083905 smtp failed-command command="AUTH LOGIN" '
        'result="535 Authentication failed"',
        "c1a89cb774083905 smtp authentication user=x result=tempfail",  # backend outage
        "c1a89cb774083905 smtp disconnected reason=quit",
    )
    events, stats = run(log)
    assert fails(events) == [
        ("185.234.219.64", "admin"),
        ("185.234.219.64", "test"),
        ("185.234.219.64", None),
    ]
    assert stats.malformed == 0


def test_opensmtpd_real_lines_of_each_generation() -> None:
    # sshguard's two 6.0 lines (tests/data/sshguard-opensmtpd.log) carry no syslog
    # envelope: one is given to them. "503 ... not supported" is a scanner, no attempt.
    lines = (DATA / "sshguard-opensmtpd.log").read_text().splitlines()
    assert len(lines) == 2
    events, stats = run(smtpd(*lines))
    assert fails(events) == [("128.237.183.69", None)]
    assert (stats.used, stats.irrelevant, stats.malformed) == (1, 1, 0)


@pytest.mark.skipif(not (CORPUS / "wazuh").is_dir(), reason="../shared/corpus/wazuh (GPL) absent")
def test_opensmtpd_wazuh_5_x_lines() -> None:
    # Wazuh's OpenSMTPD 5.x lines, as logged: a local session's message, a 421 to MAIL
    # FROM, session bookkeeping. No client address, no credentials: no event, no error.
    events, stats = run((CORPUS / "wazuh" / "opensmtpd.log").read_bytes())
    assert events == []
    assert (stats.lines, stats.used, stats.malformed, stats.unrecognized) == (7, 1, 0, 0)


def test_opensmtpd_6_0_and_5_x_messages() -> None:
    log = smtpd(  # 6.0: one message line per recipient, the session's end completes it
        "45addba89269aeaa smtp event=connected address=2001:db8::7 host=x.example",
        "45addba89269aeaa smtp event=authentication user=bob result=ok",
        "45addba89269aeaa smtp event=message msgid=4296f490 from=<bob@example.org> "
        "to=<a@example.com> size=1746 ndest=1 proto=ESMTP",
        "45addba89269aeaa smtp event=message msgid=4296f490 from=<bob@example.org> "
        "to=<b@example.com> size=1746 ndest=1 proto=ESMTP",
        "45addba89269aeaa smtp event=closed reason=quit",
        # 5.x
        "smtp-in: New session 08d856b172f69c5c from host ix.example.com [192.0.2.9]",
        "smtp-in: Authentication failed for user carol on session 08d856b172f69c5c",
        'smtp-in: Failed command on session 08d856b172f69c5c: "AUTH PLAIN" => 535 '
        "Authentication failed",
        "smtp-in: Accepted authentication for user carol on session 08d856b172f69c5c",
        "smtp-in: Accepted message 4296f491 on session 08d856b172f69c5c: "
        "from=<carol@example.org>, size=1746, nrcpts=3, proto=ESMTP",
        "smtp-in: Closing session 08d856b172f69c5c",
    )
    events, stats = run(log)
    subs = [e for e in events if isinstance(e, Submission)]
    assert [(s.account, str(s.ip), s.recipient_count, s.recipients) for s in subs] == [
        ("bob", "2001:db8::7", 2, ("a@example.com", "b@example.com")),
        ("carol", "192.0.2.9", 3, ()),
    ]
    assert fails(events) == [("192.0.2.9", "carol")]
    assert sum(1 for e in events if isinstance(e, AuthAttempt) and e.succeeded) == 2
    assert stats.malformed == 0


def test_opensmtpd_bad_input_is_counted_not_raised() -> None:
    log = smtpd(
        "0123456789abcdef smtp authentication user=eve result=permfail",  # no connect seen
        "1123456789abcdef smtp connected address=999.1.2.3 host=x",  # invalid address
        "2123456789abcdef smtp connected host=x",  # truncated
        "3123456789abcdef smtp connected address=local host=mx",  # unix socket
        "3123456789abcdef smtp authentication user=root result=ok",
        "4123456789abcdef smtp authentication user=eve",  # truncated
    )
    events, stats = run(log)
    assert events == []
    assert stats.malformed == 4
    assert stats.invalid_ip == 1
    reasons = " / ".join(r for _, _, r in stats.examples["malformed"])
    assert "was not seen connecting" in reasons


def test_opensmtpd_sessions_stay_bounded() -> None:
    parser = LogParser(year=2024, tz="UTC", max_sessions=50)
    for i in range(1000):
        parser.feed(SMTPD + f"{i:016x} smtp connected address=192.0.2.1 host=x", i)
    assert len(parser._others.smtpd) == 50


# -- Courier ----------------------------------------------------------------------------


def test_courier_real_lines() -> None:
    events, stats = run((DATA / "sshguard-courier.log").read_bytes())
    assert fails(events) == [
        ("1.2.3.4", "fakeemail@example.com"),
        ("2001:470:df49:2:9df9:4e98:31e1:1720", "fakeemail@example.com"),
        ("121.226.61.81", "fakeemail@example.com"),  # ::ffff: mapped: IPv4
        ("1.2.3.4", "britton"),
        ("2001:470:df49:2:9df9:4e98:31e1:1720", "britton"),
        ("121.226.61.81", "britton"),
        ("177.19.165.26", None),
    ]
    assert [e.service for e in auths(events)] == ["imap"] * 3 + ["pop3"] * 3 + ["imap"]
    assert stats.used == 7


def test_courier_login_success() -> None:
    # Courier's success line (imapd.c: "LOGIN, user=%s, ip=[%s], port=[%s], protocol=%s")
    events, _ = run(
        "Jun 24 15:34:21 mail imapd-ssl: LOGIN, user=alice, ip=[::ffff:192.0.2.4], "
        "port=[51234], protocol=IMAP\n"
    )
    (e,) = events
    assert isinstance(e, AuthAttempt)
    assert e.succeeded
    assert (e.account, str(e.ip), e.service) == ("alice", "192.0.2.4", "imap")


def courier_smtp(cmd: str) -> str:
    return (
        "Jul  3 23:07:20 szerver courieresmtpd: error,relay=::ffff:1.2.3.4,"
        f'msg="535 Authentication failed.",cmd: {cmd}\n'
    )


def test_courier_smtp_auth_reads_the_user_never_the_password() -> None:
    plain = base64.b64encode(b"\0alice@example.org\0hunter2").decode()
    events, _ = run(courier_smtp(f"AUTH PLAIN {plain}"))
    (e,) = auths(events)
    assert (e.account, e.mechanism) == ("alice@example.org", "PLAIN")
    assert "hunter2" not in e.to_json()
    # a bare line of the exchange: PLAIN's response holds the identity...
    events, _ = run(courier_smtp(plain))
    assert fails(events) == [("1.2.3.4", "alice@example.org")]
    # ... an AUTH LOGIN line may be the password: never read
    events, _ = run(courier_smtp(base64.b64encode(b"hunter2").decode()))
    assert fails(events) == [("1.2.3.4", None)]
    assert "hunter2" not in events[0].to_json()
    # an AUTH LOGIN initial response is the user name
    events, _ = run(courier_smtp("AUTH LOGIN " + base64.b64encode(b"bob").decode()))
    assert fails(events) == [("1.2.3.4", "bob")]


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@settings(max_examples=300)
def test_courier_smtp_hostile_cmd_never_crashes(blob: bytes) -> None:
    for raw in (blob.decode(errors="replace"), base64.b64encode(blob).decode()):
        cmd = raw.replace("\n", " ").replace("\r", " ")
        for line in (courier_smtp(cmd), courier_smtp("AUTH PLAIN " + cmd)):
            events, stats = run(line)
            assert stats.malformed + stats.used + stats.irrelevant == 1
            for e in events:
                assert isinstance(e, AuthAttempt)
                assert str(e.ip) == "1.2.3.4"
                assert e.account is None or e.account.isprintable()


def test_courier_smtp_non_auth_rejects_are_not_attempts() -> None:
    line = (
        "Apr 10 03:47:57 web courieresmtpd: error,relay=::ffff:1.2.3.4,ident=tmf,"
        "from=<tmf@example.com>,to=<mailman-subscribe@example.com>: 550 User unknown.\n"
    )
    events, stats = run(line)
    assert events == []
    assert stats.irrelevant == 1


# -- Cyrus, UW-IMAP ---------------------------------------------------------------------


def test_cyrus_and_uwimap_real_lines() -> None:
    events, stats = run((DATA / "sshguard-cyrus.log").read_bytes())
    # the only line with a syslog envelope; the others are sshguard's bare messages
    assert fails(events) == [("192.168.1.1", "testbox@domain")]
    assert auths(events)[0].mechanism == "CRAM-MD5"
    assert stats.unrecognized == 6
    # UW-IMAP lines of sshguard are bare messages: give them an envelope
    lines = (DATA / "sshguard-uwimap.log").read_text().splitlines()
    events, _ = run("".join(f"Jul 3 20:56:53 Linux2 imapd[666]: {m}\n" for m in lines))
    assert fails(events) == [("6.6.6.0", "XYZ"), ("2001:db8::a11:beef:7ac0", "XYZ")]


def test_cyrus_login_lines() -> None:
    # imapd.c / pop3d.c: "login: %s %s%s %s%s %s" (client host, user, mechanism, "+TLS",
    # "User logged in[ SESSIONID=<...>]")
    log = (
        "Oct 29 18:51:24 mailsrv cyrus/imap[79980]: login: mx.example [192.0.2.44] alice "
        "plaintext+TLS User logged in SESSIONID=<cyrus-79980-1>\n"
        "Oct 29 18:51:25 mailsrv cyrus/pop3[79981]: login: [2001:db8::5] bob CRAM-MD5 User "
        "logged in\n"
    )
    events, stats = run(log)
    assert [(str(e.ip), e.account, e.succeeded, e.mechanism, e.service) for e in auths(events)] == [
        ("192.0.2.44", "alice", True, "PLAINTEXT", "imap"),
        ("2001:db8::5", "bob", True, "CRAM-MD5", "pop3"),
    ]
    assert stats.malformed == 0


def test_uwimap_success_lines() -> None:
    # imapd.c: "Login user=%.80s host=%.80s", "Authenticated user=%.80s host=%.80s mech=%.80s"
    log = (
        "Jul 3 20:56:53 mx imapd[666]: Login user=lizdy host=h.example.net [81.169.154.112]\n"
        "Jul 3 20:56:54 mx imapd[667]: Authenticated user=bob host=x [192.0.2.8] mech=PLAIN\n"
    )
    events, _ = run(log)
    assert [(e.account, str(e.ip), e.succeeded, e.mechanism) for e in auths(events)] == [
        ("lizdy", "81.169.154.112", True, None),
        ("bob", "192.0.2.8", True, "PLAIN"),
    ]


def test_truncated_and_invalid_lines_of_other_servers_are_counted() -> None:
    log = (
        "Jun 24 15:34:21 mail imapd: LOGIN FAILED, user=x, ip=[::ffff:1.2.3\n"
        "Jun 24 15:34:21 mail imapd: LOGIN FAILED, user=x, ip=[300.1.2.3]\n"
        "Jan 4 21:51:05 h cyrus/imap[5355]: badlogin: localhost.localdomain [127.0.0\n"
        "Jul 3 20:56:53 Linux2 imapd[666]: Login failed user=lizdy auth=lizdy host=h [81.169\n"
        "May 26 07:12:40 hamster roundcube: IMAP Error: Login failed for sales@example.com\n"
        "Jun 24 15:34:21 mail imapd: LOGIN FAILED, user=ok, ip=[192.0.2.1]\n"
    )
    events, stats = run(log)
    assert fails(events) == [("192.0.2.1", "ok")]
    assert stats.malformed == 5


def test_hostile_account_names_are_refused_as_malformed() -> None:
    huge = "u" * 5000
    events, stats = run(f"Jun 24 15:34:21 mail imapd: LOGIN FAILED, user={huge}, ip=[1.2.3.4]\n")
    assert events == []
    assert stats.malformed == 1


# -- every corpus line --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("sshguard-*.log")))
def test_copied_lines_never_raise(name: str) -> None:
    for fmt in ("auto", "postfix", "dovecot", "exim", "sendmail"):
        _, stats = run((DATA / name).read_bytes(), format=fmt)
        assert stats.used + stats.irrelevant + stats.malformed + stats.unrecognized == stats.lines


def test_ip_objects_are_normalized() -> None:
    events, _ = run("Apr 23 21:59:01 dns2 imapd: LOGIN FAILED, user=s, ip=[::ffff:1.2.3.4]\n")
    assert auths(events)[0].ip == ip_address("1.2.3.4")


# -- lines with their own envelope ---------------------------------------------------------


def test_nginx_mail_proxy_real_lines() -> None:
    events, stats = run((DATA / "crowdsec-nginx-mail.log").read_bytes())
    got = [(str(e.ip), e.account, e.succeeded, e.service) for e in auths(events)]
    assert got[:5] == [
        ("5.34.207.182", "linkinpark@example.com", False, "smtp"),
        ("5.34.207.182", "spanish@example.com", False, "smtp"),
        ("5.34.207.182", "relax@example.com", False, "smtp"),
        ("5.34.207.182", "itw@example.com", False, "smtp"),
        ("154.250.207.69", "admin@example.com", False, None),  # Mailu's port 11143
    ]
    assert got.count(("154.250.207.69", "admin@example.com", False, None)) == 7
    # logins (the relay session without login: is not one), STARTTLS client
    assert [g for g in got if g[2]] == [("174.233.1.144", "admin@example.com", True, None)] * 2
    assert got[-1] == ("201.170.64.255", "postmaster", False, "smtp")
    assert len(got) == 15
    # the two HTTP access-log lines are no mail log
    assert (stats.unrecognized, stats.malformed) == (2, 0)


def test_zimbra_mailbox_log_real_lines() -> None:
    events, stats = run((DATA / "crowdsec-zimbra.log").read_bytes(), tz="Europe/Paris")
    got = [(str(e.ip), e.account, e.service) for e in auths(events)]
    assert got[0] == ("192.168.7.15", "toto.tata", "smtp")
    assert ("192.168.7.101", "toto@test.fr", None) in got  # a web client's AuthRequest
    assert len(got) == 8
    assert auths(events)[0].time.isoformat() == "2021-03-03T19:51:53+01:00"
    assert (stats.irrelevant, stats.malformed) == (1, 0)  # "handler exception" alone


def test_exchange_protocol_log_real_lines() -> None:
    events, stats = run((DATA / "crowdsec-exchange.log").read_bytes(), tz="Asia/Tokyo")
    assert [(str(e.ip), e.account, e.mechanism, e.service) for e in auths(events)] == [
        ("192.168.9.212", "testuser", "PLAIN", "imap"),
        ("192.168.9.212", "testuser", "PLAIN", "pop3"),
        ("192.168.9.212", None, None, "smtp"),  # SMTP Receive: "535 5.7.3" sent
    ]
    assert auths(events)[0].time.isoformat() == "2022-07-20T21:28:50+00:00"  # UTC, not --tz
    assert stats.used == 3
    other = (  # the session's other SMTP lines are no attempt
        "2022-07-20T21:12:06.270Z,EX\\Default,08DA4F7C11473A60,3,192.168.9.241:25,"
        "[2001:db8::9]:53722,<,EHLO ylmf-pc,\n"
        "2022-07-20T21:12:06.270Z,EX\\Default,08DA4F7C11473A60,9,192.168.9.241:25,"
        "[2001:db8::9]:53722,>,535 5.7.3 Authentication unsuccessful,\n"
    )
    events, stats = run(other)
    assert fails(events) == [("2001:db8::9", None)]
    assert stats.irrelevant == 1


def test_own_envelope_lines_bad_input() -> None:
    log = (
        "[31-Feb-2013 22:28:21 +0200]: FAILED login for u from 192.0.2.1\n"  # no such day
        "[22-Jan-2013 22:28:21 +9900]: FAILED login for u from 192.0.2.1\n"  # bad offset
        '2022/04/06 13:44:43 [info] 8#8: *2 client login failed: "x" while in http auth '
        'state, client: 300.1.1.1, server: 0.0.0.0:25, login: "a"\n'
        "2021-03-03 19:51:53,762 INFO  [q] [oport=1;] x - authentication failed for [u], x\n"
        '<co ts="2014-06-02T16:06:33.99" tr="TCP|1" mi="Bad password" us="n"/>\n'
        "[22-Jan-2013 22:28:21 +0200]: FAILED login for u from 192.0.2.1\n"
    )
    events, stats = run(log)
    assert fails(events) == [("192.0.2.1", "u")]
    assert stats.malformed == 5


def _session_lines(i: int, rcpts: int) -> list[str]:
    sid = f"{0xA000000000000000 + i:016x}"
    msgid = f"{0xC0000000 + i:08x}"
    lines = [
        f"{sid} smtp connected address=192.0.2.{i % 250 + 1} host=<unknown>",
        f"{sid} smtp authentication user=user{i} result=ok",
        f"{sid} smtp message msgid={msgid} size={100 + i} nrcpt={rcpts} proto=ESMTP",
    ]
    lines += [
        f"{sid} smtp envelope evpid={msgid}{r:08x} from=<user{i}@example.org> to=<r{r}@example.com>"
        for r in range(rcpts)
    ]
    return [*lines, f"{sid} smtp disconnected reason=quit"]


@given(st.lists(st.integers(1, 4), min_size=1, max_size=12), st.randoms(use_true_random=False))
@settings(max_examples=60)
def test_opensmtpd_interleaved_sessions_join_right(rcpts: list[int], rnd: random.Random) -> None:
    queues = [_session_lines(i, n) for i, n in enumerate(rcpts)]
    merged: list[str] = []
    while any(queues):  # a random interleaving that keeps each session's order
        q = rnd.choice([q for q in queues if q])
        merged.append(q.pop(0))
    events, stats = run(smtpd(*merged))
    subs = sorted((e for e in events if isinstance(e, Submission)), key=lambda s: s.size or 0)
    assert [(s.account, s.recipient_count, len(s.recipients)) for s in subs] == [
        (f"user{i}", n, n) for i, n in enumerate(rcpts)
    ]
    assert [str(s.ip) for s in subs] == [f"192.0.2.{i % 250 + 1}" for i in range(len(rcpts))]
    assert (stats.expired_joins, stats.unfinished_joins, stats.malformed) == (0, 0, 0)


def test_opensmtpd_same_session_id_on_two_servers_does_not_mix() -> None:
    log = (
        "Jul  6 06:01:40 mx1 smtpd[1]: 5df87c903d709659 smtp connected address=192.0.2.1 host=a\n"
        "Jul  6 06:01:40 mx2 smtpd[1]: 5df87c903d709659 smtp connected address=192.0.2.2 host=b\n"
        "Jul  6 06:01:41 mx1 smtpd[1]: 5df87c903d709659 smtp authentication user=a result=ok\n"
        "Jul  6 06:01:41 mx2 smtpd[1]: 5df87c903d709659 smtp authentication user=b "
        "result=permfail\n"
    )
    events, _ = run(log)
    assert [(e.server, str(e.ip), e.account, e.succeeded) for e in auths(events)] == [
        ("mx1", "192.0.2.1", "a", True),
        ("mx2", "192.0.2.2", "b", False),
    ]


# Every message form, then one token repeated to the length limit: each line must be read
# in time linear in its length (a backtracking pattern took 435 s on one such UW-IMAP
# line, and 1.8 s on a Cyrus one, before they were rewritten); each is counted.
_HOSTILE_STARTS = (
    "Jul  6 06:01:40 mx smtpd[1]: 5df87c903d709659 smtp connected ",
    "Jul  6 06:01:40 mx smtpd[1]: 5df87c903d709659 smtp failed-command ",
    "Jul  6 06:01:40 mx smtpd[1]: 5df87c903d709659 smtp envelope ",
    "Jul  6 06:01:40 mx smtpd[1]: smtp-in: Accepted authentication for user ",
    'Jul  6 06:01:40 mx smtpd[1]: smtp-in: Failed command on session 5df87c903d709659: "',
    "Jun 24 15:34:21 mail imapd: LOGIN FAILED, ",
    'Jul  3 23:07:20 s courieresmtpd: error,relay=1.2.3.4,msg="535 x",cmd: AUTH PLAIN ',
    "Jan 4 21:51:05 h cyrus/imap[5]: badlogin: ",
    "Jan 4 21:51:05 h cyrus/imap[5]: login: ",
    "Jul 3 20:56:53 L imapd[666]: Login failed ",
    "May 26 07:12:40 h roundcube: IMAP Error: Login failed for ",
    "Jul 18 16:07:18 ares perdition.imaps[3194]: Auth: ",
    "Nov 15 00:34:53 r solid-pop3d[3822]: authentication failed for user ",
    "2016-11-07 22:21:20   smtp: ",
    "03-07-2005 23:07:20   SMTP Server: Authentication failed for user ",
    "[22-Jan-2013 22:28:21 +0200]: FAILED login for ",
    "2022/04/06 13:44:43 [info] 8#8: *2 client login failed: ",
    "2021-03-03 19:51:53,762 INFO  [q] [",
    '<co ts="2014-06-02T16:06:33.99" ',
)
_HOSTILE_TOKENS = ("[", "[a ", "host=[", "->", " from 1.2.3.4", '="', ",", "(", ": ", " ; ")


def test_hostile_repetitions_are_read_in_linear_time() -> None:
    parser = LogParser(year=2024, tz="UTC")
    n = 0
    for start in _HOSTILE_STARTS:
        for token in _HOSTILE_TOKENS:
            n += 1
            parser.feed(start + token * (30000 // len(token)), n)
    stats = parser.stats
    assert stats.lines == n
    assert stats.used + stats.irrelevant + stats.malformed + stats.unrecognized == n
