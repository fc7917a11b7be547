"""Other mail servers' syslog lines: OpenSMTPD, Courier, Cyrus, UW-IMAP and more (private).

``LogParser._route`` sends the lines of the programs in :data:`PROGRAMS` (and names
starting with :data:`PREFIXES`) here; which server wrote a line is then told by its
text, since several servers share a program name (``imapd`` is Courier's, Cyrus's and
UW-IMAP's). What is read:

* **OpenSMTPD** (``smtpd``), all three log generations, joined by session id:

  - 6.4+: ``SID smtp connected address=IP host=H``, ``SID smtp authentication user=U
    result=ok|permfail|tempfail``, ``SID smtp failed-command command="AUTH PLAIN (...)"
    result="535 ..."``, ``SID smtp message msgid=M size=N nrcpt=N proto=P`` then one
    ``SID smtp envelope evpid=E from=<s> to=<r>`` per recipient, ``SID smtp
    disconnected``;
  - 6.0-6.3: the same with ``smtp event=<verb>``; ``event=failed-command`` also carries
    ``address=``; ``event=message msgid=M from=<s> to=<r> size=N ndest=N`` is logged once
    per recipient; ``event=closed`` ends the session;
  - 5.x: ``smtp-in: New session SID from host H [IP]``, ``smtp-in: Accepted|Authentication
    failed ... for user U on session SID``, ``smtp-in: Failed command on session SID: "..."
    => 535 ...``, ``smtp-in: Accepted message M on session SID: from=<s>, ...``,
    ``smtp-in: Closing session SID``.

  A login (``result=ok``) and a failure (``result=permfail``) take the client address
  from the session's connect line; the 535 reply OpenSMTPD logs after a failure is the
  same attempt and is counted once (a 535 with no failure line before it, as when the
  authentication line was not logged, is counted on its own). ``tempfail`` is the
  server's own backend failing: no event. A message of an authenticated session is a
  submission (sender, recipients and size from its message and envelope lines), emitted
  when every recipient was seen, at the end of the session, or when the join expires.
  Sessions over the local socket (``address=local``) have no client address: no event.

* **Courier**: ``imapd|pop3d|...: LOGIN, user=U, ip=[IP]`` (login) and ``LOGIN FAILED,
  user=U, ip=[IP]`` (failure; ``user=`` may be absent); ``courieresmtpd: error,relay=IP,
  msg="535 ...",cmd: ...`` is a failed SMTP AUTH. Its ``cmd:`` is the last line the
  client sent: for ``AUTH PLAIN <base64>`` the account is the decoded authentication
  identity (the password in the same string is dropped unread); an ``AUTH LOGIN
  <base64>`` initial response is the user name. A bare base64 line may be the *password*
  of an AUTH LOGIN exchange, so it is never read. Base64 that does not decode, or does
  not decode to UTF-8 text, gives the failure without an account.
* **Cyrus** (``imap``, ``cyrus/imaps``, ``pop3``, ``timsieved``, ``sieve`` ...):
  ``badlogin: name [IP] MECH [user] reason`` is a failure, ``login: name [IP] user
  MECH[+TLS] User logged in`` a login.
* **UW-IMAP** (``imapd``, ``ipop3d``): ``Login failed``, ``Login excessive login
  failures``, ``Login disabled`` and ``Failed ... override of`` ``user=U ... host=name
  [IP]`` are failures; ``Login user=U host=name [IP]``, ``Authenticated user=...`` and
  ``Auth user=...`` are logins.
* **Roundcube** (``roundcube``, syslog or journal): ``IMAP Error: Login failed for U
  [against H] from IP. ...`` is a failed webmail login (service ``webmail``);
  ``Successful login for U (ID: n) from IP`` a login. User names may hold ``from IP``
  themselves: the client address is the one followed by the IMAP server's reply (or by
  the proxy's ``(X-Real-IP...``, or that ends the line).
* **perdition** (``perdition``, ``perdition.imaps`` ...): ``Auth: IP:port->IP:port ...
  authentication_id="U" ... protocol=P ... status="ok"|"failed: ..."``.
* **solid-pop3d**: ``authentication failed ... U - IP``, ``APOP authentication failed
  for user U - IP``, ``root login not allowed - IP``, ``can't find APOP secret for user
  U - IP``.

Lines with their own envelope (not syslog), read by :meth:`OtherServersParser.unframed`
when no syslog, journal or Exim form matched (their stamps carry no zone, except
Roundcube's: ``--tz`` places them):

* **Roundcube**'s own files (``logs/errors``, ``logs/userlogins``): ``[22-Jan-2013
  22:28:21 +0200]: [<session>] IMAP Error: Login failed for U from IP. ...``, ``FAILED
  login for U from IP``, ``Failed login for U from IP in session S``.
* **nginx mail proxy** error log (Mailu and the like): ``2022/04/06 13:44:43 [info] 8#8:
  *29109 client login failed: "..." while in http auth state, client: IP, server:
  A:PORT, login: "U"`` (failure) and ``client logged in, client: IP, ..., login: "U"``
  (login; without ``login:`` it is an unauthenticated relay session: no event).
* **Zimbra** ``mailbox.log``: ``... [oip=IP;...;oproto=smtp;] ... authentication failed
  for [U], invalid password|account not found`` (the original client ``oip=``).
* **HCL/IBM Domino**: ``DD-MM-YYYY HH:MM:SS   smtp: U [IP] authentication failure using
  internet password`` and ``SMTP Server[ [...]]: Authentication failed for user U ;
  connecting host [IP]`` (day before month, as in the logs seen).
* **Kerio Connect**: ``[17/May/2017 19:44:25] Failed SMTP login from IP with SASL method
  M.``
* **Microsoft Exchange** protocol logs (CSV, UTC stamps): an SMTP Receive line whose
  event is ``>`` (sent) with a ``535`` reply is a failed AUTH of its remote endpoint; an
  IMAP4/POP3 line whose context holds ``AuthFailed:`` is a failed login of its ``cIp``
  and ``user``. (Successes are in the message-tracking log, not read.)
* **Oracle Communications Messaging Server** (``LOG_FORMAT=4``): ``<co ts="..." sc="tcp_..."
  tr="TCP|local|port|remote|port" mi="Bad password" us="U" .../>`` (failure) and
  ``mi="Authentication successful - switched to channel ..."`` (login).

Every account comes from untrusted input and is kept as text (never a password); an
address that is not one is a malformed line (counted, with its reason).
"""

