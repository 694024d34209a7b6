"""DICOM series folders: oblique geometry, several series, non-uniform / tilted stacks, empty folders."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from asfe3d.errors import Asfe3dInputError
from asfe3d.io import read_volume, write_like
from asfe3d.io.convert import LPS_TO_RAS
from tests.io.helpers import rotation, write_dicom_series

UID_A = "1.2.826.0.1.3680043.2.1125.100"
UID_B = "1.2.826.0.1.3680043.2.1125.200"
SHAPE = (12, 10, 6)
ORIGIN = (-40.5, 25.0, 12.25)
SPACING = (0.9, 1.1, 2.5)
DIRECTION = rotation(8.0, -14.0, 21.0)  # LPS


def _array(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=SHAPE).astype(np.int16)


def _expected_ras_affine() -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = LPS_TO_RAS @ DIRECTION @ np.diag(SPACING)
    aff[:3, 3] = LPS_TO_RAS @ np.asarray(ORIGIN)
    return aff


def test_oblique_series_round_trip(tmp_path):
    arr = _array()
    folder = tmp_path / "t1"
    files = write_dicom_series(folder, arr, ORIGIN, SPACING, DIRECTION, UID_A, "T1 MPRAGE")
    # shuffle file names so that alphabetical order is not slice order
    for i, f in enumerate(files):
        f.rename(folder / f"x{(i * 7) % len(files):03d}_{i}.dcm")
    vol = read_volume(folder, role="MRI")
    assert vol.format == "dicom" and vol.nifti_header is None and vol.shape_xyz == SHAPE
    assert vol.info["series_uid"] == UID_A and vol.info["series_description"] == "T1 MPRAGE"
    assert vol.info["slices"] == SHAPE[2]
    np.testing.assert_allclose(vol.affine_ras, _expected_ras_affine(), atol=1e-4)
    np.testing.assert_array_equal(vol.array_xyz(), arr.astype(np.float32))
    res = nib.load(write_like(vol.array_xyz(), vol, tmp_path / "out.nii.gz", inputs=[folder]))
    np.testing.assert_allclose(res.affine, _expected_ras_affine(), atol=1e-4)
    assert int(res.header["qform_code"]) == 1 and int(res.header["sform_code"]) == 1
    np.testing.assert_array_equal(np.asanyarray(res.dataobj), arr)


def test_two_series_need_series_uid(tmp_path):
    folder = tmp_path / "mixed"
    write_dicom_series(folder, _array(0), ORIGIN, SPACING, DIRECTION, UID_A, "T1 MPRAGE", prefix="a")
    write_dicom_series(folder, _array(1), ORIGIN, SPACING, np.eye(3), UID_B, "FLAIR", prefix="b")
    with pytest.raises(Asfe3dInputError, match="2 DICOM series") as exc:
        read_volume(folder, role="MRI")
    msg = str(exc.value)
    assert UID_A in msg and UID_B in msg and "'T1 MPRAGE', 6 slices" in msg and "'FLAIR', 6 slices" in msg
    vol = read_volume(folder, series_uid=UID_B)
    np.testing.assert_array_equal(vol.array_xyz(), _array(1).astype(np.float32))
    assert vol.info["series_description"] == "FLAIR"
    with pytest.raises(Asfe3dInputError, match="no DICOM series '9.9.9'"):
        read_volume(folder, series_uid="9.9.9")


def test_non_uniform_spacing_refused_when_strict(tmp_path):
    folder = tmp_path / "gap"
    files = write_dicom_series(folder, _array(), ORIGIN, SPACING, DIRECTION, UID_A)
    files[3].unlink()  # a missing slice
    with pytest.raises(Asfe3dInputError, match="not uniform"):
        read_volume(folder, dicom_strict=True)


def test_gantry_tilt_refused_when_strict(tmp_path):
    normal = DIRECTION[:, 2]
    row = DIRECTION[:, 0]
    positions = [np.asarray(ORIGIN) + k * SPACING[2] * normal + k * 0.3 * row for k in range(SHAPE[2])]
    write_dicom_series(tmp_path / "tilt", _array(), ORIGIN, SPACING, DIRECTION, UID_A, positions=positions)
    with pytest.raises(Asfe3dInputError, match="gantry tilt"):
        read_volume(tmp_path / "tilt", dicom_strict=True)


def test_repeated_positions_refused(tmp_path):
    positions = [ORIGIN] * SHAPE[2]
    write_dicom_series(tmp_path / "dyn", _array(), ORIGIN, SPACING, DIRECTION, UID_A, positions=positions)
    with pytest.raises(Asfe3dInputError, match="distinct slice positions"):
        read_volume(tmp_path / "dyn")


def test_empty_and_non_dicom_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Asfe3dInputError, match="folder is empty") as exc:
        read_volume(empty, role="PET")
    assert exc.value.path == str(empty)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("no images here")
    with pytest.raises(Asfe3dInputError, match=r"no DICOM series \(1 files"):
        read_volume(junk)


def test_single_slice_series_refused_as_2d(tmp_path):
    files = write_dicom_series(tmp_path / "one", _array(), ORIGIN, SPACING, DIRECTION, UID_A)
    for f in files[1:]:
        f.unlink()
    with pytest.raises(Asfe3dInputError, match="2D") as exc:
        read_volume(tmp_path / "one", role="PET")
    assert "PET" in str(exc.value)


def _two_series(folder):
    arr = (np.random.default_rng(1).random((16, 16, 8)) * 1000).astype(np.int16)
    a = write_dicom_series(folder, arr, (0, 0, 0), (2, 2, 3), np.eye(3), "1.2.3.1", prefix="a")
    write_dicom_series(folder, arr, (0, 0, 0), (2, 2, 3), np.eye(3), "1.2.3.2", prefix="b")
    return a


@pytest.mark.parametrize("role, option", [("MRI", "--mri-series UID"), ("PET", "--pet-series UID")])
def test_several_series_errors_name_the_option_the_user_types(tmp_path, role, option):
    _two_series(tmp_path / "dcm")
    with pytest.raises(Asfe3dInputError, match=f"choose one with {option}"):
        read_volume(tmp_path / "dcm", role=role)
    with pytest.raises(Asfe3dInputError, match=f"given by {option}"):
        read_volume(tmp_path / "dcm", role=role, series_uid="9.9.9")


def test_truncated_slice_is_named_not_read_as_a_gap(tmp_path):
    """GDCM leaves a truncated slice out of its series: reading on would show a slice gap and fill it; the file is
    named instead."""
    arr = (np.random.default_rng(0).random((16, 16, 10)) * 1000).astype(np.int16)
    files = sorted(write_dicom_series(tmp_path / "dcm", arr, (0, 0, 0), (2, 2, 2), np.eye(3), "1.2.3.4"))
    assert read_volume(tmp_path / "dcm", role="MRI").shape_xyz == (16, 16, 10)
    victim = files[4]
    victim.write_bytes(victim.read_bytes()[:-200])
    with pytest.raises(Asfe3dInputError, match=rf"{victim.name}: MRI DICOM slice of series 1.2.3.4 cannot be read"):
        read_volume(tmp_path / "dcm", role="MRI")


def test_an_unreadable_slice_is_named_not_dropped(tmp_path, monkeypatch):
    """Probe 46 #1: GDCM skips a file it cannot open as if it were not DICOM; the last slice of a series copied
    without read permission was dropped in silence (a shorter PET), a middle one read as a gap and filled."""
    import asfe3d.io.dicom as dicom

    arr = (np.random.default_rng(0).random((16, 16, 10)) * 1000).astype(np.int16)
    files = sorted(write_dicom_series(tmp_path / "dcm", arr, (0, 0, 0), (2, 2, 2), np.eye(3), "1.2.3.4"))
    victim = files[-1]
    summary, real_open = dicom._series_summary, open

    def without_victim(folder, uid):  # what GDCM lists when it cannot open the file (as root it always can)
        listed, description = summary(folder, uid)
        return [f for f in listed if Path(f).name != victim.name], description

    def guarded_open(path, *args, **kwargs):
        if Path(path).name == victim.name:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(dicom, "_series_summary", without_victim)
    monkeypatch.setattr(dicom, "open", guarded_open, raising=False)
    with pytest.raises(Asfe3dInputError, match=rf"{victim.name}: PET folder's file cannot be read \(Permission "
                                               r"denied\); it may be a slice of the series"):
        read_volume(tmp_path / "dcm", role="PET")
    victim.rename(victim.with_name("README.txt"))  # (review 49 #10: an unreadable README is no lost slice)
    victim = victim.with_name("README.txt")
    assert read_volume(tmp_path / "dcm", role="PET").shape_xyz == (16, 16, 9)


def test_an_unreadable_folder_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "dcm"
    folder.mkdir()

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(Asfe3dInputError, match=r"dcm: PET folder cannot be read \(Permission denied\)"):
        read_volume(folder, role="PET")


def test_monochrome1_is_refused_not_inverted(tmp_path):
    """Probe 46 #2: GDCM inverts a MONOCHROME1 image's values (a PET in Bq/mL read negative); it is refused."""
    import pydicom

    arr = (np.random.default_rng(0).random((16, 16, 10)) * 1000).astype(np.int16)
    files = write_dicom_series(tmp_path / "dcm", arr, (0, 0, 0), (2, 2, 2), np.eye(3), "1.2.3.4")
    assert read_volume(tmp_path / "dcm", role="PET").shape_xyz == (16, 16, 10)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.save_as(f)
    with pytest.raises(Asfe3dInputError, match=r"PET DICOM image is MONOCHROME1 \(PhotometricInterpretation\), "
                                               r"which the series reader \(GDCM\) would read with its values inverted"):
        read_volume(tmp_path / "dcm", role="PET")


