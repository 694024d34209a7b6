"""Named hyper-parameter sets of :class:`asfe3d.networks.nets.ASFEFusion`.

- ``paper``: the published widths (encoder channels 112/160/208/256, patch size 16, embedding dim 256,
  8 heads, 4 experts, global attention and routing, full-resolution stem, the full fusion module at every
  scale). Its 2D parameter count is tuned to the original's 175.7 M through the soft-MoE expert width (the
  paper does not publish it).
- ``efficient`` (default): a stride-2 stem, few channels at fine scales, light conv fusion at the fine scale(s)
  and the full CASF + AFF + SFEF module (windowed attention and windowed soft MoE, so memory is linear in the
  volume) with the deformable cross blend at the two coarsest scales: 1/4 and 1/8 in 3D (channels 8/16/32),
  1/8 and 1/16 in 2D (channels 16/24/32/48, four levels, so a 256^2 slice stays within a few tens of ms).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["PRESETS", "get_preset", "PAPER_PARAMS_2D"]

#: Parameter count of the original (2D) ASFE-Fusion, from the paper.
PAPER_PARAMS_2D = 175.7e6

_PAPER: dict[str, Any] = {
    "encoder_channels": (112, 160, 208, 256),
    "stem_stride": 1,
    "convs_per_stage": 2,
    "fusion": ("full", "full", "full", "full"),
    "embed_dim": 256,
    "num_heads": 8,
    "patch_size": 16,
    "attn_window": None,
    "num_experts": 4,
    "slots_per_expert": 1,
    "expert_hidden": 2808,
    "moe_window": None,
    "aff_mask_kernel": 7,
    "deform": False,
    "max_offset": 2.0,
    "residual_scale": 0.25,
    "detail_injection": 0.0,
    "detail_fwhm": 5.5,
    "refine": True,
}

_EFFICIENT_2D: dict[str, Any] = {
    "encoder_channels": (16, 24, 32, 48),
    "stem_stride": 2,
    "convs_per_stage": 1,
    "fusion": ("light", "light", "full", "full"),
    "embed_dim": 32,
    "num_heads": 2,
    "patch_size": 2,
    "attn_window": 4,
    "num_experts": 4,
    "slots_per_expert": 2,
    "expert_hidden": 32,
    "moe_window": 8,
    "aff_mask_kernel": 7,
    "deform": True,
    "max_offset": 2.0,
    "residual_scale": 0.25,
    "detail_injection": 0.0,
    "detail_fwhm": 5.5,
    "refine": True,
}

_EFFICIENT_3D: dict[str, Any] = {
    **_EFFICIENT_2D,
    "encoder_channels": (8, 16, 32),
    "fusion": ("light", "full", "full"),
    "aff_mask_kernel": 5,
    "moe_window": 4,
}

PRESETS: dict[str, dict[int, dict[str, Any]]] = {
    "paper": {2: _PAPER, 3: _PAPER},
    "efficient": {2: _EFFICIENT_2D, 3: _EFFICIENT_3D},
}


def get_preset(name: str, spatial_dims: int) -> dict[str, Any]:
    """Return a copy of the hyper-parameters of preset ``name`` for ``spatial_dims``.

    Raises:
        ValueError: on an unknown preset or ``spatial_dims`` not in (2, 3).
    """
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return copy.deepcopy(PRESETS[name][spatial_dims])
