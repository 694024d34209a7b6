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
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asfe3d.errors import RegistrationRefused
from asfe3d.settings import FusionSettings, OutputSettings, Settings

__all__ = [
    "EARLY_KEY", "FuseResult", "RECORD_KEYS", "Settings", "fuse_pair", "preprocessing_steps", "build_preprocessing",
    "default_output_path", "derived_output_paths", "auto_slice_axis", "refusal_record",
]

from asfe3d.transforms.array import auto_slice_axis  # noqa: E402 - re-exported

logger = logging.getLogger("asfe3d")

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


def default_output_path(mri_path: str | Path) -> Path:
    """``<mri stem>_fused.nii.gz`` beside the MRI (beside the folder for a DICOM series)."""
    from asfe3d.io.volume import default_output_path as beside

    return beside(mri_path)


def derived_output_paths(output: str | Path) -> dict[str, Path]:
    """Default names of the optional outputs, next to the fused volume ``<stem>.nii.gz``
    (:func:`asfe3d.io.volume.derived_output_paths`)."""
    from asfe3d.io.volume import derived_output_paths as beside

    return beside(output)


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


def _file_stamp(path: str | Path | None) -> tuple[int, int] | None:
    """Size and modification time of a file (``None`` for none): a changed weight file is read again."""
    if path is None:
        return None
    st = Path(path).stat()
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=4)
def _cached_fuser(fusion: FusionSettings, stamp: tuple[int, int] | None, progress: bool) -> Any:
    """One network per fusion settings and weight file (``stamp``: its size and time) for the whole process (a cohort
    checks the weights and builds it once, not per subject; the fuser keeps no state between volumes)."""
    from asfe3d.fusion import get_fuser

    if fusion.weights is not None:
        from asfe3d.fusion.weights import check_weights

        check_weights(fusion.weights, fusion.mode)
    return get_fuser("asfe", progress=progress, **fusion.network_kwargs())


def _build_fuser(fusion: FusionSettings, progress: bool) -> Any:
    """The fusion method, with weight problems reported against the weight file (before any heavy work)."""
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.fusion import get_fuser

    if fusion.method != "asfe":
        return get_fuser(fusion.method)
    weights = fusion.weights
    if weights is not None and not Path(weights).is_file():
        raise Asfe3dInputError(weights, "weight file does not exist")
    try:
        return _cached_fuser(fusion, _file_stamp(weights), progress)
    except Asfe3dInputError:
        raise
    except (ValueError, KeyError, RuntimeError) as exc:
        raise Asfe3dInputError(weights, f"cannot use these weights for mode {fusion.mode!r}: {exc}") from None


#: the data key an :class:`asfe3d.registration.early.EarlyRegistration` travels under through the chain
EARLY_KEY = "early_registration"


