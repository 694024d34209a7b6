"""Shape helpers shared by the fusion blocks: padding to a multiple, window partition and its inverse.

Every helper works from ``x.ndim`` so one code path serves 2D ``(B, C, H, W)`` and 3D ``(B, C, H, W, D)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from asfe3d.utils import is_int

__all__ = [
    "check_spatial_dims", "pad_to_multiple", "crop_to", "window_partition", "window_reverse", "ensure_tuple_dims",
    "shape_text",
]


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 2 or 3.

    Raises:
        ValueError: when ``spatial_dims`` is not the integer 2 or 3 (a float such as ``2.0`` or a bool is refused).
    """
    if not is_int(spatial_dims) or spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return int(spatial_dims)


def ensure_tuple_dims(value: int | Sequence[int], spatial_dims: int, name: str) -> tuple[int, ...]:
    """Expand an int to a ``spatial_dims``-tuple and check every entry is a positive int.

    Raises:
        ValueError: when an entry is not positive or the length does not match ``spatial_dims``.
    """
    problem = ValueError(f"{name} must be a positive int or {spatial_dims} positive ints, got {value!r}")
    if is_int(value):
        vals: tuple[int, ...] = (int(value),) * spatial_dims
    elif isinstance(value, (list, tuple)) and all(is_int(v) for v in value):  # (2.5, "abc", True: refused)
        vals = tuple(int(v) for v in value)
    else:
        raise problem
    if len(vals) != spatial_dims or any(v < 1 for v in vals):
        raise problem
    return vals


def shape_text(x: torch.Tensor) -> str:
    """A tensor's shape as error messages write it, ``(1, 2, 16, 16)`` (TorchScript-compatible)."""
    dims = [str(int(s)) for s in x.shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def pad_to_multiple(
    x: torch.Tensor, multiple: list[int], mode: str = "constant", min_multiples: int = 1
) -> tuple[torch.Tensor, list[int]]:
    """Pad the spatial dims of ``x`` (at the end) up to a multiple of ``multiple``.

    TorchScript-compatible (as every helper here): the networks that call them can be scripted.

    Args:
        x: tensor ``(B, C, *spatial)``.
        multiple: one int per spatial dim (as many as ``x`` has spatial dims).
        mode: ``torch.nn.functional.pad`` mode (``"constant"`` pads with zeros).
        min_multiples: pad each dim to at least this many multiples (so tiny inputs still leave more than one
            voxel at the coarsest scale, which instance norm needs).

    Returns:
        The padded tensor and the original spatial size (a list of ints).
    """
    size = [int(s) for s in x.shape[2:]]
    mult = [int(m) for m in multiple]
    pads: list[int] = []
    padded = False
    for i in range(len(size) - 1, -1, -1):  # F.pad takes the last dim first
        s, m = size[i], mult[i]
        extra = max(s + (m - s % m) % m, min_multiples * m) - s
        pads += [0, extra]
        padded = padded or extra != 0
    if padded:
        x = F.pad(x, pads, mode=mode)
    return x, size


def crop_to(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Crop the spatial dims of ``x`` to ``size`` (keeping the start; a dim already smaller is kept whole)."""
    for i in range(len(size)):
        x = x.narrow(i + 2, 0, min(int(size[i]), x.shape[i + 2]))
    return x


def _prod(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def window_partition(x: torch.Tensor, window: list[int]) -> tuple[torch.Tensor, list[int]]:
    """Split a channel-first grid into non-overlapping windows of tokens.

    Args:
        x: tensor ``(B, C, *grid)`` whose grid sizes are multiples of ``window``.
        window: window size per spatial dim.

    Returns:
        Tokens ``(B * num_windows, prod(window), C)`` and the number of windows per dim (a list of ints).
    """
    b, c = x.shape[0], x.shape[1]
    nd = x.dim() - 2
    counts = [int(x.shape[2 + i]) // int(window[i]) for i in range(nd)]
    shape = [b, c]
    for i in range(nd):
        shape += [counts[i], int(window[i])]
    x = x.reshape(shape)
    perm = [0] + [2 + 2 * i for i in range(nd)] + [3 + 2 * i for i in range(nd)] + [1]
    x = x.permute(perm)
    return x.reshape([b * _prod(counts), _prod([int(w) for w in window]), c]), counts


def window_reverse(tokens: torch.Tensor, window: list[int], counts: list[int]) -> torch.Tensor:
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
    b = tokens.shape[0] // _prod([int(n) for n in counts])
    shape = [b]
    shape += [int(n) for n in counts]
    shape += [int(w) for w in window]
    shape += [c]
    x = tokens.reshape(shape)
    perm = [0, 1 + 2 * nd]
    for i in range(nd):
        perm += [1 + i, 1 + nd + i]
    x = x.permute(perm)
    return x.reshape([b, c] + [int(counts[i]) * int(window[i]) for i in range(nd)])
