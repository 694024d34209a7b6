"""What every simulated anatomy shares: the reference grid, the :class:`Anatomy` record, the Neuromorphometrics label
groups and their PET uptake patterns, the synthetic head layers and smooth random fields.

:mod:`asfe3d.data.wholehead` (SPM's averages and the simulator) and :mod:`asfe3d.data.individual` (real people's
1 mm anatomies) both build on this module, so neither imports the other's module at its top.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

__all__ = ["AD_LABELS", "PATTERNS", "Anatomy", "pet_uptake", "reference_grid", "resample_to_grid", "synthetic_head"]

PATTERNS = ("fdg", "fdg_ad", "amyloid_neg", "amyloid_pos")

# Neuromorphometrics label groups (index -> structure names in labels_Neuromorphometrics.xml)
_CSF_LABELS = (4, 11, 46, 49, 50, 51, 52, 63, 64)
_WM_LABELS = (40, 41, 44, 45, 61, 62, 69)
_STEM_LABELS = (35,)
_DEEP_LABELS = (23, 30, 36, 37, 55, 56, 57, 58, 59, 60, 75, 76)
_STRIATUM_LABELS = (36, 37, 57, 58)
_MTL_LABELS = (31, 32, 47, 48)
_CEREBELLUM_GM_LABELS = (38, 39, 71, 72, 73)
#: AD-like hypometabolism: parietal (angular, supramarginal, superior parietal, precuneus), temporal (inferior,
#: middle, superior temporal, temporal pole, entorhinal, parahippocampal) and posterior cingulate cortex
AD_LABELS = (106, 107, 194, 195, 198, 199, 168, 169, 132, 133, 154, 155, 200, 201, 202, 203, 116, 117, 170, 171,
             166, 167)
#: amyloid-prone cortex: frontal, cingulate, precuneus, lateral parietal and temporal
_AMYLOID_LABELS = (100, 101, 104, 105, 120, 121, 136, 137, 140, 141, 142, 143, 146, 147, 152, 153, 164, 165, 190,
                   191, 204, 205, 138, 139, 166, 167, 168, 169, 106, 107, 194, 195, 198, 199, 132, 133, 154, 155,
                   200, 201)

#: reference grid: 1.5 mm RAS, the extent of SPM's templates (x -90..90, y -126..90, z -72..108 mm)
_REF_SPACING = 1.5
_REF_SHAPE = (121, 145, 121)
_REF_ORIGIN = (-90.0, -126.0, -72.0)


def reference_grid() -> tuple[tuple[int, int, int], np.ndarray]:
    """The 1.5 mm RAS grid every anatomy lives on.

    Returns:
        ``(shape, affine)``: ``(121, 145, 121)`` and the 4x4 voxel-to-RAS-mm affine.
    """
    aff = np.diag([_REF_SPACING] * 3 + [1.0])
    aff[:3, 3] = _REF_ORIGIN
    return _REF_SHAPE, aff


def resample_to_grid(
    array: np.ndarray, affine: np.ndarray, shape: Sequence[int], target_affine: np.ndarray, order: int = 1,
    smooth_mm: float = 0.0,
) -> np.ndarray:
    """Resample an ``(X, Y, Z)`` array given by its voxel-to-RAS affine onto another grid (no transform).

    Args:
        array: 3D array.
        affine: its 4x4 voxel-to-world affine.
        shape: target grid shape (3 ints).
        target_affine: target 4x4 affine.
        order: spline order (0 nearest, 1 linear).
        smooth_mm: Gaussian anti-aliasing sigma in mm applied on the source first (0 = none).

    Returns:
        float32 array of ``shape`` (0 outside the source).

    Raises:
        ValueError: a non-3D array, bad affines or a bad shape (quoted).
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"array must be 3D, got shape {array.shape}")
    affine, target_affine = np.asarray(affine, float), np.asarray(target_affine, float)
    if affine.shape != (4, 4) or target_affine.shape != (4, 4):
        raise ValueError(f"affines must be 4x4, got {affine.shape} and {target_affine.shape}")
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive ints, got {shape!r}")
    src = array.astype(np.float32)
    if smooth_mm > 0:
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        src = ndimage.gaussian_filter(src, smooth_mm / spacing)
    vox = np.linalg.inv(affine) @ target_affine
    out = ndimage.affine_transform(src, vox[:3, :3], offset=vox[:3, 3], output_shape=tuple(int(s) for s in shape),
                                   order=order, mode="constant", cval=0.0)
    return out.astype(np.float32)



