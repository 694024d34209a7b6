"""What a training dataset shares with its DataLoader workers.

A DataLoader keeps its worker processes across epochs (``persistent_workers``); each holds its own copy of the
dataset, made when the workers start. A dataset whose items are drawn per epoch (``set_epoch``) must tell those copies
the epoch, or every epoch repeats the first one's items. :class:`SharedEpoch` keeps the epoch in shared memory, seen by
every copy.
"""

from __future__ import annotations

import torch

__all__ = ["SharedEpoch"]


class SharedEpoch:
    """Mixin: ``self.epoch`` lives in shared memory (a 0-d int64 tensor), so that DataLoader workers kept across
    epochs draw the epoch their dataset was set to; ``shares_epoch`` tells the training loaders they may keep them."""

    #: the epoch reaches the workers (the training keeps its workers across epochs for such a dataset)
    shares_epoch = True

    @property
    def epoch(self) -> int:
        """The epoch the items are drawn for (0 until set)."""
        shared = self.__dict__.get("_shared_epoch")
        return 0 if shared is None else int(shared)

    @epoch.setter
    def epoch(self, value: int) -> None:
        if "_shared_epoch" not in self.__dict__:
            self._shared_epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._shared_epoch.fill_(int(value))
