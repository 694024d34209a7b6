"""Tests of :mod:`asfe3d.data.anatomy`: the reference grid, resampling onto it, the PET uptake patterns per label
group and the synthetic head layers around a brain."""

from __future__ import annotations

import numpy as np
import pytest

from asfe3d.data.anatomy import PATTERNS, pet_uptake, reference_grid, resample_to_grid, synthetic_head
from tests.data.helpers import tiny_anatomy


def test_reference_grid_and_resample_identity() -> None:
    shape, aff = reference_grid()
    assert shape == (121, 145, 121) and np.allclose(np.diag(aff)[:3], 1.5)
    a = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    eye = np.eye(4)
    assert np.allclose(resample_to_grid(a, eye, a.shape, eye, order=1), a, atol=1e-6)
    # a one-voxel shift of the target grid shifts the data
    shifted = eye.copy()
    shifted[0, 3] = 1.0
    assert np.allclose(resample_to_grid(a, eye, (4, 6, 7), shifted, order=0), a[1:])


def test_resample_bad_input() -> None:
    with pytest.raises(ValueError, match=r"3D, got shape \(4, 4\)"):
        resample_to_grid(np.zeros((4, 4)), np.eye(4), (4, 4, 4), np.eye(4))
    with pytest.raises(ValueError, match="shape must be three positive ints"):
        resample_to_grid(np.zeros((4, 4, 4)), np.eye(4), (4, 0, 4), np.eye(4))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_pet_uptake_follows_labels(pattern: str) -> None:
    anat = tiny_anatomy()
    up = pet_uptake(anat.labels, anat.head, pattern, np.random.default_rng(1))
    assert up.shape == anat.labels.shape and up.dtype == np.float32
    assert np.all(up[~anat.head] == 0) and np.all(up >= 0)
    wm = float(up[anat.labels == 44].mean())
    parietal, calcarine = float(up[anat.labels == 198].mean()), float(up[anat.labels == 108].mean())
    assert wm == pytest.approx(1.0)
    if pattern.startswith("fdg"):
        assert calcarine > 2.0 * wm  # cortex well above white matter
    else:
        assert calcarine < wm  # amyloid: low cortical retention outside amyloid-prone cortex
    if pattern == "fdg_ad":  # parietal lowered relative to the untouched cortex (both +-10 % per structure)
        assert parietal < 0.85 * 1.1 / 0.9 * calcarine
    if pattern == "amyloid_pos":
        assert parietal > 1.3 * calcarine


def test_ad_lowering_against_normal_with_same_draws() -> None:
    anat = tiny_anatomy()
    normal = pet_uptake(anat.labels, anat.head, "fdg", np.random.default_rng(5))
    ad = pet_uptake(anat.labels, anat.head, "fdg_ad", np.random.default_rng(5))
    ratio = ad[anat.labels == 198].mean() / normal[anat.labels == 198].mean()
    assert 0.6 <= ratio <= 0.85
    assert np.allclose(ad[anat.labels == 108], normal[anat.labels == 108])


def test_pet_uptake_bad_input() -> None:
    anat = tiny_anatomy()
    with pytest.raises(ValueError, match="'tau'"):
        pet_uptake(anat.labels, anat.head, "tau", np.random.default_rng(0))
    with pytest.raises(ValueError, match="one shape"):
        pet_uptake(anat.labels, anat.head[:-1], "fdg", np.random.default_rng(0))


def test_synthetic_head_layers() -> None:
    anat = tiny_anatomy((40, 44, 40))
    brain = np.where(anat.labels > 0, anat.mri, 0.0).astype(np.float32)
    mri, head = synthetic_head(brain, 1.5, np.random.default_rng(0))
    assert mri.shape == brain.shape and head.dtype == bool
    inside = brain > 0
    assert head[inside].all() and head.sum() > 1.5 * inside.sum()  # scalp and skull around the brain
    assert np.array_equal(mri[inside], brain[inside])  # the brain is untouched
    ring = head & ~inside
    assert (mri[ring] < 0.1).any() and (mri[ring] > 0.75).any()  # dark skull and bright fat both present
    assert np.all(mri[~head] == 0)


def test_synthetic_head_bad_input() -> None:
    with pytest.raises(ValueError, match="non-empty 3D"):
        synthetic_head(np.zeros((8, 8, 8)), 1.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="spacing must be a positive number of mm, got -1"):
        synthetic_head(np.ones((8, 8, 8)), -1, np.random.default_rng(0))
