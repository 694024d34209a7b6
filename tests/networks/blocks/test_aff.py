from __future__ import annotations

import pytest
import torch

from asfe3d.networks.blocks import AFF

SIZES = [(2, (17, 23)), (3, (9, 11, 13))]


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_shape_odd_sizes(spatial_dims, size):
    m = AFF(spatial_dims, 4, mask_kernel=3)
    assert m(torch.randn(2, 4, *size), torch.randn(2, 4, *size)).shape == (2, 4, *size)


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_gradients_reach_every_parameter(spatial_dims, size):
    m = AFF(spatial_dims, 4, mask_kernel=3)
    m(torch.randn(1, 4, *size), torch.randn(1, 4, *size)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_identity_frequency_mixing_and_open_mask_reproduce_the_inputs(spatial_dims, size):
    """With the 1x1 frequency conv = identity, no norm/act and the mask forced to 1, each branch is an
    rfftn -> irfftn(s=size) round trip, so AFF(x1, x2) = x1 + x2 exactly, odd sizes included."""
    c = 3
    m = AFF(spatial_dims, c, mask_kernel=3, norm=None, act=None).double()
    with torch.no_grad():
        for br in (m.branch1, m.branch2):
            br.freq_conv.weight.zero_()
            br.freq_conv.weight.view(2 * c, 2 * c)[range(2 * c), range(2 * c)] = 1.0
            br.freq_conv.bias.zero_()
            br.mask_conv.weight.zero_()
            br.mask_conv.bias.fill_(60.0)  # sigmoid(60) == 1 in double to ~1e-26
    x1 = torch.randn(2, c, *size, dtype=torch.double)
    x2 = torch.randn(2, c, *size, dtype=torch.double)
    torch.testing.assert_close(m(x1, x2), x1 + x2)
    # a mixing that is not the identity (swap real and imaginary parts) no longer reproduces the input
    with torch.no_grad():
        m.branch1.freq_conv.weight.copy_(m.branch1.freq_conv.weight.roll(c, dims=0))
    assert not torch.allclose(m(x1, x2), x1 + x2)


def test_bad_arguments_raise_with_values():
    with pytest.raises(ValueError, match="1"):
        AFF(1, 4)
    with pytest.raises(ValueError, match="4"):
        AFF(2, 8, mask_kernel=4)
    with pytest.raises(ValueError, match="0"):
        AFF(3, 0)
    m = AFF(3, 2, mask_kernel=3)
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 4\)"):
        m(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_aff_under_autocast_and_half_precision(spatial_dims):
    """The FFT runs in float32 inside: the block works under autocast (as the inferers use on CUDA) and in half."""
    shape = (1, 4) + (5, 6, 7)[:spatial_dims]
    x1, x2 = torch.rand(shape), torch.rand(shape)
    block = AFF(spatial_dims, 4).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x1, x2)
    assert out.shape == shape and torch.isfinite(out.float()).all()
    half = AFF(spatial_dims, 4).eval().half()
    with torch.no_grad():
        out_half = half(x1.half(), x2.half())
    assert out_half.dtype == torch.float16 and out_half.shape == shape
