"""A real Postfix and a real Dovecot on loopback consulting our policy servers.

Follows ../shared/integration/postfix-dovecot.md: Postfix (own config directory, queue
and data under a temporary directory, submission smtpd on a free 127.0.0.1 port,
SASL through Dovecot, everything delivered to discard:) with check_policy_service at
RCPT and end-of-data pointing at our PostfixPolicyServer; Dovecot (auth only) with
auth_policy_server_url pointing at our DovecotPolicyServer. A real SMTP client
(smtplib) authenticates and sends from several 127.x.y.z source addresses.

Skipped when root or the programs are missing, except under CI
(AUTHABUSE_REQUIRE_INTEGRATION=1), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authabuse.detector import Detector
from authabuse.events import AuthAttempt, Submission, parse_ip
from authabuse.geo import Location, RangeTable
from authabuse.rules import Policy, RuleSet, default_rules
from authabuse.servers import (
    DovecotAnswers,
    DovecotPolicyServer,
    PostfixAnswers,
    PostfixPolicyServer,
)

QUIET: dict[str, Any] = {
    "stdin": subprocess.DEVNULL,
    "stdout": subprocess.DEVNULL,
    "stderr": subprocess.DEVNULL,
}
USERS = {
    "alice@e2e.test": "alice-secret",
    "mallory@e2e.test": "mallory-secret",
    "eve@e2e.test": "eve-secret",
    "boom@e2e.test": "boom-secret",
}
REJECT = "REJECT 5.7.1 account blocked: abuse detected"


def _require_programs() -> None:
    missing = [p for p in ("postfix", "dovecot", "doveadm") if shutil.which(p) is None]
    reason = None
    if missing:
        reason = f"needs {', '.join(missing)} (apt packages postfix dovecot-core)"
    elif os.geteuid() != 0:
        reason = "needs root: Postfix's master must be started by root"
    if reason is None:
        return
    if os.environ.get("AUTHABUSE_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"integration test required in CI: {reason}")
    pytest.skip(reason)


def _text(reply: bytes | str) -> str:
    return reply.decode() if isinstance(reply, bytes) else reply


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(pred: Any, what: str, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timeout waiting for {what}")


def _smtp_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(3) == b"220"
    except OSError:
        return False


def _alive(pid: int) -> bool:  # daemons are re-parented to PID 1; a zombie counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {run}/postfix-queue
data_directory = {run}/postfix-data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {logs}/maillog
maillog_file_prefixes = {logs}
myhostname = mx.e2e.test
mydomain = e2e.test
myorigin = $mydomain
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP e2e
mydestination =
relayhost =
relay_domains =
local_transport = discard:local mail discarded by e2e
virtual_transport = discard:virtual mail discarded by e2e
relay_transport = discard:relay mail discarded by e2e
default_transport = discard:mail discarded by e2e
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtpd_sasl_type = dovecot
smtpd_sasl_path = {run}/dovecot/auth-postfix
smtpd_sasl_auth_enable = no
smtpd_tls_security_level = none
# authabuse: RCPT time checks, end-of-data records the message with its real size/count.
policy_service = check_policy_service {{ inet:127.0.0.1:{policy_port},
    timeout=10s, default_action=DUNNO }}
mua_relay_restrictions = permit_sasl_authenticated, reject
mua_recipient_restrictions = $policy_service, permit_sasl_authenticated, reject
mua_end_of_data_restrictions = $policy_service
"""

MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_security_level=none
  -o smtpd_tls_auth_only=no
  -o smtpd_client_restrictions=
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_relay_restrictions=$mua_relay_restrictions
  -o smtpd_recipient_restrictions=$mua_recipient_restrictions
  -o smtpd_end_of_data_restrictions=$mua_end_of_data_restrictions
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""

DOVECOT_CONF = """\
protocols = none
listen = 127.0.0.1
base_dir = {run}/dovecot
state_dir = {run}/dovecot-state
instance_name = authabuse-e2e-{tag}
log_path = {logs}/dovecot.log
info_log_path = {logs}/dovecot.log
debug_log_path = {logs}/dovecot.log
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_debug = yes
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {conf}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={run}/home/%u
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
auth_policy_server_url = http://127.0.0.1:{policy_port}/
auth_policy_server_api_header = X-API-Key: e2e-key
auth_policy_hash_nonce = e2e-test-nonce-not-secret
auth_policy_server_timeout_msecs = 2000
auth_policy_reject_on_fail = no
auth_policy_check_before_auth = yes
auth_policy_check_after_auth = yes
auth_policy_report_after_auth = yes
"""


