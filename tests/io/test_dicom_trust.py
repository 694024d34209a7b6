"""DICOM headers that cannot be trusted (probe 13): near-duplicate slices, a resampled grid out of bounds, missing or
zero PixelSpacing, RescaleSlope 0, non-orthogonal orientations, non-finite positions, a file GDCM cannot scan, a wide
hole in a series, gaps that add up, a useless FrameReferenceTime beside a valid ImageIndex."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from asfe3d.errors import Asfe3dInputError
from asfe3d.io import read_volume
from tests.io.helpers import write_dynamic_pet_series, write_enhanced_dicom, write_pydicom_series

SHAPE = (12, 10, 8)
MR_CLASS = "1.2.840.10008.5.1.4.1.1.4"
UID = "1.2.826.0.1.3680043.2.1125.613"


def _series(folder: Path, depths=None, edit=None, shape=SHAPE) -> Path:
    arr = np.random.default_rng(0).integers(1, 1000, size=(*shape[:2], len(depths or range(shape[2])))).astype(np.int16)
    depths = [2.0 * k for k in range(shape[2])] if depths is None else depths
    write_pydicom_series(folder, arr, [(-10.0, -12.0, d) for d in depths], np.eye(3), (2.0, 2.0), UID,
                         modality="MR", sop_class=MR_CLASS, edit=edit)
    return folder


def test_near_duplicate_slice_refused(tmp_path):
    """A slice repeated 0.01 mm from another made a 2x2x0.01 mm grid of 1401 planes (0.001 mm: 14001)."""
    depths = [2.0 * k for k in range(8)] + [6.01]
    with pytest.raises(Asfe3dInputError, match=r"slices im003.dcm and im008.dcm lie 0.01 mm apart, under 5 % of the "
                                               r"median slice gap \(2 mm\).*remove one of them$"):
        read_volume(_series(tmp_path / "mr", depths), role="MRI")


def test_resampled_grid_goes_through_voxel_size_and_memory_checks(tmp_path, monkeypatch):
    import asfe3d.io.checks as checks
    import asfe3d.io.dicom as dicom

    folder = _series(tmp_path / "mr", [2.0 * k for k in range(8)] + [6.001])
    monkeypatch.setattr(dicom, "NEAR_DUPLICATE_FRACTION", 0.0)  # the grid checks on their own
    with pytest.raises(Asfe3dInputError, match=r"implausible voxel sizes \(DICOM stack resampled onto a regular grid: "
                                               r"spacing = 2, 2, 0.001 mm"):
        read_volume(folder, role="MRI")
    gapped = _series(tmp_path / "gap", [0.0, 2.0, 4.0, 8.0, 10.0, 12.0])  # one slice missing: 12x10x7 resampled
    monkeypatch.setattr(checks, "available_memory_bytes", lambda: 12 * 10 * 6 * 20 + 1)  # the 6 slices fit, not 7
    with pytest.raises(Asfe3dInputError, match=r"image of 12x10x7 voxels needs about"):
        read_volume(gapped, role="MRI")


@pytest.mark.parametrize("spacing", [None, ["0", "0"]])
def test_pixel_spacing_missing_or_zero_refused(tmp_path, spacing):
    """GDCM's 1 mm default was used: the volume written on a grid half its true size."""

    def edit(ds, k):
        if spacing is None:
            del ds.PixelSpacing
        else:
            ds.PixelSpacing = spacing

    said = "no PixelSpacing \\(0028,0030\\)" if spacing is None else "PixelSpacing '0\\\\\\\\0'"
    with pytest.raises(Asfe3dInputError, match=rf"im000.dcm: MRI DICOM slice has {said}: its voxel size is unknown"):
        read_volume(_series(tmp_path / "mr", edit=edit), role="MRI")


