"""End-to-end pipeline: geometry on the MRI grid, inputs untouched, determinism, atomic failure."""

from __future__ import annotations

import hashlib
import json
import logging

import nibabel as nib
import numpy as np
import pytest

from asfe3d.errors import Asfe3dInputError
from asfe3d.pipeline import auto_slice_axis, default_output_path, fuse_pair
from asfe3d.settings import Settings


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()





def test_fused_volume_is_on_the_mri_grid_with_all_outputs(pair):
    mri, pet = pair
    before = (_digest(mri), _digest(pet))
    settings = Settings.from_flat(method="wavelet", save_registered_pet=True, rgb=True, preview=True,
                                  save_transform=True, output_scale="unit")
    result = fuse_pair(mri, pet, None, settings)
    assert result.output == default_output_path(mri) == mri.parent / "sub01_mri_fused.nii.gz"
    ref = nib.load(mri)
    for kind in ("fused", "registered_pet", "rgb"):
        out = nib.load(result.outputs[kind])
        assert out.shape == ref.shape, kind
        np.testing.assert_allclose(out.affine, ref.affine, atol=1e-5)
        for code in ("qform_code", "sform_code"):
            assert int(out.header[code]) == int(ref.header[code])
    fused = nib.load(result.output)
    assert fused.get_data_dtype() == np.float32
    data = fused.get_fdata()
    assert 0.0 <= data.min() and data.max() <= 1.0 and data.std() > 0.05
    assert result.outputs["transform"].read_text().startswith("#Insight Transform File")
    assert result.outputs["preview"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(result.timings) >= {"load", "register", "resample", "normalise", "fuse", "save", "total"}
    assert (_digest(mri), _digest(pet)) == before  # inputs never modified
    assert not [p for p in mri.parent.iterdir() if "tmp" in p.name]  # no temp file left


def test_a_freesurfer_mgz_mri_gives_a_nifti_on_its_grid(pair, tmp_path):
    """FreeSurfer's ``.mgz`` as the MRI (an ``orig.mgz`` of a FreeSurfer subject, coronal LIA): the fused volume is a
    NIfTI with the MGZ's shape and vox2ras (both codes 1, scanner), named after it, the MRI's values kept."""
    mri, pet = pair
    img = nib.load(mri)
    lia = nib.orientations.ornt_transform(nib.io_orientation(img.affine), nib.orientations.axcodes2ornt("LIA"))
    coronal = img.as_reoriented(lia)
    mgz = tmp_path / "orig.mgz"
    nib.save(nib.MGHImage(np.asarray(coronal.dataobj, dtype=np.float32), coronal.affine), str(mgz))
    result = fuse_pair(mgz, pet, None, Settings.from_flat(method="mean", save_registered_pet=True))
    assert result.output == tmp_path / "orig_fused.nii.gz"
    ref = nib.load(mgz)
    for kind in ("fused", "registered_pet"):
        out = nib.load(result.outputs[kind])
        assert out.shape == ref.shape and nib.aff2axcodes(out.affine) == ("L", "I", "A"), kind
        np.testing.assert_allclose(out.affine, ref.affine, rtol=0, atol=1e-4)
        assert int(out.header["qform_code"]) == int(out.header["sform_code"]) == 1
    assert result.registration["qc"]["verdict"] == "pass"


def test_an_mri_with_rounded_direction_cosines_gives_outputs_with_its_header(pair, tmp_path):
    """dcm2niix's NIfTI of an oblique series whose orientation was written with 3 decimals (sform 0.04 degrees from
    orthogonal): fused on the nearest orthogonal grid, written with the MRI's own sform and qform (it was refused)."""
    from asfe3d.cohort import check_existing_output

    mri, pet = pair
    img = nib.load(mri)
    turn = nib.eulerangles.euler2mat(0.0, np.radians(9.5), np.radians(21.5))
    row, col = np.round(turn[:, 0], 3), np.round(turn[:, 1], 3)
    linear = np.stack([row, col, np.cross(row, col)], axis=1) * np.linalg.norm(img.affine[:3, :3], axis=0)
    sform = np.eye(4)
    sform[:3, :3], sform[:3, 3] = linear, img.affine[:3, 3]
    oblique = nib.Nifti1Image(np.asarray(img.dataobj, np.float32), sform)
    oblique.set_qform(sform, code=1)
    oblique_mri = tmp_path / "obl_mri.nii.gz"
    nib.save(oblique, str(oblique_mri))
    result = fuse_pair(oblique_mri, pet, tmp_path / "f.nii.gz",
                       Settings.from_flat(method="mean", registration="none", min_overlap=0.0))
    ref = nib.load(oblique_mri).header
    out = nib.load(result.output).header
    np.testing.assert_array_equal(out.get_sform(), ref.get_sform())
    np.testing.assert_array_equal(out.get_qform(), ref.get_qform())
    assert check_existing_output(result.output, oblique_mri) is None  # a cohort's rerun takes it as done


def test_a_ct_padded_outside_its_disc_is_fused_as_without_padding(pair, tmp_path):
    """A head CT whose voxels outside the circular reconstruction field of view hold the scanner's padding (-3024, as
    Siemens and GE CTs and their dcm2niix NIfTIs do) was refused: the head mask took the air inside the disc for head
    ("PET signal covers 26% of the MRI head"), and the padding set the normalisation's low end."""
    mri, pet = pair
    img = nib.load(mri)
    values = np.asarray(img.dataobj, np.float32)
    ct = np.round(values / values.max() * 1400 - 1024)  # air -1024 HU
    nx, ny, _ = ct.shape
    x, y = np.ogrid[:nx, :ny]
    outside = (((x - (nx - 1) / 2) / (nx / 2)) ** 2 + ((y - (ny - 1) / 2) / (ny / 2)) ** 2) > 1.0
    assert values[outside].max() < 0.05 * values.max()  # only air lies outside the disc
    fused = {}
    for name, pad in (("plain", None), ("padded", -3024.0)):
        volume = ct.copy()
        if pad is not None:
            volume[outside] = pad
        path = tmp_path / f"ct_{name}.nii.gz"
        nib.save(nib.Nifti1Image(volume.astype(np.int16), img.affine), str(path))
        # registration "none" (refused the same way before): the check and the normalisation, not the optimiser
        result = fuse_pair(path, pet, tmp_path / f"f_{name}.nii.gz", Settings.from_flat(method="mean",
                                                                                        registration="none"))
        fused[name] = np.asarray(nib.load(result.output).dataobj)
    head = ~outside[..., None] & (ct > -500)
    np.testing.assert_allclose(fused["padded"][head], fused["plain"][head], rtol=0, atol=1e-3)


def test_a_mask_given_as_the_mri_is_a_qc_warning(pair, tmp_path):
    """fMRIPrep's *_desc-brain_mask (0/1) in the MRI's place was fused with QC pass and no remark."""
    mri, pet = pair
    img = nib.load(mri)
    values = np.asarray(img.dataobj, np.float32)
    mask = tmp_path / "sub01_desc-brain_mask.nii.gz"
    nib.save(nib.Nifti1Image((values > 0.2 * values.max()).astype(np.uint8), img.affine), str(mask))
    result = fuse_pair(mask, pet, tmp_path / "f.nii.gz", Settings.from_flat(method="mean"))
    qc = result.registration["qc"]
    assert qc["verdict"] == "warn" and "mri_labels" in qc["flags"], qc


def test_same_inputs_same_output(pair, tmp_path, caplog):
    mri, pet = pair
    with caplog.at_level(logging.INFO, logger="asfe3d"):  # what -v shows: each step as it starts, then its time
        a = fuse_pair(mri, pet, tmp_path / "a.nii.gz", Settings.from_flat(method="laplacian", seed=1))
    lines = [r.getMessage() for r in caplog.records]
    for start, step in (("reading the inputs ...", "load"), ("registering the PET to the MRI ...", "register"),
                        ("fusing ...", "fuse"), ("writing the outputs ...", "save")):
        assert start in lines and any(m.startswith(f"{step}: ") and m.endswith(" s") for m in lines), lines
    assert lines.index("fusing ...") < lines.index("writing the outputs ...")
    b = fuse_pair(mri, pet, tmp_path / "b.nii.gz", Settings.from_flat(method="laplacian", seed=1))
    np.testing.assert_array_equal(nib.load(a.output).get_fdata(), nib.load(b.output).get_fdata())


def test_mri_scale_maps_back_to_mri_intensities(pair, tmp_path):
    mri, pet = pair
    settings = Settings.from_flat(method="mean", registration="none", min_overlap=0.0)
    out = fuse_pair(mri, pet, tmp_path / "f.nii.gz", settings)
    fused = nib.load(out.output).get_fdata()
    ref = nib.load(mri).get_fdata()
    assert fused.max() > 0.3 * ref.max()
    record = json.loads(out.outputs["record"].read_text())  # the settings, recorded whole
    # within the MRI's range, but where the PET is above its window (shown above the MRI's, at most one window more)
    assert fused.max() <= 2.0 * ref.max()
    assert 0 < np.count_nonzero(fused > ref.max() * 1.001) <= record["fusion"]["pet_above_window"]["voxels"]
    assert record["settings"] == settings.as_dict() and Settings.from_dict(record["settings"]) == settings


def test_pet_smoothing_changes_the_fused_image_but_not_the_registered_pet(pair, tmp_path):
    """``pet_smooth_mm`` smooths the registered PET before normalisation (every method): the mean of the two images
    changes, the registered PET written stays as registered, the record says the width, 0 adds no step."""
    from asfe3d.pipeline import preprocessing_steps

    mri, pet = pair
    base = dict(method="mean", registration="none", min_overlap=0.0, save_registered_pet=True, output_scale="unit")
    plain = fuse_pair(mri, pet, tmp_path / "a.nii.gz", Settings.from_flat(**base))
    smooth = fuse_pair(mri, pet, tmp_path / "b.nii.gz", Settings.from_flat(**base, pet_smooth_mm=8.0))
    a, b = (nib.load(r.output).get_fdata() for r in (plain, smooth))
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-3
    reg_a, reg_b = (nib.load(r.outputs["registered_pet"]).get_fdata() for r in (plain, smooth))
    np.testing.assert_array_equal(reg_a, reg_b)
    assert json.loads(smooth.outputs["record"].read_text())["settings"]["fusion"]["pet_smooth_mm"] == 8.0
    names = [type(t).__name__ for _, ts in preprocessing_steps(Settings.from_flat(pet_smooth_mm=4)) for t in ts]
    assert "SmoothMmd" in names
    assert "SmoothMmd" not in [type(t).__name__ for _, ts in preprocessing_steps(Settings()) for t in ts]
    with pytest.raises(Asfe3dInputError, match=r"pet_smooth_mm: must be a width in \[0, 20\] mm .*got 30"):
        Settings.from_flat(pet_smooth_mm=30)


def test_failure_while_saving_leaves_no_output(pair, tmp_path, monkeypatch):
    mri, pet = pair
    import asfe3d.io as reg

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(reg, "write_transform", boom)
    out = tmp_path / "out" / "fused.nii.gz"
    with pytest.raises(OSError, match="disk full"):
        fuse_pair(mri, pet, out, Settings.from_flat(method="mean", save_registered_pet=True, save_transform=True))
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_existing_output_is_refused_before_any_work(pair, tmp_path):
    mri, pet = pair
    out = tmp_path / "exists.nii.gz"
    out.write_bytes(b"keep me")
    with pytest.raises(Asfe3dInputError, match="exists.nii.gz"):
        fuse_pair(mri, pet, out, Settings.from_flat(method="mean"))
    assert out.read_bytes() == b"keep me"
    with pytest.raises(Asfe3dInputError, match="sub01_pet.nii.gz"):
        fuse_pair(mri, pet, pet, Settings.from_flat(method="mean", overwrite=True))


def test_bad_settings():
    with pytest.raises(ValueError, match="'percent'"):
        fuse_pair("a", "b", None, Settings.from_flat(output_scale="percent"))


def test_auto_slice_axis_finds_the_axial_axis():
    assert auto_slice_axis(np.diag([1.0, 1.0, 1.0, 1.0])) == 2
    # voxel axis 1 runs inferior-superior (e.g. a coronal acquisition stored y<->z)
    aff = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, -1.2, 0, 0], [0, 0, 0, 1]])
    assert auto_slice_axis(aff) == 1