from __future__ import annotations

import binascii
import csv
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo

from authabuse.events import Event, IPAddress

from ._common import Context, LineError, Pending, ip_or_bad, last_bracketed
from ._fast import new_auth

__all__ = ["PREFIXES", "PROGRAMS", "OtherServersParser"]

PROGRAMS = frozenset(
    {
        # OpenSMTPD
        "smtpd",
        # Courier (imapd, pop3d are also Cyrus's / UW-IMAP's names)
        "imapd",
        "imapd-ssl",
        "pop3d",
        "pop3d-ssl",
        "courierpop3login",
        "courierimaplogin",
        "courieresmtpd",
        # Cyrus
        "imap",
        "imaps",
        "pop3",
        "pop3s",
        "timsieved",
        "sieve",
        # UW-IMAP
        "ipop3d",
        "ipop2d",
        # others
        "smtp",  # Domino, ISO-stamped (Postfix's is "postfix/smtp")
        "roundcube",
        "solid-pop3d",
    }
)
"""Program names whose lines :class:`OtherServersParser` reads."""

PREFIXES = ("cyrus/", "perdition", "courier")
"""Program-name prefixes whose lines :class:`OtherServersParser` reads."""

# -- OpenSMTPD ----------------------------------------------------------------------------

_SID = re.compile(r"[0-9a-f]{16}")
_KV = re.compile(r'([a-z-]+)=("(?:[^"\\]|\\.)*"|\S*)')
_SMTPIN_NEW = re.compile(r"New session ([0-9a-f]{16}) from host (\S*) \[([^\]]*)\]")
_SMTPIN_AUTH = re.compile(
    r"(Accepted authentication|Authentication failed) for user (.*) on session ([0-9a-f]{16})$"
)
_SMTPIN_FAILED = re.compile(r'Failed command on session ([0-9a-f]{16}): ".*" => ([0-9]{3})')
_SMTPIN_MESSAGE = re.compile(r"Accepted message ([0-9a-f]{8}) on session ([0-9a-f]{16}): (.*)")
_SMTPIN_END = re.compile(
    r"(?:Closing session|Received disconnect from session|Disconnecting session) ([0-9a-f]{16})"
)
_ANGLE = re.compile(r"(from|to)=<([^>]*)>")
_NUMBER = re.compile(r"\b(size|nrcpts|nrcpt|ndest)=([0-9]+)")


_MAX_SESSION_MESSAGES = 1000  # message ids a session remembers for its end


class _SmtpdSession:
    """One OpenSMTPD SMTP session: client address, login, unmatched failures, messages."""

    __slots__ = ("account", "failures", "ip", "messages")

    def __init__(self, ip: IPAddress | None) -> None:
        self.ip = ip
        self.account: str | None = None
        self.failures = 0  # failed logins reported whose 535 reply is not yet seen
        self.messages: list[str] = []  # message ids whose recipient count is unknown


# -- Courier, Cyrus, UW-IMAP, Roundcube, perdition, solid-pop3d -------------------------

