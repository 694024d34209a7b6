from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from asfe3d.errors import Asfe3dInputError
from asfe3d.transforms import (
    ColourFuse,
    Fuse,
    HeadMask,
    LoadVolume,
    RegisterToReference,
    RestoreIntensity,
    RobustNormalize,
    SaveLikeReference,
)
from tests.conftest import write_nifti

OBLIQUE = np.array([[0.98, -0.17, 0.0, -20.0], [0.17, 0.98, 0.0, 10.0], [0.0, 0.0, 1.5, -30.0], [0, 0, 0, 1]])


def _head(shape, seed=0):
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    r2 = (grid**2).sum(0)
    return (np.where(r2 < 0.6, 100.0 + 50 * grid[0], 0.0) + rng.normal(0, 1, shape)).astype(np.float32)


@pytest.fixture
def mri_file(tmp_path):
    return write_nifti(tmp_path / "mri.nii.gz", _head((20, 18, 16)), OBLIQUE, qform_code=1, sform_code=2)


def test_load_volume_gives_channel_first_metatensor_with_affine(mri_file):
    img = LoadVolume(role="MRI")(mri_file)
    assert isinstance(img, MetaTensor) and img.shape == (1, 20, 18, 16)
    np.testing.assert_allclose(img.affine.numpy(), nib.load(mri_file).affine, atol=1e-5)
    assert str(mri_file) in str(img.meta["filename_or_obj"])


def test_load_volume_bad_file_names_it(tmp_path):
    bad = tmp_path / "nope.nii.gz"
    with pytest.raises(Asfe3dInputError, match="nope.nii.gz"):
        LoadVolume()(bad)


def test_register_none_resamples_onto_reference_grid(mri_file, tmp_path):
    # the same head on a coarser, shifted grid covering the same space
    pet_affine = OBLIQUE.copy()
    pet_affine[:3, :3] *= 2.0
    pet_data = _head((10, 9, 8), seed=1)
    pet_file = write_nifti(tmp_path / "pet.nii.gz", pet_data, pet_affine)
    mri, pet = LoadVolume()(mri_file), LoadVolume()(pet_file)
    out, transform, report = RegisterToReference(method="none", min_overlap=0.0)(pet, mri)
    assert out.shape == mri.shape and report["method"] == "none"
    assert report["qc"]["verdict"] in ("pass", "warn", "fail") and transform.GetParameters() == ()
    np.testing.assert_allclose(out.affine.numpy(), mri.affine.numpy())
    assert float(out.max()) > 50.0


def test_register_rigid_recovers_motion(small_pair):
    import SimpleITK as sitk

    from asfe3d.registration import registration_error_mm

    mri, pet = LoadVolume()(small_pair.mri_path), LoadVolume()(small_pair.pet_path)
    head = HeadMask()(mri)
    assert head.dtype == torch.bool and head.shape == mri.shape and bool(head.any())
    out, transform, report = RegisterToReference(method="rigid")(pet, mri, head)
    assert out.shape == mri.shape and report["qc"]["verdict"] == "pass"
    err = registration_error_mm(small_pair.true_transform, transform,
                                sitk.ReadImage(str(small_pair.mask_path)))
    assert err["mean"] < 2.0  # 4 mm voxels: well under half a voxel
    # the record holds the transform as a RAS matrix a nibabel user applies: MRI world -> PET world
    matrix = np.asarray(report["mri_to_pet_ras"])
    assert matrix.shape == (4, 4) and report["mri_to_pet_ras_exact"] is True
    for point in ([0.0, 0.0, 0.0], [30.0, -20.0, 15.0]):
        itk = np.asarray(transform.TransformPoint((-point[0], -point[1], point[2]))) * [-1, -1, 1]
        np.testing.assert_allclose(matrix @ [*point, 1.0], [*itk, 1.0], atol=1e-4)


def test_register_bad_arguments():
    with pytest.raises(ValueError, match="'warp'"):
        RegisterToReference(method="warp")
    with pytest.raises(ValueError, match=r"\(2, 4, 4, 4\)"):
        RegisterToReference(method="none")(MetaTensor(torch.zeros(2, 4, 4, 4)), MetaTensor(torch.zeros(1, 4, 4, 4)))
    # review 32 #3: these were found only after both images were read and registered (or at the call's TypeError)
    for kwargs, message in (({"interpolator": "cubic"}, r"interpolator must be one of \('linear', 'nearest', "
                                                         r"'bspline'\), got 'cubic'"),
                            ({"iterations": 0}, r"iterations must be a positive integer, got 0"),
                            ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*31 - 2\], got -1"),
                            ({"threads": 0}, r"threads must be None or an integer >= 1, got 0"),
                            ({"bspline_mesh": 2.5}, r"bspline_mesh must be a positive integer, got 2\.5"),
                            ({"min_overlap": "0.3"}, r"min_overlap must be a number in \[0, 1\], got '0\.3'"),
                            ({"sampling": True}, r"sampling must be in \(0, 1\], got True"),
                            ({"finest_mm": True}, r"finest_mm must be None or a finite number > 0, got True"),
                            ({"itterations": 50}, r"unknown registration setting\(s\) \['itterations'\]")):
        with pytest.raises(ValueError, match=message):
            RegisterToReference(method="auto", **kwargs)
    taken = RegisterToReference(method="deformable", sampling=np.float32(0.25), bspline_mesh=np.int64(6),
                                bspline_bound_mm=np.float64(2.0), progress=True)  # all good, numpy numbers too
    assert taken.register_kwargs["sampling"] == 0.25 and type(taken.register_kwargs["bspline_mesh"]) is int


