"""PET-to-MRI registration (SimpleITK, Mattes mutual information) and resampling onto the MRI grid.

Convention (as in SimpleITK): every transform here maps *fixed (MRI) physical points to moving (PET) points*;
``resample_to_reference(pet, mri, transform)`` therefore puts the PET onto the MRI grid, and ``.tfm`` files
store exactly that mapping.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from asfe3d.defaults import REGISTRATION_METHODS
from asfe3d.errors import Asfe3dInputError
from asfe3d.io.convert import LPS_TO_RAS
from asfe3d.registration.fov import fov_mm, head_extent, large_fov, locate_head, much_larger
from asfe3d.registration.qc import VERDICTS, RegistrationQC, assess_registration, finite_image, without_outliers
from asfe3d.utils import is_int, is_real, padding_mask, percentile

__all__ = [
    "FINEST_MM",
    "METHODS",
    "MULTISTART",
    "RegistrationResult",
    "check_overlap",
    "head_mask",
    "linear_part_ras",
    "transform_from_ras",
    "overlap_fraction",
    "register_pet_to_mri",
    "registration_error_mm",
    "resample_to_reference",
    "resolve_method",
    "template_mismatch",
    "size_problem",
    "start_name",
    "start_orientations",
]

logger = logging.getLogger("asfe3d")

METHODS = REGISTRATION_METHODS  # one tuple: the settings and the command take the same names
VERDICT_RANK = {v: i for i, v in enumerate(VERDICTS)}

_INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}


@dataclass
class RegistrationResult:
    """Outcome of :func:`register_pet_to_mri`.

    Attributes:
        transform: maps fixed (MRI) physical points to moving (PET) points.
        method: ``"rigid"``, ``"affine"``, ``"deformable"`` or ``"none"``.
        metric: final Mattes mutual information (SimpleITK sign: more negative is better; ``nan`` for ``"none"``).
        iterations: optimizer iterations of the last stage (summed over its resolution levels).
        stop_condition: the optimizer's stop description of the last stage.
        seconds: wall time of the registration.
        start: where the winning rigid search started: ``"moments"`` (centres of mass, the header's orientation),
            a multi-start orientation such as ``"rotate 90 deg about x"`` or ``"mirror x, rotate 180 deg about z"``,
            or ``"header"`` for ``"none"`` and when the headers' own alignment scored a higher QC MI than the
            optimiser's result (a PET already on the MRI grid).
        starts_tried: orientations tried by the multi-start search (0 when it did not run).
        qc: the quality verdict of the returned transform (``None`` when not assessed).
        qc_plain: the verdict of the plain (moments-started) rigid result when the multi-start search ran
            (``None`` otherwise); ``qc`` is then the verdict of what was kept.
        bin_factors: per-axis bin-averaging of the MRI for the finest level (``(1, 1, 1)``: the MRI's own grid).
        continued: how many times the rigid optimisation was continued from a deliberate misalignment that the QC
            found better than where it had stopped (0-2).
        pet_region: ``(x, y, z, size_x, size_y, size_z)``, the PET voxel box the registration ran on when the PET's
            field of view was much larger than the head and the head was found in it
            (:mod:`asfe3d.registration.fov`); ``None``: the whole PET.
    """

    transform: sitk.Transform
    method: str
    metric: float
    iterations: int
    stop_condition: str
    seconds: float
    start: str = "moments"
    starts_tried: int = 0
    qc: RegistrationQC | None = None
    qc_plain: RegistrationQC | None = None
    bin_factors: tuple[int, ...] = (1, 1, 1)
    continued: int = 0
    pet_region: tuple[int, ...] | None = None


#: metric samples inside the (dilated) MRI head at the finest level when ``sampling`` is left to
#: :func:`register_pet_to_mri` (ITK draws ``sampling`` x all voxels at random and drops those outside the mask)
TARGET_SAMPLES = 20_000


def without_padding(image: sitk.Image) -> sitk.Image:
    """``image`` (float32) with its padding (:func:`asfe3d.utils.padding_mask`: a CT's constant minimum outside its
    reconstruction disc) set to its lowest other value; returned as it is without padding, the usual case. Otsu's
    threshold otherwise fell between the padding and the air, and the air inside the disc became "head" (a PET then
    covered 26 % of it and was refused as a misregistration)."""
    arr = sitk.GetArrayViewFromImage(image)
    pad = padding_mask(arr)
    if pad is None:
        return image
    out = sitk.GetImageFromArray(np.where(pad, arr[~pad].min(), arr).astype(np.float32, copy=False))
    out.CopyInformation(image)
    return out


def head_mask(image: sitk.Image) -> sitk.Image:
    """Head (foreground) mask of an MRI: voxels above the Otsu threshold, holes filled (uint8, image grid).

    Args:
        image: a scalar 3D image.

    Returns:
        uint8 image, 1 in the head.
    """
    img = without_padding(without_outliers(sitk.Cast(image, sitk.sitkFloat32)))  # three hot voxels would set Otsu's
    # histogram; a CT's padding outside its reconstruction disc would make the air inside it "head"
    # Otsu returns 0 above the threshold with these in/out values
    mask = sitk.OtsuThreshold(img, 0, 1, 128)
    # holes filled as sitk.BinaryFillhole does (face connectivity), the same voxels: the background components that
    # touch the image border are outside, every other background voxel is a hole (one labelling pass instead of a
    # morphological reconstruction: 0.3 s against 1.5 s for a 0.9 mm head)
    background = sitk.GetArrayFromImage(sitk.ConnectedComponent(mask == 0, False))
    faces = [background[0], background[-1], background[:, 0], background[:, -1], background[:, :, 0],
             background[:, :, -1]]
    outside = np.zeros(int(background.max()) + 1, np.uint8)
    outside[np.unique(np.concatenate([f.ravel() for f in faces]))] = 1
    outside[0] = 0  # label 0: the Otsu foreground, inside even where it touches the border
    filled = sitk.GetImageFromArray(np.subtract(1, outside[background], dtype=np.uint8))
    filled.CopyInformation(mask)
    return filled


def _stage(
    fixed: sitk.Image,
    moving: sitk.Image,
    initial: sitk.Transform,
    *,
    fixed_mask: sitk.Image | None,
    seed: int,
    shrink: Sequence[int],
    sigmas: Sequence[float],
    sampling: float,
    iterations: int,
    optimizer: str,
    learning_rate: float = 2.0,
    bound_mm: float = 0.0,
    moving_initial: sitk.Transform | None = None,
    progress: _Progress | None = None,
) -> tuple[sitk.Transform, float, int, str]:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    # gradients by central differences at the sampled points: ITK's default gradient filters smooth the whole
    # fixed and moving images at every level (most of the time on a 1 mm MRI) and the fixed one is never used
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    # SimpleITK treats a seed of 0 as "seed from the wall clock", so shift by one to keep seed=0 reproducible
    reg.SetMetricSamplingPercentage(sampling, seed + 1)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    if optimizer == "rsgd":
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=learning_rate, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.6,
            gradientMagnitudeTolerance=1e-8,
        )
        reg.SetOptimizerScalesFromPhysicalShift()
    elif optimizer == "lbfgsb":  # bounds on the B-spline control-point displacements (mm)
        reg.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-5, numberOfIterations=iterations, maximumNumberOfCorrections=5,
            maximumNumberOfFunctionEvaluations=4 * iterations, costFunctionConvergenceFactor=1e7,
            lowerBound=-bound_mm, upperBound=bound_mm, trace=False,
        )
    else:
        raise ValueError(f"optimizer must be 'rsgd' or 'lbfgsb', got {optimizer!r}")
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    if moving_initial is not None:
        reg.SetMovingInitialTransform(moving_initial)
    reg.SetInitialTransform(initial, inPlace=True)
    counter = {"n": 0}

    def on_iteration() -> None:
        counter["n"] += 1
        if progress is not None:
            progress.iteration(reg.GetOptimizerIteration(), reg.GetMetricValue())

    reg.AddCommand(sitk.sitkIterationEvent, on_iteration)
    if progress is not None:
        reg.AddCommand(sitk.sitkMultiResolutionIterationEvent, lambda: progress.level(reg.GetCurrentLevel()))
    out = reg.Execute(fixed, moving)
    return out, float(reg.GetMetricValue()), counter["n"], reg.GetOptimizerStopConditionDescription()


MULTISTART = ("auto", "always", "never")


class _Progress:
    """Registration progress on stderr (a tqdm bar over the resolution levels of every stage, with the stage, the
    level's iteration and the metric), shown the way the network's bar is (``progress=True``; ``--no-progress``)."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            # disable=None: shown on a terminal only, so logs and pipes stay quiet (warnings only)
            self.bar = tqdm(desc="registration", unit="level", total=3, leave=False, dynamic_ncols=True,
                            mininterval=0.2, disable=None)
        self.name = ""

    def stage(self, name: str, levels: int) -> None:
        self.name = name
        if self.bar is not None:
            self.bar.total = self.bar.n + levels
            self.bar.set_description(f"registration: {name}", refresh=False)
            self.bar.refresh()

    def level(self, index: int) -> None:
        if self.bar is not None and index > 0:
            self.bar.update(1)
            self.bar.refresh()  # the finished level's last iteration and metric, whatever mininterval allowed

    def iteration(self, n: int, metric: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"iteration {n}, MI {metric:.4f}", refresh=False)
            self.bar.update(0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

#: the finest registration level is not finer than this (mm) unless the PET's own voxels are finer
FINEST_MM = 2.0


def _bin_factors(mri: sitk.Image, pet: sitk.Image, finest_mm: float | None) -> list[int]:
    """Integer bin-averaging factors per MRI axis so that the finest level is about ``finest_mm`` (the nearest
    multiple of the MRI spacing; never below 1)."""
    if finest_mm is None:
        finest_mm = min(FINEST_MM, float(min(pet.GetSpacing())))
    return [max(1, int(math.floor(finest_mm / s + 0.5))) for s in mri.GetSpacing()]


#: the fewest voxels along an axis that ITK's Gaussian smoothing (every registration level) accepts
MIN_LEVEL_VOXELS = 4
#: ITK smooths each level's fixed image before shrinking it; the left-right check smooths the finest grid binned by
#: this much (:func:`_mirrored_fit`), the coarsest fixed image smoothed
CHECK_BIN = 2


def size_problem(mri_size: Sequence[int], mri_spacing: Sequence[float], pet_size: Sequence[int],
                 pet_spacing: Sequence[float], finest_mm: float | None = None) -> tuple[str, str] | None:
    """Why a pair is too thin to be registered (a slab, a few slices), or ``None`` when it is not.

    ITK's Gaussian smoothing (every level) needs :data:`MIN_LEVEL_VOXELS` voxels along each axis: the PET needs
    them; the MRI is bin-averaged to the finest level (:func:`register_pet_to_mri`'s ``finest_mm``) and binned by
    :data:`CHECK_BIN` more for the left-right check, so it needs that many times more. ITK stops with a low-level
    exception otherwise.

    Args:
        mri_size: the MRI's voxels along x, y, z.
        mri_spacing: its voxel size (mm).
        pet_size: the PET's voxels along x, y, z.
        pet_spacing: its voxel size (mm).
        finest_mm: as in :func:`register_pet_to_mri`.

    Returns:
        ``(role, sentence)``: ``"mri"`` or ``"pet"`` and what is too thin (sizes quoted), or ``None``.
    """
    for k, n in enumerate(pet_size):
        if n < MIN_LEVEL_VOXELS:
            return "pet", (f"PET input has {n} voxel{'s' if n != 1 else ''} along {'xyz'[k]} (size "
                           f"{' x '.join(str(v) for v in pet_size)}): registration needs at least {MIN_LEVEL_VOXELS} "
                           f"along each axis (a slab of a few slices is not a 3D PET)")
    finest = min(FINEST_MM, float(min(pet_spacing))) if finest_mm is None else finest_mm
    for k, (n, sp) in enumerate(zip(mri_size, mri_spacing)):
        factor = max(1, int(math.floor(finest / sp + 0.5)))
        need = factor * CHECK_BIN * MIN_LEVEL_VOXELS
        if n < need:
            return "mri", (f"MRI input has {n} voxels along {'xyz'[k]} (size {' x '.join(str(v) for v in mri_size)}, "
                           f"{sp:g} mm): registration needs at least {need} there ({need * sp:g} mm; a slab of a few "
                           f"slices is not a 3D MRI)")
    return None


def _rotation_name(m: np.ndarray) -> str:
    angle = math.degrees(math.acos(float(np.clip((np.trace(m) - 1.0) / 2.0, -1.0, 1.0))))
    if angle < 1e-3:
        return "identity"
    w, v = np.linalg.eig(m)
    axis = np.real(v[:, int(np.argmin(np.abs(w - 1.0)))])
    axis = axis / np.linalg.norm(axis)
    if abs(angle - 180.0) > 1e-3:  # the sign of the axis matters below 180 degrees
        skew = np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]])
        if float(skew @ axis) < 0:
            axis = -axis
    k = int(np.argmax(np.abs(axis)))
    if abs(abs(axis[k]) - 1.0) < 1e-6:
        return f"rotate {angle:.0f} deg about {'-' if axis[k] < 0 else ''}{'xyz'[k]}"
    return f"rotate {angle:.0f} deg about ({axis[0]:.2f}, {axis[1]:.2f}, {axis[2]:.2f})"


def start_name(matrix: Sequence[float] | np.ndarray) -> str:
    """A readable name for a start orientation (3x3 matrix, MRI axes -> PET axes): ``"rotate 90 deg about x"``,
    ``"mirror x, rotate 180 deg about z"``, ``"identity"``.

    Args:
        matrix: 9 numbers (row-major) or a 3x3 array, orthogonal.

    Returns:
        the name.

    Raises:
        ValueError: when the matrix is not 3x3 orthogonal.
    """
    m = np.asarray(matrix, dtype=float).reshape(3, 3)
    if not np.allclose(m @ m.T, np.eye(3), atol=1e-6):
        raise ValueError(f"matrix must be orthogonal, got {m.ravel().tolist()!r}")
    if np.linalg.det(m) < 0:
        rot = m @ np.diag([-1.0, 1.0, 1.0])
        name = _rotation_name(rot)
        return "mirror x" if name == "identity" else f"mirror x, {name}"
    return _rotation_name(m)


def start_orientations(mirrors: bool = False, intermediate_deg: Sequence[float] = (30.0, 60.0),
                       oblique_step_deg: float | None = 15.0, oblique_limit_deg: float = 45.0) -> list[np.ndarray]:
    """Start orientations of the multi-start search (3x3 matrices mapping MRI axes to PET axes).

    The 24 rotations of the cube (every 90 and 180 degree turn about each axis and their combinations; the
    identity first), then turns of +-``intermediate_deg`` about each axis (steep head pitch or roll), then a grid of
    oblique turns (Euler angles about x, y and z, each from ``-oblique_limit_deg`` to ``+oblique_limit_deg`` in
    steps of ``oblique_step_deg``: every orientation within that range lies within about 8 degrees of a start),
    then, with ``mirrors``, the 24 mirrored orientations (header flips). An oblique header error (30 degrees about
    x and -30 about y) was 16 degrees from the nearest single-axis or 30/30-degree start, outside the optimiser's
    reach (15 mm off); the grid's nearest start, 8 degrees away, scored first and converged (0.25 mm).

    Args:
        mirrors: include the mirrored (determinant -1) orientations.
        intermediate_deg: extra single-axis turns in degrees, each in (0, 90).
        oblique_step_deg: the oblique grid's step in degrees, in (0, 90] (``None``: no oblique grid).
        oblique_limit_deg: the oblique grid's largest angle, in [0, 90).

    Returns:
        the list of matrices, no duplicates.

    Raises:
        ValueError: for an angle outside its range.
    """
    for a in intermediate_deg:
        if not (isinstance(a, (int, float)) and 0 < a < 90):
            raise ValueError(f"intermediate_deg values must be in (0, 90), got {a!r}")
    if oblique_step_deg is not None and not (isinstance(oblique_step_deg, (int, float)) and 0 < oblique_step_deg <= 90):
        raise ValueError(f"oblique_step_deg must be None or in (0, 90], got {oblique_step_deg!r}")
    if not (isinstance(oblique_limit_deg, (int, float)) and 0 <= oblique_limit_deg < 90):
        raise ValueError(f"oblique_limit_deg must be in [0, 90), got {oblique_limit_deg!r}")
    import itertools

    proper: list[np.ndarray] = []
    improper: list[np.ndarray] = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            for row, col in enumerate(perm):
                m[row, col] = signs[row]
            (proper if np.linalg.det(m) > 0 else improper).append(m)
    proper.sort(key=lambda m: -np.trace(m))  # identity first, then the turns closest to it

    def turn(angles_deg: Sequence[float]) -> np.ndarray:
        t = sitk.Euler3DTransform()
        t.SetRotation(*[math.radians(a) for a in angles_deg])
        return np.asarray(t.GetMatrix()).reshape(3, 3)

    extra = [turn([sign * a if i == axis else 0.0 for i in range(3)])
             for axis in range(3) for a in intermediate_deg for sign in (1.0, -1.0)]
    if oblique_step_deg is not None:
        n = int(math.floor(oblique_limit_deg / oblique_step_deg + 1e-9))
        steps = [k * oblique_step_deg for k in range(-n, n + 1)]
        extra += [turn(angles) for angles in itertools.product(steps, repeat=3)]
    out, seen = [], set()
    for m in proper + extra + (sorted(improper, key=lambda m: -np.trace(m)) if mirrors else []):
        key = _orientation_key(m)
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def _orientation_key(matrix: np.ndarray) -> tuple[float, ...]:
    """A start orientation as a hashable key (rounded to 1e-6; + 0.0 makes -0.0 and 0.0 one key)."""
    return tuple(np.round(matrix, 6).ravel() + 0.0)


def _affine(matrix: np.ndarray, centre: Sequence[float], translation: Sequence[float]) -> sitk.AffineTransform:
    t = sitk.AffineTransform(3)
    t.SetCenter([float(c) for c in centre])
    t.SetMatrix(np.asarray(matrix, dtype=float).ravel().tolist())
    t.SetTranslation([float(v) for v in translation])
    return t


def _flatten(start: sitk.AffineTransform, rigid: sitk.Euler3DTransform) -> sitk.Transform:
    """``start`` after ``rigid`` (x -> start(rigid(x))) as one transform: Euler3D when proper, else affine."""
    s = np.asarray(start.GetMatrix()).reshape(3, 3)
    r = np.asarray(rigid.GetMatrix()).reshape(3, 3)
    c = np.asarray(rigid.GetCenter())
    # rigid(x) = r (x - c) + c + t_r ; start(y) = s (y - c_s) + c_s + t_s
    c_s = np.asarray(start.GetCenter())
    matrix = s @ r
    offset = s @ (c + np.asarray(rigid.GetTranslation()) - c_s) + c_s + np.asarray(start.GetTranslation())
    translation = offset - c  # about centre c: x -> matrix (x - c) + c + translation
    if np.linalg.det(matrix) > 0:
        out = sitk.Euler3DTransform()
        out.SetCenter(c.tolist())
        out.SetMatrix(matrix.ravel().tolist(), 1e-6)
        out.SetTranslation(translation.tolist())
        return out
    return _affine(matrix, c, translation)


@dataclass
class _Prepared:
    fixed: sitk.Image
    moving: sitk.Image
    mask: sitk.Image | None
    head: sitk.Image
    factors: list[int]
    init: sitk.Euler3DTransform


def _prepare(mri: sitk.Image, pet: sitk.Image, head: sitk.Image | None, use_mask: bool,
             finest_mm: float | None) -> _Prepared:
    fixed = without_outliers(finite_image(sitk.Cast(mri, sitk.sitkFloat32)))
    # a caller's mask as 0/1 (a 0/255 mask, or a float one, would otherwise be an empty or undilated metric mask)
    head = head_mask(fixed) if head is None else sitk.Cast(sitk.Cast(head, sitk.sitkFloat32) >= 0.5, sitk.sitkUInt8)
    factors = _bin_factors(mri, pet, finest_mm)
    head_b = head
    if max(factors) > 1:  # the finest level is coarser than the MRI: bin once, then the usual pyramid
        fixed = sitk.BinShrink(fixed, factors)
        head_b = sitk.Cast(sitk.BinShrink(sitk.Cast(head, sitk.sitkFloat32), factors) > 0.5, sitk.sitkUInt8)
    mask = None
    if use_mask:  # dilated by about 2 mm (2 voxels of a 1 mm MRI, as before binning)
        radius = max(1, int(round(2.0 / min(fixed.GetSpacing()))))
        mask = sitk.BinaryDilate(sitk.Cast(head_b, sitk.sitkUInt8), [radius] * 3)
    moving = without_outliers(finite_image(sitk.Cast(pet, sitk.sitkFloat32)))
    init = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
        _as_mass(fixed), _as_mass(moving), sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS))
    return _Prepared(fixed, moving, mask, head, factors, init)


