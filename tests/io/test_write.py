"""write_like / write_image_like / atomic_output / check_output_path."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.errors import Asfe3dInputError, OutputExists
from asfe3d.io import atomic_output, check_output_path, read_volume, write_image_like, write_like
from asfe3d.io.convert import numpy_xyz_to_sitk
from tests.io.helpers import AFFINES, SHAPE, make_affine, random_volume, save_nifti


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("name", sorted(AFFINES))
@pytest.mark.parametrize("qcode,scode", [(1, 1), (1, 2), (2, 4), (0, 2), (4, 0)])
def test_round_trip_geometry_and_codes(tmp_path, name, qcode, scode):
    affine = AFFINES[name]
    p = save_nifti(tmp_path / "mri.nii.gz", random_volume(), affine, qcode, affine, scode)
    vol = read_volume(p, role="MRI")
    data = np.linspace(0.0, 1.0, int(np.prod(SHAPE)), dtype=np.float32).reshape(SHAPE)
    out = write_like(data, vol, tmp_path / "sub" / "fused.nii.gz", inputs=[p])
    assert out == (tmp_path / "sub" / "fused.nii.gz").resolve()
    src, res = nib.load(p), nib.load(out)
    assert res.shape == SHAPE and res.get_data_dtype() == np.float32
    np.testing.assert_allclose(res.affine, src.affine, atol=1e-5)
    assert int(res.header["qform_code"]) == qcode and int(res.header["sform_code"]) == scode
    np.testing.assert_allclose(res.header.get_qform(), src.header.get_qform(), atol=1e-6)
    np.testing.assert_allclose(res.header.get_sform(), src.header.get_sform(), atol=1e-6)
    np.testing.assert_array_equal(np.asanyarray(res.dataobj), data)
    assert _leftovers(out.parent) == []


def test_codes_zero_refused_before_writing(tmp_path):
    """A header without geometry codes is refused on reading (see test_headers.py), so never written on."""
    p = save_nifti(tmp_path / "nocodes.nii", random_volume(), None, 0, None, 0)
    with pytest.raises(Asfe3dInputError, match="sform_code and qform_code both 0"):
        read_volume(p)


def test_differing_qform_sform_both_preserved(tmp_path):
    qform = make_affine(np.eye(3), (1.0, 1.0, 1.0), (5.0, 5.0, 5.0))
    sform = AFFINES["oblique"]
    p = save_nifti(tmp_path / "mri.nii.gz", random_volume(), qform, 1, sform, 2)
    vol = read_volume(p)
    res = nib.load(write_like(vol.array_xyz(), vol, tmp_path / "o.nii.gz"))
    np.testing.assert_allclose(res.header.get_qform(), qform, atol=1e-6)
    np.testing.assert_allclose(res.header.get_sform(), sform, atol=1e-6)
    np.testing.assert_allclose(res.affine, sform, atol=1e-5)


def test_header_scaling_reset(tmp_path):
    data = (random_volume() * 10).astype(np.int16)
    img = nib.Nifti1Image(data, AFFINES["ras"])
    img.header.set_slope_inter(2.0, -5.0)
    img.header["cal_min"], img.header["cal_max"] = -100.0, 100.0
    p = tmp_path / "scaled.nii.gz"
    nib.save(img, str(p))
    vol = read_volume(p)
    np.testing.assert_allclose(vol.array_xyz(), data * 2.0 - 5.0)
    out = nib.load(write_like(vol.array_xyz(), vol, tmp_path / "o.nii.gz"))
    assert out.get_data_dtype() == np.float32
    assert out.header["cal_min"] == 0 and out.header["cal_max"] == 0
    np.testing.assert_allclose(out.get_fdata(), data * 2.0 - 5.0)


def test_4d_reference_gives_3d_output(tmp_path):
    frames = np.stack([random_volume(seed=s) for s in range(2)], axis=-1)
    p = save_nifti(tmp_path / "pet.nii.gz", frames, AFFINES["oblique"], 1, AFFINES["oblique"], 1)
    vol = read_volume(p)
    res = nib.load(write_like(vol.array_xyz(), vol, tmp_path / "o.nii"))
    assert res.shape == SHAPE and res.header["dim"][0] == 3
    np.testing.assert_allclose(res.affine, AFFINES["oblique"], atol=1e-5)


def test_non_nifti_reference_uses_scanner_codes(tmp_path):
    img = sitk.GetImageFromArray(random_volume().transpose(2, 1, 0))
    img.SetOrigin((10.0, 20.0, -30.0))
    img.SetSpacing((0.7, 1.4, 2.1))
    img.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    p = tmp_path / "mri.nrrd"
    sitk.WriteImage(img, str(p))
    vol = read_volume(p)
    res = nib.load(write_like(vol.array_xyz(), vol, tmp_path / "o.nii.gz"))
    assert int(res.header["qform_code"]) == 1 and int(res.header["sform_code"]) == 1
    np.testing.assert_allclose(res.affine, vol.affine_ras, atol=1e-5)
    # the written file puts voxel (1, 2, 3) where SimpleITK puts it
    lps = img.TransformIndexToPhysicalPoint((1, 2, 3))
    ras = res.affine @ np.array([1, 2, 3, 1.0])
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-4)


def test_rgb_written_as_rgb24(nifti_factory, tmp_path):
    vol = read_volume(nifti_factory())
    rgb = np.random.default_rng(1).integers(0, 256, size=(*SHAPE, 3), dtype=np.uint8)
    out = write_like(rgb, vol, tmp_path / "colour.nii.gz")
    res = nib.load(out)
    assert res.header["datatype"] == 128 and res.shape == SHAPE
    got = np.asanyarray(res.dataobj)
    np.testing.assert_array_equal(np.stack([got["R"], got["G"], got["B"]], axis=-1), rgb)
    np.testing.assert_allclose(res.affine, vol.affine_ras, atol=1e-5)
    back = sitk.ReadImage(str(out))
    assert back.GetNumberOfComponentsPerPixel() == 3
    with pytest.raises(ValueError, match="uint8"):
        write_like(rgb.astype(np.float32), vol, tmp_path / "bad.nii.gz")


def test_write_image_like(nifti_factory, tmp_path):
    vol = read_volume(nifti_factory())
    arr = random_volume(seed=3)
    img = numpy_xyz_to_sitk(arr, vol.image)
    res = nib.load(write_image_like(img, vol, tmp_path / "pet_on_mri.nii.gz"))
    np.testing.assert_array_equal(np.asanyarray(res.dataobj), arr)
    np.testing.assert_allclose(res.affine, vol.affine_ras, atol=1e-5)
    moved = sitk.Image(img)
    moved.SetOrigin(tuple(np.asarray(img.GetOrigin()) + 1.0))
    with pytest.raises(ValueError, match="not on the reference grid"):
        write_image_like(moved, vol, tmp_path / "x.nii.gz")


def test_shape_mismatch_and_bad_suffix(nifti_factory, tmp_path):
    vol = read_volume(nifti_factory())
    with pytest.raises(ValueError, match=r"\(12, 10, 7\).*\(12, 10, 8\)"):
        write_like(np.zeros((12, 10, 7), np.float32), vol, tmp_path / "o.nii.gz")
    with pytest.raises(ValueError, match="o.mha"):
        write_like(np.zeros(SHAPE, np.float32), vol, tmp_path / "o.mha")
    nan = np.zeros(SHAPE, np.float32)
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        write_like(nan, vol, tmp_path / "o.nii.gz")
    assert not (tmp_path / "o.nii.gz").exists()


def test_output_equal_to_input_refused(nifti_factory, tmp_path):
    p = nifti_factory(name="mri.nii.gz")
    vol = read_volume(p)
    before = p.read_bytes()
    same_via_dots = tmp_path / "sub" / ".." / "mri.nii.gz"
    with pytest.raises(Asfe3dInputError, match="same as input") as exc:
        write_like(vol.array_xyz(), vol, same_via_dots, overwrite=True, inputs=[p])
    assert exc.value.path == str(same_via_dots)
    link = tmp_path / "link.nii.gz"
    os.symlink(p, link)
    with pytest.raises(Asfe3dInputError, match="same as input"):
        check_output_path(link, overwrite=True, inputs=[str(p)])
    assert p.read_bytes() == before


def test_existing_output_refused_then_replaced(nifti_factory, tmp_path):
    vol = read_volume(nifti_factory())
    out = tmp_path / "o.nii.gz"
    write_like(np.ones(SHAPE, np.float32), vol, out)
    with pytest.raises(Asfe3dInputError, match="already exists") as exc:
        write_like(np.zeros(SHAPE, np.float32), vol, out)
    assert exc.value.path == str(out) and isinstance(exc.value, OutputExists)  # typed: whose file it is can be said
    assert np.all(nib.load(out).get_fdata() == 1)
    write_like(np.full(SHAPE, 2.0, np.float32), vol, out, overwrite=True)
    assert np.all(nib.load(out).get_fdata() == 2)
    assert _leftovers(tmp_path) == []
    with pytest.raises(Asfe3dInputError, match="existing folder"):
        check_output_path(tmp_path, overwrite=True)


def test_writer_failure_leaves_no_file(nifti_factory, tmp_path, monkeypatch):
    vol = read_volume(nifti_factory())
    seen = []

    def failing_save(img, filename):
        seen.append(Path(filename))
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    import asfe3d.io.writer as writer

    monkeypatch.setattr(writer, "save_nifti", failing_save)
    out = tmp_path / "out" / "o.nii.gz"
    with pytest.raises(OSError, match="disk full"):
        write_like(np.ones(SHAPE, np.float32), vol, out)
    assert len(seen) == 1
    tmp = seen[0]
    assert tmp.parent == out.parent and tmp.name.startswith(".") and "tmp" in tmp.name
    assert tmp.name.endswith(".nii.gz")
    assert not out.exists() and not tmp.exists() and list(out.parent.iterdir()) == []


def test_atomic_output_for_other_files(tmp_path):
    dest = tmp_path / "a" / "b" / "metrics.csv"
    with atomic_output(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.suffix == ".csv" and not dest.exists()
        tmp.write_text("x,y\n1,2\n")
    assert dest.read_text() == "x,y\n1,2\n"
    with pytest.raises(RuntimeError, match="nothing was written"):
        with atomic_output(tmp_path / "never.csv"):
            pass
    assert not (tmp_path / "never.csv").exists()
    with pytest.raises(ZeroDivisionError):
        with atomic_output(dest, overwrite=True) as tmp:
            tmp.write_text("partial")
            1 / 0  # noqa: B018
    assert dest.read_text() == "x,y\n1,2\n" and _leftovers(dest.parent) == []


def test_stale_temporaries_finds_only_this_outputs_leftovers(tmp_path):
    from asfe3d.io import stale_temporaries

    out = tmp_path / "sub01_fused.nii.gz"
    left = tmp_path / ".sub01_fused.tmp0123abcd.nii.gz"
    left.write_bytes(b"partial")
    (tmp_path / ".sub02_fused.tmp0123abcd.nii.gz").write_bytes(b"other subject")
    (tmp_path / ".sub01_fused.tmpXYZ.nii.gz").write_bytes(b"not ours")
    assert stale_temporaries(out) == [left]
    assert stale_temporaries(tmp_path / "missing_dir" / "x.nii.gz") == []


def test_output_lock_refuses_a_second_run_and_never_follows_a_symlink(tmp_path):
    import os

    import pytest

    from asfe3d.errors import Asfe3dInputError
    from asfe3d.io import output_lock

    out = tmp_path / "new" / "fused.nii.gz"
    with output_lock(out) as lock:
        assert lock.exists() and lock.parent == out.parent
        with pytest.raises(Asfe3dInputError, match="another asfe3d run is writing these outputs"):
            with output_lock(out):
                pass
    assert not lock.exists()  # removed when the run is done
    with output_lock(out):  # free again
        pass
    assert not out.parent.exists()  # the folder the lock made, left empty, is gone
    out.parent.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    os.symlink(victim, lock)
    with pytest.raises(Asfe3dInputError, match="symbolic link"):
        with output_lock(out):
            pass
    assert victim.read_text() == "keep"


def test_output_inside_an_input_folder_refused(tmp_path):
    """A DICOM input is a folder: nothing is written into it (a sibling folder with a similar name is fine)."""
    (tmp_path / "mr_dicom").mkdir()
    with pytest.raises(Asfe3dInputError, match="inside the input folder"):
        check_output_path(tmp_path / "mr_dicom" / "sub" / "fused.nii.gz", inputs=[tmp_path / "mr_dicom"])
    assert check_output_path(tmp_path / "mr_dicom_fused" / "f.nii.gz", inputs=[tmp_path / "mr_dicom"]).name == "f.nii.gz"


@pytest.mark.parametrize("kind", ["float", "rgb", "nifti2", "scaled", "extension"])
def test_nifti_bytes_equal_nibabel(tmp_path, kind):
    """The one-copy NIfTI bytes are nibabel's own bytes (header, padding, voxels), for every kind written."""
    from asfe3d.io.writer import _output_header, nifti_bytes

    p = save_nifti(tmp_path / "mri.nii.gz", random_volume(), AFFINES["oblique"], 1, AFFINES["oblique"], 2)
    vol = read_volume(p, role="MRI")
    rgb = kind == "rgb"
    klass, hdr = _output_header(vol, vol.shape_xyz, rgb)
    data = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    if rgb:
        rgb_dtype = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
        raw = (np.random.default_rng(1).random((*SHAPE, 3)) * 255).astype(np.uint8)
        data = np.ascontiguousarray(raw).view(rgb_dtype).reshape(SHAPE)
    if kind == "nifti2":
        klass, hdr = nib.Nifti2Image, nib.Nifti2Header.from_header(hdr)
    img = klass(data, None, header=hdr)
    if rgb:
        img.header.set_data_dtype("RGB")
    elif kind != "scaled":  # "scaled": slope/inter left to nibabel (goes through to_bytes)
        img.header.set_slope_inter(1.0, 0.0)
    if kind == "extension":
        img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"asfe3d test"))
    want = img.to_bytes()
    assert nifti_bytes(img) == want
    assert nifti_bytes(img) == img.to_bytes()  # and the image is left as it was


