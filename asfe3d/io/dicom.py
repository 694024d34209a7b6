"""DICOM reading: series folders (one slice per file) and enhanced (single-file multi-frame) DICOM, one set of rules.

Every stack of slices, whether it comes from a folder of files or from the frames of one enhanced file, is
checked the same way by :func:`plan_stack`: one orientation, distinct slice positions, and then either

- a regular stack (uniform spacing along the slice normal, no slice shifted sideways): read as it is; or
- an irregular one (gaps that vary, e.g. missing slices or a CT's variable table steps; a gantry tilt, i.e. the
  slice origins drift sideways; a single slice or frame out of line): resampled, like dcm2niix does, onto a
  regular orthogonal grid that covers the acquired volume (:func:`resample_stack`: each slice is shifted in its
  plane by its sideways offset, bilinear, then the planes are interpolated linearly along the normal at a
  spacing no larger than the smallest gap). What was done is logged (WARNING) and recorded in
  ``info["dicom_resampled"]``. ``strict=True`` refuses irregular stacks instead (asfe3d's former behaviour).

Enhanced DICOM is read with pydicom (per-frame ``PlanePositionSequence`` / ``PlaneOrientationSequence`` /
``PixelMeasuresSequence`` / ``PixelValueTransformationSequence``), so its geometry never falls back to GDCM's
1 mm / identity default.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from asfe3d.errors import Asfe3dInputError
from asfe3d.io.checks import check_data_size, check_voxel_sizes, short_error
from asfe3d.utils.toggle import SharedToggle

__all__ = [
    "StackPlan",
    "plan_stack",
    "resample_stack",
    "read_dicom_folder",
    "read_dicom_file",
    "is_dicom_file",
    "is_enhanced_dicom",
]

logger = logging.getLogger("asfe3d")

#: Relative tolerance on slice gaps still counted as uniform (and at least :data:`GAP_TOL_MM`).
GAP_TOL_REL = 1e-2
#: Absolute tolerance (mm) on slice gaps.
GAP_TOL_MM = 1e-3
#: Largest distance of a slice from where a uniform stack (first slice, mean gap) puts it, as a fraction of the
#: median gap, still read as uniform (gaps each within :data:`GAP_TOL_REL` can add up over many slices).
DRIFT_TOL_REL = 0.02
#: Largest sideways offset of a slice, as a fraction of the in-plane pixel size, still counted as in line.
LATERAL_TOL_PIXELS = 0.1
#: ImageOrientationPatient's two vectors must be of unit length and perpendicular within this (rounding in the
#: header's decimal strings); beyond it the pixel grid is sheared, which no orthogonal grid represents.
ORIENTATION_TOL = 1e-3
#: Two slices closer than this fraction of the stack's median gap are one position written twice (a re-export,
#: overlapping beds rounded): resampled, the smallest gap would set a grid of thousands of planes.
NEAR_DUPLICATE_FRACTION = 0.05
#: A gap wider than this many times the gaps around it (:func:`local_gaps`) is refused: interpolating across it
#: would invent the anatomy (or uptake) of the missing slices (up to two consecutive missing slices are
#: interpolated, as dcm2niix does); a series whose spacing steps from one value to another is not refused.
MAX_GAP_MEDIANS = 3.0
#: A gap wider than this many times the gaps around it counts as missing slices: its inner planes are reported as
#: interpolated across a gap (``info["dicom_resampled"]["planes_across_gaps"]``).
MISSING_SLICE_MEDIANS = 1.5


@contextlib.contextmanager
def quiet_itk() -> Iterator[None]:
    """Keep ITK's warnings (e.g. "Non uniform sampling or missing slices detected") off stderr (thread-safe: the
    display is restored when the last thread inside leaves)."""
    with _ITK_WARNINGS_OFF.held():
        yield


_ITK_WARNINGS_OFF = SharedToggle(sitk.ProcessObject.GetGlobalWarningDisplay,
                                 sitk.ProcessObject.SetGlobalWarningDisplay, False)


# ------------------------------------------------------------------------------------------- stack geometry


@dataclass
class StackPlan:
    """How a stack of 2D slices becomes a 3D grid (all vectors LPS, mm).

    Attributes:
        order: slice indices sorted along the normal.
        positions: the sorted slice origins (ImagePositionPatient), shape ``(n, 3)``.
        row: unit vector of increasing column index (first ImageOrientationPatient triplet).
        col: unit vector of increasing row index (second triplet), made orthogonal to ``row``.
        normal: ``row x col``.
        spacing_xy: pixel size along ``row`` and along ``col``.
        gaps: distances between consecutive sorted slices along the normal.
        lateral_mm: sideways offset of each sorted slice from the line through the first one along the normal.
        regular: whether the stack is already a regular orthogonal grid.
        reasons: why it is not (empty when regular).
    """

    order: np.ndarray
    positions: np.ndarray
    row: np.ndarray
    col: np.ndarray
    normal: np.ndarray
    spacing_xy: tuple[float, float]
    gaps: np.ndarray
    lateral_mm: np.ndarray
    regular: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def tilt_degrees(self) -> float:
        """Angle between the slice normal and the line from the first to the last slice origin."""
        extent = self.positions[-1] - self.positions[0]
        along = float(extent @ self.normal)
        side = float(np.linalg.norm(extent - along * self.normal))
        return float(np.degrees(np.arctan2(side, along)))


def _slice_axes(orientation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row, column (made orthogonal to the row) and normal (``row x col``) vectors of an
    ImageOrientationPatient ``(6,)``."""
    row = orientation[:3] / np.linalg.norm(orientation[:3])
    col = orientation[3:] - (orientation[3:] @ row) * row
    col /= np.linalg.norm(col)
    return row, col, np.cross(row, col)


def check_orientation(where: str | Path, role: str, positions: np.ndarray, orientations: np.ndarray,
                      what: str = "slices", names: list[str] | None = None) -> None:
    """Refuse slice positions or orientations that place no orthogonal pixel grid.

    Args:
        where: the folder or file (named in errors).
        role: what the volume is.
        positions: ImagePositionPatient of each slice, ``(n, 3)``.
        orientations: ImageOrientationPatient of each slice, ``(n, 6)``.
        what: ``"slices"`` or ``"frames"`` (for messages).
        names: a name for each slice (its file), for messages (default: ``slice k``).

    Raises:
        Asfe3dInputError: a non-finite position or orientation; row or column vectors not of unit length or not
            perpendicular (beyond :data:`ORIENTATION_TOL`): a sheared or all-zero orientation, which GDCM would
            quietly make orthogonal (moving the image's last rows by millimetres).
    """
    pos = np.asarray(positions, dtype=np.float64)
    ori = np.asarray(orientations, dtype=np.float64)
    label = (lambda k: names[k]) if names else (lambda k: f"{what[:-1]} {k}")
    if not np.all(np.isfinite(pos)):
        k = int(np.argwhere(~np.isfinite(pos))[0][0])
        raise Asfe3dInputError(where, f"{role} DICOM {label(k)} has a non-finite ImagePositionPatient "
                                      f"({', '.join(f'{v:g}' for v in pos[k])}): its position is unknown")
    for k, o in enumerate(ori):
        row, col = o[:3], o[3:]
        if not np.all(np.isfinite(o)):
            problem = "is not finite"
        elif max(abs(np.linalg.norm(row) - 1), abs(np.linalg.norm(col) - 1)) > ORIENTATION_TOL:
            problem = (f"is not two unit vectors (lengths {np.linalg.norm(row):.4g} and {np.linalg.norm(col):.4g})")
        elif abs(float(row @ col)) > ORIENTATION_TOL:
            angle = float(np.degrees(np.arccos(np.clip(row @ col, -1.0, 1.0))))
            problem = f"has row and column directions {angle:.4g} degrees apart, not 90 (a sheared pixel grid)"
        else:
            continue
        raise Asfe3dInputError(where, f"{role} DICOM {label(k)}'s ImageOrientationPatient "
                                      f"({chr(92).join(f'{v:g}' for v in o)}) {problem}: the geometry is invalid")


