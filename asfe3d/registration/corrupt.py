"""Deliberately broken PET geometry for testing registration QC and the multi-start search.

:func:`reorient_voxels` turns or mirrors a volume's voxel array while its header keeps saying "axis-aligned" (a
PET rotated by 90 degrees, or with a flipped axis, that its header does not describe), and returns the transform
that relates the old physical space to the new one, so that the true registration of the broken PET is known.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from asfe3d.io.convert import numpy_xyz_to_sitk, sitk_to_numpy_xyz

__all__ = ["reorient_voxels"]


def reorient_voxels(image: sitk.Image, matrix: np.ndarray | list) -> tuple[sitk.Image, sitk.AffineTransform]:
    """Turn/mirror the voxel array of an axis-aligned image by a signed permutation, keeping the header's story.

    The new image has the identity direction, its spacing permuted with the axes, and the same physical centre;
    the head inside it is turned by ``matrix`` (a 90/180-degree rotation, or a mirror when its determinant is -1).

    Args:
        image: a 3D scalar image with the identity direction.
        matrix: 3x3 signed permutation matrix (one +-1 per row and column).

    Returns:
        ``(image, q)``: the new image and ``q``, mapping a physical point of ``image`` to the point where the same
        voxel content sits in the new image; a pair's true transform ``t`` (MRI -> PET) becomes ``q`` after ``t``
        (``sitk.CompositeTransform([q, t])``).

    Raises:
        ValueError: when ``matrix`` is not a signed permutation or ``image`` is not axis-aligned 3D.
    """
    m = np.asarray(matrix, dtype=float)
    if m.shape != (3, 3) or not (np.all(np.isin(m, (-1.0, 0.0, 1.0))) and np.all(np.abs(m).sum(0) == 1)
                                 and np.all(np.abs(m).sum(1) == 1)):
        raise ValueError(f"matrix must be a 3x3 signed permutation, got {np.asarray(matrix).tolist()!r}")
    if image.GetDimension() != 3 or not np.allclose(image.GetDirection(), np.eye(3).ravel()):
        raise ValueError(f"image must be 3D with the identity direction, got direction {image.GetDirection()}")
    arr = sitk_to_numpy_xyz(image)
    src = [int(np.argmax(np.abs(m[k]))) for k in range(3)]  # new axis k takes old axis src[k]
    out = np.transpose(arr, src)
    for k in range(3):
        if m[k, src[k]] < 0:
            out = np.flip(out, axis=k)
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    new_spacing = spacing[src]
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2.0 for s in image.GetSize()]))
    new_size = np.asarray(out.shape)
    result = numpy_xyz_to_sitk(out, None)
    result.SetSpacing(new_spacing.tolist())
    result.SetOrigin((centre - (new_size - 1) / 2.0 * new_spacing).tolist())
    # index map i'_k = sign_k (i_src(k) - c) + c' => physical map y' = centre + diag(s') m diag(s)^-1 (y - centre)
    phys = np.diag(new_spacing) @ m @ np.diag(1.0 / spacing)
    q = sitk.AffineTransform(3)
    q.SetCenter(centre.tolist())
    q.SetMatrix(phys.ravel().tolist())
    return result, q
