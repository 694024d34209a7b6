"""Fusion networks."""

from __future__ import annotations

from asfe3d.networks.nets.asfe_fusion import ASFEFusion
from asfe3d.networks.nets.presets import PAPER_PARAMS_2D, PRESETS, get_preset

__all__ = ["ASFEFusion", "PAPER_PARAMS_2D", "PRESETS", "get_preset"]
