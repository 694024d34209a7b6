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


def _check(args: argparse.Namespace) -> list[str]:
    """Every mistake before any volume is read: ``labels`` as two names; each input an image file (its header
    read, not its voxels) on one grid; ``out`` a .png that is new or ``--overwrite`` given.

    Raises:
        Asfe3dInputError: the file at fault and the problem.
    """
    from pathlib import Path

    import nibabel as nib

    from asfe3d.errors import Asfe3dInputError

    labels = args.labels.split(",")
    if len(labels) != 2 or not all(labels):
        raise Asfe3dInputError("--labels", f"needs two comma-separated names, got {args.labels!r}")
    shapes = {}
    for path in (args.mri, args.a, args.b):
        if not Path(path).is_file():
            raise Asfe3dInputError(path, "is a folder, not a file" if Path(path).is_dir() else "file not found")
        try:
            shapes[path] = tuple(nib.load(path).shape)
        except Exception as exc:  # noqa: BLE001 - any reader failure is this file's problem, said in one line
            raise Asfe3dInputError(path, f"cannot be read as an image ({type(exc).__name__}: {exc})") from None
    if len(set(shapes.values())) != 1:
        raise Asfe3dInputError(args.b, f"the three volumes must share one grid (the MRI's), got shapes "
                                       f"{list(shapes.values())}")
    if len(shapes[args.mri]) != 3:
        raise Asfe3dInputError(args.mri, f"must be a 3D volume, got shape {shapes[args.mri]}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise Asfe3dInputError(out, "the figure is written as PNG: name it .png")
    if out.exists() and not args.overwrite:
        raise Asfe3dInputError(out, "exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise Asfe3dInputError(out, f"its folder {out.parent} does not exist")
    return labels


def main(argv: list[str] | None = None) -> int:
    from asfe3d.errors import Asfe3dInputError, InputErrorParser

    p = InputErrorParser(prog="compare_fused.py", description=__doc__.splitlines()[0])
    p.add_argument("mri")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("out")
    p.add_argument("--labels", default="A,B", help="two comma-separated names (default A,B)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT when it exists")
    try:
        args = p.parse_args(argv)
        labels = _check(args)
    except Asfe3dInputError as exc:
        print(f"asfe3d: error: {exc}", file=sys.stderr)
        return 2

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib
    import numpy as np

    vols = [np.asarray(nib.load(f).dataobj, dtype=np.float32) for f in (args.mri, args.a, args.b)]
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
