"""ASFE-Fusion (Gu et al. 2024) in 2D and 3D: shared encoder, per-scale CASF/AFF/SFEF fusion, skip decoder."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_norm_layer

from asfe3d.networks.blocks.detail import DetailBand
from asfe3d.networks.blocks.fusion_block import FusionBlock
from asfe3d.networks.blocks.utils import (
    _prod,
    check_spatial_dims,
    crop_to,
    ensure_tuple_dims,
    pad_to_multiple,
    shape_text,
)
from asfe3d.networks.nets.presets import get_preset
from asfe3d.utils import is_int, is_real

__all__ = ["ASFEFusion"]

_NORM = ("instance", {"affine": True})
_ACT = ("leakyrelu", {"negative_slope": 0.1})


def _conv_block(spatial_dims: int, cin: int, cout: int, stride: int, n: int) -> nn.Sequential:
    """``n`` times (3^d conv, norm, act); the first conv has ``stride``."""
    conv = Conv[Conv.CONV, spatial_dims]
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [
            conv(cin if i == 0 else cout, cout, kernel_size=3, stride=stride if i == 0 else 1, padding=1),
            get_norm_layer(_NORM, spatial_dims, cout),
            get_act_layer(_ACT),
        ]
    return nn.Sequential(*layers)


class _StageSignature(nn.Module):
    """The signature of one decoder module (TorchScript indexes a ModuleList at run time only through such an
    interface; the argument is named as in ``nn.Conv3d`` and ``nn.Sequential``, which TorchScript checks)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # pragma: no cover - an interface, never called
        pass


with warnings.catch_warnings():  # torch 2.13 flags every torch.jit entry point as deprecated; scripting still works
    warnings.simplefilter("ignore", DeprecationWarning)
    _Stage = torch.jit.interface(_StageSignature)


