"""ASFEFusion refuses arguments of the wrong type with the value quoted (no TypeError from deep inside MONAI)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asfe3d.networks import ASFEFusion


@pytest.mark.parametrize("spatial_dims", [2.0, 3.0, True, "3", 4, 1])
def test_spatial_dims_must_be_the_integer_2_or_3(spatial_dims: object) -> None:
    with pytest.raises(ValueError, match=rf"spatial_dims must be 2 or 3, got {spatial_dims!r}"):
        ASFEFusion(spatial_dims=spatial_dims)


@pytest.mark.parametrize("chans", [(8.7, 16, 32), (8, -16, 32), (), "abc", 5, (True, 16, 32)])
def test_encoder_channels_must_be_positive_integers(chans: object) -> None:
    with pytest.raises(ValueError, match="encoder_channels must be positive ints"):
        ASFEFusion(spatial_dims=3, encoder_channels=chans)


def test_numpy_integers_are_taken() -> None:
    net = ASFEFusion(spatial_dims=np.int64(2), encoder_channels=[np.int64(8), 16, 24, 32]).eval()
    assert net.config["spatial_dims"] == 2 and type(net.config["spatial_dims"]) is int
    with torch.no_grad():
        assert net(torch.rand(1, 2, 9, 11)).shape == (1, 1, 9, 11)


@pytest.mark.parametrize("override, match", [
    ({"attn_window": 0}, r"attn_window must be a positive int or 3 positive ints, got 0"),
    ({"moe_window": (4, 4)}, r"moe_window must be a positive int or 3 positive ints, got \(4, 4\)"),
    ({"aff_mask_kernel": 4}, r"aff_mask_kernel must be a positive odd int, got 4"),
])
def test_block_options_are_named_as_given(override: dict, match: str) -> None:
    """Probe 47 #10: these were refused under the blocks' own names (window_size, mask_kernel)."""
    with pytest.raises(ValueError, match=match):
        ASFEFusion(3, **override)


@pytest.mark.parametrize("value", [2.5, "abc", True, [4.7, 4.2, 4.0]])
def test_window_sizes_must_be_integers(value: object) -> None:
    """Review 49 #9: 2.5 and "abc" gave raw Python errors; True and [4.7, 4.2, 4.0] were taken as 1 and 4."""
    with pytest.raises(ValueError, match=r"attn_window must be a positive int or 3 positive ints"):
        ASFEFusion(3, attn_window=value)
