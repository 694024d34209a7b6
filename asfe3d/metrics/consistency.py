"""Through-plane consistency (TPC) of a fused 3D volume: a score for slice-to-slice striping.

Why a separate measure: the 11 fusion metrics (:func:`asfe3d.metrics.fusion_metrics`) reward contrast, detail and
similarity to the sources, but are nearly blind to one failure that only 3D fusion has. A 2D network run slice by
slice (``asfe`` with ``mode="slice"``) processes every axial slice independently, so its output mapping (gain,
offset, which source dominates where) can change a little from one slice to the next. In the volume this shows as
flicker along the slicing axis: stripes in sagittal and coronal views. The in-plane structure of every slice can
be perfect while the stack is inconsistent.

Definition. For an image ``X``, mask ``M`` and axis ``k``, let ``E_k(X)`` be the mean squared second difference
``X[i-1] - 2 X[i] + X[i+1]`` along axis ``k``, over the positions whose three voxels are all inside ``M`` (second
differences are the discrete high-pass of the axis; they are insensitive to smooth intensity trends). The
*anisotropy* of ``X`` is the through-plane high-frequency energy relative to the in-plane one::

    R(X) = E_k(X) / mean_{j != k} E_j(X)

and the through-plane consistency of a fusion ``F`` of sources ``A`` and ``B`` is::

    TPC = R(F) / max(R(A), R(B))

Justification. Anatomy and PET uptake have (nearly) the same high-frequency spectrum along every axis of an
isotropic grid, so ``R`` is about 1 for the sources and for any fusion that takes its structure from them; on an
anisotropic grid (thick slices) both sources already show it, and dividing by the sources' anisotropy removes it.
A fusion that takes its structure from the sources cannot be more anisotropic than the most anisotropic source
(pointwise blends, with fixed or smoothly varying weights, mix the sources' directional energies), so a fusion
without striping scores ``TPC <= ~1``. Slice-wise inconsistency adds energy to the through-plane differences only:
a per-slice gain jitter ``F[..., z] = g_z S[..., z]`` with ``std(g) = s`` adds about ``6 s^2 mean(S^2)`` to
``E_k`` and nothing in-plane, so ``TPC`` grows with the jitter. Lower is better; ``1`` is the reference.

Unlike the 11 metrics (which follow the 8-bit convention of the literature), TPC is computed on the float values:
quantisation noise is isotropic and would only add a small bias toward 1.
"""

from __future__ import annotations

import numpy as np

from asfe3d.utils import binary

__all__ = ["UndefinedMetric", "directional_energy", "anisotropy", "through_plane_consistency"]


class UndefinedMetric(ValueError):
    """A score that the inputs leave undefined (not a bad argument): TPC inside a mask without three consecutive
    voxels along the slicing axis, or of sources without structure. A caller scoring many cases reports it as
    NaN (``asfe3d evaluate``); it is a ``ValueError`` for callers that catch those."""


def _as_volume(x: object, what: str) -> np.ndarray:
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"{what} must be a 3D volume (X, Y, Z), got shape {arr.shape}")
    if min(arr.shape) < 3:
        raise ValueError(f"{what} needs at least 3 voxels along every axis, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds NaN or Inf values")
    return arr