def test_rescale_slope_zero_refused(tmp_path):
    def edit(ds, k):
        ds.RescaleSlope = "0"

    with pytest.raises(Asfe3dInputError, match=r"im000.dcm: PET DICOM slice has RescaleSlope '0'"):
        read_volume(_series(tmp_path / "mr", edit=edit), role="PET")
    arr = np.ones((6, 5, 4), dtype=np.int16)
    path = write_enhanced_dicom(tmp_path / "mf.dcm", arr, [(0.0, 0.0, 2.0 * k) for k in range(4)], np.eye(3),
                                (1.0, 1.0), UID, slopes=[(1.0, 0.0), (0.0, 5.0), (1.0, 0.0), (1.0, 0.0)])
    with pytest.raises(Asfe3dInputError, match=r"enhanced DICOM frame 1 has RescaleSlope '0'"):
        read_volume(path, role="PET")


@pytest.mark.parametrize(("iop", "words"), [
    (["1", "0", "0", "0.5", "0.866", "0"], r"has row and column directions 60 degrees apart, not 90"),
    (["0"] * 6, r"is not two unit vectors \(lengths 0 and 0\)"),
])
def test_invalid_orientation_refused(tmp_path, iop, words):
    """A sheared IOP was made orthogonal (the last row moved 19 mm); an all-zero one ended in a traceback."""

    def edit(ds, k):
        ds.ImageOrientationPatient = iop

    with pytest.raises(Asfe3dInputError, match=rf"MRI DICOM im000.dcm's ImageOrientationPatient .* {words}"):
        read_volume(_series(tmp_path / "mr", edit=edit), role="MRI")


def test_nan_position_refused(tmp_path):
    def edit(ds, k):
        if k == 5:
            ds.ImagePositionPatient = ["nan", "0", "0"]

    with pytest.raises(Asfe3dInputError, match=r"MRI DICOM im005.dcm has a non-finite ImagePositionPatient"):
        read_volume(_series(tmp_path / "mr", edit=edit), role="MRI")


def test_file_gdcm_cannot_scan_is_one_line(tmp_path):
    """A RescaleSlope of VR LO made GDCM's series scan throw: a RuntimeError traceback."""

    def edit(ds, k):
        if k == 3:
            del ds.RescaleSlope
            ds.add_new(0x00281053, "LO", "abc")

    with pytest.raises(Asfe3dInputError, match=r"mr: MRI folder's DICOM files cannot be scanned by GDCM") as err:
        read_volume(_series(tmp_path / "mr", edit=edit), role="MRI")
    assert "\n" not in str(err.value)


def test_wide_gap_refused_and_missing_slice_counted(tmp_path, caplog):
    """14 missing slices were invented by interpolation; the warning said "0.0 % of voxels outside every slice"."""
    with pytest.raises(Asfe3dInputError, match=r"a 10 mm gap between im003.dcm and im004.dcm, 5 times the slice gap "
                                               r"around it \(2 mm\): about 4 slices missing"):
        read_volume(_series(tmp_path / "wide", [0.0, 2.0, 4.0, 6.0, 16.0, 18.0, 20.0, 22.0]), role="MRI")
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        vol = read_volume(_series(tmp_path / "one", [0.0, 2.0, 4.0, 6.0, 10.0, 12.0, 14.0, 16.0]), role="MRI")
    rec = vol.info["dicom_resampled"]
    assert rec["planes_across_gaps"] == 1 and rec["interpolated_fraction"] == pytest.approx(1 / 9, abs=1e-4)
    assert "1 of 9 planes (11.1 %) interpolated across gaps where slices are missing" in caplog.text


def test_gaps_that_add_up_are_resampled(tmp_path):
    """Gaps alternating 2 and 2.0195 mm (each within 1 %) were read as uniform: slices up to 0.11 mm off."""
    depths = np.concatenate([[0.0], np.cumsum([2.0 if k < 12 else 2.0195 for k in range(23)])])
    vol = read_volume(_series(tmp_path / "mr", list(depths), shape=(12, 10, 24)), role="MRI")
    assert "add up to a 0.112 mm shift" in vol.info["dicom_resampled"]["reasons"][0]


