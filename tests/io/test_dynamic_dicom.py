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


def _nifti_4d(tmp_path, frames, sidecar):
    p = tmp_path / "pet.nii.gz"
    nib.save(nib.Nifti1Image(np.stack(frames, axis=-1), np.diag([2.0, 2.0, 2.0, 1.0])), str(p))
    if sidecar is not None:
        (tmp_path / "pet.json").write_text(json.dumps(sidecar))
    return p


def test_bids_sidecar_frame_durations_weigh_a_4d_nifti(tmp_path):
    frames = _frames()
    p = _nifti_4d(tmp_path, frames, {"FrameDuration": [30, 30, 240], "FrameTimesStart": [0, 30, 60]})
    vol = read_volume(p, role="PET")
    assert vol.info["frame_durations_s"] == [30.0, 30.0, 240.0]
    np.testing.assert_allclose(sitk_to_numpy_xyz(vol.image), (frames[0] + frames[1] + 8 * frames[2]) / 10, rtol=1e-5)


@pytest.mark.parametrize("durations, message", [
    ([30, 30], "lists 2 frame\\(s\\) but the image has 3"),
    ([30, 0, 240], "durations > 0"),
    (["a", 30, 240], "durations > 0"),
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
