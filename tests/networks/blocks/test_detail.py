"""DetailBand: the Gaussian high-pass of detail injection, for slices and volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from asfe3d.networks import DetailBand
from asfe3d.networks.blocks.detail import blur_per_axis


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


def test_per_axis_blur_matches_scipy_on_channels_and_strided_input():
    """Each axis blurred in place of memory (no axis moved): several channels, a width per axis, a 0 width left
    alone, and a non-contiguous input give scipy's replicate-padded Gaussian; the result is contiguous."""
    x = torch.rand(2, 3, 11, 8, 9, dtype=torch.float64).transpose(2, 4)  # (2, 3, 9, 8, 11), strided
    fwhm = [2.0, 0.0, 4.5]
    out = blur_per_axis(x, fwhm)
    sig = [f / 2.3548200450309493 for f in fwhm]
    ref = np.empty(tuple(x.shape))
    for b in range(2):
        for c in range(3):
            v = x[b, c].numpy()
            for axis, s in enumerate(sig):
                if s > 0:  # radius ceil(3 sigma): truncate at that radius / sigma
                    v = ndimage.gaussian_filter1d(v, s, axis=axis, mode="nearest",
                                                  truncate=max(1, int(np.ceil(3 * s))) / s)
            ref[b, c] = v
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)
    assert out.is_contiguous() and out.shape == x.shape
    with pytest.raises(ValueError, match=r"need one FWHM per spatial axis"):
        blur_per_axis(x, [2.0, 2.0])


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


@pytest.mark.parametrize("mode", ["volume", "slice"])
def test_shipped_networks_run_under_cpu_autocast(mode):
    """Under ``torch.autocast("cpu", bfloat16)`` (a MONAI engine's ``amp=True`` on a CPU build) the detail band's
    banded matrix failed: "scatter(): Expected self.dtype to be equal to src.dtype"."""
    from asfe3d.fusion.weights import build_network, shipped_weights

    net, _ = build_network(shipped_weights(mode))
    x = torch.rand(1, 2, 20, 24, 12) if mode == "volume" else torch.rand(1, 2, 32, 32)
    with torch.no_grad():
        plain = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = net(x)
    assert mixed.shape == plain.shape and torch.isfinite(mixed).all()
    assert float((mixed.float() - plain).abs().max()) < 0.1  # bfloat16 keeps about 3 significant digits
