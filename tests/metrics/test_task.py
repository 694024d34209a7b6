"""Task-based measures: defect transfer, automatic defect placement, output where both inputs are empty."""

from __future__ import annotations

import re

import numpy as np
import pytest

from asfe3d.metrics import ball, defect_transfer, defect_transfer_of, empty_output, place_defect


def _pair(ndim: int, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    shape = (n,) * ndim
    grids = np.indices(shape) - (n - 1) / 2.0
    r = np.sqrt((grids**2).sum(0))
    mri = np.where(r < n / 2 - 1, 0.5 + 0.1 * rng.random(shape), 0.0).astype(np.float32)
    pet = np.where(r < n / 2 - 3, 0.3 + 0.6 * np.exp(-((grids[0] - 3) ** 2) / 20.0), 0.0).astype(np.float32)
    return mri, pet


@pytest.mark.parametrize("ndim", [2, 3])
def test_defect_transfer_of_simple_methods(ndim: int) -> None:
    mri, pet = _pair(ndim)
    pet_defect, region = place_defect(pet, mri > 0, spacing=1.0, diameter_mm=6.0, fraction=0.3)
    assert region.sum() > 0 and np.all(pet_defect[region] < pet[region]) and np.array_equal(pet_defect[~region], pet[~region])
    assert defect_transfer_of(lambda a, b: b, mri, pet, pet_defect, region) == pytest.approx(1.0)  # the PET itself
    assert defect_transfer_of(lambda a, b: a, mri, pet, pet_defect, region) == pytest.approx(0.0)  # the MRI alone
    assert defect_transfer_of(lambda a, b: 0.5 * (a + b), mri, pet, pet_defect, region) == pytest.approx(0.5)
    # max keeps the change only where the PET stays above the MRI
    dt_max = defect_transfer_of(np.maximum, mri, pet, pet_defect, region)
    expected = np.mean(np.maximum(mri, pet)[region] - np.maximum(mri, pet_defect)[region]) / np.mean(
        (pet - pet_defect)[region])
    assert dt_max == pytest.approx(float(expected)) and 0.0 <= dt_max <= 1.0


def test_place_defect_centre_at_highest_local_uptake() -> None:
    pet = np.zeros((40, 40), np.float32)
    pet[25:32, 8:15] = 1.0  # the hot spot
    pet[5:9, 30:34] = 0.9
    _, region = place_defect(pet, None, diameter_mm=6.0)
    centre = np.argwhere(region).mean(axis=0)
    assert np.allclose(centre, (28, 11), atol=1.0)


def test_place_defect_respects_spacing_and_mask() -> None:
    pet = np.ones((30, 30, 30), np.float32)
    _, region = place_defect(pet, None, spacing=(2.0, 1.0, 1.0), diameter_mm=12.0)
    extent = np.ptp(np.argwhere(region), axis=0)
    assert extent[0] == 6 and extent[1] == 12  # 12 mm = 6 voxels of 2 mm, 12 of 1 mm
    mask = np.zeros(pet.shape, bool)
    mask[2:18, 2:18, 2:18] = True
    _, region = place_defect(pet, mask, diameter_mm=8.0)
    assert mask[region].all()
    _, as_numbers = place_defect(pet, mask.astype(np.float32), diameter_mm=8.0)  # a 0/1 mask of numbers: the same
    assert np.array_equal(as_numbers, region)
    with pytest.raises(ValueError, match=r"mask must be boolean \(or hold only 0 and 1\), got \[0.02, 1.0\]"):
        place_defect(pet, np.where(mask, 1.0, 0.02), diameter_mm=8.0)  # was read as True everywhere


def test_ball_and_bad_inputs() -> None:
    b = ball((9, 9), (4, 4), 5.0)
    assert b[4, 4] and b[4, 6] and not b[4, 7] and b.sum() == 21
    with pytest.raises(ValueError, match="diameter_mm > 0"):
        ball((9, 9), (4, 4), 0.0)
    pet = np.ones((10, 10), np.float32)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\), got 1.5"):
        place_defect(pet, fraction=1.5)
    with pytest.raises(ValueError, match="no room for a 30.0 mm ball"):
        place_defect(pet, diameter_mm=30.0)
    with pytest.raises(ValueError, match="mask shape"):
        place_defect(pet, np.ones((9, 9), bool))
    with pytest.raises(ValueError, match="region is empty"):
        defect_transfer(pet, pet, pet, pet * 0.5, np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="does not change"):
        defect_transfer(pet, pet, pet, pet, np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="one shape"):
        defect_transfer(pet, pet, pet, pet[:5], np.ones((10, 10), bool))


