"""Does the fused image keep both inputs at once? Two measures split at the PET's resolution (``docs/metrics.md``).

A PET sees nothing finer than its point-spread function (4-8 mm FWHM); the MRI sees much finer. Split every image
at the PET's resolution with a Gaussian of that FWHM (in mm, so the split is the same on any voxel grid):

- :func:`mri_detail`: the *MRI detail retention*. The detail band of an image is the image minus its blur at the
  PET's resolution. Correlation, inside the brain, between the fused image's detail band and the MRI's. 1: every
  gyrus, sulcus and tissue edge finer than the PET is in the fused image, in proportion; a PET copy scores about 0.
- :func:`pet_consistency`: Wald's consistency property of pansharpening, applied to PET. The fused image blurred
  to the PET's resolution should be the PET. Correlation, inside the brain, between the blurred fused image and
  the registered PET. 1: the fused image's coarse content is the PET's uptake; an MRI copy scores what the MRI's
  blurred contrast happens to share with the uptake.

Both are Pearson correlations, so neither depends on the fused image's intensity scale, and neither is reached by
copying one input: a method must keep both to score high on both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from asfe3d.utils import FWHM_TO_SIGMA, binary, is_real, voxel_sizes

__all__ = ["PET_FWHM_MM", "band_split", "brain_region", "mri_detail", "pet_consistency"]

#: the PET resolution the measures split at by default (FWHM, mm): a typical brain PET after reconstruction
PET_FWHM_MM = 6.0


def _check_fwhm(fwhm_mm: float) -> float:
    if not (is_real(fwhm_mm) and math.isfinite(fwhm_mm) and fwhm_mm > 0):
        raise ValueError(f"fwhm_mm must be a positive number of mm, got {fwhm_mm!r}")
    return float(fwhm_mm)


def band_split(
    x: np.ndarray, spacing: float | Sequence[float] = 1.0, fwhm_mm: float = PET_FWHM_MM
) -> tuple[np.ndarray, np.ndarray]:
    """Split an image at a resolution: ``(low, detail)`` with ``low + detail == x``.

    Args:
        x: ``(H, W)`` or ``(X, Y, Z)`` image.
        spacing: voxel size in mm (one number or one per axis).
        fwhm_mm: FWHM of the Gaussian that makes the low band, in mm (> 0).

    Returns:
        ``(low, detail)``: float64 arrays of ``x``'s shape; ``low`` is ``x`` blurred (reflecting edges).

    Raises:
        ValueError: not a finite 2D or 3D image, or a bad spacing or FWHM (quoted).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (2, 3) or not np.isfinite(x).all():
        raise ValueError(f"x must be a finite (H, W) or (X, Y, Z) image, got shape {x.shape}"
                         f"{'' if x.ndim not in (2, 3) else ' with NaN or Inf values'}")
    sigma = _check_fwhm(fwhm_mm) * FWHM_TO_SIGMA / voxel_sizes(spacing, x.ndim)
    low = ndimage.gaussian_filter(x, sigma, mode="reflect")
    return low, x - low


def _masked_corr(a: np.ndarray, b: np.ndarray, mask: np.ndarray, levels: tuple[float, float]) -> float:
    """Pearson correlation of ``a`` and ``b`` inside ``mask``; NaN where either is flat there. ``levels``: the
    largest magnitude of the image each band was taken from: a blurred constant keeps round-off of ~1e-16 of its
    level, which is no signal, on any intensity scale (an absolute floor read an image scaled by 1e-10 as flat)."""
    va, vb = a[mask], b[mask]
    for v, level in zip((va, vb), levels):
        if float(v.max() - v.min()) <= 1e-9 * level:
            return float("nan")
    va, vb = va - va.mean(), vb - vb.mean()
    den = math.sqrt(float(np.dot(va, va)) * float(np.dot(vb, vb)))
    return float(np.dot(va, vb) / den) if den > 0 else float("nan")


def _level(x: np.ndarray) -> float:
    return float(np.abs(x).max())


