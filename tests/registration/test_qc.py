"""Tests of the registration QC, the multi-start search and the coarser finest level (MNI at 4 mm, PET at 4 mm)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.registration import (
    QCThresholds,
    RegistrationQC,
    assess_registration,
    head_mask,
    register_pet_to_mri,
    registration_error_mm,
    start_name,
    start_orientations,
    transform_size,
)
from asfe3d.registration.corrupt import reorient_voxels


@pytest.fixture(scope="module")
def case5(case):
    t1, pet, true, brain = case
    return t1, pet, true, brain, head_mask(t1)


@pytest.fixture(scope="module")
def good(case5):
    t1, pet, _, _, head = case5
    return register_pet_to_mri(t1, pet, "rigid", sampling=0.2, head=head)


def test_good_pair_passes(case5, good):
    t1, pet, true, brain, head = case5
    assert registration_error_mm(true, good.transform, brain)["mean"] < 1.0
    assert good.qc is not None and good.qc.verdict == "pass", good.qc.summary()
    assert good.start == "moments" and good.starts_tried == 0 and good.qc_plain is None
    qc = assess_registration(t1, pet, good.transform, head)
    assert qc.verdict == "pass" and qc.reasons == [] and qc.flags == []
    n = qc.numbers
    assert n["mi_margin"] > 0.1 and n["pet_in_head"] > 0.9 and n["rotation_deg"] < 15.0
    d = qc.as_dict()
    assert d["verdict"] == "pass" and set(d["numbers"]) == set(n)
    assert qc.summary().startswith("registration QC pass: MI ") and "\n" not in qc.summary()


def test_misaligned_result_fails(case5, good):
    """The right images with a transform 25 mm off: PET out of the head and not an MI optimum."""
    t1, pet, _, _, head = case5
    off = sitk.CompositeTransform([good.transform, sitk.TranslationTransform(3, (0.0, 0.0, 25.0))])
    qc = assess_registration(t1, pet, off, head)
    assert qc.verdict == "fail" and "mi_margin" in qc.flags, qc.summary()
    assert "registration QC fail: " in qc.summary()


def _noise_like(pet: sitk.Image, seed: int) -> sitk.Image:
    arr = np.random.default_rng(seed).gamma(2.0, 1000.0, sitk.GetArrayViewFromImage(pet).shape).astype(np.float32)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(pet)
    return out


def _cube_like(pet: sitk.Image) -> sitk.Image:
    arr = np.zeros(sitk.GetArrayViewFromImage(pet).shape, np.float32)
    z, y, x = (s // 2 for s in arr.shape)
    arr[z - 12:z + 12, y - 12:y + 12, x - 12:x + 12] = 5000.0
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(pet)
    return sitk.SmoothingRecursiveGaussian(out, 4.0)


@pytest.mark.parametrize("kind", ["noise", "cube"])
def test_noise_and_cube_fail(case5, kind):
    t1, pet, _, _, head = case5
    bad = _noise_like(pet, 3) if kind == "noise" else _cube_like(pet)
    res = register_pet_to_mri(t1, bad, "rigid", sampling=0.2, head=head, multistart="never")
    assert res.qc is not None and res.qc.verdict == "fail", res.qc.summary()
    if kind == "noise":
        assert "pet_noise" in res.qc.flags


def test_turned_pet_fails_plain_and_multistart_recovers(case5):
    t1, pet, true, brain, head = case5
    turned, q = reorient_voxels(pet, [[1, 0, 0], [0, 0, -1], [0, 1, 0]])  # 90 degrees about x, header silent
    truth = sitk.CompositeTransform([q, true])
    plain = register_pet_to_mri(t1, turned, "rigid", sampling=0.2, head=head, multistart="never")
    assert registration_error_mm(truth, plain.transform, brain)["mean"] > 10.0
    assert plain.qc is not None and plain.qc.verdict == "fail", plain.qc.summary()
    res = register_pet_to_mri(t1, turned, "rigid", sampling=0.2, head=head)
    assert registration_error_mm(truth, res.transform, brain)["mean"] < 1.5
    # found among the axis-aligned starts: the oblique grid is not scored
    assert res.start.startswith("rotate 90 deg about") and res.starts_tried == len(start_orientations(
        oblique_step_deg=None))
    assert res.qc_plain is not None and res.qc_plain.verdict == "fail"
    # aligned, but a header off by a 90-degree turn cannot say which side is left, nor can these symmetric images
    # (probe 41 #1: a flipped PET aligned as a turn, left and right swapped, was only warned about)
    assert res.qc is not None and res.qc.verdict == "fail", res.qc.summary()
    assert [f for f in res.qc.flags if f != "note"] == ["left_right_unknown", "rotation"], res.qc.summary()
    assert "if the header flipped an axis rather than turned it, left and right are now swapped" in res.qc.summary()
    assert 80.0 < res.qc.numbers["rotation_deg"] < 100.0
    again = register_pet_to_mri(t1, turned, "rigid", sampling=0.2, head=head)
    assert again.transform.GetParameters() == res.transform.GetParameters()


def test_coarser_finest_level(case5):
    t1, pet, true, brain, head = case5
    res = register_pet_to_mri(t1, pet, "rigid", sampling=0.5, head=head, finest_mm=8.0)
    assert res.bin_factors == (2, 2, 2)
    assert registration_error_mm(true, res.transform, brain)["mean"] < 2.0
    assert register_pet_to_mri(t1, pet, "rigid", sampling=0.2, head=head, assess=False,
                               multistart="never").bin_factors == (1, 1, 1)


def test_transform_size_and_start_names():
    t = sitk.Euler3DTransform()
    t.SetCenter((10.0, 0.0, 0.0))
    t.SetRotation(0.0, 0.0, math.radians(20.0))
    t.SetTranslation((3.0, 4.0, 0.0))
    size = transform_size(t, (10.0, 0.0, 0.0))
    assert size["rotation_deg"] == pytest.approx(20.0, abs=1e-6)
    assert size["translation_mm"] == pytest.approx(5.0) and size["mirrored"] == 0.0
    mirror = sitk.AffineTransform(3)
    mirror.SetMatrix([-1.1, 0, 0, 0, 1, 0, 0, 0, 1])
    size = transform_size(mirror, (0.0, 0.0, 0.0))
    assert size["mirrored"] == 1.0 and size["scale_max"] == pytest.approx(1.1)
    starts = start_orientations()
    assert len(starts) == 24 + 6 + (7**3 - 1) and np.allclose(starts[0], np.eye(3))  # +-30 single-axis in the grid
    assert len(start_orientations(mirrors=True)) == len(starts) + 24
    assert len(start_orientations(mirrors=False, intermediate_deg=(), oblique_step_deg=None)) == 24
    assert len({tuple(np.round(m, 6).ravel() + 0.0) for m in starts}) == len(starts)  # no duplicates
    # every orientation with Euler angles within +-45 degrees lies within 13 degrees of a start (8 typically)
    stack, rng = np.stack(starts), np.random.default_rng(0)
    nearest = []
    for angles in rng.uniform(-45.0, 45.0, (300, 3)):
        t = sitk.Euler3DTransform()
        t.SetRotation(*np.radians(angles))
        cosines = (np.einsum("nij,ij->n", stack, np.asarray(t.GetMatrix()).reshape(3, 3)) - 1.0) / 2.0
        nearest.append(float(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))).min()))
    assert max(nearest) < 13.0 and float(np.median(nearest)) < 8.0
    assert start_name(np.eye(3)) == "identity"
    assert start_name(np.diag([-1.0, 1.0, 1.0])) == "mirror x"
    assert start_name(np.diag([-1.0, -1.0, 1.0])) == "rotate 180 deg about z"
    assert start_name([[1, 0, 0], [0, 0, -1], [0, 1, 0]]) == "rotate 90 deg about x"


def test_bad_arguments(case5, good):
    t1, pet, _, _, head = case5
    tfm = good.transform
    with pytest.raises(ValueError, match="grid_mm must be a number in \\[1, 16\\], got 0.5"):
        assess_registration(t1, pet, tfm, head, grid_mm=0.5)
    with pytest.raises(ValueError, match="shift_mm .* got -1"):
        assess_registration(t1, pet, tfm, head, shift_mm=-1)
    with pytest.raises(ValueError, match="signal_fraction .* got 1.0"):
        assess_registration(t1, pet, tfm, head, signal_fraction=1.0)
    with pytest.raises(ValueError, match="bins must be an integer in \\[8, 256\\], got 4"):
        assess_registration(t1, pet, tfm, head, bins=4)
    with pytest.raises(ValueError, match="head must be on the MRI grid"):
        assess_registration(t1, pet, tfm, sitk.Image([4, 4, 4], sitk.sitkUInt8))
    with pytest.raises(TypeError, match="transform must be a SimpleITK transform, got str"):
        assess_registration(t1, pet, "rigid", head)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pet must be a SimpleITK image, got ndarray"):
        assess_registration(t1, np.zeros((3, 3, 3)), tfm, head)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="head mask has no voxel"):
        assess_registration(t1, pet, tfm, head * 0)
    with pytest.raises(ValueError, match="QCThresholds.min_mi_margin \\(0.5\\) must not exceed"):
        QCThresholds(min_mi_margin=0.5)
    with pytest.raises(ValueError, match="QCThresholds.scale_range .* got \\(1.5, 1.0\\)"):
        QCThresholds(scale_range=(1.5, 1.0))
    with pytest.raises(ValueError, match="verdict must be one of .* got 'ok'"):
        RegistrationQC("ok")
    with pytest.raises(ValueError, match="multistart must be one of .* got 'sometimes'"):
        register_pet_to_mri(t1, pet, multistart="sometimes")
    with pytest.raises(ValueError, match="finest_mm must be None or a finite number > 0, got 0"):
        register_pet_to_mri(t1, pet, finest_mm=0)
    with pytest.raises(ValueError, match="multistart='auto' needs assess=True"):
        register_pet_to_mri(t1, pet, assess=False)
    with pytest.raises(ValueError, match="matrix must be a 3x3 signed permutation"):
        reorient_voxels(pet, np.eye(3) * 2)
    with pytest.raises(ValueError, match="intermediate_deg values must be in \\(0, 90\\), got 90"):
        start_orientations(intermediate_deg=(90,))
    with pytest.raises(ValueError, match="oblique_step_deg must be None or in \\(0, 90\\], got 0"):
        start_orientations(oblique_step_deg=0)
    with pytest.raises(ValueError, match="oblique_limit_deg must be in \\[0, 90\\), got 90"):
        start_orientations(oblique_limit_deg=90)
    with pytest.raises(ValueError, match="matrix must be orthogonal"):
        start_name(np.eye(3) * 2)
    with pytest.raises(ValueError, match="centre must be three finite coordinates"):
        transform_size(tfm, (0.0, 0.0))


def test_partial_field_of_view_warns_and_wrong_alignments_of_it_still_fail(case5):
    """A PET of the top of the head only (38 % of its slices), correctly aligned, used to fail ("covers 21 % of the
    MRI head, need 30 %"): refused under --qc strict though right. It now warns that its field of view holds part of
    the head; the same PET misaligned still fails."""
    t1, pet, true, _, head = case5
    nz = pet.GetSize()[2]
    top = pet[:, :, int(nz * 0.62):]
    qc = assess_registration(t1, top, true, head)
    assert qc.verdict == "warn" and qc.flags[0] == "pet_fov", qc.summary()
    assert qc.numbers["head_in_pet_fov"] < 0.3 and qc.numbers["head_covered_in_fov"] > 0.9
    assert "field of view holds only" in qc.reasons[0]
    for wrong in ((0, 0, 30), (25, 0, 0), (0, 0, -40)):
        shift = sitk.TranslationTransform(3, wrong)
        bad = assess_registration(t1, top, sitk.CompositeTransform([true, shift]), head)
        assert bad.verdict == "fail", (wrong, bad.summary())
    assert QCThresholds().min_head_in_fov == 0.1
    # the same PET as SPM reslices it: its whole grid, NaN where it did not reach (or read with allow_nonfinite and
    # given back its NaN by with_unmeasured): the same verdict and the same share of the head in its field of view;
    # the NaN counted as seen made it "covers 21 % of the head" and a failure
    from asfe3d.registration.qc import with_unmeasured

    unmeasured = np.zeros(pet.GetSize(), bool)
    unmeasured[:, :, : int(nz * 0.62)] = True
    zeroed = sitk.Image(pet)
    zeroed[:, :, : int(nz * 0.62)] = 0  # as read with allow_nonfinite: 0
    nan = with_unmeasured(zeroed, unmeasured)
    assert np.isnan(sitk.GetArrayViewFromImage(nan)).sum() == unmeasured.sum()
    qc_nan = assess_registration(t1, nan, true, head)
    assert qc_nan.verdict == "warn" and qc_nan.flags[0] == "pet_fov", qc_nan.summary()
    assert abs(qc_nan.numbers["head_in_pet_fov"] - qc.numbers["head_in_pet_fov"]) < 0.02
    assert assess_registration(t1, zeroed, true, head).verdict == "fail"  # 0 is "no uptake", not "not measured"
    assert with_unmeasured(pet, None) is pet
    with pytest.raises(ValueError, match=r"unmeasured must have the image's shape \(\d+, \d+, \d+\), got \(2, 2\)"):
        with_unmeasured(pet, np.zeros((2, 2), bool))


def _respaced(image: sitk.Image, factors: tuple[float, float, float]) -> sitk.Image:
    """The same voxels with a header voxel size ``factors`` times the true one (a wrong header)."""
    out = sitk.Image(image)
    out.SetSpacing([s * f for s, f in zip(image.GetSpacing(), factors)])
    return out


@pytest.mark.parametrize("factors, axis", [((1.0, 1.0, 1.2), "up-down"), ((1.15, 1.15, 1.15), "all three axes")])
def test_wrong_pet_voxel_size_fails_on_the_stretch_it_fits(case5, good, factors, axis):
    """A PET header's voxel size 15-20 % wrong left 3.5-6 mm of error judged "pass" or "warn"; the stretch that
    fits it better is found and named. The right pair gains nothing by a stretch."""
    t1, pet, _, _, head = case5
    assert good.qc.numbers["scale_gain"] < 0 and "scale_fit" not in good.qc.flags
    wrong = register_pet_to_mri(t1, _respaced(pet, factors), "rigid", sampling=0.2, head=head, multistart="never")
    assert wrong.qc.verdict == "fail" and "scale_fit" in wrong.qc.flags, wrong.qc.summary()
    # the header's voxel size is too large, so the PET's image must shrink (probe 41 #3: "stretched by 1.1" said
    # the opposite)
    assert wrong.qc.numbers["scale_gain"] > 0.15 and (
        f"the PET fits better shrunk by 10% {'in' if 'all' in axis else 'along'} {axis}") in wrong.qc.summary()
    assert "its header's voxel size may be about 10% too large" in wrong.qc.summary()


def test_one_kind_of_image_given_as_both_fails(case5, good):
    """A PET given with its own SUV copy as the "MRI", or a T1 given with a copy of itself as the "PET", passed."""
    t1, pet, _, _, head = case5
    copy = sitk.Cast(pet, sitk.sitkFloat32) * 0.0123  # the same PET in other units
    qc = assess_registration(copy, pet, sitk.Transform(3, sitk.sitkIdentity), head_mask(copy))
    assert qc.verdict == "fail" and "same_kind" in qc.flags and qc.numbers["same_kind"] > 0.95, qc.summary()
    assert good.qc.numbers["same_kind"] < 0.95 and "same_kind" not in good.qc.flags
    t1_as_pet = sitk.SmoothingRecursiveGaussian(sitk.Cast(t1, sitk.sitkFloat32), 2.0)
    qc = assess_registration(t1, t1_as_pet, sitk.Transform(3, sitk.sitkIdentity), head)
    assert "same_kind" in qc.flags, qc.summary()


def _sharp_and_smooth() -> tuple[sitk.Image, sitk.Image]:
    """A head of fine texture (an MRI's detail) and the same head blurred to 8 mm (a PET), on one 2 mm grid."""
    from scipy.ndimage import gaussian_filter

    z, y, x = np.mgrid[:48, :48, :48]
    head = ((x - 24) ** 2 + (y - 24) ** 2 + ((z - 24) / 1.2) ** 2) < 20 ** 2
    texture = gaussian_filter(np.random.default_rng(7).normal(size=head.shape), 1.0)
    sharp = (head * (100.0 + 400.0 * texture)).clip(0).astype(np.float32)
    smooth = gaussian_filter(sharp, 8.0 / 2.355 / 2.0).astype(np.float32)
    images = []
    for arr in (sharp, smooth):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((2.0, 2.0, 2.0))
        images.append(img)
    return images[0], images[1]


def test_swapped_inputs_on_one_grid_are_named_when_the_registration_fails():
    """Swapped inputs on grids of one voxel size were judged a failed registration, the swap unnamed: with the
    MRI input as smooth as a PET and the PET input as sharp as an MRI, a failed verdict names it first."""
    from asfe3d.registration.roles import swap_sign

    sharp, smooth = _sharp_and_smooth()
    arr = {k: sitk.GetArrayViewFromImage(v) for k, v in (("sharp", sharp), ("smooth", smooth))}
    assert swap_sign(arr["smooth"], arr["sharp"], (2.0,) * 3, (2.0,) * 3, 0.9).startswith("the inputs look swapped")
    assert swap_sign(arr["sharp"], arr["smooth"], (2.0,) * 3, (2.0,) * 3, 0.9) is None  # the right way round
    assert swap_sign(arr["smooth"], arr["sharp"], (2.0,) * 3, (2.0,) * 3, 0.1) is None  # a noisy PET's detail
    off = sitk.TranslationTransform(3, (0.0, 0.0, 30.0))  # a failed alignment of the swapped pair
    qc = assess_registration(smooth, sharp, off, head_mask(smooth))
    assert qc.verdict == "fail" and qc.flags[0] == "swapped", qc.summary()


def test_low_count_pet_is_not_noise_and_spikes_do_not_break_registration(case5):
    """An unfiltered low-count PET (a few counts per voxel) was failed as noise and its signal as too small; three
    MRI voxels at 100 times its maximum stopped ITK ("Zero-valued spacing"), 30 PET spikes moved it 16 mm."""
    t1, pet, true, brain, head = case5
    arr = sitk.GetArrayFromImage(pet).astype(np.float64)
    counts = np.random.default_rng(5).poisson(np.clip(arr, 0, None) / arr.max() * 4.0).astype(np.float32)
    noisy = sitk.GetImageFromArray(counts)
    noisy.CopyInformation(pet)
    res = register_pet_to_mri(t1, noisy, "rigid", sampling=0.2, head=head)
    assert res.qc.verdict != "fail" and res.qc.numbers["pet_smoothness_native"] < 0.5, res.qc.summary()
    assert registration_error_mm(true, res.transform, brain)["mean"] < 2.0
    spiky_pet = sitk.GetArrayFromImage(pet)
    spiky_pet.flat[np.random.default_rng(6).choice(spiky_pet.size, 30, replace=False)] = spiky_pet.max() * 1e4
    spiky_mri = sitk.GetArrayFromImage(t1)
    spiky_mri.flat[[1000, 2000, 3000]] = spiky_mri.max() * 100
    images = []
    for arr_, like in ((spiky_mri, t1), (spiky_pet, pet)):
        img = sitk.GetImageFromArray(arr_)
        img.CopyInformation(like)
        images.append(img)
    res = register_pet_to_mri(images[0], images[1], "rigid", sampling=0.2)
    assert registration_error_mm(true, res.transform, brain)["mean"] < 1.5 and res.qc.verdict != "fail", \
        res.qc.summary()


def test_credible_stretches_all_axes_needs_two_one_axis_gains():
    from asfe3d.registration.qc import credible_stretches

    mi = 1.0
    # the all-axes stretch gains most, but only one one-axis stretch by 1.1 gains: it is dropped (the spill case)
    spill = [(0.9, 0, 1.1), (1.05, 1, 1.1), (0.95, 2, 1.1), (1.16, 3, 1.1), (0.8, 0, 0.9), (0.8, 3, 0.9)]
    assert max(credible_stretches(spill, mi)) == (1.05, 1, 1.1)
    # two one-axis stretches by 1.1 gain too: the all-axes one stands (a voxel size wrong on all axes)
    wrong = [(1.05, 0, 1.1), (1.04, 1, 1.1), (0.95, 2, 1.1), (1.16, 3, 1.1)]
    assert max(credible_stretches(wrong, mi)) == (1.16, 3, 1.1)
    # the support is counted per factor: gains by 0.9 do not support the stretch by 1.1
    mixed = [(1.05, 0, 0.9), (1.04, 1, 0.9), (0.9, 0, 1.1), (0.9, 1, 1.1), (1.2, 3, 1.1), (1.01, 3, 0.9)]
    assert max(credible_stretches(mixed, mi)) == (1.05, 0, 0.9)
    assert credible_stretches([], mi) == []


def test_thin_slab_field_of_view_warns_like_a_top_half(case5):
    """A PET slab through the middle of the head, correctly aligned, whose signal still covers 30 % of the head,
    passed without a word while a top half warned: both now say the PET's field of view holds part of the head."""
    t1, pet, true, _, head = case5
    nz = pet.GetSize()[2]
    slab = pet[:, :, int(nz * 0.45):int(nz * 0.80)]
    qc = assess_registration(t1, slab, true, head)
    n = qc.numbers
    assert n["head_covered"] >= QCThresholds().min_head_covered and n["head_in_pet_fov"] < 0.5, n
    assert qc.verdict == "warn" and qc.flags == ["pet_fov"], qc.summary()
    assert f"holds only {n['head_in_pet_fov']:.0%} of the MRI head" in qc.reasons[0]
    # the whole PET: no note (and the note's limit can be set)
    assert "pet_fov" not in assess_registration(t1, pet, true, head).flags
    assert assess_registration(t1, slab, true, head, thresholds=QCThresholds(warn_head_in_fov=0.2)).verdict == "pass"
    with pytest.raises(ValueError, match="min_head_in_fov \\(0.6\\) must not exceed warn_head_in_fov"):
        QCThresholds(min_head_in_fov=0.6)


def _header_turned(image: sitk.Image, degrees: tuple[float, float, float]) -> tuple[sitk.Image, sitk.Transform]:
    """The same voxels with the header turned about the image's centre (an oblique header error), and the turn."""
    turn = sitk.Euler3DTransform()
    turn.SetCenter(image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in image.GetSize()]))
    turn.SetRotation(*[math.radians(d) for d in degrees])
    out = sitk.Image(image)
    rotation = np.asarray(turn.GetMatrix()).reshape(3, 3)
    out.SetDirection((rotation @ np.asarray(image.GetDirection()).reshape(3, 3)).ravel().tolist())
    out.SetOrigin(turn.TransformPoint(image.GetOrigin()))
    return out, turn