COUNTRIES = ["JP", "BR", "NG", "VN", "US", "RU", "IN", "CN", "DE", "FR", "GB", "PL", "TR", "ID"]


class LoopbackGeo:
    """Real CSV range tables (country and ASN) placing 127.N.0.0/16 in countries.

    Our resolvers answer "not routable" for loopback whatever a table says, so the test
    reads the tables' data directly (``lookup_int``): 127.0/16 is Japan (alice's home),
    127.1/16 Brazil, 127.2/16 Nigeria, ... each its own autonomous system.
    """

    def __init__(self, root: Path) -> None:
        (root / "country.csv").write_text(
            "".join(f"127.{i}.0.0,127.{i}.255.255,{cc}\n" for i, cc in enumerate(COUNTRIES))
        )
        (root / "asn.csv").write_text(
            "".join(
                f"127.{i}.0.0,127.{i}.255.255,{64500 + i},E2E Net {i}\n"
                for i in range(len(COUNTRIES))
            )
        )
        self.country = RangeTable.from_csv(root / "country.csv")
        self.asn = RangeTable.from_csv(root / "asn.csv")

    def resolve(self, ip: Any) -> Location | None:
        n = int(ip)
        cc, asn = self.country.lookup_int(n), self.asn.lookup_int(n)
        if cc is None and asn is None:
            return None
        return Location(country=cc, asn=asn, source="e2e tables")  # type: ignore[arg-type]