def test_tilde_paths_are_expanded_and_a_users_json_is_kept(pair, tmp_path, monkeypatch):
    """``~`` in an output: the files went to the home folder but the record's checks looked under ``./~/``, so
    ``overwrite=True`` replaced a JSON of the user's own at ``~/<stem>.json`` (and the result named ``./~/f.json``);
    ``~`` in an input was "does not exist" (nibabel expands it)."""
    mri, pet = pair
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    own = home / "f.json"
    own.write_text('{"mine": true}')
    settings = Settings.from_flat(method="mean", registration="none", min_overlap=0.0, overwrite=True)
    with pytest.raises(Asfe3dInputError, match="not an asfe3d completion record"):
        fuse_pair(mri, pet, "~/f.nii.gz", settings)
    assert own.read_text() == '{"mine": true}'
    (home / "sub01_mri.nii.gz").write_bytes(mri.read_bytes())
    result = fuse_pair("~/sub01_mri.nii.gz", pet, "~/g.nii.gz", Settings.from_flat(
        method="mean", registration="none", min_overlap=0.0, preview="~/g.png"))
    assert result.outputs["record"] == home / "g.json" and result.outputs["preview"] == home / "g.png"
    assert all(p.is_file() and p.parent == home for p in result.outputs.values())
    assert not (tmp_path / "~").exists()


