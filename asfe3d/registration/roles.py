"""Are the inputs what they are said to be? An MRI (or CT) and a PET told apart before any registration.

:func:`check_roles` looks at what each reader found (DICOM Modality, the number of frames), the BIDS suffix of the
file names (``_T1w``, ``_pet``...), the voxel sizes and the intensities (a CT in Hounsfield units given as the PET),
and refuses inputs that are clearly the other way round (one line naming the file and the swap), warns when only
one sign points that way, and refuses a 4D MRI whose frame was not chosen.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from asfe3d.errors import Asfe3dInputError

__all__ = ["ANATOMICAL_MODALITIES", "EMISSION_MODALITIES", "check_roles", "role_evidence"]

logger = logging.getLogger("asfe3d")

#: DICOM Modality values of an image that can be the geometry reference (MRI, or the CT of a PET/CT)
ANATOMICAL_MODALITIES = ("MR", "CT")
#: DICOM Modality values of an emission image (the PET input)
EMISSION_MODALITIES = ("PT", "NM")

_BIDS_ANAT = re.compile(r"_(T1w|T2w|PDw|T2starw|FLAIR|inplaneT1|inplaneT2|PD|T1map|T2map|UNIT1|MP2RAGE|ct)$",
                        re.IGNORECASE)
_BIDS_PET = re.compile(r"_pet$", re.IGNORECASE)


def _stem(path: str | Path | None) -> str:
    if path is None:
        return ""
    name = Path(str(path)).name
    for ext in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def role_evidence(
    mri: np.ndarray, pet: np.ndarray, mri_spacing: tuple[float, ...], pet_spacing: tuple[float, ...],
    mri_info: dict[str, Any], pet_info: dict[str, Any], mri_path: str | Path | None, pet_path: str | Path | None,
) -> tuple[list[str], list[str]]:
    """What says that the inputs are swapped or wrong.

    Args:
        mri: the MRI input's voxels (3D).
        pet: the PET input's voxels (3D).
        mri_spacing: its voxel size (mm).
        pet_spacing: the PET input's voxel size (mm).
        mri_info: what the reader found for the MRI (``modality`` for DICOM).
        pet_info: the same for the PET.
        mri_path: the MRI file or folder (its BIDS suffix is read).
        pet_path: the PET file or folder.

    Returns:
        ``(certain, hints)``: sentences of clear evidence (DICOM Modality, BIDS suffixes, a CT given as the PET),
        and of weaker evidence (voxel sizes).
    """
    certain: list[str] = []
    hints: list[str] = []
    m_mod, p_mod = str(mri_info.get("modality") or "").upper(), str(pet_info.get("modality") or "").upper()
    if m_mod in EMISSION_MODALITIES:
        certain.append(f"the MRI input is a DICOM {m_mod} series (an emission image)")
    if p_mod in ANATOMICAL_MODALITIES:
        certain.append(f"the PET input is a DICOM {p_mod} series")
    m_stem, p_stem = _stem(mri_path), _stem(pet_path)
    if _BIDS_PET.search(m_stem):
        certain.append(f"the MRI file name has the BIDS suffix _pet ({Path(str(mri_path)).name})")
    anat = _BIDS_ANAT.search(p_stem)
    if anat:
        certain.append(f"the PET file name has the BIDS suffix _{anat.group(1)} ({Path(str(pet_path)).name})")
    finite = pet[np.isfinite(pet)]
    if finite.size and float(np.mean(finite < -500.0)) > 0.05 and float(np.min(finite)) >= -1100.0 - 1e-3 \
            and float(np.max(finite)) > 200.0:
        certain.append("the PET input holds Hounsfield units (a CT: many voxels near -1000)")
    m_vox, p_vox = float(np.prod(mri_spacing)), float(np.prod(pet_spacing))
    if p_vox > 0 and m_vox >= 4.0 * p_vox and min(mri_spacing) >= 1.5:
        hints.append(f"the MRI input's voxels ({_mm(mri_spacing)} mm) are much larger than the PET input's "
                     f"({_mm(pet_spacing)} mm)")
    return certain, hints


def _mm(spacing: tuple[float, ...]) -> str:
    return " x ".join(f"{s:.3g}" for s in spacing)


def check_roles(
    mri: np.ndarray, pet: np.ndarray, mri_spacing: tuple[float, ...], pet_spacing: tuple[float, ...],
    mri_info: dict[str, Any], pet_info: dict[str, Any], mri_path: str | Path | None, pet_path: str | Path | None,
) -> list[str]:
    """Refuse inputs given the other way round, and a 4D MRI whose frame was not chosen; warn when unsure.

    Args:
        mri, pet, mri_spacing, pet_spacing, mri_info, pet_info, mri_path, pet_path: see :func:`role_evidence`;
            ``mri_info["frames"]`` > 1 without ``mri_info["frame_taken"]`` is a 4D MRI averaged over its frames.

    Returns:
        the warnings given (one line each, also logged), empty when nothing looked wrong.

    Raises:
        Asfe3dInputError: a 4D MRI without a chosen frame (``--mri-frame N``), or any clear sign (DICOM Modality,
            BIDS suffix, Hounsfield units in the PET) that an input is not what its place says; the voxel sizes alone
            only warn.
    """
    frames = mri_info.get("frames")
    if isinstance(frames, int) and frames > 1 and mri_info.get("frame_taken") is None:
        raise Asfe3dInputError(mri_path, f"MRI input is 4D ({frames} frames): choose one with --mri-frame N "
                                         f"(0-based), or give a 3D MRI")
    certain, hints = role_evidence(mri, pet, mri_spacing, pet_spacing, mri_info, pet_info, mri_path, pet_path)
    if certain:
        raise Asfe3dInputError(
            mri_path if any("MRI" in c for c in certain) else pet_path,
            "the inputs look swapped or wrong: " + "; ".join(certain + hints)
            + " (give the MRI or CT first, then the PET)")
    warnings = []
    for hint in hints:
        line = f"the inputs may be swapped: {hint} (the MRI or CT comes first, then the PET)"
        logger.warning("%s", line)
        warnings.append(line)
    return warnings
