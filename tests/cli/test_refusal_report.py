"""``--qc strict --report``: a registration refused for its QC still gets its report (the MRI, the PET where the
refused transform put it, the verdict and numbers; no fused image), recorded as a refused run that the next run
redoes and may replace."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from asfe3d.cli import main
from asfe3d.io.record import check_record, read_record
from asfe3d.reports import read_report_summary


def _noise_pet(pet, path):
    """A PET of gamma noise on the PET's grid: its registration is judged failed (``pet_noise``)."""
    img = nib.load(str(pet))
    data = np.random.default_rng(3).gamma(2.0, 1000.0, img.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(path))
    return path


@pytest.fixture
def noise_pair(pair, tmp_path):
    mri, pet = pair
    return mri, _noise_pet(pet, tmp_path / "sub01_noise_pet.nii.gz")


def test_strict_refusal_writes_its_report_and_a_refused_record(noise_pair, tmp_path, capsys, caplog):
    mri, pet = noise_pair
    out = tmp_path / "out" / "f.nii.gz"
    args = ["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--qc", "strict", "--report",
            "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    report = tmp_path / "out" / "f_report.html"
    assert err.count("\n") == 1 and err.startswith("asfe3d: error: ")
    assert "registration judged failed" in err and f"report of the refusal: {report}" in err
    assert f"(onto {mri.name}; either input may be at fault)" in err  # the line names the PET, the MRI may be bad
    assert sorted(p.name for p in out.parent.iterdir()) == ["f.json", "f_report.html"]  # no fused volume
    summary = read_report_summary(report)
    assert summary is not None and summary["status"] == "failed" and summary["verdict"] == "fail"
    text = report.read_text(encoding="utf-8")
    assert "Registration check" in text and "PET looks like noise" in text
    assert "Not written: the pair was not fused" in text and 'alt="fused image"' not in text
    assert "No pair was fused: nothing to describe." in text  # no methods paragraph of a fusion that did not happen
    record = read_record(tmp_path / "out" / "f.json")
    assert record["status"] == "refused" and record["registration"]["qc"]["verdict"] == "fail"
    assert record["outputs"]["report"]["path"] == str(report.resolve()) and "PET looks like noise" in record["refusal"]
    assert check_record(tmp_path / "out" / "f.json", {"fused": out}, {"mri": mri, "pet": pet}).startswith(
        "the recorded run was refused")
    # the same command again: redone (not "already exists"), the report replaced
    assert main(args) == 2
    assert "report of the refusal" in capsys.readouterr().err
    # accepted with --qc warn: the refusal's report and record are asfe3d's own and replaced without --overwrite
    assert main([*args[:8], "warn", *args[9:]]) == 0
    warned = capsys.readouterr().err + caplog.text  # the warning reaches stderr through the logger
    assert f"{pet}: registration judged failed (onto {mri.name}; either input" in warned and "written anyway" in warned
    assert read_record(tmp_path / "out" / "f.json")["status"] == "complete" and out.is_file()
    assert read_report_summary(report)["status"] == "ok"


def test_strict_refusal_without_report_writes_nothing(noise_pair, tmp_path, capsys):
    mri, pet = noise_pair
    out = tmp_path / "out" / "f.nii.gz"
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--qc", "strict",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "(--qc strict: no fused image written)" in err and "report" not in err
    assert not out.parent.exists()


def test_report_of_the_users_own_is_not_replaced_by_a_refusal(noise_pair, tmp_path, capsys):
    mri, pet = noise_pair
    out = tmp_path / "f.nii.gz"
    (tmp_path / "f_report.html").write_text("<html>mine</html>")
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--qc", "strict", "--report",
                 "--no-progress"]) == 2
    assert "does not list it as an earlier asfe3d output" in capsys.readouterr().err  # refused before registering
    assert (tmp_path / "f_report.html").read_text() == "<html>mine</html>"


def test_cohort_summary_and_index_show_the_refused_subject(pair, tmp_path, capsys):
    mri, pet = pair
    for name, pet_file in (("s1", pet), ("s2", _noise_pet(pet, tmp_path / "noise.nii.gz"))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mri.nii.gz").write_bytes(mri.read_bytes())
        (tmp_path / name / "pet.nii.gz").write_bytes(pet_file.read_bytes())
    (tmp_path / "list.csv").write_text("subject,mri,pet\n" + "".join(
        f"{s},{s}/mri.nii.gz,{s}/pet.nii.gz\n" for s in ("s1", "s2")))
    out = tmp_path / "out"
    assert main(["fuse", "--datalist", str(tmp_path / "list.csv"), "--output-dir", str(out), "--method", "mean",
                 "--qc", "strict", "--report", "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert "1 ok, 0 skipped, 1 failed, 1 with a registration judged failed" in printed
    with open(out / "summary.csv", newline="", encoding="utf-8") as f:
        rows = {r["subject"]: r for r in csv.DictReader(f)}
    assert rows["s2"]["status"] == "failed" and rows["s2"]["qc_verdict"] == "fail"
    assert "PET looks like noise" in rows["s2"]["qc_reasons"]
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="s2_fused_report.html"' in index and "registration 1 fail, 1 pass" in index
    assert json.loads((out / "s2_fused.json").read_text())["status"] == "refused"


def test_refusal_after_a_complete_run_with_overwrite_keeps_that_run(pair, noise_pair, tmp_path, capsys):
    """``--overwrite --qc strict --report`` refused after a complete run replaced that run's report and record (the
    fused volume stayed beside a record saying "refused"): a refusal is no complete set, so the earlier one stays."""
    mri, pet = pair
    out = tmp_path / "out" / "f.nii.gz"
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--report", "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    capsys.readouterr()
    assert main(["fuse", str(mri), str(noise_pair[1]), "-o", str(out), "--method", "mean", "--qc", "strict",
                 "--report", "--overwrite", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no report of the refusal written" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before


def test_a_refusal_report_changed_since_is_not_replaced(noise_pair, tmp_path, capsys):
    """A refused record's report was replaced by the next run even after the user had added notes to it."""
    mri, pet = noise_pair
    out = tmp_path / "f.nii.gz"
    args = ["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--qc", "strict", "--report",
            "--no-progress"]
    assert main(args) == 2
    report = tmp_path / "f_report.html"
    report.write_text(report.read_text(encoding="utf-8") + "<p>my notes</p>", encoding="utf-8")
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err  # edited since: no longer the file the record lists
    assert "does not list it as an earlier asfe3d output" in err and report.read_text(encoding="utf-8").endswith(
        "my notes</p>")