@pytest.mark.parametrize("ndim", [2, 3])
def test_empty_output(ndim: int) -> None:
    mri, pet = _pair(ndim)
    fused = 0.5 * (mri + pet)
    assert empty_output(fused, mri, pet) == 0.0
    leaky = fused + 0.1
    assert empty_output(leaky, mri, pet) == pytest.approx(0.1)
    assert np.isnan(empty_output(fused, mri + 1, pet))  # no empty voxel
    with pytest.raises(ValueError, match="percentile must be a number in"):
        empty_output(fused, mri, pet, percentile=101)
    # probe 35 #11: a string or an array was numpy's or Python's own error, unquoted
    with pytest.raises(ValueError, match=r"level must be a finite number >= 0, got '0'"):
        empty_output(fused, mri, pet, level="0")
    with pytest.raises(ValueError, match=r"percentile must be a number in \[0, 100\], got array"):
        empty_output(fused, mri, pet, percentile=np.array([50, 99]))
    with pytest.raises(ValueError, match="one shape"):
        empty_output(fused, mri, pet[:3])


def test_place_defect_refuses_a_blank_pet() -> None:
    with pytest.raises(ValueError, match="no uptake to lower"):
        place_defect(np.zeros((30, 30), np.float32), diameter_mm=6.0)


def test_imaged_defect_is_the_ball_blurred_by_the_pets_resolution() -> None:
    """``fwhm_mm``: the lowering is ``fraction * G(ball)``: the same centre and region as the sharp defect, no edge
    sharper than the Gaussian, and the same total lowering (the blur moves it, it does not remove it)."""
    pet = np.full((40, 40, 40), 0.5, np.float32)
    pet[18:22, 18:22, 18:22] = 1.0
    sharp, region = place_defect(pet, None, spacing=1.0, diameter_mm=12.0, fraction=0.3)
    imaged, region2 = place_defect(pet, None, spacing=1.0, diameter_mm=12.0, fraction=0.3, fwhm_mm=6.0)
    assert np.array_equal(region, region2)
    drop_sharp, drop_imaged = pet - sharp, pet - imaged
    # most of the ball keeps most of the lowering, and some of it now lies outside the ball
    assert 0.5 * drop_sharp[region].mean() < drop_imaged[region].mean() < drop_sharp[region].mean()
    assert drop_imaged[~region].max() > 0.01
    # smooth: the relative lowering has no step between neighbours larger than a fraction of the sharp one's
    step = lambda d: np.abs(np.diff(d / pet, axis=0)).max()  # noqa: E731
    assert step(drop_imaged) < 0.3 * step(drop_sharp)
    # the lowering is relative to the PET: pet * (1 - 0.3 * G(ball)) in [0.7 pet, pet]
    assert np.all(imaged <= pet) and np.all(imaged >= 0.7 * pet - 1e-6)


@pytest.mark.parametrize("value", [0, -2.0, float("nan"), True])
def test_imaged_defect_refuses_a_bad_width(value) -> None:
    with pytest.raises(ValueError, match=r"fwhm_mm must be None or a number > 0 \(mm\), got ") as err:
        place_defect(np.ones((20, 20, 20), np.float32), None, fwhm_mm=value)
    assert str(err.value).endswith(repr(value))


def test_defect_transfer_and_place_defect_refuse_what_is_not_their_convention() -> None:
    """Probe 35 #5, #10: a uint8 fused image beside a [0, 1] PET gave DT 254.9 (a raw-unit PET 0.0001); a spacing
    of 0 quoted a centre of -9223372036854775808, one of the wrong length was numpy's broadcast error, a NaN
    spacing or a NaN in the PET read as "no uptake to lower", ball(spacing=nan) was an empty ball."""
    mri, pet = _pair(3)
    pet_defect, region = place_defect(pet, mri > 0, spacing=np.float32(1.0), diameter_mm=6.0, fraction=0.3)
    as_uint8 = np.round(pet * 255).astype(np.uint8)
    with pytest.raises(ValueError, match=r"fused_ref must hold intensities in \[0, 1\] .*got values in \[0, 2"):
        defect_transfer(as_uint8, np.round(pet_defect * 255).astype(np.uint8), pet, pet_defect, region)
    with pytest.raises(ValueError, match=r"pet_ref must hold intensities in \[0, 1\]"):
        defect_transfer(pet, pet_defect, pet * 1e4, pet_defect * 1e4, region)
    with pytest.raises(ValueError, match=r"region must be boolean \(or hold only 0 and 1\), got \[0\.5, 1\.0\]"):
        defect_transfer(pet, pet_defect, pet, pet_defect, np.where(region, 1.0, 0.5))
    for spacing in (0, (1, 1), float("nan"), (1, 1, float("inf")), "2", True):
        with pytest.raises(ValueError, match=rf"spacing must be one voxel size or 3, finite numbers > 0 \(mm\), got "
                                             rf"{re.escape(repr(spacing))}"):
            place_defect(pet, mri > 0, spacing=spacing)
        with pytest.raises(ValueError, match="spacing must be one voxel size or 3"):
            ball(pet.shape, (5, 5, 5), 6.0, spacing)
    with_nan = pet.copy()
    with_nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="pet .* holds NaN or Inf values"):
        place_defect(with_nan, mri > 0)
    with pytest.raises(ValueError, match="diameter_mm must be a finite number > 0, got '12'"):
        place_defect(pet, mri > 0, diameter_mm="12")
