"""Reading MRI / PET volumes (NIfTI, DICOM series folders, MHA / MHD / NRRD / other SimpleITK formats).

:func:`read_volume` returns a :class:`Volume`: a 3D float32 SimpleITK image in physical LPS geometry, plus the
original NIfTI header when there is one, so that outputs can carry its qform / sform codes.

NIfTI geometry: SimpleITK (ITK) and nibabel do not always pick the same one of qform / sform. asfe3d follows
nibabel (``nib.load(path).affine``: the sform when ``sform_code > 0``, else the qform, else nibabel's fallback),
so the SimpleITK image of a NIfTI file is built from nibabel's decoded array and affine. SimpleITK's own header
reading is still consulted (header only, cheap) and a disagreement is logged and recorded in ``Volume.info``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from nibabel.openers import ImageOpener

from asfe3d.errors import Asfe3dInputError, MetadataError
from asfe3d.io.checks import (
    check_bytes_per_voxel,
    check_data_size,
    check_voxel_sizes,
    short_error,
    sitk_pixel_bytes,
    sitk_stored_bytes,
    working_memory,
)
from asfe3d.io.convert import (
    LPS_TO_RAS,
    ORTHOGONALITY_TOL,
    ROUNDED_COSINES_TOL,
    affine_shear,
    nearest_orthogonal_affine,
    orthogonal_within_rounding,
    ras_affine_from_sitk,
    sitk_geometry_from_ras_affine,
    sitk_image_from_ras_affine,
    sitk_to_numpy_xyz,
)
from asfe3d.io.dicom import (
    SERIES_FILES_KEY,
    headerless_dicom_problem,
    is_dicom_file,
    quiet_itk,
    read_dicom_file,
    read_dicom_folder,
)
from asfe3d.io.pet import (
    PET_UNITS,
    find_sidecar,
    read_pet_header,
    sidecar_candidate,
    sidecar_frame_durations,
    suv_factor,
)
from asfe3d.io.suffixes import PAIR_SUFFIXES, VOLUME_SUFFIXES, image_stem
from asfe3d.utils.toggle import SharedToggle

__all__ = ["Volume", "read_volume", "detect_format", "input_stem", "volume_to_metatensor", "ras_affine", "check_values",
           "unmeasured_on"]

logger = logging.getLogger("asfe3d")

#: Largest difference (mm, per affine entry) between two geometries still considered the same.
GEOMETRY_TOL_MM = 1e-4
#: Largest distance (mm) between where a NIfTI's qform and sform put a corner voxel still counted as agreement.
QFORM_SFORM_TOL_MM = 0.1
#: Ways of choosing a NIfTI's geometry (``read_volume(nifti_geometry=...)``).
NIFTI_GEOMETRIES = ("auto", "sform", "qform")
#: ``info`` key of kept frames' LPS grid ``[origin, spacing, direction]`` (popped by their realignment)
FRAMES_GEOMETRY_KEY = "frames_geometry"


@dataclass
class Volume:
    """One 3D volume with its geometry and provenance.

    Attributes:
        image: 3D ``sitkFloat32`` SimpleITK image, physical geometry in LPS.
        path: the file or DICOM folder it was read from.
        format: ``"nifti"``, ``"dicom"``, ``"mha"``, ``"nrrd"`` or another SimpleITK format name (lower case).
        nifti_header: a copy of the original NIfTI header when ``format == "nifti"``, else ``None``.
        info: provenance (plain JSON values): ``role``, ``frames`` / ``frames_averaged`` / ``frame_taken``,
            ``frames_realigned`` and ``frame_motion_mm`` (4D realigned), ``nonfinite_repaired``, ``series_uid``,
            ``series_description``, ``slices``, ``frames_in_file`` (enhanced DICOM), ``dicom_resampled`` (irregular
            DICOM stack), ``geometry_source`` and ``qform_sform`` (NIfTI), ``sitk_header_geometry_agrees``,
            ``pet_units`` (SUV conversion); see :func:`read_volume` and ``docs/io.md``.
        frames: with ``read_volume(keep_frames=True)`` on a 4D image: its frames, float32 ``(X, Y, Z)`` each on
            ``image``'s grid (non-finite voxels refused or repaired, SUV not applied yet: the factor in
            ``info["pet_units"]`` applies to their mean), for a realignment after loading
            (:class:`asfe3d.transforms.RealignFrames`); ``image`` is then frame 0, a geometry carrier. Else ``None``.
        unmeasured: bool ``(X, Y, Z)`` on ``image``'s grid, True where the file held NaN/Inf (in any frame) that
            ``allow_nonfinite`` replaced by 0: no measurement there (SPM writes NaN outside a resliced image's field
            of view); ``None`` when every voxel was finite.
    """

    image: sitk.Image
    path: Path
    format: str
    nifti_header: nib.Nifti1Header | None = None
    info: dict[str, Any] = field(default_factory=dict)
    frames: tuple[np.ndarray, ...] | None = None
    unmeasured: np.ndarray | None = None

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """Grid size in nibabel order ``(X, Y, Z)`` (SimpleITK's ``GetSize()``)."""
        return tuple(int(s) for s in self.image.GetSize())  # type: ignore[return-value]

    @property
    def affine_ras(self) -> np.ndarray:
        """4x4 RAS affine of the voxel grid (float64 copy).

        For NIfTI, exactly the affine nibabel reports for the file (``nib.load(path).affine``), or its nearest
        orthogonal affine when its shear is only that of rounded direction cosines (``info["sform_orthogonalised"]``,
        :func:`asfe3d.io.convert.orthogonal_within_rounding`); otherwise the affine of the SimpleITK geometry.
        """
        if self.nifti_header is not None:
            return orthogonal_within_rounding(self.nifti_header.get_best_affine())
        return ras_affine_from_sitk(self.image)

    def array_xyz(self) -> np.ndarray:
        """float32 voxel array of shape ``(X, Y, Z)`` (nibabel order), a new copy."""
        return sitk_to_numpy_xyz(self.image).astype(np.float32, copy=False)


def detect_format(path: str | Path) -> str:
    """Format name of an input path from its suffix (a folder is a DICOM series folder).

    Args:
        path: file or folder.

    Returns:
        ``"dicom"`` for a folder, ``"nifti"`` for ``.nii`` / ``.nii.gz`` and for a NIfTI pair (``.hdr`` +
        ``.img``, either named, optionally gzipped, whose header says NIfTI), ``"analyze"`` for such a pair whose
        header is Analyze 7.5, ``"mha"`` for ``.mha`` / ``.mhd``, ``"nrrd"`` for ``.nrrd`` / ``.nhdr``, ``"mgh"``
        for FreeSurfer's ``.mgz`` / ``.mgh``, otherwise ``"other"`` (left to SimpleITK to recognise).
    """
    p = Path(path)
    if p.is_dir():
        return "dicom"
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(_PAIR_SUFFIXES):
        return _pair_kind(p)
    if name.endswith((".mha", ".mhd")):
        return "mha"
    if name.endswith((".nrrd", ".nhdr")):
        return "nrrd"
    if name.endswith((".mgz", ".mgh", ".mgh.gz")):
        return "mgh"
    return "other"


_PAIR_SUFFIXES = PAIR_SUFFIXES
#: the suffixes :func:`input_stem` takes off
_INPUT_SUFFIXES = (*VOLUME_SUFFIXES, *PAIR_SUFFIXES, ".dcm")


def input_stem(path: str | Path) -> str:
    """An input's name without its image suffix (``sub-01_T1w`` for ``sub-01_T1w.nii.gz``, ``mri`` for
    ``mri.img``); a folder's or an unknown suffix's name as it is."""
    name = Path(path).name
    stem = image_stem(name, _INPUT_SUFFIXES)
    return name if stem is None else stem


def default_output_path(mri_path: str | Path) -> Path:
    """``<mri stem>_fused.nii.gz`` beside the MRI (beside the folder for a DICOM series); also
    :func:`asfe3d.pipeline.default_output_path`, here so that the command can check it before MONAI is imported."""
    mri_path = Path(mri_path)
    return mri_path.parent / f"{input_stem(mri_path)}_fused.nii.gz"


def derived_output_paths(output: str | Path) -> dict[str, Path]:
    """Default names of the optional outputs, next to the fused volume ``<stem>.nii.gz`` (also
    :func:`asfe3d.pipeline.derived_output_paths`)."""
    output = Path(output)
    stem = input_stem(output)
    return {
        "rgb": output.with_name(f"{stem}_rgb.nii.gz"),
        "registered_pet": output.with_name(f"{stem}_pet_on_mri.nii.gz"),
        "transform": output.with_name(f"{stem}_pet_to_mri.tfm"),
        "preview": output.with_name(f"{stem}_preview.png"),
        "report": output.with_name(f"{stem}_report.html"),
    }


def _pair_file(p: Path, kind: str) -> Path:
    """The ``kind`` (``"hdr"`` or ``"img"``) file of the two-file image that ``p`` (either of them) belongs to."""
    name = p.name
    gz = name.lower().endswith(".gz")
    stem = name[: -len(".hdr.gz")] if gz else name[: -len(".hdr")]
    return p.with_name(f"{stem}.{kind}{'.gz' if gz else ''}")


def _pair_kind(p: Path) -> str:
    """``"nifti"`` or ``"analyze"`` from the magic of the header file of the pair ``p`` belongs to (``"nifti"``
    when it cannot be read: the NIfTI reader then says what is wrong)."""
    try:
        with ImageOpener(str(_pair_file(p, "hdr")), "rb") as fh:
            block = fh.read(348)
    except Exception:  # missing or unreadable: reported by the reader
        return "nifti"
    if len(block) < 348:
        return "nifti"
    return "nifti" if block[344:347] in (b"ni1", b"n+1") or block[4:8] in (b"ni2\0", b"n+2\0") else "analyze"


def _known_format(p: Path, role: str, series_uid: str | None = None) -> str:
    """:func:`detect_format` of ``p``, refusing Analyze 7.5 (no orientation in its header) and a DICOM series asked
    of a file that is not DICOM (the choice would be silently ignored)."""
    fmt = detect_format(p)
    if fmt == "analyze":
        raise Asfe3dInputError(
            p, f"{role} file is an Analyze 7.5 image: its header does not say how the voxels are oriented (which "
            "side is left is a reader's convention); convert it to NIfTI with the orientation checked"
        )
    if series_uid is not None and fmt != "dicom" and not (fmt == "other" and is_dicom_file(p)):
        raise Asfe3dInputError(
            p, f"{role} series {series_uid!r} was asked for (--{role.lower()}-series / series_uid=), but this "
            "input is not DICOM: a series is chosen among those of a DICOM folder"
        )
    return fmt


def check_input_kind(path: str | Path, role: str) -> None:
    """Refuse an input that is neither a regular file nor a folder (a FIFO, socket or device would block or never
    end), before anything opens it.

    Raises:
        Asfe3dInputError: naming the path and what it is.
    """
    import stat

    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise Asfe3dInputError(p, f"{role} input cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    raise Asfe3dInputError(p, f"{role} input is {kind}, not an image file or a DICOM folder")

def read_volume(
    path: str | Path,
    *,
    role: str = "image",
    series_uid: str | None = None,
    frame: int | None = None,
    allow_nonfinite: bool = False,
    nifti_geometry: str = "auto",
    dicom_strict: bool = False,
    keep_frames: bool = False,
    pet_units: str | None = None,
    pet_sidecar: str | Path | Mapping[str, Any] | None = None,
    work_bytes_per_voxel: int | None = None,
) -> Volume:
    """Read a 3D (or 4D frame-stack) volume into a :class:`Volume`.

    A 4D image (e.g. dynamic PET, frames along the 4th axis) is averaged over its frames, or ``frame=N`` (0-based)
    takes one frame, or (``keep_frames``) its frames are kept in ``Volume.frames`` for a rigid realignment after
    loading (:class:`asfe3d.transforms.RealignFrames`, which averages them); which one happened is logged at INFO
    and stored in ``info`` (``frames``, ``frames_averaged`` / ``frame_taken``).

    Args:
        path: a NIfTI file (``.nii`` / ``.nii.gz``), a DICOM series folder, or a file SimpleITK reads
            (``.mha`` / ``.mhd`` / ``.nrrd`` / ...).
        role: what the volume is (e.g. ``"MRI"``, ``"PET"``), used in log messages and errors.
        series_uid: for a DICOM folder holding several series, the SeriesInstanceUID to read.
        frame: 0-based frame of a 4D image to take instead of averaging all frames.
        allow_nonfinite: replace NaN / Inf voxels by 0 (with a WARNING) instead of refusing the file.
        nifti_geometry: which NIfTI matrix places the voxels: ``"auto"`` (default: the sform when its code is
            > 0, else the qform, as nibabel does; a qform and sform that claim the same space but disagree by
            more than :data:`QFORM_SFORM_TOL_MM` are refused), ``"sform"`` or ``"qform"`` (forced; the header
            kept in ``Volume.nifti_header`` is edited to say so). A disagreement is logged (WARNING) and recorded
            in ``info["qform_sform"]``.
        dicom_strict: refuse DICOM stacks (series or enhanced multi-frame) with non-uniform slice gaps, a gantry
            tilt or a slice out of line, instead of resampling them onto a regular grid (the default, like
            dcm2niix; logged at WARNING and recorded in ``info["dicom_resampled"]``).
        keep_frames: keep a 4D image's frames (``Volume.frames``) instead of averaging them, for a realignment
            after loading; ignored with ``frame`` and for a 3D image.
        pet_units: ``None`` keeps the stored values; ``"suv"`` converts Bq/ml (or kBq/ml...) to SUV (body weight)
            from the DICOM header or the JSON sidecar (see :mod:`asfe3d.io.pet`), recorded in
            ``info["pet_units"]`` and logged.
        pet_sidecar: the JSON sidecar (or its content as a mapping: e.g. a BIDS App's metadata with inheritance) to
            take the PET facts and a 4D PET's frame durations from (default: the DICOM header, else the ``.json``
            next to the image).
        work_bytes_per_voxel: the working memory per voxel, beside the stored data, that must be available before
            any voxel is read (``None``: what reading takes; the fusion chain reads its MRI with
            :data:`asfe3d.io.checks.RUN_BYTES_PER_MRI_VOXEL`, the whole run's).

    Returns:
        The volume: ``image`` is 3D ``sitkFloat32`` with LPS geometry of shape ``(X, Y, Z)``.

    Raises:
        Asfe3dInputError: missing path, empty folder, folder without DICOM series, several series and no (or an
            unknown) ``series_uid``, non-uniform or tilted DICOM slices with ``dicom_strict``, DICOM slices with
            mixed orientations or repeated positions (or positions closer than 5 % of the median gap), a gap of
            three or more missing slices, a resampled grid out of bounds, PixelSpacing missing or zero, RescaleSlope
            0, an orientation that is not orthogonal, non-finite positions, unreadable or truncated file, 2D image, 5D /
            multi-component image, ``frame`` out of range, empty or constant volume, non-finite voxels (unless
            ``allow_nonfinite``), a sheared affine; NIfTI sform and qform codes both 0, zero / negative /
            non-finite pixdims, a qform and sform claiming the same space but disagreeing; voxel sizes outside
            [0.01, 50] mm; a header claiming more data than the file holds, more than 2^31 voxels or more memory
            than is available (all checked before the voxels are read).
            With ``pet_units="suv"``: no header nor sidecar, or one that lacks what SUV needs (each missing fact
            named), units that are not an activity concentration, slices that disagree on the SUV facts, a
            half-life contradicting the radionuclide, SUV of another type than body weight, or a sidecar
            contradicting the DICOM.
        ValueError: bad arguments (``role`` not a non-empty string, unknown ``nifti_geometry`` / ``pet_units``,
            ``frame`` of the wrong type).
    """
    _check_read_arguments(role, nifti_geometry, frame, pet_units, work_bytes_per_voxel)
    p = Path(path)
    if not p.exists():
        raise Asfe3dInputError(p, f"{role} input does not exist")
    check_input_kind(p, role)
    fmt = _known_format(p, role, series_uid)
    info: dict[str, Any] = {"role": role}
    header = None
    affine = None
    dicom_file: list[list[Path]] | None = None
    if fmt in ("nifti", "mgh"):
        with working_memory(work_bytes_per_voxel):
            data, affine, header = (_read_nifti(p, role, info, nifti_geometry) if fmt == "nifti"
                                    else _read_mgh(p, role, info))
        frames = [data] if data.ndim == 3 else [data[..., t] for t in range(data.shape[3])]
        nframes = len(frames)
        try:
            geometry = sitk_geometry_from_ras_affine(affine, data.shape[:3])
        except ValueError as err:
            raise Asfe3dInputError(p, f"{role} {'NIfTI' if fmt == 'nifti' else 'MGH'} geometry cannot be used: "
                                      f"{err}") from None
    else:
        with working_memory(work_bytes_per_voxel):
            frames, geometry, fmt, dicom_file = _read_with_sitk(p, fmt, role, series_uid, info, dicom_strict)
    nframes = len(frames)
    _check_position(p, role, geometry, frames[0].shape)
    _sidecar_durations(p, fmt, len(frames), frame, pet_sidecar, info)
    kept = None
    if keep_frames and frame is None and len(frames) > 1:
        kept = _finite_frames(p, frames, role, info, allow_nonfinite)
        arr3 = kept[0]
        # the frames' exact LPS grid, for their realignment (the RAS affine's round trip may differ in last digits)
        info[FRAMES_GEOMETRY_KEY] = [[float(v) for v in g] for g in geometry]
    else:
        arr3 = _pick_frame(p, frames, frame, role, info)
    unmeasured = _unmeasured(frames if frame is None else [arr3]) if allow_nonfinite else None
    del frames
    if pet_units == "suv":  # kept frames: the factor applies to their mean (RealignFrames)
        arr3 = _to_suv(p, arr3, role, info, dicom_file, pet_sidecar, apply=kept is None, frame=frame,
                       nframes=nframes)
    if kept is None:
        arr3 = check_values(p, arr3, role, allow_nonfinite, info)
    image = sitk.GetImageFromArray(np.ascontiguousarray(arr3.transpose(2, 1, 0)))
    image.SetOrigin(tuple(float(v) for v in geometry[0]))
    image.SetSpacing(tuple(float(v) for v in geometry[1]))
    image.SetDirection(tuple(float(v) for v in geometry[2]))
    if affine is not None:
        _verify_nifti_geometry(p, image, affine)
    info.pop("sitk_io", None)
    return Volume(image=image, path=p, format=fmt, nifti_header=header, info=info,
                  frames=None if kept is None else tuple(kept), unmeasured=unmeasured)


def _unmeasured(frames: list[np.ndarray]) -> np.ndarray | None:
    """Where any of the frames is not finite (bool ``(X, Y, Z)``), or ``None`` when all are finite."""
    bad = None
    for f in frames:
        b = ~np.isfinite(np.asarray(f))
        if b.any():
            bad = b if bad is None else bad | b
    return bad


def _check_read_arguments(role: Any, nifti_geometry: Any, frame: Any, pet_units: Any, work_bytes_per_voxel: Any) -> None:
    """:func:`read_volume`'s argument checks (ValueError quoting the value)."""
    if not isinstance(role, str) or not role:
        raise ValueError(f"role must be a non-empty string, got {role!r}.")
    check_bytes_per_voxel(work_bytes_per_voxel)
    if nifti_geometry not in NIFTI_GEOMETRIES:
        raise ValueError(f"nifti_geometry must be one of {NIFTI_GEOMETRIES}, got {nifti_geometry!r}.")
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, (int, np.integer))):
        raise ValueError(f"frame must be an int or None, got {frame!r}.")
    if pet_units is not None and pet_units not in PET_UNITS:
        raise ValueError(f"pet_units must be None or one of {PET_UNITS}, got {pet_units!r}.")


