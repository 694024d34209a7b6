"""No output where there is no input: every method, 2D and 3D, gives exactly 0 where both inputs are 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asfe3d.fusion import get_fuser
from asfe3d.fusion.base import EMPTY_LEVEL, support_weight


def _inputs(ndim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    shape = (32,) * ndim if ndim == 2 else (16, 16, 16)
    mri = np.zeros(shape, np.float32)
    pet = np.zeros(shape, np.float32)
    centre = tuple(slice(4, s - 4) for s in shape)
    mri[centre] = 0.2 + 0.8 * rng.random(mri[centre].shape)
    pet[centre] = 0.9 * rng.random(pet[centre].shape)
    return mri, pet


class _Leaky(torch.nn.Module):
    """A 'network' that outputs 0.3 everywhere (the worst case of a speckled background)."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x[:, :1], 0.3)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("method", ["mean", "max", "wavelet", "laplacian"])
def test_classic_methods_zero_where_inputs_empty(ndim: int, method: str) -> None:
    mri, pet = _inputs(ndim)
    fused = get_fuser(method)(mri, pet)
    empty = (mri == 0) & (pet == 0)
    assert fused.dtype == np.float32 and fused.shape == mri.shape
    assert np.all(fused[empty] == 0.0)


@pytest.mark.parametrize("mode,ndim", [("slice", 2), ("slice", 3), ("volume", 3)])
def test_network_output_gated(mode: str, ndim: int) -> None:
    mri, pet = _inputs(ndim)
    fuser = get_fuser("asfe", mode=mode, net=_Leaky(2 if mode == "slice" else 3), device="cpu")
    fused = fuser(mri, pet)
    empty = (mri == 0) & (pet == 0)
    assert np.all(fused[empty] == 0.0)
    full = np.maximum(mri, pet) >= EMPTY_LEVEL
    np.testing.assert_allclose(fused[full], 0.3, rtol=1e-6)  # untouched where the inputs hold signal


def test_support_weight_ramp_and_bad_input() -> None:
    mri = np.array([[0.0, 0.01, 0.2]], np.float32)
    pet = np.array([[0.0, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(support_weight(mri, pet, level=0.02), [[0.0, 0.5, 1.0]])
    with pytest.raises(ValueError, match="level must be a positive number, got 0"):
        support_weight(mri, pet, level=0)
    with pytest.raises(ValueError, match="share one grid"):
        support_weight(mri, pet[:, :2])