def _bool_mask(mask: Any, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """``mask`` as a bool array of ``shape``: bool, or numbers that are all 0 or 1 (a soft mask, e.g. 0.02 outside
    the brain, was cast to True everywhere).

    Raises:
        ValueError: another shape, or values other than 0 and 1 (quoted).
    """
    arr = np.asarray(mask)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have the images' shape {tuple(shape)}, got {arr.shape}")
    return binary(arr, name)


def _check_inputs(fused: np.ndarray, other: np.ndarray, mask: np.ndarray | None, what: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fused, other = np.asarray(fused, float), np.asarray(other, float)
    if fused.ndim not in (2, 3) or fused.shape != other.shape:
        raise ValueError(f"fused and {what} must be 2D or 3D arrays of one shape, got {fused.shape} and {other.shape}")
    for name, arr in (("fused", fused), (what, other)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} (shape {arr.shape}) holds NaN or Inf values")
    m = np.ones(fused.shape, bool) if mask is None else _bool_mask(mask, fused.shape)
    if m.sum() < 2:
        raise ValueError(f"mask must hold at least 2 voxels, got {int(m.sum())}")
    return fused, other, m


def mri_detail(
    fused: np.ndarray, mri: np.ndarray, mask: np.ndarray | None = None,
    spacing: float | Sequence[float] = 1.0, pet_fwhm_mm: float = PET_FWHM_MM,
) -> float:
    """MRI detail retention: correlation of the fused image's and the MRI's detail bands inside ``mask``.

    Args:
        fused: fused image, ``(H, W)`` or ``(X, Y, Z)``.
        mri: the MRI on the same grid.
        mask: where to compare (the brain); ``None`` = everywhere.
        spacing: voxel size in mm.
        pet_fwhm_mm: the PET's resolution, where the bands are split (mm).

    Returns:
        Pearson correlation in [-1, 1] (NaN when a band is flat in the mask).

    Raises:
        ValueError: mismatched shapes, NaN or Inf values, a bad mask, spacing or FWHM (quoted).
    """
    fused, mri, m = _check_inputs(fused, mri, mask, "mri")
    return _masked_corr(band_split(fused, spacing, pet_fwhm_mm)[1], band_split(mri, spacing, pet_fwhm_mm)[1], m,
                        (_level(fused), _level(mri)))


def pet_consistency(
    fused: np.ndarray, pet: np.ndarray, mask: np.ndarray | None = None,
    spacing: float | Sequence[float] = 1.0, pet_fwhm_mm: float = PET_FWHM_MM,
) -> float:
    """PET consistency (Wald): correlation of the fused image blurred to the PET's resolution with the PET.

    Args:
        fused: fused image, ``(H, W)`` or ``(X, Y, Z)``.
        pet: the registered PET on the same grid (already at its own resolution: not blurred again).
        mask: where to compare (the brain); ``None`` = everywhere.
        spacing: voxel size in mm.
        pet_fwhm_mm: the PET's resolution (mm).

    Returns:
        Pearson correlation in [-1, 1] (NaN when an image is flat in the mask).

    Raises:
        ValueError: mismatched shapes, NaN or Inf values, a bad mask, spacing or FWHM (quoted).
    """
    fused, pet, m = _check_inputs(fused, pet, mask, "pet")
    return _masked_corr(band_split(fused, spacing, pet_fwhm_mm)[0], pet, m, (_level(fused), _level(pet)))


def brain_region(pet: np.ndarray, head: np.ndarray, spacing: float | Sequence[float] = 1.0,
                 level: float = 0.35) -> np.ndarray:
    """A brain mask from the PET when none is given: the largest connected region inside ``head`` where the PET,
    blurred at 8 mm, exceeds ``level`` times its 99th percentile there; holes filled, eroded by 3 mm so that the
    scalp's edge is not counted as brain.

    Args:
        pet: registered PET in ``[0, 1]``.
        head: bool head mask, same shape.
        spacing: voxel size in mm.
        level: fraction of the PET's 99th percentile.

    Returns:
        bool mask (may be empty when the PET is flat).

    Raises:
        ValueError: mismatched shapes, a head mask that is not boolean, a PET with NaN or Inf, or a level outside
            (0, 1) (quoted).
    """
    pet = np.asarray(pet, float)
    head = _bool_mask(head, pet.shape, "head")
    if not np.isfinite(pet).all():  # a NaN spread by the blur made the 99th percentile NaN and the brain empty
        raise ValueError(f"pet (shape {pet.shape}) holds NaN or Inf values")
    if not is_real(level) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    sp = voxel_sizes(spacing, pet.ndim)
    if not head.any():
        return head
    low = ndimage.gaussian_filter(pet, 8.0 * FWHM_TO_SIGMA / sp)
    ref = float(np.percentile(low[head], 99))
    region = head & (low > level * ref)
    labels, n = ndimage.label(region)
    if n == 0:
        return region
    sizes = ndimage.sum(region, labels, index=np.arange(1, n + 1))
    region = ndimage.binary_fill_holes(labels == (1 + int(np.argmax(sizes))))
    radius = np.maximum(np.rint(3.0 / sp).astype(int), 1)
    struct = np.ones(tuple(2 * r + 1 for r in radius), bool)
    return ndimage.binary_erosion(region, struct) & head
