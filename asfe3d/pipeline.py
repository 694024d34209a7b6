"""The end-to-end MRI/PET fusion of one subject: the function that the CLI, the cohort runner and the bundle call.

Steps (each timed): load both volumes -> register the PET onto the MRI (SimpleITK) -> resample it onto the MRI grid
-> normalise both to ``[0, 1]`` (robust percentiles in the MRI's head mask) -> fuse -> write on the MRI grid with
the MRI's header. Everything after resampling lives on the MRI voxel grid, so the MRI is the only geometry source.

Output intensities (``output_scale``): ``"mri"`` (default) maps the fused ``[0, 1]`` image back through the MRI's
normalisation window, ``fused * (hi - lo) + lo``, so the fused volume reads like the MRI in a viewer; ``"unit"``
keeps ``[0, 1]``.
"""

from __future__ import annotations

import functools
import logging
import re
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from asfe3d.defaults import (
    DEFAULT_COLORMAP,
    DEFAULT_METHOD,
    DEFAULT_MODE,
    DEFAULT_QC,
    DEFAULT_REGISTRATION,
    QC_MODES,
    REGISTRATION_CHOICES,
)

__all__ = [
    "FuseResult", "RECORD_KEYS", "fuse_pair", "preprocessing_steps", "build_preprocessing", "default_output_path",
    "derived_output_paths", "auto_slice_axis",
]

from asfe3d.transforms.array import auto_slice_axis  # noqa: E402 - re-exported

logger = logging.getLogger("asfe3d")

OUTPUT_SCALES = ("mri", "unit")



@dataclass
class FuseResult:
    """What one :func:`fuse_pair` run produced.

    Attributes:
        output: the fused volume.
        outputs: every written file by kind (``fused``, ``rgb``, ``registered_pet``, ``transform``, ``preview``).
        timings: seconds per step (``load``, ``register``, ``resample``, ``normalise``, ``fuse``, ``save``, ``total``).
        registration: method, final Mattes MI metric, iterations and stop condition.
        overlap: fraction of the MRI head covered by the registered PET.
        peak_memory_mb: the process's peak resident memory so far.
        fusion: the fusion method's settings.
        inputs: what the readers reported per input (``mri``, ``pet``): format, frames averaged or taken, etc.
        transform: the registration transform (MRI points -> PET points).
    """

    output: Path
    outputs: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    registration: dict[str, Any] = field(default_factory=dict)
    overlap: float = float("nan")
    peak_memory_mb: float = float("nan")
    fusion: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    transform: Any = None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def default_output_path(mri_path: str | Path) -> Path:
    """``<mri stem>_fused.nii.gz`` beside the MRI (beside the folder for a DICOM series)."""
    mri_path = Path(mri_path)
    return mri_path.parent / f"{_stem(mri_path)}_fused.nii.gz"


def derived_output_paths(output: str | Path) -> dict[str, Path]:
    """Default names of the optional outputs, next to the fused volume ``<stem>.nii.gz``."""
    output = Path(output)
    stem = _stem(output)
    return {
        "rgb": output.with_name(f"{stem}_rgb.nii.gz"),
        "registered_pet": output.with_name(f"{stem}_pet_on_mri.nii.gz"),
        "transform": output.with_name(f"{stem}_pet_to_mri.tfm"),
        "preview": output.with_name(f"{stem}_preview.png"),
        "report": output.with_name(f"{stem}_report.html"),
    }


#: output kind (as in :class:`FuseResult` ``outputs``) -> the chain's data key, which also names the output in the
#: completion record
RECORD_KEYS = {"fused": "fused", "registered_pet": "pet_on_mri", "rgb": "fused_rgb", "transform": "pet_transform",
               "preview": "preview", "report": "report"}


def _resolve(option: bool | str | Path | None, default: Path) -> Path | None:
    if option is None or option is False:
        return None
    if option is True:
        return default
    return Path(option)


