"""Cohorts never replace a file that is not their own, count a subject as done only with a complete record,
resume correctly after a crash at any point, and refuse a second run on the same folder."""

from __future__ import annotations

import json
import os

import pytest

from asfe3d.cohort import Subject, cohort_lock, read_datalist, read_summary, run_cohort
from asfe3d.errors import Asfe3dInputError
from asfe3d.settings import Settings
from tests.conftest import make_cohort

FAST = {"method": "mean", "registration": "none"}
FAST_SETTINGS = Settings.from_flat(**FAST)


def test_output_naming_another_subjects_mri_is_refused(tmp_path, demo_files):
    s1, s2 = read_datalist(make_cohort(tmp_path, demo_files, 2))
    before = s2.mri.read_bytes()
    bad = [Subject("sub01", s1.mri, s1.pet, s2.mri), s2]
    with pytest.raises(Asfe3dInputError, match="would overwrite the MRI of subject 'sub02'"):
        run_cohort(bad, FAST_SETTINGS, progress=False)
    own = [Subject("sub01", s1.mri, s1.pet, s1.mri)]
    with pytest.raises(Asfe3dInputError, match="would overwrite the MRI of subject 'sub01'"):
        run_cohort(own, FAST_SETTINGS, progress=False)
    assert s2.mri.read_bytes() == before


@pytest.mark.parametrize("target", ["mri", "datalist", "foreign"])
def test_summary_never_replaces_an_input_or_a_foreign_file(tmp_path, demo_files, target):
    csv_path = make_cohort(tmp_path, demo_files, 1)
    subjects = read_datalist(csv_path)
    summary = {"mri": subjects[0].mri, "datalist": csv_path, "foreign": tmp_path / "notes.csv"}[target]
    if target == "foreign":
        summary.write_text("my,own,table\n1,2,3\n")
    before = summary.read_bytes()
    with pytest.raises(Asfe3dInputError, match="summary" if target != "foreign" else "not an asfe3d summary"):
        run_cohort(subjects, FAST_SETTINGS, output_dir=tmp_path / "out", summary_path=summary, datalist=csv_path,
                   progress=False)
    assert summary.read_bytes() == before


def test_existing_file_without_record_is_not_replaced(tmp_path, demo_files):
    subjects = read_datalist(make_cohort(tmp_path, demo_files, 2))
    out = tmp_path / "out"
    out.mkdir()
    foreign = out / "sub01_fused.nii.gz"
    foreign.write_bytes(b"somebody else's volume")
    results = run_cohort(subjects, FAST_SETTINGS, output_dir=out, progress=False)
    assert [r.status for r in results] == ["failed", "ok"]
    assert "are not a complete output of this run" in results[0].message
    assert "sub01_fused.nii.gz was not written by asfe3d (no record lists it): move it" in results[0].message
    assert foreign.read_bytes() == b"somebody else's volume"
    # --overwrite replaces asfe3d's own outputs only: the file of somebody else's is still refused, and kept
    again = run_cohort(subjects, Settings.from_flat(overwrite=True, **FAST), output_dir=out, progress=False)
    assert [r.status for r in again] == ["failed", "ok"]
    assert "does not list it as an earlier asfe3d output" in again[0].message and "--overwrite or not" in again[0].message
    assert foreign.read_bytes() == b"somebody else's volume"
    # asfe3d's own output (sub02, recorded): --overwrite redoes it
    assert (out / "sub02_fused.json").is_file()


def test_done_only_with_every_requested_output_and_unchanged_inputs(tmp_path, demo_files):
    subjects = read_datalist(make_cohort(tmp_path, demo_files, 1))
    out = tmp_path / "out"
    assert [r.status for r in run_cohort(subjects, FAST_SETTINGS, output_dir=out, progress=False)] == ["ok"]
    record = json.loads((out / "sub01_fused.json").read_text())
    assert record["status"] == "complete" and set(record["outputs"]) == {"fused"}
    assert [r.status for r in run_cohort(subjects, FAST_SETTINGS, output_dir=out, progress=False)] == ["skipped"]
    # asking for one more output: the earlier run is not complete for this request, and its files are not replaced
    (res,) = run_cohort(subjects, Settings.from_flat(rgb=True, **FAST), output_dir=out, progress=False)
    assert res.status == "failed" and "was not part of the recorded run" in res.message
    # touched, its content the same: still the recorded input (a `touch`, a `cp -r` copy)
    os.utime(subjects[0].pet, ns=(1, 1))
    assert [r.status for r in run_cohort(subjects, FAST_SETTINGS, output_dir=out, progress=False)] == ["skipped"]
    # an input changed since (the same size and time, another content): not done either
    data = bytearray(subjects[0].pet.read_bytes())
    data[-1] ^= 1
    subjects[0].pet.write_bytes(bytes(data))
    os.utime(subjects[0].pet, ns=(1, 1))
    (res,) = run_cohort(subjects, FAST_SETTINGS, output_dir=out, progress=False)
    assert res.status == "failed" and "changed since the recorded run" in res.message


