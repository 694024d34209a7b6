"""Task-based measures beside the 11 fusion metrics: does the fused image keep what the PET says?

- :func:`defect_transfer`: how much of a known focal PET change (a simulated lowering of uptake) survives in the
  fused image: the mean fused change over the mean PET change inside the changed region (1 = all of it; 0 = none).
- :func:`place_defect`: where no defect is given, a reproducible one: a ball of ``diameter_mm`` (12 mm) centred
  where the ball-averaged PET is highest inside the head, its PET lowered by ``fraction`` (30 %).
- :func:`empty_output`: the fused level where both inputs are empty (the "no output where there is no input"
  check: a percentile of the fused image over the voxels where both inputs are at most ``level``).

Conventions (``docs/metrics.md``): images in ``[0, 1]`` as the fusion methods see them; the defect PET is on the
same intensity scale as the normal PET (one normalisation window, the normal PET's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from asfe3d.metrics.bands import _bool_mask
from asfe3d.utils import FWHM_PER_SIGMA, binary, is_real, voxel_sizes

__all__ = ["defect_transfer", "place_defect", "ball", "empty_output", "defect_transfer_of"]


def _check_same(arrays: dict[str, np.ndarray], unit: Sequence[str] = ()) -> tuple[int, ...]:
    """One shape (2D or 3D) and finite values for every array; those named in ``unit`` in ``[0, 1]`` (the scale
    every fusion method sees; a uint8 or raw-unit image mixed with a ``[0, 1]`` one gave DT 255 or 0.0001)."""
    shapes = {k: np.shape(v) for k, v in arrays.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()):
        raise ValueError(f"arrays must share one shape, got {shapes}")
    if len(first) not in (2, 3):
        raise ValueError(f"expected 2D or 3D arrays, got shape {first}")
    for name, value in arrays.items():
        arr = np.asarray(value)
        if np.issubdtype(arr.dtype, np.inexact) and not np.isfinite(arr).all():
            raise ValueError(f"{name} (shape {arr.shape}) holds NaN or Inf values")
        if name in unit and arr.size and (float(arr.min()) < -_UNIT_TOL or float(arr.max()) > 1.0 + _UNIT_TOL):
            raise ValueError(f"{name} must hold intensities in [0, 1] (as the fusion methods see them), got values "
                             f"in [{float(arr.min()):.6g}, {float(arr.max()):.6g}]; normalise it first")
    return tuple(first)


#: float round-off allowed around ``[0, 1]``
_UNIT_TOL = 1e-6


def defect_transfer(
    fused_ref: np.ndarray, fused_defect: np.ndarray, pet_ref: np.ndarray, pet_defect: np.ndarray, region: np.ndarray
) -> float:
    """Fraction of a PET change that the fused image carries.

    ``DT = mean_R(fused_ref - fused_defect) / mean_R(pet_ref - pet_defect)`` over the region ``R``.

    Args:
        fused_ref: fused image of the normal pair, ``(H, W)`` or ``(X, Y, Z)``.
        fused_defect: fused image of the pair whose PET has the defect, same shape.
        pet_ref: normal PET (the fusion input), same shape.
        pet_defect: PET with the defect, on the same intensity scale as ``pet_ref``.
        region: boolean mask of the changed region.

    Returns:
        The ratio (1 = the whole change survives; above 1 = amplified; 0 = lost; negative = reversed).

    Raises:
        ValueError: shapes differ, an image holds NaN or Inf or values outside ``[0, 1]``, the region is empty, or
            the PET does not change inside it (quoting the change).
    """
    _check_same({"fused_ref": fused_ref, "fused_defect": fused_defect, "pet_ref": pet_ref,
                 "pet_defect": pet_defect, "region": region},
                unit=("fused_ref", "fused_defect", "pet_ref", "pet_defect"))
    region = _bool_mask(region, np.shape(pet_ref), "region")
    if not region.any():
        raise ValueError("region is empty")
    d_pet = float(np.mean(np.asarray(pet_ref, np.float64)[region] - np.asarray(pet_defect, np.float64)[region]))
    if not abs(d_pet) > 1e-6:
        raise ValueError(f"the PET does not change inside the region (mean change {d_pet!r})")
    d_fused = float(np.mean(np.asarray(fused_ref, np.float64)[region] - np.asarray(fused_defect, np.float64)[region]))
    return d_fused / d_pet


def ball(shape: Sequence[int], centre: Sequence[float], diameter_mm: float,
         spacing: float | Sequence[float] = 1.0) -> np.ndarray:
    """Boolean ball (disc in 2D) of ``diameter_mm`` around a voxel ``centre`` on a grid of voxel size ``spacing``.

    Raises:
        ValueError: mismatched lengths or a non-positive diameter/spacing (quoted).
    """
    nd = len(shape)
    sp = voxel_sizes(spacing, nd)
    if len(centre) != nd or not is_real(diameter_mm) or not (math.isfinite(diameter_mm) and diameter_mm > 0):
        raise ValueError(f"need centre of {nd} coordinates and a finite diameter_mm > 0; got centre={centre!r}, "
                         f"diameter_mm={diameter_mm!r}")
    grids = np.ogrid[tuple(slice(0, int(s)) for s in shape)]
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, sp))
    return np.asarray(dist2 <= (diameter_mm / 2.0) ** 2)


def place_defect(
    pet: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    spacing: float | Sequence[float] = 1.0,
    diameter_mm: float = 12.0,
    fraction: float = 0.3,
    fwhm_mm: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A reproducible focal defect: lower the PET by ``fraction`` in a ball where the ball-mean PET is highest.

    The centre is the voxel (inside ``mask`` eroded by the ball's radius, so the ball lies in the head) whose
    ball-averaged PET is highest; ties go to the first voxel in C order.

    Args:
        pet: PET in ``[0, 1]``, ``(H, W)`` or ``(X, Y, Z)``.
        mask: head mask (``None`` = everywhere).
        spacing: voxel size in mm (one number or one per axis).
        diameter_mm: ball diameter in mm (> 0).
        fraction: relative lowering in ``(0, 1)``.
        fwhm_mm: ``None`` (default): the ball is cut into the PET as it is, with edges sharper than any PET images.
            A width in mm (e.g. the PET's resolution): the lowering is the ball blurred by a Gaussian of that FWHM,
            ``pet * (1 - fraction * G(ball))``, as a PET scanner would image a lesion of that size.

    Returns:
        ``(pet_defect, region)``: the lowered PET (float32) and the ball (bool).

    Raises:
        ValueError: bad arguments (quoted), no room for the ball inside the mask, or no uptake to lower.
    """
    from scipy import ndimage

    pet = np.asarray(pet, np.float32)
    if pet.ndim not in (2, 3):
        raise ValueError(f"pet must be 2D or 3D, got shape {pet.shape}")
    _check_same({"pet": pet})  # a NaN spread by the ball's mean read as "no uptake to lower"
    if not is_real(fraction) or not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    if not is_real(diameter_mm) or not (math.isfinite(diameter_mm) and diameter_mm > 0):
        raise ValueError(f"diameter_mm must be a finite number > 0, got {diameter_mm!r}")
    if fwhm_mm is not None and (not is_real(fwhm_mm)
                                or not (math.isfinite(fwhm_mm) and fwhm_mm > 0)):
        raise ValueError(f"fwhm_mm must be None or a number > 0 (mm), got {fwhm_mm!r}")
    mask = np.ones(pet.shape, bool) if mask is None else np.asarray(mask)
    if mask.shape != pet.shape:
        raise ValueError(f"mask shape {mask.shape} does not match pet shape {pet.shape}")
    mask = binary(mask, "mask")
    sp = voxel_sizes(spacing, pet.ndim)
    radius = np.ceil(diameter_mm / 2.0 / sp).astype(int)
    kernel = ball(tuple(2 * radius + 1), tuple(radius), diameter_mm, sp)
    inner = ndimage.binary_erosion(mask, structure=kernel, border_value=0)
    if not inner.any():
        raise ValueError(f"no room for a {diameter_mm} mm ball inside the mask (shape {pet.shape}, spacing {tuple(float(v) for v in sp)})")
    local = ndimage.convolve(pet, kernel.astype(np.float32) / kernel.sum(), mode="constant")
    local[~inner] = -np.inf
    centre = np.unravel_index(int(np.argmax(local)), pet.shape)
    if not local[centre] > 0:
        raise ValueError("no uptake to lower: the PET is 0 wherever the ball fits in the mask")
    region = ball(pet.shape, centre, diameter_mm, sp)
    if fwhm_mm is None:
        return np.where(region, pet * (1.0 - fraction), pet).astype(np.float32), region
    sigma = fwhm_mm / FWHM_PER_SIGMA / sp  # in voxels, per axis
    imaged = ndimage.gaussian_filter(region.astype(np.float64), sigma, mode="constant")
    return (pet * (1.0 - fraction * imaged)).astype(np.float32), region


