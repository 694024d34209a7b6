"""The registration QC rates harness (``scripts/registration_qc_rates.py`` is a thin wrapper of it): the counts
of its rates table and its argument checks."""

from __future__ import annotations

import pytest

from asfe3d.evaluation.registration_rates import main, rates


def _row(kind, correct, verdict, start="moments", cpu=2.0):
    return {"name": "x", "kind": kind, "verdict": verdict, "plain": verdict, "correct": correct,
            "error": 1.0, "seconds": cpu, "cpu": cpu, "start": start}


def test_rates_table_counts():
    rows = [_row("good", True, "pass"), _row("good", True, "fail"), _row("good", False, "pass"),
            _row("bad", True, "warn", start="turn z 180", cpu=8.0), _row("bad", False, "fail")]
    lines: list[str] = []
    rates(rows, lines.append)
    table = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1].rstrip(" |") for line in lines if " | " in line}
    assert table["good pairs registered correctly"] == "2/3"
    assert table["bad pairs recovered by the multi-start search (correct)"] == "1/2"
    assert table["false alarms: correct registrations judged fail"] == "1/3"
    assert table["correct registrations judged warn"] == "1/3"
    assert table["misses: wrong registrations judged pass"] == "1/2"
    assert table["wrong registrations judged warn (not refused)"] == "0/2"
    assert table["good input pairs judged pass"] == "2/3"
    assert table["CPU seconds per registration, search result kept (mean)"] == "8.0"
    assert table["CPU seconds per registration, no search kept (mean; includes searches that were not kept)"] == "2.0"


def test_rates_of_nothing():
    lines: list[str] = []
    rates([], lines.append)
    assert "| good pairs registered correctly | 0/0 |" in lines and not any("CPU" in line for line in lines)


@pytest.mark.parametrize("args, message", [
    (["--correct-mm", "0"], "--correct-mm must be > 0"),
    (["--whole-head-t1", "/no/such/t1.nii"], "no such file"),
])
def test_bad_arguments_are_refused(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["--workdir", str(tmp_path / "w"), *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err
