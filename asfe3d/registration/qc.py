"""Quality control of a finished PET-to-MRI registration: a verdict judged on several numbers, not on MI alone.

Mutual information alone does not separate good from failed registrations across pairs (a correct cross-subject
registration on a whole-head T1 and a failed 90-degree one score alike), so :func:`assess_registration` looks at
the same pair in several ways, on a coarse grid (about 4 mm) so that it costs a fraction of a second:

- **MI landscape**: the histogram mutual information of the result against the same images deliberately
  misaligned (shifts and rotations about the head's centre). A correct registration is a clear peak; a failed one
  (noise, a non-brain PET, a wrong local optimum) is barely better than, or worse than, its perturbations.
- **PET signal vs the MRI head**: the fraction of the PET's signal (voxels above a fraction of its 99th percentile,
  counted in mm^3 over the PET's whole field of view) that lands inside the MRI head mask, and the fraction of the
  head the signal covers.
- **Transform size**: rotation angle, scaling and mirroring of the transform's linear part, against plausible head
  motion (large rotations come from wrong headers, not from heads).
- **Input sanity**: PET voxel size and field of view, the PET's spatial smoothness (a PET is blurred by its point
  spread function; noise is not), and the volume of its signal against the volume of the MRI head.

The thresholds live in :class:`QCThresholds`; ``docs/registration.md`` gives the false-alarm and miss rates they
reach on simulated, cross-template and deliberately broken pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import SimpleITK as sitk

from asfe3d.io.convert import numpy_xyz_to_sitk, sitk_to_numpy_xyz
from asfe3d.utils import outlier_limit, percentile

__all__ = ["ANATOMIES", "QCThresholds", "RegistrationQC", "VERDICTS", "anatomy_of", "assess_registration",
           "transform_size", "with_unmeasured"]

VERDICTS = ("pass", "warn", "fail")
#: what the MRI (or CT) shows, as judged by :func:`anatomy_of`: the checks that depend on it differ
ANATOMIES = ("head", "body")

#: a foreground wider than this (mm, second-largest extent of its bounding box) is a torso or whole body, not a head
BODY_WIDTH_MM = 240.0


@dataclass(frozen=True)
class QCThresholds:
    """Limits used by :func:`assess_registration` (each one names the number of :attr:`RegistrationQC.numbers`).

    Attributes:
        min_mi_margin: ``mi_margin`` below this fails (the result is not clearly better than its perturbations).
        warn_mi_margin: ``mi_margin`` below this warns.
        min_pet_in_head: ``pet_in_head`` below this fails (PET signal lands outside the MRI head).
        warn_pet_in_head: ``pet_in_head`` below this warns.
        min_head_covered: ``head_covered`` below this fails (the PET signal covers too little of the head), unless
            the PET's field of view holds only part of the head (``head_in_pet_fov``) and the signal covers at least
            this share of that part (``head_covered_in_fov``): then it warns (a partial field of view).
        min_head_in_fov: ``head_in_pet_fov`` (share of the head inside the PET's field of view) below this fails
            when ``head_covered`` is below ``min_head_covered`` (the PET sees too little of the head to judge).
        warn_head_in_fov: ``head_in_pet_fov`` below this warns (``pet_fov``) also when the signal covers enough of
            the head: a 5 cm slab (43 % of a whole head) passed without a word while a top half (40 %) warned.
        min_smoothness: ``pet_smoothness`` below this fails (the PET looks like noise).
        signal_volume_range: allowed ``signal_volume_ratio`` (PET signal volume / MRI head volume); outside fails.
        spacing_range_mm: allowed PET voxel size in mm; outside fails.
        warn_rotation_deg: ``rotation_deg`` above this warns (beyond plausible head motion: a header to check).
        scale_range: allowed singular values of the transform's linear part; outside fails.
        warn_scale_gain: ``scale_gain`` (the MI gained by stretching the found alignment by 10 % along an axis, or
            all three) above this warns: a voxel size in the PET's header may be wrong (right pairs: -0.31 to
            +0.014, two brain templates of different sizes 0.08-0.09).
        max_scale_gain: ``scale_gain`` above this fails (10-20 % wrong voxel sizes gained 0.19-0.69 in our cases,
            3.5-6 mm off; 5 % on all axes 0.107).
        max_same_kind: ``same_kind`` (correlation of the MRI and the registered PET inside the head, both at 6 mm)
            above this fails: one image, or a copy of it, given as both (0.997-1.00 in our cases); real MRI-PET
            pairs -0.6 to 0.97 (0.96-0.97: an amyloid-negative PET on a skull-stripped T1).
    """

    min_mi_margin: float = 0.05
    warn_mi_margin: float = 0.08
    min_pet_in_head: float = 0.75
    warn_pet_in_head: float = 0.85
    min_head_covered: float = 0.3
    min_head_in_fov: float = 0.1
    warn_head_in_fov: float = 0.5
    min_smoothness: float = 0.3
    signal_volume_range: tuple[float, float] = (0.2, 2.5)
    spacing_range_mm: tuple[float, float] = (0.3, 12.0)
    warn_rotation_deg: float = 30.0
    scale_range: tuple[float, float] = (0.8, 1.25)
    warn_scale_gain: float = 0.15
    max_scale_gain: float = 0.18
    max_same_kind: float = 0.985

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ValueError(f"QCThresholds.{f.name} must be finite, got {value!r}")
            if isinstance(value, tuple) and not (len(value) == 2 and 0 <= value[0] < value[1]):
                raise ValueError(f"QCThresholds.{f.name} must be a (low, high) pair with 0 <= low < high, got {value!r}")
        if not self.min_mi_margin <= self.warn_mi_margin:
            raise ValueError(
                f"QCThresholds.min_mi_margin ({self.min_mi_margin!r}) must not exceed warn_mi_margin "
                f"({self.warn_mi_margin!r})"
            )
        if not self.warn_scale_gain <= self.max_scale_gain:
            raise ValueError(
                f"QCThresholds.warn_scale_gain ({self.warn_scale_gain!r}) must not exceed max_scale_gain "
                f"({self.max_scale_gain!r})"
            )
        if not self.min_head_in_fov <= self.warn_head_in_fov:
            raise ValueError(
                f"QCThresholds.min_head_in_fov ({self.min_head_in_fov!r}) must not exceed warn_head_in_fov "
                f"({self.warn_head_in_fov!r})"
            )
        if not self.min_pet_in_head <= self.warn_pet_in_head:
            raise ValueError(
                f"QCThresholds.min_pet_in_head ({self.min_pet_in_head!r}) must not exceed warn_pet_in_head "
                f"({self.warn_pet_in_head!r})"
            )


@dataclass
class RegistrationQC:
    """The verdict on one registration.

    Attributes:
        verdict: ``"pass"``, ``"warn"`` (usable, but look at it) or ``"fail"`` (do not trust the fusion).
        reasons: one short sentence per finding that made the verdict worse than ``"pass"`` (empty on a pass),
            then the :attr:`notes`.
        numbers: every measured number (``mi``, ``mi_margin``, ``pet_in_head``, ``head_covered``,
            ``rotation_deg``, ...), for logs and cohort summaries.
        flags: the name of the check behind each reason, same order (``pet_spacing``, ``pet_noise``,
            ``signal_volume``, ``scale``, ``mi_margin``, ``pet_in_head``, ``head_covered``, ``pet_fov``, ``rotation``,
            ``mirrored``, ``mirrored_lr``, ``left_right_unknown``), then ``note`` once per note.
        anatomy: what the checks assumed the MRI shows: ``"head"`` or ``"body"`` (torso or whole body; the head
            coverage and signal-volume checks are then not applied).
        notes: what the checks could not tell (e.g. that left and right cannot be told apart from the images);
            they do not change the verdict but are part of :attr:`reasons`.
    """

    verdict: str
    reasons: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    anatomy: str = "head"
    notes: list[str] = field(default_factory=list)
    #: the deliberate misalignment that scored a higher MI than the judged transform (``None`` when none did): where
    #: :func:`asfe3d.registration.register_pet_to_mri` continues the optimisation from (not part of :meth:`as_dict`)
    better_start: sitk.Transform | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.anatomy not in ANATOMIES:
            raise ValueError(f"anatomy must be one of {ANATOMIES}, got {self.anatomy!r}")

    def add_finding(self, level: str, flag: str, text: str) -> None:
        """Add a finding found after :func:`assess_registration` (e.g. by the left-right check of the registration).

        Args:
            level: ``"fail"`` or ``"warn"`` (the verdict becomes at least that), or ``"note"`` (verdict unchanged; the
                text goes to :attr:`notes` and, last, to :attr:`reasons`).
            flag: the check's name (``"note"`` is used for notes).
            text: one short sentence.

        Raises:
            ValueError: for an unknown level.
        """
        if level == "note":
            self.notes.append(text)
            self.reasons.append(text)
            self.flags.append("note")
            return
        if level not in ("warn", "fail"):
            raise ValueError(f"level must be 'fail', 'warn' or 'note', got {level!r}")
        self.verdict = _worse(level, self.verdict)
        # fails first, then warnings, then notes
        at = 0 if level == "fail" else next((i for i, f in enumerate(self.flags) if f == "note"), len(self.flags))
        self.reasons.insert(at, text)
        self.flags.insert(at, flag)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy: ``{"verdict": ..., "reasons": [...], "numbers": {...}, "flags": [...]}`` (floats
        rounded to 4 digits)."""
        return {"verdict": self.verdict, "reasons": list(self.reasons),
                "numbers": {k: (round(v, 4) if math.isfinite(v) else None) for k, v in self.numbers.items()},
                "flags": list(self.flags), "anatomy": self.anatomy, "notes": list(self.notes)}

    def summary(self) -> str:
        """One line: the verdict, its reasons (or the key numbers on a pass)."""
        n = self.numbers
        key = (f"MI {n.get('mi', float('nan')):.3f} margin {n.get('mi_margin', float('nan')):+.3f}, "
               f"PET in {self.anatomy} {n.get('pet_in_head', float('nan')):.0%}, rotation "
               f"{n.get('rotation_deg', float('nan')):.0f} deg; judged as a {self.anatomy}")
        if not self.reasons:
            return f"registration QC {self.verdict}: {key}"
        return f"registration QC {self.verdict}: {'; '.join(self.reasons)} ({key})"


