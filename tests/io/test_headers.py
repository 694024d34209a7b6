"""Headers that cannot be trusted are refused or resolved explicitly; data sizes are checked before reading."""

from __future__ import annotations

import gzip
import logging
import struct
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.errors import Asfe3dInputError
from asfe3d.io import read_volume, write_like
from asfe3d.io.checks import check_data_size, sitk_stored_bytes
from tests.io.helpers import AFFINES, SHAPE, make_affine, random_volume, rotation, save_nifti

PIXDIM_OFFSET = 76  # NIfTI-1: float32 pixdim[8] at byte 76


def _patch_pixdim(path: Path, values: tuple[float, float, float]) -> Path:
    raw = bytearray(path.read_bytes())
    raw[PIXDIM_OFFSET + 4: PIXDIM_OFFSET + 16] = struct.pack("<3f", *values)
    path.write_bytes(bytes(raw))
    return path


def test_codes_zero_refused_in_one_line(tmp_path):
    p = save_nifti(tmp_path / "nocodes.nii.gz", random_volume(), AFFINES["oblique"], 0, AFFINES["oblique"], 0)
    with pytest.raises(Asfe3dInputError, match="sform_code and qform_code both 0") as exc:
        read_volume(p, role="PET")
    assert exc.value.path == str(p) and "\n" not in str(exc.value) and "PET" in str(exc.value)


@pytest.mark.parametrize("pixdim,match", [
    ((1.0, 0.0, 1.0), "zero or negative"),
    ((1.0, 1.0, -2.0), "zero or negative"),
    ((float("nan"), 1.0, 1.0), "non-finite"),
    ((1e5, 1.0, 1.0), "implausible"),
])
def test_bad_pixdims_refused(tmp_path, pixdim, match):
    p = save_nifti(tmp_path / "pix.nii", random_volume(), AFFINES["ras"], 1, AFFINES["ras"], 1)
    _patch_pixdim(p, pixdim)
    assert int(nib.load(p).header["sform_code"]) == 1  # the sform alone would still give a geometry
    with pytest.raises(Asfe3dInputError, match=match) as exc:
        read_volume(p)
    assert "pixdim" in str(exc.value)


@pytest.mark.parametrize("zoom", [1e5, 60.0, 0.001])
def test_absurd_voxel_sizes_refused(tmp_path, zoom):
    aff = make_affine(np.eye(3), (1.0, zoom, 1.0), (0.0, 0.0, 0.0))
    p = save_nifti(tmp_path / "big.nii.gz", random_volume(), aff, 1, aff, 1)
    with pytest.raises(Asfe3dInputError, match="implausible voxel sizes"):
        read_volume(p)


def test_sitk_zero_or_huge_spacing_refused(tmp_path):
    img = sitk.GetImageFromArray(random_volume().transpose(2, 1, 0))
    img.SetSpacing((1.0, 1.0, 1e5))
    p = tmp_path / "huge.mha"
    sitk.WriteImage(img, str(p))
    with pytest.raises(Asfe3dInputError, match=r"implausible voxel sizes \(spacing"):
        read_volume(p)


def test_qform_sform_same_space_disagreeing_refused_unless_chosen(tmp_path, caplog):
    qform = make_affine(np.eye(3), (1.0, 1.0, 1.0), (5.0, 5.0, 5.0))
    sform = make_affine(rotation(0.0, 0.0, 10.0), (1.0, 1.0, 1.0), (-3.0, 5.0, 5.0))
    p = save_nifti(tmp_path / "both1.nii.gz", random_volume(), qform, 1, sform, 1)
    with pytest.raises(Asfe3dInputError, match=r"same space \(code 1\).*nifti_geometry"):
        read_volume(p)
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        vq = read_volume(p, nifti_geometry="qform")
    np.testing.assert_allclose(vq.affine_ras, qform, atol=1e-5)
    assert vq.info["geometry_source"] == "qform" and vq.info["qform_sform"]["used"] == "qform"
    assert vq.info["qform_sform"]["max_difference_mm"] > 1.0
    assert "using the qform" in caplog.text
    # the output written on this grid says what was used
    out = nib.load(write_like(vq.array_xyz(), vq, tmp_path / "o.nii.gz"))
    np.testing.assert_allclose(out.affine, qform, atol=1e-5)
    vs = read_volume(p, nifti_geometry="sform")
    np.testing.assert_allclose(vs.affine_ras, sform, atol=1e-5)
    out = nib.load(write_like(vs.array_xyz(), vs, tmp_path / "s.nii.gz"))
    np.testing.assert_allclose(out.header.get_qform(), sform, atol=1e-4)


