"""Evaluation of ``asfe`` against the classic baselines: cases in, per-case metrics, tables and figures out.

Two kinds of cases, one flow:

- **2D**: HMIF-style image pairs (``DIR/MRI/*.png`` + ``DIR/PET|SPECT|CT/*.png``), by default only the validation
  part of :func:`asfe3d.data.hmif.split_pairs` (the images the 2D network never trained on). Colour PET/SPECT is
  fused in the luma: methods fuse ``[MRI, Y]``; the colour result puts the PET's chroma back (as the paper does).
- **3D**: MRI/PET volume pairs listed in a CSV (``subject, mri, pet[, mask]``). The PET is registered onto the MRI
  grid (SimpleITK, as :func:`asfe3d.pipeline.fuse_pair` does; ``registration="none"`` only resamples), both are
  normalised to ``[0, 1]`` with :func:`asfe3d.transforms.intensity.robust_normalize` inside the MRI's head mask.
  ``asfe`` means both ``asfe-slice`` (2D network slice by slice) and ``asfe-volume`` (3D network).

Metrics are always computed on the gray / luma images in ``[0, 1]`` (the 11 of :data:`asfe3d.metrics.METRIC_NAMES`,
8-bit convention of ``docs/metrics.md``): whole image in 2D, inside the head mask (or the CSV's mask) in 3D. Added
for every case: the defect transfer ``DT`` (:func:`asfe3d.metrics.defect_transfer`; a known or automatically placed
12 mm, 30 % focal PET lowering, :func:`case_defect`) and ``EMPTY`` (the fused 99.9th percentile where both inputs
are 0); for volumes also the through-plane consistency ``TPC`` (:func:`asfe3d.metrics.through_plane_consistency`,
along the axial voxel axis that slice-wise fusion uses).
"""

from __future__ import annotations

import csv
import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asfe3d.defaults import DEFAULT_MIN_OVERLAP, DEFAULT_ROI_SIZE
from asfe3d.errors import Asfe3dInputError
from asfe3d.utils import is_real

__all__ = [
    "BASELINES",
    "EXTRA_HIGHER",
    "DEFAULT_METHODS",
    "LOWER_IS_BETTER",
    "EvalCase",
    "CaseResult",
    "expand_methods",
    "NetworkOptions",
    "build_fusers",
    "hmif_case_pairs",
    "load_hmif_case",
    "read_pairs_csv",
    "load_volume_case",
    "evaluate_case",
    "case_defect",
    "mean_table",
    "count_wins",
    "win_table",
    "markdown_summary",
    "write_rows_csv",
    "save_fused_case",
    "fused_output_path",
    "figure_panels",
    "save_figure",
]

#: the classic methods every learned method is compared with
BASELINES = ("mean", "max", "wavelet", "laplacian", "highpass")
#: ``--methods`` default
DEFAULT_METHODS = (*BASELINES, "asfe")
#: extra columns where smaller is better (all 11 fusion metrics are higher-is-better): through-plane consistency
#: and EMPTY, the fused 99.9th percentile where both inputs are exactly 0
LOWER_IS_BETTER = frozenset({"TPC", "EMPTY"})
#: extra columns where larger is better: DT, the defect transfer (:func:`asfe3d.metrics.defect_transfer`)
EXTRA_HIGHER = ("DT", "DETAIL", "PETC")
_ASFE_3D = ("asfe-slice", "asfe-volume")
_SPLITS = ("val", "train", "all")


@dataclass
class EvalCase:
    """One pair ready for fusion: both images on one grid, in ``[0, 1]``.

    Attributes:
        name: the input file name (2D) or the subject id (3D); names the row and the saved outputs.
        mri: MRI, float32 ``(H, W)`` or ``(X, Y, Z)``.
        other: PET / SPECT / CT gray image or colour image's luma Y, same shape.
        rgb: the colour PET/SPECT ``shape + (3,)`` (2D), or ``None`` for gray inputs and volumes.
        mask: where the metrics are computed (``None`` = everywhere).
        reference: the MRI :class:`asfe3d.io.Volume` of a 3D case (the grid fused volumes are written on).
        axis: the axial voxel axis of a 3D case (slice-wise fusion and TPC use it).
        kind: ``"PET"``, ``"SPECT"``, ``"CT"``.
        spacing: voxel size in mm (places the automatic defect; 1 for 2D images).
        pet_defect: the PET (gray / luma) with a focal lowering of uptake, on ``other``'s intensity scale, or
            ``None`` (then :func:`evaluate_case` places one with :func:`asfe3d.metrics.place_defect`).
        defect_region: the changed region (bool), with ``pet_defect``.
        brain: where MRI detail retention and PET consistency are measured (bool), or ``None`` (then
            :func:`asfe3d.metrics.brain_region` finds the brain from the PET inside ``mask``).
    """

    name: str
    mri: np.ndarray
    other: np.ndarray
    rgb: np.ndarray | None = None
    mask: np.ndarray | None = None
    reference: Any = None
    axis: int = 2
    kind: str = "PET"
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    pet_defect: np.ndarray | None = None
    defect_region: np.ndarray | None = None
    brain: np.ndarray | None = None

    @property
    def ndim(self) -> int:
        return int(self.mri.ndim)


