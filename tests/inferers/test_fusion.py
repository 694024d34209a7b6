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

from asfe3d.inferers import FusionInferer, FusionSteps

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
    # a whole head is fused in the windows the weights were chosen with, not in one pass
    assert FusionInferer("volume").window((200, 271, 193)) == (128, 128, 128)


def test_slice_axis_auto_from_the_affine_and_per_call():
    seen = []
    affine = torch.tensor([[0, 0, 2.0, 0], [0, 2.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])  # voxel axis 0 = S-I
    x = MetaTensor(torch.rand(1, 2, 5, 7, 9), affine=affine)
    inferer = FusionInferer("slice", sw_batch_size=100)
    out = inferer(x, _recording_net(seen))
    # run in RAS voxel order (x, y, z = stored axes 2, 1, 0), as the networks were trained: 5 axial slices of 9x7
    assert out.shape == (1, 1, 5, 7, 9) and seen == [(5, 2, 9, 7)]
    seen.clear()
    out1 = inferer(x, _recording_net(seen), slice_axis=1)  # this call's axis (stored), the inferer's unchanged
    assert seen == [(7, 2, 9, 5)] and inferer.slice_axis == "auto"
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
        # the band in voxels (no width in mm): the network's own kernel along all three axes
        out = FusionInferer("slice", slice_axis=axis, steps=FusionSteps(detail_fwhm_mm=None))(MetaTensor(x, affine=torch.eye(4)), net)
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


def _net3(gain=0.5):
    from asfe3d.networks.nets import ASFEFusion

    torch.manual_seed(0)
    return ASFEFusion(spatial_dims=3, detail_injection=gain, detail_fwhm=3.0).eval()


def test_volume_mode_takes_the_band_in_mm_from_the_grid():
    """The band's width follows the voxel size per axis: 6 mm is 12, 6 and 3 voxels on a 0.5 x 1 x 2 mm grid."""
    net = _net3()
    x = torch.rand(1, 2, 10, 9, 8)
    affine = torch.diag(torch.tensor([0.5, 1.0, 2.0, 1.0], dtype=torch.float64))
    with torch.no_grad():
        out = FusionInferer("volume", steps=FusionSteps(detail_fwhm_mm=6.0))(MetaTensor(x, affine=affine), net)
        expected = net(x, True, [12.0, 6.0, 3.0])
        given = FusionInferer("volume", steps=FusionSteps(detail_fwhm_mm=6.0))(x, net, spacing=(0.5, 1.0, 2.0))  # plain tensor + spacing
        voxels = FusionInferer("volume", steps=FusionSteps(detail_fwhm_mm=6.0))(x, net)  # no grid known: the network's own band
        default = FusionInferer("volume")(MetaTensor(x, affine=affine), net)  # no width in mm: the network's own
    out = out.as_tensor() if isinstance(out, MetaTensor) else out
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(given, expected, rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(voxels, net(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(default.as_tensor() if isinstance(default, MetaTensor) else default, net(x),
                                   rtol=0, atol=1e-6)
    assert (out - voxels).abs().max() > 1e-3  # the width matters


@pytest.mark.parametrize("axis", [0, 2])
def test_slice_mode_adds_the_band_in_mm(axis):
    from asfe3d.networks.blocks.detail import detail_band_mm
    from asfe3d.networks.nets import ASFEFusion

    torch.manual_seed(0)
    net = ASFEFusion(spatial_dims=2, detail_injection=0.5, detail_fwhm=3.0).eval()
    x = 0.3 + 0.4 * torch.rand(1, 2, 6, 7, 8)
    with torch.no_grad():
        out = FusionInferer("slice", slice_axis=axis, steps=FusionSteps(detail_fwhm_mm=6.0))(x, net, spacing=(1.5, 1.0, 3.0))
        plain = SliceInferer(roi_size=(-1, -1), spatial_dim=axis)(x, lambda s: net(s, inject_detail=False))
        band = detail_band_mm(x[:, :1], (1.5, 1.0, 3.0), 6.0)
    torch.testing.assert_close(out, (plain + 0.5 * band).clamp(0, 1), rtol=0, atol=1e-5)


def test_band_in_mm_matches_scipy_per_axis():
    from scipy import ndimage

    from asfe3d.networks.blocks.detail import detail_band_mm

    x = torch.rand(1, 1, 15, 12, 9, dtype=torch.float64)
    band = detail_band_mm(x, (0.8, 1.0, 2.0), 6.0)[0, 0].numpy()
    sigma = [6.0 / s / 2.3548200450309493 for s in (0.8, 1.0, 2.0)]
    # scipy's radius: truncate * sigma rounded; ours: ceil(3 sigma); the same taps when truncate gives that radius
    expected = x[0, 0].numpy() - ndimage.gaussian_filter(
        x[0, 0].numpy(), sigma, mode="nearest", radius=[int(np.ceil(3 * s)) for s in sigma])
    np.testing.assert_allclose(band, expected, atol=1e-10)


def test_steps_must_be_one_fusion_steps_and_the_default_takes_none():
    """The steps after the network are one validated, frozen object; ``FusionInferer()`` takes none of them."""
    import dataclasses

    assert FusionInferer("volume").steps == FusionSteps()
    assert (FusionSteps().pet_consistency, FusionSteps().detail_steer, FusionSteps().pet_detail_select) == (0.0, None, 0.0)
    with pytest.raises(ValueError, match=r"steps must be a FusionSteps or None, got \{'pet_consistency': 0.5\}"):
        FusionInferer("volume", steps={"pet_consistency": 0.5})
    with pytest.raises(TypeError):
        FusionInferer("volume", pet_consistency=0.5)  # the step settings are not the inferer's own arguments
    steps = FusionSteps(pet_consistency=0.5, pet_consistency_coarse=[1.5, 0.6875])  # a JSON list is kept as a tuple
    assert steps.pet_consistency_coarse == (1.5, 0.6875)
    record = steps.as_record()  # what a completion record says: every field, pairs as lists
    assert list(record) == [f.name for f in dataclasses.fields(FusionSteps)]
    assert record["pet_consistency_coarse"] == [1.5, 0.6875] and json.loads(json.dumps(record)) == record
    with pytest.raises(dataclasses.FrozenInstanceError):
        steps.pet_consistency = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"pet_consistency must be a number in \[0, 1\], got 2"):
        dataclasses.replace(steps, pet_consistency=2)  # a changed copy is checked again


def test_bad_spacing_refused_with_the_values():
    net = _net3()
    x = torch.rand(1, 2, 6, 6, 6)
    with pytest.raises(ValueError, match=r"spacing must be three voxel sizes > 0 \(mm\), got \[1.0, 0.0, 1.0\]"):
        FusionInferer("volume", steps=FusionSteps(detail_fwhm_mm=6.0))(x, net, spacing=(1.0, 0.0, 1.0))
    flat = MetaTensor(x, affine=torch.diag(torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"the input's affine gives a voxel size of \[1.0, 0.0, 1.0\]"):
        FusionInferer("volume", steps=FusionSteps(detail_fwhm_mm=6.0))(flat, net)

    # a collated batch of two grids: the first item's voxel size was used for both (the second fused off by 0.12)
    two = MetaTensor(torch.rand(2, 2, 6, 6, 6), affine=torch.stack(
        [torch.diag(torch.tensor([s, s, s, 1.0], dtype=torch.float64)) for s in (0.8, 2.0)]))
    with pytest.raises(ValueError, match=r"different voxel sizes \[\[0.8, 0.8, 0.8\], \[2.0, 2.0, 2.0\]\]"):
        FusionInferer("volume", steps=FusionSteps(detail_fwhm_mm=6.0))(two, net)
    same = MetaTensor(torch.rand(2, 2, 6, 6, 6), affine=torch.stack([torch.eye(4, dtype=torch.float64)] * 2))
    assert FusionInferer("volume", steps=FusionSteps(detail_fwhm_mm=6.0))(same, net).shape == (2, 1, 6, 6, 6)


class _PoolNet(torch.nn.Module):
    """A network with the stem-stride split of ASFEFusion: logits = the MRI average-pooled by 2 (both channels),
    finish = their trilinear upsampling. On a linear ramp that is the ramp itself, away from the borders."""

    stem_stride = 2

    def coarse(self, x):
        x = torch.nn.functional.pad(x, [0, x.shape[4] % 2, 0, x.shape[3] % 2, 0, x.shape[2] % 2], mode="replicate")
        low = torch.nn.functional.avg_pool3d(x[:, :1], 2)
        return torch.cat([low, low], dim=1)

    def finish(self, wr, x, **kwargs):
        up = torch.nn.functional.interpolate(wr[:, :1], scale_factor=2, mode="trilinear", align_corners=False)
        return up[:, :, :x.shape[2], :x.shape[3], :x.shape[4]]

    def forward(self, x):
        return self.finish(self.coarse(x), x)


@pytest.mark.parametrize("spatial", [(40, 33, 27), (41, 32, 35)])
def test_stitched_logits_stay_on_the_input_grid(spatial):
    """Every window's logits land on the whole volume's stride-2 grid: a window starting between two logit voxels
    would shift them by half a voxel, which a ramp shows as an offset."""
    ramp = sum(torch.arange(n, dtype=torch.float64).reshape([-1 if i == a else 1 for i in range(3)]) * (a + 1)
               for a, n in enumerate(spatial))
    x = torch.stack([ramp, ramp])[None].float()
    inferer = FusionInferer("volume", roi_size=(16, 16, 16), stitch="logits")
    assert inferer.stitching(_PoolNet(), spatial) == "logits"
    out = inferer(x, _PoolNet())
    assert out.shape == (1, 1, *spatial)
    inner = (slice(None), slice(None)) + tuple(slice(1, n - 2) for n in spatial)
    torch.testing.assert_close(out[inner], x[:, :1][inner], rtol=0, atol=1e-3)


def test_stitched_logits_of_asfe_fusion_match_its_fused_windows_closely():
    torch.manual_seed(0)
    from asfe3d.networks import ASFEFusion

    net = ASFEFusion(3, detail_injection=0.5).eval()
    base = torch.rand(1, 1, 12, 12, 12)
    x = torch.nn.functional.interpolate(base, size=(70, 52, 44), mode="trilinear").repeat(1, 2, 1, 1, 1)
    x[:, 1] = x[:, 1].flip(0)
    with torch.no_grad():
        logits = FusionInferer("volume", roi_size=(32, 32, 32), stitch="logits")(x, net)
        outputs = FusionInferer("volume", roi_size=(32, 32, 32), stitch="output")(x, net)
    assert logits.shape == outputs.shape == (1, 1, 70, 52, 44)
    assert float((logits - outputs).abs().mean()) < 0.01


def test_stitch_modes_choose_and_refuse():
    from asfe3d.networks import ASFEFusion

    net = ASFEFusion(3).eval()
    auto = FusionInferer("volume", stitch="auto")
    assert auto.stitching(net, (200, 271, 193)) == "logits"
    assert auto.stitching(net, (90, 108, 90)) == "one pass"  # one window: the plain pass
    assert auto.stitching(_recording_net([]), (200, 271, 193)) == "output"  # a network without the split
    assert FusionInferer("volume", roi_size=(100, 100, 100), stitch="auto").stitching(net, (200, 271, 193)) == "output"
    assert FusionInferer("volume").stitching(net, (200, 271, 193)) == "output"  # the default (until chosen)
    with pytest.raises(ValueError, match=r"scan steps \(75, 75, 75\) that are multiples of the network's stem stride 2"):
        FusionInferer("volume", roi_size=(100, 100, 100), stitch="logits").stitching(net, (200, 271, 193))
    with pytest.raises(ValueError, match="needs a network with coarse"):
        FusionInferer("volume", stitch="logits").stitching(_recording_net([]), (200, 271, 193))
    with pytest.raises(ValueError, match=r"stitch must be one of .* got 'blend'"):
        FusionInferer("volume", stitch="blend")


def test_stitched_logits_keep_the_metatensor_and_one_window_is_one_pass():
    from asfe3d.networks import ASFEFusion

    torch.manual_seed(0)
    net = ASFEFusion(3).eval()
    affine = torch.diag(torch.tensor([0.9, 0.9, 1.1, 1.0], dtype=torch.float64))
    x = MetaTensor(torch.rand(1, 2, 40, 24, 20), affine=affine)
    with torch.no_grad():
        out = FusionInferer("volume", roi_size=(24, 24, 24), stitch="logits")(x, net)
        one = FusionInferer("volume", stitch="logits")(x, net)
        plain = FusionInferer("volume", stitch="output")(x, net)
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, x.affine) and out.shape == (1, 1, 40, 24, 20)
    assert torch.equal(one, plain)


def test_working_size_coarsens_only_the_finer_axes():
    inferer = FusionInferer("volume", min_voxel_mm=1.0)
    assert inferer.working_size((40, 30, 20), (0.7, 0.7, 1.2)) == (28, 21, 20)  # floor: never finer than 1 mm
    assert inferer.working_size((40, 30, 20), (1.0, 2.0, 1.0)) == (40, 30, 20)
    assert inferer.working_size((40, 30, 20), None) == (40, 30, 20)  # no grid known: the input's own
    assert FusionInferer("volume").working_size((40, 30, 20), (0.5, 0.5, 0.5)) == (40, 30, 20)


def test_band_in_mm_only_on_grids_finer_than_its_gate():
    """``detail_fwhm_max_voxel_mm``: the band in mm on a grid with an axis finer than the gate, the network's own
    band (``None``) on the others; without a gate, on every grid."""
    x = torch.zeros(1, 2, 8, 8, 8)
    gated = FusionInferer("volume", steps=FusionSteps(detail_fwhm_mm=6.0, detail_fwhm_max_voxel_mm=0.8))
    assert gated.detail_fwhm(x, spacing=(0.75, 1.0, 1.0)) == [8.0, 6.0, 6.0]
    assert gated.detail_fwhm(x, spacing=(0.8, 0.88, 1.0)) is None  # no axis finer than 0.8 mm: the voxels' band
    assert gated.detail_fwhm(x, spacing=(0.7999999, 1.0, 1.0)) is None  # 0.8 mm as an affine may give it
    assert FusionInferer("volume", steps=FusionSteps(detail_fwhm_mm=6.0)).detail_fwhm(x, spacing=(0.8, 1.5, 2.0)) == [7.5, 4.0, 3.0]
    assert gated.describe()["detail_fwhm_max_voxel_mm"] == 0.8
    with pytest.raises(ValueError, match=r"detail_fwhm_max_voxel_mm must be None or a number > 0 \(mm\), got -1"):
        FusionInferer("volume", steps=FusionSteps(detail_fwhm_mm=6.0, detail_fwhm_max_voxel_mm=-1))


def test_the_method_takes_the_band_gate_with_the_auto_band():
    from asfe3d.defaults import DETAIL_FWHM_MAX_VOXEL_MM_BY_MODE
    from asfe3d.fusion.learned import AsfeFusionMethod, mode_steps
    from asfe3d.networks.nets import ASFEFusion

    for mode, dims in (("slice", 2), ("volume", 3)):
        auto = AsfeFusionMethod(mode, net=ASFEFusion(spatial_dims=dims), device="cpu")
        assert auto.inferer.steps.detail_fwhm_max_voxel_mm == DETAIL_FWHM_MAX_VOXEL_MM_BY_MODE[mode]
        given = AsfeFusionMethod(mode, net=ASFEFusion(spatial_dims=dims), device="cpu", steps=mode_steps(mode, detail_fwhm_mm=6.0))
        assert (given.inferer.steps.detail_fwhm_mm, given.describe()["detail_fwhm_max_voxel_mm"]) == (6.0, None)


def test_working_voxel_brings_the_finer_axes_to_its_own_size():
    """``working_voxel_mm``: only axes finer than ``min_voxel_mm`` change, and they go to ``working_voxel_mm``."""
    inferer = FusionInferer("volume", min_voxel_mm=0.8, working_voxel_mm=0.88)
    assert inferer.working_size((44, 30, 20), (0.7, 0.85, 0.8)) == (35, 30, 20)  # floor(44 * 0.7 / 0.88) = 35
    assert inferer.working_size((44, 30, 20), (0.81, 0.85, 1.0)) == (44, 30, 20)  # 0.8-0.88 mm: the own grid
    assert FusionInferer("volume", min_voxel_mm=0.8).working_size((44, 30, 20), (0.7, 1, 1)) == (38, 30, 20)
    assert inferer.describe()["working_voxel_mm"] == 0.88
    # the network sees the working grid's size: a 0.7 mm volume reaches it at 0.88 mm along the first axis
    seen = []

    def network(t):
        seen.append(tuple(t.shape[2:]))
        return t[:, :1]

    out = FusionInferer("volume", min_voxel_mm=0.8, working_voxel_mm=0.88, roi_size=(0, 0, 0))(
        torch.rand(1, 2, 44, 12, 10), network, spacing=(0.7, 1.0, 1.0))
    assert seen == [(35, 12, 10)] and tuple(out.shape) == (1, 1, 44, 12, 10)


@pytest.mark.parametrize("kwargs", [{"working_voxel_mm": 0.9}, {"min_voxel_mm": 0.8, "working_voxel_mm": 0.7},
                                    {"min_voxel_mm": 0.8, "max_voxel_mm": 1.0, "working_voxel_mm": 1.2}])
def test_working_voxel_outside_min_and_max_refused_quoting_the_values(kwargs):
    with pytest.raises(ValueError, match=r"working_voxel_mm must be between min_voxel_mm and max_voxel_mm") as err:
        FusionInferer("volume", **kwargs)
    assert f"working_voxel_mm={kwargs['working_voxel_mm']!r}" in str(err.value)


def test_working_voxel_bad_value_refused_quoting_it():
    with pytest.raises(ValueError, match=r"working_voxel_mm must be None or a number > 0 \(mm\), got '1'"):
        FusionInferer("volume", min_voxel_mm=0.8, working_voxel_mm="1")


@pytest.mark.parametrize("mode", ["volume", "slice"])
def test_working_grid_gives_back_the_mri_exactly_for_an_mri_copy(mode):
    """A network that copies its MRI gives the MRI back: what the working grid removed is added back."""
    torch.manual_seed(0)
    x = torch.rand(1, 2, 30, 27, 20)
    affine = torch.diag(torch.tensor([0.7, 0.8, 1.3, 1.0], dtype=torch.float64))
    inferer = FusionInferer(mode, min_voxel_mm=1.0, roi_size=(0, 0, 0), slice_axis=2)  # volume: one pass
    seen = []

    def mri_copy(t):
        seen.append(tuple(t.shape))
        return t[:, :1]

    out = inferer(MetaTensor(x, affine=affine), mri_copy)
    assert isinstance(out, MetaTensor) and out.shape == (1, 1, 30, 27, 20) and torch.equal(out.affine, affine)
    torch.testing.assert_close(out.as_tensor(), x[:, :1], rtol=0, atol=1e-6)
    # the network saw the 1 mm grid: 30 x 0.7 = 21 mm -> 21 voxels, 27 x 0.8 -> 21, 20 x 1.3 kept
    assert {s[2:] for s in seen} == ({(21, 21, 20)} if mode == "volume" else {(21, 21)})


def test_working_grid_keeps_the_geometry_of_a_smooth_image():
    """The PET's smooth part comes back where it was: a PET copy of a ramp is the ramp, away from the borders."""
    n, voxel = (40, 34, 12), (0.7, 0.75, 1.0)
    ramp = sum(torch.arange(k, dtype=torch.float32).reshape([-1 if i == a else 1 for i in range(3)]) * v / 60
               for a, (k, v) in enumerate(zip(n, voxel)))
    x = torch.stack([torch.zeros(n), ramp])[None]
    out = FusionInferer("volume", min_voxel_mm=1.0)(x, lambda t: t[:, 1:], spacing=voxel)
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4), slice(None))
    torch.testing.assert_close(out[inner], x[:, 1:][inner], rtol=0, atol=1e-4)


def test_working_size_refines_only_the_coarser_axes():
    inferer = FusionInferer("volume", max_voxel_mm=1.0)
    assert inferer.working_size((40, 30, 20), (2.0, 1.0, 1.25)) == (80, 30, 25)  # ceil: never coarser than 1 mm
    assert inferer.working_size((40, 30, 20), (0.7, 0.9, 1.0)) == (40, 30, 20)
    both = FusionInferer("volume", min_voxel_mm=1.0, max_voxel_mm=1.0)
    assert both.working_size((40, 30, 20), (0.5, 2.0, 1.0)) == (20, 60, 20)


def test_max_voxel_mm_fuses_a_coarse_grid_finer_and_gives_the_mri_back():
    """A network that copies its MRI gives the MRI back on a 2 mm grid fused on a 1 mm one; the network sees the
    finer grid, once (the working grid is not regridded again)."""
    torch.manual_seed(0)
    x = torch.rand(1, 2, 12, 10, 9)
    affine = torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0], dtype=torch.float64))
    seen = []

    def mri_copy(t):
        seen.append(tuple(t.shape))
        return t[:, :1]

    out = FusionInferer("volume", max_voxel_mm=1.0, roi_size=(0, 0, 0))(MetaTensor(x, affine=affine), mri_copy)
    assert isinstance(out, MetaTensor) and out.shape == (1, 1, 12, 10, 9) and torch.equal(out.affine, affine)
    torch.testing.assert_close(out.as_tensor(), x[:, :1], rtol=0, atol=1e-6)
    assert seen == [(1, 2, 24, 20, 9)]