def _top_of_the_head(tmp_path, cut: float):
    """A 3 mm demo pair (no motion) and ``top.nii.gz``: its PET from the slice at ``cut`` of its height up, in place
    (``(pair, PET image, PET array, first slice kept, the cut PET's affine)``)."""
    from asfe3d.data import make_demo_pair

    p = make_demo_pair(tmp_path / "pair", resolution=3, mri_spacing=(3, 3, 3), pet_spacing=4, max_deg=0, max_mm=0)
    img = nib.load(str(p.pet_path))
    arr = np.asarray(img.dataobj)
    k = int(arr.shape[2] * cut)
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ [0, 0, k] + img.affine[:3, 3]
    nib.save(nib.Nifti1Image(arr[:, :, k:], affine), str(tmp_path / "top.nii.gz"))
    return p, img, arr, k, affine


def test_a_pet_of_the_top_of_the_head_is_fused_with_a_field_of_view_warning(tmp_path):
    """A PET whose field of view holds the top 38 % of the head, registered right: the QC warns (pet_fov) and the
    chain fuses it (the overlap floor, 30 % of the whole head, refused it even under --qc warn)."""
    p, img, arr, k, _ = _top_of_the_head(tmp_path, 0.62)
    result = fuse_pair(p.mri_path, tmp_path / "top.nii.gz", tmp_path / "f.nii.gz",
                       Settings.from_flat(method="mean", registration="rigid"))
    qc = result.registration["qc"]
    assert qc["verdict"] == "warn" and qc["flags"] == ["pet_fov"], qc
    assert result.overlap < 0.3 and (tmp_path / "f.nii.gz").is_file()
    # beyond the PET's field of view there is no PET: the fused image is blank there (the window's low end, as the
    # air around the head), not the MRI fused with nothing (probe 21 #2: it read as anatomy without uptake)
    import SimpleITK as sitk

    from asfe3d.registration.fov import field_of_view

    inside = field_of_view(sitk.ReadImage(str(p.mri_path)), sitk.ReadImage(str(tmp_path / "top.nii.gz")),
                           result.transform)
    fused = np.asarray(nib.load(str(tmp_path / "f.nii.gz")).dataobj)
    assert np.unique(fused[~inside]).size == 1 and fused[~inside][0] == fused.min()
    assert np.unique(fused[inside]).size > 100
    outside = result.fusion["outside_pet_fov"]
    assert outside["voxels"] == int((~inside).sum()) and outside["value"] == float(fused[~inside][0])
    assert abs(outside["head_fraction"] - (1 - qc["numbers"]["head_in_pet_fov"])) < 0.1, (outside, qc["numbers"])
    assert qc["reasons"][0].endswith("outside it there is no PET to fuse")
    # the same PET written as SPM reslices it: its grid whole, NaN where it measured nothing; with --allow-nonfinite
    # the NaN are 0, and outside the field of view too (they were fused as "no uptake")
    nan = arr.astype(np.float32).copy()
    nan[:, :, :k] = np.nan
    nib.save(nib.Nifti1Image(nan, img.affine), str(tmp_path / "nan.nii.gz"))
    result = fuse_pair(p.mri_path, tmp_path / "nan.nii.gz", tmp_path / "g.nii.gz",
                       Settings.from_flat(method="mean", registration="rigid", allow_nonfinite=True))
    pet_read = sitk.ReadImage(str(tmp_path / "nan.nii.gz"))  # its grid (ITK's NIfTI reader turns NaN into 0)
    measured = sitk.GetImageFromArray(np.isfinite(nan).astype(np.float32).transpose(2, 1, 0))
    measured.CopyInformation(pet_read)
    # the voxels whose registered PET (linear interpolation) mixes in no NaN-turned-0
    taken = sitk.GetArrayFromImage(sitk.Resample(measured, sitk.ReadImage(str(p.mri_path)), result.transform,
                                                 sitk.sitkLinear, 0.0, sitk.sitkFloat32)).transpose(2, 1, 0) >= 1 - 1e-6
    fused = np.asarray(nib.load(str(tmp_path / "g.nii.gz")).dataobj)
    assert np.unique(fused[~taken]).size == 1 and fused[~taken][0] == fused.min()
    assert result.fusion["outside_pet_fov"]["voxels"] == int((~taken).sum())
    assert np.unique(fused[taken]).size > 100


