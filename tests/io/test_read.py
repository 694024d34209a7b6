"""read_volume: NIfTI geometry (nibabel's choice of sform / qform), 4D frames, MHA / NRRD, bad inputs."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.errors import Asfe3dInputError
from asfe3d.io import Volume, ras_affine_from_sitk, read_volume
from tests.io.helpers import AFFINES, SHAPE, make_affine, random_volume, rotation, save_nifti


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_read_nifti_geometry_and_data(nifti_factory, name):
    data = random_volume()
    p = nifti_factory(data=data, affine=AFFINES[name])
    vol = read_volume(p, role="MRI")
    assert isinstance(vol, Volume)
    assert vol.format == "nifti" and vol.path == p
    assert vol.image.GetPixelID() == sitk.sitkFloat32 and vol.image.GetDimension() == 3
    assert vol.shape_xyz == SHAPE
    ref = nib.load(p)
    np.testing.assert_allclose(vol.affine_ras, ref.affine, atol=1e-6)
    np.testing.assert_allclose(ras_affine_from_sitk(vol.image), ref.affine, atol=1e-5)
    np.testing.assert_array_equal(vol.array_xyz(), ref.get_fdata(dtype=np.float32))
    # the voxel (i, j, k) sits at the same physical point in both worlds
    ijk = (3, 7, 5)
    ras = ref.affine @ np.array([*ijk, 1.0])
    lps = vol.image.TransformIndexToPhysicalPoint(ijk)
    np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-4)
    assert vol.nifti_header is not None and int(vol.nifti_header["sform_code"]) == 1


def test_sform_differing_from_qform_follows_nibabel(tmp_path):
    qform = make_affine(np.eye(3), (1.0, 1.0, 1.0), (5.0, 5.0, 5.0))
    sform = make_affine(rotation(20.0, 10.0, -35.0), (1.2, 0.9, 2.5), (-30.0, 40.5, 12.0))
    p = save_nifti(tmp_path / "oblique_sform.nii.gz", random_volume(), qform, 1, sform, 2)
    vol = read_volume(p)
    np.testing.assert_allclose(nib.load(p).affine, sform, atol=1e-5)
    np.testing.assert_allclose(vol.affine_ras, sform, atol=1e-5)
    np.testing.assert_allclose(ras_affine_from_sitk(vol.image), sform, atol=1e-5)
    assert vol.info["geometry_source"] == "sform"
    # SimpleITK's own reader is consulted; whatever it would pick is recorded, never used
    plain = sitk.ReadImage(str(p))
    agrees = np.allclose(ras_affine_from_sitk(plain), sform, atol=1e-4)
    assert vol.info["sitk_header_geometry_agrees"] is agrees


def test_qform_used_when_sform_code_zero(tmp_path):
    qform = make_affine(rotation(0.0, 15.0, 0.0), (1.0, 1.0, 2.0), (1.0, 2.0, 3.0))
    sform = make_affine(np.eye(3), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0))
    p = save_nifti(tmp_path / "q.nii", random_volume(), qform, 1, sform, 0)
    vol = read_volume(p)
    assert vol.info["geometry_source"] == "qform"
    np.testing.assert_allclose(ras_affine_from_sitk(vol.image), qform, atol=1e-5)


def test_sheared_sform_refused(tmp_path):
    sheared = make_affine(np.eye(3), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    sheared[0, 1] = 0.3
    p = save_nifti(tmp_path / "shear.nii.gz", random_volume(), np.eye(4), 0, sheared, 2)
    with pytest.raises(Asfe3dInputError, match="shear") as exc:
        read_volume(p)
    assert exc.value.path == str(p)


def _rounded_cosines_affine() -> np.ndarray:
    """An oblique 2 mm affine as dcm2niix makes it from an ImageOrientationPatient written with 3 decimals: row and
    column rounded, the slice normal their cross product (columns about 2e-4 to 7e-4 from orthogonal)."""
    exact = rotation(21.5, 9.5, 0.0)
    row, col = np.round(exact[:, 0], 3), np.round(exact[:, 1], 3)
    return make_affine(np.stack([row, col, np.cross(row, col)], axis=1), (2.0, 2.0, 2.0), (88.0, -101.4, 7.4))


def test_rounded_cosines_sform_read_on_nearest_orthogonal_grid(tmp_path):
    """dcm2niix's NIfTI of an oblique series with 3-decimal cosines was refused for shear (its DICOM folder read)."""
    from asfe3d.io import write_like
    from asfe3d.io.convert import affine_shear

    sform = _rounded_cosines_affine()
    assert 1e-4 < affine_shear(sform) < 1e-3
    p = save_nifti(tmp_path / "obl.nii.gz", random_volume(), sform, 1, sform, 1)  # nibabel's qform drops the shear
    qform = nib.load(p).header.get_qform()
    vol = read_volume(p, role="MRI")
    assert affine_shear(vol.affine_ras) < 1e-6
    np.testing.assert_allclose(vol.affine_ras, qform, atol=1e-4)  # the qform: what ITK-based readers place it by
    np.testing.assert_allclose(ras_affine_from_sitk(vol.image), vol.affine_ras, atol=1e-5)
    moved = vol.info["sform_orthogonalised"]
    assert 0.005 < moved["shear_degrees"] < 0.06 and 0.0 < moved["max_shift_mm"] < 0.2
    assert vol.info["geometry_source"] == "sform" and vol.info["sitk_header_geometry_agrees"] is True
    # outputs keep the header as it was: they overlay the MRI voxel for voxel in every viewer
    out = write_like(random_volume(seed=1), vol, tmp_path / "fused.nii.gz")
    written, src = nib.load(out).header, nib.load(p).header
    for get in ("get_sform", "get_qform"):
        np.testing.assert_array_equal(getattr(written, get)(), getattr(src, get)())
    assert (int(written["sform_code"]), int(written["qform_code"])) == (1, 1)