def test_max_voxel_mm_keeps_a_smooth_pet_in_place():
    """A PET copy of a ramp on a 2 mm grid comes back as the ramp (a half-voxel shift would move it by 1 / 150)."""
    n, voxel = (30, 24, 10), (2.0, 2.0, 1.0)
    ramp = sum(torch.arange(k, dtype=torch.float32).reshape([-1 if i == a else 1 for i in range(3)]) * v / 150
               for a, (k, v) in enumerate(zip(n, voxel)))
    x = torch.stack([torch.zeros(n), ramp])[None]
    out = FusionInferer("volume", max_voxel_mm=1.0, roi_size=(0, 0, 0))(x, lambda t: t[:, 1:], spacing=voxel)
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2), slice(None))
    torch.testing.assert_close(out[inner], x[:, 1:][inner], rtol=0, atol=1e-5)


def test_max_below_min_voxel_refused_quoting_both():
    with pytest.raises(ValueError, match=r"max_voxel_mm must be at least min_voxel_mm, got max_voxel_mm=0.8 and "
                                         r"min_voxel_mm=1.0"):
        FusionInferer("volume", min_voxel_mm=1.0, max_voxel_mm=0.8)


def test_window_in_mm_on_coarse_grids_only():
    """``roi_mm``: at most that many mm, a multiple of 16 voxels, never more than ``roi_size``; no grid, no change."""
    inferer = FusionInferer("volume", roi_mm=128.0)
    assert inferer.window((200, 200, 200), (1.0, 1.0, 1.0)) == (128, 128, 128)
    assert inferer.window((200, 200, 200), (0.7, 0.7, 0.7)) == (128, 128, 128)
    assert inferer.window((200, 200, 200), (2.0, 1.5, 3.0)) == (64, 80, 48)
    assert inferer.window((40, 200, 200), (2.0, 2.0, 2.0)) == (40, 64, 64)  # clipped to the volume
    assert inferer.window((200, 200, 200)) == (128, 128, 128)
    assert FusionInferer("volume", roi_mm=8.0).window((200, 200, 200), (1.0, 1.0, 1.0)) == (16, 16, 16)
    assert inferer.describe()["roi_mm"] == 128.0


