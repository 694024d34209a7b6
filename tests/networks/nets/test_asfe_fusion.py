from __future__ import annotations

import pytest
import torch

from asfe3d.networks import PAPER_PARAMS_2D, ASFEFusion

SIZES = [(2, (17, 23)), (3, (9, 11, 13))]


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_any_size_round_trips_to_one_channel_in_unit_range(spatial_dims, size):
    net = ASFEFusion(spatial_dims).eval()
    with torch.no_grad():
        y = net(torch.rand(2, 2, *size))
    assert y.shape == (2, 1, *size)
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_untrained_net_is_a_bounded_blend_of_the_sources(spatial_dims, size):
    net = ASFEFusion(spatial_dims).eval()
    x = torch.rand(1, 2, *size)
    with torch.no_grad():
        y = net(x)
    lo = x.amin(1, keepdim=True) - net.residual_scale
    hi = x.amax(1, keepdim=True) + net.residual_scale
    assert ((y >= lo - 1e-6) & (y <= hi + 1e-6)).all()


@pytest.mark.parametrize("spatial_dims,size", [(2, (24, 20)), (3, (16, 16, 8))])
def test_gradients_reach_every_parameter(spatial_dims, size):
    net = ASFEFusion(spatial_dims)
    x = 0.25 + 0.5 * torch.rand(1, 2, *size)  # mid-range, so the final clamp is inactive
    net(x).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_config_rebuilds_the_same_network(spatial_dims):
    net = ASFEFusion(spatial_dims, deform=False, encoder_channels=(4, 8, 8), fusion=("light", "full", "full"))
    clone = ASFEFusion(**net.config)
    assert clone.config == net.config
    clone.load_state_dict(net.state_dict())  # same parameter names and shapes
    x = torch.rand(1, 2, *(16,) * spatial_dims)
    torch.testing.assert_close(clone.eval()(x), net.eval()(x))
    assert not any("deform" in n for n, _ in net.named_parameters())
    assert any("deform" in n for n, _ in ASFEFusion(spatial_dims).named_parameters())


def test_efficient_3d_is_small():
    assert sum(p.numel() for p in ASFEFusion(3).parameters()) <= 2_000_000


def test_paper_preset_2d_parameter_count_within_2_percent():
    with torch.device("meta"):
        net = ASFEFusion(2, "paper")
    n = sum(p.numel() for p in net.parameters())
    assert abs(n - PAPER_PARAMS_2D) / PAPER_PARAMS_2D < 0.02, n


def test_bad_arguments_raise_with_values():
    with pytest.raises(ValueError, match="4"):
        ASFEFusion(4)
    with pytest.raises(ValueError, match="fancy"):
        ASFEFusion(2, "fancy")
    with pytest.raises(ValueError, match="widht"):
        ASFEFusion(2, widht=3)
    with pytest.raises(ValueError, match=r"\('full',\)"):
        ASFEFusion(2, fusion=("full",))
    with pytest.raises(ValueError, match="deform must be True or False, got 'false'"):
        ASFEFusion(2, deform="false")  # a bundle override's word: truthy, it built the deformable blocks (probe 40 #3)
    net = ASFEFusion(2)
    with pytest.raises(ValueError, match=r"\(1, 3, 8, 8\)"):
        net(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(1, 2, 8, 8, 8\)"):
        net(torch.rand(1, 2, 8, 8, 8))


@pytest.mark.parametrize("spatial", [(1, 7), (5, 3), (1, 1, 1), (3, 4, 5)], ids=["1x7", "5x3", "1^3", "3x4x5"])
def test_tiny_inputs_keep_their_grid(spatial):
    """Inputs smaller than the coarsest scale are padded inside (instance norm needs > 1 voxel there)."""
    net = ASFEFusion(spatial_dims=len(spatial)).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 2, *spatial))
    assert out.shape == (1, 1, *spatial)


