"""SimulatedPairDataset on a coarse MNI grid (building the bank reads the 1 mm MNI files: marked slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asfe3d.data.volumes import SimulatedPairDataset


@pytest.fixture(scope="module")
def coarse() -> SimulatedPairDataset:
    return SimulatedPairDataset(6, crop=(16, 20, 12), seed=3, resolution=6.0, bank_size=2)


@pytest.mark.slow
def test_shapes_range_and_content(coarse: SimulatedPairDataset) -> None:
    for i in range(len(coarse)):
        x = coarse[i]["image"]
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (2, 16, 20, 12)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        # crops are centred on brain voxels: both channels carry signal
        assert float(x[0].mean()) > 0.05 and float(x[1].mean()) > 0.05


@pytest.mark.slow
def test_deterministic_with_seed_and_epoch(coarse: SimulatedPairDataset) -> None:
    same = SimulatedPairDataset(6, crop=(16, 20, 12), seed=3, resolution=6.0, bank_size=2)
    other = SimulatedPairDataset(6, crop=(16, 20, 12), seed=4, resolution=6.0, bank_size=2)
    a = torch.stack([coarse[i]["image"] for i in range(6)])
    assert torch.equal(a, torch.stack([same[i]["image"] for i in range(6)]))
    assert not torch.equal(a, torch.stack([other[i]["image"] for i in range(6)]))
    coarse.set_epoch(1)
    try:
        assert not torch.equal(a, torch.stack([coarse[i]["image"] for i in range(6)]))
    finally:
        coarse.set_epoch(0)


@pytest.mark.slow
def test_mri_channel_is_the_template_and_pet_is_smoother(coarse: SimulatedPairDataset) -> None:
    x = coarse[0]["image"].numpy()
    # the PET has a PSF: its mean absolute neighbour difference is below the T1's relative to the mean
    def roughness(v: np.ndarray) -> float:
        return float(np.abs(np.diff(v, axis=0)).mean() / (v.mean() + 1e-6))

    assert coarse._mri is not None and coarse._mri.ndim == 3
    assert roughness(x[1]) < roughness(x[0]) * 1.5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="length"):
        SimulatedPairDataset(0)
    with pytest.raises(ValueError, match="crop"):
        SimulatedPairDataset(2, crop=(16, 16))
    with pytest.raises(ValueError, match="tracers"):
        SimulatedPairDataset(2, tracers=("fdg", "tau"))
    with pytest.raises(ValueError, match="fwhm_range"):
        SimulatedPairDataset(2, fwhm_range=(8.0, 4.0))
    with pytest.raises(ValueError, match="resolution"):
        SimulatedPairDataset(2, resolution=0.5)
    with pytest.raises(IndexError):
        SimulatedPairDataset(2, crop=8, resolution=6.0, bank_size=1)[5]  # checked before the bank is built


@pytest.mark.slow
def test_crop_larger_than_volume() -> None:
    with pytest.raises(ValueError, match="larger than the MNI volume"):
        SimulatedPairDataset(2, crop=64, resolution=6.0, bank_size=1)[0]
