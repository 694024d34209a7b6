"""ASFE-Fusion training loss in 2D and 3D: content (L2), structure-tensor gradient, and differentiable SSIM."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ASFEFusionLoss", "gaussian_filter", "ssim", "structure_tensor", "edge_magnitude", "CONTENT_TARGETS"]

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

    Raises:
        ValueError: on a bad ``spatial_dims``, a negative weight, all weights zero, or an unknown target.
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
    ) -> None:
        super().__init__()
        _check_dims(spatial_dims)
        weights = {"w_content": w_content, "w_gradient": w_gradient, "w_ssim": w_ssim}
        bad = {k: v for k, v in {**weights, "w_edge": w_edge}.items() if not v >= 0}
        if bad:
            raise ValueError(f"loss weights must be >= 0, got {bad}")
        if sum(weights.values()) + w_edge <= 0:
            raise ValueError(f"at least one loss weight must be > 0, got {weights}")
        if content_target not in CONTENT_TARGETS:
            raise ValueError(f"content_target must be one of {CONTENT_TARGETS}, got {content_target!r}")
        if not sigma_tensor > 0 or not sigma_ssim > 0:
            raise ValueError(f"sigma_tensor and sigma_ssim must be > 0, got {sigma_tensor!r} and {sigma_ssim!r}")
        self.spatial_dims = spatial_dims
        self.w_content, self.w_gradient, self.w_ssim = float(w_content), float(w_gradient), float(w_ssim)
        self.w_edge = float(w_edge)
        self.content_target = content_target
        self.sigma_tensor, self.sigma_ssim = float(sigma_tensor), float(sigma_ssim)
        self.eps = float(eps)
        self.last_components: dict[str, float] = {}

    def forward(self, fused: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Args:
            fused: ``(B, 1, H, W[, D])`` network output in [0, 1].
            inputs: ``(B, 2, H, W[, D])`` sources ``[MRI, PET]`` in [0, 1].

        Returns:
            Scalar loss tensor.

        Raises:
            ValueError: when the shapes do not match ``(B, 1, *spatial)`` / ``(B, 2, *spatial)``.
        """
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
        components["total"] = float(total.detach())
        self.last_components = components
        return total