@pytest.mark.parametrize("method", ["asfe", "mean"])
def test_a_pet_focus_hotter_than_normal_uptake_stays_the_brightest_in_the_fused_image(pair, tmp_path, method):
    """The PET was clipped at its window's top (99.5th percentile in the head) and the fused image at the MRI's:
    a focus at twice the hottest normal uptake came out as a flat plateau like normal cortex (+10 % where the PET
    had +106 %, probe 21 #1). The part above the window is now shown above the MRI's window, and the record says
    how much there was."""
    mri, pet = pair
    img = nib.load(pet)
    values = np.asarray(img.dataobj, np.float32)
    focus = np.unravel_index(np.argmax(values), values.shape)
    hot = values.copy()
    hot[tuple(slice(max(i - 1, 0), i + 2) for i in focus)] *= 2.5  # 27 voxels, far above the window's top
    hot_path = tmp_path / "hot_pet.nii.gz"
    nib.save(nib.Nifti1Image(hot, img.affine, img.header), str(hot_path))
    settings = Settings.from_flat(method=method, registration="none", min_overlap=0.0)
    plain = fuse_pair(mri, pet, tmp_path / "plain.nii.gz", settings)
    raised = fuse_pair(mri, hot_path, tmp_path / "hot.nii.gz", settings)
    a, b = np.asarray(nib.load(plain.output).dataobj), np.asarray(nib.load(raised.output).dataobj)
    mri_world = np.linalg.inv(nib.load(mri).affine) @ img.affine @ np.array([*focus, 1.0])
    at = tuple(int(round(v)) for v in mri_world[:3])
    assert b[at] > a.max() + 0.3 * (a.max() - a.min())  # the focus: above anything of the plain run
    record = json.loads(raised.outputs["record"].read_text())["fusion"]["pet_above_window"]
    assert record["voxels"] > 0 and record["max_above"] > 1.0 and 0.7 < record["max_shown"] < 1.0, record
    quiet = json.loads(plain.outputs["record"].read_text())["fusion"]["pet_above_window"]
    assert quiet["max_above"] < 0.5 and quiet["head_fraction"] <= 0.006, quiet