def _worse(a: str, b: str) -> str:
    return a if VERDICTS.index(a) >= VERDICTS.index(b) else b


def transform_size(transform: sitk.Transform, centre: tuple[float, float, float] | list[float]) -> dict[str, float]:
    """Size of a transform near a point: rotation angle, scales, mirroring and the displacement of the point.

    The linear part is estimated from the transform's action around ``centre`` (finite differences over 10 mm),
    so rigid, affine, composite and B-spline transforms are all handled; its polar decomposition gives the rotation.

    Args:
        transform: MRI points -> PET points.
        centre: a physical point (e.g. the head's centre of mass).

    Returns:
        ``rotation_deg`` (angle of the rotation part, 0-180), ``scale_min``/``scale_max`` (singular values),
        ``mirrored`` (1.0 when the determinant is negative, else 0.0), ``translation_mm`` (how far ``centre`` moves).

    Raises:
        ValueError: when ``centre`` is not three finite numbers.
    """
    c = np.asarray(centre, dtype=float)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ValueError(f"centre must be three finite coordinates, got {centre!r}")
    h = 10.0
    tc = np.asarray(transform.TransformPoint(c.tolist()))
    cols = []
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        cols.append((np.asarray(transform.TransformPoint((c + e).tolist()))
                     - np.asarray(transform.TransformPoint((c - e).tolist()))) / (2 * h))
    a = np.stack(cols, axis=1)
    if not np.all(np.isfinite(a)):
        return {"rotation_deg": float("nan"), "scale_min": float("nan"), "scale_max": float("nan"),
                "mirrored": float("nan"), "translation_mm": float("nan")}
    u, s, vt = np.linalg.svd(a)
    det = float(np.linalg.det(a))
    r = u @ vt
    if np.linalg.det(r) < 0:  # rotation part of a mirrored map: remove the reflection along the weakest axis
        u[:, -1] *= -1
        r = u @ vt
    angle = math.degrees(math.acos(float(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))
    return {"rotation_deg": angle, "scale_min": float(s.min()), "scale_max": float(s.max()),
            "mirrored": 1.0 if det < 0 else 0.0, "translation_mm": float(np.linalg.norm(tc - c))}


def anatomy_of(head: sitk.Image) -> str:
    """Whether an MRI/CT foreground mask is a head or a torso/whole body, from its physical extent.

    Args:
        head: the foreground mask (:func:`asfe3d.registration.head_mask`), 3D.

    Returns:
        ``"body"`` when the second-largest extent of the mask's bounding box exceeds :data:`BODY_WIDTH_MM` (a head
        is at most about 200 mm wide and deep; a torso is wider), else ``"head"`` (also for an empty mask).
    """
    inside = sitk.GetArrayViewFromImage(head) != 0  # (z, y, x)
    if not inside.any():
        return "head"
    # the bounding box's size in voxels along x, y, z, from the mask's projections on each axis
    sizes = []
    for axis in (2, 1, 0):
        hit = np.flatnonzero(inside.any(axis=tuple(a for a in range(3) if a != axis)))
        sizes.append(int(hit[-1] - hit[0] + 1))
    extents = sorted(float(n * s) for n, s in zip(sizes, head.GetSpacing()))
    return "body" if extents[1] > BODY_WIDTH_MM else "head"


def _coarse(image: sitk.Image, grid_mm: float) -> tuple[sitk.Image, list[int]]:
    factors = [max(1, int(round(grid_mm / s))) for s in image.GetSpacing()]
    if max(factors) == 1:
        return sitk.Cast(image, sitk.sitkFloat32), factors
    return sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors), factors


