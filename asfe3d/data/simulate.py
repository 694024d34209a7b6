"""Simulated brain PET from the MNI152 template: the demo MRI/PET pair and the 3D training data source.

Everything here works offline from the MNI152 2009a files that nilearn ships inside its package.

Geometry: images are SimpleITK images in LPS physical space. The "true transform" of a simulated pair follows
SimpleITK's registration convention: it maps *MRI (fixed) physical points to PET (moving) physical points*, so
``resample_to_reference(pet, mri, true_transform)`` puts the PET back onto the MRI.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from asfe3d.utils import FWHM_TO_SIGMA

__all__ = [
    "DemoPair",
    "apply_rigid_motion",
    "brain_mask",
    "load_mni",
    "make_demo_pair",
    "random_rigid",
    "simulate_pet",
    "simulate_pet_array",
    "simulate_uptake",
]

_TRACERS = ("fdg", "amyloid")


def _mni_file(kind: str) -> Path:
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz"
    if not path.is_file():
        raise FileNotFoundError(f"nilearn does not ship the MNI152 {kind!r} map at {str(path)!r}")
    return path


def load_mni(resolution: float = 1) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    """Load the MNI152 2009a T1 template and its grey/white matter probability maps (offline).

    The packaged NIfTI files are read with SimpleITK, which gives the LPS geometry directly (nibabel's RAS affine
    with its first two rows negated). The template T1 is skull-stripped.

    Args:
        resolution: voxel size in mm. ``1`` returns the packaged 1 mm grid (197x233x189); a coarser value
            Gaussian-smooths and resamples the three images onto an isotropic grid over the same extent.

    Returns:
        ``(t1, gm, wm)``: float32 images on one grid; T1 scaled to [0, 1], GM/WM probabilities in [0, 1].

    Raises:
        ValueError: when ``resolution`` is not a finite number >= 1.
    """
    if not (isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution >= 1):
        raise ValueError(f"resolution must be a number >= 1 (mm), got {resolution!r}")
    images = [sitk.Image(img) for img in _read_mni_1mm()]  # copies: callers may modify them
    if resolution == 1:
        return images[0], images[1], images[2]
    ref = images[0]
    extent = [sz * sp for sz, sp in zip(ref.GetSize(), ref.GetSpacing())]
    size = [max(1, int(round(e / resolution))) for e in extent]
    # keep the centre of the field of view fixed
    centre = ref.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in ref.GetSize()])
    direction = np.asarray(ref.GetDirection()).reshape(3, 3)
    origin = np.asarray(centre) - direction @ (np.asarray([(s - 1) / 2.0 for s in size]) * resolution)
    out = []
    for img in images:
        sigma = 0.5 * math.sqrt(max(resolution**2 - 1.0, 0.0))
        smooth = sitk.SmoothingRecursiveGaussian(img, sigma) if sigma > 0 else img
        res = sitk.Resample(
            smooth, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), [float(resolution)] * 3,
            ref.GetDirection(), 0.0, sitk.sitkFloat32,
        )
        out.append(sitk.Clamp(res, sitk.sitkFloat32, 0.0, 1.0))  # the recursive Gaussian rings slightly
    return out[0], out[1], out[2]


@functools.lru_cache(maxsize=1)
def _read_mni_1mm() -> tuple[sitk.Image, sitk.Image, sitk.Image]:
    images = []
    for kind in ("t1", "gm", "wm"):
        img = sitk.Cast(sitk.ReadImage(str(_mni_file(kind))), sitk.sitkFloat32) / 255.0
        images.append(sitk.Cast(img, sitk.sitkFloat32))
    return images[0], images[1], images[2]


def brain_mask(gm: sitk.Image, wm: sitk.Image, threshold: float = 0.3) -> sitk.Image:
    """Binary brain mask (uint8) from GM and WM probability maps: ``gm + wm > threshold``, holes filled.

    Args:
        gm: grey matter probability image in [0, 1].
        wm: white matter probability image in [0, 1], same grid as ``gm``.
        threshold: probability threshold in (0, 1).

    Returns:
        uint8 image on the GM grid, 1 inside the brain.

    Raises:
        ValueError: when ``threshold`` is outside (0, 1) or the grids differ.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    _check_same_grid(gm, wm, "gm", "wm")
    total = sitk.Cast(gm, sitk.sitkFloat32) + sitk.Cast(wm, sitk.sitkFloat32)
    mask = sitk.BinaryThreshold(total, threshold, 1e9, 1, 0)
    mask = sitk.BinaryFillhole(mask)
    return sitk.Cast(mask, sitk.sitkUInt8)


