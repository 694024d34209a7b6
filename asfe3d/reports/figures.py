"""The report's figures, drawn with matplotlib (``draw_*`` return figures; :func:`png_bytes` turns them into PNG).

Every view is drawn in world (RAS, millimetre) coordinates on a canonical (RAS+) copy of the images, so anisotropic
voxels keep their true physical aspect (``imshow`` with millimetre extents). Views are neurological (the subject's
left on the viewer's left) and every panel carries its orientation letters (L/R, P/A, I/S). Contours are iso-lines
of the smoothed anatomical image (``contourpy``, lines shorter than 12 mm dropped), drawn as line collections.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never through ``pyplot``'s global
state, so drawing a report neither needs a display nor changes the caller's matplotlib backend.
"""

from __future__ import annotations

import io
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from asfe3d.utils import FWHM_PER_SIGMA, percentile

__all__ = [
    "as_nifti",
    "axis_aligned",
    "canonical",
    "header_aligned",
    "field_of_view",
    "robust_range",
    "head_bounds_mm",
    "head_box",
    "crop_to_head",
    "contour_levels",
    "boundary_lines",
    "smoothed",
    "draw_registration",
    "draw_fused",
    "draw_overlay",
    "png_bytes",
    "thumbnail",
    "CONTOUR_COLOURS",
]

_DPI = 100


def as_nifti(image: Any, name: str = "image") -> Any:
    """A ``nibabel.Nifti1Image`` from an image, a ``(array, affine)`` pair or a NIfTI path.

    Args:
        image: a nibabel spatial image, a ``(array (X, Y, Z[, C]), 4x4 RAS affine)`` tuple, or a path.
        name: what the image is, for error messages.

    Returns:
        A ``Nifti1Image`` (float32 data for scalar volumes, the given dtype for colour volumes).

    Raises:
        ValueError: anything else, or an array that is not 3D (4D with 3 channels for colour) or an affine that
            is not 4x4.
    """
    import nibabel as nib

    if isinstance(image, nib.spatialimages.SpatialImage):
        return image if isinstance(image, nib.Nifti1Image) else nib.Nifti1Image(np.asanyarray(image.dataobj),
                                                                                 image.affine)
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return as_nifti(nib.load(str(image)), name)
    if isinstance(image, tuple) and len(image) == 2:
        data, affine = np.asarray(image[0]), np.asarray(image[1], dtype=float)
        if affine.shape != (4, 4):
            raise ValueError(f"{name}: the affine must be 4x4, got shape {affine.shape}")
        if data.ndim != 3 and not (data.ndim == 4 and data.shape[-1] == 3):
            raise ValueError(f"{name}: expected an (X, Y, Z) or (X, Y, Z, 3) array, got shape {data.shape}")
        if data.ndim == 3:
            data = data.astype(np.float32, copy=False)
        return nib.Nifti1Image(data, affine)
    raise ValueError(f"{name}: expected a nibabel image, an (array, affine) tuple or a path, "
                     f"got {type(image).__name__}")


def axis_aligned(img: Any) -> Any:
    """An oblique image resampled once (linear, SimpleITK) onto an axis-aligned grid; others returned as is.

    The views slice a canonical (RAS+) copy of each image, which needs axis-aligned voxels. Each world axis keeps
    the voxel size of the image axis closest to it, and the grid covers the image's whole field of view.
    Axis-aligned images (any permutation or flip of the axes) are returned unchanged.

    Args:
        img: a 3D NIfTI image.

    Returns:
        The image itself, or its float32 resampled copy.
    """
    import nibabel as nib
    import SimpleITK as sitk

    from asfe3d.io import sitk_image_from_ras_affine, sitk_to_numpy_xyz

    affine = np.asarray(img.affine, dtype=float)
    rot = affine[:3, :3]
    if np.count_nonzero(np.abs(rot) > 1e-6 * np.abs(rot).max()) == 3:
        return img
    zooms = np.linalg.norm(rot, axis=0)
    target = np.empty(3)
    for i, (axis, _) in enumerate(nib.orientations.io_orientation(affine)):
        target[int(axis)] = zooms[i]
    shape = np.array(img.shape[:3])
    corners = np.array([[a, b, c] for a in (0, shape[0] - 1) for b in (0, shape[1] - 1) for c in (0, shape[2] - 1)],
                       dtype=float) @ rot.T + affine[:3, 3]
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    out_shape = tuple(int(n) for n in np.ceil((hi - lo) / target).astype(int) + 1)
    out_affine = np.diag([*target, 1.0])
    out_affine[:3, 3] = lo
    source = sitk_image_from_ras_affine(np.asanyarray(img.dataobj, dtype=np.float32), affine)
    reference = sitk_image_from_ras_affine(np.zeros(out_shape, np.float32), out_affine)
    resampled = sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return nib.Nifti1Image(sitk_to_numpy_xyz(resampled), out_affine)


