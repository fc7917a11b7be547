"""The simulator: determinism, a well-formed Postfix log, truth consistent with it, and
each persona's and abuse pattern's characteristic shape."""

from __future__ import annotations

import bisect
import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from authabuse.cli import main
from authabuse.errors import ConfigurationError, CorruptDataError
from authabuse.events import AuthAttempt, Submission, event_from_json
from authabuse.simulate import MIXES, PATTERNS, PERSONAS, GroundTruth, simulate

LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d) (?P<host>\S+) "
    r"(?P<prog>postfix/[a-z/]+)\[(?P<pid>\d+)\]: (?P<msg>.*)$"
)
CLIENT = re.compile(
    r"^(?P<qid>[0-9A-F]{11}): client=(?P<name>[^\[]+)\[(?P<ip>[^\]]+)\], "
    r"sasl_method=(?P<mech>[A-Z-]+), sasl_username=(?P<user>\S+)$"
)
FAILED = re.compile(r"^warning: \S+\[(?P<ip>[^\]]+)\]: SASL \S+ authentication failed: ")


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    simulate(out, seed=11, accounts=500, days=2.5, jsonl=True)
    return out


class Geo:
    """An independent reader of the simulation's country table (bisect over ranges)."""

    def __init__(self, path: Path) -> None:
        rows = []
        with open(path, encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                a, b = ip_address(rec["ip_range_start"]), ip_address(rec["ip_range_end"])
                rows.append(((a.version, int(a)), (b.version, int(b)), rec["country_code"]))
        rows.sort()
        self.rows = rows
        self.starts = [r[0] for r in rows]

    def country(self, ip: IPv4Address | IPv6Address) -> str | None:
        key = (ip.version, int(ip))
        i = bisect.bisect_right(self.starts, key) - 1
        if i >= 0 and self.rows[i][0] <= key <= self.rows[i][1]:
            return self.rows[i][2]
        return None


class Log:
    """What the log says, read with plain regexes (independent of the simulator)."""

    def __init__(self, path: Path) -> None:
        self.submissions: list[tuple[datetime, str, str, str]] = []  # time, qid, ip, user
        self.failures: list[tuple[datetime, str]] = []
        self.times: list[datetime] = []
        self.bad: list[str] = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                m = LINE.match(line.rstrip("\n"))
                if m is None:
                    self.bad.append(line)
                    continue
                t = datetime.fromisoformat(m["time"])
                self.times.append(t)
                msg = m["msg"]
                if (c := CLIENT.match(msg)) is not None:
                    self.submissions.append((t, c["qid"], c["ip"], c["user"]))
                elif (f := FAILED.match(msg)) is not None:
                    self.failures.append((t, f["ip"]))


@pytest.fixture(scope="module")
def log(sim: Path) -> Log:
    return Log(sim / "maillog")


@pytest.fixture(scope="module")
def truth(sim: Path) -> GroundTruth:
    return GroundTruth.load(sim)


@pytest.fixture(scope="module")
def geo(sim: Path) -> Geo:
    return Geo(sim / "geo-country.csv")


def _digest(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_same_seed_same_bytes_other_seed_other_traffic(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    simulate(a, seed=5, accounts=100, days=1)
    simulate(b, seed=5, accounts=100, days=1)
    simulate(c, seed=6, accounts=100, days=1)
    assert _digest(a) == _digest(b)
    assert _digest(a)["maillog"] != _digest(c)["maillog"]


def test_same_seed_same_bytes_in_another_process(tmp_path: Path) -> None:
    # str hashes differ between processes (PYTHONHASHSEED): nothing written may follow
    # the order of a set or dict keyed by strings or addresses (truth.json's countries
    # per abused account once did)
    code = (
        "import sys; from authabuse.simulate import simulate; "
        "simulate(sys.argv[1], seed=5, accounts=150, days=1, jsonl=True)"
    )
    digests = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env)
        digests.append(_digest(out))
    assert digests[0] == digests[1]


def test_every_line_is_well_formed_and_in_time_order(log: Log, truth: GroundTruth) -> None:
    assert log.bad == []
    assert all(x <= y for x, y in zip(log.times, log.times[1:], strict=False))
    assert len(log.times) == truth.meta["log"]["lines"]
    start = datetime.fromisoformat(truth.meta["start"])
    assert log.times[0] >= start
    assert log.times[0].utcoffset() == start.utcoffset()


def test_truth_matches_the_log(log: Log, truth: GroundTruth) -> None:
    meta = truth.meta["log"]
    assert len(log.submissions) == meta["submissions"]
    assert len(log.failures) == meta["auth_failures"]
    qids = [q for _, q, _, _ in log.submissions]
    assert len(set(qids)) == len(qids), "queue ids are unique"
    by_qid = {q: (t, user) for t, q, _, user in log.submissions}
    per_user = Counter(user for _, _, _, user in log.submissions)
    abusive = truth.abusive_queue_ids()
    assert len(abusive) == meta["abusive_submissions"] > 0
    for acc in truth.accounts.values():
        assert per_user[acc.name] == acc.messages
        if acc.abuse is None:
            continue
        for q in acc.abuse.queue_ids:
            assert by_qid[q][1] == acc.name
            assert by_qid[q][0].timestamp() >= acc.abuse.start
        if acc.abuse.first_mail is not None:
            assert by_qid[acc.abuse.queue_ids[0]][0].timestamp() == pytest.approx(
                acc.abuse.first_mail, abs=1e-6
            )


def test_events_jsonl_is_what_the_log_holds(sim: Path, truth: GroundTruth) -> None:
    kinds: Counter[str] = Counter()
    with open(sim / "events.jsonl", encoding="utf-8") as fh:
        for line in fh:
            kinds[event_from_json(line).type] += 1
    meta = truth.meta["log"]
    assert kinds == {
        "submission": meta["submissions"],
        "auth": meta["auth_failures"],
        "delivery": meta["deliveries"],
    }


def test_every_client_address_is_public_and_placed_by_the_geo_table(
    log: Log, geo: Geo, sim: Path
) -> None:
    ips = {ip for _, _, ip, _ in log.submissions} | {ip for _, ip in log.failures}
    for text in ips:
        ip = ip_address(text)
        assert ip.is_global, ip
        assert geo.country(ip) is not None, ip
    with open(sim / "geo-asn.csv", encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == ["ip_range_start", "ip_range_end", "asn", "org"]


def _abusive_mails(
    log: Log, truth: GroundTruth, pattern: str
) -> dict[str, list[tuple[datetime, str]]]:
    wanted = {
        q: a.name
        for a in truth.abused()
        if a.abuse is not None and a.abuse.pattern == pattern
        for q in a.abuse.queue_ids
    }
    out: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for t, q, ip, _ in log.submissions:
        if q in wanted:
            out[wanted[q]].append((t, ip))
    return out


def test_every_pattern_and_persona_is_present(truth: GroundTruth) -> None:
    assert {a.persona for a in truth.accounts.values()} == set(PERSONAS)
    assert {a.abuse.pattern for a in truth.abused() if a.abuse} == set(PATTERNS)
    personas = Counter(a.persona for a in truth.accounts.values())
    assert personas.most_common(1)[0][0] == "low_volume"


def test_sprinkle_is_hundreds_of_bots_in_30_countries_pl_in_on_top(
    log: Log, truth: GroundTruth, geo: Geo
) -> None:
    for mails in _abusive_mails(log, truth, "sprinkle").values():
        ips = {ip for _, ip in mails}
        assert len(ips) >= 100
        countries = Counter(geo.country(ip_address(ip)) for ip in ips)
        assert len(countries) >= 30
        assert {c for c, _ in countries.most_common(2)} == {"PL", "IN"}
        # Each bot sends a few mails, never back to back.
        per_ip = Counter(ip for _, ip in mails)
        assert max(per_ip.values()) <= 5
        last: dict[str, datetime] = {}
        for t, ip in mails:
            if ip in last:
                assert (t - last[ip]).total_seconds() >= 240
            last[ip] = t


def test_burst_is_few_addresses_at_several_mails_per_second(log: Log, truth: GroundTruth) -> None:
    bursts = _abusive_mails(log, truth, "burst")
    assert bursts
    for mails in bursts.values():
        per_ip = Counter(ip for _, ip in mails)
        assert len(per_ip) <= 4
        ip, n = per_ip.most_common(1)[0]
        times = [t for t, i in mails if i == ip]
        hours = (times[-1] - times[0]).total_seconds() / 3600
        if times[-1] < datetime.fromisoformat(truth.meta["end"]).replace() and n > 100:
            assert 0.5 <= hours <= 1.35
            assert n / (hours * 3600) >= 0.9  # about one to four mails a second


def test_domestic_botnet_stays_in_the_customers_country(
    log: Log, truth: GroundTruth, geo: Geo
) -> None:
    for mails in _abusive_mails(log, truth, "domestic").values():
        ips = {ip for _, ip in mails}
        assert len(ips) >= 50
        assert {geo.country(ip_address(ip)) for ip in ips} == {"JP"}


def test_domain_wave_hits_several_accounts_of_one_domain_with_shared_bots(
    log: Log, truth: GroundTruth
) -> None:
    waves = _abusive_mails(log, truth, "domain_wave")
    by_domain: dict[str, list[set[str]]] = defaultdict(list)
    for name, mails in waves.items():
        by_domain[name.rpartition("@")[2]].append({ip for _, ip in mails})
    assert by_domain
    for ipsets in by_domain.values():
        assert len(ipsets) >= 3
        assert len(ipsets[0] & ipsets[1]) > 0


def test_ip_reuse_bots_abused_another_account_before(log: Log, truth: GroundTruth) -> None:
    first_use: dict[str, tuple[datetime, str]] = {}
    abusive = {q: a.name for a in truth.abused() if a.abuse for q in a.abuse.queue_ids}
    for t, q, ip, user in log.submissions:
        if q in abusive and ip not in first_use:
            first_use[ip] = (t, user)
    reuse = _abusive_mails(log, truth, "ip_reuse")
    assert reuse
    for name, mails in reuse.items():
        assert all(first_use[ip][1] != name for _, ip in mails)


def test_slow_abuse_stays_under_naive_limits(log: Log, truth: GroundTruth) -> None:
    for mails in _abusive_mails(log, truth, "slow").values():
        per_day = Counter(t.date() for t, _ in mails)
        assert max(per_day.values()) <= 18
        assert len({ip for _, ip in mails}) <= 4 * len(per_day)


def _legit_ips(log: Log, truth: GroundTruth, persona: str) -> dict[str, list[tuple[datetime, str]]]:
    names = {a.name for a in truth.legitimate() if a.persona == persona}
    out: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for t, _, ip, user in log.submissions:
        if user in names:
            out[user].append((t, ip))
    return out


def test_legitimate_personas_have_their_shape(log: Log, truth: GroundTruth, geo: Geo) -> None:
    # Phones behind CGNAT: about a new address an hour, shared with other subscribers.
    mobile = _legit_ips(log, truth, "mobile")
    busiest = max(mobile.values(), key=len)
    home_ip = Counter(ip for _, ip in busiest).most_common(1)[0][0]
    away = [(t, ip) for t, ip in busiest if ip != home_ip]
    hours = {t.replace(minute=0, second=0, microsecond=0) for t, _ in away}
    assert len({ip for _, ip in away}) >= 0.6 * len(hours) > 5
    users_of: dict[str, set[str]] = defaultdict(set)
    for name, mails in mobile.items():
        for _, ip in mails:
            users_of[ip].add(name)
    assert max(len(u) for u in users_of.values()) >= 2  # CGNAT addresses are shared
    # IPv6 privacy addresses: many addresses, one /64.
    for mails in _legit_ips(log, truth, "ipv6").values():
        v6 = {ip_address(ip) for _, ip in mails if ":" in ip}
        assert len({int(ip) >> 64 for ip in v6}) <= 1
    # Offices: the staff of a domain share the office's dozen addresses.
    office = _legit_ips(log, truth, "office")
    by_domain: dict[str, Counter[str]] = defaultdict(Counter)
    for name, mails in office.items():
        by_domain[name.rpartition("@")[2]].update(ip for _, ip in mails)
    assert any(len(c) >= 8 for c in by_domain.values())
    # Customers abroad send from their country of residence, not from JP.
    for mails in _legit_ips(log, truth, "abroad").values():
        countries = Counter(geo.country(ip_address(ip)) for _, ip in mails)
        assert countries.most_common(1)[0][0] != "JP"
    # Bulk senders: hundreds of mails a day from one or two addresses.
    for mails in _legit_ips(log, truth, "bulk").values():
        assert len(mails) >= 150
        assert len({ip for _, ip in mails}) <= 2


def test_truth_file_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no ground truth"):
        GroundTruth.load(tmp_path)
    (tmp_path / "truth.json").write_text('{"format": "other"}', "utf-8")
    with pytest.raises(CorruptDataError):
        GroundTruth.load(tmp_path)
    (tmp_path / "truth.json").write_bytes(b"\xff\xfe")
    with pytest.raises(CorruptDataError):
        GroundTruth.load(tmp_path)
    bad = {"format": "authabuse-simulate/1", "accounts": {"a": {"persona": "home"}}}
    (tmp_path / "truth.json").write_text(json.dumps(bad), "utf-8")
    with pytest.raises(CorruptDataError, match="malformed"):
        GroundTruth.load(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accounts": 3}, "at least 10"),
        ({"days": 0}, "days"),
        ({"mix": "nope"}, "unknown mix"),
        ({"tz": "Tokyo"}, "time zone"),
        ({"start": "03/02/2026"}, "YYYY-MM-DD"),
        ({"stamp": "iso"}, "stamp"),
        ({"log_format": "sendmail"}, "log_format must be one of postfix, exim"),
        ({"log_format": "exim", "stamp": "bsd"}, "exim logs take stamp 'exim', not 'bsd'"),
        ({"stamp": "exim"}, "postfix logs take stamp 'rfc3339' or 'bsd', not 'exim'"),
    ],
)
def test_bad_arguments_are_configuration_errors(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        simulate(tmp_path, **kwargs)  # type: ignore[arg-type]  # deliberately wrong values


def test_cli_writes_the_files_and_reports_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    assert main(["simulate", "--out", str(out), "--accounts", "60", "--days", "1",
                 "--mix", "hard", "--timestamps", "bsd"]) == 0  # fmt: skip
    assert "abused" in capsys.readouterr().err
    first = (out / "maillog").read_text("utf-8").splitlines()[0]
    assert re.match(r"^Mar  2 \d\d:\d\d:\d\d msa\d postfix/", first)
    assert GroundTruth.load(out).meta["timestamps"] == "bsd"
    assert main(["simulate", "--out", str(out), "--accounts", "2"]) == 2
    assert "at least 10" in capsys.readouterr().err


def test_mixes_are_described() -> None:
    assert {"default", "mobile", "business", "hard"} <= set(MIXES)
    for mix in MIXES.values():
        assert set(mix.personas) == set(PERSONAS)
        assert set(mix.patterns) == set(PATTERNS)


def test_the_embedded_geo_data_agrees_with_the_simulation(log: Log, geo: Geo, sim: Path) -> None:
    """A scan with the embedded data (no --geo) places every address as the simulator did."""
    from authabuse.geo import default_resolver

    resolver = default_resolver()
    ips = {ip for _, _, ip, _ in log.submissions} | {ip for _, ip in log.failures}
    for text in ips:
        ip = ip_address(text)
        loc = resolver.resolve(ip)
        assert loc is not None
        assert loc.country == geo.country(ip), ip
    with open(sim / "geo-asn.csv", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            for end in ("ip_range_start", "ip_range_end"):
                loc = resolver.resolve(ip_address(rec[end]))
                assert loc is not None
                assert loc.asn == int(rec["asn"]), rec
                assert loc.org == rec["org"]


def test_address_blocks_have_real_roles() -> None:
    from authabuse.simulate._space import AddressSpace

    space = AddressSpace.embedded()
    carriers = {b.org for b in space.role_blocks("JP", "mobile")}
    assert any("DOCOMO" in org for org in carriers)
    assert space.role_blocks("JP", "residential", version=6)
    hosting = {b.org for b in space.role_blocks("NL", "hosting")}
    assert hosting
    assert all(b.country == "PL" for b in space.role_blocks("PL", "residential"))


def test_authabuse_parses_the_log_into_the_expected_events(sim: Path, truth: GroundTruth) -> None:
    from authabuse.parsers import ParseStats, iter_events

    stats = ParseStats()
    kinds: Counter[str] = Counter()
    failures = 0
    abusive = truth.abusive_queue_ids()
    found_abusive = 0
    for event in iter_events([str(sim / "maillog")], format="postfix", stats=stats):
        kinds[event.type] += 1
        if isinstance(event, AuthAttempt) and not event.succeeded:
            failures += 1
        if isinstance(event, Submission) and event.queue_id in abusive:
            found_abusive += 1
    meta = truth.meta["log"]
    assert kinds["submission"] == meta["submissions"]
    assert kinds["delivery"] == meta["deliveries"]
    assert failures == meta["auth_failures"]
    assert found_abusive == len(abusive)
    assert stats.malformed == 0
    assert stats.lines == meta["lines"]


def test_bsd_stamps_parse_with_the_year_and_zone_from_the_truth(tmp_path: Path) -> None:
    from authabuse.parsers import iter_events

    simulate(tmp_path, seed=9, accounts=60, days=1.5, stamp="bsd", tz="-05:00", start="2025-12-31")
    truth = GroundTruth.load(tmp_path)
    assert (truth.meta["year"], truth.meta["tz"]) == (2025, "-05:00")
    events = list(
        iter_events(
            [str(tmp_path / "maillog")], format="postfix", year=truth.meta["year"],
            tz=truth.meta["tz"],
        )
    )  # fmt: skip
    subs = [e for e in events if e.type == "submission"]
    assert len(subs) == truth.meta["log"]["submissions"]
    start = datetime.fromisoformat(truth.meta["start"])
    end = datetime.fromisoformat(truth.meta["end"])
    assert all(start <= e.time <= end for e in subs)
    assert {e.time.year for e in subs} == {2025, 2026}  # rolls over at New Year
