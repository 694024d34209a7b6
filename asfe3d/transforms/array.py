"""Array transforms: each step of the fusion pipeline as one MONAI transform.

Images travel as MONAI ``MetaTensor`` objects, channel first ``(C, X, Y, Z)``, with their RAS ``affine`` and
``filename_or_obj`` in the metadata, as ``monai.transforms.LoadImage`` produces them, so these transforms mix with
MONAI's own. What a step finds out travels in the metadata too: the reader's provenance (``asfe3d_source``), the
original NIfTI header (``asfe3d_nifti_header``, bytes, so that outputs keep its qform/sform codes) and the
normalisation window (``asfe3d_window``). The dictionary wrappers (:mod:`asfe3d.transforms.dictionary`) chain them;
:func:`asfe3d.pipeline.fuse_pair`, cohorts, BIDS runs, evaluation and the bundle all run that one chain.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Transform

from asfe3d.defaults import DEFAULT_MIN_OVERLAP, DEFAULT_QC, DEFAULT_REGISTRATION_THREADS, DEFAULT_SEED
from asfe3d.inferers.fusion import auto_slice_axis, from_ras_order, grid_spacing, in_ras_order, support_box
from asfe3d.io.convert import numpy_xyz_to_sitk, orthogonal_within_rounding, sitk_to_numpy_xyz
from asfe3d.io.volume import HEADER_KEY, SOURCE_KEY, ras_affine
from asfe3d.transforms.intensity import robust_normalize
from asfe3d.utils import is_int, is_real

__all__ = [
    "LoadVolume",
    "HeadMask",
    "RegisterToReference",
    "RobustNormalize",
    "SmoothMm",
    "FillOutsideMask",
    "Fuse",
    "ColourFuse",
    "RestoreIntensity",
    "SaveLikeReference",
    "plan_outputs",
    "auto_slice_axis",
    "fuse_options",
    "metatensor_from_volume",
    "volume_from_metatensor",
    "sitk_from_metatensor",
    "ras_affine",
    "field_of_view_mask",
]

#: metadata key of the normalisation window ``(lo, hi)`` set by :class:`RobustNormalize`
WINDOW_KEY = "asfe3d_window"


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor's values as a numpy array on the CPU; bfloat16, which numpy has no type for, as float32 (it was
    numpy's bare "Got unsupported ScalarType BFloat16")."""
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def _as_metatensor(img: Any, name: str, grid: str | None = None) -> MetaTensor:
    """``img`` as a MetaTensor; a plain tensor or array gets MONAI's default (1 mm, identity) affine, unless the
    step needs the image's real grid (``grid`` says what for): then it is refused, not taken for a 1 mm grid."""
    if isinstance(img, MetaTensor):
        loaded = img.meta.get("spatial_shape")  # the spatial shape MONAI's loaders read
        # the whole shape is the loaded spatial shape; or as many dimensions as it and a first one no image of
        # these steps has as channels (a loaded volume cropped by indexing; a 2D slice with its channel is taken)
        if (loaded is not None and np.ndim(loaded) == 1 and len(loaded) > 1 and img.ndim == len(loaded)
                and (tuple(img.shape) == tuple(int(v) for v in loaded) or img.shape[0] > 4)):
            raise ValueError(f"{name} has no channel axis: its shape {tuple(img.shape)} is all spatial (as loaded: "
                             f"{tuple(int(v) for v in loaded)}); add one first (MONAI's EnsureChannelFirst(d))")
        return img
    if isinstance(img, (torch.Tensor, np.ndarray)):
        if grid is not None:
            raise ValueError(f"{name} is a plain {type(img).__name__} without an affine, but {grid}: give a "
                             "MetaTensor with the image's affine (MONAI's set_track_meta(False) drops it)")
        return MetaTensor(torch.as_tensor(img))
    raise ValueError(f"{name} must be a MetaTensor, tensor or array, got {type(img).__name__}")


def _check_channel_first_3d(img: torch.Tensor, name: str, channels: int | None = None) -> None:
    if img.ndim != 4 or (channels is not None and img.shape[0] != channels):
        want = f"({channels}, X, Y, Z)" if channels else "(C, X, Y, Z)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(img.shape)}")


def _meta(img: MetaTensor) -> dict[str, Any]:
    """A copy of the metadata without its affine (passed separately)."""
    return {k: v for k, v in img.meta.items() if k != "affine"}


def derive_metatensor(data: Any, source: MetaTensor, meta: dict[str, Any]) -> MetaTensor:
    """A new MetaTensor on ``source``'s grid: its affine and its MONAI transform stack (``applied_operations``), so
    that MONAI's ``Invertd`` / ``Compose.inverse`` still undo spatial transforms run before this step."""
    import copy

    return MetaTensor(data, affine=source.affine.clone(), meta=meta,
                      applied_operations=copy.deepcopy(list(source.applied_operations)))


def metatensor_from_volume(vol: Any) -> MetaTensor:
    """A ``(1, X, Y, Z)`` float32 MetaTensor of an :class:`asfe3d.io.Volume` (:func:`asfe3d.io.volume_to_metatensor`):
    RAS affine, file name, provenance and (for NIfTI) the original header in the metadata."""
    from asfe3d.io import volume_to_metatensor

    return volume_to_metatensor(vol)


def sitk_from_metatensor(img: MetaTensor, channel: int = 0) -> Any:
    """The SimpleITK image (LPS geometry) of one channel of a 3D MetaTensor."""
    from asfe3d.io import sitk_image_from_ras_affine

    arr = _numpy(img[channel])
    return sitk_image_from_ras_affine(np.asarray(arr, dtype=np.float32), ras_affine(img))


def volume_from_metatensor(img: MetaTensor) -> Any:
    """An :class:`asfe3d.io.Volume` (grid and header) of a MetaTensor made by :class:`LoadVolume`: the reference
    that outputs are written like.

    The grid is the MetaTensor's own (its ``affine`` and spatial shape), also after MONAI transforms changed it
    since loading (``Orientationd``, ``Flipd``, ``SpatialCropd``...): the loaded NIfTI header then gets this grid
    in its qform and sform (their codes kept), so nothing is written with the file's old placement."""
    import nibabel as nib

    from asfe3d.io import Volume

    meta = img.meta
    header = None
    raw = meta.get(HEADER_KEY)
    if raw is not None:
        raw = bytes(raw)
        header = (nib.Nifti2Header if len(raw) == 540 else nib.Nifti1Header)(binaryblock=raw)
        header = _header_on_grid(header, ras_affine(img), tuple(img.shape[1:]))
    source = dict(meta.get(SOURCE_KEY) or {})
    return Volume(image=sitk_from_metatensor(img), path=Path(str(meta.get("filename_or_obj", ""))),
                  format=str(source.pop("format", "unknown")), nifti_header=header, info=source)


def _header_on_grid(header: Any, affine: np.ndarray, shape: tuple[int, ...]) -> Any:
    """``header`` itself when it describes this grid (affine to 1e-5 mm, shape), else a copy that does: the shape,
    voxel sizes, sform and qform set from ``affine`` with the header's codes (a qform code stays 0 when it was; an
    affine with shear, which a qform cannot hold, leaves the qform code 0 and the sform holds it)."""
    if affine.shape != (4, 4) or len(shape) != 3:
        return header
    dims = tuple(int(d) for d in header.get_data_shape()[:3])
    if dims == shape and np.allclose(orthogonal_within_rounding(header.get_best_affine()), affine, rtol=0, atol=1e-5):
        return header
    hdr = header.copy()
    qcode, scode = int(hdr["qform_code"]), int(hdr["sform_code"])
    hdr.set_data_shape(shape)
    hdr.set_zooms(tuple(float(z) for z in np.linalg.norm(affine[:3, :3], axis=0)))
    hdr.set_sform(affine, code=scode or qcode or 1)
    if qcode:
        hdr.set_qform(affine, code=qcode)
        if not np.allclose(hdr.get_qform(), affine, rtol=0, atol=1e-5):  # a sheared grid: the sform holds it
            hdr.set_qform(affine, code=0)
    return hdr