def test_window_in_mm_windows_a_small_coarse_head():
    """A 2 mm volume that fits one 128-voxel window is windowed by ``roi_mm`` (both stitchings), and logits
    stitching still fits the stem's stride."""
    from asfe3d.networks import ASFEFusion

    torch.manual_seed(0)
    net = ASFEFusion(3).eval()
    x = MetaTensor(torch.rand(1, 2, 40, 36, 34), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    windowed = FusionInferer("volume", roi_mm=64.0, stitch="auto")
    assert windowed.stitched(net, x) == "logits"
    assert FusionInferer("volume", stitch="auto").stitched(net, x) == "one pass"
    with torch.no_grad():
        out = windowed(x, net)
        plain = FusionInferer("volume", stitch="auto")(x, net)
    assert out.shape == (1, 1, 40, 36, 34) and not torch.equal(out, plain)


@pytest.mark.parametrize("name", ["max_voxel_mm", "roi_mm"])
@pytest.mark.parametrize("value", [0, -2.0, float("inf"), False, "2"])
def test_bad_max_voxel_and_roi_mm_refused_quoting_the_value(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be None or a number > 0 \(mm\), got ") as err:
        FusionInferer("volume", **{name: value})
    assert str(err.value).endswith(repr(value))


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), True, "1"])
def test_bad_min_voxel_refused_quoting_the_value(value):
    with pytest.raises(ValueError, match=r"min_voxel_mm must be None or a number > 0 \(mm\), got ") as err:
        FusionInferer("volume", min_voxel_mm=value)
    assert str(err.value).endswith(repr(value))


def test_bundle_inferers_take_the_commands_settings():
    """Each bundle config's inferer has the command's settings for its mode (working grid, stitching, band)."""
    from asfe3d.defaults import (
        DEFAULT_STITCH,
        DETAIL_FWHM_MAX_VOXEL_MM_BY_MODE,
        DETAIL_FWHM_MM_BY_MODE,
        MIN_VOXEL_MM_BY_MODE,
        WORKING_VOXEL_MM_BY_MODE,
    )

    for name, mode in (("inference.json", "volume"), ("inference_slice.json", "slice")):
        inferer = json.loads((CONFIGS / name).read_text())["inferer"]
        assert inferer.get("min_voxel_mm") == MIN_VOXEL_MM_BY_MODE[mode], name
        assert inferer.get("working_voxel_mm") == WORKING_VOXEL_MM_BY_MODE[mode], name
        steps = inferer.get("steps", {})
        assert steps.get("_target_") == "asfe3d.inferers.FusionSteps", name
        assert steps.get("detail_fwhm_mm") == DETAIL_FWHM_MM_BY_MODE[mode], name
        assert steps.get("detail_fwhm_max_voxel_mm") == DETAIL_FWHM_MAX_VOXEL_MM_BY_MODE[mode], name
        if mode == "volume":
            assert inferer.get("stitch", "output") == DEFAULT_STITCH, name


def test_the_command_fuses_slice_mode_on_its_working_grid():
    from asfe3d.fusion.learned import AsfeFusionMethod
    from asfe3d.networks.nets import ASFEFusion

    slice_mode = AsfeFusionMethod("slice", net=ASFEFusion(spatial_dims=2), device="cpu")
    volume = AsfeFusionMethod("volume", net=ASFEFusion(spatial_dims=3), device="cpu")
    assert slice_mode.inferer.min_voxel_mm == 1.0 and slice_mode.describe()["min_voxel_mm"] == 1.0
    assert volume.inferer.min_voxel_mm is None
    assert AsfeFusionMethod("slice", net=ASFEFusion(spatial_dims=2), min_voxel_mm=None).inferer.min_voxel_mm is None
    # "auto" takes the mode's working grid with it; a number given is the working grid itself
    from asfe3d.defaults import WORKING_VOXEL_MM_BY_MODE

    for mode, dims in (("slice", 2), ("volume", 3)):
        auto = AsfeFusionMethod(mode, net=ASFEFusion(spatial_dims=dims), device="cpu")
        assert auto.inferer.working_voxel_mm == WORKING_VOXEL_MM_BY_MODE[mode]
        assert auto.describe()["working_voxel_mm"] == WORKING_VOXEL_MM_BY_MODE[mode]
        given = AsfeFusionMethod(mode, net=ASFEFusion(spatial_dims=dims), device="cpu", min_voxel_mm=1.2)
        assert (given.inferer.min_voxel_mm, given.inferer.working_voxel_mm) == (1.2, None)