def _smoothness(pet: np.ndarray, support: np.ndarray) -> float:
    """Mean lag-1 correlation of the PET along its three axes over its support (1 = smooth, ~0 = white noise)."""
    corrs = []
    for axis in range(3):
        if pet.shape[axis] < 3:
            continue
        sl0 = [slice(None)] * 3
        sl1 = [slice(None)] * 3
        sl0[axis] = slice(0, -1)
        sl1[axis] = slice(1, None)
        both = support[tuple(sl0)] & support[tuple(sl1)]
        if np.count_nonzero(both) < 50:
            continue
        a = pet[tuple(sl0)][both].astype(np.float64)
        b = pet[tuple(sl1)][both].astype(np.float64)
        sa, sb = a.std(), b.std()
        if sa == 0 or sb == 0:
            corrs.append(1.0)  # constant over the support: smooth (a cube phantom), not noise
            continue
        corrs.append(float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb)))
    return float(np.mean(corrs)) if corrs else float("nan")


def _smoothness_scales(pet: np.ndarray) -> tuple[float, float]:
    """How far the PET is from white noise: the neighbour correlation (:func:`_smoothness`) over its support (above
    5 % of its 99th percentile), on its grid and on blocks of 2 voxels (NaN where it cannot be measured).

    An unfiltered low-count PET (a few counts in its hottest voxel) has neighbour correlations of 0.05-0.35 on its
    own grid, its head and brain showing only when a few voxels are averaged (0.5-0.7 on blocks of 2); white noise
    stays near 0 at every scale.
    """
    from asfe3d.registration.sharpness import block_mean

    out = []
    for f in (1, 2):
        a = pet if f == 1 else block_mean(pet, (f, f, f))
        if min(a.shape) < 3:
            out.append(float("nan"))
            continue
        positive = a[a > 0]
        p99 = float(percentile(positive, 99.0)) if positive.size else 0.0
        out.append(_smoothness(a, a > 0.05 * p99 if p99 > 0 else np.ones(a.shape, dtype=bool)))
    return out[0], out[1]


def _mutual_information(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    """Histogram mutual information (nats) of two integer-binned arrays with values in [0, bins)."""
    joint = np.bincount(a * bins + b, minlength=bins * bins).astype(np.float64).reshape(bins, bins)
    total = joint.sum()
    if total == 0:
        return 0.0
    p = joint / total
    pa = p.sum(axis=1, keepdims=True)
    pb = p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / (pa @ pb)[nz])))


