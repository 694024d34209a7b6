"""Tests of :mod:`asfe3d.data.shared`: the epoch a dataset is set to reaches its DataLoader workers kept across
epochs (they drew epoch 0's items in every epoch)."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from asfe3d.data.pairs import VolumePairDataset
from asfe3d.data.shared import SharedEpoch
from asfe3d.data.volumes import SimulatedPairDataset
from asfe3d.data.wholehead import WholeHeadPairDataset


class _EpochItems(SharedEpoch, Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([self.epoch, index])


def test_persistent_workers_see_the_epoch_their_dataset_is_set_to():
    ds = _EpochItems()
    assert ds.epoch == 0
    loader = DataLoader(ds, batch_size=2, num_workers=1, persistent_workers=True)
    seen = []
    for epoch in (0, 1, 5):
        ds.epoch = epoch
        seen.append(next(iter(loader))[:, 0].tolist())
    assert seen == [[0, 0], [1, 1], [5, 5]]
    assert pickle.loads(pickle.dumps(ds)).epoch == 5


@pytest.mark.parametrize("cls", [VolumePairDataset, SimulatedPairDataset, WholeHeadPairDataset])
def test_every_dataset_that_draws_per_epoch_shares_it(cls):
    assert issubclass(cls, SharedEpoch) and cls.shares_epoch and hasattr(cls, "set_epoch")