def test_qform_sform_different_spaces_use_sform_and_say_so(tmp_path, caplog):
    qform = make_affine(np.eye(3), (1.0, 1.0, 1.0), (5.0, 5.0, 5.0))
    p = save_nifti(tmp_path / "q1s4.nii.gz", random_volume(), qform, 1, AFFINES["oblique"], 4)
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        vol = read_volume(p)
    np.testing.assert_allclose(vol.affine_ras, AFFINES["oblique"], atol=1e-5)
    rec = vol.info["qform_sform"]
    assert rec["used"] == "sform" and rec["sform_code"] == 4 and rec["qform_code"] == 1
    assert "different spaces" in rec["reason"] and "using the sform" in caplog.text


def test_agreeing_qform_sform_not_reported(nifti_factory):
    vol = read_volume(nifti_factory())
    assert "qform_sform" not in vol.info and vol.info["geometry_source"] == "sform"


@pytest.mark.parametrize(("units", "itk"), [("meter", 2000.0), ("micron", 0.002)])
def test_space_units_other_than_mm_refused(tmp_path, units, itk):
    """Metres or microns in xyzt_units: ITK-based viewers scale the voxel sizes, nibabel / FSL / SPM do not. The file
    was read as mm with QC pass and the fused volume written still labelled in metres (a 178 m head in 3D Slicer)."""
    img = nib.Nifti1Image(random_volume(), make_affine(np.eye(3), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0)))
    img.header.set_xyzt_units(units, "sec")
    p = tmp_path / f"{units}.nii.gz"
    nib.save(img, str(p))
    with pytest.raises(Asfe3dInputError, match=rf"distances in {units}s .* read voxels of \[{itk}, {itk}, {itk}\] mm, "
                                               r"nibabel, FSL and SPM \[2.0, 2.0, 2.0\] mm"):
        read_volume(p)
    for ok in ("mm", "unknown"):
        img.header.set_xyzt_units(ok, "sec")
        nib.save(img, str(p))
        assert read_volume(p).image.GetSpacing() == pytest.approx((2.0, 2.0, 2.0))


def test_forced_geometry_on_a_file_with_one_geometry_uses_it(tmp_path):
    """``--nifti-geometry`` applies to both inputs: ``qform`` for an MRI whose sform is wrong refused an SPM PET
    (sform only); a file with one geometry has nothing to choose between and its geometry is used, recorded."""
    p = save_nifti(tmp_path / "q.nii.gz", random_volume(), AFFINES["oblique"], 1, None, 0)
    vol = read_volume(p, nifti_geometry="sform")
    np.testing.assert_allclose(vol.affine_ras, AFFINES["oblique"], atol=1e-5)
    assert vol.info["geometry_source"] == "qform" and "only a qform" in vol.info["geometry_choice_unused"]
    s = save_nifti(tmp_path / "s.nii.gz", random_volume(), None, 0, AFFINES["anisotropic"], 2)
    vol = read_volume(s, nifti_geometry="qform")
    np.testing.assert_allclose(vol.affine_ras, AFFINES["anisotropic"], atol=1e-5)
    assert vol.info["geometry_source"] == "sform"
    with pytest.raises(ValueError, match="nifti_geometry must be one of"):
        read_volume(p, nifti_geometry="best")


# ------------------------------------------------------------------------------------------ memory bounds


