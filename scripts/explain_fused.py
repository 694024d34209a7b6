#!/usr/bin/env python
"""What a fused volume is made of, region by region: ``F ~ a * PET + b * MRI + c * detail(MRI) + d``.

A least-squares fit of a method's fused image on the PET, the MRI, the MRI's detail band below ``--fwhm`` mm and a
constant, inside the brain and in the rest of the head (scalp, skull, face, neck). It tells where a method differs
from a simple fusion: the learned default draws the brain as about ``0.9 PET + 0.1 MRI + 1.2 detail`` (the family
of ``scripts/wins_feasibility.py``) but the rest of the head as about half the MRI plus its detail, which is what
costs it CC, SCD and PSNR (``docs/evaluation.md``, "Can the wins bar be met at all?").

With ``--outside POINT`` the 11 metrics are also printed for the method's image with the rest of the head
replaced by that point of the feasibility family (and the reverse), to measure what each region costs.

Usage::

    python scripts/explain_fused.py --pairs runs/heldout_ind/pairs.csv --case otsu_00_fdg --method asfe-volume \\
        --outside g=1,w=0.12

The pairs CSV needs a ``brain`` column. Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def fit_regions(fused: Any, mri: Any, pet: Any, brain: Any, head: Any, spacing: Any, fwhm: float = 6.0
                ) -> dict[str, dict[str, float]]:
    """Least-squares coefficients of ``fused`` on ``(pet, mri, detail, 1)`` per region.

    Args:
        fused, mri, pet: ``(X, Y, Z)`` images in ``[0, 1]``.
        brain, head: boolean masks of the same shape (the rest of the head is ``head & ~brain``).
        spacing: voxel size in mm.
        fwhm: where the MRI's detail band is cut, in mm.

    Returns:
        ``{region: {"pet", "mri", "detail", "const", "resid_sd", "share"}}`` for ``brain`` and ``rest``
        (``share``: the region's fraction of the head's voxels).

    Raises:
        ValueError: shapes differ or a region has fewer than 16 voxels (quoted).
    """
    import numpy as np

    from asfe3d.metrics.bands import band_split

    arrays = {"fused": fused, "mri": mri, "pet": pet, "brain": brain, "head": head}
    shapes = {k: np.shape(v) for k, v in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"arrays must share one shape, got {shapes}")
    f, m, p = (np.asarray(x, np.float64) for x in (fused, mri, pet))
    head = np.asarray(head, bool)
    brain = np.asarray(brain, bool) & head
    detail = band_split(m, spacing, fwhm)[1]
    out = {}
    for name, region in (("brain", brain), ("rest", head & ~brain)):
        n = int(region.sum())
        if n < 16:
            raise ValueError(f"region {name!r} has {n} voxels; need at least 16")
        x = np.stack([p[region], m[region], detail[region], np.ones(n)], axis=1)
        coef, *_ = np.linalg.lstsq(x, f[region], rcond=None)
        resid = f[region] - x @ coef
        out[name] = {"pet": float(coef[0]), "mri": float(coef[1]), "detail": float(coef[2]),
                     "const": float(coef[3]), "resid_sd": float(resid.std()), "share": n / int(head.sum())}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Fit one case's fused image per region; print the table (and the swapped-region metrics)."""
    ap = argparse.ArgumentParser(prog="explain_fused.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=Path, required=True, help="pairs CSV (asfe3d evaluate --pairs) with a brain column")
    ap.add_argument("--case", required=True, help="the subject to explain")
    ap.add_argument("--method", default="asfe-volume", help="a method of asfe3d evaluate (default: asfe-volume)")
    ap.add_argument("--fwhm", type=float, default=6.0, help="detail band cut in mm (default 6)")
    ap.add_argument("--outside", default=None, metavar="POINT",
                    help="a point of scripts/wins_feasibility.py's family to swap in outside the brain")
    ap.add_argument("--registration", default="none", choices=("none", "rigid"), help="how the pair is loaded")
    args = ap.parse_args(argv)
    if not args.pairs.is_file():
        print(f"asfe3d: error: {args.pairs}: no such file", file=sys.stderr)
        return 2
    if not args.fwhm > 0:
        print(f"asfe3d: error: --fwhm: must be > 0 mm, got {args.fwhm!r}", file=sys.stderr)
        return 2

    import numpy as np

    from asfe3d.evaluation.evaluate import NetworkOptions, build_fusers, load_volume_case, read_pairs_csv
    from asfe3d.metrics import METRIC_NAMES, fusion_metrics

    rows = [r for r in read_pairs_csv(args.pairs) if r["subject"] == args.case]
    if not rows:
        print(f"asfe3d: error: {args.pairs}: no subject {args.case!r}", file=sys.stderr)
        return 2
    if rows[0].get("brain") is None:
        print(f"asfe3d: error: {args.pairs}: {args.case!r} has no brain mask (brain column)", file=sys.stderr)
        return 2
    point = None
    if args.outside is not None:
        from asfe3d.evaluation.feasibility import PointFusion, parse_point

        try:
            point = PointFusion(parse_point(args.outside))
        except ValueError as exc:
            print(f"asfe3d: error: --outside: {exc}", file=sys.stderr)
            return 2
    try:
        fusers = build_fusers([args.method], options=NetworkOptions(device="cpu"))
    except ValueError as exc:
        print(f"asfe3d: error: --method: {exc}", file=sys.stderr)
        return 2
    case = load_volume_case(rows[0], registration=args.registration)
    fuser = fusers[args.method]
    kwargs = {"spacing": case.spacing} if getattr(fuser, "uses_spacing", False) else {}
    if getattr(fuser, "mode", None) == "slice":
        kwargs["slice_axis"] = case.axis
    fused = np.clip(np.asarray(fuser(case.mri, case.other, **kwargs), np.float32), 0, 1)
    fit = fit_regions(fused, case.mri, case.other, case.brain, case.mask, case.spacing, args.fwhm)
    print(f"{args.case} {args.method}: fused ~ a * PET + b * MRI + c * detail(<{args.fwhm:g} mm) + d")
    print("| region | share of head | a (PET) | b (MRI) | c (detail) | d | residual SD |")
    print("|---|---|---|---|---|---|---|")
    for name, v in fit.items():
        print(f"| {name} | {v['share']:.3f} | {v['pet']:.3f} | {v['mri']:.3f} | {v['detail']:.3f} | "
              f"{v['const']:.3f} | {v['resid_sd']:.4f} |")
    if point is not None:
        other = np.clip(point(case.mri, case.other, spacing=case.spacing), 0, 1)
        rest = case.mask & ~case.brain
        images = {args.method: fused, args.outside: other,
                  f"{args.method} in the brain, {args.outside} outside": np.where(rest, other, fused),
                  f"{args.outside} in the brain, {args.method} outside": np.where(rest, fused, other)}
        print("\n| image | " + " | ".join(METRIC_NAMES) + " |")
        print("|---|" + "---|" * len(METRIC_NAMES))
        for name, img in images.items():
            v = fusion_metrics(img.astype(np.float32), case.mri, case.other, mask=case.mask, names=METRIC_NAMES)
            print(f"| {name} | " + " | ".join(f"{v[k]:.3f}" for k in METRIC_NAMES) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