def preprocessing_steps(settings: Settings | None = None, *, keep_registered_pet: bool = False,
                        progress: bool = False) -> list[tuple[str, list[Any]]]:
    """The chain's steps up to the network input, grouped by timed step (``load``, ``register``, ``normalise``).

    On ``{"mri": path, "pet": path}`` they give ``"image"`` ``(2, X, Y, Z)`` = [MRI, PET] in ``[0, 1]`` on the MRI
    grid, ``"mri_head"``, ``"pet_transform"``, ``"pet_registration"`` (with the QC verdict) and, with
    ``keep_registered_pet``, ``"pet_on_mri"`` (the registered PET in its own units, before any smoothing that
    ``settings.fusion.pet_smooth_mm`` asks for in the normalise step). An
    :class:`asfe3d.registration.early.EarlyRegistration` of the same files and settings under :data:`EARLY_KEY`
    (:meth:`~asfe3d.registration.early.EarlyRegistration.from_settings`) saves the reading, masking and
    registering it has done (the key is removed).

    Args:
        settings: the run's settings (``inputs``, ``registration`` and ``fusion.pet_smooth_mm`` are used; ``None``:
            the defaults).
        keep_registered_pet: keep a copy of the registered PET before normalisation.
        progress: show the registration's progress on stderr.

    Returns:
        ``[(step name, [transforms])]``.

    Raises:
        TypeError: ``settings`` not a :class:`~asfe3d.settings.Settings` (its type quoted).
    """
    from monai.transforms import ConcatItemsd, CopyItemsd

    from asfe3d.transforms import (
        FillOutsideMaskd,
        HeadMaskd,
        LoadVolumed,
        RealignFramesd,
        RegisterToReferenced,
        RobustNormalized,
        SmoothMmd,
    )

    settings = Settings() if settings is None else settings
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be an asfe3d.settings.Settings, got {type(settings).__name__}")
    inputs, reg, smooth = settings.inputs, settings.registration, settings.fusion.pet_smooth_mm
    return [
        ("load", [LoadVolumed(["mri", "pet"], key_kwargs={k: inputs.reader_kwargs(k) for k in ("mri", "pet")},
                              early_key=EARLY_KEY)]
                 + ([RealignFramesd("pet", reference=inputs.frame_reference)] if inputs.frame_realign else [])),
        ("register", [HeadMaskd("mri", early_key=EARLY_KEY),
                      RegisterToReferenced("pet", ref_key="mri", mask_key="mri_head", early_key=EARLY_KEY,
                                           method=reg.method, **reg.register_kwargs(), min_overlap=reg.min_overlap,
                                           qc=reg.qc, progress=progress)]
                     + ([CopyItemsd("pet", names="pet_on_mri")] if keep_registered_pet else [])),
        # the PET within its field of view ("pet_fov"): smoothed and windowed there, not with the padding beyond
        # it, and extended beyond its edge for the fusion's filters (the fused image is blanked there afterwards)
        ("normalise", ([SmoothMmd("pet", fwhm_mm=smooth, mask_key=FOV_KEY)] if smooth > 0 else [])
                      + [RobustNormalized("mri", mask_key="mri_head"),
                         # the PET's hottest uptake, above its window, kept aside as "pet_above" for the fused image
                         RobustNormalized("pet", mask_key=("mri_head", FOV_KEY), above_postfix="above"),
                         FillOutsideMaskd("pet", mask_key=FOV_KEY),
                         ConcatItemsd(["mri", "pet"], name="image")]),
    ]


def build_preprocessing(settings: Settings | None = None, *, keep_registered_pet: bool = False,
                        progress: bool = False) -> Any:
    """:func:`preprocessing_steps` as one MONAI ``Compose`` (for evaluation, the bundle and users' workflows)."""
    from monai.transforms import Compose

    steps = preprocessing_steps(settings, keep_registered_pet=keep_registered_pet, progress=progress)
    return Compose([t for _, transforms in steps for t in transforms])


def fuse_pair(mri: str | Path, pet: str | Path, output: str | Path | None = None, settings: Settings | None = None,
              *, progress: bool = False, record_extra: dict[str, Any] | None = None) -> FuseResult:
    """Fuse one MRI/PET pair into a volume on the MRI's grid.

    The settings were checked when made; here every input and output path is checked (suffix, writable folder,
    not an input, not an existing file unless ``settings.outputs.overwrite``) and the weights are loaded before any
    volume is read. The outputs are written as a set (:class:`asfe3d.io.OutputSet`): nothing replaces an earlier
    file until every output is complete, so a failure or an interruption keeps the earlier outputs. The completion
    record ``<fused stem>.json`` (inputs, the whole settings, registration and its quality verdict, outputs) is
    written last. An :class:`asfe3d.registration.early.EarlyRegistration` started for these two paths in this
    process (the command starts one before torch and MONAI are imported) is claimed: the chain takes from it only
    what was computed from exactly its own inputs and settings.

    Args:
        mri: MRI file (NIfTI, MHA/NRRD) or DICOM series folder; the geometry reference.
        pet: PET file or DICOM folder (4D: frames realigned and averaged unless ``settings.inputs.pet_frame``).
        output: fused NIfTI path; default ``<mri stem>_fused.nii.gz`` beside the MRI.
        settings: :class:`asfe3d.settings.Settings` (``None``: every default).
        progress: show progress bars.
        record_extra: more JSON-able fields for the completion record (e.g. BIDS ``Sources``).

    Returns:
        :class:`FuseResult`.

    Raises:
        Asfe3dInputError: bad input files or output paths, or (``qc="strict"``) a registration judged failed; one
            line naming the file (or option) and the problem.
        TypeError: ``settings`` is not a :class:`~asfe3d.settings.Settings`.
    """
    from asfe3d.io import output_lock
    from asfe3d.registration.early import claim_early_registration

    t_start = time.perf_counter()
    settings = Settings() if settings is None else settings
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be an asfe3d.settings.Settings, got {type(settings).__name__}")
    # "~" expanded here, once (as nibabel does): the writer expanded it for the files, but the completion record's
    # checks did not, so a JSON of the user's own at "~/<stem>.json" was replaced (and the record reported under
    # "./~/")
    mri_path, pet_path = Path(mri).expanduser(), Path(pet).expanduser()
    _check_inputs(mri_path, pet_path, settings.inputs.pet_sidecar)
    output = Path(output).expanduser() if output is not None else default_output_path(mri_path)
    extra = {kind: None if path is None else Path(path).expanduser()
             for kind, path in settings.outputs.paths(derived_output_paths(output)).items()}
    saver = _saver(output, extra, settings.outputs, _protected_inputs(mri_path, pet_path, settings.inputs.pet_sidecar))
    with output_lock(output):  # a second run on these outputs is refused while this one writes them
        fuser = _build_fuser(settings.fusion, progress)
        steps = preprocessing_steps(settings, keep_registered_pet=extra["registered_pet"] is not None,
                                    progress=progress)
        steps += _fuse_and_save_steps(fuser, settings, extra, saver)
        early = claim_early_registration(mri_path, pet_path)
        data = {"mri": mri_path, "pet": pet_path} | ({EARLY_KEY: early} if early is not None else {})
        try:
            data, timings = _run_steps(steps, data, fuser, settings, record_extra)
        except RegistrationRefused as exc:
            if extra["report"] is None:
                raise
            raise _refusal_reported(exc, extra["report"], output, settings,
                                    {"mri_path": mri_path, "pet_path": pet_path}) from None
        timings["total"] = time.perf_counter() - t_start
        _warn_if_early_failed(early)
        result = _result(data, timings)
        logger.info("fused %s + %s -> %s (%s) in %.1f s", mri_path.name, pet_path.name, output,
                    settings.fusion.method, timings["total"])
        return result


