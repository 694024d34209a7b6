"""Array logic for intensity handling: head masks and robust normalisation to ``[0, 1]``."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from asfe3d.utils import outlier_limit, padding_mask, percentile

__all__ = ["otsu_threshold", "head_mask", "robust_range", "robust_normalize", "above_window", "headroom", "HEADROOM"]


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a set of values (maximises the between-class variance).

    Args:
        values: any array; NaNs are not allowed.
        bins: histogram bins.

    Returns:
        The threshold (a value between the min and the max).

    Raises:
        ValueError: no values, or a non-finite one (NaN, inf: numpy's histogram refused it unquoted).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"values must be finite and not empty, got {values.size} values"
                         f"{'' if values.size == 0 else f' of which {int((~np.isfinite(values)).sum())} non-finite'}")
    hist, edges = np.histogram(values, bins=bins)
    centres = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centres[int(np.argmax(between))])


def head_mask(image: np.ndarray, *, fill: bool = True) -> np.ndarray:
    """A head mask: voxels above Otsu's threshold (of the image with its outliers clipped, as the registration's
    mask, :func:`asfe3d.registration.register.head_mask`), the largest component, holes filled.

    Args:
        image: 2D or 3D image.
        fill: fill holes (ventricles, sinuses) so the mask is the whole head.

    Returns:
        Boolean mask of ``image.shape``; all True when the image has no usable contrast.
    """
    image = np.asarray(image, dtype=np.float32)
    if float(image.max()) <= float(image.min()):
        return np.ones(image.shape, bool)
    pad = padding_mask(image)  # a CT's padding outside its disc: Otsu would split it from the air, not the head
    values = image if pad is None else image[~pad]
    limit = outlier_limit(values)  # a few hot voxels would set the histogram's range: the head in one bin
    if limit is not None:
        values = np.minimum(values, np.float32(limit))
    mask = image > otsu_threshold(values)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    if fill:
        mask = ndimage.binary_fill_holes(mask)
    return mask


def robust_range(
    image: np.ndarray, lower: float = 0.5, upper: float = 99.5, mask: np.ndarray | None = None
) -> tuple[float, float]:
    """The intensity window used for normalisation.

    The low end is the ``lower`` percentile of the whole image (so the background maps to about 0; a CT's padding
    outside its field of view, :func:`asfe3d.utils.padding_mask`, left out); the high end is
    the ``upper`` percentile inside ``mask`` (the head), so a large empty field of view does not squash the contrast.

    Args:
        image: 2D or 3D image.
        lower: percentile in ``[0, 100)`` for the low end.
        upper: percentile in ``(lower, 100]`` for the high end.
        mask: head mask; ``None`` computes one with :func:`head_mask`.

    Returns:
        ``(lo, hi)`` with ``hi > lo``.

    Raises:
        ValueError: bad percentiles, a mask of the wrong shape, or a constant image.
    """
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
    image = np.asarray(image, dtype=np.float32)
    if mask is None:
        mask = head_mask(image)
    elif mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape}")
    pad = padding_mask(image)  # a CT's padding outside its disc (-3024): the low end is its air's, not the padding
    lo = float(percentile(image if pad is None else image[~pad], lower))
    inside = image[mask] if mask.any() else image.ravel()
    hi = float(percentile(inside, upper))
    if hi <= lo:
        hi = float(image.max())
    if hi <= lo:
        raise ValueError(f"cannot normalise a constant image (all values = {lo})")
    return lo, hi


def robust_normalize(
    image: np.ndarray, lower: float = 0.5, upper: float = 99.5, mask: np.ndarray | None = None,
    *, clip_upper: bool = True,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Map an image to ``[0, 1]`` with :func:`robust_range` and clip.

    Args:
        image: 2D or 3D image.
        lower: low-end percentile (whole image).
        upper: high-end percentile (inside the head).
        mask: head mask; ``None`` computes one.
        clip_upper: clip at 1 (``False``: values above the window stay above 1, e.g. to split them off with
            :func:`above_window`).

    Returns:
        ``(normalised float32 image, (lo, hi))``; ``image = normalised * (hi - lo) + lo`` inside the window.
    """
    lo, hi = robust_range(image, lower, upper, mask)
    out = (np.asarray(image, dtype=np.float32) - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0 if clip_upper else None).astype(np.float32), (lo, hi)


#: how far above its window the PET's hottest uptake may show in the fused image, in windows: the part above
#: the window ``e`` is shown as ``HEADROOM * tanh(e / HEADROOM)`` (``e`` itself where it is small, at most this)
HEADROOM = 1.0


def above_window(normalised: np.ndarray) -> np.ndarray:
    """The part of a normalised image above its window (``max(x - 1, 0)``), float32, the image's shape."""
    return np.maximum(np.asarray(normalised, np.float32) - np.float32(1.0), np.float32(0.0))


def headroom(above: np.ndarray) -> np.ndarray:
    """What the fused image adds for a PET ``above`` its window (:func:`above_window`): ``HEADROOM *
    tanh(above / HEADROOM)``: the excess itself for the usual hottest voxels (0.2 above shows as 0.197), never more
    than :data:`HEADROOM` (an injection-site or bladder outlier 10 windows above shows as 1.0, so that a viewer's
    automatic window still shows the head), and in the same order as the PET (no plateau).

    Args:
        above: ``>= 0``, any shape.

    Returns:
        float32, same shape, in ``[0, HEADROOM)``.
    """
    return (np.float32(HEADROOM) * np.tanh(np.asarray(above, np.float32) / np.float32(HEADROOM))).astype(np.float32)
