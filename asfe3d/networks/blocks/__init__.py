"""Building blocks of ASFE-Fusion (2D and 3D): CASF, AFF, SFEF, the deformable cross blend, the per-scale fusion,
the detail band of detail injection."""

from __future__ import annotations

from asfe3d.networks.blocks.aff import AFF, FrequencyBranch
from asfe3d.networks.blocks.casf import CASF
from asfe3d.networks.blocks.deform import DeformableCrossBlend, warp
from asfe3d.networks.blocks.detail import DetailBand
from asfe3d.networks.blocks.fusion_block import FusionBlock
from asfe3d.networks.blocks.sfef import SFEF

__all__ = ["AFF", "CASF", "DeformableCrossBlend", "DetailBand", "FrequencyBranch", "FusionBlock", "SFEF", "warp"]
