"""Tests of the inputs' roles (MRI vs PET) and of the same-frame-of-reference shortcut (DICOM pairs)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.errors import Asfe3dInputError
from asfe3d.registration.roles import check_roles, detail_share, role_evidence

MRI = np.full((8, 8, 8), 100.0, np.float32)
PET = np.full((8, 8, 8), 5000.0, np.float32)


def _check(mri_info=None, pet_info=None, mri_path="mri.nii.gz", pet_path="pet.nii.gz", mri_spacing=(1.0,) * 3,
           pet_spacing=(2.0,) * 3, pet=PET):
    return check_roles(MRI, pet, mri_spacing, pet_spacing, mri_info or {}, pet_info or {}, mri_path, pet_path)


def test_plausible_inputs_pass_quietly(caplog):
    assert _check({"modality": "MR"}, {"modality": "PT"}, "sub-01_T1w.nii.gz", "sub-01_pet.nii.gz") == []
    assert _check({"modality": "CT"}, {"modality": "PT"}) == []  # PET/CT: the CT is the reference
    assert _check(mri_spacing=(2.0,) * 3) == []  # a PET already on the MRI grid: same voxels, nothing said
    assert not caplog.records


@pytest.mark.parametrize("mri_info, pet_info, mri_path, pet_path, words", [
    ({"modality": "PT"}, {"modality": "MR"}, "a", "b", "MRI input is a DICOM PT series"),
    ({}, {"modality": "CT"}, "a", "b", "PET input is a DICOM CT series"),
    ({}, {}, "sub-01_pet.nii.gz", "sub-01_T1w.nii.gz", "BIDS suffix _pet"),
    ({}, {}, "mri.nii", "sub-01_T1w.nii", "BIDS suffix _T1w"),
])
def test_swapped_inputs_are_refused(mri_info, pet_info, mri_path, pet_path, words):
    with pytest.raises(Asfe3dInputError, match=words) as err:
        _check(mri_info, pet_info, mri_path, pet_path)
    assert "\n" not in str(err.value) and "swapped" in str(err.value)


def test_ct_given_as_the_pet_is_refused():
    ct = np.where(np.arange(512).reshape(8, 8, 8) % 2 == 0, -1000.0, 40.0).astype(np.float32)
    ct[0, 0, 0] = 1200.0
    with pytest.raises(Asfe3dInputError, match="Hounsfield"):
        _check(pet=ct)


def test_voxel_sizes_alone_only_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        lines = _check(mri_spacing=(2.0, 2.0, 2.0), pet_spacing=(1.0, 1.0, 1.0))
    assert len(lines) == 1 and "may be swapped" in lines[0] and "much larger" in lines[0]
    assert "may be swapped" in caplog.text
    certain, hints = role_evidence(MRI, PET, (2.0,) * 3, (1.0,) * 3, {}, {}, None, None)
    assert certain == [] and len(hints) == 1


def test_4d_mri_refused_unless_a_frame_was_taken():
    with pytest.raises(Asfe3dInputError, match=r"MRI input is 4D \(3 frames\): choose one with --mri-frame N / mri_frame=N"):
        _check({"frames": 3, "frame_taken": None})
    assert _check({"frames": 3, "frame_taken": 1}) == []


# ----------------------------------------------------------------------------------- DICOM frame of reference


def _write_series(folder: Path, image: sitk.Image, modality: str, series: str, frame_of_reference: str) -> Path:
    folder.mkdir(parents=True)
    arr = sitk.GetArrayFromImage(image)
    arr = np.round(arr / max(float(arr.max()), 1e-6) * 2000).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(image)
    direction = np.asarray(img.GetDirection()).reshape(3, 3)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(img.GetSize()[2]):
        sl = img[:, :, k]
        tags = {"0008|0060": modality, "0008|0016": "1.2.840.10008.5.1.4.1.1.128" if modality == "PT" else
                "1.2.840.10008.5.1.4.1.1.4", "0008|0018": f"{series}.{k + 1}", "0020|000d": "1.2.3.4",
                "0020|000e": series, "0020|0052": frame_of_reference, "0008|103e": modality,
                "0020|0037": "\\".join(f"{v:.10f}" for v in (*direction[:, 0], *direction[:, 1])),
                "0020|0032": "\\".join(f"{v:.10f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k))),
                "0020|0013": str(k + 1), "0018|0050": f"{img.GetSpacing()[2]:.6f}"}
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"sl{k:03d}.dcm"))
        writer.Execute(sl)
    return folder


@pytest.fixture(scope="module")
def dicom_pairs(case, tmp_path_factory):
    t1, pet, _, _ = case
    root = tmp_path_factory.mktemp("dicom")
    mr = _write_series(root / "mr", t1, "MR", "1.2.3.4.1", "1.2.3.9")
    same = _write_series(root / "pt_same", pet, "PT", "1.2.3.4.2", "1.2.3.9")
    other = _write_series(root / "pt_other", pet, "PT", "1.2.3.4.3", "1.2.3.8")
    swapped_mr = _write_series(root / "pt_as_mri", pet, "PT", "1.2.3.4.4", "1.2.3.7")
    return mr, same, other, swapped_mr


def _register(mri: Path, pet: Path, method: str = "auto"):
    from asfe3d.transforms import HeadMaskd, LoadVolumed, RegisterToReferenced

    d = LoadVolumed(["mri", "pet"])({"mri": mri, "pet": pet})
    d = HeadMaskd("mri")(d)
    return RegisterToReferenced("pet", method=method, min_overlap=0.0, sampling=0.2)(d)


def test_same_frame_of_reference_is_not_registered(dicom_pairs):
    mr, same, _, _ = dicom_pairs
    d = _register(mr, same)
    report = d["pet_registration"]
    assert report["method"] == "none (same frame of reference)" and report["requested"] == "auto"
    assert report["qc"]["verdict"] != "fail"
    assert any("share one frame of reference" in n for n in report["qc"]["notes"])
    assert d["pet_transform"].GetParameters() == () or np.allclose(
        d["pet_transform"].TransformPoint((1.0, 2.0, 3.0)), (1.0, 2.0, 3.0))
    forced = _register(mr, same, "rigid")["pet_registration"]
    assert forced["method"] == "rigid" and forced["requested"] == "rigid" and forced["iterations"] > 0


def test_other_frame_of_reference_is_registered(dicom_pairs):
    mr, _, other, _ = dicom_pairs
    report = _register(mr, other)["pet_registration"]
    assert report["method"] == "rigid" and report["requested"] == "auto" and report["iterations"] > 0


def test_pet_series_given_as_the_mri_is_refused(dicom_pairs):
    mr, _, _, swapped = dicom_pairs
    with pytest.raises(Asfe3dInputError, match="MRI input is a DICOM PT series.*PET input is a DICOM MR series"):
        _register(swapped, mr)


# ----------------------------------------------------------------------------------- which image is the sharper


def _head(shape, sharp: bool, seed: int = 0) -> np.ndarray:
    """A ball of 'tissue' on a zero background: with sharp folds (an MRI) or smooth (a PET at its resolution)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=np.float32)
    c = (np.asarray(shape, np.float32) - 1) / 2
    r = np.sqrt(((z - c[0]) / c[0]) ** 2 + ((y - c[1]) / c[1]) ** 2 + ((x - c[2]) / c[2]) ** 2)
    ball = (r < 0.85).astype(np.float32)
    folds = (np.sin(x * 1.3) * np.sin(y * 1.1) * np.sin(z * 0.9) > 0).astype(np.float32)
    img = ball * (100.0 + 60.0 * folds) + rng.normal(0, 1.0, shape).astype(np.float32)
    return img if sharp else gaussian_filter(img, 2.5)


