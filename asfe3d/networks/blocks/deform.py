"""Deformable cross feature blend (after Liu et al. 2023, 3D MRI-PET fusion with deformable cross-attention)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv

from asfe3d.networks.blocks.utils import check_spatial_dims, shape_text

__all__ = ["DeformableCrossBlend", "warp"]


def warp(x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` at ``identity + offset`` with (bi/tri)linear ``grid_sample``.

    Args:
        x: ``(B, C, *spatial)``.
        offset: ``(B, d, *spatial)`` displacements in voxels, channel ``i`` along spatial dim ``i``.

    Returns:
        ``(B, C, *spatial)``; samples outside the grid read the border value.
    """
    size = [int(s) for s in x.shape[2:]]
    nd = len(size)
    axes = [torch.linspace(-1.0, 1.0, s, device=x.device, dtype=x.dtype) for s in size]
    base = torch.stack(torch.meshgrid(axes, indexing="ij"), dim=0).unsqueeze(0)  # (1, d, *spatial)
    scale = torch.tensor([2.0 / max(s - 1, 1) for s in size], device=x.device, dtype=x.dtype)
    grid = base + offset * scale.reshape([1, nd] + [1] * nd)
    # grid_sample wants (B, *spatial, d) with the coordinates in reverse dim order (x = last dim first)
    grid = grid.flip(1).permute([0] + [i for i in range(2, nd + 2)] + [1])
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


class DeformableCrossBlend(nn.Module):
    """Deformable cross feature blend of two modalities' features.

    For each direction a ``3^d`` conv over the concatenated features of both modalities predicts a displacement
    field (``tanh``-bounded to ``max_offset`` voxels) and a per-voxel gate; the *other* modality's features are
    sampled at the displaced positions with ``grid_sample`` and blended in:

    ``y1 = (1 - g1) * x1 + g1 * warp(x2, o1)``, ``y2 = (1 - g2) * x2 + g2 * warp(x1, o2)``.

    The offset convs start at zero (identity sampling) and the gate biases at ``-2`` (a mild blend).

    Args:
        spatial_dims: 2 or 3.
        channels: channels ``C`` of each input.
        max_offset: largest displacement in voxels (> 0).

    Raises:
        ValueError: on a bad ``spatial_dims``, ``channels`` or ``max_offset``.
    """

    def __init__(self, spatial_dims: int, channels: int, max_offset: float = 2.0) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels!r}")
        if not max_offset > 0:
            raise ValueError(f"max_offset must be > 0, got {max_offset!r}")
        self.max_offset = float(max_offset)
        conv = Conv[Conv.CONV, spatial_dims]
        # outputs: d offsets + 1 gate, for each of the two directions
        self.predict = conv(2 * channels, 2 * (spatial_dims + 1), kernel_size=3, padding=1)
        with torch.no_grad():
            self.predict.weight.mul_(0.01)
            self.predict.bias.zero_()
            self.predict.bias[spatial_dims] = -2.0
            self.predict.bias[2 * spatial_dims + 1] = -2.0

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            x1: ``(B, C, H, W[, D])`` features of modality 1.
            x2: same shape, modality 2.

        Returns:
            The blended pair ``(y1, y2)``, each ``(B, C, H, W[, D])``.

        Raises:
            ValueError: when the inputs differ in shape or are not ``spatial_dims``-D.
        """
        if x1.shape != x2.shape or x1.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"DeformableCrossBlend expects two (B, C, *spatial) tensors of equal shape with "
                f"{self.spatial_dims} spatial dims, got {shape_text(x1)} and {shape_text(x2)}"
            )
        d = self.spatial_dims
        p = self.predict(torch.cat([x1, x2], dim=1))
        parts = torch.split(p, [d, 1, d, 1], dim=1)
        o1, g1, o2, g2 = parts[0], parts[1], parts[2], parts[3]
        o1, o2 = self.max_offset * torch.tanh(o1), self.max_offset * torch.tanh(o2)
        g1, g2 = torch.sigmoid(g1), torch.sigmoid(g2)
        y1 = (1 - g1) * x1 + g1 * warp(x2, o1)
        y2 = (1 - g2) * x2 + g2 * warp(x1, o2)
        return y1, y2