def _check_same_grid(a: sitk.Image, b: sitk.Image, name_a: str, name_b: str) -> None:
    same = (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing())
        and np.allclose(a.GetOrigin(), b.GetOrigin())
        and np.allclose(a.GetDirection(), b.GetDirection())
    )
    if not same:
        raise ValueError(
            f"{name_a} and {name_b} must share one grid, got sizes {a.GetSize()} vs {b.GetSize()}, spacings "
            f"{a.GetSpacing()} vs {b.GetSpacing()}, origins {a.GetOrigin()} vs {b.GetOrigin()}"
        )


def _smooth_field(shape: Sequence[int], rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """A smooth random field in about [-1, 1]: a coarse random lattice upsampled trilinearly."""
    from scipy.ndimage import zoom

    coarse = rng.uniform(-1.0, 1.0, size=(cells, cells, cells))
    factors = [s / cells for s in shape]
    field = zoom(coarse, factors, order=1, mode="nearest", grid_mode=True)
    return field[: shape[0], : shape[1], : shape[2]]


def simulate_uptake(
    gm: np.ndarray, wm: np.ndarray, *, tracer: str = "fdg", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Noise-free, unblurred tracer uptake from GM/WM probability arrays (any array order, any shape).

    FDG: grey matter about 3.5x white matter (ratio drawn in [3, 4]) with a mild smooth regional variation (+-10%)
    of the grey matter uptake. Amyloid-like: high white matter retention, and grey matter retention that is high
    only in a few random smooth cortical regions, so the GM/WM contrast is low. CSF/background inside the brain
    gets a small constant.

    Args:
        gm: grey matter probabilities in [0, 1].
        wm: white matter probabilities in [0, 1], same shape.
        tracer: ``"fdg"`` or ``"amyloid"``.
        rng: numpy random generator (a fixed default seed of 0 when ``None``).

    Returns:
        float32 array of the input shape; white matter uptake is about 1.

    Raises:
        ValueError: for an unknown ``tracer`` or mismatched shapes.
    """
    if tracer not in _TRACERS:
        raise ValueError(f"tracer must be one of {_TRACERS}, got {tracer!r}")
    gm = np.asarray(gm, dtype=np.float32)
    wm = np.asarray(wm, dtype=np.float32)
    if gm.shape != wm.shape or gm.ndim != 3:
        raise ValueError(f"gm and wm must be 3D arrays of one shape, got {gm.shape} and {wm.shape}")
    rng = np.random.default_rng(0) if rng is None else rng
    if tracer == "fdg":
        ratio = rng.uniform(3.0, 4.0)
        regional = 1.0 + 0.1 * _smooth_field(gm.shape, rng, cells=4)
        uptake = ratio * regional * gm + 1.0 * wm
    else:
        wm_level = 1.0
        # random cortical regions with amyloid retention: smooth field thresholded softly
        field = _smooth_field(gm.shape, rng, cells=5)
        retention = np.clip((field - rng.uniform(-0.2, 0.3)) * 2.5, 0.0, 1.0)
        gm_level = 0.45 + 0.55 * retention  # 0.45 (negative cortex) .. 1.0 (positive, like WM)
        uptake = gm_level * gm + wm_level * wm
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * (gm + wm > 0.05)
    uptake = uptake + 0.1 * csf
    return uptake.astype(np.float32)


def _add_noise(arr: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson-like noise: standard deviation ``noise * sqrt(value * ref)``, ``ref`` the 99th percentile."""
    if noise == 0:
        return arr
    ref = float(np.percentile(arr, 99.0)) if arr.size else 0.0
    if ref <= 0:
        return arr
    sd = noise * np.sqrt(np.clip(arr, 0.0, None) * ref + (0.02 * ref) ** 2)
    return (arr + sd * rng.standard_normal(arr.shape)).astype(np.float32)


def _check_pet_params(fwhm_mm: float, noise: float, scale: float | None) -> None:
    if not (math.isfinite(fwhm_mm) and fwhm_mm >= 0):
        raise ValueError(f"fwhm_mm must be a finite number >= 0, got {fwhm_mm!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")


def simulate_pet_array(
    gm: np.ndarray,
    wm: np.ndarray,
    *,
    spacing: float | Sequence[float] = 1.0,
    tracer: str = "fdg",
    fwhm_mm: float = 7.0,
    noise: float = 0.05,
    scale: float | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Simulated PET on the grid of the given arrays (for training crops and augmentation).

    Uptake from :func:`simulate_uptake`, a Gaussian PSF of ``fwhm_mm`` (per-axis sigma from ``spacing``),
    Poisson-like noise and an intensity scale (Bq/mL-like).

    Args:
        gm: grey matter probabilities, 3D.
        wm: white matter probabilities, same shape.
        spacing: voxel size in mm along the array axes (one number or three).
        tracer: ``"fdg"`` or ``"amyloid"``.
        fwhm_mm: PSF full width at half maximum in mm (0 = no blur).
        noise: relative noise level (0 = none).
        scale: activity of white matter; ``None`` draws it in [3000, 12000].
        rng: numpy random generator (seed 0 when ``None``).

    Returns:
        float32 array of the input shape.

    Raises:
        ValueError: for bad parameters (quoted in the message).
    """
    from scipy.ndimage import gaussian_filter

    _check_pet_params(fwhm_mm, noise, scale)
    sp = np.broadcast_to(np.asarray(spacing, dtype=float), (3,))
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing must be positive, got {spacing!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    uptake = simulate_uptake(gm, wm, tracer=tracer, rng=rng)
    if fwhm_mm > 0:
        uptake = gaussian_filter(uptake, sigma=(fwhm_mm * FWHM_TO_SIGMA) / sp, mode="constant")
    scale = float(rng.uniform(3000.0, 12000.0)) if scale is None else scale
    return (_add_noise(uptake, noise, rng) * scale).astype(np.float32)


def _pet_grid(
    reference: sitk.Image, spacing_mm: float | Sequence[float], fov_mm: Sequence[float]
) -> tuple[list[int], list[float], list[float]]:
    """Axis-aligned PET grid (identity direction) centred on the reference image's centre."""
    sp = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,)).copy()
    size = [int(math.ceil(f / s)) for f, s in zip(fov_mm, sp)]
    centre = np.asarray(reference.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in reference.GetSize()]))
    origin = centre - (np.asarray(size) - 1) / 2.0 * sp
    return size, sp.tolist(), origin.tolist()