def test_the_record_says_what_the_fused_image_holds_beyond_the_field_of_view(tmp_path):
    """An MRI whose values sit far from 0 (probe 22's offset T1): the blank beyond the PET's field of view is its
    window's low end, not 0; the record's ``fusion.outside_pet_fov.value`` is the value written there, and the
    summary line says it (it said "blank (0)")."""
    from asfe3d.cohort import blank_note

    p, _, _, k, _ = _top_of_the_head(tmp_path, 0.5)
    mri = nib.load(str(p.mri_path))
    nib.save(nib.Nifti1Image(np.asarray(mri.dataobj, np.float32) + 300.0, mri.affine, mri.header),
             str(tmp_path / "offset.nii.gz"))
    result = fuse_pair(tmp_path / "offset.nii.gz", tmp_path / "top.nii.gz", tmp_path / "f.nii.gz",
                       Settings.from_flat(method="mean", registration="none"))
    fused = np.asarray(nib.load(str(tmp_path / "f.nii.gz")).dataobj)
    outside = result.fusion["outside_pet_fov"]
    assert outside["value"] > 250 and np.all(fused[:, :, :k - 1] == np.float32(outside["value"])), outside
    assert f"blank ({outside['value']:.6g}, the MRI window's low end)" in blank_note(result.fusion)
    unit = fuse_pair(tmp_path / "offset.nii.gz", tmp_path / "top.nii.gz", tmp_path / "u.nii.gz",
                     Settings.from_flat(method="mean", registration="none", output_scale="unit"))
    assert unit.fusion["outside_pet_fov"]["value"] == 0.0 and blank_note(unit.fusion).startswith("fused image: blank (0)")


