"""Whole-head 3D MRI/PET training and validation pairs that look like what users bring.

Anatomies (each a whole head on one 1.5 mm RAS reference grid in MNI space, with the Neuromorphometrics brain
labels, see :func:`load_anatomy`):

- ``avg152T1``, ``avg305T1``, ``avg152T2``, ``avg152PD``: SPM12's whole-head averages (scalp, skull, neck; the
  data folder is passed in, e.g. ``/work/shared/data/spm12``; nothing is downloaded).
- ``mni_synth``: nilearn's brain-only MNI152 2009a T1 (offline, in the nilearn package) wrapped in a synthetic
  head: CSF, skull (cortical tables and diploe), fat, muscle and skin layers of random thickness, and a neck with
  a spine.

A *subject* (:func:`simulate_subject`) deforms one anatomy (random affine and smooth non-linear deformation),
puts the MRI on a grid of random voxel size (1-2 mm, sometimes anisotropic), adds an MRI bias field, contrast
change and Rician noise, and simulates a PET whose uptake follows the atlas structures (:func:`pet_uptake`:
normal FDG, AD-like FDG with lowered parietal / temporal / posterior cingulate uptake, amyloid negative or
positive), blurred by a PSF of 4-8 mm FWHM, sampled on its own scanner grid (1.5-4 mm, partial axial field of
view), misregistered by a residual rigid motion of 0-2 mm, with Poisson-like noise. The PET is then resampled
onto the MRI grid (as the pipeline does after registration) and both are normalised like
:func:`asfe3d.evaluation.evaluate.load_volume_case` does (robust percentiles in the MRI's head mask).

Arrays are in nibabel ``(X, Y, Z)`` order with RAS+ affines throughout.

Training (:class:`WholeHeadPairDataset`) uses a bank of simulated subjects refreshed every epoch; validation
holds whole anatomies out (``avg305T1`` by default). ``python -m asfe3d.data.wholehead --spm DIR --out DIR``
writes held-out NIfTI pairs and a ``pairs.csv`` for ``asfe3d evaluate --pairs``.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from asfe3d.data.anatomy import (  # noqa: F401 (the shared pieces, re-exported under their old names)
    _AMYLOID_LABELS,
    _CEREBELLUM_GM_LABELS,
    _CSF_LABELS,
    _DEEP_LABELS,
    _MTL_LABELS,
    _REF_ORIGIN,
    _REF_SHAPE,
    _REF_SPACING,
    _STEM_LABELS,
    _STRIATUM_LABELS,
    _WM_LABELS,
    AD_LABELS,
    PATTERNS,
    Anatomy,
    _smooth_field,
    pet_uptake,
    reference_grid,
    resample_to_grid,
    synthetic_head,
)
from asfe3d.data.shared import SharedEpoch
from asfe3d.data.volumes import check_length_crop
from asfe3d.utils import FWHM_TO_SIGMA

__all__ = [
    "ANATOMIES",
    "INDIVIDUAL_ANATOMIES",
    "data_dirs",
    "PATTERNS",
    "SPM_TEMPLATES",
    "AD_LABELS",
    "Anatomy",
    "SubjectParams",
    "WholeHeadPairDataset",
    "draw_params",
    "load_anatomy",
    "pet_uptake",
    "reference_grid",
    "resample_to_grid",
    "simulate_subject",
    "synthetic_head",
    "write_validation_pairs",
]

SPM_TEMPLATES = ("avg152T1", "avg305T1", "avg152T2", "avg152PD")
#: real individual people's 1 mm anatomies (:mod:`asfe3d.data.individual`)
INDIVIDUAL_ANATOMIES = ("bert", "bert_synth", "gd", "flair", "otsu")
ANATOMIES = (*SPM_TEMPLATES, "mni_synth", *INDIVIDUAL_ANATOMIES)


def _load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found (pass the SPM12 data folder holding it)")
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine, float)


def _labels(spm_dir: Path) -> np.ndarray:
    shape, aff = reference_grid()
    lab, lab_aff = _load_nifti(spm_dir / "labels_Neuromorphometrics.nii.gz")
    return np.rint(resample_to_grid(lab, lab_aff, shape, aff, order=0)).astype(np.int16)


def _wm_level(mri: np.ndarray, labels: np.ndarray) -> float:
    wm = np.isin(labels, (44, 45))
    level = float(np.median(mri[wm])) if wm.any() else float(np.percentile(mri[mri > 0], 95))
    if not level > 0:
        raise ValueError(f"white matter intensity must be > 0, got {level}")
    return level


@functools.lru_cache(maxsize=8)
def _cached_anatomy(name: str, spm_dir: str, seed: int) -> Anatomy:
    spm = Path(spm_dir)
    shape, aff = reference_grid()
    labels = _labels(spm)
    if name in SPM_TEMPLATES:
        mri, mri_aff = _load_nifti(spm / f"{name}.nii.gz")
        mri = resample_to_grid(mri, mri_aff, shape, aff, order=1)
        mri = mri / _wm_level(mri, labels)
        from asfe3d.transforms.intensity import head_mask

        head = head_mask(mri) | (labels > 0)
    else:
        from asfe3d.data.simulate import _mni_file

        t1, t1_aff = _load_nifti(_mni_file("t1"))
        brain = resample_to_grid(t1, t1_aff, shape, aff, order=1, smooth_mm=0.5 * math.sqrt(_REF_SPACING**2 - 1))
        brain = brain / _wm_level(brain, labels)
        mri, head = synthetic_head(brain, _REF_SPACING, np.random.default_rng([seed, 4099]), aff)
    labels = np.where(head, labels, 0).astype(np.int16)
    return Anatomy(name, mri.astype(np.float32), labels, head, aff)


def data_dirs(path: str | Path) -> tuple[Path, Path | None]:
    """The SPM12 folder and the individual-anatomy folder of a data path.

    ``path`` is either a folder holding ``spm12/`` (and ``individual/``), or the SPM12 folder itself (then an
    ``individual/`` folder beside it is used when there is one).

    Returns:
        ``(spm_dir, individual_dir or None)``.
    """
    root = Path(path)
    if (root / "spm12").is_dir():
        ind = root / "individual"
        return root / "spm12", ind if ind.is_dir() else None
    ind = root.parent / "individual"
    return root, ind if ind.is_dir() else None


def load_anatomy(name: str, spm_dir: str | Path, seed: int = 0) -> Anatomy:
    """Load one whole-head anatomy onto its grid (cached per process; do not modify the arrays).

    Args:
        name: one of :data:`ANATOMIES`; the individual ones (:data:`INDIVIDUAL_ANATOMIES`) are on their own 1 mm
            grid (:func:`asfe3d.data.individual.load_individual`), the others on :func:`reference_grid`.
        spm_dir: the data path (see :func:`data_dirs`: the SPM12 folder, or a folder holding ``spm12/`` and
            ``individual/``).
        seed: seed of the synthetic head layers of ``mni_synth``.

    Returns:
        The :class:`Anatomy`.

    Raises:
        ValueError: an unknown name (quoted).
        FileNotFoundError: a missing data file.
    """
    if name not in ANATOMIES:
        raise ValueError(f"anatomy must be one of {ANATOMIES}, got {name!r}")
    spm, individual = data_dirs(spm_dir)
    if name in INDIVIDUAL_ANATOMIES:
        from asfe3d.data.individual import load_individual

        if individual is None:
            raise FileNotFoundError(f"anatomy {name!r} needs the individual-anatomy folder: pass a data folder holding "
                                    f"spm12/ and individual/, got {str(spm_dir)!r}")
        return load_individual(name, individual, spm, seed=seed)
    return _cached_anatomy(name, str(spm.resolve()), int(seed))


@dataclass
class SubjectParams:
    """The random draws of one simulated subject (all lengths in mm, angles in degrees).

    Attributes:
        anatomy: anatomy name.
        pattern: PET pattern (:data:`PATTERNS`).
        mri_spacing: MRI voxel size (x, y, z).
        rotation_deg, scale, translation_mm: affine change of the anatomy.
        deform_mm: amplitude of the smooth non-linear deformation.
        bias: MRI bias field strength (log-amplitude).
        mri_gamma: MRI contrast gamma.
        mri_noise: MRI Rician noise sigma (white matter = 1).
        pet_fwhm_mm: PET PSF FWHM.
        pet_spacing: PET voxel size (x, y, z).
        pet_axial_fov_mm: PET axial field of view; ``pet_fov_shift_mm``: its centre's offset from the head centre.
        pet_noise: relative PET noise level.
        misreg_mm: residual misregistration (largest displacement of the rigid motion in the head).
    """

    anatomy: str
    pattern: str
    mri_spacing: tuple[float, float, float]
    rotation_deg: tuple[float, float, float]
    scale: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    deform_mm: float
    bias: float
    mri_gamma: float
    mri_noise: float
    pet_fwhm_mm: float
    pet_spacing: tuple[float, float, float]
    pet_axial_fov_mm: float
    pet_fov_shift_mm: float
    pet_noise: float
    misreg_mm: float


def draw_params(anatomy: str, rng: np.random.Generator, patterns: Sequence[str] = PATTERNS,
                mri_mm: Sequence[float] | None = None) -> SubjectParams:
    """Draw the random settings of one subject (ranges in the module docstring).

    Args:
        anatomy: one of :data:`ANATOMIES`.
        rng: random generator.
        patterns: PET patterns to choose from.
        mri_mm: ``(low, high)`` range of the MRI voxel size in mm instead of the anatomy's default (0.8-1.3 mm
            for an individual anatomy, 1-1.8 mm for an average); the same number of draws either way, so ``None``
            reproduces the subjects drawn before this option.

    Returns:
        The :class:`SubjectParams`.

    Raises:
        ValueError: unknown anatomy or pattern (quoted).
    """
    if anatomy not in ANATOMIES:
        raise ValueError(f"anatomy must be one of {ANATOMIES}, got {anatomy!r}")
    bad = [p for p in patterns if p not in PATTERNS]
    if not patterns or bad:
        raise ValueError(f"patterns must be a non-empty subset of {PATTERNS}, got {patterns!r}")
    if mri_mm is not None:
        lo, hi = (float(v) for v in mri_mm)
    else:  # individual 1 mm anatomies: what users bring (0.8-1.3 mm); the 1.5 mm averages: 1-1.8 mm
        lo, hi = (0.8, 1.3) if anatomy in INDIVIDUAL_ANATOMIES else (1.0, 1.8)
    base = rng.uniform(lo, hi)
    sp = [base] * 3
    if rng.random() < 0.3:
        sp[int(rng.integers(3))] = base * rng.uniform(1.15, 1.6)
    pet_xy = rng.uniform(1.5, 4.0)
    pet_z = pet_xy if rng.random() < 0.5 else rng.uniform(1.5, 4.0)
    partial = rng.random() < 0.5
    return SubjectParams(
        anatomy=anatomy,
        pattern=str(patterns[int(rng.integers(len(patterns)))]),
        mri_spacing=tuple(float(s) for s in sp),  # type: ignore[arg-type]
        rotation_deg=tuple(float(v) for v in rng.uniform(-10.0, 10.0, 3)),  # type: ignore[arg-type]
        scale=tuple(float(v) for v in rng.uniform(0.9, 1.1, 3)),  # type: ignore[arg-type]
        translation_mm=tuple(float(v) for v in rng.uniform(-6.0, 6.0, 3)),  # type: ignore[arg-type]
        deform_mm=float(rng.uniform(0.0, 5.0)),
        bias=float(rng.uniform(0.0, 0.35)),
        mri_gamma=float(rng.uniform(0.8, 1.25)),
        mri_noise=float(rng.uniform(0.005, 0.04)),
        pet_fwhm_mm=float(rng.uniform(4.0, 8.0)),
        pet_spacing=(float(pet_xy), float(pet_xy), float(pet_z)),
        pet_axial_fov_mm=float(rng.uniform(140.0, 200.0) if partial else 260.0),
        pet_fov_shift_mm=float(rng.uniform(-25.0, 25.0) if partial else 0.0),
        pet_noise=float(rng.uniform(0.02, 0.1)),
        misreg_mm=float(rng.uniform(0.0, 2.0)),
    )


def _rotation(deg: Sequence[float]) -> np.ndarray:
    ax, ay, az = np.deg2rad(np.asarray(deg, float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _poisson_noise(arr: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    ref = float(np.percentile(arr[arr > 0], 99.0)) if (arr > 0).any() else 0.0
    if level <= 0 or ref <= 0:
        return arr
    sd = level * np.sqrt(np.clip(arr, 0.0, None) * ref + (0.02 * ref) ** 2)
    return (arr + sd * rng.standard_normal(arr.shape)).astype(np.float32)


def _subject_grid(anatomy: Anatomy, params: SubjectParams) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """The subject's MRI grid: the anatomy's field of view at ``params.mri_spacing``, on the same centre.

    Returns:
        ``(shape, affine, centre)``: the grid's ``(X, Y, Z)`` shape, its RAS affine ``(4, 4)`` and the anatomy's
        centre ``(3,)`` in mm.
    """
    ref_shape, ref_aff = anatomy.mri.shape, anatomy.affine
    sp = np.asarray(params.mri_spacing, float)
    extent = np.asarray(ref_shape) * anatomy.spacing
    centre = ref_aff[:3, :3] @ ((np.asarray(ref_shape) - 1) / 2.0) + ref_aff[:3, 3]
    shape = tuple(int(math.ceil(e / s)) for e, s in zip(extent, sp))
    mri_aff = np.diag([*sp, 1.0])
    mri_aff[:3, 3] = centre - sp * (np.asarray(shape) - 1) / 2.0
    return shape, mri_aff, centre


def _anatomy_coords(anatomy: Anatomy, params: SubjectParams, shape: tuple[int, ...], mri_aff: np.ndarray,
                    centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Where each subject voxel samples the anatomy: the random affine and the smooth deformation (from ``rng``).

    A subject point y maps to the anatomy point x = c + R S (y - c) + t + d(y).

    Returns:
        ``(3, X * Y * Z)`` float32 voxel coordinates in the anatomy's grid, one column per subject voxel.
    """
    lin = _rotation(params.rotation_deg) @ np.diag(params.scale)
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    y = mri_aff[:3, :3] @ ijk + mri_aff[:3, 3][:, None]
    x = lin @ (y - centre[:, None]) + (centre + np.asarray(params.translation_mm))[:, None]
    del y
    if params.deform_mm > 0:
        for k in range(3):
            x[k] += params.deform_mm * _smooth_field(shape, rng, cells=6).ravel()
    src = np.linalg.inv(anatomy.affine)
    return (src[:3, :3] @ x + src[:3, 3][:, None]).astype(np.float32)


