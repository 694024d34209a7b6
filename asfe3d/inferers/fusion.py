"""The one network-inference step of asfe3d: :class:`FusionInferer`.

``asfe3d fuse`` (through :class:`asfe3d.fusion.learned.AsfeFusionMethod`) and the MONAI bundle (its config's
``inferer``, run by a ``SupervisedEvaluator``) both run the fusion network through this class, so the two give the
same voxels by construction.

- ``mode="slice"``: the 2D network over every slice along one voxel axis (MONAI's :class:`~monai.inferers.SliceInferer`,
  whole slices); ``slice_axis="auto"`` takes the axis closest to the head's superior-inferior axis from the input's
  affine (axial slices, as the 2D network was trained on). A network with a detail injection
  (:class:`~asfe3d.networks.ASFEFusion`'s ``detail_injection`` > 0) runs without it on the slices, and the MRI's
  detail band of the whole volume (its :meth:`~asfe3d.networks.ASFEFusion.volume_detail`) is added to the stacked
  output, which is then clamped to ``[0, 1]``: a band taken slice by slice misses the detail across slices.
- ``mode="volume"``: the 3D network through MONAI's :class:`~monai.inferers.SlidingWindowInferer` with gaussian
  blending; the window is clipped to the volume per axis, and ``roi_size="auto"`` takes windows of
  :data:`DEFAULT_ROI`, the size the shipped 3D weights were chosen with (``evaluate``'s held-out scores). One pass
  over a whole head gives a different image (instance normalisation and the frequency blocks see the whole head):
  on the 0.88 mm benchmark pair DETAIL 0.837 and hot-spot DT 0.749, against 0.860 and 0.885 in windows (the 3D weights
  shipped then; ``docs/evaluation.md``).
- ``stitch``: what the volume mode's windows are blended as. ``"output"`` blends the network's fused windows
  (MONAI's plain sliding window). ``"logits"`` blends the network's logits at its stem's stride
  (:meth:`~asfe3d.networks.ASFEFusion.coarse`, ``stem_stride^3`` times fewer voxels) and runs the full-resolution
  tail (:meth:`~asfe3d.networks.ASFEFusion.finish`: upsampling, the refining conv, the blend, the detail band) once
  over the whole volume, instead of once per window on the 2.4 times as many voxels that overlapping windows hold.
  The input is replicate-padded to a multiple of the stride so that every window starts on the logits' grid (a
  window starting between two logit voxels would shift its logits by half a voxel). ``"auto"`` takes ``"logits"``
  for a network that has ``coarse`` and ``finish`` when the windows fit that grid, else ``"output"``. A volume
  that fits one window is one plain pass either way.
- ``roi_mm``: volume mode's window given in mm where the grid is known: along each axis at most the ``roi_size``
  window, and at most ``roi_mm`` mm rounded to a multiple of 16 voxels (so logits stitching keeps the stem's
  stride): on a coarse grid the network still sees a part of the head as large as the windows it was chosen with,
  where a whole head fitting one window would be fused in one pass. ``None``: the window in voxels only.
- ``min_voxel_mm``: the finest grid the network runs on. Along each axis finer than it (the voxel size from the
  input MetaTensor's affine, or a call's ``spacing=``), the ``[MRI, PET]`` input is blurred by the difference in
  resolution and resampled (trilinear, at the voxel centres) to a grid of at least that voxel size over the same
  field of view, fused there in either mode, brought back (trilinear), and
  the MRI's part that the round trip removed (the MRI minus its own down-and-up copy) is added back, then clamped to
  ``[0, 1]``: the PET's uptake and the network's blend at the grid the network knows, the MRI's finest detail as
  acquired. ``None``: always the input's own grid.
- ``working_voxel_mm``: the voxel size those finer axes are brought to (at least ``min_voxel_mm``; ``None``:
  ``min_voxel_mm`` itself). With ``min_voxel_mm`` 0.8 and ``working_voxel_mm`` 0.88, a 0.7 mm MRI is fused on a grid of
  about 0.88 mm, while a 0.8-0.88 mm MRI keeps its own grid.
- ``max_voxel_mm``: the coarsest grid the network runs on, the mirror of ``min_voxel_mm``. Along each axis coarser
  than it, the ``[MRI, PET]`` input is resampled (trilinear, at the voxel centres) to a grid of at most that voxel
  size over the same field of view, fused there, brought back (trilinear at the input's voxel centres: for a factor
  of 2, the mean of the two fine voxels each coarse voxel holds), and the MRI's part that the round trip removed is
  added back, then clamped: a small PET change (a 12 mm lesion is 6 voxels across at 2 mm) is fused at the scale
  the network knows. Both may be set (``min_voxel_mm <= max_voxel_mm``); one working grid serves both.

The steps after the network below are set by one :class:`FusionSteps` (``FusionInferer(steps=...)``; its fields
are named here):

- ``pet_consistency``: a consistency step after the network (Wald's consistency property of pansharpening: the
  fused image brought to the PET's resolution should be the PET). With strength ``s`` > 0 the stitched output
  ``F`` becomes ``clamp(F + s * G(PET - F), 0, 1)``, ``G`` a Gaussian of :data:`DETAIL_FWHM_MM` in mm along each
  axis (the band the PET itself resolves; what the PETC measure blurs by), once over the whole volume on the input's
  grid: the network keeps everything finer than the PET's resolution, and the coarse band moves towards the PET by
  ``s``. It needs the grid's voxel size (a MetaTensor input or a call's ``spacing=``). ``0``: no step. With
  ``pet_consistency_min_voxel_mm`` set, the step is taken only on grids whose mean voxel size is at least that.
  ``pet_consistency_coarse``, ``(mm, s_c)``: on grids whose mean voxel size is at least ``mm`` the strength is ``s_c``
  instead (a PET fused onto a coarse MRI grid has more of its noise in the band the step pulls towards the PET).
  ``pet_consistency_fine``, ``(s_f, w)``: on grids finer than ``pet_consistency_min_voxel_mm`` the step is taken at
  ``s_f`` with a Gaussian ``w`` mm wide instead of none: a wider Gaussian leaves more of the band below the PET's
  resolution, where a fine MRI grid holds the most detail, to the network, and still pulls the uptake's coarse
  pattern (a tissue change, a lowered lobe) towards the PET.
- ``pet_detail_select``: a second step after the network and the consistency step, which like it needs the grid
  (and skips a grid-less call with ``pet_consistency_optional``), with a grid gate of its own
  (``pet_detail_select_min_voxel_mm``, the mean voxel size): choose the larger detail, as wavelet
  fusion's rule does, on the band below the PET's resolution. With ``b(X) = X - G(X)`` (``G`` the consistency step's
  Gaussian of :data:`DETAIL_FWHM_MM` in mm along each axis), the voxels where the PET's band is ``k`` times the MRI's,
  ``m = clip((|b(PET)| - k |b(MRI)|) / 0.02, 0, 1)``, take the PET's band: ``F`` becomes
  ``clamp(F + s * m * (b(PET) - b(F)), 0, 1)`` with ``k`` = ``pet_detail_ratio`` and ``s`` = ``pet_detail_select``.
  Elsewhere (most of the brain: there the MRI's band is the larger) nothing changes. On a 2 mm grid a 12 mm PET
  change is six voxels across, most of them on its edge, and the network's blend softens that edge by a voxel; this
  step keeps the edge where the PET draws it more strongly than the MRI. ``0``: no step. With ``pet_detail_floor``
  ``t`` > 0 (on grids whose mean voxel size is under ``pet_detail_floor_max_voxel_mm``, when set) the PET's band must
  also clear a floor, ``m = clip((|b(PET)| - k |b(MRI)| - t sigma) / 0.02, 0, 1)``, ``sigma`` the PET band's robust
  spread in the brain (:func:`pet_band_spread`, per item): an edge the PET draws stands above it, the PET's noise and
  texture mostly do not.
- ``detail_steer``: the detail injection steered by the PET's noise, the last step (after the network, the
  consistency step and the detail-select step), with a grid gate of its own (``detail_steer_max_voxel_mm``, the
  mean voxel size: only grids finer than it). A PET whose band below its resolution follows the MRI's little
  (noise, or uptake unrelated to the anatomy) drowns the MRI's detail that the network injects. :func:`pet_band_residual`
  reads that share, ``q``, from the two inputs; the fused image gets ``g0 (f - 1)`` more of the MRI's band,
  ``F <- clamp(F + g0 (f - 1) b(MRI), 0, 1)``, with ``g0`` the network's own ``detail_injection``, ``b`` the band
  below :data:`DETAIL_FWHM_MM` in mm and ``f = min(detail_steer_max_gain, max(1, q / q0))``, ``q0`` =
  ``detail_steer``; with ``detail_steer_max_gain_coarse``, ``(mm, cap)``, grids whose mean voxel size is at least
  ``mm`` take ``cap`` instead of ``detail_steer_max_gain``. A PET with ``q <= q0`` is fused as without the step, bit
  for bit. ``None``: no step.
- With ``detail_fwhm_mm`` set (e.g. :data:`DETAIL_FWHM_MM`, the PET's resolution), the detail injection's band
  has that width **in mm** whenever the grid is known: from the input MetaTensor's affine, or a call's
  ``spacing=``. Otherwise (the default, or a plain tensor without ``spacing``) the network's own band,
  ``detail_fwhm`` voxels along every axis. With ``detail_fwhm_max_voxel_mm`` set too, the width in mm is taken only
  on grids with an axis finer than that (finer than the grids the network was trained on); the others keep the
  network's own band, the same voxels as without the setting.

The inferer is stateless: its settings are frozen at construction, and what depends on one input (the clipped
window, the automatic axis) is worked out in each call and never stored, so one inferer may serve any number of
volumes, in any order, from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer
from monai.utils import convert_to_dst_type

from asfe3d.defaults import DEFAULT_ROI_SIZE, STITCH_MODES
from asfe3d.inferers.steps import FusionSteps, _check_mm
from asfe3d.utils import is_int, is_real

__all__ = ["FusionInferer", "FusionSteps", "DEFAULT_ROI", "DETAIL_FWHM_MM", "INFERER_MODES", "STITCH_MODES",
           "auto_slice_axis", "grid_spacing", "pet_band_residual", "pet_band_spread"]

#: the sliding window of ``roi_size="auto"``: the size the shipped 3D weights were trained near and chosen with
DEFAULT_ROI = DEFAULT_ROI_SIZE
#: where the detail injection's band stops (mm): the PET's resolution, as the DETAIL measure splits the bands
DETAIL_FWHM_MM = 6.0
#: :func:`pet_band_residual`'s grid: the inputs averaged over boxes of about this many mm per axis
_RESIDUAL_BOX_MM = 2.0
#: :func:`pet_band_residual`'s region: where the PET blurred at :data:`DETAIL_FWHM_MM` is over this fraction of its
#: 99th percentile (the brain, for a brain PET)
_RESIDUAL_LEVEL = 0.35
#: the choose-the-larger-detail step's ramp: how much larger (in ``[0, 1]`` intensity) the PET's band must be than
#: ``k`` times the MRI's for that voxel to take the PET's band fully
_SELECT_RAMP = 0.02
#: the network's modes: a 2D network slice by slice, or a 3D network over the volume
INFERER_MODES = ("slice", "volume")


def auto_slice_axis(affine_ras: Any) -> int:
    """The voxel axis (0, 1, 2 in ``X, Y, Z`` order) closest to the head's superior-inferior axis.

    Args:
        affine_ras: the ``(4, 4)`` voxel-to-RAS affine.

    Returns:
        The axis whose direction has the largest superior-inferior component.

    Raises:
        ValueError: not a finite ``(4, 4)`` (or ``(3, 3)``) matrix, or one with a zero-length voxel axis (quoted):
            no axis can be told (it answered 0).
    """
    matrix = np.asarray(affine_ras, dtype=float)
    columns = matrix[:3, :3] if matrix.shape in ((4, 4), (3, 3)) else None
    norms = None if columns is None else np.linalg.norm(columns, axis=0, keepdims=True)
    if norms is None or not np.all(np.isfinite(columns)) or not np.all(norms > 0):
        raise ValueError(f"affine_ras must be a finite 4x4 affine with three non-zero voxel axes, got "
                         f"{np.asarray(affine_ras).tolist()!r}")
    return int(np.argmax(np.abs((columns / norms)[2])))


def grid_spacing(inputs: Any, spacing: Sequence[float] | None = None) -> tuple[float, float, float] | None:
    """The voxel size (mm, ``X, Y, Z``) of a batch: ``spacing`` when given, else from the input MetaTensor's affine
    (one voxel size for the whole batch), else ``None``.

    Raises:
        ValueError: a ``spacing`` that is not three finite numbers > 0, an affine without a usable voxel size
            (quoted), or a batch whose items have different voxel sizes (the steps in mm would use the first
            item's for all: run such items one at a time).
    """
    if spacing is None:
        if not isinstance(inputs, MetaTensor):
            return None
        affines = inputs.affine.detach().cpu().numpy().astype(float)
        sizes = np.linalg.norm(affines[..., :3, :3], axis=-2).reshape(-1, 3)
        if not np.allclose(sizes, sizes[:1], rtol=1e-4, atol=1e-6):
            raise ValueError(f"the batch's items have different voxel sizes {np.round(sizes, 4).tolist()} (mm): "
                             "fuse them one at a time (a batch of one) or resample them to one grid")
        spacing = sizes[0]
        what = "the input's affine gives a voxel size of"
    else:
        what = "spacing must be three voxel sizes > 0 (mm), got"
    try:
        values = [float(v) for v in np.asarray(spacing, dtype=float).ravel()]
    except (TypeError, ValueError):
        raise ValueError(f"{what} {spacing!r}") from None
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{what} {values!r}")
    return values[0], values[1], values[2]


def _brain_level(pet_low: np.ndarray) -> float:
    """The level over which the PET's low band is "the brain" (for a brain PET): :data:`_RESIDUAL_LEVEL` times its
    99th percentile; the region of :func:`pet_band_residual` and :func:`pet_band_spread`."""
    from asfe3d.utils import percentile

    return _RESIDUAL_LEVEL * float(percentile(pet_low, 99.0))


def pet_band_residual(pair: torch.Tensor, grid: Sequence[float]) -> float | None:
    """How much of the PET's band below its resolution does not follow the MRI's: ``q`` of the steered detail
    injection (see the module docstring).

    Both images are averaged over boxes of ``round(2 mm / voxel size)`` voxels per axis (at least 1) and split at
    :data:`DETAIL_FWHM_MM` (``b(X) = X - G(X)``). In the region where ``G(PET)`` is over 0.35 times its 99th
    percentile, with both bands centred: ``beta`` regresses the PET's band on the MRI's, ``r`` is the residual's
    standard deviation over the MRI band's, and ``q = r / (1 + max(beta, 0))`` (a PET band that follows the MRI's
    adds to its detail rather than hiding it).

    Args:
        pair: ``(2, X, Y, Z)`` ``[MRI, PET]`` in ``[0, 1]``.
        grid: the voxel size (mm, ``X, Y, Z``).

    Returns:
        ``q`` >= 0, or ``None`` when there is nothing to read it from (a region of fewer than 64 voxels, or an MRI
        without detail there).

    Raises:
        ValueError: a ``pair`` that is not ``(2, X, Y, Z)``, or a ``grid`` that is not three sizes > 0 (quoted).
    """
    from asfe3d.networks.blocks.detail import blur_per_axis

    if pair.dim() != 4 or pair.shape[0] != 2:
        raise ValueError(f"pair must be (2, X, Y, Z) [MRI, PET], got shape {tuple(pair.shape)}")
    grid = [float(g) for g in grid]
    if len(grid) != 3 or not all(np.isfinite(g) and g > 0 for g in grid):
        raise ValueError(f"grid must be three voxel sizes > 0 (mm), got {grid!r}")
    x = (pair.as_tensor() if isinstance(pair, MetaTensor) else pair).detach().float()[None]
    box = [max(1, int(round(_RESIDUAL_BOX_MM / g))) for g in grid]
    if any(b > 1 for b in box) and all(int(n) >= b for n, b in zip(x.shape[2:], box)):
        x = torch.nn.functional.avg_pool3d(x, box)
        grid = [g * b for g, b in zip(grid, box)]
    with torch.autocast(device_type=x.device.type, enabled=False):
        low = blur_per_axis(x, [min(DETAIL_FWHM_MM / g, 64.0) for g in grid])
        band = x - low
    pet_low = low[0, 1].cpu().numpy()
    region = torch.from_numpy(pet_low > _brain_level(pet_low)).to(x.device)
    n = int(region.sum())
    if n < 64:
        return None
    # the region's moments in float64, as masked sums (no gathered copies)
    w = region.double()
    mri_b, pet_b = band[0, 0].double() * w, band[0, 1].double() * w
    mean_m, mean_p = float(mri_b.sum()) / n, float(pet_b.sum()) / n
    var_m = float((mri_b * mri_b).sum()) / n - mean_m * mean_m
    cov = float((mri_b * pet_b).sum()) / n - mean_m * mean_p
    var_p = float((pet_b * pet_b).sum()) / n - mean_p * mean_p
    if not var_m > 1e-12:
        return None
    beta = cov / var_m
    r = max(var_p - beta * cov, 0.0) ** 0.5 / var_m ** 0.5  # the residual's deviation over the MRI band's
    return r / (1.0 + max(beta, 0.0))


def pet_band_spread(pet_band: torch.Tensor, pet_low: torch.Tensor) -> torch.Tensor:
    """The PET band's robust spread in the brain, per item: the choose-the-larger-detail step's ``sigma``.

    ``sigma = 1.4826 * median(|b - median(b)|)`` over the region where the PET's low band is over 0.35 times its 99th
    percentile (:func:`pet_band_residual`'s region: the brain, for a brain PET); 0 for an item whose region has fewer
    than 64 voxels (nothing to read it from: that item's step takes no floor).

    Args:
        pet_band: ``(B, 1, X, Y, Z)`` the PET's band below its resolution, ``b(PET) = PET - G(PET)``.
        pet_low: ``(B, 1, X, Y, Z)`` ``G(PET)``.

    Returns:
        ``(B,)`` float32 on ``pet_band``'s device, >= 0.

    Raises:
        ValueError: shapes that are not one ``(B, 1, X, Y, Z)`` (quoted).
    """
    if pet_band.dim() != 5 or pet_band.shape[1] != 1 or pet_low.shape != pet_band.shape:
        raise ValueError(f"pet_band and pet_low must be one (B, 1, X, Y, Z) shape, got {tuple(pet_band.shape)} and "
                         f"{tuple(pet_low.shape)}")
    spreads = []
    for band, low in zip(pet_band[:, 0], pet_low[:, 0]):
        level = _brain_level(low.detach().float().cpu().numpy())
        values = band[low > level].detach().float()
        if values.numel() < 64:
            spreads.append(0.0)
            continue
        centre = values.median()
        spreads.append(1.4826 * float((values - centre).abs().median()))
    return torch.tensor(spreads, dtype=torch.float32, device=pet_band.device)


def _work_spacing(grid: Sequence[float], spatial: Sequence[int], work: Sequence[int]) -> list[float]:
    """The voxel size (mm) of a working grid of ``work`` voxels over the field of view of ``spatial`` voxels of
    ``grid`` mm (the same field of view, so ``grid * spatial / work`` per axis)."""
    return [float(g) * int(n) / int(w) for g, n, w in zip(grid, spatial, work)]


def to_working_grid(x: torch.Tensor, grid: Sequence[float], work: Sequence[int]) -> tuple[torch.Tensor, list[float]]:
    """``x`` ``(B, C, X, Y, Z)`` of voxel size ``grid`` (mm) on the working grid of ``work`` voxels over the same
    field of view (:meth:`FusionInferer.working_size`), as the network sees it there, and that grid's voxel size.

    Along an axis made coarser, a Gaussian makes up the difference in resolution (as a coarser acquisition would
    see it); along every resampled axis, trilinear at the working grid's voxel centres (an exact geometry, where
    averaging boxes of a non-integer size would move each voxel by up to half a voxel). An axis made finer gets no
    blur: its samples are the input's, interpolated.
    """
    from asfe3d.networks.blocks.detail import blur_per_axis

    spatial = [int(n) for n in x.shape[2:]]
    spacing = _work_spacing(grid, spatial, work)
    fwhm = [float(np.sqrt(max((s / g) ** 2 - 1.0, 0.0))) if w != n else 0.0
            for g, s, n, w in zip(grid, spacing, spatial, work)]
    moved = torch.nn.functional.interpolate(blur_per_axis(x, fwhm), size=list(work), mode="trilinear",
                                            align_corners=False)
    return moved, spacing


def _finer(size: float, mm: float) -> bool:
    """Whether a voxel size is finer than ``mm``, with a tolerance of 1e-6 (a 0.8 mm grid whose affine gives
    0.7999999 mm is not finer than 0.8)."""
    return size < mm * (1.0 - 1e-6)


def _on_grid(size: float, fine: float, coarse: tuple[float, float] | None) -> float:
    """``fine``, or ``coarse``'s value on a grid whose mean voxel size ``size`` reaches ``coarse``'s size."""
    return coarse[1] if coarse is not None and size >= coarse[0] else fine


def _padded_to(spatial: Sequence[int], stride: int) -> list[int]:
    """Each size rounded up to a multiple of ``stride`` (the grid a network's stem-stride logits cover exactly)."""
    return [-(-int(n) // stride) * stride for n in spatial]


def ras_order(inputs: torch.Tensor) -> np.ndarray | None:
    """How to turn a batch's voxel axes into RAS order (nibabel's orientation array ``ornt``: for each voxel axis,
    the RAS axis it goes to and whether it is flipped), from the MetaTensor's affine; ``None`` when it is already
    in RAS order, has no affine (a plain tensor) or is not 3D.

    The networks were trained on volumes in RAS order (``nibabel.as_closest_canonical``); a volume stored otherwise
    (FreeSurfer's LIA ``orig.mgz``, a sagittal DICOM's PIR) is run turned into that order and turned back, so one
    head gives one fused image whatever its storage order (no resampling: axes permuted and flipped).

    Raises:
        ValueError: a batch whose items are stored in different orders (run them one at a time).
    """
    if not isinstance(inputs, MetaTensor) or inputs.ndim != 5:
        return None
    import nibabel as nib

    from asfe3d.io.volume import ras_affine

    affines = ras_affine(inputs).reshape(-1, 4, 4)
    if not np.all(np.isfinite(affines)) or np.any(np.linalg.norm(affines[:, :3, :3], axis=1) == 0):
        return None  # a degenerate grid: refused, quoted, where its voxel size is read
    orders = [nib.orientations.io_orientation(a) for a in affines]
    if any(not np.array_equal(o, orders[0]) for o in orders[1:]):
        raise ValueError(f"the batch's items are stored in different voxel orders "
                         f"{sorted({''.join(nib.orientations.ornt2axcodes(o)) for o in orders})}: fuse them one at "
                         "a time (a batch of one)")
    ornt = orders[0]
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return None
    return ornt


def _turned(x: torch.Tensor, ornt: np.ndarray, back: bool = False) -> torch.Tensor:
    """``x`` ``(B, C, X, Y, Z)`` (a plain tensor) in RAS order by ``ornt`` (:func:`ras_order`), or back from it."""
    flips = [2 + i for i in range(3) if ornt[i, 1] < 0]
    to_ras = [int(np.flatnonzero(ornt[:, 0] == j)[0]) for j in range(3)]  # RAS axis j <- voxel axis to_ras[j]
    if not back:
        x = torch.flip(x, flips) if flips else x
        return x.permute(0, 1, *[2 + i for i in to_ras])
    x = x.permute(0, 1, *[2 + int(ornt[i, 0]) for i in range(3)])
    return torch.flip(x, flips) if flips else x


def in_ras_order(img: MetaTensor) -> tuple[MetaTensor, np.ndarray | None]:
    """A ``(C, X, Y, Z)`` or ``(B, C, X, Y, Z)`` MetaTensor turned into RAS voxel order (:func:`ras_order`), with
    the affine of that order, and the ``ornt`` that turns it back with :func:`from_ras_order` (``None``: ``img``
    itself, already in that order)."""
    batched = img if img.ndim == 5 else img[None]
    ornt = ras_order(batched)
    if ornt is None:
        return img, None
    import nibabel as nib

    to_voxels = nib.orientations.inv_ornt_aff(ornt, tuple(int(n) for n in img.shape[-3:]))
    affine = img.affine.detach().cpu().numpy().astype(np.float64) @ to_voxels
    data = _turned(batched.as_tensor(), ornt)
    out = MetaTensor(data if img.ndim == 5 else data[0], affine=torch.as_tensor(affine),
                     meta={k: v for k, v in img.meta.items() if k != "affine"})
    out.is_batch = img.is_batch  # a collated batch stays one: each item keeps its own metadata when sliced
    return out, ornt


def from_ras_order(x: torch.Tensor | np.ndarray, ornt: np.ndarray | None, back: bool = True) -> Any:
    """``x`` (``(X, Y, Z)``, ``(C, X, Y, Z)`` or ``(B, C, X, Y, Z)``, a tensor or an array) turned back from RAS
    order by ``ornt`` (:func:`in_ras_order`; ``None``: ``x`` itself), or into it (``back=False``)."""
    if ornt is None:
        return x
    tensor = torch.as_tensor(x)
    lead = 5 - tensor.ndim
    out = _turned(tensor[(None,) * lead], ornt, back=back)
    out = out[(0,) * lead].contiguous()
    return out.numpy() if isinstance(x, np.ndarray) else out


def support_box(x: torch.Tensor | np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest box holding every voxel where an input is not 0 (``x``: ``(C, X, Y, Z)`` or
    ``(B, C, X, Y, Z)``, all items and channels together), as three slices; ``None`` when that is the whole volume
    or nothing (all 0).

    Fusion runs on this box: outside it every method gives 0 (both inputs are 0 there), and how much empty
    background a file carries (a zero-padded MRI, FreeSurfer's 256^3 conformed grid) no longer changes the fused
    head: the network's windows saw different amounts of background (zero-padding by 40 voxels moved the fused head
    by 15 % on average, probe 21).
    """
    data = torch.as_tensor(x)
    nonzero = (data != 0).reshape(-1, *data.shape[-3:]).any(dim=0)
    box = []
    for axis in range(3):
        along = nonzero.movedim(axis, 0).reshape(nonzero.shape[axis], -1).any(dim=1)
        hit = torch.nonzero(along)
        if hit.numel() == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    if all(b.start == 0 and b.stop == n for b, n in zip(box, data.shape[-3:])):
        return None
    return box[0], box[1], box[2]


def _check_axis(name: str, value: Any, auto: bool = True) -> None:
    if (auto and isinstance(value, str) and value == "auto") or (is_int(value) and value in (0, 1, 2)):
        return
    raise ValueError(f"{name} must be {'auto, ' if auto else ''}0, 1 or 2, got {value!r}")


def _check_device(name: str, value: Any) -> torch.device | None:
    """``value`` (``None``, a ``torch.device`` or a device string such as ``"cpu"`` / ``"cuda:1"``) as a device."""
    if value is None:
        return value
    device = value if isinstance(value, torch.device) else None
    if isinstance(value, str):
        try:
            device = torch.device(value)
        except RuntimeError:
            pass
    if device is None:
        raise ValueError(f"{name} must be None, a torch.device or a device string such as 'cpu' or 'cuda:0', got "
                         f"{value!r}")
    if device.type == "cuda" and not torch.cuda.is_available():  # (later: an "out of memory" hint, or an assertion)
        raise ValueError(f"{name} {value!r} requested but CUDA is not available on this machine")
    return device


class FusionInferer(Inferer):
    """Run a fusion network (``(B, 2, ...)`` ``[MRI, PET]`` -> ``(B, 1, ...)``) over a whole 3D volume.

    Args:
        mode: ``"slice"`` (2D network, slice by slice) or ``"volume"`` (3D network, sliding window).
        slice_axis: for ``slice``: ``"auto"`` (the voxel axis closest to superior-inferior, from the input
            MetaTensor's affine) or 0, 1, 2 (``X, Y, Z``). A call may name the axis instead (``slice_axis=``).
        roi_size: for ``volume``: ``"auto"`` (windows of :data:`DEFAULT_ROI`; before 2026-12-04 the whole volume up to 12 M voxels, else
            :data:`DEFAULT_ROI`) or three sizes, each clipped to the volume (``<= 0``: the whole axis); one integer
            is that size on every axis (as MONAI's inferers take it). ``overlap`` is one fraction for every axis.
        overlap: for ``volume``: the window overlap fraction, in ``[0, 1)``.
        sw_batch_size: slices or windows per forward pass (>= 1).
        sw_device: where the network runs (``None``: the input's device).
        device: where the stitched output is kept (``None``: the input's device).
        progress: show a tqdm progress bar.
        min_voxel_mm: the finest voxel size (mm) the network runs on (see the module docstring); ``None``: the
            input's own grid.
        max_voxel_mm: the coarsest voxel size (mm) the network runs on (see the module docstring); ``None``: the
            input's own grid. At least ``min_voxel_mm`` when both are set.
        working_voxel_mm: the voxel size (mm) of the working grid along the axes finer than ``min_voxel_mm``, at
            least ``min_voxel_mm`` and at most ``max_voxel_mm``; ``None`` (default): ``min_voxel_mm``. Needs
            ``min_voxel_mm``.
        roi_mm: for ``volume``: the window's extent in mm where the grid is known (see the module docstring;
            at most ``roi_size``); ``None``: ``roi_size`` in voxels only.
        stitch: for ``volume``: ``"output"`` (blend the fused windows), ``"logits"`` (blend the network's stem-stride
            logits and finish the whole volume at once; the network needs ``coarse`` and ``finish``, as
            :class:`~asfe3d.networks.ASFEFusion` has) or ``"auto"`` (``"logits"`` where the network and the windows
            allow it); see the module docstring.
        steps: what is done to the network's output before it is returned (:class:`FusionSteps`: the detail band's
            width in mm, the consistency step, the choose-the-larger-detail step, the steered detail injection, and
            the grids each is taken on; see the module docstring); ``None`` (default): ``FusionSteps()``, none.
    Raises:
        ValueError: a bad setting (quoted).
    """

    def __init__(self, mode: str = "volume", slice_axis: int | str = "auto", roi_size: Sequence[int] | int | str = "auto",
                 overlap: float = 0.25, sw_batch_size: int = 4, sw_device: torch.device | str | None = None,
                 device: torch.device | str | None = None, progress: bool = False, stitch: str = "output",
                 min_voxel_mm: float | None = None, max_voxel_mm: float | None = None,
                 working_voxel_mm: float | None = None, roi_mm: float | None = None,
                 steps: FusionSteps | None = None) -> None:
        super().__init__()
        if mode not in INFERER_MODES:
            raise ValueError(f"mode must be one of {INFERER_MODES}, got {mode!r}")
        _check_axis("slice_axis", slice_axis)
        if is_int(roi_size):  # one size for every axis, as MONAI's inferers take it
            roi_size = (int(roi_size),) * 3  # type: ignore[arg-type]
        if isinstance(roi_size, str):
            if roi_size != "auto":
                raise ValueError(f"roi_size must be 'auto' or three sizes, got {roi_size!r}")
        elif len(tuple(roi_size)) != 3 or not all(isinstance(r, (int, np.integer)) and not isinstance(r, bool)
                                                  for r in roi_size):
            raise ValueError(f"roi_size must be 'auto' or three integers, got {roi_size!r}")
        if not (is_real(overlap) and 0.0 <= overlap < 1.0):
            raise ValueError(f"overlap must be a number in [0, 1), got {overlap!r}")
        if not is_int(sw_batch_size) or sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be an integer >= 1, got {sw_batch_size!r}")
        self.min_voxel_mm = _check_mm("min_voxel_mm", min_voxel_mm)
        self.max_voxel_mm = _check_mm("max_voxel_mm", max_voxel_mm)
        self.roi_mm = _check_mm("roi_mm", roi_mm)
        if self.min_voxel_mm is not None and self.max_voxel_mm is not None and self.max_voxel_mm < self.min_voxel_mm:
            raise ValueError(f"max_voxel_mm must be at least min_voxel_mm, got max_voxel_mm={max_voxel_mm!r} and "
                             f"min_voxel_mm={min_voxel_mm!r}")
        self.working_voxel_mm = _check_mm("working_voxel_mm", working_voxel_mm)
        if self.working_voxel_mm is not None:
            low, high = self.min_voxel_mm, self.max_voxel_mm
            if low is None or self.working_voxel_mm < low or (high is not None and self.working_voxel_mm > high):
                raise ValueError(f"working_voxel_mm must be between min_voxel_mm and max_voxel_mm (min_voxel_mm set), "
                                 f"got working_voxel_mm={working_voxel_mm!r}, min_voxel_mm={min_voxel_mm!r} and "
                                 f"max_voxel_mm={max_voxel_mm!r}")
        if stitch not in STITCH_MODES:
            raise ValueError(f"stitch must be one of {STITCH_MODES}, got {stitch!r}")
        if steps is None:
            steps = FusionSteps()
        if not isinstance(steps, FusionSteps):
            raise ValueError(f"steps must be a FusionSteps or None, got {steps!r}")
        #: the steps after the network (frozen)
        self.steps = steps
        self.mode = mode
        self.stitch = stitch
        self.slice_axis = slice_axis
        self.roi_size = roi_size if isinstance(roi_size, str) else tuple(int(r) for r in roi_size)
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)
        self.sw_device = _check_device("sw_device", sw_device)
        self.device = _check_device("device", device)
        self.progress = progress

    def window(self, spatial: Sequence[int], grid: Sequence[float] | None = None) -> tuple[int, ...]:
        """The sliding window used for a volume of this spatial shape (``volume`` mode).

        Args:
            spatial: ``(X, Y, Z)``.
            grid: the volume's voxel size (mm, ``X, Y, Z``), for ``roi_mm``; ``None``: the window in voxels.

        Returns:
            The window, at most ``roi_mm`` mm (a multiple of 16 voxels, at least 16) along each axis where that is
            set and the grid known, clipped to the volume per axis.
        """
        spatial = tuple(int(s) for s in spatial)
        roi = self.roi_size
        if roi == "auto":
            roi = DEFAULT_ROI
        roi = [int(r) for r in roi]
        if self.roi_mm is not None and grid is not None:
            roi = [r if r <= 0 else min(r, 16 * max(1, int(np.floor(self.roi_mm / (16.0 * g) + 0.5))))
                   for r, g in zip(roi, grid)]
        return tuple(s if r <= 0 else min(r, s) for r, s in zip(roi, spatial))

    def working_size(self, spatial: Sequence[int], grid: Sequence[float] | None) -> tuple[int, ...]:
        """The grid the network runs on for a volume of ``spatial`` voxels of ``grid`` mm: each axis finer than
        ``min_voxel_mm`` gets as many voxels as fit at ``working_voxel_mm`` (``min_voxel_mm`` when that is ``None``)
        or coarser over the same field of view, each
        axis coarser than ``max_voxel_mm`` as few as reach ``max_voxel_mm`` or finer, the others are kept;
        ``spatial`` itself when neither is set or ``grid`` is ``None``."""
        spatial = tuple(int(n) for n in spatial)
        if not self._regrids or grid is None:
            return spatial
        lo, hi = self.min_voxel_mm, self.max_voxel_mm
        to = self.working_voxel_mm if self.working_voxel_mm is not None else lo
        sizes = []
        for n, g in zip(spatial, grid):
            if lo is not None and _finer(g, lo):
                n = max(1, int(np.floor(n * g / to + 1e-6)))
            elif hi is not None and g > hi * (1.0 + 1e-6):
                n = int(np.ceil(n * g / hi - 1e-6))
            sizes.append(n)
        return tuple(sizes)

    @property
    def _regrids(self) -> bool:
        """Whether a working grid may apply (``min_voxel_mm`` or ``max_voxel_mm`` set)."""
        return self.min_voxel_mm is not None or self.max_voxel_mm is not None

    def stitching(self, network: Any, spatial: Sequence[int], grid: Sequence[float] | None = None) -> str:
        """What volume mode blends for this network and volume: ``"output"``, ``"logits"``, or ``"one pass"`` (the
        volume fits one window); ``grid``: the volume's voxel size (mm), for ``roi_mm``.

        Raises:
            ValueError: ``stitch="logits"`` with a network without ``coarse`` and ``finish``, or windows that do not
                start on its logits' grid (quoted).
        """
        stride = int(getattr(network, "stem_stride", 0) or 0)
        capable = stride >= 1 and hasattr(network, "coarse") and hasattr(network, "finish")
        padded = _padded_to(spatial, stride) if capable else [int(n) for n in spatial]
        roi = self.window(padded, grid)
        if tuple(roi) == tuple(padded):
            return "one pass"
        if self.stitch == "output":
            return "output"
        if not capable:
            if self.stitch == "logits":
                raise ValueError(f"stitch='logits' needs a network with coarse() and finish() and a stem_stride, "
                                 f"got {type(network).__name__}")
            return "output"
        # MONAI's windows start at multiples of the scan interval, and the last one at the end of the volume
        steps = [r if r == n else max(int(r * (1 - self.overlap)), 1) for r, n in zip(roi, padded)]
        if any(r % stride or st % stride for r, st in zip(roi, steps)):
            if self.stitch == "logits":
                raise ValueError(f"stitch='logits' needs windows {tuple(roi)} and scan steps {tuple(steps)} that are "
                                 f"multiples of the network's stem stride {stride}")
            return "output"
        return "logits"

    def stitched(self, network: Any, inputs: torch.Tensor, spacing: Sequence[float] | None = None) -> str | None:
        """What a call on ``inputs`` blends in ``volume`` mode: :meth:`stitching` on the grid the network runs on
        (the working grid when ``min_voxel_mm`` or ``max_voxel_mm`` applies); ``None`` in ``slice`` mode.

        Args:
            network: the network the call would run.
            inputs: ``(B, C, X, Y, Z)``; a MetaTensor (or ``spacing``) gives the grid for a working grid.
            spacing: the grid's voxel size (mm) when ``inputs`` is not a MetaTensor.
        """
        if self.mode != "volume":
            return None
        spatial = tuple(int(n) for n in inputs.shape[2:])
        grid = grid_spacing(inputs, spacing) if self._regrids or self.roi_mm is not None else None
        work = self.working_size(spatial, grid)
        return self.stitching(network, work, None if grid is None else _work_spacing(grid, spatial, work))

    def axis(self, inputs: torch.Tensor, slice_axis: int | str | None = None) -> int:
        """The slicing axis for these inputs (``slice`` mode).

        Args:
            inputs: ``(B, C, X, Y, Z)``; a MetaTensor when the axis is ``"auto"``.
            slice_axis: this call's axis (``None``: the inferer's).

        Returns:
            0, 1 or 2.

        Raises:
            ValueError: ``"auto"`` without an affine to take it from, or a bad axis.
        """
        axis = self.slice_axis if slice_axis is None else slice_axis
        _check_axis("slice_axis", axis)
        if axis != "auto":
            return int(axis)
        if not isinstance(inputs, MetaTensor):
            raise ValueError("slice_axis='auto' needs a MetaTensor input (its affine gives the axial axis)")
        affines = inputs.affine.detach().cpu().numpy().reshape(-1, 4, 4)
        axes = sorted({auto_slice_axis(a) for a in affines})
        if len(axes) > 1:
            raise ValueError(f"slice_axis='auto': the batch's items have different axial axes {axes}; fuse them "
                             "one at a time (a batch of one) or name the axis")
        return axes[0]

    def detail_fwhm(self, inputs: torch.Tensor, spacing: Sequence[float] | None = None) -> list[float] | None:
        """The detail band's width along ``X, Y, Z`` in voxels for these inputs (``detail_fwhm_mm`` over the voxel
        size, :func:`grid_spacing`), or ``None`` (no width in mm set, no grid known, or a grid with no axis finer
        than ``detail_fwhm_max_voxel_mm``: the network's own)."""
        if self.steps.detail_fwhm_mm is None:
            return None
        grid = grid_spacing(inputs, spacing)
        gate = self.steps.detail_fwhm_max_voxel_mm
        if grid is None or (gate is not None and not _finer(min(grid), gate)):
            return None
        return [self.steps.detail_fwhm_mm / g for g in grid]

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any,
                 slice_axis: int | str | None = None, spacing: Sequence[float] | None = None,
                 steer_gains: Sequence[float] | None = None, **kwargs: Any) -> Any:
        """Run ``network`` over ``inputs``.

        Args:
            inputs: ``(B, 2, X, Y, Z)`` ``[MRI, PET]``.
            network: the 2D (``slice``) or 3D (``volume``) network.
            args: further arguments for ``network``.
            slice_axis: ``slice`` mode: this call's axis instead of the inferer's.
            spacing: the grid's voxel size (mm, ``X, Y, Z``) when ``inputs`` is not a MetaTensor (for the detail
                band, see :meth:`detail_fwhm`).
            steer_gains: the steered detail injection's factors for this call, one per item, as :meth:`steer_gains`
                gives them for these inputs (a caller that already read them, to record them, need not read them
                twice); ``None``: read here.
            kwargs: further keyword arguments for ``network``.

        Returns:
            ``(B, 1, X, Y, Z)`` float32 on ``device``.

        Raises:
            TypeError: inputs that are not a floating-point tensor.
            ValueError: inputs that are not ``(B, C, X, Y, Z)`` or hold NaN or Inf, a bad ``slice_axis`` or
                ``spacing``, or a consistency step without a known grid.
        """
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"inputs must be a torch.Tensor (B, C, X, Y, Z), got {type(inputs).__name__}")
        if not inputs.is_floating_point():
            raise TypeError(f"inputs must be floating point (images in [0, 1]), got dtype {inputs.dtype}")
        if inputs.ndim != 5:
            raise ValueError(f"inputs must be (B, C, X, Y, Z), got shape {tuple(inputs.shape)}")
        inputs = inputs.float()  # float64 or float16 images: the networks' weights are float32
        if spacing is not None:  # checked whether or not a step needs the grid
            grid_spacing(None, spacing)
        finite = torch.isfinite(inputs.detach()).reshape(*inputs.shape[:2], -1).all(dim=-1)
        if not bool(finite.all()):  # one NaN spreads over the whole output through the network's normalisation
            item, channel = (int(i) for i in torch.nonzero(~finite)[0])
            raise ValueError(f"inputs hold NaN or Inf values (item {item}, channel {channel}, shape "
                             f"{tuple(inputs.shape)}): fusion needs finite values (replace or mask them first)")
        turned, ornt = in_ras_order(inputs) if isinstance(inputs, MetaTensor) else (inputs, None)
        if ornt is not None:  # run in RAS order, as the networks were trained, and turned back
            if slice_axis is not None and slice_axis != "auto":
                _check_axis("slice_axis", slice_axis)
                slice_axis = int(ornt[int(slice_axis), 0])
            if slice_axis is None and self.slice_axis != "auto":
                slice_axis = int(ornt[int(self.slice_axis), 0])
            given = None if spacing is None else np.asarray(spacing, dtype=float).ravel()
            if given is not None and given.size == 3:  # (else refused as it is, below)
                spacing = [float(given[int(np.flatnonzero(ornt[:, 0] == j)[0])]) for j in range(3)]
            out = self._run(turned, network, args, kwargs, slice_axis, spacing, steer_gains)
            back = from_ras_order(out.as_tensor() if isinstance(out, MetaTensor) else out, ornt)
            return convert_to_dst_type(back, inputs, device=back.device)[0]
        return self._run(inputs, network, args, kwargs, slice_axis, spacing, steer_gains)

    def _run(self, inputs: torch.Tensor, network: Callable[..., Any], args: tuple, kwargs: dict,
             slice_axis: int | str | None, spacing: Sequence[float] | None,
             steer_gains: Sequence[float] | None) -> Any:
        """:meth:`__call__` on inputs in the order they are run in: on the box that holds their signal
        (:func:`support_box`), 0 around it; a batch whose items hold their signal in different boxes item by item
        (one item's background must not change another's fused image)."""
        out = self._run_boxes(inputs, network, args, kwargs, slice_axis, spacing, steer_gains)
        empty = [i for i in range(int(inputs.shape[0])) if not bool(inputs[i].detach().any())]
        if empty:  # an all-zero item fuses to 0, as every method gives (the network on zeros gave a grey up to
            # 0.14); it is run all the same, so its checks are those of any input
            data = out.as_tensor() if isinstance(out, MetaTensor) else out
            keep = torch.ones(data.shape[0], dtype=data.dtype, device=data.device)
            keep[empty] = 0  # out of place: autograd may hold the output
            data = data * keep.view(-1, *([1] * (data.ndim - 1)))
            return convert_to_dst_type(data, out, device=data.device)[0] if isinstance(out, MetaTensor) else data
        return out

    def _run_boxes(self, inputs: torch.Tensor, network: Callable[..., Any], args: tuple, kwargs: dict,
                   slice_axis: int | str | None, spacing: Sequence[float] | None,
                   steer_gains: Sequence[float] | None) -> Any:
        """:meth:`_run`'s work: the items on their support boxes, together when they share one."""
        boxes = [support_box(inputs[i:i + 1].detach()) for i in range(int(inputs.shape[0]))]
        if len({None if b is None else tuple((a.start, a.stop) for a in b) for b in boxes}) > 1:
            if steer_gains is not None and len(list(steer_gains)) != len(boxes):
                raise ValueError(f"steer_gains must give one factor >= 1 per item of inputs {tuple(inputs.shape)}, "
                                 f"got {list(steer_gains)!r}")
            gains = [None if steer_gains is None else list(steer_gains)[i:i + 1] for i in range(len(boxes))]
            parts = [self._run_in(boxes[i], inputs[i:i + 1], network, args, kwargs, slice_axis, spacing, gains[i])
                     for i in range(len(boxes))]
            data = torch.cat([q.as_tensor() if isinstance(q, MetaTensor) else q for q in parts])
            return convert_to_dst_type(data, inputs, device=data.device)[0] if isinstance(inputs, MetaTensor) else data
        return self._run_in(boxes[0], inputs, network, args, kwargs, slice_axis, spacing, steer_gains)

    def _run_in(self, box: tuple[slice, slice, slice] | None, inputs: torch.Tensor, network: Callable[..., Any],
                args: tuple, kwargs: dict, slice_axis: int | str | None, spacing: Sequence[float] | None,
                steer_gains: Sequence[float] | None) -> Any:
        """:meth:`_run` on inputs whose signal lies in ``box`` (:func:`support_box`; ``None``: the whole volume)."""
        if box is None:
            return self._run_whole(inputs, network, args, kwargs, slice_axis, spacing, steer_gains)
        index = (slice(None), slice(None), *box)
        part = self._run_whole(inputs[index], network, args, kwargs, slice_axis, spacing, steer_gains)
        data = part.as_tensor() if isinstance(part, MetaTensor) else part
        out = torch.zeros((*data.shape[:2], *inputs.shape[2:]), dtype=data.dtype, device=data.device)
        out[index] = data
        return convert_to_dst_type(out, inputs, device=out.device)[0] if isinstance(inputs, MetaTensor) else out

    def _run_whole(self, inputs: torch.Tensor, network: Callable[..., Any], args: tuple, kwargs: dict,
                   slice_axis: int | str | None, spacing: Sequence[float] | None,
                   steer_gains: Sequence[float] | None) -> Any:
        """:meth:`_run` on the whole of ``inputs``."""
        strength, select, grid = self._steps_on(inputs, spacing)
        if steer_gains is None:
            gains = self.steer_gains(inputs, network, spacing)
        else:
            gains = [float(f) for f in steer_gains]
            if len(gains) != int(inputs.shape[0]) or not all(np.isfinite(f) and f >= 1.0 for f in gains):
                raise ValueError(f"steer_gains must give one factor >= 1 per item of inputs {tuple(inputs.shape)}, "
                                 f"got {list(steer_gains)!r}")
        out = self._fuse(inputs, network, args, kwargs, slice_axis, spacing)
        if strength > 0:
            out = self._consistent(out, inputs, grid, strength, self.consistency_width(grid))
        mri_band = None
        if select > 0:
            out, mri_band = self._selected(out, inputs, grid, select)
        if any(f > 1.0 for f in gains):
            steer_grid = grid_spacing(inputs, spacing)
            if steer_grid is None:  # factors given by the caller for a grid-less call: the band needs the grid
                raise ValueError("steer_gains > 1 need the grid's voxel size: a MetaTensor input or spacing=")
            out = self._steered(out, inputs, steer_grid, float(network.detail_injection), gains, mri_band)
        return out

    def steer_gains(self, inputs: torch.Tensor, network: Any, spacing: Sequence[float] | None = None) -> list[float]:
        """The factor ``f`` the steered detail injection gives each item of ``inputs`` (see the module docstring):
        1.0 where the step is off, the grid gate leaves the grid out, ``network`` injects no detail, or
        :func:`pet_band_residual` has nothing to read.

        Args:
            inputs: ``(B, 2, X, Y, Z)`` ``[MRI, PET]``.
            network: the network the call runs (its ``detail_injection`` is ``g0``).
            spacing: the grid's voxel size (mm) when ``inputs`` is not a MetaTensor.

        Raises:
            ValueError: the step to take without a known grid (unless ``pet_consistency_optional``).
        """
        ones = [1.0] * int(inputs.shape[0])
        if self.steps.detail_steer is None or not float(getattr(network, "detail_injection", 0.0) or 0.0) > 0:
            return ones
        grid = grid_spacing(inputs, spacing)
        if grid is None:
            if self.steps.pet_consistency_optional:
                return ones
            raise ValueError("detail_steer needs the grid's voxel size: a MetaTensor input or spacing=")
        size = sum(grid) / 3.0
        if self.steps.detail_steer_max_voxel_mm is not None and size >= self.steps.detail_steer_max_voxel_mm:
            return ones
        cap = _on_grid(size, self.steps.detail_steer_max_gain, self.steps.detail_steer_max_gain_coarse)
        gains = []
        for item in inputs[:, :2]:
            q = pet_band_residual(item, grid)
            gains.append(1.0 if q is None else min(cap, max(1.0, q / self.steps.detail_steer)))
        return gains

    def consistency(self, inputs: torch.Tensor, spacing: Sequence[float] | None = None) -> float:
        """The strength of the consistency step a call on ``inputs`` takes: ``pet_consistency``, or on a grid
        finer than ``pet_consistency_min_voxel_mm`` (mean voxel size) ``pet_consistency_fine``'s strength (0 without
        it), or ``pet_consistency_coarse``'s strength on a grid at least as coarse as its size, or 0 on an unknown
        grid when ``pet_consistency_optional``.

        Raises:
            ValueError: a step to take without a known grid (a plain tensor without ``spacing``).
        """
        return self._steps_on(inputs, spacing)[0]

    def detail_select(self, inputs: torch.Tensor, spacing: Sequence[float] | None = None) -> float:
        """The strength of the choose-the-larger-detail step a call on ``inputs`` takes: ``pet_detail_select``, or 0
        on a grid finer than ``pet_detail_select_min_voxel_mm`` (mean voxel size), or 0 on an unknown grid when
        ``pet_consistency_optional``.

        Raises:
            ValueError: a step to take without a known grid (a plain tensor without ``spacing``).
        """
        return self._steps_on(inputs, spacing)[1]

    def _steps_on(self, inputs: torch.Tensor, spacing: Sequence[float] | None
                  ) -> tuple[float, float, tuple[float, float, float] | None]:
        """The strengths of the consistency and the detail-select steps on this grid, with the grid read (``None``
        when both steps are off or the grid unknown)."""
        coarse, finer = self.steps.pet_consistency_coarse, self.steps.pet_consistency_fine
        if (self.steps.pet_consistency <= 0 and self.steps.pet_detail_select <= 0 and (coarse is None or coarse[1] <= 0)
                and (finer is None or finer[0] <= 0)):
            return 0.0, 0.0, None
        grid = grid_spacing(inputs, spacing)
        if grid is None and self.steps.pet_consistency_optional:
            return 0.0, 0.0, None
        if grid is None:
            raise ValueError("pet_consistency > 0 or pet_detail_select > 0 needs the grid's voxel size: a MetaTensor "
                             "input or spacing=")
        size = sum(grid) / 3.0
        gate = self.steps.pet_detail_select_min_voxel_mm
        return self._consistency_on(size)[0], self.steps.pet_detail_select if gate is None or size >= gate else 0.0, grid

    def _consistency_on(self, size: float) -> tuple[float, float]:
        """The consistency step's strength and Gaussian width (FWHM, mm) on a grid of mean voxel size ``size``:
        ``pet_consistency_coarse``'s strength where it reaches, else ``pet_consistency`` from
        ``pet_consistency_min_voxel_mm``, else ``pet_consistency_fine``'s pair (0 without it); the width
        :data:`DETAIL_FWHM_MM` but where the fine pair's is taken."""
        coarse, gate, finer = self.steps.pet_consistency_coarse, self.steps.pet_consistency_min_voxel_mm, self.steps.pet_consistency_fine
        if coarse is not None and size >= coarse[0]:
            return coarse[1], DETAIL_FWHM_MM
        if gate is None or size >= gate:
            return self.steps.pet_consistency, DETAIL_FWHM_MM
        return (0.0, DETAIL_FWHM_MM) if finer is None else finer

    def consistency_width(self, grid: Sequence[float]) -> float:
        """The width (FWHM, mm) of the consistency step's Gaussian on this grid: :data:`DETAIL_FWHM_MM`, or
        ``pet_consistency_fine``'s width on a grid finer than ``pet_consistency_min_voxel_mm`` (mean voxel size) that
        ``pet_consistency_coarse`` does not reach (the grids whose strength is ``pet_consistency_fine``'s).

        Args:
            grid: the voxel size (mm) along each axis.
        """
        return self._consistency_on(sum(grid) / 3.0)[1]

    def _consistent(self, out: torch.Tensor, inputs: torch.Tensor, grid: Sequence[float],
                    strength: float, fwhm_mm: float = DETAIL_FWHM_MM) -> torch.Tensor:
        """The consistency step: ``clamp(out + s * G(PET - out), 0, 1)``, ``G`` ``fwhm_mm`` wide in mm."""
        from asfe3d.networks.blocks.detail import blur_per_axis

        fused = (out.as_tensor() if isinstance(out, MetaTensor) else out).float()
        pet = (inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs)[:, 1:2].to(fused.device).float()
        with torch.autocast(device_type=fused.device.type, enabled=False):  # the low band in float32
            # (at most 64 voxels wide, the blur's limit: a 12 mm Gaussian is narrower only on grids under 0.19 mm)
            low = blur_per_axis(pet - fused, [min(fwhm_mm / g, 64.0) for g in grid])
        result = (fused + strength * low).clamp_(0.0, 1.0)
        return convert_to_dst_type(result, out)[0]

    def detail_floor(self, grid: Sequence[float]) -> float:
        """The choose-the-larger-detail step's floor ``t`` on this grid: ``pet_detail_floor``, or 0 on a grid whose
        mean voxel size is at least ``pet_detail_floor_max_voxel_mm``."""
        gate = self.steps.pet_detail_floor_max_voxel_mm
        return self.steps.pet_detail_floor if gate is None or sum(grid) / 3.0 < gate else 0.0

    def _selected(self, out: torch.Tensor, inputs: torch.Tensor, grid: Sequence[float],
                  strength: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The choose-the-larger-detail step: ``clamp(out + s * m * (b(PET) - b(out)), 0, 1)`` with
        ``m = clip((|b(PET)| - k |b(MRI)| - t sigma) / 0.02, 0, 1)``, ``b(X) = X - G(X)``, ``G`` :data:`DETAIL_FWHM_MM`
        wide in mm, ``t`` :meth:`detail_floor` and ``sigma`` :func:`pet_band_spread` (not read when ``t`` is 0).
        Returns the result and ``b(MRI)`` ``(B, 1, ...)`` in float32 (the steered step's band, the same numbers)."""
        from asfe3d.networks.blocks.detail import blur_per_axis

        fused = (out.as_tensor() if isinstance(out, MetaTensor) else out).float()
        pair = (inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs)[:, :2].to(fused.device).float()
        with torch.autocast(device_type=fused.device.type, enabled=False):  # the bands in float32
            three = torch.cat([pair, fused], dim=1)  # [MRI, PET, F]
            low = blur_per_axis(three, [DETAIL_FWHM_MM / g for g in grid])
            band = three - low
            mri_b, pet_b, fused_b = band[:, 0:1], band[:, 1:2], band[:, 2:3]
            excess = pet_b.abs() - self.steps.pet_detail_ratio * mri_b.abs()
            floor = self.detail_floor(grid)
            if floor > 0:
                sigma = pet_band_spread(pet_b, low[:, 1:2])
                excess = excess - floor * sigma.view(-1, *[1] * (excess.dim() - 1))
            del low
            where = (excess / _SELECT_RAMP).clamp_(0.0, 1.0)
            result = (fused + strength * where * (pet_b - fused_b)).clamp_(0.0, 1.0)
            mri_b = mri_b.clone()  # the 3-channel band is freed
        return convert_to_dst_type(result, out)[0], mri_b

    def _steered(self, out: torch.Tensor, inputs: torch.Tensor, grid: Sequence[float], g0: float,
                 gains: Sequence[float], mri_band: torch.Tensor | None = None) -> torch.Tensor:
        """The steered detail injection: ``clamp(out + g0 (f - 1) b(MRI), 0, 1)`` per item, ``f`` from ``gains``,
        ``b(X) = X - G(X)``, ``G`` :data:`DETAIL_FWHM_MM` wide in mm (``mri_band``: ``b(MRI)`` already computed on
        this grid by the choose-the-larger-detail step)."""
        from asfe3d.networks.blocks.detail import blur_per_axis

        fused = (out.as_tensor() if isinstance(out, MetaTensor) else out).float()
        mri = (inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs)[:, :1].to(fused.device).float()
        boost = torch.tensor([g0 * (f - 1.0) for f in gains], dtype=fused.dtype, device=fused.device)
        with torch.autocast(device_type=fused.device.type, enabled=False):  # the band in float32
            band = mri - blur_per_axis(mri, [DETAIL_FWHM_MM / g for g in grid]) if mri_band is None else mri_band
            result = (fused + boost.view(-1, *[1] * (fused.dim() - 1)) * band).clamp_(0.0, 1.0)
        return convert_to_dst_type(result, out)[0]

    def _fuse(self, inputs: torch.Tensor, network: Callable[..., Any], args: tuple, kwargs: dict,
              slice_axis: int | str | None, spacing: Sequence[float] | None, regrid: bool = True) -> Any:
        """The network over the whole volume (see :meth:`__call__`), before the consistency step (``regrid``:
        whether a working grid may apply; not again on the working grid itself)."""
        # the grid, read once for what needs it here: a working grid, or volume mode's window in mm
        grid = grid_spacing(inputs, spacing) if (regrid and self._regrids) or self.roi_mm is not None else None
        if regrid and self._regrids:
            spatial = tuple(int(n) for n in inputs.shape[2:])
            work = self.working_size(spatial, grid)
            if grid is not None and work != spatial:
                return self._on_working_grid(inputs, network, args, kwargs, grid, work, slice_axis)
        injects = float(getattr(network, "detail_injection", 0.0)) > 0 and hasattr(network, "volume_detail")
        fwhm = self.detail_fwhm(inputs, spacing) if injects else None
        if self.mode == "slice":
            inferer: Inferer = SliceInferer(
                roi_size=(-1, -1), spatial_dim=self.axis(inputs, slice_axis), sw_batch_size=self.sw_batch_size,
                progress=self.progress, sw_device=self.sw_device, device=self.device,
            )
            if injects:
                # (MONAI's SliceInferer does not pass call arguments on to the network: bind them here)
                out = inferer(inputs, lambda x: network(x, *args, inject_detail=False, **kwargs))
                mri = inputs[:, :1].as_tensor() if isinstance(inputs, MetaTensor) else inputs[:, :1]
                with torch.autocast(device_type=out.device.type, enabled=False):  # the band in float32
                    band = network.volume_detail(mri.to(device=out.device, dtype=torch.float32), fwhm)
                return (out.float() + band).clamp_(0.0, 1.0)
        else:
            spatial = tuple(int(s) for s in inputs.shape[2:])
            if fwhm is not None:  # the network adds its band in each window, at this grid's width
                kwargs = {**kwargs, "detail_fwhm": fwhm}
            if self.stitching(network, spatial, grid) == "logits":
                return self._stitch_logits(inputs, network, grid, *args, **kwargs)
            roi = tuple(int(r) for r in self.window(spatial, grid))
            inferer = SlidingWindowInferer(
                # a bar over windows; none for one window (the whole volume in one pass: it would sit at "0/1")
                roi_size=roi, overlap=self.overlap, mode="gaussian", sw_batch_size=self.sw_batch_size,
                progress=self.progress and roi != spatial, sw_device=self.sw_device, device=self.device,
            )
        return inferer(inputs, network, *args, **kwargs)

    def _on_working_grid(self, inputs: torch.Tensor, network: Callable[..., Any], args: tuple, kwargs: dict,
                         grid: Sequence[float], work: Sequence[int], slice_axis: int | str | None) -> torch.Tensor:
        """Fuse on the working grid ``work`` (coarser or finer per axis) and bring the result back with the MRI's
        part that the round trip removed."""

        interpolate = torch.nn.functional.interpolate
        axis = self.axis(inputs, slice_axis) if self.mode == "slice" else None  # from the input's own affine
        x = (inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs).float()
        spatial = [int(n) for n in x.shape[2:]]
        moved, spacing = to_working_grid(x, grid, work)
        fused = self._fuse(moved, network, args, kwargs, axis, spacing, regrid=False)
        out = interpolate(fused.float(), size=spatial, mode="trilinear", align_corners=False)
        mri, mri_moved = x[:, :1].to(out.device), moved[:, :1].to(out.device)
        removed = mri - interpolate(mri_moved, size=spatial, mode="trilinear", align_corners=False)
        out = (out + removed).clamp_(0.0, 1.0)
        return convert_to_dst_type(out, inputs, device=self.device if self.device is not None else inputs.device)[0]

    def _stitch_logits(self, inputs: torch.Tensor, network: Any, grid: Sequence[float] | None, *args: Any,
                       **kwargs: Any) -> torch.Tensor:
        """Volume mode with ``stitch`` logits: windows of ``network.coarse`` blended at the stem's stride, then
        ``network.finish`` once over the whole volume (``args`` and ``kwargs`` go to ``finish``; ``grid``: the
        voxel size for ``roi_mm``)."""
        stride = int(network.stem_stride)
        work = self.sw_device if self.sw_device is not None else inputs.device
        x = (inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs).to(work)
        spatial = [int(n) for n in x.shape[2:]]
        pads: list[int] = []
        for n, m in zip(reversed(spatial), reversed(_padded_to(spatial, stride))):  # F.pad: the last dim first
            pads += [0, m - n]  # at the end, as the network pads
        xe = torch.nn.functional.pad(x, pads, mode="replicate") if any(pads) else x
        roi = tuple(int(r) for r in self.window(xe.shape[2:], grid))

        def coarse(window: torch.Tensor) -> torch.Tensor:
            # the window's own logits: a window is a multiple of the stride, the network may pad it further
            low = [int(n) // stride for n in window.shape[2:]]
            return network.coarse(window)[:, :, :low[0], :low[1], :low[2]]

        logits = SlidingWindowInferer(roi_size=roi, overlap=self.overlap, mode="gaussian",
                                      sw_batch_size=self.sw_batch_size, progress=self.progress,
                                      sw_device=work, device=work)(xe, coarse)
        out = network.finish(logits, x, *args, **kwargs)
        # as MONAI's sliding window returns it: the input's type (a MetaTensor keeps its metadata) on ``device``
        return convert_to_dst_type(out, inputs, device=self.device if self.device is not None else inputs.device)[0]

    def describe(self) -> dict[str, Any]:
        """The settings (JSON-able) for a completion record."""
        return {"inferer": type(self).__name__, "mode": self.mode, "slice_axis": self.slice_axis,
                "roi_size": self.roi_size if isinstance(self.roi_size, str) else list(self.roi_size),
                "overlap": self.overlap, "sw_batch_size": self.sw_batch_size, "detail_fwhm_mm": self.steps.detail_fwhm_mm,
                "detail_fwhm_max_voxel_mm": self.steps.detail_fwhm_max_voxel_mm,
                "stitch": self.stitch, "min_voxel_mm": self.min_voxel_mm, "max_voxel_mm": self.max_voxel_mm,
                "working_voxel_mm": self.working_voxel_mm, "roi_mm": self.roi_mm,
                "pet_consistency": self.steps.pet_consistency,
                "pet_consistency_min_voxel_mm": self.steps.pet_consistency_min_voxel_mm,
                "pet_consistency_coarse": None if self.steps.pet_consistency_coarse is None
                else list(self.steps.pet_consistency_coarse),
                "pet_consistency_fine": None if self.steps.pet_consistency_fine is None
                else list(self.steps.pet_consistency_fine),
                "pet_detail_select": self.steps.pet_detail_select, "pet_detail_ratio": self.steps.pet_detail_ratio,
                "pet_detail_select_min_voxel_mm": self.steps.pet_detail_select_min_voxel_mm,
                "pet_detail_floor": self.steps.pet_detail_floor,
                "pet_detail_floor_max_voxel_mm": self.steps.pet_detail_floor_max_voxel_mm,
                "detail_steer": self.steps.detail_steer, "detail_steer_max_gain": self.steps.detail_steer_max_gain,
                "detail_steer_max_voxel_mm": self.steps.detail_steer_max_voxel_mm,
                "detail_steer_max_gain_coarse": None if self.steps.detail_steer_max_gain_coarse is None
                else list(self.steps.detail_steer_max_gain_coarse)}
