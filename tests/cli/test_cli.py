"""The ``asfe3d`` command end to end, and every bad input: one stderr line naming the file, exit 2, no output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from asfe3d.cli import main
from tests.conftest import write_nifti

REPO = Path(__file__).resolve().parents[2]





def _outputs(folder: Path, inputs) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p not in set(inputs))


def test_help_is_instant_and_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "asfe3d.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for sub in ("fuse", "demo", "train", "evaluate", "benchmark"):
        assert sub in out.stdout


def test_script_wrapper_end_to_end(pair, tmp_path):
    mri, pet = pair
    out = tmp_path / "out.nii.gz"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fuse_volume.py"), str(mri), str(pet), "-o", str(out),
         "--method", "wavelet", "--save-registered-pet"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # quiet by default: warnings only
    assert "fused volume:" in proc.stdout and "registration: rigid" in proc.stdout
    ref, got = nib.load(mri), nib.load(out)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-5)
    assert (tmp_path / "out_pet_on_mri.nii.gz").is_file()


def test_4d_pet_reports_the_frames_used(pair, tmp_path, capsys):
    mri, pet = pair
    img = nib.load(pet)
    frames = np.stack([img.get_fdata() * s for s in (0.8, 1.0, 1.2)], axis=-1)
    pet4d = write_nifti(tmp_path / "pet4d.nii.gz", frames, img.affine)
    assert main(["fuse", str(mri), str(pet4d), "-o", str(tmp_path / "a.nii.gz"), "--method", "mean"]) == 0
    assert "mean of 3 frames (equal weights: frame durations not known)" in capsys.readouterr().out
    (tmp_path / "pet4d.json").write_text('{"FrameDuration": [60, 120, 300]}')  # a BIDS sidecar beside it
    assert main(["fuse", str(mri), str(pet4d), "-o", str(tmp_path / "c.nii.gz"), "--method", "mean"]) == 0
    assert "mean of 3 frames weighted by their durations (60, 120, 300 s)" in capsys.readouterr().out
    assert main(["fuse", str(mri), str(pet4d), "-o", str(tmp_path / "b.nii.gz"), "--method", "mean",
                 "--pet-frame", "2"]) == 0
    assert "4D input with 3 frames, used frame 2" in capsys.readouterr().out  # not "used the frame 2"


def _bad_cases(mri: Path, pet: Path, tmp: Path):
    ref = nib.load(mri)
    shape, affine = ref.shape, ref.affine
    cases = {}
    cases["missing"] = ("pet", tmp / "absent_pet.nii.gz", [])
    notimg = tmp / "notes_pet.nii.gz"
    notimg.write_text("this is not an image\n")
    cases["not_an_image"] = ("pet", notimg, [])
    trunc = tmp / "trunc_pet.nii.gz"
    trunc.write_bytes(pet.read_bytes()[: len(pet.read_bytes()) // 2])
    cases["truncated"] = ("pet", trunc, [])
    cases["2d"] = ("pet", write_nifti(tmp / "flat_pet.nii.gz", np.random.rand(20, 20), affine), [])
    cases["5d"] = ("pet", write_nifti(tmp / "five_pet.nii.gz", np.random.rand(8, 8, 8, 2, 3), affine), [])
    cases["constant"] = ("pet", write_nifti(tmp / "const_pet.nii.gz", np.full(shape, 7.0), affine), [])
    nan = np.asarray(ref.get_fdata(), np.float32).copy()
    nan[5, 5, 5] = np.nan
    nan[6, 6, 6] = np.inf
    cases["nonfinite"] = ("mri", write_nifti(tmp / "nan_mri.nii.gz", nan, affine), [])
    empty_dir = tmp / "dicom_pet"
    empty_dir.mkdir()
    (empty_dir / "readme.txt").write_text("no DICOM here")
    cases["dicom_no_series"] = ("pet", empty_dir, [])
    far = np.asarray(nib.load(pet).get_fdata(), np.float32)
    far_affine = nib.load(pet).affine.copy()
    far_affine[:3, 3] += 400.0
    cases["no_overlap"] = ("pet", write_nifti(tmp / "far_pet.nii.gz", far, far_affine), ["--registration", "none"])
    return cases


BAD = ["missing", "not_an_image", "truncated", "2d", "5d", "constant", "nonfinite", "dicom_no_series", "no_overlap"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_line_exit_2_no_output(case, pair, tmp_path, capsys):
    mri, pet = pair
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    role, bad, extra = _bad_cases(mri, pet, bad_dir)[case]
    args = [str(bad), str(pet)] if role == "mri" else [str(mri), str(bad)]
    out_dir = tmp_path / "out"
    rc = main(["fuse", *args, "-o", str(out_dir / "fused.nii.gz"), "--method", "mean", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1, err
    assert err[0].startswith("asfe3d: error: ") and bad.name in err[0], err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_nonfinite_can_be_repaired_with_a_warning(pair, tmp_path, capsys, caplog):
    mri, pet = pair
    ref = nib.load(mri)
    data = np.asarray(ref.get_fdata(), np.float32).copy()
    data[1, 1, 1] = np.nan
    bad = write_nifti(tmp_path / "nan_mri.nii.gz", data, ref.affine)
    rc = main(["fuse", str(bad), str(pet), "-o", str(tmp_path / "f.nii.gz"), "--method", "mean",
               "--allow-nonfinite"])
    captured = capsys.readouterr()
    assert rc == 0
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "nan_mri.nii.gz" in r.getMessage()]
    assert warnings and "1 non-finite" in warnings[0].getMessage()
    assert "replaced 1 NaN/Inf" in captured.out


def test_output_equal_to_input_is_refused(pair, capsys):
    mri, pet = pair
    before = mri.read_bytes()
    rc = main(["fuse", str(mri), str(pet), "-o", str(mri), "--overwrite", "--method", "mean"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and mri.name in err[0]
    assert mri.read_bytes() == before


def test_existing_output_needs_overwrite(pair, tmp_path, capsys):
    mri, pet = pair
    out = tmp_path / "done.nii.gz"
    out.write_bytes(b"old")
    rc = main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean"])
    err = capsys.readouterr().err.strip().splitlines()
    # a file asfe3d did not write: never replaced, and the line says so (not "pass --overwrite")
    assert rc == 2 and len(err) == 1 and "done.nii.gz: exists and done.json does not list it" in err[0]
    assert out.read_bytes() == b"old"
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--overwrite"]) == 2
    assert out.read_bytes() == b"old"
    out.unlink()
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean"]) == 0
    capsys.readouterr()
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean"]) == 2  # ours: --overwrite redoes it
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "done.nii.gz: output file already exists (pass --overwrite" in err[0]
    assert main(["fuse", str(mri), str(pet), "-o", str(out), "--method", "mean", "--overwrite"]) == 0
    assert nib.load(out).shape == nib.load(mri).shape


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fuse", "--method", "nope"])
    assert exc.value.code == 2


def test_dicom_mri_series_end_to_end(small_pair, tmp_path, capsys):
    """A DICOM series MRI (oblique LPS geometry) fuses onto its own grid with the correct RAS affine."""
    import SimpleITK as sitk

    from asfe3d.io import ras_affine_from_sitk
    from tests.io.helpers import write_dicom_series

    mri = sitk.ReadImage(str(small_pair.mri_path))
    arr = sitk.GetArrayFromImage(mri).transpose(2, 1, 0)
    arr = (arr / max(float(arr.max()), 1e-6) * 1000).astype(np.int16)
    theta = np.deg2rad(10.0)
    direction = np.array([[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]])
    dicom_dir = tmp_path / "mri_dicom"
    write_dicom_series(dicom_dir, arr, mri.GetOrigin(), mri.GetSpacing(), direction, series_uid="1.2.3.4.5.6")
    out = tmp_path / "fused.nii.gz"
    assert main(["fuse", str(dicom_dir), str(small_pair.pet_path), "-o", str(out), "--method", "wavelet"]) == 0
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(dicom_dir)))
    expected = ras_affine_from_sitk(reader.Execute())
    got = nib.load(out)
    assert got.shape == arr.shape
    np.testing.assert_allclose(got.affine, expected, atol=1e-4)
    assert int(got.header["sform_code"]) == 1 and int(got.header["qform_code"]) == 1
    # the RAS affine really is LPS flipped: +x in DICOM (patient left) is -x in RAS
    np.testing.assert_allclose(got.affine[0, 0], -mri.GetSpacing()[0], atol=1e-4)


def test_registration_summary_never_prints_a_nan_metric():
    from asfe3d.reports.text import registration_outcome as registration_summary

    optimised = {"method": "rigid", "metric": -0.51234, "iterations": 38, "stop_condition": "converged"}
    assert registration_summary(optimised) == "rigid, Mattes MI -0.5123, 38 iterations"
    kept = {"method": "rigid", "metric": None, "iterations": 0,
            "stop_condition": "the headers' alignment scored a higher MI than the optimiser's result"}
    assert registration_summary(kept) == ("rigid: kept the headers' alignment (the headers' alignment scored a higher "
                                          "MI than the optimiser's result)")
    assert "nan" not in registration_summary({"method": "rigid", "metric": float("nan"), "iterations": 0})
    assert registration_summary({"method": "none", "metric": float("nan"), "iterations": 0}).startswith("none (")


def test_progress_bars_only_on_a_terminal():
    """Bars are drawn on a terminal; a log file or a pipe gets none, and ``--no-progress`` hides them anywhere."""
    import argparse
    import io

    from asfe3d.cli.options import show_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown, hidden = argparse.Namespace(no_progress=False), argparse.Namespace(no_progress=True)
    assert show_progress(shown, Terminal()) is True
    assert show_progress(shown, io.StringIO()) is False  # a file or a pipe
    assert show_progress(hidden, Terminal()) is False
    assert show_progress(shown, object()) is False  # a stream that cannot say


def test_the_summary_says_how_much_of_the_head_is_blank_beyond_the_pet_field_of_view():
    """A PET whose field of view misses the cerebellum (10 % of the head; too little for the QC's pet_fov warning):
    the fused image is blank there, and the run's summary says so in one line (also beside the QC's warning, which
    says only that there is no PET); a whole-head PET prints none."""
    import io
    from types import SimpleNamespace

    from asfe3d.cli.fuse import print_result

    def summary(fraction: float, flags: list[str], value: float = 0.0) -> str:
        result = SimpleNamespace(
            output="f.nii.gz", outputs={"fused": "f.nii.gz"}, inputs={}, overlap=0.6, peak_memory_mb=900.0,
            timings={"load": 0.1, "register": 1.0, "fuse": 2.0, "save": 0.5, "total": 3.6},
            registration={"method": "rigid", "metric": -0.5, "iterations": 30, "stop_condition": "converged",
                          "qc": {"verdict": "pass", "reasons": [], "flags": flags, "numbers": {}}},
            fusion={"outside_pet_fov": {"voxels": 50000, "head_fraction": fraction, "value": value}})
        out = io.StringIO()
        print_result(result, out)
        return out.getvalue()

    assert "fused image: blank (0) in 10% of the MRI head, beyond the PET's field of view" in summary(0.1, [])
    assert "blank" not in summary(0.0, [])
    assert "blank (0) in 40% of the MRI head" in summary(0.4, ["pet_fov"])
    assert "blank (87.25, the MRI window's low end) in 10% of the MRI head" in summary(0.1, [], 87.25)


def test_a_sigterm_whose_exception_was_lost_still_ends_the_command_as_terminated(monkeypatch, capsys):
    """Probe 45 #4: SIGTERM's exception raised inside a callback that Python discards ("Exception ignored in
    WeakKeyDictionary") was lost: the run went on and exited 0. The noted stop ends it with 143."""
    import asfe3d.cli.demo as demo
    from asfe3d.cli import main
    from asfe3d.utils.stop import request_stop, stop_requested

    def lost(args):  # the handler ran (noted the stop), its exception went nowhere, the command finished
        request_stop("terminate")
        return 0

    monkeypatch.setattr(demo, "run", lost)
    assert main(["demo"]) == 143
    assert capsys.readouterr().err.strip() == "asfe3d: terminated; no partial output was kept"
    assert main(["demo"]) == 143 and stop_requested() == "terminate"  # each command starts from a cleared stop
    monkeypatch.setattr(demo, "run", lambda args: 0)
    assert main(["demo"]) == 0
