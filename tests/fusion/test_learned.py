from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from asfe3d.errors import Asfe3dInputError
from asfe3d.fusion import AsfeFusionMethod, get_fuser, mode_steps, resolve_device
from asfe3d.fusion.weights import build_network, load_weights, save_weights
from asfe3d.networks.nets import ASFEFusion


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {2: ASFEFusion(spatial_dims=2).eval(), 3: ASFEFusion(spatial_dims=3).eval()}


def _vol(shape=(12, 10, 9), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape, dtype=np.float32), rng.random(shape, dtype=np.float32)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_mode_equals_the_2d_net_on_each_slice(nets, axis):
    mri, pet = _vol()
    fused = AsfeFusionMethod(mode="slice", net=nets[2], slice_axis=axis, device="cpu")(mri, pet)
    assert fused.shape == mri.shape and fused.dtype == np.float32
    k = mri.shape[axis] // 2
    x = torch.from_numpy(np.stack([np.take(mri, k, axis), np.take(pet, k, axis)])[None])
    with torch.no_grad():
        expected = nets[2](x)[0, 0].numpy()
    np.testing.assert_allclose(np.take(fused, k, axis), np.clip(expected, 0, 1), atol=1e-5)


def test_volume_mode_runs_the_3d_net_with_sliding_windows(nets):
    mri, pet = _vol((20, 18, 16))
    whole = AsfeFusionMethod(mode="volume", net=nets[3], roi_size=(32, 32, 32), device="cpu")(mri, pet)
    windowed = AsfeFusionMethod(mode="volume", net=nets[3], roi_size=(12, 12, 12), overlap=0.5, device="cpu")(mri, pet)
    assert whole.shape == windowed.shape == mri.shape
    # gaussian-blended windows approximate the whole-volume pass away from the borders
    assert np.abs(whole - windowed)[4:-4, 4:-4, 4:-4].mean() < 0.05


def test_the_channels_of_one_array_reach_the_network_without_a_copy(nets):
    from asfe3d.fusion.learned import _pair_batch

    image = np.stack(_vol((6, 5, 4)))  # the pipeline's (2, X, Y, Z) image, split into its channels by Fuse
    batch = _pair_batch(image[0], image[1])
    assert batch.shape == (1, 2, 6, 5, 4) and np.shares_memory(batch.numpy(), image)
    swapped = _pair_batch(image[1], image[0])  # not in [MRI, PET] order in memory: stacked in the order given
    assert not np.shares_memory(swapped.numpy(), image)
    np.testing.assert_array_equal(swapped[0, 0].numpy(), image[1])
    apart = _pair_batch(*_vol((6, 5, 4)))  # two separate arrays
    np.testing.assert_array_equal(apart[0, 1].numpy(), _vol((6, 5, 4))[1])
    fused_view = AsfeFusionMethod(mode="volume", net=nets[3], device="cpu")(image[0], image[1])
    fused_copy = AsfeFusionMethod(mode="volume", net=nets[3], device="cpu")(image[0].copy(), image[1].copy())
    np.testing.assert_array_equal(fused_view, fused_copy)
    np.testing.assert_array_equal(image, np.stack(_vol((6, 5, 4))))  # the input is left as it was


def test_2d_image_in_slice_mode(nets):
    mri, pet = _vol((17, 23))
    assert AsfeFusionMethod(mode="slice", net=nets[2], device="cpu")(mri, pet).shape == (17, 23)


def test_weights_round_trip(nets, tmp_path):
    path = save_weights(nets[3], tmp_path / "w.pt", meta={"epochs": 1, "data": "test"})
    payload = load_weights(path)  # weights_only=True inside
    assert payload["meta"]["epochs"] == 1
    net, meta = build_network(path)
    x = torch.rand(1, 2, 9, 10, 11)
    with torch.no_grad():
        torch.testing.assert_close(net(x), nets[3](x))
    fused = get_fuser("asfe", mode="volume", weights=path, device="cpu")(*_vol())
    assert fused.shape == (12, 10, 9)


