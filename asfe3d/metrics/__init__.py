"""Image-fusion quality metrics (EN, SD, SF, AG, MI, SCD, CC, VIF, Qabf, SSIM, PSNR) for 2D images and 3D volumes.

Whether both inputs are kept (MRI detail retention, PET consistency) lives in :mod:`asfe3d.metrics.bands`.
Task-based measures (defect transfer, output where both inputs are empty) live in :mod:`asfe3d.metrics.task`.
Plain functions live in :mod:`asfe3d.metrics.functional`; :class:`FusionMetric` wraps them as a MONAI
``CumulativeIterationMetric``. Conventions: ``docs/metrics.md``.
"""

from __future__ import annotations

from asfe3d.metrics.bands import PET_FWHM_MM, band_split, brain_region, mri_detail, pet_consistency
from asfe3d.metrics.consistency import UndefinedMetric, anisotropy, directional_energy, through_plane_consistency
from asfe3d.metrics.functional import (
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    average_gradient,
    correlation_coefficient,
    entropy,
    fusion_metrics,
    mutual_information,
    psnr,
    qabf,
    scd,
    spatial_frequency,
    ssim,
    standard_deviation,
    to_8bit,
    vif,
)
from asfe3d.metrics.fusion_metric import FusionMetric
from asfe3d.metrics.task import ball, defect_transfer, defect_transfer_of, empty_output, place_defect

__all__ = [
    "PET_FWHM_MM",
    "band_split",
    "brain_region",
    "mri_detail",
    "pet_consistency",
    "HIGHER_IS_BETTER",
    "METRIC_NAMES",
    "FusionMetric",
    "average_gradient",
    "correlation_coefficient",
    "entropy",
    "fusion_metrics",
    "mutual_information",
    "psnr",
    "qabf",
    "scd",
    "spatial_frequency",
    "ssim",
    "standard_deviation",
    "to_8bit",
    "vif",
    "anisotropy",
    "directional_energy",
    "through_plane_consistency",
    "UndefinedMetric",
    "ball",
    "defect_transfer",
    "defect_transfer_of",
    "empty_output",
    "place_defect",
]
