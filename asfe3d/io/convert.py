"""Conversions between SimpleITK (LPS, arrays ``(z, y, x)``) and nibabel / MONAI (RAS, arrays ``(x, y, z)``).

This module is the only place in asfe3d that converts between the two conventions (see
``docs/architecture.md``). A voxel index ``(i, j, k)`` is the same voxel in both worlds: SimpleITK's index
``(x, y, z)`` equals nibabel's ``(i, j, k)``; only the numpy array order and the physical frame differ.

For a SimpleITK image with origin ``o``, spacing ``s`` and direction ``D`` (all LPS), the RAS affine is::

    A[:3, :3] = F @ D @ diag(s),   A[:3, 3] = F @ o,   F = diag(-1, -1, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

if TYPE_CHECKING:  # pragma: no cover - typing only
    from monai.data import MetaTensor


__all__ = [
    "LPS_TO_RAS",
    "sitk_to_numpy_xyz",
    "numpy_xyz_to_sitk",
    "ras_affine_from_sitk",
    "sitk_geometry_from_ras_affine",
    "sitk_image_from_ras_affine",
    "affine_shear",
    "nearest_orthogonal_affine",
    "orthogonal_within_rounding",
    "metatensor_to_numpy_xyz",
]

#: Flips x and y: maps LPS coordinates to RAS and back (it is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

#: Largest |cos| between two normalised affine columns still treated as orthogonal (about 0.006 degrees).
ORTHOGONALITY_TOL = 1e-4
#: Largest |cos| between two normalised affine columns read as direction cosines rounded in a header (a DICOM
#: ImageOrientationPatient written with 3 decimals, and dcm2niix's sform made from it; about 0.06 degrees): such an
#: affine is replaced by the nearest orthogonal one (:func:`nearest_orthogonal_affine`); beyond it, shear.
ROUNDED_COSINES_TOL = 1e-3


def _check_3d_image(img: sitk.Image, what: str = "img") -> None:
    if not isinstance(img, sitk.Image):
        raise ValueError(f"{what} must be a SimpleITK.Image, got {type(img).__name__}.")
    if img.GetDimension() != 3:
        raise ValueError(f"{what} must be 3D, got a {img.GetDimension()}D image of size {img.GetSize()}.")


def sitk_to_numpy_xyz(img: sitk.Image) -> np.ndarray:
    """Voxel array of a 3D SimpleITK image in nibabel order.

    Args:
        img: 3D scalar SimpleITK image of size ``(X, Y, Z)``; vector images give a trailing component axis.

    Returns:
        A new numpy array of shape ``(X, Y, Z)`` (or ``(X, Y, Z, C)`` for vector images), in the image's pixel
        type, with ``out[i, j, k] == img[i, j, k]``.

    Raises:
        ValueError: when ``img`` is not a 3D SimpleITK image.
    """
    _check_3d_image(img)
    arr = sitk.GetArrayFromImage(img)  # (z, y, x[, c])
    axes = (2, 1, 0) if arr.ndim == 3 else (2, 1, 0, 3)
    return np.ascontiguousarray(arr.transpose(axes))


def numpy_xyz_to_sitk(array: np.ndarray, reference_image: sitk.Image | None) -> sitk.Image:
    """SimpleITK image of a nibabel-order array on the voxel grid of ``reference_image``.

    Args:
        array: numpy array of shape ``(X, Y, Z)``, equal to ``reference_image.GetSize()`` when one is given.
        reference_image: 3D SimpleITK image whose origin, spacing and direction are copied, or ``None`` for
            SimpleITK's default geometry (origin 0, spacing 1, identity direction) that the caller then sets.

    Returns:
        A 3D SimpleITK image with ``out[i, j, k] == array[i, j, k]``.

    Raises:
        ValueError: when ``array`` is not 3D or its shape differs from the reference's size.
    """
    if reference_image is not None:
        _check_3d_image(reference_image, "reference_image")
    array = np.asarray(array)
    size = None if reference_image is None else tuple(reference_image.GetSize())
    if size is None and array.ndim != 3:
        raise ValueError(f"array must be 3D, got shape {array.shape}.")
    if size is not None and tuple(array.shape) != size:
        raise ValueError(f"array shape {tuple(array.shape)} does not match the reference image size {size} "
                         "(both in (X, Y, Z) order).")
    out = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    if reference_image is not None:
        out.CopyInformation(reference_image)
    return out


def ras_affine_from_sitk(img: sitk.Image) -> np.ndarray:
    """4x4 RAS voxel-to-world affine of a 3D SimpleITK image's grid.

    Args:
        img: 3D SimpleITK image (any pixel type).

    Returns:
        float64 array of shape ``(4, 4)`` mapping voxel index ``(i, j, k, 1)`` to RAS millimetres.

    Raises:
        ValueError: when ``img`` is not a 3D SimpleITK image.
    """
    _check_3d_image(img)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(img.GetSpacing(), dtype=np.float64)
    origin = np.asarray(img.GetOrigin(), dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(spacing)
    affine[:3, 3] = LPS_TO_RAS @ origin
    return affine


def affine_shear(affine: np.ndarray) -> float:
    """Largest |cos| between two of an affine's normalised voxel axes (columns of its ``(3, 3)`` part): 0 for an
    orthogonal grid.

    Raises:
        ValueError: when the affine is not finite, not 4x4 / 3x4, or has a zero-length column.
    """
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape not in ((4, 4), (3, 4)) or not np.all(np.isfinite(aff)):
        raise ValueError(f"affine must be a finite 4x4 matrix, got shape {aff.shape}: {aff.tolist()}.")
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"affine has a zero-length voxel axis (column norms {spacing.tolist()}): {aff.tolist()}.")
    cols = aff[:3, :3] / spacing
    gram = cols.T @ cols
    return float(np.abs(gram - np.diag(np.diag(gram))).max())


def nearest_orthogonal_affine(affine: np.ndarray) -> np.ndarray:
    """The orthogonal affine nearest to ``affine``: its normalised axes replaced by their polar factor (the
    rotation, or rotation with a flip, closest to them), the voxel sizes and the first voxel's position kept.

    This is the matrix a NIfTI qform stores for the same header (``nifti_mat44_to_quatern``), so that for a sform
    made from rounded direction cosines the result is the file's qform and what ITK-based readers use.

    Args:
        affine: ``(4, 4)`` RAS voxel-to-world affine.

    Returns:
        ``(4, 4)`` float64 affine whose columns are orthogonal, of the same lengths as ``affine``'s.

    Raises:
        ValueError: for the reasons of :func:`affine_shear`.
    """
    affine_shear(affine)
    aff = np.array(affine, dtype=np.float64)
    if aff.shape == (3, 4):
        aff = np.vstack([aff, [0.0, 0.0, 0.0, 1.0]])
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    u, _, vt = np.linalg.svd(aff[:3, :3] / spacing)
    aff[:3, :3] = (u @ vt) * spacing
    return aff


def orthogonal_within_rounding(affine: np.ndarray) -> np.ndarray:
    """The affine asfe3d places a NIfTI's voxels with: ``affine`` itself, or its :func:`nearest_orthogonal_affine`
    when its shear is only that of rounded direction cosines (above :data:`ORTHOGONALITY_TOL`, at most
    :data:`ROUNDED_COSINES_TOL`). A larger shear is returned unchanged (and refused where a grid is made of it).

    Args:
        affine: ``(4, 4)`` RAS voxel-to-world affine.

    Returns:
        ``(4, 4)`` float64 affine.

    Raises:
        ValueError: for the reasons of :func:`affine_shear`.
    """
    shear = affine_shear(affine)
    if ORTHOGONALITY_TOL < shear <= ROUNDED_COSINES_TOL:
        return nearest_orthogonal_affine(affine)
    return np.array(affine, dtype=np.float64)


def sitk_geometry_from_ras_affine(
    affine: np.ndarray, shape_xyz: Sequence[int]
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """SimpleITK (LPS) origin, spacing and direction of the grid described by a RAS affine.

    Args:
        affine: ``(4, 4)`` (or ``(3, 4)``) RAS voxel-to-world affine, as nibabel reports it.
        shape_xyz: the grid's size ``(X, Y, Z)``; checked to be 3 positive integers.

    Returns:
        ``(origin, spacing, direction)``: 3 floats, 3 floats and 9 floats (row-major 3x3, columns are the
        LPS directions of the voxel axes), ready for ``SetOrigin`` / ``SetSpacing`` / ``SetDirection``.

    Raises:
        ValueError: when the affine is not finite or 4x4 / 3x4, has a zero-length column, or has shear
            (columns not mutually orthogonal), which a SimpleITK direction matrix cannot express; or when
            ``shape_xyz`` is not 3 positive integers.
    """
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape not in ((4, 4), (3, 4)) or not np.all(np.isfinite(aff)):
        raise ValueError(f"affine must be a finite 4x4 matrix, got shape {aff.shape}: {aff.tolist()}.")
    shape = tuple(int(s) for s in shape_xyz)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape_xyz must be 3 positive sizes, got {tuple(shape_xyz)}.")
    off = affine_shear(aff)
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    cols = aff[:3, :3] / spacing
    if off > ORTHOGONALITY_TOL:
        angle = np.degrees(np.arcsin(min(off, 1.0)))
        raise ValueError(
            f"affine has shear (voxel axes deviate from orthogonal by up to {angle:.3g} degrees), which a "
            f"SimpleITK direction matrix cannot express: {np.round(aff, 6).tolist()}."
        )
    direction = LPS_TO_RAS @ cols
    origin = LPS_TO_RAS @ aff[:3, 3]
    return (
        tuple(float(v) for v in origin),
        tuple(float(v) for v in spacing),
        tuple(float(v) for v in direction.ravel()),
    )


def sitk_image_from_ras_affine(array_xyz: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """SimpleITK image of a nibabel-order array whose voxel grid is given by a RAS affine.

    Args:
        array_xyz: numpy array of shape ``(X, Y, Z)``.
        affine: ``(4, 4)`` RAS affine of that grid.

    Returns:
        3D SimpleITK image (pixel type of the array) with ``ras_affine_from_sitk(out) ~= affine``.

    Raises:
        ValueError: when the array is not 3D or the affine cannot be expressed (see
            :func:`sitk_geometry_from_ras_affine`).
    """
    array_xyz = np.asarray(array_xyz)
    if array_xyz.ndim != 3:
        raise ValueError(f"array_xyz must be 3D (X, Y, Z), got shape {tuple(array_xyz.shape)}.")
    origin, spacing, direction = sitk_geometry_from_ras_affine(affine, array_xyz.shape)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array_xyz.transpose(2, 1, 0)))
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    return img


def metatensor_to_numpy_xyz(tensor: MetaTensor) -> np.ndarray:
    """float32 numpy array ``(X, Y, Z)`` of a single-channel MetaTensor (or plain tensor).

    Args:
        tensor: tensor of shape ``(1, X, Y, Z)`` or ``(X, Y, Z)``, any device.

    Returns:
        float32 numpy array of shape ``(X, Y, Z)`` (detached, on CPU).

    Raises:
        ValueError: when the tensor has another shape (e.g. several channels or a batch axis).
    """
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"tensor must be a torch.Tensor / MetaTensor, got {type(tensor).__name__}.")
    shape = tuple(tensor.shape)
    if len(shape) == 4 and shape[0] == 1:
        tensor = tensor[0]
    elif len(shape) != 3:
        raise ValueError(f"tensor must have shape (1, X, Y, Z) or (X, Y, Z), got {shape}.")
    return np.asarray(tensor.detach().cpu().float().numpy(), dtype=np.float32)
