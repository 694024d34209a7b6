"""A PET whose field of view is much larger than the MRI's head (a whole-body or head-and-torso PET under a head
MRI): where the head lies in it, and the box of the PET around it.

The registration starts from the images' centres of mass. In a whole-body PET that centre lies in the trunk, some
40 cm from the head, far outside any optimiser's reach, and the QC fails the result. :func:`locate_head` slides the
MRI's head along each axis of the PET that is much larger than the head (10 mm steps; across that axis the slab's
centre of PET signal), scores each
place by mutual information on a coarse grid, and returns the best place's box when it scores above the
centres-of-mass start; the registration then runs on that box (:func:`asfe3d.registration.register_pet_to_mri`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from asfe3d.io.convert import sitk_to_numpy_xyz

__all__ = ["HeadRegion", "field_of_view", "head_extent", "large_fov", "locate_head"]

#: a PET axis is "large" when its field of view exceeds both this many head sizes ...
LARGE_FOV_FACTOR = 1.6
#: ... and the head size plus this many mm (a brain PET's 250-350 mm around a 200-250 mm head is not)
LARGE_FOV_MARGIN_MM = 150.0
#: the box around the located head: the head's largest size plus this margin on each side
BOX_MARGIN_MM = 40.0
#: step of the search along the PET's longest axis
STEP_MM = 10.0


@dataclass(frozen=True)
class HeadRegion:
    """Where the head was found in a large PET.

    Attributes:
        index: first PET voxel of the box (x, y, z index).
        size: the box's size in voxels (x, y, z).
        centre: the physical point (mm) that the MRI head's centre was placed on.
        axis: the PET axis searched along (0, 1, 2: x, y, z index axes).
        position_mm: the place along that axis, mm from the PET's first voxel.
        mi: the coarse mutual information there; ``mi_start``: at the centres-of-mass start.
    """

    index: tuple[int, int, int]
    size: tuple[int, int, int]
    centre: tuple[float, float, float]
    axis: int
    position_mm: float
    mi: float
    mi_start: float

    def crop(self, pet: sitk.Image) -> sitk.Image:
        """The PET's box (same physical positions as in ``pet``: a crop, nothing resampled)."""
        return sitk.RegionOfInterest(pet, list(self.size), list(self.index))

    def describe(self, pet: sitk.Image) -> str:
        """One sentence for the QC's notes."""
        fov = " x ".join(f"{s * n:.0f}" for s, n in zip(pet.GetSpacing(), pet.GetSize()))
        box = " x ".join(f"{s * n:.0f}" for s, n in zip(pet.GetSpacing(), self.size))
        return (f"the PET's field of view ({fov} mm) is much larger than the MRI's head: the head was found "
                f"{self.position_mm:.0f} mm along the PET's {'xyz'[self.axis]} axis and registered on the PET's "
                f"{box} mm box around it")


def head_extent(head: sitk.Image) -> tuple[np.ndarray, float]:
    """The centre (physical, mm) and the largest size (mm, of the bounding box's world-axis extents) of a head
    mask's non-zero voxels.

    Args:
        head: a 3D mask (non-zero in the head).

    Returns:
        ``(centre, size)``.

    Raises:
        ValueError: when the mask is empty.
    """
    arr = sitk.GetArrayViewFromImage(head)
    idx = np.argwhere(arr)[:, ::-1].astype(float)  # (x, y, z) indices
    if not idx.size:
        raise ValueError(f"head mask is empty (size {head.GetSize()})")
    centre = np.asarray(head.TransformContinuousIndexToPhysicalPoint(idx.mean(axis=0).tolist()))
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    corners = np.array([head.TransformContinuousIndexToPhysicalPoint([(lo, hi)[b >> k & 1][k] for k in range(3)])
                        for b in range(8)])
    return centre, float((corners.max(axis=0) - corners.min(axis=0)).max())


def fov_mm(image: sitk.Image) -> float:
    """The largest extent (mm) of an image's field of view along its voxel axes."""
    return float(max(s * n for s, n in zip(image.GetSpacing(), image.GetSize())))


def much_larger(extent_mm: float, size_mm: float) -> bool:
    """Whether ``extent_mm`` is much larger than ``size_mm`` (:data:`LARGE_FOV_FACTOR` times it and
    :data:`LARGE_FOV_MARGIN_MM` more): a whole-body field of view beside a head."""
    return extent_mm > max(LARGE_FOV_FACTOR * size_mm, size_mm + LARGE_FOV_MARGIN_MM)


def large_fov(pet: sitk.Image, head_size_mm: float) -> bool:
    """Whether some axis of the PET's field of view is much larger than a head of ``head_size_mm``
    (:func:`much_larger`)."""
    if not head_size_mm > 0:
        raise ValueError(f"head_size_mm must be > 0, got {head_size_mm!r}")
    return much_larger(fov_mm(pet), head_size_mm)


