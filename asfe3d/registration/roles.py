"""Are the inputs what they are said to be? An MRI (or CT) and a PET told apart before any registration.

:func:`check_roles` looks at what each reader found (DICOM Modality, the number of frames), the BIDS suffix of the
file names (``_T1w``, ``_pet``...), the voxel sizes, the intensities (a CT in Hounsfield units given as the PET) and,
when the MRI input is on the coarser grid, which image is the sharper (:func:`detail_share`); it refuses inputs that
are clearly the other way round or one image given twice (one line naming the file and the sign), warns when only a
weaker sign points that way, and refuses a 4D MRI whose frame was not chosen.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from asfe3d.errors import Asfe3dInputError
from asfe3d.registration.sharpness import (  # noqa: F401 - re-exported: the roles' sharpness, also the QC's
    MIN_DETAIL_SHARE,
    SHARE_FWHM_MM,
    SMOOTHER,
    detail_share,
    swap_sign,
)

__all__ = ["ANATOMICAL_MODALITIES", "EMISSION_MODALITIES", "check_roles", "detail_share", "role_evidence",
           "swap_sign"]

logger = logging.getLogger("asfe3d")

#: DICOM Modality values of an image that can be the geometry reference (MRI, or the CT of a PET/CT)
ANATOMICAL_MODALITIES = ("MR", "CT")
#: DICOM Modality values of an emission image (the PET input)
EMISSION_MODALITIES = ("PT", "NM")

_BIDS_ANAT = re.compile(r"_(T1w|T2w|PDw|T2starw|FLAIR|inplaneT1|inplaneT2|PD|T1map|T2map|UNIT1|MP2RAGE|ct)$",
                        re.IGNORECASE)
_BIDS_PET = re.compile(r"_pet$", re.IGNORECASE)


def _stem(path: str | Path | None) -> str:
    from asfe3d.io.volume import input_stem

    return "" if path is None else input_stem(str(path))


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
    if mri_path is not None and pet_path is not None and Path(str(mri_path)).is_file() \
            and Path(str(mri_path)).resolve() == Path(str(pet_path)).resolve():
        certain.append(f"the MRI and PET inputs are the same file ({Path(str(mri_path)).name})")
    elif mri.shape == pet.shape and np.array_equal(mri, pet):
        certain.append("the MRI and PET inputs hold the same voxels")
    m_vox, p_vox = float(np.prod(mri_spacing)), float(np.prod(pet_spacing))
    if p_vox > 0 and m_vox >= COARSER_VOXELS * p_vox:
        # the MRI input's grid is the coarser one: is it also the smoother image? (only then: a legitimate pair,
        # the MRI on the finer grid, pays nothing for this look)
        m_share, p_share = detail_share(mri, mri_spacing), detail_share(pet, pet_spacing)
        if p_share >= MIN_DETAIL_SHARE and m_share < SMOOTHER * p_share:
            sign = (f"the MRI input is both coarser ({_mm(mri_spacing)} mm voxels against {_mm(pet_spacing)} mm) "
                    f"and smoother ({100 * m_share:.0f} % of its variance in the head lies below {SHARE_FWHM_MM:g} "
                    f"mm, against {100 * p_share:.0f} % for the PET input): an MRI is the sharper image")
            # a smooth MRI (an average of many brains) beside a noisy PET on a slightly finer grid can look the
            # same: only a clearly coarser MRI grid makes it certain
            (certain if m_vox >= MUCH_COARSER_VOXELS * p_vox else hints).append(sign)
            return certain, hints
    if p_vox > 0 and m_vox >= 4.0 * p_vox and min(mri_spacing) >= 1.5 \
            and not detail_share(mri, mri_spacing) >= detail_share(pet, pet_spacing):
        # (a PET on a fine grid beside a 2 mm MRI is common; only a PET input sharper than the MRI input is a sign)
        hints.append(f"the MRI input's voxels ({_mm(mri_spacing)} mm) are much larger than the PET input's "
                     f"({_mm(pet_spacing)} mm)")
    return certain, hints


#: the MRI input's voxel volume, relative to the PET input's, from which its sharpness is compared
COARSER_VOXELS = 1.5
#: ... and from which a coarser, smoother MRI input is refused (below: a warning)
MUCH_COARSER_VOXELS = 3.0


def _mm(spacing: tuple[float, ...]) -> str:
    return " x ".join(f"{s:.3g}" for s in spacing)


#: a label map's voxels: integers, at least 3 and at most this many distinct values, and this share of neighbouring
#: voxels equal, the background (0) and the most frequent value left out, along the least constant axis
#: (FreeSurfer's aparc.a2009s+aseg 0.90 at 1 mm and 0.80 at 2 mm, SPM's Neuromorphometrics atlas 0.91; real and
#: quantised T1s 0.05-0.34, a FreeSurfer norm.mgz 0.09, a 64-level denoised T1 0.24, CTs 0.05-0.41 (0.41: a smoothed
#: CT clipped to a brain window, its air one value), a T1 whose thick slices were repeated 0.06)
LABEL_MAP_MAX_VALUES = 2000
LABEL_MAP_EQUAL_NEIGHBOURS = 0.6


def label_map_evidence(image: np.ndarray, role: str = "MRI") -> str | None:
    """Whether an "MRI" (or a "PET": ``role``) is a label map, segmentation or mask (``aparc+aseg.mgz``, an atlas, a ``*_desc-brain_mask``),
    not an image: integer voxels, one or two distinct non-zero values (a mask), or few distinct values (judged on every second voxel), piecewise constant along every axis (the least share of
    equal neighbours of the three, on every second line; the most frequent value left out, as a clipped plateau).

    Args:
        image: the volume (any axis order).

    Returns:
        One sentence saying so (the numbers quoted), or ``None``.
    """
    sub = np.asarray(image)[::2, ::2, ::2]
    fg = sub[sub != 0]
    if fg.size < 1000 or not np.all(fg == np.round(fg)):
        return None
    values, counts = np.unique(fg, return_counts=True)
    count = int(values.size)
    if count <= 2:  # every voxel of the head one or two values: no image is that flat
        shown = " and ".join(f"{v:g}" for v in values)
        if role != "MRI":
            return (f"{role} input looks like a mask, not an image (every non-zero voxel is {shown}): the fused "
                    "volume shows a flat silhouette, not uptake (give the PET image)")
        return (f"MRI input looks like a mask, not an image (every non-zero voxel is {shown}): the fused volume shows "
                "a flat silhouette, not anatomy (give the T1w image, not its *_mask)")
    if count > LABEL_MAP_MAX_VALUES:
        return None
    plateau = values[np.argmax(counts)]  # left out: a clipped floor (a CT's air at its window) is one value too
    full = np.asarray(image)
    equal = 1.0
    for axis in range(3):  # every axis: a T1 with repeated slices (thick slices upsampled) is constant along one
        lines = np.moveaxis(full, axis, 0)[:, ::2, ::2]  # neighbours at the image's own spacing, every second line
        a, b = lines[:-1], lines[1:]
        both = (a != 0) & (b != 0) & (a != plateau) & (b != plateau)
        equal = min(equal, float(np.mean(a[both] == b[both])) if both.any() else 0.0)
    if equal < LABEL_MAP_EQUAL_NEIGHBOURS:
        return None
    if role != "MRI":
        return (f"{role} input looks like a label map or segmentation ({count} distinct integer values, {equal:.0%} of "
                "neighbouring voxels equal), not an image: the fused volume shows its labels, not uptake (give the "
                "PET image)")
    return (f"MRI input looks like a label map or segmentation ({count} distinct integer values, {equal:.0%} of "
            "neighbouring voxels equal), not an image: the fused volume shows its labels, not anatomy (give the "
            "T1, e.g. FreeSurfer's T1.mgz or norm.mgz)")


def check_roles(
    mri: np.ndarray, pet: np.ndarray, mri_spacing: tuple[float, ...], pet_spacing: tuple[float, ...],
    mri_info: dict[str, Any], pet_info: dict[str, Any], mri_path: str | Path | None, pet_path: str | Path | None,
) -> list[str]:
    """Refuse inputs given the other way round, and a 4D MRI whose frame was not chosen; warn when unsure.

    Args:
        mri, pet, mri_spacing, pet_spacing, mri_info, pet_info, mri_path, pet_path: see :func:`role_evidence`;
            ``mri_info["frames"]`` > 1 without ``mri_info["frame_taken"]`` is a 4D MRI averaged over its frames.

    Returns:
        the warnings given (one line each, also logged), empty when nothing looked wrong; an MRI or a PET that is
        a label map (:func:`label_map_evidence`) is one of them.

    Raises:
        Asfe3dInputError: a 4D MRI without a chosen frame (``--mri-frame N``), a PET too thin to register (fewer
            than 4 voxels along an axis: :func:`asfe3d.registration.size_problem`), or
            any clear sign (DICOM Modality, BIDS suffix, Hounsfield units in the PET) that an input is not what its
            place says; the voxel sizes alone only warn.
    """
    frames = mri_info.get("frames")
    if isinstance(frames, int) and frames > 1 and mri_info.get("frame_taken") is None:
        raise Asfe3dInputError(mri_path, f"MRI input is 4D ({frames} frames): choose one with --mri-frame N / "
                                         f"mri_frame=N (0-based), or give a 3D MRI")
    from asfe3d.registration.register import size_problem

    # a PET of a few slices is no 3D PET, whatever the method (numpy arrays of SimpleITK images: (z, y, x)); an MRI
    # slab is refused by the registration itself (registration "none" can resample onto any MRI grid)
    thin = size_problem((1 << 30,) * 3, mri_spacing, pet.shape[::-1], pet_spacing)
    if thin is not None:
        raise Asfe3dInputError(pet_path, thin[1])
    certain, hints = role_evidence(mri, pet, mri_spacing, pet_spacing, mri_info, pet_info, mri_path, pet_path)
    if certain:
        same = all(" same " in c for c in certain)
        raise Asfe3dInputError(
            mri_path if any("MRI" in c for c in certain) else pet_path,
            "the inputs look swapped or wrong: " + "; ".join(certain + hints)
            + (" (give two different images: the MRI or CT first, then the PET)" if same
               else " (give the MRI or CT first, then the PET)"))
    warnings = []
    for hint in hints:
        line = f"the inputs may be swapped: {hint} (the MRI or CT comes first, then the PET)"
        logger.warning("%s", line)
        warnings.append(line)
    for image, role, path in ((mri, "MRI", mri_path), (pet, "PET", pet_path)):
        labels = label_map_evidence(image, role)
        if labels is not None:
            logger.warning("%s: %s", path, labels)
            warnings.append(labels)
    return warnings
