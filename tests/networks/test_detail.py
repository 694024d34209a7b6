"""DetailBand: the Gaussian high-pass of detail injection, for slices and volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from asfe3d.networks import DetailBand


@pytest.mark.parametrize("shape", [(2, 1, 9, 12), (1, 1, 7, 10, 13)])
def test_band_is_x_minus_a_replicate_padded_gaussian(shape):
    x = torch.rand(*shape, dtype=torch.float64)
    band = DetailBand(3.0).forward(x)
    sigma = 3.0 / 2.3548200450309493
    ref = [xi - ndimage.gaussian_filter(xi, sigma, mode="nearest", truncate=3.5)  # radius ceil(3 sigma) = 4
           for xi in x[:, 0].numpy()]
    np.testing.assert_allclose(band[:, 0].numpy(), np.stack(ref), atol=1e-6)  # a float32 kernel
    assert not DetailBand(3.0).state_dict()  # no weights: adding it changes no weight file


def test_band_of_a_constant_is_zero_and_scripting_gives_the_same():
    band = DetailBand(5.5)
    x = torch.rand(1, 1, 6, 8, 5)
    torch.testing.assert_close(band(torch.full_like(x, 0.7)), torch.zeros_like(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.jit.script(band)(x), band(x))


@pytest.mark.parametrize("fwhm", [0, -1.0, float("nan"), 65, True, "6"])
def test_bad_fwhm_is_refused_quoting_the_value(fwhm):
    quoted = r"detail_fwhm must be in \(0, 64\] voxels, got " + repr(fwhm).replace("(", r"\(")
    with pytest.raises(ValueError, match=quoted):
        DetailBand(fwhm)


def test_building_the_shipped_networks_leaves_torch_dynamo_unimported():
    """The weight check builds the network on the meta device; a kernel made by ``torch.arange`` there went through
    ``torch._refs`` and imported ``torch._dynamo`` (0.9 s of every command's start-up)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from asfe3d.fusion.weights import build_network, shipped_weights\n"
            "for mode in ('volume', 'slice'):\n"
            "    net, _ = build_network(shipped_weights(mode))\n"
            "    assert net.detail_injection > 0, mode\n"
            "print('torch._dynamo' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"]
