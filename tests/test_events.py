from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authabuse import (
    AuthAttempt,
    Delivery,
    InvalidEventError,
    Submission,
    event_from_dict,
    event_from_json,
    parse_ip,
)

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", IPv4Address("192.0.2.1")),
        ("::ffff:1.2.3.4", IPv4Address("1.2.3.4")),
        ("[::ffff:1.2.3.4]", IPv4Address("1.2.3.4")),
        ("IPv6:2001:DB8::1", IPv6Address("2001:db8::1")),
        ("[IPv6:2001:DB8::1]", IPv6Address("2001:db8::1")),
        ("2001:db8::a11:beef:7ac0%abcdefgh1234567", IPv6Address("2001:db8::a11:beef:7ac0")),
        ("fe80::1:2:3:4", IPv6Address("fe80::1:2:3:4")),
    ],
)
def test_parse_ip_normalizes(text: str, expected: object) -> None:
    assert parse_ip(text) == expected


@pytest.mark.parametrize(
    "bad", ["", "xxxx", "unknown", "1.2.3", "83.167.229.", "ip12", "1.2.3.4.5"]
)
def test_parse_ip_rejects_with_clear_error(bad: str) -> None:
    with pytest.raises(InvalidEventError, match="not an IP address"):
        parse_ip(bad)


def test_naive_time_is_refused() -> None:
    with pytest.raises(InvalidEventError, match="timezone-aware"):
        AuthAttempt(time=datetime(2024, 1, 1), ip=parse_ip("192.0.2.1"), succeeded=True)


def test_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        AuthAttempt(T0, parse_ip("192.0.2.1"), True)  # type: ignore[call-arg]
    a = AuthAttempt(time=T0, ip=parse_ip("192.0.2.1"), succeeded=True)
    with pytest.raises(AttributeError):
        a.account = "x"  # type: ignore[misc]
    assert not hasattr(a, "__dict__")


def test_bad_values_are_refused() -> None:
    with pytest.raises(InvalidEventError):
        AuthAttempt(time=T0, ip=parse_ip("192.0.2.1"), succeeded=True, attempts=0)
    with pytest.raises(InvalidEventError):
        AuthAttempt(time=T0, ip=parse_ip("192.0.2.1"), succeeded="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError):
        Submission(time=T0, ip=parse_ip("192.0.2.1"), recipient_count=-1)
    with pytest.raises(InvalidEventError):
        Submission(time=T0, ip=parse_ip("192.0.2.1"), size=True)
    with pytest.raises(InvalidEventError, match="longer than"):
        Submission(time=T0, ip=parse_ip("192.0.2.1"), account="a" * 5000)
    for empty in ("", " ", "\t"):  # an empty login is no account, not one named ""
        with pytest.raises(InvalidEventError, match="account name is empty"):
            AuthAttempt(time=T0, ip=parse_ip("192.0.2.1"), succeeded=False, account=empty)
    anonymous = event_from_json(
        '{"type": "auth", "time": "2024-01-02T03:04:05Z", "ip": "192.0.2.1", "succeeded": false}'
    )
    assert isinstance(anonymous, AuthAttempt)
    assert anonymous.account is None
    with pytest.raises(InvalidEventError, match="account name is empty"):
        event_from_json(
            '{"type": "auth", "time": "2024-01-02T03:04:05Z", "ip": "192.0.2.1", '
            '"succeeded": false, "account": ""}'
        )
    with pytest.raises(InvalidEventError):
        Submission(time=T0, ip=12345)  # type: ignore[arg-type]


def test_json_names_other_tools_read() -> None:
    a = AuthAttempt(time=T0, ip=parse_ip("192.0.2.1"), succeeded=False, account=None, attempts=3)
    d = json.loads(a.to_json())
    assert d == {
        "type": "auth",
        "time": "2024-05-01T10:00:00+00:00",
        "account": None,
        "ip": "192.0.2.1",
        "succeeded": False,
        "attempts": 3,
    }
    rcpts: list[str] = ["a@b.example"]
    s = Submission(
        time=T0,
        ip=parse_ip("2001:db8::1"),
        account="u",
        recipients=rcpts,  # type: ignore[arg-type]  # lists are accepted at run time
    )
    assert s.recipients == ("a@b.example",)
    assert json.loads(s.to_json())["type"] == "submission"


@pytest.mark.parametrize(
    "payload",
    [
        "{",
        "[]",
        '{"type": "auth"}',
        '{"type": "auth", "time": "yesterday", "ip": "1.2.3.4", "succeeded": true}',
        '{"type": "auth", "time": "2024-01-01T00:00:00", "ip": "1.2.3.4", "succeeded": true}',
        '{"type": "auth", "time": "2024-01-01T00:00:00Z", "ip": "nope", "succeeded": true}',
        '{"type": "auth", "time": "2024-01-01T00:00:00Z", "ip": "1.2.3.4"}',
        '{"type": "submission", "time": "2024-01-01T00:00:00Z", "ip": "1.2.3.4", "account": 5}',
        '{"type": "submission", "time": "2024-01-01T00:00:00Z", "ip": "1.2.3.4", "recipients": 1}',
        "[" * 100000,
    ],
)
def test_bad_json_gives_clear_error(payload: str) -> None:
    with pytest.raises(InvalidEventError):
        event_from_json(payload)


def test_time_offset_survives_round_trip() -> None:
    jst = timezone(timedelta(hours=9))
    d = Delivery(
        time=datetime(2024, 1, 1, 9, 0, 0, 123456, tzinfo=jst), queue_id="Q", status="sent"
    )
    back = event_from_json(d.to_json())
    assert back == d
    assert back.time.utcoffset() == timedelta(hours=9)
    assert back.time.microsecond == 123456


_text = st.text(st.characters(codec="utf-8"), max_size=40)
_opt_text = st.none() | _text
_opt_account = st.none() | _text.filter(str.strip)  # an empty name is refused (no account)
_times = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-3, minutes=-30))]
    ),
)
_ips = st.ip_addresses().map(str)


@given(
    time=_times,
    ip=_ips,
    succeeded=st.booleans(),
    account=_opt_account,
    attempts=st.integers(1, 10**6),
    mechanism=_opt_text,
    service=_opt_text,
    session=_opt_text,
)
def test_auth_round_trip(
    time: datetime,
    ip: str,
    succeeded: bool,
    account: str | None,
    attempts: int,
    mechanism: str | None,
    service: str | None,
    session: str | None,
) -> None:
    a = AuthAttempt(
        time=time,
        ip=parse_ip(ip),
        succeeded=succeeded,
        account=account,
        attempts=attempts,
        mechanism=mechanism,
        service=service,
        session=session,
    )
    assert event_from_json(a.to_json()) == a
    assert event_from_dict(a.to_dict()) == a


@given(
    time=_times,
    ip=_ips,
    account=_opt_account,
    sender=_opt_text,
    rcpts=st.lists(_text, max_size=5),
    count=st.none() | st.integers(0, 10**6),
    size=st.none() | st.integers(0, 10**12),
)
def test_submission_round_trip(
    time: datetime,
    ip: str,
    account: str | None,
    sender: str | None,
    rcpts: list[str],
    count: int | None,
    size: int | None,
) -> None:
    s = Submission(
        time=time,
        ip=parse_ip(ip),
        account=account,
        sender=sender,
        recipients=tuple(rcpts),
        recipient_count=count,
        size=size,
        queue_id="4F2A31C0D2",
        server="mx1",
    )
    assert event_from_json(s.to_json()) == s