_COURIER = re.compile(
    r"LOGIN(?P<failed> FAILED)?, (?:user=(?P<user>[^,]*), )?(?:.*?)ip=\[(?P<ip>[^\]]*)\]"
)
_COURIER_SMTP = re.compile(r'error,relay=([^,]*),(?:.*?,)?msg="(5[0-9][0-9])[^"]*",cmd: ?(.*)')
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_UW_FAIL = (
    "Login failed ",
    "Login excessive login failures ",
    "Login disabled ",
    "Failed ",
)
_UW_OK = ("Login user=", "Authenticated user=", "Auth user=")
_UW_USER = re.compile(r"\buser=(\S*)")
_UW_MECH = re.compile(r"\bmech=(\S+)")
_RC_FAILED = re.compile(r"(?:IMAP Error: )?(?:Login failed|FAILED login|Failed login) for (.*)")
_RC_OK = re.compile(r"Successful login for (.*?) \(ID: [0-9]+\) from (\S+?) in session")
_RC_FROM = re.compile(
    r" from ([0-9A-Fa-f.:]+?)(?=(\.? (?:AUTHENTICATE|LOGIN)\b)|\(X-|\.?$| in session)"
)
_RC_AGAINST = re.compile(r" against \S+$")
_PERDITION_USER = re.compile(r'\bauthentication_id="([^"]*)"')
_PERDITION_PROTO = re.compile(r"\bprotocol=(\S+)")
_PERDITION_STATUS = re.compile(r'\bstatus="([^"]*)"')
_SOLID = re.compile(
    r"(?:authentication failed(?:: no such user: |: can't map user name: | for user"
    r" | for mapped user )(\S+)|root login not allowed|can't find APOP secret for user (\S+)"
    r"|APOP authentication failed for user (\S+)) - (\S+)$"
)

# -- lines with their own envelope -------------------------------------------------------

_MONTHS = {
    name: i
    for i, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_T = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_RC_FILE = re.compile(
    r"\[([0-9]{2})-([A-Z][a-z]{2})-([0-9]{4}) " + _T + r"(?: ([+-][0-9]{4}))?\]: (.*)"
)
_NGINX = re.compile(
    r"([0-9]{4})/([0-9]{2})/([0-9]{2}) " + _T + r" \[[a-z]+\] [0-9]+#[0-9]+: (?:\*[0-9]+ )?(.*)"
)
_NGINX_MAIL = re.compile(
    r'client (login failed|logged in)(?:: "[^"]*" while in http auth state)?, client: '
    r'(\S+?)(?: using starttls)?, server: \S*?:([0-9]+), login: "(.*?)"(?:, |$)'
)
_ZIMBRA = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2}) " + _T + r",[0-9]{3} +[A-Z]+ +\[[^\]]*\] \[([^\]]*)\] (.*)"
)
_ZIMBRA_FAILED = re.compile(r"authentication failed for \[(.*?)\]")
_KERIO = re.compile(r"\[([0-9]{2})/([A-Z][a-z]{2})/([0-9]{4}) " + _T + r"\] (.*)")
_KERIO_FAILED = re.compile(r"Failed SMTP login from (\S+) with SASL method (\S+?)\.?$")
_DOMINO = re.compile(
    r"(?:\[[0-9A-Fa-f:-]+\] )?"
    r"(?:([0-9]{2})-([0-9]{2})-([0-9]{4})|([0-9]{4})-([0-9]{2})-([0-9]{2})) " + _T + r"   (.*)"
)
_DOMINO_SERVER = re.compile(
    r"SMTP Server(?: \[[^\]]*\])?:? Authentication failed for user (.*) ; connecting host (\S+)$"
)
_OIMS = re.compile(r'<co ts="([0-9]{4})-([0-9]{2})-([0-9]{2})T' + _T + r'(?:\.[0-9]+)?" (.*)/>')
_EXCHANGE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T" + _T + r"(?:\.[0-9]+)?Z,(.*)")
_EXCHANGE_EVENTS = frozenset({"+", "-", "<", ">", "*"})
_XML_ATTR = re.compile(r'([a-z]+)="([^"]*)"')
_PORT_SERVICE = {"25": "smtp", "465": "smtp", "587": "smtp", "143": "imap", "993": "imap"}
_PORT_SERVICE.update({"110": "pop3", "995": "pop3", "4190": "managesieve"})


def _service(prog: str) -> str | None:
    """Return the protocol a program name serves (``cyrus/imaps`` -> ``imap``)."""
    name = prog.rsplit("/", 1)[-1].lower()
    if "imap" in name:
        return "imap"
    if "pop" in name:
        return "pop3"
    if "sieve" in name:
        return "managesieve"
    if "smtp" in name:
        return "smtp"
    return None