def plan_stack(
    where: str | Path,
    positions: np.ndarray,
    orientations: np.ndarray,
    spacing_xy: tuple[float, float],
    role: str,
    *,
    strict: bool = False,
    what: str = "slices",
    names: list[str] | None = None,
) -> StackPlan:
    """Sort and check the slices of a stack; decide whether it must be resampled.

    Args:
        where: the folder or file (named in errors).
        positions: ImagePositionPatient of each slice, ``(n, 3)``.
        orientations: ImageOrientationPatient of each slice, ``(n, 6)``.
        spacing_xy: pixel size along the row direction and along the column direction (mm).
        role: what the volume is (``"MRI"``, ``"PET"``...).
        strict: refuse an irregular stack (non-uniform gaps, tilt, a slice out of line) instead of planning a
            resampling.
        what: ``"slices"`` or ``"frames"`` (for messages).
        names: a name for each slice (its file), in the order of ``positions``, for messages (default: the
            slice's index).

    Returns:
        The plan.

    Raises:
        Asfe3dInputError: fewer than 2 slices, an invalid orientation or position (:func:`check_orientation`),
            mixed orientations, repeated or nearly repeated positions (closer than
            :data:`NEAR_DUPLICATE_FRACTION` of the median gap), a gap wider than :data:`MAX_GAP_MEDIANS` median
            gaps, bad pixel sizes; with ``strict``, any irregularity.
    """
    pos = np.asarray(positions, dtype=np.float64)
    ori = np.asarray(orientations, dtype=np.float64)
    n = len(pos)
    if n < 2:
        raise Asfe3dInputError(where, f"{role} DICOM series has {n} slice(s); a 3D volume needs several")
    check_voxel_sizes(where, role, (*spacing_xy, 1.0), "DICOM PixelSpacing")
    check_orientation(where, role, pos, ori, what, names)
    if np.abs(ori - ori[0]).max() > 1e-4:
        raise Asfe3dInputError(
            where, f"{role} DICOM {what} have different orientations (ImageOrientationPatient); not one stack"
        )
    row, col, normal = _slice_axes(ori[0])
    depth = pos @ normal
    order = np.argsort(depth, kind="stable")
    pos, depth = pos[order], depth[order]
    gaps = np.diff(depth)
    if np.min(gaps) <= 1e-6:
        raise Asfe3dInputError(
            where, f"{role} DICOM series has {n} {what} but only {len(np.unique(np.round(depth, 4)))} distinct "
            "slice positions (several frames or acquisitions in one series?); not supported"
            + ("; a dynamic PET is read as frames from a series of one-slice files, not from one multi-frame file: "
               "convert it (dcm2niix) and give the 4D NIfTI" if what == "frames" else "")
        )
    median = float(np.median(gaps))
    _check_gaps(where, role, gaps, median, [names[i] if names else f"{what[:-1]} {i}" for i in order], what)
    rel = pos - pos[0]
    lateral_vec = rel - np.outer(rel @ normal, normal)
    lateral = np.linalg.norm(lateral_vec, axis=1)
    reasons = []
    uniform = np.abs(gaps - median).max() <= max(GAP_TOL_REL * median, GAP_TOL_MM)
    # gaps each within the tolerance can still add up: read at their mean gap, a slice must stay where it was
    drift = float(np.abs(depth - depth[0] - np.arange(n) * float(np.mean(gaps))).max())
    if not uniform:
        reasons.append(f"non-uniform slice gaps ({gaps.min():.4g} to {gaps.max():.4g} mm)")
    elif drift > max(DRIFT_TOL_REL * median, GAP_TOL_MM):
        uniform = False
        reasons.append(f"slice gaps that add up to a {drift:.3g} mm shift from a uniform stack")
    in_line = lateral.max() <= LATERAL_TOL_PIXELS * min(spacing_xy)
    plan = StackPlan(order, pos, row, col, normal, (float(spacing_xy[0]), float(spacing_xy[1])), gaps, lateral,
                     regular=uniform and in_line, reasons=reasons)
    if not in_line:
        # a gantry tilt moves the origins sideways in proportion to depth; anything else is a slice out of line
        fit = np.outer(depth - depth[0], lateral_vec[-1] / max(depth[-1] - depth[0], 1e-9))
        residual = float(np.linalg.norm(lateral_vec - fit, axis=1).max())
        if residual <= LATERAL_TOL_PIXELS * min(spacing_xy):
            reasons.append(f"gantry tilt of {plan.tilt_degrees:.3g} degrees")
        else:
            worst = int(np.argmax(np.linalg.norm(lateral_vec - fit, axis=1)))
            reasons.append(f"{what[:-1]} {worst} of {n} (sorted) out of line by {residual:.3g} mm sideways")
    if strict and not plan.regular:
        if not uniform:
            raise Asfe3dInputError(
                where, f"{role} DICOM slice spacing is not uniform (gaps from {gaps.min():.4g} to {gaps.max():.4g} "
                "mm, missing slices?); resample it to a uniform grid first (or read it without strict)"
            )
        raise Asfe3dInputError(
            where, f"{role} DICOM slices are sheared ({reasons[-1]}; gantry tilt of {plan.tilt_degrees:.3g} degrees "
            f"from first to last: the stack drifts {lateral.max():.3g} mm sideways); resample it to an orthogonal "
            "grid first (or read it without strict)"
        )
    return plan


def _check_gaps(where: str | Path, role: str, gaps: np.ndarray, median: float, sorted_names: list[str],
                what: str) -> None:
    """Refuse two slices nearly at one position, and a gap of several missing slices (``sorted_names``: the
    slices' names in depth order)."""
    close = np.flatnonzero(gaps < NEAR_DUPLICATE_FRACTION * median)
    if close.size:
        k = int(close[0])
        more = f" (and {close.size - 1} more such pairs)" if close.size > 1 else ""
        raise Asfe3dInputError(
            where, f"{role} DICOM {what} {sorted_names[k]} and {sorted_names[k + 1]} lie {gaps[k]:.3g} mm apart, under "
            f"{100 * NEAR_DUPLICATE_FRACTION:g} % of the median slice gap ({median:.4g} mm){more}: one position "
            "written twice (a re-export, overlapping beds?); remove one of them")
    ref = local_gaps(gaps)
    wide = gaps > MAX_GAP_MEDIANS * ref * (1 + GAP_TOL_REL)
    if wide.any():
        k = int(np.argmax(np.where(wide, gaps / ref, 0.0)))
        missing = int(round(gaps[k] / ref[k])) - 1
        raise Asfe3dInputError(
            where, f"{role} DICOM series has a {gaps[k]:.4g} mm gap between {sorted_names[k]} and "
            f"{sorted_names[k + 1]}, {gaps[k] / ref[k]:.3g} times the slice gap around it ({ref[k]:.4g} mm): about "
            f"{missing} slices missing, which interpolation would invent (at most {MAX_GAP_MEDIANS - 1:g} missing "
            "in a row are interpolated); supply the missing slices")


#: the gaps on each side of a gap that :func:`local_gaps` takes its reference from
LOCAL_GAPS = 3


def local_gaps(gaps: np.ndarray) -> np.ndarray:
    """Each gap's reference: the largest of the series' median gap and the medians of the (up to)
    :data:`LOCAL_GAPS` gaps before it and after it.

    A gap several times the gaps on both of its sides, and the series' median, is missing slices; a series whose
    spacing steps from one value to another (a head CT at 3 mm over the posterior fossa, 10 mm above) is not: its
    first wide gap has wide ones after it.
    """
    gaps = np.asarray(gaps, dtype=np.float64)
    median = float(np.median(gaps)) if gaps.size else 0.0
    out = np.empty_like(gaps)
    for k in range(gaps.size):
        sides = [g for g in (gaps[max(0, k - LOCAL_GAPS):k], gaps[k + 1:k + 1 + LOCAL_GAPS]) if g.size]
        out[k] = max([median, *(float(np.median(g)) for g in sides)])
    return out