def test_sform_sheared_beyond_rounding_names_the_qform(tmp_path):
    sheared = make_affine(np.eye(3), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    sheared[0, 1] = 0.05  # 2.9 degrees
    p = save_nifti(tmp_path / "shear.nii.gz", random_volume(), np.eye(4), 1, sheared, 1)
    with pytest.raises(Asfe3dInputError, match=r"sform is sheared .* its qform \(code 1\) is orthogonal: "
                                               r"--nifti-geometry qform"):
        read_volume(p)
    vol = read_volume(p, nifti_geometry="qform")
    np.testing.assert_allclose(vol.affine_ras, np.eye(4), atol=1e-6)


def test_4d_mean_and_frame(tmp_path, caplog):
    frames = np.stack([random_volume(seed=s) for s in range(3)], axis=-1)
    p = save_nifti(tmp_path / "pet4d.nii.gz", frames, AFFINES["anisotropic"], 1, AFFINES["anisotropic"], 1)
    with caplog.at_level(logging.INFO, logger="asfe3d"):
        vol = read_volume(p, role="PET")
    np.testing.assert_allclose(vol.array_xyz(), frames.mean(axis=-1), rtol=1e-5, atol=1e-4)
    assert vol.info["frames"] == 3 and vol.info["frames_averaged"] == 3 and "frame_taken" not in vol.info
    assert "averaged 3 frames without realignment" in caplog.text and "frames_realigned" not in vol.info
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="asfe3d"):
        one = read_volume(p, role="PET", frame=2)
    np.testing.assert_array_equal(one.array_xyz(), frames[..., 2])
    assert one.info["frame_taken"] == 2 and "frames_averaged" not in one.info
    assert "took frame 2 of 3" in caplog.text
    np.testing.assert_allclose(one.affine_ras, AFFINES["anisotropic"], atol=1e-5)
    with pytest.raises(Asfe3dInputError, match=r"frame=3 .*3 frame"):
        read_volume(p, role="PET", frame=3)
    with pytest.raises(Asfe3dInputError, match=r"frame=-1"):
        read_volume(p, role="PET", frame=-1)


@pytest.mark.parametrize("suffix,fmt", [(".mha", "mha"), (".nrrd", "nrrd")])
def test_read_mha_nrrd(tmp_path, suffix, fmt):
    arr = random_volume()
    img = sitk.GetImageFromArray(arr.transpose(2, 1, 0))
    img.SetOrigin((12.5, -3.0, 40.0))
    img.SetSpacing((0.9, 1.1, 2.2))
    img.SetDirection(tuple(rotation(-10.0, 5.0, 40.0).ravel()))
    p = tmp_path / f"vol{suffix}"
    sitk.WriteImage(img, str(p))
    vol = read_volume(p)
    assert vol.format == fmt and vol.nifti_header is None
    np.testing.assert_allclose(vol.affine_ras, ras_affine_from_sitk(img), atol=1e-5)
    np.testing.assert_array_equal(vol.array_xyz(), arr)


