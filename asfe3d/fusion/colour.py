"""Colour handling: YCrCb conversion and pseudo-colour PET over MRI.

The fusion literature fuses pseudo-colour PET/SPECT in the luma channel: convert the PET's RGB to YCrCb (ITU-R
BT.601, full range, the convention of OpenCV's ``COLOR_RGB2YCrCb``), fuse Y with the gray MRI, and put the PET's
chroma (Cr, Cb) back. All arrays here are float in ``[0, 1]`` with the colour channel LAST (``(..., 3)``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from asfe3d.utils import percentile as exact_percentile

__all__ = ["rgb_to_ycrcb", "ycrcb_to_rgb", "apply_colormap", "colour_window", "fuse_colour", "fuse_colour_planes",
           "top_fraction"]

#: where on the colour map :func:`colour_window` puts the PET's high percentile: the top 30 % is kept
#: for the hottest few voxels (``hot`` saturates red and green from 0.75 up: yellow to white, hard to tell apart)
COLOUR_HEADROOM = 0.7

_KR, _KB = 0.299, 0.114
_SLAB_VOXELS = 1 << 16  # voxels per slab of fuse_colour's conversions
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
    out = np.empty(rgb.shape, np.float32)
    y = _KR * r + _KG * g + _KB * b
    out[..., 0] = y
    out[..., 1] = (r - y) / (2.0 * (1.0 - _KR)) + 0.5
    out[..., 2] = (b - y) / (2.0 * (1.0 - _KB)) + 0.5
    return out


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
    out = np.empty(ycrcb.shape, np.float32)  # written in place: no stacked copy, clipped where it lies
    r = y + 2.0 * (1.0 - _KR) * cr
    b = y + 2.0 * (1.0 - _KB) * cb
    out[..., 0], out[..., 2] = r, b
    out[..., 1] = (y - _KR * r - _KB * b) / _KG
    return np.clip(out, 0.0, 1.0, out=out)


def apply_colormap(image: np.ndarray, cmap: str = "hot", window: tuple[float, float] | None = None) -> np.ndarray:
    """Pseudo-colour an image with a matplotlib colour map.

    Args:
        image: float array of any shape, in ``[0, 1]`` (or any range with ``window``).
        cmap: a matplotlib colour-map name (``hot``, ``jet``, ``inferno``, ``nipy_spectral``...).
        window: ``(lo, hi)`` mapped to the bottom and top of the colour map (values outside are clipped);
            ``None`` = ``(0, 1)``. :func:`colour_window` gives one that does not saturate.

    Returns:
        float32 RGB array ``image.shape + (3,)`` in ``[0, 1]``.

    Raises:
        ValueError: unknown colour map, or a window with ``hi <= lo`` (quoted).
    """
    import matplotlib

    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown colour map {cmap!r}") from None
    image = np.asarray(image, dtype=np.float32)
    if window is not None:
        lo, hi = (float(v) for v in window)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise ValueError(f"window must be (lo, hi) with hi > lo, got {window!r}")
        image = (image - lo) / (hi - lo)
    # matplotlib's own lookup (``colormap(x)``: index ``floor(x * N)``, the top value folded into the last entry,
    # NaN to black) done on a float32 table of the N entries: the same colours, without the float64 RGBA copy
    n = int(colormap.N)
    table = colormap(np.arange(n))[:, :3].astype(np.float32)
    scaled = np.clip(image, 0.0, 1.0)
    scaled *= np.float32(n)
    bad = np.isnan(scaled)
    has_bad = bool(bad.any())
    if has_bad:
        scaled[bad] = 0.0
    index = scaled.astype(np.int32)
    np.minimum(index, n - 1, out=index)
    rgb = np.take(table, index, axis=0)
    if has_bad:
        rgb[bad] = 0.0
    return rgb


def colour_window(
    pet: np.ndarray, mask: np.ndarray | None = None, percentile: float = 99.5, headroom: float = COLOUR_HEADROOM
) -> tuple[float, float]:
    """A PET colour window that keeps uptake differences visible: ``(0, hi)`` with the PET's ``percentile``
    (inside ``mask``, default where the PET is above 0) at ``headroom`` of the colour map.

    With the default ``(0, 1)`` window a PET normalised to ``[0, 1]`` puts a third of the brain into the top
    quarter of ``hot`` (yellow to white, where the map's red and green are saturated); with this window only the
    hottest ``100 - percentile`` % of voxels go beyond ``headroom``.

    Args:
        pet: PET image (any shape), e.g. normalised to ``[0, 1]``.
        mask: where to take the percentile (e.g. the brain or head); ``None`` = where ``pet > 0``.
        percentile: in ``(0, 100]``.
        headroom: in ``(0, 1]``: where on the colour map that percentile lands.

    Returns:
        ``(lo, hi)`` for :func:`apply_colormap`'s ``window``; ``(0, 1)`` for an empty PET.

    Raises:
        ValueError: bad ``percentile`` / ``headroom`` or a mask of another shape (quoted).
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    if not 0.0 < headroom <= 1.0:
        raise ValueError(f"headroom must be in (0, 1], got {headroom!r}")
    pet = np.asarray(pet, dtype=np.float32)
    if mask is None:
        mask = pet > 0
    elif np.shape(mask) != pet.shape:
        raise ValueError(f"mask shape {np.shape(mask)} does not match pet shape {pet.shape}")
    values = pet[np.asarray(mask, bool)]
    if values.size == 0:
        return 0.0, 1.0
    high = float(exact_percentile(values, percentile))
    if not high > 0:
        return 0.0, 1.0
    return 0.0, high / headroom


def top_fraction(
    image: np.ndarray, cmap: str = "hot", window: tuple[float, float] | None = None, mask: np.ndarray | None = None,
    level: float = 0.99,
) -> float:
    """Fraction of (masked) voxels that a colour map renders at its saturated top: the colour's two largest RGB
    channels both at least ``level`` (for ``hot``: yellow to white; the read-out of "uptake differences lost").

    Args:
        image: the image that :func:`apply_colormap` maps.
        cmap: colour-map name.
        window: as in :func:`apply_colormap`.
        mask: voxels to count (``None`` = all).
        level: saturation level in ``(0, 1]``.

    Returns:
        The fraction in ``[0, 1]``.

    Raises:
        ValueError: bad ``level``, an empty mask, or a mask of another shape (quoted).
    """
    if not 0.0 < level <= 1.0:
        raise ValueError(f"level must be in (0, 1], got {level!r}")
    image = np.asarray(image, dtype=np.float32)
    mask = np.ones(image.shape, bool) if mask is None else np.asarray(mask, bool)
    if mask.shape != image.shape or not mask.any():
        raise ValueError(f"mask must be a non-empty boolean array of shape {image.shape}, got shape {mask.shape}")
    rgb = apply_colormap(image[mask], cmap, window)
    two_largest = np.sort(rgb, axis=-1)[..., 1:]
    return float(np.mean(np.all(two_largest >= level, axis=-1)))


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
    pet_rgb = np.asarray(pet_rgb, dtype=np.float32)
    r, g, b = pet_rgb[..., 0], pet_rgb[..., 1], pet_rgb[..., 2]
    fused_y = np.asarray(fuse_luma(mri, _KR * r + _KG * g + _KB * b), np.float32)
    if fused_y.shape != mri.shape:
        raise ValueError(f"fuse_luma must return the MRI's shape {mri.shape}, got {fused_y.shape}")
    if mri.ndim == 0:
        return ycrcb_to_rgb(np.concatenate([fused_y[..., None], rgb_to_ycrcb(pet_rgb)[..., 1:]], axis=-1))
    # slab by slab along the first axis: the same float32 operations as converting the whole volume at once (the
    # same values), on pieces that stay in the CPU's cache instead of volume-sized temporaries (a 512x512x135 CT
    # grid: 16.6 -> ~2 s, and 2 GB less memory)
    out = np.empty(pet_rgb.shape, np.float32)
    for piece in _slabs(mri.shape):
        out[piece] = _with_luma(pet_rgb[piece], fused_y[piece])
    return out


def _slabs(shape: tuple[int, ...]) -> list[slice]:
    """Slabs along the first axis of about ``_SLAB_VOXELS`` voxels each."""
    step = max(1, _SLAB_VOXELS // max(1, int(np.prod(shape[1:]))))
    return [slice(start, start + step) for start in range(0, shape[0], step)]


def _with_luma(rgb: np.ndarray, luma: np.ndarray) -> np.ndarray:
    """``rgb`` ``S + (3,)`` with its luma replaced by ``luma`` ``S`` (its chroma kept), float32 ``S + (3,)``."""
    ycrcb = rgb_to_ycrcb(rgb)
    ycrcb[..., 0] = luma
    return ycrcb_to_rgb(ycrcb)


def fuse_colour_planes(
    mri: np.ndarray,
    pet: np.ndarray,
    cmap: str = "hot",
    window: tuple[float, float] | None = None,
    *,
    luma: np.ndarray | None = None,
    fuse_luma: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """:func:`fuse_colour` of ``apply_colormap(pet, cmap, window)``, channel first, without a volume-sized colour
    array: the PET is coloured, converted and written slab by slab along the first axis.

    The same float32 operations per voxel as ``np.moveaxis(fuse_colour(mri, apply_colormap(pet, cmap, window),
    fuse_luma), -1, 0)``, so the same values, with one ``(3, *S)`` array instead of three ``S + (3,)`` ones (a
    512x512x135 CT grid: 1.3 GB less memory).

    Args:
        mri: grey MRI in ``[0, 1]``, shape ``S``.
        pet: PET, shape ``S`` (in ``window``'s units).
        cmap: a matplotlib colour map.
        window: the PET's ``(lo, hi)`` for the colour map (:func:`apply_colormap`).
        luma: the fused luma, shape ``S`` (e.g. the grey fused image of the same pair); or
        fuse_luma: a fusion method ``(mri, pet_y) -> fused_y`` run on the coloured PET's luma.

    Returns:
        float32 ``(3, *S)`` RGB in ``[0, 1]``.

    Raises:
        ValueError: not exactly one of ``luma`` and ``fuse_luma``, or shapes that do not match (quoted).
    """
    mri = np.asarray(mri, dtype=np.float32)
    pet = np.asarray(pet)
    if (luma is None) == (fuse_luma is None):
        raise ValueError("give exactly one of luma and fuse_luma")
    if pet.shape != mri.shape or mri.ndim == 0:
        raise ValueError(f"mri and pet must share one shape with at least one axis, got {mri.shape} and {pet.shape}")
    slabs = _slabs(mri.shape)
    if luma is None:
        pet_y = np.empty(mri.shape, np.float32)
        for piece in slabs:
            rgb = apply_colormap(pet[piece], cmap, window)
            pet_y[piece] = _KR * rgb[..., 0] + _KG * rgb[..., 1] + _KB * rgb[..., 2]
        luma = np.asarray(fuse_luma(mri, pet_y), np.float32)  # type: ignore[misc]
        del pet_y
    luma = np.asarray(luma, np.float32)
    if luma.shape != mri.shape:
        raise ValueError(f"the fused luma must have the MRI's shape {mri.shape}, got {luma.shape}")
    out = np.empty((3, *mri.shape), np.float32)
    for piece in slabs:
        out[:, piece] = np.moveaxis(_with_luma(apply_colormap(pet[piece], cmap, window), luma[piece]), -1, 0)
    return out
