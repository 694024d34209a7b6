"""Preview figures: tri-planar views of the MRI, the registered PET and the fused volume.

Views are shown in radiological-neutral RAS display order (the volume is reoriented to the closest canonical RAS
orientation for display only; nothing written to NIfTI is reoriented).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["canonical_view", "triplanar", "save_preview"]


def canonical_view(volume: np.ndarray, affine_ras: np.ndarray) -> np.ndarray:
    """Reorient a volume (``(X, Y, Z[, C])``) to the closest RAS axis order, for display only."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine_ras)
    if volume.ndim == 4:
        return np.stack([nib.orientations.apply_orientation(volume[..., c], ornt) for c in range(volume.shape[-1])],
                        axis=-1)
    return nib.orientations.apply_orientation(volume, ornt)


def triplanar(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices through ``centre`` of a RAS-ordered volume, oriented for ``imshow``."""
    x, y, z = centre
    axial = np.rot90(volume[:, :, z])
    coronal = np.rot90(volume[:, y, :])
    sagittal = np.rot90(volume[x, :, :])
    return [axial, coronal, sagittal]


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
) -> Path:
    """Write a PNG grid: rows MRI / registered PET / fused (/ colour fused), columns axial / coronal / sagittal.

    Args:
        path: the PNG to write (atomically).
        mri: MRI in ``[0, 1]``, ``(X, Y, Z)``.
        pet: PET on the MRI grid in ``[0, 1]``.
        fused: fused volume in ``[0, 1]``.
        affine_ras: the MRI's RAS affine (for display orientation).
        rgb: optional colour fused volume ``(X, Y, Z, 3)`` in ``[0, 1]``.
        colormap: colour map for the PET row.
        overwrite: replace an existing file.

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asfe3d.io import atomic_output

    views = [canonical_view(v, affine_ras) for v in (mri, pet, fused)]
    rows = [("MRI", views[0], "gray"), ("PET on MRI grid", views[1], colormap), ("fused", views[2], "gray")]
    if rgb is not None:
        rows.append(("fused (colour)", canonical_view(rgb, affine_ras), None))
    mask = views[0] > 0.1
    centre = tuple(int(round(c)) for c in np.argwhere(mask).mean(axis=0)) if mask.any() else tuple(
        s // 2 for s in views[0].shape[:3])
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), facecolor="black")
    for r, (title, vol, cmap) in enumerate(rows):
        for c, img in enumerate(triplanar(vol, centre)):
            ax = axes[r, c]
            ax.imshow(np.clip(img, 0, 1), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
            if c == 0:
                ax.set_title(title, color="white", fontsize=10, loc="left")
    fig.tight_layout()
    with atomic_output(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=100, facecolor="black")
    plt.close(fig)
    return Path(path)