class ASFEFusion(nn.Module):
    """ASFE-Fusion for MRI/PET, one implementation for slices (2D) and volumes (3D).

    A shared encoder (the same weights for both modalities) gives multi-scale features of MRI and PET; at
    each scale a :class:`~asfe3d.networks.blocks.FusionBlock` fuses the pair (CASF + AFF + SFEF, optionally with
    the deformable cross blend, or a light conv fusion at fine scales); a decoder with skips (a 1^d projection at
    the coarse scale, nearest upsampling, the skip added, one 3^d conv block) goes back to the stem resolution; a
    head predicts a per-pixel blend weight ``w`` and a residual ``r``, upsampled to the input grid, optionally
    refined by a full-resolution ``3^d`` conv that also sees the two inputs, and

    ``fused = clamp(w * mri + (1 - w) * pet + residual_scale * tanh(r) + detail_injection * (mri - G * mri), 0, 1)``,

    so even the untrained network is a sane per-pixel blend. The last term (off by default) injects the MRI's
    detail band, as pansharpening's detail-injection methods do: ``G`` a Gaussian of ``detail_fwhm`` voxels (the
    PET's resolution: 5.5 voxels = 6 mm at 1.1 mm), replicate-padded; it has no weights. The 2D network's slice
    mode (:class:`~asfe3d.inferers.FusionInferer`) runs ``forward(x, inject_detail=False)`` on each slice and adds
    :meth:`volume_detail` of the whole volume instead. Inputs of any size are replicate-padded to a multiple of
    ``stem_stride * 2^(levels - 1)``, and to at least twice that (instance norm needs more than one voxel per
    channel at the coarsest scale), and the output is cropped back to the input grid: any size works, down to a
    single voxel.

    Args:
        spatial_dims: 2 or 3.
        preset: ``"efficient"`` (default) or ``"paper"`` (see :mod:`asfe3d.networks.nets.presets`).
        **overrides: any preset key (``encoder_channels``, ``stem_stride``, ``convs_per_stage``, ``fusion``,
            ``embed_dim``, ``num_heads``, ``patch_size``, ``attn_window``, ``num_experts``, ``slots_per_expert``,
            ``expert_hidden``, ``moe_window``, ``aff_mask_kernel``, ``deform``, ``max_offset``,
            ``residual_scale``, ``refine``, ``detail_injection`` (>= 0), ``detail_fwhm`` (voxels, > 0)).

    Attributes:
        config: everything needed to rebuild the network: ``ASFEFusion(**net.config)``.

    Raises:
        ValueError: on an unknown preset or override key, or inconsistent values.

    Example:
        >>> net = ASFEFusion(spatial_dims=3)
        >>> net(torch.rand(1, 2, 20, 24, 18)).shape
        torch.Size([1, 1, 20, 24, 18])
    """

    #: a dict of mixed values, not a TorchScript type: kept out of the scripted module (``ckpt_export``)
    __jit_ignored_attributes__ = ["config"]

    def __init__(self, spatial_dims: int = 3, preset: str = "efficient", **overrides: Any) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        cfg = get_preset(preset, spatial_dims)
        unknown = sorted(set(overrides) - set(cfg))
        if unknown:
            raise ValueError(f"unknown ASFEFusion option(s) {unknown}; valid: {sorted(cfg)}")
        for key, value in overrides.items():  # a switch given as the word "false" (a bundle override) is truthy
            if isinstance(cfg[key], bool) and not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{key} must be True or False, got {value!r}")
        cfg.update(overrides)
        cfg.update({k: bool(v) for k, v in overrides.items() if isinstance(v, np.bool_)})
        raw = cfg["encoder_channels"]
        if (isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__")
                or not all(is_int(c) and c >= 1 for c in raw) or not len(raw)):
            raise ValueError(f"encoder_channels must be positive ints, got {raw!r}")
        chans = tuple(int(c) for c in raw)
        fusion = tuple(cfg["fusion"])
        if len(fusion) != len(chans):
            hint = "" if "fusion" in overrides else " (the preset's: set fusion too)"
            raise ValueError(f"fusion needs one mode per scale, as encoder_channels has ({len(chans)}), got "
                             f"{cfg['fusion']!r}{hint}")
        if not (is_int(cfg["stem_stride"]) and cfg["stem_stride"] in (1, 2, 4)):
            raise ValueError(f"stem_stride must be 1, 2 or 4, got {cfg['stem_stride']!r}")
        if not (is_int(cfg["convs_per_stage"]) and cfg["convs_per_stage"] >= 1):
            raise ValueError(f"convs_per_stage must be an integer >= 1, got {cfg['convs_per_stage']!r}")
        if not (is_real(cfg["residual_scale"]) and math.isfinite(cfg["residual_scale"]) and cfg["residual_scale"] >= 0):
            raise ValueError(f"residual_scale must be a finite number >= 0, got {cfg['residual_scale']!r}")
        for key in ("attn_window", "moe_window"):  # the blocks' own checks name their argument (window_size)
            if cfg[key] is not None:  # (None: global attention / routing, the 2D paper setting)
                ensure_tuple_dims(cfg[key], spatial_dims, key)
        kernel = cfg["aff_mask_kernel"]
        if not (is_int(kernel) and kernel >= 1 and kernel % 2 == 1):
            raise ValueError(f"aff_mask_kernel must be a positive odd int, got {kernel!r}")
        cfg["encoder_channels"], cfg["fusion"] = chans, fusion
        cfg["stem_stride"], cfg["convs_per_stage"] = int(cfg["stem_stride"]), int(cfg["convs_per_stage"])
        cfg["residual_scale"] = float(cfg["residual_scale"])
        self.config = {"spatial_dims": self.spatial_dims, "preset": preset, **cfg}
        self.stem_stride = int(cfg["stem_stride"])
        self.residual_scale = float(cfg["residual_scale"])
        self.detail_injection = 0.0
        self.set_detail_injection(cfg["detail_injection"])
        self.detail_band = DetailBand(cfg["detail_fwhm"])  # no parameters: nothing in the state dict
        #: without autograd, the full-resolution tail runs in slabs of about this many voxels (memory, not numbers)
        self.tail_slab_voxels = 1 << 21
        self.multiple = self.stem_stride * 2 ** (len(chans) - 1)
        d, n = spatial_dims, int(cfg["convs_per_stage"])
        conv = Conv[Conv.CONV, d]

        self.encoder = nn.ModuleList(
            [_conv_block(d, 1 if i == 0 else chans[i - 1], c, self.stem_stride if i == 0 else 2, n) for i, c in enumerate(chans)]
        )
        block_keys = ("embed_dim", "num_heads", "patch_size", "attn_window", "num_experts", "slots_per_expert",
                      "expert_hidden", "moe_window", "aff_mask_kernel", "deform", "max_offset")
        self.fusion = nn.ModuleList(
            [FusionBlock(d, c, mode=m, norm=_NORM, act=_ACT, **{k: cfg[k] for k in block_keys}) for c, m in zip(chans, fusion)]
        )
        # decoder: 1^d projection at the coarse scale, upsample, add the skip, one 3^d conv block
        self.up_proj = nn.ModuleList([conv(chans[i + 1], chans[i], kernel_size=1) for i in range(len(chans) - 1)])
        self.decoder = nn.ModuleList([_conv_block(d, chans[i], chans[i], 1, 1) for i in range(len(chans) - 1)])
        self.head = conv(chans[0], 2, kernel_size=1)
        self.refine = conv(4, 2, kernel_size=3, padding=1) if cfg["refine"] else None
        if self.refine is not None:
            with torch.no_grad():
                self.refine.weight.mul_(0.1)
                self.refine.bias.zero_()

    def forward(self, x: torch.Tensor, inject_detail: bool = True, detail_fwhm: list[float] | None = None
                ) -> torch.Tensor:
        """Fuse an MRI/PET pair.

        Args:
            x: ``(B, 2, H, W[, D])`` with channels ``[MRI, PET]`` in ``[0, 1]``.
            inject_detail: add the MRI's detail band (when ``detail_injection`` > 0); ``False`` leaves it to the
                caller, who adds :meth:`volume_detail` of the assembled volume (the 2D network's slice mode).
            detail_fwhm: this call's band width along each spatial axis, in voxels (``None``: ``detail_fwhm``
                along every axis); :class:`~asfe3d.inferers.FusionInferer` gives the PET's resolution in mm
                divided by the grid's voxel size.

        Returns:
            ``(B, 1, H, W[, D])`` fused image in ``[0, 1]`` on the input grid.

        Raises:
            ValueError: when ``x`` is not ``(B, 2, *spatial)`` with ``spatial_dims`` spatial dims.
        """
        xp, size = self._padded_input(x)  # checked and padded once for both halves
        return self._finish(self._coarse(xp), xp, x, size, inject_detail, detail_fwhm)

    def _padded_input(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """``x`` checked, replicate-padded to a multiple of ``multiple`` (at least two), and its own size."""
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != 2 or x.numel() == 0:
            raise ValueError(
                f"ASFEFusion({self.spatial_dims}D) expects (B, 2, *spatial) with {self.spatial_dims} spatial dims "
                f"of at least one voxel and channels [MRI, PET], got shape {shape_text(x)}"
            )
        return pad_to_multiple(x, [self.multiple] * self.spatial_dims, mode="replicate", min_multiples=2)

    @torch.jit.export
    def coarse(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the full-resolution tail: the head's blend and residual logits at the stem's stride.

        ``forward(x) == finish(coarse(x), x)``. A sliding window can stitch these logits (``stem_stride`` times
        fewer voxels per axis than the input) and run :meth:`finish` once over the whole volume
        (:class:`~asfe3d.inferers.FusionInferer`).

        Args:
            x: ``(B, 2, *spatial)`` ``[MRI, PET]`` in ``[0, 1]``.

        Returns:
            ``(B, 2, *padded // stem_stride)``: ``padded`` is ``spatial`` replicate-padded to a multiple of
            ``stem_stride * 2^(levels - 1)`` (at least two), as :meth:`forward` pads it; the first
            ``ceil(spatial / stem_stride)`` voxels per axis cover the input.

        Raises:
            ValueError: when ``x`` is not ``(B, 2, *spatial)`` with ``spatial_dims`` spatial dims.
        """
        return self._coarse(self._padded_input(x)[0])

    def _coarse(self, xp: torch.Tensor) -> torch.Tensor:
        """:meth:`coarse` of the already padded input ``xp``."""
        b = xp.shape[0]
        h = torch.cat([xp[:, :1], xp[:, 1:]], dim=0)  # both modalities through the shared encoder at once
        fused: list[torch.Tensor] = []
        for enc, fus in zip(self.encoder, self.fusion):
            h = enc(h)
            fused.append(fus(h[:b], h[b:]))
        y = fused[-1]
        for i in range(len(self.decoder) - 1, -1, -1):
            skip = fused[i]
            up: _Stage = self.up_proj[i]
            dec: _Stage = self.decoder[i]
            y = F.interpolate(up.forward(y), size=skip.shape[2:], mode="nearest")
            y = dec.forward(y + skip)
        return self.head(y)

    @torch.jit.export
    def finish(self, wr: torch.Tensor, x: torch.Tensor, inject_detail: bool = True,
               detail_fwhm: list[float] | None = None) -> torch.Tensor:
        """The full-resolution tail: upsample the logits ``wr`` to ``x``'s grid, refine, blend, add the detail band.

        Args:
            wr: ``(B, 2, *low)`` logits from :meth:`coarse` of ``x``, or stitched from windows: ``low`` between
                ``ceil(spatial / stem_stride)`` and ``padded // stem_stride`` per axis (shorter axes are
                replicate-padded to the latter, as the logits of a whole-volume pass would be).
            x: ``(B, 2, *spatial)`` ``[MRI, PET]`` in ``[0, 1]``.
            inject_detail: see :meth:`forward`.
            detail_fwhm: see :meth:`forward`.

        Returns:
            ``(B, 1, *spatial)`` fused image in ``[0, 1]``.

        Raises:
            ValueError: ``x`` is not ``(B, 2, *spatial)``, or ``wr`` is not ``(B, 2, *low)`` with ``low`` in that
                range.
        """
        xp, size = self._padded_input(x)
        return self._finish(wr, xp, x, size, inject_detail, detail_fwhm)

    def _finish(self, wr: torch.Tensor, xp: torch.Tensor, x: torch.Tensor, size: list[int], inject_detail: bool,
                detail_fwhm: list[float] | None) -> torch.Tensor:
        """:meth:`finish` with ``x``'s padded copy ``xp`` and own ``size`` already worked out."""
        s = self.stem_stride
        full = [int(v) // s for v in xp.shape[2:]]
        low = [int(v) for v in wr.shape[2:]]
        if (wr.dim() != x.dim() or wr.shape[0] != x.shape[0] or wr.shape[1] != 2
                or any(lo < (n + s - 1) // s or lo > f for lo, n, f in zip(low, size, full))):
            raise ValueError(
                f"finish expects logits (B, 2, *low) for an input of shape {shape_text(x)}, with low between "
                f"{[(n + s - 1) // s for n in size]} and {full} per axis, got {shape_text(wr)}"
            )
        if low != full:
            pads: list[int] = []
            for i in range(len(low) - 1, -1, -1):  # F.pad takes the last dim first
                pads += [0, full[i] - low[i]]
            wr = F.pad(wr, pads, mode="replicate")
        if s > 1:
            wr = F.interpolate(wr, size=xp.shape[2:], mode="bilinear" if self.spatial_dims == 2 else "trilinear",
                               align_corners=False)
        band = self.volume_detail(x[:, :1], detail_fwhm) if inject_detail and self.detail_injection > 0 else None
        rows = max(1, self.tail_slab_voxels // max(1, _prod([int(v) for v in xp.shape[3:]])))
        if torch.is_grad_enabled() or rows >= size[0]:
            return self._tail(wr, xp, x, band, size)
        # without autograd, the full-resolution tail runs in slabs along the first spatial axis, at most ``rows``
        # high and within one row of each other (a short last slab would fall to the CPU's slow convolution path,
        # below about 20k voxels of batch x channels x the first two axes, and take longer than a whole one), each
        # with the refining conv's one-voxel halo: the same numbers, without a volume-sized tensor per step
        count = (size[0] + rows - 1) // rows
        out = torch.empty_like(x[:, :1])
        n = xp.shape[2]
        for i in range(count):
            a, b = i * size[0] // count, (i + 1) * size[0] // count
            lo, hi = max(a - 1, 0), min(b + 1, n)  # the padded grid's rows the conv needs
            top = min(hi, size[0])  # the input's own rows among them
            part = self._tail(wr[:, :, lo:hi], xp[:, :, lo:hi], x[:, :, lo:top],
                              None if band is None else band[:, :, lo:top], [top - lo] + size[1:])
            out[:, :, a:b] = part[:, :, a - lo:b - lo]
        return out

    def _tail(self, wr: torch.Tensor, xp: torch.Tensor, x: torch.Tensor, band: torch.Tensor | None,
              size: list[int]) -> torch.Tensor:
        """The full-resolution tail: refine ``wr`` ``(B, 2, *padded)`` with the padded input ``xp``, crop to
        ``size`` (``x``'s own grid), blend, add ``band`` (``None``: no detail injection) and clamp."""
        if self.refine is not None:
            wr = wr + self.refine(torch.cat([wr, xp], dim=1))
        wr = crop_to(wr, size)
        mri, pet = x[:, :1], x[:, 1:]
        w = torch.sigmoid(wr[:, :1])
        out = w * mri + (1 - w) * pet + self.residual_scale * torch.tanh(wr[:, 1:])
        if band is not None:
            out = out + band
        return out.clamp(0.0, 1.0)

    @torch.jit.export
    def volume_detail(self, mri: torch.Tensor, detail_fwhm: list[float] | None = None) -> torch.Tensor:
        """``detail_injection`` times the detail band of ``mri`` ``(B, 1, *spatial)`` along all its spatial axes.

        For the 2D network run slice by slice over a volume: the band of the whole ``(B, 1, X, Y, Z)`` volume, with
        the same kernel, also holds the detail across slices that a slice's band misses. Add it to the outputs of
        ``forward(x, inject_detail=False)`` and clamp to ``[0, 1]``. ``detail_fwhm``: the band width along each
        spatial axis in voxels (``None``: ``detail_fwhm`` along every axis).
        """
        if detail_fwhm is None:
            return self.detail_injection * self.detail_band(mri)
        return self.detail_injection * self.detail_band.per_axis(mri, detail_fwhm)

    @torch.jit.unused
    def set_detail_injection(self, gain: float) -> None:
        """Change the share of the MRI's detail band added to the output (``config`` follows).

        Raises:
            ValueError: ``gain`` is not a finite number >= 0 (quoted).
        """
        if not (is_real(gain) and math.isfinite(gain) and gain >= 0):
            raise ValueError(f"detail_injection must be a finite number >= 0, got {gain!r}")
        self.detail_injection = float(gain)
        self.config["detail_injection"] = float(gain)
