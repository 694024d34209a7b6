"""2D training data that mixes two sources: items alternate, only the image travels, set_epoch reaches both."""

from __future__ import annotations

import torch

from asfe3d.training.engine import _MixedImages


class _Part(torch.utils.data.Dataset):
    def __init__(self, value: float, n: int) -> None:
        self.value, self.n, self.epoch = value, n, -1

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((2, 4, 4), self.value + i), "name": f"x{i}"}


def test_mixed_items_alternate_and_epoch_is_passed_on() -> None:
    a, b = _Part(0.0, 5), _Part(100.0, 3)
    mixed = _MixedImages([a, b])
    assert len(mixed) == 6  # as many of each as the smaller part has
    firsts = [float(mixed[i]["image"][0, 0, 0]) for i in range(6)]
    assert firsts == [0.0, 100.0, 1.0, 101.0, 2.0, 102.0]
    assert set(mixed[0]) == {"image"}
    mixed.set_epoch(3)
    assert a.epoch == b.epoch == 3
