"""Dynamic PET: rigid realignment of the frames before they are averaged, and the head motion of each frame.

Frames of a dynamic PET are low resolution and noisy, and the head moves between them by millimetres; averaging
them unaligned blurs the image. :func:`realign_frames` registers every frame rigidly to a reference (by default
the mean of all frames, registered twice: to the plain mean, then to the mean of the realigned frames; or one
frame), coarsely (on copies averaged over blocks of up to 6 mm; levels of 12 and 6 mm; Mattes mutual
information, which tolerates the changing contrast of a tracer's kinetics), resamples each frame onto the frames'
grid and reports each frame's motion: rotation (degrees), translation (mm) and the mean and largest displacement
(mm) of the head's voxels.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from asfe3d.registration.register import itk_threads, resample_to_reference
from asfe3d.utils import percentile

__all__ = ["realign_frames", "frame_motion", "mean_image"]

logger = logging.getLogger("asfe3d")

#: Coarsest and finest voxel size (mm) the frames are registered at (frames are first averaged over blocks of
#: about the finest size).
LEVELS_MM = (12.0, 6.0)
#: Voxels sampled per metric evaluation (at the finest level; all of them at coarser levels when fewer).
SAMPLES = 6000


def mean_image(frames: Sequence[sitk.Image], weights: Sequence[float] | None = None) -> sitk.Image:
    """Voxel-wise mean of 3D frames on one grid (float32, geometry of the first); with ``weights`` (one per
    frame, >= 0, not all 0; e.g. the frames' durations) the weighted mean."""
    acc = np.zeros(sitk.GetArrayViewFromImage(frames[0]).shape, dtype=np.float64)
    if weights is None:
        for f in frames:
            acc += sitk.GetArrayViewFromImage(f)
        acc /= len(frames)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(frames),) or not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
            raise ValueError(f"weights must be {len(frames)} finite numbers >= 0, not all 0, got {list(weights)!r}")
        for f, wk in zip(frames, w / w.sum()):
            acc += wk * sitk.GetArrayViewFromImage(f)
    out = sitk.GetImageFromArray(acc.astype(np.float32))
    out.CopyInformation(frames[0])
    return out


def _head_points(reference: sitk.Image, max_points: int = 4000) -> np.ndarray:
    """Physical points of the head (voxels above 20 % of the 99th percentile), at most ``max_points``."""
    arr = sitk.GetArrayViewFromImage(reference)
    thr = 0.2 * float(percentile(arr, 99))
    idx = np.argwhere(arr > thr)[:, ::-1]  # (x, y, z)
    if len(idx) == 0:
        idx = np.argwhere(np.ones_like(arr, dtype=bool))[:, ::-1]
    if len(idx) > max_points:
        idx = idx[np.linspace(0, len(idx) - 1, max_points).astype(int)]
    direction = np.asarray(reference.GetDirection()).reshape(3, 3)
    return np.asarray(reference.GetOrigin()) + (idx * np.asarray(reference.GetSpacing())) @ direction.T


def frame_motion(transform: sitk.Euler3DTransform, points: np.ndarray) -> dict[str, Any]:
    """Size of a rigid frame motion.

    Args:
        transform: maps reference points to the frame's points.
        points: ``(n, 3)`` physical points of the head.

    Returns:
        ``{"rotation_deg": [x, y, z], "translation_mm": [x, y, z], "mean_displacement_mm",
        "max_displacement_mm"}`` (displacements of ``points``).
    """
    moved = np.array([transform.TransformPoint(tuple(float(c) for c in p)) for p in points])
    disp = np.linalg.norm(moved - points, axis=1)
    return {
        "rotation_deg": [round(math.degrees(a), 3) for a in (transform.GetAngleX(), transform.GetAngleY(),
                                                             transform.GetAngleZ())],
        "translation_mm": [round(float(t), 3) for t in transform.GetTranslation()],
        "mean_displacement_mm": round(float(disp.mean()), 3),
        "max_displacement_mm": round(float(disp.max()), 3),
    }


def _coarse(img: sitk.Image) -> sitk.Image:
    """The frame averaged over blocks of at most :data:`LEVELS_MM` ``[-1]`` mm (registration works on these)."""
    factors = [max(1, int(LEVELS_MM[-1] / s + 1e-6)) for s in img.GetSpacing()]
    return sitk.BinShrink(img, factors) if max(factors) > 1 else img


def _register(fixed: sitk.Image, moving: sitk.Image, iterations: int, seed: int) -> sitk.Euler3DTransform:
    """Rigid registration of two coarse frames: levels :data:`LEVELS_MM`, Mattes MI, regular sampling.

    A frame the metric cannot use (e.g. an empty early frame) keeps the identity, with ``failed`` set on it.
    """
    tfm = sitk.Euler3DTransform()
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in fixed.GetSize()])
    tfm.SetCenter(centre)
    if float(np.ptp(sitk.GetArrayViewFromImage(moving))) == 0.0:
        tfm.failed = "constant frame"  # type: ignore[attr-defined]
        return tfm
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    reg.SetMetricSamplingPercentage(float(min(1.0, SAMPLES / float(np.prod(fixed.GetSize())))), seed + 1)
    reg.SetInterpolator(sitk.sitkLinear)
    spacing = min(fixed.GetSpacing())
    reg.SetShrinkFactorsPerLevel([max(1, int(round(mm / spacing))) for mm in LEVELS_MM])
    reg.SetSmoothingSigmasPerLevel([mm / 4.0 if i < len(LEVELS_MM) - 1 else 0.0 for i, mm in enumerate(LEVELS_MM)])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-3, numberOfIterations=iterations,
                                                 relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(tfm, inPlace=True)
    try:
        reg.Execute(fixed, moving)
    except RuntimeError as err:  # e.g. "too many samples map outside moving image buffer"
        tfm = sitk.Euler3DTransform()
        tfm.SetCenter(centre)
        tfm.failed = " ".join(str(err).split())[-160:]  # type: ignore[attr-defined]
    return tfm


