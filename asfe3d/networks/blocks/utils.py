"""Shape helpers shared by the fusion blocks: padding to a multiple, window partition and its inverse.

Every helper works from ``x.ndim`` so one code path serves 2D ``(B, C, H, W)`` and 3D ``(B, C, H, W, D)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["check_spatial_dims", "pad_to_multiple", "crop_to", "window_partition", "window_reverse", "ensure_tuple_dims"]


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 2 or 3.

    Raises:
        ValueError: when ``spatial_dims`` is not 2 or 3.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return int(spatial_dims)


def ensure_tuple_dims(value: int | Sequence[int], spatial_dims: int, name: str) -> tuple[int, ...]:
    """Expand an int to a ``spatial_dims``-tuple and check every entry is a positive int.

    Raises:
        ValueError: when an entry is not positive or the length does not match ``spatial_dims``.
    """
    vals = (int(value),) * spatial_dims if isinstance(value, int) else tuple(int(v) for v in value)
    if len(vals) != spatial_dims or any(v < 1 for v in vals):
        raise ValueError(f"{name} must be a positive int or {spatial_dims} positive ints, got {value!r}")
    return vals


def pad_to_multiple(
    x: torch.Tensor, multiple: Sequence[int], mode: str = "constant", min_multiples: int = 1
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Pad the spatial dims of ``x`` (at the end) up to a multiple of ``multiple``.

    Args:
        x: tensor ``(B, C, *spatial)``.
        multiple: one int per spatial dim.
        mode: ``torch.nn.functional.pad`` mode (``"constant"`` pads with zeros).
        min_multiples: pad each dim to at least this many multiples (so tiny inputs still leave more than one
            voxel at the coarsest scale, which instance norm needs).

    Returns:
        The padded tensor and the original spatial size.
    """
    size = tuple(x.shape[2:])
    pads: list[int] = []
    for s, m in zip(reversed(size), reversed(tuple(multiple))):
        pads += [0, max(s + (-s) % m, min_multiples * m) - s]
    if any(pads):
        x = F.pad(x, pads, mode=mode)
    return x, size


def crop_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop the spatial dims of ``x`` to ``size`` (keeping the start)."""
    return x[(slice(None), slice(None)) + tuple(slice(0, s) for s in size)]


def window_partition(x: torch.Tensor, window: Sequence[int]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Split a channel-first grid into non-overlapping windows of tokens.

    Args:
        x: tensor ``(B, C, *grid)`` whose grid sizes are multiples of ``window``.
        window: window size per spatial dim.

    Returns:
        Tokens ``(B * num_windows, prod(window), C)`` and the number of windows per dim.
    """
    b, c = x.shape[:2]
    nd = x.ndim - 2
    counts = tuple(g // w for g, w in zip(x.shape[2:], window))
    shape = [b, c]
    for n, w in zip(counts, window):
        shape += [n, w]
    x = x.reshape(shape)
    perm = [0] + [2 + 2 * i for i in range(nd)] + [3 + 2 * i for i in range(nd)] + [1]
    x = x.permute(perm)
    n_win = 1
    for n in counts:
        n_win *= n
    w_tok = 1
    for w in window:
        w_tok *= w
    return x.reshape(b * n_win, w_tok, c), counts


def window_reverse(tokens: torch.Tensor, window: Sequence[int], counts: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`.

    Args:
        tokens: ``(B * num_windows, prod(window), C)``.
        window: window size per spatial dim.
        counts: windows per spatial dim (as returned by :func:`window_partition`).

    Returns:
        Tensor ``(B, C, *grid)``.
    """
    nd = len(window)
    c = tokens.shape[-1]
    n_win = 1
    for n in counts:
        n_win *= n
    b = tokens.shape[0] // n_win
    x = tokens.reshape([b, *counts, *window, c])
    perm = [0, 1 + 2 * nd]
    for i in range(nd):
        perm += [1 + i, 1 + nd + i]
    x = x.permute(perm)
    return x.reshape([b, c] + [n * w for n, w in zip(counts, window)])