@pytest.mark.parametrize("spatial", [(12, 10), (8, 9, 7)], ids=["2d", "3d"])
def test_normalize_and_fuse(spatial):
    img = MetaTensor(torch.stack([torch.from_numpy(_head(spatial)), torch.from_numpy(_head(spatial, 2) * 3)]))
    norm = RobustNormalize()(img)
    assert norm.shape == img.shape and float(norm.min()) >= 0 and float(norm.max()) <= 1
    fused = Fuse(method="max")(norm)
    assert fused.shape == (1, *spatial)
    from asfe3d.fusion.base import support_weight

    expected = torch.maximum(norm[0], norm[1]) * torch.from_numpy(support_weight(norm[0].numpy(), norm[1].numpy()))
    torch.testing.assert_close(fused[0], expected)
    rgb = ColourFuse(method="mean", colormap="hot")(norm)
    assert rgb.shape == (3, *spatial)
    # one pass: the grey fused image as the colour image's luma
    one_pass = ColourFuse(method="mean", colormap="hot")(norm, luma=fused)
    assert one_pass.shape == (3, *spatial) and not torch.equal(one_pass, rgb)
    with pytest.raises(ValueError, match="luma must have shape"):
        ColourFuse(method="mean")(norm, luma=fused[:, :2])
    assert list(norm.meta["asfe3d_window"]) == pytest.approx(
        list(RobustNormalize()(img[:1]).meta["asfe3d_window"]))
    restored = RestoreIntensity("mri")(fused, (10.0, 20.0))
    torch.testing.assert_close(restored, fused * 10.0 + 10.0)
    with pytest.raises(ValueError, match="'weird'"):
        RestoreIntensity("weird")


def test_fuse_reads_the_steered_injection_once_and_keeps_it_in_the_metadata(monkeypatch):
    """A network method with a steered detail injection: :class:`Fuse` reads the factor once, gives it to the method
    (the same image as the method reading it itself) and keeps it in the output's metadata; a classic method has
    none."""
    import asfe3d.inferers.fusion as inferer_module
    from asfe3d.fusion.learned import AsfeFusionMethod, mode_steps
    from asfe3d.networks import ASFEFusion

    torch.manual_seed(0)
    net = ASFEFusion(spatial_dims=3, detail_injection=0.8)
    fuser = AsfeFusionMethod("volume", net=net, device="cpu", steps=mode_steps("volume", detail_steer=0.01))  # any noisy PET gets the cap
    rng = np.random.default_rng(1)
    pair = np.clip(np.stack([_head((24, 24, 24)) / 200, _head((24, 24, 24), 3) / 200
                             + rng.normal(0, 0.05, (24, 24, 24))]), 0, 1).astype(np.float32)
    img = MetaTensor(torch.from_numpy(pair))
    calls = []
    real = inferer_module.pet_band_residual
    monkeypatch.setattr(inferer_module, "pet_band_residual", lambda *a: calls.append(1) or real(*a))
    out = Fuse(method=fuser, slice_axis="auto")(img)
    from asfe3d.defaults import DETAIL_STEER_MAX_GAIN_BY_MODE  # a 1 mm grid: volume mode's cap there

    assert len(calls) == 1 and out.meta["detail_steer_applied"] == pytest.approx(DETAIL_STEER_MAX_GAIN_BY_MODE["volume"])
    direct = fuser(pair[0], pair[1], spacing=(1.0, 1.0, 1.0))
    assert len(calls) == 2
    np.testing.assert_array_equal(out[0].numpy(), direct)
    assert "detail_steer_applied" not in Fuse(method="mean")(img).meta


def test_fuse_bad_inputs():
    with pytest.raises(ValueError, match=r"\(3, 4, 4\)"):
        Fuse(method="mean")(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="'bogus'"):
        Fuse(method="bogus")
    with pytest.raises(ValueError, match="'nocolour'"):
        ColourFuse(colormap="nocolour")
    with pytest.raises(ValueError, match="lower=5"):
        RobustNormalize(lower=5, upper=1)


def test_save_like_reference_keeps_geometry_and_codes(mri_file, tmp_path):
    mri = LoadVolume()(mri_file)
    out = tmp_path / "out" / "mri_fused.nii.gz"
    written = SaveLikeReference()({"fused": (mri * 0.5, out), "rgb": (torch.rand(3, 20, 18, 16),
                                                                      tmp_path / "out" / "rgb.nii.gz")}, mri,
                                  inputs=[mri_file], record_content={"note": "test"})
    assert written["fused"] == out.resolve() and written["record"].name == "mri_fused.json"
    ref, got = nib.load(mri_file), nib.load(out)
    assert got.shape == ref.shape and got.get_data_dtype() == np.float32
    np.testing.assert_allclose(got.affine, ref.affine, atol=1e-5)
    assert int(got.header["qform_code"]) == 1 and int(got.header["sform_code"]) == 2
    np.testing.assert_allclose(got.get_fdata(), 0.5 * ref.get_fdata(), atol=1e-4)
    assert nib.load(written["rgb"]).shape == ref.shape
    assert sorted(p.name for p in out.parent.iterdir()) == ["mri_fused.json", "mri_fused.nii.gz", "rgb.nii.gz"]