def _as_mass(image: sitk.Image) -> sitk.Image:
    """``image`` as the mass whose centre starts the registration: unchanged when its intensities are mostly positive
    (the usual case), else shifted so that its low end (0.5th percentile) is zero and clipped there. A z-scored image
    (mean 0: MONAI's ``NormalizeIntensity``, nnU-Net's preprocessing) has a total mass near zero: its "centre of
    mass" lay anywhere, and ITK stopped with "All samples map outside moving image buffer" (a traceback, exit 1)."""
    arr = sitk.GetArrayViewFromImage(image)
    total, absolute = float(np.sum(arr, dtype=np.float64)), float(np.sum(np.abs(arr), dtype=np.float64))
    if total >= 0.5 * absolute:
        return image
    low = float(percentile(arr.ravel(), 0.5))
    out = sitk.GetImageFromArray(np.maximum(arr - np.float32(low), np.float32(0.0)).astype(np.float32, copy=False))
    out.CopyInformation(image)
    return out


def _binned(prep: _Prepared, factor: int) -> _Prepared:
    """``prep`` on a fixed grid binned by ``factor`` (mask: more than half the bin); the same moving image."""
    fixed = sitk.BinShrink(prep.fixed, [factor] * 3)
    mask = None
    if prep.mask is not None:
        mask = sitk.Cast(sitk.BinShrink(sitk.Cast(prep.mask, sitk.sitkFloat32), [factor] * 3) > 0.5, sitk.sitkUInt8)
    return _Prepared(fixed, prep.moving, mask, prep.head, [f * factor for f in prep.factors], prep.init)