def realign_frames(
    frames: Sequence[sitk.Image],
    *,
    reference: str | int = "mean",
    weights: Sequence[float] | None = None,
    iterations: int = 60,
    seed: int = 0,
    threads: int | None = 1,
) -> tuple[list[sitk.Image], list[dict[str, Any]]]:
    """Rigidly realign the frames of a dynamic PET to a reference.

    Args:
        frames: 3D frames on one grid (two or more).
        reference: ``"mean"`` (register to the mean of the frames, then again to the mean of the realigned frames;
            motions are then expressed relative to frame 0, whose pose the output keeps, as SPM's realignment
            does) or a 0-based frame index (register to that frame, whose pose the output keeps; its motion is 0).
        weights: the frames' weights in that mean (e.g. their durations; :func:`mean_image`); ``None``: equal.
        iterations: optimiser iterations per resolution level.
        seed: seed of the metric's sampling (same inputs and seed give the same result).
        threads: ITK threads while registering (``1``: bitwise reproducible; ``None``: ITK's default).

    Returns:
        ``(aligned, motion)``: the frames resampled onto the frames' grid in the reference pose (linear, 0
        outside), and one :func:`frame_motion` dict per frame (with ``"frame"`` added), relative to that pose.

    Raises:
        ValueError: fewer than 2 frames, frames on different grids, or bad arguments (quoted).
    """
    if len(frames) < 2:
        raise ValueError(f"frames must hold 2 or more 3D images, got {len(frames)}")
    first = frames[0]
    for k, f in enumerate(frames):
        if f.GetDimension() != 3 or f.GetSize() != first.GetSize() or not (
            np.allclose(f.GetSpacing(), first.GetSpacing()) and np.allclose(f.GetOrigin(), first.GetOrigin())
            and np.allclose(f.GetDirection(), first.GetDirection())
        ):
            raise ValueError(f"frame {k} is not a 3D image on the grid of frame 0")
    if not (reference == "mean" or (isinstance(reference, (int, np.integer)) and not isinstance(reference, bool)
                                    and 0 <= int(reference) < len(frames))):
        raise ValueError(f"reference must be 'mean' or a frame index in [0, {len(frames) - 1}], got {reference!r}")
    if not (isinstance(iterations, int) and iterations >= 1):
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    start = time.perf_counter()
    frames = [sitk.Cast(f, sitk.sitkFloat32) for f in frames]
    with itk_threads(threads):  # one registration's thread count at a time (see itk_threads)
        coarse = [_coarse(f) for f in frames]
        if reference == "mean":
            target = mean_image(coarse, weights)
            transforms = [_register(target, f, iterations, seed) for f in coarse]
            target = mean_image([_resample(f, target, t) for f, t in zip(coarse, transforms)], weights)
            transforms = [_register(target, f, iterations, seed) for f in coarse]
        else:
            target = coarse[int(reference)]
            transforms = [
                sitk.Euler3DTransform() if k == int(reference) else _register(target, f, iterations, seed)
                for k, f in enumerate(coarse)
            ]
    raw_transforms = list(transforms)
    if reference == "mean":  # express every motion relative to frame 0: the output keeps frame 0's pose
        transforms = [_compose_inverse(t, transforms[0]) for t in transforms]
    aligned = [_resample(f, frames[0], t) for f, t in zip(frames, transforms)]
    points = _head_points(frames[0] if reference == "mean" else frames[int(reference)])
    motion = []
    for k, (tfm, raw) in enumerate(zip(transforms, raw_transforms)):
        record = {"frame": k, **frame_motion(tfm, points)}
        if getattr(raw, "failed", None):
            record["registration_failed"] = raw.failed
            logger.warning("frame %d could not be realigned (%s); kept as it is", k, raw.failed)
        motion.append(record)
    logger.info(
        "realigned %d frames to %s in %.1f s; mean head displacement per frame (mm): %s", len(frames),
        "their mean" if reference == "mean" else f"frame {reference}", time.perf_counter() - start,
        ", ".join(f"{m['mean_displacement_mm']:.2f}" for m in motion),
    )
    return aligned, motion


def _compose_inverse(tfm: sitk.Euler3DTransform, base: sitk.Euler3DTransform) -> sitk.Euler3DTransform:
    """``tfm o base^-1`` as one Euler transform (same centre as ``tfm``)."""

    def matrix(t: sitk.Euler3DTransform) -> np.ndarray:
        m = np.eye(4)
        rot = np.asarray(t.GetMatrix()).reshape(3, 3)
        c = np.asarray(t.GetCenter())
        m[:3, :3] = rot
        m[:3, 3] = c + np.asarray(t.GetTranslation()) - rot @ c
        return m

    full = matrix(tfm) @ np.linalg.inv(matrix(base))
    out = sitk.Euler3DTransform()
    centre = np.asarray(tfm.GetCenter())
    out.SetCenter(tuple(float(v) for v in centre))
    out.SetMatrix(tuple(float(v) for v in full[:3, :3].ravel()), 1e-6)
    out.SetTranslation(tuple(float(v) for v in full[:3, 3] - centre + full[:3, :3] @ centre))
    return out


def _resample(moving: sitk.Image, reference: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    return resample_to_reference(moving, reference, transform, "linear", 0.0)