def fuse_options(fuser: Any, img: MetaTensor, slice_axis: int | str | None = "auto") -> dict[str, Any]:
    """This image's per-call options for a fusion method (its own settings are never changed by a call).

    Args:
        fuser: the fusion method.
        img: ``(2, *spatial)`` ``[MRI, PET]`` with its affine.
        slice_axis: for a slice-wise network on a 3D image: ``"auto"`` (the voxel axis closest to the head's
            superior-inferior axis, from ``img``'s affine), 0, 1 or 2; ``None``: the method's own axis.

    Returns:
        ``{"spacing": ...}`` for a method that works in mm, ``{"slice_axis": ...}`` for a slice-wise network on a
        3D image, else ``{}``.
    """
    options: dict[str, Any] = {}
    if getattr(fuser, "uses_spacing", False):  # a method that works in mm (highpass): the grid's voxel size
        options["spacing"] = np.linalg.norm(np.asarray(img.affine, float)[: img.ndim - 1, : img.ndim - 1], axis=0)
    if slice_axis is not None and getattr(fuser, "mode", None) == "slice" and img.ndim == 4:
        options["slice_axis"] = (auto_slice_axis(_numpy(img.affine)) if slice_axis == "auto"
                                 else int(slice_axis))
    return options


class LoadVolume(Transform):
    """Read a NIfTI / DICOM folder / MHA / NRRD volume into a ``(1, X, Y, Z)`` MetaTensor with its RAS affine.

    The reader is :func:`asfe3d.io.read_volume`: 4D PET frames averaged unless ``frame``; untrustworthy headers and
    bad files raise :class:`asfe3d.errors.Asfe3dInputError` naming the file.

    Args:
        role: name used in messages (``"MRI"``, ``"PET"``).
        series_uid: DICOM SeriesInstanceUID when a folder holds several series.
        frame: 0-based frame of a 4D volume instead of the frame mean.
        allow_nonfinite: replace NaN/Inf by 0 with a warning instead of refusing.
        reader_kwargs: further :func:`asfe3d.io.read_volume` settings.
    """

    def __init__(self, role: str = "image", series_uid: str | None = None, frame: int | None = None,
                 allow_nonfinite: bool = False, **reader_kwargs: Any) -> None:
        self.role = role
        self.series_uid = series_uid
        self.frame = frame
        self.allow_nonfinite = allow_nonfinite
        self.reader_kwargs = reader_kwargs

    def read_kwargs(self) -> dict[str, Any]:
        """Every :func:`asfe3d.io.read_volume` setting this loader reads with (``role`` included)."""
        return {"role": self.role, "series_uid": self.series_uid, "frame": self.frame,
                "allow_nonfinite": self.allow_nonfinite, **self.reader_kwargs}

    def __call__(self, path: str | Path, early: Any = None) -> MetaTensor:
        """Args:
            path: the file or DICOM folder.
            early: an :class:`asfe3d.registration.early.EarlyRegistration` whose volume is taken when it read this
                path with these settings (read here otherwise).

        Returns:
            ``(1, X, Y, Z)`` float32 MetaTensor.
        """
        from asfe3d.io import read_volume

        if not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"path must be a file or DICOM folder (str or path-like), got {type(path).__name__}: LoadVolume "
                             "reads the file itself (its header, units and frames), so give it the path, not an image "
                             "loaded already")
        kwargs = self.read_kwargs()
        vol = None if early is None else early.volume(path, kwargs)
        if vol is None:
            vol = read_volume(path, **kwargs)
        return metatensor_from_volume(vol)


class HeadMask(Transform):
    """The head (foreground) mask of an MRI: Otsu threshold, holes filled (:func:`asfe3d.registration.head_mask`).

    The one mask of a run: the registration metric, the overlap and quality checks and the normalisation use it.
    """

    def __call__(self, img: MetaTensor, early: Any = None) -> MetaTensor:
        """Args:
            img: ``(1, X, Y, Z)``.
            early: an :class:`asfe3d.registration.early.EarlyRegistration` whose mask is taken when it was computed
                from these voxels on this grid (computed here otherwise).

        Returns:
            ``(1, X, Y, Z)`` bool MetaTensor on the same grid.
        """

        from asfe3d.registration import head_mask

        img = _as_metatensor(img, "img", "the head mask is made in mm on its grid")
        _check_channel_first_3d(img, "img", 1)
        image = sitk_from_metatensor(img)
        mask_img = None if early is None else early.head_mask(image)
        if mask_img is None:
            mask_img = head_mask(image)
        mask = sitk_to_numpy_xyz(mask_img) != 0
        del mask_img
        meta = {k: v for k, v in img.meta.items() if k not in ("affine", HEADER_KEY, SOURCE_KEY)}
        return derive_metatensor(torch.from_numpy(mask[None]), img, meta=meta)