@pytest.mark.parametrize("step", ["flip", "orient", "crop"])
def test_save_like_reference_writes_the_grid_a_monai_transform_made(mri_file, tmp_path, step):
    """After MONAI's Flipd/Orientationd/SpatialCropd on the loaded MRI, the output is written on the MetaTensor's
    grid: a voxel lands where it lay in the MRI (the loaded header's old qform/sform were written: a flip on disk
    was a left-right mirror image, a crop displaced by its start)."""
    from monai.transforms import Flip, Orientation, SpatialCrop

    mri = LoadVolume()(mri_file)
    moved = {"flip": Flip(spatial_axis=0), "orient": Orientation(axcodes="LPI"),
             "crop": SpatialCrop(roi_start=(3, 4, 5), roi_end=(15, 16, 12))}[step](mri)
    out = tmp_path / f"{step}.nii.gz"
    SaveLikeReference()({"fused": (moved, out)}, moved)
    ref, got = nib.load(mri_file), nib.load(out)
    np.testing.assert_allclose(got.affine, moved.affine.numpy(), atol=1e-5)
    assert got.shape == tuple(moved.shape[1:])
    assert int(got.header["qform_code"]) == 1 and int(got.header["sform_code"]) == 2  # the MRI's codes kept
    world = got.affine @ np.array([2, 3, 4, 1.0])  # the written voxel (2, 3, 4) is the MRI's voxel at that point
    src = np.round(np.linalg.inv(ref.affine) @ world).astype(int)[:3]
    assert got.get_fdata()[2, 3, 4] == pytest.approx(ref.get_fdata()[tuple(src)], abs=1e-4)


def test_save_like_reference_refuses_overwrite_and_bad_args(mri_file, tmp_path):
    mri = LoadVolume()(mri_file)
    with pytest.raises(Asfe3dInputError, match="mri.nii.gz"):
        SaveLikeReference(overwrite=True)({"fused": (mri, mri_file)}, mri, inputs=[mri_file])
    with pytest.raises(ValueError, match="at least one"):
        SaveLikeReference()({}, mri)
    with pytest.raises(ValueError, match=r"\(2, 20, 18, 16\)"):
        SaveLikeReference()({"fused": (torch.zeros(2, 20, 18, 16), tmp_path / "x.nii.gz")}, mri)
    assert not (tmp_path / "x.nii.gz").exists() and not list(tmp_path.glob(".x*"))


def test_save_like_reference_refuses_an_image_on_another_grid(mri_file, tmp_path):
    """An image whose own affine is not the reference's (MONAI's Invertd took the fused image back to the file's
    grid while the reference stayed on an Orientationd grid; a Flipd of the image alone) was written with the
    reference's affine: mirrored in the world, without a word. A plain tensor (no affine) is written as it is."""
    from monai.transforms import Flip, Orientation

    mri = LoadVolume()(mri_file)
    turned = Orientation(axcodes="LPI")(mri)
    for image, reference in ((mri * 0.5, turned), (Flip(spatial_axis=0)(mri), mri)):
        with pytest.raises(ValueError, match=r"^fused is not on the reference's grid: its affine .* differs from the "
                                             r"reference's .* it would be written with the reference's"):
            SaveLikeReference()({"fused": (image, tmp_path / "f.nii.gz")}, reference)
    assert [p.name for p in tmp_path.iterdir()] == ["mri.nii.gz"]  # the input alone: nothing written
    SaveLikeReference()({"fused": (torch.as_tensor(turned.numpy()), tmp_path / "f.nii.gz")}, turned)
    np.testing.assert_allclose(nib.load(tmp_path / "f.nii.gz").affine, turned.affine.numpy(), atol=1e-5)


def test_head_mask_is_the_same_on_every_call(mri_file):
    """The mask is read from a SimpleITK image that must stay alive while its array view is read (a freed image
    gave a different mask on each call)."""
    mri = LoadVolume()(mri_file)
    masks = [HeadMask()(mri) for _ in range(8)]
    _ = [torch.rand(20, 18, 16) for _ in range(50)]  # reuse freed memory between the calls
    masks += [HeadMask()(mri) for _ in range(8)]
    assert all(torch.equal(m, masks[0]) for m in masks) and bool(masks[0].any())
    with pytest.raises(ValueError, match=r"\(1, X, Y, Z\)"):
        HeadMask()(MetaTensor(torch.zeros(2, 4, 4, 4)))


