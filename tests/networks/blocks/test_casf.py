from __future__ import annotations

import math

import pytest
import torch

from asfe3d.networks.blocks import CASF
from asfe3d.networks.blocks.utils import window_partition, window_reverse

SIZES = [(2, (17, 23)), (3, (9, 11, 13))]


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_shape_odd_sizes(spatial_dims, size):
    m = CASF(spatial_dims, 4, embed_dim=8, num_heads=2, patch_size=2, window_size=2)
    x1, x2 = torch.randn(2, 4, *size), torch.randn(2, 4, *size)
    assert m(x1, x2).shape == (2, 4, *size)


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_gradients_reach_every_parameter(spatial_dims, size):
    m = CASF(spatial_dims, 4, embed_dim=8, num_heads=2, patch_size=2, window_size=2)
    x1 = torch.randn(1, 4, *size, requires_grad=True)
    m(x1, torch.randn(1, 4, *size)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x1.grad.abs().sum() > 0


def _hand_crossed_attention(m: CASF, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Explicit softmax(q1 k1^T / sqrt(d)) v2 and softmax(q2 k2^T / sqrt(d)) v1 over all tokens (global)."""
    e1, e2 = m.embed1(x1), m.embed2(x2)
    b, e = e1.shape[:2]
    grid = e1.shape[2:]
    t1 = e1.flatten(2).transpose(1, 2)  # (B, L, E) in row-major grid order
    t2 = e2.flatten(2).transpose(1, 2)
    q1, k1, v1 = m.qkv1(m.norm1(t1)).chunk(3, dim=-1)
    q2, k2, v2 = m.qkv2(m.norm2(t2)).chunk(3, dim=-1)
    h = m.num_heads
    dh = e // h

    def heads(t):
        return t.reshape(b, -1, h, dh).transpose(1, 2)

    q1, k1, v1, q2, k2, v2 = map(heads, (q1, k1, v1, q2, k2, v2))
    a1 = torch.softmax(q1 @ k1.transpose(-1, -2) / math.sqrt(dh), dim=-1) @ v2
    a2 = torch.softmax(q2 @ k2.transpose(-1, -2) / math.sqrt(dh), dim=-1) @ v1
    o = 0.5 * (a1 + a2)
    o = m.proj(o.transpose(1, 2).reshape(b, -1, e))
    up = m.unembed(o.transpose(1, 2).reshape(b, e, *grid))
    return up + x1 + x2


@pytest.mark.parametrize("spatial_dims,size", [(2, (4, 6)), (3, (4, 2, 6))])
def test_matches_hand_computed_crossed_attention(spatial_dims, size):
    m = CASF(spatial_dims, 3, embed_dim=8, num_heads=2, patch_size=2, window_size=None).double()
    x1 = torch.randn(2, 3, *size, dtype=torch.double)
    x2 = torch.randn(2, 3, *size, dtype=torch.double)
    torch.testing.assert_close(m(x1, x2), _hand_crossed_attention(m, x1, x2))


@pytest.mark.parametrize("spatial_dims,size", [(2, (8, 8)), (3, (8, 4, 8))])
def test_window_covering_whole_grid_equals_global(spatial_dims, size):
    m = CASF(spatial_dims, 3, embed_dim=8, num_heads=2, patch_size=2, window_size=None).double()
    grid = tuple(s // 2 for s in size)
    w = CASF(spatial_dims, 3, embed_dim=8, num_heads=2, patch_size=2, window_size=grid).double()
    w.load_state_dict(m.state_dict())
    x1, x2 = torch.randn(1, 3, *size, dtype=torch.double), torch.randn(1, 3, *size, dtype=torch.double)
    torch.testing.assert_close(m(x1, x2), w(x1, x2))
    # smaller windows restrict the attention and so change the result
    s = CASF(spatial_dims, 3, embed_dim=8, num_heads=2, patch_size=2, window_size=2).double()
    s.load_state_dict(m.state_dict())
    assert not torch.allclose(m(x1, x2), s(x1, x2))


@pytest.mark.parametrize("spatial_dims,size,window", [(2, (6, 8), (3, 2)), (3, (4, 6, 2), (2, 3, 1))])
def test_window_partition_round_trip(spatial_dims, size, window):
    x = torch.randn(2, 5, *size)
    tokens, counts = window_partition(x, window)
    assert tokens.shape == (2 * math.prod(counts), math.prod(window), 5)
    # the first window holds the first corner block of the grid
    corner = x[(0, slice(None)) + tuple(slice(0, w) for w in window)]
    torch.testing.assert_close(tokens[0], corner.flatten(1).T)
    torch.testing.assert_close(window_reverse(tokens, window, counts), x)


def test_bad_arguments_raise_with_values():
    with pytest.raises(ValueError, match="4"):
        CASF(4, 8)
    with pytest.raises(ValueError, match=r"10.*3"):
        CASF(2, 8, embed_dim=10, num_heads=3)
    with pytest.raises(ValueError, match="patch_size"):
        CASF(3, 8, patch_size=0)
    m = CASF(2, 4, embed_dim=8, num_heads=2)
    with pytest.raises(ValueError, match=r"\(1, 4, 8, 8\)"):
        m(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 9))
