"""``scripts/resample_pairs.py``: the held-out pairs put on a coarser MRI grid."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tests.evaluation.conftest import load_script


@pytest.fixture(scope="module")
def rp():
    return load_script("resample_pairs")


def _write(path, arr, spacing, origin=(-10.0, 5.0, 2.0)):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))


def test_resamples_mri_grid_files_and_keeps_pet(rp, tmp_path):
    import SimpleITK as sitk

    src = tmp_path / "in"
    src.mkdir()
    mri = np.random.default_rng(0).random((20, 24, 22)).astype(np.float32)
    brain = np.zeros((20, 24, 22), np.uint8)
    brain[5:15, 6:18, 5:17] = 1
    _write(src / "m.nii.gz", mri, (1.0, 1.0, 1.0))
    _write(src / "b.nii.gz", brain, (1.0, 1.0, 1.0))
    _write(src / "p.nii.gz", mri[::2, ::2, ::2].copy(), (2.5, 2.5, 2.5))
    (src / "pairs.csv").write_text("subject,mri,pet,brain\ns1,m.nii.gz,p.nii.gz,b.nii.gz\n", encoding="utf-8")
    out = tmp_path / "out"
    (tmp_path / "out.partial").mkdir()  # a leftover of an interrupted run does not block the rerun
    (tmp_path / "out.partial" / "m.nii.gz").write_bytes(b"half")
    assert rp.main([str(src / "pairs.csv"), str(out), "--voxel-mm", "2"]) == 0
    m2 = sitk.ReadImage(str(out / "s1_mri.nii.gz"))
    assert m2.GetSpacing() == pytest.approx((2.0, 2.0, 2.0))
    assert m2.GetSize() == (11, 12, 10)  # ceil(22/2), ceil(24/2), ceil(20/2): sitk sizes are x, y, z
    assert m2.GetOrigin() == pytest.approx((-10.0, 5.0, 2.0))
    b2 = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "s1_brain.nii.gz")))
    assert set(np.unique(b2)) == {0, 1}  # nearest neighbour: still a mask
    row = next(csv.DictReader(open(out / "pairs.csv", encoding="utf-8")))
    assert row["mri"] == "s1_mri.nii.gz" and Path(row["pet"]) == (src / "p.nii.gz").resolve()
    assert not (tmp_path / "out.partial").exists()


def test_refuses_existing_output_and_bad_voxel(rp, tmp_path, capsys):
    (tmp_path / "pairs.csv").write_text("subject,mri,pet\n", encoding="utf-8")
    (tmp_path / "out").mkdir()
    assert rp.main([str(tmp_path / "pairs.csv"), str(tmp_path / "out")]) == 2
    assert "exists" in capsys.readouterr().err
    assert rp.main([str(tmp_path / "pairs.csv"), str(tmp_path / "new"), "--voxel-mm", "0"]) == 2
    assert capsys.readouterr().err.strip() == "asfe3d: error: --voxel-mm: must be in (0, 10] mm, got 0.0"
    assert not (tmp_path / "new").exists()


def test_anisotropic_grid_blurs_only_the_thicker_axis(rp, tmp_path):
    import SimpleITK as sitk

    src = tmp_path / "in"
    src.mkdir()
    mri = np.zeros((20, 24, 22), np.float32)  # numpy z, y, x: sitk axes i = x, j = y, k = z
    mri[:, :, 11] = 1.0  # a sheet across x: thin along x
    mri[10, :, :] += 1.0  # a sheet across z: thin along z
    _write(src / "m.nii.gz", mri, (1.0, 1.0, 1.0))
    _write(src / "p.nii.gz", mri, (1.0, 1.0, 1.0))
    (src / "pairs.csv").write_text(f"subject,mri,pet\ns1,m.nii.gz,{src / 'p.nii.gz'}\n", encoding="utf-8")
    assert rp.main([str(src / "pairs.csv"), str(tmp_path / "out"), "--voxel-mm", "1", "1", "3"]) == 0
    img = sitk.ReadImage(str(tmp_path / "out" / "s1_mri.nii.gz"))
    assert img.GetSpacing() == pytest.approx((1.0, 1.0, 3.0))
    assert img.GetSize() == (22, 24, 7)  # ceil(20 / 3) slices along k
    out = sitk.GetArrayFromImage(img)
    across_x = out[1, 12, :]  # away from the z sheet: the x sheet's profile, kept sharp (no blur along i)
    assert across_x[11] == pytest.approx(1.0, abs=2e-3) and np.abs(np.delete(across_x, 11)).max() < 2e-3
    along_k = out[:, 12, 3]  # the z sheet, blurred over the 3 mm slices: no slice holds all of it
    assert 0.05 < along_k.max() < 0.9


def test_refuses_two_voxel_sizes(rp, tmp_path, capsys):
    (tmp_path / "pairs.csv").write_text("subject,mri,pet\n", encoding="utf-8")
    assert rp.main([str(tmp_path / "pairs.csv"), str(tmp_path / "new"), "--voxel-mm", "1", "2"]) == 2
    assert capsys.readouterr().err.strip() == "asfe3d: error: --voxel-mm: needs 1 or 3 sizes, got 2"
    assert not (tmp_path / "new").exists()


def test_subjects_files_of_one_name_stay_apart_and_a_missing_file_is_one_line(rp, tmp_path, capsys):
    """sub01/t1.nii.gz and sub02/t1.nii.gz were both written to out/t1.nii.gz: every subject then pointed at the
    last one's MRI; a missing MRI was a SimpleITK traceback that left out.partial behind."""
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    lines = ["subject,mri,pet"]
    for sub in ("sub01", "sub02"):
        (tmp_path / sub).mkdir()
        _write(tmp_path / sub / "t1.nii.gz", rng.random((8, 8, 8)).astype(np.float32), (1.0, 1.0, 1.0))
        _write(tmp_path / sub / "pet.nii.gz", rng.random((4, 4, 4)).astype(np.float32), (2.0, 2.0, 2.0))
        lines.append(f"{sub},{sub}/t1.nii.gz,{sub}/pet.nii.gz")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert rp.main([str(tmp_path / "pairs.csv"), str(tmp_path / "out"), "--voxel-mm", "2"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "pairs.csv", encoding="utf-8")))
    assert [r["mri"] for r in rows] == ["sub01_mri.nii.gz", "sub02_mri.nii.gz"]
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / r["mri"]))) for r in rows)
    assert not np.array_equal(a, b)
    (tmp_path / "sub02" / "t1.nii.gz").unlink()
    capsys.readouterr()
    assert rp.main([str(tmp_path / "pairs.csv"), str(tmp_path / "new"), "--voxel-mm", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sub02/t1.nii.gz: line 3: subject 'sub02': mri does not exist" in err
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.partial").exists()