def _quantise(values: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    if not hi > lo:
        return np.zeros(values.shape, dtype=np.int64)
    q = np.floor((values - lo) / (hi - lo) * bins).astype(np.int64)
    return np.clip(q, 0, bins - 1)


def _perturbations(centre: np.ndarray, shift_mm: float, rotation_deg: float) -> list[tuple[str, sitk.Transform]]:
    out: list[tuple[str, sitk.Transform]] = []
    for axis, name in enumerate("xyz"):
        for sign in (1.0, -1.0):
            t = sitk.Euler3DTransform()
            t.SetCenter(centre.tolist())
            shift = [0.0, 0.0, 0.0]
            shift[axis] = sign * shift_mm
            t.SetTranslation(shift)
            out.append((f"shift {name}{sign * shift_mm:+g} mm", t))
    for axis, name in enumerate("xyz"):
        for sign in (1.0, -1.0):
            t = sitk.Euler3DTransform()
            t.SetCenter(centre.tolist())
            angles = [0.0, 0.0, 0.0]
            angles[axis] = math.radians(sign * rotation_deg)
            t.SetRotation(*angles)
            out.append((f"rotate {name}{sign * rotation_deg:+g} deg", t))
    return out


#: the stretch :func:`_scalings` tries (10 %: a PET header's voxel size 10-20 % wrong leaves 3.5-6 mm of error)
SCALE_STEP = 0.1
#: the axes of :func:`_scalings`, in the MRI's physical (LPS) frame; 3 is all three at once
SCALE_AXES = ("left-right", "front-back", "up-down", "all three axes")


def _scalings(centre: np.ndarray, step: float = SCALE_STEP) -> list[tuple[int, float, sitk.Transform]]:
    """Stretches by ``1 +- step`` about ``centre`` along each physical axis and along all three: ``(axis, factor,
    transform)``, axis an index of :data:`SCALE_AXES`."""
    out = []
    for axis in range(4):
        for factor in (1.0 - step, 1.0 + step):
            t = sitk.ScaleTransform(3)
            t.SetScale([factor if axis in (k, 3) else 1.0 for k in range(3)])
            t.SetCenter(centre.tolist())
            out.append((axis, factor, t))
    return out


def _same_kind(mri_c: np.ndarray, pet_c: np.ndarray, head: np.ndarray, spacing: Sequence[float]) -> float:
    """Correlation of the coarse MRI and the PET on its grid inside the head, both blurred to 6 mm FWHM (``spacing``:
    the grid's ``(x, y, z)`` voxel size): near 1 when both are one kind of image."""
    from scipy.ndimage import gaussian_filter

    sigma = [6.0 / (2.0 * math.sqrt(2.0 * math.log(2.0))) / float(s) for s in spacing][::-1]
    a = gaussian_filter(np.asarray(mri_c, dtype=np.float32), sigma)[head]
    b = gaussian_filter(np.asarray(pet_c, dtype=np.float32), sigma)[head]
    if a.size < 10 or not a.std() > 0 or not b.std() > 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _affine_of(transform: sitk.Transform) -> np.ndarray | None:
    """The 4x4 matrix of a linear transform (from the images of four points), ``None`` for a non-linear one."""
    if not transform.IsLinear():
        return None
    pts = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 100.0]])
    img = np.array([transform.TransformPoint(p.tolist()) for p in pts])
    out = np.eye(4)
    out[:3, :3] = (img[1:] - img[0]).T / 100.0
    out[:3, 3] = img[0]
    return out


def _after(transform: sitk.Transform, first: sitk.Transform) -> sitk.Transform:
    """``first`` then ``transform``, as one affine transform when both are linear (resampling is then faster)."""
    a, b = _affine_of(transform), _affine_of(first)
    if a is None or b is None:
        return sitk.CompositeTransform([transform, first])
    m = a @ b
    out = sitk.AffineTransform(3)
    out.SetMatrix(m[:3, :3].ravel().tolist())
    out.SetTranslation(m[:3, 3].tolist())
    return out


def _check_image(name: str, image: Any) -> None:
    if not isinstance(image, sitk.Image):
        raise TypeError(f"{name} must be a SimpleITK image, got {type(image).__name__}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"{name} must be a scalar 3D image, got dimension {image.GetDimension()} with "
            f"{image.GetNumberOfComponentsPerPixel()} components"
        )


@dataclass
class _Signal:
    """The PET's signal, measured on its own grid.

    Attributes:
        positive: the finite positive PET values, shape (n,).
        thr: the signal threshold (``signal_fraction`` of the 99th percentile of ``positive``).
        signal_mm3: the volume above ``thr`` in mm^3.
        signal_mass: the PET's sum above ``thr`` times the voxel volume.
    """

    positive: np.ndarray
    thr: float
    signal_mm3: float
    signal_mass: float


@dataclass
class _Grid:
    """The coarse MRI grid the QC measures on.

    Attributes:
        mri_c: the bin-averaged MRI.
        head_arr: its head mask, shape (z, y, x), bool.
        region: the head dilated by one voxel, shape (z, y, x), bool.
        centre: the head's centre in physical coordinates (mm), shape (3,).
        voxel_mm3: the coarse voxel's volume.
    """

    mri_c: sitk.Image
    head_arr: np.ndarray
    region: np.ndarray
    centre: np.ndarray
    voxel_mm3: float


def _check_qc_arguments(mri: Any, pet: Any, transform: Any, head: Any, *, grid_mm: Any, shift_mm: Any,
                        rotation_deg: Any, signal_fraction: Any, bins: Any, thresholds: Any) -> QCThresholds:
    """Check the arguments of :func:`assess_registration`.

    Returns:
        The thresholds to use (``thresholds`` or the defaults).

    Raises:
        TypeError: for an argument of the wrong type (its type quoted).
        ValueError: for a bad parameter or a head mask not on the MRI grid (values quoted).
    """
    _check_image("mri", mri)
    _check_image("pet", pet)
    _check_image("head", head)
    if not isinstance(transform, sitk.Transform):
        raise TypeError(f"transform must be a SimpleITK transform, got {type(transform).__name__}")
    for name, value, lo, hi, lo_open in (
        ("grid_mm", grid_mm, 1.0, 16.0, False),
        ("shift_mm", shift_mm, 0.0, 50.0, True),
        ("rotation_deg", rotation_deg, 0.0, 45.0, True),
        ("signal_fraction", signal_fraction, 0.0, 1.0, True),
    ):
        ok = isinstance(value, (int, float)) and math.isfinite(value) and (lo < value if lo_open else lo <= value)
        if not (ok and value <= hi and not (name == "signal_fraction" and value >= 1.0)):
            raise ValueError(f"{name} must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {value!r}")
    if not (isinstance(bins, int) and 8 <= bins <= 256):
        raise ValueError(f"bins must be an integer in [8, 256], got {bins!r}")
    if head.GetSize() != mri.GetSize() or not np.allclose(head.GetSpacing(), mri.GetSpacing()) or not np.allclose(
        head.GetOrigin(), mri.GetOrigin()
    ):
        raise ValueError(
            f"head must be on the MRI grid, got size {head.GetSize()} spacing {head.GetSpacing()} vs the MRI's "
            f"{mri.GetSize()} {mri.GetSpacing()}"
        )
    th = QCThresholds() if thresholds is None else thresholds
    if not isinstance(th, QCThresholds):
        raise TypeError(f"thresholds must be a QCThresholds, got {type(th).__name__}")
    return th