def simulate_pet(
    gm: sitk.Image,
    wm: sitk.Image,
    *,
    tracer: str = "fdg",
    fwhm_mm: float = 7.0,
    spacing_mm: float | Sequence[float] = 2.0,
    fov_mm: Sequence[float] = (256.0, 256.0, 180.0),
    noise: float = 0.05,
    scale: float | None = None,
    transform: sitk.Transform | None = None,
    rng: np.random.Generator | None = None,
) -> sitk.Image:
    """Simulated PET volume on its own scanner grid from GM/WM probability images.

    Uptake (:func:`simulate_uptake`) on the GM/WM grid, Gaussian PSF of ``fwhm_mm``, then resampled onto an
    axis-aligned PET grid of ``spacing_mm`` voxels covering ``fov_mm`` around the head's centre (default 2 mm,
    128x128x90), then Poisson-like noise and an arbitrary activity scale.

    Args:
        gm: grey matter probability image.
        wm: white matter probability image, same grid.
        tracer: ``"fdg"`` or ``"amyloid"``.
        fwhm_mm: PSF FWHM in mm.
        spacing_mm: PET voxel size in mm (one number or three).
        fov_mm: PET field of view in mm along x, y, z.
        noise: relative noise level.
        scale: activity (Bq/mL-like) of white matter; ``None`` draws it in [3000, 12000].
        transform: optional head motion, as a transform mapping MRI (GM/WM) physical points to PET points
            (the registration convention); the PET is generated with the head moved accordingly, with a single
            interpolation. ``None`` = no motion.
        rng: numpy random generator (seed 0 when ``None``).

    Returns:
        float32 PET image on the PET grid.

    Raises:
        ValueError: for bad parameters (quoted in the message).
    """
    _check_pet_params(fwhm_mm, noise, scale)
    if len(fov_mm) != 3 or any(not (math.isfinite(f) and f > 0) for f in fov_mm):
        raise ValueError(f"fov_mm must be three positive lengths, got {fov_mm!r}")
    sp = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm!r}")
    _check_same_grid(gm, wm, "gm", "wm")
    rng = np.random.default_rng(0) if rng is None else rng
    uptake = simulate_uptake(sitk.GetArrayViewFromImage(gm), sitk.GetArrayViewFromImage(wm), tracer=tracer, rng=rng)
    up = sitk.GetImageFromArray(uptake)
    up.CopyInformation(gm)
    if fwhm_mm > 0:
        up = sitk.SmoothingRecursiveGaussian(up, fwhm_mm * FWHM_TO_SIGMA)
    size, spacing, origin = _pet_grid(gm, sp, fov_mm)
    # sitk.Resample maps output (PET) points to input (MRI) points: the inverse of the MRI->PET motion
    inverse = sitk.Transform() if transform is None else transform.GetInverse()
    pet = sitk.Resample(up, size, inverse, sitk.sitkLinear, origin, spacing, np.eye(3).ravel().tolist(), 0.0,
                        sitk.sitkFloat32)
    scale = float(rng.uniform(3000.0, 12000.0)) if scale is None else scale
    arr = _add_noise(sitk.GetArrayFromImage(pet), noise, rng) * scale
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.CopyInformation(pet)
    return out


