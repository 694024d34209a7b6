"""Fixtures for the io tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.io.helpers import AFFINES, random_volume, save_nifti


@pytest.fixture
def nifti_factory(tmp_path: Path):
    """``make(name, data=None, affine=..., qcode=1, scode=1, qform=None)`` -> path of a saved NIfTI."""

    def make(
        name: str = "img.nii.gz",
        data: np.ndarray | None = None,
        affine: np.ndarray | None = None,
        qcode: int = 1,
        scode: int = 1,
        qform: np.ndarray | None = None,
    ) -> Path:
        data = random_volume() if data is None else data
        affine = AFFINES["oblique"] if affine is None else affine
        return save_nifti(tmp_path / name, data, affine if qform is None else qform, qcode, affine, scode)

    return make