def test_error_while_renaming_puts_the_set_back(tmp_path, demo_files, monkeypatch):
    """An error between two renames (here a KeyboardInterrupt raised by the rename itself): the renamed files are
    taken back, the pending record removed, and the rerun does the subject from scratch."""
    subjects = read_datalist(make_cohort(tmp_path, demo_files, 1))
    out = tmp_path / "out"
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("_pet_on_mri.nii.gz"):
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        run_cohort(subjects, Settings.from_flat(save_registered_pet=True, **FAST), output_dir=out, progress=False)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (out / "sub01_fused.nii.gz").exists() and not (out / "sub01_fused.json").exists()
    (res,) = run_cohort(subjects, Settings.from_flat(save_registered_pet=True, **FAST), output_dir=out, progress=False)
    assert res.status == "ok" and (out / "sub01_fused_pet_on_mri.nii.gz").is_file()


_DIE_BETWEEN_RENAMES = """
import os, sys
from pathlib import Path
from asfe3d.cohort import read_datalist, run_cohort
from asfe3d.settings import Settings
real = os.replace
def replace(src, dst):
    if str(dst).endswith("_pet_on_mri.nii.gz"):
        os._exit(137)  # a hard kill (SIGKILL, power loss) between two renames: no clean-up runs
    return real(src, dst)
os.replace = replace
run_cohort(read_datalist(Path(sys.argv[1])),
           Settings.from_flat(save_registered_pet=True, method="mean", registration="none"),
           output_dir=Path(sys.argv[2]), progress=False)
"""


def test_hard_kill_while_renaming_is_redone_on_rerun(tmp_path, demo_files):
    """Killed outright after the fused volume was renamed but before the registered PET: the record says pending,
    so the rerun redoes the subject."""
    import subprocess
    import sys
    from pathlib import Path

    csv_path = make_cohort(tmp_path, demo_files, 1)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", _DIE_BETWEEN_RENAMES, str(csv_path), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr
    assert (out / "sub01_fused.nii.gz").is_file() and not (out / "sub01_fused_pet_on_mri.nii.gz").exists()
    assert json.loads((out / "sub01_fused.json").read_text())["status"] == "pending"
    subjects = read_datalist(csv_path)
    (res,) = run_cohort(subjects, Settings.from_flat(save_registered_pet=True, **FAST), output_dir=out, progress=False)
    assert res.status == "ok" and "interrupted" in res.message
    assert (out / "sub01_fused_pet_on_mri.nii.gz").is_file()
    (res,) = run_cohort(subjects, Settings.from_flat(save_registered_pet=True, **FAST), output_dir=out, progress=False)
    assert res.status == "skipped"


def test_second_run_on_the_same_folder_is_refused(tmp_path, demo_files):
    subjects = read_datalist(make_cohort(tmp_path, demo_files, 1))
    out = tmp_path / "out"
    with cohort_lock(out):
        with pytest.raises(Asfe3dInputError, match="another asfe3d cohort run"):
            run_cohort(subjects, FAST_SETTINGS, output_dir=out, summary_path=out / "summary.csv", progress=False)
    assert not (out / "sub01_fused.nii.gz").exists()
    results = run_cohort(subjects, FAST_SETTINGS, output_dir=out, summary_path=out / "summary.csv", progress=False)
    assert [r.status for r in results] == ["ok"]
    assert read_summary(out / "summary.csv")[0]["qc_verdict"] in ("pass", "warn", "fail")