def test_detail_share_tells_a_sharp_image_from_a_smooth_one():
    sharp, smooth = _head((40, 40, 40), True), _head((40, 40, 40), False)
    assert detail_share(sharp, (2.0,) * 3) > 0.3 > 0.1 > detail_share(smooth, (2.0,) * 3)
    assert np.isnan(detail_share(np.zeros((8, 8, 8), np.float32), (1.0,) * 3))  # too small to say


def test_coarser_and_smoother_mri_input_is_refused():
    pet_as_mri, mri_as_pet = _head((27, 27, 27), False), _head((40, 40, 40), True)
    with pytest.raises(Asfe3dInputError, match=r"MRI input is both coarser \(3 x 3 x 3 mm voxels against 2 x 2 x 2 "
                                               r"mm\) and smoother") as err:
        check_roles(pet_as_mri, mri_as_pet, (3.0,) * 3, (2.0,) * 3, {}, {}, "pet.nii.gz", "mri.nii.gz")
    assert str(err.value).startswith("pet.nii.gz: the inputs look swapped")
    # the right way round: nothing said
    assert check_roles(mri_as_pet, pet_as_mri, (2.0,) * 3, (3.0,) * 3, {}, {}, "mri.nii.gz", "pet.nii.gz") == []


def test_slightly_coarser_smoother_mri_input_only_warns(caplog):
    # a smooth average MRI at 2 mm beside a sharp-looking (noisy) PET at 1.6 mm: a warning, not a refusal
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        lines = check_roles(_head((32, 32, 32), False), _head((40, 40, 40), True), (2.0,) * 3, (1.6,) * 3, {}, {},
                            "mri.nii.gz", "pet.nii.gz")
    assert len(lines) == 1 and "may be swapped" in lines[0] and "smoother" in lines[0]


def test_one_image_given_twice_is_refused(tmp_path):
    f = tmp_path / "t1.nii.gz"
    f.write_bytes(b"x")
    with pytest.raises(Asfe3dInputError, match=r"the MRI and PET inputs are the same file \(t1.nii.gz\) \(give two "
                                               r"different images"):
        check_roles(MRI, MRI, (1.0,) * 3, (1.0,) * 3, {}, {}, f, tmp_path / "." / "t1.nii.gz")
    with pytest.raises(Asfe3dInputError, match="hold the same voxels"):
        check_roles(MRI, MRI.copy(), (1.0,) * 3, (1.0,) * 3, {}, {}, "a.nii", "b.nii")


