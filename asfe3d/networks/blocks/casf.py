"""CASF: cross-attention spatial fusion of two modalities' feature maps (2D and 3D, one implementation)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv

from asfe3d.networks.blocks.utils import (
    check_spatial_dims,
    crop_to,
    ensure_tuple_dims,
    pad_to_multiple,
    shape_text,
    window_partition,
    window_reverse,
)

__all__ = ["CASF"]


class CASF(nn.Module):
    """Cross-attention spatial fusion (CASF) of ASFE-Fusion, lifted to N-D.

    Each modality's features are patch-embedded (a strided conv with kernel = stride = ``patch_size``), layer
    normalised and projected to its own queries, keys and values. The attention is *crossed*: modality 1's
    self-similarity map ``softmax(q1 k1^T / sqrt(d))`` is applied to modality 2's values and vice versa,

    ``o1 = attention(q1, k1, v2)``, ``o2 = attention(q2, k2, v1)``,

    both computed with :func:`torch.nn.functional.scaled_dot_product_attention` (the attention map is never
    materialised). The two results are averaged, linearly projected, mapped back to the feature grid by a
    transposed conv (kernel = stride = ``patch_size``) and added to both inputs (``out = up + x1 + x2``).

    Attention runs inside non-overlapping windows of ``window_size`` tokens per dim, so the cost and memory
    grow linearly with the number of voxels; ``window_size=None`` attends over all tokens (the 2D paper
    setting). Inputs of any size are zero-padded to a multiple of ``patch_size * window_size`` and cropped back;
    padded tokens take part in the attention of the border windows.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels ``C`` of each input.
        embed_dim: token width (a multiple of ``num_heads``).
        num_heads: attention heads.
        patch_size: patch edge in voxels (int or one per dim).
        window_size: attention window edge in tokens (int or one per dim), or ``None`` for global attention.

    Raises:
        ValueError: on a bad ``spatial_dims``, non-positive sizes, or ``embed_dim`` not divisible by ``num_heads``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        embed_dim: int = 32,
        num_heads: int = 2,
        patch_size: int | Sequence[int] = 2,
        window_size: int | Sequence[int] | None = 4,
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if in_channels < 1 or embed_dim < 1 or num_heads < 1:
            raise ValueError(
                f"in_channels, embed_dim and num_heads must be positive, got {in_channels!r}, {embed_dim!r}, {num_heads!r}"
            )
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.patch_size = ensure_tuple_dims(patch_size, spatial_dims, "patch_size")
        self.window_size = None if window_size is None else ensure_tuple_dims(window_size, spatial_dims, "window_size")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        # the same sizes as lists of ints (what the TorchScript-compatible helpers take)
        self._window: list[int] | None = None if self.window_size is None else list(self.window_size)
        win = [1] * spatial_dims if self.window_size is None else list(self.window_size)
        self._pad_multiple = [p * w for p, w in zip(self.patch_size, win)]
        conv = Conv[Conv.CONV, spatial_dims]
        convt = Conv[Conv.CONVTRANS, spatial_dims]
        self.embed1 = conv(in_channels, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.embed2 = conv(in_channels, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.qkv1 = nn.Linear(embed_dim, 3 * embed_dim)
        self.qkv2 = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.unembed = convt(embed_dim, in_channels, kernel_size=self.patch_size, stride=self.patch_size)

    def _heads(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Split ``(N, L, 3E)`` into q, k, v of shape ``(N, heads, L, E / heads)``."""
        n, l = t.shape[0], t.shape[1]
        t = t.reshape(n, l, 3, self.num_heads, self.embed_dim // self.num_heads).permute(2, 0, 3, 1, 4)
        return t[0], t[1], t[2]

    def tokens(
        self, x1: torch.Tensor, x2: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor], list[int]]:
        """Embed both (already padded) inputs and return their per-window q, k, v.

        Args:
            x1: ``(B, C, *spatial)`` features of modality 1, spatial sizes multiples of patch x window.
            x2: same for modality 2.

        Returns:
            ``(q1, k1, v1)``, ``(q2, k2, v2)`` each ``(B * windows, heads, L, E / heads)``, and the token grid size.
        """
        e1, e2 = self.embed1(x1), self.embed2(x2)
        grid = [int(g) for g in e1.shape[2:]]
        window = grid if self._window is None else self._window
        t1, _ = window_partition(e1, window)
        t2, _ = window_partition(e2, window)
        return self._heads(self.qkv1(self.norm1(t1))), self._heads(self.qkv2(self.norm2(t2))), grid

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Fuse two feature maps.

        Args:
            x1: ``(B, C, H, W[, D])`` features of modality 1.
            x2: ``(B, C, H, W[, D])`` features of modality 2 (same shape).

        Returns:
            ``(B, C, H, W[, D])`` fused features.

        Raises:
            ValueError: when the two inputs differ in shape or are not ``spatial_dims``-D.
        """
        if x1.shape != x2.shape or x1.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"CASF expects two (B, C, *spatial) tensors of equal shape with {self.spatial_dims} spatial dims, "
                f"got {shape_text(x1)} and {shape_text(x2)}"
            )
        p1, size = pad_to_multiple(x1, self._pad_multiple)
        p2, _ = pad_to_multiple(x2, self._pad_multiple)
        (q1, k1, v1), (q2, k2, v2), grid = self.tokens(p1, p2)
        o = 0.5 * (F.scaled_dot_product_attention(q1, k1, v2) + F.scaled_dot_product_attention(q2, k2, v1))
        n, h, l, dh = o.shape[0], o.shape[1], o.shape[2], o.shape[3]
        o = self.proj(o.permute(0, 2, 1, 3).reshape(n, l, h * dh))
        window = grid if self._window is None else self._window
        counts = [g // w for g, w in zip(grid, window)]
        up = self.unembed(window_reverse(o, window, counts))
        return crop_to(up, size) + x1 + x2
