from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import Compose, ConcatItemsd

from asfe3d.transforms import (
    ColourFused,
    Fused,
    LoadVolumed,
    RegisterToReferenced,
    RobustNormalized,
    SaveLikeReferenced,
)


def test_compose_chain_writes_on_the_mri_grid(small_pair, tmp_path):
    chain = Compose([
        LoadVolumed(keys=["mri", "pet"]),
        RegisterToReferenced(keys="pet", ref_key="mri", method="rigid"),
        ConcatItemsd(keys=["mri", "pet"], name="image"),
        RobustNormalized(keys="image"),
        Fused(keys="image", output_key="fused", method="wavelet"),
        ColourFused(keys="image", output_key="rgb", method="max"),
        SaveLikeReferenced(keys=["fused", "rgb"], ref_key="mri", output_dir=tmp_path),
    ])
    d = chain({"mri": str(small_pair.mri_path), "pet": str(small_pair.pet_path)})
    assert d["image"].shape[0] == 2 and d["fused"].shape[0] == 1 and d["rgb"].shape[0] == 3
    assert d["pet_registration"].method == "rigid"
    ref = nib.load(small_pair.mri_path)
    for key in ("fused_path", "rgb_path"):
        out = nib.load(d[key])
        assert out.shape == ref.shape
        np.testing.assert_allclose(out.affine, ref.affine, atol=1e-5)


def test_dictionary_bad_arguments():
    with pytest.raises(ValueError, match="output_key"):
        Fused(keys=["a", "b"], output_key="fused")
    with pytest.raises(KeyError, match="'mri'"):
        RegisterToReferenced(keys="pet", ref_key="mri", method="none")({"pet": None})
    with pytest.raises(KeyError, match="'mri'"):
        SaveLikeReferenced(keys="fused", ref_key="mri")({"fused": None})
