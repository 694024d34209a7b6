"""Type checks shared by the argument checks of every tier."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["is_int", "is_real", "voxel_sizes"]


def is_int(value: Any) -> bool:
    """An integer (``int`` or a numpy integer), not a ``bool``: ``2.0``, ``True`` and ``"2"`` are not."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (``int``, ``float`` or a numpy number), not a ``bool``: ``True``, ``"2.0"`` and ``2j`` are not
    (finiteness and range are the caller's to check)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def voxel_sizes(spacing: Any, ndim: int) -> np.ndarray:
    """``spacing`` (one voxel size, or one per axis) as ``ndim`` finite voxel sizes > 0 (mm, float64).

    Raises:
        ValueError: anything else (a bool, a string, a NaN or inf, 0, the wrong count), quoted.
    """
    values = None if isinstance(spacing, (str, bytes)) else np.asarray(spacing, dtype=object).ravel().tolist()
    if not values or len(values) not in (1, ndim) or not all(is_real(v) and math.isfinite(v) and v > 0
                                                             for v in values):
        raise ValueError(f"spacing must be one voxel size or {ndim}, finite numbers > 0 (mm), got {spacing!r}")
    return np.broadcast_to(np.asarray(values, float), (ndim,)).copy()