#: the farthest a voxel may lie from the scanner's origin (mm): 100 m, far beyond any scanner's table travel
MAX_POSITION_MM = 1e5


def _check_position(p: Path, role: str, geometry: Sequence[Any], shape: Sequence[int]) -> None:
    """Refuse a grid whose voxels lie absurdly far from the origin (a corrupt header: a position of 1e30 mm), which
    ITK's registration fails on with a multi-line exception."""
    origin, spacing, direction = (np.asarray(g, dtype=np.float64) for g in geometry)
    corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    points = origin + (corners * spacing) @ direction.reshape(3, 3).T
    far = float(np.abs(points).max()) if np.all(np.isfinite(points)) else math.inf
    if far > MAX_POSITION_MM:
        raise Asfe3dInputError(p, f"{role} grid lies {far:.3g} mm from the scanner's origin (more than "
                                  f"{MAX_POSITION_MM:g} mm): not a plausible position (corrupt header?)")


def _read_with_sitk(p: Path, fmt: str, role: str, series_uid: str | None, info: dict[str, Any], dicom_strict: bool
                    ) -> tuple[list[np.ndarray], tuple[Any, Any, Any], str, list[list[Path]] | None]:
    """A DICOM folder or file, or a file SimpleITK reads: ``(frames (X, Y, Z), (origin, spacing, direction), format,
    the DICOM files its PET facts are read from, per frame, or None)``."""
    dicom_file = None
    if fmt == "dicom":
        img, first = read_dicom_folder(p, role, series_uid, info, strict=dicom_strict)
        dicom_file = info.pop(SERIES_FILES_KEY, None) or [[first]]
    elif fmt == "other" and is_dicom_file(p):
        fmt, dicom_file = "dicom", [[p]]
        img = read_dicom_file(p, role, info, strict=dicom_strict)
    else:
        img = _read_sitk_file(p, role, info)
        if fmt == "other":
            fmt = info.pop("sitk_io", "other")
    frames_img = _sitk_frames(p, img, role)
    frames = [sitk_to_numpy_xyz(f) for f in frames_img]
    geometry = (frames_img[0].GetOrigin(), frames_img[0].GetSpacing(), frames_img[0].GetDirection())
    return frames, geometry, fmt, dicom_file


