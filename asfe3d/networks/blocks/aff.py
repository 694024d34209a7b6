"""AFF: adaptive frequency fusion of two modalities' feature maps (2D and 3D, one implementation)."""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_norm_layer

from asfe3d.networks.blocks.utils import check_spatial_dims, shape_text

__all__ = ["AFF", "FrequencyBranch"]


class FrequencyBranch(nn.Module):
    """One modality's frequency branch of AFF.

    ``rfftn`` over every spatial dim (orthonormal), the real and imaginary parts stacked as ``2C`` channels,
    a 1x1 conv, norm and activation, back to complex and ``irfftn`` with ``s=`` the input size (so odd sizes
    round-trip exactly); then a spatial attention mask: the channel mean and channel max of the result go
    through a ``k^d`` conv and a sigmoid, and multiply the result.

    Args:
        spatial_dims: 2 or 3.
        channels: feature channels ``C``.
        mask_kernel: edge of the mask conv kernel (odd).
        norm: MONAI norm spec for the frequency features, or ``None`` for none.
        act: MONAI activation spec for the frequency features, or ``None`` for none.

    Raises:
        ValueError: on a bad ``spatial_dims``, ``channels`` or an even/non-positive ``mask_kernel``.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        mask_kernel: int = 7,
        norm: tuple | str | None = ("instance", {"affine": True}),
        act: tuple | str | None = ("leakyrelu", {"negative_slope": 0.1}),
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        if channels < 1:
            raise ValueError(f"channels must be positive, got {channels!r}")
        if mask_kernel < 1 or mask_kernel % 2 == 0:
            raise ValueError(f"mask_kernel must be a positive odd int, got {mask_kernel!r}")
        conv = Conv[Conv.CONV, spatial_dims]
        self.freq_conv = conv(2 * channels, 2 * channels, kernel_size=1)
        self.norm = nn.Identity() if norm is None else get_norm_layer(norm, spatial_dims, 2 * channels)
        self.act = nn.Identity() if act is None else get_act_layer(act)
        self.mask_conv = conv(2, 1, kernel_size=mask_kernel, padding=mask_kernel // 2)

    def spectral(self, x: torch.Tensor) -> torch.Tensor:
        """The frequency filtering alone (no autocast handling; :meth:`forward` turns autocast off around it).

        FFTs run in float32 (float64 for double inputs; half-precision FFTs only take power-of-two sizes); the 1x1
        conv runs in its weights' dtype, so the block works in float32, under CUDA autocast and in a .half() model.

        Args:
            x: ``(B, C, H, W[, D])``.

        Returns:
            ``(B, C, H, W[, D])`` in ``x``'s dtype.
        """
        dims = [i for i in range(2, x.dim())]
        size = [int(s) for s in x.shape[2:]]
        work = x.dtype if x.dtype == torch.float32 or x.dtype == torch.float64 else torch.float32
        spec = torch.fft.rfftn(x.to(work), dim=dims, norm="ortho")
        stacked = torch.cat([spec.real, spec.imag], dim=1).to(self.freq_conv.weight.dtype)
        z = self.act(self.norm(self.freq_conv(stacked))).to(work)
        re, im = z.chunk(2, dim=1)
        return torch.fft.irfftn(torch.complex(re, im), s=size, dim=dims, norm="ortho").to(x.dtype)

    @torch.jit.unused
    def _spectral_without_autocast(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.spectral(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: ``(B, C, H, W[, D])``.

        Returns:
            ``(B, C, H, W[, D])`` frequency-filtered, spatially masked features.
        """
        # TorchScript takes no autocast context with a device known at run time only; a scripted model runs the
        # FFTs in its input's dtype (float32 / float64), as an eager one does outside autocast
        y = self.spectral(x) if torch.jit.is_scripting() else self._spectral_without_autocast(x)
        mask = torch.sigmoid(self.mask_conv(torch.cat([y.mean(1, keepdim=True), y.amax(1, keepdim=True)], dim=1)))
        return y * mask


class AFF(nn.Module):
    """Adaptive frequency fusion (AFF) of ASFE-Fusion, lifted to N-D.

    One :class:`FrequencyBranch` per modality (not shared: each modality's spectrum is filtered by its own
    learned 1x1 frequency mixing and mask); the two branch outputs are summed.

    Args:
        spatial_dims: 2 or 3.
        channels: feature channels ``C`` of each input.
        mask_kernel: edge of the spatial-mask conv kernel (odd).
        norm: MONAI norm spec applied to the frequency features, or ``None``.
        act: MONAI activation spec applied to the frequency features, or ``None``.

    Raises:
        ValueError: on bad arguments (see :class:`FrequencyBranch`).
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        mask_kernel: int = 7,
        norm: tuple | str | None = ("instance", {"affine": True}),
        act: tuple | str | None = ("leakyrelu", {"negative_slope": 0.1}),
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.branch1 = FrequencyBranch(spatial_dims, channels, mask_kernel, norm, act)
        self.branch2 = FrequencyBranch(spatial_dims, channels, mask_kernel, norm, act)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Args:
            x1: ``(B, C, H, W[, D])`` features of modality 1.
            x2: same shape, modality 2.

        Returns:
            ``(B, C, H, W[, D])`` fused frequency features.

        Raises:
            ValueError: when the inputs differ in shape or are not ``spatial_dims``-D.
        """
        if x1.shape != x2.shape or x1.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"AFF expects two (B, C, *spatial) tensors of equal shape with {self.spatial_dims} spatial dims, "
                f"got {shape_text(x1)} and {shape_text(x2)}"
            )
        return self.branch1(x1) + self.branch2(x2)
