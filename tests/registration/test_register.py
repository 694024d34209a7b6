"""Tests of PET->MRI registration, resampling, the overlap check and transform I/O (MNI at 4 mm, PET at 4 mm)."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.data import make_demo_pair
from asfe3d.errors import Asfe3dInputError
from asfe3d.io import read_transform, write_transform
from asfe3d.registration import (
    RegistrationResult,
    check_overlap,
    linear_part_ras,
    overlap_fraction,
    register_pet_to_mri,
    registration_error_mm,
    resample_to_reference,
)


@pytest.fixture(scope="module")
def rigid(case):
    t1, pet, _, _ = case
    return register_pet_to_mri(t1, pet, "rigid", sampling=0.2)


def test_rigid_recovers_known_motion(case, rigid, caplog):
    t1, pet, true, mask = case
    before = registration_error_mm(true, sitk.Transform(3, sitk.sitkIdentity), mask)
    err = registration_error_mm(true, rigid.transform, mask)
    assert before["mean"] > 5.0
    assert err["mean"] < 1.0  # a quarter of a 4 mm voxel
    assert err["max"] < 2.0
    assert isinstance(rigid, RegistrationResult) and rigid.method == "rigid"
    assert rigid.pet_region is None  # a head PET is registered whole
    assert rigid.metric < -0.3 and rigid.iterations > 0 and rigid.stop_condition and rigid.seconds > 0
    with caplog.at_level(logging.INFO, logger="asfe3d"):
        again = register_pet_to_mri(t1, pet, "rigid", sampling=0.2)
    assert "Mattes MI" in caplog.text
    # fixed seed: reproducible
    np.testing.assert_allclose(again.transform.GetParameters(), rigid.transform.GetParameters(), atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["affine", "deformable"])
def test_affine_and_deformable_not_worse(case, rigid, method):
    t1, pet, true, mask = case
    res = register_pet_to_mri(t1, pet, method, sampling=0.2)
    assert res.method == method
    rigid_err = registration_error_mm(true, rigid.transform, mask)["mean"]
    err = registration_error_mm(true, res.transform, mask)["mean"]
    assert err < max(2.0 * rigid_err, rigid_err + 0.5), (err, rigid_err)


def test_affine_runs_and_stays_close(case, rigid):
    t1, pet, true, mask = case
    res = register_pet_to_mri(t1, pet, "affine", sampling=0.2)
    assert isinstance(res.transform, sitk.AffineTransform)
    assert registration_error_mm(true, res.transform, mask)["mean"] < 1.0


def test_none_is_identity(case):
    t1, pet, _, _ = case
    res = register_pet_to_mri(t1, pet, "none")
    p = (12.5, -30.0, 7.0)
    assert res.transform.TransformPoint(p) == pytest.approx(p)
    assert res.method == "none" and res.iterations == 0


def test_bad_method_and_params(case):
    t1, pet, _, _ = case
    with pytest.raises(ValueError, match="'similarity'"):
        register_pet_to_mri(t1, pet, "similarity")
    with pytest.raises(ValueError, match="1.5"):
        register_pet_to_mri(t1, pet, "rigid", sampling=1.5)
    with pytest.raises(ValueError, match="-3"):
        register_pet_to_mri(t1, pet, "rigid", seed=-3)


def test_resample_gives_reference_grid(case):
    t1, pet, true, _ = case
    ref = sitk.Image([20, 30, 25], sitk.sitkUInt8)
    ref.SetSpacing((2.0, 3.0, 2.5))
    ref.SetOrigin((-20.0, 15.0, -30.0))
    rot = sitk.Euler3DTransform()
    rot.SetRotation(0.2, -0.1, 0.3)
    ref.SetDirection(rot.GetMatrix())
    out = resample_to_reference(pet, ref, true)
    assert out.GetSize() == ref.GetSize() and out.GetPixelID() == sitk.sitkFloat32
    assert out.GetSpacing() == ref.GetSpacing() and out.GetOrigin() == ref.GetOrigin()
    assert out.GetDirection() == ref.GetDirection()
    ident = resample_to_reference(pet, pet, None)
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(ident), sitk.GetArrayViewFromImage(pet), rtol=1e-5)
    with pytest.raises(ValueError, match="'cubic'"):
        resample_to_reference(pet, ref, true, interpolator="cubic")


def test_check_overlap(case, rigid):
    t1, pet, _, _ = case
    good = resample_to_reference(pet, t1, rigid.transform)
    assert check_overlap(t1, good) > 0.5
    far = sitk.TranslationTransform(3, (0.0, 0.0, 180.0))
    bad = resample_to_reference(pet, t1, far)
    assert overlap_fraction(t1, bad) < 0.1
    with pytest.raises(Asfe3dInputError, match=r"pet\.nii\.gz: PET and MRI do not overlap after registration \("):
        check_overlap(t1, bad, pet_path="pet.nii.gz")
    with pytest.raises(ValueError, match="1.5"):
        check_overlap(t1, good, min_fraction=1.5)


def test_overlap_refusal_says_when_the_mri_is_far_larger_than_the_head():
    """A head-and-body MRI (a whole-body PET/MR's field of view) with a brain PET was refused as a misregistration
    of the PET; the line now says the MRI covers far more than the PET and how to crop it."""
    body = np.zeros((150, 40, 40), np.float32)  # (z, y, x): 600 mm tall at 4 mm, the head at the top
    body[100:140, 8:32, 8:32] = 100.0
    body[5:100, 4:36, 4:36] = 80.0
    mri = sitk.GetImageFromArray(body)
    mri.SetSpacing((4.0, 4.0, 4.0))
    pet = sitk.GetImageFromArray(np.full((64, 64, 64), 5.0, np.float32))  # 256 mm
    pet.SetSpacing((4.0, 4.0, 4.0))
    empty = sitk.Image(mri.GetSize(), sitk.sitkFloat32)
    empty.CopyInformation(mri)
    with pytest.raises(Asfe3dInputError, match=r"the MRI's head mask spans 5\d\d mm and the PET's field of view 256 "
                                               r"mm: an MRI of more than the head \(head and body\?\)"):
        check_overlap(mri, empty, pet_path="pet.nii.gz", pet=pet)
    head_only = sitk.GetImageFromArray(body[100:150])
    head_only.SetSpacing((4.0, 4.0, 4.0))
    empty = sitk.Image(head_only.GetSize(), sitk.sitkFloat32)
    empty.CopyInformation(head_only)
    with pytest.raises(Asfe3dInputError) as exc:
        check_overlap(head_only, empty, pet_path="pet.nii.gz", pet=pet)
    assert "head mask spans" not in str(exc.value)


def test_transform_round_trip(tmp_path, rigid, case):
    t1 = case[0]
    path = tmp_path / "pet_to_mri.tfm"
    write_transform(rigid.transform, path)
    assert [p.name for p in tmp_path.iterdir()] == ["pet_to_mri.tfm"]
    back = read_transform(path)
    for p in [(0.0, 0.0, 0.0), (50.0, -70.0, 20.0)]:
        np.testing.assert_allclose(back.TransformPoint(p), rigid.transform.TransformPoint(p), atol=1e-9)
    bspline = sitk.BSplineTransformInitializer(t1, [2, 2, 2])
    params = np.linspace(-1.0, 1.0, bspline.GetNumberOfParameters())
    bspline.SetParameters(params.tolist())
    comp = sitk.CompositeTransform([rigid.transform, bspline])
    write_transform(comp, tmp_path / "comp.tfm")
    back = read_transform(tmp_path / "comp.tfm")
    p = (10.0, 20.0, 30.0)
    np.testing.assert_allclose(back.TransformPoint(p), comp.TransformPoint(p), atol=1e-6)
    with pytest.raises(ValueError, match="'x.txt'|x.txt"):
        write_transform(rigid.transform, tmp_path / "x.txt")
    with pytest.raises(Asfe3dInputError, match="missing.tfm"):
        read_transform(tmp_path / "missing.tfm")
    (tmp_path / "junk.tfm").write_text("not a transform\n")
    with pytest.raises(Asfe3dInputError, match="junk.tfm"):
        read_transform(tmp_path / "junk.tfm")


def test_registration_error_mm(case):
    _, _, true, mask = case
    shift = sitk.TranslationTransform(3, (3.0, 4.0, 0.0))
    err = registration_error_mm(sitk.Transform(3, sitk.sitkIdentity), shift, mask)
    assert err == pytest.approx({"mean": 5.0, "median": 5.0, "max": 5.0})
    assert registration_error_mm(true, true, mask)["max"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no non-zero"):
        registration_error_mm(true, true, sitk.Image([4, 4, 4], sitk.sitkUInt8))


@pytest.mark.slow
def test_full_resolution_demo_pair_meets_bar(tmp_path):
    """1 mm MNI MRI vs a 2 mm PET moved by up to 8 degrees / 10 mm: mean brain error <= 0.3 mm (about 3 s of CPU)."""
    for seed, oblique in [(0, False), (3, True)]:
        pair = make_demo_pair(tmp_path / f"s{seed}", seed=seed, oblique=oblique,
                              mri_spacing=(1.0, 1.0, 1.2) if oblique else (1.0, 1.0, 1.0))
        mri = sitk.ReadImage(str(pair.mri_path))
        pet = sitk.ReadImage(str(pair.pet_path))
        mask = sitk.ReadImage(str(pair.mask_path))
        start = time.perf_counter()
        res = register_pet_to_mri(mri, pet, "rigid", seed=seed)
        seconds = time.perf_counter() - start
        err = registration_error_mm(pair.true_transform, res.transform, mask)
        assert err["mean"] <= 0.3, (seed, err)
        assert seconds < 40.0  # bar is ~20 s on 2 idle cores; slack for a loaded test machine
        assert check_overlap(mri, resample_to_reference(pet, mri, res.transform)) > 0.5


def test_single_thread_registration_is_bitwise_reproducible(case):
    t1, pet, _, _ = case
    a = register_pet_to_mri(t1, pet, "rigid", seed=2, threads=1)
    b = register_pet_to_mri(t1, pet, "rigid", seed=2, threads=1)
    assert a.transform.GetParameters() == b.transform.GetParameters()
    with pytest.raises(ValueError, match="threads must be None or an integer >= 1, got 0"):
        register_pet_to_mri(t1, pet, "rigid", threads=0)


def test_itk_threads_one_registration_at_a_time():
    """Two threads that set ITK's thread count run their blocks one after the other, each under its own count, and
    the count before them comes back at the end (two overlapping blocks would restore it under each other, and the
    later one would finish on every core)."""
    import threading
    import time

    import SimpleITK as sitk

    from asfe3d.registration.register import itk_threads

    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(3)
    try:
        inside_a, seen, order = threading.Event(), {}, []

        def a():
            with itk_threads(1):
                order.append("a in")
                inside_a.set()
                time.sleep(0.2)
                seen["a"] = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
                order.append("a out")

        def b():
            inside_a.wait()
            with itk_threads(1):
                order.append("b in")
                time.sleep(0.05)
                seen["b"] = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()

        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert order == ["a in", "a out", "b in"] and seen == {"a": 1, "b": 1}
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 3
        with itk_threads(None):  # None: the count left as it is
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 3
        with itk_threads(2), itk_threads(1):  # nested in one thread: each restores its own
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 3
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def test_inputs_that_cannot_be_registered_are_refused_in_one_line(case):
    """A PET of a few slices, an MRI slab and a constant image used to end in ITK's multi-line exceptions
    (SmoothingRecursiveGaussianImageFilter, ImageMomentsCalculator); they are refused with the sizes or values."""
    t1, pet, _, _ = case
    nz = pet.GetSize()[2]
    with pytest.raises(Asfe3dInputError, match=r"PET input has 2 voxels along z \(size 64 x 64 x 2\): registration "
                                               r"needs at least 4"):
        register_pet_to_mri(t1, pet[:, :, nz // 2: nz // 2 + 2], "rigid")
    with pytest.raises(Asfe3dInputError, match=r"MRI input has 6 voxels along z \(size 49 x 58 x 6, 4 mm\): "
                                               r"registration needs at least 8 there \(32 mm"):
        register_pet_to_mri(t1[:, :, 20:26], pet, "rigid")
    flat = sitk.Image(pet.GetSize(), sitk.sitkFloat32) + 5.0
    flat.CopyInformation(pet)
    for image, words in ((flat, "PET input is constant (every finite voxel 5)"),
                         (flat * 0, "PET input is constant (every finite voxel 0)")):
        with pytest.raises(Asfe3dInputError, match=rf"^{words.replace('(', '[(]').replace(')', '[)]')}"):
            register_pet_to_mri(t1, image, "rigid")
    with pytest.raises(Asfe3dInputError) as err:
        register_pet_to_mri(t1, pet[:, :, :3], "affine")
    assert "\n" not in str(err.value)
    assert register_pet_to_mri(t1, flat, "none").method == "none"  # nothing registered: nothing refused here


def test_bad_images_masks_and_booleans_are_refused_quoting_them(case):
    t1, pet, _, _ = case
    with pytest.raises(TypeError, match="mri must be a SimpleITK image, got ndarray"):
        register_pet_to_mri(sitk.GetArrayFromImage(t1), pet)
    with pytest.raises(TypeError, match="pet must be a SimpleITK image, got NoneType"):
        register_pet_to_mri(t1, None)
    for key in ("threads", "seed", "iterations"):  # True is an int to Python, not a count or a seed
        with pytest.raises(ValueError, match=f"{key} must be .*got True"):
            register_pet_to_mri(t1, pet, **{key: True})
    for key in ("use_mask", "mirrors", "assess", "check_mirror", "progress"):  # "no" would be truthy
        with pytest.raises(ValueError, match=f"{key} must be True or False, got 'no'"):
            register_pet_to_mri(t1, pet, **{key: "no"})
    from asfe3d.registration import head_mask

    head = head_mask(t1)
    with pytest.raises(ValueError, match=r"head must be on the MRI grid, got size \(64, 64"):
        register_pet_to_mri(t1, pet, head=head_mask(pet))
    with pytest.raises(ValueError, match=r"head has no voxel in the head \(no value >= 0.5 in size \(49, 58, 47\)\)"):
        register_pet_to_mri(t1, pet, head=head * 0)


def test_head_mask_of_another_tool_is_read_as_zero_and_one(case):
    """A 0/255 mask was used undilated (ITK's dilation looks for 1), a 0/0.5 float mask ended in ITK's "must have 1
    or more points": both now register exactly as the 0/1 mask does."""
    t1, pet, _, _ = case
    from asfe3d.registration import head_mask

    head = head_mask(t1)
    kwargs = dict(sampling=0.2, multistart="never", assess=False)
    ref = register_pet_to_mri(t1, pet, head=head, **kwargs).transform.GetParameters()
    for other in (sitk.Cast(head * 255, sitk.sitkUInt8), sitk.Cast(head, sitk.sitkFloat32) * 0.5):
        assert register_pet_to_mri(t1, pet, head=other, **kwargs).transform.GetParameters() == ref


def test_pet_with_nan_background_registers(case):
    """NaN outside the brain (as SPM writes images): ITK's moments initialiser never returned (the command refuses
    NaN unless --allow-nonfinite repairs it, the API hung); NaN and Inf are now background (0) for the registration
    and the QC."""
    t1, pet, true, brain = case
    arr = sitk.GetArrayFromImage(pet)
    nan_bg = sitk.GetImageFromArray(np.where(arr < 0.05 * arr.max(), np.nan, arr).astype(np.float32))
    nan_bg.CopyInformation(pet)
    res = register_pet_to_mri(t1, nan_bg, "rigid", sampling=0.2)
    assert res.qc is not None and res.qc.verdict == "pass", res.qc.summary()
    assert registration_error_mm(true, res.transform, brain)["mean"] < 2.0


@pytest.mark.parametrize("which", ["mri", "pet"])
def test_z_scored_inputs_register(case, which):
    """A z-scored image (mean 0, as MONAI's NormalizeIntensity writes it) has a total mass near zero: the moments
    start was undefined and ITK stopped with "All samples map outside moving image buffer" (exit 1)."""
    t1, pet, true, brain = case

    def z_scored(image: sitk.Image) -> sitk.Image:
        arr = sitk.GetArrayFromImage(image).astype(np.float32)
        out = sitk.GetImageFromArray((arr - arr.mean()) / arr.std())
        out.CopyInformation(image)
        return out

    mri, moving = (z_scored(t1), pet) if which == "mri" else (t1, z_scored(pet))
    res = register_pet_to_mri(mri, moving, "rigid", sampling=0.2)
    assert registration_error_mm(true, res.transform, brain)["mean"] < 1.5
    assert res.qc is not None and res.qc.verdict == "pass", res.qc.summary()


def test_linear_part_ras_is_the_transform_in_ras_and_says_when_it_is_not_all_of_it():
    rigid = sitk.Euler3DTransform((5.0, -3.0, 8.0), 0.1, -0.2, 0.05, (2.0, -7.0, 4.0))
    matrix, exact = linear_part_ras(rigid)
    assert exact and matrix.shape == (4, 4) and np.allclose(matrix[3], [0, 0, 0, 1])
    ras = np.array([12.0, -40.0, 25.0])
    itk = np.asarray(rigid.TransformPoint(tuple(ras * [-1, -1, 1]))) * [-1, -1, 1]
    np.testing.assert_allclose((matrix @ [*ras, 1.0])[:3], itk, atol=1e-9)
    # the deformable method's composite: the rigid part, flagged as not the whole transform
    bspline = sitk.BSplineTransform(3, 3)
    part, exact = linear_part_ras(sitk.CompositeTransform([rigid, bspline]))
    assert not exact and np.allclose(part, matrix)
    wrapped = sitk.Transform(sitk.CompositeTransform([rigid, bspline]))  # as read from a .tfm: its name "Transform"
    part, exact = linear_part_ras(wrapped)
    assert not exact and np.allclose(part, matrix)
    identity, exact = linear_part_ras(sitk.Transform(3, sitk.sitkIdentity))
    assert exact and np.allclose(identity, np.eye(4))
    with pytest.raises(TypeError, match=r"3D SimpleITK Transform, got \[\[1"):
        linear_part_ras([[1, 0], [0, 1]])
    with pytest.raises(TypeError, match="3D SimpleITK Transform"):
        linear_part_ras(sitk.Euler2DTransform())


def test_transform_from_ras_refuses_what_is_not_an_affine() -> None:
    """A 3x3 matrix gave numpy's matmul error, a NaN an ITK transform of NaN; quoted now."""
    from asfe3d.registration.register import transform_from_ras

    for bad in (np.eye(3), np.full((4, 4), np.nan), np.ones((4, 4))):
        with pytest.raises(ValueError, match=r"matrix must be a finite 4x4 affine \(last row 0, 0, 0, 1\), got \[\["):
            transform_from_ras(bad)
    moved = np.eye(4)
    moved[:3, 3] = [1.0, 2.0, 3.0]
    assert transform_from_ras(moved).GetTranslation() == (-1.0, -2.0, 3.0)  # RAS -> LPS