def _huge_header(shape=(1500, 1500, 1500)) -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.float32)
    hdr.set_sform(np.eye(4), code=1)
    hdr.set_qform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\x00" * 4


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_tiny_file_claiming_huge_volume_refused_fast(tmp_path, name):
    p = tmp_path / name
    raw = _huge_header() + b"\x00" * 1000
    p.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    assert p.stat().st_size < 4000
    start = time.perf_counter()
    with pytest.raises(Asfe3dInputError, match=r"claims 1500x1500x1500 voxels \(12.6 GB\) but the file holds"):
        read_volume(p)
    assert time.perf_counter() - start < 1.0


def test_voxel_count_cap(tmp_path):
    with pytest.raises(Asfe3dInputError, match="in one 3D frame, more than the 268,435,456"):
        check_data_size(tmp_path / "x", "PET", (2048, 2048, 1024), 1, stored_bytes=None, compressed=True)
    with pytest.raises(Asfe3dInputError, match="more than the 2,147,483,648"):  # frames together
        check_data_size(tmp_path / "x", "PET", (512, 512, 512, 20), 1, stored_bytes=None, compressed=True)
    assert check_data_size(tmp_path / "x", "PET", (10, 10, 10), 4, stored_bytes=4000, compressed=False) == 4000


def test_memory_beyond_available_refused(tmp_path, monkeypatch):
    import asfe3d.io.checks as checks

    monkeypatch.setattr(checks, "available_memory_bytes", lambda: 10_000)
    with pytest.raises(Asfe3dInputError, match="needs about .* of memory to read, more than the 9.77 KB available"):
        check_data_size(tmp_path / "x", "MRI", (20, 20, 20), 4, stored_bytes=None, compressed=True)


def test_working_memory_of_a_whole_run_bounds_the_read(tmp_path, monkeypatch):
    """``read_volume(work_bytes_per_voxel=...)``: the fusion chain reads its MRI with the whole run's memory per
    voxel, so a run that cannot fit is refused before any voxel is read (a 512^3 MRI in a 4 GB job was killed
    without a word)."""
    from asfe3d.io import checks

    monkeypatch.setattr(checks, "available_memory_bytes", lambda: 30 * 1000)
    checks.check_data_size(tmp_path / "x", "MRI", (10, 10, 10), 4, stored_bytes=None, compressed=True)  # 20 KB
    with checks.working_memory(40), pytest.raises(
            Asfe3dInputError, match=r"MRI image of 10x10x10 voxels needs about 43 KB of memory to read and fuse "
                                    r"\(44 B per voxel\), more than the 29.3 KB available"):
        checks.check_data_size(tmp_path / "x", "MRI", (10, 10, 10), 4, stored_bytes=None, compressed=True)
    p = save_nifti(tmp_path / "m.nii.gz", random_volume(), AFFINES["ras"], 1, AFFINES["ras"], 1)
    monkeypatch.setattr(checks, "available_memory_bytes", lambda: int(np.prod(SHAPE)) * 30)
    read_volume(p)
    with pytest.raises(Asfe3dInputError, match="to read and fuse"):
        read_volume(p, work_bytes_per_voxel=40)
    with pytest.raises(ValueError, match="bytes_per_voxel must be None or an int >= 0, got -1"):
        read_volume(p, work_bytes_per_voxel=-1)


