"""Optional distributed data parallel (torchrun) support for the training engine."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DistInfo", "setup_distributed", "cleanup_distributed"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        enabled: ``True`` when a process group was initialised (torchrun environment found).
        rank: global rank (0 when not distributed).
        world_size: number of processes (1 when not distributed).
        local_rank: rank on this machine (picks the CUDA device).
    """

    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and logs."""
        return self.rank == 0


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the process group when running under torchrun (``WORLD_SIZE`` > 1), otherwise do nothing.

    The same rank bookkeeping and process-group set-up as cohort inference (:func:`asfe3d.distributed.init_distributed`):
    ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` through ``env://``; ``nccl`` on CUDA, ``gloo`` on the CPU.

    Args:
        device: the device training runs on.

    Returns:
        A :class:`DistInfo`; ``enabled=False`` outside torchrun or with one process.

    Raises:
        ValueError: the variables are set but not integers, or inconsistent.
    """
    from asfe3d.distributed import init_distributed

    info, _ = init_distributed("nccl" if device.type == "cuda" else "gloo")
    if info.world_size == 1:
        return DistInfo()
    return DistInfo(True, info.rank, info.world_size, info.local_rank)


def cleanup_distributed(info: DistInfo) -> None:
    """Destroy the process group created by :func:`setup_distributed` (no-op when not distributed)."""
    if info.enabled:
        from asfe3d.distributed import cleanup_distributed as leave

        leave()