def test_read_4d_mha_frame(tmp_path):
    frames = np.stack([random_volume(seed=s) for s in range(2)], axis=-1)  # (X, Y, Z, T)
    img = sitk.GetImageFromArray(frames.transpose(3, 2, 1, 0), isVector=False)
    img.SetSpacing((1.0, 2.0, 3.0, 60.0))
    img.SetOrigin((1.0, 2.0, 3.0, 0.0))
    p = tmp_path / "pet4d.mha"
    sitk.WriteImage(img, str(p))
    mean = read_volume(p, role="PET")
    np.testing.assert_allclose(mean.array_xyz(), frames.mean(axis=-1), rtol=1e-5, atol=1e-4)
    assert mean.image.GetSpacing() == (1.0, 2.0, 3.0) and mean.info["frames_averaged"] == 2
    np.testing.assert_array_equal(read_volume(p, frame=1).array_xyz(), frames[..., 1])


# ------------------------------------------------------------------------------------------------ bad inputs


def test_missing_file(tmp_path):
    with pytest.raises(Asfe3dInputError, match="MRI input does not exist"):
        read_volume(tmp_path / "nope.nii.gz", role="MRI")


def test_text_file_named_nifti(tmp_path):
    p = tmp_path / "fake.nii.gz"
    p.write_text("this is not an image\n")
    with pytest.raises(Asfe3dInputError, match="not a readable NIfTI") as exc:
        read_volume(p)
    assert "\n" not in str(exc.value)
    q = tmp_path / "fake.mha"
    q.write_text("hello\n")
    with pytest.raises(Asfe3dInputError, match="not a readable image"):
        read_volume(q)


def test_truncated_nifti_gz(nifti_factory, tmp_path):
    p = nifti_factory(data=random_volume((40, 30, 20)))
    raw = gzip.decompress(p.read_bytes())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw[: len(raw) // 2]))  # header intact, half of the voxels missing
    with pytest.raises(Asfe3dInputError, match="cannot be read"):
        read_volume(cut)
    cut2 = tmp_path / "cut2.nii.gz"
    cut2.write_bytes(p.read_bytes()[: len(p.read_bytes()) * 2 // 3])  # truncated gzip stream
    with pytest.raises(Asfe3dInputError, match="cannot be read"):
        read_volume(cut2)


def test_2d_image_refused(tmp_path):
    p = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(12, 10).astype(np.float32), np.eye(4)), str(p))
    with pytest.raises(Asfe3dInputError, match=r"2D \(shape \(12, 10\)\)"):
        read_volume(p)
    q = tmp_path / "single.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(12, 10, 1).astype(np.float32), np.eye(4)), str(q))
    with pytest.raises(Asfe3dInputError, match="single slice"):
        read_volume(q)


def test_5d_vector_refused(tmp_path):
    p = tmp_path / "vec.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(12, 10, 8, 1, 3).astype(np.float32), np.eye(4)), str(p))
    with pytest.raises(Asfe3dInputError, match=r"5D \(shape \(12, 10, 8, 1, 3\)\)"):
        read_volume(p)
    q = tmp_path / "vec.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.rand(8, 10, 12, 3).astype(np.float32), isVector=True), str(q))
    with pytest.raises(Asfe3dInputError, match="3 components"):
        read_volume(q)


def test_constant_and_empty_volume_refused(nifti_factory, tmp_path):
    p = nifti_factory(data=np.full(SHAPE, 7.5, dtype=np.float32))
    with pytest.raises(Asfe3dInputError, match=r"constant \(all voxels = 7.5\)"):
        read_volume(p)
    q = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((12, 0, 8), np.float32), np.eye(4)), str(q))
    with pytest.raises(Asfe3dInputError, match="empty"):
        read_volume(q)


