from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from asfe3d.losses import ASFEFusionLoss, gaussian_filter, ssim, structure_tensor
from asfe3d.losses.fusion_loss import change_fidelity, focal_change

SHAPES = [(2, (24, 20)), (3, (12, 10, 14))]


def _smooth_pair(spatial_dims, size):
    x = torch.rand(2, 2, *size)
    pool = F.avg_pool2d if spatial_dims == 2 else F.avg_pool3d
    return pool(x, 3, 1, 1)


def _optimise(param: torch.nn.Parameter, loss_fn, inputs: torch.Tensor, steps: int, lr: float) -> list[float]:
    """Adam on the fused image itself; the loss after each step."""
    opt = torch.optim.Adam([param], lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn(param, inputs)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_loss_decreases_when_optimising_the_fused_image(spatial_dims, size):
    inputs = _smooth_pair(spatial_dims, size)
    fused = torch.nn.Parameter(torch.rand(2, 1, *size))
    loss_fn = ASFEFusionLoss(spatial_dims)
    losses = _optimise(fused, loss_fn, inputs, steps=15, lr=0.02)
    assert losses[-1] < 0.8 * losses[0]
    assert set(loss_fn.last_components) == {"content", "gradient", "ssim", "total"}
    assert loss_fn.last_components["total"] == pytest.approx(losses[-1])


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_ssim_term_alone_has_a_gradient(spatial_dims, size):
    inputs = _smooth_pair(spatial_dims, size)
    fused = torch.rand(2, 1, *size, requires_grad=True)
    ASFEFusionLoss(spatial_dims, w_content=0.0, w_gradient=0.0, w_ssim=1.0)(fused, inputs).backward()
    assert fused.grad.abs().sum() > 0
    # and the gradient term alone
    fused.grad = None
    ASFEFusionLoss(spatial_dims, w_content=0.0, w_gradient=1.0, w_ssim=0.0)(fused, inputs).backward()
    assert fused.grad.abs().sum() > 0


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_ssim_properties(spatial_dims, size):
    x = _smooth_pair(spatial_dims, size)[:, :1]
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(x, 1 - x).item() < 0
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert 0 < ssim(x, noisy).item() < 0.95


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_structure_tensor_of_a_ramp(spatial_dims, size):
    """For I = a * coordinate along the last axis, g = (0, .., a) so J has a^2 in the last diagonal entry only."""
    a = 0.05
    ramp = a * torch.arange(size[-1], dtype=torch.double).expand(1, 1, *size).clone()
    j = structure_tensor(ramp, sigma=1.0)
    assert j.shape == (1, spatial_dims * (spatial_dims + 1) // 2, *size)
    torch.testing.assert_close(j[:, -1], torch.full_like(j[:, -1], a * a))
    torch.testing.assert_close(j[:, :-1], torch.zeros_like(j[:, :-1]))


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_gaussian_filter_keeps_constants_and_mass(spatial_dims, size):
    c = torch.full((1, 2, *size), 0.3)
    torch.testing.assert_close(gaussian_filter(c, 1.5), c)
    assert gaussian_filter(torch.rand(1, 1, *size), 1.0).std() < 0.29


def test_perfect_content_target_gives_zero_content_loss():
    inputs = _smooth_pair(2, (16, 16))
    loss_fn = ASFEFusionLoss(2, content_target="max")
    loss_fn(inputs.amax(1, keepdim=True), inputs)
    assert loss_fn.last_components["content"] == pytest.approx(0.0, abs=1e-12)


def test_bad_arguments_raise_with_values():
    with pytest.raises(ValueError, match="4"):
        ASFEFusionLoss(4)
    with pytest.raises(ValueError, match=r"-1\.0"):
        ASFEFusionLoss(2, w_ssim=-1.0)
    with pytest.raises(ValueError, match="median"):
        ASFEFusionLoss(3, content_target="median")
    with pytest.raises(ValueError, match="at least one"):
        ASFEFusionLoss(2, w_content=0, w_gradient=0, w_ssim=0)
    with pytest.raises(ValueError, match=r"\(1, 2, 8, 8\)"):
        ASFEFusionLoss(2)(torch.rand(1, 2, 8, 8), torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"\(1, 1, 8, 8\)"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_edge_term_max_abs_target(spatial_dims, size):
    """w_edge adds L1(|grad F|, max(|grad A|, |grad B|)): zero when F carries the sharper source's edges, and
    optimising it alone sharpens a blurred fused image."""
    from asfe3d.losses.fusion_loss import edge_magnitude

    sharp = _smooth_pair(spatial_dims, size)[:, :1]
    flat = torch.full_like(sharp, 0.5)
    inputs = torch.cat([sharp, flat], dim=1)
    loss_fn = ASFEFusionLoss(spatial_dims, w_content=0.0, w_gradient=0.0, w_ssim=0.0, w_edge=1.0)
    assert loss_fn(sharp, inputs).item() == pytest.approx(0.0, abs=1e-7)
    assert set(loss_fn.last_components) == {"content", "gradient", "ssim", "edge", "total"}
    blurred = torch.nn.Parameter(0.5 + 0.2 * (sharp - 0.5))
    before = edge_magnitude(blurred.detach()).mean().item()
    losses = _optimise(blurred, loss_fn, inputs, steps=20, lr=0.01)
    assert losses[-1] < 0.7 * losses[0]
    assert edge_magnitude(blurred.detach()).mean().item() > before
    # off by default: the original three components only
    default = ASFEFusionLoss(spatial_dims)
    default(sharp, inputs)
    assert "edge" not in default.last_components
    with pytest.raises(ValueError):
        ASFEFusionLoss(spatial_dims, w_edge=-1.0)


def _changed_pair(spatial_dims, size, seed=0):
    """Smooth inputs, a loss with the change term only, and one focal change of their PET."""
    torch.manual_seed(seed)
    inputs = 0.3 + 0.6 * _smooth_pair(spatial_dims, size)
    loss_fn = ASFEFusionLoss(spatial_dims, w_content=0.0, w_gradient=0.0, w_ssim=0.0, w_change=2.0,
                             change_size_mm=(4.0, 6.0), change_voxel_mm=1.0)
    changed, blob = loss_fn.make_change(inputs, torch.Generator().manual_seed(seed))
    return inputs, loss_fn, changed, blob


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_change_term_zero_when_the_fused_change_equals_the_pet_change(spatial_dims, size):
    inputs, loss_fn, changed, blob = _changed_pair(spatial_dims, size)
    assert torch.equal(changed[:, :1], inputs[:, :1])  # the MRI is untouched
    assert (changed[:, 1:] != inputs[:, 1:]).any() and blob.amax() == pytest.approx(1.0)
    fused = 0.5 * inputs[:, :1] + 0.2  # any fused image ...
    fused_changed = fused + (changed[:, 1:] - inputs[:, 1:])  # ... that changes exactly as the PET does
    assert loss_fn(fused, inputs, fused_changed, changed, blob).item() == pytest.approx(0.0, abs=1e-6)
    assert loss_fn.last_components["change"] == pytest.approx(0.0, abs=1e-6)
    # the MRI alone (no change at all): 1 x w_change; half the change: 0.5; twice the change: 1
    assert loss_fn(fused, inputs, fused, changed, blob).item() == pytest.approx(2.0, rel=1e-5)
    half = fused + 0.5 * (changed[:, 1:] - inputs[:, 1:])
    assert loss_fn(fused, inputs, half, changed, blob).item() == pytest.approx(1.0, rel=1e-5)
    assert change_fidelity(fused, fused + 2 * (changed[:, 1:] - inputs[:, 1:]), inputs[:, 1:], changed[:, 1:],
                           blob).item() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_change_term_positive_and_trainable(spatial_dims, size):
    """Optimising the changed fused image on the term alone moves its change towards the PET change."""
    inputs, loss_fn, changed, blob = _changed_pair(spatial_dims, size, seed=1)
    fused = inputs[:, 1:].clone()
    fused_changed = torch.nn.Parameter(fused.clone())
    losses = []
    opt = torch.optim.Adam([fused_changed], lr=0.01)
    for _ in range(20):
        loss = loss_fn(fused, inputs, fused_changed, changed, blob)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 1.0 and losses[-1] < 0.5 * losses[0]
    assert set(loss_fn.last_components) == {"content", "gradient", "ssim", "change", "total"}


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_focal_change_is_reproducible_and_inside_the_uptake(spatial_dims, size):
    pet = torch.zeros(3, 1, *size)
    inside = (slice(None), slice(None), *(slice(n // 4, 3 * n // 4) for n in size))
    pet[inside] = 0.8
    a, blob_a = focal_change(pet, torch.Generator().manual_seed(5), size_mm=(3.0, 4.0), min_pet=0.5)
    b, blob_b = focal_change(pet, torch.Generator().manual_seed(5), size_mm=(3.0, 4.0), min_pet=0.5)
    assert torch.equal(a, b) and torch.equal(blob_a, blob_b)
    peaks = blob_a.flatten(1).argmax(1)
    assert all(pet.flatten(1)[i, p] == 0.8 for i, p in enumerate(peaks.tolist()))  # centred where PET > min_pet
    assert (a[pet == 0] == 0).all() and a.min() >= 0 and a.max() <= 1
    lowered, _ = focal_change(pet, torch.Generator().manual_seed(5), raise_prob=0.0, fraction=(0.3, 0.3))
    assert (lowered <= pet).all() and lowered[pet > 0].min() == pytest.approx(0.8 * 0.7, rel=1e-4)
    none, blob = focal_change(torch.zeros(1, 1, *size), torch.Generator())  # no uptake: unchanged
    assert torch.equal(none, torch.zeros(1, 1, *size)) and blob.abs().sum() == 0
    assert change_fidelity(none, none, none, none, blob).item() == 0.0


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_focal_change_hot_draws_lower_the_hottest_voxels(spatial_dims, size):
    pet = torch.zeros(4, 1, *size)
    pet[(slice(None), slice(None), *(slice(n // 4, 3 * n // 4) for n in size))] = 0.5
    hot_spot = (slice(None), slice(None), *(slice(n // 2 - 1, n // 2 + 1) for n in size))
    pet[hot_spot] = 1.0  # a small region at the normalised PET's ceiling
    changed, blob = focal_change(pet, torch.Generator().manual_seed(3), size_mm=(3.0, 4.0), hot_prob=1.0,
                                 raise_prob=1.0)
    peaks = blob.flatten(1).argmax(1)
    assert all(pet.flatten(1)[i, p] == 1.0 for i, p in enumerate(peaks.tolist()))  # every centre at the ceiling
    assert (changed <= pet).all() and (changed[hot_spot] < 1.0).all()  # lowered, though raise_prob is 1
    # hot_prob 0 (the default) keeps the earlier draws exactly
    default = focal_change(pet, torch.Generator().manual_seed(3), size_mm=(3.0, 4.0))
    off = focal_change(pet, torch.Generator().manual_seed(3), size_mm=(3.0, 4.0), hot_prob=0.0)
    assert all(torch.equal(a, b) for a, b in zip(default, off))
    with pytest.raises(ValueError, match=r"hot_prob must be in \[0, 1\], got -0.5"):
        focal_change(pet, torch.Generator(), hot_prob=-0.5)


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_focal_change_sizes_in_each_items_own_mm(spatial_dims, size):
    """With ``spacing``, a blob of a size in mm is half as many voxels across on a grid twice as coarse (per axis);
    the draws (centres, changes) are those without it; ``voxel_mm`` equal to a uniform spacing gives the same blob."""
    pet = torch.full((2, 1, *size), 0.8)
    draw = dict(size_mm=(4.0, 4.0), fraction=(0.3, 0.3), raise_prob=0.0)
    fine = torch.tensor([[1.0] * spatial_dims, [2.0] * spatial_dims])
    _, blob = focal_change(pet, torch.Generator().manual_seed(2), spacing=fine, **draw)
    _, plain = focal_change(pet, torch.Generator().manual_seed(2), voxel_mm=1.0, **draw)
    torch.testing.assert_close(blob[0], plain[0])
    assert blob.flatten(1).argmax(1).tolist() == plain.flatten(1).argmax(1).tolist()  # the same centres
    width = (blob > 0.5).flatten(1).sum(1).tolist()  # voxels over half the peak
    assert width[1] < width[0] / 2 ** (spatial_dims - 1)
    aniso = torch.tensor([[1.0] + [2.0] * (spatial_dims - 1)] * 2)
    _, stretched = focal_change(pet, torch.Generator().manual_seed(2), spacing=aniso, **draw)
    c = [int(v) for v in torch.nonzero(stretched[0, 0] == stretched[0, 0].max())[0]]
    along0 = stretched[0, 0][(c[0] + 1, *c[1:])]
    along1 = stretched[0, 0][(c[0], c[1] + 1, *c[2:])]
    assert along0 > along1  # a voxel step costs more along the coarser axis
    with pytest.raises(ValueError, match=rf"spacing must be \(B, {spatial_dims}\) finite voxel sizes > 0"):
        focal_change(pet, torch.Generator(), spacing=torch.zeros(2, spatial_dims))


def test_change_grid_mm_needs_the_batch_spacing():
    inputs = torch.rand(2, 2, 12, 10, 14)
    loss_fn = ASFEFusionLoss(3, w_change=1.0, change_grid_mm=True)
    with pytest.raises(ValueError, match="change_grid_mm needs each item's voxel size"):
        loss_fn.make_change(inputs, torch.Generator())
    changed, blob = loss_fn.make_change(inputs, torch.Generator().manual_seed(0), torch.ones(2, 3))
    assert changed.shape == inputs.shape and blob.shape == (2, 1, 12, 10, 14)
    with pytest.raises(ValueError, match="change_grid_mm must be true or false, got 'yes'"):
        ASFEFusionLoss(3, w_change=1.0, change_grid_mm="yes")


@pytest.mark.parametrize("spatial_dims,size", SHAPES)
def test_change_term_bad_input(spatial_dims, size):
    inputs, loss_fn, changed, blob = _changed_pair(spatial_dims, size)
    fused = inputs[:, 1:]
    with pytest.raises(ValueError, match="w_change=2.0 needs fused_changed"):
        loss_fn(fused, inputs)
    with pytest.raises(ValueError, match=r"change_weight must have fused's shape"):
        loss_fn(fused, inputs, fused, changed, blob[:1])
    with pytest.raises(ValueError, match="five"):
        change_fidelity(fused, fused, fused, fused, blob[..., :2])
    with pytest.raises(ValueError, match=r"\(2, 2,"):
        focal_change(inputs, torch.Generator())
    with pytest.raises(ValueError, match=r"make_change expects .*\(2, 1,"):
        loss_fn.make_change(fused)


@pytest.mark.parametrize(
    "kwargs,quoted",
    [
        ({"w_change": -2.5}, r"'w_change': -2.5"),
        ({"w_change": float("nan")}, r"'w_change': nan"),
        ({"w_change": "5"}, r"'w_change': '5'"),
        ({"change_size_mm": (20.0, 6.0)}, r"change_size_mm .*\(20.0, 6.0\)"),
        ({"change_size_mm": (0.0, 6.0)}, r"change_size_mm .*\(0.0, 6.0\)"),
        ({"change_size_mm": 12.0}, r"change_size_mm must be two numbers .*12.0"),
        ({"change_fraction": (0.2, 1.5)}, r"fraction .*\(0.2, 1.5\)"),
        ({"change_raise": 1.2}, r"change_raise must be in \[0, 1\], got 1.2"),
        ({"change_voxel_mm": 0}, r"change_voxel_mm must be a finite number > 0, got 0"),
        ({"change_min_pet": -0.1}, r"change_min_pet must be in \[0, 1\), got -0.1"),
        ({"change_hot": 1.5}, r"change_hot must be in \[0, 1\], got 1.5"),
    ],
)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_change_settings_refused_with_the_value(spatial_dims, kwargs, quoted):
    with pytest.raises(ValueError, match=quoted):
        ASFEFusionLoss(spatial_dims, **kwargs)


def test_change_term_off_by_default():
    inputs = _smooth_pair(2, (16, 16))
    loss_fn = ASFEFusionLoss(2)
    assert loss_fn.w_change == 0.0
    loss_fn(inputs[:, 1:], inputs)
    assert "change" not in loss_fn.last_components
    # the change term alone counts as a non-zero weight
    assert ASFEFusionLoss(2, w_content=0, w_gradient=0, w_ssim=0, w_change=1.0).w_change == 1.0


@pytest.mark.parametrize("nd", [2, 3])
def test_band_terms_zero_when_both_kept_and_positive_for_copies(nd: int) -> None:
    from asfe3d.losses.fusion_loss import band_losses, gaussian_filter

    g = torch.Generator().manual_seed(0)
    shape = (1, 1) + (20,) * nd
    mri = torch.rand(shape, generator=g)
    pet = gaussian_filter(torch.rand(shape, generator=g), 3.0)
    sigma = 2.0
    # a fused image that is the PET plus the MRI's detail band: both terms small
    fused = pet + (mri - gaussian_filter(mri, sigma))
    petc, detail = band_losses(fused, mri, pet, sigma)
    assert float(detail) < 0.15 and float(petc) < 0.06
    petc_copy, detail_copy = band_losses(pet, mri, pet, sigma)
    assert float(detail_copy) > 0.95  # a PET copy has no MRI detail
    petc_mri, detail_mri = band_losses(mri, mri, pet, sigma)
    assert float(detail_mri) < 1e-6 and float(petc_mri) > 2 * float(petc)  # an MRI copy is not the PET


def test_band_loss_weights_and_settings_checked() -> None:
    from asfe3d.losses import ASFEFusionLoss

    with pytest.raises(ValueError, match="w_petc"):
        ASFEFusionLoss(3, w_petc=-1.0)
    with pytest.raises(ValueError, match="band_fwhm_mm"):
        ASFEFusionLoss(3, w_detail=1.0, band_fwhm_mm=0.0)
    loss = ASFEFusionLoss(3, w_petc=2.0, w_detail=3.0, band_fwhm_mm=6.0, band_voxel_mm=2.0)
    x = torch.rand(1, 2, 12, 12, 12)
    total = loss(x[:, 1:], x)
    c = loss.last_components
    assert {"petc", "detail"} <= set(c)
    base = 10.0 * c["content"] + 0.1 * c["gradient"] + 1.0 * c["ssim"]
    assert float(total) == pytest.approx(base + 2.0 * c["petc"] + 3.0 * c["detail"], rel=1e-5)


def test_detail_gain_asks_for_amplified_detail() -> None:
    from asfe3d.losses import ASFEFusionLoss
    from asfe3d.losses.fusion_loss import band_losses, gaussian_filter

    g = torch.Generator().manual_seed(1)
    mri = torch.rand(1, 1, 24, 24, generator=g)
    pet = gaussian_filter(torch.rand(1, 1, 24, 24, generator=g), 3.0)
    band = mri - gaussian_filter(mri, 2.0)
    plain, amplified = pet + band, pet + 1.5 * band
    # gain 1: the plain detail band is right, the amplified one is not; gain 1.5: the other way round
    assert float(band_losses(plain, mri, pet, 2.0)[1]) < float(band_losses(amplified, mri, pet, 2.0)[1])
    assert float(band_losses(amplified, mri, pet, 2.0, detail_gain=1.5)[1]) < float(
        band_losses(plain, mri, pet, 2.0, detail_gain=1.5)[1])
    with pytest.raises(ValueError, match="detail_gain"):
        band_losses(plain, mri, pet, 2.0, detail_gain=0.0)
    with pytest.raises(ValueError, match="detail_gain"):
        ASFEFusionLoss(2, w_detail=1.0, detail_gain=-1.0)
    assert ASFEFusionLoss(2, w_detail=1.0, detail_gain=1.35).detail_gain == 1.35
