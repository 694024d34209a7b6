"""Two figures that show whether a method keeps both images: every method as a point on the two axes (MRI detail
retention, PET consistency), and one volume in three planes with every method's fused image beside the inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["save_front_figure", "save_planes_figure"]


def _label_side(points: Mapping[str, tuple[float, float]], name: str) -> str:
    """``"right"`` or ``"left"``: the side of point ``name`` away from its nearest other point (right when alone)."""
    x, y = points[name]
    others = [p for m, p in points.items() if m != name]
    if not others:
        return "right"
    nearest = min(others, key=lambda p: (p[0] - x) ** 2 + (p[1] - y) ** 2)
    return "right" if nearest[0] <= x else "left"


def save_front_figure(
    means: Mapping[str, Mapping[str, float]], path: str | Path, bars: tuple[float, float] = (0.85, 0.85),
    title: str | None = None, overwrite: bool = False,
) -> Path:
    """Every method as a point: x = MRI detail retention (``DETAIL``), y = PET consistency (``PETC``).

    Args:
        means: ``{method: {"DETAIL": ..., "PETC": ...}}`` (e.g. :func:`asfe3d.evaluation.evaluate.mean_table`).
        path: the PNG to write (atomically).
        bars: the two bars drawn as dashed lines (a method above both keeps both images).
        title: figure title.
        overwrite: replace an existing file.

    Returns:
        The written path.

    Raises:
        ValueError: no method has both columns.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asfe3d.io import atomic_output

    points = {m: (v["DETAIL"], v["PETC"]) for m, v in means.items()
              if np.isfinite(v.get("DETAIL", np.nan)) and np.isfinite(v.get("PETC", np.nan))}
    if not points:
        raise ValueError(f"no method has both DETAIL and PETC, got methods {sorted(means)}")
    fig, ax = plt.subplots(figsize=(5.5, 5.0))
    for name, (x, y) in sorted(points.items(), key=lambda kv: kv[1][1]):
        learned = name.startswith("asfe")
        dot = ax.scatter([x], [y], s=90 if learned else 45, marker="*" if learned else "o", zorder=3)
        # the label on the side away from the nearest other point, in the point's colour, so that two close points
        # never swap their names
        right = _label_side(points, name) == "right"
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(8, -3) if right else (-8, -3),
                    ha="left" if right else "right", fontsize=9, color=dot.get_facecolor()[0])
    ax.axvline(bars[0], ls="--", c="grey", lw=0.8)
    ax.axhline(bars[1], ls="--", c="grey", lw=0.8)
    lo = max(-1.0, min(min(p) for p in points.values()) - 0.08)
    ax.set_xlim(lo, 1.01)
    ax.set_ylim(lo, 1.01)
    ax.set_xlabel("MRI detail retention (anatomy kept)")
    ax.set_ylabel("PET consistency (uptake kept)")
    ax.set_title(title or "Both images at once: top right keeps both")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_output(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def _planes(vol: np.ndarray, centre: Sequence[int]) -> list[np.ndarray]:
    i, j, k = (int(c) for c in centre)
    # radiological display is not wanted here: RAS arrays shown with superior / anterior up
    return [np.rot90(vol[:, :, k]), np.rot90(vol[:, j, :]), np.rot90(vol[i, :, :])]


def _plane_aspects(spacing: Sequence[float]) -> list[float]:
    """``imshow`` aspects (a row's height over a column's width, in mm) of :func:`_planes`' axial, coronal and
    sagittal images: each shown at its true physical shape."""
    sx, sy, sz = (float(v) for v in spacing)
    return [sy / sx, sz / sx, sz / sy]


def save_planes_figure(
    mri: np.ndarray, pet: np.ndarray, fused: Mapping[str, np.ndarray], path: str | Path,
    centre: Sequence[int] | None = None, title: str | None = None, overwrite: bool = False,
    spacing: Sequence[float] | None = None,
) -> Path:
    """One volume in three planes (axial, coronal, sagittal): the MRI, the PET and every method's fused image in
    rows, so that a person can see which method keeps both.

    Args:
        mri, pet: ``(X, Y, Z)`` in ``[0, 1]``, RAS voxel order (as the pipeline's arrays).
        fused: ``{method: (X, Y, Z) fused image}``.
        path: the PNG to write (atomically).
        centre: the voxel the three planes cross at (default: the PET's centre of mass).
        title: figure title.
        overwrite: replace an existing file.
        spacing: the voxel size ``(X, Y, Z)`` in mm, so that every plane is shown at its true shape (a 3 mm slice
            three times as tall as a 1 mm one); ``None``: square voxels.

    Returns:
        The written path.

    Raises:
        ValueError: arrays that are not 3D or of different shapes, or a bad ``spacing`` (quoted).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    from asfe3d.io import atomic_output

    mri, pet = np.asarray(mri), np.asarray(pet)
    if mri.ndim != 3 or pet.shape != mri.shape or any(np.shape(f) != mri.shape for f in fused.values()):
        raise ValueError(f"three-plane figure needs 3D arrays of one shape, got MRI {mri.shape}, PET {pet.shape}")
    if spacing is not None and (len(spacing) != 3 or not all(np.isfinite(v) and v > 0 for v in spacing)):
        raise ValueError(f"spacing must be three voxel sizes > 0 (mm), got {spacing!r}")
    aspects = _plane_aspects(spacing if spacing is not None else (1.0, 1.0, 1.0))
    if centre is None:
        centre = [int(round(c)) for c in ndimage.center_of_mass(np.clip(pet, 0, None))] if pet.any() else \
            [s // 2 for s in mri.shape]
    rows = [("MRI", mri, "gray"), ("PET", pet, "hot")] + [(m, f, "gray") for m, f in fused.items()]
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)))
    for r, (name, vol, cmap) in enumerate(rows):
        for c, img in enumerate(_planes(vol, centre)):
            ax = axes[r, c]
            ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest", aspect=aspects[c])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=10)
            if r == 0:
                ax.set_title(("axial", "coronal", "sagittal")[c], fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.3 / len(rows) if title else 1.0))
    with atomic_output(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