def resampled_grid(plan: StackPlan, rows: int, cols: int) -> tuple[int, int, int, float]:
    """The regular grid :func:`resample_stack` makes of an irregular stack.

    Args:
        plan: the stack's plan.
        rows: pixel rows of each slice.
        cols: pixel columns of each slice.

    Returns:
        ``(nx, ny, nz, dz)``: planes along row, column and normal, and the spacing along the normal (mm).
    """
    rel = plan.positions - plan.positions[0]
    u, v = rel @ plan.row, rel @ plan.col
    nx = int(np.ceil((u.max() - u.min()) / plan.spacing_xy[0] - 1e-6)) + cols
    ny = int(np.ceil((v.max() - v.min()) / plan.spacing_xy[1] - 1e-6)) + rows
    span = float((rel @ plan.normal)[-1])
    nz = int(np.ceil(span / float(plan.gaps.min()) - 1e-6)) + 1
    return nx, ny, nz, span / (nz - 1)


def check_resampled_grid(where: str | Path, role: str, plan: StackPlan, rows: int, cols: int, frames: int = 1) -> None:
    """Refuse, before any voxel is read, an irregular stack whose resampled grid has absurd voxel sizes or would
    not fit in memory (the same checks as any input's header: :func:`check_voxel_sizes`, :func:`check_data_size`).

    Args:
        where: the folder or file (named in errors).
        role: what the volume is.
        plan: the stack's plan (nothing is checked for a regular one).
        rows: pixel rows of each slice.
        cols: pixel columns of each slice.
        frames: frames resampled alike (a dynamic series).

    Raises:
        Asfe3dInputError: a voxel size outside [0.01, 50] mm, or a grid too large.
    """
    if plan.regular:
        return
    nx, ny, nz, dz = resampled_grid(plan, rows, cols)
    check_voxel_sizes(where, role, (*plan.spacing_xy, dz), "DICOM stack resampled onto a regular grid: spacing")
    check_data_size(where, role, (nx, ny, nz, frames) if frames > 1 else (nx, ny, nz), 4, stored_bytes=None,
                    compressed=True)


def regular_image(slices: np.ndarray, plan: StackPlan) -> sitk.Image:
    """SimpleITK image of a regular stack.

    Args:
        slices: sorted slices, ``(n, rows, cols)``.
        plan: a regular plan.

    Returns:
        float32 image with origin the first slice's, spacing ``(*spacing_xy, mean gap)``, direction
        ``[row, col, normal]``.
    """
    img = sitk.GetImageFromArray(np.ascontiguousarray(slices, dtype=np.float32))
    img.SetOrigin(tuple(float(v) for v in plan.positions[0]))
    img.SetSpacing((*plan.spacing_xy, float(np.mean(plan.gaps))))
    img.SetDirection(tuple(float(v) for v in np.column_stack([plan.row, plan.col, plan.normal]).ravel()))
    return img


def _snap(coords: np.ndarray, size: int, tol: float = 1e-4) -> np.ndarray:
    """Pixel coordinates within ``tol`` of an integer or of the edges snapped to them (rounding off the
    in-plane shift of a slice that is not shifted, so that its edge pixels stay inside)."""
    rounded = np.round(coords)
    out = np.where(np.abs(coords - rounded) < tol, rounded, coords)
    return np.where((out < 0) & (out > -tol), 0.0, np.where((out > size - 1) & (out < size - 1 + tol), size - 1.0, out))


def resample_stack(slices: np.ndarray, plan: StackPlan) -> tuple[sitk.Image, dict[str, Any]]:
    """Resample an irregular stack onto a regular orthogonal grid covering all its slices.

    Each slice is first shifted in its plane by its sideways offset (bilinear) onto one in-plane grid that covers
    every slice; the planes are then interpolated linearly along the normal, at the spacing
    ``(last - first) / ceil((last - first) / smallest gap)`` so that the first and last planes are the first and
    last slices. Points no slice covers get ``min(0, smallest value)``.

    Args:
        slices: sorted slices, ``(n, rows, cols)`` (``plan.order`` already applied).
        plan: the stack's plan.

    Returns:
        ``(image, record)``: the float32 image (directions ``[row, col, normal]``) and what was done (reasons,
        tilt, gaps, new grid and spacing, fraction of voxels filled).
    """
    from scipy.ndimage import map_coordinates

    data = np.asarray(slices, dtype=np.float32)
    n, rows, cols = data.shape
    sx, sy = plan.spacing_xy
    rel = plan.positions - plan.positions[0]
    u, v, d = rel @ plan.row, rel @ plan.col, rel @ plan.normal
    u0, v0 = float(u.min()), float(v.min())
    nx, ny, nz, dz = resampled_grid(plan, rows, cols)
    fill = float(min(0.0, float(data.min())))
    jj, ii = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij")
    shifted = np.empty((n, ny, nx), dtype=np.float32)
    for k in range(n):  # output in-plane point (i, j) is slice k's pixel ((u0 + i sx - u_k) / sx, ...)
        ci = _snap(ii + (u0 - u[k]) / sx, cols)
        cj = _snap(jj + (v0 - v[k]) / sy, rows)
        shifted[k] = map_coordinates(data[k], [cj, ci], order=1, mode="constant", cval=np.nan, prefilter=False)
    out = np.empty((nz, ny, nx), dtype=np.float32)
    z = d[0] + dz * np.arange(nz)
    z[-1] = d[-1]
    for m in range(nz):
        k = int(np.clip(np.searchsorted(d, z[m], side="right") - 1, 0, n - 2))
        w = float((z[m] - d[k]) / (d[k + 1] - d[k]))
        if w <= 1e-9:
            out[m] = shifted[k]
        elif w >= 1 - 1e-9:
            out[m] = shifted[k + 1]
        else:
            out[m] = (1 - w) * shifted[k] + w * shifted[k + 1]
    missing = ~np.isfinite(out)
    out[missing] = fill
    across = _planes_across_gaps(z, d)
    img = sitk.GetImageFromArray(out)
    origin = plan.positions[0] + u0 * plan.row + v0 * plan.col
    img.SetOrigin(tuple(float(x) for x in origin))
    img.SetSpacing((sx, sy, dz))
    img.SetDirection(tuple(float(x) for x in np.column_stack([plan.row, plan.col, plan.normal]).ravel()))
    record = {
        "reasons": list(plan.reasons),
        "slices_in": int(n),
        "gaps_mm": [round(float(plan.gaps.min()), 4), round(float(plan.gaps.max()), 4)],
        "tilt_degrees": round(plan.tilt_degrees, 3),
        "max_lateral_mm": round(float(plan.lateral_mm.max()), 4),
        "grid": [int(nx), int(ny), int(nz)],
        "spacing_mm": [round(sx, 6), round(sy, 6), round(dz, 6)],
        "fill_value": fill,
        "filled_fraction": round(float(missing.mean()), 4),
        "planes_across_gaps": across,
        "interpolated_fraction": round(across / nz, 4),
        "method": "in-plane bilinear shift per slice, then linear along the normal",
    }
    return img, record


def _planes_across_gaps(z: np.ndarray, d: np.ndarray) -> int:
    """How many planes (depths ``z``) lie inside a gap between acquired slices (depths ``d``) wider than
    :data:`MISSING_SLICE_MEDIANS` times the gaps around it (:func:`local_gaps`), i.e. where slices are missing,
    away from both of its slices."""
    count = 0
    ref = local_gaps(np.diff(d))
    for a, b, r in zip(d[:-1], d[1:], ref):
        if b - a > MISSING_SLICE_MEDIANS * r:
            count += int(np.count_nonzero((z > a + GAP_TOL_MM) & (z < b - GAP_TOL_MM)))
    return count