def test_consistency_step_gives_the_pets_low_band_at_full_strength():
    """``s = 1`` on a network that returns a constant: ``F' = c + G(PET - c) = G * PET`` (the Gaussian of 6 mm
    taken in mm along each axis), the finer band of ``F`` (none here) kept."""
    from asfe3d.inferers.fusion import DETAIL_FWHM_MM
    from asfe3d.networks.blocks.detail import blur_per_axis

    torch.manual_seed(0)
    x = torch.rand(1, 2, 24, 20, 12) * 0.6 + 0.2
    voxel = (1.0, 1.5, 2.0)
    constant = FusionInferer("volume", steps=FusionSteps(pet_consistency=1.0))(x, lambda t: torch.full_like(t[:, :1], 0.4),
                                                               spacing=voxel)
    want = blur_per_axis(x[:, 1:], [DETAIL_FWHM_MM / v for v in voxel])
    torch.testing.assert_close(constant, want, rtol=0, atol=1e-6)
    # half strength moves half way; the step keeps a MetaTensor's metadata and reads its grid from the affine
    affine = torch.diag(torch.tensor([*voxel, 1.0], dtype=torch.float64))
    half = FusionInferer("volume", steps=FusionSteps(pet_consistency=0.5))(MetaTensor(x, affine=affine),
                                                        lambda t: torch.full_like(t[:, :1], 0.4))
    assert isinstance(half, MetaTensor) and torch.equal(half.affine, affine)
    torch.testing.assert_close(half.as_tensor(), 0.4 + 0.5 * (want - 0.4), rtol=0, atol=1e-6)


def test_consistency_step_keeps_the_fine_band_and_is_off_by_default():
    """A network that copies its MRI: the step changes only the band coarser than the PET's resolution (an MRI
    pattern of a 2-voxel period comes through as it was), and with the default (0) nothing changes at all."""
    from asfe3d.networks.blocks.detail import blur_per_axis

    n = (32, 16, 8)
    stripes = (torch.arange(n[0]) % 2).float().reshape(-1, 1, 1).expand(n) * 0.2 + 0.4
    pet = torch.linspace(0.1, 0.9, n[0]).reshape(-1, 1, 1).expand(n)
    x = torch.stack([stripes, pet])[None]
    plain = FusionInferer("volume")(x, lambda t: t[:, :1], spacing=(1.0, 1.0, 1.0))
    assert torch.equal(plain, FusionInferer("volume", steps=FusionSteps(pet_consistency=0.0))(x, lambda t: t[:, :1]))
    torch.testing.assert_close(plain, x[:, :1], rtol=0, atol=1e-6)
    out = FusionInferer("volume", steps=FusionSteps(pet_consistency=1.0))(x, lambda t: t[:, :1], spacing=(1.0, 1.0, 1.0))
    fine = lambda t: t - blur_per_axis(t, [6.0, 6.0, 6.0])  # noqa: E731
    inner = (slice(None), slice(None), slice(8, -8))
    torch.testing.assert_close(fine(out)[inner], fine(x[:, :1])[inner], rtol=0, atol=0.02)
    assert (blur_per_axis(out, [6.0] * 3) - blur_per_axis(pet[None, None], [6.0] * 3))[inner].abs().max() < \
        0.5 * (blur_per_axis(plain, [6.0] * 3) - blur_per_axis(pet[None, None], [6.0] * 3))[inner].abs().max()


def test_consistency_step_needs_the_grid():
    with pytest.raises(ValueError, match="needs the grid's voxel size"):
        FusionInferer("volume", steps=FusionSteps(pet_consistency=0.5))(torch.rand(1, 2, 8, 8, 8), lambda t: t[:, :1])


def test_consistency_step_runs_once_after_the_working_grid():
    """On a working grid the step is taken once, on the input's own grid: an MRI copy with ``s = 1`` gives the
    MRI's fine band plus the PET's coarse band, as it does without the working grid."""
    torch.manual_seed(1)
    x = torch.rand(1, 2, 30, 27, 20)
    voxel = (0.7, 0.8, 1.3)
    on_grid = FusionInferer("volume", min_voxel_mm=1.0, roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=1.0))(
        x, lambda t: t[:, :1], spacing=voxel)
    native = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=1.0))(x, lambda t: t[:, :1], spacing=voxel)
    torch.testing.assert_close(on_grid, native, rtol=0, atol=1e-5)


def test_consistency_gate_takes_the_step_only_on_coarse_grids():
    """``pet_consistency_min_voxel_mm``: the step is taken where the grid's mean voxel size reaches it, nowhere else;
    ``pet_consistency_optional`` lets a grid-less call through without a step instead of refusing it."""
    torch.manual_seed(2)
    x = torch.rand(1, 2, 20, 18, 16)
    copy = lambda t: t[:, :1]  # noqa: E731
    gated = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=0.5, pet_consistency_min_voxel_mm=1.5))
    everywhere = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=0.5))
    assert gated.consistency(x, (1.0, 1.0, 1.3)) == 0.0 and gated.consistency(x, (2.0, 2.0, 1.0)) == 0.5
    torch.testing.assert_close(gated(x, copy, spacing=(1.0, 1.0, 1.3)), x[:, :1], rtol=0, atol=1e-6)
    torch.testing.assert_close(gated(x, copy, spacing=(2.0, 2.0, 2.0)), everywhere(x, copy, spacing=(2.0, 2.0, 2.0)),
                               rtol=0, atol=0)
    with pytest.raises(ValueError, match="needs the grid's voxel size"):
        gated(x, copy)
    optional = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=0.5, pet_consistency_optional=True))
    assert optional.consistency(x) == 0.0
    torch.testing.assert_close(optional(x, copy), x[:, :1], rtol=0, atol=1e-6)
    assert gated.describe()["pet_consistency_min_voxel_mm"] == 1.5


def test_coarse_consistency_takes_its_own_strength_on_coarse_grids():
    """``pet_consistency_coarse=(mm, s)``: grids whose mean voxel size reaches ``mm`` get ``s`` (even below the
    fine strength's gate), finer grids the fine strength; the step is the same as an inferer of that one strength."""
    torch.manual_seed(3)
    x = torch.rand(1, 2, 20, 18, 16)
    copy = lambda t: t[:, :1]  # noqa: E731
    both = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=0.5, pet_consistency_coarse=[1.5, 0.75]))
    assert both.consistency(x, (1.0, 1.0, 1.3)) == 0.5 and both.consistency(x, (2.0, 2.0, 1.0)) == 0.75
    assert both.describe()["pet_consistency_coarse"] == [1.5, 0.75]
    for grid, strength in (((1.0, 1.0, 1.3), 0.5), ((2.0, 2.0, 2.0), 0.75)):
        one = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=strength))
        torch.testing.assert_close(both(x, copy, spacing=grid), one(x, copy, spacing=grid), rtol=0, atol=0)
    # the coarse strength alone (the fine gate keeps finer grids without a step)
    coarse_only = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=0.5, pet_consistency_min_voxel_mm=5.0, pet_consistency_coarse=(1.5, 0.25)))
    assert coarse_only.consistency(x, (1.0, 1.0, 1.0)) == 0.0 and coarse_only.consistency(x, (2.0, 2.0, 2.0)) == 0.25
    only = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency_coarse=(1.5, 0.25)))
    assert only.consistency(x, (2.0, 2.0, 2.0)) == 0.25
    with pytest.raises(ValueError, match="needs the grid's voxel size"):
        only(x, copy)


def test_fine_consistency_takes_its_own_strength_and_width_on_fine_grids():
    """``pet_consistency_fine=(s, w)``: grids finer than ``pet_consistency_min_voxel_mm`` get the step at ``s`` with a
    ``w`` mm Gaussian (``clamp(F + s G_w(PET - F), 0, 1)``), coarser grids the step as without it."""
    from asfe3d.networks.blocks.detail import blur_per_axis

    torch.manual_seed(4)
    x = torch.rand(1, 2, 24, 20, 16)
    copy = lambda t: t[:, :1]  # noqa: E731
    both = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=0.25, pet_consistency_min_voxel_mm=0.95, pet_consistency_fine=[0.4, 12.0]))
    plain = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=0.25, pet_consistency_min_voxel_mm=0.95))
    assert both.describe()["pet_consistency_fine"] == [0.4, 12.0] and plain.describe()["pet_consistency_fine"] is None
    assert both.consistency(x, (0.8, 0.8, 0.8)) == 0.4 and plain.consistency(x, (0.8, 0.8, 0.8)) == 0.0
    assert both.consistency(x, (1.0, 1.0, 1.0)) == 0.25
    assert both.consistency_width((0.8, 0.8, 0.8)) == 12.0 and both.consistency_width((1.0, 1.0, 1.0)) == 6.0
    assert plain.consistency_width((0.8, 0.8, 0.8)) == 6.0
    # a coarse strength that reaches under the gate takes its own grids with the 6 mm Gaussian
    odd = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=0.25, pet_consistency_min_voxel_mm=3.0, pet_consistency_coarse=(1.5, 0.5), pet_consistency_fine=(0.4, 12.0)))
    assert (odd.consistency(x, (2.0,) * 3), odd.consistency_width((2.0,) * 3)) == (0.5, 6.0)
    assert (odd.consistency(x, (1.0,) * 3), odd.consistency_width((1.0,) * 3)) == (0.4, 12.0)
    grid = (0.8, 0.8, 0.8)
    expected = (x[:, :1] + 0.4 * blur_per_axis(x[:, 1:2] - x[:, :1], [12.0 / 0.8] * 3)).clamp(0, 1)
    torch.testing.assert_close(both(x, copy, spacing=grid), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(plain(x, copy, spacing=grid), x[:, :1], rtol=0, atol=1e-6)
    # a coarser grid: bit for bit as without the setting
    assert torch.equal(both(x, copy, spacing=(1.0, 1.0, 1.2)), plain(x, copy, spacing=(1.0, 1.0, 1.2)))
    # the wider Gaussian leaves more of the band below 6 mm alone than the 6 mm one at the same strength
    six = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_consistency=0.4))(x, copy, spacing=grid)
    band = lambda t: t - blur_per_axis(t, [6.0 / 0.8] * 3)  # noqa: E731
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4), slice(4, -4))
    moved = lambda t: (band(t) - band(x[:, :1]))[inner].abs().mean()  # noqa: E731
    assert moved(both(x, copy, spacing=grid)) < 0.5 * moved(six)