def _plain(value: Any) -> Any:
    """A numpy number as the Python one (for a JSON record), anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


#: the registration settings a run's record keeps (``registration.options``), beside its method and seed
RECORDED_REGISTRATION_OPTIONS = ("iterations", "sampling", "bspline_mesh", "bspline_iterations", "bspline_bound_mm",
                                 "finest_mm", "multistart")


class RegisterToReference(Transform):
    """Register a moving volume (PET) to a reference (MRI), judge the result, and resample onto the reference grid.

    Args:
        method: ``auto`` (``none`` for two DICOM series that share a FrameOfReferenceUID, already aligned by the
            scanner; ``rigid`` otherwise), ``rigid``, ``affine``, ``deformable`` or ``none`` (see
            :func:`asfe3d.registration.register_pet_to_mri`).
        seed: registration sampling seed (>= 0).
        threads: ITK threads (1: bitwise reproducible; ``None``: every core).
        min_overlap: smallest fraction of the reference head the result must cover (0 disables the check).
        qc: ``warn`` (a registration judged failed is kept and flagged) or ``strict`` (refused).
        interpolator: ``linear``, ``nearest`` or ``bspline``.
        register_kwargs: further settings of :func:`asfe3d.registration.register_pet_to_mri`.

    Raises:
        ValueError: bad settings (quoted).
    """

    def __init__(self, method: str = "rigid", seed: int = DEFAULT_SEED,
                 threads: int | None = DEFAULT_REGISTRATION_THREADS, min_overlap: float = DEFAULT_MIN_OVERLAP,
                 qc: str = DEFAULT_QC, interpolator: str = "linear", **register_kwargs: Any) -> None:
        from asfe3d.defaults import QC_MODES
        from asfe3d.registration import METHODS
        from asfe3d.registration.register import INTERPOLATORS, check_registration_options

        if method not in ("auto", *METHODS):
            raise ValueError(f"method must be one of {('auto', *METHODS)}, got {method!r}")
        if not is_real(min_overlap) or not 0.0 <= min_overlap <= 1.0:
            raise ValueError(f"min_overlap must be a number in [0, 1], got {min_overlap!r}")
        if qc not in QC_MODES:
            raise ValueError(f"qc must be one of {QC_MODES}, got {qc!r}")
        if interpolator not in INTERPOLATORS:
            raise ValueError(f"interpolator must be one of {INTERPOLATORS}, got {interpolator!r}")
        params = inspect.signature(check_registration_options).parameters
        known = set(params) - {"method", "seed", "threads"}
        unknown = sorted(set(register_kwargs) - known)
        if unknown:  # found now, not after the images were read (register_pet_to_mri's TypeError)
            raise ValueError(f"unknown registration setting(s) {unknown}; the settings are {sorted(known)}")
        # every value checked before any image is read (the registration's own checks, its defaults for the rest)
        check_registration_options("rigid" if method == "auto" else method, seed=seed, threads=threads,
                                   **register_kwargs)
        # what the run's record says the registration used (its report's methods text reads them)
        self.options = {k: _plain(register_kwargs.get(k, params[k].default)) for k in RECORDED_REGISTRATION_OPTIONS}
        self.method = method
        self.seed = seed
        self.threads = threads
        self.min_overlap = min_overlap
        self.qc = qc
        self.interpolator = interpolator
        self.register_kwargs = {k: _plain(v) for k, v in register_kwargs.items()}  # numpy numbers as Python ones

    def __call__(self, moving: MetaTensor, reference: MetaTensor, head: MetaTensor | None = None,
                 early: Any = None) -> tuple[MetaTensor, Any, dict[str, Any]]:
        """Args:
            moving: ``(1, X', Y', Z')`` MetaTensor with its affine (the PET).
            reference: ``(1, X, Y, Z)`` MetaTensor with its affine (the MRI).
            head: the reference's :class:`HeadMask` (computed here when ``None``).
            early: an :class:`asfe3d.registration.early.EarlyRegistration` whose result is taken when it registered
                these voxels, grids and mask with these settings (registered here otherwise).

        Returns:
            ``(resampled, transform, report)``: the moving image on the reference grid ``(1, X, Y, Z)`` with the
            reference's affine; the SimpleITK transform (reference points -> moving points); and a report dict
            (``method``, ``metric``, ``iterations``, ``stop_condition``, ``overlap``, ``qc``: verdict, reasons,
            numbers).

        Raises:
            Asfe3dInputError: the PET does not cover the head.
            RegistrationRefused: (``qc="strict"``) the registration is judged failed; the error holds the MRI, the
                PET resampled by the refused transform and the report dict, for a report of the refusal.
        """
        import logging
        import time

        import SimpleITK as sitk

        from asfe3d.errors import Asfe3dInputError
        from asfe3d.registration import check_overlap, register_pet_to_mri, resample_to_reference, resolve_method
        from asfe3d.registration.qc import assess_registration, finite_image, with_unmeasured

        moving = _as_metatensor(moving, "moving", "registration works in mm on each image's grid")
        reference = _as_metatensor(reference, "reference", "registration works in mm on each image's grid")
        _check_channel_first_3d(moving, "moving", 1)
        _check_channel_first_3d(reference, "reference", 1)
        from asfe3d.io.volume import SOURCE_KEY as _SOURCE
        from asfe3d.io.volume import UNMEASURED_KEY, unmeasured_on
        from asfe3d.registration.roles import check_roles

        fixed_img, moving_img = sitk_from_metatensor(reference), sitk_from_metatensor(moving)
        ref_info, mov_info = reference.meta.get(_SOURCE) or {}, moving.meta.get(_SOURCE) or {}
        # inputs the other way round (or a 4D MRI) are refused before any registration
        role_warnings = check_roles(
            sitk.GetArrayViewFromImage(fixed_img), sitk.GetArrayViewFromImage(moving_img), fixed_img.GetSpacing(),
            moving_img.GetSpacing(), ref_info, mov_info, reference.meta.get("filename_or_obj"),
            moving.meta.get("filename_or_obj"))
        # what the file did not measure (NaN read as 0) is NaN again: background, outside the field of view
        moving_img = with_unmeasured(moving_img, unmeasured_on(moving))
        method, same_frame = resolve_method(self.method, ref_info, mov_info)
        if head is None:
            head = HeadMask()(reference)
        head_img = numpy_xyz_to_sitk(head[0].cpu().numpy().astype(np.uint8), fixed_img)
        t0 = time.perf_counter()
        settings = {"seed": self.seed, "threads": self.threads, **self.register_kwargs}
        result = None if early is None else early.result(fixed_img, moving_img, head_img, self.method, settings)
        if result is None:
            try:
                result = register_pet_to_mri(fixed_img, moving_img, method, head=head_img, **settings)
            except Asfe3dInputError as exc:  # about one of the images (a slab...): name its file
                if exc.path is not None:
                    raise
                role_path = reference if exc.problem.startswith("MRI") else moving
                raise Asfe3dInputError(role_path.meta.get("filename_or_obj"), exc.problem) from None
        if method == "none" and same_frame and result.qc is not None:
            _scanner_aligned(result.qc, ref_info.get("frame_of_reference_uid"))
        t1 = time.perf_counter()
        resampled = resample_to_reference(finite_image(moving_img), fixed_img, result.transform,
                                          interpolator=self.interpolator)
        pet_path = moving.meta.get("filename_or_obj")
        verdict = getattr(result, "qc", None)  # judged by the registration itself (it decides on a search)
        if verdict is None:
            verdict = assess_registration(fixed_img, moving_img, result.transform, head_img)
        _add_input_findings(verdict, role_warnings, ref_info, mov_info, method, self.method,
                            (fixed_img, moving_img, result.transform))
        overlap = float("nan")
        if self.min_overlap > 0:
            # a PET whose field of view holds part of the head and covers that part (QC flag pet_fov: a warning)
            # covers little of the whole head by design; the QC's verdict, not the overlap floor, judges it
            floor = 0.0 if "pet_fov" in verdict.flags else self.min_overlap
            overlap = check_overlap(fixed_img, resampled, pet_path=pet_path, min_fraction=floor, head=head_img,
                                    pet=moving_img, registered=method != "none")
        failed = verdict.verdict == "fail"
        # the line names the PET's file; either input may be at fault (a biased or wrong MRI fails the same way)
        mri_name = Path(str(reference.meta.get("filename_or_obj") or "")).name or "the MRI"
        line = (f"registration judged failed (onto {mri_name}; either input may be at fault): "
                f"{'; '.join(verdict.reasons)}")
        if method == "none" and not same_frame:  # nothing was registered: the headers' placement was judged
            line = (f"the PET as its header places it on {mri_name} (--registration none: not registered) was "
                    f"judged failed: {'; '.join(verdict.reasons)}; if the headers do not align the two images, "
                    "register them (leave out --registration none)")
        if failed and self.qc != "strict":
            logging.getLogger("asfe3d").warning("%s: %s; outputs written anyway (--qc warn), check them",
                                                pet_path, line)
        described = result.method
        if method == "none" and same_frame:
            described = "none (same frame of reference)"
        report = {"method": described, "requested": self.method, "continued": getattr(result, "continued", 0),
                  "start": getattr(result, "start", None),
                  "starts_tried": getattr(result, "starts_tried", 0),
                  "pet_region": None if getattr(result, "pet_region", None) is None else list(result.pet_region),
                  "qc_plain": None if getattr(result, "qc_plain", None) is None else result.qc_plain.as_dict(),
                  "metric": result.metric, "iterations": result.iterations,
                  "stop_condition": result.stop_condition, "overlap": overlap, "qc": verdict.as_dict(),
                  **_matrix_record(result.transform),
                  "early": early is not None and early.used, "options": dict(self.options),
                  # the thread's own times (read, head_mask, register), spent beside the command's start-up
                  "early_seconds": dict(early.seconds) if early is not None and early.used else None,
                  "seconds": {"register": t1 - t0, "resample_and_check": time.perf_counter() - t1}}
        data = torch.from_numpy(sitk_to_numpy_xyz(resampled))[None]
        meta = {k: v for k, v in reference.meta.items() if k not in ("affine", SOURCE_KEY, UNMEASURED_KEY)}
        meta["filename_or_obj"] = moving.meta.get("filename_or_obj", "")
        meta[SOURCE_KEY] = moving.meta.get(SOURCE_KEY)
        out = derive_metatensor(data, reference, meta=meta)
        if failed and self.qc == "strict":  # refused; what a report of the refusal needs goes with the error
            from asfe3d.errors import RegistrationRefused

            raise RegistrationRefused(pet_path, f"{line} (--qc strict: no fused image written)", reference=reference,
                                      resampled=out, registration=report)
        return out, result.transform, report


def _scanner_aligned(qc: Any, frame_of_reference: Any) -> None:
    """Both DICOM series share one frame of reference, aligned by the scanner: not registered, and the checks can
    only warn (e.g. motion between the scans)."""
    if qc.verdict == "fail":
        qc.verdict = "warn"
    qc.add_finding("note", "note", "not registered: both DICOM series share one frame of reference "
                                   f"(FrameOfReferenceUID {frame_of_reference}), aligned by the scanner")


def field_of_view_mask(moving: MetaTensor, reference: MetaTensor, transform: Any) -> MetaTensor:
    """The moving image's field of view on the reference's grid (:func:`asfe3d.registration.fov.field_of_view`).

    Args:
        moving: the image as read, ``(1, X, Y, Z)`` with its affine (only its grid is used).
        reference: the reference, ``(C, X, Y, Z)`` with its affine.
        transform: the registration's SimpleITK transform (reference points -> moving points).

    Returns:
        A bool MetaTensor ``(1, X, Y, Z)`` on the reference's grid (its affine): True where the image resampled by
        ``transform`` holds measured values, False where it holds padding, or where the file held NaN/Inf that
        ``allow_nonfinite`` read as 0 (``moving.meta["asfe3d_unmeasured"]``, taken to the reference's grid by nearest
        neighbour: SPM's NaN outside a resliced PET's field of view is outside it here too).

    Raises:
        ValueError: images that are not channel-first 3D MetaTensors, or an unmeasured mask of another shape.
    """
    import SimpleITK as sitk

    from asfe3d.io import sitk_image_from_ras_affine
    from asfe3d.io.volume import UNMEASURED_KEY, unmeasured_on
    from asfe3d.registration.fov import field_of_view

    moving = _as_metatensor(moving, "moving", "the field of view is placed in mm")
    reference = _as_metatensor(reference, "reference", "the field of view is placed in mm")
    _check_channel_first_3d(moving, "moving", 1)
    _check_channel_first_3d(reference, "reference")
    unmeasured = unmeasured_on(moving)
    measured = np.zeros(tuple(moving.shape[1:4]), np.float32)
    if unmeasured is not None:
        measured = (~unmeasured).astype(np.float32)
    grid = [sitk_image_from_ras_affine(np.zeros(tuple(reference.shape[1:4]), np.uint8), ras_affine(reference)),
            sitk_image_from_ras_affine(measured, ras_affine(moving))]
    inside = field_of_view(grid[0], grid[1], transform)
    if unmeasured is not None:
        # and where the file measured all that the (linear) resampling of the PET mixed in: next to its NaN the
        # registered PET mixes in their 0 (a dark rim inside the edge, filled outwards)
        taken = sitk_to_numpy_xyz(sitk.Resample(grid[1], grid[0], transform, sitk.sitkLinear, 0.0,
                                                sitk.sitkFloat32)) >= 1.0 - 1e-6
        inside = taken if inside is None else inside & taken
    mask = (torch.ones((1, *reference.shape[1:4]), dtype=torch.bool) if inside is None
            else torch.from_numpy(np.ascontiguousarray(inside))[None])
    meta = {k: v for k, v in reference.meta.items() if k not in ("affine", UNMEASURED_KEY)}
    return derive_metatensor(mask, reference, meta=meta)


def _matrix_record(transform: Any) -> dict[str, Any]:
    """The record's ``mri_to_pet_ras`` (the transform's linear part, 4x4 RAS mm, MRI world -> PET world; what the
    report's field-of-view edge and a nibabel user need) and ``mri_to_pet_ras_exact`` (False: a B-spline part is
    left out)."""
    from asfe3d.registration import linear_part_ras

    matrix, exact = linear_part_ras(transform)
    return {"mri_to_pet_ras": [[round(float(v), 6) + 0.0 for v in row] for row in matrix],
            "mri_to_pet_ras_exact": exact}


def _same_grid(a: Any, b: Any) -> bool:
    """Whether two SimpleITK images share one grid (size, spacing, origin, direction; to 1e-4 mm)."""
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6))


def _largest_shift_mm(transform: Any, grid: Any) -> float:
    """The largest distance ``transform`` moves the corners and the centre of ``grid``'s box (mm)."""
    size = np.asarray(grid.GetSize()) - 1
    corners = [np.asarray(c) * size for c in np.ndindex(2, 2, 2)] + [size / 2.0]
    points = [grid.TransformContinuousIndexToPhysicalPoint([float(v) for v in c]) for c in corners]
    return max(float(np.linalg.norm(np.subtract(transform.TransformPoint(p), p))) for p in points)