def _warp(vol: np.ndarray, coords: np.ndarray, shape: tuple[int, ...], smooth: Sequence[float], order: int = 1,
          presmooth: bool = True) -> np.ndarray:
    """Resample an anatomy-grid volume onto the subject's MRI grid.

    Args:
        vol: on the anatomy's grid.
        coords: ``(3, X * Y * Z)`` from :func:`_anatomy_coords`.
        shape: the MRI grid's ``(X, Y, Z)``.
        smooth: Gaussian sigma (anatomy voxels) per axis against aliasing when ``presmooth``.
        order: spline order.
        presmooth: smooth first (off for masks).

    Returns:
        ``(X, Y, Z)`` on the MRI grid (zero outside the anatomy).
    """
    v = ndimage.gaussian_filter(vol.astype(np.float32), smooth) if presmooth and max(smooth) > 0 else vol
    return ndimage.map_coordinates(v, coords, order=order, mode="constant", cval=0.0).reshape(shape)


def _mri_contrast(mri: np.ndarray, params: SubjectParams, rng: np.random.Generator) -> np.ndarray:
    """The scanner's MRI: bias field, contrast (gamma) and Rician noise (drawn from ``rng``) on ``(X, Y, Z)``."""
    shape = mri.shape
    bias = np.exp(params.bias * _smooth_field(shape, rng, cells=3))
    mri = np.clip(mri * bias, 0.0, None) ** params.mri_gamma
    n1 = rng.standard_normal(shape).astype(np.float32) * params.mri_noise
    n2 = rng.standard_normal(shape).astype(np.float32) * params.mri_noise
    return np.sqrt((mri + n1) ** 2 + n2**2).astype(np.float32)