@dataclass
class CaseResult:
    """What :func:`evaluate_case` returns for one case.

    Attributes:
        rows: one dict per method: ``case``, ``method``, every metric, ``seconds`` (fusion time).
        fused: ``{method: fused gray/luma image}``.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    fused: dict[str, np.ndarray] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- methods


def expand_methods(methods: str | Sequence[str], ndim: int) -> list[str]:
    """Resolve the method list for 2D or 3D cases.

    ``asfe`` is the 2D network in 2D, and both ``asfe-slice`` and ``asfe-volume`` in 3D (which may also be asked
    for one at a time). Order is kept, duplicates are dropped.

    Args:
        methods: comma-separated string or sequence of names.
        ndim: 2 or 3.

    Returns:
        The method names.

    Raises:
        ValueError: bad ``ndim``, an empty list or an unknown name (quoted).
    """
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    if not names:
        raise ValueError(f"no fusion method given in {methods!r}")
    from asfe3d.fusion import available_methods

    # a method added with asfe3d.fusion.register_method is evaluated beside them, as `asfe3d fuse --method` takes it
    own = tuple(m for m in available_methods() if m not in (*BASELINES, "asfe"))
    known = (*BASELINES, "asfe", *(_ASFE_3D if ndim == 3 else ()), *own)
    out: list[str] = []
    for name in names:
        if name not in known:
            raise ValueError(f"unknown method {name!r} for {ndim}D inputs; choose from {', '.join(known)}")
        for m in (_ASFE_3D if (name == "asfe" and ndim == 3) else (name,)):
            if m not in out:
                out.append(m)
    return out


@dataclass(frozen=True)
class NetworkOptions:
    """How the evaluation runs the networks (``asfe``, ``asfe-slice``, ``asfe-volume``), as one object: every
    ``"auto"`` is what ``asfe3d fuse`` uses for the mode. Values are checked where they are used (by
    :class:`asfe3d.fusion.learned.AsfeFusionMethod` and :class:`asfe3d.inferers.FusionSteps`, quoting them).

    Attributes:
        device: ``auto``, ``cpu`` or ``cuda[:N]``.
        roi_size: sliding-window size of ``asfe-volume`` (voxels).
        stitch: how ``asfe-volume`` blends its windows (``None``: the command's default,
            :data:`asfe3d.defaults.DEFAULT_STITCH`).
        min_voxel_mm: the finest grid the networks run on on volumes (``"auto"``: the command's default per mode,
            :data:`asfe3d.defaults.MIN_VOXEL_MM_BY_MODE`; ``None``: the MRI's own grid).
        max_voxel_mm: the coarsest grid the networks run on on volumes (``"auto"``: the command's default per mode,
            :data:`asfe3d.defaults.MAX_VOXEL_MM_BY_MODE`; ``None``: the MRI's own grid).
        roi_mm: ``asfe-volume``'s window in mm, at most ``roi_size`` (``"auto"``: the command's default,
            :data:`asfe3d.defaults.DEFAULT_ROI_MM`; ``None``: the window in voxels only).
        pet_consistency: the strength of the networks' consistency step on volumes (``"auto"``: the command's
            default per mode, :data:`asfe3d.defaults.PET_CONSISTENCY_BY_MODE`).
        pet_detail_select: the strength of the choose-the-larger-detail step on volumes (``"auto"``: the command's
            default per mode, :data:`asfe3d.defaults.PET_DETAIL_SELECT_BY_MODE`).
        pet_detail_ratio: that step's ``k`` (``"auto"``: :data:`asfe3d.defaults.PET_DETAIL_RATIO`).
        detail_steer: ``q0`` of the steered detail injection on volumes (``"auto"``: the command's default per mode,
            :data:`asfe3d.defaults.DETAIL_STEER_BY_MODE`; ``None``: no step).
        detail_fwhm_mm: the width (mm) of the networks' detail band on volumes (``"auto"``: the command's default
            per mode, :data:`asfe3d.defaults.DETAIL_FWHM_MM_BY_MODE`; ``None``: the network's own width in voxels; a
            number: that width on every grid).
    """

    device: str = "auto"
    roi_size: tuple[int, ...] = tuple(DEFAULT_ROI_SIZE)
    stitch: str | None = None
    min_voxel_mm: float | str | None = "auto"
    max_voxel_mm: float | str | None = "auto"
    roi_mm: float | str | None = "auto"
    pet_consistency: float | str = "auto"
    pet_detail_select: float | str = "auto"
    pet_detail_ratio: float | str = "auto"
    detail_steer: float | str | None = "auto"
    detail_fwhm_mm: float | str | None = "auto"


def build_fusers(
    methods: Sequence[str],
    *,
    weights_2d: str | Path | None = None,
    weights_3d: str | Path | None = None,
    options: NetworkOptions | None = None,
    nets: Mapping[str, Any] | None = None,
    pet_fwhm_mm: float | None = None,
) -> dict[str, Any]:
    """Build the fusion methods named by :func:`expand_methods`.

    Args:
        methods: names (``mean``, ``max``, ``wavelet``, ``laplacian``, ``highpass``, ``asfe``, ``asfe-slice``,
            ``asfe-volume``, or a registered method's).
        weights_2d: weights of the 2D network (``asfe`` / ``asfe-slice``); ``None`` = the shipped file.
        weights_3d: weights of the 3D network (``asfe-volume``); ``None`` = the shipped file.
        options: how the networks run (:class:`NetworkOptions`; ``None``: as ``asfe3d fuse`` runs them).
        nets: already built networks by method name (overrides the weights; for tests and training).
        pet_fwhm_mm: the PET's resolution (mm) where ``highpass`` splits the MRI's band (``None``: the method's
            default, :data:`asfe3d.metrics.PET_FWHM_MM`).

    Returns:
        ``{name: FusionMethod}`` in the given order.

    Raises:
        Asfe3dInputError: a weight file is missing or unreadable (shipped weights not there yet included).
        ValueError: an unknown method name, ``options`` that are not :class:`NetworkOptions`, or a bad option
            value (quoted).
    """
    from asfe3d.fusion import AsfeFusionMethod, get_fuser
    from asfe3d.fusion.learned import mode_steps

    if options is None:
        options = NetworkOptions()
    if not isinstance(options, NetworkOptions):
        raise ValueError(f"options must be a NetworkOptions or None, got {options!r}")
    o = options
    nets = dict(nets or {})
    fusers: dict[str, Any] = {}
    for name in methods:
        if name in BASELINES:
            given = name == "highpass" and pet_fwhm_mm is not None  # a bad width is refused by the method itself
            fusers[name] = get_fuser(name, pet_fwhm_mm=pet_fwhm_mm) if given else get_fuser(name)
            continue
        if name not in ("asfe", *_ASFE_3D):
            fusers[name] = get_fuser(name)  # a registered method, with its own defaults (an unknown name: refused)
            continue
        mode = "volume" if name == "asfe-volume" else "slice"
        weights = weights_3d if mode == "volume" else weights_2d
        steps = mode_steps(mode, pet_consistency=o.pet_consistency, pet_detail_select=o.pet_detail_select,
                           pet_detail_ratio=o.pet_detail_ratio, detail_steer=o.detail_steer,
                           detail_fwhm_mm=o.detail_fwhm_mm)
        kwargs: dict[str, Any] = {"mode": mode, "device": o.device, "roi_size": tuple(o.roi_size), "stitch": o.stitch,
                                  "min_voxel_mm": o.min_voxel_mm, "max_voxel_mm": o.max_voxel_mm, "steps": steps}
        if mode == "volume":
            kwargs["roi_mm"] = o.roi_mm
        if name in nets:
            kwargs["net"] = nets[name]
        else:
            kwargs["weights"] = weights
        try:
            fusers[name] = AsfeFusionMethod(**kwargs)
        except FileNotFoundError as exc:
            flag = "--weights-3d" if mode == "volume" else "--weights-2d"
            raise Asfe3dInputError(None, f"{exc}; pass {flag} or leave {name} out of --methods") from None
    return fusers


# --------------------------------------------------------------------------------------------------- 2D cases


def hmif_case_pairs(folder: str | Path, split: str = "val", val_fraction: float = 0.2, gap: int = 2) -> list[Any]:
    """The HMIF pairs of one task folder, restricted to a split.

    Args:
        folder: a task folder holding ``MRI/`` and one of ``PET/``, ``SPECT/``, ``CT/``.
        split: ``val`` (default: the validation part that training holds out), ``train`` or ``all``.
        val_fraction: passed to :func:`asfe3d.data.hmif.split_pairs` (keep training's value, 0.2).
        gap: passed to :func:`asfe3d.data.hmif.split_pairs` (keep training's value, 2).

    Returns:
        The :class:`asfe3d.data.hmif.HmifPair` list.

    Raises:
        ValueError: unknown split.
        Asfe3dInputError: not a task folder, no pairs, or an empty split.
    """
    from asfe3d.data.hmif import list_pairs, split_pairs

    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    pairs = list_pairs(folder)
    if split != "all":
        train, val = split_pairs(pairs, val_fraction=val_fraction, gap=gap)
        pairs = val if split == "val" else train
    if not pairs:
        raise Asfe3dInputError(folder, f"the {split!r} split holds no pairs (cases too small to split?)")
    return pairs


def load_hmif_case(pair: Any) -> EvalCase:
    """Read one HMIF pair as an :class:`EvalCase` (gray MRI, PET luma, PET colour)."""
    from asfe3d.data.hmif import load_pair

    mri, other, rgb = load_pair(pair)
    return EvalCase(name=pair.name, mri=mri, other=other, rgb=rgb, kind=pair.other_kind, spacing=(1.0, 1.0))


# --------------------------------------------------------------------------------------------------- 3D cases


def read_pairs_csv(path: str | Path) -> list[dict[str, Any]]:
    """:func:`asfe3d.data.pairs.read_pairs_csv` (the pairs CSV is the data tier's; imported when called, so that
    importing this module imports no torch)."""
    from asfe3d.data.pairs import read_pairs_csv as read

    return read(path)


def load_volume_case(
    row: Mapping[str, Any], registration: str = "rigid", seed: int = 0, min_overlap: float = DEFAULT_MIN_OVERLAP
) -> EvalCase:
    """Load one volume pair: register the PET onto the MRI grid and normalise both to ``[0, 1]``.

    Args:
        row: a row of :func:`read_pairs_csv`.
        registration: ``rigid``, ``affine``, ``deformable`` or ``none`` (PET already aligned: only resampled).
        seed: registration sampling seed.
        min_overlap: smallest fraction of the MRI head the registered PET must cover.

    Returns:
        The :class:`EvalCase` (mask: the CSV's mask resampled onto the MRI grid, else the MRI's head mask).

    Raises:
        Asfe3dInputError: unreadable volumes, no overlap after registration, an empty mask.
        ValueError: unknown registration.
    """
    import torch
    from monai.data import MetaTensor

    from asfe3d.data.pairs import prepare_pair
    from asfe3d.io import read_volume, sitk_to_numpy_xyz
    from asfe3d.pipeline import auto_slice_axis
    from asfe3d.registration import resample_to_reference
    from asfe3d.transforms import FillOutsideMask, sitk_from_metatensor, volume_from_metatensor
    from asfe3d.transforms.array import WINDOW_KEY

    # the pipeline's own chain: load, head mask, register + resample + QC, normalise (one copy of the sequence)
    data = prepare_pair(row["mri"], row["pet"], registration=registration, seed=seed, min_overlap=min_overlap)
    mri_vol = volume_from_metatensor(data["mri"])
    mri_img = sitk_from_metatensor(data["mri"])
    transform = data["pet_transform"]
    mri01 = data["mri"][0].numpy()
    pet01 = data["pet"][0].numpy()
    pet_window = tuple(data["pet"].meta[WINDOW_KEY])
    head = data["mri_head"][0].numpy().astype(bool)
    # the PET's field of view: the chain extends the PET beyond it for the fusion (FillOutsideMaskd) and the command
    # blanks the fused image there; the metrics are taken inside it, where there is a PET to compare with
    fov = data["pet_fov"][0].numpy().astype(bool)
    pet_defect = region = None
    if row.get("pet_defect") is not None:
        lo, hi = pet_window
        moved = resample_to_reference(read_volume(row["pet_defect"], role="PET").image, mri_img, transform)
        pet_defect = np.clip((sitk_to_numpy_xyz(moved) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
        pet_defect = FillOutsideMask()(MetaTensor(torch.from_numpy(pet_defect[None]), affine=data["pet"].affine),
                                       fov)[0].numpy()  # extended as the base PET is: the two differ by the defect
        region_img = resample_to_reference(read_volume(row["defect"], role="mask").image, mri_img, None,
                                           interpolator="nearest")
        region = _in_view(sitk_to_numpy_xyz(region_img) > 0.5, fov, row["defect"], "defect region")
    mask = head
    if row.get("mask") is not None:
        mask_vol = read_volume(row["mask"], role="mask")
        on_grid = resample_to_reference(mask_vol.image, mri_img, None, interpolator="nearest")
        mask = _in_view(sitk_to_numpy_xyz(on_grid) > 0.5, fov, row["mask"], "mask")
    brain = None
    if row.get("brain") is not None:
        on_grid = resample_to_reference(read_volume(row["brain"], role="mask").image, mri_img, None,
                                        interpolator="nearest")
        brain = _in_view(sitk_to_numpy_xyz(on_grid) > 0.5, fov, row["brain"], "brain mask", least=2)
    mask = mask & fov
    spacing = tuple(float(v) for v in np.linalg.norm(np.asarray(mri_vol.affine_ras)[:3, :3], axis=0))
    return EvalCase(name=str(row["subject"]), mri=mri01, other=pet01, mask=mask, reference=mri_vol,
                    axis=auto_slice_axis(mri_vol.affine_ras), kind="PET", spacing=spacing, pet_defect=pet_defect,
                    defect_region=region, brain=brain)


def _in_view(mask: np.ndarray, fov: np.ndarray, path: Any, what: str, least: int = 1) -> np.ndarray:
    """A CSV mask on the MRI grid cut to the PET's field of view, refused in one line where nothing (or fewer than
    ``least`` voxels, what the band measures need) is left: it was checked before the cut, and a mask beyond the
    PET's view stopped the scoring with a traceback."""
    if not mask.any():
        raise Asfe3dInputError(path, f"{what} is empty on the MRI grid")
    cut = mask & fov
    if int(cut.sum()) < least:
        raise Asfe3dInputError(path, f"{what} holds {int(cut.sum())} voxel(s) inside the PET's field of view on the "
                                     f"MRI grid (at least {least} needed)")
    return cut


# --------------------------------------------------------------------------------------------------- scoring


def case_defect(case: EvalCase, fwhm_mm: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The defect of a case: the given one, else a 12 mm ball lowered by 30 % (:func:`asfe3d.metrics.place_defect`,
    inside the case's mask or the MRI's head mask) at the highest ball-averaged PET; ``fwhm_mm``: the placed ball
    as a PET of that resolution images it (``None``: cut in sharp)."""
    from asfe3d.metrics import place_defect
    from asfe3d.transforms.intensity import head_mask

    if case.pet_defect is not None and case.defect_region is not None:
        return case.pet_defect, case.defect_region
    mask = case.mask if case.mask is not None else head_mask(case.mri)
    return place_defect(case.other, mask, spacing=case.spacing[: case.ndim], fwhm_mm=fwhm_mm)


def case_brain(case: EvalCase) -> np.ndarray | None:
    """Where MRI detail retention and PET consistency are measured: the case's brain mask, else the brain found
    from the PET (:func:`asfe3d.metrics.brain_region`) inside the case's mask or the MRI's head mask; ``None`` when
    that leaves fewer than 64 voxels (e.g. a blank image)."""
    from asfe3d.metrics import brain_region
    from asfe3d.transforms.intensity import head_mask

    if case.brain is not None:
        return case.brain
    head = case.mask if case.mask is not None else head_mask(case.mri)
    brain = brain_region(case.other, head, spacing=case.spacing[: case.ndim])
    return brain if int(brain.sum()) >= 64 else None


def evaluate_case(case: EvalCase, fusers: Mapping[str, Any], defect: bool = True,
                  defect_fwhm_mm: float | None = None, pet_fwhm_mm: float | None = None) -> CaseResult:
    """Fuse one case with every method and score each result.

    Args:
        case: the pair.
        fusers: ``{name: FusionMethod}`` (from :func:`build_fusers`).
        defect: also fuse the pair with a focal PET defect (:func:`case_defect`) and report the defect transfer
            ``DT`` (doubles the fusion time); a case too small for the defect gets ``DT`` = NaN.
        defect_fwhm_mm: a placed defect blurred by a Gaussian of this FWHM (mm), as a PET images a lesion
            (:func:`case_defect`); ``None``: cut in sharp. A case's given defect is used as it is.

    Returns:
        :class:`CaseResult`: one row per method (11 metrics, ``DETAIL`` (MRI detail retention) and ``PETC`` (PET
        consistency) in :func:`case_brain`'s region, ``TPC`` for volumes, ``DT`` with ``defect``, ``EMPTY``
        (the fused 99.9th percentile where both inputs are exactly 0; NaN when there is no such voxel), plus
        ``seconds``) and the fused images.

    Raises:
        ValueError: no methods, or a 2D/3D mismatch between the case and a method.
    """
    from asfe3d.metrics import (
        METRIC_NAMES,
        PET_FWHM_MM,
        defect_transfer,
        empty_output,
        fusion_metrics,
        mri_detail,
        pet_consistency,
    )

    if not fusers:
        raise ValueError("evaluate_case needs at least one fusion method, got none")
    band_mm = PET_FWHM_MM if pet_fwhm_mm is None else pet_fwhm_mm
    if not is_real(band_mm) or not (math.isfinite(band_mm) and band_mm > 0):
        raise ValueError(f"pet_fwhm_mm must be None or a width > 0 (mm), got {pet_fwhm_mm!r}")
    result = CaseResult()
    pet_defect = region = None
    if defect:
        try:
            pet_defect, region = case_defect(case, defect_fwhm_mm)
        except ValueError as exc:  # an image too small for the 12 mm ball: no DT for this case
            import logging

            logging.getLogger("asfe3d").warning("%s: no defect transfer (%s)", case.name, exc)
    brain = case_brain(case)
    for name, fuser in fusers.items():
        uses_spacing = getattr(fuser, "uses_spacing", False)  # a method that works in mm (highpass, asfe's band)
        if case.ndim == 3 and getattr(fuser, "mode", None) == "slice":  # the case's axis, per call (stateless)
            fuser = functools.partial(fuser, slice_axis=case.axis)
        t = time.perf_counter()
        if uses_spacing:  # asked of the method itself: a partial above has no such attribute
            fuser = functools.partial(fuser, spacing=case.spacing[: case.ndim])
        fused = np.clip(np.asarray(fuser(case.mri, case.other), dtype=np.float32), 0.0, 1.0)
        seconds = time.perf_counter() - t
        values = fusion_metrics(fused, case.mri, case.other, mask=case.mask, names=METRIC_NAMES)
        row: dict[str, Any] = {"case": case.name, "method": name, **{k: float(values[k]) for k in METRIC_NAMES}}
        row["DETAIL"] = row["PETC"] = float("nan")  # NaN: no brain region to measure them in
        if brain is not None:
            sp = case.spacing[: case.ndim]
            row["DETAIL"] = mri_detail(fused, case.mri, brain, sp, band_mm)
            row["PETC"] = pet_consistency(fused, case.other, brain, sp, band_mm)
        if case.ndim == 3:
            row["TPC"] = _tpc(fused, case)
        if defect:
            row["DT"] = float("nan")
        if pet_defect is not None:
            fused_defect = np.clip(np.asarray(fuser(case.mri, pet_defect), dtype=np.float32), 0.0, 1.0)
            row["DT"] = defect_transfer(fused, fused_defect, case.other, pet_defect, region)
        row["EMPTY"] = empty_output(fused, case.mri, case.other)
        row["seconds"] = seconds
        result.rows.append(row)
        result.fused[name] = fused
    return result


def _tpc(fused: np.ndarray, case: EvalCase) -> float:
    """The case's TPC, NaN where it cannot be measured: a mask without three consecutive voxels along the slicing
    axis (an ROI drawn on one slice), or sources without structure. The inputs are the case's own (one grid, finite,
    a checked non-empty mask), so those are the only ways it fails; they stopped the run with a traceback."""
    from asfe3d.metrics import UndefinedMetric, through_plane_consistency

    try:
        return through_plane_consistency(fused, case.mri, case.other, mask=case.mask, axis=case.axis)
    except UndefinedMetric:
        return float("nan")


def _metric_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    from asfe3d.metrics import METRIC_NAMES

    cols = [m for m in METRIC_NAMES if any(m in r for r in rows)]
    extra = ("TPC", *EXTRA_HIGHER, "EMPTY")
    return cols + [c for c in extra if any(c in r for r in rows)]


def mean_table(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean of every metric per method, methods in first-seen order.

    Args:
        rows: per-case rows from :func:`evaluate_case`.

    Returns:
        ``{method: {metric: mean over cases}}`` (metrics: the 11 in ``METRIC_NAMES`` order, then ``TPC``, ``DT``,
        ``EMPTY``); NaN values (no defect transfer or no empty voxel in a case) are left out of the means.

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("mean_table needs at least one row, got 0")
    cols = _metric_columns(rows)
    methods: list[str] = []
    for r in rows:
        if r["method"] not in methods:
            methods.append(r["method"])
    def _mean(values: list[float]) -> float:  # NaN entries (e.g. no DT for a blank image) are left out
        finite = [v for v in values if not math.isnan(v)]
        return float(np.mean(finite)) if finite else float("nan")

    return {m: {c: _mean([float(r[c]) for r in rows if r["method"] == m]) for c in cols} for m in methods}


def _better(a: float, b: float, metric: str) -> bool:
    return a < b if metric in LOWER_IS_BETTER else a > b


def count_wins(
    means: Mapping[str, Mapping[str, float]], candidate: str, opponent: str, metrics: Sequence[str] | None = None
) -> list[str]:
    """The metrics on which ``candidate`` is strictly better than ``opponent`` (ties are not wins).

    Args:
        means: ``{method: {metric: value}}`` (e.g. from :func:`mean_table`).
        candidate: the method under test.
        opponent: the method it is compared with.
        metrics: which metrics count (default: the 11 of ``METRIC_NAMES``, the literature's "won out of 11").

    Returns:
        The metrics won, in ``metrics`` order.

    Raises:
        ValueError: a method or metric missing from ``means``.
    """
    from asfe3d.metrics import METRIC_NAMES

    metrics = list(METRIC_NAMES if metrics is None else metrics)
    for m in (candidate, opponent):
        if m not in means:
            raise ValueError(f"method {m!r} is not in the table (have {list(means)})")
        lacking = [k for k in metrics if k not in means[m]]
        if lacking:
            raise ValueError(f"method {m!r} has no value for {lacking}")
    return [k for k in metrics if _better(float(means[candidate][k]), float(means[opponent][k]), k)]


def win_table(means: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, int]]:
    """For every method that is not a classic baseline (``asfe*``, a registered one), the number of the 11 metrics it
    wins against each other method."""
    candidates = [m for m in means if m not in BASELINES]
    return {c: {o: len(count_wins(means, c, o)) for o in means if o != c} for c in candidates}


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}" if abs(value) >= 1 else f"{value:.4f}"


def _partial_columns(rows: Sequence[Mapping[str, Any]], cols: Any, n_cases: int) -> str:
    """The columns whose means leave cases out (their value is NaN there: no brain region for DETAIL/PETC, no defect
    for DT, no empty voxel for EMPTY), as a sentence; empty when every column has every case."""
    partial = []
    for c in cols:
        kept = len({r["case"] for r in rows if isinstance(r.get(c), (int, float)) and math.isfinite(r[c])})
        if kept < n_cases:
            partial.append(f"{c} over {kept}")
    return (f" Means that leave cases out (NaN there): {', '.join(partial)} of the {n_cases}." if partial else "")


def markdown_summary(
    rows: Sequence[Mapping[str, Any]], title: str | None = None, notes: Sequence[str] = ()
) -> str:
    """Markdown report of per-case rows: mean table (best per metric in bold), wins, and the per-metric gaps.

    Args:
        rows: per-case rows from :func:`evaluate_case`.
        title: a heading line (``## title``).
        notes: lines printed under the heading.

    Returns:
        The markdown text.

    Raises:
        ValueError: no rows.
    """
    from asfe3d.metrics import METRIC_NAMES

    means = mean_table(rows)
    cols = next(iter(means.values())).keys()
    n_cases = len({r["case"] for r in rows})
    lines: list[str] = []
    if title:
        lines += [f"## {title}", ""]
    lines += [*notes, *([""] if notes else [])]
    lines.append(f"Means over {n_cases} case(s); best per metric in **bold** (all higher-is-better"
                 + (", except TPC: lower is better, ~1 = no through-plane striping" if "TPC" in cols else "") + ")."
                 + (" DT: defect transfer, the fraction of a 30 % focal PET lowering kept in the fused image (1 = all)."
                    if "DT" in cols else "")
                 + (" EMPTY: fused 99.9th percentile where both inputs are exactly 0 (lower is better; nan = no such"
                    " voxel)." if "EMPTY" in cols else "")
                 + _partial_columns(rows, cols, n_cases))
    lines += ["", "| method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    best = {}
    for c in cols:
        vals = [means[m][c] for m in means if math.isfinite(means[m][c])]
        best[c] = (min(vals) if c in LOWER_IS_BETTER else max(vals)) if vals else float("nan")
    for m, vals in means.items():
        cells = [f"**{_fmt(vals[c])}**" if vals[c] == best[c] else _fmt(vals[c]) for c in cols]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    wins = win_table(means)
    if wins:
        opponents = [m for m in means]
        lines += ["", f"Metrics won out of {len(METRIC_NAMES)} (strictly better mean; row method vs column method):",
                  "", "| method | " + " | ".join(f"vs {o}" for o in opponents) + " |",
                  "|---|" + "---|" * len(opponents)]
        for c, per in wins.items():
            lines.append(f"| {c} | " + " | ".join("-" if o == c else f"{per[o]}/{len(METRIC_NAMES)}"
                                                  for o in opponents) + " |")
        lines += ["", "Per-metric difference (row method minus baseline; positive = better for all but TPC and EMPTY):", "",
                  "| method | baseline | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
        for c in wins:
            for o in means:
                if o == c or o.startswith("asfe"):
                    continue
                lines.append(f"| {c} | {o} | " + " | ".join(f"{means[c][k] - means[o][k]:+.4g}" for k in cols) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------- outputs


def write_rows_csv(rows: Sequence[Mapping[str, Any]], path: str | Path, overwrite: bool = False) -> Path:
    """Write per-case rows (``case, method``, metrics, ``seconds``) as CSV, atomically.

    Raises:
        ValueError: no rows.
        Asfe3dInputError: the path exists (without ``overwrite``) or is a folder.
    """
    from asfe3d.io import atomic_output

    if not rows:
        raise ValueError("no rows to write")
    cols = ["case", "method", *_metric_columns(rows), "seconds"]
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
            writer.writeheader()
            for r in rows:
                writer.writerow({k: (repr(float(v)) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()})
    return Path(path)


def fused_output_path(outdir: str | Path, method: str, case: EvalCase | str, ndim: int = 2) -> Path:
    """Where ``--save-fused`` puts one method's result: ``OUTDIR/<method>/<input file name>`` (2D, as PNG) or
    ``OUTDIR/<method>/<subject>.nii.gz`` (3D)."""
    name = case.name if isinstance(case, EvalCase) else str(case)
    if ndim == 3:
        return Path(outdir) / method / f"{name}.nii.gz"
    return Path(outdir) / method / f"{Path(name).stem}.png"


def _colour(fused_y: np.ndarray, mri: np.ndarray, pet_rgb: np.ndarray) -> np.ndarray:
    """The fused luma with the PET's chroma (what :func:`asfe3d.fusion.fuse_colour` does, from a computed Y)."""
    from asfe3d.fusion import fuse_colour

    return fuse_colour(mri, pet_rgb, lambda _a, _b: fused_y)


def save_fused_case(case: EvalCase, fused: Mapping[str, np.ndarray], outdir: str | Path, overwrite: bool = False) -> list[Path]:
    """Write each method's fused image of one case under ``OUTDIR/<method>/``.

    2D: 8-bit PNG (gray, or RGB with the PET's chroma for colour PET/SPECT) with the input's file name (as PNG).
    3D: float32 NIfTI in ``[0, 1]`` on the MRI's grid (:func:`asfe3d.io.write_like`), named ``<subject>.nii.gz``.

    Returns:
        The written paths.

    Raises:
        Asfe3dInputError: an output exists (without ``overwrite``).
    """
    from PIL import Image

    from asfe3d.io import atomic_output, write_like
    from asfe3d.metrics import to_8bit

    written = []
    for method, img in fused.items():
        path = fused_output_path(outdir, method, case, case.ndim)
        path.parent.mkdir(parents=True, exist_ok=True)
        if case.ndim == 3:
            written.append(write_like(img.astype(np.float32), case.reference, path, overwrite=overwrite))
            continue
        arr = _colour(img, case.mri, case.rgb) if case.rgb is not None else img
        with atomic_output(path, overwrite=overwrite) as tmp:  # the grey levels the metrics scored (halves go up;
            Image.fromarray(to_8bit(arr).astype(np.uint8)).save(tmp, format="PNG")  # np.round sent them to even)
        written.append(path)
    return written


def figure_panels(case: EvalCase, fused: Mapping[str, np.ndarray], colormap: str = "hot") -> list[tuple[str, list[np.ndarray]]]:
    """Display rows for one case: ``[(row label, [MRI, PET, method 1, ...])]``, colour where the PET is colour.

    2D: one row. 3D: an axial and a coronal row through the head mask's centre (reoriented to RAS for display); the
    coronal row shows through-plane striping. Gray PET volumes are shown with ``colormap`` and the fused luma with
    that colour map's chroma, as ``asfe3d fuse --save-rgb`` does.
    """
    from asfe3d.fusion import apply_colormap
    from asfe3d.fusion.colour import colour_window

    if case.ndim == 2:
        pet = case.rgb if case.rgb is not None else case.other
        outs = [_colour(f, case.mri, case.rgb) if case.rgb is not None else f for f in fused.values()]
        return [(case.name, [case.mri, pet, *outs])]
    from asfe3d.visualize import canonical_view, triplanar

    affine = case.reference.affine_ras if case.reference is not None else np.eye(4)
    pet_rgb = apply_colormap(case.other, colormap, colour_window(case.other, case.mask))
    vols = [case.mri, pet_rgb, *[_colour(f, case.mri, pet_rgb) for f in fused.values()]]
    vols = [canonical_view(v, affine) for v in vols]
    mask = canonical_view(case.mask.astype(np.uint8), affine) if case.mask is not None else np.ones(vols[0].shape, np.uint8)
    centre = tuple(int(round(c)) for c in np.argwhere(mask > 0).mean(axis=0))
    views = [triplanar(v, centre) for v in vols]  # [axial, coronal, sagittal] each
    return [(f"{case.name} axial", [v[0] for v in views]), (f"{case.name} coronal", [v[1] for v in views])]


def save_figure(
    panels: Sequence[tuple[str, list[np.ndarray]]], methods: Sequence[str], path: str | Path, overwrite: bool = False,
    title: str | None = None,
) -> Path:
    """PNG grid: one row per panel row, columns MRI, PET and one per method.

    Raises:
        ValueError: no panels, or a row whose length does not match ``2 + len(methods)``.
        Asfe3dInputError: the path exists (without ``overwrite``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asfe3d.io import atomic_output

    if not panels:
        raise ValueError("save_figure needs at least one row of panels")
    labels = ["MRI", "PET", *methods]
    for label, imgs in panels:
        if len(imgs) != len(labels):
            raise ValueError(f"row {label!r} has {len(imgs)} images, expected {len(labels)} ({labels})")
    nrow, ncol = len(panels), len(labels)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.9 * ncol, 1.9 * nrow + (0.4 if title else 0)), squeeze=False)
    for i, (label, imgs) in enumerate(panels):
        for j, img in enumerate(imgs):
            ax = axes[i, j]
            ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(labels[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        with atomic_output(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return Path(path)

