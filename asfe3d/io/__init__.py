"""Reading and writing volumes: NIfTI, DICOM series folders, MHA / NRRD; atomic NIfTI outputs on a reference grid.

Public API:
    - :class:`Volume`, :func:`read_volume`, :func:`detect_format`, :func:`input_stem` (``asfe3d.io.volume``)
    - :func:`write_like`, :func:`write_image_like`, :func:`atomic_output`, :func:`check_output_path`
      (``asfe3d.io.writer``)
    - :func:`write_transform`, :func:`read_transform`: the registration's ``.tfm`` files (``asfe3d.io.transform``)
    - conversions between SimpleITK (LPS, ``(z, y, x)``) and nibabel / MONAI (RAS, ``(x, y, z)``)
      (``asfe3d.io.convert``)
"""

from __future__ import annotations

from asfe3d.io.convert import (
    metatensor_to_numpy_xyz,
    numpy_xyz_to_sitk,
    ras_affine_from_sitk,
    sitk_geometry_from_ras_affine,
    sitk_image_from_ras_affine,
    sitk_to_numpy_xyz,
)
from asfe3d.io.transform import read_transform, write_transform
from asfe3d.io.volume import Volume, detect_format, input_stem, read_volume, volume_to_metatensor
from asfe3d.io.writer import (
    OUTPUT_SUFFIXES,
    OutputSet,
    atomic_output,
    check_output_path,
    check_writable_folder,
    deferred_signals,
    disk_errors,
    output_lock,
    stale_temporaries,
    write_image_like,
    write_like,
)

__all__ = [
    "Volume",
    "read_volume",
    "input_stem",
    "detect_format",
    "write_like",
    "write_image_like",
    "atomic_output",
    "check_output_path",
    "check_writable_folder",
    "output_lock",
    "deferred_signals",
    "disk_errors",
    "OUTPUT_SUFFIXES",
    "OutputSet",
    "stale_temporaries",
    "sitk_to_numpy_xyz",
    "numpy_xyz_to_sitk",
    "ras_affine_from_sitk",
    "sitk_geometry_from_ras_affine",
    "sitk_image_from_ras_affine",
    "volume_to_metatensor",
    "metatensor_to_numpy_xyz",
    "read_transform",
    "write_transform",
]
