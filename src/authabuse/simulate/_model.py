"""The traffic model: customers, their habits, botnets and abuse campaigns.

Everything here is deterministic given the seed: each account draws from its own
``random.Random`` seeded by ``(seed, account index)``, and shared things (carrier CGNAT
pools, VPN exits, botnets, the abuse plan) are drawn once by the world's generator, so
the same seed gives the same traffic whatever order the accounts are generated in.

Sessions are what a submission server sees: one connection from one address, optional
failed AUTH attempts, then (if AUTH succeeded) zero or more messages.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from authabuse.errors import ConfigurationError
from authabuse.events import IPAddress
from authabuse.simulate._space import AddressSpace, Block

DAY = 86400.0
HOUR = 3600.0

PERSONAS = (
    "low_volume",
    "home",
    "mobile",
    "ipv6",
    "office",
    "traveller",
    "vpn",
    "abroad",
    "bulk",
)
PATTERNS = ("sprinkle", "burst", "slow", "domestic", "domain_wave", "ip_reuse")

# Share of the botnet's addresses per country: PL and IN on top, then AR, ZA and
# central/eastern Europe, then "almost the whole world" (the report's Fig. 2).
BOTNET_COUNTRIES: dict[str, float] = {
    "PL": 20, "IN": 16, "AR": 5, "ZA": 4.5, "RO": 3.5, "UA": 3.5, "RU": 3, "BG": 2.5,
    "HU": 2, "CZ": 2, "SK": 1.5, "RS": 1.5, "HR": 1, "LT": 1, "LV": 0.8, "EE": 0.6,
    "BY": 1, "MD": 0.6, "BA": 0.6, "MK": 0.5, "SI": 0.5, "AL": 0.4, "BR": 4, "VN": 3.5,
    "TR": 3, "ID": 2.5, "TH": 2, "MX": 2, "CO": 1.8, "CL": 1.2, "PE": 1.2, "VE": 1,
    "EC": 0.8, "EG": 1.5, "MA": 1, "DZ": 1, "TN": 0.6, "NG": 1, "KE": 0.6, "PK": 2,
    "BD": 1.5, "PH": 1.5, "MY": 1, "CN": 2, "TW": 1, "KR": 0.8, "IR": 1.2, "SA": 0.8,
    "AE": 0.6, "IL": 0.5, "KZ": 0.8, "GE": 0.4, "AM": 0.4, "AZ": 0.4, "US": 2, "CA": 0.5,
    "GB": 0.6, "DE": 0.8, "FR": 0.8, "IT": 1, "ES": 1, "PT": 0.4, "GR": 0.6, "NL": 0.4,
    "JP": 0.3, "AU": 0.3, "LK": 0.4, "NP": 0.4, "UZ": 0.5,
}  # fmt: skip

# Where customers living abroad live, where travellers go, where VPN exits are, and each
# country's UTC offset (hours, standard time) for their daily rhythm.
ABROAD_COUNTRIES = ("US", "TH", "DE", "GB", "AU", "CA", "SG", "PH", "KR", "CN", "BR", "FR", "VN")
TRIP_COUNTRIES = ("US", "KR", "TW", "TH", "FR", "GB", "SG", "HK", "IT", "DE", "AU", "ES", "VN")
VPN_COUNTRIES = ("NL", "DE", "US", "GB", "SE", "CH", "SG", "JP", "FR", "CA", "HK", "RO")
_NEAR_JP = frozenset({"JP", "SG", "HK", "US"})  # "fastest server" picks for a user in Japan
UTC_OFFSET = {
    "US": -5, "TH": 7, "DE": 1, "GB": 0, "AU": 10, "CA": -5, "SG": 8, "PH": 8, "KR": 9,
    "CN": 8, "BR": -3, "FR": 1, "VN": 7, "TW": 8, "HK": 8, "IT": 1, "ES": 1, "JP": 9,
}  # fmt: skip

# Relative activity per local hour of a private customer and of an office.
HOME_HOURS = (1, .5, .3, .2, .2, .4, 1, 2, 3.5, 4.5, 5, 5, 4.5, 5, 5, 5, 5, 4.5, 4, 4.5, 5, 4.5, 3.5, 2)  # fmt: skip  # noqa: E501
OFFICE_HOURS = (.1, .05, .05, .05, .05, .1, .3, 1, 4, 8, 8, 8, 5, 7, 8, 8, 7, 6, 4, 2, 1, .6, .3, .2)  # fmt: skip  # noqa: E501

FREEMAIL = (
    "gmail.com", "yahoo.co.jp", "docomo.ne.jp", "ezweb.ne.jp", "softbank.ne.jp",
    "i.softbank.jp", "icloud.com", "outlook.jp", "hotmail.co.jp", "au.com",
)  # fmt: skip
SPAM_DOMAINS = (
    ("gmail.com", 30), ("yahoo.com", 10), ("hotmail.com", 10), ("outlook.com", 6),
    ("aol.com", 4), ("mail.ru", 4), ("yandex.ru", 3), ("qq.com", 4), ("163.com", 3),
    ("web.de", 2), ("gmx.de", 2), ("yahoo.co.jp", 6), ("docomo.ne.jp", 3),
    ("ezweb.ne.jp", 2), ("wp.pl", 2), ("o2.pl", 1), ("rediffmail.com", 2), ("libero.it", 1),
    ("orange.fr", 1), ("comcast.net", 2), ("icloud.com", 2),
)  # fmt: skip

_SYLLABLES = [
    "ka",
    "ki",
    "ku",
    "ke",
    "ko",
    "sa",
    "shi",
    "su",
    "se",
    "so",
    "ta",
    "chi",
    "tsu",
    "te",
    "to",
    "na",
    "ni",
    "nu",
    "ne",
    "no",
    "ha",
    "hi",
    "fu",
    "he",
    "ho",
    "ma",
    "mi",
    "mu",
    "me",
    "mo",
    "ya",
    "yu",
    "yo",
    "ra",
    "ri",
    "ru",
    "re",
    "ro",
    "wa",
    "n",
]
_SURNAMES = [
    "sato",
    "suzuki",
    "takahashi",
    "tanaka",
    "watanabe",
    "ito",
    "yamamoto",
    "nakamura",
    "kobayashi",
    "kato",
    "yoshida",
    "yamada",
    "sasaki",
    "yamaguchi",
    "matsumoto",
    "inoue",
    "kimura",
    "hayashi",
    "shimizu",
    "saito",
    "mori",
    "abe",
    "ikeda",
    "hashimoto",
    "ishikawa",
    "ogawa",
    "okada",
    "goto",
    "hasegawa",
    "murakami",
    "kondo",
    "ishii",
    "maeda",
    "fujita",
]


@dataclass(slots=True)
class Mail:
    """One message submitted in a session."""

    time: float
    recipients: tuple[str, ...]
    size: int
    abusive: bool = False
    sender: str | None = None  # envelope sender when it differs from the account


@dataclass(slots=True)
class Session:
    """One SMTP connection to the submission service."""

    start: float
    account: str  # the AUTH user name (may not exist, for dictionary attacks)
    ip: IPAddress
    mails: list[Mail] = field(default_factory=list)
    failures: int = 0  # failed AUTH attempts before success or giving up
    success: bool = True
    abusive: bool = False
    mechanism: str = "PLAIN"
    service: str = "submission"
    host: str = "unknown"  # the client's reverse DNS name
    lost: bool = False  # the client vanished after a failed AUTH

    def end(self) -> float:
        """Time of the session's last command."""
        last = self.mails[-1].time if self.mails else self.start + 0.5 + self.failures * 1.7
        return last + 0.2