def test_oblique_header_error_about_two_axes_is_recovered(case5):
    """25 degrees about x and 25 about y at once: every single-axis start ended 22 mm off (fail); the search's
    oblique grid of starts recovers it (0.3 mm), with the warning that the header turned beyond head motion."""
    t1, pet, true, brain, head = case5
    turned, turn = _header_turned(pet, (25.0, 25.0, 0.0))
    res = register_pet_to_mri(t1, turned, "rigid", sampling=0.2, head=head)
    assert registration_error_mm(sitk.CompositeTransform([turn, true]), res.transform, brain)["mean"] < 1.5
    assert res.starts_tried == len(start_orientations()) and res.start.startswith("rotate "), res.start
    assert res.qc is not None and res.qc.verdict == "warn" and "rotation" in res.qc.flags, res.qc.summary()


@pytest.mark.parametrize("factor, words", [(1.1, "shrunk by 10% along front-back (MI +20%): its header's voxel size "
                                                 "may be about 10% too large there"),
                                           (0.9, "enlarged by 10% along front-back (MI +20%): its header's voxel size "
                                                 "may be about 10% too small there")])
def test_the_stretch_is_named_as_the_pets_image_needs_it(factor, words):
    """Probe 41 #3: the factor scales the MRI-to-PET transform (1.1 samples the PET farther out: its image shrinks),
    and "stretched by 1.1" told the user of a PET with too large voxel sizes that it was too small."""
    from asfe3d.registration.qc import _kind_and_scale_checks

    reasons: list = []
    numbers = {"same_kind": 0.5, "scale_gain": 0.2, "scale_gain_axis": 1.0, "scale_gain_factor": factor}
    _kind_and_scale_checks(numbers, QCThresholds(), reasons)
    assert [(v, f) for v, f, _ in reasons] == [("fail", "scale_fit")] and words in reasons[0][2], reasons


def test_the_left_right_finding_survives_the_affine_stage(case5, good):
    """Review 43 #2: the QC of an affine or deformable result carried over the rigid stage's ``mirrored_lr`` and
    notes, not ``left_right_unknown``: a 90/180-degree turn registered affinely was back to "warn"."""
    from asfe3d.registration.qc import RegistrationQC
    from asfe3d.registration.register import _reassess

    t1, pet, _, _, head = case5
    rigid = RegistrationQC(verdict="pass")
    rigid.add_finding("fail", "left_right_unknown", "left and right of the registered PET are unknown")
    rigid.add_finding("warn", "rotation", "rotation of 91 deg is beyond head motion")
    qc = _reassess(t1, pet, good.transform, head, rigid)
    assert qc.verdict == "fail" and "left_right_unknown" in qc.flags, qc.summary()