def test_steps_in_mm_refuse_a_plain_tensor_instead_of_taking_a_1_mm_grid(mri_file):
    """A plain tensor (MONAI's set_track_meta(False)) was given a 1 mm identity grid: a 6 mm smoothing of a 3 mm
    PET became 18 mm, a registration of 3 mm and 2 mm images compared two 1 mm grids."""
    from asfe3d.transforms import SmoothMm

    mri = LoadVolume()(mri_file)
    plain = mri.as_tensor()
    unit = torch.cat([plain, plain]).clamp(0, 100) / 100
    for step, match in [(lambda: SmoothMm(6.0)(plain), "the width is in mm"),
                        (lambda: HeadMask()(plain), "head mask is made in mm"),
                        (lambda: RegisterToReference()(plain, mri), "moving is a plain Tensor without an affine"),
                        (lambda: Fuse("highpass")(unit), "method 'highpass' works on the"),
                        (lambda: ColourFuse(method="highpass")(unit), "method 'highpass' works on the"),  # was 1 mm
                        (lambda: SaveLikeReference()({"fused": (plain, "f.nii.gz")}, plain), "written on its grid")]:
        with pytest.raises(ValueError, match=match):
            step()
    assert torch.equal(SmoothMm(0.0)(plain), plain)  # no width, no grid needed
    assert Fuse("mean")(unit).shape == plain.shape  # a method that works per voxel
    assert ColourFuse(method="highpass")(unit, luma=unit[:1]).shape == (3, *plain.shape[1:])  # the luma given


def test_plan_outputs_expands_the_home_folder_for_the_record(tmp_path, monkeypatch):
    """``~/f.nii.gz``: the record is ``$HOME/f.json`` (the files are written there), so a JSON of the user's own
    there is seen and kept."""
    from asfe3d.errors import Asfe3dInputError
    from asfe3d.settings import Settings
    from asfe3d.transforms.array import plan_outputs

    monkeypatch.setenv("HOME", str(tmp_path))
    outs, record = plan_outputs({"fused": ("~/f.nii.gz", "nifti")})
    assert record == tmp_path / "f.json"
    (tmp_path / "f.json").write_text('{"mine": 1}')
    with pytest.raises(Asfe3dInputError, match="is not an asfe3d completion record"):
        plan_outputs({"fused": ("~/f.nii.gz", "nifti")}, overwrite=True)
    assert Settings.from_flat(pet_sidecar="~/pet.json").inputs.pet_sidecar == tmp_path / "pet.json"


def _as_lps(img):
    """``img`` as MONAI's ``LoadImage(reader="ITKReader", affine_lps_to_ras=False)`` gives it: LPS affine, said so in
    ``meta["space"]``."""
    from monai.data.utils import orientation_ras_lps

    return MetaTensor(img.as_tensor().clone(), affine=orientation_ras_lps(img.affine.clone()),
                      meta={**{k: v for k, v in img.meta.items() if k != "affine"}, "space": "LPS"})


def test_ras_affine_reads_monai_space_and_refuses_an_unknown_one(mri_file):
    from asfe3d.io.volume import ras_affine

    mri = LoadVolume()(mri_file)
    np.testing.assert_allclose(ras_affine(mri), nib.load(mri_file).affine, atol=1e-5)
    np.testing.assert_allclose(ras_affine(_as_lps(mri)), nib.load(mri_file).affine, atol=1e-5)
    bare = MetaTensor(mri.as_tensor().clone(), affine=mri.affine.clone())  # no "space": MONAI's default, RAS
    np.testing.assert_allclose(ras_affine(bare), nib.load(mri_file).affine, atol=1e-5)
    odd = MetaTensor(mri.as_tensor().clone(), affine=mri.affine.clone(), meta={"space": "ASL"})
    with pytest.raises(ValueError, match=r"meta\['space'\] is 'ASL': expected 'RAS' or 'LPS'"):
        ras_affine(odd)


def test_an_lps_loaded_image_is_registered_and_written_in_place(mri_file, tmp_path):
    """An MRI and PET loaded with LPS affines (``meta["space"] == "LPS"``) were taken as RAS: the output was written
    mirrored in x and y (world correlation with the input 0.53 in probe 18). Now the registration sees the same
    world as for the RAS images and the written file holds each voxel where the MRI holds it."""
    import SimpleITK as sitk

    from asfe3d.transforms import sitk_from_metatensor

    pet_affine = OBLIQUE.copy()
    pet_affine[:3, :3] *= 2.0
    pet_file = write_nifti(tmp_path / "pet.nii.gz", _head((10, 9, 8), seed=1), pet_affine)
    mri, pet = LoadVolume()(mri_file), LoadVolume()(pet_file)
    a, b = sitk_from_metatensor(mri), sitk_from_metatensor(_as_lps(mri))
    assert a.GetOrigin() == pytest.approx(b.GetOrigin()) and a.GetDirection() == pytest.approx(b.GetDirection())
    ras_out = RegisterToReference(method="none", min_overlap=0.0)(pet, mri)[0]
    lps_mri = _as_lps(mri)
    lps_out = RegisterToReference(method="none", min_overlap=0.0)(_as_lps(pet), lps_mri)[0]
    np.testing.assert_allclose(lps_out.numpy(), ras_out.numpy(), atol=1e-5)
    out = tmp_path / "fused.nii.gz"
    SaveLikeReference()({"fused": (lps_mri * 0.5, out)}, lps_mri)
    got = nib.load(out)
    np.testing.assert_allclose(got.affine, nib.load(mri_file).affine, atol=1e-5)
    np.testing.assert_allclose(got.get_fdata(), 0.5 * nib.load(mri_file).get_fdata(), atol=1e-4)
    assert sitk.ReadImage(str(out)).GetDirection() == pytest.approx(a.GetDirection(), abs=1e-5)


