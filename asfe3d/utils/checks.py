"""Type checks shared by the argument checks of every tier."""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["is_int", "is_real"]


def is_int(value: Any) -> bool:
    """An integer (``int`` or a numpy integer), not a ``bool``: ``2.0``, ``True`` and ``"2"`` are not."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (``int``, ``float`` or a numpy number), not a ``bool``: ``True``, ``"2.0"`` and ``2j`` are not
    (finiteness and range are the caller's to check)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