def _add_input_findings(verdict: Any, role_warnings: Sequence[str], mri_info: dict[str, Any],
                        pet_info: dict[str, Any], method: str, requested: str, images: tuple[Any, Any, Any]) -> None:
    """Findings about the inputs themselves, added to the registration's verdict: a label map or mask given as
    the MRI or the PET (the other findings would read as blaming the registration), a pair with one image in a
    template space (:func:`asfe3d.registration.register.template_mismatch`): a warning for a rigid (or no)
    registration asked for, a note saying why ``auto`` registered it affine; and a note for a PET that was already
    on the MRI's grid and was moved (``images``: the MRI, the PET and the transform, SimpleITK)."""
    from asfe3d.registration.register import template_mismatch

    fixed, moving, transform = images
    if method != "none" and _same_grid(fixed, moving):  # coregistered and resliced elsewhere already
        verdict.add_finding("note", "note", (
            f"the PET was already on the MRI's grid (as SPM, FSL or PETSurfer write a coregistered PET); the "
            f"registration moved it by up to {_largest_shift_mm(transform, fixed):.2f} mm and resampled it: if it "
            "was coregistered already, --registration none keeps it as it is"))
    for line in role_warnings:
        for role in ("MRI", "PET"):
            if line.startswith((f"{role} input looks like a label map", f"{role} input looks like a mask")):
                verdict.add_finding("warn", f"{role.lower()}_labels", line)
    mismatch = template_mismatch(mri_info, pet_info)
    if mismatch and method in ("rigid", "none"):  # asked for: it cannot fit (a scale check may not see it)
        verdict.add_finding("warn", "template_space", f"{mismatch}; use --registration affine (or auto), or give "
                                                      "the image in its native space")
    elif mismatch and requested == "auto":
        verdict.add_finding("note", "note", f"registered affine (auto): {mismatch}")


