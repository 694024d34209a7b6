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
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

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


def fuse_pair(
    mri: str | Path,
    pet: str | Path,
    output: str | Path | None = None,
    *,
    method: str = "wavelet",
    mode: str = "slice",
    weights: str | Path | None = None,
    registration: str = "rigid",
    device: str = "auto",
    slice_axis: int | str = "auto",
    roi_size: Sequence[int] | None = None,
    mri_series: str | None = None,
    pet_series: str | None = None,
    pet_frame: int | None = None,
    save_registered_pet: bool | str | Path = False,
    save_rgb: bool | str | Path = False,
    colormap: str = "hot",
    preview: bool | str | Path = False,
    save_transform: bool | str | Path = False,
    output_scale: str = "mri",
    overwrite: bool = False,
    allow_nonfinite: bool = False,
    min_overlap: float = 0.3,
    seed: int = 0,
    registration_threads: int | None = 1,
    progress: bool = False,
) -> FuseResult:
    """Fuse one MRI/PET pair into a volume on the MRI's grid.

    Args:
        mri: MRI file (NIfTI, MHA/NRRD) or DICOM series folder; the geometry reference.
        pet: PET file or DICOM folder (4D: frames averaged unless ``pet_frame``).
        output: fused NIfTI path; default ``<mri stem>_fused.nii.gz`` beside the MRI.
        method: ``mean``, ``max``, ``wavelet``, ``laplacian`` or ``asfe``.
        mode: for ``asfe``: ``slice`` (2D network, SliceInferer) or ``volume`` (3D network, SlidingWindowInferer).
        weights: for ``asfe``: a weight file instead of the shipped one.
        registration: ``rigid``, ``affine``, ``deformable`` or ``none``.
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
        overwrite: replace existing outputs.
        allow_nonfinite: replace NaN/Inf voxels by 0 with a warning instead of refusing the input.
        min_overlap: smallest fraction of the MRI head the registered PET must cover.
        seed: seed for registration sampling (same inputs and seed give the same output).
        registration_threads: ITK threads for the registration: 1 (default) is bitwise reproducible, ``None`` uses
            every core (faster; the output then varies in its last digits between runs).
        progress: show progress bars.

    Returns:
        :class:`FuseResult`.

    Raises:
        Asfe3dInputError: bad input files or output paths (one line naming the file and the problem).
        ValueError: bad settings.
    """
    import SimpleITK as sitk

    from asfe3d.fusion import get_fuser
    from asfe3d.io import check_output_path, read_volume, write_image_like, write_like
    from asfe3d.registration import check_overlap, register_pet_to_mri, resample_to_reference, write_transform
    from asfe3d.registration import head_mask as sitk_head_mask
    from asfe3d.transforms.intensity import head_mask, robust_normalize

    if output_scale not in OUTPUT_SCALES:
        raise ValueError(f"output_scale must be one of {OUTPUT_SCALES}, got {output_scale!r}")
    t_start = time.perf_counter()
    mri_path, pet_path = Path(mri), Path(pet)
    output = Path(output) if output is not None else default_output_path(mri_path)
    derived = derived_output_paths(output)
    extra = {
        "registered_pet": _resolve(save_registered_pet, derived["registered_pet"]),
        "rgb": _resolve(save_rgb, derived["rgb"]),
        "transform": _resolve(save_transform, derived["transform"]),
        "preview": _resolve(preview, derived["preview"]),
    }
    planned = {"fused": output, **{k: v for k, v in extra.items() if v is not None}}
    # refuse bad output paths before spending time on registration
    seen: dict[Path, str] = {}
    for kind, path in planned.items():
        key = path.resolve()
        if key in seen:
            from asfe3d.errors import Asfe3dInputError

            raise Asfe3dInputError(path, f"the {kind} output would overwrite the {seen[key]} output")
        seen[key] = kind
        check_output_path(path, overwrite=overwrite, inputs=[mri_path, pet_path])

    fuser_kwargs: dict[str, Any] = {}
    if method == "asfe":
        fuser_kwargs = {"mode": mode, "weights": weights, "device": device, "roi_size": roi_size,
                        "progress": progress}
    fuser = get_fuser(method, **fuser_kwargs)  # fails fast on bad settings or missing weights

    timings: dict[str, float] = {}
    t = time.perf_counter()
    mri_vol = read_volume(mri_path, role="MRI", series_uid=mri_series, allow_nonfinite=allow_nonfinite)
    pet_vol = read_volume(pet_path, role="PET", series_uid=pet_series, frame=pet_frame,
                          allow_nonfinite=allow_nonfinite)
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    head = sitk_head_mask(mri_vol.image)  # one MRI head mask for the registration metric and the overlap check
    reg = register_pet_to_mri(mri_vol.image, pet_vol.image, registration, seed=seed, threads=registration_threads,
                              head=head)
    timings["register"] = time.perf_counter() - t

    t = time.perf_counter()
    pet_on_mri = resample_to_reference(pet_vol.image, mri_vol.image, reg.transform)
    overlap = check_overlap(mri_vol.image, pet_on_mri, pet_path=pet_path, min_fraction=min_overlap, head=head)
    timings["resample"] = time.perf_counter() - t

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
    written: list[Path] = []
    try:
        written.append(write_like(fused.astype(np.float32), mri_vol, output, overwrite=overwrite,
                                  inputs=[mri_path, pet_path]))
        if extra["registered_pet"] is not None:
            written.append(write_image_like(pet_on_mri, mri_vol, extra["registered_pet"], overwrite=overwrite,
                                            inputs=[mri_path, pet_path]))
        if extra["rgb"] is not None:
            rgb8 = np.round(rgb * 255.0).astype(np.uint8)
            written.append(write_like(rgb8, mri_vol, extra["rgb"], overwrite=overwrite, inputs=[mri_path, pet_path]))
        if extra["transform"] is not None:
            write_transform(reg.transform, extra["transform"])
            written.append(extra["transform"])
        if extra["preview"] is not None:
            from asfe3d.visualize import save_preview

            written.append(save_preview(extra["preview"], mri01, pet01, fused01, mri_vol.affine_ras, rgb=rgb,
                                        colormap=colormap, overwrite=overwrite))
    except BaseException:
        for path in written:  # a failed run leaves no output of its own
            Path(path).unlink(missing_ok=True)
        raise
    timings["save"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start

    outputs = {"fused": output, **{k: v for k, v in extra.items() if v is not None}}
    result = FuseResult(
        output=output, outputs=outputs, timings=timings,
        registration={"method": reg.method, "metric": reg.metric, "iterations": reg.iterations,
                      "stop_condition": reg.stop_condition},
        overlap=overlap, peak_memory_mb=_peak_memory_mb(), fusion=fuser.describe(), transform=reg.transform,
        inputs={"mri": {"format": mri_vol.format, **mri_vol.info}, "pet": {"format": pet_vol.format, **pet_vol.info}},
    )
    logger.info("fused %s + %s -> %s (%s) in %.1f s", mri_path.name, pet_path.name, output, method,
                timings["total"])
    return result