def test_mode_defaults_of_the_consistency_step():
    """``"auto"``: slice mode 0.5 on grids finer than 1.5 mm and 0.6875 on coarser ones, volume mode 0.25 on grids of
    0.95-1.5 mm, 0.5 on coarser ones and 0.4 with a 12 mm Gaussian on finer ones (the nineteenth, thirty-second,
    thirty-third, fortieth and forty-second addenda), both skipping an array given without its grid; a strength given
    is taken on every grid, with the 6 mm Gaussian."""
    from asfe3d.defaults import PET_CONSISTENCY_BY_MODE, PET_CONSISTENCY_MIN_VOXEL_MM_BY_MODE
    from asfe3d.fusion.learned import AsfeFusionMethod, mode_steps
    from asfe3d.networks import ASFEFusion

    assert PET_CONSISTENCY_BY_MODE == {"slice": 0.5, "volume": 0.25}
    assert PET_CONSISTENCY_MIN_VOXEL_MM_BY_MODE == {"slice": None, "volume": 0.95}
    vol = AsfeFusionMethod("volume", net=ASFEFusion(spatial_dims=3)).inferer
    assert (vol.steps.pet_consistency, vol.steps.pet_consistency_min_voxel_mm, vol.steps.pet_consistency_optional) == (0.25, 0.95, True)
    sl = AsfeFusionMethod("slice", net=ASFEFusion(spatial_dims=2)).inferer
    assert (sl.steps.pet_consistency, sl.steps.pet_consistency_min_voxel_mm, sl.steps.pet_consistency_optional) == (0.5, None, True)
    # slice mode: 0.6875 on grids of 1.5 mm or coarser (the thirty-third addendum); volume mode: 0.5 there
    from asfe3d.defaults import PET_CONSISTENCY_COARSE_BY_MODE

    assert PET_CONSISTENCY_COARSE_BY_MODE == {"slice": (1.5, 0.6875), "volume": (1.5, 0.5)}
    assert sl.steps.pet_consistency_coarse == (1.5, 0.6875) and vol.steps.pet_consistency_coarse == (1.5, 0.5)
    cube = torch.zeros(1, 2, 4, 4, 4)
    assert [vol.consistency(cube, (g,) * 3) for g in (0.88, 0.96, 1.0, 1.2, 1.5, 2.0)] == [0.4, 0.25, 0.25, 0.25, 0.5,
                                                                                          0.5]
    assert vol.consistency(cube, (1.2, 1.0, 1.0)) == 0.25  # ADNI's grid: the mean voxel size, 1.07 mm
    assert sl.consistency(torch.zeros(1, 2, 4, 4, 4), (2.0, 2.0, 2.0)) == 0.6875
    assert sl.consistency(torch.zeros(1, 2, 4, 4, 4), (1.0, 1.0, 1.0)) == 0.5
    given = AsfeFusionMethod("volume", net=ASFEFusion(spatial_dims=3), steps=mode_steps("volume", pet_consistency=0.25)).inferer
    assert (given.steps.pet_consistency_min_voxel_mm, given.steps.pet_consistency_optional) == (None, False)
    assert given.steps.pet_consistency_coarse is None  # a strength given is taken on every grid
    assert given.steps.pet_consistency_fine is None and given.consistency_width((0.88,) * 3) == 6.0
    # volume mode on grids finer than 0.95 mm: 0.4 with a 12 mm Gaussian (the forty-second addendum); slice mode none
    from asfe3d.defaults import PET_CONSISTENCY_FINE_BY_MODE

    assert PET_CONSISTENCY_FINE_BY_MODE == {"slice": None, "volume": (0.4, 12.0)}
    assert vol.steps.pet_consistency_fine == (0.4, 12.0) and sl.steps.pet_consistency_fine is None
    assert [vol.consistency(cube, (g,) * 3) for g in (0.7, 0.88, 0.94)] == [0.4, 0.4, 0.4]
    assert [vol.consistency_width((g,) * 3) for g in (0.7, 0.88, 0.96, 2.0)] == [12.0, 12.0, 6.0, 6.0]
    assert sl.consistency_width((0.88,) * 3) == 6.0


def _edge_pair(n: tuple[int, int, int] = (24, 24, 24)) -> torch.Tensor:
    """``[MRI, PET]``: a flat MRI with a faint ripple in one half, a PET with a sharp-edged cube lowered by 0.3."""
    mri = torch.full(n, 0.5)
    mri[: n[0] // 2] += 0.01 * (torch.arange(n[1]) % 2).float().reshape(1, -1, 1)
    pet = torch.full(n, 0.8)
    pet[8:14, 8:14, 8:14] = 0.5
    return torch.stack([mri, pet])[None]


def test_detail_select_takes_the_pets_band_where_it_is_the_larger():
    """A network that blurs the PET (a soft edge): at ``s = 1`` the step gives back the PET's band where the PET's is
    ``k`` times the MRI's (the cube's edge), so the output's band there is the PET's; where the MRI's band is the
    larger (a strong MRI ripple) nothing changes; at ``s = 0.5`` half the way."""
    from asfe3d.inferers.fusion import DETAIL_FWHM_MM
    from asfe3d.networks.blocks.detail import blur_per_axis

    x = _edge_pair()
    voxel = (2.0, 2.0, 2.0)
    fwhm = [DETAIL_FWHM_MM / v for v in voxel]
    soft = lambda t: blur_per_axis(t[:, 1:2], fwhm)  # noqa: E731
    band = lambda t: t - blur_per_axis(t, fwhm)  # noqa: E731
    before = FusionInferer("volume", roi_size=(0, 0, 0))(x, soft, spacing=voxel)
    full = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=1.0, pet_detail_ratio=2.0))(
        x, soft, spacing=voxel)
    edge = (slice(None), slice(None), slice(7, 15), slice(7, 15), 11)  # the cube's faces and the voxels around them
    gap_before = (band(before) - band(x[:, 1:2]))[edge].abs().max()
    gap_after = (band(full) - band(x[:, 1:2]))[edge].abs().max()
    assert gap_before > 0.1 and gap_after < 0.3 * gap_before
    assert (full - x[:, 1:2])[:, :, 8:14, 8:14, 8:14].mean().abs() < (before - x[:, 1:2])[:, :, 8:14, 8:14, 8:14].mean().abs()
    half = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=0.5, pet_detail_ratio=2.0))(
        x, soft, spacing=voxel)
    torch.testing.assert_close(half, (before + full) / 2, rtol=0, atol=1e-5)  # no clamp reached here
    # a strong MRI band everywhere (a checkerboard of 0.6): the PET's edge is never k times it, nothing changes
    strong = x.clone()
    strong[:, 0] = 0.2 + 0.6 * ((torch.arange(24).reshape(-1, 1, 1) + torch.arange(24).reshape(1, -1, 1)
                                 + torch.arange(24).reshape(1, 1, -1)) % 2).float()
    kept = FusionInferer("volume", roi_size=(0, 0, 0))(strong, soft, spacing=voxel)
    chosen = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=1.0, pet_detail_ratio=2.0))(
        strong, soft, spacing=voxel)
    torch.testing.assert_close(chosen, kept, rtol=0, atol=0)


def test_detail_select_is_off_by_default_and_has_its_own_grid_gate():
    """Off by default (bit for bit the network's output); with its grid gate it is taken on coarse grids only,
    whatever the consistency step's gate says, and it needs the grid like that step."""
    x = _edge_pair((16, 16, 16))
    net = lambda t: t[:, 1:2] * 0.5 + t[:, :1] * 0.5  # noqa: E731
    plain = FusionInferer("volume", roi_size=(0, 0, 0))
    on_2mm = plain(x, net, spacing=(2.0, 2.0, 2.0))
    assert torch.equal(on_2mm, FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=0.0))(x, net))
    gated = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=1.0, pet_detail_select_min_voxel_mm=1.5))
    assert gated.detail_select(x, (1.0, 1.0, 1.3)) == 0.0 and gated.detail_select(x, (2.0, 2.0, 2.0)) == 1.0
    assert gated.consistency(x, (2.0, 2.0, 2.0)) == 0.0  # the consistency step itself stays off
    # the consistency step's gate does not gate this step, nor this step's gate that one
    both = FusionInferer("volume", steps=FusionSteps(pet_consistency=0.5, pet_detail_select=1.0, pet_consistency_min_voxel_mm=1.5))
    assert (both.consistency(x, (1.0, 1.0, 1.0)), both.detail_select(x, (1.0, 1.0, 1.0))) == (0.0, 1.0)
    assert (gated.consistency(x, (1.0, 1.0, 1.0)), gated.detail_select(x, (1.0, 1.0, 1.0))) == (0.0, 0.0)
    assert torch.equal(gated(x, net, spacing=(1.0, 1.0, 1.0)), plain(x, net, spacing=(1.0, 1.0, 1.0)))
    assert (gated(x, net, spacing=(2.0, 2.0, 2.0)) - on_2mm).abs().max() > 0.05
    with pytest.raises(ValueError, match="pet_detail_select > 0 needs the grid's voxel size"):
        gated(x, net)
    optional = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=1.0, pet_consistency_optional=True))
    assert optional.detail_select(x) == 0.0 and torch.equal(optional(x, net), plain(x, net))
    d = gated.describe()
    assert (d["pet_detail_select"], d["pet_detail_ratio"], d["pet_detail_select_min_voxel_mm"]) == (1.0, 2.0, 1.5)


