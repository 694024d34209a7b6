"""asfe3d.io.convert: array orders, LPS <-> RAS geometry, MONAI interop."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from asfe3d.io import (
    metatensor_to_numpy_xyz,
    numpy_xyz_to_sitk,
    ras_affine_from_sitk,
    read_volume,
    sitk_geometry_from_ras_affine,
    sitk_image_from_ras_affine,
    sitk_to_numpy_xyz,
    volume_to_metatensor,
)
from tests.io.helpers import AFFINES, SHAPE, random_volume


def test_array_order_round_trip():
    arr = random_volume()
    ref = sitk.Image(list(SHAPE), sitk.sitkFloat32)
    img = numpy_xyz_to_sitk(arr, ref)
    assert img.GetSize() == SHAPE
    assert img[3, 7, 5] == pytest.approx(float(arr[3, 7, 5]))
    np.testing.assert_array_equal(sitk_to_numpy_xyz(img), arr)
    with pytest.raises(ValueError, match=r"\(10, 12, 8\).*\(12, 10, 8\)"):
        numpy_xyz_to_sitk(arr.transpose(1, 0, 2), ref)
    with pytest.raises(ValueError, match="3D"):
        sitk_to_numpy_xyz(sitk.Image([4, 5], sitk.sitkFloat32))


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_affine_geometry_round_trip(name):
    affine = AFFINES[name]
    origin, spacing, direction = sitk_geometry_from_ras_affine(affine, SHAPE)
    img = sitk.Image(list(SHAPE), sitk.sitkUInt8)
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    np.testing.assert_allclose(ras_affine_from_sitk(img), affine, atol=1e-9)
    # the corner voxel: RAS from the affine equals LPS from SimpleITK with x, y negated
    ijk = (SHAPE[0] - 1, 0, SHAPE[2] - 1)
    ras = affine @ np.array([*ijk, 1.0])
    lps = np.asarray(img.TransformIndexToPhysicalPoint(ijk))
    np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-9)


def test_known_identity_geometry():
    img = sitk.Image([4, 5, 6], sitk.sitkFloat32)  # identity direction, LPS
    np.testing.assert_allclose(ras_affine_from_sitk(img), np.diag([-1.0, -1.0, 1.0, 1.0]))


def test_geometry_from_affine_rejects_shear_and_bad_input():
    sheared = np.eye(4)
    sheared[0, 1] = 0.2
    with pytest.raises(ValueError, match="shear"):
        sitk_geometry_from_ras_affine(sheared, SHAPE)
    with pytest.raises(ValueError, match="zero-length"):
        sitk_geometry_from_ras_affine(np.diag([1.0, 0.0, 1.0, 1.0]), SHAPE)
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        sitk_geometry_from_ras_affine(np.eye(3), SHAPE)
    with pytest.raises(ValueError, match=r"\(12, 10\)"):
        sitk_geometry_from_ras_affine(np.eye(4), (12, 10))


def test_image_from_affine():
    arr = random_volume()
    img = sitk_image_from_ras_affine(arr, AFFINES["oblique"])
    np.testing.assert_allclose(ras_affine_from_sitk(img), AFFINES["oblique"], atol=1e-9)
    np.testing.assert_array_equal(sitk_to_numpy_xyz(img), arr)
    with pytest.raises(ValueError, match=r"\(12, 10\)"):
        sitk_image_from_ras_affine(arr[..., 0], AFFINES["oblique"])


def test_metatensor_interop(nifti_factory):
    vol = read_volume(nifti_factory(affine=AFFINES["flipped_lps_like"]))
    mt = volume_to_metatensor(vol)
    assert isinstance(mt, MetaTensor) and tuple(mt.shape) == (1, *SHAPE) and mt.dtype == torch.float32
    np.testing.assert_allclose(mt.affine.numpy(), vol.affine_ras, atol=1e-9)
    assert mt.meta["filename_or_obj"] == str(vol.path)
    back = metatensor_to_numpy_xyz(mt)
    assert back.dtype == np.float32 and type(back) is np.ndarray
    np.testing.assert_array_equal(back, vol.array_xyz())
    np.testing.assert_array_equal(metatensor_to_numpy_xyz(torch.from_numpy(back)), back)
    with pytest.raises(ValueError, match=r"\(2, 12, 10, 8\)"):
        metatensor_to_numpy_xyz(torch.zeros(2, *SHAPE))
    with pytest.raises(ValueError, match="Volume"):
        volume_to_metatensor(vol.image)  # type: ignore[arg-type]
