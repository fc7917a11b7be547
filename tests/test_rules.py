"""Rules: the condition algebra, printing and parsing, policy, TOML files with errors."""

# ruff: noqa: E501 - the table of rule-file snippets reads best one case per line

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authabuse.errors import ConfigurationError
from authabuse.rules import (
    Allowlist,
    Condition,
    F,
    Level,
    Policy,
    Rule,
    RuleSet,
    default_rules,
    feature_names,
    load_rules,
    parse_condition,
)

NUMERIC = [n for n in feature_names() if n.rsplit("_", 1)[-1] in {"1h", "24h"}]
FLAGS = ["ip_in_abuse", "network_usual", "country_usual", "ip_usual", "auth_failed"]


def conditions() -> st.SearchStrategy[Condition]:
    compare = st.builds(
        lambda name, op, value: {
            ">=": lambda f: f >= value,
            ">": lambda f: f > value,
            "<=": lambda f: f <= value,
            "<": lambda f: f < value,
        }[op](getattr(F, name)),
        st.sampled_from(NUMERIC),
        st.sampled_from([">=", ">", "<=", "<"]),
        st.one_of(st.integers(0, 10_000), st.sampled_from([0.5, 0.25, 2.5])),
    )
    flag = st.sampled_from(FLAGS).map(lambda n: getattr(F, n))
    leaf = st.one_of(compare, flag)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda ab: ab[0] & ab[1]),
            st.tuples(inner, inner).map(lambda ab: ab[0] | ab[1]),
            inner.map(lambda c: ~c),
        ),
        max_leaves=8,
    )


@settings(max_examples=300, deadline=None)
@given(conditions(), st.data())
def test_printed_form_parses_back_and_evaluates_the_same(
    cond: Condition, data: st.DataObject
) -> None:
    parsed = parse_condition(str(cond))
    assert parsed == cond
    assert parse_condition(repr(cond)) == cond  # the Python form parses too
    values = {
        name: (data.draw(st.booleans()) if name in FLAGS else data.draw(st.integers(0, 20_000)))
        for name in cond.reads
    }
    assert parsed.evaluate(values) == cond.evaluate(values)


def test_operators_build_new_conditions_and_leave_operands_alone() -> None:
    a = F.ips_1h >= 20
    b = F.countries_1h >= 4
    both = a & b
    either = a | b
    assert repr(a) == "F.ips_1h >= 20"
    assert repr(b) == "F.countries_1h >= 4"
    assert repr(both) == "(F.ips_1h >= 20) & (F.countries_1h >= 4)"
    assert repr(either) == "(F.ips_1h >= 20) | (F.countries_1h >= 4)"
    assert repr(~both) == "~((F.ips_1h >= 20) & (F.countries_1h >= 4))"
    assert (
        repr((a | b) & F.ip_in_abuse)
        == "((F.ips_1h >= 20) | (F.countries_1h >= 4)) & F.ip_in_abuse"
    )
    assert both.evaluate({"ips_1h": 25, "countries_1h": 4})
    assert not both.evaluate({"ips_1h": 25, "countries_1h": 3})
    assert either.evaluate({"ips_1h": 25, "countries_1h": 0})


def test_misuse_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="no truth value"):
        bool(F.ips_1h >= 3)
    with pytest.raises(TypeError, match="compare"):
        F.ips_1h & F.ip_in_abuse
    with pytest.raises(TypeError, match="compare it first"):
        _ = ~F.ips_1h
    with pytest.raises(AttributeError, match="unknown feature"):
        _ = F.ipz_1h
    with pytest.raises(ConfigurationError, match="is a number: compare it"):
        parse_condition("ips_1h")
    with pytest.raises(ConfigurationError, match="unknown feature 'nope'"):
        parse_condition("nope >= 3")
    with pytest.raises(ConfigurationError, match="expected '\\)'"):
        parse_condition("(ips_1h >= 3")
    with pytest.raises(ConfigurationError, match="unexpected"):
        parse_condition("ips_1h >= 3 ; import os")
    with pytest.raises(ConfigurationError):
        parse_condition("__import__('os').system('true')")


def test_parser_accepts_words_and_symbols() -> None:
    c = parse_condition("not (ips_1h >= 3 or countries_24h > 2) and ip_in_abuse")
    assert c == ~((F.ips_1h >= 3) | (F.countries_24h > 2)) & F.ip_in_abuse
    assert parse_condition("ips_1h >= 3 && !ip_usual || ip_in_abuse") == (
        ((F.ips_1h >= 3) & ~F.ip_usual) | F.ip_in_abuse
    )


def test_policy_levels_and_actions() -> None:
    p = Policy(suspicious=30, abuse=90, actions={"abuse": "reject"})
    assert [p.level(s) for s in (0, 29.9, 30, 89, 90, 1e9)] == [
        Level.OK, Level.OK, Level.SUSPICIOUS, Level.SUSPICIOUS, Level.ABUSE, Level.ABUSE,
    ]  # fmt: skip
    assert p.action(Level.ABUSE) == "reject"
    assert p.action(Level.SUSPICIOUS) == "alert"
    with pytest.raises(ConfigurationError):
        Policy(suspicious=100, abuse=50)
    with pytest.raises(ConfigurationError):
        Policy(suspicious=float("nan"))


