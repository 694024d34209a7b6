"""PET-to-MRI registration, its quality control, and resampling onto the MRI grid (SimpleITK; transforms map MRI
points to PET points)."""

from __future__ import annotations

from asfe3d.registration.qc import VERDICTS, QCThresholds, RegistrationQC, assess_registration, transform_size
from asfe3d.registration.register import (
    FINEST_MM,
    METHODS,
    MULTISTART,
    RegistrationResult,
    check_overlap,
    head_mask,
    linear_part_ras,
    overlap_fraction,
    register_pet_to_mri,
    registration_error_mm,
    resample_to_reference,
    resolve_method,
    size_problem,
    start_name,
    start_orientations,
)

__all__ = [
    "FINEST_MM",
    "METHODS",
    "MULTISTART",
    "QCThresholds",
    "RegistrationQC",
    "RegistrationResult",
    "VERDICTS",
    "assess_registration",
    "check_overlap",
    "head_mask",
    "linear_part_ras",
    "overlap_fraction",
    "register_pet_to_mri",
    "registration_error_mm",
    "resample_to_reference",
    "resolve_method",
    "size_problem",
    "start_name",
    "start_orientations",
    "transform_size",
]
