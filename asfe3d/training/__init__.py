"""Training: the engine (``train``), its configuration, the ``asfe3d train`` CLI and the metric check.

DDP set-up lives with the cohort's in :mod:`asfe3d.distributed` (one module, one ``DistInfo``).

The public names are re-exported lazily (PEP 562), so ``asfe3d train --help`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DEFAULT_CONFIG",
    "TrainResult",
    "build_datasets",
    "resolve_config",
    "train",
]

_WHERE = {
    "DEFAULT_CONFIG": "engine", "TrainResult": "engine", "build_datasets": "engine", "resolve_config": "engine",
    "train": "engine",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"asfe3d.training.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'asfe3d.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
