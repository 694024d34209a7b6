"""SmoothMm / SmoothMmd: a Gaussian given in mm on the image's own grid (a noisy PET smoothed before fusion)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from asfe3d.transforms import SmoothMm, SmoothMmd


def _image(spacing=(2.0, 1.0, 3.0), shape=(1, 14, 16, 9)):
    torch.manual_seed(0)
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-10.0, 5.0, 2.0], dtype=torch.float64)
    return MetaTensor(torch.rand(*shape), affine=affine, meta={"filename_or_obj": "pet.nii.gz"})


def test_width_in_mm_is_turned_into_voxels_per_axis_from_the_affine():
    img = _image()
    out = SmoothMm(6.0)(img)
    sigma = [6.0 / s / 2.3548200450309493 for s in (2.0, 1.0, 3.0)]
    ref = ndimage.gaussian_filter(img[0].numpy().astype(np.float64), sigma, mode="nearest",
                                  radius=[max(1, int(np.ceil(3 * s))) for s in sigma])
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-5)
    assert isinstance(out, MetaTensor) and out.shape == img.shape and out.dtype == torch.float32
    assert torch.equal(out.affine, img.affine) and out.meta["filename_or_obj"] == "pet.nii.gz"
    assert abs(float(out.mean()) - float(img.mean())) < 1e-2 and float(out.std()) < float(img.std())


def test_zero_width_returns_the_image_unchanged_and_the_wrapper_touches_only_its_keys():
    img = _image()
    assert SmoothMm(0)(img) is img
    d = SmoothMmd("pet", fwhm_mm=4.0)({"pet": img, "mri": img})
    assert d["mri"] is img and not torch.equal(d["pet"], img)


@pytest.mark.parametrize("fwhm", [-1.0, 25.0, float("nan"), True, "4"])
def test_bad_width_is_refused_quoting_the_value(fwhm):
    with pytest.raises(ValueError, match=r"fwhm_mm must be a number in \[0, 20\] \(mm\), got " + repr(fwhm)):
        SmoothMm(fwhm)


def test_a_width_of_more_than_64_voxels_and_a_4d_image_are_refused():
    with pytest.raises(ValueError, match="at most 64"):
        SmoothMm(20.0)(_image(spacing=(0.25, 1.0, 1.0)))
    with pytest.raises(ValueError):
        SmoothMm(4.0)(MetaTensor(torch.rand(1, 4, 4, 4, 3)))