def test_nonfinite_refused_or_repaired(nifti_factory, caplog):
    data = random_volume()
    data[0, 0, 0] = np.nan
    data[1, 2, 3] = np.inf
    data[4, 4, 4] = -np.inf
    p = nifti_factory(data=data)
    with pytest.raises(Asfe3dInputError, match="3 non-finite"):
        read_volume(p, role="PET")
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        vol = read_volume(p, role="PET", allow_nonfinite=True)
    assert vol.info["nonfinite_repaired"] == 3
    assert any(r.levelno == logging.WARNING and "replaced 3 non-finite" in r.getMessage() for r in caplog.records)
    arr = vol.array_xyz()
    assert np.all(np.isfinite(arr)) and arr[0, 0, 0] == 0 and arr[1, 2, 3] == 0
    np.testing.assert_array_equal(arr[5:], data[5:])
    # where the file measured nothing is kept (for the PET's field of view), also in the MetaTensor's metadata
    np.testing.assert_array_equal(vol.unmeasured, ~np.isfinite(data))
    from asfe3d.io import volume_to_metatensor
    from asfe3d.io.volume import UNMEASURED_KEY

    np.testing.assert_array_equal(volume_to_metatensor(vol).meta[UNMEASURED_KEY]["mask"], ~np.isfinite(data))
    clean = read_volume(nifti_factory(data=random_volume()), role="PET", allow_nonfinite=True)
    assert clean.unmeasured is None and UNMEASURED_KEY not in volume_to_metatensor(clean).meta


def test_bad_arguments(nifti_factory):
    p = nifti_factory()
    with pytest.raises(ValueError, match="role"):
        read_volume(p, role="")
    with pytest.raises(ValueError, match="frame"):
        read_volume(p, frame=1.5)  # type: ignore[arg-type]
    with pytest.raises(Asfe3dInputError, match=r"frame=1 .*1 frame"):
        read_volume(p, frame=1)


def test_rgb_nifti_refused(tmp_path):
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    p = tmp_path / "rgb.nii.gz"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(p))
    with pytest.raises(Asfe3dInputError, match="not a scalar volume"):
        read_volume(Path(p))


def test_nifti_claiming_a_giant_frame_refused_before_loading(tmp_path):
    """A .nii.gz whose header claims 700^3 voxels, with enough compressed bytes to pass the deflate bound (the shape
    of a decompression bomb), is refused from its header in one line."""
    from asfe3d.io.checks import MAX_FRAME_VOXELS

    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.uint8)
    hdr.set_data_shape((700, 700, 700))
    hdr.set_qform(np.eye(4), code=1)
    hdr.set_sform(np.eye(4), code=1)
    assert 700**3 > MAX_FRAME_VOXELS
    path = tmp_path / "bomb.nii.gz"
    raw = hdr.binaryblock + b"\0" * 4 + np.random.default_rng(0).bytes(400_000)
    path.write_bytes(gzip.compress(raw, compresslevel=1))
    with pytest.raises(Asfe3dInputError, match=r"one 3D frame.*decompression bomb"):
        read_volume(path, role="MRI")