def _check_axis(axis: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or int(axis) not in (0, 1, 2, -1, -2, -3):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    return int(axis) % 3


def _second_diff_energy(x: np.ndarray, axis: int, mask: np.ndarray | None) -> float:
    n = x.shape[axis]
    lo = np.take(x, range(0, n - 2), axis=axis)
    mid = np.take(x, range(1, n - 1), axis=axis)
    hi = np.take(x, range(2, n), axis=axis)
    d2 = lo - 2.0 * mid + hi
    if mask is None:
        return float(np.mean(d2 * d2))
    valid = np.take(mask, range(0, n - 2), axis=axis) & np.take(mask, range(1, n - 1), axis=axis) & np.take(
        mask, range(2, n), axis=axis
    )
    if not valid.any():
        raise UndefinedMetric(f"the mask leaves no 3 consecutive voxels inside along axis {axis}")
    return float(np.mean(d2[valid] ** 2))


def directional_energy(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean squared second difference of a volume along each of its three axes.

    Args:
        x: 3D volume ``(X, Y, Z)`` (numpy or torch; leading singleton dims are dropped).
        mask: optional boolean mask of the same shape; a second difference counts when its three voxels are inside.

    Returns:
        float64 array ``(3,)``: ``E_0, E_1, E_2``.

    Raises:
        ValueError: not a finite 3D volume with >= 3 voxels per axis, or a mask of another shape / too small.
    """
    vol = _as_volume(x, "x")
    m = _check_mask(mask, vol.shape)
    return np.array([_second_diff_energy(vol, a, m) for a in range(3)])


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask)
    while m.ndim > 3 and m.shape[0] == 1:
        m = m[0]
    if m.shape != shape:
        raise ValueError(f"mask shape {m.shape} does not match the volume shape {shape}")
    m = binary(m, "mask")
    if not m.any():
        raise ValueError("mask is empty")
    return m


def anisotropy(x: np.ndarray, axis: int = 2, mask: np.ndarray | None = None) -> float:
    """``R(X) = E_axis / mean(E_other)``: through-plane over in-plane high-frequency energy.

    Args:
        x: 3D volume ``(X, Y, Z)``.
        axis: the slicing (through-plane) axis.
        mask: optional boolean mask.

    Returns:
        The ratio (``inf`` when the in-plane energy is 0 and the through-plane one is not; ``1`` when both are 0).

    Raises:
        ValueError: bad volume, axis or mask.
    """
    axis = _check_axis(axis)
    e = directional_energy(x, mask)
    return _ratio(e, axis)


def _ratio(e: np.ndarray, axis: int) -> float:
    through = float(e[axis])
    inplane = float(np.mean([e[j] for j in range(3) if j != axis]))
    if inplane == 0.0:
        return 1.0 if through == 0.0 else float("inf")
    return through / inplane


def through_plane_consistency(
    fused: np.ndarray, a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, axis: int = 2
) -> float:
    """Through-plane consistency ``TPC = R(F) / max(R(A), R(B))`` (see the module docstring); lower is better.

    About 1 (or below) for a fusion without slice-to-slice striping; grows with slice-wise inconsistency such as
    per-slice gain jitter.

    Args:
        fused: fused volume ``(X, Y, Z)``.
        a: first source (MRI) on the same grid.
        b: second source (PET) on the same grid.
        mask: optional boolean head mask (same shape); only second differences fully inside count.
        axis: the slicing axis of a slice-wise fusion (``2`` = ``Z`` of ``(X, Y, Z)``, axial for RAS-like grids).

    Returns:
        The TPC value (float >= 0); NaN for a fused volume with no structure at all (blank or constant: its 0/0
        anisotropy read as 1, the score of a good fusion).

    Raises:
        ValueError: a volume that is not finite 3D with >= 3 voxels per axis, differing shapes (quoted), a bad mask
            or axis, or sources with no in-plane or through-plane structure at all. A constant source is left out
            of ``max(R(A), R(B))`` (it has no anisotropy).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> from scipy.ndimage import gaussian_filter
        >>> a = gaussian_filter(rng.random((24, 24, 24)), 1.5); b = gaussian_filter(rng.random((24, 24, 24)), 2.0)
        >>> round(through_plane_consistency(0.5 * (a + b), a, b), 1) <= 1.1
        True
    """
    axis = _check_axis(axis)
    f = _as_volume(fused, "fused")
    va = _as_volume(a, "a")
    vb = _as_volume(b, "b")
    if not (f.shape == va.shape == vb.shape):
        raise ValueError(f"fused, a and b must have one shape, got {f.shape}, {va.shape} and {vb.shape}")
    m = _check_mask(mask, f.shape)
    sources = [np.array([_second_diff_energy(v, j, m) for j in range(3)]) for v in (va, vb)]
    # a source with no structure at all (constant) has no anisotropy: its 0/0 read as 1 entered the max, so a
    # copy of the other source scored R(B) instead of 1
    ref = max((_ratio(e, axis) for e in sources if e.any()), default=0.0)
    if ref == 0.0 or not np.isfinite(ref):
        raise UndefinedMetric(f"the sources' anisotropy is {ref} (no through-plane or no in-plane structure); TPC is "
                              "undefined")
    energy = np.array([_second_diff_energy(f, j, m) for j in range(3)])
    if not energy.any():  # a blank or constant fused image: no striping, but nothing to judge either (it read ~1)
        return float("nan")
    return _ratio(energy, axis) / ref
