"""DICOM series whose slices disagree (units, decay correction, sizes), DICOMDIR discs, and files given alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from asfe3d.errors import Asfe3dInputError
from asfe3d.io import read_volume
from tests.io.helpers import write_enhanced_dicom, write_pydicom_series

SHAPE = (12, 10, 6)
PT_CLASS = "1.2.840.10008.5.1.4.1.1.128"
MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"


def _series(folder: Path, *, modality: str = "PT", edit=None, uid: str = "1.2.3.4.5") -> Path:
    arr = np.random.default_rng(0).integers(1, 1000, size=SHAPE).astype(np.int16)
    positions = [(-10.0, -12.0, 3.0 * k) for k in range(SHAPE[2])]
    header = {"Units": "BQML", "DecayCorrection": "START"} if modality == "PT" else {}
    write_pydicom_series(folder, arr, positions, np.eye(3), (2.0, 2.0), uid, modality=modality,
                         sop_class=PT_CLASS if modality == "PT" else MR_CLASS, header=header, edit=edit)
    return folder


@pytest.mark.parametrize(("tag", "other"), [("Units", "CNTS"), ("DecayCorrection", "ADMIN")])
def test_pet_slices_with_different_units_or_decay_correction_are_refused(tmp_path: Path, tag: str, other: str):
    """A PT series whose later slices are in CNTS (or decay corrected otherwise) was read as one image, its units
    (and any SUV factor) taken from the first slice alone."""

    def edit(ds, k):
        if k >= 3:
            setattr(ds, tag, other)

    folder = _series(tmp_path / "pt", edit=edit)
    with pytest.raises(Asfe3dInputError, match=rf"pt: PET DICOM slices disagree on {tag} \('.*' in im000.dcm, "
                                               rf"'{other}' in im003.dcm\)"):
        read_volume(folder, role="PET")
    assert read_volume(_series(tmp_path / "ok"), role="PET").shape_xyz == SHAPE  # one quantity: read


def test_slices_of_different_sizes_are_one_clear_line(tmp_path: Path):
    def edit(ds, k):
        if k == 2:
            ds.Rows = SHAPE[1] - 2
            ds.PixelData = np.zeros((SHAPE[1] - 2, SHAPE[0]), "<i2").tobytes()

    folder = _series(tmp_path / "mr", modality="MR", edit=edit)
    with pytest.raises(Asfe3dInputError, match=r"slices have different sizes \(10x12 and 8x12 rows x columns in "
                                               r"im002.dcm\); not one stack$"):
        read_volume(folder, role="MRI")


def test_dicomdir_names_the_series_folders(tmp_path: Path):
    """A DICOMDIR disc: the root folder was 'no DICOM series', the DICOMDIR file 'not a readable image'."""
    import pydicom
    from pydicom.fileset import FileSet

    src = _series(tmp_path / "src", modality="MR")
    fs = FileSet()
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(f)
        ds.StudyID = "1"
        fs.add(ds)
    disc = tmp_path / "disc"
    fs.write(disc)
    for given in (disc, disc / "DICOMDIR"):
        with pytest.raises(Asfe3dInputError, match=r"DICOMDIR.*give the folder of one series instead, under .*disc: "
                                                   r"PT000000/ST000000/SE000000 \(MR, 6 images, series 1.2.3.4.5\)"):
            read_volume(given, role="MRI")
    assert read_volume(disc / "PT000000" / "ST000000" / "SE000000", role="MRI").shape_xyz == SHAPE


def test_a_dicom_file_given_alone_records_what_it_is(tmp_path: Path):
    """An enhanced PT file given as a file (not its folder) lost its Modality and FrameOfReferenceUID, so swapped
    inputs were fused without a word (its folder was refused)."""
    arr = np.random.default_rng(1).integers(1, 1000, size=SHAPE).astype(np.int16)
    path = write_enhanced_dicom(tmp_path / "pt.dcm", arr, [(0.0, 0.0, 2.0 * k) for k in range(SHAPE[2])], np.eye(3),
                                (2.0, 2.0), "1.2.3.77", modality="PT")
    info = read_volume(path, role="PET").info
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(path, folder / "pt.dcm")
    from_folder = read_volume(folder, role="PET").info
    assert info["modality"] == "PT" and info["series_uid"] == "1.2.3.77"
    for key in ("modality", "frame_of_reference_uid", "series_uid"):
        assert info.get(key) == from_folder.get(key), key


def test_per_slice_slopes_are_kept_when_the_first_slice_has_an_integer_slope(tmp_path: Path):
    """GDCM typed the series by its first slice: slope 1 there made it int16 and the later slices' 3 x 0.37 = 1.11
    Bq/mL were read as 1 (a PET edge slice often has slope 1)."""
    stored = np.full(SHAPE, 3, np.int16)
    stored[0, 0, :] = 100  # not constant
    slopes = [1.0] + [0.37] * (SHAPE[2] - 1)
    write_pydicom_series(tmp_path / "pt", stored, [(0.0, 0.0, 2.0 * k) for k in range(SHAPE[2])], np.eye(3),
                         (2.0, 2.0), "1.2.3.9", modality="PT", sop_class=PT_CLASS, slopes=slopes,
                         header={"Units": "BQML"})
    values = read_volume(tmp_path / "pt", role="PET").array_xyz()[5, 5, :]
    np.testing.assert_allclose(values, 3 * np.asarray(slopes), rtol=1e-6)