def _uptakes(anatomy: Anatomy, params: SubjectParams, rng: np.random.Generator,
             defect: dict[str, Any] | None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The true PET uptake on the anatomy's grid, and the same with the focal defect if one is asked for.

    Returns:
        ``({"pet": uptake[, "pet_defect": lowered uptake]}, ball)``: volumes on the anatomy's grid; ``ball`` the
        defect's region there (bool), or None.

    Raises:
        ValueError: a bad defect description (quoted).
    """
    up_rng = np.random.default_rng(rng.integers(2**63))
    uptake = anatomy.uptake(params.pattern, up_rng)
    uptakes = {"pet": uptake}
    ball_ref = None
    if defect is not None:
        c_mm = np.asarray(defect.get("centre_mm", ()), float)
        diam, frac = float(defect.get("diameter_mm", 12.0)), float(defect.get("fraction", 0.3))
        if c_mm.shape != (3,) or not diam > 0 or not 0 < frac < 1:
            raise ValueError(f"defect needs centre_mm (3 numbers), diameter_mm > 0 and 0 < fraction < 1, got {defect!r}")
        ref_aff = anatomy.affine
        grid = np.indices(anatomy.mri.shape, dtype=np.float32)
        world = np.tensordot(ref_aff[:3, :3], grid, axes=1) + ref_aff[:3, 3][:, None, None, None]
        ball_ref = np.sum((world - c_mm[:, None, None, None]) ** 2, axis=0) <= (diam / 2.0) ** 2
        uptakes["pet_defect"] = np.where(ball_ref, uptake * (1.0 - frac), uptake).astype(np.float32)
    return uptakes, ball_ref


def _pet_scanner(params: SubjectParams, centre: np.ndarray, mri_aff: np.ndarray,
                 rng: np.random.Generator) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """The PET scanner grid (axis-aligned, its own voxel size, partial axial FOV) and the residual rigid motion.

    The motion's displacement budget ``params.misreg_mm`` is split between a translation and a rotation (at about
    80 mm from the centre), directions drawn from ``rng``.

    Returns:
        ``(pshape, pet_affine, coords)``: the PET grid's shape, its RAS affine ``(4, 4)``, and where each PET voxel
        samples the MRI grid, ``(3, prod(pshape))`` float32 voxel coordinates.
    """
    psp = np.asarray(params.pet_spacing, float)
    pet_extent = np.array([256.0, 256.0, params.pet_axial_fov_mm])
    pshape = tuple(int(math.ceil(e / s)) for e, s in zip(pet_extent, psp))
    pet_centre = centre + np.array([0.0, 0.0, params.pet_fov_shift_mm])
    pet_aff = np.diag([*psp, 1.0])
    pet_aff[:3, 3] = pet_centre - psp * (np.asarray(pshape) - 1) / 2.0
    motion_rng = np.random.default_rng(rng.integers(2**63))
    direction = motion_rng.standard_normal(3)
    direction /= np.linalg.norm(direction) + 1e-12
    rot_dir = motion_rng.standard_normal(3)
    rot_dir /= np.linalg.norm(rot_dir) + 1e-12
    share = motion_rng.uniform(0.3, 0.7)
    t_mm = direction * params.misreg_mm * share
    r_deg = rot_dir * np.rad2deg(params.misreg_mm * (1 - share) / 80.0)
    motion_lin = _rotation(r_deg)
    pijk = np.indices(pshape, dtype=np.float32).reshape(3, -1)
    p = pet_aff[:3, :3] @ pijk + pet_aff[:3, 3][:, None]
    moved = motion_lin @ (p - centre[:, None]) + (centre + t_mm)[:, None]
    to_mri = np.linalg.inv(mri_aff)
    return pshape, pet_aff, (to_mri[:3, :3] @ moved + to_mri[:3, 3][:, None]).astype(np.float32)


def _scan_pet(on_mri: np.ndarray, sigma_vox: np.ndarray, pcoords: np.ndarray, pshape: tuple[int, ...],
              noise: float, noise_seed: int, scale: float) -> np.ndarray:
    """One PET scan of an uptake on the MRI grid: PSF blur, sampling on the scanner grid, Poisson-like noise.

    Args:
        on_mri: the uptake on the MRI grid, ``(X, Y, Z)``.
        sigma_vox: the PSF's Gaussian sigma in MRI voxels per axis.
        pcoords: ``(3, prod(pshape))`` from :func:`_pet_scanner`.
        pshape: the PET grid's shape.
        noise: relative noise level.
        noise_seed: seed of the noise draw (the same for the PET with and without the defect).
        scale: activity scale.

    Returns:
        The PET on its own grid, ``pshape`` float32, non-negative.
    """
    blurred = ndimage.gaussian_filter(on_mri, sigma_vox, mode="constant")
    native = ndimage.map_coordinates(blurred, pcoords, order=1, mode="constant", cval=0.0).reshape(pshape)
    native = _poisson_noise(native, noise, np.random.default_rng(noise_seed)) * scale
    return np.clip(native, 0.0, None).astype(np.float32)


def _intensities(mri: np.ndarray, pets: dict[str, np.ndarray], mask: np.ndarray,
                 normalise: bool) -> dict[str, np.ndarray]:
    """``mri``, ``pet`` (and ``pet_defect``) as returned: as simulated, or mapped to ``[0, 1]`` inside ``mask``.

    ``pets`` holds the PET volumes on the MRI grid (``"pet"``, maybe ``"pet_defect"``); the defect PET gets the
    normal PET's window.
    """
    from asfe3d.transforms.intensity import robust_normalize

    if not normalise:
        return {"mri": mri, **pets}
    result = {"mri": robust_normalize(mri, mask=mask)[0]}
    result["pet"], (lo, hi) = robust_normalize(pets["pet"], mask=mask)
    if "pet_defect" in pets:
        result["pet_defect"] = np.clip((pets["pet_defect"] - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return result


def simulate_subject(
    anatomy: Anatomy,
    params: SubjectParams,
    rng: np.random.Generator,
    *,
    defect: dict[str, Any] | None = None,
    normalise: bool = True,
    brain: bool = False,
) -> dict[str, Any]:
    """Simulate one subject's MRI and PET from an anatomy.

    Args:
        anatomy: from :func:`load_anatomy`.
        params: from :func:`draw_params`.
        rng: random generator (deformation field, bias field, noise).
        defect: optional focal PET lowering before the PSF, ``{"centre_mm": (x, y, z) in the anatomy's MNI space,
            "diameter_mm": 12, "fraction": 0.3}``; the result then also holds ``pet_defect`` (same noise draw) and
            ``defect_region`` (the ball on the MRI grid).
        normalise: map MRI and PET to ``[0, 1]`` inside the MRI head mask (the pipeline's normalisation).
        brain: also return ``brain``, the anatomy's brain (labels > 0) on the MRI grid.

    Returns:
        ``{"mri": (X, Y, Z) float32, "pet": (X, Y, Z) float32 on the MRI grid, "mask": head mask, "affine": MRI
        RAS affine, "pet_native": PET on its own grid, "pet_affine": its affine, "params": params}`` (plus the
        defect entries).

    Raises:
        ValueError: a bad defect description (quoted).
    """
    from asfe3d.transforms.intensity import head_mask

    shape, mri_aff, centre = _subject_grid(anatomy, params)
    sp = np.asarray(params.mri_spacing, float)
    coords = _anatomy_coords(anatomy, params, shape, mri_aff, centre, rng)
    smooth = [0.5 * math.sqrt(max(s**2 - anatomy.spacing**2, 0.0)) / anatomy.spacing for s in sp]
    warp = functools.partial(_warp, coords=coords, shape=shape, smooth=smooth)
    mri = warp(anatomy.draw_mri(rng))
    head = warp(anatomy.head.astype(np.float32)) > 0.5
    mri = _mri_contrast(mri, params, rng)
    uptakes, ball_ref = _uptakes(anatomy, params, rng, defect)
    pshape, pet_aff, pcoords = _pet_scanner(params, centre, mri_aff, rng)
    sigma_vox = params.pet_fwhm_mm * FWHM_TO_SIGMA / sp
    scale = float(rng.uniform(3000.0, 12000.0))
    noise_seed = int(rng.integers(2**63))
    native: dict[str, np.ndarray] = {}
    on_mri: dict[str, np.ndarray] = {}
    back = np.linalg.inv(pet_aff) @ mri_aff
    for key, up in uptakes.items():
        native[key] = _scan_pet(warp(up), sigma_vox, pcoords, pshape, params.pet_noise, noise_seed, scale)
        # back onto the MRI grid (identity: what the pipeline does after registering)
        on_mri[key] = ndimage.affine_transform(native[key], back[:3, :3], offset=back[:3, 3], output_shape=shape,
                                               order=1, mode="constant", cval=0.0).astype(np.float32)
    mask = head_mask(mri)
    result: dict[str, Any] = {"affine": mri_aff, "pet_affine": pet_aff, "params": params, "mask": mask,
                              "anatomy_head": head, "pet_native": native["pet"]}
    result.update(_intensities(mri, on_mri, mask, normalise))
    if brain:
        result["brain"] = warp((anatomy.labels > 0).astype(np.float32), presmooth=False) > 0.5
    if ball_ref is not None:
        result["pet_defect_native"] = native["pet_defect"]
        result["defect_region"] = warp(ball_ref.astype(np.float32), presmooth=False) > 0.5
    return result


def _make_subject(spm_dir: Path, anatomies: tuple[str, ...], seed: int, patterns: tuple[str, ...],
                  mri_mm: tuple[float, float] | None, number: int) -> dict[str, Any]:
    """Subject ``number`` of a :class:`WholeHeadPairDataset` (deterministic in ``(seed, number)``); module level so
    that a worker process can make it."""
    rng = np.random.default_rng([seed, 104729, int(number)])
    name = anatomies[int(number) % len(anatomies)]
    anatomy = load_anatomy(name, spm_dir, seed=seed)
    params = draw_params(name, rng, patterns, mri_mm=mri_mm)
    sim = simulate_subject(anatomy, params, rng)
    image = np.stack([sim["mri"], sim["pet"]]).astype(np.float32)
    brain = np.argwhere(sim["mask"] & (sim["pet"] > np.percentile(sim["pet"][sim["mask"]], 50)))
    head = np.argwhere(sim["mask"])
    return {"image": image, "brain": brain[:: max(1, len(brain) // 20000)],
            "head": head[:: max(1, len(head) // 20000)], "params": params}


def _worker_init() -> None:
    """A bank worker computes one subject at a time on one thread (as PyTorch's DataLoader workers do), takes
    SIGTERM as a plain process does (a forked worker inherited the command's handler, which only notes a stop for
    the main loop: a worker left behind ignored ``kill``), leaves Ctrl-C to the trainer, which shuts the pool down,
    and on Linux is ended when the trainer dies (``kill -9`` of the trainer left its workers running, 0.4-0.65 GB
    each; the pool is forked on Linux, see :meth:`WholeHeadPairDataset._submit`)."""
    import signal
    import sys

    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes
        import multiprocessing
        import os

        try:  # PR_SET_PDEATHSIG (1): this signal when the thread that started the worker (the trainer's main
            # thread: the pool is made and filled from it) ends
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl (another libc): the pool's own shutdown still ends them
            pass
        parent = multiprocessing.parent_process()
        if parent is not None and os.getppid() != parent.pid:  # the trainer died before the line above
            os._exit(0)


class WholeHeadPairDataset(SharedEpoch, Dataset):
    """Random ``[MRI, PET]`` crops from simulated whole-head subjects (:func:`simulate_subject`).

    A bank of ``bank_size`` subjects is simulated on first use (anatomy drawn from ``anatomies`` in turn);
    :meth:`set_epoch` replaces ``refresh`` of them with new subjects, so a long run sees many anatomical variants.
    Crops are centred on a brain voxel (70 %) or anywhere in the head (30 %, so edges and background are seen),
    padded with zeros where they leave the volume; random flips. Deterministic in ``(seed, epoch, index)``.

    With ``workers`` > 0 the subjects are made by that many worker processes: :meth:`set_epoch` makes the epoch's
    missing subjects in parallel and starts the next epoch's in the background, so they are ready when it begins
    (the simulation, about 10 s per subject on one core, then overlaps the training steps). The subjects are the
    same as with ``workers`` = 0; :meth:`close` stops the workers.

    Args:
        spm_dir: the SPM12 data folder.
        length: items per epoch (>= 1).
        anatomies: anatomy names to draw from.
        crop: crop size in voxels (one int or three).
        seed: seed of every draw.
        bank_size: subjects held at once (>= 1).
        refresh: subjects replaced per epoch (0 = a fixed bank; <= bank_size).
        patterns: PET patterns to draw from.
        flip: random flips along each axis.
        spatial_dims: 3 (``(X, Y, Z)`` crops) or 2 (``(X, Y)`` crops of axial slices, for the slice-wise network).
        mri_mm: ``(low, high)`` MRI voxel size range in mm for every subject (:func:`draw_params`); ``None``: the
            anatomy's default range.
        workers: worker processes that make the subjects (0 = made in this process when first used).

    Returns (per item):
        ``{"image": (2, X, Y, Z) float32 tensor [MRI, PET] in [0, 1]}`` (``(2, X, Y)`` in 2D).

    Raises:
        ValueError: bad arguments (quoted).
    """

    def __init__(
        self,
        spm_dir: str | Path,
        length: int,
        anatomies: Sequence[str] = ("avg152T1", "avg152T2", "avg152PD", "mni_synth"),
        crop: int | Sequence[int] = 64,
        seed: int = 0,
        bank_size: int = 8,
        refresh: int = 0,
        patterns: Sequence[str] = PATTERNS,
        flip: bool = True,
        spatial_dims: int = 3,
        mri_mm: Sequence[float] | None = None,
        workers: int = 0,
    ) -> None:
        if not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 0):
            raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if mri_mm is not None:
            ok = (isinstance(mri_mm, (list, tuple)) and len(mri_mm) == 2
                  and all(isinstance(v, (int, float)) and math.isfinite(v) for v in mri_mm)
                  and 0.3 <= mri_mm[0] <= mri_mm[1] <= 6.0)
            if not ok:
                raise ValueError(f"mri_mm must be null or [low, high] mm with 0.3 <= low <= high <= 6, got {mri_mm!r}")
        self.mri_mm = None if mri_mm is None else (float(mri_mm[0]), float(mri_mm[1]))
        if spatial_dims == 2:
            c2 = (int(crop),) * 2 if isinstance(crop, int) else tuple(int(c) for c in crop)
            if len(c2) != 2:
                raise ValueError(f"a 2D crop must be one int or two, got {crop!r}")
            crop_t = check_length_crop(length, (*c2, 1))
        else:
            crop_t = check_length_crop(length, crop)
        self.spatial_dims = int(spatial_dims)
        bad = [a for a in anatomies if a not in ANATOMIES]
        if not anatomies or bad:
            raise ValueError(f"anatomies must be a non-empty subset of {ANATOMIES}, got {anatomies!r}")
        badp = [p for p in patterns if p not in PATTERNS]
        if not patterns or badp:
            raise ValueError(f"patterns must be a non-empty subset of {PATTERNS}, got {patterns!r}")
        if int(bank_size) != bank_size or bank_size < 1:
            raise ValueError(f"bank_size must be an integer >= 1, got {bank_size!r}")
        if int(refresh) != refresh or not 0 <= refresh <= bank_size:
            raise ValueError(f"refresh must be an integer in [0, bank_size={bank_size}], got {refresh!r}")
        self.spm_dir = Path(spm_dir)
        self.length = int(length)
        self.anatomies = tuple(anatomies)
        self.crop = crop_t
        self.seed = int(seed)
        self.bank_size = int(bank_size)
        self.refresh = int(refresh)
        self.patterns = tuple(patterns)
        self.flip = bool(flip)
        self.epoch = 0
        self._bank: list[dict[str, Any] | None] = [None] * self.bank_size
        self._version = [-1] * self.bank_size  # the subject number each slot holds
        self.subjects_made = 0
        self.workers = workers
        #: the epochs the run will ask for, when known: no subjects are made ahead for an epoch past them
        self.epochs: int | None = None
        self._pool: Any = None
        self._pending: dict[int, Any] = {}  # subject number -> Future, made ahead by the workers

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Change the per-item draws and replace ``refresh`` bank subjects (lazily, on next use; with ``workers``,
        now, in parallel, and the next epoch's are started in the background)."""
        self.epoch = int(epoch)
        if self.workers > 0:
            self._fill_with_workers()

    def _wanted(self, slot: int, epoch: int | None = None) -> int:
        """Subject number slot ``slot`` holds at ``epoch`` (default: the current one; slots are refreshed
        round-robin)."""
        if self.refresh == 0:
            return slot
        epoch = self.epoch if epoch is None else int(epoch)
        rounds = (epoch * self.refresh + (self.bank_size - 1 - slot)) // self.bank_size
        return slot + rounds * self.bank_size

    def subject(self, number: int) -> dict[str, Any]:
        """Simulate subject ``number`` (deterministic): ``image`` (2, X, Y, Z), ``brain`` and ``head`` voxel lists."""
        self.subjects_made += 1
        return _make_subject(self.spm_dir, self.anatomies, self.seed, self.patterns, self.mri_mm, int(number))

    def _submit(self, number: int) -> Any:
        if number not in self._pending:
            if self._pool is None:
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                methods = multiprocessing.get_all_start_methods()
                ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
                self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init)
            self._pending[number] = self._pool.submit(
                _make_subject, self.spm_dir, self.anatomies, self.seed, self.patterns, self.mri_mm, number)
        return self._pending[number]

    def _fill_with_workers(self) -> None:
        """Make the current epoch's missing subjects in the workers (in parallel) and start the next epoch's."""
        missing = [(slot, self._wanted(slot)) for slot in range(self.bank_size)]
        missing = [(slot, number) for slot, number in missing if self._version[slot] != number or self._bank[slot] is None]
        for _, number in missing:
            self._submit(number)  # all at once, so the workers make them side by side
        for slot, number in missing:
            self._store(slot, number)
        if self.epochs is None or self.epoch + 1 < self.epochs:
            for number in {self._wanted(slot, self.epoch + 1) for slot in range(self.bank_size)} - set(self._version):
                self._submit(number)

    def _store(self, slot: int, number: int) -> None:
        """Put subject ``number`` into bank slot ``slot``: from the workers (made ahead, or now) or made here."""
        self._bank[slot] = None  # free first
        if self.workers > 0:
            self._bank[slot] = self._submit(number).result()  # a worker's error is raised here
            del self._pending[number]
            self.subjects_made += 1
        else:
            self._bank[slot] = self.subject(number)
        self._version[slot] = number

    def close(self) -> None:
        """Stop the worker processes (the subjects made ahead are dropped); the dataset stays usable."""
        if self._pool is not None:
            for future in self._pending.values():
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._pending = None, {}

    def __getstate__(self) -> dict[str, Any]:
        # a copy (e.g. a DataLoader worker's) shares neither the pool nor the subjects being made
        return {**self.__dict__, "_pool": None, "_pending": {}}

    def _slot(self, slot: int) -> dict[str, Any]:
        want = self._wanted(slot)
        if self._version[slot] != want or self._bank[slot] is None:
            self._store(slot, want)
        entry = self._bank[slot]
        assert entry is not None
        return entry

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        rng = np.random.default_rng([self.seed, int(index), self.epoch])
        entry = self._slot(int(rng.integers(self.bank_size)))
        pts = entry["brain"] if rng.random() < 0.7 else entry["head"]
        c = pts[int(rng.integers(len(pts)))] + rng.integers(-4, 5, 3)
        img = entry["image"]
        crop = np.asarray(self.crop)
        start = c - crop // 2
        out = np.zeros((2, *self.crop), np.float32)
        lo = np.maximum(start, 0)
        hi = np.minimum(start + crop, img.shape[1:])
        if np.all(hi > lo):
            src = (slice(None), *(slice(int(a), int(b)) for a, b in zip(lo, hi)))
            dst = (slice(None), *(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start)))
            out[dst] = img[src]
        if self.spatial_dims == 2:
            out = out[..., 0]
        if self.flip:
            for ax in range(self.spatial_dims):
                if rng.random() < 0.5:
                    out = np.flip(out, axis=ax + 1)
        spacing = torch.tensor(entry["params"].mri_spacing[: self.spatial_dims], dtype=torch.float32)
        return {"image": torch.from_numpy(np.ascontiguousarray(out)), "spacing": spacing}


