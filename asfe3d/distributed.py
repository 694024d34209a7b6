"""Scaling cohort inference past one process: ``torchrun`` on one node (N GPUs) or many nodes.

Launch any cohort entry point under ``torchrun``; every process reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
(and ``LOCAL_WORLD_SIZE``) from the environment that torchrun sets, joins one process group (NCCL on GPUs, gloo on
CPU), takes the subjects ``i % world_size == rank`` of the cohort sorted by subject name (deterministic, whatever
order the datalist has), runs on ``cuda:LOCAL_RANK`` when GPUs are present, writes its own summary part
``<summary stem>.rank<R>-of-<W>.csv``, and after a barrier rank 0 merges the parts into the summary CSV (in the
cohort's sorted order) and removes them. The resumability of :func:`asfe3d.cohort.run_cohort` holds per subject,
so a rerun with the same or a different number of processes redoes only what is missing.

Registration (SimpleITK) runs on the CPU: each process gets ``usable_cpus() // LOCAL_WORLD_SIZE`` threads (the
cores the job may use: its affinity mask, not the whole node) so the processes of a node do not oversubscribe them.

DDP training uses the same module: :func:`setup_training` / :func:`cleanup_training`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from glob import escape as glob_escape
from pathlib import Path
from typing import Any, TypeVar

from asfe3d.errors import Asfe3dInputError

__all__ = [
    "DistInfo",
    "get_dist_info",
    "init_distributed",
    "cleanup_distributed",
    "shard_subjects",
    "rank_device",
    "summary_part_path",
    "usable_cpus",
    "merge_summaries",
    "stale_summary_parts",
    "run_cohort_distributed",
    "setup_training",
    "cleanup_training",
]

logger = logging.getLogger("asfe3d")
T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly one-process) job.

    Attributes:
        rank: global rank, ``0 <= rank < world_size``.
        world_size: number of processes over all nodes.
        local_rank: rank on this node (the GPU index it uses).
        local_world_size: processes on this node.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when there is more than one process (a process group is in use)."""
        return self.world_size > 1


def _env_error(name: str, env: Mapping[str, str], problem: str) -> Asfe3dInputError:
    """A bad torchrun variable: one line naming it and quoting its value (an :class:`Asfe3dInputError`, a
    ``ValueError``: the command prints it as ``asfe3d: error: ...`` and exits with code 2)."""
    return Asfe3dInputError(None, f"environment variable {name}: {problem}, got {env.get(name)!r}")


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise _env_error(name, env, "must be an integer") from None


def get_dist_info(env: Mapping[str, str] | None = None) -> DistInfo:
    """Rank and world size from torchrun's environment variables (one process when they are absent).

    Args:
        env: the environment to read (default ``os.environ``).

    Returns:
        :class:`DistInfo`.

    Raises:
        Asfe3dInputError: (a ``ValueError``) non-integer or inconsistent values (e.g. ``RANK >= WORLD_SIZE``, or
            ``WORLD_SIZE`` > 1 without ``RANK``), the variable named and its value quoted.
    """
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local_rank = _env_int(env, "LOCAL_RANK", 0)
    local_world = _env_int(env, "LOCAL_WORLD_SIZE", world)
    if world < 1:
        raise _env_error("WORLD_SIZE", env, "must be >= 1")
    if world > 1 and not (env.get("RANK") or "").strip():
        raise Asfe3dInputError(None, f"environment variable RANK is not set, but WORLD_SIZE={world} asks for several "
                                     "processes (launch them with torchrun)")
    if not 0 <= rank < world:
        raise _env_error("RANK", env, f"must be in [0, WORLD_SIZE={world})")
    if not 1 <= local_world <= world:
        raise _env_error("LOCAL_WORLD_SIZE", env, f"must be in [1, WORLD_SIZE={world}]")
    if not 0 <= local_rank < local_world:
        raise _env_error("LOCAL_RANK", env, f"must be in [0, LOCAL_WORLD_SIZE={local_world})")
    return DistInfo(rank, world, local_rank, local_world)