def _peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _check_settings(
    *, method: str, mode: str, registration: str, qc: str, output_scale: str, colormap: str, seed: Any,
    roi_size: Sequence[int] | None, device: str, slice_axis: int | str, pet_frame: int | None, min_overlap: float,
    registration_threads: int | None, pet_units: str | None = None, nifti_geometry: str = "auto",
) -> None:
    """Refuse bad option values before any file is read (one line each, quoting the value)."""
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.fusion.base import available_methods

    def bad(option: str, problem: str) -> Asfe3dInputError:
        return Asfe3dInputError(None, f"{option}: {problem}")

    if method not in available_methods():
        raise bad("method", f"unknown fusion method {method!r}; choose one of {available_methods()}")
    if mode not in ("slice", "volume"):
        raise bad("mode", f"must be 'slice' or 'volume', got {mode!r}")
    if registration not in REGISTRATION_CHOICES:
        raise bad("registration", f"must be one of {REGISTRATION_CHOICES}, got {registration!r}")
    if qc not in QC_MODES:
        raise bad("qc", f"must be one of {QC_MODES}, got {qc!r}")
    if output_scale not in OUTPUT_SCALES:
        raise bad("output_scale", f"must be one of {OUTPUT_SCALES}, got {output_scale!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**31 - 1:
        raise bad("seed", f"must be an integer in [0, 2147483646], got {seed!r}")
    if roi_size is not None:
        roi = tuple(roi_size)
        if len(roi) != 3 or not all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) and r >= 1
                                    for r in roi):
            raise bad("roi_size", f"must be three integers >= 1, got {roi_size!r}")
    if slice_axis != "auto" and slice_axis not in (0, 1, 2):
        raise bad("slice_axis", f"must be 'auto', 0, 1 or 2, got {slice_axis!r}")
    if pet_frame is not None and (isinstance(pet_frame, bool) or not isinstance(pet_frame, (int, np.integer))
                                  or pet_frame < 0):
        raise bad("pet_frame", f"must be an integer >= 0, got {pet_frame!r}")
    if pet_units not in (None, "suv"):
        raise bad("pet_units", f"must be None or 'suv', got {pet_units!r}")
    if nifti_geometry not in ("auto", "sform", "qform"):
        raise bad("nifti_geometry", f"must be 'auto', 'sform' or 'qform', got {nifti_geometry!r}")
    if not (isinstance(min_overlap, (int, float)) and 0.0 <= min_overlap <= 1.0):
        raise bad("min_overlap", f"must be a fraction in [0, 1], got {min_overlap!r}")
    if registration_threads is not None and (isinstance(registration_threads, bool)
                                             or not isinstance(registration_threads, int)
                                             or registration_threads < 1):
        raise bad("registration_threads", f"must be None or an integer >= 1, got {registration_threads!r}")
    import matplotlib

    if colormap not in matplotlib.colormaps:
        raise bad("colormap", f"unknown colour map {colormap!r} (matplotlib names such as hot, inferno, viridis)")
    if not isinstance(device, str) or not (device in ("auto", "cpu") or re.fullmatch(r"cuda(:\d+)?", device)):
        raise bad("device", f"must be auto, cpu or cuda[:N], got {device!r}")
    if method == "asfe" and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise bad("device", f"{device!r} asked for, but CUDA is not available on this machine")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise bad("device", f"{device!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")


def _file_stamp(path: str | Path | None) -> tuple[int, int] | None:
    """Size and modification time of a file (``None`` for none): a changed weight file is read again."""
    if path is None:
        return None
    st = Path(path).stat()
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=4)
def _cached_fuser(method: str, mode: str, weights: str | Path | None, stamp: tuple[int, int] | None, device: str,
                  roi_size: tuple[int, ...] | None, progress: bool) -> Any:
    """One network per settings and weight file for the whole process (a cohort builds it once, not per subject;
    the fuser keeps no state between volumes)."""
    from asfe3d.fusion import get_fuser

    return get_fuser(method, mode=mode, weights=weights, device=device, roi_size=roi_size, progress=progress)


def _build_fuser(method: str, mode: str, weights: str | Path | None, device: str, roi_size: Any,
                 progress: bool) -> Any:
    """The fusion method, with weight problems reported against the weight file (before any heavy work)."""
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.fusion import get_fuser

    if method != "asfe":
        return get_fuser(method)
    if weights is not None and not Path(weights).is_file():
        raise Asfe3dInputError(weights, "weight file does not exist")
    try:
        from asfe3d.fusion.weights import check_weights
    except ImportError:  # pragma: no cover - older weights module
        check_weights = None
    if check_weights is not None and weights is not None:
        check_weights(weights, mode)
    try:
        return _cached_fuser(method, mode, weights, _file_stamp(weights), device,
                             None if roi_size is None else tuple(roi_size), progress)
    except Asfe3dInputError:
        raise
    except (ValueError, KeyError, RuntimeError) as exc:
        where = weights if weights is not None else None
        raise Asfe3dInputError(where, f"cannot use these weights for mode {mode!r}: {exc}") from None


