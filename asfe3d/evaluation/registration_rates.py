"""False-alarm and miss rates of the registration QC (and what the multi-start search recovers) on every pair kind.

Builds good pairs (simulated same-subject demo pairs: several seeds, oblique MRI grids, FDG and amyloid;
cross-template pairs: a whole-head T1 such as SPM's avg152T1/avg305T1 as the MRI with a PET simulated from
nilearn's MNI152 maps, on the T1's 2 mm grid and resampled to 1 mm) and bad pairs (pure-noise PET, a cube
phantom, PETs turned 90/180 degrees or mirrored with the header not saying so, steep pitch of 25-60 degrees,
code-0/zero-pixdim fallback headers, 1e5 mm voxels), registers each with :func:`register_pet_to_mri` (rigid,
defaults: QC and multi-start "auto"), and prints one row per pair and the rates.

A registration counts as *correct* when its mean error over the brain against the known truth is below
``--correct-mm`` (pairs without a rigid truth, e.g. noise or a wrong voxel size, are never correct). A false alarm
is a correct registration judged "fail"; a miss is a wrong one judged "pass".

Plausible pairs also include, when their files are given: a template PET (simulated from MNI152) onto one real
person's whole-head T1 (``--person-t1``; its truth is the MNI T1 registered rigidly to that T1, so its tolerance is
``--cross-mm``), the same PET already resampled onto that T1's grid and moved by 0.3 mm, one person's simulated PET
(from FreeSurfer labels, ``--person-labels``) onto another's T1, and a simulated PET/CT-like torso (always).

Usage (``scripts/registration_qc_rates.py`` is a thin wrapper)::

    python scripts/registration_qc_rates.py --workdir /tmp/qc_pairs \\
        --whole-head-t1 /path/avg152T1.nii.gz /path/avg305T1.nii.gz \\
        --person-t1 /path/person_t1w.nii.gz --person-labels /path/aparc+aseg.mgz [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from asfe3d.registration.corrupt import reorient_voxels
from asfe3d.registration.register import head_mask, register_pet_to_mri, registration_error_mm

__all__ = ["Pair", "build_pairs", "main", "person_pairs", "rates", "run", "torso_pair"]


@dataclass
class Pair:
    name: str
    kind: str  # "good" or "bad"
    mri: sitk.Image
    pet: sitk.Image
    truth: sitk.Transform | None  # MRI -> PET, None when no rigid truth exists
    brain: sitk.Image  # brain mask on the MRI grid (error points)
    tolerance_mm: float | None = None  # mean error counted correct (None: the run's --correct-mm)


def _rot(axis: int, deg: float) -> np.ndarray:
    t = sitk.Euler3DTransform()
    a = [0.0, 0.0, 0.0]
    a[axis] = math.radians(deg)
    t.SetRotation(*a)
    return np.rint(np.asarray(t.GetMatrix()).reshape(3, 3))


def _centre(img: sitk.Image) -> list[float]:
    return list(img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in img.GetSize()]))


def _header_map(old: sitk.Image, new: sitk.Image) -> sitk.AffineTransform:
    """Physical point of ``old`` -> physical point of the same voxel in ``new`` (same array, other header)."""
    def affine(img: sitk.Image) -> np.ndarray:
        a = np.eye(4)
        a[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
        a[:3, 3] = img.GetOrigin()
        return a
    m = affine(new) @ np.linalg.inv(affine(old))
    t = sitk.AffineTransform(3)
    t.SetMatrix(m[:3, :3].ravel().tolist())
    t.SetTranslation(m[:3, 3].tolist())
    return t


def _with_header(pet: sitk.Image, spacing, origin, direction) -> sitk.Image:
    out = sitk.Image(pet)
    out.SetSpacing([float(s) for s in spacing])
    out.SetOrigin([float(o) for o in origin])
    out.SetDirection([float(d) for d in direction])
    return out


def _compose(q: sitk.Transform, t: sitk.Transform) -> sitk.Transform:
    return sitk.CompositeTransform([q, t])  # t first, then q


def _whole_head(path: Path, spacing: float | None) -> sitk.Image:
    img = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
    if spacing is None:
        return img
    size = [int(round(sz * sp / spacing)) for sz, sp in zip(img.GetSize(), img.GetSpacing())]
    return sitk.Resample(img, size, sitk.Transform(), sitk.sitkBSpline, img.GetOrigin(), [spacing] * 3,
                         img.GetDirection(), 0.0, sitk.sitkFloat32)


def torso_pair(seed: int = 0) -> Pair:
    """A PET/CT-like torso: a CT-valued body (fat, muscle, lungs, spine, liver; 3 mm voxels, 360 x 260 x 450 mm)
    and a 4 mm FDG-like PET (brain-free: heart, liver, kidneys, bladder over a soft-tissue background), moved by a
    small known motion (as between two scans of one session)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    sp = 3.0
    size = (120, 88, 150)  # x, y, z voxels
    z, y, x = np.meshgrid(*[(np.arange(n) - n / 2 + 0.5) * sp for n in size[::-1]], indexing="ij")

    def ell(cx: float, cy: float, cz: float, rx: float, ry: float, rz: float) -> np.ndarray:
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1.0

    body = ell(0, 0, 0, 170, 115, 400)
    ct = np.full(x.shape, -1000.0, np.float32)
    ct[body] = -90.0  # fat
    ct[ell(0, 0, 0, 150, 95, 400)] = 40.0  # muscle / soft tissue
    lungs = ell(-65, -10, 110, 55, 60, 110) | ell(65, -10, 110, 55, 60, 110)
    ct[lungs] = -800.0
    ct[ell(0, 60, 0, 18, 18, 400)] = 700.0  # spine
    liver = ell(-60, 0, -20, 70, 55, 60)
    ct[liver] = 60.0
    ct = gaussian_filter(ct, 0.7) + rng.normal(0, 10, ct.shape).astype(np.float32)
    mri = sitk.GetImageFromArray(ct.astype(np.float32))
    mri.SetSpacing([sp] * 3)
    mri.SetOrigin([-(n / 2 - 0.5) * sp for n in size])
    uptake = np.where(body, 1.0, 0.0)
    uptake[lungs] = 0.3
    uptake[liver] = 2.5
    uptake[ell(30, -40, 40, 45, 40, 45) & ~ell(30, -40, 40, 30, 25, 30)] = 8.0  # heart wall
    uptake[ell(-80, 40, -90, 25, 20, 45) | ell(80, 40, -90, 25, 20, 45)] = 5.0  # kidneys
    uptake[ell(0, -30, -300, 40, 35, 35)] = 20.0  # bladder
    img = sitk.GetImageFromArray(uptake.astype(np.float32))
    img.CopyInformation(mri)
    motion = sitk.Euler3DTransform()
    motion.SetRotation(*np.deg2rad(rng.uniform(-2, 2, 3)).tolist())
    motion.SetTranslation(rng.uniform(-5, 5, 3).tolist())
    psp = 4.0
    psize = [int(round(n * sp / psp)) for n in size]
    grid = sitk.Image(psize, sitk.sitkFloat32)
    grid.SetSpacing([psp] * 3)
    grid.SetOrigin([-(n / 2 - 0.5) * psp for n in psize])
    # the PET's point p shows the body at motion^-1(p): resample through the inverse
    pet = sitk.Resample(sitk.SmoothingRecursiveGaussian(img, 3.0), grid, motion.GetInverse(), sitk.sitkLinear, 0.0)
    arr = sitk.GetArrayFromImage(pet) * 3000.0
    arr = np.maximum(arr + rng.normal(0, 0.05, arr.shape) * np.sqrt(np.maximum(arr, 0) * 3000.0), 0)
    pet_img = sitk.GetImageFromArray(arr.astype(np.float32))
    pet_img.CopyInformation(grid)
    organs = sitk.GetImageFromArray((liver | ell(30, -40, 40, 45, 40, 45)).astype(np.uint8))
    organs.CopyInformation(mri)
    return Pair("PET/CT-like torso (CT as the MRI)", "good", mri, pet_img, motion, organs)