#: default focal defect of the held-out pairs: 12 mm ball in the left parietal cortex (angular/supramarginal)
DEFAULT_DEFECT_MM = (-45.0, -60.0, 38.0)


def defect_centre(anatomy: Anatomy) -> tuple[float, float, float]:
    """Where the held-out pairs' focal defect goes: :data:`DEFAULT_DEFECT_MM` (left parietal cortex in MNI space)
    for the averages; for an individual anatomy (not in MNI space) the cortical voxel nearest to the same offset
    from its brain's centre (MNI's brain centre is about (0, -18, 18) mm)."""
    if anatomy.name not in INDIVIDUAL_ANATOMIES:
        return DEFAULT_DEFECT_MM
    brain = np.argwhere(anatomy.labels > 0)
    centre = anatomy.affine[:3, :3] @ brain.mean(0) + anatomy.affine[:3, 3]
    target = centre + np.asarray(DEFAULT_DEFECT_MM) - np.array([0.0, -18.0, 18.0])
    cortex = np.argwhere(anatomy.labels == 2)  # asfe3d.data.individual.TISSUES["cortex"]
    world = cortex @ anatomy.affine[:3, :3].T + anatomy.affine[:3, 3]
    best = world[int(np.argmin(np.sum((world - target) ** 2, axis=1)))]
    return (float(best[0]), float(best[1]), float(best[2]))


