#!/usr/bin/env python
"""Can any simple fusion meet the selection rule's bars at once? A search over hand-made fusions (issue 16).

The rule (``docs/training.md``) asks a candidate for DETAIL, PETC and DT >= 0.85 *and* at least 7 of the 11 metrics
against each of mean, max, wavelet, laplacian and highpass. This script scores a family of analytic fusions on
held-out pairs with ``asfe3d evaluate``'s own scoring (``evaluate_case``) and judges each by the rule
(``asfe3d.evaluation.select.judge``) against the classic methods' rows of a baseline CSV of the same pairs. If no
point of the family meets every bar, the failure of the learned candidates is not only a matter of training.

The family (``mri``, ``pet`` in [0, 1]; ``lo``, ``de`` = the MRI split at ``fwhm`` mm, ``de`` its detail band)::

    f = (1 - w) * pet**gamma + (w + b) * mri + g * de
    f = (1 - lap) * f + lap * laplacian(mri, pet)          # optional blends with a classic method
    f = (1 - wav) * f + wav * wavelet(mri, pet)
    f = m * mri + (1 - m) * f,  m = clip(1 - blur4(pet) / t)  # optional: the MRI where the PET is low
    f = max(f, gate * mx * mri),  gate = clip((tg - blur4(pet)) / (tg / 2)) (1 without tg)  # optional max

Usage::

    python scripts/wins_feasibility.py --pairs runs/heldout_ind/pairs.csv \\
        --baseline runs/eval_base/ind_base_metrics.csv --out docs/results/wins_feasibility.csv

Prints one line per point (DETAIL, PETC, DT, wins against each classic method, bars met) and writes every
point's means to ``--out`` (never over an existing file unless ``--overwrite``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: the points searched (each a dict of the family's parameters; the rest take their defaults)
GRID: tuple[str, ...] = (
    "g=1", "g=1,w=0.12", "g=1.5,w=0.1", "g=1,w=0.12,fwhm=4", "g=1,w=0.12,fwhm=8", "g=1,w=0.12,gamma=0.8",
    "g=1,w=0.1,b=0.1", "g=1,w=0.1,b=0.2", "g=1,w=0.1,b=0.3", "g=0.8,w=0.1,b=0.2",
    "g=1,w=0.12,t=0.15", "g=1,w=0.12,t=0.3",
    "g=1,w=0.12,lap=0.2", "g=1,w=0.12,lap=0.3", "g=1.2,w=0.12,lap=0.3", "g=1,w=0.12,wav=0.3",
    "g=1,w=0.12,mx=0.6", "g=1,w=0.12,mx=0.8", "g=1.3,w=0.12,mx=0.6", "g=1.2,w=0.1,mx=0.5",
    "g=1.3,w=0.15,mx=0.7", "g=1.5,w=0.12,mx=0.65",
    "g=1,w=0.12,mx=0.6,tg=0.15", "g=1,w=0.12,mx=0.8,tg=0.15", "g=1,w=0.12,mx=0.8,tg=0.3",
    "g=1,w=0.12,mx=1,tg=0.2", "g=1.2,w=0.12,mx=0.7,tg=0.3", "g=1,w=0.15,mx=0.7,tg=0.25",
    "g=1.1,w=0.12,mx=0.6,tg=0.3,lap=0.15", "g=1,w=0.12,mx=0.9,tg=0.1",
)
PARAMS = {"g": 1.0, "w": 0.0, "b": 0.0, "fwhm": 6.0, "gamma": 1.0, "t": 0.0, "lap": 0.0, "wav": 0.0, "mx": 0.0,
          "tg": 0.0}


def parse_point(spec: str) -> dict[str, float]:
    """``"g=1,w=0.12"`` -> the family's full parameter dict.

    Raises:
        ValueError: an unknown name or a value that is not a number (quoted).
    """
    out = dict(PARAMS)
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key not in PARAMS:
            raise ValueError(f"unknown parameter {key!r} in {spec!r}; choose from {sorted(PARAMS)}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"{key}={value!r} in {spec!r} is not a number") from None
    return out


class PointFusion:
    """One point of the family as a fusion method ``(mri, pet, spacing) -> fused`` (works in mm)."""

    uses_spacing = True

    def __init__(self, params: dict[str, float]) -> None:
        self.p = params

    def __call__(self, mri: Any, pet: Any, spacing: Any = None) -> Any:
        import numpy as np

        from asfe3d.fusion import get_fuser
        from asfe3d.metrics.bands import band_split

        p = self.p
        sp = 1.0 if spacing is None else spacing
        mri = np.asarray(mri, np.float64)
        pet = np.asarray(pet, np.float64)
        _, detail = band_split(mri, sp, p["fwhm"])
        base = pet ** p["gamma"] if p["gamma"] != 1.0 else pet
        f = (1 - p["w"]) * base + (p["w"] + p["b"]) * mri + p["g"] * detail
        if p["lap"] > 0:
            f = (1 - p["lap"]) * f + p["lap"] * np.asarray(get_fuser("laplacian")(mri, pet), np.float64)
        if p["wav"] > 0:
            f = (1 - p["wav"]) * f + p["wav"] * np.asarray(get_fuser("wavelet")(mri, pet), np.float64)
        pet_low = band_split(pet, sp, 4.0)[0] if (p["t"] > 0 or p["tg"] > 0) else None
        if p["t"] > 0:
            m = np.clip(1 - pet_low / p["t"], 0, 1)
            f = m * mri + (1 - m) * f
        if p["mx"] > 0:
            gate = np.clip((p["tg"] - pet_low) / (0.5 * p["tg"]), 0, 1) if p["tg"] > 0 else 1.0
            f = np.maximum(f, gate * p["mx"] * mri)
        return f.astype(np.float32)


def main(argv: Sequence[str] | None = None) -> int:
    """Score the grid; print one line per point; write the means CSV."""
    ap = argparse.ArgumentParser(prog="wins_feasibility.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=Path, required=True, help="pairs CSV of held-out volumes (asfe3d evaluate --pairs)")
    ap.add_argument("--baseline", type=Path, required=True,
                    help="metrics CSV of asfe3d evaluate on the same pairs holding the classic methods' rows")
    ap.add_argument("--out", type=Path, required=True, help="CSV of every point's means (new file)")
    ap.add_argument("--points", nargs="*", default=list(GRID), help="points to score (default: the built-in grid)")
    ap.add_argument("--overwrite", action="store_true", help="replace --out if this script wrote it before")
    args = ap.parse_args(argv)
    for path in (args.pairs, args.baseline):
        if not path.is_file():
            print(f"asfe3d: error: {path}: no such file", file=sys.stderr)
            return 2
    if args.out.exists() and not args.overwrite:
        print(f"asfe3d: error: {args.out}: exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    try:
        points = {spec: PointFusion(parse_point(spec)) for spec in args.points}
    except ValueError as exc:
        print(f"asfe3d: error: --points: {exc}", file=sys.stderr)
        return 2

    import csv

    from asfe3d.evaluation.evaluate import evaluate_case, load_volume_case, mean_table, read_pairs_csv
    from asfe3d.evaluation.select import CLASSIC, judge, read_rows
    from asfe3d.io import atomic_output
    from asfe3d.metrics import METRIC_NAMES

    base = [r for r in read_rows(args.baseline) if r["method"] in CLASSIC]
    missing = sorted(set(CLASSIC) - {r["method"] for r in base})
    if missing:
        print(f"asfe3d: error: {args.baseline}: no rows for {missing}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    for pair in read_pairs_csv(args.pairs):
        rows += evaluate_case(load_volume_case(pair), points).rows
    means = mean_table(base + rows)
    cols = ["point", "DETAIL", "PETC", "DT", *[f"wins_{c}" for c in CLASSIC], "bars_met", *METRIC_NAMES]
    out_rows = []
    for spec in points:
        j = judge(means, spec)
        out_rows.append({"point": spec, "DETAIL": j["DETAIL"], "PETC": j["PETC"], "DT": j["DT"],
                         **{f"wins_{c}": j["wins"][c] for c in CLASSIC}, "bars_met": j["n_met"],
                         **{k: means[spec][k] for k in METRIC_NAMES}})
        wins = "/".join(str(j["wins"][c]) for c in CLASSIC)
        print(f"{spec:40s} DETAIL {j['DETAIL']:.3f} PETC {j['PETC']:.3f} DT {j['DT']:.3f} wins {wins} "
              f"bars {j['n_met']}/5", flush=True)
    with atomic_output(args.out, overwrite=args.overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            for r in out_rows:
                writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    best = max(out_rows, key=lambda r: min(r[f"wins_{c}"] for c in CLASSIC))
    print(f"highest least-wins point: {best['point']} "
          f"({'/'.join(str(best[f'wins_{c}']) for c in CLASSIC)}); "
          f"points meeting every bar: {sum(r['bars_met'] == 5 for r in out_rows)} of {len(out_rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