def test_pet_of_a_few_slices_is_refused_naming_it():
    with pytest.raises(Asfe3dInputError, match=r"^pet\.nii\.gz: PET input has 3 voxels along z \(size 8 x 8 x 3\): "
                                               r"registration needs at least 4 along each axis"):
        _check(pet=np.full((3, 8, 8), 5000.0, np.float32))
    assert _check(pet=np.full((4, 8, 8), 5000.0, np.float32)) == []  # and the tiny MRI is not judged here


def test_a_label_map_given_as_the_mri_is_said_to_be_one():
    """FreeSurfer's aparc+aseg (integer labels, piecewise constant) as the MRI: said so, naming it, not only a QC
    warning that blamed the PET's field of view. Integer T1s (uint8, a FreeSurfer norm.mgz whose white matter is
    one value) are not label maps."""
    from asfe3d.registration.roles import label_map_evidence

    rng = np.random.default_rng(0)
    labels = np.zeros((48, 48, 48), np.float32)
    for value, lo in ((2, 4), (41, 12), (1035, 20), (2035, 28), (12175, 36)):  # blocks of FreeSurfer-like labels
        labels[lo:lo + 8, 4:44, 4:44] = value
    said = label_map_evidence(labels)
    assert said is not None and said.startswith("MRI input looks like a label map") and "5 distinct" in said
    t1 = np.clip(rng.normal(80, 25, labels.shape), 1, 255).round().astype(np.uint8)  # an 8-bit T1 with noise
    assert label_map_evidence(t1) is None
    norm = t1.copy()
    norm[10:30, 10:30, 10:30] = 110  # white matter normalised to one value, the rest noisy
    assert label_map_evidence(norm) is None
    assert label_map_evidence(rng.random(labels.shape, dtype=np.float32)) is None  # not integers
    # a binary brain mask (fMRIPrep's *_desc-brain_mask, FSL's *_mask) passed the QC with no remark
    said = label_map_evidence((labels > 0).astype(np.float32))
    assert said is not None and said.startswith("MRI input looks like a mask") and "every non-zero voxel is 1" in said
    assert "is 1 and 255" in label_map_evidence(np.where(labels > 40, 255, (labels > 0) * 1).astype(np.uint8))
    thick = np.repeat(t1[:, :, ::3], 3, axis=2)  # 3 mm slices brought to 1 mm by repetition: constant along z only
    assert label_map_evidence(thick) is None
    ct = np.clip(rng.normal(30, 15, labels.shape), -40, 120).round()  # a CT in a brain window, smooth tissue
    ct[:, :, :20] = -40  # its air clipped to the window's floor: one value, not a label
    assert label_map_evidence(ct) is None


def test_a_label_map_given_as_the_pet_is_said_to_be_one(caplog):
    """FreeSurfer's aparc+aseg.mgz as the PET was fused with QC pass and no remark, while the same file as the MRI
    was warned about (probe 20 #4). Real PETs, also stored as integers, are not label maps."""
    from asfe3d.registration.roles import label_map_evidence

    labels = np.zeros((24, 24, 24), np.float32)
    for value, lo in ((2, 2), (41, 6), (1035, 10), (2035, 14), (17, 18)):
        labels[lo:lo + 4, 2:22, 2:22] = value
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        lines = _check(pet=labels)
    assert len(lines) == 1 and lines[0].startswith("PET input looks like a label map or segmentation (5 distinct")
    assert "not uptake (give the PET image)" in lines[0] and "aparc" not in lines[0]
    assert any(r.getMessage().startswith("pet.nii.gz: PET input looks like a label map") for r in caplog.records)
    assert label_map_evidence((labels > 0).astype(np.float32), "PET").startswith("PET input looks like a mask")
    from scipy.ndimage import gaussian_filter

    z, y, x = np.mgrid[:40, :40, :40]
    head = ((x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2) < 17 ** 2
    pet = gaussian_filter(head * (1.0 + np.random.default_rng(3).random(head.shape)), 2.0)
    for scale in (255, 32000):  # an 8-bit and a 16-bit integer PET: smooth, so neighbours differ
        assert label_map_evidence(np.round(pet / pet.max() * scale), "PET") is None
    assert _check() == []


def test_pet_on_a_finer_grid_but_smoother_is_not_called_swapped(caplog):
    """A PET resampled to 1 mm beside a 2 mm MRI got "the inputs may be swapped" though the MRI is the sharper."""
    from scipy.ndimage import gaussian_filter

    z, y, x = np.mgrid[:48, :48, :48]
    head = ((x - 24) ** 2 + (y - 24) ** 2 + (z - 24) ** 2) < 20 ** 2
    mri = (head * (100.0 + 400.0 * gaussian_filter(np.random.default_rng(7).normal(size=head.shape), 1.0))).clip(0)
    pet = gaussian_filter(head * 1000.0, 4.0)
    with caplog.at_level(logging.WARNING, logger="asfe3d"):
        lines = check_roles(mri.astype(np.float32), pet.astype(np.float32), (2.0,) * 3, (1.0,) * 3, {}, {},
                            "mri.nii.gz", "pet.nii.gz")
    assert lines == [] and not caplog.records
