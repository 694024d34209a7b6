from __future__ import annotations

import pytest
import torch

from asfe3d.networks.blocks import SFEF
from asfe3d.networks.blocks.utils import pad_to_multiple, window_partition

SIZES = [(2, (17, 23)), (3, (9, 11, 13))]


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_shape_odd_sizes(spatial_dims, size):
    m = SFEF(spatial_dims, 4, num_experts=3, slots_per_expert=2, expert_hidden=8, window_size=4)
    assert m(torch.randn(2, 4, *size), torch.randn(2, 4, *size)).shape == (2, 4, *size)


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_gradients_reach_every_parameter(spatial_dims, size):
    m = SFEF(spatial_dims, 4, num_experts=3, slots_per_expert=2, expert_hidden=8, window_size=4)
    m(torch.randn(1, 4, *size), torch.randn(1, 4, *size)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_dispatch_and_combine_are_normalised_and_padding_is_never_dispatched(spatial_dims, size):
    m = SFEF(spatial_dims, 4, num_experts=3, slots_per_expert=2, expert_hidden=8, window_size=4)
    x = torch.randn(1, 8, *size)
    xp, _ = pad_to_multiple(x, (4,) * spatial_dims)
    valid, _ = pad_to_multiple(torch.ones_like(x[:, :1]), (4,) * spatial_dims)
    tokens = m.norm(window_partition(xp, (4,) * spatial_dims)[0])
    vmask = window_partition(valid, (4,) * spatial_dims)[0][..., 0] > 0.5
    assert not vmask.all()  # the odd size does need padding
    dispatch, combine = m.routing_weights(tokens, vmask)
    assert dispatch.shape == combine.shape == (*tokens.shape[:2], 6)
    torch.testing.assert_close(dispatch.sum(dim=1), torch.ones(tokens.shape[0], 6))
    torch.testing.assert_close(combine.sum(dim=2), torch.ones(tokens.shape[:2]))
    assert (dispatch[~vmask] == 0).all()
    assert (dispatch[vmask] > 0).all()


@pytest.mark.parametrize("spatial_dims,size", [(2, (8, 8)), (3, (4, 4, 4))])
def test_windowing_is_local(spatial_dims, size):
    """Changing one window's input leaves the other windows' outputs unchanged (memory/compute are local)."""
    m = SFEF(spatial_dims, 2, num_experts=2, expert_hidden=4, window_size=size[0] // 2).eval()
    s, f = torch.randn(1, 2, *size), torch.randn(1, 2, *size)
    s2 = s.clone()
    s2[(0, slice(None)) + (slice(0, size[0] // 2),) * spatial_dims] += 5.0
    y, y2 = m(s, f), m(s2, f)
    far = (0, slice(None)) + (slice(size[0] // 2, None),) * spatial_dims
    torch.testing.assert_close(y[far], y2[far])
    assert not torch.allclose(y, y2)


def test_bad_arguments_raise_with_values():
    with pytest.raises(ValueError, match="5"):
        SFEF(5, 4)
    with pytest.raises(ValueError, match=r"num_experts.*0"):
        SFEF(2, 4, num_experts=0)
    with pytest.raises(ValueError, match="window_size"):
        SFEF(3, 4, window_size=(2, 2))
    m = SFEF(2, 4)
    with pytest.raises(ValueError, match=r"\(1, 4, 5, 5\)"):
        m(torch.randn(1, 4, 5, 5), torch.randn(1, 3, 5, 5))