class RobustNormalize(Transform):
    """Map each channel to ``[0, 1]``: low end the ``lower`` percentile of the volume, high end the ``upper``
    percentile inside the head mask, then clip (:func:`asfe3d.transforms.intensity.robust_normalize`). The window
    ``(lo, hi)`` of channel 0 is kept in the metadata (``asfe3d_window``) so the fused image can be mapped back.

    Args:
        lower: low-end percentile, in ``[0, 100)``.
        upper: high-end percentile, in ``(lower, 100]``.
        clip_upper: clip at 1; ``False`` keeps the values above the window above 1 (the PET's hottest uptake,
            split off by :class:`~asfe3d.transforms.dictionary.RobustNormalized`'s ``above_postfix``).

    Raises:
        ValueError: bad percentiles.
    """

    def __init__(self, lower: float = 0.5, upper: float = 99.5, clip_upper: bool = True) -> None:
        if not (is_real(lower) and is_real(upper) and 0.0 <= lower < upper <= 100.0):
            raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower!r}, upper={upper!r}")
        self.lower = lower
        self.upper = upper
        self.clip_upper = bool(clip_upper)

    def __call__(self, img: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None) -> MetaTensor:
        """Args:
            img: ``(C, *spatial)``.
            mask: the head mask ``(1, *spatial)`` or ``spatial`` (``None``: a mask from channel 0 by
                :func:`asfe3d.transforms.intensity.head_mask`).

        Returns:
            ``(C, *spatial)`` float32 in ``[0, 1]`` (``>= 0`` without ``clip_upper``), metadata kept plus
            ``asfe3d_window``.
        """
        from asfe3d.transforms.intensity import head_mask

        img = _as_metatensor(img, "img")
        arr = _numpy(img).astype(np.float32, copy=False)
        if mask is None:
            mask_arr = head_mask(arr[0])
        else:
            mask_arr = np.asarray(_numpy(mask) if isinstance(mask, torch.Tensor) else mask, bool)
            mask_arr = mask_arr[0] if mask_arr.ndim == arr.ndim and mask_arr.shape[0] == 1 else mask_arr
            if mask_arr.shape != arr.shape[1:]:
                raise ValueError(f"mask must be one channel on the image's grid, (1, *spatial) or spatial with spatial "
                                 f"{arr.shape[1:]} (img is (C, *spatial), {arr.shape}), got {tuple(np.shape(mask))}")
        windows, out = [], []
        for channel in arr:
            norm, window = robust_normalize(channel, self.lower, self.upper, mask_arr, clip_upper=self.clip_upper)
            out.append(norm)
            windows.append(window)
        result = derive_metatensor(torch.from_numpy(np.stack(out)), img, meta=_meta(img))
        result.meta[WINDOW_KEY] = [float(windows[0][0]), float(windows[0][1])]
        return result

    @staticmethod
    def split_above(normalised: MetaTensor) -> tuple[MetaTensor, torch.Tensor]:
        """A normalised image made without ``clip_upper``, as ``(image clipped at 1, its part above the window)``.

        Args:
            normalised: ``(C, *spatial)`` from this transform with ``clip_upper=False`` (``>= 0``).

        Returns:
            The image in ``[0, 1]`` (metadata kept) and ``max(x - 1, 0)`` (``(C, *spatial)`` float32, 0 almost
            everywhere: the PET's hottest uptake, which :class:`RestoreIntensity`'s ``above`` shows above the
            MRI's window).
        """
        from asfe3d.transforms.intensity import above_window

        normalised = _as_metatensor(normalised, "normalised")
        values = normalised.as_tensor()
        above = torch.from_numpy(above_window(_numpy(values)))
        return derive_metatensor(values.clamp(max=1.0), normalised, meta=_meta(normalised)), above


class SmoothMm(Transform):
    """Smooth each channel by a Gaussian whose width is given in mm, one kernel per axis from the image's voxel size
    (its affine), replicate-padded (:func:`asfe3d.networks.blocks.detail.blur_per_axis`): a noisy PET smoothed on
    the MRI's grid before fusion, as PET analyses commonly do.

    Args:
        fwhm_mm: the Gaussian's full width at half maximum in mm, in ``[0, 20]``; ``0`` returns the image as it is.

    Raises:
        ValueError: ``fwhm_mm`` outside ``[0, 20]`` (quoted).
    """

    def __init__(self, fwhm_mm: float) -> None:
        if not is_real(fwhm_mm) or not 0.0 <= fwhm_mm <= 20.0:
            raise ValueError(f"fwhm_mm must be a number in [0, 20] (mm), got {fwhm_mm!r}")
        self.fwhm_mm = float(fwhm_mm)

    def __call__(self, img: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None) -> MetaTensor:
        """Args:
            img: ``(C, X, Y, Z)`` with its affine (a MetaTensor; the voxel size comes from it).
            mask: where the image holds measurements (``(1, X, Y, Z)`` or ``(X, Y, Z)``, e.g. the PET's field of
                view, ``pet_fov``): smoothed within it only (``blur(img * mask) / blur(mask)``, a normalised
                convolution: the padding beyond a field of view's edge is not blurred into it), the rest kept as it
                is; ``None``: everywhere.

        Returns:
            ``(C, X, Y, Z)`` float32, metadata kept; the same object's values when ``fwhm_mm`` is 0.

        Raises:
            ValueError: not ``(C, X, Y, Z)``, a plain tensor (no affine) for a width > 0, an affine without a
                usable voxel size, a width of more than 64 voxels along an axis, or a mask of another shape
                (quoted).
        """
        from asfe3d.networks.blocks.detail import blur_per_axis

        img = _as_metatensor(img, "img", None if self.fwhm_mm == 0.0 else "the width is in mm on its grid")
        _check_channel_first_3d(img, "img")
        if self.fwhm_mm == 0.0:
            return img
        spacing = grid_spacing(img)
        widths = [self.fwhm_mm / g for g in spacing]
        if max(widths) > 64.0:
            raise ValueError(f"fwhm_mm {self.fwhm_mm} is {max(widths):.1f} voxels on a grid of {spacing} mm; at most 64")
        values = img.as_tensor().float()
        inside = _spatial_mask(mask, tuple(img.shape[1:]), "mask")
        if inside is None or bool(inside.all()):
            blurred = blur_per_axis(values[None], widths)[0]
        else:
            inside = inside.to(values.device)
            weight = blur_per_axis(inside.float()[None, None], widths)[0]
            blurred = blur_per_axis((values * inside)[None], widths)[0] / weight.clamp_min(1e-6)
            blurred = torch.where(inside, blurred, values)
        return derive_metatensor(blurred, img, meta=_meta(img))


def _spatial_mask(mask: torch.Tensor | np.ndarray | None, spatial: tuple[int, ...], name: str) -> torch.Tensor | None:
    """``mask`` as a bool tensor of shape ``spatial`` (given as ``(1, *spatial)`` or ``spatial``), or ``None``."""
    if mask is None:
        return None
    arr = torch.as_tensor(np.asarray(_numpy(mask) if isinstance(mask, torch.Tensor) else mask))
    if tuple(arr.shape) == (1, *spatial):
        arr = arr[0]
    if tuple(arr.shape) != tuple(spatial):
        raise ValueError(f"{name} must have shape {tuple(spatial)} or (1, {', '.join(map(str, spatial))}), got "
                         f"{tuple(arr.shape)}")
    return arr.bool()


