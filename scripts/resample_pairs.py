#!/usr/bin/env python
"""Put the MRI-grid files of a pairs CSV on another grid: the same person "acquired" at 2 mm, or at 1.2 x 1 x 1 mm.

For ``asfe3d evaluate --pairs``: the MRI is blurred to the new voxel size, axis by axis (a Gaussian whose FWHM makes
up the difference between the two voxel sizes, as a coarser acquisition or a thicker slice would) and resampled
linearly onto a grid that keeps the MRI's direction cosines, origin and field of view. ``--voxel-mm`` takes one size
(isotropic) or three, one per image axis in the file's own order (SimpleITK's i, j, k: the NIfTI's first, second and
third voxel axes), for anisotropic grids such as ADNI's sagittal MPRAGE (1.2 mm across the slices). The ``brain``,
``mask`` and ``defect`` masks go nearest-neighbour onto the same grid. PET files stay on their own grid (``asfe3d
evaluate`` resamples them) and are referred to, not copied.

Usage::

    python scripts/resample_pairs.py runs/heldout_ind/pairs.csv runs/heldout_ind_2mm --voxel-mm 2
    python scripts/resample_pairs.py runs/heldout_ind/pairs.csv runs/heldout_ind_adni --voxel-mm 1.2 1 1
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path

MRI_GRID_MASKS = ("brain", "mask", "defect")


def resample_image(img, voxel_mm: float | Sequence[float], is_mask: bool):
    """``img`` (SimpleITK) on a grid of ``voxel_mm`` (one size, or one per image axis i, j, k) with its direction,
    origin and extent."""
    import SimpleITK as sitk

    old = img.GetSpacing()
    new = (float(voxel_mm),) * len(old) if isinstance(voxel_mm, (int, float)) else tuple(map(float, voxel_mm))
    if len(new) != len(old):
        raise ValueError(f"voxel_mm needs 1 or {len(old)} sizes, got {voxel_mm!r}")
    size = [max(1, int(math.ceil(n * s / v))) for n, s, v in zip(img.GetSize(), old, new)]
    if not is_mask:
        sig = [math.sqrt(max(v ** 2 - s ** 2, 0.0)) / (2 * math.sqrt(2 * math.log(2))) for s, v in zip(old, new)]
        img = sitk.Cast(img, sitk.sitkFloat32) if max(sig) > 0 else img
        if min(sig) > 0:
            img = sitk.SmoothingRecursiveGaussian(img, sig)
        elif max(sig) > 0:  # one axis at a time: an axis with nothing to make up is left alone
            for axis, s in enumerate(sig):
                if s > 0:
                    img = sitk.RecursiveGaussian(img, s, False, sitk.RecursiveGaussianImageFilter.ZeroOrder, axis)
    interp = sitk.sitkNearestNeighbor if is_mask else sitk.sitkLinear
    return sitk.Resample(img, size, sitk.Transform(), interp, img.GetOrigin(), new,
                         img.GetDirection(), 0, img.GetPixelID())


def main(argv: Sequence[str] | None = None) -> int:
    """Write the resampled MRI-grid files and a new pairs CSV into ``out`` (a new folder)."""
    ap = argparse.ArgumentParser(prog="resample_pairs.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", type=Path, help="pairs CSV (asfe3d evaluate --pairs)")
    ap.add_argument("out", type=Path, help="new output folder")
    ap.add_argument("--voxel-mm", type=float, nargs="+", default=[2.0], metavar="MM",
                    help="voxel size of the new grid (mm): one (isotropic) or three, per image axis i j k")
    args = ap.parse_args(argv)
    if not args.pairs.is_file():
        print(f"asfe3d: error: {args.pairs}: no such file", file=sys.stderr)
        return 2
    if len(args.voxel_mm) not in (1, 3):
        print(f"asfe3d: error: --voxel-mm: needs 1 or 3 sizes, got {len(args.voxel_mm)}", file=sys.stderr)
        return 2
    bad = [v for v in args.voxel_mm if not (math.isfinite(v) and 0 < v <= 10)]
    if bad:
        print(f"asfe3d: error: --voxel-mm: must be in (0, 10] mm, got {bad[0]!r}", file=sys.stderr)
        return 2
    voxel = args.voxel_mm[0] if len(args.voxel_mm) == 1 else tuple(args.voxel_mm)
    if args.out.exists():
        print(f"asfe3d: error: {args.out}: exists (choose a new folder)", file=sys.stderr)
        return 2
    import SimpleITK as sitk

    from asfe3d.errors import Asfe3dInputError
    from asfe3d.evaluation.evaluate import read_pairs_csv

    try:  # the CSV as asfe3d evaluate reads it: its columns, unique subjects, every file present
        read_pairs_csv(args.pairs)
    except Asfe3dInputError as exc:
        print(f"asfe3d: error: {exc}", file=sys.stderr)
        return 2
    with open(args.pairs, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames or []), list(reader)
    tmp = args.out.with_name(args.out.name + ".partial")
    if tmp.is_dir():  # this script's own leftover from an interrupted run: start again
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for row in rows:
        for col in ("mri", *MRI_GRID_MASKS):
            if not row.get(col):
                continue
            src = Path(row[col]) if Path(row[col]).is_absolute() else args.pairs.parent / row[col]
            # named by subject and column: subjects' files of one name (sub01/t1.nii.gz, sub02/t1.nii.gz) were
            # written to one file, and every subject then pointed at the last one's
            dst = tmp / f"{row['subject'].strip()}_{col}.nii.gz"
            try:
                image = sitk.ReadImage(str(src))
            except RuntimeError:
                print(f"asfe3d: error: {src}: not a readable image", file=sys.stderr)
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
                return 2
            sitk.WriteImage(resample_image(image, voxel, col != "mri"), str(dst))
            row[col] = dst.name
        for col in ("pet", "pet_defect"):
            if row.get(col) and not Path(row[col]).is_absolute():
                row[col] = str((args.pairs.parent / row[col]).resolve())
    with open(tmp / "pairs.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.rename(args.out)
    grid = " x ".join(f"{v:g}" for v in args.voxel_mm)
    print(f"{len(rows)} pairs at {grid} mm: {args.out / 'pairs.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