def test_lock_that_is_a_symlink_never_truncates_its_target(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (out / ".asfe3d-cohort.lock").symlink_to(victim)
    with pytest.raises(Asfe3dInputError, match="symbolic link"):
        with cohort_lock(out):
            pass
    assert victim.read_text() == "keep me"


def test_a_rerun_with_other_settings_is_not_skipped_nor_replaces_without_overwrite(tmp_path, demo_files):
    subjects = read_datalist(make_cohort(tmp_path, demo_files, 1))
    out = tmp_path / "out"
    assert [r.status for r in run_cohort(subjects, FAST_SETTINGS, output_dir=out, progress=False)] == ["ok"]
    fused = out / "sub01_fused.nii.gz"
    before = fused.read_bytes()
    # the same settings but another device or more threads: still this run, skipped
    same = Settings.from_flat(**{**FAST, "registration_threads": 2})
    assert [r.status for r in run_cohort(subjects, same, output_dir=out, progress=False)] == ["skipped"]
    other = Settings.from_flat(**{**FAST, "method": "max"})
    results = run_cohort(subjects, other, output_dir=out, progress=False)
    assert [r.status for r in results] == ["failed"]
    assert "the recorded run had other settings (fusion.method 'mean' -> 'max')" in results[0].message
    assert fused.read_bytes() == before
    again = run_cohort(subjects, Settings.from_flat(**{**FAST, "method": "max", "overwrite": True}), output_dir=out,
                       progress=False)
    assert [r.status for r in again] == ["ok"] and fused.read_bytes() != before


def test_a_deleted_fused_volume_is_redone_like_a_single_run(tmp_path, demo_files):
    """Its record is left, listing a volume that is gone: asfe3d's own (``replaceable_outputs``), so a rerun redoes
    the subject (it used to fail: "sub01_fused.json exist(s) but are not a complete output ... not replaced")."""
    subjects = read_datalist(make_cohort(tmp_path, demo_files, 2))
    out = tmp_path / "out"
    assert [r.status for r in run_cohort(subjects, FAST_SETTINGS, output_dir=out, progress=False)] == ["ok", "ok"]
    (out / "sub01_fused.nii.gz").unlink()
    results = run_cohort(subjects, FAST_SETTINGS, output_dir=out, progress=False)
    assert [r.status for r in results] == ["ok", "skipped"]
    assert "redone: the fused output" in results[0].message and "is missing" in results[0].message
    assert (out / "sub01_fused.nii.gz").is_file()
    assert json.loads((out / "sub01_fused.json").read_text())["status"] == "complete"


def test_earlier_outputs_that_cannot_be_checked_fail_that_subject_only(tmp_path, demo_files, monkeypatch):
    """An OSError while looking at one subject's earlier outputs (a permission, a name too long) is that subject's
    failure; the cohort goes on (it used to end the whole run in a traceback)."""
    import asfe3d.cohort as cohort

    subjects = read_datalist(make_cohort(tmp_path, demo_files, 2))
    real = cohort.subject_done

    def done(subject, output, settings=None):
        if subject.subject == "sub01":
            raise PermissionError(13, "Permission denied", str(output))
        return real(subject, output, settings)

    monkeypatch.setattr(cohort, "subject_done", done)
    results = run_cohort(subjects, FAST_SETTINGS, output_dir=tmp_path / "out", progress=False)
    assert [r.status for r in results] == ["failed", "ok"]
    assert results[0].message.endswith("sub01_fused.nii.gz: cannot check the earlier outputs (Permission denied)")


def test_an_output_name_too_long_for_the_file_system_is_refused_up_front(tmp_path, demo_files):
    (s1,) = read_datalist(make_cohort(tmp_path, demo_files, 1))
    long = Subject("sub01", s1.mri, s1.pet, tmp_path / ("y" * 240 + ".nii.gz"))
    with pytest.raises(Asfe3dInputError, match="has a file name of 247 bytes; with its temporary name's 21 more it "
                                               "exceeds the file system's 255"):
        run_cohort([long], FAST_SETTINGS, progress=False)
    assert not list(tmp_path.glob("y*"))


def test_a_failure_message_is_one_line(tmp_path, demo_files, monkeypatch):
    import asfe3d.pipeline

    subjects = read_datalist(make_cohort(tmp_path, demo_files, 2))

    def boom(mri, *args, **kwargs):
        raise RuntimeError("ITK said:\n  first line\n  second line")

    monkeypatch.setattr(asfe3d.pipeline, "fuse_pair", boom)
    results = run_cohort(subjects, FAST_SETTINGS, output_dir=tmp_path / "out", summary_path=tmp_path / "s.csv",
                         progress=False)
    assert [r.message for r in results] == ["RuntimeError: ITK said: first line second line"] * 2
    assert [r["message"] for r in read_summary(tmp_path / "s.csv")] == [results[0].message] * 2


def test_an_output_cell_with_the_wrong_suffix_is_refused_before_any_subject(tmp_path, demo_files):
    s1, s2 = read_datalist(make_cohort(tmp_path, demo_files, 2))
    bad = [s1, Subject("sub02", s2.mri, s2.pet, tmp_path / "sub02_fused.png")]
    with pytest.raises(Asfe3dInputError, match=r"sub02_fused.png: the fused output of subject 'sub02' must end in "
                                               r"\.nii or \.nii\.gz"):
        run_cohort(bad, FAST_SETTINGS, progress=False)
    assert not list(tmp_path.rglob("*_fused*"))  # not even the first subject was fused


def test_one_pet_sidecar_for_a_whole_cohort_is_refused(tmp_path, demo_files, capsys):
    from asfe3d.cli import main

    datalist = make_cohort(tmp_path, demo_files, 2)
    sidecar = tmp_path / "one.json"
    sidecar.write_text("{}")
    assert main(["fuse", "--datalist", str(datalist), "--method", "mean", "--pet-sidecar", str(sidecar)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "one.json: --pet-sidecar names one PET's sidecar; in cohort mode" in err


def test_an_edited_sidecar_that_the_pet_was_read_with_is_a_changed_input(tmp_path, demo_files):
    """The record fingerprints the JSON sidecar whose facts changed the PET (here its frame durations): editing it
    makes a rerun refuse to call the subject complete, as an edited image does."""
    import nibabel as nib
    import numpy as np

    subjects = read_datalist(make_cohort(tmp_path, demo_files, 1))
    pet = subjects[0].pet
    img = nib.load(pet)
    nib.save(nib.Nifti1Image(np.stack([np.asarray(img.dataobj, np.float32) * k for k in (1, 2)], -1), img.affine),
             str(pet))
    sidecar = pet.with_name("pet.json")
    sidecar.write_text(json.dumps({"FrameDuration": [60, 300]}))
    settings = Settings.from_flat(**FAST, frame_realign=False)
    out = tmp_path / "out"
    assert [r.status for r in run_cohort(subjects, settings, output_dir=out, progress=False)] == ["ok"]
    record = json.loads((out / "sub01_fused.json").read_text())
    assert record["inputs"]["pet_sidecar"]["path"] == str(sidecar.resolve())
    assert [r.status for r in run_cohort(subjects, settings, output_dir=out, progress=False)] == ["skipped"]
    sidecar.write_text(json.dumps({"FrameDuration": [300, 60]}))
    results = run_cohort(subjects, settings, output_dir=out, progress=False)
    assert [r.status for r in results] == ["failed"]
    assert "the pet_sidecar input" in results[0].message and "changed since the recorded run" in results[0].message


def test_a_sidecar_added_after_the_run_is_a_changed_input(tmp_path, demo_files):
    """A 4D PET averaged with equal weights for want of a sidecar: one added later would weigh the frames, so the
    recorded run is not this run."""
    import nibabel as nib
    import numpy as np

    subjects = read_datalist(make_cohort(tmp_path, demo_files, 1))
    pet = subjects[0].pet
    img = nib.load(pet)
    nib.save(nib.Nifti1Image(np.stack([np.asarray(img.dataobj, np.float32) * k for k in (1, 2)], -1), img.affine),
             str(pet))
    settings = Settings.from_flat(**FAST, frame_realign=False)
    out = tmp_path / "out"
    assert [r.status for r in run_cohort(subjects, settings, output_dir=out, progress=False)] == ["ok"]
    assert json.loads((out / "sub01_fused.json").read_text())["inputs"]["pet_sidecar"]["absent"] is True
    assert [r.status for r in run_cohort(subjects, settings, output_dir=out, progress=False)] == ["skipped"]
    pet.with_name("pet.json").write_text(json.dumps({"FrameDuration": [60, 300]}))
    results = run_cohort(subjects, settings, output_dir=out, progress=False)
    assert [r.status for r in results] == ["failed"] and "appeared since the recorded run" in results[0].message