def _warn_if_early_failed(early: Any) -> None:
    """A registration started beside the start-up that failed while the chain's own (the same step) succeeded: a
    bug, not the inputs; the run is right but lost its head start, so it is said (it was a DEBUG line)."""
    from asfe3d.errors import Asfe3dInputError

    error = None if early is None else early.error
    if error is None or early.used or isinstance(error, (Asfe3dInputError, RegistrationRefused, OSError)):
        return
    if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: the run was stopped, not wrong
        return
    logger.warning("the registration started beside the start-up failed (%s: %s) and the run registered again "
                   "on its own: the result is right, the head start was lost (please report this)",
                   type(error).__name__, error)


def _refusal_reported(exc: RegistrationRefused, report: Path, output: Path, settings: Settings,
                      paths: dict[str, Path]) -> RegistrationRefused:
    """Write the report of a registration refused under ``--qc strict`` (the MRI, the PET as the refused transform
    placed it, the QC's verdict and numbers; no fused image) and return the refusal naming it. A report that cannot
    be drawn does not hide the refusal: the refusal says so instead."""
    from asfe3d.io.checks import short_error
    from asfe3d.io.record import record_path, replaceable_outputs, write_record
    from asfe3d.reports import refusal_section, write_report

    problem = exc.problem
    try:
        content = refusal_record(exc, paths["mri_path"], paths["pet_path"], settings)
        record = record_path(output)
        # only where nothing is, or an earlier refusal's (or interrupted run's) own files: a refusal is no complete
        # set, so a complete earlier run's report and record (or a file of the user's) stay, --overwrite or not
        ours = {p.resolve() for p in replaceable_outputs(output)}
        kept = [p for p in (report, record) if p.exists() and p.resolve() not in ours]
        if kept:
            return exc.with_problem(f"{problem}; no report of the refusal written: {kept[0]} is not from a refused "
                                    "run, left as it was")
        # the record first (pending: an interrupted write leaves a report the next run may replace), the report,
        # then the record saying what the run was
        write_record(record, content, status="pending", outputs={"report": report})
        title = output.name.split(".")[0]
        write_report(report, [refusal_section(exc, content, title=title)], title=title, overwrite=True)
        write_record(record, content | {"refusal": str(exc)}, status="refused", outputs={"report": report})
        problem = problem.replace("no fused image written", f"no fused image written; report of the refusal: {report}")
    except Exception as err:  # noqa: BLE001 - the refusal is what the user must see; the report's failure is added
        logger.debug("the report of the refusal could not be written", exc_info=True)
        problem += f"; its report could not be written: {short_error(err)}"
    return exc.with_problem(problem)


