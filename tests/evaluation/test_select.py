"""The weight-selection rule: bars met, wins counted against every classic method."""

from __future__ import annotations

import csv

import pytest

from asfe3d.evaluation.select import CLASSIC, judge, main, read_rows
from asfe3d.metrics import METRIC_NAMES


def _means(cand: float, extra: dict[str, float]) -> dict[str, dict[str, float]]:
    means = {m: {k: 0.5 for k in METRIC_NAMES} for m in CLASSIC}
    means["asfe-volume"] = {**{k: cand for k in METRIC_NAMES}, **extra}
    return means


def test_judge_qualifies_only_when_every_bar_is_met() -> None:
    good = judge(_means(0.6, {"DETAIL": 0.9, "PETC": 0.9, "DT": 0.9, "EMPTY": 0.0}), "asfe-volume")
    assert good["qualifies"] and good["wins"] == {m: 11 for m in CLASSIC}
    low_detail = judge(_means(0.6, {"DETAIL": 0.84, "PETC": 0.9, "DT": 0.9, "EMPTY": 0.0}), "asfe-volume")
    assert not low_detail["qualifies"] and low_detail["n_met"] == 4 and not low_detail["met"]["DETAIL"]
    few_wins = judge(_means(0.4, {"DETAIL": 0.9, "PETC": 0.9, "DT": 0.9, "EMPTY": 0.0}), "asfe-volume")
    assert not few_wins["met"]["wins"]
    with pytest.raises(KeyError):
        judge(_means(0.6, {}), "asfe-slice")


def test_cli_reads_baseline_and_candidate(tmp_path, capsys) -> None:
    cols = ["case", "method", *METRIC_NAMES, "DETAIL", "PETC", "DT", "EMPTY"]
    base, cand = tmp_path / "base.csv", tmp_path / "cand.csv"
    with open(base, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for m in CLASSIC:
            w.writerow({"case": "a", "method": m, **{k: 0.5 for k in cols[2:]}, "EMPTY": 0})
    with open(cand, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerow({"case": "a", "method": "asfe-volume", **{k: 0.9 for k in cols[2:]}, "EMPTY": 0})
    assert read_rows(cand, rename="c1")[0]["method"] == "c1:asfe-volume"
    assert main([str(base), f"c1={cand}"]) == 0
    out = capsys.readouterr().out
    assert "| c1:asfe-volume | 0.900 | 0.900 | 0.900 | 0 | 11 / 11 / 11 / 11 / 11 | 5/5 | yes |" in out
