"""Type checks shared by the argument checks of every tier."""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["is_int"]


def is_int(value: Any) -> bool:
    """An integer (``int`` or a numpy integer), not a ``bool``: ``2.0``, ``True`` and ``"2"`` are not."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
