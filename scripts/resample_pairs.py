#!/usr/bin/env python
"""Put the MRI-grid files of a pairs CSV on a coarser isotropic grid: the same held-out person "acquired" at 2 mm.

For ``asfe3d evaluate --pairs``: the MRI is blurred to the new voxel size (a Gaussian whose FWHM makes up the
difference between the two voxel sizes, as a coarser acquisition would) and resampled linearly onto an isotropic grid
that keeps the MRI's direction cosines, origin and field of view. The ``brain``, ``mask`` and ``defect`` masks go
nearest-neighbour onto the same grid. PET files stay on their own grid (``asfe3d evaluate`` resamples them) and are
referred to, not copied.

Usage::

    python scripts/resample_pairs.py runs/heldout_ind/pairs.csv runs/heldout_ind_2mm --voxel-mm 2
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path

MRI_GRID_MASKS = ("brain", "mask", "defect")


def resample_image(img, voxel_mm: float, is_mask: bool):
    """``img`` (SimpleITK) on an isotropic ``voxel_mm`` grid with its direction, origin and extent."""
    import SimpleITK as sitk

    old = img.GetSpacing()
    size = [max(1, int(math.ceil(n * s / voxel_mm))) for n, s in zip(img.GetSize(), old)]
    if not is_mask:
        sig = [math.sqrt(max(voxel_mm ** 2 - s ** 2, 0.0)) / (2 * math.sqrt(2 * math.log(2))) for s in old]
        if max(sig) > 0:
            img = sitk.SmoothingRecursiveGaussian(sitk.Cast(img, sitk.sitkFloat32), sig)
    interp = sitk.sitkNearestNeighbor if is_mask else sitk.sitkLinear
    return sitk.Resample(img, size, sitk.Transform(), interp, img.GetOrigin(), (voxel_mm,) * 3,
                         img.GetDirection(), 0, img.GetPixelID())


def main(argv: Sequence[str] | None = None) -> int:
    """Write the resampled MRI-grid files and a new pairs CSV into ``out`` (a new folder)."""
    ap = argparse.ArgumentParser(prog="resample_pairs.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", type=Path, help="pairs CSV (asfe3d evaluate --pairs)")
    ap.add_argument("out", type=Path, help="new output folder")
    ap.add_argument("--voxel-mm", type=float, default=2.0, help="isotropic voxel size of the new grid (mm)")
    args = ap.parse_args(argv)
    if not args.pairs.is_file():
        print(f"asfe3d: error: {args.pairs}: no such file", file=sys.stderr)
        return 2
    if not (math.isfinite(args.voxel_mm) and 0 < args.voxel_mm <= 10):
        print(f"asfe3d: error: --voxel-mm: must be in (0, 10] mm, got {args.voxel_mm!r}", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"asfe3d: error: {args.out}: exists (choose a new folder)", file=sys.stderr)
        return 2
    import SimpleITK as sitk

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
            dst = tmp / src.name
            sitk.WriteImage(resample_image(sitk.ReadImage(str(src)), args.voxel_mm, col != "mri"), str(dst))
            row[col] = dst.name
        for col in ("pet", "pet_defect"):
            if row.get(col) and not Path(row[col]).is_absolute():
                row[col] = str((args.pairs.parent / row[col]).resolve())
    with open(tmp / "pairs.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.rename(args.out)
    print(f"{len(rows)} pairs at {args.voxel_mm} mm: {args.out / 'pairs.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