def test_nifti2_single_file_keeps_its_float64_geometry(tmp_path, capfd):
    """A single-file NIfTI-2 (a ``Nifti2Image``, which is not a ``Nifti2Pair``) was read into a NIfTI-1 header: its
    float64 sform cut to float32 (2.5e-5 mm off here), the output written as NIfTI-1 and nibabel's "sizeof_hdr
    should be 348" printed on stderr."""
    affine = np.diag([1.0000001234, 1.0000001234, 1.0000001234, 1.0])
    affine[:3, 3] = [-1234.567891234, 987.654321987, -555.123456789]
    img = nib.Nifti2Image(random_volume((12, 10, 8)), affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    p = tmp_path / "mri.nii.gz"
    nib.save(img, str(p))
    capfd.readouterr()
    vol = read_volume(p, role="MRI")
    assert isinstance(vol.nifti_header, nib.Nifti2Header)
    np.testing.assert_allclose(vol.affine_ras, nib.load(p).affine, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ras_affine_from_sitk(vol.image), nib.load(p).affine, rtol=0, atol=1e-6)
    assert capfd.readouterr().err == ""


def _mgz(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.MGHImage(data, affine), str(path))
    return path


def test_mgz_geometry_and_data_are_freesurfers(tmp_path):
    """FreeSurfer's MGH/MGZ (``orig.mgz``, ``norm.mgz``... of a FreeSurfer subject) is read with its vox2ras: the
    voxels where nibabel and FreeSurfer put them; it used to be refused ("convert it first")."""
    data = random_volume((12, 10, 8))
    affine = make_affine(rotation(0.1, -0.2, 0.3), (1.0, 1.2, 0.9), (-20.0, 15.0, 7.0))
    _mgz(tmp_path / "T1.mgz", data, affine)
    (tmp_path / "T1.mgh.gz").write_bytes((tmp_path / "T1.mgz").read_bytes())  # FreeSurfer's other name for it
    for name in ("T1.mgz", "T1.mgh", "T1.mgh.gz"):
        if not (tmp_path / name).exists():
            _mgz(tmp_path / name, data, affine)
        vol = read_volume(tmp_path / name, role="MRI")
        assert vol.format == "mgh" and vol.nifti_header is None and vol.shape_xyz == (12, 10, 8)
        ref = nib.load(tmp_path / name.replace(".mgh.gz", ".mgz"))
        np.testing.assert_allclose(vol.affine_ras, ref.affine, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(vol.array_xyz(), data)
    frames = np.stack([data, 3 * data], axis=-1)  # a dynamic PET as PETSurfer keeps it: frames on the 4th axis
    vol = read_volume(_mgz(tmp_path / "pet.mgz", frames, affine), role="PET")
    np.testing.assert_allclose(vol.array_xyz(), 2 * data, rtol=1e-6)
    assert vol.info["frames"] == 2


def test_mgz_without_its_orientation_or_damaged_is_refused(tmp_path):
    import gzip as gz

    p = _mgz(tmp_path / "T1.mgz", random_volume((12, 10, 8)), np.eye(4))
    raw = bytearray(gz.decompress(p.read_bytes()))
    raw[28:30] = (0).to_bytes(2, "big")  # goodRASFlag 0: FreeSurfer would assume a coronal default
    bad = tmp_path / "noras.mgz"
    bad.write_bytes(gz.compress(bytes(raw)))
    with pytest.raises(Asfe3dInputError, match=r"noras.mgz: MRI MGH header does not hold the image's orientation"):
        read_volume(bad, role="MRI")
    raw[28:30] = (1).to_bytes(2, "big")
    raw[30:34] = np.array([0.0], dtype=">f4").tobytes()  # a voxel size of 0
    bad.write_bytes(gz.compress(bytes(raw)))
    with pytest.raises(Asfe3dInputError, match="MGH voxel sizes"):
        read_volume(bad, role="MRI")
    raw[30:34] = np.array([1.0], dtype=">f4").tobytes()

    def refused(edit, match, name="odd.mgz"):
        bad = bytearray(raw)
        edit(bad)
        path = tmp_path / name
        path.write_bytes(gz.compress(bytes(bad)) if name.endswith(".mgz") else bytes(bad))
        with pytest.raises(Asfe3dInputError, match=match) as exc:
            read_volume(path, role="MRI")
        assert "\n" not in str(exc.value)

    refused(lambda b: b.__setitem__(slice(20, 24), (2).to_bytes(4, "big")), "MGH data type 2 is not one asfe3d reads")
    # direction cosines of length 3: 3 mm voxels from a 1 mm delta (FreeSurfer writes unit vectors)
    refused(lambda b: b.__setitem__(slice(42, 54), np.array([3.0, 0, 0], ">f4").tobytes()),
            r"direction cosines are not unit vectors \(lengths \[3.0, 1.0, 1.0\]\)")
    refused(lambda b: b.__setitem__(slice(4, 16), np.array([100000] * 3, ">i4").tobytes()), "claims", "huge.mgh")
    gzipped = tmp_path / "gz.mgh"
    gzipped.write_bytes(p.read_bytes())
    with pytest.raises(Asfe3dInputError, match="gzip-compressed but named .mgh; name it .mgz"):
        read_volume(gzipped, role="MRI")
    raw[28:30] = (2).to_bytes(2, "big")  # any flag > 0 says the geometry is there (FreeSurfer, nibabel)
    (tmp_path / "flag2.mgz").write_bytes(gz.compress(bytes(raw)))
    assert read_volume(tmp_path / "flag2.mgz", role="MRI").shape_xyz == (12, 10, 8)
    cut = tmp_path / "cut.mgz"
    cut.write_bytes(p.read_bytes()[:200])
    with pytest.raises(Asfe3dInputError, match="cut.mgz: MRI") as exc:
        read_volume(cut, role="MRI")
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mgz", ".nrrd"])
def test_a_grid_absurdly_far_from_the_origin_is_refused(tmp_path, suffix):
    """A corrupt position (1e30 mm) ended in ITK's registration with a multi-line exception, exit 1."""
    data, affine = random_volume((12, 10, 8)), np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [1e30, 0, 0]
    p = tmp_path / f"far{suffix}"
    if suffix == ".nrrd":
        img = sitk.GetImageFromArray(data.transpose(2, 1, 0))
        img.SetOrigin((1e30, 0.0, 0.0))
        sitk.WriteImage(img, str(p))
    else:
        nib.save((nib.MGHImage if suffix == ".mgz" else nib.Nifti1Image)(data, affine), str(p))
    with pytest.raises(Asfe3dInputError, match=r"far\..*: PET grid lies 1e\+30 mm from the scanner's origin"):
        read_volume(p, role="PET")
    affine[:3, 3] = [-1500.0, 20.0, 900.0]  # a whole-body bed position: fine
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "bed.nii.gz"))
    assert read_volume(tmp_path / "bed.nii.gz", role="PET").shape_xyz == (12, 10, 8)