def _sidecar_durations(p: Path, fmt: str, nframes: int, frame: int | None, pet_sidecar: Any,
                       info: dict[str, Any]) -> None:
    """Put the frame durations of the JSON sidecar (``pet_sidecar``, else the one beside a non-DICOM image) in
    ``info["frame_durations_s"]`` when it has ``FrameDuration``, the image has several frames, none is taken
    (``frame``) and the DICOM gave none."""
    if frame is not None or nframes < 2:
        return
    if "frame_durations_s" in info:  # the DICOM's: a sidecar given as well must not contradict them
        given = None if pet_sidecar is None else sidecar_frame_durations(pet_sidecar, nframes, p)
        dicom = info["frame_durations_s"]
        if given is not None and any(abs(a - b) > max(0.5, 0.01 * b) for a, b in zip(given, dicom)):
            where = pet_sidecar if isinstance(pet_sidecar, (str, os.PathLike)) else p
            raise MetadataError("FrameDuration", where, f"PET sidecar FrameDuration {given} contradicts the DICOM's "
                                          f"ActualFrameDuration {dicom} (seconds)")
        return
    sidecar = pet_sidecar if pet_sidecar is not None else (None if fmt == "dicom" else find_sidecar(p))
    durations = None if sidecar is None else sidecar_frame_durations(sidecar, nframes, p)
    if durations is not None:
        info["frame_durations_s"] = durations
        _used_sidecar(info, sidecar)
    elif sidecar is None and fmt != "dicom":  # equal weights for want of a sidecar: one added later changes them
        candidate = sidecar_candidate(p)
        if candidate is not None:
            info["sidecar_absent"] = str(candidate.expanduser().resolve())


def _used_sidecar(info: dict[str, Any], sidecar: Any) -> None:
    """Record a JSON sidecar file whose facts changed the values read (``info["sidecar"]``: a completion record
    fingerprints it, so that editing it makes a rerun redo the work); metadata given as a mapping is recorded
    with the settings instead."""
    if isinstance(sidecar, (str, os.PathLike)):
        info["sidecar"] = str(Path(sidecar).expanduser().resolve())


def _to_suv(p: Path, arr3: np.ndarray, role: str, info: dict[str, Any], dicom_file: list[list[Path]] | None,
            pet_sidecar: Any, apply: bool, frame: int | None, nframes: int) -> np.ndarray:
    """Body-weight SUV: the factor from the DICOM headers (every slice's, ``dicom_file`` per frame) and / or the
    sidecar, for the frame taken (``frame``) or the frames' average, recorded in ``info["pet_units"]`` and logged,
    and applied to ``arr3`` when ``apply``."""
    files = None if dicom_file is None else [f for frame_files in dicom_file for f in frame_files]
    frame_files = dicom_file[frame] if dicom_file is not None and frame is not None and frame < len(dicom_file) \
        else None
    head = read_pet_header(p, dicom_file=files, sidecar=pet_sidecar, frame=frame, nframes=nframes,
                           frame_files=frame_files)
    factor, record = suv_factor(head, p)
    if pet_sidecar is not None or "sidecar:" in head.source:  # a sidecar read, even to check the DICOM's facts
        _used_sidecar(info, pet_sidecar if pet_sidecar is not None else find_sidecar(p))
    if apply:
        arr3 = (arr3 * np.float32(factor)).astype(np.float32, copy=False)
    info["pet_units"] = record
    logger.info(
        "%s %s: converted %s to SUV (body weight): weight %.4g kg, dose %.4g MBq decayed by %.4f over %s s "
        "(DecayCorrection %s, %s), factor %.6g", role, p, head.units, head.weight_kg or float("nan"),
        (head.dose_bq or float("nan")) / 1e6, record["decay_factor"],
        "n/a" if head.seconds_injection_to_reference is None else f"{head.seconds_injection_to_reference:.0f}",
        head.decay_correction, head.source, factor,
    )
    return arr3