def _resample_or_keep(
    where: Path, slices: np.ndarray, plan: StackPlan, role: str, info: dict[str, Any]
) -> sitk.Image:
    if plan.regular:
        return regular_image(slices, plan)
    img, record = resample_stack(slices, plan)
    said = info.get("dicom_resampled") == record  # the next frame of a dynamic series, resampled alike
    info["dicom_resampled"] = record
    if not said:
        logger.warning(
            "%s %s: DICOM stack resampled onto a regular %s grid of %s mm (%s; %d slices in; %d of %d planes (%.1f %%) "
            "interpolated across gaps where slices are missing; %.1f %% of voxels outside every slice, set to %g)",
            role, where, "x".join(map(str, record["grid"])), "x".join(f"{s:.4g}" for s in record["spacing_mm"]),
            "; ".join(record["reasons"]), record["slices_in"], record["planes_across_gaps"], record["grid"][2],
            100 * record["interpolated_fraction"], 100 * record["filled_fraction"], record["fill_value"],
        )
    return img


# --------------------------------------------------------------------------------------------- series folders


def _series_summary(folder: Path, uid: str) -> tuple[list[str], str]:
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    description = ""
    if files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        try:
            reader.ReadImageInformation()
            if reader.HasMetaDataKey("0008|103e"):
                description = reader.GetMetaData("0008|103e").strip()
        except RuntimeError:
            description = "?"
    return files, description


#: ``info`` key (removed by :func:`asfe3d.io.read_volume`) under which :func:`read_dicom_folder` leaves the files
#: of each frame of the series read, for the PET facts (every slice's, not one file's)
SERIES_FILES_KEY = "_dicom_series_files"

#: DICOM tags that say what a series is and which frame of reference its coordinates are in (``info`` keys)
IDENTITY_TAGS = {"0008|0060": "modality", "0020|0052": "frame_of_reference_uid"}


def _identity_tags(file: str) -> dict[str, str]:
    """Modality and FrameOfReferenceUID of one DICOM file (only the tags present and non-empty)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return {}
    out = {}
    for tag, key in IDENTITY_TAGS.items():
        if reader.HasMetaDataKey(tag) and reader.GetMetaData(tag).strip():
            out[key] = reader.GetMetaData(tag).strip().rstrip("\x00").strip()
    return out


def read_dicom_folder(
    folder: Path, role: str, series_uid: str | None, info: dict[str, Any], *, strict: bool = False
) -> tuple[sitk.Image, Path]:
    """Read one DICOM series from a folder (single-frame slices, or one enhanced multi-frame file).

    Args:
        folder: the folder.
        role: what the volume is.
        series_uid: the SeriesInstanceUID to read when the folder holds several.
        info: provenance dict, updated (``series_uid``, ``series_description``, ``modality``,
            ``frame_of_reference_uid``, ``slices``, ``dicom_resampled``).
        strict: refuse irregular stacks instead of resampling them.

    Returns:
        ``(image, first_file)``: the 3D image (4D for a multi-frame file GDCM reads as such) and one file of the
        series (for header look-ups such as PET units).

    Raises:
        Asfe3dInputError: see :func:`asfe3d.io.read_volume`.
    """
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise Asfe3dInputError(folder, f"{role} folder cannot be read ({exc.strerror or exc})") from None
    if not entries:
        raise Asfe3dInputError(folder, f"{role} folder is empty")
    try:
        with quiet_itk():
            uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
            summaries = {uid: _series_summary(folder, uid) for uid in uids}
    except RuntimeError as err:  # a malformed file (e.g. a tag of the wrong VR) stops GDCM's whole scan
        raise Asfe3dInputError(folder, f"{role} folder's DICOM files cannot be scanned by GDCM, one of them is "
                                       f"malformed ({short_error(err)})") from None
    if not uids:
        nfiles = sum(1 for e in entries if e.is_file())
        if (folder / "DICOMDIR").is_file():
            raise Asfe3dInputError(folder, f"{role} folder holds a DICOMDIR and no series of its own: "
                                           f"{_dicomdir_hint(folder)}")
        raise Asfe3dInputError(
            folder, f"{role} folder holds no DICOM series ({nfiles} files, {len(entries) - nfiles} sub-folders)"
            f"{_subfolder_hint(entries)}"
        )
    listing = "; ".join(f"{uid} ('{d}', {len(f)} slices)" for uid, (f, d) in summaries.items())
    if series_uid is None:
        if len(uids) > 1:
            raise Asfe3dInputError(
                folder, f"{role} folder holds {len(uids)} DICOM series, choose one with {_series_option(role)}: "
                f"{listing}"
            )
        series_uid = uids[0]
    elif series_uid not in summaries:
        raise Asfe3dInputError(
            folder, f"{role} folder has no DICOM series {series_uid!r} (given by {_series_option(role)}); it holds: "
            f"{listing}")
    files, description = summaries[series_uid]
    _check_left_out(entries, summaries, series_uid, role)
    info.update(series_uid=series_uid, series_description=description)
    with quiet_itk():
        info.update(_identity_tags(files[0]) if files else {})
    if len(files) == 1:  # one (possibly multi-frame) file
        info[SERIES_FILES_KEY] = [[Path(files[0])]]
        return read_dicom_file(Path(files[0]), role, info, strict=strict), Path(files[0])
    frames, plan, durations = _plan_series(folder, files, role, strict)
    info[SERIES_FILES_KEY] = [[Path(f) for f in frame_files] for frame_files in frames]
    images = [_read_stack(folder, frame_files, plan, role, info, series_uid) for frame_files in frames]
    info["slices"] = sum(len(frame_files) for frame_files in frames)  # a copy of a slice read once
    if len(images) == 1:
        return images[0], Path(frames[0][0])
    info["dicom_frames"] = len(images)
    if durations is not None:
        info["frame_durations_s"] = durations
    logger.info("%s %s: a dynamic DICOM series of %d frames of %d slices", role, folder, len(images), len(frames[0]))
    return sitk.JoinSeries(images), Path(frames[0][0])


def _read_stack(folder: Path, files: list[str], plan: StackPlan, role: str, info: dict[str, Any],
                series_uid: str) -> sitk.Image:
    """One 3D stack of single-frame slices (``files`` in the plan's order), float32, resampled onto a regular
    grid when the plan says so."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    components, header = _components(files[0])
    _refuse_monochrome1(header, Path(files[0]), role)
    if components == 1:
        # GDCM gives the series the pixel type of its first slice: a first slice with an integer RescaleSlope (1, an
        # empty edge slice of a PET) made it int16, and every later slice's slope x stored value was rounded (a PET
        # voxel of 1.11 Bq/mL read as 1); as float32, each slice keeps its own rescale exactly
        reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        with quiet_itk():
            img = reader.Execute()
    except RuntimeError as err:
        raise Asfe3dInputError(folder, f"{role} DICOM series {series_uid} cannot be read ({short_error(err)})") from None
    if plan.regular:
        if img.GetDimension() == 3 and img.GetSize()[2] == len(files):
            img.SetSpacing((*plan.spacing_xy, img.GetSpacing()[2]))  # PixelSpacing as the slices state it
            _check_series_geometry(folder, img, plan.positions)
        return img
    slices = sitk.GetArrayFromImage(img)  # (n, rows, cols) in the sorted order given to the reader
    return _resample_or_keep(folder, slices, plan, role, info)


def _subfolder_hint(entries: list[Path], limit: int = 6) -> str:
    """Which sub-folders of a folder without a series of its own hold DICOM series (a study or patient folder
    given instead of a series folder), as a clause for the refusal; ``""`` when none does."""
    found = []
    for sub in sorted(e for e in entries if e.is_dir()):
        try:
            with quiet_itk():
                uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(sub))
        except RuntimeError:
            continue
        if uids:
            found.append(f"{sub.name} ({len(uids)} series)")
    if not found:
        return ""
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return f"; give the folder of one series: its sub-folders {', '.join(found[:limit])}{more} hold DICOM series"


