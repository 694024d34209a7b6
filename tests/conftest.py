"""Shared pytest fixtures: deterministic seeds, small thread counts (CI has 2 cores)."""

from __future__ import annotations

import numpy as np
import pytest


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    import torch

    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def cuda_device():
    """Skip the test unless CUDA is available; otherwise yield the CUDA device."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return torch.device("cuda")