def test_pet_band_spread_reads_the_bands_robust_deviation_in_the_brain():
    """``sigma`` = 1.4826 MAD of the band where the low band is over 0.35 of its 99th percentile: Gaussian noise of
    0.05 there reads about 0.05, whatever a few large outliers (an edge) or the band outside the region hold; an item
    without a region of 64 voxels reads 0; shapes that do not match are refused, quoted."""
    from asfe3d.inferers.fusion import pet_band_spread

    g = torch.Generator().manual_seed(0)
    band = 0.05 * torch.randn((2, 1, 20, 20, 20), generator=g)
    low = torch.zeros((2, 1, 20, 20, 20))
    low[0, :, 2:18, 2:18, 2:18] = 0.8  # item 0: a 16^3 region
    band[0, :, 2:4, 2:18, 2:18] = 0.9  # an edge in it: 1/8 of the region, far out
    band[0, :, :2] = 3.0  # outside the region: not read
    low[1, :, 0, 0, :3] = 0.8  # item 1: three voxels over the level
    spread = pet_band_spread(band, low)
    assert spread.shape == (2,) and spread.dtype == torch.float32
    assert 0.045 < float(spread[0]) < 0.062 and float(spread[1]) == 0.0
    with pytest.raises(ValueError, match=r"one \(B, 1, X, Y, Z\) shape, got \(2, 1, 20, 20, 20\) and \(2, 1, 20, 20\)"):
        pet_band_spread(band, low[..., 0])


def test_detail_select_floor_keeps_the_edge_and_leaves_the_noise():
    """With a noisy PET and a flat MRI, the step without a floor takes the PET's noise into the fused image wherever
    the noise's band beats the (zero) MRI band; with the floor ``t = 3`` those voxels are left as the network made
    them, while the cube's sharp edge (far over the noise) is still taken; ``t = 0`` is bit for bit the step without
    a floor, and the floor's grid gate takes it on finer grids only."""
    from asfe3d.inferers.fusion import DETAIL_FWHM_MM
    from asfe3d.networks.blocks.detail import blur_per_axis

    x = _edge_pair()
    x[:, 0] = 0.5  # a flat MRI: its band is 0, the PET's is "larger" wherever it is not 0
    g = torch.Generator().manual_seed(1)
    x[:, 1] += 0.01 * torch.randn(x.shape[2:], generator=g)
    voxel = (1.0, 1.0, 1.0)
    fwhm = [DETAIL_FWHM_MM / v for v in voxel]
    soft = lambda t: blur_per_axis(t[:, 1:2], [2.0, 2.0, 2.0])  # noqa: E731  (softens the edge, smooths the noise)
    plain = FusionInferer("volume", roi_size=(0, 0, 0))(x, soft, spacing=voxel)
    raw = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=1.0))(x, soft, spacing=voxel)
    floored = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=1.0, pet_detail_floor=3.0))
    out = floored(x, soft, spacing=voxel)
    far = (slice(None), slice(None), slice(17, 22), slice(17, 22), slice(17, 22))  # noise only, away from the cube
    edge = (slice(None), slice(None), slice(7, 15), slice(7, 15), 11)
    assert (raw - plain)[far].abs().max() > 0.005  # the raw step takes the noise
    assert (out - plain)[far].abs().max() < 1e-6  # the floor leaves it
    band = lambda t: t - blur_per_axis(t, fwhm)  # noqa: E731
    gap_plain = (band(plain) - band(x[:, 1:2]))[edge].abs().max()
    assert (band(out) - band(x[:, 1:2]))[edge].abs().max() < 0.5 * gap_plain  # the edge is still taken
    zero = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=1.0, pet_detail_floor=0.0))
    assert torch.equal(zero(x, soft, spacing=voxel), raw)
    gated = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=1.0, pet_detail_floor=3.0, pet_detail_floor_max_voxel_mm=1.5))
    assert (gated.detail_floor((1.0, 1.0, 1.2)), gated.detail_floor((1.5, 1.5, 1.5))) == (3.0, 0.0)
    assert torch.equal(gated(x, soft, spacing=voxel), out)
    coarse = (2.0, 2.0, 2.0)
    assert torch.equal(gated(x, soft, spacing=coarse),
                       FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=1.0))(x, soft, spacing=coarse))
    d = gated.describe()
    assert (d["pet_detail_floor"], d["pet_detail_floor_max_voxel_mm"]) == (3.0, 1.5)


def test_mode_defaults_of_the_detail_select_step():
    """``"auto"``: the defaults' strength, ratio and grid gate per mode; a strength given is taken on every grid and
    refuses a grid-less array; a consistency strength given leaves this step's gate as it is."""
    from asfe3d.defaults import PET_DETAIL_RATIO, PET_DETAIL_SELECT_BY_MODE, PET_DETAIL_SELECT_MIN_VOXEL_MM_BY_MODE
    from asfe3d.fusion.learned import AsfeFusionMethod, mode_steps
    from asfe3d.networks import ASFEFusion

    assert PET_DETAIL_SELECT_BY_MODE == {"slice": 1.0, "volume": 0.5} and PET_DETAIL_RATIO == 2.0
    assert PET_DETAIL_SELECT_MIN_VOXEL_MM_BY_MODE == {"slice": 1.5, "volume": 0.95}
    vol = AsfeFusionMethod("volume", net=ASFEFusion(spatial_dims=3)).inferer
    assert (vol.steps.pet_detail_select, vol.steps.pet_detail_ratio, vol.steps.pet_detail_select_min_voxel_mm) == (0.5, 2.0, 0.95)
    assert (vol.steps.pet_detail_floor, vol.steps.pet_detail_floor_max_voxel_mm) == (0.5, 1.5)  # the forty-first addendum
    cons = AsfeFusionMethod("volume", net=ASFEFusion(spatial_dims=3), steps=mode_steps("volume", pet_consistency=0.0)).inferer
    assert (cons.steps.pet_detail_select, cons.steps.pet_detail_select_min_voxel_mm) == (0.5, 0.95)
    sl = AsfeFusionMethod("slice", net=ASFEFusion(spatial_dims=2)).inferer
    assert (sl.steps.pet_detail_select, sl.steps.pet_detail_select_min_voxel_mm) == (1.0, 1.5)
    assert (sl.steps.pet_detail_floor, sl.steps.pet_detail_floor_max_voxel_mm) == (0.0, None)
    given = AsfeFusionMethod("volume", net=ASFEFusion(spatial_dims=3), steps=mode_steps("volume", pet_detail_select=1.0, pet_detail_ratio=3.0)).inferer
    assert (given.steps.pet_detail_select, given.steps.pet_detail_ratio, given.steps.pet_consistency_optional) == (1.0, 3.0, False)
    assert (given.steps.pet_detail_select_min_voxel_mm, given.steps.pet_consistency_min_voxel_mm) == (None, 0.95)
    assert (given.steps.pet_detail_floor, given.steps.pet_detail_floor_max_voxel_mm) == (0.0, None)  # a strength given: no floor


def _steer_pair(noise: float, n=(24, 24, 24), seed=0):
    """``[MRI, PET]``: an MRI with fine structure (a sum of sines), a PET that is a smooth blob plus ``noise`` times
    white noise (a band that does not follow the MRI's)."""
    g = torch.Generator().manual_seed(seed)
    ax = [torch.arange(k, dtype=torch.float32) for k in n]
    xx, yy, zz = torch.meshgrid(*ax, indexing="ij")
    mri = 0.5 + 0.15 * torch.sin(xx * 1.3) * torch.sin(yy * 0.9) + 0.1 * torch.sin(zz * 1.7)
    blob = torch.exp(-(((xx - 12) ** 2 + (yy - 12) ** 2 + (zz - 12) ** 2) / (2 * 7.0 ** 2)))
    pet = (0.2 + 0.6 * blob + noise * torch.randn(n, generator=g)).clamp(0, 1)
    return torch.stack([mri, pet])[None]


class _InjectingNet(torch.nn.Module):
    """A stand-in network with a detail injection ``g0``: the PET plus ``g0`` times the MRI's band."""

    def __init__(self, g0: float):
        super().__init__()
        self.detail_injection = g0

    def forward(self, x):
        from asfe3d.networks.blocks.detail import blur_per_axis

        mri = x[:, :1]
        return (x[:, 1:2] + self.detail_injection * (mri - blur_per_axis(mri, [6.0] * 3))).clamp(0, 1)


