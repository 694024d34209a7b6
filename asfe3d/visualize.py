"""Preview figures: tri-planar views of the MRI, the registered PET and the fused volume.

Views are drawn at their true physical aspect: each slice is drawn over its extent in millimetres, so a
0.98 x 0.98 x 3.27 mm volume is not squashed in its coronal and sagittal views. The volume is reoriented to the
closest canonical RAS orientation for display only (nothing written to NIfTI is reoriented; an oblique grid is
shown along its closest axes). Views are neurological (the subject's left on the viewer's left)
and carry orientation letters (L/R, A/P, S/I); every row has a colour bar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["canonical_view", "triplanar", "PlaneView", "physical_slices", "draw_orientation_letters",
           "save_preview", "VIEW_LETTERS"]

#: orientation letters at the (left, right, bottom, top) edges of each view (neurological, RAS display)
VIEW_LETTERS = {
    "sagittal": ("P", "A", "I", "S"),
    "coronal": ("L", "R", "I", "S"),
    "axial": ("L", "R", "P", "A"),
}


def canonical_view(volume: np.ndarray, affine_ras: np.ndarray) -> np.ndarray:
    """Reorient a volume (``(X, Y, Z[, C])``) to the closest RAS axis order, for display only."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine_ras)
    if volume.ndim == 4:
        return np.stack([nib.orientations.apply_orientation(volume[..., c], ornt) for c in range(volume.shape[-1])],
                        axis=-1)
    return nib.orientations.apply_orientation(volume, ornt)