def test_bad_arguments_and_files(nets, tmp_path):
    with pytest.raises(ValueError, match="'cube'"):
        AsfeFusionMethod(mode="cube", net=nets[2])
    with pytest.raises(ValueError, match="3D network"):
        AsfeFusionMethod(mode="volume", net=nets[2])
    with pytest.raises(ValueError, match="overlap"):
        AsfeFusionMethod(mode="volume", net=nets[3], overlap=1.0)
    with pytest.raises(Asfe3dInputError, match="missing.pt"):
        AsfeFusionMethod(mode="slice", weights=tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(Asfe3dInputError, match="junk.pt"):
        AsfeFusionMethod(mode="slice", weights=junk)
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_cuda_with_amp_matches_cpu(nets, cuda_device):
    mri, pet = _vol((24, 24, 16))
    cpu = AsfeFusionMethod(mode="volume", net=nets[3], device="cpu")(mri, pet)
    gpu = AsfeFusionMethod(mode="volume", net=nets[3], device="cuda", amp=True)(mri, pet)
    assert np.abs(cpu - gpu).max() < 2e-2


def test_detail_injection_setting_overrides_the_weights(tmp_path):
    torch.manual_seed(1)
    net = ASFEFusion(spatial_dims=3, detail_injection=0.5)
    path = save_weights(net, tmp_path / "inj.pt")
    mri, pet = (0.3 + 0.4 * v for v in _vol())  # mid-range, so the clamp stays off
    own = AsfeFusionMethod(mode="volume", weights=path)
    off = AsfeFusionMethod(mode="volume", weights=path, detail_injection=0.0)
    assert own.describe()["detail_injection"] == 0.5 and off.describe()["detail_injection"] == 0.0
    with torch.no_grad():
        band = own.net.detail_band(torch.from_numpy(mri)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(own.fuse_arrays(mri, pet) - off.fuse_arrays(mri, pet), 0.5 * band, atol=1e-4)
    with pytest.raises(ValueError, match="detail_injection must be a finite number >= 0, got -1"):
        AsfeFusionMethod(mode="volume", weights=path, detail_injection=-1)


def test_the_band_width_an_image_gets_follows_the_grid_gate():
    """``detail_band_mm``: the width in mm on a grid the gate lets in, ``None`` (the width in voxels) elsewhere."""
    import torch
    from monai.data import MetaTensor

    net = ASFEFusion(spatial_dims=3, detail_injection=0.5, detail_fwhm=3.0).eval()
    method = AsfeFusionMethod(mode="volume", net=net, device="cpu", steps=mode_steps("volume", detail_fwhm_mm=6.0))
    method.inferer.steps = dataclasses.replace(method.inferer.steps, detail_fwhm_max_voxel_mm=0.8)
    fine, coarse = (MetaTensor(torch.zeros(2, 6, 6, 6), affine=torch.diag(torch.tensor([s, s, s, 1.0])))
                    for s in (0.7, 1.0))
    assert method.detail_band_mm(fine) == 6.0 and method.detail_band_mm(coarse) is None
    shipped = AsfeFusionMethod(mode="volume", net=net, device="cpu")  # the default: 6 mm under 0.8 mm (37th round)
    assert shipped.detail_band_mm(fine) == 6.0 and shipped.detail_band_mm(coarse) is None


def test_detail_band_width_in_mm_is_an_option_and_off_by_default():
    """``detail_fwhm_mm=None`` keeps the band in voxels on every grid; a width in mm turns the mm band on (the shipped
    volume mode takes it on grids finer than 0.8 mm only, the thirty-seventh addendum)."""
    from asfe3d.defaults import DETAIL_FWHM_MM_BY_MODE

    net = ASFEFusion(spatial_dims=3, detail_injection=0.5, detail_fwhm=3.0).eval()
    mri, pet = _vol((14, 12, 10))
    # (without the consistency step that volume mode takes on grids under 0.95 mm: only the band differs here)
    default = AsfeFusionMethod(mode="volume", net=net, device="cpu", steps=mode_steps("volume", detail_fwhm_mm=None, pet_consistency_fine=None))
    in_mm = AsfeFusionMethod(mode="volume", net=net, device="cpu", steps=mode_steps("volume", detail_fwhm_mm=6.0, pet_consistency_fine=None))
    assert DETAIL_FWHM_MM_BY_MODE == {"slice": None, "volume": 6.0}  # volume: on grids finer than 0.8 mm only
    assert default.describe()["detail_fwhm_mm"] is None and in_mm.describe()["detail_fwhm_mm"] == 6.0
    np.testing.assert_array_equal(default(mri, pet, spacing=(0.5, 0.5, 0.5)), default(mri, pet))
    assert np.abs(in_mm(mri, pet, spacing=(0.5, 0.5, 0.5)) - default(mri, pet)).max() > 1e-3
    np.testing.assert_array_equal(in_mm(mri, pet), default(mri, pet))  # no grid given: the width in voxels


def test_mode_steps_resolves_the_commands_choices_into_one_steps_object():
    """``mode_steps``: "auto" is the mode's shipped default; a strength given is taken on every grid at 6 mm; the
    method takes the object as it is (no second copy of the rules)."""
    from asfe3d import defaults as d
    from asfe3d.inferers import FusionSteps

    vol = mode_steps("volume")
    assert (vol.pet_consistency, vol.pet_consistency_fine, vol.detail_fwhm_mm) == (
        d.PET_CONSISTENCY_BY_MODE["volume"], d.PET_CONSISTENCY_FINE_BY_MODE["volume"], d.DETAIL_FWHM_MM_BY_MODE["volume"])
    given = mode_steps("slice", pet_consistency=0.3, detail_fwhm_mm=8.0)
    assert (given.pet_consistency, given.pet_consistency_min_voxel_mm, given.pet_consistency_coarse) == (0.3, None, None)
    assert (given.pet_consistency_optional, given.detail_fwhm_mm, given.detail_fwhm_max_voxel_mm) == (False, 8.0, None)
    net = ASFEFusion(spatial_dims=2)
    assert AsfeFusionMethod("slice", net=net, device="cpu", steps=given).inferer.steps is given
    assert AsfeFusionMethod("slice", net=net, device="cpu").inferer.steps == mode_steps("slice")
    assert AsfeFusionMethod("slice", net=net, device="cpu", steps=FusionSteps()).describe()["pet_consistency"] == 0.0
    with pytest.raises(ValueError, match="mode must be 'slice' or 'volume', got '3d'"):
        mode_steps("3d")
    with pytest.raises(ValueError, match=r"pet_consistency must be a number in \[0, 1\], got 2"):
        mode_steps("volume", pet_consistency=2)


def test_devices_are_checked_however_given_and_the_network_is_put_on_its_device(nets):
    """A ``torch.device`` was taken unchecked (a CUDA one on a machine without CUDA), ``None`` gave an
    AttributeError, and the network stayed on the CPU while its inferer ran it on the method's device."""
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda\\[:N\\]' or a torch.device, got None"):
        resolve_device(None)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device device\(type='cuda'\) requested but CUDA is not available"):
            resolve_device(torch.device("cuda"))
    else:
        with pytest.raises(ValueError, match="GPU"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(torch.device("mps")) == torch.device("mps")  # other device types as they are
    moves = []
    net = nets[3]
    net.to = lambda *args, **kwargs: (moves.append(args), torch.nn.Module.to(net, *args, **kwargs))[1]
    try:
        method = AsfeFusionMethod(mode="volume", net=net, device=torch.device("cpu"))
    finally:
        del net.to
    assert moves == [(torch.device("cpu"),)]
    assert next(method.net.parameters()).device == method.device == method.inferer.sw_device


@pytest.mark.parametrize("kwargs, match", [
    ({"slice_axis": "auto"}, r"slice_axis must be None \(2\), 0, 1 or 2, got 'auto' \(an axis read from the image's "
                             r"affine is given per call"),
    ({"slice_axis": 1.0}, r"slice_axis must be None \(2\), 0, 1 or 2, got 1.0"),
    ({"overlap": "0.5"}, r"overlap must be a number in \[0, 1\), got '0.5'"),
])
def test_bad_slicing_axis_and_overlap_refused_quoting_the_value(nets, kwargs, match):
    with pytest.raises(ValueError, match=match):
        AsfeFusionMethod(mode="slice", net=nets[2], **kwargs)
