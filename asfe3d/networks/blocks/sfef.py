"""SFEF: a soft mixture of experts blending spatial and frequency features (2D and 3D, one implementation)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.utils import get_act_layer

from asfe3d.networks.blocks.utils import (
    check_spatial_dims,
    crop_to,
    ensure_tuple_dims,
    pad_to_multiple,
    shape_text,
    window_partition,
    window_reverse,
)

__all__ = ["SFEF"]


def _normal_parameter(shape: tuple[int, ...], std: float) -> nn.Parameter:
    """A parameter drawn from N(0, std^2) (the same values as ``torch.randn(shape) * std``).

    On PyTorch's ``meta`` device (used to count a weight file's parameters before building it) nothing is drawn:
    meta tensors hold no values, and drawing there imports ``torch._dynamo`` (about 2 s).
    """
    t = torch.empty(shape)
    if t.device.type != "meta":
        t.normal_(0.0, std)
    return nn.Parameter(t)


class SFEF(nn.Module):
    """Spatial-frequency expert fusion (SFEF): a soft MoE (Puigcerver et al., 2023) over per-voxel tokens.

    The spatial and frequency features are concatenated (``2C`` channels) and every pixel/voxel is one token.
    With ``n = num_experts * slots_per_expert`` learned slot vectors ``phi``, the logits ``X phi`` give

    - dispatch weights ``D = softmax over tokens`` (each slot is a convex mix of the tokens),
    - combine weights ``Cw = softmax over slots`` (each token is a convex mix of the slot outputs);

    each expert (an MLP ``2C -> hidden -> C``) processes its own slots, and the output is
    ``Cw @ experts(D^T X)`` plus the residual ``(spatial + frequency) / 2``.

    **Memory bound (the choice made here).** A soft MoE over one whole 3D volume would need a
    ``tokens x slots`` dispatch matrix spanning every voxel, and its slots would mix voxels from the whole head.
    Instead the token grid is cut into non-overlapping windows of ``window_size`` voxels per dim and the soft MoE
    runs inside each window (the slots and experts are shared by all windows, the routing is per window). The
    routing memory is then ``voxels x slots`` (linear in the volume) and each slot summarises one local
    neighbourhood. ``window_size=None`` routes over all tokens of the image (the 2D paper setting). Sizes that are
    not a multiple of the window are zero-padded; padded tokens get ``-inf`` dispatch logits so they never feed a
    slot, and are cropped away.

    Args:
        spatial_dims: 2 or 3.
        channels: channels ``C`` of each input (and of the output).
        num_experts: number of MLP experts.
        slots_per_expert: slots routed to each expert per window.
        expert_hidden: hidden width of each expert MLP.
        window_size: routing window edge in voxels (int or one per dim), or ``None`` for the whole image.
        act: MONAI activation spec inside the experts.

    Raises:
        ValueError: on a bad ``spatial_dims`` or non-positive sizes.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_experts: int = 4,
        slots_per_expert: int = 1,
        expert_hidden: int = 32,
        window_size: int | Sequence[int] | None = 8,
        act: tuple | str = "gelu",
    ) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        for name, v in (("channels", channels), ("num_experts", num_experts), ("slots_per_expert", slots_per_expert), ("expert_hidden", expert_hidden)):
            if int(v) < 1:
                raise ValueError(f"{name} must be positive, got {v!r}")
        self.window_size = None if window_size is None else ensure_tuple_dims(window_size, spatial_dims, "window_size")
        self._window: list[int] | None = None if self.window_size is None else list(self.window_size)
        self.num_experts = num_experts
        self.slots_per_expert = slots_per_expert
        d_in = 2 * channels
        self.norm = nn.LayerNorm(d_in)
        self.phi = _normal_parameter((d_in, num_experts * slots_per_expert), d_in**-0.5)
        self.w1 = _normal_parameter((num_experts, d_in, expert_hidden), d_in**-0.5)
        self.b1 = nn.Parameter(torch.zeros(num_experts, 1, expert_hidden))
        self.w2 = _normal_parameter((num_experts, expert_hidden, channels), expert_hidden**-0.5)
        self.b2 = nn.Parameter(torch.zeros(num_experts, 1, channels))
        self.act = get_act_layer(act)

    def routing_weights(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Dispatch and combine weights of the soft MoE.

        Args:
            tokens: normalised tokens ``(N, L, 2C)`` (``N`` windows of ``L`` tokens).
            valid: optional boolean ``(N, L)``; ``False`` tokens get zero dispatch weight.

        Returns:
            ``dispatch`` ``(N, L, slots)`` summing to 1 over tokens (dim 1) and ``combine`` ``(N, L, slots)``
            summing to 1 over slots (dim 2).
        """
        logits = tokens @ self.phi
        d_logits = logits if valid is None else logits.masked_fill(~valid.unsqueeze(-1), float("-inf"))
        return torch.softmax(d_logits, dim=1), torch.softmax(logits, dim=2)

    def forward(self, spatial: torch.Tensor, frequency: torch.Tensor) -> torch.Tensor:
        """Args:
            spatial: ``(B, C, H, W[, D])`` spatial-branch features.
            frequency: same shape, frequency-branch features.

        Returns:
            ``(B, C, H, W[, D])`` blended features.

        Raises:
            ValueError: when the inputs differ in shape or are not ``spatial_dims``-D.
        """
        if spatial.shape != frequency.shape or spatial.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"SFEF expects two (B, C, *spatial) tensors of equal shape with {self.spatial_dims} spatial dims, "
                f"got {shape_text(spatial)} and {shape_text(frequency)}"
            )
        x = torch.cat([spatial, frequency], dim=1)
        window = [int(g) for g in x.shape[2:]] if self._window is None else self._window
        ones = torch.ones_like(x[:, :1])
        xp, size = pad_to_multiple(x, window)
        valid, _ = pad_to_multiple(ones, window)
        tokens, counts = window_partition(xp, window)
        vmask = window_partition(valid, window)[0][..., 0] > 0.5
        tokens = self.norm(tokens)
        dispatch, combine = self.routing_weights(tokens, vmask)
        n, s = dispatch.shape[0], dispatch.shape[2]
        slots = dispatch.transpose(1, 2) @ tokens  # (N, slots, 2C)
        slots = slots.reshape(n, self.num_experts, self.slots_per_expert, -1).transpose(0, 1)  # (E, N, S, 2C)
        slots = slots.reshape(self.num_experts, n * self.slots_per_expert, -1)
        h = self.act(torch.baddbmm(self.b1, slots, self.w1))
        out = torch.baddbmm(self.b2, h, self.w2)  # (E, N*S, C)
        out = out.reshape(self.num_experts, n, self.slots_per_expert, -1).transpose(0, 1).reshape(n, s, -1)
        y = combine @ out  # (N, L, C)
        y = crop_to(window_reverse(y, window, counts), size)
        return y + 0.5 * (spatial + frequency)
