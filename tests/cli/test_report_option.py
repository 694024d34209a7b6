"""``--report``: the HTML report is one of the run's outputs (written with the others, listed in the completion
record), and a cohort gets an index page linking every subject."""

from __future__ import annotations

import json

from asfe3d.cli import main
from tests.conftest import make_cohort


def test_single_run_report_is_part_of_the_output_set(pair, tmp_path, capsys):
    mri, pet = pair
    out = tmp_path / "out" / "f.nii.gz"
    args = ["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--report", "--no-progress"]
    assert main(args) == 0
    report = tmp_path / "out" / "f_report.html"
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "data:image/png;base64," in text
    record = json.loads((tmp_path / "out" / "f.json").read_text())
    assert record["status"] == "complete" and record["outputs"]["report"]["path"] == str(report.resolve())
    # its timings: every step, saving included (up to the page), and their sum
    for step in ("load", "register", "fuse", "save", "all steps"):
        assert f"<th>{step} (s)</th>" in text or f"<td>{step} (s)</td>" in text, step
    # a rerun without --overwrite refuses before any work and leaves the report alone
    before = report.read_bytes()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err and report.read_bytes() == before


def test_cohort_report_index(tmp_path, demo_files, capsys):
    csv_path = make_cohort(tmp_path, demo_files, 2)
    out = tmp_path / "out"
    args = ["fuse", "--datalist", str(csv_path), "--output-dir", str(out), "--method", "mean", "--registration",
            "none", "--report", "--no-progress"]
    assert main(args) == 0
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "sub01" in index and "sub02" in index and "sub01_fused_report.html" in index
    assert 'data-verdict="' in index and '"badge none">registration' not in index  # the verdict's badge once
    assert (out / "sub02_fused_report.html").is_file()
    assert "reports:" in capsys.readouterr().out


def test_cohort_index_of_the_users_own_is_refused_before_any_subject(tmp_path, demo_files, capsys):
    csv_path = make_cohort(tmp_path, demo_files, 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("<html>my own index</html>")
    args = ["fuse", "--datalist", str(csv_path), "--output-dir", str(out), "--method", "mean", "--registration",
            "none", "--report", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "index.html: exists and is not an asfe3d report index" in err
    assert sorted(p.name for p in out.iterdir()) == ["index.html"]  # nothing fused, nothing written
    assert (out / "index.html").read_text() == "<html>my own index</html>"