def test_a_copied_slice_file_is_read_once(tmp_path, caplog):
    """Probe 46 #3: ``sl0004.dcm`` and its copy ``sl0004 (1).dcm`` (a second download) were refused as "11 slices
    but only 10 distinct slice positions (several frames or acquisitions?)", naming no file."""
    import logging
    import shutil

    arr = (np.random.default_rng(0).random((16, 16, 10)) * 1000).astype(np.int16)
    files = sorted(write_dicom_series(tmp_path / "dcm", arr, (0, 0, 0), (2, 2, 2), np.eye(3), "1.2.3.4"))
    expected = read_volume(tmp_path / "dcm", role="MRI")
    shutil.copy(files[4], files[4].with_name(f"{files[4].stem} (1).dcm"))
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        vol = read_volume(tmp_path / "dcm", role="MRI")
    assert vol.shape_xyz == (16, 16, 10) and vol.info["slices"] == 10
    assert np.array_equal(vol.array_xyz(), expected.array_xyz())
    assert f"a copy of {files[4].name}" in caplog.text or f"{files[4].name}: a copy of" in caplog.text


def test_dicom_without_the_part10_header_is_said_plainly(tmp_path):
    """Probe 46 #4: a slice saved without the 128-byte preamble and 'DICM' was refused with SimpleITK's source-file
    path in the line (in a folder), or as "not in a format asfe3d reads" (on its own)."""
    import pydicom

    arr = (np.random.default_rng(0).random((16, 16, 10)) * 1000).astype(np.int16)
    files = sorted(write_dicom_series(tmp_path / "dcm", arr, (0, 0, 0), (2, 2, 2), np.eye(3), "1.2.3.4"))
    for f in files:
        ds = pydicom.dcmread(f)
        ds.preamble = None
        ds.save_as(f, enforce_file_format=False)
    for given in (tmp_path / "dcm", files[0]):
        with pytest.raises(Asfe3dInputError, match=r"MRI file is DICOM without the Part 10 file header") as caught:
            read_volume(given, role="MRI")
        assert ".cxx" not in str(caught.value) and "force=True" not in str(caught.value)


