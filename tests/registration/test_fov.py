"""A PET with a field of view much larger than the head (asfe3d.registration.fov and its use by the registration)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk

from asfe3d.io.convert import sitk_to_numpy_xyz
from asfe3d.registration import register_pet_to_mri, registration_error_mm
from asfe3d.registration.fov import HeadRegion, head_extent, large_fov, locate_head
from asfe3d.registration.register import head_mask


def whole_body(pet: sitk.Image, below_mm: float = 700.0, side_mm: float = 100.0) -> sitk.Image:
    """``pet`` at the top of a longer field of view (same spacing and physical positions), with a trunk of low
    uptake, a hot heart and a hotter bladder below the head, smoothed to PET resolution."""
    sp = np.asarray(pet.GetSpacing())
    extra = int(round(below_mm / sp[2]))
    pad_xy = int(round(side_mm / sp[0]))
    arr = sitk.GetArrayFromImage(pet).astype(np.float32)  # z, y, x
    nz, ny, nx = arr.shape
    big = np.zeros((nz + extra, ny + 2 * pad_xy, nx + 2 * pad_xy), np.float32)
    big[extra:, pad_xy:pad_xy + ny, pad_xy:pad_xy + nx] = arr
    top = float(np.percentile(arr[arr > 0], 99))
    z, y, x = np.indices(big.shape[:3], dtype=np.float32)
    xm, ym = (x - big.shape[2] / 2) * sp[0], (y - big.shape[1] / 2) * sp[1]
    depth = (extra - z) * sp[2]  # mm below the head PET's first slice
    trunk = (depth > 40) & ((xm / 170) ** 2 + (ym / 110) ** 2 < 1)
    big[trunk] = 0.15 * top
    big[trunk & ((xm - 30) ** 2 + ym ** 2 + (depth - 200) ** 2 < 45 ** 2)] = 0.7 * top
    big[trunk & (xm ** 2 + (ym + 20) ** 2 + (depth - 600) ** 2 < 30 ** 2)] = 2.5 * top
    out = sitk.GetImageFromArray(big)
    out.SetSpacing(pet.GetSpacing())
    out.SetDirection(pet.GetDirection())
    out.SetOrigin(pet.TransformIndexToPhysicalPoint([-pad_xy, -pad_xy, -extra]))
    return out


def test_head_extent_and_large_fov(case):
    t1, pet, _, _ = case
    centre, size = head_extent(head_mask(t1))
    assert 120 < size < 260 and np.all(np.isfinite(centre))
    assert not large_fov(pet, size)
    assert large_fov(whole_body(pet), size)
    with pytest.raises(ValueError, match="empty"):
        head_extent(head_mask(t1) * 0)
    with pytest.raises(ValueError, match="head_size_mm must be > 0, got 0"):
        large_fov(pet, 0)


def test_locate_head_finds_the_head_and_crops_without_resampling(case):
    t1, pet, true, _ = case
    body = whole_body(pet)
    centre, size = head_extent(head_mask(t1))
    target = np.asarray(true.TransformPoint(centre.tolist()))  # where the head's centre lies in the PET

    def mi(transform):  # a stand-in score: closeness to the true place
        return -float(np.linalg.norm(np.asarray(transform.TransformPoint(centre.tolist())) - target))

    region = locate_head(body, centre, size, start_mi=-1e9, mi=mi)
    assert isinstance(region, HeadRegion) and region.axis == 2
    assert np.linalg.norm(np.asarray(region.centre) - target) < 25
    crop = region.crop(body)
    assert crop.GetSize() == region.size
    # the same physical positions: a voxel of the crop is the whole PET's voxel at the same point
    p = crop.TransformIndexToPhysicalPoint([3, 4, 5])
    assert crop[3, 4, 5] == body[body.TransformPhysicalPointToIndex(p)]
    assert "much larger than the MRI's head" in region.describe(body)
    assert locate_head(body, centre, size, start_mi=1.0, mi=mi) is None  # nothing beats the start
    with pytest.raises(ValueError, match="got -5"):
        locate_head(body, centre, -5, start_mi=0.0, mi=mi)


def test_whole_body_pet_is_registered_on_the_head(case):
    t1, pet, true, mask = case
    body = whole_body(pet)
    result = register_pet_to_mri(t1, body, "rigid", sampling=0.2)
    assert result.pet_region is not None and len(result.pet_region) == 6
    assert result.qc is not None and result.qc.verdict != "fail", result.qc.reasons
    assert any("much larger than the MRI's head" in n for n in result.qc.notes)
    assert registration_error_mm(true, result.transform, mask)["mean"] < 2.0



def test_a_head_to_chest_pet_wider_than_long_is_searched_along_its_body_axis(case):
    """600 mm across and about 500 mm long: the longest axis is not the body's; every large axis is searched."""
    t1, pet, true, mask = case
    body = whole_body(pet, below_mm=250.0, side_mm=200.0)
    fov = [s * n for s, n in zip(body.GetSpacing(), body.GetSize())]
    assert fov[2] < fov[0]
    centre, size = head_extent(head_mask(t1))
    target = np.asarray(true.TransformPoint(centre.tolist()))
    region = locate_head(body, centre, size, start_mi=-1e9,
                         mi=lambda t: -float(np.linalg.norm(np.asarray(t.TransformPoint(centre.tolist())) - target)))
    assert region is not None and region.axis == 2
    assert np.linalg.norm(np.asarray(region.centre) - target) < 25
    result = register_pet_to_mri(t1, body, "rigid", sampling=0.2)
    assert result.qc is not None and result.qc.verdict != "fail", result.qc.reasons
    assert registration_error_mm(true, result.transform, mask)["mean"] < 2.0