def refusal_record(refusal: RegistrationRefused, mri: str | os.PathLike, pet: str | os.PathLike,
                   settings: Settings) -> dict[str, Any]:
    """What a record (and a report) says of a run refused for its registration: the inputs, what the readers found,
    the registration with its QC verdict, and the settings (:func:`asfe3d.io.record.run_fields`)."""
    from asfe3d.io.record import run_fields

    return run_fields({"mri_path": mri, "pet_path": pet, "mri": refusal.reference, "pet": refusal.resampled,
                       "pet_registration": refusal.registration}) | {"settings": settings.as_dict()}


def _check_inputs(mri: Path, pet: Path, pet_sidecar: Any) -> None:
    """Both inputs exist and are images or DICOM folders; the PET sidecar given exists."""
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.io.volume import check_input_kind

    if isinstance(pet_sidecar, (str, os.PathLike)) and not Path(pet_sidecar).is_file():  # not metadata given as such
        raise Asfe3dInputError(pet_sidecar, "PET sidecar does not exist")
    for role, path in (("MRI", mri), ("PET", pet)):
        if not path.exists():
            raise Asfe3dInputError(path, f"{role} input does not exist")
        check_input_kind(path, role)


def _saver(output: Path, extra: dict[str, Path | None], outputs: OutputSettings, protected: list[Path]) -> Any:
    """The save step, every output path checked (suffix, folder, not one of ``protected``, existing files) before
    any heavy work."""
    from asfe3d.transforms import SaveLikeReferenced

    saved = {"fused": output}  # data key -> path of every volume/transform output (the first names the record)
    for kind in ("registered_pet", "rgb", "transform"):
        if extra[kind] is not None:
            saved[RECORD_KEYS[kind]] = extra[kind]
    _check_outputs(saved, {"preview": (extra["preview"], "png"), "report": (extra["report"], "html")},
                   outputs.overwrite, protected)
    return SaveLikeReferenced(saved, ref_key="mri", preview=extra["preview"], colormap=outputs.colormap,
                              overwrite=outputs.overwrite, report=extra["report"])


def _fuse_and_save_steps(fuser: Any, settings: Settings, extra: dict[str, Path | None],
                         saver: Any) -> list[tuple[str, list[Any]]]:
    """The chain after the network input: fuse (and colour), restore the intensities, save."""
    from monai.transforms import CopyItemsd, MaskIntensityd

    from asfe3d.transforms import ColourFused, Fused, RestoreIntensityd

    want_rgb = any(extra[k] is not None for k in ("rgb", "preview", "report"))
    # outside the PET's field of view there is no PET to fuse: the fused image is 0 there ("no data"; the image
    # fused from the MRI alone read as anatomy without uptake, darkest along the edge)
    fuse = [Fused("image", output_key="fused_unit", method=fuser, slice_axis=settings.fusion.slice_axis),
            MaskIntensityd("fused_unit", mask_key=FOV_KEY)]
    if want_rgb:
        fuse += [ColourFused("image", output_key="fused_rgb", method=fuser, colormap=settings.outputs.colormap,
                             luma_key="fused_unit"),
                 MaskIntensityd("fused_rgb", mask_key=FOV_KEY)]  # its colour too: the PET was filled beyond the edge
    return [("fuse", fuse),
            ("save", [CopyItemsd("fused_unit", names="fused"),
                      RestoreIntensityd("fused", ref_key="mri", scale=settings.outputs.scale, above_key=ABOVE_KEY),
                      saver])]


#: what each step does, for the step lines that ``-v`` shows
_STEP_WORDS = {"load": "reading the inputs", "register": "registering the PET to the MRI",
               "normalise": "normalising intensities", "fuse": "fusing", "save": "writing the outputs"}


def _run_steps(steps: list[tuple[str, list[Any]]], data: dict[str, Any], fuser: Any, settings: Settings,
               record_extra: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, float]]:
    """Run the chain step by step, timing each; the completion record's content is set just before saving."""
    timings: dict[str, float] = {}
    for name, transforms in steps:
        t = time.perf_counter()
        if name == "save":
            fusion = _fusion_description(fuser, data["image"], settings.fusion.slice_axis, data.get("fused_unit"))
            fusion["pet_above_window"] = above_window_summary(data[ABOVE_KEY], data["mri_head"])
            fusion["outside_pet_fov"] = outside_fov_summary(data[FOV_KEY], data["mri_head"],
                                                            blank_value(data["mri"], settings.outputs.scale))
            data["record"] = _record_content(data, fusion, timings,
                                             {"settings": settings.as_dict(), **(record_extra or {})})
        logger.info("%s ...", _STEP_WORDS.get(name, name))
        for transform in transforms:
            data = transform(data)
        timings[name] = time.perf_counter() - t
        logger.info("%s: %.1f s", name, timings[name])
        if name == "register":  # split as before: the registration itself, then resampling and the checks
            timings["resample"] = float(data["pet_registration"]["seconds"]["resample_and_check"])
            timings["register"] -= timings["resample"]
    return data, timings