@pytest.mark.parametrize("files, expected", [
    ({"memory.max": "4000000\n", "memory.current": "1000000\n"}, 3_000_000),  # cgroup v2 (a container's limit)
    ({"memory.max": "max\n"}, None),  # v2 without a limit: the host's memory counts
    ({"memory/memory.limit_in_bytes": "2000000\n", "memory/memory.usage_in_bytes": "500000\n"}, 1_500_000),  # v1
    ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # v1's "no limit"
    ({}, None),
])
def test_available_memory_is_the_control_groups_when_it_allows_less(tmp_path, monkeypatch, files, expected):
    """In a container or a Slurm job /proc/meminfo shows the host's memory: a 512^3 MRI passed the check under a
    4 GB limit and the run was killed without a word (exit 137)."""
    import asfe3d.io.checks as checks

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(checks, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(checks, "PROC_CGROUP", tmp_path / "no-such-file")  # the mount's root: a container's
    assert checks._cgroup_available_bytes() == expected
    host = checks.available_memory_bytes()
    assert host is not None and (expected is None or host == expected)


@pytest.mark.parametrize("own, files, expected", [
    # a Slurm job under cgroup v2: the limit on the job's group, the process in its step's group below it
    ("0::/system.slice/slurmstepd.scope/job_42/step_0\n",
     {"system.slice/slurmstepd.scope/job_42/memory.max": "4000000\n",
      "system.slice/slurmstepd.scope/job_42/memory.current": "1000000\n",
      "system.slice/slurmstepd.scope/job_42/step_0/memory.max": "max\n"}, 3_000_000),
    # cgroup v1, the memory hierarchy among others; the tightest of the group and its parent counts
    ("4:memory:/slurm/uid_0/job_7\n2:cpu,cpuacct:/other\n",
     {"memory/slurm/uid_0/job_7/memory.limit_in_bytes": "8000000\n",
      "memory/slurm/uid_0/job_7/memory.usage_in_bytes": "500000\n",
      "memory/slurm/memory.limit_in_bytes": "2000000\n", "memory/slurm/memory.usage_in_bytes": "1500000\n"},
     500_000),
    # file cache counts in the usage but is dropped before anything is killed (the input just read)
    ("0::/job\n", {"job/memory.max": "4000000\n", "job/memory.current": "3900000\n",
                   "job/memory.stat": "anon 900000\nfile 3000000\ninactive_file 2500000\n"}, 2_600_000),
    ("4:memory:/process_api/abc\n", {"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),
])
def test_available_memory_counts_the_processs_own_control_group(tmp_path, monkeypatch, own, files, expected):
    """Only the mount's root was read: a Slurm job (or a systemd unit) whose limit sits on a sub-group was not seen
    (a 4 GB v1 group: the 512^3 run killed without a word)."""
    import asfe3d.io.checks as checks

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "self_cgroup").write_text(own)
    monkeypatch.setattr(checks, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(checks, "PROC_CGROUP", tmp_path / "self_cgroup")
    assert checks._cgroup_available_bytes() == expected


def test_mha_header_claiming_more_than_its_data(tmp_path):
    img = sitk.GetImageFromArray(random_volume().transpose(2, 1, 0))
    p = tmp_path / "v.mha"
    sitk.WriteImage(img, str(p))
    stored, compressed = sitk_stored_bytes(p)
    assert stored == random_volume().nbytes and compressed is False
    text = p.read_bytes()
    p.write_bytes(text.replace(b"DimSize = 12 10 8", b"DimSize = 1200 1000 800"))
    start = time.perf_counter()
    with pytest.raises(Asfe3dInputError, match="claims 1200x1000x800 voxels"):
        read_volume(p)
    assert time.perf_counter() - start < 1.0


def test_truncated_uncompressed_nifti_refused_before_reading(nifti_factory, tmp_path):
    p = nifti_factory(name="v.nii")
    cut = tmp_path / "cut.nii"
    cut.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(Asfe3dInputError, match="the file holds only"):
        read_volume(cut)


@pytest.mark.parametrize("slope, inter, refused", [
    (float("inf"), 0.0, True), (1.0, float("-inf"), True), (2.0, float("nan"), True),
    (0.0, 0.0, False), (float("nan"), 0.0, False), (2.0, 1.0, False),
])
def test_non_finite_scaling_refused(tmp_path, slope, inter, refused):
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    img = nib.Nifti1Image(np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8), aff)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    path = tmp_path / "scaled.nii"
    nib.save(img, str(path))
    with open(path, "r+b") as fh:  # scl_slope / scl_inter at bytes 112 / 116 of the NIfTI-1 header
        fh.seek(112)
        fh.write(struct.pack("<ff", slope, inter))
    if refused:  # (nibabel itself refuses a non-finite intercept; asfe3d an infinite slope it would drop)
        with pytest.raises(Asfe3dInputError, match="non-finite intensity scaling|invalid intercept"):
            read_volume(path, role="MRI")
    else:
        assert np.isfinite(sitk.GetArrayFromImage(read_volume(path, role="MRI").image)).all()
