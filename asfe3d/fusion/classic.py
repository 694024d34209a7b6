"""Classic (training-free) fusion baselines, for 2D images and 3D volumes alike.

- ``mean``: the voxel-wise average.
- ``max``: the voxel-wise maximum (a strong baseline on the usual fusion metrics).
- ``wavelet``: an n-D discrete wavelet transform (PyWavelets ``wavedecn``): average the approximation band,
  keep the larger-magnitude coefficient in every detail band, invert.
- ``laplacian``: an n-D Laplacian pyramid: average the coarsest Gaussian level, keep the larger-magnitude
  Laplacian coefficient at every finer level, collapse.
- ``highpass``: detail injection as pansharpening's high-pass filtering (HPF) method does: the PET plus the MRI's
  detail band below the PET's resolution (the MRI minus its Gaussian blur at ``pet_fwhm_mm``), times a gain. The
  simplest method that keeps both images by construction; the learned method is measured against it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from asfe3d.fusion.base import FusionMethod, register_method

__all__ = ["MeanFusion", "MaxFusion", "WaveletFusion", "LaplacianFusion", "HighpassFusion", "laplacian_pyramid", "collapse_pyramid"]


def _check_levels(levels: Any) -> int:
    """``levels`` as an int >= 1 (a bool, a float or a string is refused, quoted)."""
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
    return int(levels)


def _max_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(np.abs(a) >= np.abs(b), a, b)


@register_method("mean")
class MeanFusion(FusionMethod):
    """Voxel-wise average of the two images."""

    name = "mean"

    def fuse_arrays(self, mri: np.ndarray, pet: np.ndarray) -> np.ndarray:
        return 0.5 * (mri + pet)


@register_method("max")
class MaxFusion(FusionMethod):
    """Voxel-wise maximum of the two images."""

    name = "max"

    def fuse_arrays(self, mri: np.ndarray, pet: np.ndarray) -> np.ndarray:
        return np.maximum(mri, pet)


@register_method("wavelet")
class WaveletFusion(FusionMethod):
    """n-D DWT fusion: mean of the approximations, max-abs of the details.

    Args:
        wavelet: a PyWavelets discrete wavelet name.
        levels: decomposition levels; capped by what the image size allows (``pywt.dwtn_max_level``).

    Raises:
        ValueError: unknown wavelet or ``levels`` not an integer >= 1 (quoted).
    """

    name = "wavelet"

    def __init__(self, wavelet: str = "db2", levels: int = 3) -> None:
        import pywt

        if wavelet not in pywt.wavelist(kind="discrete"):
            raise ValueError(f"wavelet must be a discrete PyWavelets wavelet, got {wavelet!r}")
        self.wavelet = wavelet
        self.levels = _check_levels(levels)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "wavelet": self.wavelet, "levels": self.levels}

    def fuse_arrays(self, mri: np.ndarray, pet: np.ndarray) -> np.ndarray:
        import pywt

        level = max(1, min(self.levels, pywt.dwtn_max_level(mri.shape, self.wavelet)))
        ca = pywt.wavedecn(mri, self.wavelet, mode="symmetric", level=level)
        cb = pywt.wavedecn(pet, self.wavelet, mode="symmetric", level=level)
        fused = [0.5 * (ca[0] + cb[0])]
        for da, db in zip(ca[1:], cb[1:]):
            fused.append({key: _max_abs(da[key], db[key]) for key in da})
        out = pywt.waverecn(fused, self.wavelet, mode="symmetric")
        return out[tuple(slice(0, n) for n in mri.shape)]


def _reduce(x: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(x, sigma=1.0, mode="reflect")[(slice(None, None, 2),) * x.ndim]


def _expand(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    up = x
    for axis in range(x.ndim):
        up = np.repeat(up, 2, axis=axis)
    up = up[tuple(slice(0, n) for n in shape)]
    return ndimage.gaussian_filter(up, sigma=1.0, mode="reflect")


def laplacian_pyramid(x: np.ndarray, levels: int) -> list[np.ndarray]:
    """Build an n-D Laplacian pyramid.

    Args:
        x: image, any number of dims.
        levels: number of band-pass levels; the last list entry is the low-pass residual.

    Returns:
        ``levels`` band-pass images (finest first) followed by the coarsest Gaussian level;
        :func:`collapse_pyramid` inverts it exactly.
    """
    pyramid = []
    current = x
    for _ in range(levels):
        low = _reduce(current)
        pyramid.append(current - _expand(low, current.shape))
        current = low
    pyramid.append(current)
    return pyramid


def collapse_pyramid(pyramid: list[np.ndarray]) -> np.ndarray:
    """Invert :func:`laplacian_pyramid`."""
    current = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        current = band + _expand(current, band.shape)
    return current


@register_method("laplacian")
class LaplacianFusion(FusionMethod):
    """n-D Laplacian-pyramid fusion: mean of the low-pass residual, max-abs of every band.

    Args:
        levels: pyramid levels; capped so the coarsest level keeps at least 4 voxels per axis.

    Raises:
        ValueError: ``levels`` not an integer >= 1 (quoted).
    """

    name = "laplacian"

    def __init__(self, levels: int = 4) -> None:
        self.levels = _check_levels(levels)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "levels": self.levels}

    def fuse_arrays(self, mri: np.ndarray, pet: np.ndarray) -> np.ndarray:
        smallest = min(mri.shape)
        levels = max(1, min(self.levels, int(np.floor(np.log2(max(smallest, 2) / 4))) + 1))
        pa = laplacian_pyramid(mri, levels)
        pb = laplacian_pyramid(pet, levels)
        fused = [_max_abs(a, b) for a, b in zip(pa[:-1], pb[:-1])] + [0.5 * (pa[-1] + pb[-1])]
        return collapse_pyramid(fused)


@register_method("highpass")
class HighpassFusion(FusionMethod):
    """Detail injection (pansharpening's HPF): ``PET + gain * (MRI - blur(MRI))``, the blur a Gaussian of the PET's
    resolution in mm.

    The voxel size comes with each call (``spacing``; :class:`asfe3d.transforms.Fuse` passes the image's), so the
    split sits at the same physical scale on any grid; without it voxels are taken as 1 mm.

    Args:
        pet_fwhm_mm: the PET's resolution (FWHM, mm, > 0).
        gain: weight of the MRI's detail band (> 0).

    Raises:
        ValueError: a bad FWHM or gain (quoted).
    """

    name = "highpass"
    uses_spacing = True

    def __init__(self, pet_fwhm_mm: float = 6.0, gain: float = 1.0) -> None:
        import math

        for key, value in {"pet_fwhm_mm": pet_fwhm_mm, "gain": gain}.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{key} must be a positive number, got {value!r}")
        self.pet_fwhm_mm, self.gain = float(pet_fwhm_mm), float(gain)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "pet_fwhm_mm": self.pet_fwhm_mm, "gain": self.gain}

    def fuse_arrays(self, mri: np.ndarray, pet: np.ndarray, spacing: Any = None) -> np.ndarray:
        """Fuse validated arrays; ``spacing``: this call's voxel size in mm (one number or one per axis; ``None`` =
        1 mm), given per call (``method(mri, pet, spacing=...)``), never stored."""
        from asfe3d.metrics.bands import band_split

        sp: Any = 1.0
        if spacing is not None:
            values = np.asarray(spacing, float).ravel()
            if values.size not in (1, mri.ndim):
                raise ValueError(f"spacing must be one voxel size or {mri.ndim} of them (mm) for an image of shape "
                                 f"{mri.shape}, got {spacing!r}")
            sp = tuple(np.broadcast_to(values, (mri.ndim,)))
        _, detail = band_split(mri, sp, self.pet_fwhm_mm)
        return (pet + self.gain * detail).astype(np.float32)