def test_pet_band_residual_reads_the_pets_band_that_does_not_follow_the_mri():
    """``q`` grows with noise in the PET; a PET whose band is the MRI's scaled reads ~0; blank inputs read None."""
    from asfe3d.inferers import pet_band_residual

    quiet, noisy = (pet_band_residual(_steer_pair(s)[0], (1.0, 1.0, 1.0)) for s in (0.01, 0.08))
    assert 0 <= quiet < noisy
    follows = _steer_pair(0.0)[0]
    follows[1] = 0.1 + 0.5 * follows[0]
    assert pet_band_residual(follows, (1.0, 1.0, 1.0)) < 1e-3
    assert pet_band_residual(torch.zeros(2, 12, 12, 12), (1.0, 1.0, 1.0)) is None
    # the 2 mm boxes: a 1 mm grid is averaged by 2 per axis, a 2 mm one is read as it is (the same numbers)
    x = _steer_pair(0.05)[0]
    assert pet_band_residual(x, (2.0, 2.0, 2.0)) == pytest.approx(pet_band_residual(x, (2.4, 2.4, 2.4)), rel=0.3)
    with pytest.raises(ValueError, match=r"pair must be \(2, X, Y, Z\)"):
        pet_band_residual(x[None], (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"grid must be three voxel sizes > 0 \(mm\), got \[1.0, 0.0, 1.0\]"):
        pet_band_residual(x, (1.0, 0.0, 1.0))


def test_detail_steer_adds_the_mris_band_only_for_a_pet_that_hides_it():
    """Off by default; a PET under ``q0`` is fused bit for bit as without the step; a noisier one gets
    ``g0 (f - 1)`` more of the MRI's band (``f <= max_gain``); grids at or above the gate are left alone; a network
    without an injection is left alone; the grid is needed."""
    from asfe3d.inferers.fusion import DETAIL_FWHM_MM, pet_band_residual
    from asfe3d.networks.blocks.detail import blur_per_axis

    net = _InjectingNet(0.8)
    grid = (1.0, 1.0, 1.0)
    plain = FusionInferer("volume", roi_size=(0, 0, 0))
    quiet, noisy = _steer_pair(0.01), _steer_pair(0.08)
    q_quiet, q_noisy = pet_band_residual(quiet[0], grid), pet_band_residual(noisy[0], grid)
    q0 = (q_quiet + q_noisy) / 2
    steer = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(detail_steer=q0, detail_steer_max_gain=10.0, detail_steer_max_voxel_mm=1.5))
    assert steer.steer_gains(quiet, net, grid) == [1.0]
    assert torch.equal(steer(quiet, net, spacing=grid), plain(quiet, net, spacing=grid))
    f = steer.steer_gains(noisy, net, grid)[0]
    assert f == pytest.approx(q_noisy / q0) and f > 1
    band = noisy[:, :1] - blur_per_axis(noisy[:, :1], [DETAIL_FWHM_MM / g for g in grid])
    want = (plain(noisy, net, spacing=grid) + 0.8 * (f - 1) * band).clamp(0, 1)
    torch.testing.assert_close(steer(noisy, net, spacing=grid), want, rtol=0, atol=1e-6)
    # factors read by the caller are taken as given (the same image); a bad list is refused, quoted
    assert torch.equal(steer(noisy, net, spacing=grid, steer_gains=[f]), steer(noisy, net, spacing=grid))
    for bad in ([0.5], [1.0, 1.0], [float("nan")]):
        with pytest.raises(ValueError, match=r"steer_gains must give one factor >= 1 per item of inputs"):
            steer(noisy, net, spacing=grid, steer_gains=bad)
    with pytest.raises(ValueError, match=r"steer_gains > 1 need the grid's voxel size"):
        plain(noisy, net, steer_gains=[1.2])
    capped = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(detail_steer=q0, detail_steer_max_gain=1.05))
    assert f > 1.05 and capped.steer_gains(noisy, net, grid) == [1.05]
    # a cap of its own on coarse grids: the fine cap below the size, the coarse one at and above it
    by_grid = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(detail_steer=q0, detail_steer_max_gain=10.0, detail_steer_max_gain_coarse=(1.5, 1.05)))
    assert by_grid.steer_gains(noisy, net, grid) == [f]
    assert by_grid.steer_gains(noisy, net, (1.5, 1.5, 1.5)) == [1.05]
    assert by_grid.describe()["detail_steer_max_gain_coarse"] == [1.5, 1.05]
    # the gate: a 2 mm grid is left alone; a network that injects nothing is left alone
    assert steer.steer_gains(noisy, net, (2.0, 2.0, 2.0)) == [1.0]
    assert steer.steer_gains(noisy, _InjectingNet(0.0), grid) == [1.0]
    assert FusionInferer("volume").steer_gains(noisy, net, grid) == [1.0]  # off by default
    # per item of a batch
    assert steer.steer_gains(torch.cat([quiet, noisy]), net, grid) == [1.0, f]
    with pytest.raises(ValueError, match="detail_steer needs the grid's voxel size"):
        steer(noisy, net)
    optional = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(detail_steer=q0, pet_consistency_optional=True))
    assert torch.equal(optional(noisy, net), plain(noisy, net))
    d = steer.describe()
    assert (d["detail_steer"], d["detail_steer_max_gain"], d["detail_steer_max_voxel_mm"]) == (q0, 10.0, 1.5)


def test_mode_defaults_of_the_steered_injections_cap():
    """``auto``: volume mode caps the factor at 1.75 on grids finer than 1.5 mm and at 1.5 on coarser ones (the
    thirty-fourth addendum), slice mode at 1.5 on every grid."""
    from asfe3d.defaults import DETAIL_STEER_MAX_GAIN_BY_MODE, DETAIL_STEER_MAX_GAIN_COARSE_BY_MODE
    from asfe3d.fusion.learned import AsfeFusionMethod
    from asfe3d.inferers.fusion import pet_band_residual
    from asfe3d.networks import ASFEFusion

    assert DETAIL_STEER_MAX_GAIN_BY_MODE == {"slice": 1.5, "volume": 1.75}
    assert DETAIL_STEER_MAX_GAIN_COARSE_BY_MODE == {"slice": None, "volume": (1.5, 1.5)}
    vol = AsfeFusionMethod("volume", net=ASFEFusion(spatial_dims=3)).inferer
    sl = AsfeFusionMethod("slice", net=ASFEFusion(spatial_dims=2)).inferer
    assert (vol.steps.detail_steer_max_gain, vol.steps.detail_steer_max_gain_coarse) == (1.75, (1.5, 1.5))
    assert (sl.steps.detail_steer_max_gain, sl.steps.detail_steer_max_gain_coarse) == (1.5, None)
    noisy, net = _steer_pair(0.3), _InjectingNet(0.8)
    assert pet_band_residual(noisy[0], (1.0, 1.0, 1.0)) / vol.steps.detail_steer > 1.75  # the caps bind for this PET
    assert vol.steer_gains(noisy, net, (1.0, 1.0, 1.0)) == [1.75]
    assert vol.steer_gains(noisy, net, (2.0, 2.0, 2.0)) == [1.5]
    assert sl.steer_gains(noisy, net, (1.0, 1.0, 1.0)) == [1.5]


def test_select_and_steer_together_share_the_mris_band_with_the_same_numbers():
    """With both steps on, the steered step takes the MRI's band from the choose-the-larger-detail step: the result
    equals the select step's output plus the steer computed from a band of its own, bit for bit."""
    from asfe3d.inferers.fusion import DETAIL_FWHM_MM, pet_band_residual
    from asfe3d.networks.blocks.detail import blur_per_axis

    net, grid = _InjectingNet(0.8), (1.0, 1.0, 1.0)
    noisy = _steer_pair(0.08)
    q0 = pet_band_residual(noisy[0], grid) / 2
    both = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=1.0, pet_detail_ratio=2.0, detail_steer=q0, detail_steer_max_gain=10.0))
    select_only = FusionInferer("volume", roi_size=(0, 0, 0), steps=FusionSteps(pet_detail_select=1.0, pet_detail_ratio=2.0))
    f = both.steer_gains(noisy, net, grid)[0]
    assert f > 1
    band = noisy[:, :1] - blur_per_axis(noisy[:, :1], [DETAIL_FWHM_MM / g for g in grid])
    want = (select_only(noisy, net, spacing=grid) + 0.8 * (f - 1.0) * band).clamp(0, 1)
    assert torch.equal(both(noisy, net, spacing=grid), want)


def test_auto_slice_axis_refuses_an_affine_without_axes() -> None:
    """A degenerate affine answered axis 0 without a word; it is refused, quoted."""
    from asfe3d.inferers import auto_slice_axis

    tilted = np.diag([1.0, 1.0, 1.0, 1.0])
    tilted[:3, :3] = [[0.0, 0.0, 2.0], [1.0, 0.0, 0.0], [0.0, 1.2, 0.1]]  # voxel axis 1 runs mostly S-I
    assert auto_slice_axis(tilted) == 1 and auto_slice_axis(np.eye(4)) == 2
    for bad in (np.zeros((4, 4)), np.eye(2), np.full((4, 4), np.nan)):
        with pytest.raises(ValueError, match=r"affine_ras must be a finite 4x4 affine with three non-zero voxel axes"):
            auto_slice_axis(bad)


