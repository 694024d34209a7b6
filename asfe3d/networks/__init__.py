"""ASFE-Fusion networks (2D and 3D) and their blocks.

``ASFEFusion(spatial_dims=2|3, preset="efficient"|"paper", **overrides)`` takes ``(B, 2, *spatial)`` with
channels ``[MRI, PET]`` in ``[0, 1]`` and returns ``(B, 1, *spatial)`` in ``[0, 1]``.
"""

from __future__ import annotations

from asfe3d.networks.blocks import AFF, CASF, SFEF, DeformableCrossBlend, DetailBand, FrequencyBranch, FusionBlock, warp
from asfe3d.networks.nets import PAPER_PARAMS_2D, PRESETS, ASFEFusion, get_preset

__all__ = [
    "AFF",
    "ASFEFusion",
    "CASF",
    "DeformableCrossBlend",
    "DetailBand",
    "FrequencyBranch",
    "FusionBlock",
    "PAPER_PARAMS_2D",
    "PRESETS",
    "SFEF",
    "get_preset",
    "warp",
]
