from __future__ import annotations

import numpy as np
import pytest

from asfe3d.fusion import available_methods, get_fuser
from asfe3d.fusion.classic import collapse_pyramid, laplacian_pyramid

SHAPES = [(17, 23), (9, 11, 13)]
CLASSIC = ["mean", "max", "wavelet", "laplacian"]


@pytest.fixture(params=SHAPES, ids=["2d", "3d"])
def pair(request):
    rng = np.random.default_rng(1)
    shape = request.param
    return rng.random(shape, dtype=np.float32), rng.random(shape, dtype=np.float32)


def test_registry_lists_all_methods():
    assert set(CLASSIC + ["asfe"]) <= set(available_methods())


@pytest.mark.parametrize("name", CLASSIC)
def test_shape_dtype_range(name, pair):
    a, b = pair
    fused = get_fuser(name)(a, b)
    assert fused.shape == a.shape and fused.dtype == np.float32
    assert fused.min() >= 0.0 and fused.max() <= 1.0


@pytest.mark.parametrize("name", CLASSIC)
def test_identical_inputs_are_a_fixed_point(name, pair):
    # a fixed point up to the support weight, which fades voxels below EMPTY_LEVEL towards 0 (no output without input)
    from asfe3d.fusion.base import support_weight

    a, _ = pair
    np.testing.assert_allclose(get_fuser(name)(a, a), a * support_weight(a, a), atol=1e-5)


def test_mean_and_max_values(pair):
    from asfe3d.fusion.base import support_weight

    a, b = pair
    w = support_weight(a, b)
    np.testing.assert_allclose(get_fuser("mean")(a, b), (a + b) / 2 * w, atol=1e-7)
    np.testing.assert_allclose(get_fuser("max")(a, b), np.maximum(a, b) * w, atol=1e-7)


@pytest.mark.parametrize("name", ["wavelet", "laplacian"])
def test_multiscale_keeps_the_edges_of_either_source(name, pair):
    """Detail bands are max-abs: fusing a step edge with a flat image keeps the whole step height."""
    shape = pair[0].shape
    step = np.zeros(shape, np.float32)
    step[(slice(None),) * (len(shape) - 1) + (slice(shape[-1] // 2, None),)] = 1.0
    flat = np.full(shape, 0.5, np.float32)
    fused = get_fuser(name)(step, flat)
    mean = get_fuser("mean")(step, flat)
    contrast = lambda x: np.abs(np.diff(x, axis=-1)).max()  # noqa: E731
    assert contrast(fused) > 1.25 * contrast(mean)


def test_laplacian_pyramid_is_invertible(pair):
    a, _ = pair
    np.testing.assert_allclose(collapse_pyramid(laplacian_pyramid(a, 3)), a, atol=1e-5)


@pytest.mark.parametrize("name", CLASSIC)
def test_bad_inputs_raise(name):
    fuser = get_fuser(name)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        fuser(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="2D or 3D"):
        fuser(np.zeros(4), np.zeros(4))
    bad = np.zeros((4, 4))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fuser(bad, np.zeros((4, 4)))


def test_unknown_method_and_bad_settings():
    with pytest.raises(ValueError, match="'nope'"):
        get_fuser("nope")
    with pytest.raises(ValueError, match="'xyz'"):
        get_fuser("wavelet", wavelet="xyz")
    with pytest.raises(ValueError, match="0"):
        get_fuser("laplacian", levels=0)


def test_highpass_is_pet_plus_mri_detail_in_mm() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(0)
    mri = np.clip(0.5 + 0.2 * rng.standard_normal((24, 24, 24)), 0, 1).astype(np.float32)
    pet = np.full((24, 24, 24), 0.5, np.float32)
    fuser = get_fuser("highpass", pet_fwhm_mm=6.0, gain=1.0)
    state = dict(vars(fuser))
    fused = fuser(mri, pet, spacing=2.0)
    assert vars(fuser) == state  # the voxel size is this call's, never stored on the method
    sigma = 6.0 / 2.3548200450309493 / 2.0
    expected = np.clip(pet + mri - ndimage.gaussian_filter(mri.astype(np.float64), sigma, mode="reflect"), 0, 1)
    np.testing.assert_allclose(fused, expected, atol=1e-5)
    # another voxel size splits elsewhere
    assert not np.allclose(fuser(mri, pet, spacing=1.0), fused)
    assert fuser.describe() == {"method": "highpass", "pet_fwhm_mm": 6.0, "gain": 1.0}


def test_highpass_bad_settings() -> None:
    with pytest.raises(ValueError, match="gain must be a positive number, got -1"):
        get_fuser("highpass", gain=-1)
    with pytest.raises(ValueError, match="pet_fwhm_mm"):
        get_fuser("highpass", pet_fwhm_mm=float("nan"))
