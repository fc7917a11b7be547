"""Vectorised batch operations for the ``numpy`` extra (bit-identical to the pure path)."""

from __future__ import annotations

from typing import Any

__all__ = ["update_array"]


def update_array(sketch: Any, values: Any) -> None:
    """Add every integer of ``values`` to ``sketch`` (placeholder until the numpy path)."""
    sketch.update(int(v) for v in values)
