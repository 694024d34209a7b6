"""The one inference step: :class:`asfe3d.inferers.FusionInferer` (stateless; used by the command and the bundle)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer, SlidingWindowInferer

from asfe3d.inferers import FusionInferer

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "asfe3d_mri_pet_fusion" / "configs"


def _recording_net(seen):
    def net(x):
        seen.append(tuple(x.shape))
        return x[:, :1] * 2 + x[:, 1:] * 0.5

    return net


def test_volume_window_is_clipped_per_axis_and_equals_monai():
    seen = []
    x = torch.rand(1, 2, 10, 20, 6, generator=torch.Generator().manual_seed(0))
    out = FusionInferer("volume", roi_size=(16, 8, 16))(x, _recording_net(seen))
    assert {s[2:] for s in seen} == {(10, 8, 6)} and out.shape == (1, 1, 10, 20, 6)
    ref = SlidingWindowInferer(roi_size=(10, 8, 6), overlap=0.25, mode="gaussian", sw_batch_size=4)(
        x, _recording_net([]))
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    # <= 0: the whole axis; "auto": the whole (small) volume in one pass
    assert FusionInferer("volume", roi_size=(0, -1, 4)).window((10, 20, 6)) == (10, 20, 4)
    assert FusionInferer("volume").window((10, 20, 6)) == (10, 20, 6)
    assert FusionInferer("volume").window((300, 300, 300)) == (128, 128, 128)


def test_slice_axis_auto_from_the_affine_and_per_call():
    seen = []
    affine = torch.tensor([[0, 0, 2.0, 0], [0, 2.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])  # voxel axis 0 = S-I
    x = MetaTensor(torch.rand(1, 2, 5, 7, 9), affine=affine)
    inferer = FusionInferer("slice", sw_batch_size=100)
    out = inferer(x, _recording_net(seen))
    assert out.shape == (1, 1, 5, 7, 9) and seen == [(5, 2, 7, 9)]  # 5 slices of 7x9
    seen.clear()
    out1 = inferer(x, _recording_net(seen), slice_axis=1)  # this call's axis, the inferer's unchanged
    assert seen == [(7, 2, 5, 9)] and inferer.slice_axis == "auto"
    ref = SliceInferer(roi_size=(-1, -1), spatial_dim=1, sw_batch_size=100)(x.as_tensor(), _recording_net([]))
    torch.testing.assert_close(out1.as_tensor() if isinstance(out1, MetaTensor) else out1, ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs a MetaTensor"):
        inferer(torch.rand(1, 2, 5, 7, 9), _recording_net([]))


def test_calls_never_change_the_inferer():
    """Stateless: after calls on different shapes and axes, every setting is as constructed."""
    for inferer in (FusionInferer("volume", roi_size=(4, 4, 4)), FusionInferer("slice", slice_axis="auto")):
        before = copy.deepcopy(vars(inferer))
        for shape in ((1, 2, 6, 5, 3), (1, 2, 3, 8, 9)):
            x = MetaTensor(torch.rand(*shape), affine=torch.eye(4))
            inferer(x, _recording_net([]))
            inferer(x, _recording_net([]), slice_axis=0)
        assert vars(inferer) == before


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "2d"}, "mode must be one of"), ({"slice_axis": 3}, "slice_axis must be"),
    ({"roi_size": "whole"}, "roi_size must be"), ({"roi_size": (8, 8)}, "roi_size must be"),
    ({"overlap": 1.0}, "overlap must be"), ({"sw_batch_size": 0}, "sw_batch_size must be"),
])
def test_bad_settings_are_refused_quoting_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FusionInferer(**kwargs)


def test_command_and_bundle_use_the_same_inferer_class():
    """``asfe3d fuse`` (AsfeFusionMethod) and both bundle inference configs name asfe3d.inferers.FusionInferer."""
    from asfe3d.fusion.learned import AsfeFusionMethod
    from asfe3d.networks.nets import ASFEFusion

    for name in ("inference.json", "inference_slice.json"):
        inferer = json.loads((CONFIGS / name).read_text())["inferer"]
        assert inferer["_target_"] == "asfe3d.inferers.FusionInferer", name
        assert inferer["mode"] == ("slice" if "slice" in name else "volume")
    for mode, dims in (("slice", 2), ("volume", 3)):
        method = AsfeFusionMethod(mode, net=ASFEFusion(spatial_dims=dims, preset="efficient"), device="cpu")
        assert type(method.inferer) is FusionInferer and method.inferer.mode == mode


def test_fusion_method_slice_axis_is_per_call():
    """A slice-wise method fused along another axis keeps its own axis (``Fuse`` no longer sets it)."""
    from asfe3d.fusion.learned import AsfeFusionMethod
    from asfe3d.transforms import Fuse

    seen = []

    class Net(torch.nn.Module):
        spatial_dims = 2

        def forward(self, x):
            seen.append(tuple(x.shape))
            return x[:, :1]

    method = AsfeFusionMethod("slice", net=Net(), device="cpu", sw_batch_size=1000)
    rng = np.random.default_rng(0)
    img = MetaTensor(torch.from_numpy(rng.random((2, 4, 6, 8)).astype(np.float32)), affine=torch.eye(4))
    Fuse(method, slice_axis=1)(img)
    assert seen == [(6, 2, 4, 8)] and method.slice_axis == 2
    seen.clear()
    Fuse(method)(img)  # auto: identity affine, axial = voxel axis 2
    assert seen == [(8, 2, 4, 6)] and method.slice_axis == 2


@pytest.mark.parametrize("axis", [0, 2])
def test_slice_mode_adds_the_volume_detail_band_across_slices(axis):
    """A 2D network with a detail injection: slices without it, then the MRI's band of the whole volume."""
    from asfe3d.networks.nets import ASFEFusion

    torch.manual_seed(0)
    net = ASFEFusion(spatial_dims=2, detail_injection=0.5, detail_fwhm=3.0).eval()
    x = 0.3 + 0.4 * torch.rand(1, 2, 6, 7, 8)  # mid-range, so the clamp stays off
    with torch.no_grad():
        out = FusionInferer("slice", slice_axis=axis)(MetaTensor(x, affine=torch.eye(4)), net)
        plain = SliceInferer(roi_size=(-1, -1), spatial_dim=axis)(x, lambda s: net(s, inject_detail=False))
        band = net.detail_band(x[:, :1])  # the 3D band: the same kernel along all three axes
    torch.testing.assert_close(out.as_tensor() if isinstance(out, MetaTensor) else out, plain + 0.5 * band,
                               rtol=0, atol=1e-5)
    # an MRI that changes only across slices: a slice's own band is zero, the volume's is not
    ramp = torch.linspace(0.3, 0.7, x.shape[2 + axis]).view([-1 if d == axis else 1 for d in range(3)])
    flat = x.clone()
    flat[:, 0] = ramp.expand(6, 7, 8) ** 3
    with torch.no_grad():
        across = FusionInferer("slice", slice_axis=axis)(flat, net) - SliceInferer(
            roi_size=(-1, -1), spatial_dim=axis)(flat, lambda s: net(s, inject_detail=False))
        in_plane = SliceInferer(roi_size=(-1, -1), spatial_dim=axis)(flat, net) - SliceInferer(
            roi_size=(-1, -1), spatial_dim=axis)(flat, lambda s: net(s, inject_detail=False))
    assert in_plane.abs().max() < 1e-6 < across.abs().max()


def test_slice_mode_without_injection_is_the_plain_slice_inferer():
    from asfe3d.networks.nets import ASFEFusion

    net = ASFEFusion(spatial_dims=2).eval()  # detail_injection 0 (the default)
    x = torch.rand(1, 2, 5, 6, 4)
    with torch.no_grad():
        torch.testing.assert_close(FusionInferer("slice", slice_axis=2, sw_batch_size=1)(x, net),
                                   SliceInferer(roi_size=(-1, -1), spatial_dim=2)(x, net), rtol=0, atol=0)
