"""A 4D PET: read_volume averages the frames, or keeps them (``keep_frames``) for RealignFrames after loading,
which realigns them before averaging and records the motion; frame=N unchanged."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.data.simulate import apply_rigid_motion, random_rigid
from asfe3d.errors import Asfe3dInputError
from asfe3d.io import read_volume
from asfe3d.io.convert import ras_affine_from_sitk, sitk_to_numpy_xyz
from asfe3d.io.volume import SOURCE_KEY
from asfe3d.transforms import LoadVolume, RealignFrames
from tests.registration.test_frames import _phantom


@pytest.fixture(scope="module")
def moving_pet(tmp_path_factory):
    """A 4D NIfTI: frame 0 unmoved, frames 1-2 moved by about 3 mm; plus the unmoved truth (X, Y, Z)."""
    truth = _phantom()
    rng = np.random.default_rng(7)
    centre = truth.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in truth.GetSize()])
    motions = [sitk.Euler3DTransform(), random_rigid(rng, 2.0, 3.0, centre), random_rigid(rng, 2.0, 3.0, centre)]
    frames = [sitk_to_numpy_xyz(apply_rigid_motion(truth, m)) for m in motions]
    frames = [f + rng.normal(0, 0.05 * f.max(), f.shape).astype(np.float32) for f in frames]
    p = tmp_path_factory.mktemp("pet4d") / "pet4d.nii.gz"
    nib.save(nib.Nifti1Image(np.stack(frames, axis=-1), ras_affine_from_sitk(truth)), str(p))
    return p, sitk_to_numpy_xyz(truth), frames


def _realigned(path, reference="mean", **reader):
    """The frames loaded (kept) and realigned: ``(array (X, Y, Z), provenance)``."""
    img = RealignFrames(reference)(LoadVolume(role="PET", keep_frames=True, **reader)(path))
    assert img.shape[0] == 1
    return img[0].numpy(), img.meta[SOURCE_KEY]


def _corr(a, b, mask):
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


def test_4d_realigned_after_loading(moving_pet, caplog):
    p, truth, frames = moving_pet
    kept = read_volume(p, role="PET", keep_frames=True)
    assert len(kept.frames) == 3 and "frames_averaged" not in kept.info
    np.testing.assert_array_equal(kept.frames[1], frames[1])
    with caplog.at_level(logging.INFO, logger="asfe3d"):
        realigned_arr, info = _realigned(p)
    assert info["frames"] == 3 and info["frames_averaged"] == 3 and info["frames_realigned"]["reference"] == "mean"
    assert info["frames_realigned"]["pose"] == "frame 0" and len(info["frames_realigned"]["motion"]) == 3
    assert info["frame_motion_mm"][0] == 0.0 and all(1.0 < d < 6.0 for d in info["frame_motion_mm"][1:])
    assert "after rigid realignment" in caplog.text and "mean head displacement per frame" in caplog.text
    mask = truth > 0.2 * np.percentile(truth, 99)
    plain = read_volume(p, role="PET").array_xyz()  # without keep_frames: the plain mean
    assert "frames_realigned" not in read_volume(p).info and "frames_geometry" not in info
    realigned = _corr(realigned_arr, truth, mask)
    assert realigned > _corr(plain, truth, mask) + 0.01 and realigned > _corr(frames[0], truth, mask)
    # frame=N is untouched by realignment
    one = read_volume(p, role="PET", frame=1)
    np.testing.assert_array_equal(one.array_xyz(), frames[1])
    assert "frames_realigned" not in one.info and one.info["frame_taken"] == 1


def test_4d_loaded_by_monai_is_realigned_like_one_loaded_by_asfe3d(moving_pet):
    """Frames loaded by MONAI's LoadImage (channel first) have no reader's grid in their metadata: RealignFrames
    failed with a bare KeyError 'frames_geometry'; the grid is the image's affine."""
    from monai.transforms import LoadImage

    p, _, _ = moving_pet
    ours, _ = _realigned(p)
    monai = RealignFrames()(LoadImage(image_only=True, ensure_channel_first=True)(str(p)))
    assert monai.shape[0] == 1
    np.testing.assert_allclose(monai[0].numpy(), ours, atol=1e-4 * float(np.abs(ours).max()))


def test_4d_reference_frame_and_errors(moving_pet, tmp_path):
    p, _, _ = moving_pet
    _, info = _realigned(p, 2)
    assert info["frames_realigned"]["pose"] == "frame 2" and info["frame_motion_mm"][2] == 0.0
    with pytest.raises(Asfe3dInputError, match="frame_reference=5 is out of range: the image has 3 frames"):
        _realigned(p, 5)
    with pytest.raises(ValueError, match="frame_reference must be 'mean' or a frame index"):
        RealignFrames("first")
    small = sitk_to_numpy_xyz(_phantom(size=(24, 26, 20)))
    data = np.stack([small, small * 1.1], axis=-1)
    data[0, 0, 0, 1] = np.nan
    q = tmp_path / "nan4d.nii.gz"
    nib.save(nib.Nifti1Image(data, nib.load(p).affine), str(q))
    with pytest.raises(Asfe3dInputError, match="1 non-finite .* in its frames"):
        read_volume(q, keep_frames=True)
    assert _realigned(q, allow_nonfinite=True)[1]["nonfinite_repaired"] == 1
    # the frames' NaN are where the PET measured nothing: all of them, or the one frame taken
    data[2, 3, 4, 0] = np.nan
    nib.save(nib.Nifti1Image(data, nib.load(p).affine), str(q))
    for kwargs, expected in (({"keep_frames": True}, [(0, 0, 0), (2, 3, 4)]), ({}, [(0, 0, 0), (2, 3, 4)]),
                             ({"frame": 0}, [(2, 3, 4)]), ({"frame": 1}, [(0, 0, 0)])):
        vol = read_volume(q, allow_nonfinite=True, **kwargs)
        assert sorted(map(tuple, np.argwhere(vol.unmeasured).tolist())) == expected, kwargs


def test_realign_frames_refuses_what_is_not_a_4d_metatensor():
    """Review 32: untested; the frames of a plain tensor or of a 3D image are refused, quoted."""
    import torch
    from monai.data import MetaTensor

    with pytest.raises(ValueError, match=r"img must be a \(T, X, Y, Z\) MetaTensor, got Tensor \(2, 4, 4, 4\)"):
        RealignFrames()(torch.zeros(2, 4, 4, 4))
    with pytest.raises(ValueError, match=r"got MetaTensor \(4, 4, 4\)"):
        RealignFrames()(MetaTensor(torch.zeros(4, 4, 4)))
