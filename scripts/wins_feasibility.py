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
    f = m * (wo * mri + (1 - wo) * f) + (1 - m) * f,  m = clip(1 - blur4(pet) / t)  # optional: the MRI where
                                                                                    # the PET is low (wo of it)
    f = max(f, gate * mx * mri),  gate = clip((tg - blur4(pet)) / (tg / 2)) (1 without tg)  # optional max
    f = k * f                                                # optional gain (the scoring clips to [0, 1])

and ``hpm`` (asked for by ``--points`` only) scales ``de`` by ``(1 - hpm) + hpm * clip(pet / lo, 0, 3)``: the
detail modulated by the PET, as high-pass modulation pansharpening does.

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
PARAMS = {"g": 1.0, "w": 0.0, "b": 0.0, "fwhm": 6.0, "gamma": 1.0, "t": 0.0, "wo": 1.0, "lap": 0.0, "wav": 0.0,
          "mx": 0.0, "tg": 0.0, "k": 1.0, "hpm": 0.0}
#: where ``--random`` draws each parameter: ``(probability the parameter is used, low, high)``; unused ones keep
#: :data:`PARAMS`' value (``fwhm`` is drawn from 4-8 mm in whole mm)
RANGES: dict[str, tuple[float, float, float]] = {
    "g": (1.0, 0.6, 1.6), "w": (1.0, 0.0, 0.15), "b": (0.5, 0.0, 0.2), "fwhm": (1.0, 4.0, 8.0),
    "gamma": (0.5, 0.8, 1.2), "t": (0.4, 0.05, 0.35), "wo": (1.0, 0.3, 1.0), "lap": (0.3, 0.0, 0.4),
    "wav": (0.3, 0.0, 0.4), "mx": (0.5, 0.4, 1.0), "tg": (0.6, 0.1, 0.4), "k": (0.5, 0.9, 1.15),
}


def random_point(rng: Any, around: dict[str, float] | None = None, scale: float = 1.0) -> str:
    """A point of the family as a spec string: drawn from :data:`RANGES`, or, with ``around``, that point moved by
    up to ``scale`` x 15 % of each range (clipped to the range; parameters it does not use stay unused)."""
    import numpy as np

    out = {}
    for key, (p_use, lo, hi) in RANGES.items():
        if around is None:
            if rng.random() >= p_use:
                continue
            v = float(rng.uniform(lo, hi))
        else:
            if around[key] == PARAMS[key] and key not in ("g", "fwhm"):
                continue
            v = float(np.clip(around[key] + rng.normal(0.0, 0.15 * scale * (hi - lo)), lo, hi))
        out[key] = round(v) if key == "fwhm" else round(v, 3)
    if around is not None:  # parameters outside RANGES (e.g. hpm, only asked for by --points) are kept
        out.update({k: around[k] for k in PARAMS if k not in RANGES and around[k] != PARAMS[k]})
    if out.get("tg", 0) and not out.get("mx", 0):  # a gate without a max does nothing
        out.pop("tg")
    return ",".join(f"{k}={v:g}" for k, v in out.items())


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
        detail = _cached(("detail", p["fwhm"], str(sp)), (mri,), lambda: band_split(mri, sp, p["fwhm"])[1])
        base = pet ** p["gamma"] if p["gamma"] != 1.0 else pet
        if p["hpm"] > 0:  # high-pass modulation: the detail scaled by PET / the MRI's low band, as in HPM pansharpening
            ratio = _cached(("ratio", p["fwhm"], str(sp)), (mri, pet), lambda: np.clip(
                pet / np.maximum(mri - detail, 0.02), 0.0, 3.0))
            detail = detail * ((1 - p["hpm"]) + p["hpm"] * ratio)
        f = (1 - p["w"]) * base + (p["w"] + p["b"]) * mri + p["g"] * detail
        if p["lap"] > 0:
            lap = _cached(("laplacian",), (mri, pet), lambda: np.asarray(get_fuser("laplacian")(mri, pet), np.float64))
            f = (1 - p["lap"]) * f + p["lap"] * lap
        if p["wav"] > 0:
            wav = _cached(("wavelet",), (mri, pet), lambda: np.asarray(get_fuser("wavelet")(mri, pet), np.float64))
            f = (1 - p["wav"]) * f + p["wav"] * wav
        pet_low = _cached(("pet_low", str(sp)), (pet,), lambda: band_split(pet, sp, 4.0)[0]) if (p["t"] > 0 or p["tg"] > 0) \
            else None
        if p["t"] > 0:
            m = np.clip(1 - pet_low / p["t"], 0, 1)
            f = m * (p["wo"] * mri + (1 - p["wo"]) * f) + (1 - m) * f
        if p["mx"] > 0:
            gate = np.clip((p["tg"] - pet_low) / (0.5 * p["tg"]), 0, 1) if p["tg"] > 0 else 1.0
            f = np.maximum(f, gate * p["mx"] * mri)
        return (p["k"] * f).astype(np.float32)


#: what a point computes once per input image (the MRI's detail band, the PET's low band, the classic fusions):
#: keyed by what was asked and the image's identity, so a search over many points does the work once per case
_CACHE: dict[tuple[Any, ...], Any] = {}


def _cached(key: tuple[Any, ...], images: tuple[Any, ...], make: Any) -> Any:
    full = (*key, *((x.shape, float(x.sum()), float(x.ravel()[::7].sum())) for x in images))
    if full not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[full] = make()
    return _CACHE[full]


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