@dataclass(frozen=True, slots=True)
class Mix:
    """Shares of personas among accounts and of patterns among abused accounts."""

    name: str
    personas: dict[str, float]
    patterns: dict[str, float]
    abuse_rate: float
    description: str


MIXES: dict[str, Mix] = {
    "default": Mix(
        "default",
        {"low_volume": 50, "home": 14, "mobile": 12, "ipv6": 5, "office": 10, "traveller": 2.5,
         "vpn": 3, "abroad": 2.5, "bulk": 0.4},
        {"sprinkle": 30, "burst": 15, "slow": 15, "domestic": 15, "domain_wave": 15,
         "ip_reuse": 10},
        0.01,
        "a consumer ISP with some business customers",
    ),
    "mobile": Mix(
        "mobile",
        {"low_volume": 35, "home": 10, "mobile": 30, "ipv6": 12, "office": 5, "traveller": 2,
         "vpn": 3, "abroad": 2, "bulk": 0.3},
        {"sprinkle": 30, "burst": 15, "slow": 15, "domestic": 20, "domain_wave": 10,
         "ip_reuse": 10},
        0.01,
        "phones behind carrier-grade NAT and IPv6 privacy addresses dominate",
    ),
    "business": Mix(
        "business",
        {"low_volume": 20, "home": 8, "mobile": 8, "ipv6": 4, "office": 50, "traveller": 3,
         "vpn": 4, "abroad": 1, "bulk": 1},
        {"sprinkle": 20, "burst": 15, "slow": 10, "domestic": 10, "domain_wave": 35,
         "ip_reuse": 10},
        0.015,
        "mostly small offices with shared NAT addresses; correlated domain incidents",
    ),
    "hard": Mix(
        "hard",
        {"low_volume": 38, "home": 10, "mobile": 15, "ipv6": 6, "office": 8, "traveller": 8,
         "vpn": 8, "abroad": 6, "bulk": 0.5},
        {"sprinkle": 15, "burst": 10, "slow": 30, "domestic": 25, "domain_wave": 5,
         "ip_reuse": 15},
        0.01,
        "many travellers, VPN users and expatriates; stealthy abuse dominates",
    ),
}  # fmt: skip


@dataclass(slots=True)
class Abuse:
    """What happened to one abused account (the ground truth)."""

    pattern: str
    campaign: int
    start: float
    end: float = 0.0
    sessions: list[Session] = field(default_factory=list)


@dataclass(slots=True)
class Account:
    """One customer account and its habits."""

    index: int
    name: str
    domain: str
    persona: str
    seed: str
    abuse: Abuse | None = None
    rate: float = 1.0
    mechanism: str = "PLAIN"
    service: str = "submission"
    country: str = "JP"
    extra: dict[str, object] = field(default_factory=dict)


_SPAM_KEYS = [d for d, _ in SPAM_DOMAINS]
_SPAM_CUM = list(itertools.accumulate(w for _, w in SPAM_DOMAINS))
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _local(rng: random.Random) -> str:
    """Make up a mailbox name of 5 to 12 lower-case letters and digits."""
    n = rng.randint(5, 12)
    v = rng.getrandbits(62)
    out = []
    for _ in range(n):
        v, r = divmod(v, 36)
        out.append(_B36[r])
    return "".join(out)