def defect_transfer_of(
    fuse: Callable[[np.ndarray, np.ndarray], np.ndarray],
    mri: np.ndarray,
    pet: np.ndarray,
    pet_defect: np.ndarray,
    region: np.ndarray,
    fused_ref: np.ndarray | None = None,
) -> float:
    """:func:`defect_transfer` of a fusion method: fuse ``(mri, pet_defect)`` (and ``(mri, pet)`` unless given).

    Args:
        fuse: a fusion method ``(mri, pet) -> fused``.
        mri, pet, pet_defect, region: as in :func:`defect_transfer` (``mri`` the fusion's other input).
        fused_ref: the fused normal pair when already computed.

    Returns:
        The defect transfer.
    """
    ref = fuse(mri, pet) if fused_ref is None else fused_ref
    return defect_transfer(ref, fuse(mri, pet_defect), pet, pet_defect, region)


def empty_output(
    fused: np.ndarray, mri: np.ndarray, pet: np.ndarray, *, level: float = 0.0, percentile: float = 99.9
) -> float:
    """The fused image's ``percentile`` over the voxels where both inputs are at most ``level`` ("empty").

    Args:
        fused: fused image in ``[0, 1]``.
        mri: MRI input in ``[0, 1]``, same shape.
        pet: PET input in ``[0, 1]``, same shape.
        level: inputs at or below it count as empty (0 = exactly 0).
        percentile: in ``[0, 100]``.

    Returns:
        The percentile, or NaN when no voxel is empty in both inputs.

    Raises:
        ValueError: shapes differ, an image holds NaN or Inf, or bad ``level`` / ``percentile`` (quoted).
    """
    _check_same({"fused": fused, "mri": mri, "pet": pet})
    if not is_real(percentile) or not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be a number in [0, 100], got {percentile!r}")
    if not is_real(level) or not (math.isfinite(level) and level >= 0):
        raise ValueError(f"level must be a finite number >= 0, got {level!r}")
    empty = (np.asarray(mri) <= level) & (np.asarray(pet) <= level)
    if not empty.any():
        return float("nan")
    return float(np.percentile(np.asarray(fused, np.float32)[empty], percentile))
