"""MONAI transforms for MRI/PET fusion: array classes plus thin dictionary (``...d``) wrappers."""

from __future__ import annotations

from asfe3d.transforms.array import (
    ColourFuse,
    Fuse,
    LoadVolume,
    RegisterToReference,
    RobustNormalize,
    SaveLikeReference,
)
from asfe3d.transforms.dictionary import (
    ColourFused,
    ColourFuseD,
    ColourFuseDict,
    Fused,
    FuseD,
    FuseDict,
    LoadVolumed,
    LoadVolumeD,
    LoadVolumeDict,
    RegisterToReferenced,
    RegisterToReferenceD,
    RegisterToReferenceDict,
    RobustNormalized,
    RobustNormalizeD,
    RobustNormalizeDict,
    SaveLikeReferenced,
    SaveLikeReferenceD,
    SaveLikeReferenceDict,
)
from asfe3d.transforms.intensity import head_mask, otsu_threshold, robust_normalize, robust_range

__all__ = [
    "ColourFuse", "Fuse", "LoadVolume", "RegisterToReference", "RobustNormalize", "SaveLikeReference",
    "ColourFused", "ColourFuseD", "ColourFuseDict", "Fused", "FuseD", "FuseDict", "LoadVolumed", "LoadVolumeD",
    "LoadVolumeDict", "RegisterToReferenced", "RegisterToReferenceD", "RegisterToReferenceDict",
    "RobustNormalized", "RobustNormalizeD", "RobustNormalizeDict", "SaveLikeReferenced", "SaveLikeReferenceD",
    "SaveLikeReferenceDict", "head_mask", "otsu_threshold", "robust_normalize", "robust_range",
]
