"""Irregular DICOM stacks (gaps, gantry tilt, a slice out of line) resampled onto a regular grid, for series of
files and enhanced multi-frame files alike; ``dicom_strict`` refuses them."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from asfe3d.errors import Asfe3dInputError
from asfe3d.io import read_volume
from asfe3d.io.convert import LPS_TO_RAS
from tests.io.helpers import rotation, write_dicom_series, write_enhanced_dicom

UID = "1.2.826.0.1.3680043.2.1125.300"
SHAPE = (12, 10, 6)
ORIGIN = np.array([-40.5, 25.0, 12.25])
SPACING = (0.9, 1.1, 2.5)
DIRECTION = rotation(8.0, -14.0, 21.0)  # LPS columns: row, col, normal


def _array(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=SHAPE).astype(np.int16)


def _positions(depths, lateral_rows=None):
    """Slice origins at the given depths (mm) along the normal, shifted by ``lateral_rows`` pixel rows."""
    lateral_rows = [0.0] * len(depths) if lateral_rows is None else lateral_rows
    return [ORIGIN + d * DIRECTION[:, 2] + r * SPACING[1] * DIRECTION[:, 1] for d, r in zip(depths, lateral_rows)]


def _write(kind, tmp_path, arr, positions):
    if kind == "series":
        write_dicom_series(tmp_path / "s", arr, ORIGIN, SPACING, DIRECTION, UID, positions=positions)
        return tmp_path / "s"
    return write_enhanced_dicom(tmp_path / "e" / "mf.dcm", arr, positions, DIRECTION, SPACING[:2], UID)


@pytest.mark.parametrize("kind", ["series", "enhanced"])
def test_regular_stack_read_as_is(tmp_path, kind):
    arr = _array()
    path = _write(kind, tmp_path, arr, _positions([2.5 * k for k in range(SHAPE[2])]))
    vol = read_volume(path)
    assert vol.format == "dicom" and "dicom_resampled" not in vol.info
    np.testing.assert_array_equal(vol.array_xyz(), arr.astype(np.float32))
    expected = np.eye(4)
    expected[:3, :3] = LPS_TO_RAS @ DIRECTION @ np.diag(SPACING)
    expected[:3, 3] = LPS_TO_RAS @ ORIGIN
    np.testing.assert_allclose(vol.affine_ras, expected, atol=1e-4)


@pytest.mark.parametrize("kind", ["series", "enhanced"])
def test_gapped_stack_resampled(tmp_path, kind, caplog):
    arr = _array()
    depths = [0.0, 2.5, 5.0, 10.0, 12.5, 15.0]  # one slice missing between 5 and 10 mm
    path = _write(kind, tmp_path, arr, _positions(depths))
    with pytest.raises(Asfe3dInputError, match="not uniform"):
        read_volume(path, dicom_strict=True)
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        vol = read_volume(path, role="CT")
    rec = vol.info["dicom_resampled"]
    assert rec["gaps_mm"] == [2.5, 5.0] and rec["grid"] == [12, 10, 7] and rec["filled_fraction"] == 0
    assert "non-uniform slice gaps" in rec["reasons"][0] and "resampled onto a regular 12x10x7" in caplog.text
    out = vol.array_xyz()
    np.testing.assert_allclose(vol.image.GetSpacing(), (0.9, 1.1, 2.5), atol=1e-6)
    np.testing.assert_allclose(vol.image.GetOrigin(), ORIGIN, atol=1e-6)
    for m, k in ((0, 0), (1, 1), (2, 2), (4, 3), (5, 4), (6, 5)):  # planes on acquired slices: unchanged
        np.testing.assert_allclose(out[:, :, m], arr[:, :, k], atol=1e-3)
    np.testing.assert_allclose(out[:, :, 3], (arr[:, :, 2] + arr[:, :, 3].astype(np.float32)) / 2, atol=1e-3)


@pytest.mark.parametrize("kind", ["series", "enhanced"])
def test_tilted_stack_resampled_onto_covering_grid(tmp_path, kind):
    arr = _array()
    path = _write(kind, tmp_path, arr, _positions([2.5 * k for k in range(SHAPE[2])], [float(k) for k in range(6)]))
    with pytest.raises(Asfe3dInputError, match="gantry tilt of 23.7 degrees"):
        read_volume(path, dicom_strict=True)
    vol = read_volume(path)
    rec = vol.info["dicom_resampled"]
    assert rec["reasons"] == ["gantry tilt of 23.7 degrees"] and rec["grid"] == [12, 15, 6]
    out = vol.array_xyz()
    for k in range(SHAPE[2]):  # slice k moved k rows down the column direction: exactly where it was acquired
        np.testing.assert_allclose(out[:, k:k + 10, k], arr[:, :, k], atol=1e-3)
        assert np.all(out[:, :k, k] == 0) and np.all(out[:, k + 10:, k] == 0)
    # the grid is orthogonal, along row / col / normal, and covers every acquired pixel
    np.testing.assert_allclose(np.asarray(vol.image.GetDirection()).reshape(3, 3), DIRECTION, atol=1e-6)
    last = np.asarray(vol.image.TransformIndexToPhysicalPoint((11, 14, 5)))
    np.testing.assert_allclose(last, _positions([12.5], [5.0])[0] + 11 * 0.9 * DIRECTION[:, 0] + 9 * 1.1 * DIRECTION[:, 1],
                               atol=1e-6)


@pytest.mark.parametrize("kind", ["series", "enhanced"])
def test_one_slice_out_of_line(tmp_path, kind):
    arr = _array()
    rows = [0.0, 0.0, 0.0, 2.0, 0.0, 0.0]
    path = _write(kind, tmp_path, arr, _positions([2.5 * k for k in range(SHAPE[2])], rows))
    what = "slice" if kind == "series" else "frame"
    with pytest.raises(Asfe3dInputError, match=f"{what} 3 of 6 \\(sorted\\) out of line by 2.2 mm"):
        read_volume(path, dicom_strict=True)
    vol = read_volume(path)
    out = vol.array_xyz()
    assert vol.info["dicom_resampled"]["grid"] == [12, 12, 6]
    np.testing.assert_allclose(out[:, 2:12, 3], arr[:, :, 3], atol=1e-3)
    np.testing.assert_allclose(out[:, 0:10, 2], arr[:, :, 2], atol=1e-3)


def test_enhanced_per_frame_rescale_and_shuffled_frames(tmp_path):
    arr = _array()
    order = [3, 0, 5, 1, 4, 2]  # frames stored out of spatial order
    pos = _positions([2.5 * k for k in range(SHAPE[2])])
    slopes = [(0.5 + 0.25 * k, -10.0 * k) for k in range(SHAPE[2])]
    path = write_enhanced_dicom(tmp_path / "mf.dcm", arr[:, :, order], [pos[k] for k in order], DIRECTION,
                                SPACING[:2], UID, slopes=[slopes[k] for k in order])
    vol = read_volume(path, role="PET")
    expected = np.stack([arr[:, :, k] * slopes[k][0] + slopes[k][1] for k in range(SHAPE[2])], axis=-1)
    np.testing.assert_allclose(vol.array_xyz(), expected, rtol=1e-6, atol=1e-3)
    assert vol.info["frames_in_file"] == 6 and "dicom_resampled" not in vol.info
    np.testing.assert_allclose(vol.image.GetOrigin(), ORIGIN, atol=1e-6)


def test_enhanced_repeated_positions_and_missing_geometry(tmp_path):
    arr = _array()
    path = write_enhanced_dicom(tmp_path / "rep.dcm", arr, [ORIGIN] * SHAPE[2], DIRECTION, SPACING[:2], UID)
    with pytest.raises(Asfe3dInputError, match="6 frames but only 1 distinct slice positions") as caught:
        read_volume(path)
    assert str(caught.value).endswith("not from one multi-frame file: convert it (dcm2niix) and give the 4D NIfTI")
    import pydicom

    ds = pydicom.dcmread(str(path))
    del ds.PerFrameFunctionalGroupsSequence[2].PlanePositionSequence
    ds.save_as(str(tmp_path / "nopos.dcm"))
    with pytest.raises(Asfe3dInputError, match="frame 2 lacks its position"):
        read_volume(tmp_path / "nopos.dcm")


def test_enhanced_header_claiming_more_frames_than_stored(tmp_path):
    import pydicom

    arr = _array()
    path = write_enhanced_dicom(tmp_path / "mf.dcm", arr, _positions([2.5 * k for k in range(6)]), DIRECTION,
                                SPACING[:2], UID)
    ds = pydicom.dcmread(str(path))
    ds.Rows, ds.Columns = 4000, 4000
    ds.save_as(str(path))
    with pytest.raises(Asfe3dInputError, match=r"claims 6x4000x4000 voxels .* but the file holds"):
        read_volume(path)


def test_series_with_mixed_pixel_spacing_refused(tmp_path):
    arr = _array()
    pos = _positions([2.5 * k for k in range(SHAPE[2])])
    write_dicom_series(tmp_path / "s", arr[:, :, :3], ORIGIN, SPACING, DIRECTION, UID, positions=pos[:3], prefix="a")
    write_dicom_series(tmp_path / "s", arr[:, :, 3:], ORIGIN, (1.0, 1.1, 2.5), DIRECTION, UID, positions=pos[3:],
                       prefix="b")
    with pytest.raises(Asfe3dInputError, match="different pixel spacings"):
        read_volume(tmp_path / "s")


def test_multiframe_without_any_geometry_refused(tmp_path):
    import pydicom

    arr = _array()
    path = write_enhanced_dicom(tmp_path / "mf.dcm", arr, _positions([2.5 * k for k in range(6)]), DIRECTION,
                                SPACING[:2], UID)
    ds = pydicom.dcmread(str(path))
    del ds.PerFrameFunctionalGroupsSequence
    del ds.SharedFunctionalGroupsSequence
    ds.save_as(str(tmp_path / "bare.dcm"))
    with pytest.raises(Asfe3dInputError, match="neither per-frame positions nor PixelSpacing / SpacingBetweenSlices"):
        read_volume(tmp_path / "bare.dcm")
