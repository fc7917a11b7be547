"""Conformance kits that third-party plug-ins and authabuse's own implementations pass.

Each ``check_*`` function exercises an implementation of one of authabuse's protocols
and raises :class:`AssertionError` naming the first property it violates.
"""

from __future__ import annotations

from authabuse.testing._counters import check_counter_store, check_sketch
from authabuse.testing._geo import check_geo_resolver

__all__: list[str] = ["check_counter_store", "check_geo_resolver", "check_sketch"]