def _result(data: dict[str, Any], timings: dict[str, float]) -> FuseResult:
    """The :class:`FuseResult` of a finished chain."""
    kinds = {key: kind for kind, key in RECORD_KEYS.items()} | {"record": "record"}
    outputs = {kinds[k]: Path(v) for k, v in dict(data["outputs"]).items()}
    reg_info = dict(data["pet_registration"])
    overlap = float(reg_info.pop("overlap", float("nan")))
    reg_info.pop("seconds", None)
    return FuseResult(output=outputs["fused"], outputs=outputs, timings=timings, registration=reg_info,
                      overlap=overlap, peak_memory_mb=_peak_memory_mb(), fusion=data["record"]["fusion"],
                      transform=data["pet_transform"], inputs=data["record"]["input_info"])


def _protected_inputs(mri: Path, pet: Path, pet_sidecar: Any) -> list[Path]:
    """What no output may land on: the inputs, the PET sidecar given, and every input's own JSON sidecar
    (``sub01_pet.nii.gz`` -> ``sub01_pet.json``: the completion record of ``-o sub01_pet.nii`` would have that name)."""
    from asfe3d.io.suffixes import image_stem

    out = [mri, pet]
    for p in (mri, pet):
        stem = image_stem(p.name)  # every suffix the readers take (.mgh, .mhd, .hdr/.img...); a DICOM folder: none
        if stem is not None:
            out.append(p.with_name(stem + ".json"))
    if isinstance(pet_sidecar, (str, os.PathLike)):
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


#: the data key of the PET's part above its normalisation window (``RobustNormalized(..., above_postfix="above")``)
ABOVE_KEY = "pet_above"


def above_window_summary(above: Any, head: Any) -> dict[str, Any]:
    """What the record says about the PET above its window: how many head voxels, the largest excess (in windows:
    1 = the window's width above its top) and what the fused image shows for it
    (:func:`asfe3d.transforms.intensity.headroom`).

    Args:
        above: ``(1, X, Y, Z)`` ``>= 0``, the part above the window.
        head: the head mask, the same shape.
    """
    import numpy as np

    from asfe3d.transforms.intensity import headroom

    values = np.asarray(above.detach().cpu().numpy() if hasattr(above, "detach") else above, np.float32)
    mask = np.asarray(head.detach().cpu().numpy() if hasattr(head, "detach") else head, bool).reshape(values.shape)
    hot = values > 0
    largest = float(values.max()) if hot.any() else 0.0
    return {"voxels": int(hot.sum()), "head_fraction": round(float((hot & mask).sum()) / max(int(mask.sum()), 1), 5),
            "max_above": round(largest, 4), "max_shown": round(float(headroom(np.float32(largest))), 4)}


#: the data key of the PET's field of view on the MRI's grid (``RegisterToReferenced(..., fov_postfix="fov")``)
FOV_KEY = "pet_fov"


def outside_fov_summary(fov: Any, head: Any, blank: float | None = None) -> dict[str, Any]:
    """What the record says about the MRI's grid outside the PET's field of view (where the fused image is blank):
    how many voxels, the share of the head they hold and, when given, the value written there.

    Args:
        fov: ``(1, X, Y, Z)`` bool, True inside the PET's field of view.
        head: the head mask, the same shape.
        blank: the value the fused image holds there, in the written file's units (0 in ``[0, 1]``, i.e. the MRI
            window's low end with ``scale="mri"``); ``None``: not recorded.
    """
    import numpy as np

    inside = np.asarray(fov.detach().cpu().numpy() if hasattr(fov, "detach") else fov, bool)
    mask = np.asarray(head.detach().cpu().numpy() if hasattr(head, "detach") else head, bool).reshape(inside.shape)
    outside = ~inside
    summary = {"voxels": int(outside.sum()),
               "head_fraction": round(float((outside & mask).sum()) / max(int(mask.sum()), 1), 5)}
    if blank is not None:
        summary["value"] = float(np.float32(blank)) + 0.0  # + 0.0: a window starting at -0.0 was recorded as -0.0
    return summary


