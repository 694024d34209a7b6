from __future__ import annotations

import pytest
import torch

from asfe3d.networks.blocks import DeformableCrossBlend, warp

SIZES = [(2, (17, 23)), (3, (9, 11, 13))]


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_shape_odd_sizes(spatial_dims, size):
    m = DeformableCrossBlend(spatial_dims, 3)
    y1, y2 = m(torch.randn(2, 3, *size), torch.randn(2, 3, *size))
    assert y1.shape == y2.shape == (2, 3, *size)


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_gradients_reach_every_parameter(spatial_dims, size):
    m = DeformableCrossBlend(spatial_dims, 3)
    y1, y2 = m(torch.randn(1, 3, *size), torch.randn(1, 3, *size))
    (y1.square().mean() + y2.square().mean()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_warp_zero_is_identity_and_unit_offset_shifts_each_axis(spatial_dims, size):
    x = torch.randn(1, 2, *size, dtype=torch.double)
    off = torch.zeros(1, spatial_dims, *size, dtype=torch.double)
    torch.testing.assert_close(warp(x, off), x)
    for axis in range(spatial_dims):
        o = off.clone()
        o[:, axis] = 1.0
        w = warp(x, o)
        inner = [slice(None)] * (spatial_dims + 2)
        nxt = list(inner)
        inner[2 + axis] = slice(0, size[axis] - 1)
        nxt[2 + axis] = slice(1, None)
        torch.testing.assert_close(w[tuple(inner)], x[tuple(nxt)])


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_zero_offsets_give_the_gated_blend(spatial_dims, size):
    m = DeformableCrossBlend(spatial_dims, 2).double()
    with torch.no_grad():
        m.predict.weight.zero_()
    x1, x2 = torch.randn(1, 2, *size, dtype=torch.double), torch.randn(1, 2, *size, dtype=torch.double)
    g = torch.sigmoid(torch.tensor(-2.0, dtype=torch.double))
    y1, y2 = m(x1, x2)
    torch.testing.assert_close(y1, (1 - g) * x1 + g * x2)
    torch.testing.assert_close(y2, (1 - g) * x2 + g * x1)


def test_bad_arguments_raise_with_values():
    with pytest.raises(ValueError, match="1"):
        DeformableCrossBlend(1, 4)
    with pytest.raises(ValueError, match=r"-1\.0"):
        DeformableCrossBlend(2, 4, max_offset=-1.0)
    m = DeformableCrossBlend(3, 2)
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 4\)"):
        m(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4))