#: a PET whose neighbour correlation on its own grid is below this is noisy (unfiltered, low count): its signal
#: and the MI landscape are judged on a copy smoothed by one voxel (:func:`_denoised`)
NOISY_SMOOTHNESS = 0.5


def _denoised(pet: sitk.Image, native: float) -> sitk.Image:
    """``pet`` itself, or, when it is noisy (``native``, its neighbour correlation on its grid, under
    :data:`NOISY_SMOOTHNESS`), a copy smoothed by a Gaussian of one voxel: the noise of an unfiltered low-count PET
    raised its 99th percentile, so its signal (above 30 % of it) covered 30 % of the head and a right registration
    (0.6 mm) failed."""
    if not native < NOISY_SMOOTHNESS:
        return pet
    return sitk.SmoothingRecursiveGaussian(pet, [float(s) for s in pet.GetSpacing()])


def _pet_checks(pet: sitk.Image, signal_fraction: float, th: QCThresholds, numbers: dict[str, float],
                reasons: list[tuple[str, str, str]]) -> tuple[_Signal, sitk.Image]:
    """Input sanity of the PET on its own grid (voxel size, noise), added to ``numbers`` and ``reasons``.

    Returns:
        The PET's signal (:class:`_Signal`) and the PET it was measured on (:func:`_denoised`).
    """
    pet_spacing = np.asarray(pet.GetSpacing(), dtype=float)
    numbers["pet_spacing_min_mm"] = float(pet_spacing.min())
    numbers["pet_spacing_max_mm"] = float(pet_spacing.max())
    lo_sp, hi_sp = th.spacing_range_mm
    if pet_spacing.min() < lo_sp or pet_spacing.max() > hi_sp:
        reasons.append(("fail", "pet_spacing", f"PET voxel size {tuple(round(float(s), 4) for s in pet_spacing)} mm is outside "
                                f"[{lo_sp:g}, {hi_sp:g}] mm (header?)"))
    native, blocks = _smoothness_scales(sitk.GetArrayViewFromImage(pet))  # finite: see assess_registration
    numbers["pet_smoothness_native"] = native
    numbers["pet_smoothness"] = native if not blocks > native else blocks  # the higher, NaN only when both are
    if not numbers["pet_smoothness"] >= th.min_smoothness:  # nan fails too
        reasons.append(("fail", "pet_noise", f"PET looks like noise (neighbour correlation {numbers['pet_smoothness']:.2f} < "
                                f"{th.min_smoothness:g})"))
    pet = _denoised(pet, native)
    pet_arr = sitk.GetArrayViewFromImage(pet).astype(np.float32, copy=False)
    finite = np.isfinite(pet_arr)
    positive = pet_arr[finite & (pet_arr > 0)]
    p99 = float(percentile(positive, 99.0)) if positive.size else 0.0
    thr = signal_fraction * p99
    signal = finite & (pet_arr > thr) if p99 > 0 else np.zeros(pet_arr.shape, dtype=bool)
    pet_voxel_mm3 = float(np.prod(pet_spacing))
    signal_mm3 = float(np.count_nonzero(signal)) * pet_voxel_mm3
    signal_mass = float(np.sum(pet_arr[signal], dtype=np.float64)) * pet_voxel_mm3
    return _Signal(positive, thr, signal_mm3, signal_mass), pet


def _head_checks(mri: sitk.Image, head: sitk.Image, grid_mm: float, anatomy: str, sig: _Signal,
                 th: QCThresholds, numbers: dict[str, float], reasons: list[tuple[str, str, str]]) -> _Grid:
    """The coarse MRI grid and head mask, and the PET signal's volume against the head's (added to ``numbers``
    and ``reasons``).

    Returns:
        The coarse grid (:class:`_Grid`).

    Raises:
        ValueError: when the head mask has no voxel on the coarse grid.
    """
    mri_c, factors = _coarse(mri, grid_mm)
    head_c = sitk.BinShrink(sitk.Cast(head, sitk.sitkFloat32), factors) if max(factors) > 1 else sitk.Cast(
        head, sitk.sitkFloat32)
    head_arr = sitk.GetArrayFromImage(head_c) > 0.5
    if not head_arr.any():
        raise ValueError(f"head mask has no voxel on the {grid_mm:g} mm grid (size {head.GetSize()})")
    voxel_mm3 = float(np.prod(mri_c.GetSpacing()))
    head_mm3 = float(np.count_nonzero(head_arr)) * voxel_mm3
    numbers["signal_volume_ratio"] = sig.signal_mm3 / head_mm3
    lo_v, hi_v = th.signal_volume_range
    if anatomy == "body":  # a PET's hot spots (brain, heart, bladder) fill a small part of a body: no lower limit
        lo_v = 0.0
    if not lo_v <= numbers["signal_volume_ratio"] <= hi_v:
        reasons.append(("fail", "signal_volume", f"PET signal volume is {numbers['signal_volume_ratio']:.3g} x the MRI head volume, "
                                f"outside [{lo_v:g}, {hi_v:g}] (voxel size or field of view wrong?)"))
    region = sitk.GetArrayFromImage(sitk.BinaryDilate(sitk.Cast(head_c > 0.5, sitk.sitkUInt8), [1, 1, 1])) > 0
    idx = np.argwhere(head_arr)[:, ::-1].astype(float).mean(axis=0)  # (x, y, z) index of the head's centre
    centre = np.asarray(mri_c.TransformContinuousIndexToPhysicalPoint(idx.tolist()))
    return _Grid(mri_c, head_arr, region, centre, voxel_mm3)


