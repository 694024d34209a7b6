"""Fusion methods behind one interface: classic baselines and the learned ASFE network.

The interface and the registry (:mod:`asfe3d.fusion.base`) import eagerly; the methods' modules (torch for
``asfe``) are imported on first use of one of their names.
"""

from __future__ import annotations

import importlib
from typing import Any

from asfe3d.fusion.base import BUILTIN_METHODS, FusionMethod, available_methods, check_pair, get_fuser, register_method

_LAZY = {
    "LaplacianFusion": "asfe3d.fusion.classic", "MaxFusion": "asfe3d.fusion.classic",
    "MeanFusion": "asfe3d.fusion.classic", "WaveletFusion": "asfe3d.fusion.classic",
    "apply_colormap": "asfe3d.fusion.colour", "fuse_colour": "asfe3d.fusion.colour",
    "fuse_colour_planes": "asfe3d.fusion.colour",
    "rgb_to_ycrcb": "asfe3d.fusion.colour", "ycrcb_to_rgb": "asfe3d.fusion.colour",
    "AsfeFusionMethod": "asfe3d.fusion.learned", "mode_steps": "asfe3d.fusion.learned",
    "resolve_device": "asfe3d.fusion.learned",
    "run_network": "asfe3d.fusion.learned",
}

__all__ = ["BUILTIN_METHODS", "FusionMethod", "available_methods", "check_pair", "get_fuser", "register_method",
           *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'asfe3d.fusion' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