@dataclass
class Anatomy:
    """One whole-head anatomy on the reference grid (:func:`reference_grid`).

    Attributes:
        name: one of :data:`ANATOMIES`.
        mri: float32 ``(X, Y, Z)`` MRI, white matter about 1.
        labels: int16 ``(X, Y, Z)`` Neuromorphometrics labels (0 outside the brain).
        head: bool ``(X, Y, Z)`` head (and neck) mask.
        affine: 4x4 voxel-to-RAS affine of the grid.
    """

    name: str
    mri: np.ndarray
    labels: np.ndarray
    head: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> float:
        """Voxel size of the grid (mm; isotropic)."""
        return float(np.mean(np.linalg.norm(np.asarray(self.affine, float)[:3, :3], axis=0)))

    def uptake(self, pattern: str, rng: np.random.Generator) -> np.ndarray:
        """Noise-free tracer uptake of this anatomy (:func:`pet_uptake` of its atlas labels)."""
        return pet_uptake(self.labels, self.head, pattern, rng)

    def draw_mri(self, rng: np.random.Generator) -> np.ndarray:
        """The MRI a subject starts from (this anatomy's own; synthetic anatomies draw a new contrast)."""
        return self.mri



def synthetic_head(
    brain: np.ndarray, spacing: float, rng: np.random.Generator, affine: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Wrap a skull-stripped T1 in scalp, skull, fat, muscle and a neck (T1-like intensities, white matter = 1).

    Layers outward from the brain (thickness in mm, each varied smoothly over the head): CSF 1-3 (0.1), skull
    4-8 (tables 0.05, diploe 0.25-0.45), fat 2-5 (0.8-0.95), muscle/skin 2-4 (0.4-0.5); below the brain a neck
    (muscle with fat, a vertebral column with marrow) where the grid reaches it.

    Args:
        brain: ``(X, Y, Z)`` T1 of the brain only, white matter about 1, 0 outside.
        spacing: isotropic voxel size in mm (> 0).
        rng: random generator (thicknesses, intensities, textures).
        affine: voxel-to-RAS affine (locates the neck; ``None`` = the reference grid's).

    Returns:
        ``(mri, head)``: float32 T1 with the head around the brain, bool head mask.

    Raises:
        ValueError: a non-3D or empty brain, or a bad spacing (quoted).
    """
    brain = np.asarray(brain, dtype=np.float32)
    if brain.ndim != 3 or not (brain > 0).any():
        raise ValueError(f"brain must be a non-empty 3D array, got shape {brain.shape}")
    if not (math.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be a positive number of mm, got {spacing!r}")
    affine = reference_grid()[1] if affine is None else np.asarray(affine, float)
    mask = ndimage.binary_closing(brain > 0.02, iterations=2)
    mask = ndimage.binary_fill_holes(mask)
    dist = ndimage.distance_transform_edt(~mask) * spacing  # mm from the brain
    wobble = 1.0 + 0.3 * _smooth_field(brain.shape, rng, cells=5)
    t_csf, t_skull = rng.uniform(1.0, 3.0), rng.uniform(4.0, 8.0)
    t_fat, t_skin = rng.uniform(2.0, 5.0), rng.uniform(2.0, 4.0)
    b1 = t_csf * wobble
    b2 = b1 + t_skull * wobble
    b3 = b2 + t_fat * wobble
    b4 = b3 + t_skin * wobble
    out = brain.copy()
    outside = ~mask
    diploe = rng.uniform(0.25, 0.45) * (1.0 + 0.2 * _smooth_field(brain.shape, rng, cells=8))
    in_skull = outside & (dist > b1) & (dist <= b2)
    mid = np.abs(dist - 0.5 * (b1 + b2)) < 0.25 * (b2 - b1)
    layers = [
        (outside & (dist <= b1), 0.1),
        (in_skull & ~mid, 0.05),
        (in_skull & mid, diploe),
        (outside & (dist > b2) & (dist <= b3), rng.uniform(0.8, 0.95)),
        (outside & (dist > b3) & (dist <= b4), rng.uniform(0.4, 0.5)),
    ]
    for region, value in layers:
        out[region] = (value[region] if isinstance(value, np.ndarray) else value)
    head = mask | (outside & (dist <= b4))
    # neck: an elliptic column below the brain, muscle with fat, a vertebral column
    ijk = np.indices(brain.shape, dtype=np.float32)
    world = np.tensordot(affine[:3, :3], ijk, axes=1) + affine[:3, 3][:, None, None, None]
    x, y, z = world
    z_top = rng.uniform(-45.0, -30.0)
    ry, rx = rng.uniform(45.0, 55.0), rng.uniform(50.0, 62.0)
    cy = rng.uniform(-25.0, -10.0)
    neck = (z < z_top) & ((x / rx) ** 2 + ((y - cy) / ry) ** 2 < 1.0) & ~mask
    fat = _smooth_field(brain.shape, rng, cells=10) > 0.4
    neck_val = np.where(fat, rng.uniform(0.8, 0.95), rng.uniform(0.4, 0.5)).astype(np.float32)
    spine_r = np.hypot(x, y - (cy - 0.45 * ry))
    neck_val = np.where(spine_r < 12.0, 0.3, neck_val)
    neck_val = np.where(spine_r < 5.0, 0.45, neck_val)
    new = neck & ~head
    out[new] = neck_val[new]
    head = head | neck
    out[~head] = 0.0
    return out.astype(np.float32), head



def _smooth_field(shape: Sequence[int], rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """Smooth random field in about [-1, 1]: a coarse random lattice, cubic-spline upsampled to about 1/6 of
    ``shape``, then trilinearly to ``shape`` (fast on large grids)."""
    coarse = rng.uniform(-1.0, 1.0, size=(cells, cells, cells))
    mid = [max(2 * cells, int(math.ceil(s / 6))) for s in shape]
    field = ndimage.zoom(coarse, [m / cells for m in mid], order=3, mode="nearest", grid_mode=True)
    t = torch.from_numpy(np.ascontiguousarray(field, dtype=np.float32))[None, None]
    full = torch.nn.functional.interpolate(t, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=False)
    return full[0, 0].numpy()



def pet_uptake(labels: np.ndarray, head: np.ndarray, pattern: str, rng: np.random.Generator) -> np.ndarray:
    """Noise-free, unblurred tracer uptake following the atlas structures (white matter about 1).

    - ``fdg``: cortex 2.6-3.8x white matter (each structure +-10 %), deep grey matter a little higher, medial
      temporal 0.65x and cerebellar cortex 0.75-0.9x the cortex, brain stem 1.3, CSF 0.15.
    - ``fdg_ad``: ``fdg`` with the :data:`AD_LABELS` structures (parietal, temporal, posterior cingulate) lowered
      to 0.6-0.85 of normal (each hemisphere drawn separately).
    - ``amyloid_neg``: white matter 1, cortex 0.45-0.65, striatum 0.7, cerebellar cortex 0.5.
    - ``amyloid_pos``: as negative, with the amyloid-prone cortex (frontal, cingulate, precuneus, lateral
      parietal/temporal) raised to 0.9-1.3 and the striatum to 0.9.

    Outside the brain, inside the head: a low, smoothly varying uptake (FDG 0.1-0.5, amyloid 0.05-0.3).

    Args:
        labels: ``(X, Y, Z)`` Neuromorphometrics labels.
        head: bool head mask, same shape.
        pattern: one of :data:`PATTERNS`.
        rng: random generator.

    Returns:
        float32 uptake of ``labels.shape``, 0 outside the head.

    Raises:
        ValueError: an unknown pattern or mismatched shapes (quoted).
    """
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
    labels = np.asarray(labels)
    head = np.asarray(head, bool)
    if labels.shape != head.shape or labels.ndim != 3:
        raise ValueError(f"labels and head must be 3D arrays of one shape, got {labels.shape} and {head.shape}")
    table = np.zeros(int(max(labels.max(), 255)) + 1, np.float32)
    cortex = np.arange(100, 208)
    right = lambda lab: lab % 2 == 0  # noqa: E731 (Neuromorphometrics: right structures have even indices)
    if pattern.startswith("fdg"):
        g = rng.uniform(2.6, 3.8)
        table[cortex] = g * rng.uniform(0.9, 1.1, cortex.size)
        table[list(_DEEP_LABELS)] = g * rng.uniform(0.95, 1.15, len(_DEEP_LABELS))
        table[list(_MTL_LABELS)] = 0.65 * g
        table[list(_CEREBELLUM_GM_LABELS)] = g * rng.uniform(0.75, 0.9)
        table[list(_WM_LABELS)] = 1.0
        table[list(_STEM_LABELS)] = 1.3
        table[list(_CSF_LABELS)] = 0.15
        if pattern == "fdg_ad":
            sev = {True: rng.uniform(0.6, 0.85), False: rng.uniform(0.6, 0.85)}
            for lab in AD_LABELS:
                table[lab] *= sev[bool(right(lab))]
        extra = rng.uniform(0.1, 0.5)
    else:
        table[cortex] = rng.uniform(0.45, 0.65) * rng.uniform(0.92, 1.08, cortex.size)
        table[list(_DEEP_LABELS)] = 0.6
        table[list(_STRIATUM_LABELS)] = 0.7
        table[list(_MTL_LABELS)] = 0.5
        table[list(_CEREBELLUM_GM_LABELS)] = 0.5
        table[list(_WM_LABELS)] = 1.0
        table[list(_STEM_LABELS)] = 1.0
        table[list(_CSF_LABELS)] = 0.1
        if pattern == "amyloid_pos":
            level = rng.uniform(0.9, 1.3)
            table[list(_AMYLOID_LABELS)] = level * rng.uniform(0.85, 1.15, len(_AMYLOID_LABELS))
            table[list(_STRIATUM_LABELS)] = 0.9
        extra = rng.uniform(0.05, 0.3)
    uptake = table[np.clip(labels, 0, table.size - 1)]
    soft = head & (labels == 0)
    uptake = np.where(soft, extra * (1.0 + 0.4 * _smooth_field(labels.shape, rng, cells=6)), uptake)
    return np.where(head, uptake, 0.0).astype(np.float32)

