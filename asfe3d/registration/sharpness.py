"""How sharp an image is: the share of its variance below a PET's resolution, and what that says of two inputs.

Used before registration by :mod:`asfe3d.registration.roles` (an MRI input on a coarser grid that is also the
smoother image) and after it by :mod:`asfe3d.registration.qc` (a failed verdict on inputs that look swapped). This
module imports nothing of asfe3d, so both can use it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from asfe3d.utils import FWHM_PER_SIGMA

__all__ = ["block_mean", "detail_share", "swap_sign"]

#: the band (mm, Gaussian FWHM) whose share of the variance :func:`detail_share` measures
SHARE_FWHM_MM = 6.0
#: a PET input with less of its variance below that band than this is not sharp enough to call an MRI
MIN_DETAIL_SHARE = 0.1
#: an MRI input with less than this fraction of the PET input's share is the smoother of the two
SMOOTHER = 0.5


def block_mean(a: np.ndarray, factors: Sequence[int], dtype: Any = None) -> np.ndarray:
    """``a`` (3D) averaged over blocks of ``factors`` voxels along its axes (the last partial blocks left out)."""
    f = [int(k) for k in factors]
    n = [(s // k) * k for s, k in zip(a.shape, f)]
    return a[: n[0], : n[1], : n[2]].reshape(n[0] // f[0], f[0], n[1] // f[1], f[1], n[2] // f[2], f[2]) \
        .mean(axis=(1, 3, 5), dtype=dtype)


def detail_share(volume: np.ndarray, spacing: tuple[float, ...], fwhm_mm: float = SHARE_FWHM_MM,
                 grid_mm: float = 2.0) -> float:
    """The share of a volume's variance in the head that lies in its band below ``fwhm_mm``.

    The volume is block-averaged to about ``grid_mm`` voxels (never finer than its own), blurred by a Gaussian of
    ``fwhm_mm`` FWHM, and the variance of what the blur removed is divided by the variance of the volume, both
    inside the head (voxels above 15 % of the 99.5th percentile). An individual T1 at 1-2 mm has 0.15-0.45 of its
    variance there, a PET at its 5-8 mm resolution a few hundredths (more with heavy noise).

    Args:
        volume: ``(Z, Y, X)`` array (SimpleITK's order).
        spacing: its voxel size ``(x, y, z)`` in mm (SimpleITK's order).
        fwhm_mm: the band's edge (Gaussian FWHM, mm).
        grid_mm: the grid the measure is taken on (mm).

    Returns:
        The share in [0, 1], or NaN when the head holds fewer than 1000 voxels or no variance.
    """
    from scipy.ndimage import gaussian_filter

    x = np.asarray(volume, dtype=np.float32)
    sp = np.asarray(spacing, dtype=np.float64)[::-1]
    f = np.maximum(1, np.floor(grid_mm / sp).astype(int))
    if (f > 1).any():
        x = block_mean(x, f, dtype=np.float32)
        sp = sp * f
    finite = np.isfinite(x)
    if finite.sum() < 1000:
        return float("nan")
    x = np.where(finite, x, 0).astype(np.float32)
    head = x > 0.15 * float(np.percentile(x[finite], 99.5))
    if head.sum() < 1000:
        return float("nan")
    total = float(x[head].var())
    if not total > 0:
        return float("nan")
    low = gaussian_filter(x, fwhm_mm / FWHM_PER_SIGMA / sp, mode="nearest")
    return float(np.clip((x - low)[head].var() / total, 0.0, 1.0))


#: a PET input with at least this share of its variance below 6 mm, and no noise (:data:`SWAP_MIN_SMOOTHNESS`), is
#: as sharp as an MRI ...
SWAP_PET_SHARE = 0.15
#: ... and an MRI input with less than this share is as smooth as a PET (individual T1s 0.2-0.45; averages of many
#: brains at 2 mm 0.02-0.06, PETs 0.02-0.11)
SWAP_MRI_SHARE = 0.1
#: a PET input's neighbour correlation on its grid from which its detail is structure, not noise
SWAP_MIN_SMOOTHNESS = 0.7


def swap_sign(mri: np.ndarray, pet: np.ndarray, mri_spacing: tuple[float, ...], pet_spacing: tuple[float, ...],
              pet_smoothness: float) -> str | None:
    """Whether the inputs look swapped on any grids: the MRI input as smooth as a PET and the PET input as sharp
    as an MRI, its detail not noise. Asked of a registration judged failed (the sign alone would also fit an
    average-of-brains MRI beside a sharp PET; with a failed registration it names the likely cause).

    Args:
        mri, pet: the inputs' voxels (3D, SimpleITK's ``(z, y, x)`` order).
        mri_spacing, pet_spacing: their voxel sizes ``(x, y, z)`` in mm.
        pet_smoothness: the PET input's neighbour correlation on its grid (noise: near 0).

    Returns:
        One sentence naming the numbers, or ``None``.
    """
    if not pet_smoothness >= SWAP_MIN_SMOOTHNESS:
        return None
    m_share, p_share = detail_share(mri, mri_spacing), detail_share(pet, pet_spacing)
    if not (p_share >= SWAP_PET_SHARE and m_share < SWAP_MRI_SHARE and m_share < SMOOTHER * p_share):
        return None
    return (f"the inputs look swapped: the MRI input is the smoother image ({100 * m_share:.0f} % of its variance in "
            f"the head lies below {SHARE_FWHM_MM:g} mm, against {100 * p_share:.0f} % for the PET input) and an MRI "
            "is the sharper one (give the MRI or CT first, then the PET)")
