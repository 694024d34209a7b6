#!/usr/bin/env python
"""Two fused volumes of one MRI side by side, with their difference, in three planes (central crops at full resolution).

For looking at what a change does to the fused image (seams, ringing, shifts): both volumes must lie on the MRI's
grid, as ``asfe3d fuse`` and ``asfe3d evaluate --save-fused`` write them.

Usage::

    python scripts/compare_fused.py MRI.nii.gz A.nii.gz B.nii.gz OUT.png --labels "before,after"
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mri")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("out")
    p.add_argument("--labels", default="A,B", help="two comma-separated names (default A,B)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT when it exists")
    args = p.parse_args(argv)
    from pathlib import Path

    if Path(args.out).exists() and not args.overwrite:
        p.error(f"{args.out}: exists; pass --overwrite to replace it")
    labels = args.labels.split(",")
    if len(labels) != 2:
        p.error(f"--labels needs two names, got {args.labels!r}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib
    import numpy as np

    vols = [np.asarray(nib.load(f).dataobj, dtype=np.float32) for f in (args.mri, args.a, args.b)]
    if len({v.shape for v in vols}) != 1:
        p.error(f"the three volumes must share one grid, got shapes {[v.shape for v in vols]}")
    vols.append(vols[2] - vols[1])
    centre = [n // 2 for n in vols[0].shape]

    def crop(v: np.ndarray, axis: int) -> np.ndarray:
        index = [slice(None)] * 3
        index[axis] = centre[axis]
        plane = v[tuple(index)]
        h, w = plane.shape
        return np.rot90(plane[h // 4:3 * h // 4, w // 4:3 * w // 4])

    titles = ["MRI", *labels, f"{labels[1]} - {labels[0]}"]
    fig, axes = plt.subplots(3, 4, figsize=(16, 12))
    for row, axis in enumerate((2, 1, 0)):
        for col, v in enumerate(vols):
            ax = axes[row, col]
            if col < 3:
                lo, hi = np.percentile(v[v > 0], [1, 99.5]) if (v > 0).any() else (0.0, 1.0)
                ax.imshow(crop(v, axis), cmap="gray", vmin=lo, vmax=hi)
            else:
                m = float(np.percentile(np.abs(v), 99.5)) or 1.0
                ax.imshow(crop(v, axis), cmap="RdBu_r", vmin=-m, vmax=m)
            ax.set_axis_off()
            if row == 0:
                ax.set_title(titles[col])
    fig.tight_layout()
    import os

    part = f"{args.out}.part.png"  # never a half-written figure under the final name
    fig.savefig(part, dpi=60)
    os.replace(part, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
