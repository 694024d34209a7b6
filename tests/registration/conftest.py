"""Shared fixtures of the registration tests: the MNI template at 4 mm and a 4 mm PET moved by a known motion."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.data import brain_mask, load_mni, random_rigid, simulate_pet


def _centre(img: sitk.Image) -> tuple[float, ...]:
    return img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in img.GetSize()])


@pytest.fixture(scope="session")
def case():
    """``(t1, pet, true_transform, brain_mask)``: MNI T1 at 4 mm, a 4 mm PET moved by up to 8 degrees / 10 mm."""
    t1, gm, wm = load_mni(4)
    rng = np.random.default_rng(1)
    true = random_rigid(rng, max_deg=8.0, max_mm=10.0, center=_centre(t1))
    pet = simulate_pet(gm, wm, spacing_mm=4.0, transform=true, rng=rng)
    return t1, pet, true, brain_mask(gm, wm)
