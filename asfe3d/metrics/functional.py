"""Image-fusion quality metrics for 2D images ``(H, W)`` and 3D volumes ``(H, W, D)``.

Every metric is one implementation keyed on the number of spatial dimensions. The conventions (8-bit range,
histogram bins, log base, how the two sources are combined, boundary handling, masks) are written down in
``docs/metrics.md``; the short version:

- Inputs are finite float arrays (numpy or torch) in ``[0, 1]`` of shape ``(H, W)`` / ``(H, W, D)``, optionally with
  leading singleton channel dims ``(1, H, W[, D])``. They are converted once to the 8-bit grey levels the literature
  evaluates, ``q = round(255 * x)`` (values ``0..255`` held as floats), and every metric is computed on ``q``.
- EN and MI use 256 bins (one per grey level) and ``log2`` (bits).
- Two-source metrics: MI, VIF, SSIM are sums ``M(A, F) + M(B, F)``; CC is the mean ``(r(A, F) + r(B, F)) / 2``;
  SCD is ``r(F - B, A) + r(F - A, B)``; PSNR uses the mean of ``MSE(A, F)`` and ``MSE(B, F)`` with peak 255;
  Qabf is the edge-strength weighted Xydeas-Petrovic score.
- ``mask`` (boolean, spatial shape) restricts statistics to the mask; windowed / filtered metrics (SSIM, VIF, Qabf,
  SF, AG) compute their maps on the whole image and average (or sum) inside the mask.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.ndimage as ndi

from asfe3d.utils import binary

__all__ = [
    "METRIC_NAMES",
    "HIGHER_IS_BETTER",
    "to_8bit",
    "entropy",
    "standard_deviation",
    "spatial_frequency",
    "average_gradient",
    "mutual_information",
    "scd",
    "correlation_coefficient",
    "vif",
    "qabf",
    "ssim",
    "psnr",
    "fusion_metrics",
]

METRIC_NAMES: list[str] = ["EN", "SD", "SF", "AG", "MI", "SCD", "CC", "VIF", "Qabf", "SSIM", "PSNR"]
"""The 11 metrics in the order of the fusion literature's tables."""

HIGHER_IS_BETTER: dict[str, bool] = {name: True for name in METRIC_NAMES}
"""Whether a larger value means a better fusion (true for all 11 metrics here)."""

PEAK = 255.0
"""Peak grey level of the 8-bit range on which every metric is computed (PSNR peak, SSIM dynamic range)."""

_RANGE_TOL = 1e-6
_PARALLEL_MIN_VOXELS = 1_000_000  # below this, thread start-up costs more than it saves
_BOUNDARY = "nearest"  # replicate padding for every filter (as MATLAB's ssim / imgradient default)

# Xydeas-Petrovic constants (Xydeas & Petrovic, Electron. Lett. 36(4), 2000)
_QG_GAMMA, _QG_KAPPA, _QG_SIGMA = 0.9994, -15.0, 0.5
_QA_GAMMA, _QA_KAPPA, _QA_SIGMA = 0.9879, -22.0, 0.8

# SSIM constants (Wang et al., IEEE TIP 13(4), 2004)
_SSIM_K1, _SSIM_K2, _SSIM_SIGMA, _SSIM_RADIUS = 0.01, 0.03, 1.5, 5

# VIF constants (Sheikh & Bovik, IEEE TIP 15(2), 2006, pixel-domain multi-scale version)
_VIF_SIGMA_NSQ, _VIF_SCALES, _VIF_EPS = 2.0, 4, 1e-10


# ----------------------------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------------------------
def _as_numpy(x: Any, name: str) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            if x.dtype in (torch.float16, torch.bfloat16):  # no numpy equivalent for bfloat16
                x = x.float()
            x = x.as_subclass(torch.Tensor).numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}.")
    return x


def _squeeze_leading(x: np.ndarray) -> np.ndarray:
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    return x


def _spatial(x: Any, name: str) -> np.ndarray:
    """Validate one image and return its 8-bit grey levels as float32 of shape ``(H, W[, D])``."""
    arr = _as_numpy(x, name)
    orig_shape = tuple(arr.shape)
    arr = _squeeze_leading(arr)
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (H, W) or (H, W, D) (optionally with leading singleton channel dims), "
            f"got shape {orig_shape}."
        )
    if min(arr.shape) < 2:
        raise ValueError(f"{name} needs at least 2 pixels along every spatial axis, got shape {orig_shape}.")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold float intensities in [0, 1], got dtype {arr.dtype}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} (shape {orig_shape}) contains NaN or infinite values.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
        raise ValueError(
            f"{name} (shape {orig_shape}) must hold intensities in [0, 1], got values in [{lo:.6g}, {hi:.6g}]; "
            "normalise or clip it first."
        )
    return to_8bit(arr)


