"""Tests of the MONAI-style FusionMetric on tiny 2D (32x32) and 3D (16^3) batches."""

from __future__ import annotations

import math

import pytest
import torch
from monai.metrics import CumulativeIterationMetric

from asfe3d.metrics import METRIC_NAMES, FusionMetric, fusion_metrics

SPATIAL = {"2d": (32, 32), "3d": (16, 16, 16)}


def smooth_batch(batch: int, channels: int, spatial: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((batch, channels) + spatial, generator=g)
    pool = torch.nn.functional.avg_pool2d if len(spatial) == 2 else torch.nn.functional.avg_pool3d
    x = pool(x, 3, stride=1, padding=1)
    lo = x.amin(dim=tuple(range(2, x.ndim)), keepdim=True)
    hi = x.amax(dim=tuple(range(2, x.ndim)), keepdim=True)
    return (x - lo) / (hi - lo)


@pytest.fixture(params=list(SPATIAL), ids=list(SPATIAL))
def spatial(request: pytest.FixtureRequest) -> tuple[int, ...]:
    return SPATIAL[request.param]


def test_batch_matches_functional_and_aggregates(spatial: tuple[int, ...]) -> None:
    metric = FusionMetric()
    assert isinstance(metric, CumulativeIterationMetric)
    src = smooth_batch(3, 2, spatial, 0)
    fused = smooth_batch(3, 1, spatial, 1)
    out = metric(y_pred=fused, y=src)
    assert out.shape == (3, len(METRIC_NAMES))
    per_item = [fusion_metrics(fused[i, 0], src[i, 0], src[i, 1]) for i in range(3)]
    for j, name in enumerate(METRIC_NAMES):
        for i in range(3):
            assert out[i, j].item() == pytest.approx(per_item[i][name], rel=1e-12)
    # a second call accumulates; aggregate is the mean over all 5 items
    src2, fused2 = smooth_batch(2, 2, spatial, 2), smooth_batch(2, 1, spatial, 3)
    metric(y_pred=fused2, y=src2)
    agg = metric.aggregate()
    assert list(agg) == METRIC_NAMES
    per_item += [fusion_metrics(fused2[i, 0], src2[i, 0], src2[i, 1]) for i in range(2)]
    for name in METRIC_NAMES:
        assert agg[name] == pytest.approx(sum(p[name] for p in per_item) / 5, rel=1e-9)
    # MONAI's reduction argument (it was a TypeError): per-item values, sums, the metric's own default
    items = metric.aggregate(reduction="none")
    assert items["SSIM"].shape == (5,) and items["SSIM"][3].item() == pytest.approx(per_item[3]["SSIM"], rel=1e-12)
    assert metric.aggregate("sum")["PSNR"] == pytest.approx(sum(p["PSNR"] for p in per_item), rel=1e-9)
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'mean_channel'"):
        metric.aggregate("mean_channel")
    with pytest.raises(ValueError, match="got 'max'"):
        FusionMetric(reduction="max")
    metric.reset()
    with pytest.raises(ValueError, match="nothing accumulated"):
        metric.aggregate()


def test_selected_names_list_input_and_mask(spatial: tuple[int, ...]) -> None:
    metric = FusionMetric(names=["PSNR", "SSIM"])
    assert metric.names == ["SSIM", "PSNR"]
    src = smooth_batch(2, 2, spatial, 0)
    fused = smooth_batch(2, 1, spatial, 1)
    mask = torch.zeros((2, 1) + spatial, dtype=torch.bool)
    mask[(slice(None), slice(None)) + (slice(4, -4),) * len(spatial)] = True
    out_t = metric(y_pred=fused, y=src, mask=mask)
    out_l = metric(y_pred=list(fused), y=list(src), mask=list(mask))
    assert torch.allclose(out_t, out_l)
    expected = fusion_metrics(fused[0], src[0, 0], src[0, 1], mask=mask[0], names=["SSIM", "PSNR"])
    assert out_t[0].tolist() == pytest.approx([expected["SSIM"], expected["PSNR"]], rel=1e-12)
    # a 0/1 mask of numbers (a label file read by LoadImaged) is the same mask; it was refused ("must be boolean")
    as_float = FusionMetric(names=["SSIM", "PSNR"])(y_pred=fused, y=src, mask=mask.float())
    assert torch.equal(as_float, out_t)
    with pytest.raises(ValueError, match=r"must be boolean \(or hold only 0 and 1\), got \[0.0, 0.5\]"):
        FusionMetric(names=["PSNR"])(y_pred=fused, y=src, mask=mask.float() * 0.5)
    unmasked = FusionMetric(names=["PSNR"])(y_pred=fused, y=src)
    assert not math.isclose(unmasked[0, 0].item(), out_t[0, 1].item())


def test_bad_input(spatial: tuple[int, ...]) -> None:
    src = smooth_batch(2, 2, spatial, 0)
    fused = smooth_batch(2, 1, spatial, 1)
    metric = FusionMetric(names=["SD"])
    with pytest.raises(ValueError, match=r"got \(2, 1"):
        metric(y_pred=fused, y=src[:, :1])
    with pytest.raises(ValueError, match=r"y_pred must have shape"):
        metric(y_pred=src, y=src)
    with pytest.raises(ValueError, match="sources"):
        metric(y_pred=fused)
    with pytest.raises(ValueError, match="mask must have shape"):
        metric(y_pred=fused, y=src, mask=torch.ones((2, 1) + tuple(s + 1 for s in spatial), dtype=torch.bool))
    bad = fused.clone()
    bad[1, 0].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="^batch item 1: .*NaN"):  # which item (it quoted one item's shape only)
        metric(y_pred=bad, y=src)
    with pytest.raises(ValueError, match="^item 1: .*NaN"):
        metric(y_pred=list(bad), y=list(src))
    empty = torch.ones((2, 1, *spatial), dtype=torch.bool)
    empty[1] = False
    with pytest.raises(ValueError, match="^batch item 1: "):
        metric(y_pred=fused, y=src, mask=empty)
    with pytest.raises(ValueError, match="unknown metric names"):
        FusionMetric(names=["SSIM", "Qcb"])
    with pytest.raises(ValueError, match="duplicates"):
        FusionMetric(names=["SSIM", "SSIM"])