def test_a_study_folder_names_its_series_folders(tmp_path):
    """Probe 46 #7: a study folder (series in sub-folders) was "no DICOM series (0 files, 2 sub-folders)"."""
    arr = (np.random.default_rng(0).random((16, 16, 10)) * 1000).astype(np.int16)
    write_dicom_series(tmp_path / "study" / "t1", arr, (0, 0, 0), (2, 2, 2), np.eye(3), "1.2.3.4")
    (tmp_path / "study" / "notes").mkdir()
    with pytest.raises(Asfe3dInputError, match=r"no DICOM series \(0 files, 2 sub-folders\); give the folder of one "
                                               r"series: its sub-folders t1 \(1 series\) hold DICOM series$"):
        read_volume(tmp_path / "study", role="MRI")


def test_a_copied_slice_is_found_when_every_slice_shares_one_uid(tmp_path):
    """Review 49 #5: with one SOPInstanceUID for every slice (an anonymiser's), each file was compared with the
    first only, so a copy of any other slice was refused as "several frames or acquisitions"."""
    import shutil

    import pydicom

    arr = (np.random.default_rng(0).random((16, 16, 10)) * 1000).astype(np.int16)
    files = sorted(write_dicom_series(tmp_path / "dcm", arr, (0, 0, 0), (2, 2, 2), np.eye(3), "1.2.3.4"))
    for f in files:
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = "1.2.3.4.5"
        ds.save_as(f)
    expected = read_volume(tmp_path / "dcm", role="MRI").array_xyz()  # one UID, ten distinct slices: as before
    shutil.copy(files[6], files[6].with_name("copy.dcm"))
    vol = read_volume(tmp_path / "dcm", role="MRI")
    assert vol.info["slices"] == 10 and np.array_equal(vol.array_xyz(), expected)
