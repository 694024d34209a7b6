"""One scale's fusion module of ASFE-Fusion: (deformable blend) -> CASF + AFF -> SFEF, or a light conv fusion."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_norm_layer

from asfe3d.networks.blocks.aff import AFF
from asfe3d.networks.blocks.casf import CASF
from asfe3d.networks.blocks.deform import DeformableCrossBlend
from asfe3d.networks.blocks.sfef import SFEF
from asfe3d.networks.blocks.utils import check_spatial_dims

__all__ = ["FusionBlock"]

FUSION_MODES = ("full", "light")


class FusionBlock(nn.Module):
    """Fuse two modalities' features at one scale.

    ``mode="full"`` is the ASFE-Fusion module: an optional :class:`DeformableCrossBlend` aligns the pair, then
    :class:`CASF` gives the spatial features, :class:`AFF` the frequency features, and :class:`SFEF` blends the
    two. ``mode="light"`` (for fine, large scales where attention would dominate the cost) is a ``1^d`` conv over
    the concatenated pair followed by norm and activation.

    Args:
        spatial_dims: 2 or 3.
        channels: channels ``C`` of each input and of the output.
        mode: ``"full"`` or ``"light"``.
        embed_dim, num_heads, patch_size, attn_window: :class:`CASF` settings.
        num_experts, slots_per_expert, expert_hidden, moe_window: :class:`SFEF` settings.
        aff_mask_kernel: :class:`AFF` mask kernel.
        deform: add the deformable cross blend before CASF/AFF (``"full"`` only).
        max_offset: deformable blend's largest displacement in voxels.
        norm, act: MONAI norm/activation specs.

    Raises:
        ValueError: on an unknown ``mode`` (and on bad sub-block arguments).
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        mode: str = "full",
        embed_dim: int = 32,
        num_heads: int = 2,
        patch_size: int | Sequence[int] = 2,
        attn_window: int | Sequence[int] | None = 4,
        num_experts: int = 4,
        slots_per_expert: int = 1,
        expert_hidden: int = 32,
        moe_window: int | Sequence[int] | None = 8,
        aff_mask_kernel: int = 7,
        deform: bool = False,
        max_offset: float = 2.0,
        norm: tuple | str = ("instance", {"affine": True}),
        act: tuple | str = ("leakyrelu", {"negative_slope": 0.1}),
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if mode not in FUSION_MODES:
            raise ValueError(f"mode must be one of {FUSION_MODES}, got {mode!r}")
        self.mode = mode
        # the branch not taken is None (not absent), so that TorchScript compiles only the one that exists
        self.light: nn.Module | None = None
        self.deform: nn.Module | None = None
        self.casf: nn.Module | None = None
        self.aff: nn.Module | None = None
        self.sfef: nn.Module | None = None
        if mode == "light":
            self.light = nn.Sequential(
                Conv[Conv.CONV, spatial_dims](2 * channels, channels, kernel_size=1),
                get_norm_layer(norm, spatial_dims, channels),
                get_act_layer(act),
            )
            return
        self.deform = DeformableCrossBlend(spatial_dims, channels, max_offset) if deform else None
        self.casf = CASF(spatial_dims, channels, embed_dim, num_heads, patch_size, attn_window)
        self.aff = AFF(spatial_dims, channels, aff_mask_kernel, norm, act)
        self.sfef = SFEF(spatial_dims, channels, num_experts, slots_per_expert, expert_hidden, moe_window)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Args:
            x1: ``(B, C, H, W[, D])`` modality-1 features.
            x2: same shape, modality 2.

        Returns:
            ``(B, C, H, W[, D])`` fused features.
        """
        if self.light is not None:
            return self.light(torch.cat([x1, x2], dim=1))
        if self.deform is not None:
            x1, x2 = self.deform(x1, x2)
        return self.sfef(self.casf(x1, x2), self.aff(x1, x2))