def test_a_template_space_mri_with_a_native_pet_is_registered_affine_or_warned(small_pair, tmp_path):
    """fMRIPrep's ``space-MNI152..._desc-preproc_T1w`` (sform/qform code 4) with a native PET: the default rigid
    registration was 4.9 mm off on average (12 mm at worst) with QC pass (probe 20 #1). ``auto`` now registers such a
    pair affine (and says why); a rigid registration asked for is a QC warning naming the template space."""
    from asfe3d.registration import resolve_method
    from asfe3d.registration.register import template_mismatch

    img = nib.load(small_pair.mri_path)
    mni = write_nifti(tmp_path / "sub-01_space-MNI152_T1w.nii.gz", np.asarray(img.dataobj), img.affine,
                      qform_code=4, sform_code=4)
    mri, pet = LoadVolume()(mni), LoadVolume()(small_pair.pet_path)
    mri_info = mri.meta["asfe3d_source"]
    assert mri_info["nifti_space_code"] == 4
    assert resolve_method("auto", mri_info, {"nifti_space_code": 1}) == ("affine", False)
    assert resolve_method("auto", {"nifti_space_code": 4}, {"nifti_space_code": 4}) == ("rigid", False)
    assert resolve_method("rigid", mri_info, {"nifti_space_code": 1}) == ("rigid", False)
    assert template_mismatch({"nifti_space_code": 2}, {}) is None
    assert "the PET is in a template space, Talairach (qform_code 3)" in template_mismatch(
        {}, {"nifti_space_code": 3, "geometry_source": "qform"})
    head = HeadMask()(mri)
    _, _, auto = RegisterToReference(method="auto")(pet, mri, head)
    assert auto["method"] == "affine" and auto["requested"] == "auto"
    assert any(r.startswith("registered affine (auto): the MRI is in a template space, MNI152 (sform_code 4)")
               for r in auto["qc"]["reasons"]), auto["qc"]
    _, _, rigid = RegisterToReference(method="rigid")(pet, mri, head)
    assert rigid["qc"]["verdict"] in ("warn", "fail") and "template_space" in rigid["qc"]["flags"]
    assert any("use --registration affine" in r for r in rigid["qc"]["reasons"]), rigid["qc"]


@pytest.mark.parametrize("mode", ["volume", "slice"])
def test_one_head_stored_in_another_voxel_order_gives_the_same_fused_image(mode):
    """FreeSurfer's LIA orig.mgz and its RAS NIfTI gave two fused images of one head (world correlation 0.987,
    5.7 % mean difference in volume mode; probe 20 #9): the network ran on the voxel array as stored. It now runs
    in RAS order, as it was trained, and the result is turned back: the same voxels."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    x = np.stack([gaussian_filter(rng.random((24, 28, 20)), 1.5), gaussian_filter(rng.random((24, 28, 20)), 3)])
    x = ((x - x.min()) / (x.max() - x.min())).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    lia = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt("LIA"))
    stored = np.stack([nib.orientations.apply_orientation(c, lia) for c in x])
    stored_affine = affine @ nib.orientations.inv_ornt_aff(lia, x.shape[1:])
    assert nib.aff2axcodes(stored_affine) == ("L", "I", "A")
    fuse = Fuse("asfe", mode=mode)
    ras_out = fuse(MetaTensor(torch.from_numpy(x), affine=torch.as_tensor(affine)))
    lia_out = fuse(MetaTensor(torch.from_numpy(np.ascontiguousarray(stored)), affine=torch.as_tensor(stored_affine)))
    np.testing.assert_allclose(lia_out.affine.numpy(), stored_affine)  # on the stored grid
    back = nib.orientations.apply_orientation(lia_out[0].numpy(), nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt("LIA"), nib.orientations.axcodes2ornt("RAS")))
    np.testing.assert_array_equal(back, ras_out[0].numpy())


def test_registration_none_is_judged_as_the_headers_placement_not_as_a_misregistration(small_pair, tmp_path):
    """With ``--registration none`` and headers that do not align the images the messages spoke of "a
    misregistration" / "registration judged failed" and never said that nothing was registered (probe 20 #5)."""
    from asfe3d.errors import RegistrationRefused

    img = nib.load(small_pair.pet_path)
    mri = LoadVolume()(small_pair.mri_path)
    for shift, problem in ((12.0, RegistrationRefused), (400.0, Asfe3dInputError)):
        moved = img.affine.copy()
        moved[0, 3] += shift
        path = write_nifti(tmp_path / f"pet_{int(shift)}.nii.gz", np.asarray(img.dataobj), moved)
        with pytest.raises(problem) as info:
            RegisterToReference(method="none", qc="strict")(LoadVolume()(path), mri)
        said = str(info.value)
        assert "registration none" in said and "misregistration" not in said, said
        assert "leave out --registration none" in said


