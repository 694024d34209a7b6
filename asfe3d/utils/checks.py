"""Type checks shared by the argument checks of every tier."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["binary", "is_int", "is_real", "voxel_sizes"]


def binary(mask: Any, name: str = "mask") -> np.ndarray:
    """``mask`` as a bool array: bool, or numbers that are all 0 or 1 (a label file read as float or uint8); a soft
    mask (0.02 outside the brain) is refused, not cast to True everywhere.

    Raises:
        ValueError: values other than 0 and 1, or not numbers (quoted: the first few values, or the dtype).
    """
    arr = np.asarray(mask)
    if arr.dtype == np.bool_:
        return arr
    if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
        values = np.unique(arr)[:5].tolist() if np.issubdtype(arr.dtype, np.number) else arr.dtype
        raise ValueError(f"{name} must be boolean (or hold only 0 and 1), got {values}")
    return arr != 0


def is_int(value: Any) -> bool:
    """An integer (``int`` or a numpy integer), not a ``bool``: ``2.0``, ``True`` and ``"2"`` are not."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (``int``, ``float`` or a numpy number), not a ``bool``: ``True``, ``"2.0"`` and ``2j`` are not
    (finiteness and range are the caller's to check)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def voxel_sizes(spacing: Any, ndim: int) -> np.ndarray:
    """``spacing`` (one voxel size, or one per axis: numbers, numpy or 0-d torch values) as ``ndim`` finite voxel
    sizes > 0 (mm, float64).

    Raises:
        ValueError: anything else (a bool, a string, a NaN or inf, 0, the wrong count or shape), quoted.
    """
    items = list(spacing) if isinstance(spacing, (list, tuple)) else [spacing]
    arr = None
    if not isinstance(spacing, (str, bytes)) and not any(isinstance(v, (bool, np.bool_)) for v in items):
        try:
            arr = np.asarray(spacing)
        except (TypeError, ValueError):
            arr = None
    if arr is None or arr.dtype.kind not in "iuf" or arr.ndim > 1 or arr.size not in (1, ndim) \
            or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"spacing must be one voxel size or {ndim}, finite numbers > 0 (mm), got {spacing!r}")
    return np.broadcast_to(arr.astype(np.float64).ravel(), (ndim,)).copy()
