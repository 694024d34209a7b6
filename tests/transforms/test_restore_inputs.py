"""RestoreIntensity / RestoreIntensityd with the inputs a MONAI user hands them (arrays, missing keys)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from asfe3d.transforms import RestoreIntensity, RestoreIntensityd, RobustNormalized


def test_restore_takes_a_numpy_array_like_every_other_array_transform() -> None:
    img = np.linspace(0, 1, 24, dtype=np.float64).reshape(1, 2, 3, 4)
    out = RestoreIntensity()(img, (10.0, 20.0))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), img * 10 + 10, rtol=1e-6)


@pytest.mark.parametrize("window", [None, (1.0,), (0.0, float("nan")), "ab"])
def test_restore_refuses_a_bad_window_quoting_it(window: object) -> None:
    with pytest.raises(ValueError, match="window must be"):
        RestoreIntensity()(torch.zeros(1, 2, 2, 2), window)


def test_restored_without_any_of_its_keys_needs_no_reference() -> None:
    data = {"other": 1}
    assert RestoreIntensityd(keys="fused", ref_key="mri", allow_missing_keys=True)(data) == data


def test_restored_reference_without_a_window_is_refused_in_one_line() -> None:
    data = {"mri": np.zeros((1, 4, 4, 4), np.float32), "fused": torch.zeros(1, 4, 4, 4)}
    with pytest.raises(ValueError, match="'mri' holds no normalisation window .*RobustNormalized"):
        RestoreIntensityd(keys="fused", ref_key="mri")(data)


def test_restored_after_robust_normalized_maps_back() -> None:
    rng = np.random.default_rng(0)
    mri = MetaTensor(torch.from_numpy(rng.random((1, 6, 6, 6)).astype(np.float32) * 100), affine=torch.eye(4))
    data = RobustNormalized(keys="mri", mask_key=None)({"mri": mri})
    data["fused"] = data["mri"].clone()
    out = RestoreIntensityd(keys="fused", ref_key="mri")(data)["fused"]
    lo, hi = data["mri"].meta["asfe3d_window"]
    np.testing.assert_allclose(out.numpy(), data["mri"].numpy() * (hi - lo) + lo, rtol=1e-5)
