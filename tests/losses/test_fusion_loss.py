from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from asfe3d.losses import ASFEFusionLoss, gaussian_filter, ssim, structure_tensor

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
