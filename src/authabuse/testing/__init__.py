"""Conformance kits that third-party plug-ins and authabuse's own implementations pass.

Each ``check_*`` function exercises an implementation of one of authabuse's protocols
and raises :class:`AssertionError` naming the first property it violates.
"""

from __future__ import annotations

__all__: list[str] = []
