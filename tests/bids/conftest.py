"""A tiny BIDS dataset: sub-01 (T1w + FDG PET, no session), sub-02 (ses-bl: T1w + PIB PET), sub-03 (T1w only).

Volumes are 24^3-ish: an ellipsoid "head" with a brighter core, the PET a blurred copy on its own coarser grid
(same world centre, so registration ``none`` overlaps), fast enough for the mean method in about a second a pair.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def head_volume(shape: tuple[int, int, int], zooms: tuple[float, float, float], seed: int = 0) -> np.ndarray:
    """An ellipsoid head (radius 9 mm) with a brighter off-centre core, on a grid centred on the origin."""
    rng = np.random.default_rng(seed)
    axes = [(np.arange(n) - (n - 1) / 2.0) * z for n, z in zip(shape, zooms)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    r = np.sqrt((x / 9.0) ** 2 + (y / 10.0) ** 2 + (z / 8.0) ** 2)
    vol = np.where(r < 1.0, 0.5, 0.0) + np.where(np.sqrt((x - 2) ** 2 + y ** 2 + z ** 2) < 4.0, 0.5, 0.0)
    return (vol * 1000 + rng.normal(0, 5, shape) * (r < 1.0)).astype(np.float32)


def affine_for(shape: tuple[int, int, int], zooms: tuple[float, float, float]) -> np.ndarray:
    """RAS affine of a grid centred on the world origin."""
    aff = np.diag([*zooms, 1.0])
    aff[:3, 3] = -(np.array(shape) - 1) / 2.0 * np.array(zooms)
    return aff


def save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


def write_t1w(path: Path, seed: int = 0) -> Path:
    shape, zooms = (24, 24, 12), (1.0, 1.0, 2.0)  # anisotropic on purpose
    return save(path, head_volume(shape, zooms, seed), affine_for(shape, zooms))


def write_pet(path: Path, seed: int = 0, tracer: str | None = "FDG") -> Path:
    from scipy.ndimage import gaussian_filter

    shape, zooms = (20, 20, 20), (1.25, 1.25, 1.25)
    data = gaussian_filter(head_volume(shape, zooms, seed + 10), 1.0).astype(np.float32)
    save(path, data, affine_for(shape, zooms))
    if tracer is not None:
        sidecar = {"TracerName": tracer, "Units": "Bq/mL", "TracerRadionuclide": "F18"}
        Path(str(path).replace(".nii.gz", ".json")).write_text(json.dumps(sidecar), encoding="utf-8")
    return path


def make_dataset(root: Path) -> Path:
    """The three-subject dataset described in the module docstring."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.10.0"}),
                                                   encoding="utf-8")
    write_t1w(root / "sub-01/anat/sub-01_T1w.nii.gz", 1)
    write_pet(root / "sub-01/pet/sub-01_trc-FDG_pet.nii.gz", 1, "FDG")
    write_t1w(root / "sub-02/ses-bl/anat/sub-02_ses-bl_T1w.nii.gz", 2)
    write_pet(root / "sub-02/ses-bl/pet/sub-02_ses-bl_trc-PIB_pet.nii.gz", 2, "PIB")
    write_t1w(root / "sub-03/anat/sub-03_T1w.nii.gz", 3)
    return root


@pytest.fixture
def tiny_bids(tmp_path: Path) -> Path:
    """A fresh tiny BIDS dataset under ``tmp_path / "bids"``."""
    return make_dataset(tmp_path / "bids")