def _grid(size, spacing, origin, direction=None) -> sitk.Image:
    img = sitk.Image([int(v) for v in size], sitk.sitkFloat32)
    img.SetSpacing([float(v) for v in spacing])
    img.SetOrigin([float(v) for v in origin])
    if direction is not None:
        img.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    return img


@pytest.mark.parametrize("kind", ["rigid", "deformable"])
def test_field_of_view_is_where_the_resampled_pet_holds_measurements(kind):
    """The mask is exactly where resampling takes values from the PET (a PET of ones, linear interpolation: > 0),
    for an oblique PET grid and a rotated transform, and for the deformable method's rigid + B-spline composite."""
    from asfe3d.registration import resample_to_reference
    from asfe3d.registration.fov import field_of_view

    mri = _grid((30, 34, 28), (2.0, 2.0, 2.0), (-30.0, -34.0, -28.0))
    c, s = np.cos(0.3), np.sin(0.3)
    pet = _grid((16, 18, 9), (3.0, 3.0, 3.3), (-20.0, -30.0, -5.0), [[c, -s, 0], [s, c, 0], [0, 0, 1]])
    ones = sitk.Image(pet.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(pet)
    transform = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.05, -0.1, 0.2, (3.0, -2.0, 4.0))
    if kind == "deformable":
        bspline = sitk.BSplineTransformInitializer(mri, [2, 2, 2], order=3)
        params = np.asarray(bspline.GetParameters())
        bspline.SetParameters((np.random.default_rng(0).normal(0, 2.0, params.size)).tolist())
        transform = sitk.CompositeTransform([transform, bspline])
    mask = field_of_view(mri, pet, transform)
    measured = sitk_to_numpy_xyz(resample_to_reference(ones, mri, transform)) > 0
    assert mask is not None and mask.shape == measured.shape and 0 < mask.mean() < 1
    np.testing.assert_array_equal(mask, measured)


def test_field_of_view_is_none_when_the_pet_holds_the_whole_grid_and_cheap_then():
    from asfe3d.registration.fov import field_of_view

    mri = _grid((200, 240, 200), (1.0, 1.0, 1.0), (-100.0, -120.0, -100.0))
    pet = _grid((128, 128, 90), (2.0, 2.0, 2.5), (-127.0, -127.0, -111.0))
    start = time.perf_counter()
    assert field_of_view(mri, pet, sitk.Euler3DTransform()) is None
    assert time.perf_counter() - start < 0.5  # the corners, not a resampling of 9.6 M voxels
    # a grid whose first voxel centre lies 0.45 PET voxel before the PET's first voxel centre is inside
    edge = _grid((10, 10, 10), (2.0, 2.0, 2.0), (-127.0 - 0.9, 0.0, 0.0))
    assert field_of_view(edge, pet, sitk.Euler3DTransform()) is None
    # one voxel layer of the grid beyond the PET's top: exactly that layer is outside
    tall = _grid((8, 8, 8), (2.5, 2.5, 2.5), (0.0, 0.0, -111.0 + 89 * 2.5 - 6 * 2.5))
    mask = field_of_view(tall, pet, sitk.Euler3DTransform())
    assert mask is not None and mask[:, :, :7].all() and not mask[:, :, 7:].any()
