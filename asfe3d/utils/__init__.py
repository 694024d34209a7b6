"""Small numerical helpers shared by the tiers (no dependency on the rest of the package)."""

from __future__ import annotations

from asfe3d.utils.checks import binary, is_int, is_real, voxel_sizes
from asfe3d.utils.stats import FWHM_PER_SIGMA, FWHM_TO_SIGMA, outlier_limit, padding_mask, percentile

__all__ = ["FWHM_PER_SIGMA", "FWHM_TO_SIGMA", "binary", "is_int", "is_real", "outlier_limit", "padding_mask", "percentile",
           "voxel_sizes"]