@pytest.mark.parametrize("spatial_dims,size", SIZES)
def test_detail_injection_adds_the_mri_detail_band(spatial_dims, size):
    from scipy import ndimage

    plain = ASFEFusion(spatial_dims).eval()
    injected = ASFEFusion(**{**plain.config, "detail_injection": 0.5, "detail_fwhm": 3.0}).eval()
    injected.load_state_dict(plain.state_dict())  # no new weights: the same state dict loads
    x = 0.3 + 0.4 * torch.rand(1, 2, *size)  # mid-range, so the clamp stays off
    with torch.no_grad():
        added = (injected(x) - plain(x))[0, 0].numpy()
    mri = x[0, 0].double().numpy()
    sigma = 3.0 / 2.3548200450309493
    band = mri - ndimage.gaussian_filter(mri, sigma, mode="nearest", truncate=3.5)  # ceil(3 sigma) = 4 voxels
    assert abs(added - 0.5 * band).max() < 1e-4
    assert plain.config["detail_injection"] == 0.0  # off by default: the shipped weights before it are unchanged
    scripted = torch.jit.script(injected)
    torch.testing.assert_close(scripted(x), injected(x))


@pytest.mark.parametrize("kwargs,quoted", [({"detail_injection": -0.1}, "detail_injection must be a finite number >= 0, got -0.1"),
                                           ({"detail_fwhm": 0}, r"detail_fwhm must be in \(0, 64\] voxels, got 0")])
