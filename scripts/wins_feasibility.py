#!/usr/bin/env python
"""Can any simple fusion meet the selection rule's bars at once? A search over hand-made fusions (issue 16).

The rule (``docs/training.md``) asks a candidate for DETAIL, PETC and DT >= 0.85 *and* at least 7 of the 11 metrics
against each of mean, max, wavelet, laplacian and highpass. This script scores a family of analytic fusions on
held-out pairs with ``asfe3d evaluate``'s own scoring (``evaluate_case``) and judges each by the rule
(``asfe3d.evaluation.select.judge``) against the classic methods' rows of a baseline CSV of the same pairs. If no
point of the family meets every bar, the failure of the learned candidates is not only a matter of training.

The family: ``asfe3d.evaluation.feasibility`` (its docstring has the exact forms; ``hpm`` is asked for by
``--points`` only).

Usage::

    python scripts/wins_feasibility.py --pairs runs/heldout_ind/pairs.csv \\
        --baseline runs/eval_base/ind_base_metrics.csv --out docs/results/wins_feasibility.csv

A random search over the same family (``RANGES``), with rounds of refinement around the best point so far::

    python scripts/wins_feasibility.py --pairs runs/heldout_ind/pairs.csv --registration none \\
        --baseline docs/results/individual_heldout_metrics.csv --out wins_search.csv --random 120 --refine 6 --seed 1

Prints one line per point (DETAIL, PETC, DT, wins against each classic method, bars met) and writes every
point's means to ``--out`` (never over an existing file unless ``--overwrite``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asfe3d.evaluation.feasibility import (  # noqa: F401 (the family, kept importable from this script)
    GRID,
    PARAMS,
    RANGES,
    PointFusion,
    parse_point,
    random_point,
)


def _least_key(r: dict[str, Any]) -> tuple[float, ...]:
    """Sort key of a scored point: every bar but wins met first, then the least wins, then the sum of wins."""
    from asfe3d.evaluation.select import CLASSIC

    bars = all(r[k] >= 0.85 for k in ("DETAIL", "PETC", "DT"))
    wins = [r[f"wins_{c}"] for c in CLASSIC]
    return (float(bars), min(wins), sum(wins))


def main(argv: Sequence[str] | None = None) -> int:
    """Score the grid (or a random search); print one line per point; write the means CSV."""
    ap = argparse.ArgumentParser(prog="wins_feasibility.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=Path, required=True, help="pairs CSV of held-out volumes (asfe3d evaluate --pairs)")
    ap.add_argument("--baseline", type=Path, required=True,
                    help="metrics CSV of asfe3d evaluate on the same pairs holding the classic methods' rows")
    ap.add_argument("--out", type=Path, required=True, help="CSV of every point's means (new file)")
    ap.add_argument("--points", nargs="*", default=None, help="points to score (default: the built-in grid)")
    ap.add_argument("--random", type=int, default=0, metavar="N",
                    help="instead of the grid: N points drawn from RANGES, then --refine rounds around the best")
    ap.add_argument("--refine", type=int, default=0, metavar="R",
                    help="with --random: R rounds of 8 points moved around the best point so far (shrinking steps)")
    ap.add_argument("--seed", type=int, default=0, help="random search seed")
    ap.add_argument("--registration", default="rigid", choices=("rigid", "none"),
                    help="how the pairs are loaded (the baseline CSV must have been made the same way)")
    ap.add_argument("--overwrite", action="store_true", help="replace --out if this script wrote it before")
    args = ap.parse_args(argv)
    for path in (args.pairs, args.baseline):
        if not path.is_file():
            print(f"asfe3d: error: {path}: no such file", file=sys.stderr)
            return 2
    if args.out.exists() and not args.overwrite:
        print(f"asfe3d: error: {args.out}: exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    if args.random < 0 or args.refine < 0 or (args.refine and not args.random) or (args.random and args.points):
        print(f"asfe3d: error: --random {args.random} --refine {args.refine}: need --random N >= 1 for --refine, "
              "and not both --random and --points", file=sys.stderr)
        return 2
    try:
        specs = list(GRID) if args.points is None and not args.random else list(args.points or [])
        for spec in specs:
            parse_point(spec)
    except ValueError as exc:
        print(f"asfe3d: error: --points: {exc}", file=sys.stderr)
        return 2

    import csv

    import numpy as np

    from asfe3d.evaluation.evaluate import evaluate_case, load_volume_case, mean_table, read_pairs_csv
    from asfe3d.evaluation.select import CLASSIC, judge, read_rows
    from asfe3d.io import atomic_output
    from asfe3d.metrics import METRIC_NAMES

    base = [r for r in read_rows(args.baseline) if r["method"] in CLASSIC]
    missing = sorted(set(CLASSIC) - {r["method"] for r in base})
    if missing:
        print(f"asfe3d: error: {args.baseline}: no rows for {missing}", file=sys.stderr)
        return 2
    cases = [load_volume_case(pair, registration=args.registration) for pair in read_pairs_csv(args.pairs)]
    out_rows: list[dict[str, Any]] = []

    def score(batch: list[str]) -> None:
        batch = [b for b in dict.fromkeys(batch) if b not in {r["point"] for r in out_rows}]
        fusers = {spec: PointFusion(parse_point(spec)) for spec in batch}
        rows: list[dict[str, Any]] = []
        for case in cases:
            rows += evaluate_case(case, fusers).rows
        means = mean_table(base + rows)
        for spec in batch:
            j = judge(means, spec)
            out_rows.append({"point": spec, "DETAIL": j["DETAIL"], "PETC": j["PETC"], "DT": j["DT"],
                             **{f"wins_{c}": j["wins"][c] for c in CLASSIC}, "bars_met": j["n_met"],
                             **{k: means[spec][k] for k in METRIC_NAMES}})
            wins = "/".join(str(j["wins"][c]) for c in CLASSIC)
            print(f"{spec:40s} DETAIL {j['DETAIL']:.3f} PETC {j['PETC']:.3f} DT {j['DT']:.3f} wins {wins} "
                  f"bars {j['n_met']}/5", flush=True)

    if args.random:
        rng = np.random.default_rng(args.seed)
        draws = [random_point(rng) for _ in range(args.random)]
        for k in range(0, len(draws), 8):
            score(draws[k: k + 8])
        for r in range(args.refine):
            best = max(out_rows, key=_least_key)
            score([random_point(rng, parse_point(best["point"]), scale=0.7 ** r) for _ in range(8)])
    else:
        for k in range(0, len(specs), 8):
            score(specs[k: k + 8])
    cols = ["point", "DETAIL", "PETC", "DT", *[f"wins_{c}" for c in CLASSIC], "bars_met", *METRIC_NAMES]
    with atomic_output(args.out, overwrite=args.overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols)
            writer.writeheader()
            for r in out_rows:
                writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    best = max(out_rows, key=_least_key)
    print(f"best point (DETAIL, PETC, DT >= 0.85 first, then the least wins): {best['point']} "
          f"({'/'.join(str(best[f'wins_{c}']) for c in CLASSIC)}); "
          f"points meeting every bar: {sum(r['bars_met'] == 5 for r in out_rows)} of {len(out_rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
