"""Order statistics of volume-sized arrays.

:func:`percentile` gives exactly what ``numpy.percentile`` (the default ``"linear"`` method) gives, bit for bit, but
partitions only the few elements around the wanted order statistics instead of a copy of the whole array: a volume
of 10 M voxels costs two comparisons and a small partition (~20 ms) instead of a copy and a full partition (~75 ms).
The pipeline takes a dozen such percentiles per subject (normalisation windows, the colour window, the QC's and
the overlap's thresholds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["percentile", "padding_mask", "outlier_limit", "FAST_MIN_SIZE", "FWHM_PER_SIGMA", "FWHM_TO_SIGMA",
           "OUTLIER_FACTOR", "PADDING_BELOW"]

#: Values below this are no tissue's nor air's (air is -1000 HU in a CT, 0 or more in an MRI): a constant minimum
#: below it is a scanner's padding outside the reconstructed field of view (-3024, -2048, -32768...).
PADDING_BELOW = -1024.0

#: a Gaussian's full width at half maximum per standard deviation, 2 sqrt(2 ln 2) (2.3548...), and its inverse
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
FWHM_TO_SIGMA = 1.0 / FWHM_PER_SIGMA

#: arrays smaller than this go straight to ``numpy.percentile`` (the selection would not pay for itself)
FAST_MIN_SIZE = 262_144
#: elements of the strided sample that brackets the wanted order statistics
_SAMPLE = 65_536


def percentile(values: np.ndarray, q: float | Sequence[float]) -> float | np.ndarray:
    """``numpy.percentile(values, q)`` (flattened, linear interpolation), exactly.

    For a large floating array the order statistics at ``floor((n - 1) q / 100)`` and the next one are found in the
    elements between two bracketing values taken from a strided sample; the bracket is checked by counting, and
    when it misses (or the array holds NaN) ``numpy.percentile`` itself answers. The interpolation is numpy's own
    formula (``a + (b - a) t``, or ``b - (b - a)(1 - t)`` for ``t >= 0.5``) in numpy's precision, so the result is
    the same number, not merely a close one.

    Args:
        values: any-shape array; not modified.
        q: a percentile in ``[0, 100]`` or a sequence of them.

    Returns:
        As ``numpy.percentile``: a scalar for a scalar ``q``, else an array of ``len(q)``.

    Raises:
        ValueError: an empty array or a percentile outside ``[0, 100]`` (quoted).
    """
    a = np.asarray(values)
    qs = np.asarray(q, dtype=np.float64)
    if a.size == 0:
        raise ValueError("percentile of an empty array")
    if qs.ndim > 1 or not np.all((qs >= 0) & (qs <= 100)):
        raise ValueError(f"percentiles must be a number or a 1-D sequence in [0, 100], got {q!r}")
    if a.dtype.kind != "f" or a.size < FAST_MIN_SIZE:
        return np.percentile(a, q)
    flat = a.reshape(-1)
    top = flat.max()
    if np.isnan(top):  # NaN propagates through max: numpy's own handling
        return np.percentile(a, q)
    sample = np.sort(flat[:: max(1, flat.size // _SAMPLE)])  # one strided sample brackets every q
    weak = type(q) in (int, float)  # numpy's rule: a Python number keeps the array's precision
    out = [_one(flat, sample, top, float(qi), weak) for qi in np.atleast_1d(qs)]
    if any(v is None for v in out):
        return np.percentile(a, q)
    if qs.ndim == 0:
        return out[0]
    return np.asarray(out, dtype=np.result_type(*out))


def _one(flat: np.ndarray, sample: np.ndarray, top: np.generic, q: float, weak: bool) -> np.generic | None:
    """One percentile of a finite 1-D float array (``sample``: its sorted strided sample, ``top``: its maximum;
    ``None`` when the sample's bracket missed)."""
    n = flat.size
    quantile = np.true_divide(np.float64(q), 100)
    virtual = np.float64(n - 1) * quantile
    if virtual >= n - 1:
        return top
    prev = int(np.floor(virtual))
    gamma = virtual - np.float64(prev)
    low_v, high_v = _order_stats(flat, sample, prev, prev + 1)
    if low_v is None:
        return None
    t = float(gamma) if weak else np.float64(gamma)
    diff = high_v - low_v
    if gamma >= 0.5:
        return high_v - diff * (1 - t)
    return low_v + diff * t


def _order_stats(flat: np.ndarray, sample: np.ndarray, k0: int, k1: int
                 ) -> tuple[np.generic | None, np.generic | None]:
    """The ``k0``-th and ``k1``-th smallest elements (0-based, ``k0 < k1``), or ``(None, None)`` when the sorted
    strided ``sample``'s bracket does not hold them."""
    n = flat.size
    m = sample.size
    # the sample's ranks around k0/n and k1/n, widened by ~6 standard deviations of a sampled rank
    spread = 6.0 * np.sqrt(m * 0.25) + 2
    lo_i = int(np.floor(k0 / n * m - spread))
    hi_i = int(np.ceil(k1 / n * m + spread))
    lo_val = sample[lo_i] if lo_i > 0 else None
    hi_val = sample[hi_i] if hi_i < m - 1 else None
    below = 0
    keep = np.ones(n, dtype=bool) if lo_val is None else flat >= lo_val
    if lo_val is not None:
        below = n - int(np.count_nonzero(keep))
    if hi_val is not None:
        keep &= flat <= hi_val
    inside = flat[keep]
    if not (below <= k0 and k1 < below + inside.size):
        return None, None
    j0, j1 = k0 - below, k1 - below
    inside.partition([j0, j1])
    return inside[j0], inside[j1]


def padding_mask(values: np.ndarray) -> np.ndarray | None:
    """The voxels of an image that hold its padding, or ``None`` when it has none (the usual case): a constant
    minimum below :data:`PADDING_BELOW` held by at least 1 % of the voxels and not by all (a CT's
    ``PixelPaddingValue`` outside its circular field of view, kept by GDCM and dcm2niix).

    Args:
        values: any-shape array; not modified.

    Returns:
        A bool array of ``values``' shape, or ``None``.
    """
    arr = np.asarray(values)
    if arr.size == 0:
        return None
    low = arr.min()
    if not float(low) < PADDING_BELOW:
        return None
    pad = arr == low
    share = float(pad.mean())
    return pad if 0.01 <= share < 1.0 else None


#: a few voxels above this multiple of the image's 99.9th percentile are outliers (a hot pixel, a spike of the
#: reconstruction): :func:`outlier_limit` says where to clip them
OUTLIER_FACTOR = 4.0


def outlier_limit(values: np.ndarray) -> float | None:
    """The value to clip an image's outliers at (:data:`OUTLIER_FACTOR` times the 99.9th percentile of its positive
    values), or ``None`` when it has none, the usual case (or fewer than 100 positive values).

    A handful of voxels 100 or 10 000 times the image's maximum (three hot MRI voxels, 30 spikes in a PET) would set
    the range of a histogram (Otsu's threshold, the registration's metric): every other voxel falls into one bin.

    Args:
        values: any-shape finite array; not modified.
    """
    arr = np.asarray(values)
    positive = arr[arr > 0]
    if positive.size < 100:
        return None
    limit = OUTLIER_FACTOR * float(percentile(positive, 99.9))
    return limit if limit > 0 and float(arr.max()) > limit else None