def _rigid_from(prep: _Prepared, start: sitk.Transform | None, common: dict, shrink: Sequence[int],
                sigmas: Sequence[float], progress: _Progress | None = None,
                name: str = "rigid") -> tuple[sitk.Transform, float, int, str]:
    """Rigid stage from the moments start (``start=None``) or after a fixed ``start`` transform (affine or rigid,
    applied last: x -> start(rigid(x))), flattened into one transform."""
    if progress is not None:
        progress.stage(name, len(shrink))
        common = dict(common, progress=progress)
    if start is None:
        rigid = sitk.Euler3DTransform(prep.init)
        _, metric, n_iter, stop = _stage(prep.fixed, prep.moving, rigid, shrink=shrink, sigmas=sigmas,
                                         optimizer="rsgd", **common)
        return rigid, metric, n_iter, stop
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(prep.init.GetCenter())
    _, metric, n_iter, stop = _stage(prep.fixed, prep.moving, rigid, shrink=shrink, sigmas=sigmas, optimizer="rsgd",
                                     moving_initial=start, **common)
    return _flatten(start, rigid), metric, n_iter, stop


def _coarse_mi(prep: _Prepared, grid_mm: float, bins: int = 32):
    """A function giving the histogram MI of the PET through a transform on a coarse copy of the fixed grid."""
    from asfe3d.registration.qc import _mutual_information, _quantise

    factors = [max(1, int(round(grid_mm / s))) for s in prep.fixed.GetSpacing()]
    fixed = sitk.BinShrink(prep.fixed, factors) if max(factors) > 1 else prep.fixed
    src = prep.mask if prep.mask is not None else sitk.Cast(prep.fixed * 0 + 1, sitk.sitkUInt8)
    region = sitk.GetArrayFromImage(sitk.BinShrink(sitk.Cast(src, sitk.sitkFloat32), factors)) > 0.5
    vals = sitk.GetArrayViewFromImage(fixed)[region]
    lo, hi = (float(v) for v in percentile(vals, [0.5, 99.5]))
    fixed_q = _quantise(vals, lo, hi, bins)
    pet = sitk.GetArrayViewFromImage(prep.moving)
    positive = pet[np.isfinite(pet) & (pet > 0)]
    p_hi = float(percentile(positive, 99.5)) if positive.size else 0.0

    def mi(transform: sitk.Transform) -> float:
        resampled = sitk.Resample(prep.moving, fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        arr = sitk.GetArrayViewFromImage(resampled)[region]  # the image stays referenced while its view is read
        return _mutual_information(fixed_q, _quantise(np.nan_to_num(arr), 0.0, p_hi, bins), bins)

    return mi


#: relative MI difference (mirrored fit vs the result) beyond which left and right are told apart
LR_MARGIN = 0.03
#: a turn at least this large (a 90 or 180 degree header error, not head motion) leaves the side to the images
LR_TURN_DEG = 80.0


def _mirrored_fit(prep: _Prepared, rigid: sitk.Transform, common: dict, progress: _Progress | None
                  ) -> sitk.Transform:
    """A brief registration (8 and 4 mm) from ``rigid`` mirrored left-right (physical x, through the head's
    centre): what :func:`_check_left_right` compares ``rigid`` with."""
    from asfe3d.registration.qc import _after

    c = np.asarray(prep.init.GetCenter())
    mirror = _affine(np.diag([-1.0, 1.0, 1.0]), c, (0.0, 0.0, 0.0))
    short = dict(common, iterations=min(common["iterations"], 50))
    # the same two levels as shrink (4, 2) of the finest grid, on a fixed grid binned once by 2: ITK then smooths a
    # fixed image 8 times smaller at each level (the check took 0.6 s of a 0.9 mm head's 2.9, now about 0.3);
    # the same sampling density. It judges only: the transform kept is not changed by it.
    coarse = _binned(prep, 2)
    if coarse.mask is not None:
        short["fixed_mask"] = coarse.mask
    cand, _, _, _ = _rigid_from(coarse, _after(rigid, mirror), short, shrink=(2, 1), sigmas=(1, 0),
                                progress=progress, name="left-right check")
    return cand


def _check_left_right(prep: _Prepared, rigid: sitk.Transform, common: dict, qc: RegistrationQC,
                      progress: _Progress | None, cand: sitk.Transform | None = None) -> None:
    """Compare ``rigid`` with the mirrored fit (:func:`_mirrored_fit`; ``cand`` when already made from this
    ``rigid``) by MI on a 4 mm grid: the mirrored fit clearly better fails ``qc`` (``mirrored_lr``); about as good
    adds a note that left and right cannot be told apart; clearly worse confirms the side (``lr_margin`` > 0)."""
    if cand is None:
        cand = _mirrored_fit(prep, rigid, common, progress)
    mi4 = _coarse_mi(prep, 4.0)
    mi, mi_m = mi4(rigid), mi4(cand)
    margin = (mi - mi_m) / mi if mi > 0 else 0.0
    qc.numbers["mi_mirrored_lr"] = mi_m
    qc.numbers["lr_margin"] = margin
    if margin < -LR_MARGIN:
        qc.add_finding("fail", "mirrored_lr", f"the PET looks mirrored left-right: mirrored, it fits the MRI clearly "
                                              f"better (MI {mi_m:.3f} vs {mi:.3f}); check its header")
    elif margin < LR_MARGIN and qc.numbers.get("rotation_deg", 0.0) >= LR_TURN_DEG:
        # a header that turned the PET by 90 or 180 degrees is wrong, and may be wrong in its handedness too (a flip,
        # a swap of two axes): a flipped PET aligns as a turn with left and right swapped, and the images cannot tell
        qc.add_finding("fail", "left_right_unknown", f"left and right of the registered PET are unknown: its header "
                                                     f"is off by a {qc.numbers['rotation_deg']:.0f} deg turn, so it "
                                                     f"cannot be trusted to say which side is which, and the images "
                                                     f"cannot either (the PET mirrored left-right fits as well: MI on "
                                                     f"a 4 mm grid {mi_m:.3f} vs {mi:.3f}); if the header flipped an axis rather "
                                                     f"than turned it, left and right are now swapped: fix the header")
    elif margin < LR_MARGIN:
        qc.add_finding("note", "note", f"left and right cannot be told apart from these images (the PET mirrored "
                                       f"left-right fits as well: MI on a 4 mm grid {mi_m:.3f} vs {mi:.3f}); only "
                                       f"the headers say which side is which")


def _multistart(prep: _Prepared, common: dict, starts: list[np.ndarray], *, keep: int = 4,
                progress: _Progress | None = None) -> tuple[sitk.Transform, float, int, str, int]:
    """Try every start orientation of ``starts``: MI on a 6 mm grid for each, a short coarse registration (8 and
    4 mm) of the best ``keep``, then the refinement (4 and 2 mm) of the best of those by MI on a 4 mm grid."""
    c = np.asarray(prep.init.GetCenter())
    t = np.asarray(prep.init.GetTranslation())
    mi6 = _coarse_mi(prep, 6.0)
    # x -> m (x - c) + c + t: the MRI's centre of mass still goes to the PET's, the axes turned by m
    scored = sorted(((mi6(_affine(m, c, t)), i) for i, m in enumerate(starts)), key=lambda x: (-x[0], x[1]))
    mi4 = _coarse_mi(prep, 4.0)
    short = dict(common, iterations=min(common["iterations"], 50))
    tried = []
    for _, i in scored[:keep]:
        tfm, _, _, _ = _rigid_from(prep, _affine(starts[i], c, t), short, shrink=(4, 2), sigmas=(2, 1),
                                   progress=progress, name="multi-start search")
        tried.append((mi4(tfm), i, tfm))
    tried.sort(key=lambda x: (-x[0], x[1]))
    _, best, coarse = tried[0]
    tfm, metric, n_iter, stop = _rigid_from(prep, coarse, common, shrink=(2, 1), sigmas=(1, 0), progress=progress,
                                            name="multi-start refinement")
    return tfm, metric, n_iter, stop, start_name(starts[best]), len(starts)


_UNUSABLE = {"pet_noise", "pet_spacing", "signal_volume", "same_kind", "swapped"}


@dataclass
class _Rigid:
    """The rigid stage's current result, replaced step by step by better ones.

    Attributes:
        transform: the rigid transform (MRI points to PET points).
        metric: its Mattes MI (SimpleITK sign); ``nan`` when it was not optimised (the headers' alignment).
        n_iter: optimizer iterations of its last stage.
        stop: the optimizer's stop description.
        qc: its quality verdict (``None`` when not assessed).
        start: where its search started (see :class:`RegistrationResult`).
        continued: continuations from a better deliberate misalignment.
        tried: orientations tried by the multi-start search (0 when it did not run).
        qc_plain: the verdict of the plain result when the multi-start search ran.
    """

    transform: sitk.Transform
    metric: float
    n_iter: int
    stop: str
    qc: RegistrationQC | None = None
    start: str = "moments"
    continued: int = 0
    tried: int = 0
    qc_plain: RegistrationQC | None = None


def _check_head(head: Any, mri: sitk.Image) -> None:
    """Check a caller's head mask: an image on the MRI's grid with at least one voxel in the head (>= 0.5).

    Raises:
        TypeError: when it is not a SimpleITK image.
        ValueError: off the MRI grid (sizes, spacings, origins quoted) or empty.
    """
    if not isinstance(head, sitk.Image):
        raise TypeError(f"head must be a SimpleITK image (head_mask(mri)) or None, got {type(head).__name__}")
    if head.GetSize() != mri.GetSize() or not (np.allclose(head.GetSpacing(), mri.GetSpacing())
                                               and np.allclose(head.GetOrigin(), mri.GetOrigin(), atol=1e-4)
                                               and np.allclose(head.GetDirection(), mri.GetDirection(), atol=1e-6)):
        raise ValueError(f"head must be on the MRI grid, got size {head.GetSize()} spacing {head.GetSpacing()} origin "
                         f"{head.GetOrigin()} vs the MRI's {mri.GetSize()} {mri.GetSpacing()} {mri.GetOrigin()}")
    if not np.any(sitk.GetArrayViewFromImage(head) >= 0.5):
        raise ValueError(f"head has no voxel in the head (no value >= 0.5 in size {head.GetSize()}): give "
                         f"head_mask(mri) or None")


#: the resampling interpolators of :func:`resample_to_reference`
INTERPOLATORS = tuple(_INTERPOLATORS)


def check_registration_options(method: str = "rigid", *, seed: int = 0, sampling: float | None = None,
                               iterations: int = 200, use_mask: bool = True, bspline_mesh: int = 4,
                               bspline_iterations: int = 30, bspline_bound_mm: float = 1.0, threads: int | None = 1,
                               finest_mm: float | None = None, multistart: str = "auto", mirrors: bool = False,
                               assess: bool = True, check_mirror: bool = True, progress: bool = False) -> None:
    """Check the settings of :func:`register_pet_to_mri` other than its images (its own defaults for those not given),
    before any image is read: what a transform checks when it is built.

    Raises:
        TypeError: a setting that :func:`register_pet_to_mri` does not have (Python's own message).
        ValueError: for the first bad setting, its value quoted.
    """
    if threads is not None and not (is_int(threads) and threads >= 1):
        raise ValueError(f"threads must be None or an integer >= 1, got {threads!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (is_int(seed) and 0 <= seed < 2**31 - 1):
        raise ValueError(f"seed must be an integer in [0, 2**31 - 2], got {seed!r}")
    if sampling is not None and not (is_real(sampling) and 0 < sampling <= 1):
        raise ValueError(f"sampling must be in (0, 1], got {sampling!r}")
    if not (is_int(iterations) and iterations >= 1):
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    if not (is_int(bspline_mesh) and bspline_mesh >= 1):
        raise ValueError(f"bspline_mesh must be a positive integer, got {bspline_mesh!r}")
    if not (is_int(bspline_iterations) and bspline_iterations >= 1):
        raise ValueError(f"bspline_iterations must be a positive integer, got {bspline_iterations!r}")
    if not (is_real(bspline_bound_mm) and math.isfinite(bspline_bound_mm) and bspline_bound_mm > 0):
        raise ValueError(f"bspline_bound_mm must be a finite number > 0, got {bspline_bound_mm!r}")
    if finest_mm is not None and not (is_real(finest_mm) and math.isfinite(finest_mm) and finest_mm > 0):
        raise ValueError(f"finest_mm must be None or a finite number > 0, got {finest_mm!r}")
    if multistart not in MULTISTART:
        raise ValueError(f"multistart must be one of {MULTISTART}, got {multistart!r}")
    for name, value in (("use_mask", use_mask), ("mirrors", mirrors), ("assess", assess),
                        ("check_mirror", check_mirror), ("progress", progress)):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}")
    if multistart == "auto" and not assess:
        raise ValueError("multistart='auto' needs assess=True (the QC decides when to search)")


def _check_arguments(mri: sitk.Image, pet: sitk.Image, method: str, *, head: sitk.Image | None = None,
                     **options: Any) -> None:
    """Check the arguments of :func:`register_pet_to_mri`.

    Raises:
        TypeError: an image that is not a SimpleITK image (its type quoted).
        ValueError: for the first bad argument, its value quoted.
    """
    for name, img in (("mri", mri), ("pet", pet)):
        if not isinstance(img, sitk.Image):
            raise TypeError(f"{name} must be a SimpleITK image, got {type(img).__name__}")
    check_registration_options(method, **options)
    for name, img in (("mri", mri), ("pet", pet)):
        if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"{name} must be a scalar 3D image, got dimension {img.GetDimension()} with "
                f"{img.GetNumberOfComponentsPerPixel()} components"
            )
    if head is not None:
        _check_head(head, mri)
    if method != "none":
        thin = size_problem(mri.GetSize(), mri.GetSpacing(), pet.GetSize(), pet.GetSpacing(),
                            options.get("finest_mm"))
        if thin is not None:  # bad input, not a bad argument: one line on the command line too
            raise Asfe3dInputError(None, thin[1])
        for name, img in (("MRI", mri), ("PET", pet)):
            lo, hi = _value_range(img)
            if math.isnan(lo):
                raise Asfe3dInputError(None, f"{name} input has no finite voxel (size {img.GetSize()}): nothing to "
                                             f"register")
            if not hi > lo:
                raise Asfe3dInputError(None, f"{name} input is constant (every finite voxel {lo:g}): nothing to "
                                             f"register")