def _labels_to_gm_wm(path: Path) -> tuple[sitk.Image, sitk.Image]:
    """GM and WM maps (float, the label grid) from a FreeSurfer aseg/aparc label volume."""
    import nibabel as nib

    img = nib.load(str(path))
    lab = np.asarray(img.dataobj).astype(np.int32)
    wm_labels = [2, 41, 7, 46, 251, 252, 253, 254, 255, 28, 60]
    gm_deep = [8, 47, 10, 11, 12, 13, 17, 18, 49, 50, 51, 52, 53, 54, 16]
    gm = (lab >= 1000) | np.isin(lab, gm_deep)
    wm = np.isin(lab, wm_labels) | ((lab >= 3000) & (lab < 5000))
    gm &= ~wm
    from asfe3d.io import sitk_image_from_ras_affine  # the one RAS -> LPS conversion (it refuses a sheared affine)

    gm_img, wm_img = (sitk_image_from_ras_affine(m.astype(np.float32), img.affine) for m in (gm, wm))
    return gm_img, wm_img


def person_pairs(person_t1: Path, person_labels: Path | None, cross_mm: float) -> list[Pair]:
    """Cross-subject plausible pairs on one real person's whole-head T1 (see the module's docstring)."""
    from asfe3d.data import brain_mask, load_mni, simulate_pet

    t1 = sitk.Cast(sitk.ReadImage(str(person_t1)), sitk.sitkFloat32)
    mni, gm, wm = load_mni(1)
    head = head_mask(t1)
    # reference: the MNI T1 registered rigidly to the person's T1 (same modality: reliable up to brain shape)
    ref = register_pet_to_mri(t1, mni, head=head, multistart="never", assess=False).transform
    brain = sitk.Resample(brain_mask(gm, wm), t1, ref, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    rng = np.random.default_rng(21)
    pairs = []
    for tracer in ("fdg", "amyloid"):
        motion = sitk.Euler3DTransform()
        motion.SetCenter(_centre(mni))
        motion.SetRotation(*np.deg2rad(rng.uniform(-6, 6, 3)).tolist())
        motion.SetTranslation(rng.uniform(-8, 8, 3).tolist())
        pet = simulate_pet(gm, wm, tracer=tracer, transform=motion, rng=rng)
        pairs.append(Pair(f"template {tracer} PET onto {person_t1.name.split('.')[0]}", "good", t1, pet,
                          _compose(motion, ref), brain, cross_mm))
        if tracer == "fdg":  # the same PET already on the T1's grid, moved by 0.3 mm
            shift = sitk.TranslationTransform(3, [0.3, 0.0, 0.0])
            on_grid = sitk.Resample(pet, t1, _compose(_compose(motion, ref), shift), sitk.sitkLinear, 0.0,
                                    sitk.sitkFloat32)
            pairs.append(Pair(f"PET already on the {person_t1.name.split('.')[0]} grid, moved 0.3 mm", "good", t1,
                              on_grid, shift, brain, cross_mm))
    if person_labels is not None:
        pgm, pwm = _labels_to_gm_wm(person_labels)
        pet = simulate_pet(pgm, pwm, tracer="fdg", rng=np.random.default_rng(22))
        pairs.append(Pair(f"{person_labels.name.split('_')[0]}'s PET onto {person_t1.name.split('.')[0]}", "good",
                          t1, pet, None, brain))
    return pairs


def build_pairs(workdir: Path, whole_head: list[Path], quick: bool, person_t1: Path | None = None,
                person_labels: Path | None = None, cross_mm: float = 5.0) -> list[Pair]:
    """Every pair of the rates table (see the module's docstring)."""
    from asfe3d.data import brain_mask, load_mni, make_demo_pair, simulate_pet

    pairs: list[Pair] = []
    demo_specs = [(0, False, "fdg"), (1, False, "amyloid"), (2, True, "amyloid"), (3, True, "fdg")]
    if not quick:
        demo_specs += [(4, False, "fdg"), (5, True, "fdg"), (6, False, "amyloid")]
    base = None
    for seed, oblique, tracer in demo_specs:
        d = make_demo_pair(workdir / f"demo_{seed}", seed=seed, oblique=oblique, tracer=tracer,
                           mri_spacing=(1.0, 1.0, 1.2) if seed == 3 else (1.0, 1.0, 1.0))
        p = Pair(f"demo seed {seed} {tracer}{' oblique' if oblique else ''}", "good", sitk.ReadImage(str(d.mri_path)),
                 sitk.ReadImage(str(d.pet_path)), d.true_transform, sitk.ReadImage(str(d.mask_path)))
        pairs.append(p)
        base = base or p
    assert base is not None

    # cross-template: whole-head T1 (its own 2 mm grid, and resampled to 1 mm) with a PET simulated from MNI152
    t1, gm, wm = load_mni(1)
    mni_brain = brain_mask(gm, wm)
    rng = np.random.default_rng(11)
    cross = []
    for path in whole_head:
        for spacing in ((None, 1.0) if not quick else (None,)):
            mri = _whole_head(path, spacing)
            for tracer in (("fdg", "amyloid") if not quick else ("fdg",)):
                motion = sitk.Euler3DTransform()
                motion.SetCenter(_centre(t1))
                motion.SetRotation(*np.deg2rad(rng.uniform(-6, 6, 3)).tolist())
                motion.SetTranslation(rng.uniform(-8, 8, 3).tolist())
                pet = simulate_pet(gm, wm, tracer=tracer, transform=motion, rng=rng)
                brain = sitk.Resample(mni_brain, mri, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
                p = Pair(f"{path.name.split('.')[0]} {'2 mm' if spacing is None else '1 mm'} + MNI PET {tracer}",
                         "good", mri, pet, motion, brain)
                pairs.append(p)
                cross.append(p)

    # bad pairs
    pet0 = base.pet
    noise = sitk.GetImageFromArray(np.random.default_rng(5).gamma(2.0, 1000.0, sitk.GetArrayViewFromImage(pet0).shape)
                                   .astype(np.float32))
    noise.CopyInformation(pet0)
    pairs.append(Pair("pure-noise PET", "bad", base.mri, noise, None, base.brain))
    cube = np.zeros(sitk.GetArrayViewFromImage(pet0).shape, np.float32)
    z, y, x = (s // 2 for s in cube.shape)
    cube[z - 25:z + 25, y - 25:y + 25, x - 25:x + 25] = 5000.0
    from scipy.ndimage import gaussian_filter

    cube = gaussian_filter(cube, 1.5) + np.random.default_rng(6).normal(0.0, 100.0, cube.shape).astype(np.float32)
    cube_img = sitk.GetImageFromArray(cube.astype(np.float32))
    cube_img.CopyInformation(pet0)
    pairs.append(Pair("cube phantom PET", "bad", base.mri, cube_img, None, base.brain))

    turns = [("turned 90 about x", _rot(0, 90)), ("turned 90 about y", _rot(1, 90)), ("turned 90 about z", _rot(2, 90)),
             ("turned 180 about x", _rot(0, 180)), ("turned 180 about z", _rot(2, 180)),
             ("mirrored y (A-P flip)", np.diag([1.0, -1.0, 1.0])), ("mirrored z (S-I flip)", np.diag([1.0, 1.0, -1.0])),
             ("mirrored x (L-R flip)", np.diag([-1.0, 1.0, 1.0]))]
    if quick:
        turns = turns[:1] + turns[3:4] + turns[6:7]
    sources = [base] + cross[:1]
    for src in sources:
        for label, m in turns:
            pet, q = reorient_voxels(src.pet, m)
            pairs.append(Pair(f"{label}, header unchanged ({src.name})", "bad", src.mri, pet,
                              _compose(q, src.truth), src.brain))

    for deg in ((25, 40, 60) if not quick else (40,)):
        motion = sitk.Euler3DTransform()
        motion.SetCenter(_centre(t1))
        motion.SetRotation(math.radians(deg), 0.0, 0.0)
        motion.SetTranslation([0.0, 5.0, -5.0])
        pet = simulate_pet(gm, wm, transform=motion, rng=np.random.default_rng(deg))
        pairs.append(Pair(f"pitch {deg} deg (demo MRI)", "bad", base.mri, pet, motion,
                          sitk.Resample(mni_brain, base.mri, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                        sitk.sitkUInt8)))

    # headers: code 0 with pixdims (nibabel: diag(pixdim), origin 0 -> LPS direction diag(-1,-1,1)), zero pixdims
    # (1 mm voxels as well), and 1e5 mm voxels
    lps = [-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0]
    code0 = _with_header(pet0, pet0.GetSpacing(), (0, 0, 0), lps)
    pairs.append(Pair("qform/sform codes 0 (pixdims kept)", "bad", base.mri, code0,
                      _compose(_header_map(pet0, code0), base.truth), base.brain))
    zero = _with_header(pet0, (1.0, 1.0, 1.0), (0, 0, 0), lps)
    pairs.append(Pair("zero pixdims (1 mm fallback)", "bad", base.mri, zero, None, base.brain))
    huge = _with_header(pet0, (1e5, 1e5, 1e5), pet0.GetOrigin(), pet0.GetDirection())
    pairs.append(Pair("1e5 mm voxels", "bad", base.mri, huge, None, base.brain))
    pairs.append(torso_pair())
    if person_t1 is not None:
        pairs += person_pairs(person_t1, person_labels, cross_mm)
    return pairs


def _key(n: dict[str, float]) -> str:
    """MI / margin / in head / covered / left-right margin."""
    return (f"{n['mi']:.2f} / {n['mi_margin']:+.2f} / {n['pet_in_head']:.2f} / {n['head_covered']:.2f} / "
            f"{n.get('lr_margin', float('nan')):+.3f}")


def run(pairs: list[Pair], correct_mm: float, log: Callable[[str], None]) -> list[dict]:
    """Register every pair (rigid, defaults), log one table row each; a pair without a rigid truth that is "good"
    (one person's PET onto another's T1) counts as correct unless its verdict comes from a multi-start turn."""
    rows = []
    log("| pair | kind | plain QC | plain MI / margin / in head / covered / L-R | start kept | continued | error mm | "
        "verdict (anatomy) | MI / margin / in head / covered / L-R | correct | CPU s | reasons |")
    log("|---|---|---|---|---|---|---|---|---|---|---|")
    for p in pairs:
        head = head_mask(p.mri)
        t, c = time.perf_counter(), time.process_time()
        res = register_pet_to_mri(p.mri, p.pet, "rigid", head=head)
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        err = float("nan")
        if p.truth is not None:
            err = registration_error_mm(p.truth, res.transform, p.brain)["mean"]
        tol = correct_mm if p.tolerance_mm is None else p.tolerance_mm
        correct = bool(p.truth is not None and err <= tol) or (p.truth is None and p.kind == "good"
                                                               and res.start in ("moments", "header"))
        assert res.qc is not None
        plain = res.qc_plain or res.qc
        rows.append({"name": p.name, "kind": p.kind, "verdict": res.qc.verdict, "plain": plain.verdict,
                     "correct": correct, "error": err, "seconds": seconds, "cpu": cpu, "start": res.start})
        log(f"| {p.name} | {p.kind} | {plain.verdict} | {_key(plain.numbers)} | {res.start} | {res.continued} | "
            f"{err:.2f} | {res.qc.verdict} ({res.qc.anatomy}) | {_key(res.qc.numbers)} | "
            f"{'yes' if correct else 'no'} | {cpu:.1f} | {'; '.join(res.qc.reasons) or '-'} |")
    return rows


def rates(rows: list[dict], log: Callable[[str], None]) -> None:
    """Log the rates table of :func:`run`'s rows."""
    def frac(sel: list[dict], cond: Callable[[dict], bool]) -> str:
        n = sum(1 for r in sel if cond(r))
        return f"{n}/{len(sel)}" if sel else "0/0"
    good_in = [r for r in rows if r["kind"] == "good"]
    bad_in = [r for r in rows if r["kind"] == "bad"]
    correct = [r for r in rows if r["correct"]]
    wrong = [r for r in rows if not r["correct"]]
    log("")
    log("| measure | count |")
    log("|---|---|")
    log(f"| good pairs registered correctly | {frac(good_in, lambda r: r['correct'])} |")
    log(f"| bad pairs recovered by the multi-start search (correct) | {frac(bad_in, lambda r: r['correct'])} |")
    log(f"| false alarms: correct registrations judged fail | {frac(correct, lambda r: r['verdict'] == 'fail')} |")
    log(f"| correct registrations judged warn | {frac(correct, lambda r: r['verdict'] == 'warn')} |")
    log(f"| misses: wrong registrations judged pass | {frac(wrong, lambda r: r['verdict'] == 'pass')} |")
    log(f"| wrong registrations judged warn (not refused) | {frac(wrong, lambda r: r['verdict'] == 'warn')} |")
    log(f"| good input pairs judged pass | {frac(good_in, lambda r: r['verdict'] == 'pass')} |")
    g = [r["cpu"] for r in rows if r["start"] in ("moments", "header")]
    m = [r["cpu"] for r in rows if r["start"] not in ("moments", "header")]
    if g:
        log(f"| CPU seconds per registration, no search kept (mean; includes searches that were not kept) | "
            f"{np.mean(g):.1f} |")
    if m:
        log(f"| CPU seconds per registration, search result kept (mean) | {np.mean(m):.1f} |")


def main(argv: list[str] | None = None) -> int:
    """The command line of ``scripts/registration_qc_rates.py``."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True, help="folder for the simulated pairs")
    ap.add_argument("--whole-head-t1", type=Path, nargs="*", default=[],
                    help="whole-head T1 templates in MNI space (e.g. SPM12 canonical/avg152T1.nii)")
    ap.add_argument("--correct-mm", type=float, default=3.0,
                    help="mean brain error (mm) under which a registration counts as correct (default 3)")
    ap.add_argument("--person-t1", type=Path, help="one real person's whole-head T1 (cross-subject pairs)")
    ap.add_argument("--person-labels", type=Path,
                    help="another person's FreeSurfer label volume (aseg/aparc+aseg): a PET simulated from it")
    ap.add_argument("--cross-mm", type=float, default=5.0,
                    help="tolerance (mm) of the cross-subject pairs, whose truth is a T1-to-T1 registration")
    ap.add_argument("--only", help="run only the pairs whose name contains this text")
    ap.add_argument("--quick", action="store_true", help="fewer pairs")
    args = ap.parse_args(argv)
    for p in [*args.whole_head_t1, *[q for q in (args.person_t1, args.person_labels) if q is not None]]:
        if not p.is_file():
            ap.error(f"--whole-head-t1: no such file: {str(p)!r}")
    if not (math.isfinite(args.correct_mm) and args.correct_mm > 0):
        ap.error(f"--correct-mm must be > 0, got {args.correct_mm!r}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    pairs = build_pairs(args.workdir, list(args.whole_head_t1), args.quick, args.person_t1, args.person_labels,
                        args.cross_mm)
    if args.only:
        pairs = [p for p in pairs if args.only in p.name]
    rows = run(pairs, args.correct_mm, lambda s: print(s, flush=True))
    rates(rows, lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