def test_detail_injection_bad_values_quoted(kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        ASFEFusion(3, **kwargs)


@pytest.mark.parametrize("slab_voxels", [1, 37, 500])
def test_tail_in_slabs_gives_the_same_numbers(slab_voxels):
    torch.manual_seed(0)
    net = ASFEFusion(3, detail_injection=0.5, detail_fwhm=3.0).eval()
    with torch.no_grad():
        net.refine.weight.normal_(0.0, 0.3)  # a refining conv that matters, so a wrong halo would show
    x = torch.rand(2, 2, 13, 9, 11)  # the first axis is padded to 16: the last slab's halo is a padded row
    with torch.no_grad():
        whole = net(x)  # one slab: the default slab is far larger than this volume
        net.tail_slab_voxels = slab_voxels
        slabs = net(x)
        scripted = torch.jit.script(net)(x)
    assert torch.equal(slabs, whole)
    assert torch.equal(scripted, whole)
    net.tail_slab_voxels = 1
    with torch.enable_grad():
        trained = net(x)  # with autograd the tail runs whole
    assert trained.requires_grad and torch.equal(trained.detach(), whole)


@pytest.mark.parametrize("rows, heights", [(5, [4, 4, 5]), (6, [4, 4, 5]), (4, [3, 3, 3, 4]), (13, [13])])
def test_tail_slabs_are_within_one_row_of_each_other(rows, heights, monkeypatch):
    # 13 rows in slabs of at most ``rows``: never a short last slab (on a CPU it would take the slow conv path)
    net = ASFEFusion(3, detail_injection=0.5, detail_fwhm=3.0).eval()
    x = torch.rand(1, 2, 13, 9, 11)
    net.tail_slab_voxels = rows * 16 * 16  # the padded grid's last two axes are 16 x 16
    seen: list[int] = []
    tail = net._tail

    def spy(wr, xp, xx, band, size):
        seen.append(int(xx.shape[2]))
        return tail(wr, xp, xx, band, size)

    monkeypatch.setattr(net, "_tail", spy)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (1, 1, 13, 9, 11)
    # each slab's input rows: its own plus the halo row above (all but the first) and below (all but the last)
    own = [h - (i > 0) - (i < len(seen) - 1) for i, h in enumerate(seen)]
    assert own == heights


def test_tail_in_slabs_bad_input_still_refused():
    net = ASFEFusion(3).eval()
    net.tail_slab_voxels = 1
    with pytest.raises(ValueError, match=r"expects \(B, 2, \*spatial\).*got shape \(1, 3, 4, 4, 4\)"):
        with torch.no_grad():
            net(torch.rand(1, 3, 4, 4, 4))


@pytest.mark.parametrize("spatial_dims, size", [(3, (13, 9, 11)), (2, (10, 7))])
def test_forward_is_finish_of_coarse(spatial_dims, size):
    torch.manual_seed(0)
    net = ASFEFusion(spatial_dims, detail_injection=0.5, detail_fwhm=3.0).eval()
    x = torch.rand(2, 2, *size)
    with torch.no_grad():
        wr = net.coarse(x)
        whole = net(x)
        assert torch.equal(net.finish(wr, x), whole)
        scripted = torch.jit.script(net)
        assert torch.equal(scripted.finish(scripted.coarse(x), x), whole)
    # the logits cover the network's padded grid at the stem's stride
    padded = [max(-(-n // net.multiple), 2) * net.multiple for n in size]
    assert wr.shape[:2] == (2, 2) and list(wr.shape[2:]) == [n // net.stem_stride for n in padded]


def test_finish_takes_logits_cut_to_the_input_and_pads_them():
    torch.manual_seed(0)
    net = ASFEFusion(3).eval()
    x = torch.rand(1, 2, 16, 16, 16)  # a multiple of the network's padding: nothing to pad
    with torch.no_grad():
        wr = net.coarse(x)
        assert torch.equal(net.finish(wr, x), net(x))
        y = torch.rand(1, 2, 13, 16, 16)  # padded to 16: logits of 7 (the input's own) or 8 rows are both accepted
        cut = net.finish(net.coarse(y)[:, :, :7], y)
        assert cut.shape == (1, 1, 13, 16, 16) and torch.isfinite(cut).all()


@pytest.mark.parametrize("shape, quoted", [
    ((1, 2, 6, 8, 8), r"low between \[7, 8, 8\] and \[8, 8, 8\] per axis, got \(1, 2, 6, 8, 8\)"),
    ((1, 2, 9, 8, 8), r"got \(1, 2, 9, 8, 8\)"),
    ((1, 3, 8, 8, 8), r"got \(1, 3, 8, 8, 8\)"),
    ((2, 2, 8, 8, 8), r"got \(2, 2, 8, 8, 8\)"),
])
def test_finish_refuses_logits_of_another_grid(shape, quoted):
    net = ASFEFusion(3).eval()
    with pytest.raises(ValueError, match=quoted), torch.no_grad():
        net.finish(torch.zeros(shape), torch.rand(1, 2, 13, 16, 16))


def test_coarse_refuses_bad_input():
    with pytest.raises(ValueError, match=r"got shape \(1, 1, 8, 8, 8\)"):
        ASFEFusion(3).coarse(torch.rand(1, 1, 8, 8, 8))


@pytest.mark.parametrize("override, quoted", [
    ({"stem_stride": 2.5}, "stem_stride must be 1, 2 or 4, got 2.5"),
    ({"stem_stride": "2"}, "stem_stride must be 1, 2 or 4, got '2'"),
    ({"convs_per_stage": 1.7}, "convs_per_stage must be an integer >= 1, got 1.7"),
    ({"residual_scale": float("nan")}, "residual_scale must be a finite number >= 0, got nan"),
])
def test_structure_numbers_are_refused_not_truncated(override, quoted):
    """``stem_stride=2.5`` built a stride-2 network whose ``config`` still said 2.5."""
    with pytest.raises(ValueError, match=quoted):
        ASFEFusion(3, **override)


def test_numpy_numbers_taken_and_kept_as_python_numbers_in_the_config():
    import numpy as np

    net = ASFEFusion(2, stem_stride=np.int64(2), convs_per_stage=np.int64(1), detail_injection=np.float32(0.5))
    assert net.config["stem_stride"] == 2 and type(net.config["stem_stride"]) is int
    assert type(net.config["convs_per_stage"]) is int and net.detail_injection == 0.5
