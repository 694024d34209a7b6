"""The end-to-end MRI/PET fusion of one subject: the function that the CLI, the cohort runner and the bundle call.

Steps (each timed): load both volumes -> register the PET onto the MRI (SimpleITK) -> resample it onto the MRI grid
-> normalise both to ``[0, 1]`` (robust percentiles in the MRI's head mask) -> fuse -> write on the MRI grid with
the MRI's header. Everything after resampling lives on the MRI voxel grid, so the MRI is the only geometry source.

Output intensities (``output_scale``): ``"mri"`` (default) maps the fused ``[0, 1]`` image back through the MRI's
normalisation window, ``fused * (hi - lo) + lo``, so the fused volume reads like the MRI in a viewer; ``"unit"``
keeps ``[0, 1]``.
"""

from __future__ import annotations

import logging
import re
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from asfe3d.defaults import (
    DEFAULT_COLORMAP,
    DEFAULT_METHOD,
    DEFAULT_MODE,
    DEFAULT_QC,
    DEFAULT_REGISTRATION,
    QC_MODES,
    REGISTRATION_METHODS,
)

__all__ = ["FuseResult", "fuse_pair", "default_output_path", "derived_output_paths", "auto_slice_axis"]

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
    }


def auto_slice_axis(affine_ras: np.ndarray) -> int:
    """The voxel axis (0, 1, 2 in ``X, Y, Z`` array order) closest to the head's superior-inferior axis.

    Slicing along it gives axial slices, the orientation the 2D network was trained on.
    """
    columns = np.asarray(affine_ras, dtype=float)[:3, :3]
    columns = columns / np.linalg.norm(columns, axis=0, keepdims=True)
    return int(np.argmax(np.abs(columns[2])))


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
    registration_threads: int | None,
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
    if registration not in REGISTRATION_METHODS:
        raise bad("registration", f"must be one of {REGISTRATION_METHODS}, got {registration!r}")
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
        return get_fuser(method, mode=mode, weights=weights, device=device, roi_size=roi_size, progress=progress)
    except Asfe3dInputError:
        raise
    except (ValueError, KeyError, RuntimeError) as exc:
        where = weights if weights is not None else None
        raise Asfe3dInputError(where, f"cannot use these weights for mode {mode!r}: {exc}") from None