def init_distributed(backend: str = "auto", timeout_minutes: float = 60.0) -> tuple[DistInfo, bool]:
    """Join the default process group when running under torchrun (``WORLD_SIZE`` > 1).

    Args:
        backend: ``auto`` (NCCL when CUDA is available, else gloo), ``nccl`` or ``gloo``.
        timeout_minutes: collective timeout (a cohort's slowest subject must fit in it, since ranks meet at a
            barrier at the end).

    Returns:
        ``(info, created)``: this process's :class:`DistInfo`, and whether this call created the process group
        (the caller then owns it and should :func:`cleanup_distributed`).

    Raises:
        ValueError: an unknown backend or ``nccl`` without CUDA.
        Asfe3dInputError: bad torchrun variables (:func:`get_dist_info`), or ``MASTER_ADDR`` / ``MASTER_PORT``
            missing for several processes.
    """
    import torch
    import torch.distributed as dist

    if backend not in ("auto", "nccl", "gloo"):
        raise ValueError(f"backend must be 'auto', 'nccl' or 'gloo', got {backend!r}")
    info = get_dist_info()
    if info.world_size == 1:
        return info, False
    if dist.is_initialized():
        if dist.get_world_size() != info.world_size or dist.get_rank() != info.rank:
            raise ValueError(f"process group (rank {dist.get_rank()}/{dist.get_world_size()}) disagrees with "
                             f"RANK={info.rank}/WORLD_SIZE={info.world_size}")
        return info, False
    cuda = torch.cuda.is_available()
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    if backend == "nccl" and not cuda:
        raise ValueError("backend 'nccl' needs CUDA, which is not available; use 'gloo'")
    for name in ("MASTER_ADDR", "MASTER_PORT"):  # env:// rendezvous; torch would say it in a traceback
        if not (os.environ.get(name) or "").strip():
            raise Asfe3dInputError(None, f"environment variable {name} is not set, but WORLD_SIZE={info.world_size} "
                                         "asks for several processes (launch them with torchrun)")
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, init_method="env://", timeout=timedelta(minutes=timeout_minutes))
    logger.debug("rank %d/%d (local %d) joined the %s process group", info.rank, info.world_size,
                 info.local_rank, backend)
    return info, True


def cleanup_distributed() -> None:
    """Leave the default process group if one exists."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_subjects(items: Sequence[T], rank: int, world_size: int, key: Any = None) -> list[T]:
    """This rank's share of a cohort: sorted, then every ``world_size``-th item from ``rank``.

    Args:
        items: subjects (or anything sortable with ``key``).
        rank: this process's rank.
        world_size: number of processes.
        key: sort key (default: the ``subject`` attribute when present, else the item itself).

    Returns:
        The items ``i % world_size == rank`` of the sorted sequence; the shares of all ranks partition ``items``.

    Raises:
        ValueError: ``world_size < 1`` or ``rank`` outside ``[0, world_size)``.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    if key is None:
        def key(item: Any) -> Any:
            return getattr(item, "subject", item)
    ordered = sorted(items, key=key)
    return [item for i, item in enumerate(ordered) if i % world_size == rank]


def rank_device(device: str, info: DistInfo) -> str:
    """The device one rank should use.

    Args:
        device: the requested device: ``auto`` or ``cuda`` become ``cuda:LOCAL_RANK`` when CUDA is available
            (``auto`` becomes ``cpu`` otherwise); ``cpu`` and ``cuda:N`` are kept.
        info: this process's :class:`DistInfo`.

    Returns:
        The device string.

    Raises:
        ValueError: an unknown device string, or ``cuda`` without CUDA, or ``LOCAL_RANK`` beyond the GPU count.
    """
    import torch

    if not isinstance(device, str) or not (device in ("auto", "cpu") or device.startswith("cuda")):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    cuda = torch.cuda.is_available()
    if device == "cpu" or (device == "auto" and not cuda):
        return "cpu"
    if not cuda:
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    if device in ("auto", "cuda"):
        if info.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {info.local_rank} but only {torch.cuda.device_count()} GPU(s) visible")
        return f"cuda:{info.local_rank}"
    if info.local_world_size > 1:
        logger.warning("device %s pinned on all %d local ranks; use 'auto' for one GPU per rank", device,
                       info.local_world_size)
    return device