# ----------------------------------------------------------------------------------------------------- NIfTI


def _check_scaling(p: Path, role: str) -> None:
    """Refuse an intensity scaling that cannot be applied: ``scl_slope`` or ``scl_inter`` +-Inf, or a NaN intercept
    with a slope in use, as stored in the file (nibabel's loader quietly drops an infinite slope and reads the raw
    values instead). A slope of 0 or NaN means "no scaling" in NIfTI and is accepted."""
    slope, inter = _raw_nifti_scaling(p)
    slope_used = math.isfinite(slope) and slope != 0.0
    if math.isinf(slope) or math.isinf(inter) or (slope_used and math.isnan(inter)):
        raise Asfe3dInputError(p, f"{role} NIfTI header has a non-finite intensity scaling (scl_slope {slope}, "
                                  f"scl_inter {inter}); fix the header")


#: the first two bytes of a gzip stream (RFC 1952)
GZIP_MAGIC = b"\x1f\x8b"


def _gzip_hint(p: Path) -> str:
    """``": it is gzip-compressed: name it ....nii.gz"`` (or the reverse) for a NIfTI whose name says otherwise than
    its first bytes (a hand rename, a download portal); ``""`` when the name fits."""
    import gzip

    try:
        with open(p, "rb") as fh:
            gzipped = fh.read(2) == GZIP_MAGIC
        with (gzip.open if gzipped else open)(p, "rb") as fh:
            first = fh.read(4)
    except (OSError, EOFError):
        return ""
    if len(first) < 4 or not {struct.unpack("<i", first)[0], struct.unpack(">i", first)[0]} & {348, 540}:
        return ""  # not a NIfTI header under either name
    name = p.name
    if gzipped and not name.lower().endswith(".gz"):
        return f"; the file is gzip-compressed: name it {name}.gz"
    if not gzipped and name.lower().endswith(".gz"):
        return f"; the file is not gzip-compressed: name it {name[:-3]}"
    return ""


def _read_nifti(
    p: Path, role: str, info: dict[str, Any], nifti_geometry: str = "auto"
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Load a NIfTI with nibabel; returns (float32 array (X, Y, Z[, T]), RAS affine, header copy).

    The header is checked before any voxel is read: geometry codes, pixdims, qform / sform agreement, voxel sizes
    and the data size against the file size and the memory available.
    """
    pair = p.name.lower().endswith(_PAIR_SUFFIXES)
    head_file, data_file = (_pair_file(p, "hdr"), _pair_file(p, "img")) if pair else (p, p)
    for f in {head_file, data_file}:
        if not f.is_file():
            raise Asfe3dInputError(p, f"{role} NIfTI pair is missing its {f.name!r} file")
    try:
        raw_pixdim = _raw_nifti_pixdim(head_file)
        with _quiet_nibabel():  # nibabel logs (to stderr) the header fields it repairs; asfe3d checks them itself
            img = nib.load(str(p))
    except Exception as err:  # nibabel raises many types for non-images (ImageFileError, gzip errors...)
        raise Asfe3dInputError(p, f"{role} file is not a readable NIfTI image ({_short(err)}){_gzip_hint(p)}") \
            from None
    if not isinstance(img, (nib.Nifti1Pair, nib.Nifti2Pair)):
        raise Asfe3dInputError(p, f"{role} file is not a NIfTI image (nibabel read it as {type(img).__name__})")
    # outputs are single files: a pair's header is kept as the single-file header of the same fields
    # (a single-file NIfTI-2 is a Nifti2Image, which is not a Nifti2Pair: both named, or its float64 matrices would
    # be cut to a NIfTI-1 header's float32 and the output written as NIfTI-1)
    nifti2 = isinstance(img, (nib.Nifti2Image, nib.Nifti2Pair))
    with _quiet_nibabel():
        header = (nib.Nifti2Header if nifti2 else nib.Nifti1Header).from_header(img.header)
    dtype = header.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "c":
        raise Asfe3dInputError(p, f"{role} NIfTI holds {dtype} voxels (colour/complex), not a scalar volume")
    _check_scaling(head_file, role)
    shape = tuple(int(s) for s in img.shape)
    _check_shape(p, shape, role)
    affine = _nifti_geometry(p, role, header, shape, nifti_geometry, info, raw_pixdim)
    offset = int(getattr(img.dataobj, "offset", 0) or 0)
    compressed = data_file.name.lower().endswith(".gz")
    check_data_size(data_file, role, shape, dtype.itemsize, stored_bytes=max(0, data_file.stat().st_size - offset)
                    if not compressed else data_file.stat().st_size, compressed=compressed)
    try:  # decode the whole array: a truncated .nii.gz is only noticed here
        if compressed and not pair:  # ISA-L inflates about 3x faster than zlib; the same header, the same voxels
            from isal import igzip

            img = type(img).from_bytes(igzip.decompress(p.read_bytes()))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as err:
        raise Asfe3dInputError(
            p, f"{role} NIfTI voxel data cannot be read (truncated or corrupt file?): {_short(err)}"
        ) from None
    data = data.reshape(shape[:3] + (int(np.prod(shape[3:], dtype=np.int64)),)) if len(shape) > 3 else data
    info["sitk_header_geometry_agrees"] = _sitk_header_agrees(p, affine)
    if info["sitk_header_geometry_agrees"] is False:
        logger.info(
            "%s %s: SimpleITK's reader would use a different geometry than nibabel's %s; using nibabel's (%s)",
            role, p, info["geometry_source"], info["geometry_source"],
        )
    return data, affine, header


#: the fixed start of an MGH header (big-endian): version, dims (X, Y, Z, frames), type, dof, goodRASFlag, delta,
#: Mdc (the direction cosines, stored transposed), Pxyz_c (the centre's RAS position)
_MGH_HEAD = ">i4iiih3f9f3f"


#: MGH data type codes nibabel reads -> bytes per voxel (FreeSurfer's uchar, int, float, short, ushort)
_MGH_TYPES = {0: 1, 1: 4, 3: 4, 4: 2, 10: 2}


def _check_mgh_header(p: Path, role: str) -> tuple[int, ...]:
    """Check an MGH / MGZ header before nibabel reads it (nibabel repairs or guesses what asfe3d refuses); returns
    the dimensions (X, Y, Z, frames)."""
    try:
        with ImageOpener(str(p), "rb") as fh:
            block = fh.read(struct.calcsize(_MGH_HEAD))
    except Exception as err:  # a damaged .mgz fails in gzip
        raise Asfe3dInputError(p, f"{role} file is not a readable MGH/MGZ image ({_short(err)})") from None
    if block[:2] == GZIP_MAGIC:  # a gzip stream named .mgh: read raw, it would look like a wrong version
        raise Asfe3dInputError(p, f"{role} file is gzip-compressed but named .mgh; name it .mgz")
    if len(block) < struct.calcsize(_MGH_HEAD):
        raise Asfe3dInputError(p, f"{role} file is too short for an MGH header ({len(block)} bytes)")
    head = struct.unpack(_MGH_HEAD, block)
    version, dims, kind, good_ras = head[0], tuple(head[1:5]), head[5], head[7]
    delta, mdc = np.asarray(head[8:11], dtype=np.float64), np.asarray(head[11:20], dtype=np.float64).reshape(3, 3)
    if version != 1:
        raise Asfe3dInputError(p, f"{role} file is not an MGH/MGZ image (version {version}, expected 1)")
    if any(d < 1 for d in dims):
        raise Asfe3dInputError(p, f"{role} MGH header has dimensions {list(dims)}: each must be at least 1")
    if kind not in _MGH_TYPES:
        raise Asfe3dInputError(p, f"{role} MGH data type {kind} is not one asfe3d reads (0 uchar, 1 int, 3 float, "
                                  "4 short, 10 ushort)")
    if good_ras <= 0:
        raise Asfe3dInputError(
            p, f"{role} MGH header does not hold the image's orientation (goodRASFlag {good_ras}): FreeSurfer would "
            "assume a default coronal one (nibabel too, for 0); set the geometry (e.g. mri_convert with the "
            "scanner's orientation) first")
    check_voxel_sizes(p, role, delta, "MGH voxel sizes (delta)")
    lengths = np.linalg.norm(mdc, axis=1)  # the direction cosines (rows as stored): unit vectors in every MGH
    if not np.all(np.isfinite(mdc)) or np.abs(lengths - 1.0).max() > 1e-3:
        raise Asfe3dInputError(
            p, f"{role} MGH direction cosines are not unit vectors (lengths {np.round(lengths, 4).tolist()}): the "
            f"header does not agree with its voxel sizes {np.round(delta, 4).tolist()} (corrupt header?)")
    compressed = p.name.lower().endswith((".mgz", ".gz"))
    check_data_size(p, role, dims, _MGH_TYPES[kind],
                    stored_bytes=max(0, p.stat().st_size - 284) if not compressed else p.stat().st_size,
                    compressed=compressed)
    return dims


def _read_mgh(p: Path, role: str, info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, None]:
    """Load FreeSurfer's MGH / MGZ with nibabel; returns (float32 array (X, Y, Z[, T]), RAS affine (the header's
    vox2ras), ``None``: outputs get a NIfTI header with the same affine, codes 1).

    The header is checked before any voxel is read (:func:`_check_mgh_header`): version, dimensions, data type,
    voxel sizes, unit direction cosines, that it holds its orientation (``goodRASFlag`` > 0: without it FreeSurfer
    and nibabel both assume a coronal default, a guess) and the data size against the file size and the memory
    available.
    """
    _check_mgh_header(p, role)
    try:
        with _quiet_nibabel():
            if p.name.lower().endswith(".gz"):  # .mgh.gz, FreeSurfer's other name for .mgz: nibabel goes by .mgz
                from isal import igzip

                img = nib.MGHImage.from_bytes(igzip.decompress(p.read_bytes()))
            else:
                img = nib.load(str(p))
    except Exception as err:
        raise Asfe3dInputError(p, f"{role} file is not a readable MGH/MGZ image ({_short(err)})") from None
    if not isinstance(img, nib.MGHImage):  # pragma: no cover - nibabel loads .mgz/.mgh as MGHImage
        raise Asfe3dInputError(p, f"{role} file is not an MGH image (nibabel read it as {type(img).__name__})")
    shape = tuple(int(s) for s in img.shape)
    _check_shape(p, shape, role)
    affine = np.array(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise Asfe3dInputError(p, f"{role} MGH geometry holds non-finite numbers {np.round(affine[:3], 6).tolist()}")
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as err:
        raise Asfe3dInputError(
            p, f"{role} MGH voxel data cannot be read (truncated or corrupt file?): {_short(err)}") from None
    info["geometry_source"] = "mgh vox2ras"
    return data, affine, None


@contextlib.contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """nibabel's header warnings off (thread-safe, :class:`asfe3d.utils.toggle.SharedToggle`)."""
    with _NIBABEL_QUIET.held():
        yield


