"""The MRI's detail band for detail injection: ``x - G * x``, a Gaussian high-pass over every spatial axis.

:class:`DetailBand` works from ``x.ndim``, so one instance serves a 2D slice ``(B, C, H, W)`` and a whole volume
``(B, C, X, Y, Z)``: the 2D network's slice mode takes the band of the assembled volume with the same kernel (a
slice-by-slice band would miss the detail across slices, which a 2D network never sees).

:func:`detail_band_mm` is the same band with its width in mm, one kernel per axis from the grid's voxel size: what
:class:`~asfe3d.inferers.FusionInferer` adds when it knows the grid, so that the band stops at the PET's resolution
on a 0.7 mm grid as on a 2 mm one (a width in voxels is 6 mm on one voxel size only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from asfe3d.utils import is_real

__all__ = ["DetailBand", "blur_per_axis", "detail_band_mm", "gaussian_taps"]


class DetailBand(nn.Module):
    """``x - G * x``: ``G`` a separable Gaussian of ``fwhm`` voxels along every spatial axis, replicate-padded.

    Each axis is one matrix product with a banded ``(n, n)`` matrix (the padding folded into its edge columns): the
    same numbers as a replicate-padded convolution, several times faster than a one-channel ``conv3d``. The kernel
    is a non-persistent buffer: the module adds nothing to a state dict. TorchScript-compatible.

    Args:
        fwhm: the Gaussian's full width at half maximum in voxels, in ``(0, 64]``.

    Raises:
        ValueError: ``fwhm`` outside ``(0, 64]`` (quoted).
    """

    def __init__(self, fwhm: float) -> None:
        super().__init__()
        if not is_real(fwhm) or not (math.isfinite(fwhm) and 0 < fwhm <= 64):
            raise ValueError(f"detail_fwhm must be in (0, 64] voxels, got {fwhm!r}")
        # in Python, not torch.arange: built under torch.device("meta") (the weight check counts parameters so),
        # torch.arange goes through torch._refs, which imports torch._dynamo: 0.9 s of every command's start-up
        self.register_buffer("kernel", torch.tensor(gaussian_taps(fwhm), dtype=torch.float32), persistent=False)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """``G * x`` for ``x`` of shape ``(B, C, *spatial)`` (any number of spatial axes); same shape."""
        k = self.kernel.to(device=x.device, dtype=x.dtype)
        for axis in range(2, x.dim()):
            x = _blur_along(x, axis, k)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The detail band ``x - G * x`` of ``x`` ``(B, C, *spatial)``; same shape."""
        return x - self.blur(x)

    def per_axis(self, x: torch.Tensor, fwhm: list[float]) -> torch.Tensor:
        """The detail band with this call's FWHM along each spatial axis (voxels, one per axis of ``x``), instead of
        the module's own (the grid's spacing turned into voxels by the caller); same shape.

        Raises:
            ValueError: not one FWHM per spatial axis, or one outside ``(0, 64]`` (quoted).
        """
        return _band_per_axis(x, fwhm)


def gaussian_taps(fwhm: float) -> list[float]:
    """The normalised taps of a Gaussian of ``fwhm`` voxels, radius ``ceil(3 sigma)`` (at least 1).

    Raises:
        ValueError: ``fwhm`` outside ``(0, 64]`` (quoted).
    """
    if not is_real(fwhm) or not (math.isfinite(fwhm) and 0 < fwhm <= 64):
        raise ValueError(f"a detail band's FWHM must be in (0, 64] voxels, got {fwhm!r}")
    return _taps(float(fwhm))


def _taps(fwhm: float) -> list[float]:
    """:func:`gaussian_taps` without the check (TorchScript-compatible: the network calls it per call)."""
    sigma = fwhm / 2.3548200450309493  # asfe3d.utils.FWHM_PER_SIGMA: TorchScript takes no module-level float
    radius = max(1, int(math.ceil(3.0 * sigma)))
    taps: list[float] = []
    for i in range(-radius, radius + 1):
        taps.append(math.exp(-0.5 * (float(i) / sigma) ** 2))
    total = sum(taps)
    return [t / total for t in taps]


