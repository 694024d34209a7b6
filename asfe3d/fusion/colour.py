"""Colour handling: YCrCb conversion and pseudo-colour PET over MRI.

The fusion literature fuses pseudo-colour PET/SPECT in the luma channel: convert the PET's RGB to YCrCb (ITU-R
BT.601, full range, the convention of OpenCV's ``COLOR_RGB2YCrCb``), fuse Y with the gray MRI, and put the PET's
chroma (Cr, Cb) back. All arrays here are float in ``[0, 1]`` with the colour channel LAST (``(..., 3)``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["rgb_to_ycrcb", "ycrcb_to_rgb", "apply_colormap", "fuse_colour"]

_KR, _KB = 0.299, 0.114
_KG = 1.0 - _KR - _KB


def rgb_to_ycrcb(rgb: np.ndarray) -> np.ndarray:
    """RGB to YCrCb (BT.601 full range).

    Args:
        rgb: float array ``(..., 3)`` in ``[0, 1]``.

    Returns:
        ``(..., 3)`` array with channels ``Y, Cr, Cb``, each in ``[0, 1]`` (chroma centred on 0.5).

    Raises:
        ValueError: the last axis is not 3 long.
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.shape[-1] != 3:
        raise ValueError(f"expected a colour axis of length 3 last, got shape {rgb.shape}")
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = _KR * r + _KG * g + _KB * b
    cr = (r - y) / (2.0 * (1.0 - _KR)) + 0.5
    cb = (b - y) / (2.0 * (1.0 - _KB)) + 0.5
    return np.stack([y, cr, cb], axis=-1)


def ycrcb_to_rgb(ycrcb: np.ndarray) -> np.ndarray:
    """Invert :func:`rgb_to_ycrcb`; the result is clipped to ``[0, 1]``.

    Args:
        ycrcb: float array ``(..., 3)`` with channels ``Y, Cr, Cb``.

    Returns:
        RGB float32 array ``(..., 3)`` in ``[0, 1]``.

    Raises:
        ValueError: the last axis is not 3 long.
    """
    ycrcb = np.asarray(ycrcb, dtype=np.float32)
    if ycrcb.shape[-1] != 3:
        raise ValueError(f"expected a colour axis of length 3 last, got shape {ycrcb.shape}")
    y, cr, cb = ycrcb[..., 0], ycrcb[..., 1] - 0.5, ycrcb[..., 2] - 0.5
    r = y + 2.0 * (1.0 - _KR) * cr
    b = y + 2.0 * (1.0 - _KB) * cb
    g = (y - _KR * r - _KB * b) / _KG
    return np.clip(np.stack([r, g, b], axis=-1), 0.0, 1.0)


def apply_colormap(image: np.ndarray, cmap: str = "hot") -> np.ndarray:
    """Pseudo-colour a ``[0, 1]`` image with a matplotlib colour map.

    Args:
        image: float array of any shape, in ``[0, 1]``.
        cmap: a matplotlib colour-map name (``hot``, ``jet``, ``inferno``, ``nipy_spectral``...).

    Returns:
        float32 RGB array ``image.shape + (3,)`` in ``[0, 1]``.

    Raises:
        ValueError: unknown colour map.
    """
    import matplotlib

    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown colour map {cmap!r}") from None
    return colormap(np.clip(image, 0.0, 1.0))[..., :3].astype(np.float32)


def fuse_colour(
    mri: np.ndarray, pet_rgb: np.ndarray, fuse_luma: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Fuse a gray MRI with a colour PET in the luma channel and restore the PET's chroma.

    Args:
        mri: gray MRI in ``[0, 1]``, shape ``S``.
        pet_rgb: colour PET in ``[0, 1]``, shape ``S + (3,)``.
        fuse_luma: a fusion method ``(mri, pet_y) -> fused_y`` on arrays of shape ``S``.

    Returns:
        The fused colour image, float32 ``S + (3,)`` in ``[0, 1]``.

    Raises:
        ValueError: shapes do not match.
    """
    if pet_rgb.shape != mri.shape + (3,):
        raise ValueError(f"pet_rgb must have shape {mri.shape + (3,)} to match the MRI, got {pet_rgb.shape}")
    ycrcb = rgb_to_ycrcb(pet_rgb)
    fused_y = fuse_luma(mri, ycrcb[..., 0])
    return ycrcb_to_rgb(np.concatenate([np.asarray(fused_y, np.float32)[..., None], ycrcb[..., 1:]], axis=-1))