def preprocessing_steps(
    *, registration: str = DEFAULT_REGISTRATION, qc: str = DEFAULT_QC, seed: int = 0,
    registration_threads: int | None = 1, min_overlap: float = 0.3, mri_series: str | None = None,
    pet_series: str | None = None, pet_frame: int | None = None, allow_nonfinite: bool = False,
    keep_registered_pet: bool = False, dicom_strict: bool = False, nifti_geometry: str = "auto",
    pet_units: str | None = None, pet_sidecar: str | Path | None = None, frame_realign: bool = True,
    frame_reference: str | int = "mean", mri_frame: int | None = None, progress: bool = False,
) -> list[tuple[str, list[Any]]]:
    """The chain's steps up to the network input, grouped by timed step (``load``, ``register``, ``normalise``).

    On ``{"mri": path, "pet": path}`` they give ``"image"`` ``(2, X, Y, Z)`` = [MRI, PET] in ``[0, 1]`` on the MRI
    grid, ``"mri_head"``, ``"pet_transform"``, ``"pet_registration"`` (with the QC verdict) and, with
    ``keep_registered_pet``, ``"pet_on_mri"`` (the registered PET in its own units).

    Args:
        registration: ``rigid``, ``affine``, ``deformable`` or ``none``.
        qc: ``warn`` or ``strict``.
        seed: registration sampling seed.
        registration_threads: ITK threads (1: bitwise reproducible).
        min_overlap: smallest fraction of the MRI head the registered PET must cover.
        mri_series: DICOM SeriesInstanceUID of the MRI.
        pet_series: DICOM SeriesInstanceUID of the PET.
        pet_frame: a 4D PET's frame (``None``: the mean of the realigned frames).
        allow_nonfinite: replace NaN/Inf by 0 instead of refusing.
        keep_registered_pet: keep a copy of the registered PET before normalisation.
        dicom_strict: refuse DICOM series with gaps or gantry tilt instead of resampling them.
        nifti_geometry: ``auto``, ``sform`` or ``qform`` (which NIfTI geometry to trust when they disagree).
        pet_units: ``None`` (as stored) or ``"suv"`` (body-weight SUV from the header or sidecar).
        pet_sidecar: the PET's JSON sidecar (BIDS or dcm2niix) for its units, dose and times.
        frame_realign: realign a dynamic PET's frames before averaging them.
        frame_reference: ``"mean"`` or a frame index to realign to.
        mri_frame: a 4D MRI's frame (``None``: a 4D MRI is refused before registration).
        progress: show the registration's progress on stderr.

    Returns:
        ``[(step name, [transforms])]``.
    """
    from monai.transforms import ConcatItemsd, CopyItemsd

    from asfe3d.transforms import HeadMaskd, LoadVolumed, RegisterToReferenced, RobustNormalized

    return [
        ("load", [LoadVolumed(["mri", "pet"], series_uid={"mri": mri_series, "pet": pet_series},
                              frame={"mri": mri_frame, "pet": pet_frame}, allow_nonfinite=allow_nonfinite,
                              dicom_strict=dicom_strict, nifti_geometry=nifti_geometry,
                              key_kwargs={"pet": {"pet_units": pet_units, "pet_sidecar": pet_sidecar,
                                                  "frame_realign": frame_realign,
                                                  "frame_reference": frame_reference}})]),
        ("register", [HeadMaskd("mri"),
                      RegisterToReferenced("pet", ref_key="mri", mask_key="mri_head", method=registration,
                                           seed=seed, threads=registration_threads, min_overlap=min_overlap,
                                           qc=qc, progress=progress)]
                     + ([CopyItemsd("pet", names="pet_on_mri")] if keep_registered_pet else [])),
        ("normalise", [RobustNormalized(["mri", "pet"], mask_key="mri_head"),
                       ConcatItemsd(["mri", "pet"], name="image")]),
    ]


def build_preprocessing(**kwargs: Any) -> Any:
    """:func:`preprocessing_steps` as one MONAI ``Compose`` (for evaluation, the bundle and users' workflows)."""
    from monai.transforms import Compose

    return Compose([t for _, transforms in preprocessing_steps(**kwargs) for t in transforms])


