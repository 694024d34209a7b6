"""NIfTI pairs (.hdr + .img) read as NIfTI, Analyze 7.5 refused, headers whose directions or matrices cannot place
the voxels refused in one line."""

from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from asfe3d.errors import Asfe3dInputError
from asfe3d.io import detect_format, read_volume, write_like
from asfe3d.io.checks import check_data_size
from tests.io.helpers import AFFINES, random_volume

SHAPE = (12, 10, 8)


def _pair(tmp_path, name="mri", qcode=0, scode=2, sform=None):
    aff = AFFINES["oblique"]
    img = nib.Nifti1Pair(random_volume(SHAPE), aff)
    img.set_qform(aff if qcode else None, code=qcode)
    img.set_sform(aff if sform is None else sform, code=scode)
    nib.save(img, str(tmp_path / f"{name}.img"))
    return tmp_path / f"{name}.hdr", tmp_path / f"{name}.img", aff


@pytest.mark.parametrize("which", ["hdr", "img"])
def test_nifti_pair_is_read_as_nifti_and_outputs_keep_its_codes(tmp_path, which):
    hdr, img, aff = _pair(tmp_path)
    path = hdr if which == "hdr" else img
    assert detect_format(path) == "nifti"
    vol = read_volume(path, role="MRI")
    assert vol.format == "nifti" and np.allclose(vol.affine_ras, aff, atol=1e-5)
    out = write_like(np.zeros(vol.shape_xyz, np.float32), vol, tmp_path / "out.nii.gz")
    written = nib.load(str(out))
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (0, 2)
    assert written.header["magic"] == b"n+1" and np.allclose(written.affine, aff, atol=1e-5)


def test_nifti_pair_headers_checked_like_a_single_file(tmp_path):
    hdr, _, aff = _pair(tmp_path, "zero", qcode=0, scode=0)
    with pytest.raises(Asfe3dInputError, match="sform_code and qform_code both 0"):
        read_volume(hdr, role="MRI")
    moved = aff.copy()
    moved[0, 3] += 20.0
    hdr, _, _ = _pair(tmp_path, "apart", qcode=1, scode=1, sform=moved)
    with pytest.raises(Asfe3dInputError, match="qform and sform both claim the same space.*--nifti-geometry"):
        read_volume(hdr, role="MRI")


def test_truncated_or_missing_img_of_a_pair_refused(tmp_path):
    hdr, img, _ = _pair(tmp_path)
    img.write_bytes(img.read_bytes()[:-100])
    with pytest.raises(Asfe3dInputError, match=r"MRI header claims 12x10x8 voxels .* holds only"):
        read_volume(hdr, role="MRI")
    img.unlink()
    with pytest.raises(Asfe3dInputError, match="NIfTI pair is missing its 'mri.img' file"):
        read_volume(hdr, role="MRI")


def test_analyze_75_refused_for_its_unknown_orientation(tmp_path):
    img = nib.AnalyzeImage(random_volume(SHAPE), np.diag([2.0, 2.0, 2.0, 1.0]))
    nib.save(img, str(tmp_path / "old.img"))
    assert detect_format(tmp_path / "old.hdr") == "analyze"
    with pytest.raises(Asfe3dInputError, match="Analyze 7.5 image: its header does not say how the voxels are "
                                               "oriented") as err:
        read_volume(tmp_path / "old.img", role="MRI")
    assert "\n" not in str(err.value)


def _mha(path, matrix, origin="0 0 0"):
    data = random_volume(SHAPE).astype(np.int16)
    head = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            f"TransformMatrix = {matrix}\nOffset = {origin}\nElementSpacing = 2 2 2\n"
            f"DimSize = {SHAPE[0]} {SHAPE[1]} {SHAPE[2]}\nElementType = MET_SHORT\nElementDataFile = LOCAL\n")
    path.write_bytes(head.encode() + data.transpose(2, 1, 0).tobytes())
    return path


@pytest.mark.parametrize("matrix, match", [
    ("1 0 0 0.6 1 0 0 0 1", r"direction matrix .* is sheared \(voxel axes deviate from orthogonal by up to 31 degrees\)"),
    ("2 0 0 0 1 0 0 0 1", r"has axes of length \[2.0, 1.0, 1.0\], not 1"),
])
def test_non_orthonormal_directions_refused_before_reading(tmp_path, matrix, match):
    with pytest.raises(Asfe3dInputError, match=match) as err:
        read_volume(_mha(tmp_path / "bad.mha", matrix), role="PET")
    assert "\n" not in str(err.value) and str(err.value).startswith(str(tmp_path / "bad.mha"))


def test_rotated_orthonormal_direction_is_read(tmp_path):
    c, s = np.cos(0.3), np.sin(0.3)
    vol = read_volume(_mha(tmp_path / "ok.mha", f"{c} {s} 0 {-s} {c} 0 0 0 1"), role="PET")
    assert vol.shape_xyz == SHAPE


def test_non_finite_sform_refused_quietly(tmp_path, capfd):
    img = nib.Nifti1Image(random_volume(SHAPE), AFFINES["ras"])
    nib.save(img, str(tmp_path / "m.nii"))
    raw = bytearray((tmp_path / "m.nii").read_bytes())
    struct.pack_into("<f", raw, 280 + 12, float("nan"))  # srow_x[3]
    (tmp_path / "m.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(Asfe3dInputError, match=r"MRI NIfTI sform \(code 2\) holds non-finite numbers"):
        read_volume(tmp_path / "m.nii.gz", role="MRI")
    assert capfd.readouterr().err == ""  # ITK's numerics never saw the matrix


def test_size_message_tells_a_few_missing_bytes_apart():
    with pytest.raises(Asfe3dInputError, match=r"\(2,000 B\) but the file holds only 1,999 B"):
        check_data_size("x.nii", "MRI", (10, 10, 10), 2, stored_bytes=1999, compressed=False)


@pytest.mark.parametrize("name, stem", [("sub-01_T1w.nii.gz", "sub-01_T1w"), ("mri.img", "mri"), ("mri.HDR.gz", "mri"),
                                        ("ct.nrrd", "ct"), ("dicom_folder", "dicom_folder"), (".nii.gz", ".nii.gz")])
def test_input_stem_takes_off_every_image_suffix(name, stem):
    from asfe3d.io import input_stem
    from asfe3d.pipeline import default_output_path

    assert input_stem(name) == stem
    assert default_output_path(f"/data/{name}").name == f"{stem}_fused.nii.gz"


def test_a_series_asked_of_a_file_that_is_not_dicom_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(random_volume(SHAPE), AFFINES["ras"]), str(tmp_path / "t1.nii.gz"))
    with pytest.raises(Asfe3dInputError, match=r"MRI series '1.2.3' was asked for \(--mri-series / series_uid=\), "
                                               r"but this input is not DICOM"):
        read_volume(tmp_path / "t1.nii.gz", role="MRI", series_uid="1.2.3")
    assert read_volume(tmp_path / "t1.nii.gz", role="MRI").shape_xyz == SHAPE