def blank_value(reference: Any, scale: str) -> float | None:
    """The value a fused image blanked to 0 in ``[0, 1]`` is written as: 0 with ``scale="unit"``, else the low end
    of ``reference``'s normalisation window (its MetaTensor metadata, set by ``RobustNormalized``; ``None`` without
    one)."""
    from asfe3d.transforms.array import WINDOW_KEY

    if scale == "unit":
        return 0.0
    window = (getattr(reference, "meta", None) or {}).get(WINDOW_KEY)
    return None if window is None else float(window[0])


def _fusion_description(fuser: Any, image: Any, slice_axis: int | str, fused: Any = None) -> dict[str, Any]:
    """The fusion method's settings, with the slicing axis this image was fused along (``"auto"`` resolved) and the
    steps this image got (the steered injection's factor from ``fused``'s metadata when :class:`Fused` kept it
    there, else read again from ``image``)."""
    from asfe3d.transforms.array import fuse_options

    described = dict(fuser.describe())
    axis = fuse_options(fuser, image, slice_axis).get("slice_axis")
    if axis is not None:
        described["slice_axis"] = axis
    stitched = getattr(fuser, "stitched", None)
    blended = stitched(image) if callable(stitched) else None
    if blended is not None:  # volume mode: what this image's windows were blended as ("auto" resolved)
        described["stitched"] = blended
    consistency = getattr(fuser, "consistency", None)
    if callable(consistency):  # the consistency step's strength on this image's grid (its grid gate resolved)
        described["pet_consistency_applied"] = float(consistency(image))
    width = getattr(fuser, "consistency_width", None)
    if callable(width):  # that step's Gaussian width in mm on this image's grid (None: no step)
        described["pet_consistency_fwhm_mm_applied"] = width(image)
    band = getattr(fuser, "detail_band_mm", None)
    if callable(band):  # the detail band's width in mm on this image's grid (None: the network's width in voxels)
        described["detail_fwhm_mm_applied"] = band(image)
    select = getattr(fuser, "detail_select", None)
    if callable(select):  # the choose-the-larger-detail step's strength on this image's grid
        described["pet_detail_select_applied"] = float(select(image))
    floor = getattr(fuser, "detail_floor", None)
    if callable(floor):  # that step's floor on this image's grid (0: none)
        described["pet_detail_floor_applied"] = float(floor(image))
    applied = getattr(fused, "meta", {}).get("detail_steer_applied")
    steer = getattr(fuser, "detail_steer_gain", None)
    if applied is not None:  # the factor the steered detail injection gave this image's injection (1: none)
        described["detail_steer_applied"] = float(applied)
    elif callable(steer):
        described["detail_steer_applied"] = float(steer(image))
    return described


def _shipped_weights_used(settings: Any) -> Path | None:
    """The shipped weight file a run of these settings (``Settings.as_dict()``) loads, or ``None`` (a classic
    method, weights given, or a package without them)."""
    fusion = settings.get("fusion") if isinstance(settings, dict) else None
    if not isinstance(fusion, dict) or fusion.get("method") != "asfe" or fusion.get("weights") is not None:
        return None
    from asfe3d.fusion.weights import shipped_weights

    try:
        return shipped_weights(str(fusion.get("mode")))
    except (ValueError, FileNotFoundError):
        return None


def _record_content(data: dict[str, Any], fusion: dict[str, Any], timings: dict[str, float],
                    extra_fields: dict[str, Any]) -> dict[str, Any]:
    """What the completion record says about this run (:func:`asfe3d.io.record.run_fields`: inputs, what the
    readers found, registration; then the fusion, the timings so far and the settings)."""
    from asfe3d.io.record import run_fields

    content = {**run_fields(data), "fusion": fusion, "timings": dict(timings),
               "peak_memory_mb": _peak_memory_mb(), **extra_fields}
    shipped = _shipped_weights_used(extra_fields.get("settings"))
    if shipped is not None:  # the package's weights, known by content: an upgrade that changes them is a change
        from asfe3d.io.record import fingerprint  # (a rerun skipped subjects fused with the old ones as complete)

        content["inputs"] = {**content["inputs"], "weights": fingerprint(shipped)}
    used = (data.get("pet_registration") or {}).get("method")
    if content.get("RegistrationMethod") == "auto" and used:  # a BIDS sidecar's field: the method used, not the
        content["RegistrationMethod"] = used  # setting ("auto" chose it: the record's registration.requested)
    return content
