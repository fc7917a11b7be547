"""`authabuse geo`: text and JSON output, --info, --geo databases, bad addresses."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from authabuse.cli import main

MAXMIND = Path(__file__).parent / "data" / "maxmind"


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["geo", "8.8.8.8", "10.1.2.3", "2001:200::1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t") == [
        "8.8.8.8",
        "US",
        "AS15169",
        "Google LLC",
        "8.8.8.0/24",
        "dbip-country-lite-2026-06+ip-location-db-asn-2026-06-17",
    ]
    assert lines[1] == "10.1.2.3\tnot routable\t10.0.0.0/8\tspecial-use: Private-Use (RFC 1918)"
    assert lines[2].startswith("2001:200::1\tJP\tAS2500\tWIDE Project\t")


def test_json_output_one_object_per_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["geo", "--json", "212.77.98.9", "::ffff:202.232.2.1", "fe80::1%eth0"]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["ip"] for o in objs] == ["212.77.98.9", "202.232.2.1", "fe80::1"]
    assert {k: objs[0][k] for k in ("country", "asn", "org", "network")} == {
        "country": "PL",
        "asn": 12827,
        "org": "Wirtualna Polska Media S.A.",
        "network": "212.77.96.0/20",
    }
    assert set(objs[0]) >= {"ip", "country", "asn", "org", "network", "source"}
    assert objs[2]["routable"] is False
    assert objs[2]["country"] is None


def test_bad_addresses_are_reported_and_the_rest_answered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["geo", "not-an-ip", "8.8.8.8", "1.2.3.4.5"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("8.8.8.8\tUS")
    assert "not an IP address: 'not-an-ip'" in err
    assert "'1.2.3.4.5'" in err
    assert main(["geo"]) == 2


def test_info_shows_databases_and_build_dates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["geo", "--info"]) == 0
    out = capsys.readouterr().out
    assert "dbip-country-lite-2026-06: country, built 2026-06-01" in out
    assert "ip-location-db-asn-2026-06-17: asn, built 2026-06-17" in out
    assert "IP Geolocation by DB-IP" in out
    assert main(["geo", "--info", "--json"]) == 0
    infos = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [i["build_date"] for i in infos] == ["2026-06-01", "2026-06-17"]


def test_geo_option_with_mmdb_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("maxminddb", reason="the geoip2 extra is not installed")
    csv_path = tmp_path / "asn.csv"
    csv_path.write_text("89.160.0.0,89.160.255.255,64512,Example AS\n")
    args = [
        "geo",
        "--json",
        "--geo",
        str(MAXMIND / "GeoLite2-Country-Test.mmdb"),
        "--geo",
        str(csv_path),
    ]
    assert main([*args, "89.160.20.112"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert (obj["country"], obj["asn"], obj["source"]) == (
        "SE",
        64512,
        "GeoLite2-Country-Test.mmdb+asn.csv",
    )
    assert main(["geo", "--info", "--geo", str(MAXMIND / "GeoLite2-City-Test.mmdb")]) == 0
    assert "(GeoLite2-City), built " in capsys.readouterr().out


def test_bad_database_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("1.0.0.0,1.0.0.255,AU\n1.0.1.0,1.0.0.0,AU\n")
    assert main(["geo", "--geo", str(bad), "1.0.0.1"]) == 2
    assert "bad.csv:2: start '1.0.1.0' is after end '1.0.0.0'" in capsys.readouterr().err


def test_stdin_and_console_script(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("8.8.8.8\n# comment\n\n202.232.2.1\n"))
    assert main(["geo", "-"]) == 0
    assert [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()] == ["US", "JP"]
    done = subprocess.run(
        [sys.executable, "-m", "authabuse", "geo", "--json", "212.77.98.9"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["country"] == "PL"
