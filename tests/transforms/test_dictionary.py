from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, ConcatItemsd

from asfe3d.transforms import (
    ColourFused,
    FillOutsideMaskd,
    Fused,
    HeadMaskd,
    LoadVolumed,
    RegisterToReferenced,
    RestoreIntensityd,
    RobustNormalized,
    SaveLikeReferenced,
    SmoothMmd,
)
from tests.conftest import write_nifti


def test_compose_chain_writes_on_the_mri_grid(small_pair, tmp_path):
    fused_step = Fused(keys="image", output_key="fused", method="wavelet")
    chain = Compose([
        LoadVolumed(keys=["mri", "pet"]),
        HeadMaskd(keys="mri"),
        RegisterToReferenced(keys="pet", ref_key="mri", mask_key="mri_head", method="rigid"),
        RobustNormalized(keys=["mri", "pet"], mask_key="mri_head"),
        ConcatItemsd(keys=["mri", "pet"], name="image"),
        fused_step,
        ColourFused(keys="image", output_key="rgb", method=fused_step.fuser, luma_key="fused"),
        RestoreIntensityd(keys="fused", ref_key="mri"),
        SaveLikeReferenced({"fused": tmp_path / "f.nii.gz", "rgb": tmp_path / "rgb.nii.gz",
                            "pet_transform": tmp_path / "t.tfm"}, ref_key="mri"),
    ])
    d = chain({"mri": str(small_pair.mri_path), "pet": str(small_pair.pet_path)})
    assert d["image"].shape[0] == 2 and d["fused"].shape[0] == 1 and d["rgb"].shape[0] == 3
    assert d["pet_registration"]["method"] == "rigid" and d["pet_registration"]["qc"]["verdict"] == "pass"
    lo, hi = d["mri"].meta["asfe3d_window"]  # the fused image went back through the MRI's window
    assert hi > lo and float(d["fused"].max()) <= hi + 1e-5
    ref = nib.load(small_pair.mri_path)
    for key in ("fused", "rgb"):
        out = nib.load(d["outputs"][key])
        assert out.shape == ref.shape
        np.testing.assert_allclose(out.affine, ref.affine, atol=1e-5)
    record = json.loads(d["outputs"]["record"].read_text())
    assert record["status"] == "complete" and set(record["outputs"]) == {"fused", "rgb", "pet_transform"}

    # a preview with the default keys: the chain's own (review 32 #8: they named "mri_unit" and "pet_unit", which
    # nothing makes, and a preview added to this chain stopped on a KeyError)
    d["fused_unit"] = fused_step(d)["fused"]
    d = SaveLikeReferenced({"fused": tmp_path / "g.nii.gz"}, ref_key="mri", preview=tmp_path / "g.png")(d)
    assert d["outputs"]["preview"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dictionary_bad_arguments():
    with pytest.raises(ValueError, match="output_key"):
        Fused(keys=["a", "b"], output_key="fused", method="mean")
    with pytest.raises(KeyError, match="'mri'"):
        RegisterToReferenced(keys="pet", ref_key="mri", method="none")({"pet": None})
    with pytest.raises(KeyError, match="'mri_head'"):
        RobustNormalized(keys="mri")({"mri": None})
    with pytest.raises(KeyError, match="'mri'"):
        SaveLikeReferenced({"fused": "f.nii.gz"}, ref_key="mri")({"fused": None})
    with pytest.raises(ValueError, match="at least one"):
        SaveLikeReferenced({})
    # the wrappers' own checks (review 32: untested)
    with pytest.raises(ValueError, match=r"key_kwargs names keys \['pet'\] that are not in keys \('mri',\)"):
        LoadVolumed(keys="mri", key_kwargs={"pet": {"frame": 0}})
    for bad in ("", 3):
        with pytest.raises(ValueError, match=rf"fov_postfix must be a non-empty string or None, got {bad!r}"):
            RegisterToReferenced(keys="pet", fov_postfix=bad)
    with pytest.raises(ValueError, match="interpolator must be one of"):  # the array transform's check, at once
        RegisterToReferenced(keys="pet", interpolator="cubic")
    image = MetaTensor(torch.rand(2, 4, 4, 4), affine=torch.eye(4))
    with pytest.raises(KeyError, match="'pet_fov'"):
        FillOutsideMaskd(keys="pet", mask_key="pet_fov")({"pet": image})
    with pytest.raises(KeyError, match="'fused'"):
        ColourFused(keys="image", method="mean", luma_key="fused")({"image": image})
    with pytest.raises(KeyError, match="Key `mri` of transform `HeadMaskd` was missing"):  # MONAI's own words
        HeadMaskd(keys="mri")({"pet": image})


def test_monai_invertd_undoes_a_spatial_transform_run_before_the_asfe3d_steps(tmp_path):
    """The steps keep MONAI's transform stack (they dropped it: ``Invertd`` failed, "empty applied_operations")."""
    from monai.transforms import Compose, Invertd, Orientationd

    lps = np.diag([-2.0, -2.0, 2.0, 1.0])
    lps[:3, 3] = (30.0, 30.0, -30.0)
    rng = np.random.default_rng(0)
    path = write_nifti(tmp_path / "mri.nii.gz", (rng.random((12, 10, 8)) * 100).astype(np.float32), lps)
    chain = Compose([LoadVolumed("mri"), Orientationd("mri", axcodes="RAS"), HeadMaskd("mri"),
                     RobustNormalized("mri", mask_key="mri_head"), SmoothMmd("mri", fwhm_mm=3.0)])
    d = chain({"mri": str(path)})
    assert [op["class"] for op in d["mri"].applied_operations] == ["Orientation"]
    d["pred"] = d["mri"].clone()
    back = Invertd(keys="pred", transform=chain, orig_keys="mri")(d)["pred"]
    np.testing.assert_allclose(back.affine.numpy(), lps, atol=1e-6)
    assert tuple(back.shape[1:]) == (12, 10, 8)


def test_monai_spacingd_after_load_volumed(tmp_path):
    """MONAI's Spacingd takes every ``<key>_*`` entry for a metadata dict: the kept path (``mri_path``) broke it
    ("'str' object has no attribute 'update'"); the path stays the file's and protects it from the save step."""
    from monai.transforms import Spacingd

    from asfe3d.errors import Asfe3dInputError

    path = write_nifti(tmp_path / "mri.nii.gz", np.random.default_rng(0).random((12, 10, 8)).astype(np.float32),
                       np.diag([2.0, 2.0, 2.0, 1.0]))
    d = Compose([LoadVolumed("mri"), Spacingd("mri", pixdim=4.0)])({"mri": path})
    assert d["mri"].pixdim.tolist() == [4.0, 4.0, 4.0] and d["mri_path"] == str(path)
    with pytest.raises(Asfe3dInputError, match="mri.nii.gz"):
        SaveLikeReferenced({"mri": path}, ref_key="mri", overwrite=True)(d)


def test_monai_saveimaged_writes_a_load_volumed_image_on_its_grid(tmp_path):
    """MONAI's writers look for its own metadata keys (``original_channel_dim``): an oblique LoadVolumed image
    was refused ("no suitable writer")."""
    from monai.transforms import SaveImaged

    oblique = np.array([[0.0, -2.0, 0.0, 20.0], [2.0, 0.0, 0.0, -10.0], [0.0, 0.0, 2.0, 5.0], [0, 0, 0, 1]])
    data = np.random.default_rng(0).random((8, 7, 6)).astype(np.float32)
    path = write_nifti(tmp_path / "mri.nii.gz", data, oblique)
    d = Compose([LoadVolumed("mri"), SaveImaged("mri", output_dir=str(tmp_path / "out"), separate_folder=False,
                                                output_postfix="copy", print_log=False)])({"mri": path})
    written = nib.load(str(tmp_path / "out" / "mri_copy.nii.gz"))
    np.testing.assert_allclose(written.affine, oblique, atol=1e-5)
    np.testing.assert_allclose(written.get_fdata(), data, atol=1e-6)
    assert d["mri"].meta["original_channel_dim"] == "no_channel"


def test_the_pets_part_above_its_window_is_split_off_and_shown_above_the_mris_window(tmp_path):
    """``RobustNormalized(above_postfix=...)`` keeps the PET clipped as before and its part above the window aside;
    ``RestoreIntensityd(above_key=...)`` adds it on top of the fused image, so a hot focus is not a plateau at the
    MRI window's top (probe 21 #1: +10 % for a focus the PET has at +106 %)."""
    from asfe3d.transforms.intensity import headroom

    rng = np.random.default_rng(0)
    mri = rng.uniform(50, 100, (12, 10, 8)).astype(np.float32)
    pet = rng.uniform(1, 2, (12, 10, 8)).astype(np.float32)
    pet[5, 4, 3:5] = 6.0  # a focus (0.2 % of the voxels) three times the hottest normal uptake
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    d = LoadVolumed(keys=["mri", "pet"])({"mri": str(write_nifti(tmp_path / "m.nii.gz", mri, aff)),
                                          "pet": str(write_nifti(tmp_path / "p.nii.gz", pet, aff))})
    d["mri_head"] = np.ones((1, 12, 10, 8), bool)
    plain = RobustNormalized("pet")(dict(d))
    split = RobustNormalized("pet", above_postfix="above")(dict(d))
    np.testing.assert_array_equal(split["pet"].numpy(), plain["pet"].numpy())  # the network's input unchanged
    assert split["pet"].meta["asfe3d_window"] == plain["pet"].meta["asfe3d_window"]
    above = split["pet_above"].numpy()
    assert above.shape == (1, 12, 10, 8) and above.min() == 0.0 and above[0, 5, 4, 3] > 2.0
    assert np.count_nonzero(above) <= 0.005 * above.size + 1  # the top 0.5 % (the focus among them), no more
    split = RobustNormalized("mri")(split)
    fused = {**split, "fused": split["mri"].clone()}
    lo, hi = split["mri"].meta["asfe3d_window"]
    out = RestoreIntensityd("fused", ref_key="mri", above_key="pet_above")(dict(fused))["fused"].numpy()
    want = (split["mri"].numpy() + headroom(above)) * (hi - lo) + lo
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
    without = RestoreIntensityd("fused", ref_key="mri")(dict(fused))["fused"].numpy()
    assert without.max() <= hi + 1e-4
    assert out[0, 5, 4, 3] > without[0, 5, 4, 3] + 0.99 * (hi - lo)  # the focus: raised by almost a whole window
    with pytest.raises(KeyError, match="'pet_above'"):
        RestoreIntensityd("fused", ref_key="mri", above_key="pet_above")({"fused": fused["fused"],
                                                                         "mri": fused["mri"]})
    with pytest.raises(ValueError, match="above must have the image's shape"):
        RestoreIntensityd("fused", ref_key="mri", above_key="a")({**fused, "a": np.zeros((1, 3, 3, 3))})
    with pytest.raises(ValueError, match="above_postfix must be a non-empty string or None, got ''"):
        RobustNormalized("pet", above_postfix="")


def test_the_pets_window_comes_from_the_head_inside_its_field_of_view():
    """Several mask keys: their overlap. The PET's window from the head inside its field of view, not from the
    padding beyond it (which lowered the window's top, probe 22: the PET inside 3-5 % brighter)."""
    import torch
    from monai.data import MetaTensor

    rng = np.random.default_rng(0)
    pet = MetaTensor(torch.from_numpy(rng.uniform(1.0, 2.0, (1, 8, 8, 10)).astype(np.float32)), affine=np.eye(4))
    pet[..., :4] = 0.0  # the padding beyond the field of view
    head = torch.ones(1, 8, 8, 10, dtype=torch.bool)
    fov = torch.zeros(1, 8, 8, 10, dtype=torch.bool)
    fov[..., 4:] = True
    both = RobustNormalized("pet", mask_key=("mri_head", "pet_fov"))({"pet": pet, "mri_head": head, "pet_fov": fov})
    top = both["pet"].meta["asfe3d_window"][1]  # the window's top (its low end is the whole image's, as always)
    np.testing.assert_allclose(top, np.percentile(pet[..., 4:].numpy(), 99.5), rtol=1e-5)
    head_only = RobustNormalized("pet", mask_key="mri_head")({"pet": pet, "mri_head": head})
    assert head_only["pet"].meta["asfe3d_window"][1] < top - 1e-3  # the padding lowered the top
    with pytest.raises(KeyError, match="'pet_fov'"):
        RobustNormalized("pet", mask_key=["mri_head", "pet_fov"])({"pet": pet, "mri_head": head})