_NIBABEL_QUIET = SharedToggle(lambda: logging.getLogger("nibabel.global").level,
                              logging.getLogger("nibabel.global").setLevel, logging.ERROR)


def _raw_nifti_pixdim(p: Path) -> np.ndarray:
    """pixdim[1:4] as stored in the file (nibabel's loader silently replaces zeros by 1 and negatives by their
    absolute values)."""
    with ImageOpener(str(p), "rb") as fh:
        block = fh.read(540)
    if len(block) < 348:
        raise ValueError(f"file too short for a NIfTI header ({len(block)} bytes)")
    for endian in "<>":
        sizeof_hdr = struct.unpack(endian + "i", block[:4])[0]
        if sizeof_hdr == 348:
            return np.asarray(struct.unpack(endian + "3f", block[80:92]), dtype=np.float64)
        if sizeof_hdr == 540 and len(block) >= 540:
            return np.asarray(struct.unpack(endian + "3d", block[112:136]), dtype=np.float64)
    raise ValueError(f"not a NIfTI header (sizeof_hdr = {struct.unpack('<i', block[:4])[0]})")


def _raw_nifti_scaling(p: Path) -> tuple[float, float]:
    """``(scl_slope, scl_inter)`` as stored in the file."""
    with ImageOpener(str(p), "rb") as fh:
        block = fh.read(540)
    for endian in "<>":
        sizeof_hdr = struct.unpack(endian + "i", block[:4])[0] if len(block) >= 4 else 0
        if sizeof_hdr == 348 and len(block) >= 124:
            return tuple(float(v) for v in struct.unpack(endian + "2f", block[112:120]))  # type: ignore[return-value]
        if sizeof_hdr == 540 and len(block) >= 540:
            return tuple(float(v) for v in struct.unpack(endian + "2d", block[176:192]))  # type: ignore[return-value]
    return (float("nan"), 0.0)


def _corner_distance_mm(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...]) -> float:
    """Largest distance (mm) between where two affines put the 8 corner voxels of a grid."""
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    return float(np.linalg.norm((corners @ a.T - corners @ b.T)[:, :3], axis=1).max())


def _nifti_geometry(
    p: Path, role: str, header: Any, shape: tuple[int, ...], choice: str, info: dict[str, Any], pixdim: np.ndarray
) -> np.ndarray:
    """Choose (or refuse) the NIfTI geometry; records ``geometry_source`` (and ``qform_sform``) in ``info``.

    ``header`` (a copy) is edited when ``choice`` forces the matrix nibabel would not pick, so that
    ``header.get_best_affine()`` and outputs written with this header carry the geometry that was used.
    """
    scode, qcode = int(header["sform_code"]), int(header["qform_code"])
    if scode <= 0 and qcode <= 0:
        raise Asfe3dInputError(
            p, f"{role} NIfTI header has sform_code and qform_code both 0: it does not say where the voxels are "
            "(nibabel would guess a pixdim-only affine); set the sform or qform first"
        )
    _check_space_units(p, role, header, pixdim)
    check_voxel_sizes(p, role, pixdim, "NIfTI pixdim[1:4]")
    sform = np.array(header.get_sform(), dtype=np.float64)
    qform = np.array(header.get_qform(), dtype=np.float64)
    for name, code, matrix in (("sform", scode, sform), ("qform", qcode, qform)):
        if code > 0 and not np.all(np.isfinite(matrix)):
            raise Asfe3dInputError(
                p, f"{role} NIfTI {name} (code {code}) holds non-finite numbers "
                f"{np.round(matrix[:3], 6).tolist()}; fix the header"
            )
    if (choice == "sform" and scode <= 0) or (choice == "qform" and qcode <= 0):
        # the choice is between two geometries (--nifti-geometry applies to both inputs: an SPM PET has only an sform)
        only = "qform" if choice == "sform" else "sform"
        info["geometry_choice_unused"] = f"nifti_geometry={choice!r} was asked for; the file has only a {only}"
        logger.info("%s %s: has no %s (code 0); its %s is used (nifti_geometry chooses between the two)",
                    role, p, choice, only)
        choice = "auto"
    if choice == "auto":
        used = "sform" if scode > 0 else "qform"
    else:
        used = choice
    if scode > 0:
        sform = _sform_as_read(p, role, sform, shape, qcode, used, info)
    if scode > 0 and qcode > 0:
        diff = _corner_distance_mm(sform, qform, shape)
        if diff > QFORM_SFORM_TOL_MM:
            record = {"max_difference_mm": round(diff, 4), "sform_code": scode, "qform_code": qcode, "used": used}
            if choice != "auto":
                record["reason"] = f"nifti_geometry={choice!r} was asked for"
            elif scode == qcode:
                raise Asfe3dInputError(
                    p, f"{role} NIfTI qform and sform both claim the same space (code {scode}) but place the voxels "
                    f"up to {diff:.3g} mm apart; choose one with --nifti-geometry sform or qform / nifti_geometry='sform' or 'qform'"
                )
            else:
                record["reason"] = (f"sform_code {scode} and qform_code {qcode} name different spaces; the sform "
                                    "takes precedence (as in nibabel and FSL)")
            info["qform_sform"] = record
            logger.warning(
                "%s %s: qform and sform disagree by up to %.3g mm; using the %s (%s)",
                role, p, diff, used, record["reason"],
            )
    if used == "qform":
        affine = qform
        if scode > 0:  # outputs carry this header: make it say what was used
            header.set_sform(None, code=0)
    else:
        affine = sform
        if qcode > 0 and choice == "sform":
            header.set_qform(sform, code=scode)
    check_voxel_sizes(p, role, np.linalg.norm(affine[:3, :3], axis=0), f"{used} voxel sizes")
    info["geometry_source"] = used
    info["nifti_space_code"] = scode if used == "sform" else qcode  # 3/4/5: Talairach, MNI152, another template
    return affine


