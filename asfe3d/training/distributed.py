"""Optional distributed data parallel (torchrun) support for the training engine."""

from __future__ import annotations

import os
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
    """Initialise ``torch.distributed`` when the torchrun variables are set, otherwise do nothing.

    Uses ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT`` through ``env://``).
    The backend is ``nccl`` on CUDA and ``gloo`` on the CPU.

    Args:
        device: the device training runs on.

    Returns:
        A :class:`DistInfo`; ``enabled=False`` when ``WORLD_SIZE`` is unset or 1.

    Raises:
        ValueError: the variables are set but not integers, or inconsistent.
    """
    env = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    if env["WORLD_SIZE"] is None or env["RANK"] is None:
        return DistInfo()
    try:
        world, rank = int(env["WORLD_SIZE"]), int(env["RANK"])
        local = int(env["LOCAL_RANK"] or 0)
    except ValueError:
        raise ValueError(f"torchrun variables must be integers, got {env}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= RANK < WORLD_SIZE, got {env}")
    if world == 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(True, rank, world, local)


def cleanup_distributed(info: DistInfo) -> None:
    """Destroy the process group created by :func:`setup_distributed` (no-op when not distributed)."""
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
