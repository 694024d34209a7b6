"""A dynamic PET stored as one DICOM series (each slice position once per time frame), and frame durations
(DICOM ActualFrameDuration, BIDS FrameDuration) weighing the frames' average."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from asfe3d.errors import Asfe3dInputError
from asfe3d.io import read_volume
from asfe3d.io.convert import sitk_to_numpy_xyz
from asfe3d.io.volume import SOURCE_KEY
from asfe3d.registration.frames import mean_image
from asfe3d.transforms import LoadVolume, RealignFrames
from tests.io.helpers import write_dynamic_pet_series

SHAPE = (10, 9, 6)


def _frames(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(50, 200, SHAPE).astype(np.float32)
    return [base * (k + 1) for k in range(n)]  # frame k holds (k + 1) x the base: averages are easy to predict


@pytest.mark.parametrize("by", ["reference_time", "image_index"])
def test_dynamic_series_is_read_as_frames_weighted_by_duration(tmp_path, by):
    frames = _frames()
    write_dynamic_pet_series(tmp_path / "dyn", frames, [10_000, 60_000, 300_000], by=by)
    vol = read_volume(tmp_path / "dyn", role="PET")
    assert vol.info["dicom_frames"] == 3 and vol.info["frames_averaged"] == 3
    assert vol.info["frame_durations_s"] == [10.0, 60.0, 300.0]
    assert vol.info["frame_weighting"] == "duration"
    expected = (10 * frames[0] + 60 * frames[1] + 300 * frames[2]) / 370
    np.testing.assert_allclose(sitk_to_numpy_xyz(vol.image), expected, rtol=1e-5)
    assert vol.image.GetSize() == SHAPE and vol.image.GetSpacing() == (2.0, 2.0, 3.0)
    one = read_volume(tmp_path / "dyn", role="PET", frame=1)
    np.testing.assert_allclose(sitk_to_numpy_xyz(one.image), frames[1])
    kept = read_volume(tmp_path / "dyn", role="PET", keep_frames=True)
    assert len(kept.frames) == 3
    np.testing.assert_allclose(kept.frames[2], frames[2])


def test_dynamic_series_without_durations_is_averaged_equally_and_says_so(tmp_path):
    frames = _frames(2)
    write_dynamic_pet_series(tmp_path / "dyn", frames, None)
    vol = read_volume(tmp_path / "dyn", role="PET")
    assert "frame_durations_s" not in vol.info
    assert vol.info["frame_weighting"].startswith("equal")
    np.testing.assert_allclose(sitk_to_numpy_xyz(vol.image), (frames[0] + frames[1]) / 2, rtol=1e-6)


def test_incomplete_dynamic_series_is_refused_in_one_line(tmp_path):
    files = write_dynamic_pet_series(tmp_path / "dyn", _frames(), [10_000, 60_000, 300_000])
    files[-1].unlink()  # the last frame's last slice is missing
    with pytest.raises(Asfe3dInputError, match="frame 2 .*holds 5 slices at 5 of the series' 6 positions"):
        read_volume(tmp_path / "dyn", role="PET")


def test_realigned_frames_are_averaged_by_duration(tmp_path):
    frames = _frames()
    write_dynamic_pet_series(tmp_path / "dyn", frames, [10_000, 60_000, 300_000])
    img = RealignFrames("mean")(LoadVolume(role="PET", keep_frames=True)(tmp_path / "dyn"))
    info = img.meta[SOURCE_KEY]
    assert info["frame_weighting"] == "duration" and info["frames_averaged"] == 3
    expected = (10 * frames[0] + 60 * frames[1] + 300 * frames[2]) / 370
    # the frames do not move: the realigned mean is the weighted mean up to the resampling's rounding
    centre = (slice(2, -2), slice(2, -2), slice(1, -1))
    np.testing.assert_allclose(img[0].numpy()[centre], expected[centre], rtol=0.02)


def _nifti_4d(tmp_path, frames, sidecar, name="pet.nii.gz"):
    p = tmp_path / name
    image = nib.MGHImage if name.endswith(".mgz") else nib.Nifti1Image
    nib.save(image(np.stack(frames, axis=-1), np.diag([2.0, 2.0, 2.0, 1.0])), str(p))
    if sidecar is not None:
        (tmp_path / "pet.json").write_text(json.dumps(sidecar))
    return p


@pytest.mark.parametrize("name", ["pet.nii.gz", "pet.mgz"])
def test_bids_sidecar_frame_durations_weigh_a_4d_nifti(tmp_path, name):
    """The sidecar beside the image (``pet.json``), for a NIfTI and a FreeSurfer MGZ alike (the MGZ's was not looked
    for: its frames were averaged with equal weights)."""
    frames = _frames()
    p = _nifti_4d(tmp_path, frames, {"FrameDuration": [30, 30, 240], "FrameTimesStart": [0, 30, 60]}, name)
    vol = read_volume(p, role="PET")
    assert vol.info["frame_durations_s"] == [30.0, 30.0, 240.0]
    np.testing.assert_allclose(sitk_to_numpy_xyz(vol.image), (frames[0] + frames[1] + 8 * frames[2]) / 10, rtol=1e-5)


@pytest.mark.parametrize("durations, message", [
    ([30, 30], "lists 2 frame\\(s\\) but the image has 3"),
    ([30, 0, 240], "durations > 0"),
    (["a", 30, 240], "durations > 0"),
    ([1e308, 1e308, 1e308], "at most 86400 s"),  # the weights' sum overflowed: "volume is constant"
])
def test_sidecar_frame_durations_that_do_not_fit_are_refused(tmp_path, durations, message):
    p = _nifti_4d(tmp_path, _frames(), {"FrameDuration": durations})
    with pytest.raises(Asfe3dInputError, match=message):
        read_volume(p, role="PET")
    read_volume(p, role="PET", frame=0)  # one frame taken: the durations do not matter


def test_mean_image_weights_are_checked(tmp_path):
    import SimpleITK as sitk

    a, b = sitk.Image(3, 3, 3, sitk.sitkFloat32) + 1.0, sitk.Image(3, 3, 3, sitk.sitkFloat32) + 4.0
    assert sitk.GetArrayViewFromImage(mean_image([a, b], [3, 1])).max() == pytest.approx(1.75)
    with pytest.raises(ValueError, match="weights must be 2 finite numbers"):
        mean_image([a, b], [0, 0])


def _edit_frame(folder, frame_time_ms: float, edit) -> None:
    """Apply ``edit(dataset)`` to every slice of the frame whose FrameReferenceTime is ``frame_time_ms``."""
    import pydicom

    for f in folder.iterdir():
        ds = pydicom.dcmread(str(f))
        if float(ds[0x0054, 0x1300].value) == frame_time_ms:
            edit(ds)
            ds.save_as(str(f))


def test_frames_that_do_not_share_one_grid_are_refused_in_one_line(tmp_path):
    write_dynamic_pet_series(tmp_path / "dyn", _frames(), [10_000, 60_000, 300_000])

    def shift(ds):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x + 10.0, y, z]

    _edit_frame(tmp_path / "dyn", 10_000 + 60_000 / 2, shift)  # frame 1 (reference time at its middle)
    with pytest.raises(Asfe3dInputError, match="frame 1 does not lie on frame 0's slices"):
        read_volume(tmp_path / "dyn", role="PET")


def test_a_series_that_says_more_frames_than_it_holds_is_refused(tmp_path):
    files = write_dynamic_pet_series(tmp_path / "dyn", _frames(), [10_000, 60_000, 300_000])
    for f in files[-SHAPE[2]:]:  # the last frame's slices: gone
        f.unlink()
    with pytest.raises(Asfe3dInputError, match=r"says it has 3 frames \(NumberOfTimeSlices\) but holds 2"):
        read_volume(tmp_path / "dyn", role="PET")


def test_slices_of_two_acquisitions_in_one_series_are_refused(tmp_path):
    write_dynamic_pet_series(tmp_path / "dyn", _frames(), [10_000, 60_000, 300_000])

    def static(ds):
        ds[0x0054, 0x0101].value = 1

    _edit_frame(tmp_path / "dyn", 10_000 + 60_000 + 300_000 / 2, static)
    with pytest.raises(Asfe3dInputError, match="disagree on NumberOfTimeSlices"):
        read_volume(tmp_path / "dyn", role="PET")


def test_a_sidecar_given_with_a_dynamic_dicom_must_agree_with_it(tmp_path):
    write_dynamic_pet_series(tmp_path / "dyn", _frames(), [10_000, 60_000, 300_000])
    agree, contra = tmp_path / "agree.json", tmp_path / "contra.json"
    agree.write_text(json.dumps({"FrameDuration": [10, 60, 300]}))
    contra.write_text(json.dumps({"FrameDuration": [300, 60, 10]}))
    assert read_volume(tmp_path / "dyn", role="PET", pet_sidecar=agree).info["frame_durations_s"] == [10, 60, 300]
    with pytest.raises(Asfe3dInputError, match="contradicts the DICOM's ActualFrameDuration"):
        read_volume(tmp_path / "dyn", role="PET", pet_sidecar=contra)
    (tmp_path / "short.json").write_text(json.dumps({"FrameDuration": [10, 60]}))
    with pytest.raises(Asfe3dInputError, match="lists 2 frame"):
        read_volume(tmp_path / "dyn", role="PET", pet_sidecar=tmp_path / "short.json")


def test_a_tilted_dynamic_series_is_resampled_with_one_warning(tmp_path, caplog):
    import logging

    import pydicom

    write_dynamic_pet_series(tmp_path / "dyn", _frames(), [10_000, 60_000, 300_000])
    for f in (tmp_path / "dyn").iterdir():  # a gantry tilt: each slice moved sideways in proportion to its depth
        ds = pydicom.dcmread(str(f))
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.5 * (z + 6.0), z]
        ds.save_as(str(f))
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        vol = read_volume(tmp_path / "dyn", role="PET")
    assert vol.info["dicom_frames"] == 3 and "gantry tilt" in str(vol.info["dicom_resampled"])
    assert caplog.text.count("DICOM stack resampled") == 1  # not once per frame