def _transform_checks(transform: sitk.Transform, centre: np.ndarray, th: QCThresholds,
                      numbers: dict[str, float], reasons: list[tuple[str, str, str]]) -> None:
    """The transform's size about the head's ``centre`` (rotation, mirroring, scale), added to ``numbers`` and
    ``reasons``."""
    size = transform_size(transform, centre.tolist())
    numbers.update(size)
    if not size["rotation_deg"] <= th.warn_rotation_deg:
        reasons.append(("warn", "rotation", f"rotation of {size['rotation_deg']:.0f} deg is beyond head motion (the PET header's "
                                f"orientation differs from the MRI's: check it)"))
    if size["mirrored"] == 1.0:
        reasons.append(("warn", "mirrored", "the transform mirrors an axis (a header flip was assumed; left and right cannot be "
                                "told apart from the images)"))
    lo_s, hi_s = th.scale_range
    if not (lo_s <= size["scale_min"] and size["scale_max"] <= hi_s):
        reasons.append(("fail", "scale", f"transform scales by {size['scale_min']:.2f}-{size['scale_max']:.2f}, outside "
                                f"[{lo_s:g}, {hi_s:g}]"))


def finite_image(image: sitk.Image) -> sitk.Image:
    """``image`` (float32) with NaN and infinite voxels set to 0, the background (an SPM image's NaN outside the
    brain): ITK's moments initialiser never returns on a NaN, and the metric would sample them."""
    arr = sitk.GetArrayViewFromImage(image)
    if bool(np.isfinite(arr).all()):
        return image
    out = sitk.GetImageFromArray(np.where(np.isfinite(arr), arr, np.float32(0.0)).astype(np.float32, copy=False))
    out.CopyInformation(image)
    return out


def with_unmeasured(image: sitk.Image, unmeasured: np.ndarray | None) -> sitk.Image:
    """``image`` (float32) with NaN where ``unmeasured`` (bool ``(X, Y, Z)``, :attr:`asfe3d.io.Volume.unmeasured`) is
    True: the NaN or Inf that reading with ``allow_nonfinite`` set to 0, put back for the registration and its QC,
    which read them as background and as outside the PET's field of view; returned as it is when ``unmeasured`` is
    ``None``.

    Raises:
        ValueError: ``unmeasured`` of another shape than the image's ``(X, Y, Z)``.
    """
    if unmeasured is None:
        return image
    arr = sitk_to_numpy_xyz(image)  # a copy
    mask = np.asarray(unmeasured, bool)
    if mask.shape != arr.shape:
        raise ValueError(f"unmeasured must have the image's shape {arr.shape}, got {mask.shape}")
    arr[mask] = np.nan
    return numpy_xyz_to_sitk(arr, image)


def without_outliers(image: sitk.Image) -> sitk.Image:
    """``image`` (finite, float32) with its outliers clipped (:func:`asfe3d.utils.outlier_limit`: above 4 times its
    99.9th percentile), returned as it is when it has none, the usual case.

    A handful of voxels 100 or 10 000 times the image's maximum (three hot MRI voxels, 30 spikes in a PET) set the
    range of the metric's histogram: every other voxel fell into one bin, and the registration failed (16 mm off) or
    stopped in ITK ("Zero-valued spacing"); the PET's noise check read them as noise.
    """
    arr = sitk.GetArrayViewFromImage(image)
    limit = outlier_limit(arr)
    if limit is None:
        return image
    out = sitk.GetImageFromArray(np.minimum(arr, np.float32(limit)).astype(np.float32, copy=False))
    out.CopyInformation(image)
    return out


def _measured(pet: sitk.Image) -> sitk.Image | None:
    """Where the PET holds finite values (uint8, its grid), or ``None`` when it does everywhere."""
    finite = np.isfinite(sitk.GetArrayViewFromImage(pet))
    if finite.all():
        return None
    out = sitk.GetImageFromArray(finite.astype(np.uint8))
    out.CopyInformation(pet)
    return out