class FillOutsideMask(Transform):
    """Fill an image beyond a mask with the value of the nearest voxel inside it, up to ``band_mm`` away (0 further
    out): the PET beyond its field of view's edge, so that the fusion's filters (the network's windows, the
    consistency step's blur) see no step to 0 at the edge and the fused image inside it is what it would be with a
    larger field of view; the fused image beyond the edge is blanked afterwards (``MaskIntensityd``).

    On a grid of more than ``coarse_voxels`` voxels the search runs on blocks of 2 x 2 x 2 voxels (each block's
    inside mean; 0.6 s instead of 2.6 s on a 0.88 mm head): the value beyond the edge is then the nearest block's,
    a PET's own resolution is coarser than such a block anyway.

    Args:
        band_mm: how far beyond the mask to fill (mm, > 0).
        coarse_voxels: grids larger than this are searched in 2 x 2 x 2 blocks (``>= 0``).

    Raises:
        ValueError: ``band_mm`` not a positive number, or ``coarse_voxels`` not a non-negative integer (quoted).
    """

    def __init__(self, band_mm: float = 24.0, coarse_voxels: int = 2_000_000) -> None:
        if not is_real(band_mm) or not 0.0 < band_mm < float("inf"):
            raise ValueError(f"band_mm must be a positive number (mm), got {band_mm!r}")
        if not is_int(coarse_voxels) or coarse_voxels < 0:
            raise ValueError(f"coarse_voxels must be a non-negative integer, got {coarse_voxels!r}")
        self.band_mm = float(band_mm)
        self.coarse_voxels = int(coarse_voxels)

    def __call__(self, img: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray) -> MetaTensor:
        """Args:
            img: ``(C, X, Y, Z)`` with its affine.
            mask: ``(1, X, Y, Z)`` or ``(X, Y, Z)``, True where the image holds measurements.

        Returns:
            ``(C, X, Y, Z)`` float32, metadata kept: the same values inside the mask (and everywhere when the mask
            holds the whole grid, or nothing).

        Raises:
            ValueError: not ``(C, X, Y, Z)`` with an affine, or a mask of another shape (quoted).
        """
        from scipy import ndimage

        img = _as_metatensor(img, "img", "the band is in mm on its grid")
        _check_channel_first_3d(img, "img")
        inside = _spatial_mask(mask, tuple(img.shape[1:]), "mask")
        if bool(inside.all()) or not bool(inside.any()):
            return img
        inside = inside.numpy()
        values = img.as_tensor().detach().float().cpu().numpy()
        f = 2 if inside.size > self.coarse_voxels else 1
        shape = inside.shape
        padded = [-(-n // f) * f for n in shape]
        pad = [(0, 0)] + [(0, q - n) for n, q in zip(shape, padded)]
        blocks = [q // f for q in padded]
        weight = np.pad(inside, pad[1:]).reshape(blocks[0], f, blocks[1], f, blocks[2], f).sum(axis=(1, 3, 5))
        total = np.pad(values * inside, pad).reshape(-1, blocks[0], f, blocks[1], f, blocks[2], f).sum(axis=(2, 4, 6))
        mean = total / np.maximum(weight, 1)[None]  # each block's mean over its inside voxels
        distance, nearest = ndimage.distance_transform_edt(weight == 0, sampling=[f * g for g in grid_spacing(img)],
                                                            return_distances=True, return_indices=True)
        coarse = np.where((distance <= self.band_mm)[None], mean[(slice(None), *nearest)], 0.0).astype(np.float32)
        beyond = coarse[(slice(None), *np.ix_(*[np.arange(n) // f for n in shape]))]  # back on the voxels
        out = np.where(inside[None], values, beyond).astype(np.float32, copy=False)
        return derive_metatensor(torch.from_numpy(out), img, meta=_meta(img))


class Fuse(Transform):
    """Fuse a 2-channel ``[MRI, PET]`` image with an asfe3d fusion method (classic, or the network through MONAI's
    SliceInferer / SlidingWindowInferer).

    Args:
        method: ``mean``, ``max``, ``wavelet``, ``laplacian`` or ``asfe``; or an already built fusion method.
        slice_axis: for a slice-wise network on a 3D image: ``"auto"`` (the voxel axis closest to the head's
            superior-inferior axis, from the image's affine), 0, 1 or 2; given to the method per call
            (:func:`fuse_options`), so one method may serve several transforms.
        kwargs: the method's settings (e.g. ``mode="volume"`` for asfe).

    Raises:
        ValueError: a bad ``slice_axis`` (quoted).
    """

    def __init__(self, method: Any = "asfe", slice_axis: int | str = "auto", **kwargs: Any) -> None:
        from asfe3d.fusion import FusionMethod, get_fuser

        if slice_axis != "auto" and slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 'auto', 0, 1 or 2, got {slice_axis!r}")
        self.fuser = method if isinstance(method, FusionMethod) else get_fuser(method, **kwargs)
        self.slice_axis = slice_axis

    def __call__(self, img: torch.Tensor | np.ndarray) -> MetaTensor:
        """Args: img: ``(2, *spatial)`` in ``[0, 1]``. Returns: ``(1, *spatial)`` fused in ``[0, 1]``, meta kept (for
        a method with a steered detail injection on a volume, the factor it gave, under ``"detail_steer_applied"``).

        A slice-wise network slices along ``slice_axis``; ``"auto"`` takes the voxel axis closest to the head's
        superior-inferior axis from the image's affine (axial slices, as the 2D network was trained on).
        """
        img = _as_metatensor(img, "img", _grid_reason(self.fuser, self.slice_axis))
        if img.shape[0] != 2 or img.ndim not in (3, 4):
            raise ValueError(f"img must be (2, *spatial) [MRI, PET] with 2 or 3 spatial dims, got {tuple(img.shape)}")
        # fused in RAS voxel order (as the networks were trained), so one head gives one image in any storage order
        turned, ornt = in_ras_order(img) if img.ndim == 4 else (img, None)
        slice_axis = self.slice_axis if ornt is None or self.slice_axis == "auto" else int(ornt[self.slice_axis, 0])
        # on the box holding the inputs' signal (0 around it in every method): the background a file carries does
        # not change the fused head
        box = support_box(turned.detach()) if img.ndim == 4 else None
        part = turned if box is None else turned[(slice(None), *box)]
        arr = _numpy(part)
        options = fuse_options(self.fuser, turned, slice_axis)
        meta = _meta(img)
        steer = getattr(self.fuser, "detail_steer_gain", None)
        if callable(steer) and img.ndim == 4:  # read once, given to the method, and kept in the output's metadata
            options["detail_steer_gain"] = meta["detail_steer_applied"] = float(steer(part))
        fused = self.fuser(arr[0], arr[1], **options)
        if box is not None:
            whole = np.zeros(tuple(turned.shape[1:]), np.float32)
            whole[box] = fused
            fused = whole
        fused = from_ras_order(fused[None], ornt)
        return derive_metatensor(torch.from_numpy(np.ascontiguousarray(fused)), img, meta=meta)


class ColourFuse(Transform):
    """Colour fusion: the PET through a colour map (windowed by :func:`asfe3d.fusion.colour.colour_window`, so uptake
    differences stay visible instead of saturating), its luma (Y of YCrCb) fused with the MRI, its chroma kept.

    Args:
        method: fusion method for the luma channel (a name or an already built method, e.g. :class:`Fuse`'s).
        colormap: matplotlib colour map for the PET.
        slice_axis: for a slice-wise network fusing the luma itself (no ``luma`` given): ``"auto"``, 0, 1 or 2
            (see :class:`Fuse`); ``None`` (default): the method's own axis.
        kwargs: the method's settings.

    Raises:
        ValueError: an unknown colour map or a bad ``slice_axis``.
    """

    def __init__(self, method: Any = "asfe", colormap: str = "hot", slice_axis: int | str | None = None,
                 **kwargs: Any) -> None:
        from asfe3d.fusion import FusionMethod, apply_colormap, get_fuser

        apply_colormap(np.zeros(1), colormap)  # validates the colour-map name now
        if slice_axis is not None and slice_axis != "auto" and slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be None, 'auto', 0, 1 or 2, got {slice_axis!r}")
        self.fuser = method if isinstance(method, FusionMethod) else get_fuser(method, **kwargs)
        self.colormap = colormap
        self.slice_axis = slice_axis

    def __call__(self, img: torch.Tensor | np.ndarray, luma: torch.Tensor | np.ndarray | None = None) -> MetaTensor:
        """Args:
            img: ``(2, *spatial)`` ``[MRI, PET]`` in ``[0, 1]``.
            luma: the grey fused image ``(1, *spatial)`` of the same pair (e.g. :class:`Fuse`'s output): used as the
                colour image's luma instead of a second fusion pass (one network pass for both outputs).

        Returns:
            ``(3, *spatial)`` RGB in ``[0, 1]``, meta kept.
        """
        from asfe3d.fusion.colour import colour_window, fuse_colour_planes

        # fusing the luma itself works on the grid as Fuse does: a plain tensor was taken for a 1 mm grid
        img = _as_metatensor(img, "img", None if luma is not None else _grid_reason(self.fuser, self.slice_axis))
        if img.shape[0] != 2:
            raise ValueError(f"img must be (2, *spatial) [MRI, PET], got {tuple(img.shape)}")
        arr = _numpy(img)
        window = colour_window(arr[1])  # a window that does not saturate
        if luma is not None:
            grey = np.asarray(_numpy(luma) if isinstance(luma, torch.Tensor) else luma, np.float32)
            if grey.shape != (1, *arr.shape[1:]):
                raise ValueError(f"luma must have shape {(1, *arr.shape[1:])}, got {grey.shape}")
            rgb = fuse_colour_planes(arr[0], arr[1], self.colormap, window, luma=grey[0])
        else:  # the luma fused in RAS voxel order, as Fuse does
            turned, ornt = in_ras_order(img)
            axis = self.slice_axis
            if ornt is not None and axis not in (None, "auto"):
                axis = int(ornt[axis, 0])
            method = functools.partial(self.fuser, **fuse_options(self.fuser, turned, axis))

            def fuser(mri: np.ndarray, pet: np.ndarray) -> np.ndarray:
                return from_ras_order(method(from_ras_order(mri, ornt, back=False),
                                             from_ras_order(pet, ornt, back=False)), ornt)

            rgb = fuse_colour_planes(arr[0], arr[1], self.colormap, window, fuse_luma=fuser)
        return derive_metatensor(torch.from_numpy(rgb), img, meta=_meta(img))


class RestoreIntensity(Transform):
    """Map a ``[0, 1]`` image back through a normalisation window: ``x * (hi - lo) + lo``.

    Args:
        scale: ``"mri"`` (use the window) or ``"unit"`` (keep ``[0, 1]``).

    Raises:
        ValueError: an unknown ``scale``.
    """

    def __init__(self, scale: str = "mri") -> None:
        if scale not in ("mri", "unit"):
            raise ValueError(f"scale must be 'mri' or 'unit', got {scale!r}")
        self.scale = scale

    def __call__(self, img: torch.Tensor | np.ndarray, window: Sequence[float] | None,
                 above: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Args:
            img: the ``[0, 1]`` image (a MetaTensor keeps its metadata; a tensor or array gives a tensor).
            window: ``(lo, hi)`` (e.g. the MRI's ``asfe3d_window``), two finite numbers.
            above: the PET's part above its own window (``(1, *spatial)`` or ``spatial``, ``>= 0``: what
                :class:`~asfe3d.transforms.dictionary.RobustNormalized` split off with ``above_postfix``), added on
                top of the image as :func:`~asfe3d.transforms.intensity.headroom` gives it, so that the hottest
                uptake is not one flat plateau at the window's top (not with ``scale="unit"``: that stays in
                ``[0, 1]``).

        Returns:
            The image in the window's units (float32); with ``scale="unit"`` the image as it is (an array as a
            float32 tensor).

        Raises:
            ValueError: ``img`` that is not a tensor or array, a bad ``window`` (quoted; ``hi <= lo`` included: a
                reversed window would invert the image), or ``above`` of another shape.
        """
        if not isinstance(img, (torch.Tensor, np.ndarray)):
            raise ValueError(f"img must be a MetaTensor, tensor or array, got {type(img).__name__}")
        if self.scale == "unit":
            return img if isinstance(img, torch.Tensor) else torch.from_numpy(np.asarray(img, np.float32))
        bounds = _window_bounds(window)
        if bounds is None or not bounds[1] > bounds[0]:
            raise ValueError(f"window must be (lo, hi), two finite numbers with hi > lo, got {window!r}")
        lo, hi = np.float32(bounds[0]), np.float32(bounds[1])
        values = (_numpy(img) if isinstance(img, torch.Tensor) else np.asarray(img)).astype(np.float32)
        if above is not None:
            values = values + _headroom_on(above, values.shape)
        arr = torch.from_numpy((values * (hi - lo) + lo).astype(np.float32))
        return derive_metatensor(arr, img, meta=_meta(img)) if isinstance(img, MetaTensor) else arr


def _window_bounds(window: Any) -> tuple[float, float] | None:
    """``window`` as two finite floats (numbers, numpy or one-value torch numbers), or ``None``."""
    if window is None or isinstance(window, (str, bytes)) or not hasattr(window, "__len__") or len(window) != 2:
        return None
    bounds = []
    for v in window:
        if isinstance(v, (str, bytes, bool, np.bool_)):
            return None
        try:
            bounds.append(float(v))
        except (TypeError, ValueError, RuntimeError):
            return None
    return (bounds[0], bounds[1]) if all(np.isfinite(bounds)) else None


def _headroom_on(above: torch.Tensor | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """:func:`~asfe3d.transforms.intensity.headroom` of ``above``, float32, in an image's ``shape``."""
    from asfe3d.transforms.intensity import headroom

    extra = np.asarray(_numpy(above) if isinstance(above, torch.Tensor) else above, np.float32)
    if extra.size != int(np.prod(shape)) or extra.shape[-3:] != tuple(shape[-3:]):
        raise ValueError(f"above must have the image's shape {tuple(shape)}, got {tuple(extra.shape)}")
    return headroom(extra).reshape(shape)


def plan_outputs(
    paths: dict[str, tuple[str | Path, str]], *, overwrite: bool = False, inputs: Sequence[str | Path] = (),
    record: bool = True,
) -> tuple[Any, Path | None]:
    """Check a run's output paths (and its completion record's) and make the :class:`asfe3d.io.OutputSet`.

    Only checks: nothing is written. :class:`SaveLikeReference` uses it before writing, and
    :func:`asfe3d.pipeline.fuse_pair` before any heavy work, so both refuse the same paths the same way.

    Args:
        paths: output kind -> ``(path, suffix kind)``; the first output names the record ``<stem>.json``.
        overwrite: allow replacing existing files.
        inputs: the run's inputs, never an output.
        record: whether a completion record is written.

    Returns:
        ``(output set, record path or None)``.

    Raises:
        Asfe3dInputError: a refused path (see :func:`asfe3d.io.check_output_path`).
    """
    from asfe3d.errors import Asfe3dInputError, OutputExists
    from asfe3d.io import OutputSet, check_output_path
    from asfe3d.io.record import check_outputs_are_ours, check_record_name, record_path, replaceable_outputs

    first = Path(next(iter(paths.values()))[0]).expanduser()  # "~/f.nii.gz": its record is ~/f.json
    record_file = record_path(first) if record else None
    replaceable = replaceable_outputs(first) if record_file is not None else []
    try:
        outs = OutputSet(paths, overwrite=overwrite, inputs=inputs, replaceable=replaceable)
    except OutputExists as exc:  # a file asfe3d did not write: say so, rather than suggest --overwrite
        if record_file is not None:
            check_outputs_are_ours(first, [Path(exc.path).expanduser()], replaceable)
        raise
    if record_file is not None:
        if record_file.resolve() in set(outs.paths.values()):
            raise Asfe3dInputError(record_file, "the completion record would overwrite another output")
        check_output_path(record_file, overwrite=overwrite, inputs=inputs, kind="json", replaceable=replaceable)
        check_record_name(record_file)  # never given by the user: a JSON of theirs there (a sidecar) is kept
        _check_record_owner(record_file, first)
        if overwrite:  # an existing file is replaced only when it is ours (a record lists it)
            check_outputs_are_ours(first, outs.paths.values(), replaceable)
    return outs, record_file


def _check_record_owner(record_file: Path, first: Path) -> None:
    """Refuse a record that is another output's (``-o a.nii`` beside ``a.nii.gz``: both name ``a.json``) while that
    output is still there: the other run's record would be replaced, --overwrite or not."""
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.io.record import read_record

    existing = read_record(record_file) if record_file.is_file() else None
    entry = ((existing or {}).get("outputs") or {}).get("fused")
    other = Path(entry["path"]) if isinstance(entry, dict) and isinstance(entry.get("path"), str) else None
    if other is not None and other.resolve() != first.resolve() and other.is_file():
        raise Asfe3dInputError(
            record_file, f"is the completion record of {other.name}, another output of the same name stem; this "
            f"run's record would replace it, --overwrite or not: choose another output name than {first.name}")


def _restore_record(record: Path | None, earlier: bytes | None) -> None:
    """Put back the completion record ``earlier`` held (or remove a record this run began) after a failed commit."""
    from asfe3d.io import atomic_output

    if record is None:
        return
    if earlier is None:
        record.unlink(missing_ok=True)
        return
    with atomic_output(record, overwrite=True) as tmp:
        tmp.write_bytes(earlier)


def _grid_reason(fuser: Any, slice_axis: int | str) -> str | None:
    """Why ``fuser`` needs the image's grid (its affine: voxel sizes in mm, the axial axis), or ``None``."""
    if getattr(fuser, "uses_spacing", False) or (slice_axis == "auto" and getattr(fuser, "mode", None) == "slice"):
        return f"method {getattr(fuser, 'name', type(fuser).__name__)!r} works on the image's grid (mm, axial axis)"
    return None


def _check_on_reference_grid(items: dict[str, tuple[Any, str | Path]], reference: Any) -> None:
    """Refuse, before anything is written, an image whose own affine is not the reference's: it would be written
    with the reference's, i.e. moved, flipped or permuted in the world (an image inverted by MONAI's ``Invertd`` to
    the file's grid, saved against a reference still on an ``Orientationd`` grid, was written mirrored). A plain
    tensor has no affine: it is written on the reference's grid as it is."""
    if not isinstance(reference, MetaTensor):
        return
    want = ras_affine(reference)
    for kind, (value, _) in items.items():
        if not isinstance(value, MetaTensor):
            continue
        got = ras_affine(value)
        if got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-3):
            continue
        raise ValueError(
            f"{kind} is not on the reference's grid: its affine {np.round(got, 4).tolist()} differs from the "
            f"reference's {np.round(want, 4).tolist()}, and it would be written with the reference's (moved or "
            "flipped in the world); save it against a reference on its own grid (e.g. the reference inverted the same "
            "way with Invertd), or resample it onto the reference's grid first")


def _write_item(kind: str, value: Any, vol: Any, path: Path, inputs: Sequence[str | Path]) -> None:
    """Write one output of :class:`SaveLikeReference` to its temporary path: a transform as ``.tfm``, a
    ``(1, X, Y, Z)`` image as float32 NIfTI, a ``(3, X, Y, Z)`` one in ``[0, 1]`` as RGB24 NIfTI."""
    import SimpleITK as sitk

    from asfe3d.io import write_like, write_transform

    if isinstance(value, sitk.Transform):
        write_transform(value, path)
        return
    img = _as_metatensor(value, kind)
    _check_channel_first_3d(img, kind)
    arr = _numpy(img)
    if arr.shape[0] == 1:
        data = arr[0].astype(np.float32, copy=False)
    elif arr.shape[0] == 3:
        data = np.round(np.clip(np.moveaxis(arr, 0, -1), 0, 1) * 255).astype(np.uint8)
    else:
        raise ValueError(f"{kind} must be (1, X, Y, Z) or (3, X, Y, Z), got {tuple(arr.shape)}")
    write_like(data, vol, path, overwrite=True, inputs=inputs)


class SaveLikeReference(Transform):
    """Write images (and a transform) on the reference volume's grid with its header, as one set.

    Every file goes to a hidden temporary file first; only when all are written are they renamed over their
    destinations (:class:`asfe3d.io.OutputSet`), and the completion record is written last, so an interrupted or
    failed run keeps any earlier outputs and leaves nothing partial under a final name.

    Args:
        overwrite: replace existing outputs (never an input).
        record: write the completion record ``<first output stem>.json`` (:mod:`asfe3d.io.record`).
    """

    def __init__(self, overwrite: bool = False, record: bool = True) -> None:
        self.overwrite = overwrite
        self.record = record

    def __call__(
        self,
        items: dict[str, tuple[Any, str | Path]],
        reference: MetaTensor,
        inputs: Sequence[str | Path] = (),
        record_content: dict[str, Any] | None = None,
        preview: tuple[str | Path, dict[str, Any]] | None = None,
        extras: dict[str, tuple[str | Path, str, Any]] | None = None,
    ) -> dict[str, Path]:
        """Args:
            items: output kind -> ``(value, path)``; a value is a ``(1, X, Y, Z)`` image (float32 NIfTI), a
                ``(3, X, Y, Z)`` image in ``[0, 1]`` (RGB24 NIfTI) or a SimpleITK transform (``.tfm``).
            reference: the reference image made by :class:`LoadVolume` (grid and header).
            inputs: input files the outputs must never replace.
            record_content: JSON-able fields for the completion record.
            preview: ``(path, save_preview keyword arguments)`` for a tri-planar PNG.
            extras: more files of the set: kind -> ``(path, suffix kind, write)``, where ``write(tmp_path, content)``
                writes the file (e.g. an HTML report; ``content`` is the record's content).

        Returns:
            Output kind -> final path (``record`` included).
        """
        import time

        import SimpleITK as sitk

        from asfe3d.io import deferred_signals, disk_errors, stale_temporaries
        from asfe3d.io.record import write_record

        if not items:
            raise ValueError("items must name at least one output")
        _check_on_reference_grid(items, reference)
        kinds = {}
        for kind, (value, path) in items.items():
            kinds[kind] = (path, "transform" if isinstance(value, sitk.Transform) else "nifti")
        if preview is not None:
            kinds["preview"] = (preview[0], "png")
        for kind, (path, suffix_kind, _) in (extras or {}).items():
            kinds[kind] = (path, suffix_kind)
        outs, record = plan_outputs(kinds, overwrite=self.overwrite, inputs=inputs, record=self.record)
        for stale in (t for p in [*outs.paths.values(), *([record] if record else [])] for t in stale_temporaries(p)):
            stale.unlink(missing_ok=True)
        t0 = time.perf_counter()
        content = dict(record_content or {})
        vol = volume_from_metatensor(_as_metatensor(reference, "reference", "outputs are written on its grid"))
        first = next(iter(outs.paths.values()))
        with outs, disk_errors(first.parent):
            # the files are written by a small pool: one output's disk write (GIL released) overlaps the next one's
            # encoding; leaving the pool waits for every write, so a failure or an interruption finds no writer
            # still running when the set's temporaries are removed
            pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="asfe3d-save")
            try:
                pending = [pool.submit(_write_item, kind, value, vol, outs.temp(kind), inputs)
                           for kind, (value, _) in items.items()]
                if preview is not None:
                    from asfe3d.visualize import save_preview

                    pending.append(pool.submit(save_preview, outs.temp("preview"), overwrite=True, **preview[1]))
                for future in pending:
                    future.result()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            for kind, (_, _, write) in (extras or {}).items():  # timed so far: the volumes and preview are written
                timings = {**content.get("timings", {}), "save": time.perf_counter() - t0}
                write(outs.temp(kind), {**content, "timings": timings,
                                        "outputs": {k: str(v) for k, v in outs.paths.items()}})
            # from here to the complete record, a signal waits: an interruption finds the old set or the new one
            with deferred_signals():
                earlier = record.read_bytes() if record is not None and record.is_file() else None

                def complete(final: dict[str, Path]) -> None:  # before the replaced files are gone: a full disk
                    content["timings"] = {**content.get("timings", {}), "save": time.perf_counter() - t0}
                    write_record(record, content, status="complete", outputs=final)  # type: ignore[arg-type]

                try:
                    if record is not None:
                        write_record(record, content, status="pending", outputs=outs.paths)
                    final = outs.commit(None if record is None else complete)
                except BaseException:  # the old outputs are back (OutputSet.commit): so is their record
                    _restore_record(record, earlier)
                    raise
                if record is not None:
                    final["record"] = record.resolve()
        return final