def _dicomdir_hint(root: Path, limit: int = 6) -> str:
    """Which folders under ``root`` (a DICOMDIR's folder) hold which series, as a clause for a refusal."""
    import collections

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = pydicom.dcmread(str(root / "DICOMDIR"), stop_before_pixels=True).DirectoryRecordSequence
    except Exception:  # noqa: BLE001 - the hint is best effort
        records = []
    series: dict[tuple[str, str], list[str]] = collections.OrderedDict()
    current = None
    for rec in records:
        kind = str(getattr(rec, "DirectoryRecordType", ""))
        if kind == "SERIES":
            current = (str(getattr(rec, "Modality", "?")), str(getattr(rec, "SeriesInstanceUID", "?")))
        elif current is not None and "ReferencedFileID" in rec:
            parts = rec.ReferencedFileID
            parts = [parts] if isinstance(parts, str) else list(parts)
            series.setdefault(current, []).append(Path(*parts[:-1]).as_posix() if len(parts) > 1 else ".")
    if not series:
        return "give the folder of one series instead"
    listed = "; ".join(f"{sorted(set(dirs))[0]} ({modality}, {len(dirs)} images, series {uid})"
                       for (modality, uid), dirs in list(series.items())[:limit])
    more = f"; and {len(series) - limit} more" if len(series) > limit else ""
    return f"give the folder of one series instead, under {root}: {listed}{more}"