def random_rigid(
    rng: np.random.Generator, max_deg: float = 8.0, max_mm: float = 10.0, center: Sequence[float] = (0.0, 0.0, 0.0)
) -> sitk.Euler3DTransform:
    """A random rigid motion: rotation angles uniform in +-``max_deg`` per axis, translation uniform in +-``max_mm``.

    Args:
        rng: numpy random generator.
        max_deg: largest rotation about each axis, degrees.
        max_mm: largest translation along each axis, mm.
        center: centre of rotation (physical LPS point), e.g. the centre of the head.

    Returns:
        ``sitk.Euler3DTransform``; used as a "true transform" it maps MRI points to PET points.

    Raises:
        ValueError: for negative or non-finite limits or a centre that is not three numbers.
    """
    for name, val in (("max_deg", max_deg), ("max_mm", max_mm)):
        if not (math.isfinite(val) and val >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {val!r}")
    if len(center) != 3:
        raise ValueError(f"center must be three coordinates, got {center!r}")
    angles = np.deg2rad(rng.uniform(-max_deg, max_deg, size=3))
    shift = rng.uniform(-max_mm, max_mm, size=3)
    tfm = sitk.Euler3DTransform()
    tfm.SetCenter([float(c) for c in center])
    tfm.SetRotation(*[float(a) for a in angles])
    tfm.SetTranslation([float(s) for s in shift])
    return tfm


def apply_rigid_motion(pet: sitk.Image, transform: sitk.Transform, default_value: float = 0.0) -> sitk.Image:
    """Move the head in a PET image by a known motion, keeping the PET grid.

    ``transform`` follows the registration convention (maps unmoved/MRI points to moved/PET points), so the
    returned image satisfies ``moved(transform(x)) = pet(x)``, and ``resample_to_reference(moved, pet,
    transform)`` gives ``pet`` back (up to interpolation and the field of view).

    Args:
        pet: the unmoved PET image.
        transform: the motion (e.g. from :func:`random_rigid`); must be invertible.
        default_value: value outside the original field of view.

    Returns:
        float32 image on the grid of ``pet``.
    """
    return sitk.Resample(pet, pet, transform.GetInverse(), sitk.sitkLinear, float(default_value), sitk.sitkFloat32)


@dataclass
class DemoPair:
    """An ADNI-style simulated MRI/PET pair written as NIfTI.

    Attributes:
        mri_path: the T1 MRI (float32 NIfTI).
        pet_path: the PET on its own grid (float32 NIfTI, Bq/mL-like values).
        true_transform: the simulated head motion, mapping MRI physical points to PET points.
        mask_path: brain mask on the MRI grid (uint8 NIfTI).
        truth_tfm_path: ``true_transform`` as a SimpleITK ``.tfm`` file.
    """

    mri_path: Path
    pet_path: Path
    true_transform: sitk.Transform
    mask_path: Path
    truth_tfm_path: Path


def _write_image_atomic(image: sitk.Image, path: Path) -> None:
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 kept by the rename: a demo's inputs readable as any file is
    try:
        sitk.WriteImage(image, tmp, useCompression=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _oblique_grid(
    reference: sitk.Image, spacing: Sequence[float], rotation_deg: Sequence[float]
) -> tuple[list[int], list[float], list[float], list[float]]:
    """A rotated grid (direction = rotation) with the given spacing that covers the reference image."""
    rot = sitk.Euler3DTransform()
    rot.SetRotation(*np.deg2rad(rotation_deg).tolist())
    direction = np.asarray(rot.GetMatrix()).reshape(3, 3) @ np.asarray(reference.GetDirection()).reshape(3, 3)
    # reference corners in the new grid's axes
    size = reference.GetSize()
    corners = np.array(
        [reference.TransformContinuousIndexToPhysicalPoint([i * (s - 1) for i, s in zip(c, size)])
         for c in np.ndindex(2, 2, 2)]
    )
    local = corners @ direction  # coordinates along the new axes (columns of direction)
    lo, hi = local.min(axis=0), local.max(axis=0)
    sp = np.asarray(spacing, dtype=float)
    new_size = [int(math.ceil((h - l) / s)) + 1 for l, h, s in zip(lo, hi, sp)]
    origin = direction @ lo
    return new_size, sp.tolist(), origin.tolist(), direction.ravel().tolist()


def make_demo_pair(
    out_dir: str | Path,
    *,
    seed: int = 0,
    oblique: bool = False,
    mri_spacing: Sequence[float] = (1.0, 1.0, 1.0),
    pet_spacing: float | Sequence[float] = 2.0,
    tracer: str = "fdg",
    max_deg: float = 8.0,
    max_mm: float = 10.0,
    resolution: float = 1,
) -> DemoPair:
    """Write a simulated ADNI-style MRI/PET pair with a known head motion between them.

    The MRI is the MNI152 T1 (on its own 1 mm grid, or with ``oblique=True`` or a non-unit ``mri_spacing``
    resampled onto a rotated and/or anisotropic grid); the PET is simulated from the GM/WM maps on its own
    axis-aligned scanner grid, with the head moved by a random rigid motion. Files are NIfTI whose
    ``nibabel.load(p).affine`` is the true geometry (sform and qform codes 1).

    Args:
        out_dir: folder to write into (created if needed): ``mri.nii.gz``, ``pet.nii.gz``, ``brain_mask.nii.gz``,
            ``true_transform.tfm``.
        seed: random seed (motion, uptake variation, noise, oblique angles).
        oblique: put the MRI on a rotated grid (angles of 5-15 degrees about two axes).
        mri_spacing: MRI voxel size (x, y, z) in mm; anything but (1, 1, 1) resamples the template.
        pet_spacing: PET voxel size in mm.
        tracer: ``"fdg"`` or ``"amyloid"``.
        max_deg: largest simulated rotation per axis, degrees.
        max_mm: largest simulated translation per axis, mm.
        resolution: resolution of the MNI template the pair is made from (1 mm; coarser for fast tests).

    Returns:
        :class:`DemoPair` with the written paths and the true transform (MRI points -> PET points).

    Raises:
        ValueError: for bad parameters (quoted in the message).
    """
    if tracer not in _TRACERS:
        raise ValueError(f"tracer must be one of {_TRACERS}, got {tracer!r}")
    if len(mri_spacing) != 3 or any(not (math.isfinite(s) and s > 0) for s in mri_spacing):
        raise ValueError(f"mri_spacing must be three positive numbers, got {mri_spacing!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t1, gm, wm = load_mni(resolution)
    mask = brain_mask(gm, wm)
    centre = t1.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in t1.GetSize()])
    true_tfm = random_rigid(rng, max_deg=max_deg, max_mm=max_mm, center=centre)
    pet = simulate_pet(gm, wm, tracer=tracer, spacing_mm=pet_spacing, transform=true_tfm, rng=rng)

    mri, mri_mask = t1, mask
    if oblique or not np.allclose(mri_spacing, t1.GetSpacing()):
        angles = [0.0, 0.0, 0.0]
        if oblique:
            angles = [float(rng.uniform(5.0, 15.0) * rng.choice([-1, 1])), 0.0,
                      float(rng.uniform(5.0, 15.0) * rng.choice([-1, 1]))]
        size, spacing, origin, direction = _oblique_grid(t1, mri_spacing, angles)
        mri = sitk.Resample(t1, size, sitk.Transform(), sitk.sitkLinear, origin, spacing, direction, 0.0,
                            sitk.sitkFloat32)
        mri_mask = sitk.Resample(mask, size, sitk.Transform(), sitk.sitkNearestNeighbor, origin, spacing, direction,
                                 0, sitk.sitkUInt8)

    paths = {k: out_dir / f"{k}.nii.gz" for k in ("mri", "pet", "brain_mask")}
    _write_image_atomic(sitk.Cast(mri, sitk.sitkFloat32), paths["mri"])
    _write_image_atomic(pet, paths["pet"])
    _write_image_atomic(mri_mask, paths["brain_mask"])
    tfm_path = out_dir / "true_transform.tfm"
    from asfe3d.io.transform import write_transform

    write_transform(true_tfm, tfm_path)
    return DemoPair(paths["mri"], paths["pet"], true_tfm, paths["brain_mask"], tfm_path)