def summary_part_path(summary_path: str | Path, rank: int, world_size: int) -> Path:
    """``<stem>.rank<R>-of-<W>.csv`` beside the summary: one rank's part."""
    summary_path = Path(summary_path)
    stem = summary_path.name[:-4] if summary_path.name.lower().endswith(".csv") else summary_path.name
    return summary_path.with_name(f"{stem}.rank{rank}-of-{world_size}.csv")


def stale_summary_parts(summary_path: str | Path, world_size: int) -> list[Path]:
    """The part files of earlier runs with another number of processes beside the summary (a run killed before its
    merge leaves its parts; a rerun with another world size neither merges nor removes them): files named
    ``<stem>.rank<R>-of-<W>.csv`` with ``W != world_size`` that hold a summary's header (``subject,status``).

    Args:
        summary_path: the merged summary.
        world_size: this run's number of processes (its own parts are merged, not stale).

    Returns:
        The stale parts, sorted.
    """
    import re

    summary_path = Path(summary_path)
    stem = summary_path.name[:-4] if summary_path.name.lower().endswith(".csv") else summary_path.name
    pattern = re.compile(rf"{re.escape(stem)}\.rank(\d+)-of-(\d+)\.csv")
    stale = []
    for path in sorted(summary_path.parent.glob(f"{glob_escape(stem)}.rank*-of-*.csv")):
        match = pattern.fullmatch(path.name)
        if match is None or int(match.group(2)) == world_size or not path.is_file():
            continue
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            if next(csv.reader(fh), [])[:2] == ["subject", "status"]:
                stale.append(path)
    return stale


def merge_summaries(parts: Sequence[str | Path], summary_path: str | Path, order: Sequence[str] | None = None) -> Path:
    """Merge per-rank summary CSVs into one (atomically).

    Args:
        parts: the part files (all must exist).
        summary_path: the merged CSV.
        order: subject names in the wanted row order (default: sorted by subject).

    Returns:
        ``summary_path``.

    Raises:
        Asfe3dInputError: a missing or malformed part.
        ValueError: a subject present in two parts.
    """
    from asfe3d.cohort import read_summary, result_from_row, write_summary

    rows = {}
    for part in parts:
        for row in read_summary(part):
            if row["subject"] in rows:
                raise ValueError(f"subject {row['subject']!r} appears in two summary parts (last: {part})")
            rows[row["subject"]] = result_from_row(row)
    names = list(order) if order is not None else sorted(rows)
    names += sorted(set(rows) - set(names))
    return write_summary([rows[n] for n in names if n in rows], summary_path)