def _components(file: str) -> tuple[int, sitk.ImageFileReader | None]:
    """Samples per pixel of one DICOM file and its header's reader (``(0, None)`` when it cannot be read)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(file)
    try:
        with quiet_itk():
            reader.ReadImageInformation()
    except RuntimeError:
        return 0, None
    return int(reader.GetNumberOfComponents()), reader


def _refuse_monochrome1(header: sitk.ImageFileReader | None, path: Path, role: str) -> None:
    """Refuse a MONOCHROME1 image (PhotometricInterpretation: displayed inverted) before GDCM reads it: GDCM turns
    it into MONOCHROME2 by inverting the stored values, so a PET in Bq/mL came out negative (the rescaled values of
    a MONOCHROME1 image are the quantity itself; only its display is inverted). The enhanced-file path reads with
    pydicom, which does not invert, and is not refused.

    Raises:
        Asfe3dInputError: naming the file.
    """
    if header is not None and header.HasMetaDataKey("0028|0004") \
            and header.GetMetaData("0028|0004").strip().rstrip("\x00").strip().upper() == "MONOCHROME1":
        raise Asfe3dInputError(path, f"{role} DICOM image is MONOCHROME1 (PhotometricInterpretation), which the "
                                     "series reader (GDCM) would read with its values inverted; convert the series "
                                     "to NIfTI (e.g. dcm2niix) and give that file")


def _series_option(role: str) -> str:
    """How the user chooses the series: the command's option for an MRI or PET input (``--mri-series``), else
    the ``series_uid`` argument."""
    return f"--{role.lower()}-series UID" if role in ("MRI", "PET") else "series_uid"


#: suffixes and names of files a DICOM folder holds beside its slices (an unreadable one is not a lost slice)
_NOT_SLICES = {".txt", ".md", ".pdf", ".json", ".xml", ".html", ".htm", ".csv", ".ini", ".db", ".log", ".jpg", ".jpeg",
               ".png", ".zip", "thumbs.db", "desktop.ini", "dicomdir", "readme"}


def _check_left_out(entries: list[Path], summaries: dict[str, tuple[list[str], str]], series_uid: str,
                    role: str) -> None:
    """Refuse a DICOM image file of the folder that GDCM left out of every series (truncated or corrupt), or any
    file of it that cannot be opened (no read permission): read without it, the series would have a hole where its
    slice was (seen as a slice gap, filled by resampling, or as a shorter stack when it was the last slice).

    Files that pydicom reads but that hold no image (a DICOMDIR, a structured report) are not series slices and
    are ignored, as are images of another series.

    Raises:
        Asfe3dInputError: naming the file.
    """
    listed = {Path(f).resolve() for files, _ in summaries.values() for f in files}
    unlisted = sorted(e for e in entries if e.is_file() and e.resolve() not in listed)
    for path in unlisted:  # GDCM skips a file it cannot open, as if it were not DICOM: a slice lost in silence
        if path.name.startswith(".") or path.suffix.lower() in _NOT_SLICES or path.name.lower() in _NOT_SLICES:
            continue  # (a hidden file, a README, Thumbs.db: not a slice, readable or not)
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise Asfe3dInputError(path, f"{role} folder's file cannot be read ({exc.strerror or exc}); it may be a "
                                         "slice of the series, which would be read with a hole: make it readable or "
                                         "remove it") from None
    left = [e for e in unlisted if is_dicom_file(e)]
    if not left:
        return
    import pydicom

    for path in sorted(left):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - any parse failure means the file cannot be read
            raise Asfe3dInputError(
                path, f"{role} DICOM file cannot be read ({short_error(exc)}); remove it or replace it with an intact "
                "copy (it may be a slice of the series, which would otherwise be read with a hole)"
            ) from None
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "")
        if "Rows" in ds and uid in ("", series_uid):
            raise Asfe3dInputError(
                path, f"{role} DICOM slice of series {series_uid} cannot be read (truncated or corrupt file?); "
                "the series would have a hole where it lies: replace it with an intact copy"
            )


def _dicom_vector(reader: sitk.ImageFileReader, tag: str, n: int) -> np.ndarray | None:
    if not reader.HasMetaDataKey(tag):
        return None
    try:
        values = [float(v) for v in reader.GetMetaData(tag).strip().split("\\")]
    except ValueError:
        return None
    return np.asarray(values, dtype=np.float64) if len(values) == n else None


def _pixel_spacing(file: str, reader: sitk.ImageFileReader, role: str) -> tuple[float, float]:
    """A slice's PixelSpacing (0028,0030) as (along a row, along a column), from the tag itself.

    Raises:
        Asfe3dInputError: the tag missing, unreadable or zero: the voxel size is unknown (GDCM would assume
            1 mm). Negative values are left to :func:`check_voxel_sizes`.
    """
    values = _dicom_vector(reader, "0028|0030", 2)
    if values is None or not np.all(np.isfinite(values)) or np.any(values == 0):
        stated = reader.GetMetaData("0028|0030").strip() if reader.HasMetaDataKey("0028|0030") else ""
        raise Asfe3dInputError(
            file, f"{role} DICOM slice has {f'PixelSpacing {stated!r}' if stated else 'no PixelSpacing (0028,0030)'}: "
            "its voxel size is unknown (GDCM would assume 1 mm)")
    return float(values[1]), float(values[0])  # (between rows, between columns) -> (x, y)


def _check_rescale(file: str, reader: sitk.ImageFileReader, role: str) -> None:
    """Refuse a RescaleSlope (0028,1053) that is 0, not finite or not a number (GDCM reads it as 1: the stored
    values would be taken as the image's, without a word)."""
    if not reader.HasMetaDataKey("0028|1053"):
        return
    text = reader.GetMetaData("0028|1053").strip().rstrip("\x00").strip()
    try:
        slope = float(text) if text else 1.0
    except ValueError:
        slope = math.nan
    if slope == 0 or not math.isfinite(slope):
        raise Asfe3dInputError(file, f"{role} DICOM slice has RescaleSlope {text!r}: its values cannot be scaled "
                                     "(GDCM would read it as 1); fix the header")


#: per-slice tags that place a slice of a dynamic PET series in its time frame (DICOM PET module)
FRAME_TAGS = {"frame_reference_time_ms": "0054|1300", "image_index": "0054|1330", "slices_per_frame": "0054|0081",
              "frame_duration_ms": "0018|1242", "frames_in_series": "0054|0101", "echo_time_ms": "0018|0081"}


def _frame_tags(reader: sitk.ImageFileReader) -> dict[str, float]:
    """The :data:`FRAME_TAGS` of one slice that are present and numeric."""
    out = {}
    for name, tag in FRAME_TAGS.items():
        if reader.HasMetaDataKey(tag):
            try:
                out[name] = float(reader.GetMetaData(tag).strip())
            except ValueError:
                pass
    return out


def _check_echoes(folder: Path, role: str, positions: np.ndarray, orientations: np.ndarray,
                  timing: list[dict[str, float]]) -> None:
    """Refuse a series holding several echoes (every slice position once per EchoTime: a multi-echo MRI), naming
    them: which echo to fuse is the user's choice."""
    echoes = sorted({t["echo_time_ms"] for t in timing if "echo_time_ms" in t})
    if len(echoes) < 2 or len(echoes) != len({t.get("echo_time_ms") for t in timing}):
        return
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    if len(np.unique(np.round(positions @ normal, 3))) == len(positions):
        return
    listed = ", ".join(f"{e:g}" for e in echoes[:6]) + (", ..." if len(echoes) > 6 else "")
    raise Asfe3dInputError(
        folder, f"{role} DICOM series holds {len(echoes)} echoes (EchoTime {listed} ms), each slice position once per "
        "echo: choose one echo (dcm2niix writes one file per echo, e.g. *_e1.nii) and give that")


def _plan_series(folder: Path, files: list[str], role: str, strict: bool
                 ) -> tuple[list[list[str]], StackPlan, list[float] | None]:
    """Read each slice's header (position, orientation, size) and plan the stack.

    Returns:
        ``(frames, plan, durations)``: the files of each time frame, sorted as the plan orders them (one frame
        for a static series; several for a dynamic PET series, :func:`_dynamic_frames`), the plan (of every
        frame: all frames hold the same slice positions), and the frames' durations in seconds (``None``: one
        frame, or not recorded in every slice).
    """
    if len(files) < 2:
        raise Asfe3dInputError(folder, f"{role} DICOM series has {len(files)} slice(s); a 3D volume needs several")
    positions, orientations, timing = [], [], []
    reader = sitk.ImageFileReader()
    rows_cols: tuple[int, int] = (0, 0)
    spacing_xy: tuple[float, ...] = (1.0, 1.0)
    quantity: dict[str, tuple[str, str]] = {}  # tag -> (value, file) of the first slice that has it
    kept: list[str] = []
    instances: dict[str, dict[str, str]] = {}  # SOPInstanceUID -> its files by content
    for f in files:
        reader.SetFileName(f)
        try:
            with quiet_itk():
                reader.ReadImageInformation()
        except RuntimeError as err:
            problem = headerless_dicom_problem(Path(f), role)
            raise Asfe3dInputError(f, problem or f"{role} DICOM file cannot be read ({short_error(err)})") from None
        if _same_instance(f, reader, instances, role):
            continue
        kept.append(f)
        if reader.GetDimension() == 3 and reader.GetSize()[2] > 1:
            raise Asfe3dInputError(
                folder, f"{role} DICOM series mixes multi-frame files ({Path(f).name} has {reader.GetSize()[2]} "
                "frames); read that file on its own"
            )
        pos = _dicom_vector(reader, "0020|0032", 3)
        ori = _dicom_vector(reader, "0020|0037", 6)
        if pos is None or ori is None:
            raise Asfe3dInputError(f, f"{role} DICOM slice lacks ImagePositionPatient/ImageOrientationPatient")
        positions.append(pos)
        orientations.append(ori)
        timing.append(_frame_tags(reader))
        this_xy = _pixel_spacing(f, reader, role)
        if positions[1:] and np.abs(np.subtract(this_xy, spacing_xy)).max() > 1e-4:
            raise Asfe3dInputError(
                folder, f"{role} DICOM slices have different pixel spacings ({spacing_xy} and {this_xy} in "
                f"{Path(f).name}); not one stack"
            )
        spacing_xy = this_xy
        this_rc = (int(reader.GetSize()[1]), int(reader.GetSize()[0]))
        if positions[1:] and this_rc != rows_cols:
            raise Asfe3dInputError(
                folder, f"{role} DICOM slices have different sizes ({rows_cols[0]}x{rows_cols[1]} and "
                f"{this_rc[0]}x{this_rc[1]} rows x columns in {Path(f).name}); not one stack"
            )
        rows_cols = this_rc
        _check_rescale(f, reader, role)
        _check_quantity(folder, reader, f, quantity, role)
    files = kept
    # 4 bytes: float32 once rescaled; the files' sizes bound nothing (each slice may be compressed)
    check_data_size(folder, role, (len(files), *rows_cols), 4, stored_bytes=None, compressed=True)
    pos_arr, ori_arr = np.asarray(positions), np.asarray(orientations)
    names = [Path(f).name for f in files]
    check_orientation(folder, role, pos_arr, ori_arr, names=names)
    _check_echoes(folder, role, pos_arr, ori_arr, timing)
    groups = _dynamic_frames(folder, pos_arr, ori_arr, timing, role)
    if groups is None:
        plan = plan_stack(folder, pos_arr, ori_arr, spacing_xy, role, strict=strict, names=names)
        check_resampled_grid(folder, role, plan, *rows_cols)
        return [[files[i] for i in plan.order]], plan, None
    members, durations = groups
    plan = plan_stack(folder, pos_arr[members[0]], ori_arr[members[0]], spacing_xy, role, strict=strict,
                      names=[names[i] for i in members[0]])
    check_resampled_grid(folder, role, plan, *rows_cols, frames=len(members))
    for k, m in enumerate(members[1:], start=1):  # every frame on frame 0's grid (one 4D image)
        other = plan_stack(folder, pos_arr[m], ori_arr[m], spacing_xy, role, strict=strict,
                           names=[names[i] for i in m])
        moved = float(np.abs(other.positions - plan.positions).max())
        turned = float(np.abs(ori_arr[m][0] - ori_arr[members[0]][0]).max())
        if moved > 1e-3 * max(1.0, min(spacing_xy)) or turned > 1e-4:
            raise Asfe3dInputError(
                folder, f"{role} DICOM frame {k} does not lie on frame 0's slices (positions up to {moved:.3g} mm "
                f"apart, orientations differing by {turned:.3g}); a dynamic series' frames must share one grid")
    return [[files[m[i]] for i in plan.order] for m in members], plan, durations


def _same_instance(file: str, header: sitk.ImageFileReader, instances: dict[str, dict[str, str]], role: str) -> bool:
    """Whether ``file`` is a byte-identical copy of a file already seen with its SOPInstanceUID (``instances``:
    UID -> SHA-256 of each file seen with it -> that file; updated): one image saved twice (``im0010.dcm`` and
    ``im0010 (1).dcm`` of a second download), read once. Without this the series had one slice too many for its
    positions and was refused as "several frames or acquisitions", naming no file. Files that share a
    SOPInstanceUID but differ (an anonymiser that gave every slice one UID) are distinct slices, as before (their
    positions are checked as any slice's), and a copy of any of them is still found (contents are hashed only for
    UIDs seen twice)."""
    import hashlib

    if not header.HasMetaDataKey("0008|0018"):
        return False
    uid = header.GetMetaData("0008|0018").strip().rstrip("\x00").strip()
    if not uid:
        return False
    seen = instances.get(uid)
    if seen is None:  # the first file of this UID: hashed only if another comes
        instances[uid] = {"": file}
        return False

    def digest(path: str) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    if "" in seen:
        first = seen.pop("")
        seen[digest(first)] = first
    key = digest(file)
    if key not in seen:
        seen[key] = file
        return False
    logger.warning("%s %s: a copy of %s (the same image, SOPInstanceUID %s): read once", role, file,
                   Path(seen[key]).name, uid)
    return True


def _group(keys: list[float]) -> list[list[int]]:
    """Indices of the slices of each distinct key, keys in increasing order (a dynamic series' frames)."""
    return [[i for i, k in enumerate(keys) if k == key] for key in sorted(set(keys))]


def _complete(members: list[list[int]], depth: np.ndarray, n_positions: int) -> bool:
    """Whether each group holds one slice at each of the series' ``n_positions`` positions."""
    return all(len(m) == n_positions and len(np.unique(depth[m])) == n_positions for m in members)


def _dynamic_frames(folder: Path, positions: np.ndarray, orientations: np.ndarray, timing: list[dict[str, float]],
                    role: str) -> tuple[list[list[int]], list[float] | None] | None:
    """The time frames of a dynamic PET series stored as one series (every slice position once per frame).

    A slice's frame is read from its FrameReferenceTime (0054,1300), else from its ImageIndex (0054,1330) and the
    NumberOfSlices (0054,0081) of a frame. Without these tags (or without repeated positions) the series is not
    split: ``None`` (:func:`plan_stack` then refuses repeated positions).

    Returns:
        ``(members, durations)``: per frame (in time order) the indices of its slices in the order of
        ``positions`` given, unsorted; and the frames' ActualFrameDuration (0018,1242) in seconds when every slice
        has it (``None`` otherwise).

    Raises:
        Asfe3dInputError: frame tags present but the frames do not each hold one slice at each position, or the
            slices of one frame disagree on its duration.
    """
    normal = _slice_axes(orientations[0])[2]
    depth = np.round(positions @ normal, 3)
    n_positions = len(np.unique(depth))
    if n_positions == len(depth):
        return None
    candidates = []
    if all("frame_reference_time_ms" in t for t in timing):
        candidates.append(("FrameReferenceTime", [t["frame_reference_time_ms"] for t in timing]))
    if all("image_index" in t and t.get("slices_per_frame", 0) >= 1 for t in timing):
        candidates.append(("ImageIndex", [float((int(t["image_index"]) - 1) // int(t["slices_per_frame"]))
                                          for t in timing]))
    if not candidates:
        return None
    # the first tag that groups the slices into complete frames (a FrameReferenceTime of 0 in every slice, or
    # one that varies slice by slice, groups nothing: ImageIndex may still); else the first, refused below
    groupings = [(source, _group(keys)) for source, keys in candidates]
    source, members = next(((src, m) for src, m in groupings if _complete(m, depth, n_positions)), groupings[0])
    frames = members
    declared = {t.get("frames_in_series") for t in timing}
    if len(declared) > 1:
        raise Asfe3dInputError(folder, f"{role} DICOM slices disagree on NumberOfTimeSlices "
                                       f"({', '.join(sorted(f'{v:g}' for v in declared if v is not None))}"
                                       f"{', absent' if None in declared else ''}): more than one acquisition in one "
                                       "series")
    stated = declared.pop()
    if stated is not None and int(stated) != len(frames):
        raise Asfe3dInputError(folder, f"{role} DICOM series says it has {int(stated)} frames (NumberOfTimeSlices) "
                                       f"but holds {len(frames)} (by {source}); frames missing or another acquisition "
                                       "mixed in")
    for k, m in enumerate(members):
        if len(m) != n_positions or len(np.unique(depth[m])) != n_positions:
            raise Asfe3dInputError(
                folder, f"{role} DICOM series repeats slice positions as a dynamic series does, but its frame "
                f"{k} (by {source}) holds {len(m)} slices at {len(np.unique(depth[m]))} of the series' "
                f"{n_positions} positions; not a set of complete frames")
    durations: list[float] | None = []
    for k, m in enumerate(members):
        values = {timing[i].get("frame_duration_ms") for i in m}
        if None in values:
            durations = None
            break
        if len(values) > 1:
            raise Asfe3dInputError(folder, f"{role} DICOM frame {k}'s slices disagree on its ActualFrameDuration "
                                           f"({', '.join(f'{v:g}' for v in sorted(values))} ms)")
        durations.append(float(values.pop()) / 1000.0)
    if durations is not None and not all(math.isfinite(d) and 0 < d <= 86400 for d in durations):
        raise Asfe3dInputError(folder, f"{role} DICOM frame durations (ActualFrameDuration) must be > 0 ms and at most "
                                       f"a day, got {[d * 1000 for d in durations]} ms")
    return members, durations


#: per-slice tags that say what the voxel values measure: every slice of one series must agree on them (a PET
#: whose slices mix Bq/mL and counts, or decay corrections, has no one unit; SUV would be computed from the first)
QUANTITY_TAGS = {"0054|1001": "Units", "0054|1102": "DecayCorrection", "0008|0060": "Modality"}


def _check_quantity(folder: Path, reader: sitk.ImageFileReader, file: str, seen: dict[str, tuple[str, str]],
                    role: str) -> None:
    """Refuse a slice whose :data:`QUANTITY_TAGS` differ from the series' earlier slices (``seen``, updated)."""
    for tag, name in QUANTITY_TAGS.items():
        value = reader.GetMetaData(tag).strip().rstrip("\x00").strip() if reader.HasMetaDataKey(tag) else ""
        if tag not in seen:
            seen[tag] = (value, file)
        elif value != seen[tag][0]:
            first, where = seen[tag]
            raise Asfe3dInputError(
                folder, f"{role} DICOM slices disagree on {name} ({first or 'none'!r} in {Path(where).name}, "
                f"{value or 'none'!r} in {Path(file).name}): their values are not one quantity"
            )


def _check_series_geometry(folder: Path, img: sitk.Image, positions: np.ndarray) -> None:
    """Cross-check SimpleITK's series geometry against the slice positions (LPS)."""
    origin = np.asarray(img.GetOrigin())
    direction = np.asarray(img.GetDirection()).reshape(3, 3)
    spacing = np.asarray(img.GetSpacing())
    last = origin + direction @ (spacing * np.array([0.0, 0.0, img.GetSize()[2] - 1]))
    # an orientation written with 3 decimals puts GDCM's last slice ~0.01 mm from its position: within the
    # sideways tolerance of a stack in line (a tenth of a pixel), the grid is the slices'
    tol = max(1e-2, LATERAL_TOL_PIXELS * float(min(spacing[:2])))
    if not (np.allclose(origin, positions[0], atol=1e-3) and np.allclose(last, positions[-1], atol=tol)):
        off = float(np.abs(last - positions[-1]).max())
        raise Asfe3dInputError(
            folder, f"DICOM series geometry disagrees with its slice positions: the last slice lies {off:.3g} mm "
            f"from where the first slice, the orientation and the spacing put it (over {tol:.3g} mm); the "
            "ImageOrientationPatient or ImagePositionPatient values are inconsistent")


# ----------------------------------------------------------------------------------- single / enhanced files


def is_dicom_file(path: Path) -> bool:
    """Whether a file starts with the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def headerless_dicom_problem(path: Path, role: str) -> str | None:
    """The refusal of a DICOM data set saved without the Part 10 file header (no ``DICM`` at byte 128, as old
    exporters and some anonymisers write), or ``None`` when ``path`` is not one. Neither GDCM's image reader nor
    pydicom's (unforced) takes such a file, and their own errors read as "no reader" or a hint about ``force=True``.

    Args:
        path: the file.
        role: what the volume is (``"MRI"``, ``"PET"``), for the message.

    Returns:
        The problem (for :class:`~asfe3d.errors.Asfe3dInputError`), or ``None``.
    """
    if is_dicom_file(path):
        return None
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
        if "Rows" not in ds or "SOPClassUID" not in ds:
            return None
    except Exception:  # noqa: BLE001 - not DICOM at all
        return None
    return (f"{role} file is DICOM without the Part 10 file header (no 'DICM' at byte 128, as old exporters and some "
            "anonymisers save it), which asfe3d's readers do not take; rewrite it with the header (e.g. gdcmconv "
            "in.dcm out.dcm, or dcmconv +F)")


def is_enhanced_dicom(ds: Any) -> bool:
    """Whether a pydicom dataset is a multi-frame image with per-frame functional groups."""
    return int(getattr(ds, "NumberOfFrames", 1) or 1) > 1 and "PerFrameFunctionalGroupsSequence" in ds


def _positive(ds: Any, name: str) -> float | None:
    """The first value of a numeric DICOM attribute when it is present and > 0."""
    value = ds.get(name)
    if value is not None and not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):
        value = value[0] if len(value) else None
    try:
        first = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return first if math.isfinite(first) and first > 0 else None


def _group_item(frame_group: Any, shared: Any, name: str) -> Any | None:
    for group in (frame_group, shared):
        if group is not None and name in group and len(group[name].value) > 0:
            return group[name].value[0]
    return None


def read_dicom_file(path: Path, role: str, info: dict[str, Any], *, strict: bool = False) -> sitk.Image:
    """Read one DICOM file: enhanced multi-frame with pydicom (same stack rules as a series), else with GDCM.

    Args:
        path: the file.
        role: what the volume is.
        info: provenance dict, updated (``slices``, ``frames_in_file``, ``dicom_resampled``).
        strict: refuse irregular stacks instead of resampling them.

    Returns:
        A 3D float32 image (or what GDCM reads for other files).

    Raises:
        Asfe3dInputError: unreadable file, missing per-frame geometry, irregular stack with ``strict``, data
            larger than the file can hold.
    """
    import pydicom

    try:
        with warnings.catch_warnings():  # pydicom warns (stderr) about odd values; asfe3d checks what it uses
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as err:  # noqa: BLE001 - any parse failure is bad input
        problem = headerless_dicom_problem(path, role)
        raise Asfe3dInputError(path, problem or f"{role} DICOM file cannot be read ({short_error(err)})") from None
    if "DirectoryRecordSequence" in ds:
        raise Asfe3dInputError(path, f"{role} input is a DICOMDIR (an index of a DICOM disc), not an image: "
                                     f"{_dicomdir_hint(path.parent)}")
    # what the file is (given on its own, not through its folder): the same provenance as a series folder's, so
    # that the inputs' roles and frames of reference are checked alike
    for key, value in (("series_uid", ds.get("SeriesInstanceUID")), ("series_description", ds.get("SeriesDescription")),
                       ("modality", ds.get("Modality")), ("frame_of_reference_uid", ds.get("FrameOfReferenceUID"))):
        if value is not None and str(value).strip() and key not in info:
            info[key] = str(value).strip()
    if not is_enhanced_dicom(ds):
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            missing = [name for name in ("PixelSpacing", "SpacingBetweenSlices") if _positive(ds, name) is None]
            if missing:
                raise Asfe3dInputError(
                    path, f"{role} multi-frame DICOM has neither per-frame positions nor {' / '.join(missing)}: its "
                    "geometry is unknown (GDCM would assume 1 mm)"
                )
        return _read_plain_dicom_file(path, role, info)
    nframes = int(ds.NumberOfFrames)
    rows, cols = int(ds.Rows), int(ds.Columns)
    per_frame = list(ds.PerFrameFunctionalGroupsSequence)
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    if len(per_frame) != nframes:
        raise Asfe3dInputError(
            path, f"{role} enhanced DICOM has {nframes} frames but {len(per_frame)} per-frame functional groups"
        )
    positions, orientations, spacings, slopes = [], [], [], []
    for k, fg in enumerate(per_frame):
        plane = _group_item(fg, shared, "PlanePositionSequence")
        orient = _group_item(fg, shared, "PlaneOrientationSequence")
        meas = _group_item(fg, shared, "PixelMeasuresSequence")
        if plane is None or orient is None or meas is None or "PixelSpacing" not in meas:
            raise Asfe3dInputError(
                path, f"{role} enhanced DICOM frame {k} lacks its position, orientation or pixel spacing "
                "(Plane Position / Plane Orientation / Pixel Measures functional groups)"
            )
        positions.append([float(v) for v in plane.ImagePositionPatient])
        orientations.append([float(v) for v in orient.ImageOrientationPatient])
        spacings.append([float(v) for v in meas.PixelSpacing])
        pvt = _group_item(fg, shared, "PixelValueTransformationSequence")
        slopes.append(_enhanced_rescale(path, role, k, pvt if pvt is not None else ds))
    sp = np.asarray(spacings)
    if np.abs(sp - sp[0]).max() > 1e-4:
        raise Asfe3dInputError(path, f"{role} enhanced DICOM frames have different pixel spacings")
    spacing_xy = (float(sp[0, 1]), float(sp[0, 0]))  # PixelSpacing is (between rows, between columns)
    bits = int(getattr(ds, "BitsAllocated", 16) or 16)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    compressed = bool(ts is not None and getattr(ts, "is_compressed", False))
    check_data_size(path, role, (nframes, rows, cols), max(1, bits // 8) * int(getattr(ds, "SamplesPerPixel", 1)),
                    stored_bytes=path.stat().st_size, compressed=compressed)
    plan = plan_stack(path, np.asarray(positions), np.asarray(orientations), spacing_xy, role, strict=strict,
                      what="frames")
    check_resampled_grid(path, role, plan, rows, cols)
    raw = _enhanced_pixels(path, role, nframes, rows, cols)
    scaled = np.empty(raw.shape, dtype=np.float32)
    for k, (slope, intercept) in enumerate(slopes):
        scaled[k] = raw[k].astype(np.float32) * np.float32(slope) + np.float32(intercept)
    info["slices"] = nframes
    info["frames_in_file"] = nframes
    return _resample_or_keep(path, scaled[plan.order], plan, role, info)


def _enhanced_rescale(path: Path, role: str, k: int, src: Any) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of frame ``k`` (absent: 1 and 0); a slope of 0 or not a number refused."""
    slope, intercept = src.get("RescaleSlope"), src.get("RescaleIntercept")
    value = 1.0 if slope is None or str(slope).strip() == "" else _float_or_nan(slope)
    if value == 0 or not math.isfinite(value):
        raise Asfe3dInputError(path, f"{role} enhanced DICOM frame {k} has RescaleSlope {str(slope)!r}: its values "
                                     "cannot be scaled; fix the header")
    offset = 0.0 if intercept is None or str(intercept).strip() == "" else _float_or_nan(intercept)
    if not math.isfinite(offset):
        raise Asfe3dInputError(path, f"{role} enhanced DICOM frame {k} has RescaleIntercept {str(intercept)!r}; fix "
                                     "the header")
    return value, offset


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _enhanced_pixels(path: Path, role: str, nframes: int, rows: int, cols: int) -> np.ndarray:
    """Stored pixel values ``(frames, rows, cols)`` (before rescale), with pydicom, else GDCM."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path))
            arr = np.asarray(ds.pixel_array)
    except Exception as err:  # noqa: BLE001 - pydicom lacks a decoder: try GDCM
        try:
            with quiet_itk():
                img = sitk.ReadImage(str(path))
            arr = sitk.GetArrayFromImage(img)
        except RuntimeError:
            raise Asfe3dInputError(path, f"{role} enhanced DICOM pixel data cannot be decoded ({short_error(err)})") from None
    arr = arr.reshape((nframes, rows, cols)) if arr.size == nframes * rows * cols else arr
    if arr.shape != (nframes, rows, cols):
        raise Asfe3dInputError(
            path, f"{role} enhanced DICOM pixel data has shape {arr.shape}, expected {(nframes, rows, cols)}"
        )
    return arr


def _read_plain_dicom_file(path: Path, role: str, info: dict[str, Any]) -> sitk.Image:
    """A single-file DICOM without per-frame geometry, read with GDCM (after a header-only size check)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with quiet_itk():
            reader.ReadImageInformation()
        _refuse_monochrome1(reader, path, role)
        size = tuple(int(s) for s in reader.GetSize())
        check_data_size(path, role, size, 4, stored_bytes=path.stat().st_size, compressed=True)
        with quiet_itk():
            img = reader.Execute()
    except RuntimeError as err:
        raise Asfe3dInputError(path, f"{role} file is not a readable image ({short_error(err)})") from None
    info["slices"] = int(img.GetSize()[2]) if img.GetDimension() >= 3 else 1
    return img