def fuse_pair(
    mri: str | Path,
    pet: str | Path,
    output: str | Path | None = None,
    *,
    method: str = DEFAULT_METHOD,
    mode: str = DEFAULT_MODE,
    weights: str | Path | None = None,
    registration: str = DEFAULT_REGISTRATION,
    qc: str = DEFAULT_QC,
    device: str = "auto",
    slice_axis: int | str = "auto",
    roi_size: Sequence[int] | None = None,
    mri_series: str | None = None,
    pet_series: str | None = None,
    pet_frame: int | None = None,
    save_registered_pet: bool | str | Path = False,
    save_rgb: bool | str | Path = False,
    colormap: str = DEFAULT_COLORMAP,
    preview: bool | str | Path = False,
    report: bool | str | Path = False,
    save_transform: bool | str | Path = False,
    output_scale: str = "mri",
    overwrite: bool = False,
    allow_nonfinite: bool = False,
    min_overlap: float = 0.3,
    seed: int = 0,
    registration_threads: int | None = 1,
    progress: bool = False,
    record_extra: dict[str, Any] | None = None,
    dicom_strict: bool = False,
    nifti_geometry: str = "auto",
    pet_units: str | None = None,
    pet_sidecar: str | Path | None = None,
    frame_realign: bool = True,
    frame_reference: str | int = "mean",
    mri_frame: int | None = None,
) -> FuseResult:
    """Fuse one MRI/PET pair into a volume on the MRI's grid.

    Every option is checked, every output path is checked (suffix, writable folder, not an input, not an existing
    file unless ``overwrite``), and the weights are loaded before any volume is read. The outputs are written as a
    set (:class:`asfe3d.io.OutputSet`): nothing replaces an earlier file until every output is complete, so a
    failure or an interruption keeps the earlier outputs. The completion record ``<fused stem>.json`` (inputs,
    settings, registration and its quality verdict, outputs) is written last.

    Args:
        mri: MRI file (NIfTI, MHA/NRRD) or DICOM series folder; the geometry reference.
        pet: PET file or DICOM folder (4D: frames averaged unless ``pet_frame``).
        output: fused NIfTI path; default ``<mri stem>_fused.nii.gz`` beside the MRI.
        method: ``mean``, ``max``, ``wavelet``, ``laplacian`` or ``asfe`` (default :data:`DEFAULT_METHOD`).
        mode: for ``asfe``: ``slice`` (2D network, SliceInferer) or ``volume`` (3D network, SlidingWindowInferer).
        weights: for ``asfe``: a weight file instead of the shipped one.
        registration: ``rigid``, ``affine``, ``deformable`` or ``none``.
        qc: ``warn`` (a registration judged failed is written with a warning) or ``strict`` (refused:
            :class:`~asfe3d.errors.Asfe3dInputError`, no output).
        device: ``auto``, ``cpu`` or ``cuda[:N]`` (for ``asfe``).
        slice_axis: for ``asfe`` slice mode: ``auto`` (the MRI's axial voxel axis) or 0, 1, 2.
        roi_size: for ``asfe`` volume mode: sliding-window size (``None``: the whole volume in one pass when it fits,
            else 128^3 windows).
        mri_series: DICOM SeriesInstanceUID when the MRI folder holds several series.
        pet_series: the same for the PET.
        pet_frame: take this 0-based frame of a 4D PET instead of the mean.
        save_registered_pet: ``True`` (default name) or a path: write the PET resampled on the MRI grid.
        save_rgb: ``True`` or a path: write a colour (RGB24) volume, the PET colour map fused over the MRI in Y.
        colormap: matplotlib colour map for the RGB volume and the preview.
        preview: ``True`` or a path: write a tri-planar PNG (MRI / registered PET / fused).
        report: ``True`` or a path: write a self-contained HTML report (registration check, fused and colour
            images, QC verdict, timings, inputs, settings).
        save_transform: ``True`` or a path: write the ``.tfm`` (maps MRI points to PET points).
        output_scale: ``mri`` (fused mapped back through the MRI's window) or ``unit`` (``[0, 1]``).
        overwrite: replace existing outputs (never an input).
        allow_nonfinite: replace NaN/Inf voxels by 0 with a warning instead of refusing the input.
        min_overlap: smallest fraction of the MRI head the registered PET must cover.
        seed: seed for registration sampling (same inputs and seed give the same output).
        registration_threads: ITK threads for the registration: 1 (default) is bitwise reproducible, ``None`` uses
            every core (faster; the output then varies in its last digits between runs).
        progress: show progress bars.
        record_extra: more JSON-able fields for the completion record (e.g. BIDS ``Sources``).
        dicom_strict: refuse DICOM series with gaps or gantry tilt instead of resampling them.
        nifti_geometry: ``auto``, ``sform`` or ``qform``: which NIfTI geometry to use when they disagree.
        pet_units: ``None`` (as stored) or ``"suv"`` (body-weight SUV; the registered PET is saved in SUV).
        pet_sidecar: the PET's JSON sidecar (BIDS or dcm2niix) for units, dose and times.
        frame_realign: realign a dynamic PET's frames (rigid) before averaging them.
        frame_reference: ``"mean"`` or the frame index the frames are realigned to.
        mri_frame: take this 0-based frame of a 4D MRI (without it a 4D MRI is refused).

    Returns:
        :class:`FuseResult`.

    Raises:
        Asfe3dInputError: bad settings, input files or output paths, or (``qc="strict"``) a registration judged
            failed; one line naming the file (or option) and the problem.
    """
    from monai.transforms import CopyItemsd

    from asfe3d.errors import Asfe3dInputError
    from asfe3d.io import output_lock
    from asfe3d.io.volume import check_input_kind
    from asfe3d.transforms import ColourFused, Fused, RestoreIntensityd, SaveLikeReferenced

    t_start = time.perf_counter()
    _check_settings(method=method, mode=mode, registration=registration, qc=qc, output_scale=output_scale,
                    colormap=colormap, seed=seed, roi_size=roi_size, device=device, slice_axis=slice_axis,
                    pet_frame=pet_frame, min_overlap=min_overlap, registration_threads=registration_threads,
                    pet_units=pet_units, nifti_geometry=nifti_geometry)
    if mri_frame is not None and (isinstance(mri_frame, bool) or not isinstance(mri_frame, (int, np.integer))
                                  or mri_frame < 0):
        raise Asfe3dInputError(None, f"mri_frame: must be an integer >= 0, got {mri_frame!r}")
    if pet_sidecar is not None and not Path(pet_sidecar).is_file():
        raise Asfe3dInputError(pet_sidecar, "PET sidecar does not exist")
    mri_path, pet_path = Path(mri), Path(pet)
    for role, path in (("MRI", mri_path), ("PET", pet_path)):
        if not path.exists():
            raise Asfe3dInputError(path, f"{role} input does not exist")
        check_input_kind(path, role)
    output = Path(output) if output is not None else default_output_path(mri_path)
    derived = derived_output_paths(output)
    extra = {
        "registered_pet": _resolve(save_registered_pet, derived["registered_pet"]),
        "rgb": _resolve(save_rgb, derived["rgb"]),
        "transform": _resolve(save_transform, derived["transform"]),
        "preview": _resolve(preview, derived["preview"]),
        "report": _resolve(report, derived["report"]),
    }
    # data key -> path of every volume/transform output (the first names the completion record)
    saved = {"fused": output}
    for kind in ("registered_pet", "rgb", "transform"):
        if extra[kind] is not None:
            saved[RECORD_KEYS[kind]] = extra[kind]
    saver = SaveLikeReferenced(saved, ref_key="mri", preview=extra["preview"], colormap=colormap,
                               overwrite=overwrite, preview_keys={"mri": "mri", "pet": "pet", "fused": "fused_unit",
                                                                  "rgb": "fused_rgb"}, report=extra["report"])
    # refuse bad output paths (suffix, folder, inputs, existing files) before any heavy work
    _check_outputs(saved, {"preview": (extra["preview"], "png"), "report": (extra["report"], "html")}, overwrite,
                   _protected_inputs(mri_path, pet_path, pet_sidecar))

    with output_lock(output):  # a second run on these outputs is refused while this one writes them
        fuser = _build_fuser(method, mode, weights, device, roi_size, progress)
        want_rgb = extra["rgb"] is not None or extra["preview"] is not None or extra["report"] is not None
        steps = preprocessing_steps(registration=registration, qc=qc, seed=seed, registration_threads=registration_threads,
                                    min_overlap=min_overlap, mri_series=mri_series, pet_series=pet_series,
                                    pet_frame=pet_frame, allow_nonfinite=allow_nonfinite,
                                    keep_registered_pet=extra["registered_pet"] is not None, dicom_strict=dicom_strict,
                                    nifti_geometry=nifti_geometry, pet_units=pet_units, pet_sidecar=pet_sidecar,
                                    frame_realign=frame_realign, frame_reference=frame_reference, mri_frame=mri_frame,
                                    progress=progress)
        steps += [
            ("fuse", [Fused("image", output_key="fused_unit", method=fuser, slice_axis=slice_axis)]
                     + ([ColourFused("image", output_key="fused_rgb", method=fuser, colormap=colormap,
                                     luma_key="fused_unit")]
                        if want_rgb else [])),
            ("save", [CopyItemsd("fused_unit", names="fused"),
                      RestoreIntensityd("fused", ref_key="mri", scale=output_scale), saver]),
        ]
        timings: dict[str, float] = {}
        data: dict[str, Any] = {"mri": mri_path, "pet": pet_path}
        for name, transforms in steps:
            t = time.perf_counter()
            if name == "save":
                data["record"] = _record_content(data, fuser, timings, extra_fields={
                    "settings": {"method": method, "mode": mode if method == "asfe" else None,
                                 "registration": registration, "qc": qc, "output_scale": output_scale,
                                 "colormap": colormap, "seed": seed, "pet_frame": pet_frame, "mri_frame": mri_frame,
                                 "mri_series": mri_series,
                                 "pet_series": pet_series, "pet_units": pet_units or "as stored",
                                 "frame_realign": frame_realign, "dicom_strict": dicom_strict,
                                 "nifti_geometry": nifti_geometry},
                    **(record_extra or {})})
            for transform in transforms:
                data = transform(data)
            timings[name] = time.perf_counter() - t
            if name == "register":  # split as before: the registration itself, then resampling and the checks
                timings["resample"] = float(data["pet_registration"]["seconds"]["resample_and_check"])
                timings["register"] -= timings["resample"]
        timings["total"] = time.perf_counter() - t_start

        written = dict(data["outputs"])
        kinds = {key: kind for kind, key in RECORD_KEYS.items()} | {"record": "record"}
        outputs = {kinds[k]: Path(v) for k, v in written.items()}
        reg_info = dict(data["pet_registration"])
        overlap = float(reg_info.pop("overlap", float("nan")))
        reg_info.pop("seconds", None)
        result = FuseResult(
            output=outputs["fused"], outputs=outputs, timings=timings, registration=reg_info, overlap=overlap,
            peak_memory_mb=_peak_memory_mb(), fusion=fuser.describe(), transform=data["pet_transform"],
            inputs=data["record"]["input_info"],
        )
        logger.info("fused %s + %s -> %s (%s) in %.1f s", mri_path.name, pet_path.name, output, method,
                    timings["total"])
        return result