def triplanar(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices through ``centre`` of a RAS-ordered volume, oriented for ``imshow``.

    The slices are in voxels (no physical aspect); see :func:`physical_slices` for views in millimetres.
    """
    x, y, z = centre
    axial = np.rot90(volume[:, :, z])
    coronal = np.rot90(volume[:, y, :])
    sagittal = np.rot90(volume[x, :, :])
    return [axial, coronal, sagittal]


@dataclass
class PlaneView:
    """One slice ready for ``imshow(image, extent=extent, origin="lower")``.

    Attributes:
        name: ``sagittal``, ``coronal`` or ``axial``.
        image: ``(rows, cols[, 3])``: rows run up the view (S or A), columns to the right (A or R).
        extent: ``(left, right, bottom, top)`` in millimetres (world RAS coordinates of the closest axes).
        letters: orientation letters at the (left, right, bottom, top) edges.
        position_mm: the slice's world coordinate along its normal.
    """

    name: str
    image: np.ndarray
    extent: tuple[float, float, float, float]
    letters: tuple[str, str, str, str]
    position_mm: float


def _canonical_affine(affine_ras: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine_ras)
    return np.asarray(affine_ras, dtype=float) @ nib.orientations.inv_ornt_aff(ornt, tuple(shape[:3]))


def physical_slices(
    volume: np.ndarray,
    affine_ras: np.ndarray,
    *,
    centre_mm: Sequence[float] | None = None,
) -> list[PlaneView]:
    """Sagittal, coronal and axial slices of a volume with their extents in millimetres.

    Args:
        volume: ``(X, Y, Z)`` or ``(X, Y, Z, C)`` array on the grid of ``affine_ras``.
        affine_ras: the volume's 4x4 voxel-to-RAS affine.
        centre_mm: the world (RAS, mm) point the three slices go through; default: the centre of the bounding
            box of the voxels above 10 % of the volume's maximum.

    Returns:
        Three :class:`PlaneView` (sagittal, coronal, axial).

    Raises:
        ValueError: a volume that is not 3D/4D, or an affine that is not 4x4.
    """
    volume = np.asarray(volume)
    affine_ras = np.asarray(affine_ras, dtype=float)
    if volume.ndim not in (3, 4):
        raise ValueError(f"volume must be (X, Y, Z) or (X, Y, Z, C), got shape {volume.shape}")
    if affine_ras.shape != (4, 4):
        raise ValueError(f"affine_ras must be 4x4, got shape {affine_ras.shape}")
    view = canonical_view(volume, affine_ras)
    canon = _canonical_affine(affine_ras, volume.shape)
    shape = np.array(view.shape[:3])
    zooms = np.linalg.norm(canon[:3, :3], axis=0)
    origin = canon[:3, 3]  # world position of voxel (0, 0, 0); axes of the closest canonical orientation
    if centre_mm is None:
        scalar = view if view.ndim == 3 else view.mean(axis=-1)
        finite = np.where(np.isfinite(scalar), scalar, 0)
        peak = float(finite.max()) if finite.size else 0.0
        centre_idx = (shape - 1) / 2.0
        if peak > 0:  # the bounding box from the three projections (no list of every voxel)
            above = finite > 0.1 * peak
            spans = [np.flatnonzero(above.any(axis=tuple(a for a in range(3) if a != k))) for k in range(3)]
            centre_idx = np.array([(s[0] + s[-1]) / 2.0 for s in spans], dtype=float)
    else:
        centre = np.asarray(centre_mm, dtype=float)
        centre_idx = (np.linalg.inv(canon) @ np.append(centre, 1.0))[:3]
    centre_idx = np.clip(np.round(centre_idx), 0, shape - 1).astype(int)

    def extent(axis_h: int, axis_v: int) -> tuple[float, float, float, float]:
        lo = origin - zooms / 2.0
        hi = origin + (shape - 0.5) * zooms
        return float(lo[axis_h]), float(hi[axis_h]), float(lo[axis_v]), float(hi[axis_v])

    def position(axis: int) -> float:
        return float(origin[axis] + centre_idx[axis] * zooms[axis])

    x, y, z = centre_idx
    # np.swapaxes puts the vertical axis first (rows) so origin="lower" draws S / A at the top
    sagittal = np.swapaxes(view[x, :, :], 0, 1)
    coronal = np.swapaxes(view[:, y, :], 0, 1)
    axial = np.swapaxes(view[:, :, z], 0, 1)
    return [
        PlaneView("sagittal", sagittal, extent(1, 2), VIEW_LETTERS["sagittal"], position(0)),
        PlaneView("coronal", coronal, extent(0, 2), VIEW_LETTERS["coronal"], position(1)),
        PlaneView("axial", axial, extent(0, 1), VIEW_LETTERS["axial"], position(2)),
    ]


def draw_orientation_letters(ax: Any, letters: Sequence[str], *, size: int = 9, color: str = "white") -> None:
    """Write orientation letters at the (left, right, bottom, top) edges of a matplotlib axes.

    Args:
        ax: the axes.
        letters: four letters, e.g. ``("L", "R", "P", "A")`` for an axial view.
        size: font size.
        color: text colour.
    """
    if len(letters) != 4:
        raise ValueError(f"letters must hold 4 letters (left, right, bottom, top), got {letters!r}")
    left, right, bottom, top = letters
    style = dict(transform=ax.transAxes, color=color, fontsize=size, fontweight="bold")
    ax.text(0.01, 0.5, left, ha="left", va="center", **style)
    ax.text(0.99, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **style)
    ax.text(0.5, 0.99, top, ha="center", va="top", **style)


def _font(size: int, bold: bool = False) -> Any:
    """DejaVu Sans (shipped with matplotlib) at ``size`` pixels, or Pillow's own font where it is missing."""
    import os

    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return ImageFont.load_default()


def _to_rgb8(image: np.ndarray, cmap: str | None, top: float) -> np.ndarray:
    """A slice as 8-bit RGB: through ``cmap`` over ``[0, top]``, or an ``(..., 3)`` colour slice as it is."""
    from asfe3d.fusion.colour import apply_colormap

    image = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=top, neginf=0.0)  # NaN: black
    rgb = image if cmap is None else apply_colormap(image, cmap, window=(0.0, top))
    return np.round(np.clip(np.nan_to_num(rgb), 0.0, 1.0) * 255.0).astype(np.uint8)