def to_8bit(x: np.ndarray) -> np.ndarray:
    """Map ``[0, 1]`` intensities to the 8-bit grey levels on which the metrics are computed.

    Args:
        x: float array in ``[0, 1]`` of any shape.

    Returns:
        float32 array of the same shape holding ``round(255 * clip(x, 0, 1))``, i.e. integers ``0..255``, exact in
        float32 (the clip only removes float round-off; callers validate the range first). Halves go up, as
        MATLAB's ``uint8``/``im2uint8`` round them, whatever the input's dtype: within :data:`_TIE` of a half counts
        as one (the mean of two 8-bit images is a half in half its pixels; ``numpy.rint`` sent a float64 half to
        the even level and a float32 one by its representation error, and EN moved by 0.15 bits with the dtype).
    """
    y = np.array(x, dtype=np.float64)  # a copy: the in-place steps below never touch the caller's array
    np.clip(y, 0.0, 1.0, out=y)
    y *= PEAK
    y += 0.5 + _TIE
    np.floor(y, out=y)
    return y.astype(np.float32)


#: how close to a half (in grey levels) :func:`to_8bit` rounds up: twice float32's representation error at 255
#: (~1.5e-5), far below a grey level
_TIE = 3e-5


def _prepare(
    images: Sequence[tuple[Any, str]], mask: Any | None
) -> tuple[list[np.ndarray], np.ndarray | None]:
    out = [_spatial(x, name) for x, name in images]
    shapes = {name: tuple(_as_numpy(x, name).shape) for x, name in images}
    if len({o.shape for o in out}) != 1:
        desc = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ValueError(f"images must share one spatial shape, got {desc}.")
    return out, _prepare_mask(mask, out[0].shape)