def _value_range(image: sitk.Image) -> tuple[float, float]:
    """The smallest and largest finite voxel of ``image`` (``(nan, nan)`` when none is finite)."""
    arr = sitk.GetArrayViewFromImage(image)
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
    if finite.size == 0:
        return float("nan"), float("nan")
    return float(finite.min()), float(finite.max())


def _set_up(prep: _Prepared, seed: int, sampling: float | None, iterations: int) -> dict:
    """The settings shared by every rigid registration of this run.

    Args:
        prep: the prepared images.
        seed: seed of the metric's random sampling.
        sampling: fraction of the fixed voxels sampled; ``None``: about :data:`TARGET_SAMPLES` points inside the
            (dilated) head at the finest level.
        iterations: maximum iterations per resolution level.

    Returns:
        The keyword arguments ``fixed_mask``, ``seed``, ``sampling`` and ``iterations`` of :func:`_stage`.
    """
    if sampling is None:
        inside = float(np.prod(prep.fixed.GetSize())) if prep.mask is None else float(
            np.count_nonzero(sitk.GetArrayViewFromImage(prep.mask)))
        sampling = float(min(1.0, TARGET_SAMPLES / max(inside, 1.0)))
    return dict(fixed_mask=prep.mask, seed=seed, sampling=sampling, iterations=iterations)