@pytest.mark.parametrize("mode", ["volume", "slice"])
def test_inside_a_short_field_of_view_the_fused_image_is_as_with_a_whole_pet(tmp_path, mode):
    """Probe 22: the fusion saw the padding beyond the PET's field of view (its edge darkened the fused image's
    first voxels inside: 0.92 of the whole-PET run on a 0.88 mm grid, slice mode 0.88), the PET's window took the
    padding for part of the head (the PET inside 3-5 % brighter) and --pet-smooth-mm blurred the padding in (0.72).
    Now the PET is windowed and smoothed within its field of view and extended beyond it for the fusion: inside, the
    fused image is the whole-PET run's, at the edge as deep inside."""
    p, _, _, _, affine = _top_of_the_head(tmp_path, 0.45)
    runs = {}
    for name, pet in (("whole", p.pet_path), ("top", tmp_path / "top.nii.gz")):
        fuse_pair(p.mri_path, pet, tmp_path / f"fused_{name}.nii.gz",
                  Settings.from_flat(registration="none", mode=mode, pet_smooth_mm=6.0))
        runs[name] = np.asarray(nib.load(str(tmp_path / f"fused_{name}.nii.gz")).dataobj)
    mri = nib.load(str(p.mri_path))
    head = np.asarray(mri.dataobj) > 0.2 * np.percentile(np.asarray(mri.dataobj), 99)
    z_edge = (np.linalg.inv(mri.affine) @ affine @ [0, 0, -0.5, 1])[2]  # the PET's first slice's lower face
    first = int(np.ceil(z_edge))
    ratio = {depth: runs["top"][:, :, first + depth][head[:, :, first + depth]].mean()
             / runs["whole"][:, :, first + depth][head[:, :, first + depth]].mean() for depth in (0, 1, 6, 10)}
    # the PET's window comes from the head inside its field of view (another share of its tissues than the whole
    # head's: a level shift), and at the edge the fused image is what it is deeper inside
    assert all(abs(ratio[d] / ratio[10] - 1.0) < 0.025 for d in (0, 1, 6)), ratio  # before: 0.71 (0.76 slice)


def test_every_input_format_has_its_sidecar_protected(tmp_path):
    """Review 32 #13: the list of inputs' own JSON sidecars (no completion record may land on one) kept its own five
    suffixes; it now takes every suffix the readers take (.mgh, .mhd, .hdr/.img...) from ``asfe3d.io.suffixes``."""
    from asfe3d.pipeline import _protected_inputs

    names = {"a.mgh": "a.json", "b.MHD": "b.json", "c.hdr.gz": "c.json", "d.nii.gz": "d.json", "e.img": "e.json"}
    for name, sidecar in names.items():
        protected = _protected_inputs(tmp_path / name, tmp_path / "dicom_folder", None)
        assert protected == [tmp_path / name, tmp_path / "dicom_folder", tmp_path / sidecar], name
    assert str(_protected_inputs(tmp_path / "m.nii", tmp_path / "p.nii", "side.json")[-1]) == "side.json"