def _weighted(rng: random.Random, table: dict[str, float]) -> str:
    keys = list(table)
    return rng.choices(keys, weights=[table[k] for k in keys])[0]


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class _Rotator:
    """An address that changes from time to time; queried with increasing times."""

    __slots__ = ("_draw", "_jitter", "_mean", "_next", "_rng", "current")

    def __init__(
        self, rng: random.Random, start: float, mean: float, draw: _Draw, jitter: float = 0.5
    ) -> None:
        self._rng, self._mean, self._draw = rng, mean, draw
        self.current = draw(rng)
        # The first change comes at a random phase of the lease.
        self._next = start + rng.uniform(0.0, 1.0) * mean
        self._jitter = jitter

    def at(self, t: float) -> IPAddress:
        while t >= self._next:
            self.current = self._draw(self._rng)
            self._next += self._mean * self._rng.uniform(1.0 - self._jitter, 1.0 + self._jitter)
        return self.current


class _Draw:
    """Draw a fresh address from one block, or from a fixed pool."""

    __slots__ = ("block", "pool")

    def __init__(self, block: Block | None = None, pool: list[IPAddress] | None = None) -> None:
        if (block is None) == (pool is None):
            raise ValueError("give either a block or a pool")
        self.block, self.pool = block, pool or []

    def __call__(self, rng: random.Random) -> IPAddress:
        if self.block is not None:
            return self.block.random_address(rng)
        return self.pool[rng.randrange(len(self.pool))]


@dataclass(slots=True)
class Campaign:
    """One abuse campaign: a pattern, the accounts it abuses and the bots it uses."""

    id: int
    pattern: str
    start: float
    accounts: list[Account]
    ips: list[IPAddress] = field(default_factory=list)
    donor: int = 0  # ip_reuse: the campaign whose bots are reused