#: NIfTI space units other than mm that readers disagree on -> factor to mm (ITK's NIfTI reader scales by it)
_OTHER_SPACE_UNITS = {"meter": 1000.0, "micron": 0.001}


def _check_space_units(p: Path, role: str, header: Any, pixdim: np.ndarray) -> None:
    """Refuse a NIfTI whose ``xyzt_units`` says its distances are in metres or microns: ITK-based readers (3D
    Slicer, ITK-SNAP, ANTs, SimpleITK) scale the voxel sizes by it while nibabel, FSL and SPM read mm, so the
    header does not say how large the head is ("unknown" units are read as mm, as everywhere)."""
    units = header.get_xyzt_units()[0]
    if units not in _OTHER_SPACE_UNITS:
        return
    scaled = [round(float(v) * _OTHER_SPACE_UNITS[units], 6) for v in pixdim]
    raise Asfe3dInputError(
        p, f"{role} NIfTI header gives its distances in {units}s (xyzt_units): ITK-based readers (3D Slicer, "
        f"ITK-SNAP, ANTs) read voxels of {scaled} mm, nibabel, FSL and SPM {[round(float(v), 6) for v in pixdim]} "
        "mm; the header does not say which is meant: set its units to mm (nibabel: img.header.set_xyzt_units('mm'), "
        "with the voxel sizes in mm) first")


def _sform_as_read(
    p: Path, role: str, sform: np.ndarray, shape: tuple[int, ...], qcode: int, used: str, info: dict[str, Any]
) -> np.ndarray:
    """The sform asfe3d places the voxels with: made orthogonal when its shear is that of rounded direction cosines
    (dcm2niix's sform of a DICOM series whose orientation was written with 3 decimals: ITK-based readers then use
    the file's qform, which is this same orthogonal matrix), recorded in ``info["sform_orthogonalised"]``; refused
    when it is to be used and its shear is larger."""
    if np.any(np.linalg.norm(sform[:3, :3], axis=0) <= 0):
        return sform  # refused by the voxel size check
    shear = affine_shear(sform)
    angle = float(np.degrees(np.arcsin(min(shear, 1.0))))
    if shear > ROUNDED_COSINES_TOL:
        if used != "sform":
            return sform
        alternative = (f"its qform (code {qcode}) is orthogonal: --nifti-geometry qform / nifti_geometry='qform' "
                       "uses it" if qcode > 0 else "resample it onto an orthogonal grid first")
        raise Asfe3dInputError(
            p, f"{role} NIfTI sform is sheared (voxel axes deviate from orthogonal by up to {angle:.3g} degrees, more "
            f"than rounded direction cosines explain), which no orthogonal grid places; {alternative}")
    if shear <= ORTHOGONALITY_TOL:
        return sform
    orthogonal = nearest_orthogonal_affine(sform)
    shift = _corner_distance_mm(sform, orthogonal, shape)
    info["sform_orthogonalised"] = {"shear_degrees": round(angle, 5), "max_shift_mm": round(shift, 4)}
    logger.info("%s %s: sform axes %.3g degrees from orthogonal (rounded direction cosines): placed on the "
                "nearest orthogonal grid (corners move up to %.3g mm; the header is kept)", role, p, angle, shift)
    return orthogonal


