"""ASFE-Fusion training loss in 2D and 3D: content (L2), structure-tensor gradient, differentiable SSIM, max-abs
edge, and PET-change fidelity (how much of a focal PET change the fused image keeps)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ASFEFusionLoss", "gaussian_filter", "ssim", "structure_tensor", "edge_magnitude", "CONTENT_TARGETS",
    "focal_change", "change_fidelity", "band_losses",
]

CONTENT_TARGETS = ("max", "mean")


def _check_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")


def gaussian_filter(x: torch.Tensor, sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """Separable Gaussian smoothing of every channel over all spatial dims, replicate-padded to keep the size.

    Args:
        x: ``(B, C, H, W[, D])``.
        sigma: standard deviation in pixels (> 0).
        truncate: kernel radius in sigmas.

    Returns:
        ``(B, C, H, W[, D])`` smoothed (differentiable in ``x``).

    Raises:
        ValueError: when ``sigma`` is not positive.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    radius = max(1, int(math.ceil(truncate * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    nd = x.ndim - 2
    c = x.shape[1]
    conv = (F.conv2d, F.conv3d)[nd - 2]
    for axis in range(nd):
        shape = [1, 1] + [1] * nd
        shape[2 + axis] = k.numel()
        weight = k.reshape(shape).expand([c] + shape[1:])
        pad = [0, 0] * nd
        pad[2 * (nd - 1 - axis)] = radius
        pad[2 * (nd - 1 - axis) + 1] = radius
        x = conv(F.pad(x, pad, mode="replicate"), weight, groups=c)
    return x


def _gradients(x: torch.Tensor) -> list[torch.Tensor]:
    """Central differences (one-sided at the borders) of a ``(B, 1, *spatial)`` image along every spatial dim."""
    return list(torch.gradient(x, dim=tuple(range(2, x.ndim))))


def edge_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel edge strength ``sum_i |d_i x|`` (central differences, one-sided at the borders).

    Args:
        x: ``(B, 1, H, W[, D])``.

    Returns:
        ``(B, 1, H, W[, D])``, differentiable in ``x``.
    """
    return sum(g.abs() for g in _gradients(x))


def structure_tensor(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian-smoothed structure tensor of each channel.

    Args:
        x: ``(B, C, H, W[, D])``.
        sigma: integration scale in pixels.

    Returns:
        ``(B, C * d(d+1)/2, H, W[, D])``: the upper-triangle entries ``G * (g_i g_j)``, ``i <= j``, per channel.
    """
    g = [torch.stack(_gradients(x[:, c : c + 1]), 0) for c in range(x.shape[1])]
    nd = x.ndim - 2
    entries = []
    for gc in g:
        for i in range(nd):
            for j in range(i, nd):
                entries.append(gc[i] * gc[j])
    return gaussian_filter(torch.cat(entries, dim=1), sigma)


def ssim(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.5, data_range: float = 1.0, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM with a Gaussian window (differentiable; 2D or 3D from ``x.ndim``).

    Args:
        x: ``(B, C, H, W[, D])``.
        y: same shape.
        sigma: Gaussian window standard deviation in pixels (window radius ``3 sigma``).
        data_range: intensity range of the images.
        k1, k2: SSIM stabilisers.

    Returns:
        Scalar tensor: SSIM averaged over all pixels, channels and the batch.

    Raises:
        ValueError: when the shapes differ or are not 4D/5D.
    """
    if x.shape != y.shape or x.ndim not in (4, 5):
        raise ValueError(f"ssim expects two (B, C, H, W[, D]) tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = gaussian_filter(x, sigma), gaussian_filter(y, sigma)
    sxx = gaussian_filter(x * x, sigma) - mx * mx
    syy = gaussian_filter(y * y, sigma) - my * my
    sxy = gaussian_filter(x * y, sigma) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


#: FWHM = this factor x sigma for a Gaussian
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: :func:`focal_change`'s "hottest" voxels: at least this fraction of the item's maximum PET
HOT_LEVEL = 0.95


def _check_range(name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> tuple[float, float]:
    """``value`` as a ``(low, high)`` pair of finite numbers with ``lo (<|<=) low <= high <= hi``."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers (low, high), got {value!r}") from None
    low_ok = a > lo if lo_open else a >= lo
    if not (math.isfinite(a) and math.isfinite(b) and low_ok and a <= b <= hi):
        bound = "(" if lo_open else "["
        raise ValueError(f"{name} must be two numbers with {bound}{lo}, {hi}] holding low <= high, got {value!r}")
    return a, b


def _check_change_settings(
    voxel_mm: Any, size_mm: Any, fraction: Any, raise_prob: Any, min_pet: Any, hot_prob: Any = 0.0,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """:func:`focal_change`'s settings checked, as its keyword arguments; each message names the setting as the
    caller knows it (``names``: argument -> name, e.g. the loss's ``change_raise`` for ``raise_prob``)."""
    names = names or {}

    def name(arg: str) -> str:
        return names.get(arg, arg)

    if not (isinstance(voxel_mm, (int, float)) and math.isfinite(voxel_mm) and voxel_mm > 0):
        raise ValueError(f"{name('voxel_mm')} must be a finite number > 0, got {voxel_mm!r}")
    size = _check_range(name("size_mm"), size_mm, 0.0, math.inf, lo_open=True)
    frac = _check_range(name("fraction"), fraction, 0.0, 1.0, lo_open=True)
    if not (isinstance(raise_prob, (int, float)) and 0.0 <= raise_prob <= 1.0):
        raise ValueError(f"{name('raise_prob')} must be in [0, 1], got {raise_prob!r}")
    if not (isinstance(min_pet, (int, float)) and 0.0 <= min_pet < 1.0):
        raise ValueError(f"{name('min_pet')} must be in [0, 1), got {min_pet!r}")
    if not (isinstance(hot_prob, (int, float)) and 0.0 <= hot_prob <= 1.0):
        raise ValueError(f"{name('hot_prob')} must be in [0, 1], got {hot_prob!r}")
    return {"voxel_mm": float(voxel_mm), "size_mm": size, "fraction": frac, "raise_prob": float(raise_prob),
            "min_pet": float(min_pet), "hot_prob": float(hot_prob)}


def focal_change(
    pet: torch.Tensor,
    generator: torch.Generator | None = None,
    voxel_mm: float = 1.0,
    size_mm: Sequence[float] = (6.0, 20.0),
    fraction: Sequence[float] = (0.15, 0.40),
    raise_prob: float = 0.25,
    min_pet: float = 0.1,
    hot_prob: float = 0.0,
    spacing: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A copy of each PET with one random smooth focal change of uptake (a Gaussian blob), and the blob.

    Per item: a centre drawn uniformly among the pixels/voxels with ``pet > min_pet`` (with probability
    ``hot_prob``, among the item's hottest ones instead: ``pet >= HOT_LEVEL * max(pet)``, where a normalised PET
    sits at its ceiling and a fused image is most likely to clip; such a change always lowers), a blob FWHM drawn uniformly
    in ``size_mm`` (converted with ``voxel_mm``, isotropic), a relative change drawn uniformly in ``fraction``,
    lowering the uptake (raising it with probability ``raise_prob``):
    ``pet' = clip(pet * (1 -/+ f * blob), 0, 1)`` with ``blob = exp(-|x - c|^2 / (2 sigma^2))`` (peak 1).
    An item with no pixel above ``min_pet`` is left unchanged (its blob is 0). All draws come from ``generator``
    (CPU; the global torch generator when ``None``), so the changes are reproducible whatever the device.

    Args:
        pet: ``(B, 1, H, W[, D])`` PET in [0, 1].
        generator: CPU random generator of the draws.
        voxel_mm: pixel/voxel size in mm (> 0).
        size_mm: ``(low, high)`` blob FWHM in mm (> 0).
        fraction: ``(low, high)`` relative change of uptake at the blob's centre, in (0, 1].
        raise_prob: probability of raising instead of lowering, in [0, 1].
        min_pet: blob centres only where the PET exceeds this, in [0, 1).
        hot_prob: probability that the centre is drawn among the hottest voxels, in [0, 1] (0 = never; the draws
            of the other items are the same whatever it is).
        spacing: ``(B, spatial_dims)`` each item's own voxel size in mm along each axis, instead of ``voxel_mm``
            (a blob of a size in mm is then as many voxels across as that item's grid makes it, per axis); ``None``
            (default): ``voxel_mm`` for every item (the same draws either way).

    Returns:
        ``(pet_changed, blob)``, both ``(B, 1, H, W[, D])`` on ``pet``'s device and dtype (not differentiable).

    Raises:
        ValueError: a bad shape or argument (quoted).
    """
    if pet.ndim not in (4, 5) or pet.shape[1] != 1:
        raise ValueError(f"focal_change expects a (B, 1, H, W[, D]) PET, got {tuple(pet.shape)}")
    settings = _check_change_settings(voxel_mm, size_mm, fraction, raise_prob, min_pet, hot_prob)
    voxel_mm, size, frac = settings["voxel_mm"], settings["size_mm"], settings["fraction"]
    pet = pet.detach()
    spatial = pet.shape[2:]
    if spacing is not None:
        spacing = torch.as_tensor(spacing, dtype=torch.float64).detach().cpu()
        if tuple(spacing.shape) != (pet.shape[0], len(spatial)) or not bool(torch.isfinite(spacing).all()) \
                or not bool((spacing > 0).all()):
            raise ValueError(f"spacing must be (B, {len(spatial)}) finite voxel sizes > 0 (mm) for a PET of shape "
                             f"{tuple(pet.shape)}, got {spacing.tolist()!r}")
    grids = torch.meshgrid(*(torch.arange(n, device=pet.device, dtype=pet.dtype) for n in spatial), indexing="ij")
    blobs = torch.zeros_like(pet)
    factors = torch.ones(pet.shape[0], dtype=pet.dtype)
    for b in range(pet.shape[0]):
        u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        candidates = (pet[b, 0] > min_pet).nonzero().cpu()
        if len(candidates) == 0:
            continue
        hot = u[3] < hot_prob  # u[3] is drawn for every item, so hot_prob = 0 keeps the earlier draws
        if hot:
            candidates = (pet[b, 0] >= HOT_LEVEL * pet[b, 0].max()).nonzero().cpu()
        centre = candidates[int(torch.randint(len(candidates), (1,), generator=generator))].tolist()
        f = frac[0] + u[1] * (frac[1] - frac[0])
        factors[b] = f if u[2] < raise_prob and not hot else -f  # a raise at the ceiling would clip away
        if spacing is None:
            sigma = (size[0] + u[0] * (size[1] - size[0])) / _FWHM_PER_SIGMA / voxel_mm
            r2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
            blobs[b, 0] = torch.exp(-0.5 * r2 / sigma**2)
        else:  # the blob's size in this item's own mm, per axis
            sigma_mm = (size[0] + u[0] * (size[1] - size[0])) / _FWHM_PER_SIGMA
            r2 = sum(((g - c) * float(s) / sigma_mm) ** 2 for g, c, s in zip(grids, centre, spacing[b]))
            blobs[b, 0] = torch.exp(-0.5 * r2)
    shape = [-1] + [1] * (pet.ndim - 1)
    changed = (pet * (1.0 + factors.to(pet.device).reshape(shape) * blobs)).clamp(0.0, 1.0)
    return changed, blobs


def change_fidelity(
    fused_ref: torch.Tensor,
    fused_changed: torch.Tensor,
    pet_ref: torch.Tensor,
    pet_changed: torch.Tensor,
    weight: torch.Tensor,
    eps: float = 1e-8,
) -> torch.Tensor:
    """How far the fused image's change departs from the PET's change, relative to the PET change (per item, mean).

    ``L = mean_b [ sum(w |(F' - F) - (P' - P)|) / sum(w |P' - P|) ]`` over the items whose weighted PET change is
    not zero (0 when there is none): 0 when the fused image changes exactly as the PET does (a defect transfer of
    1), 1 when it does not change at all, 2 when it changes as much the opposite way. The training counterpart of
    the defect transfer ``DT`` of ``asfe3d.metrics`` (which is signed and averaged over a region).

    Args:
        fused_ref: ``(B, 1, H, W[, D])`` fused image of the original pair.
        fused_changed: same shape, fused image of the pair with the changed PET.
        pet_ref: same shape, the original PET.
        pet_changed: same shape, the changed PET.
        weight: same shape, >= 0 (e.g. the blob of :func:`focal_change`).
        eps: guard of the normalisation.

    Returns:
        Scalar tensor (differentiable in the fused images).

    Raises:
        ValueError: when the shapes differ or are not ``(B, 1, *spatial)``.
    """
    tensors = (fused_ref, fused_changed, pet_ref, pet_changed, weight)
    if len({tuple(t.shape) for t in tensors}) != 1 or fused_ref.ndim not in (4, 5) or fused_ref.shape[1] != 1:
        raise ValueError(
            "change_fidelity expects five (B, 1, H, W[, D]) tensors of one shape, got "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    dims = tuple(range(1, fused_ref.ndim))
    d_pet = (pet_changed - pet_ref).detach()
    w = weight.detach()
    den = (w * d_pet.abs()).sum(dims)
    num = (w * ((fused_changed - fused_ref) - d_pet).abs()).sum(dims)
    valid = den > eps
    if not bool(valid.any()):
        return (fused_changed - fused_ref).sum() * 0.0
    return (num[valid] / den[valid]).mean()


def band_losses(fused: torch.Tensor, mri: torch.Tensor, pet: torch.Tensor, sigma: float, eps: float = 1e-6,
                detail_gain: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The two halves of keeping both images, split at the PET's resolution (a Gaussian of ``sigma`` pixels):

    - PET consistency (Wald's property): ``sum |blur(F) - PET| / sum |PET|``: the fused image, degraded to the PET's
      resolution, should be the PET;
    - MRI detail: ``sum |hp(F) - g * hp(MRI)| / sum |g * hp(MRI)|`` with ``hp(x) = x - blur(x)`` and ``g`` the
      detail gain: below the PET's resolution the fused image should carry the MRI's detail (``g > 1`` asks for it
      amplified, as a pansharpening detail-injection gain does).

    Args:
        fused, mri, pet: ``(B, 1, *spatial)``.
        sigma: the PET's resolution as a Gaussian sigma in pixels (> 0).
        eps: guard for blank images.
        detail_gain: ``g`` above (> 0).

    Returns:
        ``(consistency, detail)``: scalars, 0 when both hold exactly.
    """
    low_f = gaussian_filter(fused, sigma)
    low_m = gaussian_filter(mri, sigma)
    consistency = (low_f - pet).abs().sum() / (pet.abs().sum() + eps)
    if not (math.isfinite(detail_gain) and detail_gain > 0):
        raise ValueError(f"detail_gain must be a finite number > 0, got {detail_gain!r}")
    hp_m = (mri - low_m) * detail_gain
    detail = ((fused - low_f) - hp_m).abs().sum() / (hp_m.abs().sum() + eps)
    return consistency, detail


class ASFEFusionLoss(nn.Module):
    """Unsupervised fusion loss: ``w_content * L_content + w_gradient * L_gradient + w_ssim * L_ssim``.

    - ``L_content``: mean squared error between the fused image and a putative image built from the sources,
      ``max(mri, pet)`` per pixel (``content_target="max"``) or their mean (``"mean"``).
    - ``L_gradient``: mean squared difference between the fused image's Gaussian-smoothed structure tensor and
      the sources' combined structure tensor (the sum of the two sources' tensors), divided by the mean
      squared entry of the combined tensor (a relative error, so the term is of order 1 whatever the contrast).
    - ``L_ssim``: ``1 - (SSIM(fused, mri) + SSIM(fused, pet)) / 2`` with a Gaussian window; fully
      differentiable (no ``.item()`` inside).
    - ``L_edge`` (only when ``w_edge > 0``): mean absolute difference between the fused image's edge strength
      ``sum_i |d_i F|`` and the stronger of the two sources' edge strengths, ``max(|grad mri|, |grad pet|)`` per
      pixel (a "max-abs" gradient target: keeps the sharper source's edges instead of a blend of both).

    - ``L_change`` (only when ``w_change > 0``): PET-change fidelity, :func:`change_fidelity` of the fused images
      of the pair and of the same pair with a focally changed PET (:meth:`make_change`), weighted by the change's
      blob: pulls the fused change towards the PET change (defect transfer 1) where the PET changes. ``forward``
      then needs ``fused_changed``, ``inputs_changed`` and ``change_weight``; the other terms use the unchanged
      pair only.

    The last call's components (floats) are kept in ``self.last_components`` for logging.

    Args:
        spatial_dims: 2 or 3.
        w_content: weight of the content term (>= 0).
        w_gradient: weight of the structure-tensor term (>= 0).
        w_ssim: weight of the SSIM term (>= 0).
        w_edge: weight of the max-abs edge term (>= 0; default 0 = off, the original loss).
        content_target: ``"max"`` or ``"mean"``.
        sigma_tensor: Gaussian integration scale of the structure tensor (pixels).
        sigma_ssim: Gaussian window sigma of SSIM (pixels).
        eps: guard of the structure-tensor normalisation (flat sources).
        w_change: weight of the PET-change fidelity term (>= 0; default 0 = off).
        change_size_mm: ``(low, high)`` FWHM of :meth:`make_change`'s blobs in mm.
        change_fraction: ``(low, high)`` relative uptake change at a blob's centre, in (0, 1].
        change_raise: probability that a change raises the uptake instead of lowering it.
        change_voxel_mm: pixel/voxel size of the training images in mm (converts ``change_size_mm``).
        change_min_pet: blob centres only where the PET exceeds this.
        change_hot: probability that a blob is centred among the PET's hottest voxels (:func:`focal_change`'s
            ``hot_prob``; default 0).
        change_grid_mm: ``True``: :meth:`make_change` takes ``change_size_mm`` in each item's own mm (the batch's
            ``spacing``, required then) instead of ``change_voxel_mm``; default ``False``.
        w_petc: weight of the PET-consistency term of :func:`band_losses` (>= 0; default 0 = off).
        w_detail: weight of the MRI-detail term of :func:`band_losses` (>= 0; default 0 = off).
        band_fwhm_mm: the PET resolution where the two band terms split (FWHM, mm).
        band_voxel_mm: pixel/voxel size of the training images in mm (converts ``band_fwhm_mm``).
        detail_gain: the MRI-detail term's target is ``detail_gain`` times the MRI's detail band (> 0; default 1).

    Raises:
        ValueError: on a bad ``spatial_dims``, a negative weight, all weights zero, an unknown target, or a bad
            change setting (every message quotes the value).
    """

    def __init__(
        self,
        spatial_dims: int,
        w_content: float = 10.0,
        w_gradient: float = 0.1,
        w_ssim: float = 1.0,
        content_target: str = "max",
        sigma_tensor: float = 1.0,
        sigma_ssim: float = 1.5,
        eps: float = 1e-12,
        w_edge: float = 0.0,
        w_change: float = 0.0,
        change_size_mm: Sequence[float] = (6.0, 20.0),
        change_fraction: Sequence[float] = (0.15, 0.40),
        change_raise: float = 0.25,
        change_voxel_mm: float = 1.0,
        change_min_pet: float = 0.1,
        change_hot: float = 0.0,
        change_grid_mm: bool = False,
        w_petc: float = 0.0,
        w_detail: float = 0.0,
        band_fwhm_mm: float = 6.0,
        band_voxel_mm: float = 1.0,
        detail_gain: float = 1.0,
    ) -> None:
        super().__init__()
        _check_dims(spatial_dims)
        weights = {"w_content": w_content, "w_gradient": w_gradient, "w_ssim": w_ssim, "w_edge": w_edge,
                   "w_change": w_change, "w_petc": w_petc, "w_detail": w_detail}
        bad = {k: v for k, v in weights.items()
               if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)}
        if bad:
            raise ValueError(f"loss weights must be finite numbers >= 0, got {bad}")
        if sum(weights.values()) <= 0:
            raise ValueError(f"at least one loss weight must be > 0, got {weights}")
        # the change settings are checked whether or not the term is on, named as the loss's arguments (the config
        # keys)
        self.change_settings = _check_change_settings(
            change_voxel_mm, change_size_mm, change_fraction, change_raise, change_min_pet, change_hot,
            names={"voxel_mm": "change_voxel_mm", "size_mm": "change_size_mm", "fraction": "change_fraction",
                   "raise_prob": "change_raise", "min_pet": "change_min_pet", "hot_prob": "change_hot"})
        if not isinstance(change_grid_mm, bool):
            raise ValueError(f"change_grid_mm must be true or false, got {change_grid_mm!r}")
        self.change_grid_mm = change_grid_mm
        if content_target not in CONTENT_TARGETS:
            raise ValueError(f"content_target must be one of {CONTENT_TARGETS}, got {content_target!r}")
        if not sigma_tensor > 0 or not sigma_ssim > 0:
            raise ValueError(f"sigma_tensor and sigma_ssim must be > 0, got {sigma_tensor!r} and {sigma_ssim!r}")
        self.spatial_dims = spatial_dims
        self.w_content, self.w_gradient, self.w_ssim = float(w_content), float(w_gradient), float(w_ssim)
        self.w_edge, self.w_change = float(w_edge), float(w_change)
        self.w_petc, self.w_detail = float(w_petc), float(w_detail)
        bands = {"band_fwhm_mm": band_fwhm_mm, "band_voxel_mm": band_voxel_mm, "detail_gain": detail_gain}
        bad_bands = {k: v for k, v in bands.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)}
        if bad_bands:
            raise ValueError(f"band settings must be positive numbers (mm; the gain a factor), got {bad_bands}")
        self.detail_gain = float(detail_gain)
        self.band_sigma = float(band_fwhm_mm) / float(band_voxel_mm) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        self.content_target = content_target
        self.sigma_tensor, self.sigma_ssim = float(sigma_tensor), float(sigma_ssim)
        self.eps = float(eps)
        self.last_components: dict[str, float] = {}

    def make_change(self, inputs: torch.Tensor, generator: torch.Generator | None = None,
                    spacing: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs with a random focal PET change (:func:`focal_change` with this loss's change settings).

        Args:
            inputs: ``(B, 2, H, W[, D])`` sources ``[MRI, PET]`` in [0, 1].
            generator: CPU random generator of the draws (reproducible changes).
            spacing: ``(B, spatial_dims)`` the items' voxel sizes (mm); used (and needed) with ``change_grid_mm``.

        Returns:
            ``(inputs_changed, change_weight)``: ``(B, 2, *spatial)`` with the same MRI and the changed PET, and
            the ``(B, 1, *spatial)`` blob (peak 1), for ``forward``'s ``inputs_changed`` / ``change_weight``.

        Raises:
            ValueError: when ``inputs`` is not ``(B, 2, *spatial)`` with ``spatial_dims`` spatial dims, or
                ``change_grid_mm`` without ``spacing``.
        """
        if inputs.ndim != self.spatial_dims + 2 or inputs.shape[1] != 2:
            raise ValueError(f"make_change expects (B, 2, *spatial) inputs in {self.spatial_dims}D, "
                             f"got {tuple(inputs.shape)}")
        if self.change_grid_mm and spacing is None:
            raise ValueError("change_grid_mm needs each item's voxel size: a dataset whose items carry 'spacing' "
                             "(data.source wholehead)")
        pet_changed, blob = focal_change(inputs[:, 1:].detach(), generator, **self.change_settings,
                                         spacing=spacing if self.change_grid_mm else None)
        return torch.cat([inputs[:, :1].detach(), pet_changed], dim=1), blob

    def forward(
        self,
        fused: torch.Tensor,
        inputs: torch.Tensor,
        fused_changed: torch.Tensor | None = None,
        inputs_changed: torch.Tensor | None = None,
        change_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
            fused: ``(B, 1, H, W[, D])`` network output in [0, 1].
            inputs: ``(B, 2, H, W[, D])`` sources ``[MRI, PET]`` in [0, 1].
            fused_changed: ``(B, 1, H, W[, D])`` network output for ``inputs_changed`` (needed when
                ``w_change > 0``; ignored otherwise).
            inputs_changed: ``(B, 2, H, W[, D])`` the same pairs with a changed PET (e.g. :meth:`make_change`).
            change_weight: ``(B, 1, H, W[, D])`` where the change is compared (e.g. the blob).

        Returns:
            Scalar loss tensor.

        Raises:
            ValueError: when the shapes do not match ``(B, 1, *spatial)`` / ``(B, 2, *spatial)``, or when
                ``w_change > 0`` and the changed tensors are missing or on another shape.
        """
        nd = self.spatial_dims
        self._check_pair(fused, inputs)
        if self.w_change > 0:
            if fused_changed is None or inputs_changed is None or change_weight is None:
                raise ValueError(
                    f"w_change={self.w_change} needs fused_changed, inputs_changed and change_weight "
                    "(see make_change)"
                )
            self._check_pair(fused_changed, inputs_changed)
            if fused_changed.shape != fused.shape or change_weight.shape != fused.shape:
                raise ValueError(
                    f"ASFEFusionLoss({nd}D): fused_changed and change_weight must have fused's shape "
                    f"{tuple(fused.shape)}, got {tuple(fused_changed.shape)} and {tuple(change_weight.shape)}"
                )
        mri, pet = inputs[:, :1], inputs[:, 1:]
        target = torch.maximum(mri, pet) if self.content_target == "max" else 0.5 * (mri + pet)
        l_content = F.mse_loss(fused, target)
        j_f = structure_tensor(fused, self.sigma_tensor)
        j_s = structure_tensor(mri, self.sigma_tensor) + structure_tensor(pet, self.sigma_tensor)
        l_grad = F.mse_loss(j_f, j_s) / (j_s.detach().pow(2).mean() + self.eps)
        l_ssim = 1.0 - 0.5 * (ssim(fused, mri, self.sigma_ssim) + ssim(fused, pet, self.sigma_ssim))
        total = self.w_content * l_content + self.w_gradient * l_grad + self.w_ssim * l_ssim
        components = {"content": float(l_content.detach()), "gradient": float(l_grad.detach()),
                      "ssim": float(l_ssim.detach())}
        if self.w_edge > 0:
            edge_target = torch.maximum(edge_magnitude(mri), edge_magnitude(pet))
            l_edge = F.l1_loss(edge_magnitude(fused), edge_target)
            total = total + self.w_edge * l_edge
            components["edge"] = float(l_edge.detach())
        if self.w_petc > 0 or self.w_detail > 0:
            l_petc, l_detail = band_losses(fused, mri, pet, self.band_sigma, detail_gain=self.detail_gain)
            total = total + self.w_petc * l_petc + self.w_detail * l_detail
            components["petc"], components["detail"] = float(l_petc.detach()), float(l_detail.detach())
        if self.w_change > 0:
            assert fused_changed is not None and inputs_changed is not None and change_weight is not None
            l_change = change_fidelity(fused, fused_changed, pet, inputs_changed[:, 1:], change_weight)
            total = total + self.w_change * l_change
            components["change"] = float(l_change.detach())
        components["total"] = float(total.detach())
        self.last_components = components
        return total

    def _check_pair(self, fused: torch.Tensor, inputs: torch.Tensor) -> None:
        nd = self.spatial_dims
        if (
            fused.ndim != nd + 2
            or inputs.ndim != nd + 2
            or fused.shape[1] != 1
            or inputs.shape[1] != 2
            or fused.shape[0] != inputs.shape[0]
            or fused.shape[2:] != inputs.shape[2:]
        ):
            raise ValueError(
                f"ASFEFusionLoss({nd}D) expects fused (B, 1, *spatial) and inputs (B, 2, *spatial) on the same grid, "
                f"got {tuple(fused.shape)} and {tuple(inputs.shape)}"
            )
