"""Sharp, individual 1 mm anatomies for training and choosing: real people's T1s and a label-driven synthesis.

The SPM averages (:mod:`asfe3d.data.wholehead`) are means of 152-305 brains at 2 mm: their cortex is a smooth band
without gyri. Users bring one person's 1 mm T1. The anatomies here are single people on their own 1 mm grid, so
that a network trained on them has seen folded cortex, sulci and sharp tissue edges (``docs/training.md``):

- ``bert``: FreeSurfer's "bert", its intensity-normalised T1, with its own ``aparc.a2009s+aseg`` labels: the PET
  follows this person's real gyri, parcel by parcel.
- ``bert_synth``: the same labels with a new random contrast for every subject (the SynthSeg idea, Billot et al.
  2023: random intensity per label, so T1-, T2- and PD-like contrasts and everything in between), blurred and
  noised: unlimited sharp heads of any contrast.
- ``gd``: a contrast-enhanced T1 of another person (vessels bright), brain only; tissues by intensity classes.
- ``flair``: a FLAIR of another person with white-matter lesions, brain only; tissues by intensity classes.
- ``otsu``: a whole-head T1 of another person (scalp, skull, neck). Its brain is found by registering SPM's
  whole-head average T1 to it (affine, SimpleITK) and carrying SPM's intracranial mask over; tissues by intensity
  classes. Held out of training by default (:data:`HELD_OUT`): it chooses among candidates.

Brain-only anatomies get a synthetic head (:func:`asfe3d.data.anatomy.synthetic_head`). Every anatomy is an
:class:`asfe3d.data.anatomy.Anatomy` on its own 1 mm RAS grid, whose ``labels`` are tissue codes
(:data:`TISSUES`) and whose PET (:meth:`IndividualAnatomy.uptake`) follows the tissues and cortical parcels
(FreeSurfer's for bert, a random Voronoi parcellation of the cortex otherwise), so
:func:`asfe3d.data.wholehead.simulate_subject` treats them like the averages.

Files are read from the folder given (e.g. the project's data folder ``individual/``); nothing is downloaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from asfe3d.data.anatomy import Anatomy, _smooth_field, synthetic_head

__all__ = ["INDIVIDUALS", "HELD_OUT", "SAME_PERSON", "TISSUES", "IndividualAnatomy", "load_individual", "tissue_classes"]

INDIVIDUALS = ("bert", "bert_synth", "gd", "flair", "otsu")
#: held out of training by default: the one whole-head person, used to choose among candidates
HELD_OUT = ("otsu",)
#: anatomies that are another anatomy's person (the same labels, another contrast): held out together
SAME_PERSON = {"bert_synth": "bert"}
#: tissue codes of an individual anatomy's ``labels``
TISSUES = {"outside": 0, "csf": 1, "cortex": 2, "wm": 3, "deep": 4, "cerebellum": 5, "stem": 6, "mtl": 7}
_FILES = {"bert": "bert_norm.mgz", "bert_synth": "bert_norm.mgz", "gd": "gd_t1w_brain.nii.gz",
          "flair": "flair_brain.nii.gz", "otsu": "otsu_t1w.nii.gz"}
_MARGIN_MM = 45.0  # room around the brain for the synthetic head layers


@dataclass
class IndividualAnatomy(Anatomy):
    """An :class:`Anatomy` of one person on a 1 mm grid; ``labels`` are tissue codes (:data:`TISSUES`).

    Attributes:
        parcels: int32 ``(X, Y, Z)`` cortical parcel ids (0 elsewhere).
        synth_labels: for ``bert_synth``, the fine FreeSurfer labels each subject gets a random contrast from
            (``None`` otherwise).
    """

    parcels: np.ndarray | None = None
    synth_labels: np.ndarray | None = None

    def uptake(self, pattern: str, rng: np.random.Generator) -> np.ndarray:
        """Noise-free tracer uptake (white matter 1) following the tissues and parcels; the patterns of
        :func:`asfe3d.data.wholehead.pet_uptake`, with the AD-like lowering and amyloid raise on a random third
        of the cortical parcels (posterior ones more often)."""
        lab = self.labels
        parcels = self.parcels if self.parcels is not None else np.zeros_like(lab, np.int32)
        n = int(parcels.max()) + 1
        t = TISSUES
        out = np.zeros(lab.shape, np.float32)
        # posterior parcels (low y) are more likely to be affected, as in AD
        counts = np.bincount(parcels.ravel(), minlength=n).astype(float)
        ysum = np.bincount(parcels.ravel(), weights=np.broadcast_to(
            np.arange(lab.shape[1])[None, :, None], lab.shape).ravel(), minlength=n)
        ys = np.where(counts > 0, ysum / np.maximum(counts, 1.0), 0.0)
        post = 1.0 - (ys - ys.min()) / max(np.ptp(ys), 1.0)
        affected = rng.random(n) < 0.15 + 0.35 * post
        if pattern.startswith("fdg"):
            g = rng.uniform(2.6, 3.8)
            table = g * rng.uniform(0.9, 1.1, n)
            if pattern == "fdg_ad":
                table = np.where(affected, table * rng.uniform(0.6, 0.85), table)
            values = {t["csf"]: 0.15, t["wm"]: 1.0, t["deep"]: g * rng.uniform(0.95, 1.15), t["stem"]: 1.3,
                      t["cerebellum"]: g * rng.uniform(0.75, 0.9), t["mtl"]: 0.65 * g}
            extra = rng.uniform(0.1, 0.5)
        elif pattern.startswith("amyloid"):
            table = rng.uniform(0.45, 0.65) * rng.uniform(0.92, 1.08, n)
            if pattern == "amyloid_pos":
                table = np.where(affected | (rng.random(n) < 0.4), rng.uniform(0.9, 1.3) * rng.uniform(0.85, 1.15, n),
                                 table)
            values = {t["csf"]: 0.1, t["wm"]: 1.0, t["deep"]: 0.6, t["stem"]: 1.0, t["cerebellum"]: 0.5,
                      t["mtl"]: 0.5}
            extra = rng.uniform(0.05, 0.3)
        else:
            raise ValueError(f"pattern must be fdg, fdg_ad, amyloid_neg or amyloid_pos, got {pattern!r}")
        cortex = lab == t["cortex"]
        out[cortex] = table[parcels[cortex]]
        for code, value in values.items():
            out[lab == code] = value
        soft = self.head & (lab == t["outside"])
        out = np.where(soft, extra * (1.0 + 0.4 * _smooth_field(lab.shape, rng, cells=6)), out)
        return np.where(self.head, out, 0.0).astype(np.float32)

    def draw_mri(self, rng: np.random.Generator) -> np.ndarray:
        """The MRI of one subject: the anatomy's own, or (``bert_synth``) a new random contrast per label, with
        within-label texture and a slight blur (white matter or the brightest tissue about 1)."""
        if self.synth_labels is None:
            return self.mri
        labels = self.synth_labels
        ids, inverse = np.unique(labels, return_inverse=True)
        means = rng.uniform(0.05, 1.0, ids.size)
        means[ids == 0] = 0.0
        # keep the big tissue groups coherent: every cortical parcel near one cortex level, etc.
        groups = _fs_groups(ids)
        for g in np.unique(groups):
            if g >= 0:
                level = rng.uniform(0.1, 1.0)
                sel = groups == g
                means[sel] = np.clip(level * rng.uniform(0.93, 1.07, int(sel.sum())), 0.02, 1.2)
        sds = rng.uniform(0.01, 0.05, ids.size)
        brain = means[inverse].reshape(labels.shape) + sds[inverse].reshape(labels.shape) * rng.standard_normal(
            labels.shape).astype(np.float32)
        brain = ndimage.gaussian_filter(brain.astype(np.float32), rng.uniform(0.0, 0.6))
        brain = np.where(labels > 0, np.clip(brain, 0.03, None), 0.0).astype(np.float32)
        brain = brain / max(float(np.percentile(brain[labels > 0], 99)), 1e-3)
        mri, _ = synthetic_head(brain, 1.0, rng, self.affine)
        return mri


def _fs_groups(ids: np.ndarray) -> np.ndarray:
    """FreeSurfer label id -> tissue group (-1: its own random level)."""
    groups = np.full(ids.shape, -1)
    for k, lab in enumerate(ids):
        code = _fs_tissue(int(lab))
        groups[k] = code if code in (TISSUES["cortex"], TISSUES["wm"], TISSUES["csf"]) else -1
    return groups


def _fs_tissue(lab: int) -> int:
    """FreeSurfer aseg / aparc.a2009s label -> tissue code."""
    t = TISSUES
    if lab == 0:
        return t["outside"]
    if 11100 <= lab < 11200 or 12100 <= lab < 12200 or lab in (3, 42):
        return t["cortex"]
    if lab in (2, 41, 77, 7, 46, 251, 252, 253, 254, 255, 85):
        return t["wm"]
    if lab in (8, 47):
        return t["cerebellum"]
    if lab in (10, 11, 12, 13, 26, 28, 49, 50, 51, 52, 58, 60):
        return t["deep"]
    if lab in (17, 18, 53, 54):
        return t["mtl"]
    if lab == 16:
        return t["stem"]
    return t["csf"]  # ventricles, CSF, choroid plexus, vessels and the rest


def tissue_classes(mri: np.ndarray, brain: np.ndarray, order: str = "t1") -> np.ndarray:
    """Three tissue classes inside a brain mask by 1D k-means on intensity.

    Args:
        mri: ``(X, Y, Z)`` image.
        brain: bool brain mask, same shape.
        order: ``"t1"`` (CSF < GM < WM) or ``"flair"`` (CSF < WM < GM).

    Returns:
        int8 tissue codes (:data:`TISSUES`: csf, cortex (all grey matter), wm; 0 outside ``brain``).

    Raises:
        ValueError: an empty mask, mismatched shapes or an unknown order (quoted).
    """
    mri, brain = np.asarray(mri, float), np.asarray(brain, bool)
    if mri.shape != brain.shape or not brain.any():
        raise ValueError(f"mri and a non-empty brain mask of one shape are needed, got {mri.shape} and {brain.shape}")
    if order not in ("t1", "flair"):
        raise ValueError(f"order must be 't1' or 'flair', got {order!r}")
    v = mri[brain]
    centres = np.percentile(v, [10.0, 50.0, 90.0])
    for _ in range(30):
        assign = np.argmin(np.abs(v[:, None] - centres[None]), axis=1)
        new = np.array([v[assign == k].mean() if (assign == k).any() else centres[k] for k in range(3)])
        if np.allclose(new, centres):
            break
        centres = new
    rank = np.argsort(np.argsort(centres))  # 0 darkest .. 2 brightest
    names = ("csf", "cortex", "wm") if order == "t1" else ("csf", "wm", "cortex")
    codes = np.array([TISSUES[names[r]] for r in rank], np.int8)
    out = np.zeros(mri.shape, np.int8)
    out[brain] = codes[np.argmin(np.abs(v[:, None] - centres[None]), axis=1)]
    return out


def _voronoi_parcels(cortex: np.ndarray, rng: np.random.Generator, n: int = 80) -> np.ndarray:
    pts = np.argwhere(cortex)
    if len(pts) == 0:
        return np.zeros(cortex.shape, np.int32)
    seeds = np.zeros(cortex.shape, np.int32)
    pick = pts[rng.choice(len(pts), size=min(n, len(pts)), replace=False)]
    seeds[tuple(pick.T)] = np.arange(1, len(pick) + 1)
    _, idx = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    return np.where(cortex, seeds[tuple(idx)], 0).astype(np.int32)


def _canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found (pass the folder of the individual anatomies)")
    img = nib.as_closest_canonical(nib.load(str(path)))
    return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine, float)


def _crop_to(arrays: list[np.ndarray], affine: np.ndarray, mask: np.ndarray, margin_mm: float
             ) -> tuple[list[np.ndarray], np.ndarray]:
    idx = np.argwhere(mask)
    sp = np.linalg.norm(affine[:3, :3], axis=0)
    m = np.ceil(margin_mm / sp).astype(int)
    lo = np.maximum(idx.min(0) - m, 0)
    hi = np.minimum(idx.max(0) + m + 1, mask.shape)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    out_aff = affine.copy()
    out_aff[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    return [np.ascontiguousarray(a[sl]) for a in arrays], out_aff


def _pad_to(arrays: list[np.ndarray], affine: np.ndarray, margin: int) -> tuple[list[np.ndarray], np.ndarray]:
    out_aff = affine.copy()
    out_aff[:3, 3] = affine[:3, 3] - affine[:3, :3] @ np.full(3, margin)
    return [np.pad(a, margin) for a in arrays], out_aff


def _brain_of_whole_head(t1: np.ndarray, affine: np.ndarray, spm_dir: Path) -> np.ndarray:
    """The brain of a whole-head T1: SPM's avg152T1 registered (affine, Mattes MI) onto it, SPM's intracranial
    mask carried over."""
    import nibabel as nib
    import SimpleITK as sitk

    from asfe3d.io.convert import sitk_image_from_ras_affine, sitk_to_numpy_xyz

    def image(arr: np.ndarray, aff: np.ndarray) -> sitk.Image:
        return sitk_image_from_ras_affine(arr.astype(np.float32), aff)

    tmpl = nib.as_closest_canonical(nib.load(str(spm_dir / "avg152T1.nii.gz")))
    icv = nib.as_closest_canonical(nib.load(str(spm_dir / "mask_ICV.nii.gz")))
    fixed = image(t1, affine)
    moving = image(np.asarray(tmpl.dataobj, np.float32), tmpl.affine)
    init = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.05, seed=1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-3, 300)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([3.0, 1.5, 0.5])
    reg.SetInitialTransform(init, inPlace=False)
    transform = reg.Execute(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32))
    mask = sitk.Resample(image(np.asarray(icv.dataobj, np.float32), icv.affine), fixed, transform,
                         sitk.sitkLinear, 0.0)
    return sitk_to_numpy_xyz(mask) > 0.5


@functools.lru_cache(maxsize=6)
def _cached_individual(name: str, folder: str, spm_dir: str | None, seed: int) -> IndividualAnatomy:
    root = Path(folder)
    rng = np.random.default_rng([seed, 7877, INDIVIDUALS.index(name)])
    synth = None
    if name in ("bert", "bert_synth"):
        t1, aff = _canonical(root / _FILES[name])
        fs, _ = _canonical(root / "bert_aparc.a2009s+aseg.mgz")
        fs = np.rint(fs).astype(np.int32)
        brain = fs > 0
        (t1, fs), aff = _crop_to([t1, fs.astype(np.float32)], aff, brain, _MARGIN_MM)
        fs = np.rint(fs).astype(np.int32)
        tissue = np.vectorize(_fs_tissue, otypes=[np.int8])(fs)
        cortex = tissue == TISSUES["cortex"]
        parcels = np.where(cortex, np.unique(fs, return_inverse=True)[1].reshape(fs.shape), 0).astype(np.int32)
        wm = float(np.median(t1[tissue == TISSUES["wm"]]))
        brain_t1 = np.where(fs > 0, t1 / wm, 0.0).astype(np.float32)
        if name == "bert_synth":
            synth = fs
    else:
        t1, aff = _canonical(root / _FILES[name])
        if name == "otsu":
            if spm_dir is None:
                raise ValueError("the whole-head anatomy 'otsu' needs the SPM12 folder (its brain is found with it)")
            brain = _brain_of_whole_head(t1, aff, Path(spm_dir))
            brain &= t1 > np.percentile(t1[brain], 2)
        else:
            brain = ndimage.binary_fill_holes(ndimage.binary_closing(t1 > 0.02 * t1.max(), iterations=2))
        tissue = tissue_classes(ndimage.gaussian_filter(t1, 0.5), brain, "flair" if name == "flair" else "t1")
        cortex = tissue == TISSUES["cortex"]
        parcels = _voronoi_parcels(cortex, rng)
        wm = float(np.median(t1[tissue == TISSUES["wm"]]))
        brain_t1 = np.where(brain, t1 / wm, 0.0).astype(np.float32)
    if name == "otsu":  # a real whole head: keep it as it is
        from asfe3d.transforms.intensity import head_mask

        mri = (t1 / wm).astype(np.float32)
        head = head_mask(mri) | (tissue > 0)
    else:
        (brain_t1, tissue_f, parcels_f), aff = _pad_to([brain_t1, tissue.astype(np.float32),
                                                       parcels.astype(np.float32)], aff, 0)
        mri, head = synthetic_head(brain_t1, 1.0, rng, aff)
        tissue, parcels = tissue_f.astype(np.int8), parcels_f.astype(np.int32)
    tissue = np.where(head, tissue, 0).astype(np.int16)
    return IndividualAnatomy(name=name, mri=mri.astype(np.float32), labels=tissue, head=head, affine=aff,
                             parcels=parcels, synth_labels=synth)


def load_individual(name: str, folder: str | Path, spm_dir: str | Path | None = None, seed: int = 0
                    ) -> IndividualAnatomy:
    """Load one individual anatomy on its 1 mm RAS grid (cached per process; do not modify the arrays).

    Args:
        name: one of :data:`INDIVIDUALS`.
        folder: the folder of the individual volumes (``bert_norm.mgz``, ``otsu_t1w.nii.gz``...).
        spm_dir: SPM12 folder (needed for ``otsu``: its brain is found by registering SPM's average to it).
        seed: seed of the synthetic head layers and random parcels.

    Returns:
        The :class:`IndividualAnatomy`.

    Raises:
        ValueError: an unknown name (quoted), or ``otsu`` without ``spm_dir``.
        FileNotFoundError: a missing file.
    """
    if name not in INDIVIDUALS:
        raise ValueError(f"individual anatomy must be one of {INDIVIDUALS}, got {name!r}")
    spm = None if spm_dir is None else str(Path(spm_dir).resolve())
    return _cached_individual(name, str(Path(folder).resolve()), spm, int(seed))