class World:
    """Accounts, shared infrastructure and the abuse plan of one simulation."""

    def __init__(
        self,
        *,
        seed: int,
        accounts: int,
        days: float,
        mix: str,
        start: float,
        space: AddressSpace,
        isp_domain: str = "mail.example.jp",
    ) -> None:
        if accounts < 10:
            raise ConfigurationError("simulate needs at least 10 accounts")
        if not 0.25 <= days <= 366:
            raise ConfigurationError("days must be between 0.25 and 366")
        if mix not in MIXES:
            raise ConfigurationError(f"unknown mix {mix!r} (known: {', '.join(sorted(MIXES))})")
        self.seed, self.mix = seed, MIXES[mix]
        self.start, self.end = start, start + days * DAY
        self.space = space
        self.isp_domain = isp_domain
        self.rng = random.Random(f"authabuse-simulate:{seed}:world")
        self.n_accounts = accounts
        self._build_infrastructure()
        self.accounts = self._build_accounts(accounts)
        self.campaigns: list[Campaign] = []
        self._plan_abuse()

    # -- infrastructure -------------------------------------------------------------

    def _build_infrastructure(self) -> None:
        rng, space = self.rng, self.space
        # Mobile carriers: each a CGNAT pool of public addresses shared by all its
        # subscribers (so the same address serves many customers over a day).
        self.carriers: list[list[IPAddress]] = []
        mobile_blocks = space.role_blocks("JP", "mobile")
        by_asn: dict[int, list[Block]] = {}
        for b in mobile_blocks:
            by_asn.setdefault(b.asn, []).append(b)
        if not by_asn:
            by_asn = {0: [space.pick_block(rng, "JP")]}
        for asn in sorted(by_asn):
            pool: list[IPAddress] = []
            blocks = by_asn[asn]
            for b in blocks:
                space.mark_used(b)
            for _ in range(1500):
                b = rng.choice(blocks)
                # CGNAT pools are a few dense prefixes, not the whole block.
                base = b.first + (rng.randrange(min(b.size, 1 << 12)) << 8) % b.size
                value = base + rng.randrange(1, 255)
                pool.append(b.address(value - b.first))
            self.carriers.append(pool)
        # Rough market shares of the Japanese carriers (DOCOMO, KDDI, SoftBank, Rakuten).
        share = {9605: 0.4, 2516: 0.3, 17676: 0.22, 138384: 0.08}
        self.carrier_weights = [share.get(asn, 0.1) for asn in sorted(by_asn)]
        # A commercial VPN provider: exits in data centres of several countries.
        self.vpn_exits: list[IPAddress] = []
        self.vpn_exit_countries: list[tuple[IPAddress, str]] = []
        for cc in VPN_COUNTRIES:
            for _ in range(rng.randint(2, 6)):
                b = space.pick_block(rng, cc, role="hosting")
                ip = b.random_address(rng)
                self.vpn_exits.append(ip)
                self.vpn_exit_countries.append((ip, cc))
        # The foreign botnet and the domestic one (infected PCs in the customers' country).
        # Big enough that campaigns overlap only partly (bots reused across accounts).
        size = max(6000, min(20000, 4 * self.n_accounts))
        self.botnet = [self._bot(rng, _weighted(rng, BOTNET_COUNTRIES)) for _ in range(size)]
        self.domestic_botnet = [
            space.pick_block(rng, "JP", role=rng.choice(("residential", "mobile"))).random_address(
                rng
            )
            for _ in range(size // 5)
        ]
        # Rented or hacked servers used for bursts.
        self.burst_hosts = []
        for _ in range(300):
            r = rng.random()
            if r < 0.2:
                cc = "JP"
            elif r < 0.45:
                cc = rng.choice(("US", "NL", "DE", "FR", "RU", "UA", "RO", "BG", "SG", "HK"))
            else:
                cc = _weighted(rng, BOTNET_COUNTRIES)
            b = space.pick_block(rng, cc, role="hosting")
            self.burst_hosts.append(b.random_address(rng))

    def _bot(self, rng: random.Random, cc: str) -> IPAddress:
        return self.space.pick_block(rng, cc, role="residential").random_address(rng)

    # -- accounts -------------------------------------------------------------------

    def _build_accounts(self, n: int) -> list[Account]:
        rng = self.rng
        personas = [_weighted(rng, self.mix.personas) for _ in range(n)]
        # At least one of each persona when there is room, so every one is measured.
        if n >= 4 * len(PERSONAS):
            for i, p in enumerate(PERSONAS):
                if p not in personas:
                    personas[(i * 7919) % n] = p
        names: set[str] = set()
        accounts: list[Account] = []
        office_domain: str | None = None
        office_left = 0
        domain_no = 0
        for i, persona in enumerate(personas):
            if persona == "office":
                if office_left == 0:
                    domain_no += 1
                    office_domain = f"biz{domain_no:04d}.example.co.jp"
                    office_left = max(3, min(25, round(_lognormal(rng, 7, 0.6))))
                office_left -= 1
                domain = office_domain or "biz0000.example.co.jp"
                local = (
                    rng.choice(_SURNAMES)
                    + rng.choice(("", ".", "-"))
                    + rng.choice(("", *"aehikmnstyr"))
                )
            elif persona == "bulk":
                domain_no += 1
                domain = f"shop{domain_no:04d}.example.jp"
                local = rng.choice(("info", "news", "noreply", "shop", "mag"))
            else:
                domain = self.isp_domain
                local = self._consumer_local(rng)
            name = f"{local}@{domain}"
            k = 1
            while name in names:
                k += 1
                name = f"{local}{k}@{domain}"
            names.add(name)
            acc = Account(
                index=i,
                name=name,
                domain=domain,
                persona=persona,
                seed=f"authabuse-simulate:{self.seed}:account:{i}",
                mechanism="LOGIN" if rng.random() < 0.3 else "PLAIN",
                service="smtps" if rng.random() < 0.2 else "submission",
            )
            if persona == "abroad":
                acc.country = rng.choice(ABROAD_COUNTRIES)
            accounts.append(acc)
        # Office accounts of one domain share the office's NAT addresses.
        self.offices: dict[str, list[IPAddress]] = {}
        for acc in accounts:
            if acc.persona == "office" and acc.domain not in self.offices:
                b = self.space.pick_block(rng, "JP", role="business")
                base = b.first + (rng.randrange(max(1, b.size >> 4)) << 4)
                self.offices[acc.domain] = [b.address(base - b.first + k) for k in range(1, 13)]
        return accounts

    @staticmethod
    def _consumer_local(rng: random.Random) -> str:
        style = rng.random()
        if style < 0.4:
            return (
                rng.choice(_SURNAMES)
                + rng.choice((".", "_", ""))
                + "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 2)))
            )
        if style < 0.7:
            return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) + str(
                rng.randint(1950, 2015)
            )
        letters = "abcdefghijklmnopqrstuvwxyz"
        return "".join(rng.choice(letters) for _ in range(rng.randint(2, 3))) + str(
            rng.randint(10000, 99999)
        )

    # -- abuse plan -----------------------------------------------------------------

    def _plan_abuse(self) -> None:
        rng = self.rng
        n_abused = max(len(PATTERNS), round(len(self.accounts) * self.mix.abuse_rate))
        # Counts per pattern: proportional to the mix, at least one (two when there is
        # room) of each so that every pattern's recall is measured.
        weights = self.mix.patterns
        total = sum(weights.values())
        floor = 2 if n_abused >= 4 * len(PATTERNS) else 1
        counts = {p: max(floor, round(n_abused * weights[p] / total)) for p in PATTERNS}
        horizon = self.end - self.start
        warmup = min(DAY, 0.3 * horizon)
        latest = self.end - min(6 * HOUR, 0.15 * horizon)

        def when() -> float:
            return rng.uniform(self.start + warmup, latest)

        taken: set[int] = set()
        cid = 0
        # Domain waves first: they need whole office domains.
        by_domain: dict[str, list[Account]] = {}
        for acc in self.accounts:
            if acc.persona == "office":
                by_domain.setdefault(acc.domain, []).append(acc)
        domains = sorted((d for d, accs in by_domain.items() if len(accs) >= 3))
        rng.shuffle(domains)
        wave_left = counts.pop("domain_wave")
        for d in domains:
            if wave_left <= 0:
                break
            staff = by_domain[d]
            k = min(len(staff), rng.randint(3, 8), max(wave_left, 3))
            victims = rng.sample(staff, k)
            cid += 1
            self.campaigns.append(Campaign(cid, "domain_wave", when(), victims))
            taken.update(a.index for a in victims)
            wave_left -= k
        # Victims of the other patterns: "no common trait", so drawn from everyone but
        # bulk senders (rare victims; their volume hides abuse and they are few).
        pool = [a for a in self.accounts if a.index not in taken and a.persona != "bulk"]
        order = [p for p in PATTERNS if p in counts and p != "ip_reuse"]
        for pattern in order:
            for _ in range(counts[pattern]):
                if not pool:
                    break
                acc = pool.pop(rng.randrange(len(pool)))
                cid += 1
                self.campaigns.append(Campaign(cid, pattern, when(), [acc]))
        # IP reuse: later accounts abused by bots already seen abusing another account.
        donors = [c for c in self.campaigns if c.pattern in ("sprinkle", "burst", "domain_wave")]
        for _ in range(counts.get("ip_reuse", 0)):
            if not pool or not donors:
                break
            acc = pool.pop(rng.randrange(len(pool)))
            donor = rng.choice(donors)
            t = rng.uniform(donor.start + 2 * HOUR, max(donor.start + 2 * HOUR, latest))
            cid += 1
            camp = Campaign(cid, "ip_reuse", min(t, latest + 3 * HOUR), [acc])
            camp.donor = donor.id
            self.campaigns.append(camp)
        self.campaigns.sort(key=lambda c: (c.start, c.id))
        self._run_campaigns()

    def _run_campaigns(self) -> None:
        by_id = {c.id: c for c in self.campaigns}
        for camp in self.campaigns:
            rng = random.Random(f"authabuse-simulate:{self.seed}:campaign:{camp.id}")
            runner = getattr(self, f"_camp_{camp.pattern}")
            if camp.pattern == "ip_reuse":
                donor = by_id[camp.donor]
                runner(rng, camp, donor)
            else:
                runner(rng, camp)
            for acc in camp.accounts:
                if acc.abuse is None:  # pragma: no cover - every runner sets it
                    continue
                sessions = acc.abuse.sessions
                sessions.sort(key=lambda s: s.start)
                # Clip to the simulated period: the log ends where the simulation does.
                sessions[:] = [s for s in sessions if s.start < self.end]
                for s in sessions:
                    s.mails = [m for m in s.mails if m.time < self.end]
                if sessions:
                    acc.abuse.end = max(s.end() for s in sessions)

    # Pattern runners: each fills ``acc.abuse`` of its campaign's accounts.

    def _spam(self, rng: random.Random, t: float, acc: Account, *, burst: bool = False) -> Mail:
        r = rng.random()
        if burst:
            n = 1 if r < 0.6 else rng.randint(2, 5)
        else:
            n = 1 if r < 0.4 else rng.randint(2, 10) if r < 0.85 else rng.randint(11, 50)
        domains = rng.choices(_SPAM_KEYS, cum_weights=_SPAM_CUM, k=n)
        # Harvested or generated addresses: a random local part of 5-12 characters.
        rcpts = tuple(f"{_local(rng)}@{d}" for d in domains)
        sender = None
        if rng.random() < 0.03:
            sender = f"{_local(rng)}@{acc.domain}"
        return Mail(t, rcpts, int(_lognormal(rng, 3500, 0.5)) + 400 * n, True, sender)

    def _stuffing(self, rng: random.Random, acc: Account, start: float) -> list[Session]:
        """Failed logins that precede half of the takeovers (password guessing)."""
        if rng.random() < 0.5:
            return []
        out = []
        t = start - rng.uniform(0.2, 36) * HOUR
        for _ in range(rng.randint(1, 6)):
            ip = self.botnet[rng.randrange(len(self.botnet))]
            for _ in range(rng.randint(1, 4)):
                if t >= start:
                    break
                out.append(
                    Session(
                        t, acc.name, ip, failures=rng.randint(1, 3), success=False,
                        abusive=True, mechanism="LOGIN",
                        service=rng.choice(("submission", "smtps")),
                        lost=rng.random() < 0.3,
                    )
                )  # fmt: skip
                t += rng.uniform(20, 900)
        return [s for s in out if self.start <= s.start < start]

    def _bot_session(
        self, rng: random.Random, acc: Account, ip: IPAddress, t: float, mails: list[Mail]
    ) -> Session:
        return Session(
            t,
            acc.name,
            ip,
            mails,
            failures=1 if rng.random() < 0.05 else 0,
            abusive=True,
            mechanism="LOGIN" if rng.random() < 0.8 else "PLAIN",
            service="submission" if rng.random() < 0.7 else "smtps",
        )

    def _spread(  # noqa: PLR0917  # private helper, called in one way
        self,
        rng: random.Random,
        acc: Account,
        ips: list[IPAddress],
        start: float,
        hours: float,
        per_ip: tuple[int, int],
        min_gap: float,
    ) -> list[Session]:
        """Pattern B: each bot sends a few mails, never back to back; ramping up."""
        sessions = []
        first = True
        for ip in ips:
            # Bots join over the campaign (more of them as it goes on).
            t = start if first else start + hours * HOUR * rng.random() ** 0.7
            first = False
            for _ in range(rng.randint(*per_ip)):
                if t >= self.end:
                    break
                sessions.append(self._bot_session(rng, acc, ip, t, [self._spam(rng, t + 0.6, acc)]))
                t += min_gap + rng.expovariate(1.0 / (2 * min_gap))
        return sessions

    def _begin(self, camp: Campaign, acc: Account, start: float) -> Abuse:
        acc.abuse = Abuse(camp.pattern, camp.id, start)
        return acc.abuse

    def _camp_sprinkle(self, rng: random.Random, camp: Campaign) -> None:
        acc = camp.accounts[0]
        n = max(100, min(5000, round(_lognormal(rng, 450, 0.8))))
        camp.ips = rng.sample(self.botnet, min(n, len(self.botnet) // 2))
        ab = self._begin(camp, acc, camp.start)
        ab.sessions += self._stuffing(rng, acc, camp.start)
        ab.sessions += self._spread(rng, acc, camp.ips, camp.start, rng.uniform(3, 30), (1, 5), 240)

    def _camp_domestic(self, rng: random.Random, camp: Campaign) -> None:
        acc = camp.accounts[0]
        n = max(50, min(1500, round(_lognormal(rng, 220, 0.7))))
        camp.ips = rng.sample(self.domestic_botnet, min(n, len(self.domestic_botnet) // 2))
        ab = self._begin(camp, acc, camp.start)
        ab.sessions += self._stuffing(rng, acc, camp.start)
        ab.sessions += self._spread(rng, acc, camp.ips, camp.start, rng.uniform(3, 24), (1, 6), 300)

    def _camp_domain_wave(self, rng: random.Random, camp: Campaign) -> None:
        # One infected office: the same bots use every stolen account of the domain.
        n = max(80, min(2000, round(_lognormal(rng, 300, 0.7))))
        camp.ips = rng.sample(self.botnet, min(n, len(self.botnet) // 2))
        t0 = camp.start
        for acc in camp.accounts:
            start = t0 + rng.uniform(0, 90) * 60 if acc is not camp.accounts[0] else t0
            ab = self._begin(camp, acc, start)
            ab.sessions += self._stuffing(rng, acc, start)
            mine = rng.sample(camp.ips, max(20, round(len(camp.ips) * rng.uniform(0.2, 0.6))))
            ab.sessions += self._spread(rng, acc, mine, start, rng.uniform(2, 12), (1, 4), 300)

    def _camp_burst(self, rng: random.Random, camp: Campaign) -> None:
        # Pattern A: one (or a few) addresses sending several mails per second for
        # about an hour, in long SMTP sessions.
        acc = camp.accounts[0]
        n_ips = rng.choice((1, 1, 1, 2, 2, 3, 4))
        camp.ips = rng.sample(self.burst_hosts, n_ips)
        ab = self._begin(camp, acc, camp.start)
        ab.sessions += self._stuffing(rng, acc, camp.start)
        t_ip = camp.start
        for ip in camp.ips:
            rate = rng.uniform(1.0, 4.0)
            stop = t_ip + rng.uniform(35, 75) * 60
            t = t_ip
            while t < stop and t < self.end:
                mails = []
                tm = t + 0.8
                for _ in range(rng.randint(20, 100)):
                    if tm >= stop:
                        break
                    mails.append(self._spam(rng, tm, acc, burst=True))
                    tm += rng.expovariate(rate)
                if mails:
                    ab.sessions.append(self._bot_session(rng, acc, ip, t, mails))
                t = tm + rng.uniform(0.5, 4)
            t_ip += rng.uniform(0, 30) * 60

    def _camp_slow(self, rng: random.Random, camp: Campaign) -> None:
        # Low and slow: a handful of bots a day, a few mails each, for days.
        acc = camp.accounts[0]
        ab = self._begin(camp, acc, camp.start)
        ab.sessions += self._stuffing(rng, acc, camp.start)
        day = camp.start
        first = True
        while day < self.end:
            ips = rng.sample(self.botnet, rng.randint(1, 4))
            camp.ips += ips
            per_day = rng.randint(3, 18)
            for k in range(per_day):
                ip = ips[k % len(ips)]
                t = day if first else day + rng.uniform(0, DAY)
                first = False
                ab.sessions.append(
                    self._bot_session(rng, acc, ip, t, [self._spam(rng, t + 0.7, acc)])
                )
            day += DAY

    def _camp_ip_reuse(self, rng: random.Random, camp: Campaign, donor: Campaign) -> None:
        # Bots that already abused another account log in to this one too.
        acc = camp.accounts[0]
        seen = sorted(
            (s.start, s.ip)
            for a in donor.accounts
            if a.abuse is not None
            for s in a.abuse.sessions
            if s.mails
        )
        if seen and seen[0][0] + HOUR > camp.start:
            camp.start = seen[0][0] + HOUR
        # Only bots that have already abused the donor by now.
        donor_ips = list(dict.fromkeys(ip for t, ip in seen if t < camp.start - 60))
        donor_ips = donor_ips or self.botnet[:20]
        camp.ips = rng.sample(donor_ips, min(len(donor_ips), rng.randint(3, 12)))
        ab = self._begin(camp, acc, camp.start)
        hours = rng.uniform(2, 12)
        ab.sessions += self._spread(rng, acc, camp.ips, camp.start, hours, (2, 12), 600)

    # -- legitimate traffic ---------------------------------------------------------

    def account_sessions(self, acc: Account) -> Iterator[Session]:
        """All sessions of one account (legitimate and abusive), by start time."""
        legit = _Persona(self, acc).sessions()
        if acc.abuse is None:
            return legit
        return heapq.merge(legit, acc.abuse.sessions, key=lambda s: s.start)

    def background_sessions(self) -> Iterator[Session]:
        """Password guessing against random and real user names that never succeeds."""
        rng = random.Random(f"authabuse-simulate:{self.seed}:background")
        per_day = max(5.0, len(self.accounts) * 0.02)
        t = self.start
        names = [a.name for a in self.accounts]
        while True:
            t += rng.expovariate(per_day / DAY)
            if t >= self.end:
                return
            ip = self.botnet[rng.randrange(len(self.botnet))]
            for _ in range(rng.randint(1, 5)):
                if rng.random() < 0.5:
                    user = rng.choice(names)
                else:
                    user = (
                        rng.choice(("admin", "info", "test", "sales", "support", "user", "web"))
                        + "@"
                        + rng.choice((self.isp_domain, *sorted(self.offices)[:5]))
                    )
                yield Session(
                    t, user, ip, failures=rng.randint(1, 3), success=False,
                    mechanism="LOGIN", service="submission", lost=rng.random() < 0.4,
                )  # fmt: skip
                t += rng.uniform(1, 30)


class _Persona:
    """The legitimate behaviour of one account."""

    def __init__(self, world: World, acc: Account) -> None:
        self.w, self.acc = world, acc
        self.rng = rng = random.Random(acc.seed)
        space, start = world.space, world.start
        self.contacts = self._contacts()
        p = acc.persona
        self.offset = UTC_OFFSET.get(acc.country, 9) * HOUR
        self.hours = OFFICE_HOURS if p in ("office", "bulk") else HOME_HOURS
        median_rate = {
            "low_volume": 0.5, "home": 3.5, "mobile": 5, "ipv6": 3.5, "office": 12,
            "traveller": 3, "vpn": 3.5, "abroad": 3, "bulk": 60,
        }[p]  # fmt: skip
        acc.rate = _lognormal(rng, median_rate, 0.75)
        # Home line: dynamic address of a residential ISP, new lease every few days.
        home_cc = acc.country if p == "abroad" else "JP"
        home_block = space.pick_block(rng, home_cc, role="residential")
        self.home = _Rotator(rng, start, rng.uniform(1, 20) * DAY, _Draw(home_block))
        carrier = rng.choices(range(len(world.carriers)), world.carrier_weights)[0]
        self.mobile = _Rotator(rng, start, HOUR, _Draw(pool=world.carriers[carrier]), jitter=0.4)
        if p == "abroad":
            self.mobile = _Rotator(
                rng, start, 2 * HOUR, _Draw(space.pick_block(rng, home_cc, role="mobile"))
            )
        if p == "ipv6":
            b6 = space.pick_block(rng, "JP", version=6, role="residential")
            n64 = max(1, b6.size >> 64)
            self.prefix = b6.first + (rng.randrange(n64) << 64)
            self.iid = rng.getrandbits(64)
            self.iid_day = -1
        if p == "vpn":
            exits = world.vpn_exits
            self.favourites = rng.sample(exits, 2)
            self.vpn_share = rng.uniform(0.4, 0.9)
            # Most users stay on a favourite server or two and sometimes take another
            # (mostly nearby); a few let the client hop to a random server each time.
            self.hopper = rng.random() < 0.12
            self.hop = 0.7 if self.hopper else 0.2
            self.nearby = [ip for ip, cc in world.vpn_exit_countries if cc in _NEAR_JP]
        if p == "traveller":
            self.trip = self._plan_trip()
        if p == "bulk":
            b = space.pick_block(rng, "JP", role="hosting")
            self.servers = [b.random_address(rng) for _ in range(rng.randint(1, 2))]
            self.list_size = round(min(5000, max(150, _lognormal(rng, 800, 0.7))))
            self.send_hour = rng.choice((7, 9, 10, 12, 17, 20))
        self.fail_rate = 0.01

    def _contacts(self) -> list[str]:
        rng, acc = self.rng, self.acc
        n = rng.randint(3, 40)
        out = []
        for _ in range(n):
            r = rng.random()
            local = rng.choice(_SURNAMES) + str(rng.randint(1, 999))
            if acc.persona == "office" and r < 0.5:
                domain = acc.domain if r < 0.25 else f"biz{rng.randint(1, 9999):04d}.example.co.jp"
            elif r < 0.8:
                domain = rng.choice(FREEMAIL)
            else:
                domain = self.w.isp_domain
            out.append(f"{local}@{domain}")
        return out

    def _plan_trip(self) -> list[tuple[float, float, list[IPAddress]]]:
        """Plan the stops abroad: (from, to, hotel/cafe addresses)."""
        rng, w = self.rng, self.w
        t = rng.uniform(w.start - 2 * DAY, max(w.start, w.end - DAY))
        end = t + rng.uniform(3, 9) * DAY
        stops = []
        countries = rng.sample(TRIP_COUNTRIES, rng.randint(1, 3))
        legs = len(countries)
        for i, cc in enumerate(countries):
            a = t + (end - t) * i / legs
            b = t + (end - t) * (i + 1) / legs
            addrs = [
                w.space.pick_block(
                    rng, cc, role=rng.choice(("residential", "business"))
                ).random_address(rng)
                for _ in range(rng.randint(1, 4))
            ]
            stops.append((a, b, addrs))
        return stops

    def _ip(self, t: float) -> tuple[IPAddress, str]:  # noqa: PLR0911, PLR0912  # one branch per persona
        """Return the address (and reverse DNS name) of a session at ``t``."""
        rng, p = self.rng, self.acc.persona
        r = rng.random()
        if p == "mobile":
            return (self.mobile.at(t) if r < 0.75 else self.home.at(t)), "unknown"
        if p in ("home", "low_volume"):
            share = 0.3 if p == "home" else 0.15
            return (self.mobile.at(t) if r < share else self.home.at(t)), "unknown"
        if p == "ipv6":
            if r < 0.15:
                return self.home.at(t), "unknown"
            day = int((t - self.w.start) // DAY)
            if day != self.iid_day or rng.random() < 0.5:
                self.iid, self.iid_day = rng.getrandbits(64), day
            return IPv6Address(self.prefix | self.iid), "unknown"
        if p == "office":
            if r < 0.12:
                return self.mobile.at(t), "unknown"
            if r < 0.2:
                return self.home.at(t), "unknown"
            pool = self.w.offices[self.acc.domain]
            return pool[rng.randrange(len(pool))], "unknown"
        if p == "vpn":
            if r < self.vpn_share:
                if rng.random() >= self.hop:
                    return rng.choice(self.favourites), "unknown"
                if self.hopper or not self.nearby:
                    return rng.choice(self.w.vpn_exits), "unknown"
                return rng.choice(self.nearby), "unknown"
            return self.home.at(t), "unknown"
        if p == "traveller":
            for a, b, addrs in self.trip:
                if a <= t < b:
                    if r < 0.4:
                        return self.mobile.at(t), "unknown"  # roaming exits at home
                    return rng.choice(addrs), "unknown"
            return (self.mobile.at(t) if r < 0.3 else self.home.at(t)), "unknown"
        if p == "abroad":
            return (self.mobile.at(t) if r < 0.15 else self.home.at(t)), "unknown"
        if p == "bulk":
            return rng.choice(self.servers), f"mail.{self.acc.domain}"
        return self.home.at(t), "unknown"

    def _times(self, day0: float, n: int) -> list[float]:
        rng, hours = self.rng, self.hours
        out = []
        for _ in range(n):
            h = rng.choices(range(24), hours)[0]
            out.append(day0 + h * HOUR + rng.uniform(0, HOUR))
        out.sort()
        return out

    def _mail(self, t: float) -> Mail:
        rng = self.rng
        r = rng.random()
        n = 1 if r < 0.72 else rng.randint(2, 5) if r < 0.96 else rng.randint(6, 20)
        rcpts = []
        for _ in range(n):
            if rng.random() < 0.1:  # someone new
                addr = f"{rng.choice(_SURNAMES)}{rng.randint(1, 9999)}@{rng.choice(FREEMAIL)}"
                if rng.random() < 0.3:
                    self.contacts.append(addr)
                rcpts.append(addr)
            else:
                rcpts.append(rng.choice(self.contacts))
        rcpts = list(dict.fromkeys(rcpts))
        size = int(_lognormal(rng, 4000, 0.8)) + (rng.randint(50_000, 4_000_000) if r > 0.93 else 0)
        return Mail(t, tuple(rcpts), size)

    def sessions(self) -> Iterator[Session]:
        rng, w, acc = self.rng, self.w, self.acc
        # Local midnight of each simulated day for this account's time zone.
        day0 = w.start
        while day0 < w.end:
            weekday = int((day0 + 9 * HOUR) // DAY + 3) % 7  # 0 = Monday (epoch was Thursday)
            weekend = weekday >= 5
            out: list[Session] = []
            if acc.persona == "bulk":
                out += self._bulk_day(day0, weekend)
            factor = (0.3 if weekend else 1.0) if acc.persona == "office" else 0.9
            local0 = day0 + (9 * HOUR - self.offset)  # same local midnight as JP's day0
            for t in self._times(local0, _poisson(rng, acc.rate * factor)):
                if not w.start <= t < w.end:
                    continue
                ip, host = self._ip(t)
                fails = 1 if rng.random() < self.fail_rate else 0
                out.append(
                    Session(
                        t, acc.name, ip, [self._mail(t + 0.5 + fails * 2)], failures=fails,
                        mechanism=acc.mechanism, service=acc.service, host=host,
                    )
                )  # fmt: skip
            out.sort(key=lambda s: s.start)
            yield from out
            day0 += DAY

    def _bulk_day(self, day0: float, weekend: bool) -> list[Session]:
        rng, acc, w = self.rng, self.acc, self.w
        out: list[Session] = []
        if weekend and rng.random() < 0.6:
            return out
        # The newsletter: the whole list at a few mails per second, in long sessions.
        t = day0 + self.send_hour * HOUR + rng.uniform(0, 600)
        rate = rng.uniform(2, 8)
        left = int(self.list_size * rng.uniform(0.95, 1.02))
        server = rng.choice(self.servers)
        while left > 0 and t < w.end:
            mails = []
            tm = t + 0.3
            for _ in range(min(left, 100)):
                addr = f"m{rng.randrange(self.list_size):05d}@{rng.choice(FREEMAIL)}"
                mails.append(Mail(tm, (addr,), int(_lognormal(rng, 25000, 0.2))))
                tm += rng.expovariate(rate)
            left -= len(mails)
            if t >= w.start:
                out.append(
                    Session(t, acc.name, server, mails, mechanism="PLAIN", service="submission",
                            host=f"mail.{acc.domain}")
                )  # fmt: skip
            t = tm + rng.uniform(0.2, 2)
        return out