def _landscape(pet: sitk.Image, transform: sitk.Transform, grid: _Grid, sig: _Signal, *, shift_mm: float,
               rotation_deg: float, bins: int, numbers: dict[str, float],
               measured: sitk.Image | None = None) -> tuple[sitk.Transform | None, float, int]:
    """The PET on the coarse MRI grid: its overlap with the head and the MI landscape around ``transform``
    (MI of the deliberate misalignments of :func:`_perturbations`), added to ``numbers``; ``measured``: where the
    PET as given held finite values (:func:`_measured`; ``None``: everywhere), its field of view.

    Returns:
        ``(better_start, best, n)``: the best misalignment when it scores a higher MI (else ``None``), its MI
        and the number of misalignments.
    """
    mri_c, head_arr, region, centre, voxel_mm3 = grid.mri_c, grid.head_arr, grid.region, grid.centre, grid.voxel_mm3
    positive, thr, signal_mass = sig.positive, sig.thr, sig.signal_mass
    mri_vals = sitk.GetArrayViewFromImage(mri_c)[region]
    m_lo, m_hi = (float(v) for v in percentile(mri_vals, [0.5, 99.5]))
    mri_q = _quantise(mri_vals, m_lo, m_hi, bins)
    p_hi = float(percentile(positive, 99.5)) if positive.size else 0.0

    pet_f = finite_image(sitk.Cast(pet, sitk.sitkFloat32))  # NaN outside the brain (SPM): 0, not interpolated

    def pet_on_grid(tfm: sitk.Transform) -> np.ndarray:
        out = sitk.Resample(pet_f, mri_c, tfm, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        arr = sitk.GetArrayFromImage(out)
        arr[~np.isfinite(arr)] = 0.0
        return arr

    def mi_of(arr: np.ndarray) -> float:
        return _mutual_information(mri_q, _quantise(arr[region], 0.0, p_hi, bins), bins)

    pet_c = pet_on_grid(transform)
    inside = pet_c > thr
    mass_in_head = float(np.sum(pet_c[inside & head_arr], dtype=np.float64)) * voxel_mm3
    # the share is of the PET signal inside the MRI's field of view: a brain PET reaching below a T1 cut at the
    # cerebellum, or a whole-body PET under a head MRI, is not "outside the head" there
    mass_in_fov = float(np.sum(pet_c[inside], dtype=np.float64)) * voxel_mm3
    numbers["pet_in_fov"] = min(1.0, mass_in_fov / signal_mass) if signal_mass > 0 else 0.0
    numbers["pet_in_head"] = min(1.0, mass_in_head / mass_in_fov) if mass_in_fov > 0 else 0.0
    numbers["head_covered"] = float(np.count_nonzero(inside & head_arr) / np.count_nonzero(head_arr))
    # the part of the head inside the PET's field of view: a PET of the top half of the head covers half of it
    if measured is None:
        measured = sitk.Image(pet.GetSize(), sitk.sitkUInt8) + 1
        measured.CopyInformation(pet)
    in_fov = sitk.GetArrayFromImage(sitk.Resample(measured, mri_c, transform, sitk.sitkNearestNeighbor, 0,
                                                  sitk.sitkUInt8)) > 0
    head_fov = head_arr & in_fov
    numbers["head_in_pet_fov"] = float(np.count_nonzero(head_fov) / np.count_nonzero(head_arr))
    numbers["head_covered_in_fov"] = (float(np.count_nonzero(inside & head_fov) / np.count_nonzero(head_fov))
                                      if head_fov.any() else 0.0)
    numbers["mi"] = mi_of(pet_c)
    moves = _perturbations(centre, shift_mm, rotation_deg)
    perturbed = [mi_of(pet_on_grid(_after(transform, p))) for _, p in moves]
    best = max(perturbed)
    better_start = _after(transform, moves[int(np.argmax(perturbed))][1]) if best > numbers["mi"] else None
    numbers["mi_perturbed_max"] = best
    numbers["mi_perturbed_mean"] = float(np.mean(perturbed))
    numbers["mi_margin"] = (numbers["mi"] - best) / numbers["mi"] if numbers["mi"] > 0 else float("-inf")
    numbers["mi_drop"] = (numbers["mi"] - numbers["mi_perturbed_mean"]) / numbers["mi"] if numbers["mi"] > 0 else 0.0
    # does the PET fit better stretched? (a voxel size in its header wrong: no rigid transform can fit it)
    stretched = [(mi_of(pet_on_grid(_after(transform, t))), axis, factor) for axis, factor, t in _scalings(centre)]
    mi_s, axis, factor = max(credible_stretches(stretched, numbers["mi"]))
    numbers["scale_gain"] = (mi_s - numbers["mi"]) / numbers["mi"] if numbers["mi"] > 0 else 0.0
    numbers["scale_gain_axis"], numbers["scale_gain_factor"] = float(axis), float(factor)
    numbers["same_kind"] = _same_kind(sitk.GetArrayViewFromImage(mri_c), pet_c, head_arr, mri_c.GetSpacing())
    return better_start, best, len(perturbed)


def credible_stretches(stretched: list[tuple[float, int, float]], mi: float) -> list[tuple[float, int, float]]:
    """The stretches that may stand for a wrong voxel size: a stretch of all three axes (axis 3) counts only when at
    least two one-axis stretches by the same factor raise the MI too. Beside a skull-stripped T1, the PET's spill
    beyond the brain's edge favoured the all-axes stretch alone (a tau-like PET registered right to 1.3 mm gained 0.16
    on all three axes and -0.01 to -0.13 on each); a voxel size wrong on all axes gains on each axis.

    Args:
        stretched: ``(mi, axis, factor)`` per trial stretch; axis 0-2 one axis (x, y, z), 3 all three.
        mi: the MI of the registration as found.

    Returns:
        ``stretched`` without the all-axes stretches that lack that support (never empty when a one-axis one is in).
    """
    kept = list(stretched)
    for factor in {f for _, a, f in stretched if a == 3}:
        gaining = sum(m > mi for m, a, f in stretched if a < 3 and f == factor)
        if gaining < 2:
            kept = [x for x in kept if not (x[1] == 3 and x[2] == factor)]
    return kept


def _kind_and_scale_checks(numbers: dict[str, float], th: QCThresholds, reasons: list[tuple[str, str, str]]) -> None:
    """Judge whether the two inputs are one kind of image (``same_kind``) and whether the PET fits better stretched
    (``scale_gain``: a wrong voxel size); findings added to ``reasons``."""
    if numbers["same_kind"] > th.max_same_kind:
        reasons.append(("fail", "same_kind", f"the MRI and the PET look like one kind of image (correlation "
                                f"{numbers['same_kind']:.2f} inside the head at 6 mm, over {th.max_same_kind:g}): one "
                                "image, or a copy of it, given as both, or two MRIs or two PETs"))
    gain = numbers["scale_gain"]
    misaligned = any(v == "fail" and f == "mi_margin" for v, f, _ in reasons)  # not an optimum: not aligned
    if gain > th.warn_scale_gain and not misaligned:
        axis, factor = SCALE_AXES[int(numbers["scale_gain_axis"])], numbers["scale_gain_factor"]
        along = f"in {axis}" if axis == SCALE_AXES[3] else f"along {axis}"
        # the factor scales the MRI-to-PET transform: sampling the PET farther out (> 1) shrinks its image, so its
        # header's voxel size is too large ("stretched by 1.1" read as the opposite of what was wrong)
        change, size = ("shrunk", "too large") if factor > 1 else ("enlarged", "too small")
        reasons.append(("fail" if gain > th.max_scale_gain else "warn", "scale_fit",
                        f"the PET fits better {change} by {abs(factor - 1):.0%} {along} (MI {gain:+.0%}): its "
                        f"header's voxel size may be about {abs(factor - 1):.0%} {size} there (check it; "
                        "--registration affine fits a scale)"))


def _alignment_checks(numbers: dict[str, float], best: float, n_perturbed: int, anatomy: str, th: QCThresholds,
                      reasons: list[tuple[str, str, str]]) -> None:
    """Judge the alignment (MI optimum, PET in the head, head covered) from ``numbers``, ``best`` the best MI of
    the ``n_perturbed`` deliberate misalignments; findings added to ``reasons``."""
    if not numbers["mi_margin"] >= th.min_mi_margin:
        reasons.append(("fail", "mi_margin", f"the alignment is not a clear MI optimum (MI {numbers['mi']:.3f}, best of "
                                f"{n_perturbed} deliberate misalignments {best:.3f})"))
    elif numbers["mi_margin"] < th.warn_mi_margin:
        reasons.append(("warn", "mi_margin", f"the alignment is a weak MI optimum (margin {numbers['mi_margin']:.1%} over the "
                                f"best deliberate misalignment)"))
    if numbers["pet_in_head"] < th.min_pet_in_head:
        reasons.append(("fail", "pet_in_head", f"only {numbers['pet_in_head']:.0%} of the PET signal in the MRI's field "
                                f"of view lies inside the MRI {anatomy}"))
    elif numbers["pet_in_head"] < th.warn_pet_in_head:
        reasons.append(("warn", "pet_in_head", f"{1 - numbers['pet_in_head']:.0%} of the PET signal in the MRI's field of "
                                f"view lies outside the MRI {anatomy}"))
    if anatomy == "head" and numbers["head_covered"] < th.min_head_covered:
        partial = numbers["head_in_pet_fov"] >= th.min_head_in_fov and \
            numbers["head_covered_in_fov"] >= th.min_head_covered
        if partial:  # the PET sees part of the head and covers that part: a partial field of view, not a failure
            reasons.append(("warn", "pet_fov", f"the PET's field of view holds only {numbers['head_in_pet_fov']:.0%} "
                                    f"of the MRI head (its signal covers {numbers['head_covered_in_fov']:.0%} of that "
                                    f"part): outside it there is no PET to fuse"))
        else:
            reasons.append(("fail", "head_covered", f"the PET signal covers {numbers['head_covered']:.0%} of the MRI "
                                    f"head (need {th.min_head_covered:.0%}; the PET's field of view holds "
                                    f"{numbers['head_in_pet_fov']:.0%} of it)"))
    elif anatomy == "head" and numbers["head_in_pet_fov"] < th.warn_head_in_fov:
        reasons.append(("warn", "pet_fov", f"the PET's field of view holds only {numbers['head_in_pet_fov']:.0%} of "
                                f"the MRI head: outside it there is no PET to fuse"))


def assess_registration(
    mri: sitk.Image,
    pet: sitk.Image,
    transform: sitk.Transform,
    head: sitk.Image,
    *,
    grid_mm: float = 4.0,
    shift_mm: float = 8.0,
    rotation_deg: float = 8.0,
    signal_fraction: float = 0.3,
    bins: int = 32,
    thresholds: QCThresholds | None = None,
) -> RegistrationQC:
    """Judge a finished registration on several numbers (see the module's docstring) and give a verdict.

    Everything is computed on a coarse copy of the MRI grid (``grid_mm`` voxels, bin-averaged), with the PET
    resampled through ``transform``; single-threaded use of this function is deterministic.

    Args:
        mri: the fixed image (3D scalar).
        pet: the moving image on its own grid (3D scalar).
        transform: the registration's result, MRI points -> PET points.
        head: the MRI's head mask (:func:`asfe3d.registration.head_mask`, on the MRI grid), computed once by the
            caller.
        grid_mm: voxel size of the coarse grid in mm, in [1, 16].
        shift_mm: size of the shift perturbations, in (0, 50].
        rotation_deg: size of the rotation perturbations about the head's centre, in (0, 45].
        signal_fraction: PET "signal" is above this fraction of the PET's 99th percentile, in (0, 1).
        bins: histogram bins per image for the mutual information, in [8, 256].
        thresholds: the limits (defaults: :class:`QCThresholds`).

    Returns:
        :class:`RegistrationQC`.

    Raises:
        TypeError: when an image is not a SimpleITK image or ``transform`` not a SimpleITK transform.
        ValueError: for bad parameters or a head mask that is empty or not on the MRI grid (values quoted).
    """
    th = _check_qc_arguments(mri, pet, transform, head, grid_mm=grid_mm, shift_mm=shift_mm, rotation_deg=rotation_deg,
                             signal_fraction=signal_fraction, bins=bins, thresholds=thresholds)
    numbers: dict[str, float] = {}
    reasons: list[tuple[str, str, str]] = []  # (verdict, check, reason)

    measured = _measured(pet)  # NaN or Inf (SPM's mark outside a resliced image's field of view): outside it
    pet = raw_pet = without_outliers(finite_image(sitk.Cast(pet, sitk.sitkFloat32)))  # spikes would weigh the mass
    sig, pet = _pet_checks(pet, signal_fraction, th, numbers, reasons)
    anatomy = anatomy_of(head)
    grid = _head_checks(mri, head, grid_mm, anatomy, sig, th, numbers, reasons)
    _transform_checks(transform, grid.centre, th, numbers, reasons)
    better_start, best, n_perturbed = _landscape(pet, transform, grid, sig, shift_mm=shift_mm, rotation_deg=rotation_deg,
                                                 bins=bins, numbers=numbers, measured=measured)
    _alignment_checks(numbers, best, n_perturbed, anatomy, th, reasons)
    _kind_and_scale_checks(numbers, th, reasons)
    if any(v == "fail" for v, _, _ in reasons):
        from asfe3d.registration.sharpness import swap_sign

        sign = swap_sign(sitk.GetArrayViewFromImage(mri), sitk.GetArrayViewFromImage(raw_pet), mri.GetSpacing(),
                         raw_pet.GetSpacing(), numbers["pet_smoothness_native"])
        if sign is not None:  # the likely cause, first
            reasons.insert(0, ("fail", "swapped", sign))

    verdict = "pass"
    for v, _, _ in reasons:
        verdict = _worse(v, verdict)
    ordered = [r for r in reasons if r[0] == "fail"] + [r for r in reasons if r[0] == "warn"]
    return RegistrationQC(verdict, [r[2] for r in ordered], numbers, [r[1] for r in ordered], anatomy=anatomy,
                          better_start=better_start)
