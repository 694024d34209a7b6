"""PET-to-MRI registration and resampling onto the MRI grid (SimpleITK; transforms map MRI points to PET points)."""

from __future__ import annotations

from asfe3d.registration.register import (
    METHODS,
    RegistrationResult,
    check_overlap,
    head_mask,
    overlap_fraction,
    read_transform,
    register_pet_to_mri,
    registration_error_mm,
    resample_to_reference,
    write_transform,
)

__all__ = [
    "METHODS",
    "RegistrationResult",
    "check_overlap",
    "head_mask",
    "overlap_fraction",
    "read_transform",
    "register_pet_to_mri",
    "registration_error_mm",
    "resample_to_reference",
    "write_transform",
]
