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


def test_smoothing_within_a_mask_leaves_the_padding_beyond_it_out():
    """A PET with a short field of view: 0 padding below its edge; smoothed within the field of view (``pet_fov``),
    a uniform PET stays uniform up to its edge (blurred with its padding it was 0.5 at the edge), and the padding
    stays 0."""
    img = _image(spacing=(2.0, 2.0, 2.0), shape=(1, 10, 12, 16))
    img[:] = 5.0
    img[..., :6] = 0.0  # beyond the field of view
    fov = torch.zeros(1, 10, 12, 16, dtype=torch.bool)
    fov[..., 6:] = True
    plain = SmoothMm(8.0)(img)
    assert float(plain[0, 5, 6, 6]) < 3.5  # the padding blurred in (before)
    inside = SmoothMm(8.0)(img, fov)
    np.testing.assert_allclose(inside[..., 6:].numpy(), 5.0, rtol=1e-5)
    assert float(inside[..., :6].abs().max()) == 0.0
    d = SmoothMmd("pet", fwhm_mm=8.0, mask_key="pet_fov")({"pet": img, "pet_fov": fov})
    assert torch.equal(d["pet"], inside)
    with pytest.raises(ValueError, match=r"mask must have shape \(10, 12, 16\) or \(1, 10, 12, 16\), got \(10, 12\)"):
        SmoothMm(8.0)(img, fov[0, :, :, 0])
    with pytest.raises(KeyError, match="'pet_fov'"):
        SmoothMmd("pet", fwhm_mm=8.0, mask_key="pet_fov")({"pet": img})


def test_fill_outside_a_mask_takes_the_nearest_inside_value_within_a_band():
    from asfe3d.transforms import FillOutsideMask, FillOutsideMaskd

    img = _image(spacing=(2.0, 2.0, 2.0), shape=(2, 6, 5, 20))
    fov = torch.zeros(1, 6, 5, 20, dtype=torch.bool)
    fov[..., 8:] = True
    img[..., :8] = 0.0
    out = FillOutsideMask(band_mm=10.0)(img, fov)
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, img.affine) and out.shape == img.shape
    assert torch.equal(out[..., 8:], img[..., 8:])  # inside: as it was
    for z in range(3, 8):  # 2-10 mm below the edge: the edge slice's values, per channel
        assert torch.equal(out[..., z], img[..., 8])
    assert float(out[..., :3].abs().max()) == 0.0  # further than the band: 0
    assert FillOutsideMask()(img, torch.ones(6, 5, 20, dtype=torch.bool)) is img  # nothing beyond the mask
    d = FillOutsideMaskd("pet", mask_key="pet_fov", band_mm=10.0)({"pet": img, "pet_fov": fov})
    assert torch.equal(d["pet"], out)
    # a large grid is searched in 2 x 2 x 2 blocks: beyond the edge, the nearest block's mean over its inside voxels
    coarse = FillOutsideMask(band_mm=10.0, coarse_voxels=0)(img, fov)
    assert torch.equal(coarse[..., 8:], img[..., 8:])
    block = img[..., 8:10].numpy()
    for x, y in ((0, 0), (3, 2), (5, 4)):
        bx, by = slice(2 * (x // 2), 2 * (x // 2) + 2), slice(2 * (y // 2), 2 * (y // 2) + 2)
        expected = block[:, bx, by].reshape(2, -1).mean(axis=1)
        np.testing.assert_allclose(coarse[:, x, y, 7].numpy(), expected, rtol=1e-5)
        np.testing.assert_allclose(coarse[:, x, y, 4].numpy(), expected, rtol=1e-5)
    assert float(coarse[..., :2].abs().max()) == 0.0  # blocks further than the band
    with pytest.raises(ValueError, match="coarse_voxels must be a non-negative integer, got -1"):
        FillOutsideMask(coarse_voxels=-1)
    for bad in (0.0, -3.0, float("inf"), True, "24"):
        with pytest.raises(ValueError, match=f"band_mm must be a positive number \\(mm\\), got {bad!r}"):
            FillOutsideMask(bad)
    with pytest.raises(ValueError, match="plain Tensor without an affine"):
        FillOutsideMask()(torch.zeros(1, 4, 4, 4), torch.ones(4, 4, 4, dtype=torch.bool))