def test_rule_and_ruleset_validation() -> None:
    with pytest.raises(ConfigurationError, match="rule name"):
        Rule("has space", when=F.ip_in_abuse, score=1)
    with pytest.raises(ConfigurationError, match="score"):
        Rule("x", when=F.ip_in_abuse, score=float("inf"))
    r = Rule("x", when=F.ip_in_abuse, score=1)
    with pytest.raises(ConfigurationError, match="two rules"):
        RuleSet((r, r))


def test_default_rules_are_well_formed() -> None:
    rs = default_rules()
    assert len(rs.rules) >= 8
    assert rs.windows() == {"1h", "24h"}
    for rule in rs.rules:
        assert parse_condition(str(rule.when)) == rule.when
    assert default_rules("30m", "12h").windows() == {"30m", "12h"}


GOOD = """\
# a comment
[policy]
suspicious = 40
abuse = 80
[policy.actions]
abuse = "reject"

[[rule]]
name = "many-ips"
when = "ips_1h >= 30 and not network_usual"
score = 50
describe = "many addresses"

[[rule]]
name = "abuse-ip"
when = "ip_in_abuse"
score = 40

[allow]
accounts = ["noc@example.jp"]
networks = ["192.0.2.0/24", "2001:db8::/32"]
asns = [64500, "AS64501"]
"""


def test_load_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD, encoding="utf-8")
    rs = load_rules(path)
    assert [r.name for r in rs.rules] == ["many-ips", "abuse-ip"]
    assert rs.rules[0].when == (F.ips_1h >= 30) & ~F.network_usual
    assert rs.policy.suspicious == 40
    assert rs.policy.action(Level.ABUSE) == "reject"
    assert rs.allow.accounts == frozenset({"noc@example.jp"})
    assert rs.allow.asns == frozenset({64500, 64501})


def test_load_rules_can_extend_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[defaults]\ninclude = true\n[[rule]]\nname = "burst"\nwhen = "ip_mails_1h >= 50"\nscore = 5\n'
    )
    rs = load_rules(path)
    names = [r.name for r in rs.rules]
    assert names.count("burst") == 1
    assert "sprinkle" in names
    assert next(r for r in rs.rules if r.name == "burst").score == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[rule]]\nname = "x"\nwhen = "ips_1h >= "\nscore = 1\n', r"rules.toml:3: rule 'x': expected a number"),
        ('[[rule]]\nname = "x"\nwhen = "ips_1h >= 1"\n', r"rules.toml:1: rule is missing 'score'"),
        ('[[rule]]\nname = "x"\nwhen = "ips_1h >= 1"\nscore = "high"\n', r"rules.toml:4: rule x: score must be a number"),
        ('[[rule]]\nname = "x"\nwhen = "ips_1h >= 1"\nscore = 1\ncolour = 3\n', r"rules.toml:5: unknown rule key 'colour'"),
        ('\n\n[[rule]]\nname = "x"\nwhen = "ipz_1h >= 1"\nscore = 1\n', r"rules.toml:5: rule 'x': unknown feature 'ipz_1h'"),
        ('[[rule]]\nname = "x"\nwhen = "ips_1h >= 1"\nscore = 1\n[[rule]]\nname = "x"\nwhen = "ip_in_abuse"\nscore = 1\n', r"two rules are named 'x'"),
        ('[policy]\nsuspicious = 9\nabuse = 3\n[[rule]]\nname = "x"\nwhen = "ip_in_abuse"\nscore = 1\n', r"rules.toml:1: policy needs 0 < suspicious <= abuse"),
        ('[policy]\nwarn = 3\n', r"rules.toml:2: unknown policy key 'warn'"),
        ('[[rule]]\nname = "x"\nwhen = "network_usual >= 3"\nscore = 1\n', r"rules.toml:3: rule 'x': 'network_usual' is a yes/no feature"),
        ('[rules]\nx = 1\n', r"rules.toml:1: unknown section 'rules'"),
        ('[[rule]]\nname = "x"\nwhen = "ip_in_abuse"\nscore = 1\n[allow]\nnetworks = ["300.1.2.0/24"]\n', r"rules.toml:5: allow: not a network"),
        ('[[rule]]\nname = "x"\nwhen = "ip_in_abuse"\nscore = 1\n[allow]\nasns = ["ASX"]\n', r"rules.toml:5: allow: not an AS number"),
        ('[[rule]\nname = "x"\n', r"rules.toml: .*line 1"),
        ("", r"no \[\[rule\]\] tables"),
    ],
)  # fmt: skip
def test_rules_file_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=message):
        load_rules(path)


def test_rules_file_not_utf8_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_bytes(b'[[rule]]\nname = "x\xff"\n')
    with pytest.raises(ConfigurationError, match=r"rules.toml:2: rules file is not UTF-8"):
        load_rules(path)
    with pytest.raises(ConfigurationError, match="cannot read rules file"):
        load_rules(tmp_path / "absent.toml")


def test_allowlist_matches_networks_and_asns() -> None:
    from ipaddress import ip_address

    a = Allowlist(networks=["10.0.0.0/8", "2001:db8:1::/48"], asns=["AS64500"])
    assert a.allows_ip(ip_address("10.200.1.1"), None)
    assert a.allows_ip(ip_address("2001:db8:1:ffff::1"), None)
    assert not a.allows_ip(ip_address("2001:db8:2::1"), None)
    assert not a.allows_ip(ip_address("11.0.0.1"), 64499)
    assert a.allows_ip(ip_address("11.0.0.1"), 64500)
    assert not Allowlist()
