"""``authabuse geo``: place addresses (country, ASN, organisation, network, source)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``geo`` subcommand to the ``authabuse`` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "geo",
        help="place IP addresses: country, ASN, organisation, network, database",
        description=(
            "Place IP addresses with the embedded DB-IP Lite country and ip-location-db "
            "ASN data, or with the databases given by --geo (an .mmdb or a CSV range "
            "table; repeatable, merged in order). '-' reads addresses from stdin."
        ),
    )
    p.add_argument(
        "--geo",
        action="append",
        default=[],
        metavar="PATH",
        help="geo database (.mmdb or CSV range table); repeatable; default: embedded data",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per address")
    p.add_argument("--info", action="store_true", help="show the databases in use and their dates")
    p.add_argument("ips", nargs="*", metavar="IP", help="addresses to place ('-' for stdin)")
    p.set_defaults(func=_run)


def _addresses(items: list[str]) -> Iterator[str]:
    for item in items:
        if item == "-":
            for line in sys.stdin:
                text = line.strip()
                if text and not text.startswith("#"):
                    yield text
        else:
            yield item


def _flatten(info: Any) -> list[dict[str, Any]]:
    if isinstance(info, list):
        return [d for item in info for d in _flatten(item)]
    return [info] if isinstance(info, dict) else [{"source": str(info)}]


def _run(args: argparse.Namespace) -> int:  # noqa: PLR0912  # one branch per output form
    from authabuse.errors import InvalidEventError
    from authabuse.geo import resolver_from_paths
    from authabuse.geo._types import address_of

    resolver = resolver_from_paths(args.geo)
    if args.info:
        infos = _flatten(getattr(resolver, "info", lambda: {})())
        for info in infos:
            if args.json:
                print(json.dumps(info, ensure_ascii=False, sort_keys=True))
                continue
            line = f"{info.get('source')}: {info.get('kind', '?')}"
            if info.get("database_type"):
                line += f" ({info['database_type']})"
            line += f", built {info.get('build_date') or 'unknown'}"
            if "entries" in info:
                line += ", " + ", ".join(f"{k} {v} entries" for k, v in info["entries"].items())
            if info.get("path"):
                line += f", {info['path']}"
            print(line)
            for key in ("license", "attribution"):
                if info.get(key):
                    print(f"    {key}: {info[key]}")
        if not args.ips:
            return 0
    elif not args.ips:
        print("authabuse geo: error: give at least one IP address (or --info)", file=sys.stderr)
        return 2
    status = 0
    for text in _addresses(args.ips):
        try:
            ip = address_of(text)
        except InvalidEventError as exc:
            print(f"authabuse geo: {exc}", file=sys.stderr)
            status = 1
            continue
        loc = resolver.resolve(ip)
        if args.json:
            obj: dict[str, Any] = {
                "ip": str(ip),
                "country": None,
                "asn": None,
                "org": None,
                "network": None,
                "source": None,
                "routable": True,
            }
            if loc is not None:
                obj.update(loc.to_dict())
                for key in ("latitude", "longitude", "accuracy_km"):
                    if obj[key] is None:
                        del obj[key]
            print(json.dumps(obj, ensure_ascii=False))
            continue
        if loc is None:
            print(f"{ip}\tno data")
        elif not loc.routable:
            print(f"{ip}\tnot routable\t{loc.network}\t{loc.source}")
        else:
            asn = f"AS{loc.asn}" if loc.asn is not None else "AS?"
            print(
                f"{ip}\t{loc.country or '??'}\t{asn}\t{loc.org or '-'}\t{loc.network}\t{loc.source}"
            )
    return status
