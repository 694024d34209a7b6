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


@pytest.fixture(scope="session")
def small_pair(tmp_path_factory):
    """A coarse simulated MRI/PET pair (MNI at 4 mm, PET at 6 mm, known rigid motion), made once per session.

    Tests must not modify these files (they are shared); copy them first when a test needs to.
    """
    from asfe3d.data import make_demo_pair

    return make_demo_pair(tmp_path_factory.mktemp("small_pair"), resolution=4, mri_spacing=(4, 4, 4),
                          pet_spacing=6.0, seed=3)


def write_nifti(path, data, affine, qform_code=1, sform_code=1):
    """Write a float32 NIfTI with given codes (test helper)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
    img.set_qform(affine, code=qform_code)
    img.set_sform(affine, code=sform_code)
    nib.save(img, str(path))
    return path


@pytest.fixture(autouse=True)
def _isolate_logging():
    """Restore logging after each test: in-process bundle runs apply the bundle's logging.conf (fileConfig disables
    existing loggers and sets propagate=0), which would otherwise leak into later tests."""
    import logging

    names = [None, "asfe3d"]
    saved = {}
    for name in names:
        lg = logging.getLogger(name)
        saved[name] = (lg.level, list(lg.handlers), lg.disabled, lg.propagate)
    yield
    for name, (level, handlers, disabled, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.disabled = disabled
        lg.propagate = propagate


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory):
    """One tiny demo pair (6 mm MNI grid), built once per session: ``(mri_path, pet_path)``; do not modify."""
    from asfe3d.data import make_demo_pair

    folder = tmp_path_factory.getbasetemp() / "asfe3d_demo_r6"
    if not (folder / "pet.nii.gz").is_file():
        make_demo_pair(folder, resolution=6, mri_spacing=(6, 6, 6), pet_spacing=8)
    return folder / "mri.nii.gz", folder / "pet.nii.gz"


def make_cohort(root, demo, n, names=("mri.nii.gz", "pet.nii.gz"), reverse=False, distinct=False):
    """``n`` subject folders ``subNN`` holding copies of ``demo``, and ``root/datalist.csv`` with relative paths
    (rows in reverse order with ``reverse``, to check that sharding sorts). With ``distinct``, each subject's PET
    is the demo PET scaled by ``1 + i / 100`` (a PET of its own: training refuses one PET on both sides of a split,
    by content)."""
    import shutil
    from pathlib import Path

    root = Path(root)
    lines = ["subject,mri,pet"]
    order = range(n, 0, -1) if reverse else range(1, n + 1)
    for i in order:
        sub = root / f"sub{i:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(demo[0], sub / names[0])
        shutil.copy(demo[1], sub / names[1])
        if distinct:
            import nibabel as nib

            img = nib.load(str(demo[1]))
            nib.save(nib.Nifti1Image(img.get_fdata(dtype="float32") * (1 + i / 100), img.affine, img.header),
                     str(sub / names[1]))
        lines.append(f"sub{i:02d},sub{i:02d}/{names[0]},sub{i:02d}/{names[1]}")
    csv_path = root / "datalist.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path


@pytest.fixture
def pair(small_pair, tmp_path):
    """Copies of :func:`small_pair` named like a user's files: ``(sub01_mri.nii.gz, sub01_pet.nii.gz)``."""
    import shutil

    mri, pet = tmp_path / "sub01_mri.nii.gz", tmp_path / "sub01_pet.nii.gz"
    shutil.copy(small_pair.mri_path, mri)
    shutil.copy(small_pair.pet_path, pet)
    return mri, pet
