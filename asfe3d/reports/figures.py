"""The report's figures, drawn with nilearn and matplotlib and returned as PNG bytes.

Every view is drawn in world (RAS, millimetre) coordinates, so anisotropic voxels keep their true physical aspect:
nilearn's slicers place each image with its affine, and the colour volume goes through
:func:`asfe3d.visualize.physical_slices` (``imshow`` with millimetre extents). Views are neurological (the
subject's left on the viewer's left) and every panel carries its orientation letters (L/R, A/P, S/I).

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never through ``pyplot``'s global
state, so drawing a report neither needs a display nor changes the caller's matplotlib backend.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "as_nifti",
    "axis_aligned",
    "robust_range",
    "head_bounds_mm",
    "head_box",
    "crop_to_head",
    "contour_levels",
    "smoothed",
    "registration_figure",
    "fused_figure",
    "colour_figure",
    "thumbnail",
    "ORIENTATION_LETTERS",
]

#: the letters at the (left, right, bottom, top) edges of a nilearn cut, by cut direction, neurological view
ORIENTATION_LETTERS = {
    "x": ("P", "A", "I", "S"),  # sagittal: y runs to the right, z up
    "y": ("L", "R", "I", "S"),  # coronal: x runs to the right, z up
    "z": ("L", "R", "P", "A"),  # axial: x runs to the right, y up
}
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

    nilearn resamples an oblique image at every call (every cut, every contour), which takes minutes for a 1 mm
    volume; doing it once here keeps a report at seconds. Each world axis keeps the voxel size of the image axis
    closest to it, and the grid covers the image's whole field of view. Axis-aligned images (any permutation or
    flip of the axes) are returned unchanged: nilearn draws them without resampling.

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
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    if not hi > lo:
        lo, hi = float(values.min()), float(values.max())
        if not hi > lo:
            return lo - 0.5, lo + 0.5
    return lo, hi


def head_box(img: Any, fraction: float = 0.15, margin_mm: float = 0.0) -> tuple[slice, slice, slice]:
    """Voxel slices of the bounding box of the voxels brighter than ``fraction`` of the robust maximum.

    Args:
        img: a NIfTI image (3D).
        fraction: threshold as a fraction of the 99th percentile of the non-zero voxels.
        margin_mm: grow the box by this much on every side (clipped to the image).

    Returns:
        Three slices (the whole image when nothing is bright).
    """
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    _, hi = robust_range(data, 1.0, 99.0)
    mask = data > fraction * hi
    shape = np.array(data.shape[:3])
    lo_i, hi_i = np.zeros(3, int), shape - 1
    for axis in range(3):  # projections instead of argwhere: fast on 1 mm volumes
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if hits.size:
            lo_i[axis], hi_i[axis] = hits[0], hits[-1]
    pad = np.ceil(margin_mm / np.maximum(np.linalg.norm(img.affine[:3, :3], axis=0), 1e-6)).astype(int)
    lo_i, hi_i = np.maximum(lo_i - pad, 0), np.minimum(hi_i + pad, shape - 1)
    return tuple(slice(int(a), int(b) + 1) for a, b in zip(lo_i, hi_i))  # type: ignore[return-value]


def crop_to_head(mri: Any, *others: Any, margin_mm: float = 6.0) -> list[Any]:
    """Crop the MRI and images on its grid to the MRI's head (plus ``margin_mm``), so views show the head large.

    Args:
        mri: the MRI (3D NIfTI).
        others: images on the same grid.
        margin_mm: margin around the head.

    Returns:
        ``[mri, *others]`` cropped (NIfTI images with adjusted affines).
    """
    box = head_box(mri, margin_mm=margin_mm)
    return [img.slicer[box] for img in (mri, *others)]


def head_bounds_mm(img: Any, fraction: float = 0.15) -> np.ndarray:
    """World (RAS, mm) bounding box of the voxels brighter than ``fraction`` of the robust maximum.

    Args:
        img: a NIfTI image (3D).
        fraction: threshold as a fraction of the 99th percentile of the non-zero voxels.

    Returns:
        ``(2, 3)`` array: row 0 the minimum and row 1 the maximum of x, y, z in mm.
    """
    box = head_box(img, fraction)
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


def _centre(bounds: np.ndarray) -> tuple[float, float, float]:
    c = bounds.mean(axis=0)
    return float(c[0]), float(c[1]), float(c[2])


def _new_figure(width: float, height: float, facecolor: str = "black") -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), facecolor=facecolor)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any, dpi: int = _DPI) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    return buf.getvalue()


def _label_axes(display: Any, size: int = 9, color: str = "white", row: bool = False) -> None:
    """Orientation letters at the edges of the cuts of a nilearn display.

    Args:
        display: the nilearn slicer.
        size: font size.
        color: text colour.
        row: the cuts are one row of parallel slices: the left letter goes on the first cut, the right one on the
            last, top and bottom on every cut (neighbouring cuts would otherwise show e.g. "A P" side by side).
    """
    cuts = [c for c in display.axes.values() if getattr(c, "direction", "") in ORIENTATION_LETTERS]
    if row:
        cuts.sort(key=lambda c: c.ax.get_position().x0)
    for i, cut in enumerate(cuts):
        left, right, bottom, top = ORIENTATION_LETTERS[cut.direction]
        ax = cut.ax
        style = dict(transform=ax.transAxes, color=color, fontsize=size, fontweight="bold", zorder=1000)
        if not row or i == 0:
            ax.text(0.03, 0.5, left, ha="left", va="center", **style)
        if not row or i == len(cuts) - 1:
            ax.text(0.97, 0.5, right, ha="right", va="center", **style)
        ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
        ax.text(0.5, 0.98, top, ha="center", va="top", **style)


def contour_levels(data: np.ndarray) -> list[float]:
    """Two MRI intensity levels whose contours outline the head/brain and the tissue boundary inside it.

    The outer level is 15 % of the robust maximum (the edge of the head); the inner one is Otsu's threshold of the
    voxels above it (grey/white matter on a T1w image).

    Args:
        data: the (smoothed) MRI.

    Returns:
        One or two increasing levels.
    """
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


def smoothed(img: Any, fwhm_mm: float = 2.0) -> Any:
    """The image smoothed by a Gaussian of ``fwhm_mm`` (per-axis sigma in voxels), for clean contours."""
    import nibabel as nib
    from scipy.ndimage import gaussian_filter

    zooms = np.linalg.norm(img.affine[:3, :3], axis=0)
    sigma = fwhm_mm / 2.3548 / np.maximum(zooms, 1e-6)
    data = gaussian_filter(np.nan_to_num(np.asanyarray(img.dataobj, dtype=np.float32)), sigma)
    return nib.Nifti1Image(data, img.affine)


def registration_figure(
    mri: Any,
    pet_on_mri: Any,
    *,
    cuts: int = 6,
    width: float = 13.0,
    mri_smoothed: Any = None,
) -> bytes:
    """MRI contours over the registered PET: one row of ``cuts`` slices per plane (sagittal, coronal, axial).

    The PET is drawn in grey; the MRI's outline (cyan) and its inner tissue boundary (red), contours of the MRI
    smoothed by 2 mm, show at a glance whether the PET sits on the MRI.

    Args:
        mri: the MRI (anything :func:`as_nifti` takes); its contours are drawn.
        pet_on_mri: the PET on the MRI grid (the background).
        cuts: slices per plane.
        width: figure width in inches.
        mri_smoothed: the MRI smoothed by :func:`smoothed` when the caller has it (else computed here).

    Returns:
        PNG bytes.
    """
    from nilearn import plotting

    mri_img, pet_img = as_nifti(mri, "MRI"), as_nifti(pet_on_mri, "PET on MRI")
    bounds = head_bounds_mm(mri_img)
    vmin, vmax = robust_range(np.asanyarray(pet_img.dataobj))
    smooth = mri_smoothed if mri_smoothed is not None else smoothed(mri_img)
    levels = contour_levels(np.asanyarray(smooth.dataobj))
    colours = ["c", "r"][: len(levels)]
    extent = bounds[1] - bounds[0]
    # row heights follow each plane's physical aspect: height / width of one cut
    aspects = {"x": extent[2] / max(extent[1], 1e-6), "y": extent[2] / max(extent[0], 1e-6),
               "z": extent[1] / max(extent[0], 1e-6)}
    cut_width = width / cuts
    heights = [max(0.6, min(3.0, cut_width * aspects[d])) for d in "xyz"]
    total = sum(heights) + 0.1
    fig = _new_figure(width, total)
    top = 1.0
    for direction, axis, h in zip("xyz", (0, 1, 2), heights):
        frac = h / total
        display = plotting.plot_img(
            pet_img, display_mode=direction, cut_coords=_cuts(bounds, axis, cuts), figure=fig,
            axes=(0.0, top - frac, 1.0, frac), cmap="gray", vmin=vmin, vmax=vmax, colorbar=False,
            annotate=False, black_bg=True, draw_cross=False,
        )
        display.add_contours(smooth, levels=levels, colors=colours, linewidths=0.8)
        display.annotate(left_right=False, positions=True, size=8)
        _label_axes(display, size=8, row=True)
        top -= frac
    return _png(fig)


def fused_figure(
    fused: Any,
    *,
    title: str = "fused",
    cmap: str = "gray",
    width: float = 10.0,
    cut_coords: Sequence[float] | None = None,
) -> bytes:
    """Ortho (sagittal, coronal, axial) view of a scalar volume with a colour bar and orientation letters.

    Args:
        fused: the volume (anything :func:`as_nifti` takes).
        title: title drawn in the figure (say the units there: nilearn's colour bar has no room for a label).
        cmap: colour map.
        width: figure width in inches.
        cut_coords: the cut point in mm (default: the head's centre).

    Returns:
        PNG bytes.
    """
    from nilearn import plotting

    img = as_nifti(fused, title)
    bounds = head_bounds_mm(img)
    vmin, vmax = robust_range(np.asanyarray(img.dataobj))
    extent = bounds[1] - bounds[0]
    # ortho: three panels side by side whose widths are y, x, x extents; the height is the larger of z and y
    rel_width = extent[1] + 2 * extent[0]
    height = width * 0.9 * max(extent[2], extent[1]) / max(rel_width, 1e-6) + 0.4
    fig = _new_figure(width, max(2.0, height))
    display = plotting.plot_img(
        img, display_mode="ortho", cut_coords=tuple(cut_coords) if cut_coords else _centre(bounds), figure=fig,
        cmap=cmap, vmin=vmin, vmax=vmax, colorbar=True, cbar_tick_format="%.3g", annotate=False, black_bg=True,
        draw_cross=False, title=title,
    )
    display.annotate(left_right=False, positions=True, size=9, scalebar=True, scale_size=5.0, scale_units="cm")
    _label_axes(display)
    return _png(fig)


def colour_figure(
    mri: Any,
    pet_on_mri: Any,
    *,
    rgb: Any = None,
    colormap: str = "hot",
    colorbar_label: str = "PET",
    width: float = 10.0,
) -> bytes:
    """The colour image: the fused RGB volume when given, else the PET colour map over the MRI, with a colour bar.

    With ``rgb`` the three planes come from :func:`asfe3d.visualize.physical_slices` (true physical aspect) and
    the colour bar shows the PET colour map from the PET's low to high (normalised) values; without it, nilearn
    draws the PET as a thresholded overlay on the MRI.

    Args:
        mri: the MRI.
        pet_on_mri: the PET on the MRI grid.
        rgb: optional fused colour volume ``(X, Y, Z, 3)`` (uint8 0-255 or float 0-1), as a NIfTI or
            ``(array, affine)``.
        colormap: the PET colour map.
        colorbar_label: what the colour bar measures (the PET's units; in the title for the overlay view).
        width: figure width in inches.

    Returns:
        PNG bytes.
    """
    mri_img, pet_img = as_nifti(mri, "MRI"), as_nifti(pet_on_mri, "PET on MRI")
    if rgb is not None:
        return _rgb_figure(as_nifti(rgb, "colour image"), mri_img, colormap=colormap,
                           colorbar_label=colorbar_label, width=width)
    from nilearn import plotting

    bounds = head_bounds_mm(mri_img)
    extent = bounds[1] - bounds[0]
    rel_width = extent[1] + 2 * extent[0]
    height = width * 0.9 * max(extent[2], extent[1]) / max(rel_width, 1e-6) + 0.4
    fig = _new_figure(width, max(2.0, height))
    mvmin, mvmax = robust_range(np.asanyarray(mri_img.dataobj))
    pvmin, pvmax = robust_range(np.asanyarray(pet_img.dataobj))
    display = plotting.plot_img(
        mri_img, display_mode="ortho", cut_coords=_centre(bounds), figure=fig, cmap="gray", vmin=mvmin,
        vmax=mvmax, colorbar=False, annotate=False, black_bg=True, draw_cross=False,
        title=f"PET colour over MRI ({colorbar_label})" if colorbar_label else "PET colour over MRI",
    )
    threshold = pvmin + 0.2 * (pvmax - pvmin)
    display.add_overlay(pet_img, cmap=colormap, vmin=pvmin, vmax=pvmax, threshold=threshold, transparency=0.6,
                        colorbar=True, cbar_tick_format="%.3g")
    display.annotate(left_right=False, positions=True, size=9)
    _label_axes(display)
    return _png(fig)


def _rgb_figure(rgb_img: Any, mri_img: Any, *, colormap: str, colorbar_label: str, width: float) -> bytes:
    from matplotlib import colormaps
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import Normalize

    from asfe3d.visualize import draw_orientation_letters, physical_slices

    data = np.asanyarray(rgb_img.dataobj)
    data = data.astype(np.float32) / 255.0 if data.dtype.kind in "ui" else np.clip(data.astype(np.float32), 0, 1)
    bounds = head_bounds_mm(mri_img)
    centre = np.array(_centre(bounds))
    views = physical_slices(data, rgb_img.affine, centre_mm=centre)
    widths = [v.extent[1] - v.extent[0] for v in views]
    heights = [v.extent[3] - v.extent[2] for v in views]
    fig = _new_figure(width, max(2.0, width * 0.92 * max(heights) / sum(widths) + 0.5))
    grid = fig.add_gridspec(1, 4, width_ratios=[*widths, 0.04 * sum(widths)], left=0.01, right=0.93,
                            top=0.9, bottom=0.04, wspace=0.04)
    for i, view in enumerate(views):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(view.image, extent=view.extent, origin="lower", interpolation="nearest", aspect="equal")
        ax.set_facecolor("black")
        ax.set_axis_off()
        draw_orientation_letters(ax, view.letters)
        ax.set_title(view.name, color="white", fontsize=9)
    cax = fig.add_subplot(grid[0, 3])
    ColorbarBase(cax, cmap=colormaps[colormap], norm=Normalize(0, 1), orientation="vertical")
    cax.tick_params(colors="white", labelsize=8)
    cax.set_ylabel(colorbar_label, color="white", fontsize=9)
    fig.suptitle("fused colour image (PET colour map fused over the MRI)", color="white", fontsize=11, x=0.01,
                 ha="left")
    return _png(fig)


def thumbnail(mri: Any, pet_on_mri: Any, *, size_inches: float = 2.2, mri_smoothed: Any = None) -> bytes:
    """A small axial view of the MRI contours over the registered PET (as in :func:`registration_figure`).

    Args:
        mri: the MRI.
        pet_on_mri: the PET on the MRI grid.
        size_inches: the thumbnail's width.
        mri_smoothed: the MRI smoothed by :func:`smoothed` when the caller has it (else computed here).

    Returns:
        PNG bytes (about 180 pixels wide).
    """
    from nilearn import plotting

    mri_img, pet_img = as_nifti(mri, "MRI"), as_nifti(pet_on_mri, "PET on MRI")
    bounds = head_bounds_mm(mri_img)
    extent = bounds[1] - bounds[0]
    fig = _new_figure(size_inches, size_inches * max(0.5, min(2.0, extent[1] / max(extent[0], 1e-6))))
    vmin, vmax = robust_range(np.asanyarray(pet_img.dataobj))
    smooth = mri_smoothed if mri_smoothed is not None else smoothed(mri_img)
    levels = contour_levels(np.asanyarray(smooth.dataobj))
    display = plotting.plot_img(
        pet_img, display_mode="z", cut_coords=[_centre(bounds)[2]], figure=fig, axes=(0, 0, 1, 1), cmap="gray",
        vmin=vmin, vmax=vmax, colorbar=False, annotate=False, black_bg=True, draw_cross=False,
    )
    display.add_contours(smooth, levels=levels, colors=["c", "r"][: len(levels)], linewidths=0.6)
    return _png(fig, dpi=80)