def _protected_inputs(mri: Path, pet: Path, pet_sidecar: str | Path | None) -> list[Path]:
    """What no output may land on: the inputs, the PET sidecar given, and every input's own JSON sidecar
    (``sub01_pet.nii.gz`` -> ``sub01_pet.json``: the completion record of ``-o sub01_pet.nii`` would have that name)."""
    out = [mri, pet]
    for p in (mri, pet):
        name = p.name
        for suffix in (".nii.gz", ".nii", ".mha", ".nrrd", ".mgz"):
            if name.lower().endswith(suffix):
                out.append(p.with_name(name[: -len(suffix)] + ".json"))
                break
    if pet_sidecar is not None:
        out.append(Path(pet_sidecar))
    return out


def _check_outputs(saved: dict[str, Path], others: dict[str, tuple[Path | None, str]], overwrite: bool,
                   inputs: list[Path]) -> None:
    """Every output path checked up front, exactly as :class:`~asfe3d.transforms.SaveLikeReferenced` will check it
    (:func:`~asfe3d.transforms.array.plan_outputs`)."""
    from asfe3d.transforms.array import plan_outputs

    paths = {k: (p, "transform" if k == RECORD_KEYS["transform"] else "nifti") for k, p in saved.items()}
    paths |= {kind: (path, suffix_kind) for kind, (path, suffix_kind) in others.items() if path is not None}
    plan_outputs(paths, overwrite=overwrite, inputs=inputs)


def _record_content(data: dict[str, Any], fuser: Any, timings: dict[str, float],
                    extra_fields: dict[str, Any]) -> dict[str, Any]:
    """What the completion record says about this run (:func:`asfe3d.io.record.run_fields`: inputs, what the
    readers found, registration; then the fusion, the timings so far and the settings)."""
    from asfe3d.io.record import run_fields

    return {**run_fields(data), "fusion": fuser.describe(), "timings": dict(timings),
            "peak_memory_mb": _peak_memory_mb(), **extra_fields}