def _sitk_header_agrees(p: Path, affine: np.ndarray) -> bool | None:
    """Whether SimpleITK's header-only reading of a NIfTI gives the same grid as ``affine`` (None: it failed)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        with quiet_itk():  # ITK prints e.g. "unexpected scales in sform" otherwise
            reader.ReadImageInformation()
    except RuntimeError:
        return None
    dim = reader.GetDimension()
    if dim < 3:
        return None
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    spacing = np.asarray(reader.GetSpacing(), dtype=np.float64)[:3]
    origin = np.asarray(reader.GetOrigin(), dtype=np.float64)[:3]
    sitk_aff = np.eye(4)
    sitk_aff[:3, :3] = LPS_TO_RAS @ direction @ np.diag(spacing)
    sitk_aff[:3, 3] = LPS_TO_RAS @ origin
    return bool(np.allclose(sitk_aff, affine, atol=GEOMETRY_TOL_MM))


def _verify_nifti_geometry(p: Path, image: sitk.Image, affine: np.ndarray) -> None:
    got = ras_affine_from_sitk(image)
    if not np.allclose(got, affine, atol=GEOMETRY_TOL_MM):  # pragma: no cover - guards a bug, not user input
        raise RuntimeError(f"{p}: rebuilt SimpleITK geometry {got.tolist()} differs from nibabel's {affine.tolist()}")


# ----------------------------------------------------------------------------------------------- SimpleITK


def _read_sitk_file(p: Path, role: str, info: dict[str, Any]) -> sitk.Image:
    if p.is_dir():  # pragma: no cover - dispatch sends folders to DICOM
        raise Asfe3dInputError(p, f"{role} input is a folder")
    if p.name.lower().endswith(_MINC_SUFFIXES):  # before ITK: its HDF5 library prints pages on a damaged file
        raise Asfe3dInputError(p, f"{role} file is MINC, which asfe3d does not read (SimpleITK's MINC reader places "
                                  "MINC's world coordinates turned 180 degrees about z); convert it to NIfTI first "
                                  "(mnc2nii)")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        if "Unable to determine ImageIO reader" in str(err) and detect_format(p) == "other":
            # no reader knows the format (not a damaged .mha / .nrrd): say which ones asfe3d reads
            problem = headerless_dicom_problem(p, role)
            if problem:
                raise Asfe3dInputError(p, problem) from None
            raise Asfe3dInputError(p, f"{role} file is not in a format asfe3d reads ({_format_hint(p)}NIfTI "
                                      ".nii/.nii.gz/.hdr+.img, DICOM, MHA/MHD, NRRD, MGH/MGZ)") from None
        raise Asfe3dInputError(p, f"{role} file is not a readable image ({_short(err)})") from None
    io_name = reader.GetImageIO() or reader.GetImageIOFromFileName(str(p))  # (the first is "" unless set)
    if detect_format(p) == "other" and "gdcm" not in io_name.lower():
        # a format outside the documented list (VTK, GIPL, TIFF, MINC without its suffix...): its geometry is
        # SimpleITK's reading of it, which nothing here can check
        raise Asfe3dInputError(p, f"{role} file is read by SimpleITK's {io_name}, a format asfe3d does not read (its "
                                  "placement in the world cannot be checked); convert it to NIfTI first (asfe3d "
                                  "reads NIfTI .nii/.nii.gz/.hdr+.img, DICOM, MHA/MHD, NRRD, MGH/MGZ)")
    _check_sitk_header(p, reader, role)
    try:
        img = reader.Execute()  # reads (and decompresses) all voxels
    except RuntimeError as err:
        raise Asfe3dInputError(p, f"{role} file is not a readable image ({_short(err)})") from None
    name = io_name.replace("ImageIO", "").lower() or "other"
    info["sitk_io"] = {"gdcm": "dicom", "nifti": "nifti-pair", "meta": "mha"}.get(name, name)
    return img


#: MINC file names (refused by name, before SimpleITK opens them)
_MINC_SUFFIXES = (".mnc", ".mnc.gz", ".mnc2")


def _format_hint(p: Path) -> str:
    """What to do with a known format asfe3d does not read (e.g. FreeSurfer's ``.mgz``), or ``""``."""
    return "asfe3d reads "


def _check_sitk_header(p: Path, reader: sitk.ImageFileReader, role: str) -> None:
    """Voxel sizes and data size of a SimpleITK-readable file, from its header only (before any voxel is read)."""
    size = tuple(int(s) for s in reader.GetSize())
    if len(size) >= 3:
        check_voxel_sizes(p, role, reader.GetSpacing()[:3], "spacing")
        _check_direction(p, role, reader.GetDirection(), reader.GetDimension())
        if not all(math.isfinite(v) for v in reader.GetOrigin()):
            raise Asfe3dInputError(p, f"{role} header has a non-finite origin {list(reader.GetOrigin())}; the "
                                      "geometry is unknown")
    stored, compressed = sitk_stored_bytes(p)
    if "gdcm" in (reader.GetImageIO() or reader.GetImageIOFromFileName(str(p))).lower():
        stored, compressed = p.stat().st_size, True  # encapsulated (JPEG...) pixel data: only a weak bound
    check_data_size(p, role, size, sitk_pixel_bytes(reader.GetPixelID(), reader.GetNumberOfComponents()),
                    stored_bytes=stored, compressed=compressed)


def _check_direction(p: Path, role: str, direction: Sequence[float], dim: int) -> None:
    """Refuse a header direction matrix (its first three axes) that is not finite or not orthonormal: a sheared
    or scaled grid, which the rest of the pipeline (and the NIfTI outputs' qform) cannot place."""
    d = np.asarray(direction, dtype=np.float64).reshape(dim, dim)[:3, :3]
    shown = np.round(d, 6).tolist()
    if not np.all(np.isfinite(d)):
        raise Asfe3dInputError(p, f"{role} header has a non-finite direction matrix {shown}; the geometry is unknown")
    gram = d.T @ d
    lengths = np.sqrt(np.diag(gram))
    if lengths.min() < 1e-6:
        raise Asfe3dInputError(p, f"{role} header's direction matrix {shown} has an axis of length 0; the geometry "
                                  "is unknown")
    cos = np.abs(gram / np.outer(lengths, lengths) - np.eye(3)).max()
    if cos > ORTHOGONALITY_TOL:
        raise Asfe3dInputError(
            p, f"{role} header's direction matrix {shown} is sheared (voxel axes deviate from orthogonal by up to "
            f"{np.degrees(np.arcsin(min(cos, 1.0))):.3g} degrees); asfe3d needs an orthogonal grid: resample it first"
        )
    if np.abs(lengths - 1.0).max() > ORTHOGONALITY_TOL:
        raise Asfe3dInputError(
            p, f"{role} header's direction matrix {shown} has axes of length {np.round(lengths, 6).tolist()}, not 1: "
            "a voxel size hidden in the directions; fix the header"
        )


def _sitk_frames(p: Path, img: sitk.Image, role: str) -> list[sitk.Image]:
    """Split a 3D / 4D SimpleITK image into 3D frames (each with the 3D geometry)."""
    ncomp = img.GetNumberOfComponentsPerPixel()
    if ncomp > 1:
        raise Asfe3dInputError(
            p, f"{role} image has {ncomp} components per voxel (vector/colour image), not a scalar volume"
        )
    size = tuple(int(s) for s in img.GetSize())
    _check_shape(p, size, role)
    if img.GetDimension() == 3:
        return [img]
    if img.GetDimension() != 4:  # pragma: no cover - _check_shape refuses other dimensions
        raise Asfe3dInputError(p, f"{role} image is {img.GetDimension()}D")
    frames = []
    for t in range(size[3]):
        frames.append(sitk.Extract(img, list(size[:3]) + [0], [0, 0, 0, t]))
    return frames


# ------------------------------------------------------------------------------------------------- checks


def _check_shape(p: Path, shape: tuple[int, ...], role: str) -> None:
    if len(shape) < 3:
        raise Asfe3dInputError(p, f"{role} image is {len(shape)}D (shape {shape}); a 3D volume is needed")
    if len(shape) > 4 and any(s != 1 for s in shape[4:]):
        raise Asfe3dInputError(
            p, f"{role} image is {len(shape)}D (shape {shape}): not a 3D volume nor a stack of 3D frames "
            "(vector / multi-component data?)"
        )
    if any(s == 0 for s in shape):
        raise Asfe3dInputError(p, f"{role} image is empty (shape {shape})")
    if any(s == 1 for s in shape[:3]):
        raise Asfe3dInputError(p, f"{role} image is a single slice (shape {shape}), i.e. 2D; a 3D volume is needed")


def _pick_frame(p: Path, frames: list[np.ndarray], frame: int | None, role: str, info: dict[str, Any]) -> np.ndarray:
    """Reduce 3D frames ``(X, Y, Z)`` to one float32 3D array: frame ``frame``, or the plain mean."""
    nframes = len(frames)
    info["frames"] = nframes
    if frame is not None:
        if not 0 <= int(frame) < nframes:
            raise Asfe3dInputError(p, f"{role} frame={frame} is out of range: the image has {nframes} frame(s)")
        if nframes > 1:
            info["frame_taken"] = int(frame)
            logger.info("%s %s: took frame %d of %d", role, p, int(frame), nframes)
        return np.asarray(frames[int(frame)], dtype=np.float32)
    if nframes == 1:
        return np.asarray(frames[0], dtype=np.float32)
    weights = frame_weights(info, nframes)
    acc = np.zeros(frames[0].shape, dtype=np.float64)
    if weights is not None:
        for f, w in zip(frames, weights):
            acc += w * np.asarray(f, dtype=np.float64)
    else:  # the plain mean, summed as before
        for f in frames:
            acc += f
        acc /= nframes
    info["frames_averaged"] = nframes
    logger.info("%s %s: averaged %d frames without realignment%s (pass --pet-frame N / frame=N to take one)", role, p,
                nframes, "" if weights is None else " weighted by their durations")
    return np.asarray(acc, dtype=np.float32)


def frame_weights(info: dict[str, Any], nframes: int) -> np.ndarray | None:
    """Weights of a 4D image's frames in their average: their durations (``info["frame_durations_s"]``, from the
    DICOM frames or the JSON sidecar's ``FrameDuration``) over the total, so that the average is the activity over
    the whole scan (as a static image of the same span) rather than over-weighting short early frames; ``None``
    (the plain mean) when the durations are not known. Which it is goes to ``info["frame_weighting"]``."""
    durations = info.get("frame_durations_s")
    if durations is not None and len(durations) == nframes:
        info["frame_weighting"] = "duration"
        d = np.asarray(durations, dtype=np.float64)
        return d / d.sum()
    info["frame_weighting"] = "equal (frame durations not known)"
    return None


def _finite_frames(p: Path, frames: list[np.ndarray], role: str, info: dict[str, Any],
                   allow_nonfinite: bool) -> list[np.ndarray]:
    """The frames as float32 arrays kept for a realignment, which needs finite voxels: non-finite ones refused or
    (``allow_nonfinite``) replaced by 0 now, as :func:`check_values` would."""
    info["frames"] = len(frames)
    out = []
    repaired = 0
    for f in frames:
        arr = np.asarray(f, dtype=np.float32)
        bad = ~np.isfinite(arr)
        if bad.any():
            if not allow_nonfinite:
                raise Asfe3dInputError(
                    p, f"{role} image has {int(bad.sum())} non-finite (NaN/Inf) voxels in its frames; pass "
                    "--allow-nonfinite / allow_nonfinite=True to replace them by 0"
                )
            repaired += int(bad.sum())
            arr = np.where(bad, np.float32(0), arr)
        out.append(arr)
    if repaired:
        info["nonfinite_repaired"] = repaired
        logger.warning("%s %s: replaced %d non-finite (NaN/Inf) voxels by 0 in its frames", role, p, repaired)
    return out


def check_values(p: Path, arr: np.ndarray, role: str, allow_nonfinite: bool, info: dict[str, Any]) -> np.ndarray:
    """A volume's voxel values checked: non-finite ones refused or (``allow_nonfinite``) replaced by 0 (counted in
    ``info["nonfinite_repaired"]``), a constant volume refused.

    Args:
        p: the input (named in errors).
        arr: float32 ``(X, Y, Z)``.
        role: ``"MRI"``, ``"PET"``...
        allow_nonfinite: repair instead of refusing.
        info: the volume's provenance, updated.

    Returns:
        The array (repaired copy when needed).

    Raises:
        Asfe3dInputError: non-finite voxels (without ``allow_nonfinite``) or a constant volume.
    """
    bad = ~np.isfinite(arr)
    nbad = int(bad.sum())
    info.setdefault("nonfinite_repaired", 0)
    if nbad:
        # NaN around the image, on its faces: what SPM's reslicing (and masked derivatives) write outside the field
        # of view on purpose, not damage; once 0 it reads as "nothing there" (for a PET: no uptake)
        around = bad.ndim == 3 and _touching_faces(bad).sum() == nbad
        why = (" (they lie around the image, as SPM's reslicing writes NaN outside a field of view: read as 0"
               + (", they lie outside the PET's field of view, and the fused image is blank there)" if role == "PET"
                  else " they are shown as empty)")
               ) if around else ""
        if not allow_nonfinite:
            raise Asfe3dInputError(
                p, f"{role} image has {nbad} non-finite (NaN/Inf) voxels of {arr.size}{why}; "
                "pass --allow-nonfinite / allow_nonfinite=True to replace them by 0"
            )
        arr = np.where(bad, np.float32(0), arr).astype(np.float32)
        info["nonfinite_repaired"] = nbad
        logger.warning("%s %s: replaced %d non-finite (NaN/Inf) voxels by 0%s", role, p, nbad, why)
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        raise Asfe3dInputError(p, f"{role} volume is constant (all voxels = {lo:g})")
    return arr


def _touching_faces(mask: np.ndarray) -> np.ndarray:
    """The parts of a 3D ``mask`` connected to a face of the volume."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    faces = np.concatenate([np.take(labels, i, axis=a).ravel() for a in range(3) for i in (0, -1)])
    return np.isin(labels, np.unique(faces[faces > 0]))


_short = short_error


#: metadata keys of :func:`volume_to_metatensor`: the reader's provenance and the original NIfTI header (bytes)
SOURCE_KEY = "asfe3d_source"
HEADER_KEY = "asfe3d_nifti_header"
#: MetaTensor metadata key of :attr:`Volume.unmeasured`: ``{"mask": bool (X, Y, Z), "affine": its grid's RAS
#: affine}`` (absent when every voxel was finite); read it with :func:`unmeasured_on`
UNMEASURED_KEY = "asfe3d_unmeasured"


def unmeasured_on(img: Any) -> np.ndarray | None:
    """Where an image's file held NaN/Inf (``img.meta["asfe3d_unmeasured"]``), on the image's current grid.

    The mask keeps the grid it was read on: after MONAI's ``Orientationd``, ``Spacingd``, a flip or a crop it is
    taken to the image's current grid by nearest neighbour in world space (else it would mark the wrong voxels).
    A bare array (no affine) is taken as on the image's grid when its shape fits.

    Args:
        img: a ``(C, X, Y, Z)`` MetaTensor.

    Returns:
        bool ``(X, Y, Z)``, or ``None`` when nothing is unmeasured.

    Raises:
        ValueError: a bare array of another shape than the image's, or a malformed entry.
    """
    entry = getattr(img, "meta", {}).get(UNMEASURED_KEY)
    if entry is None:
        return None
    shape = tuple(int(n) for n in img.shape[1:4])
    if not isinstance(entry, Mapping):
        mask = np.asarray(entry, bool)
        if mask.shape != shape:
            raise ValueError(f"meta[{UNMEASURED_KEY!r}] must have the image's shape {shape} (or be a dict with its "
                             f"own 'affine'), got {mask.shape}")
        return mask
    try:
        mask, affine = np.asarray(entry["mask"], bool), np.asarray(entry["affine"], np.float64)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"meta[{UNMEASURED_KEY!r}] must hold 'mask' and 'affine', got {sorted(entry)}") from err
    if mask.ndim != 3 or affine.shape != (4, 4):
        raise ValueError(f"meta[{UNMEASURED_KEY!r}]: mask must be 3D and affine 4x4, got {mask.shape} and "
                         f"{affine.shape}")
    current = np.asarray(ras_affine(img), np.float64)
    if mask.shape == shape and np.allclose(affine, current, atol=1e-5):
        return mask
    measured = sitk_image_from_ras_affine((~mask).astype(np.uint8), affine)
    grid = sitk_image_from_ras_affine(np.zeros(shape, np.uint8), current)
    moved = sitk_to_numpy_xyz(sitk.Resample(measured, grid, sitk.Transform(3, sitk.sitkIdentity),
                                            sitk.sitkNearestNeighbor, 1, sitk.sitkUInt8))
    return moved == 0  # (outside the mask's own grid: measured as far as it knows, 1)


def ras_affine(img: Any) -> np.ndarray:
    """The affine of ``img`` in RAS world coordinates (float64, ``(4, 4)`` or ``(B, 4, 4)`` for a batch).

    MONAI's loaders give a RAS affine unless told otherwise: ``LoadImage(reader="ITKReader",
    affine_lps_to_ras=False)`` keeps ITK's LPS one and says so in ``meta["space"]``. Every step that places an image
    in the world (registration, saving, previews) reads the affine through this function, so an LPS image is neither
    registered nor written mirrored in x and y.

    Args:
        img: a ``(C, X, Y, Z)`` MetaTensor (its ``affine`` and ``meta["space"]``; no ``space``: RAS, MONAI's default),
            or a batch of them: stacked, or collated by a MONAI ``DataLoader`` (``(B, 4, 4)`` affines, one space per
            item).

    Raises:
        ValueError: ``meta["space"]`` that is neither RAS nor LPS (quoted), or a list of spaces that does not give
            one per item of the affines.
    """
    from monai.utils import MetaKeys, SpaceKeys

    affine = np.asarray(img.affine.detach().cpu(), np.float64)
    space = img.meta.get(MetaKeys.SPACE, SpaceKeys.RAS)
    if isinstance(space, (list, tuple)):  # a batch collated by a DataLoader: one space per item
        if affine.ndim != 3 or len(space) != affine.shape[0]:
            raise ValueError(f"the image's meta['space'] is {space!r}: one space per item of its affines "
                             f"{affine.shape} expected")
        return np.stack([_ras(a, s) for a, s in zip(affine, space)])
    return _ras(affine, space)


def _ras(affine: np.ndarray, space: Any) -> np.ndarray:
    """``affine`` (of an image whose ``meta["space"]`` is ``space``) in RAS world coordinates."""
    from monai.data.utils import orientation_ras_lps
    from monai.utils import SpaceKeys

    if str(space).upper() == SpaceKeys.RAS.value:
        return affine
    if str(space).upper() == SpaceKeys.LPS.value:
        return np.asarray(orientation_ras_lps(affine), np.float64)
    raise ValueError(f"the image's meta['space'] is {space!r}: expected 'RAS' or 'LPS' (MONAI's world spaces), so "
                     "its affine cannot be placed in the world")


def volume_to_metatensor(vol: Volume) -> Any:
    """MONAI MetaTensor of a :class:`Volume`, channel first.

    Args:
        vol: the volume.

    Returns:
        float32 ``MetaTensor`` of shape ``(1, X, Y, Z)`` (``(T, X, Y, Z)``: the kept frames of a 4D volume read
        with ``keep_frames``) whose ``affine`` is ``vol.affine_ras`` (float64); its meta
        holds ``filename_or_obj`` (the source path), ``space`` = ``"RAS"``, the reader's provenance
        (``asfe3d_source``: format and ``vol.info``), for NIfTI, the original header's bytes
        (``asfe3d_nifti_header``), so that outputs can be written like the input, and ``vol.unmeasured`` when
        there is one (``asfe3d_unmeasured``).

    Raises:
        ValueError: when ``vol`` is not a Volume.
    """
    import torch
    from monai.data import MetaTensor
    from monai.utils import MetaKeys, SpaceKeys

    if not isinstance(vol, Volume):
        raise ValueError(f"vol must be an asfe3d.io.Volume, got {type(vol).__name__}.")
    if vol.frames is not None:  # kept frames: (T, X, Y, Z), for a realignment after loading
        data = torch.from_numpy(np.stack([np.asarray(f, dtype=np.float32) for f in vol.frames]))
    else:
        data = torch.from_numpy(vol.array_xyz()[None])
    # MONAI's own keys as its LoadImage + EnsureChannelFirst set them, so that its writers (SaveImaged) take it:
    # the channel was added here, not read from the file; the affine as read
    meta = {"filename_or_obj": str(vol.path), MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: "no_channel" if vol.frames is None else 0,
            MetaKeys.ORIGINAL_AFFINE: np.array(vol.affine_ras, dtype=np.float64),
            SOURCE_KEY: {"format": vol.format, **vol.info}}
    if vol.nifti_header is not None:
        meta[HEADER_KEY] = bytes(vol.nifti_header.binaryblock)
    if vol.unmeasured is not None:  # with its grid: a MONAI spatial transform later moves the voxels, not it
        meta[UNMEASURED_KEY] = {"mask": vol.unmeasured, "affine": np.array(vol.affine_ras, dtype=np.float64)}
    return MetaTensor(data, affine=torch.as_tensor(vol.affine_ras, dtype=torch.float64), meta=meta)