def test_items_with_nothing_to_fuse_are_left_out_of_the_means() -> None:
    """Probe 35 #3: a volume scored slice by slice with empty end slices (F = A = B = 0 there) had PSNR inf and its
    SSIM, EN and CC means skewed; such items are NaN now, left out of the mean as MONAI's reductions do."""
    torch.manual_seed(0)
    sources = torch.rand(4, 2, 16, 16)
    sources[2:] = 0.0  # two empty slices
    fused = sources.mean(dim=1, keepdim=True)
    metric = FusionMetric(names=["EN", "SSIM", "PSNR"])
    metric(y_pred=fused, y=sources)
    means = metric.aggregate()
    alone = FusionMetric(names=["EN", "SSIM", "PSNR"])
    alone(y_pred=fused[:2], y=sources[:2])
    assert all(math.isfinite(v) for v in means.values()) and means == pytest.approx(alone.aggregate())
    assert torch.isnan(metric.aggregate("none")["PSNR"][2:]).all()
    # a source at 8-bit level 1 (0.49999 / 255 rounds up, as the metrics' own conversion does) is not "nothing"
    faint = torch.zeros(1, 2, 16, 16)
    faint[0, 1, 4:8, 4:8] = 0.49999 / 255
    one = FusionMetric(names=["EN"])
    one(y_pred=faint[:, 1:], y=faint)
    assert not torch.isnan(one.aggregate("none")["EN"]).any()


def test_sum_of_nothing_scored_is_nan_not_zero():
    """Probe 42 #6: ``aggregate("sum")`` over items that are all NaN (nothing to fuse) gave 0.0, a score."""
    m = FusionMetric(names=["EN", "PSNR"])
    m(y_pred=torch.full((2, 1, 8, 8), 0.7), y=torch.zeros(2, 2, 8, 8))
    assert all(math.isnan(v) for v in m.aggregate("sum").values())
    rng = torch.Generator().manual_seed(0)
    m(y_pred=torch.rand(1, 1, 8, 8, generator=rng), y=torch.rand(1, 2, 8, 8, generator=rng))
    assert all(math.isfinite(v) for v in m.aggregate("sum").values())  # one scored item: its value


def test_an_empty_batch_is_refused_by_name():
    """Probe 42 #7: a batch of 0 items failed in MONAI's buffer with an unrelated TypeError."""
    with pytest.raises(ValueError, match=r"empty batch \(y_pred \(0, 1, 8, 8\)\)"):
        FusionMetric()(y_pred=torch.zeros(0, 1, 8, 8), y=torch.zeros(0, 2, 8, 8))
