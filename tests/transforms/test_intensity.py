from __future__ import annotations

import numpy as np
import pytest

from asfe3d.transforms.intensity import head_mask, otsu_threshold, robust_normalize, robust_range


def _ball(shape, radius_frac=0.35, value=100.0):
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    img = np.where((grid**2).sum(0) < (2 * radius_frac) ** 2, value, 0.0).astype(np.float32)
    return img


def test_otsu_separates_two_modes():
    values = np.concatenate([np.full(100, 10.0), np.full(100, 50.0)])
    assert 10.0 < otsu_threshold(values) < 50.0


@pytest.mark.parametrize("shape", [(32, 30), (20, 22, 18)], ids=["2d", "3d"])
def test_head_mask_fills_holes_and_keeps_largest(shape):
    img = _ball(shape)
    centre = tuple(s // 2 for s in shape)
    img[centre] = 0.0  # a "ventricle"
    img[(0,) * len(shape)] = 100.0  # an isolated speck
    mask = head_mask(img)
    assert mask[centre] and not mask[(0,) * len(shape)]


@pytest.mark.parametrize("shape", [(32, 30), (20, 22, 18)], ids=["2d", "3d"])
def test_robust_normalize_range_and_inverse(shape):
    rng = np.random.default_rng(0)
    img = _ball(shape) + rng.normal(0, 5, shape).astype(np.float32)
    out, (lo, hi) = robust_normalize(img)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    inside = (img > lo) & (img < hi)
    np.testing.assert_allclose(out[inside] * (hi - lo) + lo, img[inside], rtol=1e-4, atol=1e-3)


def test_robust_range_ignores_empty_field_of_view():
    small = _ball((40, 40, 40), radius_frac=0.1)
    lo, hi = robust_range(small, upper=99.0)
    assert lo == 0.0 and hi == pytest.approx(100.0)  # the head's percentile, not the mostly-empty volume's


def test_bad_inputs():
    with pytest.raises(ValueError, match="lower=60.*upper=50"):
        robust_range(np.random.rand(5, 5), lower=60, upper=50)
    with pytest.raises(ValueError, match="constant image.*3.0"):
        robust_normalize(np.full((5, 5), 3.0))
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(5, 5\)"):
        robust_range(np.random.rand(5, 5), mask=np.ones((4, 4), bool))
    # NaN or nothing: said (numpy's histogram refused NaN as "autodetected range of [nan, nan] is not finite")
    with pytest.raises(ValueError, match="values must be finite and not empty, got 25 values of which 1 non-finite"):
        head_mask(np.where(np.eye(5) > 0, 1.0, 0.0) + np.pad([[np.nan]], ((0, 4), (0, 4))))
    with pytest.raises(ValueError, match="got 0 values"):
        otsu_threshold(np.zeros(0))


def _padded_ct() -> tuple[np.ndarray, np.ndarray]:
    """A CT-like head (a ball of 40 HU in air of -1024 HU) whose corners outside the inscribed disc hold -3024."""
    z, y, x = np.mgrid[:24, :40, :40]
    head = (x - 19.5) ** 2 + (y - 19.5) ** 2 + (z - 11.5) ** 2 < 10.0 ** 2
    ct = np.where(head, 40.0, -1024.0).astype(np.float32)
    ct[(x - 19.5) ** 2 + (y - 19.5) ** 2 > 20.0 ** 2] = -3024.0
    return ct, head


def test_a_cts_padding_is_neither_head_nor_the_windows_low_end():
    """The padding outside a CT's disc made the air inside it "head" and set the window's low end (air at 0.4)."""
    import SimpleITK as sitk

    from asfe3d.registration import head_mask as sitk_head_mask

    ct, head = _padded_ct()
    assert np.array_equal(head_mask(ct), head)
    lo, hi = robust_range(ct, mask=head)
    assert lo == -1024.0 and hi == 40.0
    mask = sitk.GetArrayFromImage(sitk_head_mask(sitk.GetImageFromArray(ct))).astype(bool)
    assert np.array_equal(mask, head)


def test_headroom_keeps_the_order_of_the_hottest_uptake_and_bounds_outliers():
    """The PET's part above its window was clipped away: a focus at twice the window's top was one flat plateau
    with normal cortex (probe 21 #1). ``headroom`` gives it back: itself where small, never above HEADROOM, and in
    the PET's order (no plateau)."""
    from asfe3d.transforms.intensity import HEADROOM, above_window, headroom

    x = np.array([0.2, 0.9, 1.0, 1.05, 1.2, 2.1, 5.0, 50.0], np.float32)
    above = above_window(x)
    np.testing.assert_allclose(above, [0, 0, 0, 0.05, 0.2, 1.1, 4.0, 49.0], atol=1e-6)
    shown = headroom(above)
    assert shown.dtype == np.float32 and shown.shape == x.shape
    np.testing.assert_allclose(shown[:3], 0.0)
    assert abs(shown[3] - 0.05) < 1e-3 and abs(shown[4] - 0.2) < 0.003  # the usual hottest voxels: as they are
    assert np.all(np.diff(shown[2:]) > 0) and shown.max() <= HEADROOM  # strictly in order, bounded
    norm, (lo, hi) = robust_normalize(np.array([[0.0, 1.0], [2.0, 10.0]]), 0.0, 75.0, np.ones((2, 2), bool),
                                      clip_upper=False)
    assert norm.max() > 1.0 and robust_normalize(np.array([[0.0, 1.0], [2.0, 10.0]]), 0.0, 75.0,
                                                 np.ones((2, 2), bool))[0].max() == 1.0


def test_a_few_hot_voxels_do_not_make_the_head_mask_or_the_window():
    """Review 32 #2: the numpy head mask (``RobustNormalize`` without a mask, the evaluation's 2D cases, the
    simulators) took Otsu's threshold over the whole range: three voxels at 1e5 in a head of 100 gave a 3-voxel
    "head" and the window (-7.6, 1e5), the image about 0 everywhere. It clips the outliers first, as the
    registration's mask does; an image without outliers gets the same mask as before."""
    from asfe3d.utils import outlier_limit

    img = _ball((40, 40, 40)) + np.random.default_rng(0).normal(0, 3, (40, 40, 40)).astype(np.float32)
    hot = img.copy()
    hot[5, 5, 5] = hot[6, 30, 5] = hot[35, 5, 5] = 1e5
    assert outlier_limit(img) is None and outlier_limit(hot) is not None
    assert np.array_equal(head_mask(hot), head_mask(img)) and head_mask(img).sum() > 10000
    lo, hi = robust_range(hot)
    assert hi < 120 and np.isclose(hi, robust_range(img)[1], rtol=0.01)
