"""Fusion methods behind one interface: classic baselines and the learned ASFE network."""

from __future__ import annotations

from asfe3d.fusion.base import FusionMethod, available_methods, check_pair, get_fuser, register_method
from asfe3d.fusion.classic import LaplacianFusion, MaxFusion, MeanFusion, WaveletFusion
from asfe3d.fusion.colour import apply_colormap, fuse_colour, rgb_to_ycrcb, ycrcb_to_rgb
from asfe3d.fusion.learned import AsfeFusionMethod, resolve_device, run_network

__all__ = [
    "FusionMethod", "available_methods", "check_pair", "get_fuser", "register_method",
    "LaplacianFusion", "MaxFusion", "MeanFusion", "WaveletFusion",
    "apply_colormap", "fuse_colour", "rgb_to_ycrcb", "ycrcb_to_rgb",
    "AsfeFusionMethod", "resolve_device", "run_network",
]
