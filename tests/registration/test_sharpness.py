"""``asfe3d.registration.sharpness``: how much of a volume's variance lies below a PET's resolution (the swap check)."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from asfe3d.registration.sharpness import block_mean, detail_share, swap_sign


def _head(shape=(40, 44, 36), sharp=True, seed=0):
    """A ball of tissue with fine texture (an MRI) or smoothed to a PET's resolution, (z, y, x)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    ball = ((z - shape[0] / 2) ** 2 + (y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2) < (0.4 * min(shape)) ** 2
    texture = gaussian_filter(rng.random(shape), 0.8)
    vol = ball * (1.0 + 2.0 * texture)
    return vol if sharp else gaussian_filter(vol, 3.0)


def test_block_mean_averages_whole_blocks() -> None:
    a = np.arange(4 * 6 * 5, dtype=np.float64).reshape(4, 6, 5)
    out = block_mean(a, (2, 3, 2))
    assert out.shape == (2, 2, 2) and out[0, 0, 0] == a[:2, :3, :2].mean()


def test_a_sharp_volume_has_more_detail_than_a_smooth_one() -> None:
    sharp, smooth = detail_share(_head(), (1.0, 1.0, 1.0)), detail_share(_head(sharp=False), (1.0, 1.0, 1.0))
    assert 0.0 <= smooth < 0.05 < sharp <= 1.0
    assert math.isnan(detail_share(np.zeros((8, 8, 8)), (1.0, 1.0, 1.0)))  # no head: no share


def test_swapped_inputs_are_named_and_the_right_order_is_not() -> None:
    mri, pet = _head(), _head(sharp=False)
    spacing = (1.0, 1.0, 1.0)
    assert swap_sign(mri, pet, spacing, spacing, pet_smoothness=0.9) is None
    said = swap_sign(pet, mri, spacing, spacing, pet_smoothness=0.9)
    assert said is not None and said.startswith("the inputs look swapped")
    assert swap_sign(pet, mri, spacing, spacing, pet_smoothness=0.2) is None  # a sharp PET that is noise: not a swap