def locate_head(pet: sitk.Image, head_centre: np.ndarray, head_size_mm: float, start_mi: float,
                mi: Callable[[sitk.Transform], float]) -> HeadRegion | None:
    """Find the MRI's head in a PET with a large field of view (see the module's description).

    Args:
        pet: the PET (3D).
        head_centre: the MRI head's centre (physical, mm).
        head_size_mm: the MRI head's largest size (mm), > 0.
        start_mi: ``mi`` of the centres-of-mass start (the place to beat).
        mi: mutual information of the PET through a transform (MRI points to PET points), on a coarse MRI grid.

    Returns:
        The best place's :class:`HeadRegion`, or ``None`` when no place scores above ``start_mi`` (or the PET has
        no positive voxel).
    """
    if not head_size_mm > 0:
        raise ValueError(f"head_size_mm must be > 0, got {head_size_mm!r}")
    spacing, size = np.asarray(pet.GetSpacing()), np.asarray(pet.GetSize())
    fov = spacing * size
    arr = np.clip(np.nan_to_num(sitk_to_numpy_xyz(pet), nan=0.0), 0.0, None)
    best: tuple[float, float, np.ndarray, int] | None = None
    half = head_size_mm / 2
    # every large axis (a head-to-chest PET is 600 mm across and 480 mm long: its longest axis is not the body's)
    axes = [k for k in range(3) if fov[k] > max(LARGE_FOV_FACTOR * head_size_mm, head_size_mm + LARGE_FOV_MARGIN_MM)]
    for axis in axes or [int(np.argmax(fov))]:
        found = _slide(pet, arr, axis, half, head_centre, mi)
        if found is not None and (best is None or found[0] > best[0]):
            best = (*found, axis)
    if best is None or not best[0] > start_mi:
        return None
    score, pos, point, axis = best
    centre_index = np.asarray(pet.TransformPhysicalPointToContinuousIndex(point.tolist()))
    half_box = (half + BOX_MARGIN_MM) / spacing
    first = np.clip(np.floor(centre_index - half_box), 0, size - 1).astype(int)
    last = np.clip(np.ceil(centre_index + half_box), 0, size - 1).astype(int)
    return HeadRegion(tuple(int(v) for v in first), tuple(int(v) for v in last - first + 1),
                      tuple(float(v) for v in point), axis, pos, float(score), float(start_mi))


def _slide(pet: sitk.Image, arr: np.ndarray, axis: int, half: float, head_centre: np.ndarray,
           mi: Callable[[sitk.Transform], float]) -> tuple[float, float, np.ndarray] | None:
    """The best place along one PET axis: ``(score, position mm from the first voxel's edge, physical point)``,
    or ``None`` when no slab holds signal."""
    spacing, size = np.asarray(pet.GetSpacing()), np.asarray(pet.GetSize())
    fov = spacing * size
    best: tuple[float, float, np.ndarray] | None = None
    for pos in np.arange(min(half, fov[axis] / 2), max(fov[axis] - half, fov[axis] / 2) + 1e-6, STEP_MM):
        lo = int(max(0, np.floor((pos - half) / spacing[axis])))
        hi = int(min(size[axis], np.ceil((pos + half) / spacing[axis])))
        slab = np.take(arr, np.arange(lo, hi), axis=axis)
        total = float(slab.sum(dtype=np.float64))
        if not total > 0:
            continue
        index = np.empty(3)
        for k in range(3):  # the slab's centre of signal across the axis; along it, the place itself
            if k == axis:
                index[k] = pos / spacing[axis] - 0.5
            else:
                profile = slab.sum(axis=tuple(j for j in range(3) if j != k), dtype=np.float64)
                index[k] = float(np.dot(profile, np.arange(profile.size)) / total)
        point = np.asarray(pet.TransformContinuousIndexToPhysicalPoint(index.tolist()))
        transform = sitk.Euler3DTransform()
        transform.SetCenter(np.asarray(head_centre, float).tolist())
        transform.SetTranslation((point - head_centre).tolist())
        score = mi(transform)
        if best is None or score > best[0]:
            best = (score, float(pos), point)
    return best


def field_of_view(reference: sitk.Image, moving: sitk.Image, transform: sitk.Transform) -> np.ndarray | None:
    """Where the PET's field of view lies on the MRI's grid: the voxels whose centre ``transform`` maps inside the
    PET's voxel box, i.e. exactly those that resampling the PET onto the MRI's grid takes from the PET (ITK's
    interpolators read a point as inside from half a voxel before the first voxel's centre to half a voxel before
    the end); the others hold the resampling's default value, which is not a measurement.

    A linear transform that maps all eight corners of the grid inside is answered from the corners (the box is
    convex: the whole grid is inside) without resampling; otherwise a grid of ones is resampled (nearest neighbour,
    the same inside test).

    Args:
        reference: the MRI (its grid is used).
        moving: the PET (its grid is used; not its values).
        transform: MRI points -> PET points (a registration's result).

    Returns:
        A bool array of shape ``(X, Y, Z)`` (nibabel order) on the reference grid, or ``None`` when the whole grid
        is inside the PET's field of view.
    """
    size = np.asarray(reference.GetSize(), dtype=np.float64)
    if transform.IsLinear():
        corners = [np.asarray(c, dtype=np.float64) * (size - 1) for c in np.ndindex(2, 2, 2)]
        inside = True
        for corner in corners:
            point = transform.TransformPoint(reference.TransformContinuousIndexToPhysicalPoint(corner.tolist()))
            index = np.asarray(moving.TransformPhysicalPointToContinuousIndex(point))
            # a margin of 1e-3 voxel keeps a grid whose edge lies on the PET's edge to the exact test below
            inside &= bool(np.all(index >= -0.5 + 1e-3) and np.all(index < np.asarray(moving.GetSize()) - 0.5 - 1e-3))
        if inside:
            return None
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    mask = sitk_to_numpy_xyz(sitk.Resample(ones, reference, transform, sitk.sitkNearestNeighbor, 0,
                                           sitk.sitkUInt8)) > 0
    return None if mask.all() else mask