def usable_cpus() -> int:
    """The CPU cores this process may run on: its affinity mask (what a batch scheduler such as SLURM or a cgroup
    cpuset gives the job), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def _set_cpu_threads(info: DistInfo) -> None:
    import SimpleITK as sitk
    import torch

    # the job's cores, not the node's: 2 ranks of a 4-core SLURM job on a 128-core node get 2 threads, not 64
    threads = max(1, usable_cpus() // info.local_world_size)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    torch.set_num_threads(threads)


def run_cohort_distributed(
    subjects: Sequence[Any],
    settings: Any = None,
    *,
    output_dir: str | Path | None = None,
    summary_path: str | Path | None = None,
    progress: bool = True,
    backend: str = "auto",
    datalist: str | Path | None = None,
    threads: int | None = None,
) -> list[Any]:
    """:func:`asfe3d.cohort.run_cohort` over all processes of a torchrun job (one process: exactly a plain run).

    Every rank fuses its share (:func:`shard_subjects`) on its device (:func:`rank_device`), writing its own
    summary part; after a barrier rank 0 merges the parts into ``summary_path`` and removes them. The results of
    all ranks are gathered on every rank.

    Args:
        subjects: the whole cohort (identical on every rank).
        settings: the run's :class:`asfe3d.settings.Settings` (``None``: defaults); ``fusion.device`` goes through
            :func:`rank_device` on each rank of a multi-process job.
        output_dir: see :func:`asfe3d.cohort.run_cohort`.
        summary_path: the merged summary CSV (parts beside it); ``None``: none written.
        progress: progress bar (rank 0 only).
        backend: process-group backend (see :func:`init_distributed`).
        datalist: the datalist (protected like the inputs, see :func:`asfe3d.cohort.run_cohort`).
        threads: torch CPU threads per process (the command's ``--threads``); ``None``: the job's cores shared
            among the node's processes (:func:`usable_cpus` ``// LOCAL_WORLD_SIZE``), as SimpleITK's always are.

    Returns:
        The :class:`~asfe3d.cohort.SubjectResult` of every subject: in the cohort's order for one process, in its
        sorted order (the shards') for several.

    Raises:
        ValueError: bad arguments (see :func:`asfe3d.cohort.run_cohort`) or an inconsistent environment.
    """
    import contextlib

    import torch.distributed as dist

    from asfe3d.cohort import cohort_lock, lock_folder, plan_cohort, run_cohort, write_summary
    from asfe3d.settings import Settings

    settings = Settings() if settings is None else settings
    # every rank refuses a bad cohort before any work or collective
    outputs = plan_cohort(subjects, settings, output_dir=output_dir, summary_path=summary_path, datalist=datalist)
    if get_dist_info().world_size == 1:
        return run_cohort(subjects, settings, output_dir=output_dir, summary_path=summary_path, progress=progress,
                          datalist=datalist)
    info, created = init_distributed(backend)
    lock = contextlib.ExitStack()
    try:
        settings = settings.replace(fusion={"device": rank_device(settings.fusion.device, info)})
        # one lock per job: rank 0 holds it, and every rank learns whether it got it before any work
        refusal = [None]
        if info.is_main and outputs:
            try:
                lock.enter_context(cohort_lock(lock_folder(output_dir, summary_path, outputs)))
            except Asfe3dInputError as exc:
                refusal = [str(exc)]
        dist.broadcast_object_list(refusal, src=0)
        if refusal[0] is not None:
            raise Asfe3dInputError(None, refusal[0])
        _set_cpu_threads(info)
        if threads is not None:  # the user's --threads, not the share computed for them
            import torch

            torch.set_num_threads(int(threads))
        mine = shard_subjects(list(subjects), info.rank, info.world_size)
        part = None if summary_path is None else summary_part_path(summary_path, info.rank, info.world_size)
        logger.info("rank %d/%d: %d subject(s) on %s", info.rank, info.world_size, len(mine), settings.fusion.device)
        results = run_cohort(mine, settings, output_dir=output_dir, summary_path=part,
                             progress=progress and info.is_main, rank=info.rank, datalist=datalist, lock=False)
        if part is not None and not mine:
            write_summary([], part)  # an empty share still leaves a part for the merge
        gathered: list[Any] = [None] * info.world_size
        dist.all_gather_object(gathered, results)  # also the barrier: every part is complete after it
        everything = {r.subject: r for share in gathered for r in share}
        order = [s.subject for s in shard_subjects(list(subjects), 0, 1)]
        if info.is_main and summary_path is not None:
            parts = [summary_part_path(summary_path, r, info.world_size) for r in range(info.world_size)]
            merge_summaries(parts, summary_path, order)
            for p in [*parts, *stale_summary_parts(summary_path, info.world_size)]:  # this run's, and earlier ones'
                p.unlink(missing_ok=True)
        dist.barrier()  # nobody leaves before the merged summary exists
        return [everything[name] for name in order]
    finally:
        lock.close()
        if created:
            cleanup_distributed()


def setup_training(device: Any) -> DistInfo:
    """Join the process group for DDP training when running under torchrun (``WORLD_SIZE`` > 1), else do nothing.

    The same rank bookkeeping and process-group set-up as cohort inference (:func:`init_distributed`): ``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK`` through ``env://``; ``nccl`` on CUDA, ``gloo`` on the CPU.

    Args:
        device: the ``torch.device`` training runs on.

    Returns:
        The :class:`DistInfo` (``enabled`` when distributed).

    Raises:
        ValueError: the variables are set but not integers, or inconsistent.
    """
    info, _ = init_distributed("nccl" if getattr(device, "type", "cpu") == "cuda" else "gloo")
    return info


def cleanup_training(info: DistInfo) -> None:
    """Destroy the process group made by :func:`setup_training` (no-op when not distributed), once every rank is
    done: rank 0 writes the run after the last collective, and a group destroyed while a peer is still using it can
    hang (seen once in 2-process gloo training)."""
    if info.enabled:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        cleanup_distributed()
