"""Fixtures of the evaluation tests: a fake HMIF folder, tiny NIfTI volume pairs, tiny untrained weights."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_nifti


def load_script(name: str):
    """Import ``scripts/<name>.py`` (not a package) as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny networks are ~100x slower with 2 threads on a loaded 2-core machine (thread contention)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _disc(n: int, rng: np.random.Generator, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - n / 2 + 0.5, xx - n / 2 + 0.5)
    return (r < radius) * (0.5 + 0.5 * rng.random((n, n)))


@pytest.fixture
def hmif_dir(tmp_path):
    """A PET-MRI task folder with 2 cases x 5 slices of 32x32 PNGs (PET in pseudo-colour): 2 validation pairs."""
    from asfe3d.fusion import apply_colormap

    root = tmp_path / "PET-MRI"
    (root / "MRI").mkdir(parents=True)
    (root / "PET").mkdir()
    rng = np.random.default_rng(0)
    for case in ("7", "8"):
        for s in range(10, 15):
            name = f"{case}{s:03d}.png"
            mri = _disc(32, rng, 13)
            pet = _disc(32, rng, 9) * 0.9
            Image.fromarray(np.round(mri * 255).astype(np.uint8)).save(root / "MRI" / name)
            rgb = np.round(apply_colormap(pet, "jet") * 255).astype(np.uint8)
            Image.fromarray(rgb).save(root / "PET" / name)
    return root


def _blob(n: int, rng: np.random.Generator, radius: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    g = np.mgrid[:n, :n, :n] - (n - 1) / 2
    r = np.sqrt((g**2).sum(0))
    return (r < radius) * (0.6 + 0.4 * gaussian_filter(rng.random((n, n, n)), 1.0) / 0.6)


@pytest.fixture
def volume_csv(tmp_path):
    """Two 24^3 MRI/PET pairs on one grid (2 mm voxels) and their CSV (relative paths, one with a mask)."""
    rng = np.random.default_rng(1)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    folder = tmp_path / "vols"
    folder.mkdir()
    lines = ["subject,mri,pet,mask"]
    for sub in ("s1", "s2"):
        mri = _blob(24, rng, 10) * 100.0
        pet = _blob(24, rng, 8) * 5000.0
        write_nifti(folder / f"{sub}_mri.nii.gz", mri, affine)
        write_nifti(folder / f"{sub}_pet.nii.gz", pet, affine)
        mask = ""
        if sub == "s2":
            write_nifti(folder / "s2_mask.nii.gz", (mri > 0).astype(np.float32), affine)
            mask = "s2_mask.nii.gz"
        lines.append(f"{sub},{sub}_mri.nii.gz,{sub}_pet.nii.gz,{mask}")
    csv_path = folder / "pairs.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    return csv_path


def tiny_net(spatial_dims: int):
    """An untrained ASFEFusion with the default preset's number of scales and 4-8 channels."""
    from asfe3d.networks.nets import ASFEFusion
    from asfe3d.networks.nets.presets import get_preset

    n = len(get_preset("efficient", spatial_dims)["encoder_channels"])
    return ASFEFusion(spatial_dims, deform=False, encoder_channels=(4,) + (8,) * (n - 1))


@pytest.fixture
def tiny_weights(tmp_path):
    """Untrained tiny 2D and 3D ASFEFusion weight files (stand-ins for the shipped ones)."""
    import torch

    from asfe3d.fusion.weights import save_weights

    torch.manual_seed(0)
    w2 = save_weights(tiny_net(2), tmp_path / "w2.pt")
    w3 = save_weights(tiny_net(3), tmp_path / "w3.pt")
    return w2, w3
