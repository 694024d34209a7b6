"""A fusion method called from Python refuses a bad pair in one clear error instead of fusing garbage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asfe3d.fusion import get_fuser
from asfe3d.fusion.base import RANGE_TOLERANCE

CLASSIC = ["mean", "max", "wavelet", "laplacian", "highpass"]


def _pair(shape: tuple[int, ...] = (8, 9, 7)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random(shape).astype(np.float32), rng.random(shape).astype(np.float32)


@pytest.mark.parametrize("method", CLASSIC)
def test_values_outside_unit_range_are_refused_with_the_range_quoted(method: str) -> None:
    # an un-normalised MRI (0..900) was clipped to a fused image of all 1.0, silently
    mri, pet = _pair()
    mri[0, 0, 0], mri[0, 0, 1] = 0.0, 1.0
    pet[0, 0, 0] = 0.0
    with pytest.raises(ValueError, match=r"mri must hold intensities in \[0, 1\].*\[0, 900\]"):
        get_fuser(method)(mri * 900, pet)
    with pytest.raises(ValueError, match=r"pet must hold intensities in \[0, 1\].*\[-1, "):
        get_fuser(method)(mri, pet - 1)


def test_round_off_outside_unit_range_is_accepted() -> None:
    mri, pet = _pair()
    mri[0, 0, 0], pet[0, 0, 0] = 1.0 + RANGE_TOLERANCE / 2, -RANGE_TOLERANCE / 2
    out = get_fuser("mean")(mri, pet)
    assert out.shape == mri.shape and np.isfinite(out).all() and 0 <= out.min() <= out.max() <= 1


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 4, 4)), r"non-empty 2D or 3D images, got shape \(0, 4, 4\)"),
    (np.zeros((4, 4, 4), complex), r"real intensities in \[0, 1\], got dtype complex128"),
    (np.full((4, 4, 4), "a"), r"real intensities in \[0, 1\], got dtype <U1"),
])
def test_empty_complex_or_text_inputs_are_refused(bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_fuser("mean")(bad, np.zeros(bad.shape, np.float32) if bad.dtype.kind in "fc" else bad)


def test_torch_inputs_are_taken() -> None:
    mri, pet = _pair()
    out = get_fuser("max")(torch.from_numpy(mri), torch.from_numpy(pet).double())
    np.testing.assert_array_equal(out, get_fuser("max")(mri, pet))


@pytest.mark.parametrize("method", ["wavelet", "laplacian"])
@pytest.mark.parametrize("levels", [0, 2.5, "3", True])
def test_levels_must_be_an_integer_of_at_least_one(method: str, levels: object) -> None:
    with pytest.raises(ValueError, match=rf"levels must be an integer >= 1, got {levels!r}"):
        get_fuser(method, levels=levels)


def test_highpass_spacing_of_the_wrong_length_is_refused_with_it_quoted() -> None:
    mri, pet = _pair()
    with pytest.raises(ValueError, match=r"spacing must be one voxel size or 3 of them .* \(8, 9, 7\), got \(1, 2\)"):
        get_fuser("highpass")(mri, pet, spacing=(1, 2))
    np.testing.assert_array_equal(get_fuser("highpass")(mri, pet, spacing=2.0),
                                  get_fuser("highpass")(mri, pet, spacing=(2.0, 2.0, 2.0)))
