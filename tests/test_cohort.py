"""Cohort mode: datalists, resumable runs, per-subject failures, the summary CSV, the CLI, and a killed run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from asfe3d.cohort import (
    SUMMARY_COLUMNS,
    Subject,
    check_existing_output,
    check_results,
    read_datalist,
    read_summary,
    run_cohort,
)
from asfe3d.errors import Asfe3dInputError
from asfe3d.settings import Settings
from tests.conftest import make_cohort

FAST = {"method": "mean", "registration": "none"}
FAST_SETTINGS = Settings.from_flat(**FAST)


def _write_constant_pet(like: Path, path: Path) -> None:
    img = nib.load(str(like))
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.float32), img.affine), str(path))


# ---------------------------------------------------------------------------------------------- datalists


def test_read_datalist_csv_resolves_relative_paths(tmp_path, demo_files):
    csv_path = make_cohort(tmp_path, demo_files, 2)
    csv_path.write_text(csv_path.read_text().replace("subject,mri,pet", "Subject, MRI ,pet") + "\n")
    subjects = read_datalist(csv_path)
    assert [s.subject for s in subjects] == ["sub01", "sub02"]
    assert subjects[0].mri == tmp_path / "sub01" / "mri.nii.gz"
    assert subjects[1].pet == tmp_path / "sub02" / "pet.nii.gz"
    assert all(s.output is None for s in subjects)


def test_read_datalist_output_column(tmp_path, demo_files):
    make_cohort(tmp_path, demo_files, 2)
    csv_path = tmp_path / "with_out.csv"
    csv_path.write_text("pet,subject,mri,output\nsub01/pet.nii.gz,a,sub01/mri.nii.gz,res/a.nii.gz\n"
                        "sub02/pet.nii.gz,b,sub02/mri.nii.gz,\n")
    a, b = read_datalist(csv_path)
    assert a.output == tmp_path / "res" / "a.nii.gz" and b.output is None


def test_read_datalist_folder(tmp_path, demo_files):
    make_cohort(tmp_path, demo_files, 2, names=("sub_T1w.nii.gz", "sub_fdg_pet.nii.gz"))
    (tmp_path / "datalist.csv").unlink()
    shutil.copy(demo_files[0], tmp_path / "sub01" / "sub_T1w_fused.nii.gz")  # an earlier output: ignored
    subjects = read_datalist(tmp_path)
    assert [(s.subject, s.mri.name, s.pet.name) for s in subjects] == [
        ("sub01", "sub_T1w.nii.gz", "sub_fdg_pet.nii.gz"), ("sub02", "sub_T1w.nii.gz", "sub_fdg_pet.nii.gz")]


def test_read_datalist_folder_of_freesurfer_volumes(tmp_path):
    """A FreeSurfer user's layout (``sub01/t1.mgz``, ``sub01/pet.mgz``): found (it was "no MRI found")."""
    for name in ("t1.mgz", "pet.mgh"):
        (tmp_path / "sub01").mkdir(exist_ok=True)
        nib.save(nib.MGHImage(np.ones((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "sub01" / name))
    subjects = read_datalist(tmp_path)
    assert [(s.subject, s.mri.name, s.pet.name) for s in subjects] == [("sub01", "t1.mgz", "pet.mgh")]
    # a NIfTI pair, by its header; a FreeSurfer subject's mri/ folder (image files inside) is not a DICOM MRI
    (tmp_path / "sub01" / "t1.mgz").unlink()
    nib.save(nib.Nifti1Pair(np.ones((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "sub01" / "mri_t1.img"))
    (tmp_path / "sub01" / "mri").mkdir()
    nib.save(nib.MGHImage(np.ones((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "sub01" / "mri" / "T1.mgz"))
    assert [(s.mri.name, s.pet.name) for s in read_datalist(tmp_path)] == [("mri_t1.hdr", "pet.mgh")]
    # a FreeSurfer subject folder itself (mri/orig.mgz, no MRI at the top): the refusal says how to name one
    for f in ("mri_t1.img", "mri_t1.hdr"):
        (tmp_path / "sub01" / f).unlink()
    with pytest.raises(Asfe3dInputError, match="no MRI found") as err:
        read_datalist(tmp_path)
    assert "FreeSurfer" not in str(err.value)
    nib.save(nib.MGHImage(np.ones((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "sub01" / "mri" / "orig.mgz"))
    with pytest.raises(Asfe3dInputError, match=r"looks like a FreeSurfer subject .*sub01/mri/nu.mgz"):
        read_datalist(tmp_path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("subject,mri\nsub01,sub01/mri.nii.gz\n", "lacks column(s) ['pet']"),
        ("subject,mri,pet\nsub01,sub01/mri.nii.gz,sub01/pet.nii.gz\nsub01,sub01/mri.nii.gz,sub01/pet.nii.gz\n",
         "line 3: duplicate subject 'sub01' (first on line 2)"),
        ("subject,mri,pet\nsub01,sub01/mri.nii.gz,sub01/nope.nii.gz\n", "PET"),
        ("subject,mri,pet\n", "no subjects"),
        ("", "empty"),
        ("subject,mri,pet\n../x,sub01/mri.nii.gz,sub01/pet.nii.gz\n", "not a plain file name"),
        # the name would make output file names longer than a file system takes (the run died in a traceback)
        ("subject,mri,pet\n" + "x" * 300 + ",sub01/mri.nii.gz,sub01/pet.nii.gz\n",
         "is 300 bytes long; its output file names would be too long (at most 200 bytes)"),
        ("subject,mri,pet\na\x00b,sub01/mri.nii.gz,sub01/pet.nii.gz\n", "subject name 'a\\x00b' is not a plain file name"),
        # a quoted line break is kept (and refused), not silently dropped ('a\nb' used to become 'ab')
        ('subject,mri,pet\n"a\nb",sub01/mri.nii.gz,sub01/pet.nii.gz\n', "subject name 'a\\nb' is not a plain file name"),
        # line numbers count blank lines
        ("subject,mri,pet\nsub01,sub01/mri.nii.gz,sub01/pet.nii.gz\n\nsub01,sub01/mri.nii.gz,sub01/pet.nii.gz\n",
         "line 4: duplicate subject 'sub01' (first on line 2)"),
        ("subject;mri;pet\nsub01;sub01/mri.nii.gz;sub01/pet.nii.gz\n",
         "the header is semicolon-separated: the datalist must be comma-separated"),
        ("subject\tmri\tpet\nsub01\tsub01/mri.nii.gz\tsub01/pet.nii.gz\n",
         "the header is tab-separated: the datalist must be comma-separated"),
        ('[{"subject": "sub01", "mri": "sub01/mri.nii.gz", "pet": "sub01/pet.nii.gz"}]',
         "is JSON; a datalist is a CSV with the columns subject,mri,pet[,output], or a folder of subject folders"),
        ("subject,mri,pet,output\nsub01,sub01/mri.nii.gz,sub01/pet.nii.gz,o\x01.nii.gz\n",
         "subject 'sub01': output path 'o\\x01.nii.gz' holds a control character"),
    ],
)
def test_read_datalist_bad_csv(tmp_path, demo_files, text, expected):
    make_cohort(tmp_path, demo_files, 1)
    bad = tmp_path / "bad.csv"
    bad.write_text(text, newline="")
    with pytest.raises(Asfe3dInputError, match=None) as info:
        read_datalist(bad)
    assert expected in str(info.value) and str(bad) in str(info.value)


def test_read_datalist_bad_folder(tmp_path, demo_files):
    make_cohort(tmp_path, demo_files, 1)
    (tmp_path / "sub01" / "pet.nii.gz").unlink()
    with pytest.raises(Asfe3dInputError, match="no PET found"):
        read_datalist(tmp_path)
    with pytest.raises(Asfe3dInputError, match="does not exist"):
        read_datalist(tmp_path / "missing.csv")


def test_a_folder_datalist_finds_spms_prefixed_names(tmp_path, demo_files):
    """SPM's outputs (``rpet.nii`` resliced, ``mT1.nii`` bias-corrected) were not found, and the refusal said the
    name must contain 'pet' / 't1', which they do (probe 20 #8); a folder with both the PET and SPM's ``rpet`` is
    two candidates, not the native one taken without a word."""
    import shutil

    make_cohort(tmp_path, demo_files, 2)
    for sub, old, new in (("sub01", "pet.nii.gz", "rpet.nii.gz"), ("sub02", "mri.nii.gz", "mT1.nii.gz")):
        (tmp_path / sub / old).rename(tmp_path / sub / new)
    subjects = read_datalist(tmp_path)
    assert [(s.mri.name, s.pet.name) for s in subjects] == [("mri.nii.gz", "rpet.nii.gz"), ("mT1.nii.gz", "pet.nii.gz")]
    shutil.copy(tmp_path / "sub02" / "pet.nii.gz", tmp_path / "sub01" / "pet.nii.gz")
    with pytest.raises(Asfe3dInputError, match=r"several PET candidates: \['pet.nii.gz', 'rpet.nii.gz'\]"):
        read_datalist(tmp_path)
    (tmp_path / "sub01" / "pet.nii.gz").rename(tmp_path / "sub01" / "uptake.nii.gz")
    (tmp_path / "sub01" / "rpet.nii.gz").unlink()
    with pytest.raises(Asfe3dInputError, match=r"no PET found \(a volume file or DICOM folder with a name part "
                                               r"starting with 'pet', SPM's r/m/w/s prefixes allowed"):
        read_datalist(tmp_path)


# ---------------------------------------------------------------------------------------------------- runs


@pytest.mark.slow  # ~8 s here, mostly the first fuse's imports
def test_run_cohort_ok_failed_then_resumed(tmp_path, demo_files):
    csv_path = make_cohort(tmp_path, demo_files, 3)
    _write_constant_pet(demo_files[1], tmp_path / "sub02" / "pet.nii.gz")  # sub02 cannot be fused
    subjects = read_datalist(csv_path)
    out, summary = tmp_path / "out", tmp_path / "out" / "summary.csv"
    results = run_cohort(subjects, FAST_SETTINGS, output_dir=out, summary_path=summary, progress=False)
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert "pet.nii.gz" in results[1].message and not (out / "sub02_fused.nii.gz").exists()
    for sub in ("sub01", "sub03"):
        fused, mri = nib.load(str(out / f"{sub}_fused.nii.gz")), nib.load(str(tmp_path / sub / "mri.nii.gz"))
        assert fused.shape == mri.shape and np.allclose(fused.affine, mri.affine)
    rows = read_summary(summary)
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert [(r["subject"], r["status"]) for r in rows] == [("sub01", "ok"), ("sub02", "failed"), ("sub03", "ok")]
    assert float(rows[0]["total_s"]) > 0 and rows[0]["fuse_s"] and rows[1]["message"]
    with pytest.raises(RuntimeError, match="1 of 3 subject"):
        check_results(results)

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*_fused.nii.gz")}
    shutil.copy(demo_files[1], tmp_path / "sub02" / "pet.nii.gz")  # fix the input, run again
    again = run_cohort(subjects, FAST_SETTINGS, output_dir=out, summary_path=summary, progress=False)
    assert [r.status for r in again] == ["skipped", "ok", "skipped"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_fused.nii.gz") if p.name in mtimes} == mtimes
    assert [r["status"] for r in read_summary(summary)] == ["skipped", "ok", "skipped"]
    assert check_results(again) == again
    # a skipped subject's row keeps what its recorded run found (they were empty: a failed verdict vanished)
    for first, resumed in ((results[0], again[0]), (results[2], again[2])):
        assert first.qc_verdict and (resumed.qc_verdict, resumed.qc_reasons, resumed.registration_start) == (
            first.qc_verdict, first.qc_reasons, first.registration_start)
        assert resumed.registration_metric == pytest.approx(first.registration_metric, nan_ok=True)
        assert not resumed.timings
    assert read_summary(summary)[0]["qc_verdict"] == results[0].qc_verdict


def test_run_cohort_bad_arguments(tmp_path, demo_files):
    subjects = read_datalist(make_cohort(tmp_path, demo_files, 2))
    with pytest.raises(TypeError, match="unknown setting 'output'"):  # the output is per subject
        run_cohort(subjects, Settings.from_flat(overwrite=False, output=tmp_path / "x.nii.gz", **FAST))
    with pytest.raises(ValueError, match="outputs.rgb must be True or False in cohort mode"):
        run_cohort(subjects, Settings.from_flat(rgb=tmp_path / "rgb.nii.gz", **FAST))
    clash = [Subject("a", subjects[0].mri, subjects[0].pet, tmp_path / "o.nii.gz"),
             Subject("b", subjects[1].mri, subjects[1].pet, tmp_path / "o.nii.gz")]
    with pytest.raises(Asfe3dInputError, match="would both write this output; give"):  # one line in the CLI, exit 2
        run_cohort(clash, FAST_SETTINGS)
    # subjects "a" and "A": on macOS or Windows one output would replace the other
    cased = [Subject("a", subjects[0].mri, subjects[0].pet), Subject("A", subjects[1].mri, subjects[1].pet)]
    with pytest.raises(Asfe3dInputError, match="differ only in case"):
        run_cohort(cased, FAST_SETTINGS, output_dir=tmp_path / "cased")
    assert not (tmp_path / "cased").exists()
    with pytest.raises(ValueError, match="list of asfe3d.cohort.Subject"):
        run_cohort(str(tmp_path), FAST_SETTINGS)


def test_cli_cohort_exit_codes(tmp_path, demo_files, capsys, monkeypatch):
    from asfe3d.cli import main

    csv_path = make_cohort(tmp_path, demo_files, 2)
    base = ["fuse", "--datalist", str(csv_path), "--method", "mean", "--registration", "none", "--no-progress"]
    assert main(base + ["--output-dir", str(tmp_path / "out")]) == 0
    assert "2 ok, 0 skipped, 0 failed" in capsys.readouterr().out
    assert (tmp_path / "out" / "summary.csv").is_file()
    _write_constant_pet(demo_files[1], tmp_path / "sub02" / "pet.nii.gz")
    assert main(base + ["--output-dir", str(tmp_path / "out2"), "--summary", str(tmp_path / "s.csv")]) == 1
    assert "failed: sub02" in capsys.readouterr().out
    assert [r["status"] for r in read_summary(tmp_path / "s.csv")] == ["ok", "failed"]
    # a relative --output-dir: every row's output is absolute, the failed subject's planned one too
    monkeypatch.chdir(tmp_path)
    assert main(base + ["--output-dir", "rel"]) == 1
    rows = read_summary(tmp_path / "rel" / "summary.csv")
    assert [(r["status"], r["output"]) for r in rows] == [
        ("ok", str(tmp_path / "rel" / "sub01_fused.nii.gz")), ("failed", str(tmp_path / "rel" / "sub02_fused.nii.gz"))]
    capsys.readouterr()
    # bad usage: a path for --rgb, and a bad datalist, are input errors (exit code 2)
    assert main(base + ["--rgb", str(tmp_path / "x.nii.gz")]) == 2
    (tmp_path / "bad.csv").write_text("subject,pet\n")
    assert main(["fuse", "--datalist", str(tmp_path / "bad.csv"), "--method", "mean"]) == 2
    assert "lacks column(s) ['mri']" in capsys.readouterr().err


_CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import asfe3d.io.writer as writer

    real_save = writer.save_nifti
    calls = []

    def crashing_save(img, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) == 3:  # the third subject: die in the middle of writing its temporary file
            with open(filename, "wb") as fh:
                fh.write(b"\\x1f\\x8b partial")
                fh.flush()
                os.fsync(fh.fileno())
            os._exit(137)
        return real_save(img, filename, *args, **kwargs)

    writer.save_nifti = crashing_save
    from asfe3d.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_killed_run_resumes_without_redoing(tmp_path, demo_files):
    csv_path = make_cohort(tmp_path, demo_files, 4)
    out = tmp_path / "out"
    script = tmp_path / "crash.py"
    script.write_text(_CRASH_SCRIPT)
    args = ["fuse", "--datalist", str(csv_path), "--output-dir", str(out), "--method", "mean",
            "--registration", "none", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                            timeout=120)
    assert killed.returncode == 137, killed.stderr
    done = sorted(p.name for p in out.glob("*_fused.nii.gz"))
    assert done == ["sub01_fused.nii.gz", "sub02_fused.nii.gz"]  # the third died mid-write
    leftovers = [p.name for p in out.iterdir() if ".tmp" in p.name]
    assert len(leftovers) == 1 and leftovers[0].startswith(".sub03_fused.tmp")  # never under the final name
    assert [r["subject"] for r in read_summary(out / "summary.csv")] == ["sub01", "sub02"]
    mtimes = {n: (out / n).stat().st_mtime_ns for n in done}

    rerun = subprocess.run([sys.executable, "-m", "asfe3d.cli", *args], capture_output=True, text=True, env=env,
                           timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    rows = read_summary(out / "summary.csv")
    assert [(r["subject"], r["status"]) for r in rows] == [
        ("sub01", "skipped"), ("sub02", "skipped"), ("sub03", "ok"), ("sub04", "ok")]
    assert {n: (out / n).stat().st_mtime_ns for n in done} == mtimes
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "sub01_fused.json", "sub01_fused.nii.gz", "sub02_fused.json", "sub02_fused.nii.gz", "sub03_fused.json",
        "sub03_fused.nii.gz", "sub04_fused.json", "sub04_fused.nii.gz", "summary.csv"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".asfe3d-cohort.lock"]
    for i in (3, 4):
        assert check_existing_output(out / f"sub0{i}_fused.nii.gz", tmp_path / f"sub0{i}" / "mri.nii.gz") is None


def test_next_subject_registered_beside_this_one_same_voxels(tmp_path, demo_files, monkeypatch):
    import json

    from asfe3d.pipeline import fuse_pair
    from asfe3d.registration import early as early_mod

    csv_path = make_cohort(tmp_path, demo_files, 3)
    settings = Settings.from_flat(method="mean")
    subjects = read_datalist(csv_path)
    results = run_cohort(subjects, settings, output_dir=tmp_path / "out", progress=False)
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    used = [json.loads((tmp_path / "out" / f"sub0{i}_fused.json").read_text())["registration"]["early"]
            for i in (1, 2, 3)]
    assert used == [False, True, True]  # the first subject has no one before it (the command starts its own)
    # the summary's steps hold the early work (register_s was the 0.04 s left to do after the thread's 5 s)
    record = json.loads((tmp_path / "out" / "sub02_fused.json").read_text())
    early_register = record["registration"]["early_seconds"]["register"]
    assert record["registration"]["options"]["bspline_mesh"] == 4  # the settings the registration used, recorded
    assert results[1].timings["register"] == pytest.approx(early_register + record["timings"]["register"])
    assert results[1].total > early_register + sum(record["timings"][k] for k in ("fuse", "save"))
    plain = fuse_pair(subjects[2].mri, subjects[2].pet, tmp_path / "plain.nii.gz", settings)
    assert plain.registration["early"] is False
    a = nib.load(str(tmp_path / "out" / "sub03_fused.nii.gz"))
    b = nib.load(str(tmp_path / "plain.nii.gz"))
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj)) and a.header == b.header
    assert not early_mod._STARTED  # every started one was claimed

    starts = []
    monkeypatch.setattr(early_mod.EarlyRegistration, "start", lambda self: starts.append(self) or self)
    again = run_cohort(subjects, settings, output_dir=tmp_path / "out", progress=False)
    assert [r.status for r in again] == ["skipped"] * 3 and starts == []  # complete subjects: nothing started


def test_unclaimed_early_registration_is_withdrawn(tmp_path, demo_files):
    from asfe3d.registration import early as early_mod

    csv_path = make_cohort(tmp_path, demo_files, 2)
    _write_constant_pet(demo_files[1], tmp_path / "sub02" / "pet.nii.gz")
    subjects = read_datalist(csv_path)
    subjects = [subjects[0], Subject("sub02", subjects[1].mri, tmp_path / "missing_pet.nii.gz")]
    results = run_cohort(subjects, Settings.from_flat(method="mean"), output_dir=tmp_path / "out", progress=False)
    assert [r.status for r in results] == ["ok", "failed"] and not early_mod._STARTED


def test_a_folder_datalist_without_output_dir_writes_beside_each_mri(tmp_path, demo_files):
    """The documented default of a folder datalist (outputs beside each MRI) was refused: "would overwrite the
    datalist", the folder being guarded as if it were an input file."""
    from asfe3d.cohort import plan_cohort

    make_cohort(tmp_path / "subjects", demo_files, 1)
    (tmp_path / "subjects" / "datalist.csv").unlink()
    subjects = read_datalist(tmp_path / "subjects")
    outputs = plan_cohort(subjects, FAST_SETTINGS, output_dir=None, datalist=tmp_path / "subjects")
    assert outputs["sub01"].parent == subjects[0].mri.parent and outputs["sub01"].name.endswith("_fused.nii.gz")


def test_folder_datalist_with_its_output_folder_inside_resumes(tmp_path, demo_files, monkeypatch, capsys):
    """``--datalist . --output-dir fused`` run inside the study folder: the rerun took ``fused/`` for a subject
    without an MRI and refused the cohort ("fused: no MRI found"); asfe3d's output folder is skipped."""
    from asfe3d.cli import main

    make_cohort(tmp_path, demo_files, 2)
    monkeypatch.chdir(tmp_path)
    args = ["fuse", "--datalist", ".", "--output-dir", "fused", "--method", "mean", "--registration", "none",
            "--no-progress"]
    assert main(args) == 0
    assert main(args) == 0
    assert "0 ok, 2 skipped, 0 failed" in capsys.readouterr().out
    assert [s.subject for s in read_datalist(tmp_path)] == ["sub01", "sub02"]
    # a folder without inputs or asfe3d's files is still a subject folder that lacks its MRI
    (tmp_path / "notes").mkdir()
    with pytest.raises(Asfe3dInputError, match="no MRI found"):
        read_datalist(tmp_path)


def test_a_subject_fused_blank_in_part_of_its_head_says_so_in_the_summary():
    """Probe 22 #5: a subject 47 % blank beyond its PET's field of view (QC pass) said nothing in the cohort's
    summary; the note goes into its message (the columns stay those of earlier summaries, which a resumed run
    reads)."""
    from asfe3d.cohort import blank_note

    fusion = {"outside_pet_fov": {"voxels": 9000, "head_fraction": 0.467}}
    assert blank_note(fusion) == ("fused image: blank (0) in 47% of the MRI head, beyond the PET's field of view "
                                  "(no PET there)")
    assert blank_note({"outside_pet_fov": {"voxels": 3, "head_fraction": 0.001}}) == ""
    assert blank_note({}) == "" and blank_note(None) == ""
    assert "of the CT head" in blank_note(fusion, "CT")
    # an MRI whose window's low end is not 0 (probe 22's offset T1): the note says the value written there
    offset = {"outside_pet_fov": {"voxels": 9000, "head_fraction": 0.467, "value": 164.47000122}}
    assert blank_note(offset).startswith("fused image: blank (164.47, the MRI window's low end) in 47% of the MRI")
    assert blank_note({"outside_pet_fov": {"head_fraction": 0.467, "value": 0.0}}).startswith("fused image: blank (0)")


def test_a_signal_that_came_back_as_simpleitks_runtimeerror_stops_the_cohort(tmp_path, demo_files, monkeypatch):
    """Probe 45 #3: Ctrl-C or SIGTERM during a registration reached the cohort as SimpleITK's RuntimeError: the
    subject was marked failed and the others were fused. The handlers note the stop (asfe3d.utils.stop), and the
    cohort stops as asked."""
    import asfe3d.pipeline as pipeline
    from asfe3d.utils.stop import clear_stop, request_stop

    csv_path = make_cohort(tmp_path, demo_files, 2)
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args[0])
        request_stop("terminate")  # what the handler does before it raises
        raise RuntimeError("Exception thrown in SimpleITK ImageRegistrationMethod_Execute: ... KeyboardInterrupt")

    monkeypatch.setattr(pipeline, "fuse_pair", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_cohort(read_datalist(csv_path), FAST_SETTINGS, output_dir=tmp_path / "out")
    finally:
        clear_stop()
    assert len(calls) == 1  # the second subject was not started
    monkeypatch.setattr(pipeline, "fuse_pair", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a real bug")))
    results = run_cohort(read_datalist(csv_path), FAST_SETTINGS, output_dir=tmp_path / "out2")
    assert [r.status for r in results] == ["failed", "failed"]  # without a stop: each subject's own failure
