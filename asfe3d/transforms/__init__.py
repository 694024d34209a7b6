"""MONAI transforms for MRI/PET fusion: array classes plus thin dictionary (``...d``) wrappers.

Together they are the pipeline (see :mod:`asfe3d.transforms.dictionary` for the chain and
:func:`asfe3d.pipeline.fuse_pair` for the entry point that composes it).
"""

from __future__ import annotations

from asfe3d.transforms.array import (
    ColourFuse,
    FillOutsideMask,
    Fuse,
    HeadMask,
    LoadVolume,
    RegisterToReference,
    RestoreIntensity,
    RobustNormalize,
    SaveLikeReference,
    SmoothMm,
    auto_slice_axis,
    metatensor_from_volume,
    ras_affine,
    sitk_from_metatensor,
    volume_from_metatensor,
)
from asfe3d.transforms.dictionary import (
    ColourFuseD,
    ColourFused,
    ColourFuseDict,
    FillOutsideMaskD,
    FillOutsideMaskd,
    FillOutsideMaskDict,
    FuseD,
    Fused,
    FuseDict,
    HeadMaskD,
    HeadMaskd,
    HeadMaskDict,
    LoadVolumeD,
    LoadVolumed,
    LoadVolumeDict,
    RegisterToReferenceD,
    RegisterToReferenced,
    RegisterToReferenceDict,
    RestoreIntensityD,
    RestoreIntensityd,
    RestoreIntensityDict,
    RobustNormalizeD,
    RobustNormalized,
    RobustNormalizeDict,
    SaveLikeReferenceD,
    SaveLikeReferenced,
    SaveLikeReferenceDict,
    SmoothMmD,
    SmoothMmd,
    SmoothMmDict,
)
from asfe3d.transforms.frames import RealignFrames, RealignFramesD, RealignFramesd, RealignFramesDict
from asfe3d.transforms.intensity import head_mask, otsu_threshold, robust_normalize, robust_range

__all__ = [
    "ColourFuse", "FillOutsideMask", "Fuse", "HeadMask", "LoadVolume", "RegisterToReference", "RestoreIntensity",
    "RobustNormalize", "SaveLikeReference", "SmoothMm", "auto_slice_axis", "metatensor_from_volume", "ras_affine", "sitk_from_metatensor",
    "volume_from_metatensor",
    "ColourFused", "ColourFuseD", "ColourFuseDict", "FillOutsideMaskd", "FillOutsideMaskD", "FillOutsideMaskDict",
    "Fused", "FuseD", "FuseDict", "HeadMaskd", "HeadMaskD",
    "HeadMaskDict", "LoadVolumed", "LoadVolumeD", "LoadVolumeDict", "RegisterToReferenced", "RegisterToReferenceD",
    "RegisterToReferenceDict", "RestoreIntensityd", "RestoreIntensityD", "RestoreIntensityDict", "RobustNormalized",
    "RobustNormalizeD", "RobustNormalizeDict", "SaveLikeReferenced", "SaveLikeReferenceD", "SaveLikeReferenceDict", "SmoothMmd", "SmoothMmD", "SmoothMmDict",
    "head_mask", "otsu_threshold", "robust_normalize", "robust_range",
    "RealignFrames", "RealignFramesd", "RealignFramesD", "RealignFramesDict",
]