def test_preprocessing_refuses_what_is_not_settings() -> None:
    """A dict or a string of settings ended in an AttributeError ('str' object has no attribute 'inputs')."""
    from asfe3d.pipeline import build_preprocessing, preprocessing_steps

    for bad in ("rigid", {"registration": "rigid"}):
        with pytest.raises(TypeError, match=rf"settings must be an asfe3d\.settings\.Settings, got {type(bad).__name__}"):
            preprocessing_steps(bad)
        with pytest.raises(TypeError, match="settings must be an asfe3d.settings.Settings"):
            build_preprocessing(bad)


def test_a_bids_sidecars_registration_method_is_the_one_used(tmp_path):
    """Probe 41 #9: the BIDS fused sidecar said ``RegistrationMethod: auto`` (the setting), not the method used."""
    import torch
    from monai.data import MetaTensor

    from asfe3d.pipeline import _record_content

    for name in ("m.nii.gz", "p.nii.gz"):
        (tmp_path / name).write_bytes(b"x")
    data = {"mri_path": tmp_path / "m.nii.gz", "pet_path": tmp_path / "p.nii.gz", "mri": MetaTensor(torch.zeros(1)),
            "pet": MetaTensor(torch.zeros(1)), "pet_registration": {"method": "rigid", "requested": "auto"}}
    assert _record_content(data, {}, {}, {"RegistrationMethod": "auto"})["RegistrationMethod"] == "rigid"
    assert _record_content(data, {}, {}, {"RegistrationMethod": "none"})["RegistrationMethod"] == "none"
    assert "RegistrationMethod" not in _record_content(data, {}, {}, {})


def test_the_blank_value_outside_the_view_is_never_minus_zero():
    """Probe 41 #18: a window starting at -0.0 was recorded (and shown) as ``-0.0``."""
    from asfe3d.pipeline import outside_fov_summary

    inside = np.ones((4, 4, 4), bool)
    inside[0] = False
    summary = outside_fov_summary(inside, np.ones((4, 4, 4), bool), -0.0)
    assert summary["value"] == 0.0 and str(summary["value"]) == "0.0" and summary["voxels"] == 16


def test_the_shipped_weights_are_an_input_known_by_content(tmp_path, monkeypatch):
    """A run with the package's own weights recorded nothing of them: after an upgrade that changed them, a cohort
    rerun skipped the subjects fused with the old ones as complete."""
    import shutil

    import torch
    from monai.data import MetaTensor

    from asfe3d.fusion import weights as weights_module
    from asfe3d.io.record import check_record, write_record
    from asfe3d.pipeline import _record_content

    copy = tmp_path / "asfe3d_mri_pet.pt"
    shutil.copyfile(weights_module.shipped_weights("volume"), copy)
    monkeypatch.setattr(weights_module, "shipped_weights", lambda mode: copy)
    for name in ("m.nii.gz", "p.nii.gz", "f.nii.gz"):
        (tmp_path / name).write_bytes(name.encode())
    inputs = {"mri": tmp_path / "m.nii.gz", "pet": tmp_path / "p.nii.gz"}
    data = {"mri_path": inputs["mri"], "pet_path": inputs["pet"], "mri": MetaTensor(torch.zeros(1)),
            "pet": MetaTensor(torch.zeros(1)), "pet_registration": None}
    settings = Settings().as_dict()
    content = _record_content(data, {}, {}, {"settings": settings})
    assert content["inputs"]["weights"]["path"] == str(copy.resolve())
    assert "weights" not in _record_content(data, {}, {}, {"settings": Settings.from_flat(method="mean").as_dict()})[
        "inputs"]
    record = tmp_path / "f.json"
    outputs = {"fused": tmp_path / "f.nii.gz"}
    write_record(record, content, status="complete", outputs=outputs)
    assert check_record(record, outputs, inputs, settings) is None
    copy.write_bytes(copy.read_bytes() + b"upgraded")  # the package's weights changed under the record
    assert "weights input" in check_record(record, outputs, inputs, settings)