def _judge_registration(mri_img: Any, pet_img: Any, pet_on_mri: Any, reg: Any, head: Any, seed: int) -> Any:
    """The registration's quality verdict (:func:`asfe3d.registration.qc.assess_registration`)."""
    from asfe3d.registration.qc import assess_registration

    return assess_registration(mri_img, pet_img, pet_on_mri, reg, head=head, seed=seed)


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
    save_transform: bool | str | Path = False,
    output_scale: str = "mri",
    overwrite: bool = False,
    allow_nonfinite: bool = False,
    min_overlap: float = 0.3,
    seed: int = 0,
    registration_threads: int | None = 1,
    progress: bool = False,
    record_extra: dict[str, Any] | None = None,
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

    Returns:
        :class:`FuseResult`.

    Raises:
        Asfe3dInputError: bad settings, input files or output paths, or (``qc="strict"``) a registration judged
            failed; one line naming the file (or option) and the problem.
    """
    import SimpleITK as sitk

    from asfe3d.errors import Asfe3dInputError
    from asfe3d.io import OutputSet, check_output_path, read_volume, stale_temporaries, write_image_like, write_like
    from asfe3d.io.record import fingerprint, pending_outputs, read_record, record_path, write_record
    from asfe3d.registration import check_overlap, register_pet_to_mri, resample_to_reference, write_transform
    from asfe3d.registration import head_mask as sitk_head_mask
    from asfe3d.transforms.intensity import head_mask, robust_normalize

    t_start = time.perf_counter()
    _check_settings(method=method, mode=mode, registration=registration, qc=qc, output_scale=output_scale,
                    colormap=colormap, seed=seed, roi_size=roi_size, device=device, slice_axis=slice_axis,
                    pet_frame=pet_frame, min_overlap=min_overlap, registration_threads=registration_threads)
    mri_path, pet_path = Path(mri), Path(pet)
    for role, path in (("MRI", mri_path), ("PET", pet_path)):
        if not path.exists():
            raise Asfe3dInputError(path, f"{role} input does not exist")
    output = Path(output) if output is not None else default_output_path(mri_path)
    derived = derived_output_paths(output)
    extra = {
        "registered_pet": _resolve(save_registered_pet, derived["registered_pet"]),
        "rgb": _resolve(save_rgb, derived["rgb"]),
        "transform": _resolve(save_transform, derived["transform"]),
        "preview": _resolve(preview, derived["preview"]),
    }
    suffix_kinds = {"fused": "nifti", "registered_pet": "nifti", "rgb": "nifti", "transform": "transform",
                    "preview": "png"}
    planned = {"fused": output, **{k: v for k, v in extra.items() if v is not None}}
    record = record_path(output)
    inputs = [mri_path, pet_path]
    # files that an interrupted asfe3d run of these outputs left incomplete may be replaced without --overwrite
    replaceable = pending_outputs(record)
    if replaceable or (read_record(record) is not None and not output.exists()):
        replaceable.append(record)  # our own record: of an interrupted run, or of outputs that are gone
    outs = OutputSet({k: (v, suffix_kinds[k]) for k, v in planned.items()}, overwrite=overwrite, inputs=inputs,
                     replaceable=replaceable)
    if record.resolve() in set(outs.paths.values()):
        raise Asfe3dInputError(record, "the completion record would overwrite another output")
    check_output_path(record, overwrite=overwrite, inputs=inputs, kind="json", replaceable=replaceable)
    for stale in (t for p in [*outs.paths.values(), record] for t in stale_temporaries(p)):
        logger.info("removing %s, left by an interrupted run", stale)
        stale.unlink(missing_ok=True)

    fuser = _build_fuser(method, mode, weights, device, roi_size, progress)

    timings: dict[str, float] = {}
    with outs:
        t = time.perf_counter()
        mri_vol = read_volume(mri_path, role="MRI", series_uid=mri_series, allow_nonfinite=allow_nonfinite)
        pet_vol = read_volume(pet_path, role="PET", series_uid=pet_series, frame=pet_frame,
                              allow_nonfinite=allow_nonfinite)
        timings["load"] = time.perf_counter() - t

        t = time.perf_counter()
        head = sitk_head_mask(mri_vol.image)  # one MRI head mask for the registration metric and the checks
        reg = register_pet_to_mri(mri_vol.image, pet_vol.image, registration, seed=seed,
                                  threads=registration_threads, head=head)
        timings["register"] = time.perf_counter() - t

        t = time.perf_counter()
        pet_on_mri = resample_to_reference(pet_vol.image, mri_vol.image, reg.transform)
        overlap = check_overlap(mri_vol.image, pet_on_mri, pet_path=pet_path, min_fraction=min_overlap, head=head)
        verdict = _judge_registration(mri_vol.image, pet_vol.image, pet_on_mri, reg, head, seed)
        timings["resample"] = time.perf_counter() - t
        qc_info = verdict.as_dict()
        if verdict.verdict == "fail":
            line = f"registration judged failed: {'; '.join(verdict.reasons)}"
            if qc == "strict":
                raise Asfe3dInputError(pet_path, f"{line} (--qc strict: nothing written)")
            logger.warning("%s: %s; outputs written anyway (--qc warn), check them", pet_path, line)
        elif verdict.verdict == "warn":
            logger.info("%s: registration QC: %s", pet_path, "; ".join(verdict.reasons))

        t = time.perf_counter()
        mri_xyz = mri_vol.array_xyz()
        pet_xyz = sitk.GetArrayFromImage(pet_on_mri).transpose(2, 1, 0)
        mask = head_mask(mri_xyz)
        mri01, (lo, hi) = robust_normalize(mri_xyz, mask=mask)
        pet01, _ = robust_normalize(pet_xyz, mask=mask)
        timings["normalise"] = time.perf_counter() - t

        t = time.perf_counter()
        if method == "asfe" and mode == "slice":
            fuser.slice_axis = auto_slice_axis(mri_vol.affine_ras) if slice_axis == "auto" else int(slice_axis)
        fused01 = fuser(mri01, pet01)
        rgb = None
        if extra["rgb"] is not None or extra["preview"] is not None:
            from asfe3d.fusion import apply_colormap, fuse_colour

            rgb = fuse_colour(mri01, apply_colormap(pet01, colormap), fuser)
        timings["fuse"] = time.perf_counter() - t

        t = time.perf_counter()
        fused = fused01 if output_scale == "unit" else fused01 * np.float32(hi - lo) + np.float32(lo)
        write_like(fused.astype(np.float32), mri_vol, outs.temp("fused"), overwrite=True, inputs=inputs)
        if extra["registered_pet"] is not None:
            write_image_like(pet_on_mri, mri_vol, outs.temp("registered_pet"), overwrite=True, inputs=inputs)
        if extra["rgb"] is not None:
            rgb8 = np.round(rgb * 255.0).astype(np.uint8)
            write_like(rgb8, mri_vol, outs.temp("rgb"), overwrite=True, inputs=inputs)
        if extra["transform"] is not None:
            write_transform(reg.transform, outs.temp("transform"))
        if extra["preview"] is not None:
            from asfe3d.visualize import save_preview

            save_preview(outs.temp("preview"), mri01, pet01, fused01, mri_vol.affine_ras, rgb=rgb,
                         colormap=colormap, overwrite=True)
        settings = {"method": method, "mode": mode if method == "asfe" else None, "registration": registration,
                    "qc": qc, "output_scale": output_scale, "colormap": colormap, "seed": seed,
                    "pet_frame": pet_frame, "mri_series": mri_series, "pet_series": pet_series}
        reg_info = {"method": reg.method, "metric": reg.metric, "iterations": reg.iterations,
                    "stop_condition": reg.stop_condition, "qc": qc_info}
        input_info = {"mri": {"format": mri_vol.format, **mri_vol.info}, "pet": {"format": pet_vol.format,
                                                                                  **pet_vol.info}}
        content = {"asfe3d_version": _version(), "inputs": {"mri": fingerprint(mri_path),
                                                            "pet": fingerprint(pet_path)},
                   "input_info": input_info, "settings": settings, "fusion": fuser.describe(),
                   "registration": reg_info, "overlap": overlap, **(record_extra or {})}
        # commit: a pending record first (a crash while renaming leaves it), then the outputs, then "complete"
        write_record(record, content, status="pending", outputs=outs.paths)
        final = outs.commit()
        timings["save"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_start
        content.update(timings=timings, peak_memory_mb=_peak_memory_mb())
        write_record(record, content, status="complete", outputs=final)

    outputs = {**final, "record": record}
    result = FuseResult(
        output=output, outputs=outputs, timings=timings, registration=reg_info, overlap=overlap,
        peak_memory_mb=_peak_memory_mb(), fusion=fuser.describe(), transform=reg.transform, inputs=input_info,
    )
    logger.info("fused %s + %s -> %s (%s) in %.1f s", mri_path.name, pet_path.name, output, method,
                timings["total"])
    return result


def _version() -> str:
    from asfe3d import __version__

    return __version__