class Recording:
    """The real Detector, keeping the events it recorded; accounts boom* raise (a bug)."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.recorded: list[Submission | AuthAttempt] = []

    def _guard(self, event: Submission | AuthAttempt) -> None:
        if (event.account or "").startswith("boom"):
            raise RuntimeError("decider exploded")

    def check(self, event: Submission | AuthAttempt) -> Any:
        self._guard(event)
        return self.detector.check(event)

    def process(self, event: Submission | AuthAttempt) -> Any:
        self._guard(event)
        self.recorded.append(event)
        return self.detector.process(event)


@dataclass
class MailStack:
    smtp_port: int
    root: Path
    dovecot_conf: Path
    postfix_policy: PostfixPolicyServer
    dovecot_policy: DovecotPolicyServer
    submissions: Any  # decider of the Postfix side
    logins: Any  # decider of the Dovecot side
    mallory_rejected_at: int = 0  # the network where Postfix first applied our action

    def submit(
        self,
        source_ip: str,
        user: str,
        rcpts: tuple[str, ...] = ("bob@example.org",),
        password: str | None = None,
    ) -> tuple[int, str]:
        """One AUTH PLAIN and one message from ``source_ip``; (code, text)."""
        with smtplib.SMTP(
            "127.0.0.1",
            self.smtp_port,
            source_address=(source_ip, 0),
            local_hostname="client.e2e.test",
            timeout=30,
        ) as s:
            s.ehlo()
            s.user, s.password = user, password if password is not None else USERS[user]
            try:
                s.auth("PLAIN", s.auth_plain)  # exactly one attempt (recipe pitfall 14)
            except smtplib.SMTPAuthenticationError as exc:
                return exc.smtp_code, _text(exc.smtp_error)
            try:
                s.sendmail(user, list(rcpts), f"From: {user}\r\nSubject: t\r\n\r\nhello\r\n")
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                return code, text.decode()
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code, _text(exc.smtp_error)
            return 250, "accepted"

    def doveadm_auth(self, user: str, rip: str, service: str = "imap") -> tuple[int, str]:
        out = subprocess.run(
            [
                "doveadm",
                "-c",
                str(self.dovecot_conf),
                "auth",
                "test",
                "-x",
                f"service={service}",
                "-x",
                f"rip={rip}",
                "-x",
                "lip=127.0.0.1",
                user,
                USERS[user],
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return out.returncode, out.stdout + out.stderr

    def maillog(self) -> str:
        path = self.root / "logs" / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def mailstack(request: pytest.FixtureRequest, net: Any) -> Iterator[MailStack]:
    _require_programs()

    # A world-traversable root: Postfix daemons run as user postfix.
    root = Path(tempfile.mkdtemp(prefix="authabuse-e2e-", dir="/tmp"))
    root.chmod(0o755)
    run, logs, conf_pf, conf_dc = root / "run", root / "logs", root / "postfix", root / "dovecot"
    for d in (run, logs, conf_pf, conf_dc, run / "home"):
        d.mkdir(mode=0o755)
    queue, data = run / "postfix-queue", run / "postfix-data"
    queue.mkdir(mode=0o755)
    data.mkdir(mode=0o700)
    shutil.chown(data, "postfix", "postfix")

    threads = net.ServerThread()
    # Two deployments with their own state, as two `authabuse serve` processes would be,
    # both the real Detector with the default rules. The login side is configured more
    # conservatively (abuse from 150 points instead of 100), so the test sees Postfix's
    # action first and Dovecot's refusal at login one network later.
    geo = LoopbackGeo(root)
    submissions = Recording(Detector(geo=geo))
    base = default_rules()
    strict = RuleSet(base.rules, Policy(suspicious=50, abuse=150), base.allow)
    logins = Recording(Detector(geo=geo, rules=strict))
    pf_policy = PostfixPolicyServer(
        submissions, answers=PostfixAnswers(abuse=REJECT), server_name="mx.e2e.test"
    )
    dc_policy = DovecotPolicyServer(
        logins,
        answers=DovecotAnswers(message="account blocked by authabuse"),
        api_header="X-API-Key: e2e-key",
    )
    pf_addr = threads.start(pf_policy)
    dc_addr = threads.start(dc_policy)
    smtp_port = _free_port()
    fmt = {"run": run, "logs": logs, "conf": conf_dc, "smtp_port": smtp_port, "tag": root.name}
    (conf_pf / "main.cf").write_text(MAIN_CF.format(**fmt, policy_port=pf_addr[1]))
    (conf_pf / "master.cf").write_text(MASTER_CF.format(**fmt))
    dovecot_conf = conf_dc / "dovecot.conf"
    dovecot_conf.write_text(DOVECOT_CONF.format(**fmt, policy_port=dc_addr[1]))
    (conf_dc / "users").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in USERS.items()))
    stack = MailStack(smtp_port, root, dovecot_conf, pf_policy, dc_policy, submissions, logins)
    try:
        # Dovecot first (Postfix's smtpd dies without the SASL socket, pitfall 7); never
        # give it a pipe (pitfall 10).
        subprocess.run(["dovecot", "-c", str(dovecot_conf)], check=True, **QUIET)
        _wait((run / "dovecot" / "auth-postfix").is_socket, "dovecot auth socket")
        for cmd in ("check", "start"):
            rc = subprocess.run(["postfix", "-c", str(conf_pf), cmd], check=False, **QUIET)
            if rc.returncode:
                raise RuntimeError(f"postfix {cmd} failed:\n{stack.maillog()[-2000:]}")
        _wait(lambda: _smtp_banner(smtp_port), "postfix 220 banner")
        yield stack
    finally:
        pid_file = queue / "pid" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            subprocess.run(["postfix", "-c", str(conf_pf), "stop"], check=False, **QUIET)
            _wait(lambda: not _alive(pid), "postfix master exit")
        dc_pid = run / "dovecot" / "master.pid"
        if dc_pid.exists():
            pid = int(dc_pid.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            _wait(lambda: not _alive(pid), "dovecot master exit")
        threads.close()
        if not request.session.testsfailed:
            shutil.rmtree(root, ignore_errors=True)


REJECTED = "5.7.1 <bob@example.org>: Recipient address rejected: account blocked: abuse detected"


def test_postfix_accepts_normal_mail_and_rejects_once_abused(mailstack: MailStack) -> None:
    # alice: messages from her usual address (Japan), three recipients on the second.
    assert mailstack.submit("127.0.0.5", "alice@e2e.test") == (250, "accepted")
    rcpts = ("a@example.org", "b@example.net", "c@example.com")
    assert mailstack.submit("127.0.0.5", "alice@e2e.test", rcpts) == (250, "accepted")
    # mallory: the stolen password is used from a new network in a new country for each
    # message, until Postfix applies our abuse action (the default rules need a few).
    outcomes = []
    for n in range(1, len(COUNTRIES)):
        code, text = mailstack.submit(f"127.{n}.0.1", "mallory@e2e.test")
        outcomes.append((n, code, text))
        if code != 250:
            break
    rejected_at, code, text = outcomes[-1]
    assert (code, text) == (554, REJECTED), outcomes
    assert rejected_at >= 3, outcomes  # the first networks alone are no evidence
    mailstack.mallory_rejected_at = rejected_at
    # alice is unaffected.
    assert mailstack.submit("127.0.0.5", "alice@e2e.test") == (250, "accepted")

    recorded = [e for e in mailstack.submissions.recorded if isinstance(e, Submission)]
    alice = [e for e in recorded if e.account == "alice@e2e.test"]
    assert [e.recipient_count for e in alice] == [1, 3, 1]  # real counts from end-of-data
    assert alice[1].recipients == rcpts
    assert all(e.queue_id and e.size and e.size > 0 for e in alice)
    accepted = [f"127.{n}.0.1" for n, c, _ in outcomes if c == 250]
    assert [str(e.ip) for e in recorded if e.account == "mallory@e2e.test"] == accepted
    verdict = mailstack.submissions.detector.check(
        Submission(
            time=recorded[-1].time,
            ip=parse_ip(f"127.{rejected_at}.0.1"),
            account="mallory@e2e.test",
        )
    )
    assert str(verdict.level) == "abuse"
    assert verdict.findings  # the verdict explains itself
    log = mailstack.maillog()
    assert "sasl_username=alice@e2e.test" in log
    assert f"NOQUEUE: reject: RCPT from unknown[127.{rejected_at}.0.1]: 554 5.7.1" in log
    for e in alice:  # the queue ids we recorded are Postfix's own
        assert f"{e.queue_id}: client=unknown[127.0.0.5]" in log


def test_dovecot_login_refused_once_abused(mailstack: MailStack) -> None:
    # eve's password is tried from a new network in a new country each time: the first
    # three logins pass, then the login side refuses and keeps refusing (with the default
    # rules at the fifth network, or the fourth when the cross-account "domain-wave" rule
    # adds to it after mallory of the same domain was flagged).
    results = [
        mailstack.doveadm_auth("eve@e2e.test", f"127.{n}.10.1") for n in range(1, len(COUNTRIES))
    ]
    codes = [rc for rc, _ in results]
    assert codes[:3] == [0, 0, 0], results
    assert "auth succeeded" in results[0][1]
    first_refused = codes.index(77)
    assert set(codes[first_refused:]) == {77}, codes
    out = results[-1][1]
    assert "auth failed" in out
    assert "reason=account blocked by authabuse" in out
    rc, out = mailstack.doveadm_auth("alice@e2e.test", "127.0.0.5")
    assert rc == 0, out
    # Reports recorded the logins, with Dovecot's own values; the refused one as a failure.
    eve = [e for e in mailstack.logins.recorded if e.account == "eve@e2e.test"]
    assert [e.succeeded for e in eve] == [rc == 0 for rc in codes]
    assert {e.service for e in eve} == {"imap"}
    text = mailstack.dovecot_policy.metrics.render()
    assert 'level="abuse",action="reject"' in text
    assert (
        f"policy(eve@e2e.test,127.{first_refused + 1}.10.1): Policy response -1"
        in (mailstack.root / "logs" / "dovecot.log").read_text()
    )


def test_login_side_stops_smtp_auth_too(mailstack: MailStack) -> None:
    # After Postfix rejected mallory's mail, more new networks make the login side (more
    # conservative: abuse from 150 points) refuse SMTP AUTH itself: Dovecot's policy is
    # asked for Postfix's SASL logins as well.
    start = mailstack.mallory_rejected_at + 1
    outcomes = []
    for n in range(start, len(COUNTRIES)):
        code, text = mailstack.submit(f"127.{n}.0.1", "mallory@e2e.test")
        outcomes.append((code, text))
        if code == 535:
            break
    assert outcomes[-1][0] == 535, outcomes
    assert "account blocked by authabuse" in outcomes[-1][1]
    assert {c for c, _ in outcomes[:-1]} <= {250, 554}, outcomes


def test_internal_errors_fail_open_through_real_postfix_and_dovecot(mailstack: MailStack) -> None:
    # The deciders raise for accounts named boom*: both servers answer their fail-open
    # action (DUNNO / status 0), so the real Postfix and Dovecot let the mail through.
    pf_errors = mailstack.postfix_policy.metrics.get("authabuse_internal_errors_total")
    dc_errors = mailstack.dovecot_policy.metrics.get("authabuse_internal_errors_total")
    assert mailstack.submit("127.0.0.9", "boom@e2e.test") == (250, "accepted")
    # RCPT and END-OF-MESSAGE on the Postfix side; allow (twice) on the Dovecot side.
    assert mailstack.postfix_policy.metrics.get("authabuse_internal_errors_total") == pf_errors + 2
    assert mailstack.dovecot_policy.metrics.get("authabuse_internal_errors_total") >= dc_errors + 2