def _tick(value: float, span: float = 0.0) -> str:
    """A colour-bar tick in the image's units: whole numbers from 100 on (HU, Bq/mL), 3 significant digits below; a
    value within a thousandth of the bar's ``span`` of zero is 0 (a resampled MRI's window starting at -1.28e-05 was
    printed as such, wider than the bar)."""
    if abs(value) < 1e-3 * abs(span):
        value = 0.0
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _colour_bar(cmap: str, top: float, height: int, font: Any, label: str, label_font: Any,
                window: tuple[float, float] | None = None) -> Any:
    """A vertical colour bar image (bar, ticks with values, rotated label) of ``height`` pixels; with ``window``
    ``(lo, hi)`` the ticks give the values in the image's units (``[0, 1]`` maps to ``[lo, hi]``)."""
    from PIL import Image, ImageDraw

    bar_w, width = 16, 74
    ramp = np.linspace(top, 0.0, height, dtype=np.float32)[:, None].repeat(bar_w, axis=1)
    canvas = Image.new("RGB", (width, height), "black")
    canvas.paste(Image.fromarray(_to_rgb8(ramp, cmap, top)), (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, bar_w - 1, height - 1], outline="white")
    step = float(np.round(top / 5.0, 1)) or top / 5.0
    for value in np.arange(0.0, top + 1e-6, step):
        y = int(round((1.0 - value / top) * (height - 1)))
        draw.line([bar_w, y, bar_w + 3, y], fill="white")
        shown = f"{value:.1f}" if window is None else _tick(window[0] + value * (window[1] - window[0]),
                                                                  window[1] - window[0])
        draw.text((bar_w + 5, min(max(y, 5), height - 5)), shown, fill="white", font=font, anchor="lm")
    text = Image.new("RGB", (height, 14), "black")
    ImageDraw.Draw(text).text((height // 2, 7), label, fill="white", font=label_font, anchor="mm")
    canvas.paste(text.rotate(90, expand=True), (width - 14, 0))
    return canvas


def save_preview(
    path: str | Path,
    mri: np.ndarray,
    pet: np.ndarray,
    fused: np.ndarray,
    affine_ras: np.ndarray,
    *,
    rgb: np.ndarray | None = None,
    colormap: str = "hot",
    overwrite: bool = False,
    labels: Mapping[str, str] | None = None,
    windows: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """Write a PNG grid: rows MRI / registered PET / fused (/ colour fused), columns sagittal / coronal / axial.

    Each view is drawn at its true physical aspect (one pixel scale in millimetres for the whole figure, nearest
    neighbour), neurological (the subject's left on the left), with orientation letters; each row ends with its
    colour bar (grey for the MRI and the fused volume, the PET colour map over the colour volume's window for the
    PET, the colour map for the colour row). Drawn with Pillow: 1000 pixels wide.

    Args:
        path: the PNG to write (atomically).
        mri: MRI in ``[0, 1]``, ``(X, Y, Z)``.
        pet: PET on the MRI grid in ``[0, 1]``.
        fused: fused volume in ``[0, 1]``.
        affine_ras: the MRI's RAS affine (for display orientation and voxel sizes).
        rgb: optional colour fused volume ``(X, Y, Z, 3)``: floats in ``[0, 1]`` or integers in ``[0, 255]``.
        colormap: colour map for the PET row.
        overwrite: replace an existing file.
        labels: names and units: ``anatomical`` (``"MRI"`` or ``"CT"``), ``anatomical_units`` (``"MRI units"``,
            ``"HU"``), ``pet_units`` (``"SUV"``, ``"Bq/mL"``...), ``fused_units``; missing ones read "normalised".
        windows: ``name -> (lo, hi)`` for ``mri``, ``pet``, ``fused``: the values in their units that ``0`` and
            ``1`` stand for; the colour bars then show those units.

    Returns:
        The written path.

    Raises:
        ValueError: volumes whose shapes differ, or an unknown colour map.
    """
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    from asfe3d.fusion.colour import colour_window
    from asfe3d.io import atomic_output

    shapes = {"mri": np.shape(mri), "pet": np.shape(pet), "fused": np.shape(fused)}
    if len(set(shapes.values())) != 1 or len(shapes["mri"]) != 3:
        raise ValueError(f"mri, pet and fused must be 3D arrays of one shape, got {shapes}")
    if rgb is not None and np.shape(rgb) != (*shapes["mri"], 3):
        raise ValueError(f"rgb must have shape {(*shapes['mri'], 3)}, got {np.shape(rgb)}")
    if colormap not in colormaps:
        raise ValueError(f"unknown colormap {colormap!r}")

    pet_top = float(colour_window(np.asarray(pet))[1])  # the colour volume's window: uptake differences visible
    labels, windows = dict(labels or {}), dict(windows or {})
    anat = labels.get("anatomical", "MRI")
    pet_label = f"PET ({labels['pet_units']})" if "pet" in windows and "pet_units" in labels else "PET (normalised)"
    rows: list[tuple[str, np.ndarray, str | None, float, str, tuple[float, float] | None]] = [
        (anat, np.asarray(mri), "gray", 1.0, labels.get("anatomical_units", "normalised") if "mri" in windows
         else "normalised", windows.get("mri")),
        (f"PET on {anat} grid", np.asarray(pet), colormap, pet_top, pet_label, windows.get("pet")),
        ("fused", np.asarray(fused), "gray", 1.0, labels.get("fused_units", "normalised") if "fused" in windows
         else "normalised", windows.get("fused")),
    ]
    if rgb is not None:
        colour = np.asarray(rgb)
        colour = colour.astype(np.float32) / 255.0 if colour.dtype.kind in "ui" else colour.astype(np.float32)
        # its hue runs over the PET row's window (the colour volume's own): the bar over [0, 1] put 1.4 times the
        # value on a colour
        rows.append(("fused (colour)", np.clip(colour, 0, 1), None, pet_top, pet_label, windows.get("pet")))
    mri_views = physical_slices(np.asarray(mri), affine_ras)
    centre_mm = tuple(v.position_mm for v in mri_views)  # the MRI's head centre for every row
    widths = [v.extent[1] - v.extent[0] for v in mri_views]
    heights = [v.extent[3] - v.extent[2] for v in mri_views]

    width, margin, gap, bar_w, title_h = 1000, 10, 6, 74, 22
    scale = (width - 2 * margin - 2 * gap - bar_w - gap) / sum(widths)  # pixels per millimetre
    panel_h = int(round(max(heights) * scale))
    row_h = title_h + panel_h + 8
    canvas = Image.new("RGB", (width, margin + row_h * len(rows)), "black")
    draw = ImageDraw.Draw(canvas)
    title_font, letter_font, tick_font = _font(15), _font(13, bold=True), _font(10)
    for r, (title, vol, cmap, top, bar_label, window) in enumerate(rows):
        y0 = margin + r * row_h
        draw.text((margin, y0 + 2), title, fill="white", font=title_font)
        x = margin
        for view, w_mm, h_mm in zip(physical_slices(vol, affine_ras, centre_mm=centre_mm), widths, heights):
            w_px, h_px = max(1, int(round(w_mm * scale))), max(1, int(round(h_mm * scale)))
            pixels = _to_rgb8(view.image, cmap, top)[::-1]  # rows bottom-up (origin "lower") -> image top-down
            panel = Image.fromarray(np.ascontiguousarray(pixels)).resize((w_px, h_px), Image.NEAREST)
            top_y = y0 + title_h + (panel_h - h_px) // 2
            canvas.paste(panel, (x, top_y))
            left, right, bottom, upper = view.letters
            mid_y = top_y + h_px // 2
            draw.text((x + 3, mid_y), left, fill="white", font=letter_font, anchor="lm")
            draw.text((x + w_px - 3, mid_y), right, fill="white", font=letter_font, anchor="rm")
            draw.text((x + w_px // 2, top_y + h_px - 2), bottom, fill="white", font=letter_font, anchor="mb")
            draw.text((x + w_px // 2, top_y + 2), upper, fill="white", font=letter_font, anchor="mt")
            x += w_px + gap
        bar = _colour_bar(cmap or colormap, top, panel_h, tick_font, bar_label, tick_font, window)
        canvas.paste(bar, (width - margin - bar_w, y0 + title_h))
    with atomic_output(path, overwrite=overwrite) as tmp:
        canvas.save(tmp, format="png", compress_level=3)
    return Path(path)