def _plain_identity(blob: str) -> str | None:
    r"""Return the authentication identity of an AUTH PLAIN response, never its password.

    ``authzid NUL authcid NUL passwd`` (RFC 4616): only ``authcid`` is returned; ``None``
    when the text is not base64 of that shape or not UTF-8.

    >>> _plain_identity("AGFsaWNlAHNlY3JldA==")  # "\0alice\0secret"
    'alice'
    >>> _plain_identity("not base64!") is None, _plain_identity("/w==") is None
    (True, True)
    """
    if len(blob) > 4096 or _B64.fullmatch(blob) is None:
        return None
    try:
        raw = binascii.a2b_base64(blob)
    except (binascii.Error, ValueError):
        return None
    parts = raw.split(b"\0")
    if len(parts) != 3:
        return None
    try:
        user = parts[1].decode()
    except UnicodeDecodeError:
        return None
    return user if user.isprintable() and user else None


def _login_identity(blob: str) -> str | None:
    """Return the user name an AUTH LOGIN initial response carries (base64), or ``None``.

    >>> _login_identity("YWxpY2U="), _login_identity("alice@example.com")
    ('alice', None)
    """
    if len(blob) > 4096 or _B64.fullmatch(blob) is None:
        return None
    try:
        user = binascii.a2b_base64(blob).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return user if user.isprintable() and user else None