def _band_per_axis(x: torch.Tensor, fwhm: list[float]) -> torch.Tensor:
    """``x - G * x`` with a Gaussian of ``fwhm[i]`` voxels along spatial axis ``i`` (every width checked first)."""
    for f in fwhm:
        if not (f > 0.0 and f <= 64.0):
            raise ValueError(f"a detail band's FWHM must be in (0, 64] voxels, got {f}")
    return x - blur_per_axis(x, fwhm)


def blur_per_axis(x: torch.Tensor, fwhm: list[float]) -> torch.Tensor:
    """``G * x``: a Gaussian of ``fwhm[i]`` voxels along spatial axis ``i``, replicate-padded; an axis with
    ``fwhm[i] == 0`` is left as it is.

    Args:
        x: ``(B, C, *spatial)``.
        fwhm: one width per spatial axis, each 0 or in ``(0, 64]`` voxels.

    Returns:
        The blurred ``x`` (its shape and dtype).

    Raises:
        ValueError: not one width per spatial axis, or a width out of range (quoted).
    """
    if len(fwhm) != x.dim() - 2:
        raise ValueError(f"need one FWHM per spatial axis of x {x.shape}, got {fwhm}")
    for f in fwhm:
        if not (f >= 0.0 and f <= 64.0):
            raise ValueError(f"a FWHM must be 0 or in (0, 64] voxels, got {f}")
    blurred = x
    for i, f in enumerate(fwhm):
        if f > 0.0:
            blurred = _blur_along(blurred, i + 2, torch.tensor(_taps(f), dtype=x.dtype, device=x.device))
    return blurred


def _blur_along(x: torch.Tensor, axis: int, k: torch.Tensor) -> torch.Tensor:
    """``x`` convolved along ``axis`` with the odd kernel ``k``, replicate-padded: one product with a banded
    ``(n, n)`` matrix whose edge columns hold the padding's taps.

    ``x`` is viewed as ``(before, n, after)`` (the axes before and after ``axis`` flattened), so the product reads
    and writes it in place of memory: no axis is moved and copied (the last axis is one ``(before, n) @ (n, n)``
    product, any other a batch of ``(n, n) @ (n, after)`` products). The same numbers as moving the axis to the
    front for one product; a contiguous result.
    """
    n = x.shape[axis]
    r = (k.numel() - 1) // 2
    rows = torch.arange(n, device=x.device).view(-1, 1)
    cols = (rows + torch.arange(-r, r + 1, device=x.device).view(1, -1)).clamp(0, n - 1)
    # built in the taps' dtype, then cast: under CPU autocast the taps and the input may differ (bfloat16 input,
    # float32 taps), and scatter_add_ takes one dtype
    band = torch.zeros(n, n, dtype=k.dtype, device=x.device)
    band.scatter_add_(1, cols, k.view(1, -1).expand(n, k.numel()).contiguous())
    band = band.to(x.dtype)
    shape = x.shape
    before = 1
    for size in shape[:axis]:
        before *= size
    after = 1
    for size in shape[axis + 1:]:
        after *= size
    x = x.contiguous()
    if after == 1:
        return torch.matmul(x.view(before, n), band.t()).view(shape)
    return torch.matmul(band, x.view(before, n, after)).view(shape)


def detail_band_mm(x: torch.Tensor, spacing: Sequence[float], fwhm_mm: float) -> torch.Tensor:
    """``x - G * x`` with ``G`` a Gaussian of ``fwhm_mm`` along every spatial axis, replicate-padded.

    Args:
        x: ``(B, C, *spatial)``, one spatial axis per entry of ``spacing``.
        spacing: the voxel size along each spatial axis, in mm (> 0).
        fwhm_mm: the Gaussian's FWHM in mm (> 0); along each axis at most 64 voxels.

    Returns:
        The detail band, ``x``'s shape and dtype.

    Raises:
        ValueError: ``spacing`` that does not match ``x``'s spatial axes or is not positive, or a FWHM out of range
            (each quoted).
    """
    spacing = [float(s) for s in spacing]
    if len(spacing) != x.dim() - 2 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must give one voxel size > 0 (mm) per spatial axis of x {tuple(x.shape)}, "
                         f"got {spacing!r}")
    if not is_real(fwhm_mm) or not (math.isfinite(fwhm_mm)
                                                                                   and fwhm_mm > 0):
        raise ValueError(f"fwhm_mm must be a number > 0, got {fwhm_mm!r}")
    return _band_per_axis(x, [float(fwhm_mm) / size for size in spacing])