def test_formats_outside_the_list_are_refused_not_placed_by_simpletk(tmp_path, capfd):
    """A MINC file was read by SimpleITK without a word and fused turned 180 degrees about z (ITK's MINC reader);
    a damaged one printed about 40 lines of HDF5 diagnostics before the error (probe 20 #3). MINC is refused by
    name before SimpleITK opens it, and any other format SimpleITK would read (VTK, GIPL...) by its reader's name."""
    bad = tmp_path / "t1.mnc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(Asfe3dInputError, match=r"t1\.mnc: MRI file is MINC, which asfe3d does not read .*mnc2nii"):
        read_volume(bad, role="MRI")
    assert capfd.readouterr().err == ""
    vtk = tmp_path / "pet.vtk"
    sitk.WriteImage(sitk.GetImageFromArray(random_volume().astype(np.float32)), str(vtk))
    with pytest.raises(Asfe3dInputError, match=r"PET file is read by SimpleITK's VTKImageIO, a format asfe3d does "
                                               r"not read .*convert it to NIfTI"):
        read_volume(vtk, role="PET")
    mha = tmp_path / "pet.mha"  # the documented formats read as before
    sitk.WriteImage(sitk.GetImageFromArray(random_volume().astype(np.float32)), str(mha))
    assert read_volume(mha, role="PET").format == "mha"


def test_a_nifti_named_against_its_compression_says_what_to_name_it(nifti_factory, tmp_path):
    """A gzipped NIfTI named .nii was refused with "sizeof_hdr = 559903", a plain one named .nii.gz with "Not a
    gzipped file" (probe 20 #10): the line now says which name the file needs."""
    plain = nifti_factory(data=random_volume())
    raw = plain.read_bytes() if not plain.name.endswith(".gz") else gzip.decompress(plain.read_bytes())
    named_gz = tmp_path / "plain.nii.gz"
    named_gz.write_bytes(raw)
    with pytest.raises(Asfe3dInputError, match=r"the file is not gzip-compressed: name it plain\.nii$"):
        read_volume(named_gz, role="MRI")
    named_plain = tmp_path / "packed.nii"
    named_plain.write_bytes(gzip.compress(raw))
    with pytest.raises(Asfe3dInputError, match=r"the file is gzip-compressed: name it packed\.nii\.gz$"):
        read_volume(named_plain, role="MRI")
    junk = tmp_path / "junk.nii"
    junk.write_bytes(b"not an image at all" * 30)
    with pytest.raises(Asfe3dInputError, match=r"not a readable NIfTI image \([^;]*\)$"):  # nothing to say on names
        read_volume(junk, role="MRI")


def test_nan_around_a_resliced_pet_is_explained(nifti_factory, caplog):
    """SPM's resliced ``rpet.nii`` holds NaN outside the PET's field of view on purpose; the refusal treated it
    like damage and, with --allow-nonfinite, nothing said that the field of view was lost (probe 20 #6)."""
    data = random_volume()
    data[:, :, :3] = np.nan  # a slab outside the field of view
    p = nifti_factory(data=data)
    with pytest.raises(Asfe3dInputError, match=r"non-finite \(NaN/Inf\) voxels of \d+ \(they lie around the image, "
                                               r"as SPM's reslicing writes NaN outside a field of view: read as 0, they "
                                               r"lie outside the PET's field of view, and the fused image is blank"):
        read_volume(p, role="PET")
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        read_volume(p, role="PET", allow_nonfinite=True)
    assert any("outside the PET's field of view, and the fused image is blank there" in r.getMessage()
               for r in caplog.records)
    inside = random_volume((24, 20, 20))
    inside[8:12, 8:12, 8:12] = np.nan  # a hole inside: damage, not a field of view
    with pytest.raises(Asfe3dInputError, match=r"non-finite \(NaN/Inf\) voxels of \d+; pass"):
        read_volume(nifti_factory(data=inside), role="PET")