class OtherServersParser:
    """Turns the other servers' lines into events (see the module docstring)."""

    __slots__ = ("ctx", "smtpd")

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # OpenSMTPD sessions by (server, session id), oldest first, bounded
        self.smtpd: dict[tuple[str | None, str], _SmtpdSession] = {}

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
        if prog == "smtpd":
            return self._opensmtpd(when, host, msg, out)
        if prog == "smtp":  # Domino's ISO-stamped lines read as "STAMP   smtp: message"
            return self._domino_msg(when, host, "smtp: " + msg, out)
        if msg.startswith("LOGIN"):
            return self._courier(when, host, prog, msg, out)
        if msg.startswith("error,relay="):
            return self._courier_smtp(when, host, msg, out)
        if msg.startswith(("badlogin: ", "login: ")):
            return self._cyrus(when, host, prog, msg, out)
        if msg.startswith(_UW_FAIL) or msg.startswith(_UW_OK):
            return self._uw(when, host, prog, msg, out)
        if prog.startswith("roundcube"):
            return self._roundcube(when, host, msg, out)
        if prog.startswith("perdition"):
            return self._perdition(when, host, msg, out)
        if prog == "solid-pop3d":
            return self._solid(when, host, msg, out)
        return False

    # -- lines with their own envelope ----------------------------------------------------

    def unframed(
        self, text: str, out: list[Event], moved_to: Callable[[datetime, list[Event]], datetime]
    ) -> bool | None:
        """Read a line in one of the non-syslog forms above; ``None``: not one of them.

        ``moved_to`` is the parser's clock setter (it expires old joins).
        """
        first = text[:1]
        if first == "[":
            m = _RC_FILE.match(text)
            if m is not None:
                day, mon, year, hh, mm, ss, zone, msg = m.groups()
                when = self._when(year, _MONTHS.get(mon, 0), day, hh, mm, ss, zone)
                return self._roundcube(moved_to(when, out), None, msg, out)
            m = _KERIO.match(text)
            if m is not None:
                day, mon, year, hh, mm, ss, msg = m.groups()
                when = self._when(year, _MONTHS.get(mon, 0), day, hh, mm, ss, None)
                return self._kerio(moved_to(when, out), msg, out)
            m = _DOMINO.match(text)
            if m is not None:
                return self._domino(m, out, moved_to)
            return None
        if first == "<":
            m = _OIMS.match(text)
            if m is None:
                return None
            year, mon, day, hh, mm, ss, attrs = m.groups()
            when = self._when(year, int(mon), day, hh, mm, ss, None)
            return self._oracle(moved_to(when, out), attrs, out)
        if not first.isdigit():
            return None
        m = _NGINX.match(text)
        if m is not None:
            year, mon, day, hh, mm, ss, msg = m.groups()
            when = self._when(year, int(mon), day, hh, mm, ss, None)
            return self._nginx(moved_to(when, out), msg, out)
        m = _EXCHANGE.match(text)
        if m is not None:
            year, mon, day, hh, mm, ss, rest = m.groups()
            when = self._when(year, int(mon), day, hh, mm, ss, "+0000")
            return self._exchange(moved_to(when, out), rest, out)
        m = _ZIMBRA.match(text)
        if m is not None:
            year, mon, day, hh, mm, ss, fields, msg = m.groups()
            when = self._when(year, int(mon), day, hh, mm, ss, None)
            return self._zimbra(moved_to(when, out), fields, msg, out)
        m = _DOMINO.match(text)
        if m is not None:
            return self._domino(m, out, moved_to)
        return None

    def _when(
        self, year: str, month: int, day: str, hh: str, mm: str, ss: str, zone: str | None
    ) -> datetime:
        """Return a wall-clock stamp in ``zone`` (``+hhmm``), else in the ``--tz`` zone."""
        tz: tzinfo = self.ctx.clock.tz
        if zone is not None:
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            if minutes >= 24 * 60:
                raise LineError(f"bad UTC offset {zone!r}")
            tz = timezone(timedelta(minutes=-minutes if zone[0] == "-" else minutes))
        try:
            return datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=tz)
        except ValueError:
            raise LineError(f"bad time stamp {year}-{month}-{day} {hh}:{mm}:{ss}") from None

    def _nginx(self, when: datetime, msg: str, out: list[Event]) -> bool:
        if not msg.startswith(("client login failed", "client logged in")):
            return False
        m = _NGINX_MAIL.match(msg)
        if m is None:
            if "login: " in msg:
                raise LineError("nginx mail login line without client: or server: port")
            return False  # logged in without AUTH: a relay (MX) session
        outcome, ip_text, port, login = m.groups()
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(ip_text),
                succeeded=outcome == "logged in",
                account=login or None,
                service=_PORT_SERVICE.get(port),
            )
        )
        return True

    def _zimbra(self, when: datetime, fields: str, msg: str, out: list[Event]) -> bool:
        f = _ZIMBRA_FAILED.search(msg)
        if f is None:
            return False
        values = dict(
            item.split("=", 1) for item in fields.split(";") if "=" in item and len(item) < 2048
        )
        ip_text = values.get("oip") or values.get("ip")
        if not ip_text:
            raise LineError("Zimbra authentication failure without oip= or ip=")
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(ip_text),
                succeeded=False,
                account=f.group(1) or None,
                service=values.get("oproto") or None,
            )
        )
        return True

    def _exchange(self, when: datetime, rest: str, out: list[Event]) -> bool:
        if "535" not in rest and "AuthFailed" not in rest:
            return False
        try:
            fields = next(csv.reader([rest]))
        except (csv.Error, StopIteration):
            raise LineError("Exchange protocol log line that is not CSV") from None
        if len(fields) >= 7 and fields[5] in _EXCHANGE_EVENTS:  # SMTP Receive
            if fields[5] != ">" or not fields[6].startswith("535"):
                return False
            local, remote, user, mech = fields[3], fields[4], None, None
            service: str | None = "smtp"
        elif len(fields) >= 11 and any("AuthFailed" in f for f in fields[9:]):  # IMAP4, POP3
            local, remote, user, mech = fields[2], fields[3], fields[4], fields[9].strip()
            service = _PORT_SERVICE.get(local.rpartition(":")[2])
        else:
            return False
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(_endpoint(remote)),
                succeeded=False,
                account=user or None,
                mechanism=mech.upper() if mech else None,
                service=service,
            )
        )
        return True

    def _kerio(self, when: datetime, msg: str, out: list[Event]) -> bool:
        m = _KERIO_FAILED.match(msg)
        if m is None:
            return False
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(m.group(1)),
                succeeded=False,
                mechanism=m.group(2).upper(),
                service="smtp",
            )
        )
        return True

    def _domino(
        self,
        m: re.Match[str],
        out: list[Event],
        moved_to: Callable[[datetime, list[Event]], datetime],
    ) -> bool:
        day, mon, year, iyear, imon, iday, hh, mm, ss, msg = m.groups()
        if year is None:
            year, mon, day = iyear, imon, iday
        when = self._when(year, int(mon), day, hh, mm, ss, None)
        return self._domino_msg(moved_to(when, out), None, msg, out)

    def _domino_msg(self, when: datetime, host: str | None, msg: str, out: list[Event]) -> bool:
        s = _DOMINO_SERVER.match(msg)
        if s is not None:
            user, ip_text = s.group(1), s.group(2).strip("[]")
        elif msg.startswith("smtp: "):
            cut = msg.rfind(" authentication failure")
            if cut < 0:
                return False
            user, _, ip_text = msg[6:cut].rpartition(" ")
            ip_text = ip_text.strip("[]")
        else:
            return False
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(ip_text),
                succeeded=False,
                account=user.strip() or None,
                service="smtp",
                server=host,
            )
        )
        return True

    def _oracle(self, when: datetime, attrs: str, out: list[Event]) -> bool:
        values = dict(_XML_ATTR.findall(attrs))
        info = values.get("mi", "")
        if info == "Bad password":
            succeeded = False
        elif info.startswith("Authentication successful"):
            succeeded = True
        else:
            return False
        transport = values.get("tr", "").split("|")
        if len(transport) < 5:
            raise LineError("Oracle Messaging authentication record without tr= remote address")
        channel = values.get("sc", "")
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(transport[3]),
                succeeded=succeeded,
                account=values.get("us") or None,
                service="smtp" if channel.startswith("tcp_") else None,
            )
        )
        return True

    # -- OpenSMTPD ------------------------------------------------------------------------

    def _opensmtpd(self, when: datetime, host: str | None, msg: str, out: list[Event]) -> bool:
        if msg.startswith("smtp-in: "):
            return self._smtp_in(when, host, msg[9:], out)
        if msg[16:22] != " smtp " or _SID.fullmatch(msg, 0, 16) is None:
            return False  # mta/mda/queue lines, startup, warnings
        sid = msg[:16]
        verb, _, rest = msg[22:].partition(" ")
        if verb.startswith("event="):  # 6.0-6.3
            verb = verb[6:]
        key = (host, sid)
        if verb == "connected":
            fields = dict(_KV.findall(rest))
            address = fields.get("address")
            if address is None:
                raise LineError("OpenSMTPD connected line without address=")
            self._open(key, None if address == "local" else ip_or_bad(address))
            return True
        if verb == "authentication":
            fields = dict(_KV.findall(rest))
            if "result" not in fields or "user" not in fields:
                raise LineError("OpenSMTPD authentication line without user= or result=")
            return self._login(when, host, key, fields["user"], fields["result"], out)
        if verb == "failed-command":
            fields = dict(_KV.findall(rest))
            result = fields.get("result", "").strip('"')
            address = fields.get("address")
            return self._reply_535(when, host, key, result[:3], address, out)
        if verb in ("message", "envelope"):
            return self._smtpd_message(when, host, key, verb, rest, out)
        if verb in ("disconnected", "closed"):
            self._close(key, out)
            return False
        return False

    def _smtp_in(self, when: datetime, host: str | None, rest: str, out: list[Event]) -> bool:
        if rest.startswith("New session "):
            m = _SMTPIN_NEW.match(rest)
            if m is None:
                raise LineError("OpenSMTPD new session line without [address]")
            address = m.group(3)
            self._open((host, m.group(1)), None if address == "local" else ip_or_bad(address))
            return True
        m = _SMTPIN_AUTH.match(rest)
        if m is not None:
            result = "ok" if m.group(1).startswith("Accepted") else "permfail"
            return self._login(when, host, (host, m.group(3)), m.group(2), result, out)
        m = _SMTPIN_FAILED.match(rest)
        if m is not None:
            return self._reply_535(when, host, (host, m.group(1)), m.group(2), None, out)
        m = _SMTPIN_MESSAGE.match(rest)
        if m is not None:
            return self._accepted(when, host, (host, m.group(2)), m.group(1), m.group(3), out)
        m = _SMTPIN_END.match(rest)
        if m is not None:
            self._close((host, m.group(1)), out)
        return False

    def _open(self, key: tuple[str | None, str], ip: IPAddress | None) -> None:
        sessions = self.smtpd
        sessions.pop(key, None)
        sessions[key] = _SmtpdSession(ip)
        if len(sessions) > self.ctx.max_sessions:
            del sessions[next(iter(sessions))]

    def _session(self, key: tuple[str | None, str]) -> _SmtpdSession:
        state = self.smtpd.get(key)
        if state is None:
            raise LineError(
                f"OpenSMTPD session {key[1]} was not seen connecting: its client address is unknown"
            )
        return state

    def _login(
        self,
        when: datetime,
        host: str | None,
        key: tuple[str | None, str],
        user: str,
        result: str,
        out: list[Event],
    ) -> bool:
        if result not in ("ok", "permfail"):
            return False  # tempfail: the server's authentication backend failed
        state = self._session(key)
        if state.ip is None:
            return False  # local socket: no client address
        succeeded = result == "ok"
        account = user or None
        if succeeded:
            state.account = account
        else:
            state.failures += 1
        out.append(
            new_auth(
                time=when,
                ip=state.ip,
                succeeded=succeeded,
                account=account,
                service="smtp",
                server=host,
                session=key[1],
            )
        )
        return True

    def _reply_535(
        self,
        when: datetime,
        host: str | None,
        key: tuple[str | None, str],
        code: str,
        address: str | None,
        out: list[Event],
    ) -> bool:
        if code != "535":
            return False  # 503 AUTH not offered, 501 syntax, rejects: no credentials checked
        state = self.smtpd.get(key)
        if state is not None and state.failures > 0:
            state.failures -= 1  # the reply to a failure already counted
            return True
        if state is not None and state.ip is not None:
            ip = state.ip
        elif address is not None and address != "local":
            ip = ip_or_bad(address)
        elif state is not None:
            return False  # local socket
        else:
            raise LineError(
                f"OpenSMTPD session {key[1]} was not seen connecting: its client address is unknown"
            )
        out.append(
            new_auth(time=when, ip=ip, succeeded=False, service="smtp", server=host, session=key[1])
        )
        return True

    def _smtpd_message(
        self,
        when: datetime,
        host: str | None,
        key: tuple[str | None, str],
        verb: str,
        rest: str,
        out: list[Event],
    ) -> bool:
        fields = dict(_KV.findall(rest))
        ctx = self.ctx
        if verb == "envelope":  # 6.4+: one per recipient, after its message line
            evpid = fields.get("evpid", "")
            pending = ctx.pending.get((host, evpid[:8]))
            if pending is None:
                return False  # not an authenticated client's message
            sender, rcpt = _angle(rest)
            if sender is not None:
                pending.sender = sender
            if rcpt and pending.add_rcpt(rcpt, ctx.max_rcpts):
                del ctx.pending[(host, evpid[:8])]
                out.append(pending.event())
            return True
        msgid = fields.get("msgid", "")
        state = self.smtpd.get(key)
        if state is None or state.account is None or state.ip is None:
            return False  # not an authenticated session (or the login was not seen)
        if re.fullmatch(r"[0-9a-f]{8}", msgid) is None:
            raise LineError("OpenSMTPD message line without msgid=")
        if "nrcpt" in fields:  # 6.4+: the envelope lines follow
            msg = Pending(when, state.ip, state.account, host, msgid)
            msg.size = _int(fields.get("size"))
            msg.recipient_count = _int(fields.get("nrcpt"))
            ctx.add_pending((host, msgid), msg, out)
            return True
        # 6.0-6.3: one line per recipient; done when the session ends
        return self._accepted(when, host, key, msgid, rest, out)

    def _accepted(
        self,
        when: datetime,
        host: str | None,
        key: tuple[str | None, str],
        msgid: str,
        rest: str,
        out: list[Event],
    ) -> bool:
        """Read a message line: ``from=<s>`` and ``to=<r>`` (per recipient) or ``nrcpts=N``."""
        state = self.smtpd.get(key)
        if state is None or state.account is None or state.ip is None:
            return False
        ctx = self.ctx
        sender, rcpt = _angle(rest)
        numbers = dict(_NUMBER.findall(rest))
        pending = ctx.pending.get((host, msgid))
        if pending is None:
            pending = Pending(when, state.ip, state.account, host, msgid)
            pending.sender = sender
            pending.size = _int(numbers.get("size"))
            if "nrcpts" in numbers:  # 5.x: one line per message, with its count
                pending.recipient_count = _int(numbers["nrcpts"])
                out.append(pending.event())
                return True
            ctx.add_pending((host, msgid), pending, out)
            if len(state.messages) >= _MAX_SESSION_MESSAGES:
                del state.messages[0]  # still waits in the join, which expires it
            state.messages.append(msgid)
        if rcpt:
            pending.add_rcpt(rcpt, ctx.max_rcpts)
        return True

    def _close(self, key: tuple[str | None, str], out: list[Event]) -> None:
        state = self.smtpd.pop(key, None)
        if state is None:
            return
        pending = self.ctx.pending
        for msgid in state.messages:
            msg = pending.pop((key[0], msgid), None)
            if msg is not None:
                out.append(msg.event())

    # -- Courier --------------------------------------------------------------------------

    def _courier(
        self, when: datetime, host: str | None, prog: str, msg: str, out: list[Event]
    ) -> bool:
        m = _COURIER.match(msg)
        if m is None:
            if msg.startswith(("LOGIN FAILED", "LOGIN,")):
                raise LineError("Courier LOGIN line without ip=[address]")
            return False
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(m.group("ip")),
                succeeded=m.group("failed") is None,
                account=m.group("user") or None,
                service=_service(prog),
                server=host,
            )
        )
        return True

    def _courier_smtp(self, when: datetime, host: str | None, msg: str, out: list[Event]) -> bool:
        m = _COURIER_SMTP.match(msg)
        if m is None or m.group(2) != "535":
            return False  # relay and recipient rejects: no credentials checked
        relay, _, cmd = m.group(1), m.group(2), m.group(3).strip()
        words = cmd.split()
        account = mechanism = None
        if len(words) >= 2 and words[0].upper() == "AUTH":
            mechanism = words[1].upper()
            if len(words) >= 3:
                if mechanism == "PLAIN":
                    account = _plain_identity(words[2])
                elif mechanism == "LOGIN":
                    account = _login_identity(words[2])
        elif len(words) == 1:
            # a response line of the exchange: AUTH PLAIN's holds the identity; any other
            # may be the password of an AUTH LOGIN exchange and is not read
            account = _plain_identity(words[0])
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(relay),
                succeeded=False,
                account=account,
                mechanism=mechanism,
                service="smtp",
                server=host,
            )
        )
        return True

    # -- Cyrus ----------------------------------------------------------------------------

    def _cyrus(
        self, when: datetime, host: str | None, prog: str, msg: str, out: list[Event]
    ) -> bool:
        login = msg.startswith("login: ")
        # "name [ip] ...", "name[ip] ..." or "[ip] ...": the first [...] is the client
        rest = msg[7:] if login else msg[10:]
        start = rest.find("[")
        end = rest.find("] ", start)
        if start < 0 or end < 0 or " " in rest[:start].rstrip(" "):
            if login:
                return False
            raise LineError("Cyrus badlogin line without [address]")
        words = rest[end + 2 :].split(" ", 2)
        if login:  # login: host [ip] user MECH[+TLS] User logged in ...
            if len(words) < 3 or not words[2].startswith("User logged in"):
                return False
            account, mech = words[0], words[1].removesuffix("+TLS")
        else:  # badlogin: host [ip] MECH [user] reason
            mech, account = words[0], None
            tail = " ".join(words[1:])
            if tail and not tail.startswith(("[", "SASL", "authentication failure")):
                paren = tail.startswith("(")
                account = tail[1:].split(")", 1)[0] if paren else tail.split(" ", 1)[0]
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(rest[start + 1 : end]),
                succeeded=login,
                account=account or None,
                mechanism=mech.upper() or None,
                service=_service(prog),
                server=host,
            )
        )
        return True

    # -- UW-IMAP --------------------------------------------------------------------------

    def _uw(self, when: datetime, host: str | None, prog: str, msg: str, out: list[Event]) -> bool:
        if msg.startswith("Failed ") and " override of user=" not in msg:
            return False
        at = msg.find(" host=")
        peer = last_bracketed(msg[at:], "host=") if at >= 0 else None
        if peer is None:
            raise LineError("UW-IMAP login line without host=name [address]")
        user = _UW_USER.search(msg)
        mech = _UW_MECH.search(msg)
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(peer),
                succeeded=msg.startswith(_UW_OK),
                account=(user.group(1) or None) if user else None,
                mechanism=mech.group(1).upper() if mech else None,
                service=_service(prog),
                server=host,
            )
        )
        return True

    # -- Roundcube ------------------------------------------------------------------------

    def _roundcube(self, when: datetime, host: str | None, msg: str, out: list[Event]) -> bool:
        if msg.startswith("<"):  # Roundcube 1.1+: "<session> " first
            msg = msg.partition("> ")[2]
        ok = _RC_OK.match(msg)
        if ok is not None:
            account, ip_text, succeeded = ok.group(1), ok.group(2), True
        else:
            m = _RC_FAILED.match(msg)
            if m is None:
                return False
            tail = m.group(1)
            f = _RC_FROM.search(tail)
            if f is None:
                raise LineError("Roundcube failed login without 'from <address>'")
            account = _RC_AGAINST.sub("", tail[: f.start()])
            ip_text, succeeded = f.group(1), False
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(ip_text),
                succeeded=succeeded,
                account=account or None,
                service="webmail",
                server=host,
            )
        )
        return True

    # -- perdition ------------------------------------------------------------------------

    def _perdition(self, when: datetime, host: str | None, msg: str, out: list[Event]) -> bool:
        if not msg.startswith("Auth: "):
            return False
        route, _, fields = msg[6:].partition(" ")
        peer, arrow, _ = route.partition("->")
        if not arrow:
            return False
        status = _PERDITION_STATUS.search(fields)
        if status is None:
            return False
        verdict = status.group(1)
        if verdict != "ok" and not verdict.startswith("failed"):
            return False
        if peer.startswith("["):  # [v6]:port
            peer = peer[1:].partition("]")[0]
        elif peer.count(":") == 1:  # v4:port
            peer = peer.partition(":")[0]
        user = _PERDITION_USER.search(fields)
        proto = _PERDITION_PROTO.search(fields)
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(peer),
                succeeded=verdict == "ok",
                account=(user.group(1) or None) if user else None,
                service=_service(proto.group(1)) if proto else None,
                server=host,
            )
        )
        return True

    # -- solid-pop3d ----------------------------------------------------------------------

    def _solid(self, when: datetime, host: str | None, msg: str, out: list[Event]) -> bool:
        m = _SOLID.match(msg)
        if m is None:
            return False
        user = m.group(1) or m.group(2) or m.group(3)
        if user is None and msg.startswith("root login"):
            user = "root"
        out.append(
            new_auth(
                time=when,
                ip=ip_or_bad(m.group(4)),
                succeeded=False,
                account=user,
                service="pop3",
                server=host,
            )
        )
        return True


def _endpoint(text: str) -> str:
    """Return the address of ``ip:port`` or ``[ipv6]:port`` (as is when there is no port)."""
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        return text.partition(":")[0]
    return text


def _angle(text: str) -> tuple[str | None, str | None]:
    """``from=<s>`` and ``to=<r>`` of a line (``None`` when absent)."""
    sender = rcpt = None
    for name, value in _ANGLE.findall(text):
        if name == "from" and sender is None:
            sender = value
        elif name == "to" and rcpt is None:
            rcpt = value
    return sender, rcpt


def _int(text: str | None) -> int | None:
    if text is None or not text.isdigit() or len(text) > 18:
        return None
    return int(text)
