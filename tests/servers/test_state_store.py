"""``Detector.account_info`` and ``authabuse state --store`` on a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from authabuse.counters import MemoryStore
from authabuse.detector import Detector
from authabuse.events import Submission, parse_ip
from authabuse.geo import Location
from authabuse.rules import Level

redis = pytest.importorskip("redis", reason="the 'redis' extra is not installed")
from authabuse.redis_store import RedisStore  # noqa: E402 - after the extra check

if TYPE_CHECKING:
    from conftest import RedisProcess  # tests/servers/conftest.py (fixtures, not importable)

TWO_DAYS = 2 * 86_400
T0 = datetime(2024, 5, 1, tzinfo=UTC)


class Countries:
    """Places 11.i.0.0/16 in a country of its own, with an ASN of its own."""

    cc = ("JP", "BR", "NG", "VN", "US", "RU", "IN", "PL")

    def resolve(self, ip: Any) -> Location | None:
        i = int(ip) >> 16 & 255
        if int(ip) >> 24 != 11 or i >= len(self.cc):
            return None
        return Location(country=self.cc[i], asn=64500 + i)


def sub(dt: float, ip: str, account: str) -> Submission:
    return Submission(
        time=T0 + timedelta(seconds=dt),
        ip=parse_ip(ip),
        account=account,
        recipient_count=1,
        recipients=("bob@example.org",),
    )


def history(account: str) -> list[Submission]:
    """Two days at home (11.0/16, JP, two addresses), then a trip through five countries."""
    evs = [
        sub(day * 86_400 + 3600 * h, f"11.0.{day}.{h % 2 + 5}", account)
        for day in range(3)
        for h in (8, 12, 19)
    ]
    evs += [sub(2 * 86_400 + 21 * 3600 + 120 * i, f"11.{i}.0.9", account) for i in range(1, 6)]
    return evs


def state_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authabuse", "state", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_account_info_and_state_cli_on_redis(
    redis_process: Callable[..., RedisProcess],
) -> None:
    server = redis_process()
    store = RedisStore(server.url, retention=TWO_DAYS, socket_timeout=10)
    shared = Detector(geo=Countries(), store=store)
    compact = Detector(geo=Countries())
    memory = Detector(geo=Countries(), store=MemoryStore(retention=TWO_DAYS))
    verdicts: dict[str, list[Any]] = {"shared": [], "compact": [], "memory": []}
    evs = history("traveller@example.jp") + history("homebody@example.jp")[:-5]
    for e in sorted(evs, key=lambda e: e.time):
        for name, det in (("shared", shared), ("compact", compact), ("memory", memory)):
            verdicts[name].append(det.process(e))
    assert [v.level for v in verdicts["shared"]] == [v.level for v in verdicts["compact"]]
    assert max(v.level for v in verdicts["compact"]) >= Level.SUSPICIOUS
    # What each backend knows about the accounts: the same (the store has no quiet state)
    for account in ("traveller@example.jp", "homebody@example.jp"):
        infos = [d.account_info(account) for d in (shared, memory, compact)]
        assert infos[0] is not None
        assert infos[0] == infos[1]
        assert infos[0] == infos[2]
        assert infos[0].first_seen == T0 + timedelta(hours=8)
        assert infos[0].countries == ("JP",)
        assert infos[0].networks == ("AS64500",)
    traveller = shared.account_info("traveller@example.jp")
    assert traveller is not None
    assert traveller.level >= Level.SUSPICIOUS
    assert traveller.flagged_at is not None
    assert shared.account_info("nobody@example.jp") is None

    # The CLI on the same Redis: the flagged account, then marked benign.
    shown = state_cli("show", "--store", server.url, "--flagged", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [json.loads(line)["account"] for line in shown.stdout.splitlines()] == [
        "traveller@example.jp"
    ]
    marked = state_cli("benign", "--store", server.url, "traveller@example.jp", "nobody@x.jp")
    assert marked.returncode == 1  # one unknown account
    lines = marked.stdout.splitlines()
    assert lines[0].startswith("traveller@example.jp: marked benign (was ")
    assert "learned AS64501,AS64502,AS64503,AS64504,AS64505" in lines[0]
    assert lines[1].startswith("nobody@x.jp: not marked: unknown account")
    compact.mark_benign("traveller@example.jp")
    # Every server on that Redis sees it at once: a new one, here.
    other = Detector(geo=Countries(), store=RedisStore(server.url, retention=TWO_DAYS))
    now = other.account_info("traveller@example.jp")
    assert now is not None
    assert now.level == Level.OK
    assert now == compact.account_info("traveller@example.jp")
    assert {"AS64501", "AS64502", "AS64503"} <= set(now.networks)
    assert {"BR", "NG", "VN"} <= set(now.countries)
    # The next message of the trip: as the compact detector judges it after mark_benign
    e = sub(2 * 86_400 + 22 * 3600, "11.5.0.9", "traveller@example.jp")
    v_store, v_compact = other.process(e), compact.process(e)
    assert v_store.features["network_usual"]
    assert (v_store.level, v_store.score) == (v_compact.level, v_compact.score)
    assert v_store.level == Level.OK
    nobody = state_cli("show", "--store", server.url, "--flagged")
    assert nobody.stdout == "no account is flagged\n"
    store.close()


def test_state_cli_refuses_an_unreachable_redis(
    redis_process: Callable[..., RedisProcess],
) -> None:
    server = redis_process()
    url = server.url
    server.close()  # stopped: nobody listens there now
    done = state_cli("benign", "--store", url, "--store-timeout", "1", "a@example.jp")
    assert done.returncode == 2
    assert done.stderr.startswith(f"authabuse state: error: cannot reach Redis at {url}")
    assert done.stdout == ""
    bad = state_cli("show", "--store", "memory", "a@example.jp")
    assert bad.returncode == 2
    assert "--store must be a redis:// URL" in bad.stderr
