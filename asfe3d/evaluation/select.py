"""The rule that chooses shipped weights (``docs/training.md``, "The selection rule"): a candidate's rows from
``asfe3d evaluate`` are judged against the classic methods' rows of the same held-out pairs.

``python -m asfe3d.evaluation.select BASELINE.csv NAME=CANDIDATE.csv [...]`` prints one row per candidate.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BARS", "judge", "read_rows", "main"]

#: the rule's bars: DETAIL and PETC (both >= 0.85), DT (>= 0.85), wins (>= 7 of 11 against each classic method),
#: EMPTY (== 0)
BARS = {"DETAIL": 0.85, "PETC": 0.85, "DT": 0.85, "wins": 7, "EMPTY": 0.0}
CLASSIC = ("mean", "max", "wavelet", "laplacian", "highpass")


def read_rows(path: str | Path, rename: str | None = None) -> list[dict[str, Any]]:
    """Rows of an ``asfe3d evaluate`` metrics CSV (numbers as floats); ``rename``: give every learned row
    (``asfe*``) this method name."""
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            conv: dict[str, Any] = {}
            for k, v in row.items():
                try:
                    conv[k] = float(v)
                except (TypeError, ValueError):
                    conv[k] = v
            if rename and str(conv["method"]).startswith("asfe"):
                conv["method"] = f"{rename}:{conv['method']}"
            out.append(conv)
    return out


def judge(means: Mapping[str, Mapping[str, float]], candidate: str, classic: Sequence[str] = CLASSIC
          ) -> dict[str, Any]:
    """Which bars of :data:`BARS` a candidate meets.

    Args:
        means: ``{method: {column: mean}}`` (:func:`asfe3d.evaluation.evaluate.mean_table`).
        candidate: the learned method's name in ``means``.
        classic: the methods whose 11 metrics it must win 7 of.

    Returns:
        ``{"DETAIL", "PETC", "DT", "EMPTY": values, "wins": {method: n}, "met": {bar: bool}, "n_met": int,
        "qualifies": bool}``.

    Raises:
        ValueError: a method missing from ``means``.
    """
    from asfe3d.evaluation.evaluate import count_wins

    row = means[candidate]
    wins = {o: len(count_wins(means, candidate, o)) for o in classic}
    value = {k: float(row.get(k, math.nan)) for k in ("DETAIL", "PETC", "DT", "EMPTY")}
    met = {
        "DETAIL": value["DETAIL"] >= BARS["DETAIL"],
        "PETC": value["PETC"] >= BARS["PETC"],
        "DT": value["DT"] >= BARS["DT"],
        "wins": min(wins.values()) >= BARS["wins"],
        "EMPTY": value["EMPTY"] == BARS["EMPTY"],
    }
    return {**value, "wins": wins, "met": met, "n_met": sum(met.values()), "qualifies": all(met.values())}


def main(argv: Sequence[str] | None = None) -> int:
    """Print the rule's verdict for each candidate CSV against a baseline CSV."""
    from asfe3d.evaluation.evaluate import mean_table

    p = argparse.ArgumentParser(prog="python -m asfe3d.evaluation.select", description=__doc__)
    p.add_argument("baseline", type=Path, help="metrics CSV holding the classic methods' rows")
    p.add_argument("candidates", nargs="*", help="NAME=metrics.csv of a candidate's asfe rows")
    args = p.parse_args(argv)
    rows = [r for r in read_rows(args.baseline)]
    names = []
    for spec in args.candidates:
        name, _, path = spec.partition("=")
        if not path:
            p.error(f"candidate must be NAME=CSV, got {spec!r}")
        cand = read_rows(path, rename=name)
        rows += [r for r in cand if str(r["method"]).startswith(name + ":")]
        names += sorted({str(r["method"]) for r in cand if str(r["method"]).startswith(name + ":")})
    means = mean_table(rows)
    print("| candidate | DETAIL | PETC | DT | EMPTY | wins vs " + " / ".join(CLASSIC) + " | bars met | qualifies |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names + [m for m in means if m.startswith("asfe")]:
        v = judge(means, name)
        wins = " / ".join(str(v["wins"][o]) for o in CLASSIC)
        print(f"| {name} | {v['DETAIL']:.3f} | {v['PETC']:.3f} | {v['DT']:.3f} | {v['EMPTY']:.3g} | {wins} | "
              f"{v['n_met']}/5 | {'yes' if v['qualifies'] else 'no'} |")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