#: held while a registration runs under an ITK thread count of its own (:func:`itk_threads`)
_ITK_THREADS_LOCK = threading.RLock()


@contextmanager
def itk_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ITK's global default thread count at ``threads`` and restore it afterwards; ``None``:
    leave it as it is.

    The count is global to the process, so two registrations in two threads (a cohort's next subject registered
    beside this one while this one's is still running) would otherwise restore it under each other, and the later
    one would finish on every core, not bitwise reproducible. Blocks that set a count run one at a time.

    Args:
        threads: ITK threads (>= 1) for the block, or ``None``.
    """
    if threads is None:
        yield
        return
    with _ITK_THREADS_LOCK:
        previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
        try:
            yield
        finally:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def _mirrored_ahead(prep: _Prepared, rigid: sitk.Transform, common: dict) -> tuple[sitk.Transform, Future]:
    """Start the left-right check's mirrored fit of ``rigid`` (single-threaded ITK, the GIL released) beside the
    QC's measures of it; used when ``rigid`` stays the one kept (the usual case), made again otherwise.

    Returns:
        ``(rigid, future of its mirrored fit)``.
    """
    pool = ThreadPoolExecutor(1, thread_name_prefix="asfe3d-lr")
    ahead = (rigid, pool.submit(_mirrored_fit, prep, rigid, common, None))
    pool.shutdown(wait=False)  # the worker ends with its one task
    return ahead


def _try_header(mri: sitk.Image, pet: sitk.Image, prep: _Prepared, best: _Rigid) -> None:
    """Keep the headers' own alignment (a PET already on the MRI grid, or aligned by the scanner) in ``best``
    when the QC's MI prefers it to where the optimiser went, at a verdict no worse."""
    assert best.qc is not None
    header = sitk.Euler3DTransform()
    header.SetCenter(prep.init.GetCenter())
    mi4 = _coarse_mi(prep, 4.0)
    if mi4(header) > mi4(best.transform):
        h_qc = assess_registration(mri, pet, header, prep.head)
        if h_qc.numbers["mi"] > best.qc.numbers["mi"] and VERDICT_RANK[h_qc.verdict] <= VERDICT_RANK[best.qc.verdict]:
            logger.info("registration: the headers' alignment scores a higher MI (%.4f) than the optimiser's "
                        "result (%.4f): kept", h_qc.numbers["mi"], best.qc.numbers["mi"])
            best.transform, best.metric, best.n_iter, best.qc, best.start = header, float("nan"), 0, h_qc, "header"
            best.stop = "the headers' alignment scored a higher MI than the optimiser's result"


def _continue_from_better(mri: sitk.Image, pet: sitk.Image, prep: _Prepared, common: dict, best: _Rigid,
                          bar: _Progress) -> None:
    """Continue the rigid optimisation from the better point that the QC's MI landscape found (twice at most),
    keeping in ``best`` what scores the higher MI, so that the verdict judges an optimum of its own measure."""
    while best.qc is not None and best.qc.better_start is not None and best.continued < 2:
        best.continued += 1
        c_tfm, c_metric, c_iter, c_stop = _rigid_from(prep, best.qc.better_start, common, shrink=(2, 1),
                                                      sigmas=(1, 0), progress=bar,
                                                      name="continued from a better start")
        c_qc = assess_registration(mri, pet, c_tfm, prep.head)
        logger.info("registration continued from a better misalignment: MI %.4f -> %.4f", best.qc.numbers["mi"],
                    c_qc.numbers["mi"])
        if not c_qc.numbers["mi"] > best.qc.numbers["mi"]:
            break
        best.transform, best.metric, best.n_iter, best.stop, best.qc = c_tfm, c_metric, c_iter, c_stop, c_qc


def _register_in_head_region(mri: sitk.Image, pet: sitk.Image, prep: _Prepared, best: _Rigid, method: str,
                             options: dict, start: float) -> RegistrationResult | None:
    """When the plain result failed the QC and the PET's field of view is much larger than the MRI's head (a
    whole-body PET), find the head in the PET (:func:`asfe3d.registration.fov.locate_head`) and register the PET's
    box around it (the same ``options``); that result, with a note and the seconds since ``start`` (a
    :func:`time.perf_counter`), when its verdict is better, else ``None``."""
    qc = best.qc
    if qc is None or qc.verdict != "fail" or set(qc.flags) & {"pet_noise", "pet_spacing"}:
        return None
    centre, size = head_extent(prep.head)
    if not large_fov(pet, size):
        return None
    mi6 = _coarse_mi(prep, 6.0)
    region = locate_head(prep.moving, centre, size, mi6(prep.init), mi6)
    if region is None:
        logger.info("registration: no place in the PET's large field of view fits the head better than its centre")
        return None
    logger.info("registration: the head found in the PET's large field of view at %.0f mm along axis %d (coarse MI "
                "%.4f against %.4f at the centres of mass); registering its box %s + %s", region.position_mm,
                region.axis, region.mi, region.mi_start, region.index, region.size)
    sub = register_pet_to_mri(mri, region.crop(pet), method, **options)
    if sub.qc is None or not VERDICT_RANK[sub.qc.verdict] < VERDICT_RANK[qc.verdict]:
        return None
    sub.qc.add_finding("note", "note", region.describe(pet))
    sub.pet_region = (*region.index, *region.size)
    sub.seconds = time.perf_counter() - start
    return sub


def _search_if_failed(mri: sitk.Image, pet: sitk.Image, prep: _Prepared, common: dict, best: _Rigid, *,
                      multistart: str, mirrors: bool, assess: bool, bar: _Progress) -> None:
    """Run the multi-start search (:func:`_multistart`) with ``"always"``, or with ``"auto"`` when the alignment
    failed on usable inputs (a noise PET or a wrong voxel size has no start that could fix it); its result
    replaces ``best`` only when its verdict is better (or, without QC, when its MI is higher)."""
    qc = best.qc
    alignment_failed = qc is not None and qc.verdict == "fail" and bool(
        set(qc.flags) & {"mi_margin", "pet_in_head", "head_covered"}) and not (set(qc.flags) & _UNUSABLE)
    if not (multistart == "always" or (multistart == "auto" and alignment_failed)):
        return
    best.qc_plain = qc
    # the axis-aligned starts first (the cube's turns, single-axis pitch and roll: most header errors); the grid of
    # oblique ones only when none of those fits (it costs about 6 s of scoring on a 1-2 mm MRI)
    basic = start_orientations(mirrors=mirrors, oblique_step_deg=None)
    cand, c_metric, c_iter, c_stop, c_name, best.tried = _multistart(prep, common, basic, progress=bar)
    c_qc = assess_registration(mri, pet, cand, prep.head) if assess else None
    if c_qc is not None and c_qc.verdict == "fail":
        seen = {_orientation_key(m) for m in basic}
        oblique = [m for m in start_orientations() if _orientation_key(m) not in seen]
        o_cand, o_metric, o_iter, o_stop, o_name, o_tried = _multistart(prep, common, oblique, progress=bar)
        o_qc = assess_registration(mri, pet, o_cand, prep.head)
        best.tried += o_tried
        if VERDICT_RANK[o_qc.verdict] < VERDICT_RANK[c_qc.verdict]:
            cand, c_metric, c_iter, c_stop, c_name, c_qc = o_cand, o_metric, o_iter, o_stop, o_name, o_qc
    better = (VERDICT_RANK[c_qc.verdict] < VERDICT_RANK[qc.verdict]) if (c_qc is not None and qc is not None) \
        else c_metric < best.metric
    logger.info("registration multi-start: best start %r (%s) vs plain (%s)", c_name,
                c_qc.verdict if c_qc else "-", qc.verdict if qc else "-")
    if better:
        best.transform, best.metric, best.n_iter, best.stop, best.start, best.qc = (cand, c_metric, c_iter, c_stop,
                                                                                    c_name, c_qc)


def _beyond_rigid(prep: _Prepared, common: dict, best: _Rigid, method: str, *, bspline_mesh: int,
                  bspline_iterations: int, bspline_bound_mm: float, bar: _Progress) -> sitk.Transform:
    """The ``affine`` or ``deformable`` stage started from the rigid result (``best.metric``, ``best.n_iter`` and
    ``best.stop`` then describe that stage).

    Returns:
        The final transform (``best.transform`` itself for ``rigid``).
    """
    rigid = best.transform
    if method == "affine":
        affine = sitk.AffineTransform(3)
        affine.SetCenter(rigid.GetCenter())
        affine.SetMatrix(rigid.GetMatrix())
        affine.SetTranslation(rigid.GetTranslation())
        bar.stage("affine", 2)
        _, best.metric, best.n_iter, best.stop = _stage(prep.fixed, prep.moving, affine, shrink=(2, 1),
                                                        sigmas=(1, 0), optimizer="rsgd", progress=bar, **common)
        return affine
    if method == "deformable":
        bspline = sitk.BSplineTransformInitializer(prep.fixed, [bspline_mesh] * 3, order=3)
        bar.stage("deformable", 2)
        _, best.metric, best.n_iter, best.stop = _stage(prep.fixed, prep.moving, bspline, shrink=(4, 2),
                                                        sigmas=(2, 1), optimizer="lbfgsb",
                                                        bound_mm=bspline_bound_mm, moving_initial=rigid,
                                                        progress=bar, **dict(common, iterations=bspline_iterations))
        # the B-spline acts first (on MRI points), then the rigid transform
        return sitk.CompositeTransform([rigid, bspline])
    return rigid


def _reassess(mri: sitk.Image, pet: sitk.Image, transform: sitk.Transform, head: sitk.Image,
              qc: RegistrationQC | None) -> RegistrationQC:
    """The QC of the final (affine or deformable) ``transform``, with the left-right finding of the rigid stage's
    ``qc`` carried over (it still holds)."""
    lr = None if qc is None else [(f, r) for f, r in zip(qc.flags, qc.reasons)
                                  if f in ("mirrored_lr", "left_right_unknown", "note")]
    qc = assess_registration(mri, pet, transform, head)
    for flag, reason in lr or []:
        qc.add_finding("note" if flag == "note" else "fail", flag, reason)
    return qc


def _identity_result(mri: sitk.Image, pet: sitk.Image, head: sitk.Image | None, assess: bool,
                     start: float) -> RegistrationResult:
    """The result of method ``none`` (identity; judged by the QC with ``assess``), ``start`` its
    :func:`time.perf_counter` at the start."""
    identity = sitk.Transform(3, sitk.sitkIdentity)
    qc = assess_registration(mri, pet, identity, head_mask(mri) if head is None else head) if assess else None
    return RegistrationResult(identity, "none", float("nan"), 0, "identity", time.perf_counter() - start,
                              start="header", qc=qc)


def _left_right(mri: sitk.Image, pet: sitk.Image, prep: _Prepared, common: dict, best: _Rigid,
                mirrored_ahead: tuple[sitk.Transform, Future] | None, bar: _Progress) -> None:
    """The left-right check of ``best`` (:func:`_check_left_right`), with the mirrored fit started ahead
    (:func:`_mirrored_ahead`) when it was made from ``best.transform``.

    A mirrored fit that scores clearly better does not yet show a mirrored PET: the result may only have stopped
    short of its optimum (the optimiser out of iterations after a large turn), where the mirrored fit, started
    elsewhere, reached the brain's mirror-symmetric one. Before failing the PET as mirrored, the unmirrored result
    gets the same chance: it is continued (2 and 1 levels) from where it stopped and from the mirrored fit mirrored
    back; a continuation that scores a higher QC MI at a verdict no worse replaces ``best`` and is checked afresh.
    """
    from asfe3d.registration.qc import _after

    assert best.qc is not None
    ahead_for, ahead = mirrored_ahead if mirrored_ahead is not None else (None, None)
    cand = ahead.result() if ahead_for is best.transform else _mirrored_fit(prep, best.transform, common, bar)
    verdict_before = best.qc.verdict
    _check_left_right(prep, best.transform, common, best.qc, bar, cand)
    if "mirrored_lr" not in best.qc.flags:
        return
    mirror = _affine(np.diag([-1.0, 1.0, 1.0]), prep.init.GetCenter(), (0.0, 0.0, 0.0))
    tries = []
    for start in (best.transform, _after(cand, mirror)):
        tfm, metric, n_iter, stop = _rigid_from(prep, start, common, shrink=(2, 1), sigmas=(1, 0), progress=bar,
                                                name="left-right recheck")
        tries.append((assess_registration(mri, pet, tfm, prep.head), tfm, metric, n_iter, stop))
    qc, tfm, metric, n_iter, stop = max(tries, key=lambda t: t[0].numbers["mi"])  # the first on a tie
    if not (qc.numbers["mi"] > best.qc.numbers["mi"] and VERDICT_RANK[qc.verdict] <= VERDICT_RANK[verdict_before]):
        return
    logger.info("registration: continued before calling the PET mirrored: MI %.4f -> %.4f", best.qc.numbers["mi"],
                qc.numbers["mi"])
    best.transform, best.metric, best.n_iter, best.qc = tfm, metric, n_iter, qc
    best.stop = f"{stop} (continued after the left-right check)"
    _check_left_right(prep, best.transform, common, best.qc, bar)


def _result(transform: sitk.Transform, method: str, best: _Rigid, prep: _Prepared, start: float
            ) -> RegistrationResult:
    """Log and assemble the result: ``transform`` the final one, ``best`` the rigid stage's record (metric,
    iterations and stop of the last stage), ``start`` the :func:`time.perf_counter` at the start."""
    seconds = time.perf_counter() - start
    logger.info("registration %s: Mattes MI %.5f after %d iterations in %.1f s (%s; start %s)", method, best.metric,
                best.n_iter, seconds, best.stop, best.start)
    return RegistrationResult(transform, method, best.metric, best.n_iter, best.stop, seconds, start=best.start,
                              starts_tried=best.tried, qc=best.qc, qc_plain=best.qc_plain,
                              bin_factors=tuple(prep.factors), continued=best.continued)


#: NIfTI xform codes of template spaces (a brain normalised to a template: scaled and warped), by name
TEMPLATE_SPACE_CODES = {3: "Talairach", 4: "MNI152", 5: "a template"}


def template_space(info: Mapping[str, Any] | None) -> str | None:
    """The template space a NIfTI's header puts the image in (the xform code of the geometry used: 3 Talairach,
    4 MNI152, 5 another template), e.g. ``"MNI152 (sform_code 4)"``; ``None`` for scanner or aligned space, or an
    image without a NIfTI header."""
    code = (info or {}).get("nifti_space_code")
    if code not in TEMPLATE_SPACE_CODES:
        return None
    xform = "sform" if (info or {}).get("geometry_source") == "sform" else "qform"
    return f"{TEMPLATE_SPACE_CODES[code]} ({xform}_code {code})"


def template_mismatch(mri_info: Mapping[str, Any] | None, pet_info: Mapping[str, Any] | None) -> str | None:
    """When one image of the pair is in a template space and the other is not, a sentence that says which (a rigid
    fit cannot bring a native brain onto a normalised one: fMRIPrep's ``space-MNI..._desc-preproc_T1w`` with a
    native PET was 4.9 mm off on average, 12 mm at worst, and judged pass); else ``None``."""
    mri, pet = template_space(mri_info), template_space(pet_info)
    if (mri is None) == (pet is None):
        return None
    which, space = ("MRI", mri) if mri is not None else ("PET", pet)
    other = "PET" if which == "MRI" else "MRI"
    return (f"the {which} is in a template space, {space}, and the {other} is not: a rigid registration cannot bring "
            "a native brain onto a normalised (scaled, warped) one")


def resolve_method(method: str, mri_info: Mapping[str, Any] | None,
                   pet_info: Mapping[str, Any] | None) -> tuple[str, bool]:
    """The registration method a request means for this pair.

    Args:
        method: ``"auto"`` or one of :data:`METHODS`.
        mri_info: the MRI's reader provenance (:attr:`asfe3d.io.Volume.info`).
        pet_info: the PET's.

    Returns:
        ``(method, same_frame)``: ``"auto"`` becomes ``"none"`` for two DICOM series that share a
        FrameOfReferenceUID (aligned by the scanner), ``"affine"`` when one image is in a template space and the
        other is not (:func:`template_mismatch`), and ``"rigid"`` otherwise; ``same_frame`` says whether the two
        series share a frame of reference.
    """
    frame = (mri_info or {}).get("frame_of_reference_uid")
    same_frame = bool(frame) and frame == (pet_info or {}).get("frame_of_reference_uid")
    if method == "auto":
        if same_frame:
            method = "none"
        else:
            method = "affine" if template_mismatch(mri_info, pet_info) else "rigid"
    return method, same_frame


def register_pet_to_mri(
    mri: sitk.Image,
    pet: sitk.Image,
    method: str = "rigid",
    *,
    seed: int = 0,
    sampling: float | None = None,
    iterations: int = 200,
    use_mask: bool = True,
    head: sitk.Image | None = None,
    bspline_mesh: int = 4,
    bspline_iterations: int = 30,
    bspline_bound_mm: float = 1.0,
    threads: int | None = 1,
    finest_mm: float | None = None,
    multistart: str = "auto",
    mirrors: bool = False,
    assess: bool = True,
    check_mirror: bool = True,
    progress: bool = False,
) -> RegistrationResult:
    """Register a PET volume to an MRI volume (MRI fixed, PET moving) with Mattes mutual information.

    The MRI is first bin-averaged to the finest level that the PET carries information at (``finest_mm``: by
    default 2 mm, or the PET's voxel size when finer; never finer than the MRI), then: moments-centred
    initialisation, multi-resolution 4, 2, 1 of that grid with smoothing 2, 1, 0 voxels, regular-step gradient
    descent with scales from physical shift, reproducible random sampling, metric gradients by central differences:

    - ``rigid``: Euler3D transform;
    - ``affine``: the rigid result, then a 12-parameter affine transform initialised from it;
    - ``deformable``: the rigid result, then a coarse B-spline (``bspline_mesh`` mesh cells per axis over the MRI,
      bounded L-BFGS-B with control-point displacements limited to +-``bspline_bound_mm``, levels 4, 2), composed
      with the rigid transform (B-spline first, on MRI points, then the rigid transform);
    - ``none``: identity.

    With ``assess`` the rigid result is judged by :func:`asfe3d.registration.qc.assess_registration`; when it
    fails on the alignment checks (MI landscape, PET in the head, head coverage) while the PET itself looks usable,
    and ``multistart`` is ``"auto"`` (or always with ``"always"``), a multi-start search tries the 24 cube rotations,
    turns of 30 and 60 degrees about each axis and, with ``mirrors``, the 24 mirrored orientations
    (:func:`start_orientations`): MI on a 6 mm grid for each, a short registration of the best four, the
    refinement of the best of those by MI on a 4 mm grid. Its result replaces the plain one only when its QC
    verdict is better. Good pairs pay only for the QC (about 0.2-0.3 s on a 1 mm brain).

    Mirrors are off by default: a brain is nearly left-right symmetric, so every mirrored orientation fits about
    as well as a proper rotation followed by a left-right flip, and the images cannot tell which is true. A header
    flip is therefore recovered up to left and right, and reported by the QC as a large rotation to check.

    Args:
        mri: fixed image (3D, any pixel type).
        pet: moving image (3D).
        method: one of ``"rigid"``, ``"affine"``, ``"deformable"``, ``"none"``.
        seed: seed of the metric's random sampling, >= 0 (same inputs and seed give the same result; SimpleITK
            receives ``seed + 1`` because it reads 0 as "seed from the clock").
        sampling: fraction of the (binned) fixed voxels sampled per iteration, in (0, 1]; ``None`` (default)
            gives about :data:`TARGET_SAMPLES` samples inside the dilated head at the finest level.
        iterations: maximum iterations per resolution level.
        use_mask: restrict the metric to the MRI head (Otsu mask, dilated by about 2 mm).
        head: the MRI's :func:`head_mask` when the caller already has it (it is computed otherwise).
        bspline_mesh: B-spline mesh cells per axis (``deformable`` only).
        bspline_iterations: L-BFGS-B iterations per level (``deformable`` only).
        bspline_bound_mm: largest control-point displacement in mm (``deformable`` only); the bound keeps the
            coarse B-spline from fitting PET/MRI contrast differences instead of anatomy.
        threads: ITK threads while registering. ``1`` (default) makes the result bitwise reproducible (ITK's
            threaded metric sums in a varying order, which moves the parameters by ~1e-12 between runs and the
            fused voxels by ~1e-8); ``None`` uses ITK's default (all cores). The setting is process-wide while the
            registration runs.
        finest_mm: voxel size (mm) of the finest level, > 0; ``None`` (default): ``min(2, PET voxel size)``. The
            MRI is bin-averaged by ``finest_mm / MRI spacing`` rounded, per axis (1 = the MRI's own grid).
        multistart: ``"auto"`` (search when the plain result fails the QC), ``"always"`` or ``"never"``.
        mirrors: let the multi-start search try mirrored orientations (header flips) too; only useful for
            clearly asymmetric images.
        assess: judge the result (``result.qc``); needed by ``multistart="auto"``.
        check_mirror: with ``assess``, also register from the result mirrored left-right (briefly, 8 and 4 mm) and
            compare the MI: a clearly better mirrored fit fails the verdict (``mirrored_lr``); about the same fit
            adds a note that left and right cannot be told apart from these images.
        progress: show the registration's progress on stderr (stage, level, iteration, metric).

    Returns:
        :class:`RegistrationResult`; ``transform`` maps MRI points to PET points (an affine transform when a
        mirrored start won).

    Raises:
        ValueError: for an unknown ``method`` or bad parameters (quoted in the message).
        Asfe3dInputError: (a ``ValueError``) for images that cannot be registered, sizes or values quoted: a PET
            with fewer than 4 voxels along an axis or an MRI slab (:func:`size_problem`), a constant image.
    """
    options = {k: v for k, v in locals().items() if k not in ("mri", "pet", "method")}  # for a rerun on a crop
    _check_arguments(mri, pet, method, **options)
    start = time.perf_counter()
    if method == "none":
        return _identity_result(mri, pet, head, assess, start)
    bar = _Progress(progress)
    mirrored_ahead: tuple[sitk.Transform, Future] | None = None
    with itk_threads(threads):  # the count set (and restored) one registration at a time
        try:
            prep = _prepare(mri, pet, head, use_mask, finest_mm)
            common = _set_up(prep, seed, sampling, iterations)
            best = _Rigid(*_rigid_from(prep, None, common, shrink=(4, 2, 1), sigmas=(2, 1, 0), progress=bar))
            if assess and check_mirror:
                mirrored_ahead = _mirrored_ahead(prep, best.transform, common)
            best.qc = assess_registration(mri, pet, best.transform, prep.head) if assess else None
            in_region = _register_in_head_region(mri, pet, prep, best, method, dict(options, head=prep.head), start)
            if in_region is not None:
                return in_region
            if best.qc is not None and not set(best.qc.flags) & _UNUSABLE:
                _try_header(mri, pet, prep, best)
                _continue_from_better(mri, pet, prep, common, best, bar)
            _search_if_failed(mri, pet, prep, common, best, multistart=multistart, mirrors=mirrors, assess=assess, bar=bar)
            if best.qc is not None and check_mirror and not set(best.qc.flags) & {"pet_noise", "pet_spacing"}:
                _left_right(mri, pet, prep, common, best, mirrored_ahead, bar)
            transform = _beyond_rigid(prep, common, best, method, bspline_mesh=bspline_mesh,
                                      bspline_iterations=bspline_iterations, bspline_bound_mm=bspline_bound_mm, bar=bar)
            if assess and method != "rigid":
                best.qc = _reassess(mri, pet, transform, prep.head, best.qc)
        finally:
            if mirrored_ahead is not None:  # never left running past the thread setting it was started under
                mirrored_ahead[1].exception()
            bar.close()
    return _result(transform, method, best, prep, start)


def resample_to_reference(
    moving: sitk.Image,
    reference: sitk.Image,
    transform: sitk.Transform | None = None,
    interpolator: str = "linear",
    default_value: float = 0.0,
) -> sitk.Image:
    """Resample ``moving`` onto exactly the grid of ``reference`` (size, spacing, origin, direction).

    Args:
        moving: the image to resample (e.g. the PET).
        reference: the image whose grid is used (e.g. the MRI).
        transform: maps reference physical points to moving points (identity when ``None``).
        interpolator: ``"linear"``, ``"nearest"`` or ``"bspline"``.
        default_value: value outside the moving image.

    Returns:
        float32 image on the reference grid.

    Raises:
        ValueError: for an unknown ``interpolator`` or a non-finite ``default_value``.
    """
    if interpolator not in _INTERPOLATORS:
        raise ValueError(f"interpolator must be one of {tuple(_INTERPOLATORS)}, got {interpolator!r}")
    if not math.isfinite(default_value):
        raise ValueError(f"default_value must be finite, got {default_value!r}")
    tfm = sitk.Transform(3, sitk.sitkIdentity) if transform is None else transform
    return sitk.Resample(
        sitk.Cast(moving, sitk.sitkFloat32), reference, tfm, _INTERPOLATORS[interpolator], float(default_value),
        sitk.sitkFloat32,
    )


#: LPS <-> RAS (ITK's physical space is LPS; nibabel's and the record's are RAS)
_LPS = np.diag([*np.diag(LPS_TO_RAS), 1.0])  # 4x4, homogeneous


def linear_part_ras(transform: sitk.Transform) -> tuple[np.ndarray, bool]:
    """A transform's linear part as a 4x4 matrix in RAS millimetres (MRI world -> PET world, as the transform maps).

    What nibabel users apply: ``pet_world = M @ [*mri_world, 1]``. A composite transform (the deformable method's
    rigid + B-spline) gives the product of its linear members; its B-spline part is left out, and ``exact`` says so.

    Args:
        transform: a SimpleITK transform mapping MRI (fixed) points to PET (moving) points.

    Returns:
        ``(matrix, exact)``: ``(4, 4)`` float64, and whether the matrix is the whole transform.

    Raises:
        TypeError: ``transform`` is not a 3D SimpleITK transform.
    """
    if not isinstance(transform, sitk.Transform) or transform.GetDimension() != 3:
        raise TypeError(f"transform must be a 3D SimpleITK Transform, got {transform!r}")
    exact = bool(transform.IsLinear())
    linear = transform
    if not exact:
        members = []
        try:  # a composite, also one held as a plain Transform (read from a .tfm): GetName() says "Transform"
            composite = sitk.CompositeTransform(transform)
            members = [composite.GetNthTransform(i) for i in range(composite.GetNumberOfTransforms())]
        except (RuntimeError, TypeError):
            members = []
        linear = sitk.CompositeTransform([m for m in members if m.IsLinear()] or [sitk.Transform(3, sitk.sitkIdentity)])
    zero = np.asarray(linear.TransformPoint((0.0, 0.0, 0.0)))
    lps = np.eye(4)
    lps[:3, 3] = zero
    for k in range(3):
        unit = [0.0, 0.0, 0.0]
        unit[k] = 1.0
        lps[:3, k] = np.asarray(linear.TransformPoint(tuple(unit))) - zero
    return _LPS @ lps @ _LPS, exact


def transform_from_ras(matrix: np.ndarray) -> sitk.AffineTransform:
    """The SimpleITK transform (LPS) of a 4x4 RAS matrix that maps MRI world points to PET world points (the
    inverse of :func:`linear_part_ras` for a linear transform).

    Raises:
        ValueError: ``matrix`` not a finite 4x4 matrix whose last row is ``(0, 0, 0, 1)`` (quoted).
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)) or not np.array_equal(m[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"matrix must be a finite 4x4 affine (last row 0, 0, 0, 1), got {np.asarray(matrix).tolist()!r}")
    lps = _LPS @ m @ _LPS
    out = sitk.AffineTransform(3)
    out.SetMatrix(lps[:3, :3].ravel().tolist())
    out.SetTranslation(lps[:3, 3].tolist())
    return out


def overlap_fraction(
    mri: sitk.Image, pet_on_mri: sitk.Image, *, pet_threshold: float = 0.1, head: sitk.Image | None = None
) -> float:
    """Fraction of the MRI head (Otsu mask) where the resampled PET has signal (> ``pet_threshold`` x its p99).

    Args:
        mri: the MRI.
        pet_on_mri: the PET resampled onto the MRI grid.
        pet_threshold: PET signal threshold relative to the 99th percentile of its positive values.
        head: the MRI's :func:`head_mask` when the caller already has it (it is computed otherwise).

    Returns:
        the fraction in [0, 1] (0 for an empty head mask).
    """
    _check_grid(mri, pet_on_mri)
    head = sitk.GetArrayFromImage(head_mask(mri) if head is None else head).astype(bool)
    pet = sitk.GetArrayViewFromImage(pet_on_mri)
    if not head.any():
        return 0.0
    positive = pet[pet > 0]
    if positive.size == 0:
        return 0.0
    thr = pet_threshold * float(percentile(positive, 99.0))
    return float(np.count_nonzero((pet > thr) & head) / np.count_nonzero(head))


def _check_grid(a: sitk.Image, b: sitk.Image) -> None:
    if a.GetSize() != b.GetSize() or not (
        np.allclose(a.GetSpacing(), b.GetSpacing())
        and np.allclose(a.GetOrigin(), b.GetOrigin())
        and np.allclose(a.GetDirection(), b.GetDirection())
    ):
        raise ValueError(
            f"pet_on_mri must be on the MRI grid, got size {b.GetSize()} spacing {b.GetSpacing()} origin "
            f"{b.GetOrigin()} vs size {a.GetSize()} spacing {a.GetSpacing()} origin {a.GetOrigin()}"
        )


def check_overlap(
    mri: sitk.Image,
    pet_on_mri: sitk.Image,
    *,
    pet_path: str | Path | None = None,
    min_fraction: float = 0.3,
    head: sitk.Image | None = None,
    pet: sitk.Image | None = None,
    registered: bool = True,
) -> float:
    """Fail when the registered PET covers too little of the MRI's head.

    Args:
        mri: the MRI.
        pet_on_mri: the PET resampled onto the MRI grid.
        pet_path: the PET file, named in the error.
        min_fraction: smallest acceptable :func:`overlap_fraction`, in [0, 1].
        head: the MRI's :func:`head_mask` when the caller already has it (it is computed otherwise).
        pet: the PET on its own grid: when given, a refusal says so if the MRI's "head" is far larger than the
            PET's field of view (an MRI of head and body, for which no search for the PET's region is made).
        registered: whether a registration placed the PET (``False``: ``none``, the headers' placement; the refusal
            says so and does not call it a misregistration).

    Returns:
        the overlap fraction.

    Raises:
        ValueError: when ``min_fraction`` is outside [0, 1] or the images are not on one grid.
        Asfe3dInputError: when the fraction is below ``min_fraction``.
    """
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction!r}")
    frac = overlap_fraction(mri, pet_on_mri, head=head)
    if frac < min_fraction and not registered:
        raise Asfe3dInputError(
            pet_path,
            f"PET and MRI do not overlap as their headers place them (registration none: not registered; PET signal "
            f"covers {frac:.1%} of the MRI head, need at least {min_fraction:.0%}): register it (leave out "
            f"--registration none), or check the headers{_mri_beyond_head(mri if head is None else head, pet, head is None)}",
        )
    if frac < min_fraction:
        raise Asfe3dInputError(
            pet_path,
            f"PET and MRI do not overlap after registration (PET signal covers {frac:.1%} of the MRI head, "
            f"need at least {min_fraction:.0%}: a misregistration, or a PET whose field of view holds only part of "
            f"the head){_mri_beyond_head(mri if head is None else head, pet, head is None)}",
        )
    return frac


def _mri_beyond_head(image: sitk.Image, pet: sitk.Image | None, make_mask: bool) -> str:
    """``"; the MRI's head mask spans ..."`` when the MRI's foreground is far larger than the PET's field of view
    (:func:`asfe3d.registration.fov.much_larger`: ``large_fov``'s rule, the other way round), else ``""``."""
    if pet is None:
        return ""
    try:
        _, size = head_extent(head_mask(image) if make_mask else image)
    except ValueError:
        return ""
    fov = fov_mm(pet)
    if not much_larger(size, fov):
        return ""
    return (f"; the MRI's head mask spans {size:.0f} mm and the PET's field of view {fov:.0f} mm: an MRI of more "
            "than the head (head and body?) is not searched for the PET's region; crop the MRI to the head first "
            "(e.g. FSL's robustfov)")


def _mask_points(mask: sitk.Image, max_points: int, seed: int) -> np.ndarray:
    arr = sitk.GetArrayViewFromImage(mask)
    idx = np.argwhere(arr != 0)  # (z, y, x)
    if idx.shape[0] == 0:
        raise ValueError(f"mask has no non-zero voxel (size {mask.GetSize()})")
    if idx.shape[0] > max_points:
        idx = idx[np.random.default_rng(seed).choice(idx.shape[0], max_points, replace=False)]
    ijk = idx[:, ::-1].astype(float)
    direction = np.asarray(mask.GetDirection()).reshape(3, 3)
    return np.asarray(mask.GetOrigin()) + (ijk * np.asarray(mask.GetSpacing())) @ direction.T


def registration_error_mm(
    true_transform: sitk.Transform, estimated_transform: sitk.Transform, mask: sitk.Image, *,
    max_points: int = 20000, seed: int = 0,
) -> dict[str, float]:
    """Distance between where two transforms send the physical points of a mask's non-zero voxels.

    Args:
        true_transform: reference transform (MRI points -> PET points).
        estimated_transform: the estimate, same convention.
        mask: image whose non-zero voxels give the points (e.g. a brain mask on the MRI grid).
        max_points: random subsample size (fixed ``seed``).
        seed: subsampling seed.

    Returns:
        ``{"mean": ..., "median": ..., "max": ...}`` in mm.

    Raises:
        ValueError: when the mask is empty or ``max_points`` < 1.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points!r}")
    pts = _mask_points(mask, max_points, seed)
    a = np.array([true_transform.TransformPoint(p) for p in pts.tolist()])
    b = np.array([estimated_transform.TransformPoint(p) for p in pts.tolist()])
    d = np.linalg.norm(a - b, axis=1)
    return {"mean": float(d.mean()), "median": float(np.median(d)), "max": float(d.max())}