def write_validation_pairs(
    spm_dir: str | Path,
    out_dir: str | Path,
    anatomies: Sequence[str] = ("avg305T1",),
    per_anatomy: int = 2,
    seed: int = 1000,
    patterns: Sequence[str] = PATTERNS,
) -> Path:
    """Write held-out whole-head NIfTI pairs (MRI on its grid, PET on its scanner grid) and ``pairs.csv``.

    Each subject also gets ``<subject>_pet_defect.nii.gz`` (the same PET with a 12 mm, 30 % lowering in the left
    parietal cortex at :data:`DEFAULT_DEFECT_MM` before the PSF, same noise draw) and ``<subject>_defect.nii.gz``
    (the ball on the MRI grid), for the defect-transfer check with known anatomy.

    Args:
        spm_dir: the SPM12 data folder.
        out_dir: output folder (created).
        anatomies: held-out anatomy names.
        per_anatomy: subjects per anatomy (>= 1).
        seed: random seed.
        patterns: PET patterns, used in turn.

    Returns:
        The path of ``pairs.csv`` (columns ``subject, mri, pet, pet_defect, defect, brain``: ``brain`` is the
        anatomy's brain on the MRI grid, where MRI detail retention and PET consistency are measured).

    Raises:
        ValueError: bad arguments (quoted).
    """
    import csv

    import nibabel as nib

    if int(per_anatomy) != per_anatomy or per_anatomy < 1:
        raise ValueError(f"per_anatomy must be an integer >= 1, got {per_anatomy!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    k = 0
    for name in anatomies:
        anatomy = load_anatomy(name, spm_dir, seed=seed)
        for i in range(per_anatomy):
            rng = np.random.default_rng([seed, k])
            params = draw_params(name, rng, [patterns[k % len(patterns)]])
            sim = simulate_subject(anatomy, params, rng, defect={"centre_mm": defect_centre(anatomy)},
                                   normalise=False, brain=True)
            subj = f"{name}_{i:02d}_{params.pattern}"
            files = {
                "mri": (sim["mri"], sim["affine"]),
                "pet": (sim["pet_native"], sim["pet_affine"]),
                "pet_defect": (sim["pet_defect_native"], sim["pet_affine"]),
                "defect": (sim["defect_region"].astype(np.uint8), sim["affine"]),
                "brain": (sim["brain"].astype(np.uint8), sim["affine"]),
            }
            row = {"subject": subj}
            for key, (arr, aff) in files.items():
                path = out / f"{subj}_{key}.nii.gz"
                img = nib.Nifti1Image(arr, aff)
                img.set_qform(aff, code=1)
                img.set_sform(aff, code=1)
                nib.save(img, str(path))
                row[key] = path.name
            rows.append(row)
            k += 1
    csv_path = out / "pairs.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["subject", "mri", "pet", "pet_defect", "defect", "brain"])
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m asfe3d.data.wholehead --spm DIR --out DIR``: write held-out pairs (see :func:`write_validation_pairs`)."""
    p = argparse.ArgumentParser(prog="python -m asfe3d.data.wholehead",
                                description="Write simulated whole-head MRI/PET pairs of held-out anatomies.")
    p.add_argument("--spm", type=Path, required=True,
                   help="SPM12 data folder, or a folder holding spm12/ and individual/ (for individual anatomies)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--anatomies", default="avg305T1", help=f"comma-separated, from {', '.join(ANATOMIES)}")
    p.add_argument("--per-anatomy", type=int, default=2)
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--overwrite", action="store_true", help="replace the pairs of an earlier run in --out")
    args = p.parse_args(argv)
    if (args.out / "pairs.csv").exists() and not args.overwrite:  # the held-out results are built on those files
        print(f"asfe3d: error: {args.out}: holds the pairs of an earlier run (pairs.csv); not replaced (choose "
              "another --out, or --overwrite)", file=sys.stderr)
        return 2
    path = write_validation_pairs(args.spm, args.out, [a.strip() for a in args.anatomies.split(",") if a.strip()],
                                  args.per_anatomy, args.seed)
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
