"""Tests of the through-plane consistency measure (TPC)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from asfe3d.metrics import anisotropy, directional_energy, through_plane_consistency


def _unit(x: np.ndarray) -> np.ndarray:
    return (x - x.min()) / (x.max() - x.min())


@pytest.fixture
def sources() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    a = _unit(gaussian_filter(rng.random((20, 20, 20)), 1.5))
    b = _unit(gaussian_filter(rng.random((20, 20, 20)), 2.0))
    return a, b


def test_clean_fusion_is_about_one(sources):
    a, b = sources
    assert through_plane_consistency(a, a, a) == pytest.approx(1.0)
    # a source itself or a pointwise blend is never more anisotropic than the most anisotropic source
    for fused in (a, b, 0.5 * (a + b), np.maximum(a, b)):
        assert 0.3 < through_plane_consistency(fused, a, b) <= 1.05


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gain_jitter_gets_worse(sources, axis):
    a, b = sources
    fused = 0.5 * (a + b)
    clean = through_plane_consistency(fused, a, b, axis=axis)
    rng = np.random.default_rng(2)
    shape = [1, 1, 1]
    shape[axis] = fused.shape[axis]
    previous = clean
    for s in (0.02, 0.05, 0.1):  # more jitter, more striping
        gain = (1.0 + s * rng.standard_normal(fused.shape[axis])).reshape(shape)
        jittered = through_plane_consistency(fused * gain, a, b, axis=axis)
        assert jittered > previous * 1.2
        previous = jittered
    # jitter along another axis is not through-plane striping for this axis
    other = (axis + 1) % 3
    shape = [1, 1, 1]
    shape[other] = fused.shape[other]
    gain = (1.0 + 0.1 * rng.standard_normal(fused.shape[other])).reshape(shape)
    assert through_plane_consistency(fused * gain, a, b, axis=axis) < clean


def test_mask_and_torch_input(sources):
    a, b = sources
    mask = np.zeros(a.shape, bool)
    mask[3:17, 3:17, 3:17] = True
    fused = 0.5 * (a + b)
    v_np = through_plane_consistency(fused, a, b, mask=mask)
    v_t = through_plane_consistency(torch.from_numpy(fused)[None, None], torch.from_numpy(a), b,
                                    mask=torch.from_numpy(mask))
    assert v_np == pytest.approx(v_t)
    # the mask matters: garbage outside it is ignored
    noisy = fused.copy()
    noisy[~mask] = np.random.default_rng(3).random(int((~mask).sum()))
    assert through_plane_consistency(noisy, a, b, mask=mask) == pytest.approx(v_np)


def test_directional_energy_hand_computed():
    x = np.zeros((3, 3, 3))
    x[:, :, 1] = 1.0  # second difference along z: 0 - 2 + 0 = -2 at every (x, y)
    np.testing.assert_allclose(directional_energy(x), [0.0, 0.0, 4.0])
    assert anisotropy(x, axis=2) == float("inf")
    assert anisotropy(np.ones((3, 3, 3))) == 1.0


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((8, 8))), {}, "3D volume"),
        ((np.zeros((8, 8, 8)), np.zeros((8, 8, 9)), np.zeros((8, 8, 8))), {}, "one shape"),
        ((np.zeros((8, 8, 2)),) * 3, {}, "at least 3"),
        ((np.full((8, 8, 8), np.nan), np.zeros((8, 8, 8)), np.zeros((8, 8, 8))), {}, "NaN"),
        ((np.zeros((8, 8, 8)),) * 3, {"axis": 3}, "axis"),
        ((np.zeros((8, 8, 8)),) * 3, {"mask": np.zeros((8, 8, 8), bool)}, "empty"),
        ((np.zeros((8, 8, 8)),) * 3, {"mask": np.ones((4, 4, 4), bool)}, "mask shape"),
    ],
)
def test_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        through_plane_consistency(*args, **kwargs)


def test_sources_without_through_plane_structure():
    from asfe3d.metrics import UndefinedMetric

    a = np.tile(np.linspace(0, 1, 8)[:, None, None] ** 2, (1, 8, 8))  # varies only along x; d2 along z = 0
    with pytest.raises(UndefinedMetric, match="undefined"):  # its own type: evaluate reports it as NaN by it
        through_plane_consistency(a, a, a)
    mask = np.zeros((8, 8, 8), bool)
    mask[2:6, 2:6, 4] = True  # one slice: no 3 consecutive voxels along z
    b = np.random.default_rng(0).random((8, 8, 8))
    with pytest.raises(UndefinedMetric, match="no 3 consecutive voxels"):
        through_plane_consistency(b, b, b, mask=mask)
    with pytest.raises(ValueError, match="axis must be 0, 1 or 2") as caught:  # a bad argument is not "undefined"
        through_plane_consistency(b, b, b, axis=3)
    assert not isinstance(caught.value, UndefinedMetric)


def test_tpc_of_a_blank_fused_volume_is_undefined() -> None:
    """Probe 35 #9: an all-zero or constant fused volume scored TPC 1.05 (its 0/0 anisotropy read as 1), about what
    a good fusion scores: undefined (NaN) now."""
    rng = np.random.default_rng(0)
    a, b = gaussian_filter(rng.random((16, 16, 16)), 1.5), gaussian_filter(rng.random((16, 16, 16)), 2.0)
    for blank in (np.zeros_like(a), np.full_like(a, 0.5)):
        assert np.isnan(through_plane_consistency(blank, a, b))
    assert through_plane_consistency(0.5 * (a + b), a, b) < 1.2


def test_a_soft_mask_is_refused_not_read_as_everywhere():
    """``mask.astype(bool)`` made a 0.02-outside mask True everywhere: the anisotropy of the whole volume."""
    import re

    from asfe3d.metrics.consistency import anisotropy

    x = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    soft = np.full(x.shape, 0.02)
    soft[4:12, 4:12, 4:12] = 1.0
    with pytest.raises(ValueError, match=re.escape("mask must be boolean (or hold only 0 and 1), got [0.02")):
        anisotropy(x, mask=soft)
    assert anisotropy(x, mask=soft == 1.0) == anisotropy(x, mask=(soft == 1.0).astype(np.uint8))


def test_a_constant_source_is_left_out_of_the_reference():
    """Probe 42 #5: a constant source's 0/0 anisotropy read as 1 entered ``max(R(A), R(B))``: a copy of the other,
    anisotropic source scored R(B) (0.013) instead of 1."""
    b = gaussian_filter(np.random.default_rng(7).random((24, 24, 24)), (1, 1, 3))
    flat = np.full(b.shape, 0.5)
    assert through_plane_consistency(b, flat, b) == pytest.approx(1.0)
    assert through_plane_consistency(b, b, flat) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="undefined"):  # nothing to compare with at all
        through_plane_consistency(b, flat, flat)