def _prepare_mask(mask: Any | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = _as_numpy(mask, "mask")
    orig_shape = tuple(m.shape)
    m = _squeeze_leading(m)
    if m.shape != shape:
        raise ValueError(f"mask shape {orig_shape} does not match the image shape {shape}.")
    m = binary(m, f"mask (shape {orig_shape})")
    if not m.any():
        raise ValueError(f"mask (shape {orig_shape}) is empty: no voxel to evaluate.")
    return m


# ----------------------------------------------------------------------------------------------------------------
# helpers on prepared arrays (8-bit grey levels held exactly in float32; sums accumulate in float64)
# ----------------------------------------------------------------------------------------------------------------
def _values(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return x.ravel() if mask is None else x[mask]


def _hist_entropy(counts: np.ndarray) -> float:
    total = counts.sum()
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def _entropy(x: np.ndarray, mask: np.ndarray | None) -> float:
    return _hist_entropy(np.bincount(_values(x, mask).astype(np.int64), minlength=256))


def _mi(x: np.ndarray, f: np.ndarray, mask: np.ndarray | None) -> float:
    xi = _values(x, mask).astype(np.int64)
    fi = _values(f, mask).astype(np.int64)
    joint = np.bincount(xi * 256 + fi, minlength=256 * 256).reshape(256, 256)
    h_xf = _hist_entropy(joint.ravel())
    return _hist_entropy(joint.sum(axis=1)) + _hist_entropy(joint.sum(axis=0)) - h_xf


def _corr_from_moments(n: int, sx: int, sy: int, sxx: int, syy: int, sxy: int) -> float:
    """Pearson r from exact integer moment sums; 0 when either variance is zero (correlation undefined)."""
    cov = n * sxy - sx * sy
    vx = n * sxx - sx * sx
    vy = n * syy - sy * sy
    if vx <= 0 or vy <= 0:
        return 0.0
    return float(cov / math.sqrt(float(vx) * float(vy)))


def _cc_scd(a: np.ndarray, b: np.ndarray, f: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    """CC ``(r(A, F) + r(B, F)) / 2`` and SCD ``r(F - B, A) + r(F - A, B)`` from one set of moments.

    The 8-bit values are integers, so every first/second-order sum is an integer below 2^53, exact in float64,
    and the centred sums are formed exactly with Python integers (no cancellation, exact 0 for constants).
    """
    va, vb, vf = (_values(x, mask).astype(np.float64) for x in (a, b, f))
    n = va.size
    s = {k: int(v.sum()) for k, v in (("a", va), ("b", vb), ("f", vf))}
    d = {
        k: int(np.dot(x, y))
        for k, (x, y) in {"aa": (va, va), "bb": (vb, vb), "ff": (vf, vf), "af": (va, vf), "bf": (vb, vf),
                          "ab": (va, vb)}.items()
    }
    cc = 0.5 * (_corr_from_moments(n, s["a"], s["f"], d["aa"], d["ff"], d["af"])
                + _corr_from_moments(n, s["b"], s["f"], d["bb"], d["ff"], d["bf"]))
    # F - B against A, F - A against B
    s_fb, s_fa = s["f"] - s["b"], s["f"] - s["a"]
    d_fbfb = d["ff"] - 2 * d["bf"] + d["bb"]
    d_fafa = d["ff"] - 2 * d["af"] + d["aa"]
    d_fb_a = d["af"] - d["ab"]
    d_fa_b = d["bf"] - d["ab"]
    scd_val = (_corr_from_moments(n, s_fb, s["a"], d_fbfb, d["aa"], d_fb_a)
               + _corr_from_moments(n, s_fa, s["b"], d_fafa, d["bb"], d_fa_b))
    return cc, scd_val


def _forward_diffs(x: np.ndarray, mask: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Forward differences along every axis with the mask of pairs whose both ends are inside ``mask``."""
    out = []
    for ax in range(x.ndim):
        d = np.diff(x, axis=ax)
        if mask is None:
            out.append((d, None))
        else:
            sl_a = [slice(None)] * x.ndim
            sl_b = [slice(None)] * x.ndim
            sl_a[ax] = slice(1, None)
            sl_b[ax] = slice(None, -1)
            out.append((d, mask[tuple(sl_a)] & mask[tuple(sl_b)]))
    return out


def _spatial_frequency(x: np.ndarray, mask: np.ndarray | None) -> float:
    total, counted = 0.0, False
    for d, m in _forward_diffs(x, mask):
        sq = d * d if m is None else d[m] ** 2
        if sq.size:
            total += float(sq.mean(dtype=np.float64))
            counted = True
    return math.sqrt(total) if counted else float("nan")  # no neighbour pair in the mask: undefined, not 0


def _average_gradient(x: np.ndarray, mask: np.ndarray | None) -> float:
    nd = x.ndim
    crop = tuple(slice(None, -1) for _ in range(nd))
    sq = np.zeros(tuple(s - 1 for s in x.shape), dtype=np.float32)  # sums of squared integers: exact
    valid = None if mask is None else mask[crop].copy()
    for ax in range(nd):
        d = np.diff(x, axis=ax)
        sl = [slice(None, -1)] * nd
        sl[ax] = slice(None)
        d = d[tuple(sl)]
        sq += d * d
        if valid is not None:
            shifted = [slice(None, -1)] * nd
            shifted[ax] = slice(1, None)
            valid &= mask[tuple(shifted)]
    g = np.sqrt(sq / nd)
    if valid is None:
        return float(g.mean(dtype=np.float64))
    # no voxel whose forward neighbours along every axis are in the mask (one slice of a volume, a checkerboard):
    # undefined (NaN), not 0, the worst score
    return float(g[valid].mean(dtype=np.float64)) if valid.any() else float("nan")


def _gauss(x: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    return ndi.gaussian_filter(x, sigma, radius=radius, mode=_BOUNDARY, output=np.float32)


def _centred32(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Subtract the global mean: local (co)variances are then exact in float32 (0 on constant images)."""
    mean = float(x.mean(dtype=np.float64))
    return (x - mean).astype(np.float32), mean


def _ssim_sum(sources: Sequence[np.ndarray], f: np.ndarray, mask: np.ndarray | None) -> float:
    """Sum over the sources of the mean SSIM map of (source, F); F's local statistics are shared."""
    c1 = (_SSIM_K1 * PEAK) ** 2
    c2 = (_SSIM_K2 * PEAK) ** 2
    f_c, mean_f = _centred32(f)
    mu_f = _gauss(f_c, _SSIM_SIGMA, _SSIM_RADIUS)
    var_f = np.maximum(_gauss(f_c * f_c, _SSIM_SIGMA, _SSIM_RADIUS) - mu_f * mu_f, 0.0)
    m_f = mu_f + np.float32(mean_f)
    total = 0.0
    for src in sources:
        r_c, mean_r = _centred32(src)
        mu_r = _gauss(r_c, _SSIM_SIGMA, _SSIM_RADIUS)
        var_r = np.maximum(_gauss(r_c * r_c, _SSIM_SIGMA, _SSIM_RADIUS) - mu_r * mu_r, 0.0)
        cov = _gauss(r_c * f_c, _SSIM_SIGMA, _SSIM_RADIUS) - mu_r * mu_f
        m_r = mu_r + np.float32(mean_r)
        num = (2.0 * m_r * m_f + c1) * (2.0 * cov + c2)
        den = (m_r * m_r + m_f * m_f + c1) * (var_r + var_f + c2)
        total += float(_values(num / den, mask).mean(dtype=np.float64))
    return total


def _vif_terms(s_rr: np.ndarray, s_ff: np.ndarray, s_rf: np.ndarray) -> tuple[float, float]:
    """Information sums (distorted, reference) of one scale, following Sheikh & Bovik's pixel-domain VIF."""
    g = s_rf / (s_rr + _VIF_EPS)
    sv = s_ff - g * s_rf
    flat_r = s_rr < _VIF_EPS
    g[flat_r] = 0.0
    sv[flat_r] = s_ff[flat_r]
    s_rr = np.where(flat_r, 0.0, s_rr)
    flat_f = s_ff < _VIF_EPS
    g[flat_f] = 0.0
    sv[flat_f] = 0.0
    neg = g < 0
    sv[neg] = s_ff[neg]
    g[neg] = 0.0
    sv = np.maximum(sv, _VIF_EPS)
    num = float(np.log1p(g * g * s_rr / (sv + _VIF_SIGMA_NSQ)).sum(dtype=np.float64)) / math.log(10.0)
    den = float(np.log1p(s_rr / _VIF_SIGMA_NSQ).sum(dtype=np.float64)) / math.log(10.0)
    return num, den


def _vif_list(sources: Sequence[np.ndarray], f: np.ndarray, mask: np.ndarray | None) -> list[float]:
    """Multi-scale pixel-domain VIF(source, F) for every source, sharing F's filtering (2D or 3D windows)."""
    refs = [_centred32(s)[0] for s in sources]  # VIF needs only (co)variances
    f = _centred32(f)[0]
    m = mask
    nums = [0.0] * len(refs)
    dens = [0.0] * len(refs)
    for scale in range(1, _VIF_SCALES + 1):
        n = 2 ** (_VIF_SCALES - scale + 1) + 1
        radius = (n - 1) // 2
        sigma = n / 5.0
        if scale > 1:
            step = (slice(None, None, 2),) * f.ndim
            refs = [_gauss(r, sigma, radius)[step] for r in refs]
            f = _gauss(f, sigma, radius)[step]
            m = None if m is None else m[step]
        mu_f = _gauss(f, sigma, radius)
        s_ff = np.maximum(_gauss(f * f, sigma, radius) - mu_f * mu_f, 0.0)
        s_ff_m = _values(s_ff, m)
        for i, r in enumerate(refs):
            mu_r = _gauss(r, sigma, radius)
            s_rr = np.maximum(_gauss(r * r, sigma, radius) - mu_r * mu_r, 0.0)
            s_rf = _gauss(r * f, sigma, radius) - mu_r * mu_f
            num, den = _vif_terms(_values(s_rr, m), s_ff_m, _values(s_rf, m))
            nums[i] += num
            dens[i] += den
    return [nu / de if de > 0.0 else 0.0 for nu, de in zip(nums, dens)]


def _sobel(x: np.ndarray) -> list[np.ndarray]:
    """Sobel derivative along every axis (2D: 3x3, 3D: 3x3x3 Sobel-Feldman), replicate padding, float32."""
    return [ndi.sobel(x, axis=ax, mode=_BOUNDARY, output=np.float32) for ax in range(x.ndim)]


def _norm(g: list[np.ndarray]) -> np.ndarray:
    out = g[0] * g[0]
    for gi in g[1:]:
        out += gi * gi
    return np.sqrt(out, out=out)


def _edge_preservation(gs: list[np.ndarray], gf: list[np.ndarray], ns: np.ndarray, nf: np.ndarray) -> np.ndarray:
    """Xydeas-Petrovic edge preservation Q^{SF} where the source gradient magnitude ``ns`` is > 0 (1D arrays)."""
    strength = np.minimum(ns, nf) / np.maximum(ns, nf)  # 0 where F has no edge
    if len(gs) == 2:
        # classic 2D orientation alpha = atan(g_y / g_x) (pi/2 where g_x == 0); A = 1 - |alpha_S - alpha_F| / (pi/2)
        def angle(g: list[np.ndarray]) -> np.ndarray:
            gy, gx = g  # axis 0 = rows (y), axis 1 = columns (x)
            zero = gx == 0
            return np.where(zero, np.float32(math.pi / 2), np.arctan(gy / np.where(zero, np.float32(1), gx)))

        orient = 1.0 - np.abs(angle(gs) - angle(gf)) / np.float32(math.pi / 2)
    else:
        # 3D: undirected angle theta in [0, pi/2] between the gradient vectors, A = 1 - theta / (pi/2);
        # theta = atan2(|g_S x g_F|, |g_S . g_F|) is accurate near 0 where arccos of the cosine is not
        (s0, s1, s2), (f0, f1, f2) = gs, gf
        dot = np.abs(s0 * f0 + s1 * f1 + s2 * f2)
        cross = np.sqrt((s1 * f2 - s2 * f1) ** 2 + (s2 * f0 - s0 * f2) ** 2 + (s0 * f1 - s1 * f0) ** 2)
        theta = np.where(nf > 0, np.arctan2(cross, dot), np.float32(math.pi / 2))  # no F edge: orientation 0
        orient = 1.0 - theta / np.float32(math.pi / 2)
    q = _QG_GAMMA / (1.0 + np.exp(_QG_KAPPA * (strength - _QG_SIGMA)))
    q *= _QA_GAMMA / (1.0 + np.exp(_QA_KAPPA * (orient - _QA_SIGMA)))
    return q


def _qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray, mask: np.ndarray | None) -> float:
    gf = _sobel(f)
    nf = _norm(gf)
    num = 0.0
    den = 0.0
    for src in (a, b):
        gs = _sobel(src)
        ns = _norm(gs)
        sel = ns > 0  # voxels with zero weight contribute nothing: evaluate only the others
        if mask is not None:
            sel &= mask
        if not sel.any():
            continue
        if sel.all():  # nothing to drop: flat views instead of copies
            w, pick = ns.ravel(), np.ravel
        else:
            w, pick = ns[sel], (lambda g, _sel=sel: g[_sel])
        q = _edge_preservation([pick(g) for g in gs], [pick(g) for g in gf], w, pick(nf))
        num += float(np.dot(q.astype(np.float64), w.astype(np.float64)))
        den += float(w.sum(dtype=np.float64))
    return num / den if den > 0 else 0.0


def _psnr(a: np.ndarray, b: np.ndarray, f: np.ndarray, mask: np.ndarray | None) -> float:
    mse_a = float(_values((a - f) ** 2, mask).mean(dtype=np.float64))
    mse_b = float(_values((b - f) ** 2, mask).mean(dtype=np.float64))
    mse = 0.5 * (mse_a + mse_b)
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(PEAK * PEAK / mse)


# ----------------------------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------------------------
def entropy(image: Any, mask: Any | None = None) -> float:
    """EN: Shannon entropy (bits) of the 256-bin grey-level histogram of the 8-bit image.

    Args:
        image: numpy array or torch tensor, shape ``(H, W)`` or ``(H, W, D)`` (leading singleton dims allowed),
            float in ``[0, 1]``.
        mask: optional boolean array of the spatial shape; only voxels inside it enter the histogram.

    Returns:
        ``-sum_k p_k log2 p_k`` over the 256 grey levels, in ``[0, 8]``; 0 for a constant image.

    Raises:
        ValueError: wrong dimensionality, an axis shorter than 2, NaN/inf, values outside ``[0, 1]``, or a bad mask.
    """
    (x,), m = _prepare([(image, "image")], mask)
    return _entropy(x, m)


def standard_deviation(image: Any, mask: Any | None = None) -> float:
    """SD: population standard deviation (``ddof = 0``) of the 8-bit grey levels.

    Args:
        image: numpy array or torch tensor, shape ``(H, W)`` or ``(H, W, D)``, float in ``[0, 1]``.
        mask: optional boolean array of the spatial shape restricting the statistic.

    Returns:
        The standard deviation in grey levels (``0..127.5``).

    Raises:
        ValueError: as for :func:`entropy`.
    """
    (x,), m = _prepare([(image, "image")], mask)
    return float(_values(x, m).std(dtype=np.float64))


def spatial_frequency(image: Any, mask: Any | None = None) -> float:
    """SF: ``sqrt(RF^2 + CF^2 [+ DF^2])`` from forward differences of the 8-bit image.

    ``RF^2`` is the mean squared difference between neighbours along axis 1 (row frequency), ``CF^2`` along
    axis 0, and in 3D ``DF^2`` along axis 2; each mean runs over its own ``(n - 1)`` difference grid.

    Args:
        image: numpy array or torch tensor, shape ``(H, W)`` or ``(H, W, D)``, float in ``[0, 1]``.
        mask: optional boolean array of the spatial shape; a difference counts when both of its voxels are inside.

    Returns:
        The spatial frequency in grey levels (a 0/1 checkerboard gives ``255 * sqrt(ndim)``); an axis with no
        difference inside the mask adds nothing, and NaN when no axis has one (undefined, not the worst score 0).

    Raises:
        ValueError: as for :func:`entropy`.
    """
    (x,), m = _prepare([(image, "image")], mask)
    return _spatial_frequency(x, m)


def average_gradient(image: Any, mask: Any | None = None) -> float:
    """AG: mean of ``sqrt(sum_axes dI^2 / ndim)`` over the ``(H-1)(W-1)[(D-1)]`` grid of forward differences.

    Args:
        image: numpy array or torch tensor, shape ``(H, W)`` or ``(H, W, D)``, float in ``[0, 1]``.
        mask: optional boolean array of the spatial shape; a grid point counts when it and its forward neighbour
            along every axis are inside.

    Returns:
        The average gradient in grey levels (a 0/1 checkerboard gives 255); NaN when no grid point has every
        forward neighbour inside the mask (one slice of a volume, a checkerboard: undefined, not the worst score 0).

    Raises:
        ValueError: as for :func:`entropy`.
    """
    (x,), m = _prepare([(image, "image")], mask)
    return _average_gradient(x, m)


def mutual_information(fused: Any, a: Any, b: Any, mask: Any | None = None) -> float:
    """MI: ``MI(A, F) + MI(B, F)`` in bits, from 256x256-bin joint histograms of the 8-bit images.

    ``MI(X, F) = H(X) + H(F) - H(X, F)``, so ``MI(X, X) = H(X)``.

    Args:
        fused: fused image, shape ``(H, W)`` or ``(H, W, D)``, float in ``[0, 1]``.
        a: first source (MRI), same shape.
        b: second source (PET), same shape.
        mask: optional boolean array of the spatial shape restricting the histograms.

    Returns:
        The summed mutual information (bits).

    Raises:
        ValueError: as for :func:`entropy`, or shapes that differ (the message quotes them).
    """
    (f, xa, xb), m = _prepare([(fused, "fused"), (a, "a"), (b, "b")], mask)
    return _mi(xa, f, m) + _mi(xb, f, m)


def scd(fused: Any, a: Any, b: Any, mask: Any | None = None) -> float:
    """SCD (Aslantas & Bendes 2015): ``r(F - B, A) + r(F - A, B)`` with Pearson ``r``.

    A correlation whose two arguments include a zero-variance one is undefined and counted as 0.

    Args:
        fused: fused image, shape ``(H, W)`` or ``(H, W, D)``, float in ``[0, 1]``.
        a: first source, same shape.
        b: second source, same shape.
        mask: optional boolean array of the spatial shape restricting the correlations.

    Returns:
        The sum of correlations of differences, in ``[-2, 2]``.

    Raises:
        ValueError: as for :func:`mutual_information`.
    """
    (f, xa, xb), m = _prepare([(fused, "fused"), (a, "a"), (b, "b")], mask)
    return _cc_scd(xa, xb, f, m)[1]


def correlation_coefficient(fused: Any, a: Any, b: Any, mask: Any | None = None) -> float:
    """CC: mean Pearson correlation with the sources, ``(r(A, F) + r(B, F)) / 2``.

    Args:
        fused: fused image, shape ``(H, W)`` or ``(H, W, D)``, float in ``[0, 1]``.
        a: first source, same shape.
        b: second source, same shape.
        mask: optional boolean array of the spatial shape restricting the correlations.

    Returns:
        The mean correlation in ``[-1, 1]`` (a zero-variance pair counts as 0).

    Raises:
        ValueError: as for :func:`mutual_information`.
    """
    (f, xa, xb), m = _prepare([(fused, "fused"), (a, "a"), (b, "b")], mask)
    return _cc_scd(xa, xb, f, m)[0]


def vif(fused: Any, a: Any, b: Any, mask: Any | None = None) -> float:
    """VIF: ``VIF(A, F) + VIF(B, F)``, pixel-domain multi-scale VIF of Sheikh & Bovik (2006).

    Four scales with Gaussian windows of size ``N = 2^(5 - s) + 1`` (33, 17, 9, 5) and ``sigma = N / 5``, 2D or 3D
    by the input's dimensionality; before scales 2-4 the images are smoothed with that scale's window and
    subsampled by 2 along every axis. Noise variance ``sigma_n^2 = 2`` (8-bit range). The per-scale information
    sums are added over scales and inside the mask before the ratio. A reference with no variance anywhere
    carries no information; its VIF is defined as 0.

    Args:
        fused: fused image, shape ``(H, W)`` or ``(H, W, D)``, float in ``[0, 1]``.
        a: first source (reference for ``VIF(A, F)``), same shape.
        b: second source, same shape.
        mask: optional boolean array of the spatial shape; maps are computed on the whole image, sums inside the
            (subsampled) mask.

    Returns:
        The summed VIF (each term is 1 for ``F`` equal to its reference).

    Raises:
        ValueError: as for :func:`mutual_information`.
    """
    (f, xa, xb), m = _prepare([(fused, "fused"), (a, "a"), (b, "b")], mask)
    return sum(_vif_list([xa, xb], f, m))


def qabf(fused: Any, a: Any, b: Any, mask: Any | None = None) -> float:
    """Qabf: Xydeas-Petrovic edge-preservation score with Sobel gradients (2D) or 3D Sobel gradients (3D).

    ``Q = sum(Q^AF w_A + Q^BF w_B) / sum(w_A + w_B)`` with weights ``w = |grad|``. In 2D the orientation term is the
    classic ``1 - |alpha_A - alpha_F| / (pi/2)`` with ``alpha = atan(g_y / g_x)``; in 3D it is
    ``1 - theta / (pi/2)`` where ``theta`` in ``[0, pi/2]`` is the undirected angle between the two gradient
    vectors, ``arccos(|g_A . g_F| / (|g_A| |g_F|))``. Sources without any edge give 0.

    Args:
        fused: fused image, shape ``(H, W)`` or ``(H, W, D)``, float in ``[0, 1]``.
        a: first source, same shape.
        b: second source, same shape.
        mask: optional boolean array of the spatial shape; sums run inside it.

    Returns:
        The score in ``[0, 1)`` (about 0.975 at most with the published constants).

    Raises:
        ValueError: as for :func:`mutual_information`.
    """
    (f, xa, xb), m = _prepare([(fused, "fused"), (a, "a"), (b, "b")], mask)
    return _qabf(xa, xb, f, m)


def ssim(fused: Any, a: Any, b: Any, mask: Any | None = None) -> float:
    """SSIM: ``SSIM(A, F) + SSIM(B, F)`` (Wang et al. 2004) on the 8-bit range (``L = 255``).

    Gaussian window of size 11 and ``sigma = 1.5`` (``11^2`` in 2D, ``11^3`` in 3D), ``K1 = 0.01``, ``K2 = 0.03``,
    replicate padding so the map covers every pixel.

    Args:
        fused: fused image, shape ``(H, W)`` or ``(H, W, D)``, float in ``[0, 1]``.
        a: first source, same shape.
        b: second source, same shape.
        mask: optional boolean array of the spatial shape; the mean of each SSIM map is taken inside it.

    Returns:
        The summed mean SSIM in ``[-2, 2]`` (each term is 1 for ``F`` equal to its source).

    Raises:
        ValueError: as for :func:`mutual_information`.
    """
    (f, xa, xb), m = _prepare([(fused, "fused"), (a, "a"), (b, "b")], mask)
    return _ssim_sum([xa, xb], f, m)


def psnr(fused: Any, a: Any, b: Any, mask: Any | None = None) -> float:
    """PSNR: ``10 log10(255^2 / MSE)`` with ``MSE = (MSE(A, F) + MSE(B, F)) / 2`` on the 8-bit range.

    Args:
        fused: fused image, shape ``(H, W)`` or ``(H, W, D)``, float in ``[0, 1]``.
        a: first source, same shape.
        b: second source, same shape.
        mask: optional boolean array of the spatial shape; the MSEs are means inside it.

    Returns:
        PSNR in dB; ``inf`` only when ``F``, ``A`` and ``B`` are all equal.

    Raises:
        ValueError: as for :func:`mutual_information`.
    """
    (f, xa, xb), m = _prepare([(fused, "fused"), (a, "a"), (b, "b")], mask)
    return _psnr(xa, xb, f, m)


def fusion_metrics(
    fused: Any, a: Any, b: Any, mask: Any | None = None, names: Sequence[str] | None = None
) -> dict[str, float]:
    """Compute several fusion metrics at once (inputs validated and converted to 8-bit only once).

    For inputs of at least one million voxels the independent metric groups (VIF, Qabf, SSIM, the rest) run in
    two threads (numpy and ``scipy.ndimage`` release the GIL); the values do not depend on it.

    Args:
        fused: fused image, shape ``(H, W)`` or ``(H, W, D)`` (leading singleton dims allowed), float in ``[0, 1]``.
        a: first source (MRI), same shape.
        b: second source (PET), same shape.
        mask: optional boolean array of the spatial shape (see the single-metric functions for its meaning).
        names: which metrics, from :data:`METRIC_NAMES`; ``None`` for all 11.

    Returns:
        ``{name: value}`` in the order of :data:`METRIC_NAMES` (restricted to ``names``).

    Raises:
        ValueError: unknown or duplicated names, or any input problem of the single-metric functions.
    """
    if names is None:
        wanted = list(METRIC_NAMES)
    else:
        if isinstance(names, str):
            raise ValueError(f"names must be a sequence of metric names, got the string {names!r}.")
        names = list(names)  # once: an iterator would be used up by the checks below (and gave {})
        unknown = [n for n in names if n not in METRIC_NAMES]
        if unknown:
            raise ValueError(f"unknown metric names {unknown}; choose from {METRIC_NAMES}.")
        if len(set(names)) != len(list(names)):
            raise ValueError(f"duplicated metric names in {list(names)}.")
        if not names:
            raise ValueError("names is empty; pass None for all metrics.")
        wanted = [n for n in METRIC_NAMES if n in names]
    (f, xa, xb), m = _prepare([(fused, "fused"), (a, "a"), (b, "b")], mask)

    def cheap() -> dict[str, float]:
        res: dict[str, float] = {}
        if "EN" in wanted:
            res["EN"] = _entropy(f, m)
        if "SD" in wanted:
            res["SD"] = float(_values(f, m).std(dtype=np.float64))
        if "SF" in wanted:
            res["SF"] = _spatial_frequency(f, m)
        if "AG" in wanted:
            res["AG"] = _average_gradient(f, m)
        if "MI" in wanted:
            res["MI"] = _mi(xa, f, m) + _mi(xb, f, m)
        if "SCD" in wanted or "CC" in wanted:
            res["CC"], res["SCD"] = _cc_scd(xa, xb, f, m)
        if "PSNR" in wanted:
            res["PSNR"] = _psnr(xa, xb, f, m)
        return res

    tasks: list[Callable[[], dict[str, float]]] = []  # the longest first, so two workers balance
    if "VIF" in wanted:
        tasks.append(lambda: {"VIF": sum(_vif_list([xa, xb], f, m))})
    if "Qabf" in wanted:
        tasks.append(lambda: {"Qabf": _qabf(xa, xb, f, m)})
    if "SSIM" in wanted:
        tasks.append(lambda: {"SSIM": _ssim_sum([xa, xb], f, m)})
    tasks.append(cheap)
    workers = min(len(tasks), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else
                  (os.cpu_count() or 1))  # one thread per metric group, at most one per core this process may use
    results: dict[str, float] = {}
    if workers > 1 and f.size >= _PARALLEL_MIN_VOXELS:
        # numpy / scipy.ndimage release the GIL: independent metrics overlap on the cores; results are identical
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(lambda task: task(), tasks):
                results.update(part)
    else:
        for task in tasks:
            results.update(task())
    return {name: results[name] for name in wanted}