def _head_and_full(seed=0):
    """Item A: a head in a zero background; item B: signal over the whole grid."""
    g = torch.Generator().manual_seed(seed)
    a = torch.zeros(2, 24, 24, 24)
    a[:, 4:18, 6:20, 3:17] = torch.rand(2, 14, 14, 14, generator=g) * 0.8 + 0.1
    b = torch.rand(2, 24, 24, 24, generator=g) * 0.8 + 0.1
    return (MetaTensor(a, affine=torch.eye(4), meta={"space": "RAS"}),
            MetaTensor(b, affine=torch.eye(4), meta={"space": "RAS"}))


@pytest.mark.parametrize("mode", ["volume", "slice"])
def test_an_items_fused_image_does_not_depend_on_the_rest_of_its_batch(mode):
    """Each item is fused on the box that holds its own signal: batched with an item that fills its grid, an item
    with a zero background gets what it gets alone (it got up to 0.8 more, and values outside its head)."""
    from asfe3d.networks.nets import ASFEFusion

    torch.manual_seed(0)
    net = ASFEFusion(spatial_dims=3 if mode == "volume" else 2).eval()
    a, b = _head_and_full()
    inferer = FusionInferer(mode, roi_size=(16, 16, 16), slice_axis=2)
    with torch.no_grad():
        alone = [inferer(x[None], net) for x in (a, b)]
        batched = inferer(torch.cat([a[None], b[None]]), net)
        gains = inferer(torch.cat([a[None], b[None]]), net, steer_gains=[1.0, 1.0])
    assert batched.shape == (2, 1, 24, 24, 24)
    for i in range(2):
        assert torch.equal(batched[i], alone[i][0]) and torch.equal(gains[i], alone[i][0]), i
    assert float(alone[0][0, 0, :4].abs().max()) == 0.0  # 0 outside A's head box
    with pytest.raises(ValueError, match=r"steer_gains must give one factor >= 1 per item of inputs \(2, 2, 24, 24, "
                                         r"24\), got \[1.0\]"):
        inferer(torch.cat([a[None], b[None]]), net, steer_gains=[1.0])


def test_a_batch_collated_by_a_monai_dataloader_is_fused_like_a_stacked_one():
    """``list_data_collate`` gives ``(B, 4, 4)`` affines and one ``space`` per item: taken (it was refused: "meta
    ['space'] is ['RAS']")."""
    from monai.data import decollate_batch, list_data_collate

    from asfe3d.networks.nets import ASFEFusion

    torch.manual_seed(0)
    net = ASFEFusion(spatial_dims=3).eval()
    a, b = _head_and_full(1)
    a.meta["filename_or_obj"] = "subj_a.nii.gz"
    lps = MetaTensor(b.as_tensor().clone(), affine=torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0])),
                     meta={"space": "LPS", "filename_or_obj": "subj_b.nii.gz"})  # the same grid, written in LPS
    collated = list_data_collate([{"image": a}, {"image": lps}])["image"]
    assert collated.meta["space"] == ["RAS", "LPS"] and collated.affine.shape == (2, 4, 4)
    inferer = FusionInferer("volume", roi_size=(16, 16, 16))
    with torch.no_grad():
        out = inferer(collated, net)
        stacked = inferer(torch.cat([a[None], b[None]]), net)
    assert torch.equal(out.as_tensor(), stacked.as_tensor())
    # the items' boxes differ (fused one by one): each keeps its own metadata (item 1 had item 0's name and a
    # broken affine after decollate_batch)
    items = decollate_batch(out)
    assert [i.meta["filename_or_obj"] for i in items] == ["subj_a.nii.gz", "subj_b.nii.gz"]
    assert torch.equal(items[1].affine, lps.affine) and items[1].meta["space"] == "LPS"


def test_a_batch_stored_in_another_order_is_fused_item_by_item_too():
    """Turned into RAS order, a collated batch stays a batch: items of different voxel sizes and boxes are fused
    one by one as when stored in RAS order (they were refused as "different voxel sizes")."""
    from monai.data import list_data_collate

    from asfe3d.inferers import FusionSteps
    from asfe3d.networks.nets import ASFEFusion

    torch.manual_seed(0)
    net = ASFEFusion(spatial_dims=3).eval()
    a, b = _head_and_full(2)
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    items = [MetaTensor(x.as_tensor(), affine=flip @ torch.diag(torch.tensor([s, s, s, 1.0])), meta={"space": "RAS"})
             for x, s in ((a, 2.0), (b, 3.0))]  # stored LAS
    inferer = FusionInferer("volume", roi_size=(16, 16, 16), steps=FusionSteps(pet_consistency=0.5))
    with torch.no_grad():
        out = inferer(list_data_collate([{"i": x} for x in items])["i"], net)
        alone = [inferer(x[None], net) for x in items]
    for i in range(2):
        assert torch.equal(out[i].as_tensor(), alone[i][0].as_tensor()), i


def test_inputs_with_nan_or_of_a_wrong_type_are_refused_and_other_floats_taken():
    """One NaN spread over the whole output through the network's normalisation (all NaN, no error); integer images
    are not in [0, 1]; float64 and float16 images are fused in float32 (they failed inside torch)."""
    from asfe3d.networks.nets import ASFEFusion

    torch.manual_seed(0)
    net = ASFEFusion(spatial_dims=3).eval()
    x = torch.rand(1, 2, 16, 16, 16) * 0.8 + 0.1
    bad = x.clone()
    bad[0, 1, 3, 3, 3] = float("nan")
    inferer = FusionInferer("volume", roi_size=(16, 16, 16))
    with pytest.raises(ValueError, match=r"inputs hold NaN or Inf values \(item 0, channel 1, shape \(1, 2, 16, 16, "
                                         r"16\)\)"):
        inferer(bad, net)
    with pytest.raises(TypeError, match="inputs must be floating point .* got dtype torch.uint8"):
        inferer((x * 255).to(torch.uint8), net)
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor .* got ndarray"):
        inferer(x.numpy(), net)
    with torch.no_grad():
        ref = inferer(x, net)
        for dtype in (torch.float64, torch.float16):
            out = inferer(x.to(dtype), net)
            assert out.dtype == torch.float32
            assert float((out - ref).abs().max()) < (1e-6 if dtype == torch.float64 else 2e-2), dtype


@pytest.mark.parametrize("kwargs, match", [
    ({"sw_device": "gpu"}, "sw_device must be None, a torch.device or a device string .* got 'gpu'"),
    ({"device": 5}, "device must be None, a torch.device or a device string .* got 5"),
    ({"overlap": "0.5"}, r"overlap must be a number in \[0, 1\), got '0.5'"),
    ({"slice_axis": 1.0}, "slice_axis must be auto, 0, 1 or 2, got 1.0"),
    ({"slice_axis": True}, "slice_axis must be auto, 0, 1 or 2, got True"),
])
def test_bad_devices_and_numbers_refused_when_made(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FusionInferer("volume", **kwargs)


def test_numpy_numbers_and_device_strings_taken():
    inferer = FusionInferer("slice", overlap=np.float32(0.5), slice_axis=np.int64(1), sw_device="cpu",
                            device=torch.device("cpu"))
    assert inferer.overlap == 0.5 and inferer.sw_device == torch.device("cpu") and inferer.device.type == "cpu"


def test_an_all_zero_input_fuses_to_zero_without_the_network():
    """Probe 47 #7: an all-zero [MRI, PET] ran the network on zeros (a grey up to 0.14); every method gives 0."""
    net = _net3()
    with torch.no_grad():
        out = FusionInferer("volume")(torch.zeros(2, 2, 12, 12, 12), net)
        mixed = FusionInferer("volume")(torch.cat([torch.zeros(1, 2, 12, 12, 12), torch.rand(1, 2, 12, 12, 12)]), net)
    assert out.shape == (2, 1, 12, 12, 12) and float(out.abs().max()) == 0.0
    assert float(mixed[0].abs().max()) == 0.0 and float(mixed[1].max()) > 0
    with pytest.raises(ValueError, match="steer_gains"):  # (review 49: the checks of any input apply to zeros too)
        FusionInferer("volume")(torch.zeros(1, 2, 12, 12, 12), net, steer_gains=[1.0, 1.0, 1.0])
    x = torch.cat([torch.zeros(1, 2, 12, 12, 12), torch.rand(1, 2, 12, 12, 12)]).requires_grad_(True)
    FusionInferer("volume")(x, net.train()).sum().backward()  # autograd through the zeroed item
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_inferer_arguments_as_monai_users_give_them(monkeypatch):
    """Probe 47 #4/#8/#9: ``roi_size=16`` failed on iterating an int; ``spacing`` was not checked when no step
    needed it (``"a"`` gave numpy's raw message); ``device="cuda"`` without CUDA failed at the call with MONAI's
    out-of-memory hint or a bare assertion."""
    assert FusionInferer("volume", roi_size=16).roi_size == (16, 16, 16)
    net = _net3()
    for bad in ((0, 1, 1), ("a", 1, 1), (1.0, 1.0)):
        with pytest.raises(ValueError, match=r"spacing must be three voxel sizes > 0 \(mm\), got"):
            FusionInferer("volume")(torch.rand(1, 2, 8, 8, 8), net, spacing=bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for option in ("device", "sw_device"):
        with pytest.raises(ValueError, match=rf"{option} 'cuda' requested but CUDA is not available on this machine"):
            FusionInferer("volume", **{option: "cuda"})
