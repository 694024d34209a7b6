"""Small anatomies shared by the data tests."""

from __future__ import annotations

import numpy as np

from asfe3d.data.anatomy import Anatomy, reference_grid

#: the reference grid's voxel size (mm)
SPACING = float(reference_grid()[1][0, 0])


def tiny_anatomy(shape: tuple[int, int, int] = (24, 28, 24)) -> Anatomy:
    """A ball-shaped head: WM core, cortex shell (parietal AD label and a frontal label), CSF, scalp."""
    aff = np.diag([SPACING] * 3 + [1.0])
    aff[:3, 3] = -SPACING * (np.asarray(shape) - 1) / 2.0
    ijk = np.indices(shape).astype(float)
    r = np.sqrt(sum((ijk[k] - (shape[k] - 1) / 2.0) ** 2 for k in range(3))) * SPACING
    labels = np.zeros(shape, np.int16)
    labels[r < 15] = 44  # WM
    cortex = (r >= 15) & (r < 19)
    labels[cortex & (ijk[1] < shape[1] / 2)] = 198  # right superior parietal (AD + amyloid prone)
    labels[cortex & (ijk[1] >= shape[1] / 2)] = 108  # right calcarine (neither)
    head = r < 24
    mri = np.where(labels == 44, 1.0, np.where(labels > 0, 0.6, np.where(head, 0.8, 0.0))).astype(np.float32)
    return Anatomy("avg152T1", mri, labels, head, aff)