@pytest.mark.parametrize("method, mode", [("asfe", "volume"), ("asfe", "slice"), ("wavelet", None)])
def test_zero_padding_the_inputs_does_not_change_the_fused_head(method, mode):
    """The same head zero-padded by 40 voxels fused 15 % differently on average (scalp 30 % darker; probe 21 #5):
    the network's windows saw different amounts of background. Fusion now runs on the box that holds the inputs'
    signal; around it every method gives 0, as it did."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    x = np.stack([gaussian_filter(rng.random((24, 28, 20)), 1.5), gaussian_filter(rng.random((24, 28, 20)), 3)])
    x = ((x - x.min()) / (x.max() - x.min())).astype(np.float32) * 0.9 + 0.05  # signal to the edges
    pad = ((0, 0), (9, 5), (0, 12), (7, 7))
    padded = np.pad(x, pad)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    shifted = affine.copy()
    shifted[:3, 3] -= 2.0 * np.array([9, 0, 7])  # the same head in the same place
    kwargs = {"mode": mode} if mode else {}
    fuse = Fuse(method, **kwargs)
    plain = fuse(MetaTensor(torch.from_numpy(x), affine=torch.as_tensor(affine)))[0].numpy()
    out = fuse(MetaTensor(torch.from_numpy(padded), affine=torch.as_tensor(shifted)))[0].numpy()
    np.testing.assert_array_equal(out[9:33, :28, 7:27], plain)
    assert np.count_nonzero(out) == np.count_nonzero(plain)  # 0 around the head
    if method == "asfe":  # the inferer used directly (the README's MONAI snippet, the bundle) the same
        from asfe3d.fusion import AsfeFusionMethod

        m = AsfeFusionMethod(mode)
        with torch.no_grad():
            a = m.inferer(MetaTensor(torch.from_numpy(x)[None], affine=torch.as_tensor(affine)), m.net)
            b = m.inferer(MetaTensor(torch.from_numpy(padded)[None], affine=torch.as_tensor(shifted)), m.net)
        np.testing.assert_array_equal(b[0, 0, 9:33, :28, 7:27].numpy(), a[0, 0].numpy())


def test_a_pet_already_on_the_mri_grid_gets_a_note_that_none_keeps_it(small_pair, tmp_path):
    """A PET coregistered and resliced by SPM, FSL or PETSurfer (on the MRI's exact grid) was moved 0.2-0.3 mm and
    interpolated again by the default registration, with no hint that --registration none keeps it (probe 20 #7)."""
    mri, pet = LoadVolume()(small_pair.mri_path), LoadVolume()(small_pair.pet_path)
    on_grid = RegisterToReference(method="rigid")(pet, mri)[0]
    path = write_nifti(tmp_path / "rpet.nii.gz", on_grid[0].numpy(), nib.load(small_pair.mri_path).affine)
    resliced = LoadVolume()(path)
    report = RegisterToReference(method="rigid")(resliced, mri)[2]
    notes = [r for r in report["qc"]["reasons"] if r.startswith("the PET was already on the MRI's grid")]
    assert len(notes) == 1 and "--registration none keeps it as it is" in notes[0], report["qc"]
    assert re.search(r"moved it by up to \d+\.\d\d mm", notes[0])
    kept = RegisterToReference(method="none")(resliced, mri)[2]
    assert not any("already on the MRI's grid" in r for r in kept["qc"]["reasons"])
    moved = RegisterToReference(method="rigid")(pet, mri)[2]  # a PET on its own grid: nothing to say
    assert not any("already on the MRI's grid" in r for r in moved["qc"]["reasons"])


def test_field_of_view_mask_leaves_out_what_the_file_did_not_measure(small_pair):
    """SPM writes NaN outside a resliced PET's field of view; read with allow_nonfinite they are 0, and the mask
    leaves them out (taken through the transform by nearest neighbour), as it leaves out the grid's padding."""
    import SimpleITK as sitk

    from asfe3d.io.volume import UNMEASURED_KEY
    from asfe3d.transforms.array import field_of_view_mask

    mri, pet = LoadVolume()(small_pair.mri_path), LoadVolume()(small_pair.pet_path)
    identity = sitk.Transform(3, sitk.sitkIdentity)
    whole = field_of_view_mask(pet, mri, identity)
    assert whole.dtype == torch.bool and whole.shape == mri.shape
    np.testing.assert_allclose(whole.affine.numpy(), mri.affine.numpy())
    unmeasured = np.zeros(pet.shape[1:], bool)
    unmeasured[:, :, : pet.shape[3] // 2] = True  # the PET's lower half was NaN in the file
    pet.meta[UNMEASURED_KEY] = unmeasured
    half = field_of_view_mask(pet, mri, identity)
    assert 0 < int(half.sum()) < int(whole.sum()) and not bool((half & ~whole).any())
    # inside: the MRI slices whose PET z index (continuous) is at or above the first measured PET slice, so that the
    # registered PET's linear interpolation mixes in no unmeasured 0 (it left a dark rim, review 23 #2)
    to_pet = np.linalg.inv(pet.affine.numpy()) @ mri.affine.numpy()
    pet_z = np.array([(to_pet @ [0, 0, z, 1])[2] for z in range(mri.shape[3])])
    zs = np.nonzero(half[0].numpy().any(axis=(0, 1)))[0]
    assert zs.min() == int(np.argmax(pet_z >= pet.shape[3] // 2 - 1e-6)), (zs.min(), pet_z)
    pet.meta[UNMEASURED_KEY] = unmeasured[:-1]
    with pytest.raises(ValueError, match=r"must have the image's shape .* got \("):
        field_of_view_mask(pet, mri, identity)
    with pytest.raises(ValueError, match="plain ndarray without an affine"):
        field_of_view_mask(np.zeros((1, 4, 4, 4)), mri, identity)


def test_the_unmeasured_mask_follows_the_image_through_monai_spatial_transforms(tmp_path):
    """Review 23 #1: the mask of a PET's NaN was a voxel array in the metadata; MONAI's Orientation (or Spacing)
    moved the voxels and not it, and the wrong side was blanked (or the run stopped on a shape). It now keeps its
    grid and is taken to the image's current one."""
    import SimpleITK as sitk
    from monai.transforms import Orientation, Spacing

    from asfe3d.io.volume import UNMEASURED_KEY, unmeasured_on
    from asfe3d.transforms.array import field_of_view_mask

    arr = np.random.default_rng(0).uniform(1, 2, (10, 8, 6)).astype(np.float32)
    arr[:4] = np.nan  # the file's first 4 x columns (LAS: the subject's left side)
    affine = np.diag([-3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [13.5, -10.5, -7.5]
    path = write_nifti(tmp_path / "las.nii.gz", arr, affine)
    pet = LoadVolume(role="PET", allow_nonfinite=True)(path)
    assert set(pet.meta[UNMEASURED_KEY]) == {"mask", "affine"}
    turned = Orientation(axcodes="RAS")(pet)
    zero_columns = np.nonzero((turned[0].numpy() == 0).all(axis=(1, 2)))[0].tolist()
    assert zero_columns == [6, 7, 8, 9]
    assert np.nonzero(unmeasured_on(turned).all(axis=(1, 2)))[0].tolist() == zero_columns
    identity = sitk.Transform(3, sitk.sitkIdentity)
    fov = field_of_view_mask(turned, turned, identity)
    assert np.nonzero((~fov[0].numpy()).all(axis=(1, 2)))[0].tolist() == zero_columns
    assert UNMEASURED_KEY not in fov.meta  # the reference's own mask does not travel with what is made on its grid
    resampled = Spacing(pixdim=(2.0, 2.0, 2.0))(pet)
    on_grid = unmeasured_on(resampled)
    assert on_grid.shape == tuple(resampled.shape[1:]) and 0 < on_grid.mean() < 1
    with pytest.raises(ValueError, match="must hold 'mask' and 'affine', got \\['mask'\\]"):
        unmeasured_on(MetaTensor(torch.zeros(1, 2, 2, 2), meta={UNMEASURED_KEY: {"mask": np.zeros((2, 2, 2))}}))


def test_robust_normalize_splits_off_the_part_above_the_window():
    """Review 32 #8: the split of the PET's hottest uptake off its window lived in the dictionary wrapper only; the
    array transform gives it (``RobustNormalize.split_above``), and the wrapper only places its two results."""
    from asfe3d.transforms import RobustNormalized
    from asfe3d.transforms.array import RobustNormalize

    values = torch.linspace(0.0, 10.0, 6 * 5 * 4).reshape(1, 6, 5, 4)
    img = MetaTensor(values, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    mask = torch.ones(1, 6, 5, 4, dtype=torch.bool)
    normalised = RobustNormalize(clip_upper=False)(img, mask)
    clipped, above = RobustNormalize.split_above(normalised)
    assert float(normalised.max()) > 1.0 and float(clipped.max()) == 1.0
    assert torch.equal(clipped + above, normalised.as_tensor()) and above.dtype == torch.float32
    assert clipped.meta["asfe3d_window"] == normalised.meta["asfe3d_window"]
    d = RobustNormalized("pet", mask_key="head", above_postfix="above")({"pet": img, "head": mask})
    assert torch.equal(d["pet"].as_tensor(), clipped.as_tensor()) and torch.equal(d["pet_above"], above)


def test_restore_intensity_refuses_a_reversed_or_unreadable_window_and_gives_tensors():
    """A window with ``hi < lo`` inverted the image without a word; ``scale="unit"`` gave a numpy array back where
    ``"mri"`` gave a tensor."""
    img = np.linspace(0, 1, 8, dtype=np.float32).reshape(1, 2, 2, 2)
    for window in ((100.0, 0.0), (5.0, 5.0), ("a", "b"), (True, 2.0), (0.0, float("inf"))):
        with pytest.raises(ValueError, match=re.escape(f"window must be (lo, hi), two finite numbers with hi > lo, "
                                                       f"got {window!r}")):
            RestoreIntensity()(img, window)
    assert isinstance(RestoreIntensity("unit")(img, None), torch.Tensor)
    restored = RestoreIntensity()(img, (np.float32(2.0), torch.tensor(4.0)))
    torch.testing.assert_close(restored, torch.from_numpy(img * 2.0 + 2.0))


def test_an_image_loaded_without_its_channel_axis_is_refused_by_name(tmp_path):
    """MONAI's loader gives ``(X, Y, Z)``: without ``EnsureChannelFirst`` it was normalised as X channels of 2D
    images (an intensity gradient along X erased)."""
    from monai.transforms import LoadImage

    path = tmp_path / "t1.nii.gz"
    write_nifti(path, np.random.default_rng(0).random((12, 10, 8)).astype(np.float32) + 1, np.eye(4))
    loaded = LoadImage(image_only=True)(str(path))
    for transform in (RobustNormalize(), HeadMask()):
        with pytest.raises(ValueError, match=re.escape("img has no channel axis: its shape (12, 10, 8) is all spatial")):
            transform(loaded)
    assert RobustNormalize()(loaded[None]).shape == (1, 12, 10, 8)
    with pytest.raises(ValueError, match=re.escape("img has no channel axis: its shape (10, 10, 8) is all spatial")):
        RobustNormalize()(loaded[1:11])  # cropped by indexing, still without its channel
    # a 2D slice with its channel, cut from the loaded volume (its meta still says (12, 10, 8)): taken
    assert RobustNormalize()(loaded[None][..., 4]).shape == (1, 12, 10)
    from asfe3d.transforms import Fuse

    pair = torch.cat([loaded[None][..., 4], loaded[None][..., 5]])
    assert Fuse("mean")((pair - pair.min()) / (pair.max() - pair.min())).shape == (1, 12, 10)
    # a 2D image loaded without its channel: refused too (it was normalised as 12 channels of rows)
    flat = MetaTensor(torch.rand(12, 10) + 1, meta={"spatial_shape": np.array([12, 10])})
    with pytest.raises(ValueError, match=re.escape("img has no channel axis: its shape (12, 10) is all spatial")):
        RobustNormalize()(flat)


def test_robust_normalize_refuses_a_mask_of_another_spatial_shape():
    img = torch.rand(1, 12, 10, 8)
    with pytest.raises(ValueError, match=re.escape("mask must be one channel on the image's grid, (1, *spatial) or "
                                                   "spatial with spatial (12, 10, 8)")):
        RobustNormalize()(img, np.ones((12, 10, 9), bool))
    with pytest.raises(ValueError, match=re.escape("with spatial (10, 8) (img is (C, *spatial), (12, 10, 8)), got")):
        RobustNormalize()(img[0], np.ones((12, 10, 8), bool))  # (X, Y, Z) taken as X channels: its mask refused
    with pytest.raises(ValueError, match=re.escape("got (2, 12, 10, 8)")):  # one mask for every channel
        RobustNormalize()(torch.rand(2, 12, 10, 8), np.ones((2, 12, 10, 8), bool))


def test_load_volume_refuses_an_image_loaded_already_and_takes_path_like_objects(tmp_path):
    with pytest.raises(ValueError, match="path must be a file or DICOM folder .* got MetaTensor"):
        LoadVolume()(MetaTensor(torch.zeros(1, 4, 4, 4)))
    path = tmp_path / "t1.nii.gz"
    write_nifti(path, np.random.default_rng(0).random((6, 5, 4)).astype(np.float32) + 1, np.eye(4))

    class Located:  # any os.PathLike (pytest's py.path.local, universal_pathlib...)
        def __fspath__(self) -> str:
            return str(path)

    assert LoadVolume()(Located()).shape == (1, 6, 5, 4)


def test_bfloat16_images_are_taken_as_float16_ones_are() -> None:
    """Probe 47 #2: a bfloat16 MetaTensor stopped five transforms with numpy's "Got unsupported ScalarType
    BFloat16" (they turned it into numpy before casting)."""
    c = torch.linspace(-1, 1, 16)
    x, y, z = torch.meshgrid(c, c, c, indexing="ij")
    vol = ((x**2 + y**2 + z**2).sqrt() < 0.8).float() * (100 + 50 * torch.sin(5 * x))
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    for dtype in (torch.float16, torch.bfloat16):
        img = MetaTensor(vol[None], affine=affine).to(dtype)
        pair = MetaTensor(torch.stack([vol / 150, vol / 300]), affine=affine).to(dtype)
        assert RobustNormalize()(img).dtype == torch.float32
        assert HeadMask()(img).dtype == torch.bool
        assert Fuse("mean")(pair).dtype == torch.float32 and ColourFuse("mean")(pair).dtype == torch.float32
        assert RestoreIntensity()(pair[:1], (0.0, 10.0)).dtype == torch.float32


def test_robust_normalize_refuses_a_percentile_that_is_not_a_number() -> None:
    with pytest.raises(ValueError, match=r"need 0 <= lower < upper <= 100, got lower='a', upper=99.5"):
        RobustNormalize(lower="a")
