"""The learned method, ``asfe``: the ASFE-Fusion network run through MONAI's inferers.

- ``mode="slice"``: the 2D network over every slice along one axis, through :class:`monai.inferers.SliceInferer`.
- ``mode="volume"``: the 3D network through :class:`monai.inferers.SlidingWindowInferer` with gaussian blending.

MONAI inferers window only their first input, so the network gets ONE 2-channel tensor ``[MRI, PET]``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asfe3d.fusion.base import FusionMethod, register_method
from asfe3d.inferers.fusion import DEFAULT_ROI, FusionInferer, FusionSteps
from asfe3d.utils import is_int, is_real

__all__ = ["AsfeFusionMethod", "mode_steps", "resolve_device", "run_network", "infer", "DEFAULT_ROI"]

logger = logging.getLogger("asfe3d")

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda[:N]`` into a device.

    Args:
        device: ``"auto"`` picks CUDA when available, else the CPU.

    Returns:
        The torch device.

    Raises:
        ValueError: an unknown device string (quoted), or a CUDA device this machine does not have (also given as a
            ``torch.device``; other ``torch.device`` types, ``mps`` or ``xpu``, are taken as they are).
    """
    given = device
    if isinstance(device, torch.device):
        if device.type != "cuda":
            return device
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda[:N]' or a torch.device, got {given!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", device):
        if not torch.cuda.is_available():
            raise ValueError(f"device {given!r} requested but CUDA is not available on this machine")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {given!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")
        return torch.device(device)
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda[:N]' or a torch.device, got {given!r}")


def run_network(
    net: torch.nn.Module,
    inputs: torch.Tensor,
    *,
    mode: str,
    device: torch.device,
    slice_axis: int = 2,
    roi_size: Sequence[int] | None = None,
    overlap: float = 0.25,
    sw_batch_size: int = 4,
    amp: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Run a fusion network over a whole 3D volume with :class:`asfe3d.inferers.FusionInferer`.

    Args:
        net: a network mapping ``(B, 2, *roi)`` to ``(B, 1, *roi)``; 2D for ``slice``, 3D for ``volume``.
        inputs: ``(B, 2, X, Y, Z)`` tensor ``[MRI, PET]`` in ``[0, 1]``.
        mode: ``"slice"`` or ``"volume"``.
        device: where the network runs (the result comes back on the CPU).
        slice_axis: for ``slice``, the spatial axis (0, 1 or 2 of ``X, Y, Z``) that slices are taken along.
        roi_size: for ``volume``, the sliding-window size (clipped to the volume); ``None``: windows of
            :data:`DEFAULT_ROI`, the size the shipped weights were chosen with.
        overlap: for ``volume``, the window overlap fraction.
        sw_batch_size: slices (``slice``) or windows (``volume``) per forward pass.
        amp: use float16 autocast on CUDA.
        progress: show a tqdm progress bar.

    Returns:
        ``(B, 1, X, Y, Z)`` float32 CPU tensor.

    Raises:
        ValueError: bad mode, axis or shapes.
    """
    if mode == "slice" and slice_axis not in (0, 1, 2):
        raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis}")
    inferer = FusionInferer(mode, slice_axis=slice_axis, roi_size="auto" if roi_size is None else roi_size,
                            overlap=overlap, sw_batch_size=sw_batch_size, sw_device=device,
                            device=torch.device("cpu"), progress=progress)
    return infer(inferer, net, inputs, device=device, amp=amp)


def infer(inferer: FusionInferer, net: torch.nn.Module, inputs: torch.Tensor, *, device: torch.device,
          amp: bool = True, slice_axis: int | None = None, spacing: Sequence[float] | None = None,
          steer_gains: Sequence[float] | None = None) -> torch.Tensor:
    """``inferer(inputs, net)`` in inference mode, with float16 autocast on CUDA when ``amp``.

    Args:
        inferer: the inference step.
        net: the network (moved to ``device``, set to eval).
        inputs: ``(B, 2, X, Y, Z)`` ``[MRI, PET]`` in ``[0, 1]``.
        device: where the network runs.
        amp: float16 autocast on CUDA.
        slice_axis: this call's slicing axis (``slice`` mode; ``None``: the inferer's).
        spacing: the grid's voxel size in mm (``X, Y, Z``), for the detail band's width in mm (``None``: the
            network's own width in voxels, unless ``inputs`` is a MetaTensor).
        steer_gains: the steered detail injection's factors, one per item, already read
            (:meth:`~asfe3d.inferers.FusionInferer.steer_gains`); ``None``: the inferer reads them.

    Returns:
        ``(B, 1, X, Y, Z)`` float32 CPU tensor.

    Raises:
        ValueError: inputs that are not ``(B, 2, X, Y, Z)``.
    """
    if inputs.ndim != 5 or inputs.shape[1] != 2:
        raise ValueError(f"inputs must be (B, 2, X, Y, Z), got shape {tuple(inputs.shape)}")
    net = net.to(device).eval()
    use_amp = amp and device.type == "cuda"
    with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        out = inferer(inputs.float(), net, slice_axis=slice_axis, spacing=spacing, steer_gains=steer_gains)
    return out.float().cpu()


def _pair_batch(mri: np.ndarray, pet: np.ndarray) -> torch.Tensor:
    """``(1, 2, *spatial)`` ``[MRI, PET]``: a view when the two are the consecutive channels of one C-contiguous
    float32 array (the pipeline's ``image``, split by :class:`~asfe3d.transforms.Fuse`), else a stacked copy; the
    network only reads it."""
    base = mri.base
    if (isinstance(base, np.ndarray) and pet.base is base and base.dtype == np.float32 and base.flags.c_contiguous
            and base.shape == (2, *mri.shape) and mri.ctypes.data == base.ctypes.data
            and pet.ctypes.data == base.ctypes.data + mri.nbytes):
        return torch.from_numpy(base)[None]
    return torch.from_numpy(np.stack([mri, pet])[None])


def _check_mode(mode: Any) -> None:
    """Refuse a fusion mode other than ``"slice"`` or ``"volume"`` (the value quoted)."""
    if mode not in ("slice", "volume"):
        raise ValueError(f"mode must be 'slice' or 'volume', got {mode!r}")


def mode_steps(mode: str, *, detail_fwhm_mm: float | str | None = "auto", pet_consistency: float | str = "auto",
               pet_consistency_min_voxel_mm: float | str | None = "auto",
               pet_consistency_coarse: Sequence[float] | str | None = "auto",
               pet_consistency_fine: Sequence[float] | str | None = "auto", pet_detail_select: float | str = "auto",
               pet_detail_ratio: float | str = "auto", detail_steer: float | str | None = "auto") -> FusionSteps:
    """The steps after the network of ``mode`` (:class:`~asfe3d.inferers.FusionSteps`), each ``"auto"`` the mode's
    shipped default (:mod:`asfe3d.defaults`): what ``asfe3d fuse``'s options choose. A strength given is taken on
    every grid unless a grid is given with it; with every step on its default, a volume without its grid gets no
    step, while a strength given refuses it.

    Args:
        mode: ``"slice"`` or ``"volume"``.
        detail_fwhm_mm: the band's width in mm for 3D pairs given with their ``spacing``
            (:class:`~asfe3d.inferers.FusionInferer`); ``None``: the network's own width in voxels; ``"auto"``: the
            mode's default (:data:`asfe3d.defaults.DETAIL_FWHM_MM_BY_MODE`, on the grids
            :data:`asfe3d.defaults.DETAIL_FWHM_MAX_VOXEL_MM_BY_MODE` lets it onto); a number: on every grid.
        pet_consistency: for 3D pairs given with their ``spacing``, the strength of the consistency step after the
            network (:class:`~asfe3d.inferers.FusionInferer`), in ``[0, 1]``; ``"auto"``: the mode's default
            (:data:`asfe3d.defaults.PET_CONSISTENCY_BY_MODE`).
        pet_consistency_min_voxel_mm: take that step only on grids whose mean voxel size (mm) is at least this;
            ``None``: on every grid; ``"auto"``: the mode's default
            (:data:`asfe3d.defaults.PET_CONSISTENCY_MIN_VOXEL_MM_BY_MODE`) when ``pet_consistency`` is ``"auto"``,
            else every grid (a strength given is taken everywhere unless a size is given too). The default
            strength skips a 3D pair given without its voxel size (its blur is in mm); a strength given refuses it.
        pet_consistency_coarse: ``(mm, strength)``: that step's strength on grids whose mean voxel size is at least
            ``mm``; ``None``: one strength on every grid; ``"auto"``: the mode's default
            (:data:`asfe3d.defaults.PET_CONSISTENCY_COARSE_BY_MODE`) when ``pet_consistency`` is ``"auto"``, else
            ``None``.
        pet_consistency_fine: ``(strength, fwhm_mm)``: that step's strength and Gaussian width on grids finer than
            ``pet_consistency_min_voxel_mm``; ``None``: no step there; ``"auto"``: the mode's default
            (:data:`asfe3d.defaults.PET_CONSISTENCY_FINE_BY_MODE`) when ``pet_consistency`` is ``"auto"``, else
            ``None``.
        pet_detail_select: the strength of the choose-the-larger-detail step after the consistency step
            (:class:`~asfe3d.inferers.FusionInferer`), in ``[0, 1]``; ``"auto"``: the mode's default
            (:data:`asfe3d.defaults.PET_DETAIL_SELECT_BY_MODE`), on the mode's grids
            (:data:`asfe3d.defaults.PET_DETAIL_SELECT_MIN_VOXEL_MM_BY_MODE`); a strength given is taken on every grid.
        pet_detail_ratio: that step's ``k`` > 0; ``"auto"``: :data:`asfe3d.defaults.PET_DETAIL_RATIO`.
        detail_steer: ``q0`` > 0 of the steered detail injection, the last step
            (:class:`~asfe3d.inferers.FusionInferer`), on grids finer than
            the mode's :data:`asfe3d.defaults.DETAIL_STEER_MAX_VOXEL_MM_BY_MODE`, the injection's gain at most
            :data:`asfe3d.defaults.DETAIL_STEER_MAX_GAIN_BY_MODE` times (on coarse grids
            :data:`asfe3d.defaults.DETAIL_STEER_MAX_GAIN_COARSE_BY_MODE`); ``None``: no step; ``"auto"``: the mode's
            default (:data:`asfe3d.defaults.DETAIL_STEER_BY_MODE`).

    Returns:
        The checked :class:`~asfe3d.inferers.FusionSteps`.

    Raises:
        ValueError: an unknown mode or a bad value (quoted).
    """
    _check_mode(mode)
    from asfe3d import defaults as d

    band_gate = None
    if isinstance(detail_fwhm_mm, str) and detail_fwhm_mm == "auto":
        detail_fwhm_mm, band_gate = d.DETAIL_FWHM_MM_BY_MODE[mode], d.DETAIL_FWHM_MAX_VOXEL_MM_BY_MODE[mode]

    auto = lambda v: isinstance(v, str) and v == "auto"  # noqa: E731
    if auto(pet_consistency_min_voxel_mm):
        pet_consistency_min_voxel_mm = d.PET_CONSISTENCY_MIN_VOXEL_MM_BY_MODE[mode] if auto(pet_consistency) else None
    if auto(pet_consistency_coarse):
        pet_consistency_coarse = d.PET_CONSISTENCY_COARSE_BY_MODE[mode] if auto(pet_consistency) else None
    if auto(pet_consistency_fine):
        pet_consistency_fine = d.PET_CONSISTENCY_FINE_BY_MODE[mode] if auto(pet_consistency) else None
    optional = auto(pet_consistency) and auto(pet_detail_select) and auto(detail_steer)
    return FusionSteps(
        detail_fwhm_mm=detail_fwhm_mm,
        detail_fwhm_max_voxel_mm=band_gate,
        pet_consistency=d.PET_CONSISTENCY_BY_MODE[mode] if auto(pet_consistency) else pet_consistency,
        pet_consistency_min_voxel_mm=pet_consistency_min_voxel_mm,
        pet_consistency_coarse=pet_consistency_coarse,
        pet_consistency_fine=pet_consistency_fine,
        pet_consistency_optional=optional,
        pet_detail_select=d.PET_DETAIL_SELECT_BY_MODE[mode] if auto(pet_detail_select) else pet_detail_select,
        pet_detail_select_min_voxel_mm=(d.PET_DETAIL_SELECT_MIN_VOXEL_MM_BY_MODE[mode] if auto(pet_detail_select)
                                       else None),
        pet_detail_ratio=d.PET_DETAIL_RATIO if auto(pet_detail_ratio) else pet_detail_ratio,
        pet_detail_floor=d.PET_DETAIL_FLOOR_BY_MODE[mode] if auto(pet_detail_select) else 0.0,
        pet_detail_floor_max_voxel_mm=(d.PET_DETAIL_FLOOR_MAX_VOXEL_MM_BY_MODE[mode] if auto(pet_detail_select)
                                      else None),
        detail_steer=d.DETAIL_STEER_BY_MODE[mode] if auto(detail_steer) else detail_steer,
        detail_steer_max_gain=d.DETAIL_STEER_MAX_GAIN_BY_MODE[mode],
        detail_steer_max_gain_coarse=d.DETAIL_STEER_MAX_GAIN_COARSE_BY_MODE[mode],
        detail_steer_max_voxel_mm=d.DETAIL_STEER_MAX_VOXEL_MM_BY_MODE[mode],
    )


@register_method("asfe")
class AsfeFusionMethod(FusionMethod):
    """ASFE-Fusion with the shipped (or given) weights, slice-wise or volumetric.

    Args:
        mode: ``"slice"`` (2D network via SliceInferer) or ``"volume"`` (3D network via SlidingWindowInferer).
        weights: a weight file; ``None`` takes the weights shipped for ``mode``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        slice_axis: for ``slice`` on 3D inputs, the axis slices are taken along (``X, Y, Z`` order); ``None`` = 2.
        roi_size: sliding-window size for ``volume``; ``None`` = :data:`DEFAULT_ROI` (see :func:`run_network`).
        overlap: sliding-window overlap for ``volume``.
        sw_batch_size: slices or windows per forward pass.
        amp: float16 autocast on CUDA.
        progress: show a progress bar.
        net: an already built network (overrides ``weights``; used by training and tests).
        detail_injection: the share of the MRI's detail band the network adds to its output
            (:class:`~asfe3d.networks.ASFEFusion`'s ``detail_injection``); ``None`` keeps the weights' own.
        min_voxel_mm: the finest voxel size (mm) the network runs on for 3D pairs given with their ``spacing``
            (:class:`~asfe3d.inferers.FusionInferer`); ``None``: the MRI's own grid; ``"auto"``: the mode's default
            (:data:`asfe3d.defaults.MIN_VOXEL_MM_BY_MODE`, the finer axes brought to
            :data:`asfe3d.defaults.WORKING_VOXEL_MM_BY_MODE`); a number: the finer axes brought to that number.
        max_voxel_mm: the coarsest voxel size (mm) the network runs on for 3D pairs given with their ``spacing``
            (:class:`~asfe3d.inferers.FusionInferer`); ``None``: the MRI's own grid; ``"auto"``: the mode's default
            (:data:`asfe3d.defaults.MAX_VOXEL_MM_BY_MODE`).
        roi_mm: for ``volume`` on 3D pairs given with their ``spacing``: the window's extent in mm (at most
            ``roi_size``; :class:`~asfe3d.inferers.FusionInferer`); ``None``: the window in voxels only; ``"auto"``:
            :data:`asfe3d.defaults.DEFAULT_ROI_MM`.
        stitch: for ``volume``: what the overlapping windows are blended as (:class:`~asfe3d.inferers.FusionInferer`);
            ``None``: :data:`asfe3d.defaults.DEFAULT_STITCH`.
        steps: the steps after the network (:class:`~asfe3d.inferers.FusionSteps`, given to the inferer); ``None``:
            the mode's defaults, :func:`mode_steps` ``(mode)``. :func:`mode_steps` also turns the command's choices
            (``--pet-consistency 0.4``...) into steps.

    Raises:
        ValueError: bad mode, a bad ``detail_injection`` (quoted), or a network whose ``spatial_dims`` does not fit
            the mode.
    """

    name = "asfe"
    #: the detail injection's band is set in mm: each call gets the grid's voxel size (``spacing=``)
    uses_spacing = True

    def __init__(
        self,
        mode: str = "slice",
        weights: str | Path | None = None,
        device: str = "auto",
        slice_axis: int | None = None,
        roi_size: Sequence[int] | None = None,
        overlap: float = 0.25,
        sw_batch_size: int = 4,
        amp: bool = True,
        progress: bool = False,
        net: torch.nn.Module | None = None,
        detail_injection: float | None = None,
        stitch: str | None = None,
        min_voxel_mm: float | str | None = "auto",
        max_voxel_mm: float | str | None = "auto",
        roi_mm: float | str | None = "auto",
        steps: FusionSteps | None = None,
    ) -> None:
        from asfe3d.fusion.weights import build_network, shipped_weights

        _check_mode(mode)
        if not (is_real(overlap) and 0.0 <= overlap < 1.0):
            raise ValueError(f"overlap must be a number in [0, 1), got {overlap!r}")
        if slice_axis is not None and not (is_int(slice_axis) and slice_axis in (0, 1, 2)):
            raise ValueError(f"slice_axis must be None (2), 0, 1 or 2, got {slice_axis!r} (an axis read from the "
                             "image's affine is given per call: Fuse / Fused do it)")
        self.mode = mode
        self.device = resolve_device(device)
        self.slice_axis = 2 if slice_axis is None else int(slice_axis)
        self.roi_size = None if roi_size is None else tuple(int(r) for r in roi_size)
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self.amp = amp
        self.progress = progress
        self.meta: dict[str, Any] = {}
        if net is None:
            self.weights = Path(weights) if weights is not None else shipped_weights(mode)
            net, self.meta = build_network(self.weights)
        else:
            self.weights = None
        want = 2 if mode == "slice" else 3
        got = getattr(net, "spatial_dims", want)
        if got != want:
            raise ValueError(f"mode {mode!r} needs a {want}D network, got spatial_dims={got}")
        if detail_injection is not None:
            if not hasattr(net, "set_detail_injection"):
                raise ValueError(f"this network ({type(net).__name__}) has no detail injection to set")
            net.set_detail_injection(detail_injection)
        self.net = net.to(self.device).eval()  # where its inferer runs it (sw_device)
        if stitch is None:
            from asfe3d.defaults import DEFAULT_STITCH

            stitch = DEFAULT_STITCH
        working_voxel_mm = None
        if min_voxel_mm == "auto":
            from asfe3d.defaults import MIN_VOXEL_MM_BY_MODE, WORKING_VOXEL_MM_BY_MODE

            min_voxel_mm, working_voxel_mm = MIN_VOXEL_MM_BY_MODE[mode], WORKING_VOXEL_MM_BY_MODE[mode]
        if max_voxel_mm == "auto":
            from asfe3d.defaults import MAX_VOXEL_MM_BY_MODE

            max_voxel_mm = MAX_VOXEL_MM_BY_MODE[mode]
        if roi_mm == "auto":
            from asfe3d.defaults import DEFAULT_ROI_MM

            roi_mm = DEFAULT_ROI_MM
        #: the inference step (settings frozen here; the slicing axis is given per call)
        self.inferer = FusionInferer(mode, slice_axis=self.slice_axis,
                                     roi_size="auto" if self.roi_size is None else self.roi_size, overlap=overlap,
                                     sw_batch_size=sw_batch_size, sw_device=self.device, device=torch.device("cpu"),
                                     progress=progress, stitch=stitch, min_voxel_mm=min_voxel_mm,
                                     max_voxel_mm=max_voxel_mm, working_voxel_mm=working_voxel_mm, roi_mm=roi_mm,
                                     steps=mode_steps(mode) if steps is None else steps)

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name, "mode": self.mode, "weights": str(self.weights) if self.weights else "in-memory",
            "device": str(self.device), "slice_axis": self.slice_axis if self.mode == "slice" else None,
            "detail_injection": float(getattr(self.net, "detail_injection", 0.0)),
            "stitch": self.inferer.stitch if self.mode == "volume" else None,
            "min_voxel_mm": self.inferer.min_voxel_mm,
            "max_voxel_mm": self.inferer.max_voxel_mm,
            "working_voxel_mm": self.inferer.working_voxel_mm,
            "roi_mm": self.inferer.roi_mm if self.mode == "volume" else None,
            **self.inferer.steps.as_record(),  # the steps after the network, every setting
        }

    def stitched(self, image: Any) -> str | None:
        """What volume mode blends for this image's windows: ``"output"``, ``"logits"`` or ``"one pass"``
        (:meth:`~asfe3d.inferers.FusionInferer.stitched`); ``None`` in slice mode.

        Args:
            image: ``(2, X, Y, Z)`` ``[MRI, PET]``; a MetaTensor gives the grid for a working grid.
        """
        return self.inferer.stitched(self.net, image[None])

    def consistency(self, image: Any) -> float:
        """The strength of the consistency step this image gets (:meth:`~asfe3d.inferers.FusionInferer.consistency`;
        0 where the step is off or its grid gate leaves this image out).

        Args:
            image: ``(2, X, Y, Z)`` ``[MRI, PET]``; a MetaTensor gives the grid.
        """
        return self.inferer.consistency(image[None])

    def consistency_width(self, image: Any) -> float | None:
        """The width (FWHM, mm) of the consistency step's Gaussian this image gets
        (:meth:`~asfe3d.inferers.FusionInferer.consistency_width`), or ``None`` where the step is not taken.

        Args:
            image: ``(2, X, Y, Z)`` ``[MRI, PET]``; a MetaTensor gives the grid.
        """
        from asfe3d.inferers.fusion import grid_spacing

        if self.consistency(image) <= 0:  # no step (a step taken implies a known grid)
            return None
        return self.inferer.consistency_width(grid_spacing(image[None]))

    def detail_band_mm(self, image: Any) -> float | None:
        """The detail injection's band width in mm this image gets (:meth:`~asfe3d.inferers.FusionInferer.detail_fwhm`),
        or ``None``: the network's own width in voxels (no width in mm set, or its grid gate leaves this image out).

        Args:
            image: ``(2, X, Y, Z)`` ``[MRI, PET]``; a MetaTensor gives the grid.
        """
        return None if self.inferer.detail_fwhm(image[None]) is None else self.inferer.steps.detail_fwhm_mm

    def detail_select(self, image: Any) -> float:
        """The strength of the choose-the-larger-detail step this image gets
        (:meth:`~asfe3d.inferers.FusionInferer.detail_select`; 0 where the step is off or the grid gate leaves this
        image out).

        Args:
            image: ``(2, X, Y, Z)`` ``[MRI, PET]``; a MetaTensor gives the grid.
        """
        return self.inferer.detail_select(image[None])

    def detail_floor(self, image: Any) -> float:
        """The floor ``t`` of the choose-the-larger-detail step this image gets
        (:meth:`~asfe3d.inferers.FusionInferer.detail_floor`; 0 where the step itself is not taken).

        Args:
            image: ``(2, X, Y, Z)`` ``[MRI, PET]``; a MetaTensor gives the grid.
        """
        from asfe3d.inferers.fusion import grid_spacing

        if self.detail_select(image) <= 0:  # no step (a step taken implies a known grid)
            return 0.0
        return self.inferer.detail_floor(grid_spacing(image[None]))

    def detail_steer_gain(self, image: Any, spacing: Sequence[float] | None = None) -> float:
        """The factor the steered detail injection gives this image's injection
        (:meth:`~asfe3d.inferers.FusionInferer.steer_gains`; 1.0 where the step is off or its grid gate leaves this
        image out).

        Args:
            image: ``(2, X, Y, Z)`` ``[MRI, PET]``; a MetaTensor gives the grid.
            spacing: the grid's voxel size (mm) when ``image`` is not a MetaTensor.
        """
        return self.inferer.steer_gains(image[None], self.net, spacing)[0]

    def fuse_arrays(self, mri: np.ndarray, pet: np.ndarray, slice_axis: int | None = None,
                    spacing: Sequence[float] | None = None, detail_steer_gain: float | None = None) -> np.ndarray:
        """Fuse validated arrays; ``slice_axis``: this call's slicing axis for a 3D pair in ``slice`` mode
        (``None``: the method's own, :attr:`slice_axis`); ``spacing``: a 3D pair's voxel size in mm, which sets the
        detail band's width in voxels (:class:`~asfe3d.inferers.FusionInferer`; ``None``: the network's own width;
        a single 2D image keeps the network's own); ``detail_steer_gain``: the steered detail injection's factor
        for this pair, already read by :meth:`detail_steer_gain` (``None``: read here)."""
        x = _pair_batch(mri, pet)
        if mri.ndim == 2:  # a single image: run the 2D network directly
            if self.mode != "slice":
                raise ValueError(f"a 2D image needs mode='slice', got mode={self.mode!r}")
            with torch.inference_mode():
                return self.net.to(self.device)(x.to(self.device)).float().cpu().numpy()[0, 0]
        axis = self.slice_axis if slice_axis is None else slice_axis
        gains = None if detail_steer_gain is None else [detail_steer_gain]
        return infer(self.inferer, self.net, x, device=self.device, amp=self.amp, slice_axis=axis,
                     spacing=spacing, steer_gains=gains).numpy()[0, 0]