def robust_range(data: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Display window: percentiles of the finite, non-zero voxels (0, 1 for an empty or constant volume).

    Args:
        data: any array.
        low: lower percentile.
        high: upper percentile.

    Returns:
        ``(vmin, vmax)`` with ``vmax > vmin``.
    """
    values = np.asarray(data).ravel()
    if values.size > 2_000_000:  # percentiles of a regular subsample are as good and much faster
        values = values[:: values.size // 1_000_000]
    values = values.astype(np.float64)
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in percentile(values, [low, high]))
    if not hi > lo:
        lo, hi = float(values.min()), float(values.max())
        if not hi > lo:
            return lo - 0.5, lo + 0.5
    return lo, hi


def head_box(img: Any, fraction: float = 0.15, margin_mm: float = 0.0,
             threshold: float | None = None) -> tuple[slice, slice, slice]:
    """Voxel slices of the bounding box of the voxels brighter than ``fraction`` of the robust maximum.

    The image is box-averaged over 3 voxels first, and planes (along each axis) holding fewer than 3 bright voxels,
    or under 2 % of the fullest plane's count, are outside the box, so background noise does not stretch it.

    Args:
        img: a NIfTI image (3D).
        fraction: threshold as a fraction of the 99th percentile of the non-zero voxels.
        margin_mm: grow the box by this much on every side (clipped to the image).
        threshold: an absolute threshold instead (e.g. -400 HU for a CT, whose air is -1000).

    Returns:
        Three slices (the whole image when nothing is bright).
    """
    from scipy.ndimage import uniform_filter

    # a 3-voxel box mean first: the noise of the background then rarely crosses the threshold
    data = uniform_filter(np.nan_to_num(np.asanyarray(img.dataobj, dtype=np.float32)), size=3, mode="nearest")
    if threshold is None:
        threshold = fraction * robust_range(data, 1.0, 99.0)[1]
    mask = data > threshold
    shape = np.array(data.shape[:3])
    lo_i, hi_i = np.zeros(3, int), shape - 1
    for axis in range(3):  # projections instead of argwhere: fast on 1 mm volumes
        counts = mask.sum(axis=tuple(a for a in range(3) if a != axis))
        # a plane counts when it holds more than a few bright voxels (isolated noise voxels do not move the box)
        hits = np.flatnonzero(counts >= max(3.0, 0.02 * float(counts.max(initial=0))))
        if hits.size:
            lo_i[axis], hi_i[axis] = hits[0], hits[-1]
    pad = np.ceil(margin_mm / np.maximum(np.linalg.norm(img.affine[:3, :3], axis=0), 1e-6)).astype(int)
    lo_i, hi_i = np.maximum(lo_i - pad, 0), np.minimum(hi_i + pad, shape - 1)
    return tuple(slice(int(a), int(b) + 1) for a, b in zip(lo_i, hi_i))  # type: ignore[return-value]


def crop_to_head(mri: Any, *others: Any, margin_mm: float = 6.0, threshold: float | None = None) -> list[Any]:
    """Crop the MRI and images on its grid to the MRI's head (plus ``margin_mm``), so views show the head large.

    Args:
        mri: the MRI or CT (3D NIfTI).
        others: images on the same grid.
        margin_mm: margin around the head.
        threshold: the head's edge as an absolute value (see :func:`head_box`).

    Returns:
        ``[mri, *others]`` cropped (NIfTI images with adjusted affines).
    """
    box = head_box(mri, margin_mm=margin_mm, threshold=threshold)
    return [img.slicer[box] for img in (mri, *others)]


def head_bounds_mm(img: Any, fraction: float = 0.15, threshold: float | None = None) -> np.ndarray:
    """World (RAS, mm) bounding box of the voxels brighter than ``fraction`` of the robust maximum.

    Args:
        img: a NIfTI image (3D).
        fraction: threshold as a fraction of the 99th percentile of the non-zero voxels.
        threshold: an absolute threshold instead (see :func:`head_box`).

    Returns:
        ``(2, 3)`` array: row 0 the minimum and row 1 the maximum of x, y, z in mm.
    """
    known = _BOUNDS.setdefault(img, {})
    key = (float(fraction), None if threshold is None else float(threshold))
    if key not in known:  # each figure of a report asks for the same image's box: one box filter, not five
        known[key] = _bounds_mm(img, head_box(img, fraction, threshold=threshold))
    return known[key].copy()


#: :func:`head_bounds_mm` per image (the report's figures share one cropped MRI) and threshold; an image that is no
#: longer used drops out
_BOUNDS: weakref.WeakKeyDictionary[Any, dict[tuple[float, float | None], np.ndarray]] = weakref.WeakKeyDictionary()


def _bounds_mm(img: Any, box: tuple[slice, slice, slice]) -> np.ndarray:
    """The world (RAS, mm) ``(2, 3)`` min / max corners of a voxel box of ``img``."""
    lo_i = [b.start for b in box]
    hi_i = [b.stop - 1 for b in box]
    corners = np.array([[a, b, c] for a in (lo_i[0], hi_i[0]) for b in (lo_i[1], hi_i[1])
                        for c in (lo_i[2], hi_i[2])], dtype=float)
    world = corners @ img.affine[:3, :3].T + img.affine[:3, 3]
    return np.stack([world.min(axis=0), world.max(axis=0)])


def _cuts(bounds: np.ndarray, axis: int, n: int) -> list[float]:
    lo, hi = bounds[0, axis], bounds[1, axis]
    margin = 0.12 * (hi - lo)
    return [float(c) for c in np.linspace(lo + margin, hi - margin, n)]


def signal_bounds(pet: Any, head: np.ndarray) -> np.ndarray:
    """Where the registration check's cuts go: the box of the PET's signal (above 30 % of its robust maximum: the
    brain of a brain PET) within the head box, or the head box when that is empty or too thin (cuts spread over the
    whole head box put a panel through the nose alone)."""
    try:
        signal = head_bounds_mm(pet, fraction=0.3)
    except (ValueError, IndexError):
        return head
    box = np.stack([np.maximum(signal[0], head[0]), np.minimum(signal[1], head[1])])
    if np.any(box[1] - box[0] < 0.25 * (head[1] - head[0])):
        return head
    return box


def _centre(bounds: np.ndarray) -> tuple[float, float, float]:
    c = bounds.mean(axis=0)
    return float(c[0]), float(c[1]), float(c[2])


def _inside(lines: Any, xlim: tuple[float, float], ylim: tuple[float, float]) -> bool:
    """Whether any point of ``lines`` (a list of ``(N, 2)`` polylines in mm) falls inside the view's limits."""
    for line in lines:
        pts = np.asarray(line, dtype=float).reshape(-1, 2)
        if bool(np.any((pts[:, 0] >= xlim[0]) & (pts[:, 0] <= xlim[1]) & (pts[:, 1] >= ylim[0])
                       & (pts[:, 1] <= ylim[1]))):
            return True
    return False


def _new_figure(width: float, height: float, facecolor: str = "black") -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), facecolor=facecolor)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Any, dpi: int = _DPI) -> bytes:
    """A figure as PNG bytes (its own face colour)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    return buf.getvalue()


def contour_levels(data: np.ndarray, modality: str = "MRI") -> list[float]:
    """Two intensity levels of the anatomical image whose contours outline the head and a tissue boundary inside it.

    - ``CT``: the skin (-400 HU) and the bone (300 HU).
    - otherwise (MRI): the edge of the head at 15 % of the robust maximum, and Otsu's threshold of the voxels above
      it (grey/white matter on a T1w image).

    Args:
        data: the (smoothed) anatomical image.
        modality: ``"CT"`` or ``"MRI"``.

    Returns:
        One or two increasing levels.
    """
    if modality == "CT":
        return [-400.0, 300.0]
    _, hi = robust_range(data, 1.0, 99.0)
    outer = 0.15 * hi
    inside = np.asarray(data, dtype=np.float64)
    inside = inside[np.isfinite(inside) & (inside > outer)]
    if inside.size < 16:
        return [outer]
    hist, edges = np.histogram(inside, bins=128)
    centres = (edges[:-1] + edges[1:]) / 2.0
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    inner = float(centres[int(np.argmax(between))])
    return [outer, inner] if inner > outer else [outer]


def smoothed(img: Any, fwhm_mm: float = 3.0) -> Any:
    """The image smoothed by a Gaussian of ``fwhm_mm`` (per-axis sigma in voxels), for smooth contours."""
    import nibabel as nib
    from scipy.ndimage import gaussian_filter

    zooms = np.linalg.norm(img.affine[:3, :3], axis=0)
    sigma = fwhm_mm / FWHM_PER_SIGMA / np.maximum(zooms, 1e-6)
    data = gaussian_filter(np.nan_to_num(np.asanyarray(img.dataobj, dtype=np.float32)), sigma)
    return nib.Nifti1Image(data, img.affine)


def canonical(img: Any) -> Any:
    """The image reoriented to RAS+ voxel axes (x to the right, y anterior, z superior; float32 data).

    Args:
        img: an axis-aligned 3D NIfTI image (see :func:`axis_aligned`).

    Returns:
        A ``Nifti1Image`` whose affine is diagonal with positive zooms.
    """
    import nibabel as nib

    out = nib.as_closest_canonical(img)
    return nib.Nifti1Image(np.asanyarray(out.dataobj, dtype=np.float32), out.affine)


def header_aligned(moving: Any, reference: Any) -> Any:
    """``moving`` resampled (linear, SimpleITK) onto ``reference``'s grid by its header geometry alone (identity).

    This is the PET "as read": where the scanner and the file headers put it, before any registration.

    Args:
        moving: a 3D NIfTI image on its own grid (e.g. the PET as read).
        reference: the 3D NIfTI image whose grid is used (e.g. the cropped anatomical image).

    Returns:
        A float32 ``Nifti1Image`` on the reference grid (0 outside the moving image).
    """
    import nibabel as nib
    import SimpleITK as sitk

    from asfe3d.io import sitk_image_from_ras_affine, sitk_to_numpy_xyz

    src = sitk_image_from_ras_affine(np.asanyarray(moving.dataobj, dtype=np.float32), np.asarray(moving.affine, float))
    ref = sitk_image_from_ras_affine(np.zeros(reference.shape[:3], np.float32), np.asarray(reference.affine, float))
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return nib.Nifti1Image(sitk_to_numpy_xyz(out), reference.affine)


#: voxels per slab of :func:`field_of_view`'s float64 index arithmetic (~8 bytes each, a few such arrays at once)
_SLAB_VOXELS = 4_000_000


def field_of_view(reference: Any, pet: Any, mri_to_pet_ras: Any) -> Any:
    """The PET's field of view on ``reference``'s grid: 1 where the registration's transform lands inside the PET's
    voxel box (the voxels ITK's resampling takes from the PET), 0 where the registered PET is only padding.

    Args:
        reference: a canonical 3D NIfTI image (e.g. the cropped anatomical image).
        pet: the PET as read, on its own grid (3D NIfTI image); its ``extra["unmeasured"]`` (bool, its grid: where
            the file held NaN, as SPM writes outside a resliced PET's field of view) is outside too, taken to the
            reference's grid by nearest neighbour as the run did.
        mri_to_pet_ras: the registration's ``(4, 4)`` matrix, MRI world -> PET world (RAS mm; the record's
            ``registration.mri_to_pet_ras``).

    Returns:
        A uint8 ``Nifti1Image`` on ``reference``'s grid, or ``None`` when the PET's field of view holds the whole
        grid (no edge to draw).

    Raises:
        ValueError: a matrix that is not 4x4 and finite, or images that are not 3D.
    """
    import nibabel as nib

    matrix = np.asarray(mri_to_pet_ras, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"mri_to_pet_ras must be a finite 4x4 matrix, got {np.asarray(mri_to_pet_ras).tolist()!r}")
    if len(reference.shape) != 3 or len(pet.shape) < 3:
        raise ValueError(f"reference and PET must be 3D, got shapes {reference.shape} and {pet.shape}")
    to_pet = np.linalg.inv(np.asarray(pet.affine, dtype=np.float64)) @ matrix @ np.asarray(reference.affine, float)
    shape = reference.shape[:3]
    axes = [np.arange(n, dtype=np.float64) for n in shape]
    inside = np.ones(shape, dtype=bool)
    step = max(1, _SLAB_VOXELS // max(1, shape[1] * shape[2]))  # slabs along the first axis: bounded float64 memory
    for start in range(0, shape[0], step):
        slab = inside[start:start + step]
        for row, n in zip(to_pet[:3], pet.shape[:3]):  # one PET voxel axis at a time: its continuous index
            index = (row[0] * axes[0][start:start + step, None, None] + row[1] * axes[1][None, :, None]
                     + (row[2] * axes[2] + row[3])[None, None, :])
            slab &= (index >= -0.5) & (index < n - 0.5)
    unmeasured = getattr(pet, "extra", {}).get("unmeasured")
    if unmeasured is not None and np.any(unmeasured):
        inside &= _measured_on(reference, pet, np.asarray(unmeasured, bool), matrix)
    if inside.all():
        return None
    return nib.Nifti1Image(inside.astype(np.uint8), reference.affine)


def _measured_on(reference: Any, pet: Any, unmeasured: np.ndarray, mri_to_pet_ras: np.ndarray) -> np.ndarray:
    """Where the PET's file held finite values, on ``reference``'s grid (nearest neighbour through the matrix, as
    the run's resampling): bool, ``reference``'s shape."""
    import SimpleITK as sitk

    from asfe3d.io import sitk_image_from_ras_affine, sitk_to_numpy_xyz
    from asfe3d.registration.register import transform_from_ras

    if unmeasured.shape != tuple(pet.shape[:3]):
        raise ValueError(f"the PET's extra['unmeasured'] must have its shape {tuple(pet.shape[:3])}, got "
                         f"{unmeasured.shape}")
    transform = transform_from_ras(mri_to_pet_ras)
    measured = sitk_image_from_ras_affine((~unmeasured).astype(np.uint8), np.asarray(pet.affine, float))
    grid = sitk_image_from_ras_affine(np.zeros(tuple(reference.shape[:3]), np.uint8),
                                      np.asarray(reference.affine, float))
    return sitk_to_numpy_xyz(sitk.Resample(measured, grid, transform, sitk.sitkNearestNeighbor, 0,
                                           sitk.sitkUInt8)) > 0


#: the PET field of view's edge, as drawn over the fused image and the overlay
FOV_STYLE = dict(colors="#ffd24d", linewidths=1.2, linestyles=(0, (4, 3)))


@dataclass
class _Plane:
    """A slice of a canonical volume, ready for ``imshow(origin="lower")``: pixel rows run along ``v``."""

    image: np.ndarray
    h: np.ndarray  # centre of every column (mm)
    v: np.ndarray  # centre of every row (mm)
    extent: tuple[float, float, float, float]


#: per cut axis: (horizontal axis, vertical axis) of the view; views are neurological (x to the right)
_VIEW_AXES = {0: (1, 2), 1: (0, 2), 2: (0, 1)}
#: per cut axis: the letters at the (left, right, bottom, top) edges
_LETTERS = {0: ("P", "A", "I", "S"), 1: ("L", "R", "I", "S"), 2: ("L", "R", "P", "A")}
_PLANE_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}


def _plane(img: Any, axis: int, coord_mm: float) -> _Plane:
    data = np.asanyarray(img.dataobj)
    zooms = np.diag(img.affine)[:3]
    origin = img.affine[:3, 3]
    index = int(np.clip(np.round((coord_mm - origin[axis]) / zooms[axis]), 0, data.shape[axis] - 1))
    cut = np.take(data, index, axis=axis)  # 2D (the other two axes in order)
    h_axis, v_axis = _VIEW_AXES[axis]
    h = origin[h_axis] + np.arange(data.shape[h_axis]) * zooms[h_axis]
    v = origin[v_axis] + np.arange(data.shape[v_axis]) * zooms[v_axis]
    extent = (h[0] - zooms[h_axis] / 2, h[-1] + zooms[h_axis] / 2, v[0] - zooms[v_axis] / 2,
              v[-1] + zooms[v_axis] / 2)
    return _Plane(np.ascontiguousarray(cut.T), h, v, extent)


def boundary_lines(plane: _Plane, level: float, min_length_mm: float = 12.0) -> list[np.ndarray]:
    """The iso-lines of a slice at ``level`` in millimetres, without the short pieces (noise islands).

    Args:
        plane: the slice (of a smoothed anatomical image).
        level: the iso-level.
        min_length_mm: lines shorter than this are dropped.

    Returns:
        ``(N, 2)`` arrays of (horizontal, vertical) points in mm.
    """
    import contourpy

    if plane.image.shape[0] < 2 or plane.image.shape[1] < 2:
        return []
    gen = contourpy.contour_generator(plane.h, plane.v, np.asarray(plane.image, dtype=np.float64),
                                      line_type="Separate")
    lines = gen.lines(level)
    return [ln for ln in lines if len(ln) > 1 and float(np.sum(np.linalg.norm(np.diff(ln, axis=0), axis=1)))
            >= min_length_mm]


def _letters(ax: Any, axis: int, *, left: bool = True, right: bool = True, size: int = 8) -> None:
    lo, hi, bottom, top = _LETTERS[axis]
    style = dict(transform=ax.transAxes, color="white", fontsize=size, fontweight="bold", zorder=10)
    if left:
        ax.text(0.02, 0.5, lo, ha="left", va="center", **style)
    if right:
        ax.text(0.98, 0.5, hi, ha="right", va="center", **style)
    ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **style)
    ax.text(0.5, 0.99, top, ha="center", va="top", **style)


def _extent_of(img: Any, bounds: np.ndarray, axis: int) -> tuple[float, float]:
    """Width and height (mm) of a view cut along ``axis`` over the head box."""
    h_axis, v_axis = _VIEW_AXES[axis]
    size = bounds[1] - bounds[0] + np.diag(img.affine)[:3]
    return float(max(size[h_axis], 1.0)), float(max(size[v_axis], 1.0))


#: colours of the contour levels: the head's outline, then the tissue boundary
CONTOUR_COLOURS = ("#00e5ff", "#ff3b3b")


def draw_registration(
    anat: Any,
    pet: Any,
    *,
    anat_smoothed: Any,
    levels: Sequence[float],
    window: tuple[float, float],
    label: str,
    anat_name: str = "MRI",
    cuts: int = 5,
    width: float = 13.0,
    cut_bounds: np.ndarray | None = None,
) -> Any:
    """The PET in grey with the anatomical image's contours: one row of ``cuts`` slices per plane.

    Args:
        anat: the canonical anatomical image (its head box places the cuts).
        pet: the PET on the same (canonical) grid.
        anat_smoothed: the anatomical image smoothed (:func:`smoothed`), whose iso-lines are drawn.
        levels: the iso-levels (:func:`contour_levels`), drawn in :data:`CONTOUR_COLOURS`.
        window: the PET's grey window ``(vmin, vmax)`` (the same for the before and after views).
        label: the text in the top-left corner (e.g. ``after registration``).
        anat_name: ``MRI`` or ``CT`` (named in the legend).
        cuts: slices per plane.
        cut_bounds: ``(2, 3)`` world box (RAS, mm) the cuts are spread over (:func:`signal_bounds` of the registered
            PET: the same for the "before" view); ``None``: the anatomical image's head box.
        width: figure width in inches.

    Returns:
        A matplotlib ``Figure`` (Agg canvas); its contours are ``LineCollection`` artists.
    """
    from matplotlib.collections import LineCollection

    bounds = head_bounds_mm(anat, threshold=_head_threshold(anat_name))
    cell_w = width / cuts
    heights = []
    for axis in range(3):
        w_mm, h_mm = _extent_of(anat, bounds, axis)
        heights.append(cell_w * h_mm / w_mm)
    title_h = 0.3
    total = sum(heights) + title_h
    fig = _new_figure(width, total)
    top = total - title_h
    placed = bounds if cut_bounds is None else cut_bounds  # the cuts (within these); the views show the head box
    for axis, h in zip(range(3), heights):
        w_mm, h_mm = _extent_of(anat, bounds, axis)
        h_axis, v_axis = _VIEW_AXES[axis]
        coords = _cuts(placed, axis, cuts)
        for i, coord in enumerate(coords):
            ax = fig.add_axes((i * cell_w / width, (top - h) / total, cell_w / width, h / total))
            ax.set_facecolor("black")
            ax.set_axis_off()
            plane = _plane(pet, axis, coord)
            ax.imshow(plane.image, cmap="gray", vmin=window[0], vmax=window[1], origin="lower",
                      extent=plane.extent, interpolation="bilinear", aspect="equal")
            smooth = _plane(anat_smoothed, axis, coord)
            for level, colour in zip(levels, CONTOUR_COLOURS):
                lines = boundary_lines(smooth, level)
                if lines:
                    ax.add_collection(LineCollection(lines, colors=colour, linewidths=1.0, alpha=0.95))
            ax.set_xlim(bounds[0, h_axis] - 2, bounds[1, h_axis] + 2)
            ax.set_ylim(bounds[0, v_axis] - 2, bounds[1, v_axis] + 2)
            _letters(ax, axis, left=i == 0, right=i == cuts - 1)
            where = f"{'xyz'[axis]} = {coord:.0f} mm"
            ax.text(0.02, 0.02, f"{_PLANE_NAMES[axis]}, {where}" if i == 0 else where, transform=ax.transAxes,
                    color="#bbb", fontsize=7, ha="left", va="bottom")
        top -= h
    fig.text(0.005, 1 - 0.5 * title_h / total, label, color="#ffd24d", fontsize=12, fontweight="bold",
             ha="left", va="center")
    names = ["head outline", "tissue boundary" if anat_name != "CT" else "bone"][: len(levels)]
    for k, name in enumerate(reversed(names)):  # the legend from the right, each entry in its line's colour
        fig.text(0.995 - 0.17 * k, 1 - 0.5 * title_h / total, f"\u2501 {anat_name} {name}",
                 color=CONTOUR_COLOURS[len(names) - 1 - k], fontsize=10, ha="right", va="center")
    return fig


def _head_threshold(anat_name: str) -> float | None:
    """The head's edge: -400 HU on a CT (air is -1000), else a fraction of the robust maximum."""
    return -400.0 if anat_name == "CT" else None


def draw_fused(
    fused: Any,
    *,
    anat: Any,
    units: str,
    value_range: tuple[float, float] | None = None,
    anat_name: str = "MRI",
    width: float = 10.0,
    fov: Any = None,
) -> Any:
    """Sagittal, coronal and axial views of the fused image through the head's centre, with a colour bar.

    The colour bar spans ``value_range``: by default the fused image's finite minimum and maximum, so it reads in
    the units the fused volume was written in.

    Args:
        fused: the canonical fused image.
        anat: the canonical anatomical image (its head box places the cuts).
        units: what the values are (written on the colour bar).
        value_range: ``(vmin, vmax)`` (default: the data's finite range).
        anat_name: ``MRI`` or ``CT``.
        width: figure width in inches.
        fov: the PET's field of view on the same grid (:func:`field_of_view`): its edge is drawn dashed.

    Returns:
        A matplotlib ``Figure``; ``fig.colorbar_axes`` is the colour bar's axes.
    """
    data = np.asanyarray(fused.dataobj)
    if value_range is None:
        finite = data[np.isfinite(data)]
        value_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    vmin, vmax = value_range
    if not vmax > vmin:
        vmax = vmin + 1.0
    return _ortho(fused, anat, anat_name=anat_name, width=width, cmap="gray", vmin=vmin, vmax=vmax,
                  bar_label=units, title=f"fused image ({units})", fov=fov)


def draw_overlay(
    anat: Any,
    pet: Any,
    *,
    units: str,
    colormap: str = "hot",
    anat_name: str = "MRI",
    width: float = 10.0,
    fov: Any = None,
) -> Any:
    """The PET's colour map over the anatomical image (PET values above 20 % of its window), colour bar in PET units.

    Args:
        anat: the canonical anatomical image.
        pet: the PET on the same grid, in its units.
        units: the PET's units (written on the colour bar).
        colormap: the PET's colour map.
        anat_name: ``MRI`` or ``CT``.
        width: figure width in inches.
        fov: the PET's field of view on the same grid (:func:`field_of_view`): its edge is drawn dashed.

    Returns:
        A matplotlib ``Figure``; ``fig.colorbar_axes`` is the colour bar's axes.
    """
    vmin, vmax = robust_range(np.asanyarray(pet.dataobj))
    return _ortho(anat, anat, anat_name=anat_name, width=width, cmap="gray",
                  vmin=robust_range(np.asanyarray(anat.dataobj))[0], vmax=robust_range(np.asanyarray(anat.dataobj))[1],
                  overlay=(pet, colormap, vmin, vmax), bar_label=f"PET ({units})",
                  title=f"PET ({units}) over the {anat_name}", fov=fov)


def _ortho(
    img: Any, anat: Any, *, anat_name: str, width: float, cmap: str, vmin: float, vmax: float, bar_label: str,
    title: str, overlay: tuple[Any, str, float, float] | None = None, fov: Any = None,
) -> Any:
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    bounds = head_bounds_mm(anat, threshold=_head_threshold(anat_name))
    centre = _centre(bounds)
    sizes = [_extent_of(anat, bounds, axis) for axis in range(3)]
    total_w = sum(w for w, _ in sizes)
    bar_w = 0.045 * total_w
    panel_h = max(h for _, h in sizes)
    scale = (width * 0.9) / (total_w + bar_w)  # inches per mm
    title_h = 0.35
    height = panel_h * scale + title_h + 0.15
    fig = _new_figure(width, height)
    fig.fov_drawn = False  # set where the PET's field-of-view edge crosses a view
    x = 0.01
    for axis in range(3):
        w_mm, h_mm = sizes[axis]
        h_axis, v_axis = _VIEW_AXES[axis]
        ax = fig.add_axes((x, 0.15 / height / 2, w_mm * scale / width, panel_h * scale / height))
        x += w_mm * scale / width + 0.01
        ax.set_facecolor("black")
        ax.set_axis_off()
        plane = _plane(img, axis, centre[axis])
        ax.imshow(plane.image, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", extent=plane.extent,
                  interpolation="bilinear", aspect="equal")
        if overlay is not None:
            pet, pcmap, pvmin, pvmax = overlay
            over = _plane(pet, axis, centre[axis])
            shown = np.ma.masked_less_equal(over.image, pvmin + 0.2 * (pvmax - pvmin))
            ax.imshow(shown, cmap=pcmap, vmin=pvmin, vmax=pvmax, origin="lower", extent=over.extent,
                      interpolation="bilinear", aspect="equal", alpha=0.7)
        xlim = (bounds[0, h_axis] - 2, bounds[1, h_axis] + 2)
        ylim = (bounds[0, v_axis] - 2, bounds[1, v_axis] + 2)
        if fov is not None:
            edge = boundary_lines(_plane(fov, axis, centre[axis]), 0.5, min_length_mm=0.0)
            if edge:
                ax.add_collection(LineCollection(edge, **FOV_STYLE))
                # the caption names the line only where it is seen: the view is cut to the head (the edge beyond
                # it had set the flag, and the caption announced a line no one could find)
                fig.fov_drawn = fig.fov_drawn or _inside(edge, xlim, ylim)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        _letters(ax, axis, size=9)
        ax.set_title(f"{_PLANE_NAMES[axis]} ({'xyz'[axis]}={centre[axis]:.0f} mm)", color="#ccc", fontsize=8,
                     pad=2)
    cax = fig.add_axes((x + 0.01, 0.12, 0.018, 0.72))
    if overlay is not None:
        _, pcmap, pvmin, pvmax = overlay
        mappable = ScalarMappable(Normalize(pvmin, pvmax), colormaps[pcmap])
    else:
        mappable = ScalarMappable(Normalize(vmin, vmax), colormaps[cmap])
    bar = fig.colorbar(mappable, cax=cax)
    bar.ax.tick_params(colors="white", labelsize=8)
    bar.set_label(bar_label, color="white", fontsize=9)
    fig.colorbar_axes = cax
    fig.text(0.01, 1 - 0.5 * title_h / height, title, color="white", fontsize=11, ha="left", va="center")
    return fig


def thumbnail(pet: Any, *, anat: Any, anat_smoothed: Any, levels: Sequence[float], anat_name: str = "MRI",
              size_inches: float = 2.2) -> bytes:
    """A small axial view of the registered PET with the anatomical contours (as in :func:`draw_registration`).

    Args:
        pet: the canonical registered PET.
        anat: the canonical anatomical image.
        anat_smoothed: the anatomical image smoothed.
        levels: the contour levels.
        anat_name: ``MRI`` or ``CT``.
        size_inches: the thumbnail's width.

    Returns:
        PNG bytes (about 180 pixels wide).
    """
    from matplotlib.collections import LineCollection

    bounds = head_bounds_mm(anat, threshold=_head_threshold(anat_name))
    w_mm, h_mm = _extent_of(anat, bounds, 2)
    fig = _new_figure(size_inches, size_inches * max(0.5, min(2.0, h_mm / w_mm)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    z = _centre(bounds)[2]
    vmin, vmax = robust_range(np.asanyarray(pet.dataobj))
    plane = _plane(pet, 2, z)
    ax.imshow(plane.image, cmap="gray", vmin=vmin, vmax=vmax, origin="lower", extent=plane.extent,
              interpolation="bilinear", aspect="equal")
    smooth = _plane(anat_smoothed, 2, z)
    for level, colour in zip(levels, CONTOUR_COLOURS):
        lines = boundary_lines(smooth, level)
        if lines:
            ax.add_collection(LineCollection(lines, colors=colour, linewidths=0.7))
    ax.set_xlim(bounds[0, 0] - 2, bounds[1, 0] + 2)
    ax.set_ylim(bounds[0, 1] - 2, bounds[1, 1] + 2)
    return png_bytes(fig, dpi=80)