def test_useless_frame_reference_time_falls_back_to_image_index(tmp_path):
    """FrameReferenceTime 0 in every slice with a valid ImageIndex was refused as "holds 1 frame"."""
    import pydicom

    base = np.random.default_rng(1).integers(10, 100, size=(6, 5, 4)).astype(np.float64)
    files = write_dynamic_pet_series(tmp_path / "pt", [base, 2 * base, 4 * base], [60000, 120000, 300000],
                                     by="image_index")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.FrameReferenceTime = "0"
        ds.save_as(f)
    vol = read_volume(tmp_path / "pt", role="PET")
    assert vol.info["dicom_frames"] == 3 and vol.info["frame_durations_s"] == [60.0, 120.0, 300.0]
    np.testing.assert_allclose(vol.array_xyz(), base * (60 + 240 + 1200) / 480, rtol=1e-5)


@pytest.mark.parametrize("thin, thick", [(3.0, 10.0), (0.625, 5.0), (2.5, 5.0)])
def test_a_series_whose_spacing_steps_is_read_not_taken_for_missing_slices(tmp_path, thin, thick):
    """A head CT at 3 mm over the posterior fossa and 10 mm above was refused as "about 2 slices missing"; the
    2.5/5 mm one was read as 30 % interpolated across missing slices (probe 15)."""
    depths = [thin * k for k in range(6)] + [5 * thin + thick * k for k in range(1, 6)]
    vol = read_volume(_series(tmp_path / "ct", depths, shape=(12, 10, len(depths))), role="MRI")
    assert vol.info["dicom_resampled"]["planes_across_gaps"] == 0
    # two blocks of missing slices in a row are still missing slices, not a step
    with pytest.raises(Asfe3dInputError, match="slices missing"):
        read_volume(_series(tmp_path / "gap2", [0.0, 2.0, 4.0, 6.0, 16.0, 26.0, 28.0, 30.0, 32.0],
                            shape=(12, 10, 9)), role="MRI")


def test_oblique_orientation_written_with_three_decimals_is_read(tmp_path):
    """An oblique series whose ImageOrientationPatient has 3 decimals stopped with a RuntimeError (GDCM put the last
    slice 0.011 mm from its position, over a 0.01 mm guard)."""
    from tests.io.helpers import rotation

    rot = rotation(12.0, -17.0, 23.0)
    arr = np.random.default_rng(0).integers(1, 1000, size=(12, 10, 16)).astype(np.int16)
    positions = [tuple(float(v) for v in (np.array([-20.0, -30.0, 0.0]) + 2.0 * k * rot[:, 2])) for k in range(16)]

    def edit(ds, k):
        ds.ImageOrientationPatient = [f"{v:.3f}" for v in (*rot[:, 0], *rot[:, 1])]

    write_pydicom_series(tmp_path / "mr", arr, positions, rot, (2.0, 2.0), UID, modality="MR", sop_class=MR_CLASS,
                         edit=edit)
    vol = read_volume(tmp_path / "mr", role="MRI")
    assert vol.image.GetSize()[2] == 16


def test_multi_echo_series_is_refused_naming_its_echoes(tmp_path):
    """A multi-echo MRI series (each position once per EchoTime) was refused as "several frames or acquisitions in
    one series?", with no way through named (probe 15)."""
    depths = [2.0 * k for k in range(6)] * 2

    def edit(ds, k):
        ds.EchoTime = "5" if k < 6 else "10"

    with pytest.raises(Asfe3dInputError, match=r"holds 2 echoes \(EchoTime 5, 10 ms\).*choose one echo"):
        read_volume(_series(tmp_path / "me", depths, edit=edit, shape=(12, 10, 12)), role="MRI")
