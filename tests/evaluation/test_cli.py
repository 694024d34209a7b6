"""Tests of ``asfe3d evaluate`` (``asfe3d.evaluation.cli.main``) on a fake HMIF folder and tiny NIfTI pairs."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from asfe3d.evaluation.cli import main
from asfe3d.metrics import METRIC_NAMES


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_hmif_run_writes_csv_table_figure_and_fused(hmif_dir, tmp_path, tiny_weights, capsys):
    out, fused = tmp_path / "out", tmp_path / "fused"
    rc = main(["--hmif", str(hmif_dir), "--out", str(out), "--name", "pet", "--weights-2d", str(tiny_weights[0]),
               "--device", "cpu", "--save-fused", str(fused), "--title", "fake PET-MRI"])
    assert rc == 0
    rows = _rows(out / "pet_metrics.csv")
    methods = ["mean", "max", "wavelet", "laplacian", "highpass", "asfe"]
    assert [(r["case"], r["method"]) for r in rows] == [(c, m) for c in ("7014.png", "8014.png") for m in methods]
    assert list(rows[0]) == ["case", "method", *METRIC_NAMES, "DT", "DETAIL", "PETC", "EMPTY", "seconds"]
    assert all(-1.0 < float(r["DT"]) < 2.0 for r in rows)
    assert all(np.isfinite(float(r[k])) for r in rows for k in METRIC_NAMES)
    md = (out / "pet_summary.md").read_text()
    assert md == capsys.readouterr().out.rstrip("\n") + "\n"
    assert "## fake PET-MRI" in md and "val split, 2 pairs" in md
    # the table holds the means of the CSV
    en_mean = np.mean([float(r["EN"]) for r in rows if r["method"] == "max"])
    assert f"| max | {en_mean:.3f}" in md.replace("**", "")
    assert "| asfe | " in md and "/11 |" in md
    with Image.open(out / "pet_figure.png") as img:
        assert img.format == "PNG" and img.size[0] > img.size[1]
    # one colour PNG per method per input, with the input's name
    written = sorted(p.relative_to(fused).as_posix() for p in fused.rglob("*") if p.is_file())
    assert written == sorted(f"{m}/{c}" for m in methods for c in ("7014.png", "8014.png"))
    with Image.open(fused / "asfe" / "8014.png") as img:
        assert img.mode == "RGB" and img.size == (32, 32)
    # a second run refuses to overwrite, and leaves everything as it was
    before = (out / "pet_metrics.csv").read_bytes()
    assert main(["--hmif", str(hmif_dir), "--out", str(out), "--name", "pet", "--methods", "mean"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert (out / "pet_metrics.csv").read_bytes() == before


def test_volume_run(volume_csv, tmp_path, tiny_weights, capsys):
    out, fused = tmp_path / "out", tmp_path / "fused"
    rc = main(["--pairs", str(volume_csv), "--out", str(out), "--weights-2d", str(tiny_weights[0]),
               "--weights-3d", str(tiny_weights[1]), "--device", "cpu", "--registration", "none",
               "--save-fused", str(fused), "--figure-cases", "1", "--methods", "mean,asfe"])
    assert rc == 0, capsys.readouterr().err
    rows = _rows(out / "evaluation_metrics.csv")
    assert [(r["case"], r["method"]) for r in rows] == [
        (s, m) for s in ("s1", "s2") for m in ("mean", "asfe-slice", "asfe-volume")]
    assert list(rows[0]) == ["case", "method", *METRIC_NAMES, "TPC", "DT", "DETAIL", "PETC", "EMPTY", "seconds"]
    assert all(float(r["TPC"]) > 0 for r in rows)
    md = (out / "evaluation_summary.md").read_text()
    assert "TPC" in md and "inside the head mask" in md and "| asfe-volume |" in md
    assert (out / "evaluation_figure.png").is_file()
    mri = nib.load(volume_csv.parent / "s1_mri.nii.gz")
    for m in ("mean", "asfe-slice", "asfe-volume"):
        for s in ("s1", "s2"):
            img = nib.load(fused / m / f"{s}.nii.gz")
            assert img.shape == mri.shape and np.allclose(img.affine, mri.affine)
            data = np.asarray(img.dataobj)
            assert 0.0 <= data.min() and data.max() <= 1.0


def test_a_failed_overwrite_run_keeps_the_earlier_runs_files(volume_csv, tmp_path, capsys, monkeypatch):
    """--overwrite replaced each pair's fused volume (and the planes figure) as the pair finished, and a failure
    at a later pair deleted them: neither the old nor the new set was left. They are staged and put in place only
    when every pair is done."""
    from asfe3d.evaluation import evaluate as ev

    out, fused = tmp_path / "out", tmp_path / "fused"
    monkeypatch.chdir(tmp_path)  # relative folders (the staging once failed on them: relative_to)
    args = ["--pairs", str(volume_csv), "--out", "out", "--registration", "none", "--save-fused", "fused",
            "--methods", "mean", "--figure-cases", "0"]
    assert main(args) == 0, capsys.readouterr().err
    files = sorted(p for p in [*fused.rglob("*"), *out.rglob("*")] if p.is_file())
    before = {p: p.read_bytes() for p in files}
    assert fused / "mean" / "s1.nii.gz" in before and out / "evaluation_planes.png" in before
    real = ev.load_volume_case

    def second_fails(row, **kwargs):
        if row["subject"] == "s2":
            raise RuntimeError("the second pair fails")
        return real(row, **kwargs)

    monkeypatch.setattr(ev, "load_volume_case", second_fails)
    with pytest.raises(RuntimeError, match="the second pair fails"):
        main([*args, "--overwrite"])
    assert {p: p.read_bytes() for p in files if p.is_file()} == before  # every earlier file, unchanged
    assert not [p for p in tmp_path.iterdir() if "asfe3d-stage" in p.name]  # no staging folder left


def test_no_pair_with_a_brain_region_gives_no_front_figure_not_a_traceback(volume_csv, tmp_path, capsys,
                                                                          monkeypatch):
    from asfe3d.evaluation import evaluate as ev

    real = ev.evaluate_case

    def without_brain(*a, **k):  # as HMIF slices without a brain region: DETAIL and PETC are NaN
        res = real(*a, **k)
        for row in res.rows:
            row["DETAIL"] = row["PETC"] = float("nan")
        return res

    monkeypatch.setattr(ev, "evaluate_case", without_brain)
    out = tmp_path / "out"
    assert main(["--pairs", str(volume_csv), "--out", str(out), "--registration", "none", "--methods", "mean",
                 "--figure-cases", "0"]) == 0, capsys.readouterr().err
    assert (out / "evaluation_summary.md").is_file() and not (out / "evaluation_front.png").exists()


def test_overwrite_removes_an_earlier_figure_this_run_does_not_draw(volume_csv, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--pairs", str(volume_csv), "--out", str(out), "--registration", "none", "--methods", "mean"]
    assert main([*args, "--figure-cases", "1"]) == 0 and (out / "evaluation_figure.png").is_file()
    assert main([*args, "--figure-cases", "0", "--overwrite"]) == 0
    assert not (out / "evaluation_figure.png").exists()  # it showed the earlier run's methods beside the new CSV
    assert "removed" in capsys.readouterr().err


def test_weights_of_the_other_dimension_are_one_line(volume_csv, tmp_path, tiny_weights, capsys):
    rc = main(["--pairs", str(volume_csv), "--out", str(tmp_path / "out"), "--weights-3d", str(tiny_weights[0]),
               "--methods", "asfe-volume", "--registration", "none"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("asfe3d: error: --weights-3d: mode 'volume' needs a 3D")


def test_pet_fwhm_mm_reaches_the_scores_and_the_summary(volume_csv, tmp_path, capsys):
    """``--pet-fwhm-mm`` moves DETAIL/PETC's band split and says so in the summary; without it nothing is said."""
    common = ["--pairs", str(volume_csv), "--registration", "none", "--methods", "mean,highpass", "--no-defect",
              "--figure-cases", "0"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--pet-fwhm-mm", "9"]) == 0, capsys.readouterr().err
    a, b = _rows(tmp_path / "a" / "evaluation_metrics.csv"), _rows(tmp_path / "b" / "evaluation_metrics.csv")
    assert [r["DETAIL"] for r in a] != [r["DETAIL"] for r in b]
    assert [r["EN"] for r in a if r["method"] == "mean"] == [r["EN"] for r in b if r["method"] == "mean"]
    assert "split their bands at 9 mm" in (tmp_path / "b" / "evaluation_summary.md").read_text()
    assert "split their bands" not in (tmp_path / "a" / "evaluation_summary.md").read_text()


def test_top_level_command_forwards(hmif_dir, tmp_path, capsys):
    from asfe3d.cli import main as asfe3d_main

    rc = asfe3d_main(["evaluate", "--hmif", str(hmif_dir), "--out", str(tmp_path), "--methods", "mean,max",
                      "--figure-cases", "0"])
    assert rc == 0
    assert (tmp_path / "evaluation_metrics.csv").is_file() and not (tmp_path / "evaluation_figure.png").exists()
    assert "| max |" in capsys.readouterr().out


def _bad_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("subject,mri,pets\na,b,c\n")
    return path


def _empty_task(tmp_path):
    for sub in ("MRI", "PET"):
        (tmp_path / "empty" / sub).mkdir(parents=True)
    return tmp_path / "empty"


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda t, h: ["--hmif", str(t / "missing")], "HMIF folder not found"),
        (lambda t, h: ["--hmif", str(_empty_task(t))], "no image pairs"),
        (lambda t, h: ["--pairs", str(_bad_csv(t))], "missing column(s) pet"),
        (lambda t, h: ["--pairs", str(t / "nope.csv")], "pairs CSV not found"),
        (lambda t, h: ["--hmif", str(h), "--weights-2d", str(t / "w.pt")], "weight file not found"),
        (lambda t, h: ["--hmif", str(h), "--methods", "mean,magic"], "unknown method 'magic'"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, hmif_dir, capsys, make_args, message):
    out = tmp_path / "out"
    assert main([*make_args(tmp_path, hmif_dir), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asfe3d: error: ") and message in err[0], captured.err
    assert captured.out == ""
    assert not out.exists() or not any(out.iterdir())


def _one_error_line(capsys) -> str:
    """The one ``asfe3d: error:`` line on stderr (nothing else there, nothing on stdout)."""
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asfe3d: error: "), captured.err
    assert captured.out == ""
    return err[0]


@pytest.mark.parametrize("args, message", [
    (["--limit", "0"], "asfe3d: error: --limit: must be >= 1, got 0"),
    (["--limit", "-1"], "asfe3d: error: --limit: must be >= 1, got -1"),
    (["--pairs", "x.csv"], "argument --pairs: not allowed with argument --hmif (see asfe3d evaluate --help)"),
    (["--split", "test"], "argument --split: invalid choice: 'test'"),
    (["--limit", "two"], "argument --limit: invalid int value: 'two'"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_bad_options_exit_2_with_one_line(hmif_dir, tmp_path, capsys, args, message):
    """Usage mistakes end as every other refusal: one ``asfe3d: error:`` line (no usage dump), exit code 2."""
    assert main(["--hmif", str(hmif_dir), "--out", str(tmp_path / "out"), *args]) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--out", "OUT"], "one of the arguments --hmif --pairs is required (see asfe3d evaluate --help)"),
    (["--hmif", "DIR"], "the following arguments are required: --out"),
])
def test_missing_options_exit_2_with_one_line(capsys, args, message):
    assert main(args) == 2
    assert message in _one_error_line(capsys)


def test_top_level_command_gives_the_same_one_line(capsys):
    """``asfe3d evaluate`` with a usage mistake: the one line, not ``asfe3d evaluate: error:`` after the usage."""
    from asfe3d.cli import main as asfe3d_main

    assert asfe3d_main(["evaluate", "--out", "OUT"]) == 2
    assert _one_error_line(capsys) == ("asfe3d: error: one of the arguments --hmif --pairs is required "
                                       "(see asfe3d evaluate --help)")


def _a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    return tmp_path / "afile"


@pytest.mark.parametrize("make_args, message", [
    (lambda t: ["--out", "/proc/asfe3d-no-such/out"], "evaluation_metrics.csv: cannot write in /proc"),
    (lambda t: ["--out", str(_a_file(t))], "afile is a file where a folder is expected"),
    (lambda t: ["--out", str(_a_file(t) / "sub")], "afile is a file where a folder is expected"),
    (lambda t: ["--out", str(t / "out"), "--save-fused", str(_a_file(t))], "afile is a file where a folder is"),
    (lambda t: ["--out", str(t / "out"), "--name", "x"], "x_metrics.csv: output path is an existing folder"),
])
def test_unwritable_out_exits_2_with_one_line_before_any_work(hmif_dir, tmp_path, capsys, monkeypatch, make_args,
                                                              message):
    """An output folder that cannot be made (``/proc/...``), or a file where a folder is expected (or a folder
    where a file is), is refused in one line before any pair is fused (no traceback, no output written)."""
    from asfe3d.evaluation import evaluate as ev

    (tmp_path / "out" / "x_metrics.csv").mkdir(parents=True)

    def no_work(*args, **kwargs):
        raise AssertionError("evaluation work started before the outputs were checked")

    monkeypatch.setattr(ev, "build_fusers", no_work)
    assert main(["--hmif", str(hmif_dir), "--methods", "mean", *make_args(tmp_path)]) == 2
    assert message in _one_error_line(capsys)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x_metrics.csv"]


@pytest.mark.parametrize("flag, value, problem", [
    *[("--pet-consistency", v, "must be in [0, 1]") for v in ("1.5", "-0.2", "nan")],
    *[("--defect-fwhm-mm", v, "must be a width > 0 (mm)") for v in ("0", "-3", "inf")],
    *[("--max-voxel-mm", v, "must be a voxel size >= 0 (mm)") for v in ("-1", "nan")],
    *[("--roi-mm", v, "must be a size >= 0 (mm)") for v in ("-64", "inf")],
    *[("--pet-detail-select", v, "must be in [0, 1]") for v in ("1.5", "-0.1", "nan")],
    *[("--pet-detail-ratio", v, "must be a number > 0") for v in ("0", "-2", "inf", "nan")],
    *[("--pet-fwhm-mm", v, "must be a width > 0 (mm)") for v in ("0", "-8", "inf", "nan")],
    *[("--min-voxel-mm", v, "must be a voxel size >= 0 (mm)") for v in ("-1", "inf")],
    *[("--detail-steer", v, "must be a number >= 0") for v in ("-0.5", "inf", "nan")],
    *[("--detail-fwhm-mm", v, "must be a width in [0, 20] (mm)") for v in ("-1", "25", "nan")],
])
def test_bad_number_exits_2_quoting_it(hmif_dir, tmp_path, capsys, flag, value, problem):
    assert main(["--hmif", str(hmif_dir), "--out", str(tmp_path), flag, value]) == 2
    assert _one_error_line(capsys) == f"asfe3d: error: {flag}: {problem}, got {float(value)!r}"


def test_a_failure_while_writing_keeps_the_earlier_tables_with_their_figures(volume_csv, tmp_path, capsys,
                                                                            monkeypatch):
    """Probe 42 #3: the tables were replaced in place before the figures and the staged fused files moved, so a
    failure (or Ctrl-C) between them left the new CSV beside the earlier run's figures and volumes."""
    from asfe3d.evaluation import front

    out, fused = tmp_path / "out", tmp_path / "fused"
    args = ["--pairs", str(volume_csv), "--out", str(out), "--registration", "none", "--save-fused", str(fused),
            "--methods", "mean", "--figure-cases", "0"]
    assert main(args) == 0, capsys.readouterr().err
    files = sorted(p for p in [*fused.rglob("*"), *out.rglob("*")] if p.is_file())
    before = {p: p.read_bytes() for p in files}
    assert out / "evaluation_metrics.csv" in before and out / "evaluation_front.png" in before

    def fails(*a, **k):  # the last figure of the write phase
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(front, "save_front_figure", fails)
    with pytest.raises(RuntimeError, match="drawing failed"):
        main([*args, "--methods", "mean,max", "--overwrite"])
    assert {p: p.read_bytes() for p in files} == before  # the tables too: one run's set
    assert not [p for p in tmp_path.iterdir() if "asfe3d-stage" in p.name]


def test_a_mask_on_one_slice_gives_tpc_nan_not_a_traceback(volume_csv, tmp_path, capsys):
    """Probe 42 #1: an ROI drawn on one axial slice has no three consecutive voxels along the slicing axis: TPC
    cannot be measured there (NaN); it stopped the run with a ValueError traceback."""
    from tests.conftest import write_nifti

    folder = volume_csv.parent
    roi = np.zeros((24, 24, 24), np.float32)
    roi[6:18, 6:18, 12] = 1
    write_nifti(folder / "roi.nii.gz", roi, np.diag([2.0, 2.0, 2.0, 1.0]))
    csv = folder / "roi.csv"
    csv.write_text("subject,mri,pet,mask\ns1,s1_mri.nii.gz,s1_pet.nii.gz,roi.nii.gz\n")
    out = tmp_path / "out"
    assert main(["--pairs", str(csv), "--out", str(out), "--registration", "none", "--methods", "mean",
                 "--figure-cases", "0", "--no-defect"]) == 0, capsys.readouterr().err
    (row,) = _rows(out / "evaluation_metrics.csv")
    assert row["TPC"] == "nan" and float(row["EN"]) > 0
    # without --save-fused the outputs are staged inside --out (its parent need not be writable), and cleared
    assert sorted(p.name for p in out.iterdir()) == ["evaluation_metrics.csv", "evaluation_planes.png",
                                                     "evaluation_summary.md"]


@pytest.mark.parametrize("column", ["mask", "brain", "defect"])
def test_a_mask_beyond_the_pets_view_is_one_line(volume_csv, tmp_path, capsys, column):
    """Probe 42 #2: a mask (or brain mask) that lies outside the PET's field of view was checked for emptiness
    before the cut to the field of view, and the scoring then ended in a traceback."""
    import nibabel as nib

    from tests.conftest import write_nifti

    folder = volume_csv.parent
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    pet = np.asarray(nib.load(folder / "s1_pet.nii.gz").dataobj)[:, :, :16]  # the PET's view ends at z = 16
    write_nifti(folder / "short_pet.nii.gz", pet, affine)
    top = np.zeros((24, 24, 24), np.float32)
    top[6:18, 6:18, 18:21] = 1
    write_nifti(folder / "top.nii.gz", top, affine)
    csv = folder / "top.csv"
    extra = ",pet_defect" if column == "defect" else ""  # a defect region comes with its PET (review 43 #8)
    csv.write_text(f"subject,mri,pet,{column}{extra}\ns1,s1_mri.nii.gz,short_pet.nii.gz,top.nii.gz"
                   f"{',short_pet.nii.gz' if extra else ''}\n")
    assert main(["--pairs", str(csv), "--out", str(tmp_path / "out"), "--registration", "none", "--methods",
                 "mean", "--figure-cases", "0", "--no-defect"]) == 2
    what = {"mask": "mask", "brain": "brain mask", "defect": "defect region"}[column]
    assert _one_error_line(capsys).endswith(
        f"top.nii.gz: {what} holds 0 voxel(s) inside the PET's field of view on the MRI grid (at least "
        f"{2 if column == 'brain' else 1} needed)")


@pytest.mark.parametrize("name", [" ", "run ", " run"])
def test_a_name_with_outer_spaces_is_refused(hmif_dir, tmp_path, capsys, name):
    """Probe 42 #10: ``--name " "`` wrote files whose names began with a space."""
    assert main(["--hmif", str(hmif_dir), "--out", str(tmp_path / "out"), "--name", name]) == 2
    assert _one_error_line(capsys) == f"asfe3d: error: --name: must be a plain file name prefix, got {name!r}"
    assert not (tmp_path / "out").exists()
