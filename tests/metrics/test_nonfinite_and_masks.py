"""The band and task measures refuse NaN/Inf inputs (they returned NaN silently); FusionMetric's mask shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asfe3d.metrics import FusionMetric, defect_transfer, empty_output, mri_detail, pet_consistency


@pytest.fixture
def images() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a, b = rng.random((10, 11, 9)), rng.random((10, 11, 9))
    bad = a.copy()
    bad[1, 2, 3] = np.nan
    return a, b, bad


def test_mri_detail_and_pet_consistency_refuse_nan(images: tuple[np.ndarray, ...]) -> None:
    a, b, bad = images
    with pytest.raises(ValueError, match=r"fused \(shape \(10, 11, 9\)\) holds NaN or Inf"):
        mri_detail(bad, a)
    with pytest.raises(ValueError, match=r"mri \(shape \(10, 11, 9\)\) holds NaN or Inf"):
        mri_detail(a, bad)
    with pytest.raises(ValueError, match=r"pet \(shape \(10, 11, 9\)\) holds NaN or Inf"):
        pet_consistency(a, np.where(np.isnan(bad), np.inf, bad))
    assert np.isfinite(mri_detail(a, b)) and np.isfinite(pet_consistency(a, b))


def test_defect_transfer_and_empty_output_refuse_nan(images: tuple[np.ndarray, ...]) -> None:
    a, b, bad = images
    with pytest.raises(ValueError, match="fused_ref .* holds NaN or Inf"):
        defect_transfer(bad, a, b, b * 0.5, np.ones(a.shape, bool))
    with pytest.raises(ValueError, match="fused .* holds NaN or Inf"):
        empty_output(bad, np.zeros(a.shape), np.zeros(a.shape))


def test_fusion_metric_refuses_a_mask_with_two_channels_quoting_the_shapes() -> None:
    metric = FusionMetric(names=["CC"])
    pred, src = torch.rand(2, 1, 6, 7, 5), torch.rand(2, 2, 6, 7, 5)
    with pytest.raises(ValueError, match=r"mask must have shape .*\(2, 1, 6, 7, 5\), got \(2, 2, 6, 7, 5\)"):
        metric(y_pred=pred, y=src, mask=torch.ones(2, 2, 6, 7, 5, dtype=torch.bool))
    metric(y_pred=pred, y=src, mask=torch.ones(2, 6, 7, 5, dtype=torch.bool))
    metric(y_pred=pred, y=src, mask=torch.ones(2, 1, 6, 7, 5, dtype=torch.bool))
    assert np.isfinite(metric.aggregate()["CC"])