def test_nifti2_reference_is_written_as_nifti2(tmp_path):
    """A NIfTI-2 reference's header has no ``glmin`` / ``glmax``: every output on it failed with "no field of name
    glmin". Now written as NIfTI-2 with the reference's float64 sform and qform."""
    affine = np.array(AFFINES["oblique"], dtype=np.float64)
    affine[:3, 3] += [-1000.123456789, 500.987654321, 0.000012345]
    img = nib.Nifti2Image(random_volume(), affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=4)
    p = tmp_path / "mri.nii.gz"
    nib.save(img, str(p))
    vol = read_volume(p, role="MRI")
    out = write_like(np.ones(SHAPE, np.float32), vol, tmp_path / "fused.nii.gz", inputs=[p])
    res = nib.load(out)
    assert isinstance(res, nib.Nifti2Image)
    np.testing.assert_allclose(res.affine, nib.load(p).affine, rtol=0, atol=1e-9)
    assert (int(res.header["qform_code"]), int(res.header["sform_code"])) == (1, 4)
    np.testing.assert_array_equal(np.asanyarray(res.dataobj), np.ones(SHAPE, np.float32))


def test_output_header_does_not_describe_the_reference_data(tmp_path):
    """``descrip`` ("T1 MPRAGE") and ``aux_file`` (a display lookup table) describe the MRI's data; they were copied
    onto the fused, registered-PET and colour volumes."""
    img = nib.Nifti1Image(random_volume(), AFFINES["oblique"])
    img.header["descrip"] = b"T1 MPRAGE 1mm"
    img.header["aux_file"] = b"lut_t1"
    p = tmp_path / "mri.nii.gz"
    nib.save(img, str(p))
    vol = read_volume(p, role="MRI")
    for name, data in (("f.nii.gz", np.ones(SHAPE, np.float32)), ("c.nii.gz", np.zeros((*SHAPE, 3), np.uint8))):
        hdr = nib.load(write_like(data, vol, tmp_path / name)).header
        assert hdr["descrip"].item().startswith(b"asfe3d") and hdr["aux_file"].item() == b""


def test_output_lock_removes_the_folders_it_made_when_the_run_left_them_empty(tmp_path):
    """A refused run (--qc strict) left its new, empty output folder behind; a folder that existed, or that the
    run wrote into, stays."""
    from asfe3d.io.writer import output_lock

    with output_lock(tmp_path / "new" / "deeper" / "f.nii.gz"):
        assert (tmp_path / "new" / "deeper").is_dir()
    assert not (tmp_path / "new").exists()
    with output_lock(tmp_path / "kept" / "f.nii.gz"):
        (tmp_path / "kept" / "f.nii.gz").write_bytes(b"written")
    assert (tmp_path / "kept" / "f.nii.gz").is_file()
    with output_lock(tmp_path / "f.nii.gz"):
        pass
    assert tmp_path.is_dir()
